"""RAS hooks: gather the active image tokens, scatter them back, keep the keys/values of dropped tokens."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from diffusers.hooks import ModelHook
from diffusers.hooks.hooks import BaseState, StateManager

from ...compiling import eager
from ...errors import StateError, UnsupportedModelError
from ...tensors import fit_batch, keep_both_halves
from .state import TokenSelection


class RootHook(ModelHook):
    """On the denoiser: forget the previous call's token selection; remember the text length (Flux).
    RAS keeps the keys/values of dropped tokens by hooking ``to_k``/``to_v``, which fused QKV skips,
    so fused projections are refused here."""

    def __init__(self, selection: TokenSelection, kv_attentions: list[nn.Module], family: str) -> None:
        super().__init__()
        self.selection = selection
        self.kv_attentions = kv_attentions
        self.family = family

    def refuse_fused_projections(self) -> None:
        if any(getattr(attn, "fused_projections", False) for attn in self.kv_attentions):
            raise UnsupportedModelError(
                f"RAS on {self.family} does not support fused QKV projections (its key/value cache hooks "
                "to_k and to_v); call transformer.unfuse_qkv_projections() before generating with RAS"
            )

    @eager
    def pre_forward(self, module: nn.Module, *args: Any, **kwargs: Any) -> tuple[tuple, dict]:
        self.refuse_fused_projections()
        text = kwargs.get("encoder_hidden_states")
        self.selection.begin_call(int(text.shape[1]) if isinstance(text, torch.Tensor) else 0)
        return args, kwargs


class GatherHook(ModelHook):
    """After patch + position embedding: keep only the tokens recomputed at this step."""

    def __init__(self, selection: TokenSelection) -> None:
        super().__init__()
        self.selection = selection

    @eager
    def post_forward(self, module: nn.Module, output: torch.Tensor) -> torch.Tensor:
        selection = self.selection
        local = selection.choose(int(output.shape[1]))
        if local is None:
            return output
        return selection.shards.gather(output, 1).index_select(1, local.to(output.device))


class ScatterHook(ModelHook):
    """Before unpatchify: put the recomputed tokens back in a full-length sequence (zeros elsewhere;
    the scheduler-step wrapper fills them with each token's cached prediction).

    Under context parallelism diffusers gathers the shards at this same module. Outside its gather this
    hook sees every rank's tokens; inside it, this rank's share, which it gathers and scatters, and
    hands diffusers this rank's shard of the full sequence."""

    def __init__(self, selection: TokenSelection) -> None:
        super().__init__()
        self.selection = selection

    @eager
    def post_forward(self, module: nn.Module, output: torch.Tensor) -> torch.Tensor:
        selection = self.selection
        active = selection.active
        if active is None:
            return output
        sharded = output.shape[1] != active.numel()
        if sharded:
            output = selection.shards.gather(output, 1)
        full = output.new_zeros(output.shape[0], selection.num_tokens, *output.shape[2:])
        full[:, active.to(output.device)] = output
        return selection.shards.own(full, 1) if sharded else full


class RopeHook(ModelHook):
    """Slice a RoPE table (text rows, then image rows) to the text rows and the rows of the image tokens
    this rank recomputes (under context parallelism, from the image rows of every rank)."""

    def __init__(self, selection: TokenSelection) -> None:
        super().__init__()
        self.selection = selection

    @eager
    def post_forward(self, module: nn.Module, output: Any) -> Any:
        selection = self.selection
        shards = selection.shards
        table = output[0] if isinstance(output, tuple) else output
        text = int(table.shape[0]) - selection.num_tokens // shards.count
        selection.text_len = text * shards.count
        local = selection.local
        if local is None:
            return output

        def cut(t: torch.Tensor) -> torch.Tensor:
            image = shards.gather(t[text:], 0).index_select(0, local.to(t.device))
            return torch.cat([t[:text], image])

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

    def __init__(self, selection: TokenSelection) -> None:
        super().__init__()
        self.selection = selection
        self.state = StateManager(_FullProjection)

    @eager
    def post_forward(self, module: nn.Module, output: torch.Tensor) -> torch.Tensor:
        state = self.state.get_state()
        active = self.selection.active
        info = self.selection.context.current
        cached = state.full
        batch = output.shape[0]
        if active is None:
            state.full = keep_both_halves(cached, None if cached is None else cached.shape[0], output, batch, info)
            self.selection.note_bytes(id(self), state.full)
            return output
        full = cached
        if full is not None and full.shape[0] != batch:
            full = fit_batch(full, full.shape[0], batch, info)
        if full is None or full.shape[1] != self.selection.num_tokens:
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
