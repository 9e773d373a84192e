"""Files a user hands in are data (accel.files): every malformed plan, coefficients file, spec and
prompt file is refused with a one-line accel error within 2 s and 200 MB; a plan reads nothing
outside its folder; outputs are written atomically; the CLI prints one line, never a traceback."""

from __future__ import annotations

import copy
import errno
import json
import os
import shutil
import time
import tracemalloc

import pytest

import accel
from accel import files
from accel.evaluation.spec import SweepSpec, load_specs
from accel.fingerprint import denoiser_fingerprint
from accel.pipelines.builtin import BUILTIN_MODELS
from accel.pipelines.testing import tiny_denoiser

SD_DIGITS_PLAN = BUILTIN_MODELS["sd-digits"].plan_dir

BOMB = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
"""


def refused(call, error=accel.AccelError, match=None):
    """``call()`` raises ``error`` (one line, matching ``match``) within 2 s and 200 MB."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(error, match=match) as info:
            call()
    finally:
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert seconds < 2, f"took {seconds:.1f} s"
    assert peak < 200 * 2**20, f"peak {peak / 2**20:.0f} MB"
    message = str(info.value)
    assert "\n" not in message and len(message) < 2000, message[:3000]
    return message


# ---------------------------------------------------------------------------------------- plans
#: LinearAG coefficients fitted on sd-digits at 12 DDIM steps
LINEAR_AG_12 = os.path.join(os.path.dirname(__file__), "data", "sd-digits-linear-ag", "steps12.json")


@pytest.fixture
def plan_dir(tmp_path):
    """A copy of the shipped sd-digits plan with one more setting, 12 steps with LinearAG, that reads its
    coefficients from data/steps12.json (the shipped plan reads no file of its own)."""
    folder = tmp_path / "plan"
    shutil.copytree(SD_DIGITS_PLAN, folder)
    (folder / "data").mkdir(exist_ok=True)
    shutil.copyfile(LINEAR_AG_12, folder / "data" / "steps12.json")
    data = json.loads((folder / "plan.json").read_text())
    setting = copy.deepcopy(data["settings"][0])  # the baseline's quality record
    linear_ag = {**accel.LinearAGConfig(coefficients=LINEAR_AG_12).to_dict(), "coefficients": "data/steps12.json"}
    setting.update(num_inference_steps=12, speedup=1.5, wall_speedup=None, configs=[linear_ag])
    data["settings"].append(setting)
    (folder / "plan.json").write_text(json.dumps(data))
    return folder


def _edit_plan(folder, edit) -> None:
    data = json.loads((folder / "plan.json").read_text())
    edit(data)
    (folder / "plan.json").write_text(json.dumps(data))


def _linear_ag_entry(data):
    for setting in data["settings"]:
        for config in setting["configs"]:
            if config["type"] == "LinearAGConfig":
                return config
    raise AssertionError("the sd-digits plan has no LinearAG setting")


def test_the_shipped_plan_loads_from_a_copy(plan_dir):
    plan = accel.load_plan(str(plan_dir))
    files_read = {c.coefficients for s in plan.settings for c in s.plugins if hasattr(c, "coefficients")}
    assert files_read and all(path.startswith(str(plan_dir.resolve())) for path in files_read)


@pytest.mark.parametrize(
    "name, match",
    [
        ("/etc/hostname", "absolute path"),
        ("../outside.json", "leaves the plan's folder"),
        ("data/../../outside.json", "leaves the plan's folder"),
        ("~/coefficients.json", "absolute path"),
        ("data/missing.json", "holds no file"),
    ],
)
def test_a_plan_reads_only_files_inside_its_folder(plan_dir, name, match):
    shutil.copy(plan_dir / "data" / "steps12.json", plan_dir.parent / "outside.json")
    _edit_plan(plan_dir, lambda d: _linear_ag_entry(d).update(coefficients=name))
    refused(lambda: accel.load_plan(str(plan_dir)), accel.AccelError, match)


def test_an_absolute_path_to_a_valid_file_elsewhere_is_refused(plan_dir, tmp_path):
    elsewhere = tmp_path / "elsewhere.json"
    shutil.copy(plan_dir / "data" / "steps12.json", elsewhere)
    _edit_plan(plan_dir, lambda d: _linear_ag_entry(d).update(coefficients=str(elsewhere)))
    refused(lambda: accel.load_plan(str(plan_dir)), accel.ConfigError, "absolute path")


