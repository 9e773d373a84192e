"""accel tune: the stack space, the search (resume, processes), and plans (JSON, pick, refusals)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch

import accel
from accel.compat import check_compatible
from accel.fingerprint import denoiser_fingerprint, weights_sketch
from accel.pipelines.testing import tiny_pipeline, tiny_text_pipeline
from accel.plan import Plan, PlanSetting, PlanTargetConfig, distinct_front, load_plan
from accel.tuning.stack_space import StackSpace
from accel.tuning.tune import TuneSettings, tune

from .plugin_mixin import PluginTesterMixin, Target, at_apply

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
PROMPTS = [f"a handwritten {d}" for d in range(10)]
CALL = {"num_inference_steps": 8, "guidance_scale": 2.0, "height": 16, "width": 16}
#: a valid weights record of some other model
SKETCH = weights_sketch(
    torch.nn.Linear(2, 2, bias=False).requires_grad_(False).apply(lambda m: torch.nn.init.ones_(m.weight))
)
SMALL = dict(
    population=8, num_prompts=2, seeds=1, validation_prompts=2, validation_seeds=1, wall_repeats=0, solver=False
)


def _tune(out, generations=2, pipe=None, **changes):
    settings = TuneSettings(**{**SMALL, "generations": generations, "linear_ag": False, **changes})
    return tune(pipe or tiny_text_pipeline("unet"), str(out), settings, call=CALL, prompts=PROMPTS, progress=False)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """One small tune (2 generations, LinearAG on) that several tests read: ``(folder, plan)``."""
    out = tmp_path_factory.mktemp("tune") / "t"
    return out, _tune(out, generations=2, linear_ag=True)


# ---------------------------------------------------------------------- the space
@pytest.mark.parametrize("family", ["unet", "pixart", "sd3", "wan"])
def test_every_genome_decodes_to_a_stack_that_applies(family):
    tiny = tiny_pipeline(family)
    space = StackSpace(_adapter(tiny.pipe), 8, True)
    rng = np.random.default_rng(0)
    for _ in range(6):
        x = np.floor(rng.random(space.n_var) * (space.upper + 1)).astype(int)
        steps, configs = space.decode(x)
        assert steps in space.step_choices
        check_compatible(configs)  # pruned before anything runs
        accel.apply(tiny.pipe, *configs)
        tiny.pipe(**tiny.inputs(0, steps, 1, 2.0))
        accel.remove(tiny.pipe)
        assert space.key(space.canonical(x)) == space.key(x)  # canonical form is stable


def _adapter(pipe):
    from accel.api import adapter_of

    return adapter_of(pipe)


def test_space_prunes_incompatible_stacks_and_holds_fewer_steps():
    space = StackSpace(_adapter(tiny_pipeline("sd3").pipe), 20, True)
    assert {"block_cache", "ras", "adaptive_guidance"} <= set(space.plugin_names)
    x = space.encode(10, {"block_cache": {"interval": 3}, "ras": {"ratio": 0.5}})
    steps, configs = space.decode(x)
    assert steps == 10 and [type(c).__name__ for c in configs] == ["BlockCacheConfig"]  # RAS + BlockCache pruned
    seeds = {space.key(s) for s in space.seeds()}
    for steps in space.step_choices:  # every plain fewer-steps setting is in the first population
        assert space.key(space.encode(steps, {})) in seeds
    unet = StackSpace(_adapter(tiny_pipeline("unet").pipe), 20, guided=False)
    assert unet.plugin_names == ["deepcache"]  # no guidance plugins without CFG; no DiT plugins on a U-Net


def test_solver_gene_swaps_the_scheduler_first_on_schedules_searched_for_it(tmp_path):
    """The solver gene decodes to :class:`accel.SolverConfig` ahead of everything, then the schedule searched
    on that solver; no schedule file for a (steps, solver) pair switches the schedule off, and LinearAG,
    whose coefficients were fitted on the pipeline's own scheduler, becomes adaptive guidance under a solver."""
    tiny = tiny_pipeline("unet")  # DDIM: no schedule of its own
    unipc_4 = accel.TimestepScheduleConfig(reference_steps=8, indices=(0, 2, 4, 6))
    (tmp_path / "s4.json").write_text(json.dumps(unipc_4.to_dict()))
    coefficients = tmp_path / "c.json"
    coefficients.write_text("{}")  # only its existence is read while decoding

    def schedules(steps, solver):
        return str(tmp_path / "s4.json") if (steps, solver) == (4, "unipc") else None

    space = StackSpace(
        _adapter(tiny.pipe), 8, True, lambda steps: str(coefficients), schedules, solvers=("dpmsolver++", "unipc")
    )
    assert space.plugin_names[:2] == ["solver", "timestep_schedule"]
    assert space.describe()["solver.name"] == ["dpmsolver++", "unipc"]
    steps, configs = space.decode(
        space.encode(4, {"solver": {"name": "unipc"}, "timestep_schedule": {}, "deepcache": {}})
    )
    assert steps == 4 and configs[:2] == [accel.SolverConfig(solver="unipc"), unipc_4]
    assert type(configs[2]).__name__ == "DeepCacheConfig"
    accel.apply(tiny.pipe, *configs)
    tiny.pipe(**tiny.inputs(0, steps, 1, 2.0))
    assert accel.summary(tiny.pipe)["denoisers"]["unet"]["plugins"]["solver"]["scheduler"] == "UniPCMultistepScheduler"
    accel.remove(tiny.pipe)
    assert type(tiny.pipe.scheduler).__name__ == "DDIMScheduler"
    no_file = space.encode(4, {"solver": {"name": "dpmsolver++"}, "timestep_schedule": {}})
    assert space.key(no_file) == space.key(space.encode(4, {"solver": {"name": "dpmsolver++"}}))
    assert space.decode(no_file)[1] == [accel.SolverConfig(solver="dpmsolver++")]
    linear = {"adaptive_guidance": {"guidance_mode": "linear_ag"}}
    assert type(space.decode(space.encode(6, linear))[1][0]).__name__ == "LinearAGConfig"
    solved = space.encode(6, {"solver": {"name": "unipc"}, **linear})
    assert [type(c).__name__ for c in space.decode(solved)[1]] == ["SolverConfig", "AdaptiveGuidanceConfig"]
    assert space.key(solved) == space.key(space.encode(6, {"solver": {"name": "unipc"}, "adaptive_guidance": {}}))
    seeds = {space.key(x) for x in space.seeds()}
    for sampler in ({"solver": {"name": "unipc"}}, {"solver": {"name": "unipc"}, "timestep_schedule": {}}):
        assert space.key(space.encode(4, sampler)) in seeds  # the stronger rivals are in the first population


