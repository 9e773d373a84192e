"""The demo's "tuned" preset: a model's plan (``accel tune``) picked by a speed slider, via the API and handlers."""

from __future__ import annotations

import json
import os
import re

import pytest

pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from accel.app import AppError, ModelRegistry, ModelSpec, build_app  # noqa: E402
from accel.app.app import plugin_inputs  # noqa: E402
from accel.app.models import NO_TUNED_PLAN, ModelEntry  # noqa: E402
from tests.test_app import free_port  # noqa: E402

STEPS = 4
SIZE = 16
GUIDANCE = 3.0  # the plan's; the requests below send 2.0, which the tuned preset replaces
# (steps, plugins, FLOP speedup, validated PSNR) of the hand-made plan
SETTINGS = [(4, "none", 1.0, 60.0), (3, "deepcache", 2.0, 35.0), (2, "ag", 3.0, 25.0)]


def make_plan(pipe, folder: str, model: str = "tiny-unet", settings=SETTINGS):
    """A plan for ``pipe`` as ``accel tune`` writes it, made by hand (``folder/plan.json``)."""
    from accel.caching import DeepCacheConfig
    from accel.fingerprint import denoiser_fingerprint
    from accel.plan import Plan, PlanSetting, PlanTargetConfig
    from accel.sampling import AdaptiveGuidanceConfig

    fingerprint = denoiser_fingerprint(getattr(pipe, "unet", None) or pipe.transformer)
    scheduler = type(pipe.scheduler).__name__
    plugins = {"none": (), "deepcache": (DeepCacheConfig(interval=2),), "ag": (AdaptiveGuidanceConfig(threshold=-1),)}

    def setting(steps: int, name: str, speedup: float, psnr: float) -> PlanSetting:
        guard = PlanTargetConfig(
            model=model,
            denoiser=tuple(sorted(fingerprint.items())),
            scheduler=scheduler,
            num_inference_steps=steps,
            guidance_scale=GUIDANCE,
        )
        quality = {"promised": {"psnr": psnr + 1}, "validated": {"psnr": psnr}}
        return PlanSetting((*plugins[name], guard), steps, speedup, quality)

    target = {
        "denoiser": fingerprint,
        "scheduler": scheduler,
        "num_inference_steps": STEPS,
        "guidance_scale": GUIDANCE,
    }
    plan = Plan(model, target, [setting(*s) for s in settings])
    os.makedirs(folder, exist_ok=True)
    plan.save(os.path.join(folder, "plan.json"))
    return plan


@pytest.fixture(scope="module")
def tuned_server(tmp_path_factory):
    """A demo with a tiny U-Net that has a plan and a tiny Wan that has none; yields (url, plan, registry)."""
    from accel.pipelines.testing import tiny_text_pipeline

    root = tmp_path_factory.mktemp("tuned")
    pipe = tiny_text_pipeline("unet")
    plan = make_plan(pipe, str(root / "plans" / "tiny-unet"))
    models = {
        "tiny-unet": ModelSpec(
            pipe, call_defaults={"height": SIZE, "width": SIZE}, plan_dir=str(root / "plans" / "tiny-unet")
        ),
        "tiny-wan": ModelSpec(tiny_text_pipeline("wan"), call_defaults={"height": 32, "width": 32, "num_frames": 5}),
    }
    demo = build_app(models=models, runs_root=str(root), allow_custom_models=False)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/", plan, demo.accel_registry
    demo.close()


def client_of(url: str):
    """A client with its own session (model selection changes the speed slider's range per session)."""
    return gradio_client.Client(url, verbose=False)


def generate_tuned(client, speedup, plugins=None, model="tiny-unet", steps=STEPS):
    """The UI's "generate" endpoint with the tuned preset on (the request's guidance is 2.0)."""
    inputs = plugin_inputs(plugins, tuned=True, tuned_speedup=speedup)
    return client.predict(model, "a handwritten 7", 0, steps, 2.0, SIZE, 1, 9, *inputs, api_name="/generate")


def generate_json(client, tuned=True, speedup=None):
    return client.predict(
        "tiny-unet", "a handwritten 3", 1, STEPS, 2.0, SIZE, 1, 0, "{}", tuned, speedup, api_name="/generate_json"
    )


