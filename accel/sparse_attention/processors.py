"""Attention processors that compute q/k/v exactly as each family's stock diffusers processor
(projections, q/k norms, RoPE, text-token concatenation) and hand the attention itself to the
plugin, which runs it dense (the stock call, bit for bit) or block-sparse.

Calls a processor does not cover (cross-attention, an explicit attention mask it cannot honour,
fused projections it does not know) go to the stock processor unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from diffusers.models.attention_dispatch import dispatch_attention_fn

if TYPE_CHECKING:
    from .plugin import SparseAttention


class SparseProcessor:
    """Base: remembers the stock processor and mirrors the attributes diffusers sets on processors."""

    #: class names of the stock processors this processor replaces
    stock_classes: tuple[str, ...] = ()

    def __init__(self, attention: SparseAttention, layer_index: int, layer_name: str, stock: Any) -> None:
        self.attention = attention
        self.layer_index = layer_index
        self.layer_name = layer_name
        self.stock = stock
        self._attention_backend = getattr(stock, "_attention_backend", None)
        self._parallel_config = getattr(stock, "_parallel_config", None)

    def _dispatch(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
    ) -> Callable[[], torch.Tensor]:
        def dense() -> torch.Tensor:
            return dispatch_attention_fn(
                q,
                k,
                v,
                attn_mask=mask,
                dropout_p=0.0,
                is_causal=False,
                backend=self._attention_backend,
                parallel_config=self._parallel_config,
            )

        return dense


def _wan_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Wan's rotary embedding on interleaved (even, odd) channel pairs, as its stock processor applies it."""
    even, odd = x.unflatten(-1, (-1, 2)).unbind(-1)
    c, s = cos[..., 0::2], sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = even * c - odd * s
    out[..., 1::2] = even * s + odd * c
    return out.type_as(x)


class WanSparseProcessor(SparseProcessor):
    """Wan 2.x self-attention (``attn1``): video tokens only, 3D RoPE. Also Wan VACE (the same classes)
    and SkyReels-V2, whose ``SkyReelsV2AttnProcessor`` computes the same q, k, v and RoPE."""

    stock_classes = ("WanAttnProcessor", "SkyReelsV2AttnProcessor")

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        if encoder_hidden_states is not None or attn.add_k_proj is not None or attention_mask is not None:
            return self.stock(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
        if attn.fused_projections:
            q, k, v = attn.to_qkv(hidden_states).chunk(3, dim=-1)
        else:
            q, k, v = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        q = attn.norm_q(q).unflatten(2, (attn.heads, -1))
        k = attn.norm_k(k).unflatten(2, (attn.heads, -1))
        v = v.unflatten(2, (attn.heads, -1))
        if rotary_emb is not None:
            q = _wan_rope(q, *rotary_emb)
            k = _wan_rope(k, *rotary_emb)
        out = self.attention.attend(
            self,
            q,
            k,
            v,
            seq_dim=1,
            text_len=0,
            text_position="last",
            key_padding=None,
            dense=self._dispatch(q, k, v, None),
        )
        out = out.flatten(2, 3).type_as(q)
        return attn.to_out[1](attn.to_out[0](out))


class HunyuanVideoSparseProcessor(SparseProcessor):
    """HunyuanVideo joint attention: video tokens then text tokens (text last), RoPE on video only,
    separate text projections in the dual-stream blocks, key padding of the text in ``attention_mask``."""

    stock_classes = ("HunyuanVideoAttnProcessor2_0",)

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: Any = None,
    ) -> Any:
        from diffusers.models.embeddings import apply_rotary_emb

        single = attn.add_q_proj is None and encoder_hidden_states is not None
        if single:
            hidden_states = torch.cat([hidden_states, encoder_hidden_states], dim=1)
        q = attn.to_q(hidden_states).unflatten(2, (attn.heads, -1))
        k = attn.to_k(hidden_states).unflatten(2, (attn.heads, -1))
        v = attn.to_v(hidden_states).unflatten(2, (attn.heads, -1))
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)
        if image_rotary_emb is not None:
            if single:
                t = encoder_hidden_states.shape[1]
                q = torch.cat([apply_rotary_emb(q[:, :-t], image_rotary_emb, sequence_dim=1), q[:, -t:]], dim=1)
                k = torch.cat([apply_rotary_emb(k[:, :-t], image_rotary_emb, sequence_dim=1), k[:, -t:]], dim=1)
            else:
                q = apply_rotary_emb(q, image_rotary_emb, sequence_dim=1)
                k = apply_rotary_emb(k, image_rotary_emb, sequence_dim=1)
        if attn.add_q_proj is not None and encoder_hidden_states is not None:
            eq = attn.add_q_proj(encoder_hidden_states).unflatten(2, (attn.heads, -1))
            ek = attn.add_k_proj(encoder_hidden_states).unflatten(2, (attn.heads, -1))
            ev = attn.add_v_proj(encoder_hidden_states).unflatten(2, (attn.heads, -1))
            if attn.norm_added_q is not None:
                eq = attn.norm_added_q(eq)
            if attn.norm_added_k is not None:
                ek = attn.norm_added_k(ek)
            q, k, v = torch.cat([q, eq], dim=1), torch.cat([k, ek], dim=1), torch.cat([v, ev], dim=1)
        text_len = encoder_hidden_states.shape[1] if encoder_hidden_states is not None else 0
        out = self.attention.attend(
            self,
            q,
            k,
            v,
            seq_dim=1,
            text_len=text_len,
            text_position="last",
            key_padding=attention_mask,
            dense=self._dispatch(q, k, v, attention_mask),
        )
        out = out.flatten(2, 3).to(q.dtype)
        if encoder_hidden_states is not None:
            out, encoder_hidden_states = out[:, :-text_len], out[:, -text_len:]
            if getattr(attn, "to_out", None) is not None:
                out = attn.to_out[1](attn.to_out[0](out))
            if getattr(attn, "to_add_out", None) is not None:
                encoder_hidden_states = attn.to_add_out(encoder_hidden_states)
        return out, encoder_hidden_states


