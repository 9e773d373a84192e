"""The solver plugin (``accel.SolverConfig``): another diffusers solver built from the pipeline's scheduler
config, the strongest fewer-steps rival and a tune gene."""

from __future__ import annotations

import pytest
import torch

import accel
from accel.pipelines.testing import tiny_pipeline
from accel.plugin import config_from_dict

from .plugin_mixin import PluginTesterMixin, Target


def _run(tiny, steps, seed=0):
    with torch.no_grad():
        return tiny(**tiny.inputs(seed=seed, steps=steps))


class TestSolverPlugin(PluginTesterMixin):
    """The shared plugin contract on the tiny SD3 pipeline (flow matching): UniPC in its flow mode."""

    config_cls = accel.SolverConfig
    plugin_name = "solver"
    summary_keys = ("solver", "scheduler", "replaced")
    unsupported_family = "timm_vit"
    bad_configs = [
        ({"solver": "heun"}, "SolverConfig.solver must be one of"),
        ({"solver": 2}, "SolverConfig.solver must be one of"),
    ]
    identity_stats = {"solver": "flow_euler"}

    def make_target(self):
        return Target.pipeline("sd3", steps=4)

    def config(self):
        return accel.SolverConfig(solver="unipc")

    def identity_config(self):
        return accel.SolverConfig(solver="flow_euler")  # the shipped scheduler's own class

    def check_active(self, stats, summary):
        assert stats["scheduler"] == "UniPCMultistepScheduler"
        assert stats["replaced"] == "FlowMatchEulerDiscreteScheduler"


@pytest.mark.parametrize(
    ("family", "solvers"),
    [("sd3", ("unipc",)), ("pixart", ("ddim", "euler"))],
)
def test_every_solver_solves_the_same_ode(family, solvers):
    """At 40 steps every solver lands on the shipped scheduler's result (the prediction type and the noise
    schedule carried over), while a solver misconfigured by hand (the wrong prediction type) does not; at
    3 steps they differ."""
    import diffusers

    tiny = tiny_pipeline(family)
    reference, few_reference = _run(tiny, 40), _run(tiny, 3)
    for solver in solvers:
        accel.apply(tiny.pipe, accel.SolverConfig(solver=solver))
        many, few = _run(tiny, 40), _run(tiny, 3)
        accel.remove(tiny.pipe)
        assert (many - reference).abs().mean() < 0.01, (solver, (many - reference).abs().mean())
        assert not torch.equal(few, few_reference)
    assert torch.equal(_run(tiny, 3), few_reference)  # removed exactly
    shipped = tiny.pipe.scheduler
    wrong = {"prediction_type": "v_prediction"} if family == "pixart" else {}  # sd3: UniPC without flow sigmas
    tiny.pipe.scheduler = diffusers.UniPCMultistepScheduler.from_config(shipped.config, **wrong)
    misconfigured = _run(tiny, 40)
    tiny.pipe.scheduler = shipped
    assert (misconfigured - reference).abs().mean() > 0.03  # the check above can fail


def test_solvers_that_do_not_fit_the_model_are_refused_with_the_choices():
    sd3 = tiny_pipeline("sd3")
    with pytest.raises(accel.UnsupportedModelError, match="flow-matching scheduler; its solvers are flow_euler"):
        accel.apply(sd3.pipe, accel.SolverConfig(solver="ddim"))
    pixart = tiny_pipeline("pixart")
    with pytest.raises(accel.UnsupportedModelError, match="variance-preserving scheduler; its solvers are ddim"):
        accel.apply(pixart.pipe, accel.SolverConfig(solver="flow_euler"))


def test_solver_then_schedule_compose_and_the_other_order_is_refused():
    """The schedule is cut on the scheduler it finds at apply, so the solver is applied first; a solver
    applied after a schedule is refused with the order to use."""
    tiny = tiny_pipeline("sd3")
    schedule = accel.TimestepScheduleConfig(reference_steps=12, indices=(0, 3, 6, 9))
    accel.apply(tiny.pipe, accel.SolverConfig(solver="unipc"), schedule)
    both = _run(tiny, 4)
    stats = accel.summary(tiny.pipe)["denoisers"]
    plugins = next(iter(stats.values()))["plugins"]
    assert (
        plugins["solver"]["scheduler"] == "UniPCMultistepScheduler"
        and len(plugins["timestep_schedule"]["sigmas"]) == 5
    )
    accel.remove(tiny.pipe)
    accel.apply(tiny.pipe, schedule)
    with pytest.raises(accel.UnsupportedModelError, match="apply SolverConfig before TimestepScheduleConfig"):
        accel.apply(tiny.pipe, accel.SolverConfig(solver="unipc"))
    only_schedule = _run(tiny, 4)
    accel.remove(tiny.pipe)
    assert not torch.equal(both, only_schedule)


def test_solver_round_trips_as_data():
    config = accel.SolverConfig(solver="unipc")
    assert config_from_dict(config.to_dict()) == config
    assert str(config) == "solver_solverunipc"  # the short name: prefix, then each non-default field


def test_a_solver_keeps_the_flow_shift_and_takes_no_foreign_fields(monkeypatch):
    """Built from another scheduler's config, a solver keeps its flow shift under its own field name (Wan
    ships UniPC with ``flow_shift``; flow Euler calls it ``shift``) and is handed only the fields it takes,
    so diffusers has nothing to warn about on every tune evaluation."""
    import diffusers
    from diffusers.configuration_utils import logger

    from accel.sampling.solver import build_solver

    warned = []
    monkeypatch.setattr(logger, "warning", lambda message, *args: warned.append(message))
    unipc = diffusers.UniPCMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=5.0)
    assert build_solver(unipc, "flow_euler").config.shift == 5.0
    assert build_solver(unipc, "dpmsolver++").config.flow_shift == 5.0
    euler = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)  # SD3's, with its shift bounds
    assert build_solver(euler, "unipc").config.flow_shift == 3.0
    assert warned == []
