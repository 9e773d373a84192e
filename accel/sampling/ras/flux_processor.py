"""A RAS attention processor for Flux: like diffusers' ``FluxAttnProcessor``, but the image keys and
values are kept after RoPE for every token, so active queries attend to all tokens on sparse steps.

Under context parallelism each rank keeps the keys and values of its own shard of the image tokens
(diffusers' attention exchanges them between ranks); on sparse steps the fresh rows of every rank
are gathered and each rank writes those of its shard into its cache."""

from __future__ import annotations

from typing import Any

import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.embeddings import apply_rotary_emb
from diffusers.models.transformers.transformer_flux import _get_qkv_projections

from ...compiling import eager
from ...errors import StateError
from ...tensors import fit_batch, keep_both_halves
from .state import TokenSelection


class RASFluxAttnProcessor:
    """Drop-in for ``FluxAttnProcessor`` (double and single blocks) with a full-length image K/V cache."""

    _attention_backend = None
    _parallel_config = None

    def __init__(self, selection: TokenSelection, original: Any) -> None:
        self.selection = selection
        self.original = original
        self._attention_backend = getattr(original, "_attention_backend", None)
        self._parallel_config = getattr(original, "_parallel_config", None)
        self.cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def reset(self) -> None:
        self.cache = {}

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: Any = None,
    ) -> Any:
        query, key, value, encoder_query, encoder_key, encoder_value = _get_qkv_projections(
            attn, hidden_states, encoder_hidden_states
        )
        query = attn.norm_q(query.unflatten(-1, (-1, attn.head_dim)))
        key = attn.norm_k(key.unflatten(-1, (-1, attn.head_dim)))
        value = value.unflatten(-1, (-1, attn.head_dim))
        if attn.added_kv_proj_dim is not None:
            encoder_query = attn.norm_added_q(encoder_query.unflatten(-1, (-1, attn.head_dim)))
            encoder_key = attn.norm_added_k(encoder_key.unflatten(-1, (-1, attn.head_dim)))
            encoder_value = encoder_value.unflatten(-1, (-1, attn.head_dim))
            query = torch.cat([encoder_query, query], dim=1)
            key = torch.cat([encoder_key, key], dim=1)
            value = torch.cat([encoder_value, value], dim=1)
        if image_rotary_emb is not None:
            query = apply_rotary_emb(query, image_rotary_emb, sequence_dim=1)
            key = apply_rotary_emb(key, image_rotary_emb, sequence_dim=1)

        text = self.selection.text_len // self.selection.shards.count
        key, value = self._full_kv(key, value, text)
        out = dispatch_attention_fn(
            query,
            key,
            value,
            attn_mask=attention_mask,
            backend=self._attention_backend,
            parallel_config=self._parallel_config,
        )
        out = out.flatten(2, 3).to(query.dtype)
        if encoder_hidden_states is not None:
            encoder_out, out = out.split_with_sizes(
                [encoder_hidden_states.shape[1], out.shape[1] - encoder_hidden_states.shape[1]], dim=1
            )
            out = attn.to_out[1](attn.to_out[0](out.contiguous()))
            return out, attn.to_add_out(encoder_out.contiguous())
        return out

    @eager
    def _full_kv(self, key: torch.Tensor, value: torch.Tensor, text: int) -> tuple[torch.Tensor, torch.Tensor]:
        info = self.selection.context.current
        branch = info.branch if info is not None else "main"
        active = self.selection.active
        image_k, image_v = key[:, text:], value[:, text:]
        cached = self.cache.get(branch)
        batch = key.shape[0]
        cached_batch = None if cached is None else cached[0].shape[0]
        if active is None:
            self.cache[branch] = keep_both_halves(cached, cached_batch, (image_k, image_v), batch, info)
            self.selection.note_bytes((id(self), branch), self.cache[branch])
            return key, value
        if cached is None:
            raise StateError("RAS has no cached keys/values for the dropped tokens: the first steps must be dense")
        fitted = fit_batch(cached, cached_batch, batch, info)
        if fitted is None:
            raise StateError(f"RAS cached keys for a batch of {cached_batch}, this call has {batch}")
        shards = self.selection.shards
        first = shards.index * fitted[0].shape[1]
        mine = (active >= first) & (active < first + fitted[0].shape[1])
        index = (active[mine] - first).to(key.device)
        rows = mine.to(key.device)
        full_k, full_v = fitted[0].clone(), fitted[1].clone()
        full_k[:, index] = shards.gather(image_k, 1)[:, rows]
        full_v[:, index] = shards.gather(image_v, 1)[:, rows]
        self.cache[branch] = keep_both_halves(cached, cached_batch, (full_k, full_v), batch, info)
        return torch.cat([key[:, :text], full_k], dim=1), torch.cat([value[:, :text], full_v], dim=1)