def test_a_symlink_out_of_the_plan_folder_is_refused(plan_dir, tmp_path):
    target = tmp_path / "secret.json"
    shutil.copy(plan_dir / "data" / "steps12.json", target)
    os.symlink(target, plan_dir / "data" / "link.json")
    _edit_plan(plan_dir, lambda d: _linear_ag_entry(d).update(coefficients="data/link.json"))
    refused(lambda: accel.load_plan(str(plan_dir)), accel.ConfigError, "outside the plan's folder")
    os.symlink("steps12.json", plan_dir / "data" / "inside.json")  # a link that stays inside is fine
    _edit_plan(plan_dir, lambda d: _linear_ag_entry(d).update(coefficients="data/inside.json"))
    accel.load_plan(str(plan_dir))


def test_a_file_missing_from_the_plan_folder_is_never_read_from_the_working_directory(plan_dir, tmp_path, monkeypatch):
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    shutil.move(plan_dir / "data" / "steps12.json", work / "data" / "steps12.json")
    monkeypatch.chdir(work)
    refused(lambda: accel.load_plan(str(plan_dir)), accel.NotFoundError, "holds no file 'data/steps12.json'")


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda d: d["settings"][1].update(speedup=float("inf")), r"settings\[1\]\.speedup must be a finite number"),
        (lambda d: d["settings"][1].update(speedup=float("nan")), r"settings\[1\]\.speedup must be a finite number"),
        (lambda d: d["settings"][1].update(speedup=-3), r"settings\[1\]\.speedup must be a number in \(0"),
        (lambda d: d["settings"][1].update(speedup="99"), r"settings\[1\]\.speedup must be a finite number"),
        (
            lambda d: d["settings"][2]["quality"]["validated"].update(psnr=float("nan")),
            r"settings\[2\]\.quality\.validated\.psnr must be a finite number",
        ),
        (lambda d: d["settings"][0].update(num_inference_steps=12.7), r"num_inference_steps must be an integer"),
        (lambda d: d["target"].update(denoiser=["UNet2DConditionModel"]), r"plan\.target\.denoiser must be a mapping"),
        (lambda d: d["settings"][0].pop("quality"), r"settings\[0\]\.quality is missing"),
        (lambda d: d["settings"][0].update(quality="good"), r"settings\[0\]\.quality must be a mapping"),
        (lambda d: d.update(settings={"a": 1}), r"plan\.settings must be a non-empty list"),
        (lambda d: d["settings"][0].update(configs=[{"type": "os.system"}]), r"configs\[0\]"),
        (lambda d: d["settings"][0].update(configs=["rm -rf /"]), r"configs\[0\]"),
    ],
)
def test_every_plan_field_is_checked_and_named(plan_dir, edit, match):
    _edit_plan(plan_dir, edit)
    refused(lambda: accel.load_plan(str(plan_dir)), accel.ConfigError, match)


def test_an_infinite_speedup_can_no_longer_win_a_pick(plan_dir):
    """Before: with one speedup set to Infinity, pick(speedup=10) returned a 1.21x setting."""
    _edit_plan(plan_dir, lambda d: d["settings"][1].update(speedup=float("inf")))
    with pytest.raises(accel.ConfigError):
        accel.load_plan(str(plan_dir)).pick(speedup=10)


def test_deep_or_huge_or_binary_plan_files_are_refused(tmp_path):
    (tmp_path / "deep").mkdir()
    (tmp_path / "deep" / "plan.json").write_text("[" * 100_000 + "]" * 100_000)
    refused(lambda: accel.load_plan(str(tmp_path / "deep")), accel.ConfigError, "deeper than")
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "plan.json").write_text("[" * 500 + "]" * 500)  # parses, but too deep to use
    refused(lambda: accel.load_plan(str(tmp_path / "nested")), accel.ConfigError, "deeper than 64 levels")
    (tmp_path / "binary").mkdir()
    (tmp_path / "binary" / "plan.json").write_bytes(b"\xff\xfe\x00{")
    refused(lambda: accel.load_plan(str(tmp_path / "binary")), accel.ConfigError, "not UTF-8")
    (tmp_path / "big").mkdir()
    with open(tmp_path / "big" / "plan.json", "wb") as f:
        f.truncate(files.MAX_DATA_BYTES + 1)
    refused(lambda: accel.load_plan(str(tmp_path / "big")), accel.ConfigError, "the limit is")


