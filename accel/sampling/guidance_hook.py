"""The denoiser hook shared by adaptive guidance (AG) and LinearAG.

Per denoiser call it asks the plugin's policy what each sample's unconditional prediction should
be at this step: ``"cfg"`` (evaluate it), ``"drop"`` (CFG latched off: reuse the conditional one,
so ``uncond + s (cond - uncond) == cond``) or ``"predict"`` (LinearAG's affine estimate). Only the
rows that must be evaluated are run; the full-size prediction the pipeline expects is rebuilt.

Stacked pipelines (``[uncond, cond]`` in one call: SD, SDXL, PixArt, SD3, CogVideoX, ...) and
two-call pipelines (Wan, Flux ``true_cfg_scale``, HunyuanVideo; the pipeline's
``cache_context("cond"/"uncond")`` or the call order names the branch) are both handled.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import torch
import torch.nn as nn

from ..compiling import PlannedHook, eager
from ..context import main_input
from .cfg_batch import prediction_of, select_rows, with_prediction


@dataclasses.dataclass
class _Plan:
    """One denoiser call: run on ``args``/``kwargs`` (all rows, or those the CFG modes keep) unless
    ``output`` is already known, then rebuild the full prediction according to ``kind``."""

    kind: str  # "pass", "cond", "uncond" (second call of a two-call pipeline) or "stacked"
    info: Any
    args: tuple
    kwargs: dict
    modes: list[str] = dataclasses.field(default_factory=list)
    run: list[int] = dataclasses.field(default_factory=list)
    batch: int = 0
    keep: torch.Tensor | None = None
    output: Any = None


class GuidanceHook(PlannedHook):
    """Root hook on the denoiser; ``policy`` is the AG or LinearAG plugin."""

    def __init__(self, policy: Any) -> None:
        super().__init__()
        self.policy = policy
        self.signature: inspect.Signature | None = None

    def initialize_hook(self, module: nn.Module) -> nn.Module:
        self.signature = inspect.signature(type(module).forward)
        return module

    @eager
    def _plan(self, args: tuple, kwargs: dict) -> _Plan:
        info = self.policy.session.context.current
        if info is None or info.step_index is None:
            return _Plan("pass", info, args, kwargs)
        if info.cfg_stacked:
            return self._plan_stacked(info, args, kwargs)
        branch = self._separate_branch(info)
        if branch == "cond":
            return _Plan("cond", info, args, kwargs)
        if branch == "uncond":
            return self._plan_uncond(info, args, kwargs)
        return _Plan("pass", info, args, kwargs)

    @eager
    def _finish(self, plan: _Plan, output: Any) -> Any:
        info = plan.info
        if plan.kind == "cond":
            self.policy.state.last_cond = (info.step_index, prediction_of(output), output)
        elif plan.kind == "uncond":
            return self._finish_uncond(plan, output)
        elif plan.kind == "stacked":
            return self._finish_stacked(plan, output)
        return output

    # ------------------------------------------------------------------ two calls per step
    def _separate_branch(self, info: Any) -> str | None:
        """``"cond"``/``"uncond"`` for the calls of a two-call CFG pipeline, else None."""
        if info.branch in ("cond", "uncond"):
            return info.branch
        if info.branch == "call1" and self.policy.session.adapter.cfg_layout == "separate":
            return "uncond"  # unnamed second call of a two-call family: the unconditional branch
        return None

    def _plan_uncond(self, info: Any, args: tuple, kwargs: dict) -> _Plan:
        last = self.policy.state.last_cond
        if last is None or last[0] != info.step_index:
            return _Plan("pass", info, args, kwargs)  # no cond prediction of this step to work with
        cond = last[1]
        modes = self.policy.modes(info.step_index, cond.shape[0], cond)
        run = [i for i, m in enumerate(modes) if m == "cfg"]
        plan = _Plan("uncond", info, args, kwargs, modes=modes, run=run)
        if not run:
            plan.output = self._finish_uncond(plan, None)
        elif len(run) < len(modes):
            plan.args, plan.kwargs = select_rows(
                args,
                kwargs,
                torch.tensor(run),
                cond.shape[0],
                self.policy.session.adapter.unbatched_inputs,
                self.signature,
                dict(self.policy.session.adapter.batch_dims),
            )
        return plan

    def _finish_uncond(self, plan: _Plan, output: Any) -> Any:
        _, cond, cond_output = self.policy.state.last_cond
        step = plan.info.step_index
        uncond = torch.empty_like(cond)
        if len(plan.run) == len(plan.modes):
            uncond = prediction_of(output)
        elif plan.run:
            uncond[torch.tensor(plan.run)] = prediction_of(output).to(uncond.dtype)
        self._fill(uncond, cond, plan.modes, step)
        self.policy.observe(step, cond, uncond, plan.modes)
        return with_prediction(cond_output, uncond)

    # ------------------------------------------------------------------ stacked [uncond, cond]
    def _plan_stacked(self, info: Any, args: tuple, kwargs: dict) -> _Plan:
        batch = int(main_input(args, kwargs).shape[0])
        samples = batch // 2
        modes = self.policy.modes(info.step_index, samples, None)
        run = [i for i, m in enumerate(modes) if m == "cfg"]
        plan = _Plan("stacked", info, args, kwargs, modes=modes, run=run, batch=batch)
        if len(run) < samples:
            uncond_rows = torch.arange(batch)[info.rows("uncond", samples)]
            cond_rows = torch.arange(batch)[info.rows("cond", samples)]
            plan.keep = torch.sort(torch.cat([uncond_rows[run], cond_rows])).values
            adapter = self.policy.session.adapter
            plan.args, plan.kwargs = select_rows(
                args, kwargs, plan.keep, batch, adapter.unbatched_inputs, self.signature, dict(adapter.batch_dims)
            )
        return plan

    def _finish_stacked(self, plan: _Plan, output: Any) -> Any:
        info, batch, run_uncond = plan.info, plan.batch, plan.run
        samples = batch // 2
        uncond_rows = torch.arange(batch)[info.rows("uncond", samples)]
        cond_rows = torch.arange(batch)[info.rows("cond", samples)]
        if plan.keep is None:
            pred = prediction_of(output)
            self.policy.observe(info.step_index, pred[cond_rows], pred[uncond_rows], ["cfg"] * samples)
            return output
        sub = prediction_of(output)
        position = {int(row): i for i, row in enumerate(plan.keep)}
        cond = sub[torch.tensor([position[int(r)] for r in cond_rows])]
        uncond = torch.empty_like(cond)
        if run_uncond:
            uncond[torch.tensor(run_uncond)] = sub[torch.tensor([position[int(uncond_rows[i])] for i in run_uncond])]
        self._fill(uncond, cond, plan.modes, info.step_index)
        self.policy.observe(info.step_index, cond, uncond, plan.modes)
        full = torch.empty((batch,) + tuple(sub.shape[1:]), dtype=sub.dtype, device=sub.device)
        full[uncond_rows] = uncond.to(sub.dtype)
        full[cond_rows] = cond
        return with_prediction(output, full)

    def _fill(self, uncond: torch.Tensor, cond: torch.Tensor, modes: list[str], step: int) -> None:
        """Fill the rows that were not evaluated: CFG dropped (copy cond) or predicted (LinearAG)."""
        for i, mode in enumerate(modes):
            if mode == "drop":
                uncond[i] = cond[i]
            elif mode == "predict":
                uncond[i] = self.policy.predict_uncond(step, i, cond[i]).to(uncond.dtype)