def test_guidance_window_genes_fit_the_sampler_and_the_guidance():
    """The guidance window is searched only with CFG; CFG-Zero*'s zeroed steps only on flow matching;
    the window and adaptive guidance decide the same branches, so the later one is pruned."""
    flow = StackSpace(_adapter(tiny_pipeline("sd3").pipe), 20, True, flow_matching=True)
    assert flow.describe()["guidance_window.zero_steps"] == [0, 1, 2]
    dpm = StackSpace(_adapter(tiny_pipeline("pixart").pipe), 20, True)
    assert dpm.describe()["guidance_window.zero_steps"] == [0]
    assert "guidance_window" not in StackSpace(_adapter(tiny_pipeline("sd3").pipe), 20, False).plugin_names
    x = flow.encode(10, {"guidance_window": {"start": 0.2, "stop": 0.6, "zero_steps": 1}})
    assert flow.decode(x) == (10, [accel.GuidanceWindowConfig(start=0.2, stop=0.6, zero_steps=1)])
    both = flow.encode(10, {"adaptive_guidance": {}, "guidance_window": {"stop": 0.6}})
    assert [type(c).__name__ for c in flow.decode(both)[1]] == ["AdaptiveGuidanceConfig"]


# ---------------------------------------------------------------------- the search
def test_plan_never_lies_below_fewer_steps(tuned):
    folder, plan = tuned
    rows = [json.load(open(folder / "evals" / name)) for name in os.listdir(folder / "evals")]
    assert len({r["steps"] for r in rows if not r["configs"]}) == 6  # 2, 3, 4, 5, 6, 8 plain steps all ran
    assert plan.info["fewer_steps"] and any(s.plugins for s in plan.settings)
    for point in plan.info["fewer_steps"]:  # held out: each plain step count is matched or beaten by the plan
        assert any(s.speedup >= point["speedup"] * 0.98 and s.psnr >= point["psnr"] - 1e-9 for s in plan.settings)


def test_resumed_tune_reaches_the_same_front(tmp_path, tuned):
    folder, whole = tuned
    _tune(tmp_path / "parts", generations=1, linear_ag=True)
    stopped = _tune(tmp_path / "parts", generations=2, linear_ag=True, minutes=0.0)  # the budget stops it at once
    assert json.load(open(tmp_path / "parts" / "checkpoint.json"))["generation"] == 1
    assert stopped.info["generations"] == 1
    resumed = _tune(tmp_path / "parts", generations=2, linear_ag=True)
    assert json.load(open(tmp_path / "parts" / "checkpoint.json")) == json.load(open(folder / "checkpoint.json"))
    assert [(s.num_inference_steps, [str(c) for c in s.plugins], s.speedup, s.quality) for s in resumed.settings] == [
        (s.num_inference_steps, [str(c) for c in s.plugins], s.speedup, s.quality) for s in whole.settings
    ]


def test_bad_tune_settings_are_refused_before_anything_runs(tmp_path):
    with pytest.raises(accel.ConfigError, match=r"tune.population must be an integer in \[4, 1000\], got 2"):
        TuneSettings(population=2)
    with pytest.raises(accel.ConfigError, match="tune metric must be one of"):
        TuneSettings(metric="fid")
    with pytest.raises(accel.ConfigError, match="tune schedule must be true or false, got 'no'"):
        TuneSettings(schedule="no")
    pipe = tiny_text_pipeline("unet")
    with pytest.raises(accel.ConfigError, match=r"tune.steps must be an integer in \[2, 10000\], got 1"):
        tune(
            pipe, str(tmp_path / "t"), TuneSettings(**SMALL), call={**CALL, "num_inference_steps": 1}, prompts=PROMPTS
        )
    with pytest.raises(accel.ConfigError, match="tune needs 4 distinct prompts"):
        tune(pipe, str(tmp_path / "t"), TuneSettings(**SMALL), call=CALL, prompts=PROMPTS[:3])