# ---------------------------------------------------------------------------------------- coefficients
def _coefficients(tmp_path, **changes):
    data = {
        "format": "accel-linear-ag/3",
        "denoiser": denoiser_fingerprint(tiny_denoiser("unet")),
        "scheduler": "DDIMScheduler",
        "guidance_scale": 4.0,
        "history": 1,
        "num_inference_steps": 4,
        "coefficients": {"1": [0.5, 0.0, 0.5, 0.0], "2": [0.5, 0.0, 0.5, 0.0]},
    }
    data.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del data[key]
    path = tmp_path / "coefficients.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"history": None}, r"\.history is missing"),
        ({"history": "2"}, r"\.history must be an integer"),
        ({"num_inference_steps": 4.5}, r"\.num_inference_steps must be an integer"),
        ({"coefficients": {"1": ["a", "b", "c", "d"]}}, r"coefficients\.1\[0\] must be a finite number"),
        ({"coefficients": {"1": [0.5, 0.0]}}, r"coefficients\.1 must be a list of 4 finite numbers"),
        ({"coefficients": {"9": [0.5, 0.0, 0.5, 0.0]}}, r"keys must be step numbers in \[0, 4\)"),
        ({"coefficients": {"1": [float("nan"), 0, 0, 0]}}, r"must be a finite number"),
        ({"denoiser": ["x"]}, r"denoiser must be a mapping"),
    ],
)
def test_coefficients_files_are_checked_field_by_field(tmp_path, changes, match):
    from accel.sampling.linear_ag import load_coefficients

    path = _coefficients(tmp_path, **changes)
    refused(lambda: load_coefficients(path), accel.ConfigError, match)


def test_good_coefficients_load(tmp_path):
    from accel.sampling.linear_ag import load_coefficients

    assert load_coefficients(_coefficients(tmp_path))["history"] == 1


