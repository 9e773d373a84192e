"""The denoiser hook shared by adaptive guidance (AG) and LinearAG.

Per denoiser call it asks a :class:`GuidancePolicy` what each sample's unconditional prediction
should be at this step (an :class:`Uncond`): evaluate it, drop it (CFG latched off: reuse the
conditional one, so ``uncond + s (cond - uncond) == cond``) or predict it (LinearAG's affine estimate). Only the
rows that must be evaluated are run; the full-size prediction the pipeline expects is rebuilt.

Stacked pipelines (``[uncond, cond]`` in one call: SD, SDXL, PixArt, SD3, CogVideoX, ...) and
two-call pipelines (Wan, Flux ``true_cfg_scale``, HunyuanVideo; the pipeline's
``cache_context("cond"/"uncond")`` or the call order names the branch) are both handled.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
from typing import TYPE_CHECKING, Any, Protocol

import torch
import torch.nn as nn

from ..compiling import DecidingHook, eager
from ..context import CallInfo, DenoisingContext, main_input
from .cfg_batch import prediction_of, select_rows, with_prediction

if TYPE_CHECKING:
    from ..pipelines.registry import Adapter


class Uncond(str, enum.Enum):
    """What becomes of one sample's unconditional prediction at one step."""

    CFG = "cfg"  # evaluated
    DROP = "drop"  # CFG latched off: the conditional prediction stands in
    PREDICT = "predict"  # estimated (LinearAG)


class GuidancePolicy(Protocol):
    """What the guidance hook asks: AG's latch, or LinearAG's predictor with AG's latch for the rest."""

    def modes(self, info: CallInfo, samples: int) -> list[Uncond]:
        """Per sample, what becomes of its unconditional prediction at this call's step."""
        ...

    def observe(self, step: int, cond: torch.Tensor, uncond: torch.Tensor, modes: list[Uncond]) -> None:
        """The step's predictions as they ran (``uncond`` filled in where it was not evaluated)."""
        ...

    def predict_uncond(self, step: int, sample: int, cond: torch.Tensor) -> torch.Tensor:
        """The unconditional prediction of a sample whose mode is :attr:`Uncond.PREDICT`."""
        ...


@dataclasses.dataclass
class _Decision:
    """One denoiser call: run on ``args``/``kwargs`` (all rows, or those the CFG modes keep) unless
    ``output`` is already known, then rebuild the full prediction according to ``kind``."""

    kind: str  # "pass", "cond", "uncond" (second call of a two-call pipeline) or "stacked"
    info: CallInfo | None
    args: tuple
    kwargs: dict
    modes: list[Uncond] = dataclasses.field(default_factory=list)
    run: list[int] = dataclasses.field(default_factory=list)
    batch: int = 0
    keep: torch.Tensor | None = None
    output: Any = None