def test_tune_folder_of_another_setting_is_refused(tuned):
    with pytest.raises(accel.ConfigError, match="other settings.*search"):
        _tune(tuned[0], generations=2, linear_ag=True, seed=1)


def test_two_processes_or_a_kill_give_the_same_front_as_one_run(tmp_path, tiny_model):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    args = ["tune", tiny_model, "--prompts", str(prompts), "--steps", "8", "--guidance-scale", "2", "--population",
            "8", "--generations", "2", "--num-prompts", "2", "--validation-prompts", "2", "--validation-seeds", "1",
            "--wall-repeats", "0", "--no-linear-ag", "--no-solver", "--no-progress"]  # fmt: skip
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    # on a machine without CUDA, --multi_gpu starts gloo CPU processes (--cpu would start one, whatever
    # --num_processes says)
    launch = [accelerate, "launch", "--multi_gpu", "--num_machines", "1", "--mixed_precision", "no",
              "--dynamo_backend", "no", "--main_process_port", "29531"]  # fmt: skip
    for out, procs in (("one", "1"), ("two", "2")):
        cmd = [*launch, "--num_processes", procs, "-m", "accel.cli", *args, "--out", str(tmp_path / out)]
        if procs == "1":
            cmd = [sys.executable, "-m", "accel.cli", *args, "--out", str(tmp_path / out)]
        subprocess.run(cmd, env=ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900)
    one, two = (json.load(open(tmp_path / out / "plan.json")) for out in ("one", "two"))
    assert one["settings"] == two["settings"] and one["info"]["fewer_steps"] == two["info"]["fewer_steps"]
    assert json.load(open(tmp_path / "one" / "checkpoint.json")) == json.load(
        open(tmp_path / "two" / "checkpoint.json")
    )
    assert sorted(os.listdir(tmp_path / "one" / "evals")) == sorted(os.listdir(tmp_path / "two" / "evals"))

    # killed in the middle of generation 1 (SIGKILL once 2 of its stacks are on disk), then run again:
    # the same front as uninterrupted
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "accel.cli", *args, "--out", str(killed)]
    process = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, at_checkpoint = time.monotonic() + 600, None
    while process.poll() is None and time.monotonic() < deadline:
        if at_checkpoint is None and (killed / "checkpoint.json").exists():
            at_checkpoint = len(os.listdir(killed / "evals"))  # generation 0 done
        if at_checkpoint is not None and len(os.listdir(killed / "evals")) >= at_checkpoint + 2:
            process.kill()
            break
        time.sleep(0.02)
    process.wait()
    assert process.returncode != 0 and not (killed / "plan.json").exists()  # it really was cut short
    subprocess.run(cmd, env=ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900)
    assert json.load(open(killed / "plan.json"))["settings"] == one["settings"]
    assert json.load(open(killed / "checkpoint.json")) == json.load(open(tmp_path / "one" / "checkpoint.json"))


# ---------------------------------------------------------------------- plans
def test_a_plan_with_the_step_axis_genes_round_trips_and_gives_the_same_output(tmp_path):
    """A setting holding the sampler's genes (solver, its searched schedule) and the guidance window with
    CFG-Zero*'s zeroed steps saves as JSON, loads equal, and its configs give the output of applying them
    directly; the target check sees the scheduler the solver replaced."""
    tiny = tiny_pipeline("sd3")
    configs = (
        accel.SolverConfig(solver="unipc"),
        accel.TimestepScheduleConfig(reference_steps=8, indices=(0, 2, 3, 5)),
        accel.GuidanceWindowConfig(start=0.25, stop=0.75, zero_steps=1),
    )
    target = {"denoiser": denoiser_fingerprint(tiny.denoiser), "scheduler": type(tiny.pipe.scheduler).__name__}
    setting = PlanSetting(configs, 4, 2.5, {"promised": {"psnr": 30.0}, "validated": {"psnr": 30.0}})
    Plan("tiny-sd3", target, [setting]).save(str(tmp_path / "plan.json"))
    loaded = load_plan(str(tmp_path)).settings[0]
    assert loaded.plugins == configs and loaded.num_inference_steps == 4
    outputs = []
    for apply in (configs, loaded.configs):
        accel.apply(tiny.pipe, *apply)
        outputs.append(tiny(**tiny.inputs(0, 4, 1, 2.0)))
        stats = accel.summary(tiny.pipe)["denoisers"]["transformer"]["plugins"]["guidance_window"]
        accel.remove(tiny.pipe)
        assert stats["zeroed_steps"] == [0] and stats["uncond_per_step"] == "CC-"  # steps 1-3; step 0 never ran
    assert torch.equal(*outputs)
    assert type(tiny.pipe.scheduler).__name__ == target["scheduler"]