# ---------------------------------------------------------------------------------------- specs and prompts
def _spec_file(tmp_path, text, name="spec.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("where", ["configs", "call", "metrics"])
def test_a_yaml_anchor_bomb_is_refused_at_once(tmp_path, where):
    """Before: an anchor bomb in configs spun for over 100 s, in call it grew to 2.85 GB, in metrics to 4 GB."""
    text = BOMB + f"model: sd-digits\n{where}: *h\n"
    path = _spec_file(tmp_path, text)
    refused(lambda: load_specs(path), accel.ConfigError, "expands to more than")
    assert not (tmp_path / "runs").exists()


def test_recursive_and_deep_yaml_and_json_specs_are_refused(tmp_path):
    refused(lambda: load_specs(_spec_file(tmp_path, "model: &m [*m]\n")), accel.ConfigError, "alias")
    deep = "model: " + "[" * 5000 + "]" * 5000 + "\n"
    refused(lambda: load_specs(_spec_file(tmp_path, deep)), accel.ConfigError, "deeper than")
    deep_json = '{"model": ' + "[" * 100_000 + "]" * 100_000 + "}"
    refused(lambda: load_specs(_spec_file(tmp_path, deep_json, "spec.json")), accel.ConfigError, "deeper than")


def test_specs_that_are_not_text_files_are_refused(tmp_path):
    binary = tmp_path / "spec.yaml"
    binary.write_bytes(b"model: sd-digits\n\x80\x81\xfe")
    refused(lambda: load_specs(str(binary)), accel.ConfigError, "not UTF-8")
    refused(lambda: load_specs(str(tmp_path)), accel.ConfigError, "is a folder")
    refused(lambda: load_specs("/dev/zero"), accel.ConfigError, "not a regular file")
    refused(lambda: load_specs(str(tmp_path / "nope.yaml")), accel.NotFoundError, "no such file")


@pytest.mark.parametrize(
    "prompts, content, match",
    [
        ("/dev/zero", None, "not a regular file"),
        ("folder", None, "is a folder"),
        ("binary.txt", b"a handwritten 7\n\xff\xfe\n", "not UTF-8"),
        ("many.txt", b"a handwritten 7\n" * (files.MAX_PROMPT_LINES + 1), "lines; the limit is"),
        ("missing.txt", None, "no such file"),
    ],
)
def test_prompt_files_are_regular_bounded_text(tmp_path, prompts, content, match):
    path = prompts if prompts.startswith("/") else str(tmp_path / prompts)
    if prompts == "folder":
        os.mkdir(path)
    elif content is not None:
        with open(path, "wb") as f:
            f.write(content)
    refused(lambda: SweepSpec(model="sd-digits", prompts=path), accel.AccelError, match)


def test_errors_never_repr_a_huge_structure(tmp_path):
    huge = {f"key{i}": list(range(50)) for i in range(20_000)}
    message = refused(lambda: SweepSpec(model="sd-digits", call={"height": huge}), accel.ConfigError, "height")
    assert len(message) < 1000


# ---------------------------------------------------------------------------------------- outputs
def test_a_failed_write_leaves_the_old_file_whole(tmp_path):
    """Before: running out of space at the plot step left a truncated pareto.html under its final name."""
    path = tmp_path / "pareto.html"
    path.write_text("the old, complete file")
    with pytest.raises(RuntimeError), files.atomic_write(str(path)) as f:
        f.write("half a new fi")
        raise RuntimeError("the plot library failed mid-way")
    assert path.read_text() == "the old, complete file"
    assert os.listdir(tmp_path) == ["pareto.html"]


def test_a_full_disk_is_one_line_naming_the_file(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    path = tmp_path / "summary.json"
    message = refused(lambda: files.write_json(str(path), {"a": 1}), accel.OutOfSpaceError, "no space left")
    assert str(path) in message and "bytes free" in message
    assert os.listdir(tmp_path) == []


def test_a_read_only_output_folder_is_one_line(tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(files.tempfile, "mkstemp", read_only)
    refused(lambda: files.write_json(str(tmp_path / "plan.json"), {}), accel.ConfigError, "read-only")


def test_pareto_plots_are_written_atomically(tmp_path, monkeypatch):
    import plotly.graph_objects as go

    from accel.evaluation.pareto import plot_html

    rows = [
        {"config": "baseline", "kind": "baseline", "speedup": 1.0, "steps": 4, "samples": 2},
        {"config": "ag", "kind": "method", "speedup": 1.5, "steps": 4, "samples": 2, "psnr": 31.5, "ssim": 0.95},
    ]
    path = tmp_path / "pareto.html"
    path.write_text("the old plot")

    def failing(self, file, **kwargs):
        file.write("<html>half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(go.Figure, "write_html", failing)
    with pytest.raises(accel.OutOfSpaceError):
        plot_html(rows, str(path), "t")
    assert path.read_text() == "the old plot"


# ---------------------------------------------------------------------------------------- the CLI and the demo
def test_cli_failures_are_one_line_with_the_traceback_in_a_log(tmp_path, monkeypatch, capsys):
    from accel import cli

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert cli.main(["eval", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "accel eval: error: sweep spec: no such file" in err

    def broken(args):
        raise KeyError("something deep inside")

    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_func(parser(), broken))
    assert cli.main(["info"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unexpected KeyError" in err and "Traceback" not in err
    log = err.split("traceback: ")[1].rstrip(")\n")
    assert "Traceback" in open(log).read()


def _with_func(parser, func):
    parser._subparsers._group_actions[0].choices["info"].set_defaults(func=func)
    return parser


def test_the_demo_refuses_overflowing_numbers():
    from accel.app.generation import _int
    from accel.app.models import AppError

    with pytest.raises(AppError, match="too large"):
        _int("steps", 10**400, 1, 100)
    with pytest.raises(AppError, match="between 1 and 100"):
        _int("steps", 1e300, 1, 100)


def test_eval_out_of_memory_names_the_requested_size():
    """An allocator failure while generating (CUDA's OutOfMemoryError, a CPU allocation error) becomes
    one OutOfMemoryError naming the size asked for."""
    import torch

    from accel.evaluation.runner import generate
    from accel.pipelines.testing import tiny_text_pipeline

    pipe = tiny_text_pipeline("unet")
    pipe.set_progress_bar_config(disable=True)
    for failure in (
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 512.00 GiB"),
        RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried"),
    ):

        def decode(*args, failure=failure, **kwargs):
            raise failure

        pipe.vae.decode = decode
        message = refused(
            lambda: generate(pipe, "a handwritten 7", 0, {"height": 64, "width": 96}, 2),
            accel.OutOfMemoryError,
            "height 64 x width 96",
        )
        assert "smaller size" in message
    del pipe.vae.decode
    with pytest.raises(ValueError, match="not an allocator failure"):  # other errors pass through unchanged

        def other(*args, **kwargs):
            raise ValueError("not an allocator failure")

        pipe.vae.decode = other
        generate(pipe, "a handwritten 7", 0, {"height": 64, "width": 64}, 2)
