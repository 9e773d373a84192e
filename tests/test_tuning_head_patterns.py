"""The offline search of per-head sparse-attention patterns (Sparse-vDiT): the cheapest pattern within the
error bound, saved and loaded as JSON."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from accel.sparse_attention import (
    HeadPatterns,
    SequenceLayout,
)
from accel.tuning.head_pattern_search import HeadPatternSearch


def _plan_inputs():
    layout = SequenceLayout(4, 4, 4, tile=(1, 2, 2))  # 64 tokens, blocks of 4 = one 2x2 tile
    coords = layout.token_coords()
    frame = F.one_hot(coords[:, 0], 8).float()
    g = torch.Generator().manual_seed(0)
    q = torch.stack([frame * 12.0, frame, torch.zeros(64, 8)])[None]  # [1,3,64,8]
    v = torch.randn(1, 3, 64, 8, generator=g)
    v[0, 1] = 0.0  # head 1 outputs nothing
    return layout, q, q.clone(), v


def test_plan_search_picks_cheapest_pattern_within_bound(tmp_path):
    layout, q, k, v = _plan_inputs()
    search = HeadPatternSearch(
        ["diagonal:1", "temporal:0", "window:1,3,3"],
        error_bound=0.05,
        block_size=4,
        tile=(1, 2, 2),
        allow_skip=True,
        skip_bound=0.01,
        sample_rows=64,
    )
    search.observe(0, q, k, v, layout, scale=1.0)
    plan = search.result(meta={"model": "synthetic"})
    # head 0 attends within its frame: temporal:0 is enough and cheaper than the window;
    # head 1 has zero output: skipped; head 2 is uniform attention: nothing sparse is close enough
    assert plan.layers[0] == ("temporal:0", "skip", "dense")
    assert plan.errors[0][0] <= 0.05 and plan.densities[0][2] == 1.0
    path = plan.save(tmp_path / "plan.json")
    assert json.loads(path.read_text())["format"] == "accel.sparse_attention.head_patterns"
    loaded = HeadPatterns.load(path)
    assert loaded == plan
    mask = loaded.mask(0, layout, heads=3)
    assert mask.kv_num[0, 1].max() == 0 and mask.to_block_bool()[0, 2].all()
    with pytest.raises(ValueError, match="head patterns"):
        loaded.mask(0, layout, heads=4)
    assert loaded.mask(5, layout, heads=3) is None  # layers missing from the plan run dense
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not a sparse-attention head-patterns file"):
        HeadPatterns.load(bad)