def test_plan_round_trips_and_moves_with_its_folder(tmp_path, tuned):
    shutil.copytree(tuned[0], tmp_path / "orig")
    tuned_plan = load_plan(str(tmp_path / "orig"))  # its files now in the copy
    coefficients = str(tmp_path / "orig" / "linear_ag" / "steps4.json")
    setting = tuned_plan.settings[-1]
    with_file = dataclasses.replace(  # a setting that reads a file, whatever the tiny search found
        setting, configs=(accel.LinearAGConfig(coefficients=coefficients), setting.configs[-1]), num_inference_steps=4
    )
    plan = dataclasses.replace(tuned_plan, settings=[*tuned_plan.settings, with_file])
    plan.save(str(tmp_path / "orig" / "plan.json"))
    shutil.move(tmp_path / "orig", tmp_path / "moved")
    loaded = load_plan(str(tmp_path / "moved"))
    assert [(s.num_inference_steps, s.speedup, s.quality, s.wall_speedup) for s in loaded.settings] == [
        (s.num_inference_steps, s.speedup, s.quality, s.wall_speedup) for s in plan.settings
    ]
    for a, b in zip(loaded.settings, plan.settings):
        assert [type(c) for c in a.configs] == [type(c) for c in b.configs]
        for config in a.plugins:  # file fields now point into the moved folder
            for field in type(config).path_fields:
                value = getattr(config, field)
                assert not value.endswith(".json") or value.startswith(str(tmp_path / "moved"))
    again = Plan.from_dict(json.loads(json.dumps(loaded.to_dict())))
    assert [s.configs for s in again.settings] == [s.configs for s in loaded.settings]
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(accel.ConfigError, match=r"outside the plan's folder.*Plan.export"):
        loaded.save(str(tmp_path / "elsewhere" / "plan.json"))  # it would point at files it does not hold
    loaded.export(str(tmp_path / "shipped"))  # a plan folder of its own: plan.json plus the files it reads
    shutil.rmtree(tmp_path / "moved")
    shipped = load_plan(str(tmp_path / "shipped"))
    assert [str(s) for s in shipped.settings] == [str(s) for s in plan.settings]
    assert {
        os.path.dirname(c.coefficients) for s in shipped.settings for c in s.plugins if hasattr(c, "coefficients")
    } == {str(tmp_path / "shipped" / "data")}


def test_plan_settings_run_and_equal_their_plugins_alone(tuned):
    plan = load_plan(str(tuned[0] / "plan.json"))
    setting = plan.pick(speedup=max(s.speedup for s in plan.settings if s.plugins))
    assert setting.plugins and isinstance(setting.configs[-1], PlanTargetConfig)
    pipe = tiny_text_pipeline("unet")

    def run(configs):
        accel.apply(pipe, *configs)
        try:
            gen = torch.Generator().manual_seed(3)
            return pipe(
                "a handwritten 9",
                generator=gen,
                output_type="pt",
                **{**CALL, "num_inference_steps": setting.num_inference_steps},
            ).images
        finally:
            accel.remove(pipe)

    assert torch.equal(run(setting.configs), run(setting.plugins))  # the target check changes nothing
    accel.apply(pipe, *setting.configs)
    assert "plan_target" in str(accel.summary(pipe))
    accel.remove(pipe)


def _plan(points):
    fingerprint = {"class": "X", "config_sha256": "0", "weights": SKETCH}
    target = PlanTargetConfig(
        model="m", denoiser=tuple(sorted(fingerprint.items())), scheduler="S", num_inference_steps=4
    )
    settings = [
        PlanSetting((target,), 4, speedup, {"promised": {"psnr": q}, "validated": {"psnr": q}})
        for speedup, q in points
    ]
    return Plan("m", {"denoiser": fingerprint, "scheduler": "S"}, settings)


def test_pick_returns_the_setting_that_meets_the_request_at_the_least_cost():
    plan = _plan([(1.0, 100.0), (1.8, 40.0), (2.5, 33.0), (3.2, 31.0), (4.1, 25.0)])
    assert plan.pick(speedup=3).speedup == 3.2  # the best quality among those at least 3x faster
    assert plan.pick(speedup=2.5).speedup == 2.5
    assert plan.pick(min_psnr=32).speedup == 2.5  # the fastest reaching 32 dB
    assert plan.pick(min_psnr=25).speedup == 4.1
    with pytest.raises(accel.ConfigError, match="reaches 5x; it spans 1.00x to 4.10x"):
        plan.pick(speedup=5)
    with pytest.raises(accel.ConfigError, match="best reaches 100.00 dB"):
        plan.pick(min_psnr=120)
    near = _plan([(2.48, 52.0), (2.50, 46.0), (3.3, 45.0)])  # 1% faster for 6 dB less is no real choice
    assert near.pick(speedup=2.5).speedup == 2.48  # speedups within 2% count as equal
    assert [s.speedup for s in distinct_front(near.settings)] == [2.48, 3.3]
    with pytest.raises(accel.ConfigError, match="exactly one"):
        plan.pick(speedup=2, min_psnr=30)
    with pytest.raises(accel.ConfigError, match="positive"):
        plan.pick(speedup=-1)