class GuidanceHook(DecidingHook):
    """Root hook on the denoiser. Its state: the conditional prediction of the current step, which a
    two-call pipeline's unconditional call needs."""

    _is_stateful = True

    def __init__(self, context: DenoisingContext, adapter: Adapter, policy: GuidancePolicy) -> None:
        super().__init__(context)
        self.adapter = adapter
        self.policy = policy
        self.signature: inspect.Signature | None = None
        self.last_cond: tuple[int, torch.Tensor, Any] | None = None  # (step, prediction, raw output)

    def reset_state(self, module: nn.Module) -> nn.Module:
        self.last_cond = None
        return module

    def initialize_hook(self, module: nn.Module) -> nn.Module:
        self.signature = inspect.signature(type(module).forward)
        return module

    @eager
    def _decide(self, args: tuple, kwargs: dict) -> _Decision:
        info = self.context.current
        if info is None or info.step_index is None:
            return _Decision("pass", info, args, kwargs)
        if info.cfg_stacked:
            return self._decide_stacked(info, args, kwargs)
        branch = self._separate_branch(info)
        if branch == "cond":
            return _Decision("cond", info, args, kwargs)
        if branch == "uncond":
            return self._decide_uncond(info, args, kwargs)
        return _Decision("pass", info, args, kwargs)

    @eager
    def _record(self, decision: _Decision, output: Any) -> Any:
        if decision.kind == "cond":
            self.last_cond = (decision.info.step_index, prediction_of(output), output)
        elif decision.kind == "uncond":
            return self._record_uncond(decision, output)
        elif decision.kind == "stacked":
            return self._record_stacked(decision, output)
        return output

    # ------------------------------------------------------------------ two calls per step
    def _separate_branch(self, info: CallInfo) -> str | None:
        """``"cond"``/``"uncond"`` for the calls of a two-call CFG pipeline, else None."""
        if info.branch in ("cond", "uncond"):
            return info.branch
        if info.branch == "call1" and self.adapter.cfg_layout == "separate":
            return "uncond"  # unnamed second call of a two-call family: the unconditional branch
        return None

    def _decide_uncond(self, info: CallInfo, args: tuple, kwargs: dict) -> _Decision:
        last = self.last_cond
        if last is None or last[0] != info.step_index:
            return _Decision("pass", info, args, kwargs)  # no cond prediction of this step to work with
        cond = last[1]
        modes = self.policy.modes(info, cond.shape[0])
        run = [i for i, m in enumerate(modes) if m is Uncond.CFG]
        plan = _Decision("uncond", info, args, kwargs, modes=modes, run=run)
        if not run:
            plan.output = self._record_uncond(plan, None)
        elif len(run) < len(modes):
            plan.args, plan.kwargs = select_rows(
                args,
                kwargs,
                torch.tensor(run),
                cond.shape[0],
                self.adapter.unbatched_inputs,
                self.signature,
                dict(self.adapter.batch_dims),
            )
        return plan

    def _record_uncond(self, plan: _Decision, output: Any) -> Any:
        _, cond, cond_output = self.last_cond
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
    def _decide_stacked(self, info: CallInfo, args: tuple, kwargs: dict) -> _Decision:
        batch = int(main_input(args, kwargs).shape[0])
        samples = batch // 2
        modes = self.policy.modes(info, samples)
        run = [i for i, m in enumerate(modes) if m is Uncond.CFG]
        plan = _Decision("stacked", info, args, kwargs, modes=modes, run=run, batch=batch)
        if len(run) < samples:
            uncond_rows = torch.arange(batch)[info.rows("uncond", samples)]
            cond_rows = torch.arange(batch)[info.rows("cond", samples)]
            plan.keep = torch.sort(torch.cat([uncond_rows[run], cond_rows])).values
            adapter = self.adapter
            plan.args, plan.kwargs = select_rows(
                args, kwargs, plan.keep, batch, adapter.unbatched_inputs, self.signature, dict(adapter.batch_dims)
            )
        return plan

    def _record_stacked(self, plan: _Decision, output: Any) -> Any:
        info, batch, run_uncond = plan.info, plan.batch, plan.run
        samples = batch // 2
        uncond_rows = torch.arange(batch)[info.rows("uncond", samples)]
        cond_rows = torch.arange(batch)[info.rows("cond", samples)]
        if plan.keep is None:
            pred = prediction_of(output)
            self.policy.observe(info.step_index, pred[cond_rows], pred[uncond_rows], [Uncond.CFG] * samples)
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

    def _fill(self, uncond: torch.Tensor, cond: torch.Tensor, modes: list[Uncond], step: int) -> None:
        """Fill the rows that were not evaluated: CFG dropped (copy cond) or predicted (LinearAG)."""
        for i, mode in enumerate(modes):
            if mode is Uncond.DROP:
                uncond[i] = cond[i]
            elif mode is Uncond.PREDICT:
                uncond[i] = self.policy.predict_uncond(step, i, cond[i]).to(uncond.dtype)
