"""RAS attention processors for Lumina-Next and Lumina2 (Liu et al., arXiv 2502.10389, applied to the
Lumina DiTs): like diffusers' ``LuminaAttnProcessor2_0`` / ``Lumina2AttnProcessor2_0``, but the
image keys (after RoPE) and values of every token are kept, so on sparse steps the active queries
attend to all image tokens: fresh rows for the recomputed tokens, cached rows for the others.

Keys are cached after RoPE: the RoPE table reaching the processor is sliced to the active tokens,
so each fresh key is rotated for its own position and a cached key keeps the rotation of its
position from the step that computed it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import apply_rotary_emb

from ...compiling import eager
from ...errors import StateError
from ...tensors import fit_batch, keep_both_halves
from .state import TokenSelection


def _rows(x: torch.Tensor, starts: list[int] | None, count: int) -> torch.Tensor:
    """Rows ``starts[i] .. starts[i] + count`` of sample ``i`` (all rows from 0 if ``starts`` is None)."""
    if starts is None:
        return x[:, :count]
    if len(set(starts)) == 1:
        return x[:, starts[0] : starts[0] + count]
    return torch.stack([x[i, p : p + count] for i, p in enumerate(starts)])


def _joint(x: torch.Tensor, image: torch.Tensor, starts: list[int]) -> torch.Tensor:
    """Per sample: its ``starts[i]`` text rows of ``x``, then every image row, padded like the dense
    joint sequence (pad rows are masked out by the model's attention mask)."""
    if len(set(starts)) == 1:
        return torch.cat([x[:, : starts[0]], image.to(x.dtype)], dim=1)
    out = x.new_zeros(x.shape[0], max(starts) + image.shape[1], *x.shape[2:])
    for i, p in enumerate(starts):
        out[i, :p] = x[i, :p]
        out[i, p : p + image.shape[1]] = image[i]
    return out


class _ImageKVCache:
    """Full-length image keys/values per CFG branch (a processor instance serves one attention)."""

    def __init__(self, selection: TokenSelection, original: Any) -> None:
        self.selection = selection
        self.original = original
        self.cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def reset(self) -> None:
        self.cache = {}

    @eager
    def full_kv(
        self, key: torch.Tensor, value: torch.Tensor, text: list[int] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, S, heads, dim)`` keys/values of this call -> the keys/values of the dense sequence.

        ``text``: per-sample count of text rows before the image rows (None: every row is an image token).
        """
        info = self.selection.context.current
        branch = info.branch if info is not None else "main"
        active = self.selection.active
        tokens = self.selection.num_tokens
        cached = self.cache.get(branch)
        batch = key.shape[0]
        cached_batch = None if cached is None else cached[0].shape[0]
        if active is None:  # dense: remember every image row
            image = (_rows(key, text, tokens), _rows(value, text, tokens))
            self.cache[branch] = keep_both_halves(cached, cached_batch, image, batch, info)
            self.selection.note_bytes((id(self), branch), self.cache[branch])
            return key, value
        if cached is None:
            raise StateError(
                "RAS has no cached keys/values for the dropped tokens: the first steps must be dense "
                "(RASConfig.warmup_steps >= 1)"
            )
        fitted = fit_batch(cached, cached_batch, batch, info)
        if fitted is None:
            raise StateError(f"RAS cached keys for a batch of {cached_batch}, this call has {batch}")
        index = active.to(key.device)
        full_k, full_v = fitted[0].clone(), fitted[1].clone()
        full_k[:, index] = _rows(key, text, index.numel())
        full_v[:, index] = _rows(value, text, index.numel())
        self.cache[branch] = keep_both_halves(cached, cached_batch, (full_k, full_v), batch, info)
        if text is None:
            return full_k, full_v
        return _joint(key, full_k, text), _joint(value, full_v, text)


class RASLuminaNextAttnProcessor(_ImageKVCache):
    """Drop-in for ``LuminaAttnProcessor2_0`` on a ``LuminaNextDiTBlock``'s self-attention (``attn1``).

    The attention mask is the patch embedder's full-length (key) mask: RAS does not slice it.
    Proportional attention (``base_sequence_length``) uses the number of image tokens, as on dense steps.
    """

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        query_rotary_emb: torch.Tensor | None = None,
        key_rotary_emb: torch.Tensor | None = None,
        base_sequence_length: int | None = None,
    ) -> torch.Tensor:
        batch_size, sequence_length, _ = hidden_states.shape
        query = attn.to_q(hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        head_dim = query.shape[-1] // attn.heads
        kv_heads = key.shape[-1] // head_dim
        dtype = query.dtype
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        query = query.view(batch_size, -1, attn.heads, head_dim)
        key = key.view(batch_size, -1, kv_heads, head_dim)
        value = value.view(batch_size, -1, kv_heads, head_dim)
        if query_rotary_emb is not None:
            query = apply_rotary_emb(query, query_rotary_emb, use_real=False)
        if key_rotary_emb is not None:
            key = apply_rotary_emb(key, key_rotary_emb, use_real=False)
        query, key = query.to(dtype), key.to(dtype)

        key, value = self.full_kv(key, value, None)
        if key_rotary_emb is None:
            softmax_scale = None
        elif base_sequence_length is not None:
            softmax_scale = math.sqrt(math.log(key.shape[1], base_sequence_length)) * attn.scale
        else:
            softmax_scale = attn.scale
        n_rep = attn.heads // kv_heads
        if n_rep >= 1:
            key = key.unsqueeze(3).repeat(1, 1, 1, n_rep, 1).flatten(2, 3)
            value = value.unsqueeze(3).repeat(1, 1, 1, n_rep, 1).flatten(2, 3)
        mask = attention_mask.bool().view(batch_size, 1, 1, -1).expand(-1, attn.heads, sequence_length, -1)
        out = F.scaled_dot_product_attention(
            query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), attn_mask=mask, scale=softmax_scale
        )
        return out.transpose(1, 2).to(dtype)


class RASLumina2AttnProcessor(_ImageKVCache):
    """Drop-in for ``Lumina2AttnProcessor2_0`` on a noise-refiner block (image tokens only, ``joint=False``)
    or a joint block (per sample: text rows, then image rows, then padding; ``joint=True``).

    In joint blocks the attention mask reaching the processor is the model's dense-sequence (key)
    mask, which RAS does not slice; the queries are the recomputed rows only.
    """

    def __init__(self, selection: TokenSelection, original: Any, joint: bool) -> None:
        super().__init__(selection, original)
        self.joint = joint

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: torch.Tensor | None = None,
        base_sequence_length: int | None = None,
    ) -> torch.Tensor:
        batch_size, _, _ = hidden_states.shape
        query = attn.to_q(hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        head_dim = query.shape[-1] // attn.heads
        kv_heads = key.shape[-1] // head_dim
        dtype = query.dtype
        query = query.view(batch_size, -1, attn.heads, head_dim)
        key = key.view(batch_size, -1, kv_heads, head_dim)
        value = value.view(batch_size, -1, kv_heads, head_dim)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        if image_rotary_emb is not None:
            query = apply_rotary_emb(query, image_rotary_emb, use_real=False)
            key = apply_rotary_emb(key, image_rotary_emb, use_real=False)
        query, key = query.to(dtype), key.to(dtype)

        key, value = self.full_kv(key, value, self.selection.text_lengths if self.joint else None)
        if base_sequence_length is not None:  # the dense sequence length, as without RAS
            softmax_scale = math.sqrt(math.log(key.shape[1], base_sequence_length)) * attn.scale
        else:
            softmax_scale = attn.scale
        n_rep = attn.heads // kv_heads
        if n_rep >= 1:
            key = key.unsqueeze(3).repeat(1, 1, 1, n_rep, 1).flatten(2, 3)
            value = value.unsqueeze(3).repeat(1, 1, 1, n_rep, 1).flatten(2, 3)
        if attention_mask is not None:
            if attention_mask.shape[-1] != key.shape[1]:
                raise StateError(
                    f"RAS expected the dense-sequence attention mask ({key.shape[1]} keys), "
                    f"got {attention_mask.shape[-1]}"
                )
            attention_mask = attention_mask.bool().view(batch_size, 1, 1, -1)
        out = F.scaled_dot_product_attention(
            query.transpose(1, 2),
            key.transpose(1, 2),
            value.transpose(1, 2),
            attn_mask=attention_mask,
            scale=softmax_scale,
        )
        out = out.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim).type_as(query)
        return attn.to_out[1](attn.to_out[0](out))