def _target_for(pipe, **changes):
    fields = dict(
        model="tiny",
        denoiser=tuple(sorted(denoiser_fingerprint(pipe.unet).items())),
        scheduler=type(pipe.scheduler).__name__,
        num_inference_steps=4,
        guidance_scale=2.0,
    )
    return PlanTargetConfig(**{**fields, **changes})


def test_a_plan_is_refused_on_another_model_scheduler_step_count_or_guidance():
    from diffusers import EulerDiscreteScheduler

    pipe = tiny_text_pipeline("unet")
    pixart = tiny_text_pipeline("pixart")
    with pytest.raises(accel.ConfigError, match="another config|made for a UNet2DConditionModel"):
        accel.apply(pixart, _target_for(pipe))
    euler = tiny_text_pipeline("unet")
    euler.scheduler = EulerDiscreteScheduler.from_config(euler.scheduler.config)
    with pytest.raises(accel.ConfigError, match="tuned with the DDIMScheduler scheduler, the pipeline uses Euler"):
        accel.apply(euler, _target_for(pipe))
    accel.apply(pipe, _target_for(pipe))
    call = {**CALL, "output_type": "pt"}
    pipe("a handwritten 1", **{**call, "num_inference_steps": 4})  # as tuned: runs
    with pytest.raises(accel.ConfigError, match="tuned for num_inference_steps=4, the pipeline runs 8"):
        pipe("a handwritten 1", **call)
    with pytest.raises(accel.ConfigError, match="guidance scale 2, this call uses 5"):
        pipe("a handwritten 1", **{**call, "num_inference_steps": 4, "guidance_scale": 5.0})
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    with pytest.raises(accel.ConfigError, match="the pipeline uses EulerDiscreteScheduler"):
        pipe("a handwritten 1", **{**call, "num_inference_steps": 4})
    accel.remove(pipe)


def test_other_weights_or_size_run_with_one_warning_or_are_refused_when_strict():
    """A fused LoRA or a fine-tune (same architecture, other weights) and another latent size run, with
    one warning naming the difference and a note in the summary; strict=True refuses them."""
    pipe = tiny_text_pipeline("unet")
    call = {**CALL, "output_type": "pt", "num_inference_steps": 4}
    other = tiny_text_pipeline("unet")
    with torch.no_grad():  # a LoRA-sized change (5% of the norm) on every attention query
        for name, param in other.unet.named_parameters():
            if name.endswith("to_q.weight"):
                param.add_(0.05 * param.norm() * torch.randn_like(param) / param.numel() ** 0.5)
    with pytest.raises(accel.ConfigError, match=r"weights differ .*to_q\.weight.*strict=True"):
        accel.apply(other, _target_for(pipe, strict=True))
    assert accel.get_handle(other) is None  # nothing stays attached after a refusal
    with pytest.warns(UserWarning, match=r"tuned for 'tiny', but its weights differ .* in \d+ of \d+ tensors"):
        accel.apply(other, _target_for(pipe))
    other("a handwritten 1", **call)
    assert accel.summary(other)["denoisers"]["unet"]["plugins"]["plan_target"]["weights"] == (
        "differ from the tuned ones"
    )
    accel.remove(other)
    bf16 = tiny_text_pipeline("unet").to(dtype=torch.bfloat16)  # the same weights in another dtype: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        accel.apply(bf16, _target_for(pipe))
    accel.remove(bf16)

    tuned_shape = (4, 8, 8)  # CALL's 16 x 16 pixels through the tiny VAE (factor 2)
    accel.apply(pipe, _target_for(pipe, latent_shape=tuned_shape))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pipe("a handwritten 1", **call)  # as tuned: silent
    with pytest.warns(UserWarning, match=r"latents of shape \(4, 8, 8\) per sample, this call makes \(4, 16, 16\)"):
        pipe("a handwritten 1", **{**call, "height": 32, "width": 32})
    assert "tuned at (4, 8, 8)" in accel.summary(pipe)["denoisers"]["unet"]["plugins"]["plan_target"]["latent_shape"]
    accel.remove(pipe)
    accel.apply(pipe, _target_for(pipe, latent_shape=tuned_shape, strict=True))
    with pytest.raises(accel.ConfigError, match="another height, width or frame count.*strict=True"):
        pipe("a handwritten 1", **{**call, "height": 32, "width": 32})
    accel.remove(pipe)


def test_load_plan_errors_are_clear(tmp_path):
    with pytest.raises(accel.NotFoundError, match="accel tune MODEL --out DIR"):
        load_plan(str(tmp_path / "nothing"))
    (tmp_path / "bad.json").write_text('{"format": "accel-cache-search/1"}')
    with pytest.raises(accel.ConfigError, match="not an accel plan"):
        load_plan(str(tmp_path / "bad.json"))
    (tmp_path / "notjson.json").write_text("import os")
    with pytest.raises(accel.ConfigError, match="is not valid JSON"):
        load_plan(str(tmp_path / "notjson.json"))
    data = _plan([(2.0, 30.0)]).to_dict()
    data["settings"][0]["configs"] = [{"type": "LinearAGConfig", "coefficients": "../../etc/passwd"}]
    (tmp_path / "escape.json").write_text(json.dumps(data))
    with pytest.raises(accel.ConfigError, match="leaves the plan's folder"):
        load_plan(str(tmp_path / "escape.json"))


