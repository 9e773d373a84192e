"""`accel eval`: resumable sweeps, multi-process splitting, summaries and plots."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import accel
from accel.evaluation import SweepSpec, evaluate, format_table
from accel.evaluation.records import read_records
from accel.evaluation.runner import load_sample
from accel.evaluation.spec import load_specs, parse_configs

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _spec_file(directory, model, name="sweep", seeds=3):
    prompts = directory / "prompts.txt"
    prompts.write_text("a handwritten 1\na red circle\n")
    spec = {
        "model": model,
        "name": name,
        "steps": 4,
        "prompts": str(prompts),
        "seeds_per_prompt": seeds,
        "fewer_steps": [2],
        "call": {"height": 16, "width": 16, "guidance_scale": 3.0},
        "configs": ["none", {"type": "DeepCacheConfig", "interval": 2}],
    }
    path = directory / "spec.json"
    path.write_text(json.dumps(spec))
    return str(path)


def _digests(run_dir):
    out = {}
    for key, record in read_records(run_dir).items():
        with open(os.path.join(run_dir, record["path"]), "rb") as f:
            out[key] = hashlib.sha256(f.read()).hexdigest()
    return out


def _cli(*args):
    return [sys.executable, "-m", "accel.cli", *args]


def test_sweep_killed_midway_resumes_without_loss_or_duplicates(tmp_path, tiny_model):
    spec = _spec_file(tmp_path, tiny_model)
    out = tmp_path / "runs"
    run_dir = out / "sweep"
    proc = subprocess.Popen(
        _cli("eval", spec, "--out", str(out), "--no-progress"),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while time.time() < deadline:
        if len(read_records(str(run_dir))) >= 5 if run_dir.exists() else False:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _digests(str(run_dir))
    assert 5 <= len(before) < 18, "the run was killed midway"
    subprocess.run(
        _cli("eval", spec, "--out", str(out), "--no-progress"),
        env=ENV,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    lines = [json.loads(line) for line in open(run_dir / "records.jsonl")]
    keys = [r["key"] for r in lines]
    assert len(keys) == len(set(keys)) == 18  # 3 entries x 2 prompts x 3 seeds, each exactly once
    after = _digests(str(run_dir))
    assert all(after[k] == v for k, v in before.items())  # finished samples were not redone
    assert not list(run_dir.glob("records.rank*.jsonl"))
    summary = json.load(open(run_dir / "summary.json"))
    assert {r["config"] for r in summary} == {"baseline", "steps2", "deepcache_interval2"}
    assert (run_dir / "pareto.png").stat().st_size > 10_000 and (run_dir / "pareto.html").exists()


def test_two_processes_give_the_same_records_as_one(tmp_path, tiny_model):
    spec = _spec_file(tmp_path, tiny_model, seeds=2)
    single = evaluate(spec, out=str(tmp_path / "one"), progress=False)
    run_one = next(iter(single))
    cmd = [
        os.path.join(os.path.dirname(sys.executable), "accelerate"),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "29517",
        "-m",
        "accel.cli",
        "eval",
        spec,
        "--out",
        str(tmp_path / "two"),
        "--no-progress",
    ]
    subprocess.run(cmd, env=ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    run_two = str(tmp_path / "two" / "sweep")
    records = [json.loads(line) for line in open(os.path.join(run_two, "records.jsonl"))]
    assert {r["rank"] for r in records} == {0, 1}  # both processes generated samples
    one, two = read_records(run_one), read_records(run_two)
    fields = ("config", "prompt_id", "prompt", "seed", "steps", "path", "nfe")
    assert {k: tuple(r[f] for f in fields) for k, r in one.items()} == {
        k: tuple(r[f] for f in fields) for k, r in two.items()
    }
    for record in one.values():  # the same samples; float reduction order may move a pixel by one level
        a = load_sample(os.path.join(run_one, record["path"]))
        b = load_sample(os.path.join(run_two, record["path"]))
        assert (a - b).abs().max() <= 1 / 255 + 1e-6


def test_summary_numbers_and_table(tmp_path, tiny_model):
    spec = SweepSpec(
        model=tiny_model,
        name="s",
        steps=4,
        prompts=_prompt_file(tmp_path),
        seeds_per_prompt=1,
        fewer_steps=[2],
        call={"height": 16, "width": 16, "guidance_scale": 3.0},
        configs=["none", {"type": "AdaptiveGuidanceConfig", "threshold": -1.0}],
    )
    result = next(iter(evaluate(spec, out=str(tmp_path / "runs"), progress=False).values()))
    rows = {r["config"]: r for r in result["rows"]}
    assert rows["baseline"]["nfe"] == 8 and rows["steps2"]["nfe"] == 4 and rows["ag_threshold-1"]["nfe"] == 5
    assert rows["baseline"]["speedup"] == pytest.approx(1.0)
    assert rows["steps2"]["flop_ratio"] == pytest.approx(2.0, rel=0.05)
    assert "psnr" not in rows["baseline"] and rows["ag_threshold-1"]["psnr"] > 0
    table = format_table(result["rows"])
    assert "baseline" in table and "ag_threshold-1" in table
    assert os.path.exists(result["png"])


def _prompt_file(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("a handwritten 3\n")
    return str(path)


def test_spec_validation(tmp_path):
    with pytest.raises(ValueError, match="unknown config type"):
        parse_configs({"type": "TurboConfig"})
    with pytest.raises(ValueError, match="unknown sweep field"):
        path = tmp_path / "bad.json"
        path.write_text(json.dumps({"model": "sd-digits", "stepz": 4}))
        load_specs(str(path))
    with pytest.raises(ValueError, match="interval must be an integer"):
        SweepSpec(model="sd-digits", configs=[{"type": "DeepCacheConfig", "interval": 0}])
    with pytest.raises(ValueError, match="fewer_steps"):
        SweepSpec(model="sd-digits", steps=10, fewer_steps=[12])
    yaml_path = tmp_path / "two.yaml"
    yaml_path.write_text("sweeps:\n  - model: sd-digits\n    steps: 8\n  - model: sd3-shapes\n    configs: [none]\n")
    specs = load_specs(str(yaml_path))
    assert [s.model for s in specs] == ["sd-digits", "sd3-shapes"] and specs[0].fewer_step_counts() == [2, 3, 4, 5, 6]


def test_finished_run_is_never_overwritten_by_a_different_sweep(tmp_path, tiny_model):
    spec = SweepSpec(
        model=tiny_model,
        name="same",
        steps=2,
        prompts=_prompt_file(tmp_path),
        seeds_per_prompt=1,
        fewer_steps=[1],
        call={"height": 16, "width": 16},
    )
    evaluate(spec, out=str(tmp_path / "runs"), progress=False)
    other = SweepSpec(
        model=tiny_model,
        name="same",
        steps=3,
        prompts=_prompt_file(tmp_path),
        seeds_per_prompt=1,
        fewer_steps=[1],
        call={"height": 16, "width": 16},
    )
    with pytest.raises(ValueError, match="holds a different sweep"):
        evaluate(other, out=str(tmp_path / "runs"), progress=False)


def test_the_default_sweep_shows_each_shipped_plan_at_2_3_and_4x():
    """The main job's sweep holds the shipped plan's settings picked at 2x, 3x and 4x, named as tuned."""
    from accel.evaluation.defaults import default_specs
    from accel.evaluation.runner import run_entries
    from accel.pipelines.builtin import BUILTIN_MODELS
    from accel.plan import PlanTargetConfig

    for spec in default_specs():
        plan = accel.load_plan(BUILTIN_MODELS[spec.model].plan_dir)
        tuned = {e.name: e for e in run_entries(spec) if e.name.startswith("tuned-")}
        assert tuned, spec.model
        for name, entry in tuned.items():
            setting = plan.pick(speedup=float(name[len("tuned-") : -1]))
            assert entry.kind == "method" and entry.steps == setting.num_inference_steps
            assert list(entry.configs) == [c for c in setting.configs if not isinstance(c, PlanTargetConfig)]
        solver = [e for e in run_entries(spec) if e.kind == "fewer_steps_solver"]
        if spec.model in ("wan-moving-shapes", "sd-digits"):  # no solver clearly beats the shipped one
            assert not solver
        else:  # the best-solver rival at every fewer-steps count
            assert [e.steps for e in solver] == spec.fewer_step_counts(), spec.model


@pytest.mark.parametrize("name", ["../outside", "a/b", "", "x" * 81, 7])
def test_a_grid_entry_name_must_be_a_plain_folder_name(name):
    from accel.evaluation.spec import parse_entry

    with pytest.raises(accel.ConfigError, match="a grid entry's name must be 1-80 letters"):
        parse_entry({"steps": 10, "configs": [{"type": "DeepCacheConfig"}], "name": name}, 20)


def test_a_sweep_with_searched_schedules_and_a_solver_runs_them_as_rivals(tmp_path):
    """On the built-in SD3: fewer steps on a searched schedule and fewer steps with another solver run as
    curves of their own (measured FLOPs, the plain count's cost), and every verdict names the rival it
    was taken against."""
    folder = tmp_path / "schedules"
    folder.mkdir()
    schedule = accel.TimestepScheduleConfig(reference_steps=8, indices=(0, 1, 3, 5))
    (folder / "schedule_4.json").write_text(json.dumps(schedule.to_dict()))
    spec = SweepSpec(
        model="sd3-shapes",
        name="s",
        steps=8,
        num_prompts=3,
        seeds_per_prompt=1,
        fewer_steps=[4, 6],
        schedules=str(folder),
        solver="unipc",
        metrics=["fidelity"],
        configs=["none", {"type": "BlockCacheConfig", "interval": 2}],
    )
    result = next(iter(evaluate(spec, out=str(tmp_path / "runs"), progress=False).values()))
    rows = {r["config"]: r for r in result["rows"]}
    assert rows["steps4+schedule"]["kind"] == "fewer_steps_schedule" and "steps6+schedule" not in rows
    assert rows["steps4+schedule"]["flop_ratio"] == pytest.approx(rows["steps4"]["flop_ratio"], rel=0.02)
    assert rows["steps4+schedule"]["psnr"] != rows["steps4"]["psnr"]
    assert rows["steps4+unipc"]["kind"] == rows["steps6+unipc"]["kind"] == "fewer_steps_solver"
    assert rows["steps4+unipc"]["flop_ratio"] == pytest.approx(rows["steps4"]["flop_ratio"], rel=0.02)
    assert rows["steps4+unipc"]["psnr"] != rows["steps4"]["psnr"]
    method = next(r for r in result["rows"] if r["kind"] == "method")
    verdicts = method["verdicts"]
    rivals = ("fewer steps", "fewer steps, searched schedule", "fewer steps, best solver")
    assert verdicts and all(v["rival"] in rivals for v in verdicts.values())
    from accel.errors import NotFoundError

    with pytest.raises(NotFoundError, match="sweep.schedules must be a folder of searched schedules"):
        SweepSpec(model="sd3-shapes", schedules=str(tmp_path / "missing"))
    with pytest.raises(accel.ConfigError, match="sweep.solver must be one of"):
        SweepSpec(model="sd3-shapes", solver="heun")
