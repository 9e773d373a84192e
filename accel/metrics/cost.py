"""Cost metrics: wall latency (warm-up excluded, median and spread, device synchronised),
denoiser-only time, FLOPs (``torch.utils.flop_counter``), peak memory and plugin cache bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch


def _count_cpu_attention() -> None:
    """torch's FLOP counter knows the CUDA SDPA kernels but not the CPU one (``_scaled_dot_product_flash_
    attention_for_cpu``), so dense attention on the CPU counted as zero FLOPs; count it as torch counts SDPA."""
    from torch.utils import flop_counter

    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is not None and op not in flop_counter.flop_registry:
        flop_counter.register_flop_formula(op, get_raw=True)(flop_counter.sdpa_flop)  # already shape-wrapped


_count_cpu_attention()


def synchronize(device: torch.device | str | None = None) -> None:
    """Wait for queued GPU work so that a timer measures it (no-op on the CPU)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize(device)


@dataclasses.dataclass
class Latency:
    """Seconds per call over ``repeats`` timed runs after ``warmup`` untimed ones."""

    median: float
    p10: float
    p90: float
    mean: float
    stdev: float
    runs: list[float]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def summarize_times(times: list[float]) -> Latency:
    ordered = sorted(times)
    n = len(ordered)

    def q(p: float) -> float:
        return ordered[min(n - 1, max(0, round(p * (n - 1))))]

    return Latency(
        median=statistics.median(ordered),
        p10=q(0.1),
        p90=q(0.9),
        mean=statistics.fmean(ordered),
        stdev=statistics.stdev(ordered) if n > 1 else 0.0,
        runs=list(times),
    )


def measure_latency(fn: Callable[[], Any], warmup: int = 1, repeats: int = 5) -> Latency:
    """Time ``fn()``: ``warmup`` runs excluded, device synchronised around every timed run."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize()
        start = time.perf_counter()
        fn()
        synchronize()
        times.append(time.perf_counter() - start)
    return summarize_times(times)


def measure_interleaved(fns: dict[str, Callable[[], Any]], warmup: int = 1, repeats: int = 5) -> dict[str, Latency]:
    """Time several callables side by side, interleaving their repeats so drift hits all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            synchronize()
            start = time.perf_counter()
            fn()
            synchronize()
            times[name].append(time.perf_counter() - start)
    return {name: summarize_times(t) for name, t in times.items()}


class _AroundForward:
    """A context manager that runs ``_pre``/``_post`` around every forward call of ``module``."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module
        self.calls = 0
        self._handles: list[Any] = []

    def __enter__(self):
        self._handles = [
            self.module.register_forward_pre_hook(self._pre),
            self.module.register_forward_hook(self._post),
        ]
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()

    def _pre(self, module: Any, args: Any) -> None:
        raise NotImplementedError

    def _post(self, module: Any, args: Any, output: Any) -> None:
        raise NotImplementedError


class DenoiserTimer(_AroundForward):
    """Accumulates the wall time spent inside a module's forward (e.g. the denoiser of a pipeline).

    Uses torch's forward pre/post hooks, so it sees the module as the pipeline calls it (with any
    accel hooks inside).
    """

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__(module)
        self.seconds = 0.0
        self._start: float | None = None

    def _pre(self, module: Any, args: Any) -> None:
        synchronize()
        self._start = time.perf_counter()

    def _post(self, module: Any, args: Any, output: Any) -> None:
        synchronize()
        if self._start is not None:
            self.seconds += time.perf_counter() - self._start
            self.calls += 1
        self._start = None


@contextlib.contextmanager
def count_flops() -> Iterator[dict[str, int]]:
    """Count the FLOPs of everything run inside the block: ``with count_flops() as f: ...; f["total"]``.

    Counts the matmuls, convolutions and attention kernels torch actually executed, so skipped
    work (cached blocks, dropped tokens) is not counted.
    """
    from torch.utils.flop_counter import FlopCounterMode

    result: dict[str, int] = {"total": 0}
    mode = FlopCounterMode(display=False)
    with mode:
        yield result
    result["total"] = int(mode.get_total_flops())


class ModuleFlops(_AroundForward):
    """Counts the FLOPs executed inside a module's forward calls (e.g. only the denoiser of a pipeline).

    ``with ModuleFlops(pipe.transformer) as f: pipe(...)`` then ``f.total`` and ``f.calls``.
    """

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__(module)
        self.total = 0
        self._mode: Any = None

    def _pre(self, module: Any, args: Any) -> None:
        from torch.utils.flop_counter import FlopCounterMode

        self._mode = FlopCounterMode(display=False)
        self._mode.__enter__()

    def _post(self, module: Any, args: Any, output: Any) -> None:
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            self.total += int(self._mode.get_total_flops())
            self.calls += 1
            self._mode = None


@contextlib.contextmanager
def peak_memory() -> Iterator[dict[str, int | None]]:
    """Peak accelerator memory allocated inside the block, in bytes (None on the CPU, where torch
    keeps no allocator statistics)."""
    result: dict[str, int | None] = {"bytes": None}
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        yield result
        result["bytes"] = int(torch.cuda.max_memory_allocated() - base)
    else:
        yield result


def cache_bytes(summary: dict) -> int:
    """Bytes held in plugin caches during the last call, summed from an ``accel.summary``."""
    total = 0
    for denoiser in summary.get("denoisers", {}).values():
        for stats in denoiser.get("plugins", {}).values():
            value = stats.get("cache_bytes") or stats.get("peak_cache_bytes") or 0
            total += int(value)
    return total
