"""Shared training utilities for the built-in models: a fixed-step loop with EMA and a progress bar.

Every built-in model trains with :func:`fit`: AdamW, linear warm-up then cosine decay over a fixed
number of steps, gradient clipping, an exponential moving average of the weights, fixed seeds, so
a rerun reproduces the shipped weights up to floating-point reduction order. ``max_minutes`` is
only a safety stop (reported when it cuts a run short, which makes that run not reproducible).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Iterable

import torch
import torch.nn as nn


@dataclasses.dataclass
class TrainReport:
    name: str
    steps: int
    batch_size: int
    minutes: float
    final_loss: float
    seed: int
    threads: int
    parameters: int
    stopped_by_time_limit: bool = False

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class EMA:
    """Exponential moving average of a set of modules' parameters (buffers are copied)."""

    def __init__(self, modules: Iterable[nn.Module], decay: float = 0.999) -> None:
        self.modules = list(modules)
        self.decay = decay
        self.shadow = [copy.deepcopy(m).eval().requires_grad_(False) for m in self.modules]
        self.updates = 0

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for live, shadow in zip(self.modules, self.shadow):
            for p_s, p_l in zip(shadow.parameters(), live.parameters()):
                p_s.lerp_(p_l.detach(), 1 - decay)
            for b_s, b_l in zip(shadow.buffers(), live.buffers()):
                b_s.copy_(b_l)

    def copy_to(self) -> list[nn.Module]:
        """The averaged modules (fresh copies, eval mode)."""
        return [copy.deepcopy(s) for s in self.shadow]


def fit(
    name: str,
    modules: list[nn.Module],
    loss_fn: Callable[[int], torch.Tensor],
    *,
    batch_size: int,
    max_steps: int,
    max_minutes: float,
    lr: float = 1e-3,
    warmup: int = 100,
    weight_decay: float = 0.01,
    ema_decay: float | None = 0.999,
    seed: int = 0,
    log_every: int = 50,
) -> tuple[TrainReport, list[nn.Module]]:
    """Train ``modules`` by minimising ``loss_fn(step)``; returns the report and the (EMA) modules."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.99))
    ema = EMA(modules, ema_decay) if ema_decay else None
    for m in modules:
        m.train()
    start = time.perf_counter()
    smoothed = None
    step = 0
    bar = tqdm(total=max_steps, desc=f"train {name}", unit="step", dynamic_ncols=True)
    budget_s = max_minutes * 60
    stopped_early = False
    while step < max_steps:
        if time.perf_counter() - start > budget_s:
            stopped_early = True
            break
        progress = step / max_steps
        scale = min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        for group in optimizer.param_groups:
            group["lr"] = lr * max(scale, 0.02)
        loss = loss_fn(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if ema is not None:
            ema.update()
        value = float(loss.detach())
        smoothed = value if smoothed is None else 0.98 * smoothed + 0.02 * value
        step += 1
        bar.update(1)
        if step % log_every == 0:
            bar.set_postfix(loss=f"{smoothed:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.1e}")
    bar.close()
    minutes = (time.perf_counter() - start) / 60
    trained = ema.copy_to() if ema is not None else [m.eval() for m in modules]
    report = TrainReport(
        name=name,
        steps=step,
        batch_size=batch_size,
        minutes=round(minutes, 2),
        final_loss=round(smoothed or float("nan"), 5),
        seed=seed,
        threads=torch.get_num_threads(),
        parameters=sum(p.numel() for m in modules for p in m.parameters()),
        stopped_by_time_limit=stopped_early,
    )
    return report, trained


def write_report(directory: str, report: TrainReport, extra: dict | None = None) -> None:
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "training.json"), "w") as f:
        json.dump({**report.as_dict(), **(extra or {})}, f, indent=2)


def half_precision_copy(module: nn.Module) -> nn.Module:
    """An fp16 copy for saving (the built-in weights ship in fp16 and load as fp32)."""
    return copy.deepcopy(module).to(torch.float16)
