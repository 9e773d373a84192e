"""`accel eval` speed and verdicts: paired timing on a machine whose load changes, FLOPs of adaptive
methods, the speed axis, and "beats fewer steps" only where the paired bootstrap says so."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from accel.evaluation import SweepSpec, evaluate, format_table
from accel.evaluation import runner as runner_module
from accel.evaluation.scoring import _flop_columns, choose_axis
from accel.evaluation.verdicts import EntryValues, frechet_distance, judge

QUALITY = {"psnr": True, "alignment": True, "fid": False}


def _spec(tmp_path, model, configs, seeds=3, fewer=(2,)):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a handwritten 1\na red circle\n")
    return SweepSpec(
        model=model,
        name="s",
        steps=4,
        prompts=str(prompts),
        seeds_per_prompt=seeds,
        fewer_steps=list(fewer),
        call={"height": 16, "width": 16, "guidance_scale": 3.0},
        configs=configs,
    )


def test_paired_timing_survives_a_machine_that_slows_down(tmp_path, tiny_model, monkeypatch):
    # A machine whose load grows with every call: each call costs steps x load, load doubling over the run.
    # Timed config by config (each in its own stretch), the later configs looked slower than they are;
    # timed sample by sample, each config runs beside the baseline, so the ratio of costs comes through.
    real_generate = runner_module.generate
    calls = {"n": 0}

    def generate(pipe, prompt, seed, call, steps):
        sample, _, _ = real_generate(pipe, prompt, seed, call, steps)
        calls["n"] += 1
        load = 1.0 + calls["n"] / 20
        return sample, steps * load, steps * load

    monkeypatch.setattr(runner_module, "generate", generate)
    spec = _spec(tmp_path, tiny_model, ["none"], seeds=4, fewer=(2, 1))
    rows = {r["config"]: r for r in next(iter(evaluate(spec, out=str(tmp_path), progress=False).values()))["rows"]}
    assert rows["steps2"]["speedup"] == pytest.approx(2.0, rel=0.1)  # entry by entry this read 1.5
    assert rows["steps1"]["speedup"] == pytest.approx(4.0, rel=0.1)  # ... and this 2.3


def test_interleaved_order_pairs_every_entry_with_the_baseline_and_rotates():
    entries = runner_module.run_entries(SweepSpec(model="sd-digits", steps=4, fewer_steps=[2, 1], configs=["none"]))
    order = runner_module.interleaved(entries, [(0, 10), (1, 11), (0, 12)])
    rounds = [order[i : i + 3] for i in range(0, 9, 3)]
    for (pid, seed), round_ in zip([(0, 10), (1, 11), (0, 12)], rounds):
        assert {e.name for e, _, _ in round_} == {"baseline", "steps2", "steps1"}
        assert all((p, s) == (pid, seed) for _, p, s in round_)
    assert [r[0][0].name for r in rounds] == [e.name for e in entries]  # no entry always goes first


def test_flop_ratio_of_adaptive_guidance_follows_its_mean_nfe():
    # the counted call ran full CFG (8 NFEs), the samples averaged 5: the denoiser part scales, the rest does not
    flops = {
        "baseline": {"total": 1000.0, "denoiser": 800.0, "nfe": 8},
        "ag": {"total": 1000.0, "denoiser": 800.0, "nfe": 8},
    }
    records = [{"nfe": 5}, {"nfe": 5}]
    columns = _flop_columns(flops, "ag", records, baseline_nfe=8)
    assert columns["denoiser_flop_ratio"] == pytest.approx(8 / 5)
    assert columns["flop_ratio"] == pytest.approx(1000 / (200 + 500))
    # a fewer-steps entry has no count of its own: the baseline's, its denoiser part scaled to 4 NFEs
    steps = _flop_columns({"baseline": flops["baseline"]}, "steps2", [{"nfe": 4}], 8, kind="fewer_steps")
    assert steps["denoiser_flop_ratio"] == pytest.approx(2.0) and steps["flop_ratio"] == pytest.approx(1000 / 600)
    # a bare total (runs from before) gives the plain ratio, unscaled
    assert _flop_columns({"baseline": 10, "x": 5}, "x", records, 8)["flop_ratio"] == pytest.approx(2.0)


def test_adaptive_guidance_flops_counted_in_a_sweep(tmp_path, tiny_model):
    spec = _spec(tmp_path, tiny_model, ["none", {"type": "AdaptiveGuidanceConfig", "threshold": -1.0}], seeds=1)
    rows = {r["config"]: r for r in next(iter(evaluate(spec, out=str(tmp_path), progress=False).values()))["rows"]}
    ag = rows["ag_threshold-1"]
    assert ag["nfe"] == 5 and ag["denoiser_flop_ratio"] == pytest.approx(8 / 5, rel=0.02)
    assert 1.0 < ag["flop_ratio"] < ag["denoiser_flop_ratio"]  # text encoder and VAE do not shrink
    assert ag["speed_axis"] in ("wall", "flops") and ag["speed"] in (ag["speedup"], ag["flop_ratio"])
    assert f"speed ({ag['speed_axis']})" in format_table(list(rows.values()))


def test_speed_axis_choice():
    steady = [
        {"config": "a", "kind": "method", "speedup": 2.0, "speedup_p10": 1.9, "speedup_p90": 2.1, "flop_ratio": 2.2}
    ]
    noisy = [
        {"config": "a", "kind": "method", "speedup": 2.0, "speedup_p10": 1.0, "speedup_p90": 6.0, "flop_ratio": 2.2}
    ]
    assert choose_axis(steady, "auto") == "wall" and choose_axis(noisy, "auto") == "flops"
    assert choose_axis(noisy, "wall") == "wall" and choose_axis(steady, "flops") == "flops"


def _entries(offset: float, noise: float, n: int, rng: np.random.Generator) -> dict[str, EntryValues]:
    """Fewer-steps curve 1x: 0.9, 2x: 0.8, 4x: 0.6 (per sample, with shared sample effects) and a method at 2x."""
    ids = [f"p{i}_s0" for i in range(n)]
    sample_effect = rng.normal(0, 0.05, n)

    def values(level: float, extra: float = 0.0) -> dict[str, float]:
        return dict(zip(ids, (level + sample_effect + rng.normal(0, noise, n) + extra).tolist()))

    return {
        "baseline": EntryValues("baseline", 1.0, {"alignment": values(0.9)}),
        "steps10": EntryValues("fewer_steps", 2.0, {"alignment": values(0.8)}),
        "steps5": EntryValues("fewer_steps", 4.0, {"alignment": values(0.6)}),
        "method": EntryValues("method", 2.0, {"alignment": values(0.8, offset)}),
    }


def test_verdict_is_a_tie_within_the_noise_and_a_win_beyond_it():
    rng = np.random.default_rng(0)
    # a method no better than fewer steps, 8 samples: its point estimate lands on one side of the curve by chance,
    # which the old rule (point above the interpolated curve) called a win or a loss; the bootstrap calls it a tie
    ties = [judge(_entries(0.0, 0.05, 8, rng), QUALITY, ("psnr",), seed=k)["method"]["alignment"] for k in range(20)]
    assert sum(t["verdict"] == "ties" for t in ties) >= 17  # a 95% interval: about one false call in twenty
    assert sum(t["difference"] > 0 for t in ties) not in (0, 20)  # the old rule would have said "beats" on some
    clear = judge(_entries(0.1, 0.02, 24, rng), QUALITY, ("psnr",))["method"]["alignment"]
    assert clear["verdict"] == "beats" and clear["low"] > 0
    worse = judge(_entries(-0.1, 0.02, 24, rng), QUALITY, ("psnr",))["method"]["alignment"]
    assert worse["verdict"] == "loses" and worse["high"] < 0


def test_fid_verdict_and_frechet_distance_match_torchmetrics():
    from torchmetrics.image.fid import FrechetInceptionDistance

    rng = np.random.default_rng(1)
    real = rng.normal(0, 1, (200, 8))
    fake = rng.normal(0.3, 1.2, (60, 8))

    class Identity(torch.nn.Module):
        num_features = 8

        def forward(self, x):
            return x

    metric = FrechetInceptionDistance(feature=Identity(), normalize=True)
    metric.update(torch.tensor(real, dtype=torch.float64), real=True)
    metric.update(torch.tensor(fake, dtype=torch.float64), real=False)
    ours = frechet_distance(real.mean(0), np.cov(real, rowvar=False), fake)
    assert ours == pytest.approx(float(metric.compute()), rel=1e-4)

    real_stats = (real.mean(0), np.cov(real, rowvar=False))
    near = {f"s{i}": rng.normal(0, 1, (1, 8)) for i in range(40)}
    far = {f"s{i}": rng.normal(1.0, 1, (1, 8)) for i in range(40)}
    entries = {
        "baseline": EntryValues("baseline", 1.0, features=near),
        "steps2": EntryValues("fewer_steps", 2.0, features=far),
        "method": EntryValues("method", 2.0, features=near),
    }
    verdict = judge(entries, {"fid": False}, (), real_stats)["method"]["fid"]
    assert verdict["verdict"] == "beats" and verdict["difference"] > 0


def test_the_verdict_is_taken_against_the_stronger_rival_curve():
    """A method 0.1 above plain fewer steps but 0.1 below fewer steps on a searched schedule loses to the
    latter; without the schedule curve it beats plain fewer steps."""
    rng = np.random.default_rng(2)
    entries = _entries(0.1, 0.02, 24, rng)
    plain = judge(entries, QUALITY, ("psnr",))["method"]["alignment"]
    assert plain["verdict"] == "beats" and plain["rival"] == "fewer steps"
    method = entries["method"].per_sample["alignment"]
    stronger = {k: v + 0.1 for k, v in method.items()}
    entries["steps10+schedule"] = EntryValues("fewer_steps_schedule", 2.0, {"alignment": stronger})
    both = judge(entries, QUALITY, ("psnr",))["method"]["alignment"]
    assert both["verdict"] == "loses" and both["rival"] == "fewer steps, searched schedule"
    assert both["difference"] == pytest.approx(-0.1, abs=1e-6)


def test_the_best_solver_is_a_third_rival_curve():
    """Fewer steps with the sweep's solver are a rival of their own: a method that beats the two other
    curves but not that one loses to it, and the verdict names it."""
    rng = np.random.default_rng(3)
    entries = _entries(0.1, 0.02, 24, rng)
    method = entries["method"].per_sample["alignment"]
    entries["steps10+schedule"] = EntryValues("fewer_steps_schedule", 2.0, {"alignment": dict(method)})
    stronger = {k: v + 0.05 for k, v in method.items()}
    entries["steps10+unipc"] = EntryValues("fewer_steps_solver", 2.0, {"alignment": stronger})
    verdict = judge(entries, QUALITY, ("psnr",))["method"]["alignment"]
    assert verdict["verdict"] == "loses" and verdict["rival"] == "fewer steps, best solver"
    assert verdict["difference"] == pytest.approx(-0.05, abs=1e-6)