# ---------------------------------------------------------------------- plugin contract
def _tiny_unet_target(**changes):
    from accel.pipelines.testing import tiny_denoiser

    fields = dict(
        model="tiny",
        denoiser=tuple(sorted(denoiser_fingerprint(tiny_denoiser("unet")).items())),
        scheduler="DDIMScheduler",
        num_inference_steps=4,
        guidance_scale=None,
    )
    return PlanTargetConfig(**{**fields, **changes})


class TestPlanTargetPlugin(PluginTesterMixin):
    """The shared plugin contract on the tiny SD pipeline: the plan's target check computes nothing."""

    config_cls = PlanTargetConfig
    plugin_name = "plan_target"
    summary_keys = ("tuned_for", "num_inference_steps")
    unsupported_family = "timm_vit"
    changes_output = False
    bad_configs = [
        ({"num_inference_steps": 0}, "PlanTargetConfig.num_inference_steps must be an integer in [1, 100000], got 0"),
        ({"denoiser": (("class", "X"),)}, "PlanTargetConfig.denoiser must hold the tuned denoiser's class"),
        at_apply({"scheduler": "EulerDiscreteScheduler"}, "tuned with the EulerDiscreteScheduler scheduler"),
        at_apply(
            {"denoiser": (("class", "UNet2DConditionModel"), ("config_sha256", "0"), ("weights", SKETCH))},
            "does not fit this pipeline",
        ),  # fmt: skip
    ]
    identity_stats = {"tuned_for": "tiny"}

    def make_target(self):
        return Target.pipeline("unet", steps=4)

    def config(self):
        return _tiny_unet_target()

    def identity_config(self):
        return _tiny_unet_target()

    def check_active(self, stats, summary):
        assert stats == {"tuned_for": "tiny", "num_inference_steps": 4}


# ---------------------------------------------------------------------- eval entries on fewer steps
def test_eval_grid_entries_may_run_their_own_step_count():
    from accel.evaluation.spec import entry_name, parse_entry

    entry = {"steps": 10, "configs": [{"type": "DeepCacheConfig", "interval": 2}, {"type": "AdaptiveGuidanceConfig"}]}
    steps, configs = parse_entry(entry, 20)
    assert steps == 10 and [type(c).__name__ for c in configs] == ["DeepCacheConfig", "AdaptiveGuidanceConfig"]
    assert entry_name(steps, configs, 20) == "steps10+deepcache_interval2+ag"
    assert entry_name(20, configs, 20) == "deepcache_interval2+ag"  # the sweep's own step count: no prefix
    assert parse_entry({"type": "DeepCacheConfig"}, 20)[0] == 20
    with pytest.raises(accel.ConfigError, match=r"steps must be an integer in \[1, 20\], got 30"):
        parse_entry({"steps": 30, "configs": [{"type": "DeepCacheConfig"}]}, 20)
    with pytest.raises(accel.ConfigError, match="plain fewer steps go in `fewer_steps`"):
        parse_entry({"steps": 10, "configs": []}, 20)
    with pytest.raises(accel.ConfigError, match="got the keys"):
        parse_entry({"steps": 10, "plugins": []}, 20)


# ---------------------------------------------------------------------- the GPU path, on the CPU
def test_a_bf16_tune_at_another_size_writes_a_plan_for_the_bf16_pipeline(tmp_path, tiny_model, monkeypatch):
    """`accel tune FOLDER --dtype bfloat16 --call height=64 width=64` (no --guidance-scale): the plan records
    bfloat16, the call, the latent size and the pipeline's own default guidance (7.5 for SD), searched
    AG; its settings apply unchanged to the bf16 pipeline at that size, silently; its eval.yaml runs
    from any folder."""
    from diffusers import StableDiffusionPipeline

    from accel.cli import main
    from accel.evaluation.spec import load_specs

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    out = tmp_path / "tune"
    argv = ["tune", tiny_model, "--out", str(out), "--prompts", str(prompts), "--steps", "6", "--population", "4",
            "--generations", "1", "--num-prompts", "2", "--validation-prompts", "2", "--validation-seeds", "1",
            "--wall-repeats", "0", "--no-linear-ag", "--no-solver", "--no-progress", "--dtype", "bfloat16",
            "--call", "height=64", "width=64"]  # fmt: skip
    assert main(argv) == 0
    data = json.load(open(out / "plan.json"))
    assert data["info"]["ran"]["dtype"] == "bfloat16" and data["info"]["ran"]["device"] == "cpu"
    assert data["target"]["call"] == {"height": 64, "width": 64} and data["target"]["latent_shape"] == [4, 32, 32]
    assert data["target"]["guidance_scale"] == 7.5  # StableDiffusionPipeline.__call__'s default
    assert "adaptive_guidance" in json.load(open(out / "tune.json"))["space"]  # a CFG pipeline: AG is searched
    plan = load_plan(str(out))
    pipe = StableDiffusionPipeline.from_pretrained(tiny_model, dtype=torch.bfloat16)
    pipe.set_progress_bar_config(disable=True)
    for setting in plan.settings:
        accel.apply(pipe, *setting.configs)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no weights or size warning: it is the tuned pipeline
            image = pipe(
                "a handwritten 3", num_inference_steps=setting.num_inference_steps, guidance_scale=7.5, height=64,
                width=64, output_type="pt", generator=torch.Generator().manual_seed(0),
            ).images  # fmt: skip
        assert image.shape == (1, 3, 64, 64) and torch.isfinite(image).all()
        accel.remove(pipe)
    monkeypatch.chdir("/")
    spec = load_specs(str(out / "eval.yaml"))[0]  # from another folder: every path is absolute
    assert spec.dtype == "bfloat16" and spec.call == {"height": 64, "width": 64} and spec.guidance_scale == 7.5


