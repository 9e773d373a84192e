"""`accel eval` run folders that never lose work, and sweep specs refused before anything is written.

A run folder has one writer at a time (a lock the main process holds; a second `accel eval` on the same
folder is refused, or queues with ``--wait``), merges only run under that lock, temporaries have
unique names and records are whole lines. Every spec field is typed and range-checked when the spec
is read, before any folder is created or any model loaded, and the error names the field, its allowed
range and the spec file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import torch

from accel.errors import AccelError, ConfigError, NotFoundError, StateError
from accel.evaluation import SweepSpec, evaluate, runner
from accel.evaluation.records import RecordWriter, merge, read_records
from accel.evaluation.spec import load_specs

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
LOCK = ".accel-eval.lock"  # the run folder's lock file (accel.evaluation.runfolder.LOCK_FILE)


def _tiny_spec(directory, model, seeds=2, **changes):
    prompts = directory / "prompts.txt"
    prompts.write_text("a handwritten 1\na red circle\n")
    spec = {
        "model": model,
        "name": "sweep",
        "steps": 4,
        "prompts": str(prompts),
        "seeds_per_prompt": seeds,
        "fewer_steps": [2],
        "call": {"height": 16, "width": 16, "guidance_scale": 3.0},
        "configs": ["none", {"type": "DeepCacheConfig", "interval": 2}],
        **changes,
    }
    path = directory / "spec.json"
    path.write_text(json.dumps(spec))
    return str(path)


def _cli(*args):
    return [sys.executable, "-m", "accel.cli", *args]


def _no_model_loads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the spec was validated")

    monkeypatch.setattr(runner, "load_pipeline", refuse)


# ---------------------------------------------------------------------------------------- spec validation

#: (field, value, text the error must hold besides the field name and the spec file)
BAD_FIELDS = [
    ("num_prompts", -8, "[1, 10]"),
    ("num_prompts", 10**9, "[1, 10]"),
    ("num_prompts", 1e9, "[1, 10]"),
    ("num_prompts", "abc", "[1, 10]"),
    ("guidance_scale", "abc", "[0, 100]"),
    ("base_seed", 2**70, "[0, 4294967295]"),
    ("call", {"height": -32}, "[1, 16384]"),
    ("steps", True, "[1, 10000]"),
    ("seeds_per_prompt", 0, "[1, 1000]"),
    ("name", "../../x", "plain folder name"),
    ("name", "a/b", "plain folder name"),
    ("model", "./no-such-model-dir", "no such directory"),
    ("model", "/no/such/model", "no such directory"),
    ("model", "sd-digitz", "built-in"),
    ("prompts", "no-such-prompts.txt", "no such file"),
    ("scheduler", "NoSuchScheduler", "scheduler class"),
    ("metrics", "fidelity", "list"),
    ("fewer_steps", [True], "[1, 19]"),
    ("device", "gpu-please", "device"),
    ("dtype", "fp8", "['auto', 'float32', 'bfloat16', 'float16']"),
    ("configs", "none", "list"),
]


@pytest.mark.parametrize(("field", "value", "allowed"), BAD_FIELDS, ids=[f"{f}={v!r}" for f, v, _ in BAD_FIELDS])
def test_bad_spec_field_is_refused_before_anything_is_written(tmp_path, monkeypatch, field, value, allowed):
    _no_model_loads(monkeypatch)
    out = tmp_path / "deep" / "er" / "runs"
    spec = {"model": "sd-digits", "name": "run", "steps": 20, field: value}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(AccelError) as caught:
        evaluate(str(path), out=str(out), progress=False)
    message = str(caught.value)
    assert field in message and allowed in message and str(path) in message, message
    assert not out.exists() and not (tmp_path / "x").exists() and not (tmp_path / "deep" / "x").exists()


def test_missing_model_path_is_not_found_and_creates_nothing(tmp_path, monkeypatch):
    _no_model_loads(monkeypatch)
    path = tmp_path / "spec.yaml"
    path.write_text(f"model: {tmp_path / 'model'}\nsteps: 4\n")
    with pytest.raises(NotFoundError, match="sweep.model"):
        evaluate(str(path), out=str(tmp_path / "out"), progress=False)
    assert not (tmp_path / "out").exists()


def test_corrected_spec_runs_after_a_refused_one(tmp_path, tiny_model):
    """A bad guidance_scale used to fail after config.json was written, so the fixed spec was 'a different sweep'."""
    call = {"height": 16, "width": 16}
    bad = _tiny_spec(tmp_path, tiny_model, seeds=1, guidance_scale="abc", call=call)
    out = tmp_path / "runs"
    with pytest.raises(ConfigError, match="guidance_scale"):
        evaluate(bad, out=str(out), progress=False, max_samples=1)
    assert not out.exists()
    good = load_specs(_tiny_spec(tmp_path, tiny_model, seeds=1, guidance_scale=3.0, call=call))[0]
    assert runner.prepare_run_dir(good, str(out)) == str(out / "sweep")  # not "a different sweep"


def test_duplicate_keys_are_refused(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("model: sd-digits\nsteps: 8\nname: a\nsteps: 20\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'steps'.*line 4") as caught:
        load_specs(str(path))
    assert str(path) in str(caught.value)
    nested = tmp_path / "nested.yaml"
    nested.write_text("model: sd-digits\ncall:\n  height: 32\n  height: 64\n")
    with pytest.raises(ConfigError, match="duplicate key 'height'"):
        load_specs(str(nested))
    as_json = tmp_path / "dup.json"
    as_json.write_text('{"model": "sd-digits", "steps": 8, "steps": 20}')
    with pytest.raises(ConfigError, match="duplicate key 'steps'"):
        load_specs(str(as_json))


def test_several_sweeps_name_the_failing_one(tmp_path):
    path = tmp_path / "two.yaml"
    path.write_text("sweeps:\n  - model: sd-digits\n    steps: 8\n  - model: sd3-shapes\n    steps: 0\n")
    with pytest.raises(ConfigError, match=r"two.yaml.*sweep 2.*steps.*\[1, 10000\]"):
        load_specs(str(path))
    same = tmp_path / "same.yaml"
    same.write_text("sweeps:\n  - model: sd-digits\n    steps: 8\n  - model: sd-digits\n    steps: 10\n")
    with pytest.raises(ConfigError, match="same run folder"):
        evaluate(str(same), out=str(tmp_path / "out"), progress=False)
    assert not (tmp_path / "out").exists()


def test_valid_model_names(tmp_path, tiny_model):
    prompts = _tiny_prompts(tmp_path)
    assert SweepSpec(model="org/name", prompts=prompts).run_name == "name"  # a hub id: loaded later
    assert SweepSpec(model=tiny_model, prompts=prompts).run_name == "tiny-sd"
    with pytest.raises(ConfigError, match="sweep.name"):
        SweepSpec(model="org/name", prompts=prompts, name="..")
    with pytest.raises(ConfigError, match="classifier"):
        SweepSpec(model="vit-digits")
    with pytest.raises(ConfigError, match="max_samples"):
        evaluate(SweepSpec(model="sd-digits"), out=str(tmp_path / "out"), max_samples=-1)
    assert not (tmp_path / "out").exists()


def _tiny_prompts(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("a handwritten 3\n")
    return str(path)


# ---------------------------------------------------------------------------------------- run folders


def test_second_process_on_a_locked_run_folder_is_refused(tmp_path, tiny_model):
    """The lock is held (here by the test) while `accel eval --max-samples 2` starts on the same folder."""
    from filelock import FileLock

    spec = _tiny_spec(tmp_path, tiny_model)
    run_dir = tmp_path / "runs" / "sweep"
    run_dir.mkdir(parents=True)
    with FileLock(str(run_dir / LOCK), timeout=0):
        proc = subprocess.run(
            _cli("eval", spec, "--out", str(tmp_path / "runs"), "--max-samples", "2", "--no-progress"),
            env=ENV,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert str(run_dir) in proc.stderr and "in use" in proc.stderr and "--wait" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (run_dir / "samples").exists() and not (run_dir / "config.json").exists()


def test_wait_queues_behind_the_holder(tmp_path, tiny_model):
    from filelock import FileLock

    spec = _tiny_spec(tmp_path, tiny_model, seeds=1)
    run_dir = tmp_path / "runs" / "sweep"
    run_dir.mkdir(parents=True)
    log = tmp_path / "stderr.txt"
    lock = FileLock(str(run_dir / LOCK), timeout=0)
    lock.acquire()
    try:
        with open(log, "w") as stderr:
            proc = subprocess.Popen(
                _cli("eval", spec, "--out", str(tmp_path / "runs"), "--wait", "--no-progress"),
                env=ENV,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        deadline = time.time() + 240
        while "waiting" not in log.read_text() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, log.read_text()
        assert "waiting" in log.read_text() and str(run_dir) in log.read_text()
        assert not (run_dir / "config.json").exists()  # nothing written while another process holds the folder
    finally:
        lock.release()
    try:
        assert proc.wait(timeout=300) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(read_records(str(run_dir))) == 3 * 2


def test_two_runs_started_at_once_lose_nothing(tmp_path, tiny_model):
    """A full run and a `--max-samples 2` run on one folder, started together: both finish, every sample once."""
    seeds = 4
    spec = _tiny_spec(tmp_path, tiny_model, seeds=seeds)
    out = tmp_path / "runs"
    run_dir = out / "sweep"
    procs = [
        subprocess.Popen(
            _cli("eval", spec, "--out", str(out), "--wait", "--no-progress", *extra),
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for extra in ((), ("--max-samples", "2"))
    ]
    try:
        errors = [p.communicate(timeout=400)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], errors
    lines = (run_dir / "records.jsonl").read_text().splitlines()
    keys = [json.loads(line)["key"] for line in lines]
    assert len(keys) == len(set(keys)) == 3 * 2 * seeds
    assert not list(run_dir.glob("records.rank*.jsonl"))
    assert not [p for p in run_dir.rglob("*") if p.name.endswith(".tmp")]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {r["config"]: r["samples"] for r in summary} == {
        "baseline": 2 * seeds,
        "steps2": 2 * seeds,
        "deepcache_interval2": 2 * seeds,
    }


def test_run_folder_lock_between_threads(tmp_path):
    """One holder per folder: re-entrant in its own thread, refused (or waited for) in another."""
    import threading

    from accel.evaluation.runfolder import OWNER_FILE, holds_lock, run_folder_lock

    run_dir = str(tmp_path / "run")
    held, release = threading.Event(), threading.Event()

    def holder():
        with run_folder_lock(run_dir), run_folder_lock(run_dir):  # nested: evaluate -> run_generation
            held.set()
            release.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(30)
        assert not holds_lock(run_dir)  # another thread holds it
        assert json.loads((tmp_path / "run" / OWNER_FILE).read_text())["pid"] == os.getpid()
        with pytest.raises(StateError, match=r"run is in use by another accel eval \(pid \d+"):
            with run_folder_lock(run_dir):
                pass
        start = time.monotonic()
        with pytest.raises(StateError, match="still in use by another accel eval after 0.3 s"):
            with run_folder_lock(run_dir, wait=0.3):
                pass
        assert time.monotonic() - start >= 0.3
    finally:
        release.set()
        thread.join(30)
    with run_folder_lock(run_dir, wait=5):
        assert holds_lock(run_dir)
    assert not holds_lock(run_dir) and not (tmp_path / "run" / OWNER_FILE).exists()


def test_a_bf16_sweep_runs_in_bf16_and_records_it(tmp_path, tiny_model):
    """`dtype: bfloat16` loads the pipeline in bfloat16; config.json records what ran (device, dtype,
    versions); a rerun of the folder in another dtype is refused as another sweep."""
    spec = _tiny_spec(tmp_path, tiny_model, seeds=1, dtype="bfloat16")
    out = tmp_path / "runs"
    result = evaluate(spec, out=str(out), progress=False, max_samples=1)
    config = json.load(open(out / "sweep" / "config.json"))
    assert config["environment"]["dtype"] == "bfloat16" and config["environment"]["device"] == "cpu"
    assert config["environment"]["torch"] == torch.__version__
    rows = {r["config"]: r for r in next(iter(result.values()))["rows"]}
    assert rows["deepcache_interval2"]["psnr"] > 10  # a bf16 image, scored against the bf16 baseline
    with pytest.raises(ConfigError, match="holds a different sweep"):
        evaluate(spec, out=str(out), progress=False, max_samples=1, dtype="float32")


def test_temporaries_have_unique_names(tmp_path, tiny_model):
    """Another writer's temporary with the old fixed name (here a folder in its way) does not collide."""
    spec = SweepSpec(
        model=tiny_model,
        name="s",
        steps=2,
        prompts=_tiny_prompts(tmp_path),
        seeds_per_prompt=1,
        fewer_steps=[1],
        call={"height": 16, "width": 16},
    )
    run_dir = tmp_path / "runs" / "s"
    for blocker in ("config.json.tmp", "records.jsonl.tmp", "samples/baseline/p0000_s0.png.tmp"):
        (run_dir / blocker).mkdir(parents=True)
    runner.run_generation(spec, str(tmp_path / "runs"), progress=False, measure_flops=False)
    assert len(read_records(str(run_dir))) == 2


