"""The caching-schedule search (ECAD-style NSGA-II, ``accel search-cache``): resumable to the same front, seeded
with every hand interval, per-unit forecast operators, DeepCache step schedules."""

from __future__ import annotations

import json

import numpy as np
import pytest

from accel.caching import CacheSchedule, DeepCacheConfig


def _search(tmp, generations, family="pixart", forecast_order=0):
    from accel.pipelines.testing import tiny_text_pipeline
    from accel.tuning.cache_search import CalibrationSet, ScheduleSearch, SearchSettings
    from accel.tuning.cache_search_spaces import BlockScheduleSpace, DeepCacheStepSpace

    pipe = tiny_text_pipeline(family)
    call = dict(num_inference_steps=5, guidance_scale=3.0, height=16, width=16)
    if family == "pixart":
        call.update(use_resolution_binning=False, max_sequence_length=8, clean_caption=False)
        space = BlockScheduleSpace.measure(pipe, call, "a red circle", 5, forecast_order)
    else:
        space = DeepCacheStepSpace.measure(pipe, call, "a red circle", 5, branch=0, forecast_order=forecast_order)
    calibration = CalibrationSet(pipe, ["a red circle", "a blue square"], [0], call)
    settings = SearchSettings(population=6, generations=generations, seed=3)
    return ScheduleSearch(space, calibration, str(tmp), settings)


def test_search_resumes_from_checkpoint_to_the_same_front(tmp_path):
    straight = _search(tmp_path / "a", 3)
    final = straight.run(progress=False)
    interrupted = _search(tmp_path / "b", 1)
    interrupted.run(progress=False)
    resumed = _search(tmp_path / "b", 3)
    again = resumed.run(progress=False)
    assert np.array_equal(final, again)
    # the checkpoint keeps survival's rank and crowding (recomputed on the survivors alone they differ,
    # and the next tournaments with them), so the resumed search's state is the uninterrupted one's
    checkpoints = [json.loads((tmp_path / run / "checkpoint.json").read_text()) for run in ("a", "b")]
    assert "crowding" in checkpoints[0] and checkpoints[0] == checkpoints[1]
    front_a = [straight.evaluated[k] for k in sorted(straight.evaluated)]
    front_b = [resumed.evaluated[k] for k in sorted(resumed.evaluated)]
    assert front_a == front_b
    rows = resumed.export_front(again)
    assert rows and all(abs(r["flops_ratio_measured"] - r["flops_ratio_predicted"]) < 1e-6 for r in rows)
    assert [r["flops_ratio_predicted"] for r in rows] == sorted(r["flops_ratio_predicted"] for r in rows)
    loaded = CacheSchedule.load(rows[0]["path"])  # front members are ready-to-use BlockCache schedules
    assert loaded.metadata["cost"]["flops_ratio_measured"] == rows[0]["flops_ratio_measured"]


def test_search_starts_from_every_hand_interval(tmp_path):
    """More hand seeds than the population: the first population still spans the cheapest and the dearest
    (every FORA interval), not just the first interval's seeds, and forecasts where the search may."""
    search = _search(tmp_path, 0, forecast_order=1)
    seeds = search.space.seeds()
    assert len(seeds) > search.settings.population
    first = search.run(progress=False)
    costs = sorted(search.space.cost(b) for b in seeds)
    chosen = [search.space.cost(b) for b in first]
    assert min(chosen) == costs[0] and max(chosen) == costs[-1]
    assert len(set(chosen)) == len(chosen)  # one seed per cost level: no reuse/forecast twins
    assert all((search.space.to_forecast(b) > 0).any() for b in first)  # and the forecasting twin of each


def test_deepcache_step_search_space(tmp_path):
    search = _search(tmp_path, 1, family="unet")
    assert 0 < search.space.shallow_flops < search.space.full_flops
    final = search.run(progress=False)
    rows = search.export_front(final)
    assert all(abs(r["flops_ratio_measured"] - r["flops_ratio_predicted"]) < 1e-6 for r in rows)
    data = json.load(open(rows[0]["path"]))
    config = DeepCacheConfig.from_dict(data["config"])
    assert config.full_step_mask[0] is True and len(config.full_step_mask) == 5


@pytest.mark.parametrize("family", ["pixart", "unet"])
def test_search_chooses_an_operator_per_unit(tmp_path, family):
    search = _search(tmp_path, 1, family=family, forecast_order=2)
    plain = _search(tmp_path / "plain", 0, family=family).space
    assert search.space.n_var == 2 * plain.n_var  # a recompute bit and a forecast bit per unit
    seeds = search.space.seeds()
    assert any(b[plain.n_var :].any() for b in seeds) and any(not b[plain.n_var :].any() for b in seeds)
    rows = search.export_front(search.run(progress=False))
    assert all(abs(r["flops_ratio_measured"] - r["flops_ratio_predicted"]) < 1e-6 for r in rows)
    if family == "pixart":
        orders = {int(o) for r in rows for o in np.unique(CacheSchedule.load(r["path"]).forecast)}
    else:
        configs = [DeepCacheConfig.from_dict(json.load(open(r["path"]))["config"]) for r in rows]
        orders = {o for config in configs for o in config.forecast_steps}
    assert orders <= {0, 2} and rows