class CogVideoXSparseProcessor(SparseProcessor):
    """CogVideoX joint attention: text tokens first, then video; RoPE on video tokens only."""

    stock_classes = ("CogVideoXAttnProcessor2_0",)

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: Any = None,
    ) -> Any:
        from diffusers.models.embeddings import apply_rotary_emb

        if attention_mask is not None:
            return self.stock(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        text_len = encoder_hidden_states.size(1)
        hidden_states = torch.cat([encoder_hidden_states, hidden_states], dim=1)
        batch, seq, _ = hidden_states.shape
        q, k, v = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        head_dim = k.shape[-1] // attn.heads
        q = q.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        k = k.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        v = v.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)
        if image_rotary_emb is not None:
            q[:, :, text_len:] = apply_rotary_emb(q[:, :, text_len:], image_rotary_emb)
            if not attn.is_cross_attention:
                k[:, :, text_len:] = apply_rotary_emb(k[:, :, text_len:], image_rotary_emb)

        def dense() -> torch.Tensor:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False)

        out = self.attention.attend(
            self, q, k, v, seq_dim=2, text_len=text_len, text_position="first", key_padding=None, dense=dense
        )
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim)
        out = attn.to_out[1](attn.to_out[0](out))
        encoder_hidden_states, out = out.split([text_len, out.size(1) - text_len], dim=1)
        return out, encoder_hidden_states


class LTXVideoSparseProcessor(SparseProcessor):
    """LTX-Video self-attention (``attn1``): video tokens only, RoPE before the head split."""

    stock_classes = ("LTXVideoAttnProcessor",)

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: Any = None,
    ) -> torch.Tensor:
        from diffusers.models.transformers.transformer_ltx import apply_rotary_emb

        if encoder_hidden_states is not None or attention_mask is not None:
            return self.stock(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        q = attn.norm_q(attn.to_q(hidden_states))
        k = attn.norm_k(attn.to_k(hidden_states))
        v = attn.to_v(hidden_states)
        if image_rotary_emb is not None:
            q = apply_rotary_emb(q, image_rotary_emb)
            k = apply_rotary_emb(k, image_rotary_emb)
        q = q.unflatten(2, (attn.heads, -1))
        k = k.unflatten(2, (attn.heads, -1))
        v = v.unflatten(2, (attn.heads, -1))
        out = self.attention.attend(
            self,
            q,
            k,
            v,
            seq_dim=1,
            text_len=0,
            text_position="last",
            key_padding=None,
            dense=self._dispatch(q, k, v, None),
        )
        out = out.flatten(2, 3).to(q.dtype)
        return attn.to_out[1](attn.to_out[0](out))


#: family -> processor class
PROCESSORS: dict[str, type[SparseProcessor]] = {
    "wan": WanSparseProcessor,
    "wan_vace": WanSparseProcessor,
    "skyreels_v2": WanSparseProcessor,
    "cogvideox": CogVideoXSparseProcessor,
    "hunyuan_video": HunyuanVideoSparseProcessor,
    "ltx_video": LTXVideoSparseProcessor,
}