def test_merge_needs_the_run_folder_lock(tmp_path):
    """A merge deletes the shards it folded in, so it only runs while this process holds the folder."""
    run_dir = tmp_path / "run"
    (run_dir / "samples").mkdir(parents=True)
    (run_dir / "samples" / "a.png").write_bytes(b"png")
    shard = run_dir / "records.rank0.jsonl"
    shard.write_text(json.dumps({"key": "a", "path": "samples/a.png"}) + "\n")
    with pytest.raises(StateError, match="lock"):
        merge(str(run_dir))
    assert shard.exists()


def test_torn_last_record_is_cut_before_appending(tmp_path, tiny_model):
    """A record torn by a crash mid-write used to swallow the next record appended on resume."""
    spec = SweepSpec(
        model=tiny_model,
        name="s",
        steps=2,
        prompts=_tiny_prompts(tmp_path),
        seeds_per_prompt=3,
        fewer_steps=[1],
        call={"height": 16, "width": 16},
    )
    out = str(tmp_path / "runs")
    run_dir = tmp_path / "runs" / "s"
    runner.run_generation(spec, out, max_samples=1, progress=False, measure_flops=False)
    assert len(read_records(str(run_dir))) == 2
    (run_dir / "records.rank0.jsonl").write_text('{"config": "baseline", "key": "baseline|p0000|s1", "pa')
    runner.run_generation(spec, out, progress=False, measure_flops=False)
    lines = (run_dir / "records.jsonl").read_text().splitlines()
    assert len({json.loads(line)["key"] for line in lines}) == 2 * 3
    stamps = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*.png") if p.parent.parent.name == "samples"}
    runner.run_generation(spec, out, progress=False, measure_flops=False)  # nothing left to do: nothing redone
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_record_writer_keeps_a_whole_last_record_without_newline(tmp_path):
    (tmp_path / "a.png").write_bytes(b"png")
    (tmp_path / "b.png").write_bytes(b"png")
    shard = tmp_path / "records.rank0.jsonl"
    shard.write_text(json.dumps({"key": "a", "path": "a.png"}))  # complete, only the newline is missing
    writer = RecordWriter(str(tmp_path), 0)
    writer.write({"key": "b", "path": "b.png"})
    writer.close()
    assert shard.read_text().endswith("\n") and sorted(read_records(str(tmp_path))) == ["a", "b"]
