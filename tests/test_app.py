"""The demo app, driven through ``gradio_client`` against a running server with tiny pipelines."""

from __future__ import annotations

import json
import os
import socket
import threading

import numpy as np
import pytest

pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from accel.app import AppError, ModelRegistry, ModelSpec, build_app  # noqa: E402
from accel.app.app import plugin_inputs  # noqa: E402

STEPS = 4
SIZE = 16


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_run_folder(root: str) -> str:
    """A minimal finished ``accel eval`` run: summary.json, pareto.png, records.jsonl and sample PNGs."""
    from PIL import Image

    from accel.evaluation.pareto import plot_png

    run = os.path.join(root, "tiny-sweep")
    rows = [
        {
            "config": "baseline",
            "kind": "baseline",
            "steps": STEPS,
            "samples": 2,
            "speedup": 1.0,
            "latency_s": 0.1,
            "nfe": 8.0,
        },
        {
            "config": "ag_threshold-1",
            "kind": "method",
            "steps": STEPS,
            "samples": 2,
            "speedup": 1.5,
            "latency_s": 0.066,
            "nfe": 5.0,
            "psnr": 31.5,
            "ssim": 0.95,
        },
    ]
    records = []
    for row in rows:
        for pid, prompt in enumerate(("a handwritten 7", "a handwritten 3")):
            path = f"samples/{row['config']}/p{pid:04d}_s{pid}.png"
            os.makedirs(os.path.join(run, os.path.dirname(path)), exist_ok=True)
            Image.new("RGB", (32, 32), (40 * pid, 100, 200)).save(os.path.join(run, path))
            records.append(
                {
                    "key": f"{row['config']}|p{pid:04d}|s{pid}",
                    "config": row["config"],
                    "prompt": prompt,
                    "prompt_id": pid,
                    "seed": pid,
                    "path": path,
                }
            )
    with open(os.path.join(run, "summary.json"), "w") as f:
        json.dump(rows, f)
    with open(os.path.join(run, "records.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    plot_png(rows, os.path.join(run, "pareto.png"), "tiny-sweep")
    os.makedirs(os.path.join(root, "not-a-run"), exist_ok=True)  # no summary.json: not listed
    return run


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from accel.app.vision import VisionModels
    from accel.pipelines.testing import tiny_denoiser, tiny_text_pipeline

    runs_root = str(tmp_path_factory.mktemp("runs"))
    make_run_folder(runs_root)
    models = {
        "tiny-unet": ModelSpec(
            tiny_text_pipeline("unet"), call_defaults={"height": SIZE, "width": SIZE}, examples=("a handwritten 7",)
        ),
        "tiny-wan": ModelSpec(tiny_text_pipeline("wan"), call_defaults={"height": 32, "width": 32, "num_frames": 5}),
    }
    vit = VisionModels(original=tiny_denoiser("timm_vit"), finetuned=False)
    demo = build_app(models=models, runs_root=runs_root, allow_custom_models=True, vision_models=vit, max_concurrent=2)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    client = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
    yield client, runs_root
    demo.close()


def generate(client, plugins=None, seed=0, prompt="a handwritten 7", steps=STEPS, model="tiny-unet"):
    """Call the UI's "generate" endpoint; returns (metrics dict, baseline array, accelerated array, summary)."""
    from PIL import Image

    out = client.predict(model, prompt, seed, steps, 2.0, SIZE, 1, 9, *plugin_inputs(plugins), api_name="/generate")
    status, base_path, acc_path, _gif1, _gif2, markdown, metrics, summary = out  # (the gif row is layout)
    assert status.startswith("Done"), status
    assert "speedup" in markdown and "NFEs" in markdown
    base = np.asarray(Image.open(base_path).convert("RGB"))
    acc = np.asarray(Image.open(acc_path).convert("RGB"))
    return metrics, base, acc, json.loads(summary)


def test_generate_without_plugin(server):
    client, _ = server
    metrics, base, acc, summary = generate(client)
    assert metrics["plugins"] == [] and metrics["identical"]
    assert metrics["psnr"] == "inf" and metrics["ssim"] == 1.0
    assert metrics["baseline_nfe"] == metrics["accelerated_nfe"] == 2 * STEPS  # CFG: two branches per step
    assert np.array_equal(base, acc)
    assert metrics["speedup"] == pytest.approx(metrics["baseline_s"] / metrics["accelerated_s"], rel=1e-2)


def test_generate_with_adaptive_guidance(server):
    client, _ = server
    metrics, base, acc, summary = generate(client, {"adaptive_guidance": {"threshold": -1}})
    assert metrics["plugins"] == ["ag_threshold-1"]
    assert metrics["accelerated_nfe"] < metrics["baseline_nfe"]
    assert metrics["accelerated_nfe"] == 2 + (STEPS - 1)  # CFG on the first step only
    assert summary["attached"] and summary["last_call"]["nfe"] == metrics["accelerated_nfe"]
    assert "adaptive_guidance" in summary["denoisers"]["unet"]["plugins"]
    assert metrics["speedup"] == pytest.approx(metrics["baseline_s"] / metrics["accelerated_s"], rel=1e-2)
    assert isinstance(metrics["psnr"], float) and metrics["psnr"] > 10


def test_identity_settings_match_the_baseline(server):
    client, _ = server
    metrics, base, acc, _ = generate(client, {"deepcache": {"interval": 1}})
    assert metrics["plugins"] == ["deepcache_interval1"]
    assert metrics["psnr"] == "inf" or metrics["psnr"] > 60
    assert np.array_equal(base, acc)


def test_concurrent_requests_do_not_leak_state(server):
    client, _ = server
    settings = [({"deepcache": {"interval": 3}}, 1), ({"adaptive_guidance": {"threshold": -1}}, 2)]
    alone = [generate(client, plugins, seed=seed) for plugins, seed in settings]
    results: list = [None, None]
    errors: list = []

    def worker(i: int) -> None:
        try:
            results[i] = generate(client, *settings[i])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    for (m_alone, b_alone, a_alone, s_alone), (m, b, a, s) in zip(alone, results):
        assert m["plugins"] == m_alone["plugins"]
        assert m["accelerated_nfe"] == m_alone["accelerated_nfe"]
        assert m["psnr"] == m_alone["psnr"] and m["ssim"] == m_alone["ssim"]
        assert np.array_equal(b, b_alone) and np.array_equal(a, a_alone)
        assert s["plugins"] == s_alone["plugins"]
        assert s["denoisers"]["unet"]["plugins"] == s_alone["denoisers"]["unet"]["plugins"]


def test_json_endpoint(server):
    client, _ = server
    out = client.predict(
        "tiny-unet",
        "a handwritten 3",
        5,
        STEPS,
        2.0,
        SIZE,
        1,
        0,
        json.dumps({"adaptive_guidance": {"threshold": -1}}),
        api_name="/generate_json",
    )
    assert out["accelerated_nfe"] == 2 + (STEPS - 1) and out["baseline_nfe"] == 2 * STEPS
    assert out["summary"]["plugins"] == ["ag_threshold-1"]


@pytest.mark.parametrize(
    "args, message",
    [
        (dict(prompt=""), "enter a prompt"),
        (dict(model="no-such-model"), "unknown model"),
        (dict(prompt="x" * 400), "limit is"),
        (dict(plugins={"ras": {}}), "does not support"),
        (dict(plugins={"deepcache": {"interval": 3}, "block_cache": {}}), "does not support"),
        (dict(steps=500), "maximum"),
    ],
)
def test_bad_input_gives_a_readable_error(server, args, message):
    client, _ = server
    with pytest.raises(gradio_client.exceptions.AppError) as info:
        generate(client, **args)
    text = str(info.value)
    assert message in text
    assert "Traceback" not in text and 'File "' not in text


def test_bad_plugin_value_and_custom_model_errors(server):
    client, _ = server
    with pytest.raises(gradio_client.exceptions.AppError, match="interval"):
        client.predict(
            "tiny-unet",
            "a 7",
            0,
            STEPS,
            2.0,
            SIZE,
            1,
            0,
            json.dumps({"deepcache": {"interval": 0}}),
            api_name="/generate_json",
        )
    with pytest.raises(gradio_client.exceptions.AppError, match="not valid JSON"):
        client.predict("tiny-unet", "a 7", 0, STEPS, 2.0, SIZE, 1, 0, "{nope", api_name="/generate_json")
    with pytest.raises(gradio_client.exceptions.AppError, match="not a diffusers pipeline folder"):
        client.predict("/definitely/not/here", api_name="/load_model")


def test_curves_tab_lists_and_opens_a_run(server):
    client, runs_root = server
    choices, note = client.predict(runs_root, api_name="/list_runs")
    names = [c[0] if isinstance(c, (list, tuple)) else c for c in choices["choices"]]
    assert names == ["tiny-sweep"] and choices["value"] == "tiny-sweep"
    image, table, config, note = client.predict(runs_root, "tiny-sweep", api_name="/open_run")
    assert image and os.path.exists(image)
    table = table["value"]
    assert table["headers"][0] == "config" and [r[0] for r in table["data"]] == ["baseline", "ag_threshold-1"]
    assert config["value"] == "ag_threshold-1"
    gallery = client.predict(runs_root, "tiny-sweep", "ag_threshold-1", api_name="/samples")
    assert len(gallery) == 2
    assert [item["caption"] for item in gallery] == ["a handwritten 7 (seed 0)", "a handwritten 3 (seed 1)"]
    with pytest.raises(gradio_client.exceptions.AppError, match="not in the list of choices"):
        client.predict(runs_root, "../../etc", api_name="/open_run")
    from accel.app import curves

    with pytest.raises(ValueError, match="not a finished accel eval run"):
        curves.run_dir(runs_root, "../..")
    with pytest.raises(ValueError, match="not a finished accel eval run"):
        curves.run_dir(runs_root, "not-a-run")


def test_vision_tab_classifies_with_both_models(server):
    client, _ = server
    preview, original, repavit, markdown, result = client.predict(3, api_name="/classify_heldout")
    assert os.path.exists(preview)
    assert len(original["confidences"]) == 3 and len(repavit["confidences"]) == 3
    assert "not fine-tuned" in markdown and "True label" in markdown
    assert result["original"]["latency_ms"] > 0 and result["repavit"]["latency_ms"] > 0
    assert not result["finetuned"]


def test_video_model_gives_frame_strips_and_gifs(server):
    from PIL import Image

    client, _ = server
    out = client.predict(
        "tiny-wan",
        "a red square moving up",
        0,
        2,
        2.0,
        32,
        1,
        5,
        *plugin_inputs({"block_cache": {"interval": 2, "warmup_steps": 0}}),
        api_name="/generate",
    )
    status, base_path, acc_path, base_gif, acc_gif, markdown, metrics, summary = out
    assert metrics["kind"] == "video" and metrics["frames"] == 5 and "5 frames" in status
    strip = Image.open(base_path)
    assert strip.width >= 5 * strip.height * 0.9  # five frames side by side
    for gif in (base_gif, acc_gif):
        with Image.open(gif) as animation:
            assert animation.format == "GIF" and animation.n_frames == 5
    summary = json.loads(summary)
    assert summary["plugins"] == ["blockcache"] and "block_cache" in summary["denoisers"]["transformer"]["plugins"]


def test_vision_upload_is_treated_as_data(server, tmp_path):
    from PIL import Image

    client, _ = server
    path = tmp_path / "digit.png"
    picture = Image.new("RGB", (64, 64), (255, 255, 255))
    picture.paste((0, 0, 0), (28, 8, 36, 56))  # a dark "1" on white paper
    picture.save(path)
    preview, original, repavit, markdown, result = client.predict(
        gradio_client.handle_file(str(path)), api_name="/classify_upload"
    )
    assert "inverted" in markdown and result["original"]["prediction"] in [str(d) for d in range(10)]
    with pytest.raises(gradio_client.exceptions.AppError, match="upload an image"):
        client.predict(None, api_name="/classify_upload")


def test_vision_without_vit_weights_is_a_readable_message(monkeypatch, tmp_path):
    import accel.pipelines.builtin as builtin
    from accel.app.vision import VisionModels

    monkeypatch.setattr(builtin, "WEIGHTS_DIR", str(tmp_path))
    models = VisionModels()
    ok, message = models.status()
    assert not ok and "accel train vit-digits" in message
    with pytest.raises(AppError, match="no weights yet"):
        models.classify(__import__("torch").zeros(3, 32, 32))


def test_unavailable_builtin_is_listed_with_its_reason(monkeypatch):
    from accel.pipelines.builtin import BuiltinModel

    monkeypatch.setattr(BuiltinModel, "is_trained", lambda self: self.name != "wan-moving-shapes")
    registry = ModelRegistry()
    entry = registry.get("wan-moving-shapes")
    assert not entry.available and "accel train wan-moving-shapes" in entry.reason
    assert ("wan-moving-shapes (unavailable)", "wan-moving-shapes") in registry.choices()
    assert "vit-digits" not in registry.names()
    with pytest.raises(AppError, match="unavailable"):
        registry.load("wan-moving-shapes")


def test_limits_are_enforced_without_a_browser():
    from accel.app.generation import GenerationRequest, validate
    from accel.app.models import Limits, ModelEntry

    entry = ModelEntry("m", "m", "injected", pipe=None, call_defaults={"height": 32}, max_size=64)
    limits = Limits()
    ok = validate(GenerationRequest("m", "  a   7 ", steps=50, batch=4), entry, limits)
    assert ok.prompt == "a 7" and ok.size == 32
    for bad, text in [
        (dict(steps=0), "steps"),
        (dict(batch=5), "batch"),
        (dict(size=128), "size"),
        (dict(size=20), "multiple of 8"),
        (dict(guidance=float("nan")), "guidance"),
        (dict(seed=-1), "seed"),
        (dict(plugins={"nope": {}}), "unknown plugin"),
    ]:
        with pytest.raises(AppError, match=text):
            validate(GenerationRequest("m", "a 7", **bad), entry, limits)


def test_load_a_local_pipeline_folder_and_generate(server, tmp_path):
    from accel.pipelines.testing import tiny_text_pipeline

    client, _ = server
    folder = str(tmp_path / "my-pipeline")
    tiny_text_pipeline("unet", seed=1).save_pretrained(folder)
    dropdown, _ = client.predict(folder, api_name="/load_model")
    assert dropdown["value"] == folder and [folder, folder] in [list(c) for c in dropdown["choices"]]
    info = client.predict(folder, api_name="/select_model")[0]
    assert "loaded by hub id / path" in info and "unet" in info
    metrics, base, acc, _ = generate(client, {"adaptive_guidance": {"threshold": -1}}, model=folder)
    assert metrics["model"] == folder and metrics["accelerated_nfe"] < metrics["baseline_nfe"]


def test_curves_tab_stays_inside_the_pinned_runs_root(server, tmp_path):
    client, runs_root = server
    elsewhere = str(tmp_path / "elsewhere")
    make_run_folder(elsewhere)  # a real run outside the pinned root, with the same run name
    client.predict(runs_root, api_name="/list_runs")  # this session's run list holds "tiny-sweep"
    client.predict(runs_root, "tiny-sweep", api_name="/open_run")  # and its config list "ag_threshold-1",
    # whichever tests this xdist worker ran before (else the dropdown itself refuses the value)
    outside = [elsewhere, str(tmp_path / "missing"), os.path.join(runs_root, "..", "x"), "/", "/etc"]
    messages = set()
    for root in outside:
        for args, api_name in [
            ((root,), "/list_runs"),
            ((root, "tiny-sweep"), "/open_run"),
            ((root, "tiny-sweep", "ag_threshold-1"), "/samples"),
        ]:
            with pytest.raises(gradio_client.exceptions.AppError) as info:
                client.predict(*args, api_name=api_name)
            text = str(info.value)
            assert "outside the runs root" in text, text
            assert str(tmp_path) not in text and runs_root not in text and "/etc" not in text
            messages.add(text)
    assert len(messages) == 1  # the same words whether the folder exists or not
    inside = os.path.join(runs_root, "tiny-sweep")  # a folder inside the root may be typed
    choices, note = client.predict(inside, api_name="/list_runs")
    assert choices["choices"] == [] and "No finished" in note and runs_root not in note


def test_curves_read_no_file_through_a_symlink_out_of_the_root(tmp_path):
    import shutil

    from accel.app import curves

    outside = make_run_folder(str(tmp_path / "outside"))
    root = tmp_path / "runs"
    root.mkdir()
    (root / "linked-run").symlink_to(outside)  # the whole run is a link out
    leaky = root / "leaky"  # a real run whose plot and records are links out
    leaky.mkdir()
    shutil.copy(os.path.join(outside, "summary.json"), leaky / "summary.json")
    shutil.copytree(os.path.join(outside, "samples"), leaky / "samples")
    (leaky / "pareto.png").symlink_to(os.path.join(outside, "pareto.png"))
    (leaky / "records.jsonl").symlink_to(os.path.join(outside, "records.jsonl"))
    linked_summary = root / "linked-summary"  # a run whose summary.json is a link out
    linked_summary.mkdir()
    (linked_summary / "summary.json").symlink_to(os.path.join(outside, "summary.json"))
    assert curves.list_runs(str(root)) == ["leaky"]
    for name in ("linked-run", "linked-summary"):
        with pytest.raises(ValueError, match="not a finished accel eval run") as info:
            curves.run_dir(str(root), name)
        assert str(tmp_path) not in str(info.value)
    run = curves.run_dir(str(root), "leaky")
    assert [r["config"] for r in curves.load_rows(run)] == ["baseline", "ag_threshold-1"]
    assert curves.pareto_image(run) is None
    assert curves.samples(run, "ag_threshold-1") == []


def test_runs_root_is_pinned_when_not_editable(tmp_path):
    from accel.app import curves

    root = str(tmp_path / "runs")
    make_run_folder(root)
    assert curves.resolve_root(root, root, editable=False) == os.path.realpath(root)
    assert curves.resolve_root(root, "", editable=False) == os.path.realpath(root)
    with pytest.raises(ValueError, match="runs root"):
        curves.resolve_root(root, os.path.join(root, "tiny-sweep"), editable=False)
    assert curves.resolve_root(root, os.path.join(root, "tiny-sweep")) == os.path.realpath(root) + "/tiny-sweep"
    with pytest.raises(ValueError, match="outside the runs root"):
        curves.resolve_root(root, str(tmp_path))


def test_demo_commands_take_a_runs_root(monkeypatch):
    import accel.app
    from accel import cli
    from accel.app.__main__ import main

    seen = []
    monkeypatch.setattr(accel.app, "launch", lambda **kwargs: seen.append(kwargs))
    cli.main(["demo", "--runs-root", "/srv/runs", "--fixed-runs-root"])
    main(["--runs-root", "/srv/runs", "--fixed-runs-root", "--no-custom-models"])
    assert seen[0]["runs_root"] == seen[1]["runs_root"] == "/srv/runs"
    assert seen[0]["runs_root_editable"] is seen[1]["runs_root_editable"] is False
    assert seen[1]["allow_custom_models"] is False


def test_custom_model_errors_do_not_reveal_server_paths(server, tmp_path):
    client, _ = server
    empty = tmp_path / "empty-dir"
    empty.mkdir()
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    messages = set()
    for source in (str(empty), str(a_file), str(tmp_path / "missing"), "/etc", "/definitely/not/here", "./nope"):
        with pytest.raises(gradio_client.exceptions.AppError) as info:
            client.predict(source, api_name="/load_model")
        text = str(info.value)
        assert str(tmp_path) not in text and "/etc" not in text and "nope" not in text, text
        messages.add(text)
    assert len(messages) == 1, messages  # missing, a file and a folder without a pipeline read the same
    from tests.test_pipelines_loading import pickle_only_pipeline

    pickled = pickle_only_pipeline(str(tmp_path / "pickled"), with_objects=True)
    with pytest.raises(gradio_client.exceptions.AppError, match="safetensors") as info:
        client.predict(pickled, api_name="/load_model")
    assert str(tmp_path) not in str(info.value)


def test_block_size_choices_have_the_api_schemas_type(server):
    client, _ = server
    params = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/generate"]["parameters"]
    schema = next(p for p in params if p["label"] == "block size (tokens)")["type"]
    kind = {"string": str, "integer": int}[schema["type"]]
    assert schema["enum"] and all(isinstance(v, kind) for v in schema["enum"])
    position = [p["label"] for p in params].index("block size (tokens)") - 8  # after the 8 base inputs
    assert isinstance(plugin_inputs({"sparse_attention": {}})[position], kind)  # what API clients send by default
    value = next(v for v in schema["enum"] if str(v) == "32")  # the type the schema says
    out = client.predict(
        "tiny-wan",
        "a red square moving up",
        0,
        2,
        2.0,
        32,
        1,
        5,
        *plugin_inputs({"sparse_attention": {"pattern": "window", "block_size": value}}),
        api_name="/generate",
    )
    metrics, summary = out[6], json.loads(out[7])
    assert metrics["plugins"] == summary["plugins"] and "32" in metrics["plugins"][0]


def test_sparse_attention_panel_offers_the_neighbourhood_pattern_within_bounds():
    """The sparse-attention panel builds GNA's config (arXiv 2504.16922) from its widget values and refuses
    out-of-range ones with the field's name, before anything runs."""
    import accel
    from accel.app import presets

    spec = presets.by_key()["sparse_attention"]
    fields = {f.name: f for f in spec.fields}
    assert "neighborhood" in fields["pattern"].choices
    assert all(f.minimum is not None and f.maximum is not None for f in spec.fields if f.kind != "choice")
    values = {"pattern": "neighborhood", "kernel_size": "3, 4, 8", "stride": "1x4x4", "dilation": [1, 1, 1]}
    (config,) = presets.build_configs({"sparse_attention": {**values, "tile": "(1, 4, 4)", "block_size": "16"}})
    assert config == accel.SparseAttentionConfig(
        pattern="neighborhood", kernel_size=(3, 4, 8), stride=(1, 4, 4), tile=(1, 4, 4), block_size=16
    )
    position = [f.name for f in spec.fields].index("kernel_size")  # the widget holds text, as the API sends it
    sent = plugin_inputs({"sparse_attention": {"kernel_size": (3, 4, 8)}})
    assert sent[_panel_offset("sparse_attention") + position] == "3, 4, 8"
    for bad, message in [
        ({"kernel_size": "3, 4"}, r"kernel.*expected 3 whole numbers"),
        ({"kernel_size": "0, 4, 4"}, r"kernel.*0 is outside \[1, 64\]"),
        ({"kernel_size": [3, 4, 65]}, r"kernel.*65 is outside \[1, 64\]"),
        ({"dilation": "1, 1, 17"}, r"dilation.*17 is outside \[1, 16\]"),
        ({"stride": "1, 1, 2.5"}, r"stride.*must be a whole number"),
        ({"tile": "a, b, c"}, r"tile.*is not a number"),
        ({"kernel_size": "3, 3, 3", "stride": "1, 4, 4"}, r"stride \(1, 4, 4\) must not exceed kernel_size"),
        ({"pattern": "gna"}, r"pattern: 'gna' is not one of"),
    ]:
        with pytest.raises(accel.ConfigError, match=message):
            presets.build_configs({"sparse_attention": {**values, **bad}})


def _panel_offset(key):
    """Index of ``key``'s first field in :func:`plugin_inputs` (each panel: enabled, preset, *fields)."""
    from accel.app import presets

    offset = 0
    for spec in presets.plugins():
        if spec.key == key:
            return offset + 2
        offset += 2 + len(spec.fields)
    raise KeyError(key)


def test_video_model_runs_the_neighbourhood_pattern_and_refuses_a_kernel_beyond_its_grid(server):
    client, _ = server
    args = ("tiny-wan", "a red square moving up", 0, 2, 2.0, 32, 1, 5)  # a 2 x 2 x 2 token grid
    fields = {"pattern": "neighborhood", "kernel_size": "1, 2, 2", "dense_warmup_fraction": 0.0}
    out = client.predict(*args, *plugin_inputs({"sparse_attention": fields}), api_name="/generate")
    stats = json.loads(out[7])["denoisers"]["transformer"]["plugins"]["sparse_attention"]
    assert stats["pattern"] == "neighborhood" and stats["sparse_calls"] > 0 and stats["mean_density"] < 1.0
    with pytest.raises(gradio_client.exceptions.AppError, match="neighbourhood axis of 2"):  # (3, 9, 9) > grid
        client.predict(*args, *plugin_inputs({"sparse_attention": {"pattern": "neighborhood"}}), api_name="/generate")
    with pytest.raises(gradio_client.exceptions.AppError, match=r"kernel.*65 is outside \[1, 64\]"):
        client.predict(
            *args,
            json.dumps({"sparse_attention": {"pattern": "neighborhood", "kernel_size": [1, 2, 65]}}),
            api_name="/generate_json",
        )
