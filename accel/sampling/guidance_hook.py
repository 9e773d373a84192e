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

import inspect
from typing import Any

import torch
import torch.nn as nn
from diffusers.hooks import ModelHook

from ..context import main_input
from .cfg_batch import prediction_of, select_rows, with_prediction


class GuidanceHook(ModelHook):
    """Root hook on the denoiser; ``policy`` is the AG or LinearAG plugin."""

    def __init__(self, policy: Any) -> None:
        super().__init__()
        self.policy = policy
        self.signature: inspect.Signature | None = None

    def initialize_hook(self, module: nn.Module) -> nn.Module:
        self.signature = inspect.signature(type(module).forward)
        return module

    def new_forward(self, module: nn.Module, *args: Any, **kwargs: Any) -> Any:
        info = self.policy.session.context.current
        if info is None or info.step_index is None:
            return self.fn_ref.original_forward(*args, **kwargs)
        if info.cfg_stacked:
            return self._stacked(info, args, kwargs)
        branch = self._separate_branch(info)
        if branch == "cond":
            output = self.fn_ref.original_forward(*args, **kwargs)
            self.policy.state.last_cond = (info.step_index, prediction_of(output), output)
            return output
        if branch == "uncond":
            return self._separate_uncond(info, args, kwargs)
        return self.fn_ref.original_forward(*args, **kwargs)

    # ------------------------------------------------------------------ two calls per step
    def _separate_branch(self, info: Any) -> str | None:
        """``"cond"``/``"uncond"`` for the calls of a two-call CFG pipeline, else None."""
        if info.branch in ("cond", "uncond"):
            return info.branch
        if info.branch == "call1" and self.policy.session.adapter.cfg_layout == "separate":
            return "uncond"  # unnamed second call of a two-call family: the unconditional branch
        return None

    def _separate_uncond(self, info: Any, args: tuple, kwargs: dict) -> Any:
        last = self.policy.state.last_cond
        if last is None or last[0] != info.step_index:
            return self.fn_ref.original_forward(*args, **kwargs)  # no cond prediction of this step to work with
        _, cond, cond_output = last
        modes = self.policy.modes(info.step_index, cond.shape[0], cond)
        run = [i for i, m in enumerate(modes) if m == "cfg"]
        uncond = torch.empty_like(cond)
        if run:
            if len(run) == len(modes):
                output = self.fn_ref.original_forward(*args, **kwargs)
                uncond = prediction_of(output)
            else:
                index = torch.tensor(run)
                sub_args, sub_kwargs = select_rows(
                    args, kwargs, index, cond.shape[0], self.policy.session.adapter.unbatched_inputs, self.signature
                )
                uncond[index] = prediction_of(self.fn_ref.original_forward(*sub_args, **sub_kwargs)).to(uncond.dtype)
        self._fill(uncond, cond, modes, info.step_index)
        self.policy.observe(info.step_index, cond, uncond, [m == "cfg" for m in modes])
        return with_prediction(cond_output, uncond)

    # ------------------------------------------------------------------ stacked [uncond, cond]
    def _stacked(self, info: Any, args: tuple, kwargs: dict) -> Any:
        x = main_input(args, kwargs)
        batch = int(x.shape[0])
        samples = batch // 2
        uncond_rows = torch.arange(batch)[info.rows("uncond", samples)]
        cond_rows = torch.arange(batch)[info.rows("cond", samples)]
        modes = self.policy.modes(info.step_index, samples, None)
        run_uncond = [i for i, m in enumerate(modes) if m == "cfg"]
        if len(run_uncond) == samples:
            output = self.fn_ref.original_forward(*args, **kwargs)
            pred = prediction_of(output)
            self.policy.observe(info.step_index, pred[cond_rows], pred[uncond_rows], [True] * samples)
            return output
        keep = torch.sort(torch.cat([uncond_rows[run_uncond], cond_rows])).values
        sub_args, sub_kwargs = select_rows(
            args, kwargs, keep, batch, self.policy.session.adapter.unbatched_inputs, self.signature
        )
        output = self.fn_ref.original_forward(*sub_args, **sub_kwargs)
        sub = prediction_of(output)
        position = {int(row): i for i, row in enumerate(keep)}
        cond = sub[torch.tensor([position[int(r)] for r in cond_rows])]
        uncond = torch.empty_like(cond)
        if run_uncond:
            uncond[torch.tensor(run_uncond)] = sub[torch.tensor([position[int(uncond_rows[i])] for i in run_uncond])]
        self._fill(uncond, cond, modes, info.step_index)
        self.policy.observe(info.step_index, cond, uncond, [m == "cfg" for m in modes])
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
