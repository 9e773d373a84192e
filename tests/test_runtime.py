"""Production runtime: every plugin and every supported pair of plugins, compiled, from two threads,
deep-copied, behind ``from_pipe``, after a scheduler swap and with fused QKV projections.

Each result is checked against the eager, single-threaded output of the same stack on the same tiny
pipeline (seed 0). Where a path cannot work, the check is that it is refused with a clear accel error.
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
import warnings
from collections.abc import Callable

import pytest
import torch

import accel
from accel.compat import check_compatible
from accel.fingerprint import denoiser_fingerprint, weights_sketch
from accel.pipelines.registry import lookup
from accel.pipelines.testing import TinyPipeline, tiny_denoiser, tiny_pipeline
from accel.plan import PlanTargetConfig
from accel.plugin import plugin_for, registered_configs

STEPS = 8
#: a valid weights record of some other model
SKETCH = weights_sketch(
    torch.nn.Linear(2, 2, bias=False).requires_grad_(False).apply(lambda m: torch.nn.init.ones_(m.weight))
)


def linear_ag(tmp_path, family: str, steps: int, scheduler: str | None = None) -> accel.LinearAGConfig:
    """LinearAG with a hand-written coefficients file for the tiny ``family`` pipeline at ``steps`` steps
    (fitted, it says, with ``scheduler``: by default the pipeline's own)."""
    path = tmp_path / f"linear_ag_{family}_{steps}_{scheduler}.json"
    if not path.exists():
        scheduler = scheduler or type(tiny_pipeline(family).pipe.scheduler).__name__
        path.write_text(
            json.dumps(
                {
                    "format": "accel-linear-ag/3",
                    "denoiser": denoiser_fingerprint(tiny_denoiser(family)),
                    "scheduler": scheduler,
                    "guidance_scale": 4.0,
                    "history": 1,
                    "num_inference_steps": steps,
                    "coefficients": {str(s): [0.5, 0.0, 0.5, 0.0] for s in range(1, steps)},
                }
            )
        )
    return accel.LinearAGConfig(coefficients=str(path), predict_every=2, predict_until=1.0, threshold=1.5)


def _ag(tmp_path, family: str, steps: int) -> accel.AdaptiveGuidanceConfig:
    return accel.AdaptiveGuidanceConfig(threshold=-1.0, min_steps=2)


def _plan_target(tmp_path, family: str, steps: int) -> PlanTargetConfig:
    """A tuned plan's target check for the tiny ``family`` pipeline at ``steps`` steps."""
    return PlanTargetConfig(
        model=f"tiny-{family}",
        denoiser=tuple(sorted(denoiser_fingerprint(tiny_denoiser(family)).items())),
        scheduler=type(tiny_pipeline(family).pipe.scheduler).__name__,
        num_inference_steps=steps,
        guidance_scale=4.0,
    )


#: plugin -> how to build its config (tmp_path, family, steps)
PLUGINS: dict[str, Callable] = {
    "deep_cache": lambda tmp, family, steps: accel.DeepCacheConfig(interval=3, forecast_order=1),
    "block_cache": lambda tmp, family, steps: accel.BlockCacheConfig(schedule="fora", interval=2),
    "ras": lambda tmp, family, steps: accel.RASConfig(sample_ratio=0.5),
    "adaptive_guidance": _ag,
    "linear_ag": linear_ag,
    "sparse_attention": lambda tmp, family, steps: accel.SparseAttentionConfig(),
    "plan_target": _plan_target,
    "guidance_window": lambda tmp, family, steps: accel.GuidanceWindowConfig(start=0.25, stop=0.75),
    # every other level of a schedule twice as fine
    "timestep_schedule": lambda tmp, family, steps: accel.TimestepScheduleConfig(
        reference_steps=2 * steps, indices=tuple(range(0, 2 * steps, 2))
    ),
    "solver": lambda tmp, family, steps: accel.SolverConfig(solver="unipc"),  # fits flow and VP schedulers
}
#: the tiny family each stack runs on (the first one that every plugin of the stack supports)
FAMILIES = ("unet", "pixart", "sd3", "wan")

STACKS: list[tuple[str, ...]] = [
    ("deep_cache",),
    ("block_cache",),
    ("ras",),
    ("adaptive_guidance",),
    ("linear_ag",),
    ("sparse_attention",),
    ("deep_cache", "adaptive_guidance"),
    ("deep_cache", "linear_ag"),
    ("block_cache", "adaptive_guidance"),
    ("block_cache", "linear_ag"),
    ("block_cache", "sparse_attention"),
    ("ras", "adaptive_guidance"),
    ("ras", "linear_ag"),
    ("sparse_attention", "adaptive_guidance"),
    ("sparse_attention", "linear_ag"),
    ("guidance_window",),
    ("guidance_window", "deep_cache"),
    ("guidance_window", "block_cache"),
    ("guidance_window", "sparse_attention"),
    ("guidance_window", "timestep_schedule"),
    ("timestep_schedule",),
    ("timestep_schedule", "block_cache"),
    ("timestep_schedule", "ras"),
    ("timestep_schedule", "adaptive_guidance"),
    ("timestep_schedule", "linear_ag"),
    ("timestep_schedule", "sparse_attention"),
    # the solver replaces the scheduler before the call and touches no denoiser module: its pairs are
    # those with the plugins that read the scheduler (alone it is tested in test_sampling_solver.py)
    ("solver", "linear_ag"),  # coefficients fitted with the solver's scheduler
    ("solver", "timestep_schedule"),  # the schedule is cut on the solver's scheduler
    ("solver", "plan_target"),  # a plan's setting with a solver: the target check sees the tuned scheduler
    # a tuned plan's setting: its target check alone and on top of a plugin (it claims nothing and
    # computes nothing, so its other pairs add no case)
    ("plan_target",),
    ("block_cache", "adaptive_guidance", "plan_target"),
]


def family_for(stack: tuple[str, ...]) -> str:
    for family in FAMILIES:
        adapter = lookup(tiny_denoiser(family))
        configs = [PLUGINS[name](None, family, STEPS) for name in stack if name != "linear_ag"]
        if all(adapter.kind in plugin_for(c).kinds for c in configs) and _scheduler_ok(stack, family):
            return family
    raise AssertionError(f"no tiny family runs {stack}")


def _scheduler_ok(stack: tuple[str, ...], family: str) -> bool:
    """RAS runs on image DiTs with a token layout; a timestep schedule needs a scheduler that reads its
    sigmas (the tiny U-Net pipeline's DDIM does not)."""
    ras = "ras" not in stack or family in ("sd3", "flux", "lumina", "lumina2")
    return ras and ("timestep_schedule" not in stack or family != "unet")


def stack_id(stack: tuple[str, ...]) -> str:
    return "+".join(stack)


class Stack:
    """One stack on a fresh tiny pipeline of its family."""

    def __init__(self, stack: tuple[str, ...], tmp_path) -> None:
        self.stack = stack
        self.tmp_path = tmp_path
        self.family = family_for(stack)
        self.tiny = tiny_pipeline(self.family)

    def configs(self, steps: int = STEPS) -> list:
        if "solver" in self.stack and "linear_ag" in self.stack:  # coefficients fitted with the solver
            return [
                PLUGINS["solver"](self.tmp_path, self.family, steps),
                linear_ag(self.tmp_path, self.family, steps, scheduler="UniPCMultistepScheduler"),
            ]
        return [PLUGINS[name](self.tmp_path, self.family, steps) for name in self.stack]

    def apply(self, steps: int = STEPS) -> None:
        accel.apply(self.tiny.pipe, *self.configs(steps))

    def run(self, tiny: TinyPipeline | None = None, seed: int = 0, steps: int = STEPS) -> torch.Tensor:
        tiny = tiny or self.tiny
        with torch.no_grad():
            return tiny(**tiny.inputs(seed=seed, steps=steps))

    def reference(self, seed: int = 0, steps: int = STEPS) -> torch.Tensor:
        """The eager, single-threaded output of the stack (on a pipeline of its own)."""
        other = Stack(self.stack, self.tmp_path)
        accel.apply(other.tiny.pipe, *other.configs(steps))
        return other.run(seed=seed, steps=steps)


def test_the_matrix_covers_every_plugin_and_every_supported_pair():
    """Every registered diffusion plugin, and every pair that composes on some tiny family, is a stack here."""
    shipped = [cls for cls in registered_configs() if cls.__module__.startswith("accel.")]  # not test probes
    names = {plugin_for(cls.__new__(cls)).name for cls in shipped} - {"repavit"}
    assert names == set(PLUGINS)
    by_config = {name: PLUGINS[name] for name in PLUGINS if name != "linear_ag"}
    for a, b in itertools.combinations(sorted(PLUGINS), 2):
        probe = [by_config.get(n, _ag)(None, "pixart", STEPS) for n in (a, b)]
        if {a, b} == {"adaptive_guidance", "linear_ag"} or "plan_target" in (a, b):
            continue  # both decide the CFG batch; the plan's target check composes with anything
        if "solver" in (a, b) and not {a, b} & {"linear_ag", "timestep_schedule"}:
            continue  # the solver meets the denoiser plugins only through the trajectory
        try:
            check_compatible(probe)
        except accel.IncompatiblePluginsError:
            continue
        shared = [f for f in FAMILIES if all(_supports(n, f) for n in (a, b))]
        if shared:
            assert tuple(sorted((a, b))) in {tuple(sorted(s)) for s in STACKS}, f"missing pair {a}+{b}"


def _supports(name: str, family: str) -> bool:
    config = PLUGINS[name](None, family, STEPS) if name != "linear_ag" else _ag(None, family, STEPS)
    return lookup(tiny_denoiser(family)).kind in plugin_for(config).kinds and _scheduler_ok((name,), family)


# ------------------------------------------------------------------------------------ compile
def _compiled_graphs(stack: Stack, steps: int) -> tuple[list[int], torch.Tensor]:
    """Graphs compiled by each of two calls of ``steps`` steps (eager backend), and the output."""
    torch._dynamo.reset()
    graphs: list = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    fresh = Stack(stack.stack, stack.tmp_path)
    fresh.apply(steps)
    fresh.tiny.denoiser.compile(backend=backend)
    counts = []
    # a limit well above any legitimate count, so that a graph per step shows as growth instead of
    # hitting the default limit (8) and silently falling back to eager
    with torch._dynamo.config.patch(recompile_limit=64, accumulated_recompile_limit=4096):
        for _ in range(2):
            before = len(graphs)
            out = fresh.run(steps=steps)
            counts.append(len(graphs) - before)
    torch._dynamo.reset()
    return counts, out


@pytest.mark.parametrize("stack", STACKS, ids=stack_id)
def test_compile_adds_no_graph_per_step(stack, tmp_path):
    """Compiled (eager backend): nothing new compiles on the second call, 8 and 16 steps compile the same
    number of graphs (per-step decisions are not guards), and the output is the eager one."""
    s = Stack(stack, tmp_path)
    counts8, out8 = _compiled_graphs(s, STEPS)
    counts16, out16 = _compiled_graphs(s, 2 * STEPS)
    assert counts8[1] == 0 and counts16[1] == 0, (counts8, counts16)
    assert counts8[0] == counts16[0], (counts8, counts16)
    torch.testing.assert_close(out8, s.reference(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out16, s.reference(steps=2 * STEPS), rtol=1e-5, atol=1e-5)


def test_compile_of_a_repavit_model_is_stable():
    """RePaViT rewrites the ViT once; the compiled model compiles once and matches the eager one."""
    torch._dynamo.reset()
    vit = tiny_denoiser("timm_vit")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        accel.apply(vit, accel.RePaViTConfig(idle_ratio=0.5))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        eager = vit(x)
    graphs: list = []
    vit.compile(backend=lambda gm, ex: graphs.append(gm) or gm.forward)
    with torch.no_grad():
        first = vit(x)
        count = len(graphs)
        second = vit(x)
    torch._dynamo.reset()
    assert count >= 1 and len(graphs) == count
    torch.testing.assert_close(first, eager, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(second, eager, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------ threads and copies
@pytest.mark.parametrize("stack", STACKS, ids=stack_id)
def test_two_threads_get_their_own_result_or_a_clear_error(stack, tmp_path):
    """Two threads on one accelerated pipe: each output is what the thread gets alone, or the second
    thread is refused at entry with ConcurrentUseError; on replicas (accel.replicate) both run exactly."""
    s = Stack(stack, tmp_path)
    s.apply()
    alone = {seed: s.run(seed=seed) for seed in (0, 1)}
    outcomes: dict[int, list] = {0: [], 1: []}
    barrier = threading.Barrier(2)

    def work(tiny: TinyPipeline, seed: int) -> None:
        barrier.wait()
        for _ in range(2):
            try:
                outcomes[seed].append(s.run(tiny, seed=seed))
            except accel.ConcurrentUseError as exc:
                assert "accel.replicate" in str(exc)
                outcomes[seed].append("refused")

    def both(pipes: list[TinyPipeline]) -> None:
        threads = [threading.Thread(target=work, args=(p, seed)) for p, seed in zip(pipes, (0, 1))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    both([s.tiny, s.tiny])
    for seed, results in outcomes.items():
        assert len(results) == 2
        for result in results:
            if not isinstance(result, str):
                assert torch.equal(result, alone[seed])
    replica = TinyPipeline(s.family, accel.replicate(s.tiny.pipe), s.tiny.make_inputs, s.tiny.output_key)
    outcomes = {0: [], 1: []}
    both([s.tiny, replica])
    assert all(torch.equal(r, alone[seed]) for seed, results in outcomes.items() for r in results)


@pytest.mark.parametrize("stack", STACKS, ids=stack_id)
def test_deepcopy_is_refused_and_replicate_is_independent(stack, tmp_path):
    s = Stack(stack, tmp_path)
    s.apply()
    reference = s.run()
    with pytest.raises(accel.StateError, match="accel.replicate"):
        copy.deepcopy(s.tiny.pipe)
    with pytest.raises(accel.StateError, match="accel.replicate"):
        copy.deepcopy(s.tiny.denoiser)
    clone = accel.replicate(s.tiny.pipe)
    twin = TinyPipeline(s.family, clone, s.tiny.make_inputs, s.tiny.output_key)
    assert torch.equal(s.run(twin), reference)
    assert accel.summary(clone)["last_call"]["steps"] == STEPS
    assert accel.summary(s.tiny.pipe)["last_call"].get("denoiser_calls", 0) == 0  # the original's own stats
    assert torch.equal(s.run(), reference)
    assert accel.remove(clone) and accel.summary(s.tiny.pipe)["attached"]
    accel.apply(clone, *s.configs())
    assert torch.equal(s.run(twin), reference)


# ------------------------------------------------------------------------------------ pipelines
@pytest.mark.parametrize("stack", STACKS, ids=stack_id)
def test_from_pipe_is_refused_and_the_original_still_works(stack, tmp_path):
    s = Stack(stack, tmp_path)
    s.apply()
    other = TinyPipeline(s.family, type(s.tiny.pipe).from_pipe(s.tiny.pipe), s.tiny.make_inputs, s.tiny.output_key)
    other.pipe.set_progress_bar_config(disable=True)
    with pytest.raises(accel.StateError, match="from_pipe"):
        s.run(other)
    assert torch.equal(s.run(), s.reference())


@pytest.mark.parametrize("stack", STACKS, ids=stack_id)
def test_scheduler_swap_is_followed_from_the_first_call(stack, tmp_path):
    s = Stack(stack, tmp_path)
    s.apply()
    s.tiny.pipe.scheduler = type(s.tiny.pipe.scheduler).from_config(s.tiny.pipe.scheduler.config)
    assert torch.equal(s.run(), s.reference())


@pytest.mark.parametrize("stack", STACKS, ids=stack_id)
def test_fused_qkv_works_or_is_refused(stack, tmp_path):
    """Fusing the QKV projections after apply: the output stays the eager one (up to the fused matmul's
    rounding), or the call is refused naming the fused projections."""
    s = Stack(stack, tmp_path)
    s.apply()
    s.tiny.denoiser.fuse_qkv_projections()
    try:
        out = s.run()
    except accel.UnsupportedModelError as exc:
        assert "fused" in str(exc)
        return
    torch.testing.assert_close(out, s.reference(), rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------ no silent no-ops
def test_adaptive_guidance_acts_on_lumina2():
    """Lumina2Pipeline calls the transformer twice per step (prompt, then negative): AG drops the second call."""
    tiny = tiny_pipeline("lumina2")
    with torch.no_grad():
        plain = tiny(**tiny.inputs(seed=0, steps=4))
        accel.apply(tiny.pipe, accel.AdaptiveGuidanceConfig(threshold=-1.0))
        out = tiny(**tiny.inputs(seed=0, steps=4))
    summary = accel.summary(tiny.pipe)
    stats = summary["denoisers"]["transformer"]["plugins"]["adaptive_guidance"]
    assert stats["uncond_per_step"] == "C---" and stats["cfg_dropped_at_step"] == 1
    assert summary["last_call"]["nfe"] == 2 + 3
    assert (out - plain).abs().max() > 1e-3


def test_linear_ag_summary_reports_what_ran(tmp_path):
    """Predicting every other step: the unconditional branch runs again after a predicted step, so CFG
    was never dropped for good, and the per-step pattern says which steps evaluated it."""
    s = Stack(("linear_ag",), tmp_path)
    s.apply()
    s.run()
    stats = accel.summary(s.tiny.pipe)["denoisers"]["unet"]["plugins"]["linear_ag"]
    assert stats["uncond_per_step"] == "CpCpCpCp"
    assert stats["predicted_steps"] == [1, 3, 5, 7] and stats["cfg_dropped_at_step"] == 7
    assert accel.summary(s.tiny.pipe)["last_call"]["nfe"] == 2 * 4 + 4


@pytest.mark.parametrize(
    "claim, message",
    [
        ({"scheduler": "EulerDiscreteScheduler"}, "fitted with EulerDiscreteScheduler, the pipeline now uses DDIM"),
        ({"guidance_scale": 7.5}, "fitted at guidance scale 7.5, this call uses 4.0"),
        (
            {"denoiser": {"class": "UNet2DConditionModel", "config_sha256": "0", "weights": SKETCH}},
            "another config",
        ),
    ],
)
def test_linear_ag_refuses_coefficients_fitted_for_something_else(tmp_path, claim, message):
    config = linear_ag(tmp_path, "unet", STEPS)
    data = json.loads(open(config.coefficients).read())
    data.update(claim)
    path = tmp_path / "other.json"
    path.write_text(json.dumps(data))
    tiny = tiny_pipeline("unet")
    with pytest.raises(accel.ConfigError, match=message):
        accel.apply(tiny.pipe, accel.LinearAGConfig(coefficients=str(path)))
        tiny(**tiny.inputs(seed=0, steps=STEPS))


def test_linear_ag_warns_once_on_coefficients_of_other_weights(tmp_path):
    """Coefficients fitted on other weights of the same architecture (a LoRA, a fine-tune) still apply,
    with one warning naming the tensors that differ; another architecture is refused (above)."""
    config = linear_ag(tmp_path, "unet", STEPS)
    tiny = tiny_pipeline("unet", seed=1)  # same architecture, other weights
    with pytest.warns(UserWarning, match=r"fitted on other weights: its weights differ .* in \d+ of \d+ tensors"):
        accel.apply(tiny.pipe, config)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per model
        accel.remove(tiny.pipe)
        accel.apply(tiny.pipe, config)
    assert torch.isfinite(tiny(**tiny.inputs(seed=0, steps=STEPS))).all()


def test_bare_denoiser_step_count_must_match_the_calling_pipeline():
    tiny = tiny_pipeline("unet")
    accel.apply(tiny.pipe.unet, accel.DeepCacheConfig(interval=2), num_inference_steps=6)
    assert accel.summary(tiny.pipe)["attached"]  # plugins on a component are seen from the pipeline
    with pytest.raises(accel.StateError, match="num_inference_steps=6, but StableDiffusionPipeline runs 10 steps"):
        tiny(**tiny.inputs(seed=0, steps=10))
    out = tiny(**tiny.inputs(seed=0, steps=6))  # the step count it was applied for runs, as pipeline-level apply
    accel.remove(tiny.pipe.unet)
    accel.apply(tiny.pipe, accel.DeepCacheConfig(interval=2))
    assert torch.equal(out, tiny(**tiny.inputs(seed=0, steps=6)))


@pytest.mark.parametrize(
    "family, config, message",
    [
        ("sd3", accel.RASConfig(keep_tokens=(0, 99)), r"keep_tokens \[99\] are beyond this model's 16 image tokens"),
        ("wan", accel.SparseAttentionConfig(dense_layers=(0, 9)), r"dense_layers \[9\] are beyond this model's"),
        ("pixart", accel.BlockCacheConfig(live_first_blocks=2, live_last_blocks=1), "no block is ever cached"),
        ("pixart", accel.BlockCacheConfig(warmup_steps=8), r"warmup_steps \(8\) must be < the 8 steps"),
    ],
)
def test_settings_that_would_silently_do_nothing_are_refused(family, config, message):
    tiny = tiny_pipeline(family)
    with pytest.raises(accel.ConfigError, match=message):
        accel.apply(tiny.pipe, config)
        tiny(**tiny.inputs(seed=0, steps=STEPS))


def test_adaptive_guidance_min_steps_after_max_step_is_refused():
    with pytest.raises(accel.ConfigError, match=r"min_steps \(5\) must be <= max_step \(3\)"):
        accel.AdaptiveGuidanceConfig(min_steps=5, max_step=3)


@pytest.mark.parametrize(
    "stack, pattern",
    [
        (("block_cache",), "torch.compile before apply"),
        (("block_cache",), "torch.compile after apply"),
        (("block_cache",), "module.compile before apply"),
        (("sparse_attention",), "compile_repeated_blocks"),
        (("deep_cache",), "compile_repeated_blocks"),
    ],
)
def test_every_compile_pattern(stack, pattern, tmp_path):
    """Whole-denoiser compile before or after apply (as a wrapper or in place), and diffusers' regional
    ``compile_repeated_blocks``: no new graph on the second call or at 16 steps, same output as eager."""
    torch._dynamo.reset()
    graphs: list = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    s = Stack(stack, tmp_path)
    pipe = s.tiny.pipe
    attr = "unet" if s.family == "unet" else "transformer"
    if pattern == "torch.compile before apply":
        setattr(pipe, attr, torch.compile(getattr(pipe, attr), backend=backend))
        s.apply()
    elif pattern == "module.compile before apply":
        getattr(pipe, attr).compile(backend=backend)
        s.apply()
    else:
        s.apply()
        if pattern == "torch.compile after apply":
            setattr(pipe, attr, torch.compile(getattr(pipe, attr), backend=backend))
        else:
            getattr(pipe, attr).compile_repeated_blocks(backend=backend)
    with torch._dynamo.config.patch(recompile_limit=64, accumulated_recompile_limit=4096):
        first = s.run()
        compiled = len(graphs)
        second = s.run()
        longer = s.run(steps=2 * STEPS)
    torch._dynamo.reset()
    assert compiled >= 1 and len(graphs) == compiled
    assert torch.equal(first, second)
    torch.testing.assert_close(first, s.reference(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(longer, s.reference(steps=2 * STEPS), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "family, config", [("wan", accel.SparseAttentionConfig()), ("flux", accel.RASConfig(sample_ratio=0.5))]
)
def test_attention_backend_set_while_attached_survives_remove(family, config):
    """diffusers' set_attention_backend after accel.apply reaches accel's processors; on remove the
    original processors come back with that backend, self- and cross-attention alike (before: Wan's
    self-attention went back to the old backend while its cross-attention kept the new one)."""
    tiny = tiny_pipeline(family)
    model = tiny.denoiser
    accel.apply(tiny.pipe, config)
    model.set_attention_backend("_native_math")
    accel.remove(tiny.pipe)
    backends = {
        name: str(getattr(module.processor, "_attention_backend", None))
        for name, module in model.named_modules()
        if hasattr(module, "processor")
    }
    assert backends and set(backends.values()) == {"AttentionBackendName._NATIVE_MATH"}, backends