def test_tuned_run_uses_the_plans_setting_steps_and_guidance(tuned_server):
    url, plan, _ = tuned_server
    setting = plan.pick(speedup=2.5)
    status, _b, _a, _g1, _g2, markdown, metrics, summary = generate_tuned(
        client_of(url), 2.5, plugins={"deepcache": {"interval": 3}}
    )
    assert setting.num_inference_steps == 2 and [str(c) for c in setting.plugins] == ["ag_threshold-1"]
    assert f"tuned plan: {setting} (plugin panels not used)" in status
    assert metrics["plugins"] == [str(c) for c in setting.configs]  # the plan's; the panel's deepcache is not used
    assert metrics["steps"] == STEPS and metrics["accelerated_steps"] == 2  # baseline: the plan's full step count
    assert metrics["guidance"] == GUIDANCE  # both runs at the plan's guidance (its target check passed)
    assert metrics["baseline_nfe"] == 2 * STEPS and metrics["accelerated_nfe"] == 2 + 1  # CFG dropped after step 1
    assert metrics["tuned"] == {
        "setting": str(setting),
        "num_inference_steps": 2,
        "plugins": ["ag_threshold-1"],
        "psnr": 25.0,
        "speedup": 3.0,
        "wall_speedup": None,
        "requested_speedup": 2.5,
        "plugin_panels": "not used",
    }
    assert "tuned plan" in markdown and "25.00 dB" in markdown and "3.00×" in markdown
    assert "| steps | 4 | 2 |" in markdown
    summary = json.loads(summary)
    assert summary["plugins"] == metrics["plugins"] and "plan_target" in summary["denoisers"]["unet"]["plugins"]


@pytest.mark.parametrize("speedup, steps", [(1.0, 4), (1.5, 3), (2.0, 3), (1.97, 3), (2.05, 2), (3.0, 2)])
def test_the_speed_picks_the_best_setting_at_least_that_fast(tuned_server, speedup, steps):
    from accel.app import tuned

    _, plan, _ = tuned_server
    run = tuned.resolve(plan, tuned.check_speedup(plan, speedup))
    assert run.setting is plan.pick(speedup=speedup) and run.num_inference_steps == steps


def test_json_endpoint_runs_the_setting_the_speed_picks(tuned_server):
    from accel.app import tuned
    from accel.app.generate_handlers import tuned_changed

    url, plan, registry = tuned_server
    client = client_of(url)
    out = generate_json(client, speedup=1.5)
    assert out["accelerated_steps"] == 3 and out["steps"] == STEPS and out["guidance"] == GUIDANCE
    assert out["plugins"] == ["deepcache_interval2", "plan_tiny-unet_steps3"]
    assert out["tuned"]["setting"] == str(plan.pick(speedup=1.5)) and out["tuned"]["psnr"] == 35.0
    assert out["summary"]["plugins"] == out["plugins"]
    plain = generate_json(client, tuned=False, speedup=50.0)  # off: the speed is not used (nor checked)
    assert plain["tuned"] is None and plain["plugins"] == [] and plain["guidance"] == 2.0
    note, steps, guidance = tuned_changed("tiny-unet", True, 1.5, registry=registry)
    assert f"picks: `{plan.pick(speedup=1.5)}`" in note and tuned.PANELS_NOT_USED in note
    assert steps["value"] == STEPS and guidance["value"] == GUIDANCE  # the sliders show what the runs use
    note, steps, guidance = tuned_changed("tiny-unet", False, 1.5, registry=registry)
    assert "picks:" not in note and "value" not in steps and "value" not in guidance


def test_a_speed_outside_the_plan_is_a_clear_error(tuned_server):
    from accel.app import tuned

    url, plan, _ = tuned_server
    client = client_of(url)
    span = "between 1x and 3x (the range of this model's tuned plan)"
    for speedup in (5.0, 0.5):
        with pytest.raises(gradio_client.exceptions.AppError, match=re.escape(f"must be {span}, got {speedup:g}x")):
            generate_json(client, speedup=speedup)
    with pytest.raises(gradio_client.exceptions.AppError, match="the tuned speed is missing") as info:
        generate_json(client, speedup=None)
    assert "Traceback" not in str(info.value)
    with pytest.raises(gradio_client.exceptions.AppError, match="got 50x"):
        generate_tuned(client, 50.0)
    for bad in (float("nan"), float("inf"), "fast", True, ""):
        with pytest.raises(AppError, match="tuned speed"):
            tuned.check_speedup(plan, bad)
    assert tuned.check_speedup(plan, 3.0 + 1e-9) == 3.0  # float rounding at the ends is clamped