def test_batches_give_the_results_of_one_big_call():
    """Per-sample generators: a sample's image does not depend on its batch (equal up to the last bits of
    batched matrix products), and the FLOPs counted are the same."""
    from accel.tuning.tune import Samples

    pipe = tiny_text_pipeline("sd3")
    pipe.set_progress_bar_config(disable=True)
    call = {"num_inference_steps": 6, "guidance_scale": 2.0, "height": 16, "width": 16}
    prompts = [f"a red square {i}" for i in range(3)]
    whole = Samples(pipe, prompts, [0, 1], call, "psnr", None, batch_size=None)
    single = Samples(pipe, prompts, [0, 1], call, "psnr", None, batch_size=1)
    torch.testing.assert_close(single.baseline, whole.baseline, rtol=0, atol=1e-5)
    assert single.baseline_flops == whole.baseline_flops
    stack = [accel.BlockCacheConfig(interval=2, forecast_order=1), accel.AdaptiveGuidanceConfig(threshold=0.9)]
    rows = [s.score(4, stack) for s in (whole, single)]
    assert rows[0]["flops_ratio"] == rows[1]["flops_ratio"]
    assert abs(rows[0]["psnr"] - rows[1]["psnr"]) < 1e-3


PEAK_RSS = """
import sys, torch
from accel.pipelines.testing import tiny_text_pipeline
from accel.tuning.tune import Samples
torch.set_num_threads(1)
pipe = tiny_text_pipeline("unet")
pipe.set_progress_bar_config(disable=True)
call = {"num_inference_steps": 2, "guidance_scale": 2.0, "height": 96, "width": 96}
Samples(pipe, ["a handwritten 0"], [0], call, "psnr", None, batch_size=1)  # warm: one sample's peak

def high_water_kb():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak resident size starts again from the current one
before = high_water_kb()
prompts = [f"a handwritten {i}" for i in range(int(sys.argv[1]))]
Samples(pipe, prompts, [0], call, "psnr", None, batch_size=int(sys.argv[2]) or None)
print(high_water_kb() - before)
"""


