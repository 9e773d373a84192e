"""RAS hooks: gather the active image tokens, scatter them back, keep the keys/values of dropped tokens."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from diffusers.hooks import ModelHook
from diffusers.hooks.hooks import BaseState, StateManager

from ...compiling import eager
from ...errors import StateError
from ...tensors import fit_batch, keep_both_halves


class RootHook(ModelHook):
    """On the denoiser: forget the previous call's token selection; remember the text length (Flux)."""

    def __init__(self, plugin: Any) -> None:
        super().__init__()
        self.plugin = plugin

    @eager
    def pre_forward(self, module: nn.Module, *args: Any, **kwargs: Any) -> tuple[tuple, dict]:
        self.plugin.begin_call()
        text = kwargs.get("encoder_hidden_states")
        self.plugin.text_len = int(text.shape[1]) if isinstance(text, torch.Tensor) else 0
        return args, kwargs


class GatherHook(ModelHook):
    """After patch + position embedding: keep only the tokens recomputed at this step."""

    def __init__(self, plugin: Any) -> None:
        super().__init__()
        self.plugin = plugin

    @eager
    def post_forward(self, module: nn.Module, output: torch.Tensor) -> torch.Tensor:
        active = self.plugin.choose(int(output.shape[1]))
        return output if active is None else output.index_select(1, active.to(output.device))


class ScatterHook(ModelHook):
    """Before unpatchify: put the recomputed tokens back in a full-length sequence (zeros elsewhere;
    the scheduler-step wrapper fills them with each token's cached prediction)."""

    def __init__(self, plugin: Any) -> None:
        super().__init__()
        self.plugin = plugin

    @eager
    def post_forward(self, module: nn.Module, output: torch.Tensor) -> torch.Tensor:
        active = self.plugin.active
        if active is None:
            return output
        full = output.new_zeros(output.shape[0], self.plugin.num_tokens, *output.shape[2:])
        full[:, active.to(output.device)] = output
        return full


class RopeHook(ModelHook):
    """Slice a RoPE table (text rows, then image rows) to the text rows and the active image rows."""

    def __init__(self, plugin: Any) -> None:
        super().__init__()
        self.plugin = plugin

    @eager
    def post_forward(self, module: nn.Module, output: Any) -> Any:
        active = self.plugin.active
        if active is None:
            return output
        rows = torch.cat([torch.arange(self.plugin.text_len), self.plugin.text_len + active.cpu()])

        def cut(t: torch.Tensor) -> torch.Tensor:
            return t.index_select(0, rows.to(t.device))

        return tuple(cut(t) for t in output) if isinstance(output, tuple) else cut(output)


class _FullProjection(BaseState):
    def __init__(self) -> None:
        self.full: torch.Tensor | None = None

    def reset(self) -> None:
        self.full = None


class KVProjectionHook(ModelHook):
    """On an attention's ``to_k`` / ``to_v``: on dense steps store the full projection; on sparse steps
    write the active tokens' fresh rows into it and return the full-length projection, so the active
    queries attend to every token (fresh where recomputed, cached elsewhere)."""

    _is_stateful = True

    def __init__(self, plugin: Any) -> None:
        super().__init__()
        self.plugin = plugin
        self.state = StateManager(_FullProjection)

    @eager
    def post_forward(self, module: nn.Module, output: torch.Tensor) -> torch.Tensor:
        state = self.state.get_state()
        active = self.plugin.active
        info = self.plugin.session.context.current
        cached = state.full
        batch = output.shape[0]
        if active is None:
            state.full = keep_both_halves(cached, None if cached is None else cached.shape[0], output, batch, info)
            self.plugin.note_bytes(id(self), state.full)
            return output
        full = cached
        if full is not None and full.shape[0] != batch:
            full = fit_batch(full, full.shape[0], batch, info)
        if full is None or full.shape[1] != self.plugin.num_tokens:
            raise StateError(
                "RAS has no cached keys/values for the dropped tokens: the first steps must be dense "
                "(RASConfig.warmup_steps >= 1)"
            )
        full = full.clone()
        full[:, active.to(output.device)] = output
        state.full = keep_both_halves(cached, cached.shape[0], full, batch, info)
        return full

    def reset_state(self, module: nn.Module) -> nn.Module:
        self.state.reset()
        return module
