"""Where RAS cuts into the Lumina DiTs (Liu et al., arXiv 2502.10389; the same algorithm as for SD3/Flux).

Lumina-Next (``LuminaNextDiT2DModel``): the patch embedder returns ``(tokens, mask, img_size,
rope)``; a hook keeps the active tokens and their RoPE rows (the mask is the self-attention's key
mask and stays full length); every ``attn1`` gets :class:`RASLuminaNextAttnProcessor`; the output
norm's per-token predictions are scattered back before unpatchify. Cross-attention to the text
needs nothing: its queries are the active tokens, its keys the text.

Lumina2 (``Lumina2Transformer2DModel``): the RoPE embedder returns the patchified image, the
image-only and joint RoPE tables and the per-sample text lengths. Its hook picks the active
tokens, keeps their patches and image RoPE rows, and lays the joint RoPE table out as the sparse
joint sequence (per sample: text rows, active image rows, padding). The noise refiner runs on the
active tokens; its last block's output is scattered back to full length because the model builds
the joint sequence from every image token; the first joint block gathers the text rows and active
image rows again; the output norm scatters them back to the dense joint layout that unpatchify
reads. Refiner and joint attentions get :class:`RASLumina2AttnProcessor`; the text-only context
refiner is untouched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
from diffusers.hooks import ModelHook

from ...compiling import eager
from .hooks import ScatterHook
from .lumina_processor import RASLumina2AttnProcessor, RASLuminaNextAttnProcessor
from .state import TokenSelection

if TYPE_CHECKING:
    from .plugin import RASPlugin


class LuminaNextGatherHook(ModelHook):
    """On ``patch_embedder``: keep the active tokens and their RoPE rows."""

    def __init__(self, selection: TokenSelection) -> None:
        super().__init__()
        self.selection = selection

    @eager
    def post_forward(self, module: nn.Module, output: Any) -> Any:
        tokens, mask, img_size, rope = output
        active = self.selection.choose(int(tokens.shape[1]))
        if active is None:
            return output
        return (
            tokens.index_select(1, active.to(tokens.device)),
            mask,
            img_size,
            rope.index_select(1, active.to(rope.device)),
        )


def joint_rows(text_lengths: list[int], active: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """``(B, S')`` indices into the dense joint sequence (per sample: ``t`` text rows, ``num_tokens``
    image rows, padding to the longest sample) of the rows a sparse step computes: the text rows,
    the active image rows, and the sample's padding."""
    longest = max(text_lengths)
    rows = [torch.cat([torch.arange(t), t + active, t + num_tokens + torch.arange(longest - t)]) for t in text_lengths]
    return torch.stack(rows)


def _take_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    rows = rows.to(x.device)
    return x[torch.arange(x.shape[0], device=x.device)[:, None], rows]


class Lumina2RopeHook(ModelHook):
    """On ``rope_embedder``: choose the active tokens, slice the image RoPE table (and, with a noise
    refiner, the patches) to them, and lay the joint RoPE table out as the sparse joint sequence."""

    def __init__(self, selection: TokenSelection, gather_patches: bool) -> None:
        super().__init__()
        self.selection = selection
        self.gather_patches = gather_patches

    @eager
    def post_forward(self, module: nn.Module, output: Any) -> Any:
        patches, text_rope, image_rope, joint_rope, text_lengths, seq_lengths = output
        selection = self.selection
        active = selection.choose(int(image_rope.shape[1]))
        selection.text_lengths = [int(t) for t in text_lengths]
        selection.joint_rows = None
        if active is None:
            return output
        selection.joint_rows = joint_rows(selection.text_lengths, active.cpu(), selection.num_tokens)
        selection.joint_length = int(joint_rope.shape[1])
        index = active.to(image_rope.device)
        if self.gather_patches:
            patches = patches.index_select(1, index.to(patches.device))
        return (
            patches,
            text_rope,
            image_rope.index_select(1, index),
            _take_rows(joint_rope, selection.joint_rows),
            text_lengths,
            seq_lengths,
        )


class Lumina2JointGatherHook(ModelHook):
    """Before the first joint block: keep the text rows and the active image rows."""

    def __init__(self, selection: TokenSelection) -> None:
        super().__init__()
        self.selection = selection

    @eager
    def pre_forward(self, module: nn.Module, *args: Any, **kwargs: Any) -> tuple[tuple, dict]:
        rows = self.selection.joint_rows
        if rows is None:
            return args, kwargs
        if args:
            args = (_take_rows(args[0], rows), *args[1:])
        else:
            kwargs = {**kwargs, "hidden_states": _take_rows(kwargs["hidden_states"], rows)}
        return args, kwargs


class Lumina2JointScatterHook(ModelHook):
    """After the output norm: put the computed rows back in the dense joint layout (dropped image
    rows are zeros; the scheduler-step wrapper fills them with each token's cached prediction)."""

    def __init__(self, selection: TokenSelection) -> None:
        super().__init__()
        self.selection = selection

    @eager
    def post_forward(self, module: nn.Module, output: torch.Tensor) -> torch.Tensor:
        rows = self.selection.joint_rows
        if rows is None:
            return output
        full = output.new_zeros(output.shape[0], self.selection.joint_length, *output.shape[2:])
        full[torch.arange(output.shape[0], device=output.device)[:, None], rows.to(output.device)] = output
        return full


def _swap_processor(plugin: RASPlugin, attn: nn.Module, processor: Any) -> None:
    plugin.session.swap_processor(attn, processor)
    plugin.processors.append(processor)


def attach_lumina_next(plugin: RASPlugin, model: nn.Module) -> None:
    session = plugin.session
    session.register_hook(model.patch_embedder, LuminaNextGatherHook(plugin.selection), plugin.hook_name("gather"))
    session.register_hook(model.norm_out, ScatterHook(plugin.selection), plugin.hook_name("scatter"))
    for _, attn, _ in session.adapter.attention_modules(model, kinds=("self_attn",)):
        _swap_processor(plugin, attn, RASLuminaNextAttnProcessor(plugin.selection, attn.processor))


def attach_lumina2(plugin: RASPlugin, model: nn.Module) -> None:
    session = plugin.session
    refiner = list(model.noise_refiner)
    session.register_hook(
        model.rope_embedder, Lumina2RopeHook(plugin.selection, gather_patches=bool(refiner)), plugin.hook_name("rope")
    )
    if refiner:
        session.register_hook(refiner[-1], ScatterHook(plugin.selection), plugin.hook_name("refiner_scatter"))
    session.register_hook(model.layers[0], Lumina2JointGatherHook(plugin.selection), plugin.hook_name("gather"))
    session.register_hook(model.norm_out, Lumina2JointScatterHook(plugin.selection), plugin.hook_name("scatter"))
    for block in refiner:
        _swap_processor(
            plugin, block.attn, RASLumina2AttnProcessor(plugin.selection, block.attn.processor, joint=False)
        )
    for _, attn, _ in session.adapter.attention_modules(model, kinds=("joint_attn",)):
        _swap_processor(plugin, attn, RASLumina2AttnProcessor(plugin.selection, attn.processor, joint=True))