@pytest.mark.slow
def test_peak_memory_with_batch_size_one_does_not_grow_with_the_prompts():
    """Generating 8 against 32 calibration prompts at 96 px with --batch-size 1: the peak resident memory
    stays where one sample put it (within 20 MB), where one call for all of them grows with the prompts."""

    def peak(prompts: int, batch: int) -> int:
        out = subprocess.run(
            [sys.executable, "-c", PEAK_RSS, str(prompts), str(batch)], env=ENV, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr[-2000:]
        return int(out.stdout.split()[-1])

    few, many, whole = peak(8, 1), peak(32, 1), peak(32, 0)  # kB the peak grew past one sample's
    assert many < few + 20_000, (few, many)  # within 20 MB
    assert whole > many + 100_000, (many, whole)  # the check can fail: one call for all of them does grow


def test_a_tune_searches_timestep_schedules_and_validates_against_them(tmp_path):
    """On a flow-matching pipeline the tune searches a schedule per step count below the baseline's (on
    the calibration samples, the baseline's own levels), makes it a gene, and validates the fewer-steps
    curve on the searched schedule as a second rival; the plan records that curve. DDIM gets no gene."""
    out = tmp_path / "t"
    plan = _tune(out, generations=1, pipe=tiny_text_pipeline("sd3"))
    space = json.loads((out / "tune.json").read_text())["space"]
    assert space["timestep_schedule"] == [False, True]
    below = [s for s in space["steps"] if s < CALL["num_inference_steps"]]
    for steps in below:
        config = accel.TimestepScheduleConfig.load(str(out / "schedules" / f"schedule_{steps}.json"))
        assert config.reference_steps == CALL["num_inference_steps"] and config.steps == steps
    rows = plan.info["searched_schedule"]
    assert sorted(r["num_inference_steps"] for r in rows) == below
    assert all(np.isfinite(r["psnr"]) for r in rows)
    ddim = StackSpace(_adapter(tiny_pipeline("unet").pipe), 8, True)
    assert "timestep_schedule" not in ddim.plugin_names


def test_a_tune_of_a_ddim_pipeline_searches_solvers_on_their_own_schedules(tmp_path):
    """DDIM takes no schedule, so the searched schedules exist on the solver gene's solvers only, one folder
    each; the best-solver rival is validated per step count and drawn; every plan setting applies through
    the plan, a solver first where it has one, and the plan's target check sees the DDIM it replaced."""
    out, call = tmp_path / "t", {**CALL, "num_inference_steps": 4}
    settings = TuneSettings(**{**SMALL, "generations": 0, "linear_ag": False, "solver": True})
    plan = tune(tiny_text_pipeline("unet"), str(out), settings, call=call, prompts=PROMPTS, progress=False)
    space = json.loads((out / "tune.json").read_text())["space"]
    assert space["solver.name"] == ["dpmsolver++", "unipc"] and space["timestep_schedule"] == [False, True]
    below = [s for s in space["steps"] if s < call["num_inference_steps"]]
    assert not (out / "schedules" / f"schedule_{below[0]}.json").exists()
    for solver in ("dpmsolver++", "unipc"):
        for steps in below:
            config = accel.TimestepScheduleConfig.load(str(out / "schedules" / solver / f"schedule_{steps}.json"))
            assert config.reference_steps == call["num_inference_steps"] and config.steps == steps
    rows = plan.info["best_solver"]
    assert [r["num_inference_steps"] for r in rows] == space["steps"]
    assert all(r["solver"] in ("dpmsolver++", "unipc") and np.isfinite(r["psnr"]) for r in rows)
    assert (out / "front.png").stat().st_size > 0
    pipe = tiny_text_pipeline("unet")
    for setting in load_plan(str(out)).settings:
        names = [type(c).__name__ for c in setting.plugins]
        assert "SolverConfig" not in names[1:]
        accel.apply(pipe, *setting.configs)
        pipe(prompt=PROMPTS[0], **{**call, "num_inference_steps": setting.num_inference_steps})
        accel.remove(pipe)
        assert type(pipe.scheduler).__name__ == "DDIMScheduler"


# ---------------------------------------------------------------------- the neighbourhood gene
def test_neighbourhood_gene_decodes_to_gna_runs_block_sparse_and_round_trips_through_a_plan(tmp_path):
    """Sparse attention's pattern gene offers GNA (arXiv 2504.16922) in the perfectly block-sparse settings
    that fit the tuned call's video token grid; a decoded one runs exactly block-sparse, and a plan holding
    it saves, loads and applies the same config."""
    from accel.pipelines import load
    from accel.pipelines.builtin import BUILTIN_MODELS
    from accel.sparse_attention.grid import probe_grid

    pipe = load("wan-moving-shapes")
    pipe.set_progress_bar_config(disable=True)
    call = dict(BUILTIN_MODELS["wan-moving-shapes"].call_defaults)
    grid = probe_grid(pipe, call)
    assert grid == (5, 8, 8) and probe_grid(tiny_text_pipeline("unet"), {"height": 16, "width": 16}) is None
    blind = StackSpace(_adapter(pipe), 20, True)  # grid unknown: no neighbourhood choice
    assert blind.describe()["sparse_attention.pattern"] == ["dynamic"]
    space = StackSpace(_adapter(pipe), 20, True, grid=grid)
    choices = space.describe()["sparse_attention.pattern"]
    assert choices[0] == "dynamic" and "neighborhood:5x4x8/1x4x4" in choices
    assert "neighborhood:4x12x12/4x4x4" not in choices  # a kernel of 12 rows on 8: refused by the plugin, left out
    x = space.encode(16, {"sparse_attention": {"pattern": "neighborhood:5x4x8/1x4x4", "tau": 0.5}})
    steps, (config,) = space.decode(x)
    expected = accel.SparseAttentionConfig(
        pattern="neighborhood", kernel_size=(5, 4, 8), stride=(1, 4, 4), tile=(1, 4, 4), block_size=16
    )
    assert steps == 16 and config == expected
    same = space.encode(16, {"sparse_attention": {"pattern": "neighborhood:5x4x8/1x4x4"}})
    assert space.key(x) == space.key(same)  # tau does not matter to the neighbourhood pattern: one key

    target = {"denoiser": denoiser_fingerprint(pipe.transformer), "scheduler": type(pipe.scheduler).__name__}
    setting = PlanSetting((config,), steps, 1.2, {"promised": {"psnr": 30.0}, "validated": {"psnr": 30.0}})
    Plan("wan-moving-shapes", target, [setting]).save(str(tmp_path / "plan.json"))
    loaded = load_plan(str(tmp_path / "plan.json")).settings[0]
    assert loaded.plugins == (expected,) and loaded.num_inference_steps == 16
    configs = [dataclasses.replace(c, backend="torch") if c == expected else c for c in loaded.configs]
    accel.apply(pipe, *configs)  # the plan's target check too; the torch backend: no compile in a test
    pipe(prompt="a red square", output_type="pt", **{**call, "num_inference_steps": 16})
    stats = accel.summary(pipe)["denoisers"]["transformer"]["plugins"]["sparse_attention"]
    accel.remove(pipe)
    assert stats["backends"] == {"torch": stats["sparse_calls"]} and stats["sparse_calls"] > 0  # block-sparse path
    sparse = [d for per in stats["density_by_layer_step"].values() for d in per if d is not None and d < 1]
    assert sparse and all(abs(d - 0.5) < 1e-6 for d in sparse)  # prod(kernel) / 320 tokens, exactly
