"""The timestep-schedule plugin (N steps on chosen levels of an M-step schedule) and its dynamic-programming
search (:mod:`accel.tuning.schedule_search`), on tiny pipelines of three kinds of scheduler: flow matching
(SD3), variance-preserving DPM-Solver++ (PixArt) and Euler on sigma-scaled latents (SDXL)."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

import accel
from accel.pipelines.testing import tiny_pipeline
from accel.plugin import config_from_dict
from accel.tuning import schedule_search
from accel.tuning.schedule_search import best_indices, path_cost, reference_costs, search_schedules

from .plugin_mixin import PluginTesterMixin, Target

FAMILIES = ("sd3", "pixart", "sdxl")


def _run(tiny, steps, seed=0):
    with torch.no_grad():
        return tiny(**tiny.inputs(seed=seed, steps=steps))


class TestTimestepSchedulePlugin(PluginTesterMixin):
    """The shared plugin contract on the tiny SD3 pipeline: 4 steps on levels of a 12-step schedule."""

    config_cls = accel.TimestepScheduleConfig
    plugin_name = "timestep_schedule"
    summary_keys = ("reference_steps", "indices", "timesteps", "sigmas")
    unsupported_family = "timm_vit"
    bad_configs = [
        ({"indices": (1, 3, 6, 9)}, "TimestepScheduleConfig.indices must start at 0"),
        ({"indices": (0, 3, 3, 9)}, "TimestepScheduleConfig.indices must be strictly increasing"),
        ({"indices": (0, 3, 6, 12)}, "TimestepScheduleConfig.indices[] must be an integer in [0, 11], got 12"),
        ({"reference_steps": 0}, "TimestepScheduleConfig.reference_steps must be an integer in [1, 10000], got 0"),
    ]
    identity_stats = {"indices": [0, 1, 2, 3]}

    def make_target(self):
        return Target.pipeline("sd3", steps=4)

    def config(self):
        return accel.TimestepScheduleConfig(reference_steps=12, indices=(0, 3, 6, 9))

    def identity_config(self):
        return accel.TimestepScheduleConfig(reference_steps=4, indices=(0, 1, 2, 3))

    def check_active(self, stats, summary):
        assert stats["indices"] == [0, 3, 6, 9] and len(stats["sigmas"]) == 5
        assert summary["last_call"]["nfe"] == 2 * 4  # the step count is the pipeline's


@pytest.mark.parametrize("family", FAMILIES)
def test_the_schedule_steps_through_the_chosen_levels_of_the_reference(family):
    """The scheduler runs N steps whose timesteps and sigmas are the M-step schedule's at the chosen
    levels (plus its final sigma); the identity choice gives the plain M-step output bit for bit."""
    tiny = tiny_pipeline(family)
    reference = type(tiny.pipe.scheduler).from_config(tiny.pipe.scheduler.config)
    reference.set_timesteps(9)
    plain = _run(tiny, 9)
    accel.apply(tiny.pipe, accel.TimestepScheduleConfig(reference_steps=9, indices=tuple(range(9))))
    assert torch.equal(_run(tiny, 9), plain)
    accel.remove(tiny.pipe)
    accel.apply(tiny.pipe, accel.TimestepScheduleConfig(reference_steps=9, indices=(0, 2, 5)))
    seen = []
    tiny.denoiser.register_forward_pre_hook(
        lambda m, a, kw: seen.append(float(torch.as_tensor(kw.get("timestep", a[1:2] or [0])[0]).flatten()[0])),
        with_kwargs=True,
    )
    _run(tiny, 3)
    stats = next(iter(accel.summary(tiny.pipe)["denoisers"].values()))["plugins"]["timestep_schedule"]
    expected = [float(reference.timesteps[i]) for i in (0, 2, 5)]
    assert stats["timesteps"] == pytest.approx(expected, rel=1e-4)
    assert stats["sigmas"] == pytest.approx([float(reference.sigmas[i]) for i in (0, 2, 5, 9)], rel=1e-4)
    assert sorted(set(seen), reverse=True) == pytest.approx(sorted(set(expected), reverse=True), rel=1e-4, abs=1e-3)


def test_a_call_with_another_step_count_is_refused_with_the_count_to_use():
    tiny = tiny_pipeline("sd3")
    accel.apply(tiny.pipe, accel.TimestepScheduleConfig(reference_steps=12, indices=(0, 3, 6)))
    with pytest.raises(accel.ConfigError, match="chooses 3 steps; call the pipeline with num_inference_steps=3"):
        _run(tiny, 4)
    assert _run(tiny, 3).isfinite().all()  # the refused call left nothing behind


def test_a_scheduler_that_spaces_steps_itself_is_refused_with_the_way_out():
    tiny = tiny_pipeline("unet")  # DDIM: its step moves a fixed stride of timesteps
    with pytest.raises(accel.UnsupportedModelError, match="DDIMScheduler spaces its steps evenly inside step"):
        accel.apply(tiny.pipe, accel.TimestepScheduleConfig(reference_steps=8, indices=(0, 4)))
    assert accel.get_handle(tiny.pipe) is None


def test_the_config_is_json_and_loads_from_a_schedule_file(tmp_path):
    config = accel.TimestepScheduleConfig(reference_steps=20, indices=(0, 4, 9, 15))
    path = tmp_path / "schedule.json"
    path.write_text(json.dumps(config.to_dict()))
    assert config_from_dict(json.loads(path.read_text())) == config
    assert accel.TimestepScheduleConfig.load(str(path)) == config
    path.write_text(json.dumps({"type": "RASConfig"}))
    with pytest.raises(accel.ConfigError, match="is not a TimestepScheduleConfig"):
        accel.TimestepScheduleConfig.load(str(path))


# ------------------------------------------------------------------------------------------ search
def test_dynamic_programming_finds_the_cheapest_path():
    """Against brute force over every choice of levels, on random jump costs."""
    generator = torch.Generator().manual_seed(0)
    for m, n in ((7, 3), (8, 4), (6, 1), (9, 5)):
        costs = torch.rand(m + 1, m + 1, generator=generator, dtype=torch.float64).triu(1)
        costs[torch.ones(m + 1, m + 1).tril().bool()] = float("inf")
        indices, cost = best_indices(costs, n)
        brute = min(
            ((0, *rest) for rest in itertools.combinations(range(1, m), n - 1)), key=lambda i: path_cost(costs, i)
        )
        assert indices == brute and cost == pytest.approx(path_cost(costs, brute))
    with pytest.raises(accel.ConfigError, match="must have 1 to 7 steps"):
        best_indices(costs[:8, :8], 8)


@pytest.mark.parametrize("family", FAMILIES)
def test_one_step_jumps_of_a_first_order_start_cost_nothing(family):
    """The first step of every scheduler here is first order, so the jump from level 0 to level 1 with the
    model's denoised estimate lands on the reference state: the denoised estimate and the level scales
    are right for flow matching, variance-preserving and sigma-scaled latents."""
    tiny = tiny_pipeline(family)
    call = {k: v for k, v in tiny.inputs(steps=6).items() if k not in ("generator", "num_inference_steps")}
    prompt = call.pop("prompt", None)
    costs = reference_costs(tiny.pipe, prompt, 0, call, 6)
    assert costs[0, 1] < 1e-8 * costs[0, 6], costs[0]
    assert torch.isinf(costs[3, 2]) and costs[0, 6] > 0


def test_the_search_reproduces_the_reference_when_n_equals_its_step_count(tmp_path):
    tiny = tiny_pipeline("sd3")
    call = {k: v for k, v in tiny.inputs(steps=6).items() if k not in ("generator", "num_inference_steps")}
    prompt = call.pop("prompt", None)
    found = search_schedules(tiny.pipe, [prompt], [0], call, [6, 3], str(tmp_path), reference_steps=6)
    assert found[6]["config"].indices == tuple(range(6))
    plain = _run(tiny, 6)
    accel.apply(tiny.pipe, found[6]["config"])
    assert torch.equal(_run(tiny, 6), plain)
    assert found[3]["cost"] <= found[3]["evenly_spaced_cost"]
    assert accel.TimestepScheduleConfig.load(str(tmp_path / "schedule_3.json")) == found[3]["config"]


def test_an_interrupted_search_resumes_without_redoing_finished_samples(tmp_path, monkeypatch):
    tiny = tiny_pipeline("sd3")
    call = {k: v for k, v in tiny.inputs(steps=5).items() if k not in ("generator", "num_inference_steps")}
    prompt = call.pop("prompt", None)
    runs = []
    real = schedule_search.reference_costs

    def counted(*args, **kwargs):
        runs.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(schedule_search, "reference_costs", counted)
    search_schedules(tiny.pipe, [prompt], [0], call, [2], str(tmp_path / "a"), reference_steps=5)
    resumed = search_schedules(tiny.pipe, [prompt], [0, 1], call, [2], str(tmp_path / "a"), reference_steps=5)
    fresh = search_schedules(tiny.pipe, [prompt], [0, 1], call, [2], str(tmp_path / "b"), reference_steps=5)
    assert runs == [0, 1, 0, 1]  # the resumed search ran seed 1 only
    assert resumed[2]["config"] == fresh[2]["config"] and resumed[2]["cost"] == pytest.approx(fresh[2]["cost"])


def test_accel_schedule_writes_loadable_schedules(tmp_path, capsys):
    """``accel schedule`` on the built-in SD3: one schedule file per step count, loaded in one line."""
    from accel.cli import main

    out = tmp_path / "schedules"
    assert main(["schedule", "sd3-shapes", "--steps", "3", "5", "--reference", "12", "--num-prompts", "2",
                 "--out", str(out), "--device", "cpu"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    for n in (3, 5):
        config = accel.TimestepScheduleConfig.load(str(out / f"schedule_{n}.json"))
        assert config.reference_steps == 12 and config.steps == n and f"{n} steps: {list(config.indices)}" in printed
    assert (out / "reference_12.json").exists()


@pytest.mark.parametrize("family, solver", [("unet", "dpmsolver++"), ("sd3", "unipc")])
def test_a_search_on_another_solver_reads_its_levels_and_reproduces_it(tmp_path, family, solver):
    """``solver=``: the reference trajectory runs with :class:`accel.SolverConfig` swapped in, its levels are
    the solver's (the first, first-order jump costs nothing), and N = M reproduces the solver's own run;
    the pipeline's scheduler is back afterwards."""
    tiny = tiny_pipeline(family)
    original = tiny.pipe.scheduler
    call = {k: v for k, v in tiny.inputs(steps=6).items() if k not in ("generator", "num_inference_steps")}
    prompt = call.pop("prompt", None)
    costs = reference_costs(tiny.pipe, prompt, 0, call, 6, solver)
    assert costs[0, 1] < 1e-8 * costs[0, 6], costs[0]
    found = search_schedules(tiny.pipe, [prompt], [0], call, [6, 3], str(tmp_path), reference_steps=6, solver=solver)
    assert tiny.pipe.scheduler is original
    assert found[6]["config"].indices == tuple(range(6))
    accel.apply(tiny.pipe, accel.SolverConfig(solver=solver))
    alone = _run(tiny, 6)
    accel.remove(tiny.pipe)
    accel.apply(tiny.pipe, accel.SolverConfig(solver=solver), found[6]["config"])
    scheduled = _run(tiny, 6)
    accel.remove(tiny.pipe)
    assert torch.equal(scheduled, alone)
    assert found[3]["cost"] <= found[3]["evenly_spaced_cost"]
    other = json.loads((tmp_path / "reference_6.json").read_text())["call"]
    assert other["solver"] == solver  # a folder searched on one solver is not resumed on another
