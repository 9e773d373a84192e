"""Structural reparameterization of timm vision transformers: RePaViT (Xu et al., arXiv 2505.21847).

    from accel.reparam import to_repavit, calibrate_batchnorm, reparameterize
    from accel.tuning.repavit_finetune import finetune
    student = to_repavit(vit, idle_ratio=0.75)          # BatchNorm FFNs, 75% idle channels
    calibrate_batchnorm(student, images)
    finetune(student, vit, (images, labels), epochs=20, lr=5e-4, out_dir="runs/repavit")
    fast = reparameterize(student)                       # plain Linears, same outputs

or through accel: ``accel.apply(vit, accel.RePaViTConfig(checkpoint="runs/repavit/student"))``.
"""

from __future__ import annotations

from .calibrate import calibrate_batchnorm
from .fold import fold_mlp, reparameterize
from .modules import ChannelIdleMlp, RePaBlock, RePaFFN, ResidualFFN, TokenBatchNorm, ffn_macs_per_token
from .official import build_official_model, load_official_checkpoint, official_to_accel_keys
from .plugin import RePaViTConfig, RePaViTPlugin, apply_repavit
from .repavit import to_repavit
from .serialization import load_reparameterized, read_checkpoint, save_reparameterized

# The distillation fine-tune is an offline tool: accel.tuning.repavit_finetune (CLI: accel reparam finetune).

__all__ = [
    "ChannelIdleMlp",
    "RePaBlock",
    "RePaFFN",
    "RePaViTConfig",
    "RePaViTPlugin",
    "ResidualFFN",
    "TokenBatchNorm",
    "apply_repavit",
    "build_official_model",
    "calibrate_batchnorm",
    "ffn_macs_per_token",
    "fold_mlp",
    "load_official_checkpoint",
    "load_reparameterized",
    "official_to_accel_keys",
    "read_checkpoint",
    "reparameterize",
    "save_reparameterized",
    "to_repavit",
]