def test_clients_without_the_tuned_inputs_still_work(tuned_server):
    url, _, _ = tuned_server
    inputs = plugin_inputs({"adaptive_guidance": {"threshold": -1}})[:-2]  # the inputs before the tuned preset
    out = client_of(url).predict(
        "tiny-unet", "a handwritten 7", 0, STEPS, 2.0, SIZE, 1, 9, *inputs, api_name="/generate"
    )
    status, metrics = out[0], out[6]
    assert status.startswith("Done") and "tuned plan" not in status
    assert metrics["tuned"] is None and metrics["plugins"] == ["ag_threshold-1"]
    assert metrics["accelerated_steps"] == STEPS and metrics["accelerated_nfe"] == 2 + (STEPS - 1)


def test_selecting_a_model_sets_the_speed_slider_to_its_plan(tuned_server):
    url, plan, _ = tuned_server
    out = client_of(url).predict("tiny-unet", api_name="/select_model")
    accordion, note, box, slider = out[-4:]
    assert "3 settings from 1.00x to 3.00x" in note and "plugin panels below are not used" in note
    assert box["interactive"] and box["value"] is False
    assert (slider["minimum"], slider["maximum"]) == plan.speedup_range() and slider["interactive"]


def test_one_setting_plan_gives_a_fixed_slider(tmp_path):
    from accel.app.plugin_panels import tuned_panel_updates
    from accel.pipelines.testing import tiny_text_pipeline

    plan = make_plan(tiny_text_pipeline("unet"), str(tmp_path), settings=[(2, "ag", 2.5, 30.0)])
    _, _, box, slider = tuned_panel_updates(plan, None)
    assert box["interactive"] and slider["value"] == slider["maximum"] == 2.5
    assert slider["minimum"] < slider["maximum"] and not slider["interactive"]  # Gradio needs min < max


def test_a_model_without_a_plan_shows_the_unavailable_message(tuned_server, monkeypatch, tmp_path):
    import accel.pipelines.builtin as builtin
    from accel.app.generate_handlers import model_changed
    from accel.pipelines.builtin import BUILTIN_MODELS

    url, _, registry = tuned_server
    client = client_of(url)
    accordion, note, box, slider = client.predict("tiny-wan", api_name="/select_model")[-4:]
    assert note == f"*Not available for this model:* {NO_TUNED_PLAN}"
    assert NO_TUNED_PLAN == "no tuned plan is shipped for this model; make one with `accel tune MODEL --out DIR`"
    assert box == {"interactive": False, "value": False, "__type__": "update"} and not slider["interactive"]
    with pytest.raises(gradio_client.exceptions.AppError, match="no tuned plan is shipped for this model"):
        client.predict(
            "tiny-wan", "a red square", 0, 2, 2.0, 32, 1, 5, *plugin_inputs(tuned=True), api_name="/generate"
        )
    # built-in models look in their shipped plan folder; here none is shipped
    monkeypatch.setattr(builtin, "PLANS_DIR", str(tmp_path / "no-plans"))
    builtins = ModelRegistry()
    for entry in builtins.entries():
        assert entry.plan_dir == BUILTIN_MODELS[entry.name].plan_dir == str(tmp_path / "no-plans" / entry.name)
        with pytest.raises(AppError, match="no tuned plan is shipped"):
            entry.plan()
    assert ModelEntry("org/model", "org/model", "custom").plan_dir is None  # user-loaded models have no plan
    _, note, box, _ = model_changed("tiny-wan", registry=registry)[-4:]
    assert NO_TUNED_PLAN in note and box["interactive"] is False


def test_a_plan_that_does_not_fit_or_cannot_be_read_says_so(tuned_server, tmp_path):
    from accel.app import tuned
    from accel.pipelines.testing import tiny_text_pipeline

    _, _, registry = tuned_server
    pipe = registry.get("tiny-unet").pipe
    folder = str(tmp_path / "plan")
    path = os.path.join(folder, "plan.json")
    entry = ModelEntry("m", "m", "injected", pipe=pipe, plan_dir=folder)

    def rewritten(stamp: int) -> tuple:
        os.utime(path, ns=(stamp, stamp))  # a new mtime, whatever the file system's clock resolution
        return tuned.availability(entry)

    make_plan(tiny_text_pipeline("unet", seed=1), folder)  # other weights: the plan runs (and warns when applied)
    plan, reason = rewritten(1)
    assert reason is None and plan is not None
    make_plan(tiny_text_pipeline("pixart"), folder)  # another architecture
    plan, reason = rewritten(2)
    assert plan is None and "does not fit it" in reason and "another config" in reason
    with open(path, "w") as f:
        f.write("{not json")
    plan, reason = rewritten(3)
    assert plan is None and "cannot be read" in reason and str(tmp_path) not in reason
    good = make_plan(pipe, folder)  # the entry reads plan.json again once it changes
    plan, reason = rewritten(4)
    assert reason is None and plan.speedup_range() == good.speedup_range()
