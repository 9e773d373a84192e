"""The GPU benchmark entry point (``python -m benchmarks.gpu``) runs end to end: ``--smoke`` is the same
code on the CPU at tiny sizes, every model, eager and compiled, accel's rows and the peers that install."""

from __future__ import annotations

import json
import time

import pytest
import torch


@pytest.mark.slow
def test_the_gpu_benchmark_smoke_run_fills_every_row(tmp_path):
    from benchmarks.gpu.run import RESULTS, main

    start = time.monotonic()
    try:
        assert main(["--smoke", "--out", str(tmp_path)]) == 0
    finally:
        torch._dynamo.reset()
    seconds = time.monotonic() - start
    results = json.load(open(tmp_path / "results.json"))
    assert results["smoke"] and results["ran"]["dtype"] == "bfloat16"
    assert set(results["models"]) == {"sd15", "sdxl", "sd3", "flux", "wan"}
    for name, model in results["models"].items():
        rows = model["rows"]
        accel_rows = [r for r, e in rows.items() if r != "baseline" and e["peer"] is None]
        assert len(accel_rows) >= 3, name
        for row in accel_rows:  # every accel row ran in both modes, with its FLOPs counted
            entry = rows[row]
            assert isinstance(entry.get("eager_ratio"), float) and isinstance(entry.get("compiled_ratio"), float), (
                name,
                row,
                entry,
            )
        cache = next(e for r, e in rows.items() if r.startswith(("DeepCache N=2", "BlockCache")))
        assert cache["flop_ratio"] > 1.5, (name, cache)  # caching every other step: the FLOPs show it
        assert rows["baseline"]["compiled_with"] in ("compile_repeated_blocks", "torch.compile(denoiser)")
    assert "## Wan 2.1 1.3B" in open(tmp_path / "results.md").read()
    assert seconds < 240, seconds  # 80-90 s alone on 2 cores; the suite runs other tests beside it
    with pytest.raises(SystemExit, match="GPU figures only"):
        main(["--smoke", "--out", RESULTS, "--models", "sd15"])
