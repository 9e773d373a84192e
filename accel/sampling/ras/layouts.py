"""Where RAS cuts into each DiT family: the module whose output is the image-token sequence (gather
after patch and position embedding), the module whose output feeds unpatchify (scatter back), how
attention keys/values of dropped tokens are cached, and the RoPE table to slice. The Lumina
families need more than two cut points; :mod:`.lumina` wires them (``kv`` names the wiring)."""

from __future__ import annotations

import dataclasses

import torch.nn as nn

from ...errors import UnsupportedModelError


@dataclasses.dataclass(frozen=True)
class RASLayout:
    family: str
    gather: str  # module whose output is (B, N, D) image tokens
    scatter: str  # module whose output is (B, n, X) per-token predictions, before unpatchify
    kv: str  # "linear": cache to_k/to_v outputs; "flux", "lumina_next", "lumina2": RAS processors
    # (keys after RoPE); the lumina ones also wire their own gather/scatter (see .lumina)
    rope: str | None = None  # module whose output is the RoPE table (text rows first, then image rows)
    packed: bool = False  # the denoiser's prediction is already (B, N, C) tokens
    joint_text: bool = True  # text tokens take part in the cached self/joint attention (for the FLOPs estimate)
    sharded: bool = False  # runs under context parallelism (the hooks gather and split the image tokens)

    def patch_size(self, model: nn.Module) -> int | None:
        if self.packed:
            return None
        return int(getattr(model.config, "patch_size", 1) or 1)


LAYOUTS = {
    "sd3": RASLayout("sd3", gather="pos_embed", scatter="proj_out", kv="linear"),
    "pixart": RASLayout("pixart", gather="pos_embed", scatter="proj_out", kv="linear", joint_text=False),
    "dit": RASLayout("dit", gather="pos_embed", scatter="proj_out_2", kv="linear"),
    "flux": RASLayout(
        "flux", gather="x_embedder", scatter="proj_out", kv="flux", rope="pos_embed", packed=True, sharded=True
    ),
    "lumina": RASLayout(
        "lumina",
        gather="patch_embedder",
        scatter="norm_out",
        kv="lumina_next",
        rope="patch_embedder",
        joint_text=False,
    ),
    "lumina2": RASLayout("lumina2", gather="rope_embedder", scatter="norm_out", kv="lumina2", rope="rope_embedder"),
}


def layout_for(family: str) -> RASLayout:
    if family not in LAYOUTS:
        raise UnsupportedModelError(
            f"RASConfig does not support the {family!r} family yet: it needs the family's token layout (where the "
            "image tokens enter and leave the blocks, the patch size, the RoPE table) mapped by hand; "
            f"supported: {', '.join(sorted(LAYOUTS))}"
        )
    return LAYOUTS[family]
