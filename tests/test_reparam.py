"""RePaViT (arXiv 2505.21847): conversion, folding, export, saving, the official-key loader, the accel
plugin (apply/remove exactness, stats), the distillation fine-tune and its CLI. Tiny timm ViTs on CPU."""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import accel
from accel.reparam import (
    ChannelIdleMlp,
    RePaBlock,
    RePaFFN,
    ResidualFFN,
    TokenBatchNorm,
    load_official_checkpoint,
    load_reparameterized,
    reparameterize,
    save_reparameterized,
    to_repavit,
)

from .plugin_mixin import PluginTesterMixin, Target, at_apply

timm = pytest.importorskip("timm")

TINY = dict(pretrained=False, img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=10)
VARIANTS = (
    "vit_tiny_patch16_224",  # plain ViT
    "deit_tiny_distilled_patch16_224",  # VisionTransformerDistilled (two heads, two prefix tokens)
    "deit3_small_patch16_224",  # LayerScale
    "vit_base_patch16_reg4_gap_256",
)  # register tokens, average pooling, fc_norm
D, H = 32, 128  # width and FFN hidden width of the tiny models


def _vit(name: str = "vit_tiny_patch16_224", seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return timm.create_model(name, **TINY).eval()


def _perturb_norms(model: nn.Module, seed: int = 1) -> nn.Module:
    """Non-trivial BatchNorm statistics/affines and LayerScale gammas, so folding has work to do."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, TokenBatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(1 + 0.3 * torch.randn(n, generator=g))
                m.bias.copy_(0.2 * torch.randn(n, generator=g))
            if hasattr(m, "gamma") and isinstance(m.gamma, torch.Tensor):
                m.gamma.copy_(0.5 + torch.rand(m.gamma.shape, generator=g))
    return model.eval()


def _x(n: int = 3, seed: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------- conversion + folding
@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("idle", [0.0, 0.5, 0.75, 1.0])
def test_folded_matches_converted(name, idle):
    converted = _perturb_norms(to_repavit(_vit(name), idle))
    folded = reparameterize(converted)
    x = _x()
    with torch.no_grad():
        ref, out = converted(x), folded(x)
    assert (ref - out).abs().max().item() < 1e-5
    expected = nn.Linear if idle == 1.0 else ResidualFFN if idle == 0.0 else RePaFFN
    for block in folded.blocks:
        assert type(block.mlp) is expected
        assert not any(isinstance(m, (nn.BatchNorm1d, nn.LayerNorm)) for m in block.mlp.modules())
    assert all(isinstance(b.mlp, ChannelIdleMlp) for b in converted.blocks), "reparameterize must copy by default"


def test_conversion_layout_and_copy_semantics():
    vit = _vit()
    converted = to_repavit(vit, 0.75)
    assert converted is not vit and all(type(b).__name__ == "Block" for b in vit.blocks)
    mlp = converted.blocks[0].mlp
    assert mlp.act_channels == 32 and mlp.hidden_features == H  # ceil(128 * 0.25)
    assert isinstance(mlp.norm1, TokenBatchNorm) and isinstance(mlp.norm2, TokenBatchNorm)
    assert torch.equal(mlp.norm1.weight, vit.blocks[0].norm2.weight)  # BN starts from the LN affine
    assert torch.equal(mlp.fc1.weight, vit.blocks[0].mlp.fc1.weight)
    assert not hasattr(converted.blocks[0], "norm2")
    assert to_repavit(vit, 0.3, inplace=True) is vit and all(isinstance(b, RePaBlock) for b in vit.blocks)
    assert vit.blocks[0].mlp.act_channels == 90  # ceil(128 * 0.7), upstream's rule
    assert isinstance(to_repavit(_vit(), 0.5, act_norm=False).blocks[0].mlp.norm2, nn.Identity)


def test_idle_zero_is_a_plain_ffn():
    vit = _vit()
    converted = _perturb_norms(to_repavit(vit, 0.0, act_norm=False))
    tokens = torch.randn(2, 17, D)
    with torch.no_grad():
        for original, block in zip(vit.blocks, converted.blocks):
            plain = tokens + original.mlp(block.mlp.norm1(tokens))  # timm Mlp after the BatchNorm
            assert torch.equal(block.mlp(tokens), plain)
            folded = reparameterize(converted).blocks[0].mlp
            assert isinstance(folded, ResidualFFN) and folded.fc1.out_features == H
        assert (reparameterize(converted).blocks[1].mlp(tokens) - plain).abs().max() < 1e-5


def test_idle_one_collapses_to_a_single_linear():
    converted = _perturb_norms(to_repavit(_vit(), 1.0))
    folded = reparameterize(converted)
    for block in folded.blocks:
        assert isinstance(block.mlp, nn.Linear) and block.mlp.weight.shape == (D, D)
    tokens = torch.randn(2, 5, D)
    with torch.no_grad():
        assert (folded.blocks[0].mlp(tokens) - converted.blocks[0].mlp(tokens)).abs().max() < 1e-5


def test_unsupported_models_raise():
    from timm.layers import SwiGLUPacked
    from timm.models.vision_transformer import ResPostBlock, VisionTransformer

    small = dict(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, num_classes=10)
    with pytest.raises(accel.UnsupportedModelError, match="supports timm VisionTransformer"):
        to_repavit(timm.create_model("convnext_atto", pretrained=False, num_classes=10))
    with pytest.raises(accel.UnsupportedModelError, match="VisionTransformer"):
        to_repavit(nn.Sequential(nn.Linear(4, 4)))
    with pytest.raises(accel.UnsupportedModelError, match="not a timm Mlp"):
        to_repavit(VisionTransformer(mlp_layer=SwiGLUPacked, **small))
    with pytest.raises(accel.UnsupportedModelError, match="not a pre-norm timm Block"):
        to_repavit(VisionTransformer(block_fn=ResPostBlock, **small))
    with pytest.raises(accel.UnsupportedModelError, match="already a RePaViT block"):
        to_repavit(to_repavit(_vit()))
    with pytest.raises(accel.UnsupportedModelError, match="no RePaViT blocks"):
        reparameterize(_vit())


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.5", True])
def test_bad_idle_ratio_raises(bad):
    with pytest.raises(accel.ConfigError, match=r"\[0, 1\]"):
        to_repavit(_vit(), bad)
    with pytest.raises(accel.ConfigError, match=r"idle_ratio .*\[0(\.0)?, 1(\.0)?\]"):
        accel.RePaViTConfig(idle_ratio=bad)


def test_config_validation():
    assert str(accel.RePaViTConfig(idle_ratio=0.5)) == "repavit_idleratio0.5"
    with pytest.raises(accel.ConfigError, match="True or False"):
        accel.RePaViTConfig(reparameterize="yes")
    with pytest.raises(accel.ConfigError, match="directory or a .safetensors file"):
        accel.RePaViTConfig(checkpoint="model.pth")
    assert accel.RePaViTConfig.from_dict(accel.RePaViTConfig(checkpoint="a/b").to_dict()).checkpoint == "a/b"


# ----------------------------------------------------------------------------------- export, saving
def test_torch_export_and_compile_accept_the_folded_model():
    folded = reparameterize(_perturb_norms(to_repavit(_vit(), 0.75)))
    x = _x(2)
    with torch.no_grad():
        ref = folded(x)
    exported = torch.export.export(folded, (x,))
    ops = {str(n.target) for n in exported.graph.nodes if n.op == "call_function"}
    assert not any("batch_norm" in op for op in ops) and any("linear" in op for op in ops)
    assert (exported.module()(x) - ref).abs().max() < 1e-5
    # Dynamo capture of the whole graph (no graph break); the "eager" backend skips CPU code generation.
    compiled = torch.compile(folded, backend="eager", fullgraph=True)
    with torch.no_grad():
        assert (compiled(x) - ref).abs().max() < 1e-5


@pytest.mark.parametrize("name", VARIANTS[:3])
def test_safetensors_round_trip(tmp_path, name):
    converted = _perturb_norms(to_repavit(_vit(name), 0.75))
    folded = reparameterize(converted)
    x = _x()
    for model, sub in ((folded, "folded"), (converted, "training")):
        path = save_reparameterized(model, str(tmp_path / sub))
        assert sorted(os.listdir(path)) == ["config.json", "model.safetensors"]
        for source in (path, os.path.join(path, "model.safetensors")):
            loaded = load_reparameterized(source)
            assert type(loaded) is type(model)
            assert [type(b.mlp) for b in loaded.blocks] == [type(b.mlp) for b in model.blocks]
            with torch.no_grad():
                assert torch.equal(loaded(x), model(x))
    config = json.loads((tmp_path / "folded" / "config.json").read_text())
    assert config["idle_ratio"] == 0.75 and all(b["folded"] and b["act_channels"] == 32 for b in config["blocks"])


# ----------------------------------------------------------------------------------- official checkpoints
def _official_state(depth=2, classes=10, patch=8, img=32, a=32, seed=0) -> dict[str, torch.Tensor]:
    """A synthetic state dict with the upstream RePaViT_* key layout (random values)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.1):
        return torch.randn(*shape, generator=g) * scale

    def bn(n):
        return {
            "weight": 1 + r(n),
            "bias": r(n),
            "running_mean": r(n, scale=0.5),
            "running_var": torch.rand(n, generator=g) + 0.5,
            "num_batches_tracked": torch.tensor(7),
        }

    n = (img // patch) ** 2
    sd = {
        "cls_token": r(1, 1, D),
        "pos_embed": r(1, n + 1, D),
        "patch_embed.proj.weight": r(D, 3, patch, patch),
        "norm_pre.weight": 1 + r(D),
        "norm_pre.bias": r(D),
        "norm.weight": 1 + r(D),
        "norm.bias": r(D),
        "head.weight": r(classes, D),
        "head.bias": r(classes),
    }
    for i in range(depth):
        p = f"blocks.{i}."
        sd.update(
            {
                p + "attn.norm.weight": 1 + r(D),
                p + "attn.norm.bias": r(D),
                p + "attn.qkv.weight": r(3 * D, D),
                p + "attn.qkv.bias": r(3 * D),
                p + "attn.proj.weight": r(D, D),
                p + "attn.proj.bias": r(D),
                p + "mlp.fc1.weight": r(H, D),
                p + "mlp.fc1.bias": r(H),
                p + "mlp.fc2.weight": r(D, H),
                p + "mlp.fc2.bias": r(D),
            }
        )
        sd.update({p + "mlp.norm1." + k: v for k, v in bn(D).items()})
        sd.update({p + "mlp.norm2." + k: v for k, v in bn(H).items()})
    return sd


def _official_reference(sd, x, depth=2, heads=2, patch=8, a=32):
    """The upstream forward, written from its description (LN eps 1e-5 in attention, 1e-6 elsewhere)."""

    def bn(t, p):
        return (t - sd[p + "running_mean"]) / torch.sqrt(sd[p + "running_var"] + 1e-5) * sd[p + "weight"] + sd[
            p + "bias"
        ]

    t = F.conv2d(x, sd["patch_embed.proj.weight"], stride=patch).flatten(2).transpose(1, 2)
    t = torch.cat([sd["cls_token"].expand(len(t), -1, -1), t], 1) + sd["pos_embed"]
    t = F.layer_norm(t, (D,), sd["norm_pre.weight"], sd["norm_pre.bias"], 1e-6)
    b, n, _ = t.shape
    for i in range(depth):
        p = f"blocks.{i}."
        h = F.layer_norm(t, (D,), sd[p + "attn.norm.weight"], sd[p + "attn.norm.bias"], 1e-5)
        q, k, v = (
            F.linear(h, sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"])
            .reshape(b, n, 3, heads, D // heads)
            .permute(2, 0, 3, 1, 4)
        )
        att = torch.softmax(q @ k.transpose(-1, -2) * (D // heads) ** -0.5, -1) @ v
        t = t + F.linear(att.transpose(1, 2).reshape(b, n, D), sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
        h = F.linear(bn(t, p + "mlp.norm1."), sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"])
        act = a[i] if isinstance(a, list) else a
        h = torch.cat([F.gelu(h[..., :act]), h[..., act:]], -1)
        t = t + F.linear(bn(h, p + "mlp.norm2."), sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])
    t = F.layer_norm(t, (D,), sd["norm.weight"], sd["norm.bias"], 1e-6)
    return F.linear(t[:, 0], sd["head.weight"], sd["head.bias"])


def test_official_checkpoint_loader_on_synthetic_state_dict():
    sd = _official_state()
    x = _x()
    arch = dict(embed_dim=D, depth=2, num_heads=2)
    model = load_official_checkpoint(
        {"model": {"module." + k: v for k, v in sd.items()}, "epoch": 3}, idle_ratio=0.75, arch=arch
    )
    with torch.no_grad():
        ref = _official_reference(sd, x)
        assert (model(x) - ref).abs().max() < 1e-4
        folded = reparameterize(model)
        assert (folded(x) - ref).abs().max() < 1e-4
    # An upstream checkpoint saved after its reparam(): mlp.fc1 (d->d), mlp.fc2 (d->a), mlp.fc3 (a->d).
    rename = {"norm1.": "attn.norm.", "mlp.linear.": "mlp.fc1.", "mlp.fc1.": "mlp.fc2.", "mlp.fc2.": "mlp.fc3."}
    upstream_folded = {}
    for key, value in folded.state_dict().items():
        parts = key.split(".", 2)
        if parts[0] == "blocks":
            rest = next(
                (new + parts[2][len(old) :] for old, new in rename.items() if parts[2].startswith(old)), parts[2]
            )
            key = f"blocks.{parts[1]}.{rest}"
        upstream_folded[key] = value
    assert "blocks.0.mlp.fc3.weight" in upstream_folded
    reloaded = load_official_checkpoint(upstream_folded, idle_ratio=0.75, arch=arch)
    assert isinstance(reloaded.blocks[0].mlp, RePaFFN)
    with torch.no_grad():
        assert (reloaded(x) - ref).abs().max() < 1e-4
    with pytest.raises(accel.ConfigError, match="active channels"):
        load_official_checkpoint(upstream_folded, idle_ratio=0.5, arch=arch)
    layernorm_ffn = {k: v for k, v in sd.items() if ".mlp.norm" not in k}
    layernorm_ffn.update({"blocks.0.mlp.norm.weight": torch.ones(D), "blocks.0.mlp.norm.bias": torch.zeros(D)})
    with pytest.raises(accel.UnsupportedModelError, match="feature_norm=LayerNorm"):
        load_official_checkpoint(layernorm_ffn, arch=arch)
    with pytest.raises(accel.UnsupportedModelError, match="missing keys"):
        load_official_checkpoint({k: v for k, v in sd.items() if k != "head.bias"}, arch=arch)


def test_official_checkpoint_with_per_layer_idle_ratios():
    """Upstream ``--heuristic`` runs train each block with its own idle ratio. A training-form checkpoint
    stores every channel either way, so the ratios are passed per block; they give the upstream logits
    exactly, where one ratio for all blocks (the only option before) was silently wrong."""
    sd = _official_state()
    x = _x()
    arch = dict(embed_dim=D, depth=2, num_heads=2)
    with torch.no_grad():
        ref = _official_reference(sd, x, a=[32, 64])
        per_layer = load_official_checkpoint(sd, idle_ratio=[0.75, 0.5], arch=arch)
        assert [b.mlp.act_channels for b in per_layer.blocks] == [32, 64]
        assert (per_layer(x) - ref).abs().max() < 1e-4
        assert (reparameterize(per_layer)(x) - ref).abs().max() < 1e-4
        uniform = load_official_checkpoint(sd, idle_ratio=0.75, arch=arch)
        assert (uniform(x) - ref).abs().max() > 1e-3
    with pytest.raises(accel.ConfigError, match="has 3 per-layer ratios, the model has 2 blocks"):
        load_official_checkpoint(sd, idle_ratio=[0.75, 0.5, 0.5], arch=arch)
    with pytest.raises(accel.ConfigError, match=r"idle_ratio\[1\] must be a number in \[0, 1\]"):
        load_official_checkpoint(sd, idle_ratio=[0.75, 1.5], arch=arch)


def test_official_architecture_names():
    from accel.reparam import build_official_model

    model = build_official_model("RePaViT_Tiny")
    assert len(model.blocks) == 12 and model.embed_dim == 192 and model.patch_embed.proj.bias is None
    assert all(b.norm1.eps == 1e-5 and b.mlp.act_channels == 192 for b in model.blocks)  # ceil(768 * 0.25)
    block_keys = {k.split(".", 2)[2] for k in model.state_dict() if k.startswith("blocks.0.")}
    upstream = {k.split(".", 2)[2] for k in _official_state(depth=1) if k.startswith("blocks.0.")}
    assert block_keys == {k.replace("attn.norm.", "norm1.") for k in upstream}
    with pytest.raises(accel.ConfigError, match="RePaViT_Tiny"):
        build_official_model("RePaViT_Giant")


# ----------------------------------------------------------------------------------- the accel plugin
def test_apply_then_remove_restores_the_original_exactly():
    vit = _vit()
    x = _x()
    blocks = list(vit.blocks)
    state = {k: v.clone() for k, v in vit.state_dict().items()}
    with torch.no_grad():
        baseline = vit(x)
    with pytest.warns(UserWarning, match="changes the model's outputs"):
        accel.apply(vit, accel.RePaViTConfig(idle_ratio=0.75))
    assert all(isinstance(b, RePaBlock) and isinstance(b.mlp, RePaFFN) for b in vit.blocks)
    with torch.no_grad():
        assert not torch.equal(vit(x), baseline)
    stats = accel.summary(vit)["denoisers"]["VisionTransformer"]["plugins"]["repavit"]
    assert stats["blocks_converted"] == 2 and stats["reparameterized"] is True
    assert stats["ffn_macs_per_token_before"] == 2 * 2 * D * H
    assert stats["ffn_macs_per_token_after"] == 2 * (D * D + 2 * D * 32)
    assert stats["ffn_mac_ratio"] == pytest.approx(0.375)
    assert accel.remove(vit)
    assert all(a is b for a, b in zip(vit.blocks, blocks))
    assert (
        all(torch.equal(v, state[k]) for k, v in vit.state_dict().items()) and vit.state_dict().keys() == state.keys()
    )
    with torch.no_grad():
        assert torch.equal(vit(x), baseline)
    assert accel.get_handle(vit) is None


def test_apply_with_a_checkpoint_and_remove(tmp_path):
    vit = _vit()
    x = _x()
    with torch.no_grad():
        baseline = vit(x)
    student = _perturb_norms(to_repavit(vit, 0.75))
    with torch.no_grad():  # a fine-tune also changes the shared (attention) weights
        student.blocks[0].attn.qkv.weight.mul_(1.1)
        student.head.bias.add_(0.5)
    path = save_reparameterized(student, str(tmp_path / "student"))
    with torch.no_grad():
        expected = reparameterize(student)(x)
    with pytest.raises(accel.ConfigError, match="trained with idle_ratio=0.75"):
        accel.apply(vit, accel.RePaViTConfig(idle_ratio=0.5, checkpoint=path))
    with torch.no_grad():
        assert torch.equal(vit(x), baseline), "a failed apply must leave the model untouched"
    accel.apply(vit, accel.RePaViTConfig(checkpoint=os.path.join(path, "model.safetensors")))
    with torch.no_grad():
        assert (vit(x) - expected).abs().max() < 1e-5
    accel.remove(vit)
    with torch.no_grad():
        assert torch.equal(vit(x), baseline)


def test_apply_refuses_unsupported_models_and_rolls_back():
    from timm.layers import SwiGLUPacked
    from timm.models.vision_transformer import VisionTransformer

    with pytest.raises(accel.UnsupportedModelError):
        accel.apply(timm.create_model("convnext_atto", pretrained=False), accel.RePaViTConfig())
    swiglu = VisionTransformer(
        img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, num_classes=10, mlp_layer=SwiGLUPacked
    ).eval()
    blocks = list(swiglu.blocks)
    with pytest.raises(accel.UnsupportedModelError, match="not a timm Mlp"):
        accel.apply(swiglu, accel.RePaViTConfig())
    assert list(swiglu.blocks) == blocks and accel.get_handle(swiglu) is None


def test_ffn_flop_ratio_at_idle_075_is_0375():
    from torch.utils.flop_counter import FlopCounterMode

    vit = _vit()
    folded = reparameterize(_perturb_norms(to_repavit(vit, 0.75)))
    tokens = torch.randn(2, 17, D)

    def flops(module):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            module(tokens)
        return counter.get_total_flops()

    assert flops(folded.blocks[0].mlp) / flops(vit.blocks[0].mlp) == 0.375


# ----------------------------------------------------------------------------------- plugin contract
class TestRePaViTPlugin(PluginTesterMixin):
    """The shared plugin contract (tests/plugin_mixin.py) on a tiny timm ViT (2 blocks, width 32), batch of 2."""

    config_cls = accel.RePaViTConfig
    plugin_name = "repavit"
    summary_keys = (
        "blocks_converted",
        "idle_ratio",
        "active_channels",
        "reparameterized",
        "checkpoint",
        "ffn_macs_per_token_before",
        "ffn_macs_per_token_after",
        "ffn_mac_ratio",
    )
    unsupported_family = "unet"
    bad_configs = [
        ({"idle_ratio": 1.5}, "RePaViTConfig.idle_ratio must be a number in [0.0, 1.0], got 1.5"),
        ({"idle_ratio": True}, "RePaViTConfig.idle_ratio must be a finite number in [0.0, 1.0], got True"),
        ({"reparameterize": "yes"}, "RePaViTConfig.reparameterize must be True or False, got 'yes'"),
        ({"act_norm": 1}, "RePaViTConfig.act_norm must be True or False, got 1"),
        ({"checkpoint": "model.pth"}, "RePaViTConfig.checkpoint must be None or the path of a model saved by"),
        at_apply({"checkpoint": "missing_checkpoint"}, "RePaViTConfig.checkpoint 'missing_checkpoint' does not exist"),
    ]
    # No identity config: every idle_ratio swaps LayerNorm for BatchNorm, which changes the outputs of a
    # LayerNorm-trained ViT (documented); the fold's exactness is tested above (test_folded_matches_converted).
    test_identity_config_is_bit_identical = None

    def make_target(self):
        return Target.model(_vit(), lambda g: torch.randn(2, 3, 32, 32, generator=g))

    def config(self):
        return accel.RePaViTConfig(idle_ratio=0.75)

    def apply(self, obj, *configs):
        if any(c.checkpoint is not None for c in configs):
            return accel.apply(obj, *configs)
        with pytest.warns(UserWarning, match="changes the model's outputs"):  # documented: no checkpoint, new outputs
            return accel.apply(obj, *configs)

    def check_active(self, stats, summary):
        assert stats["blocks_converted"] == 2 and stats["reparameterized"] is True
        assert stats["active_channels"] == [32, 32]  # ceil(128 * 0.25)
        assert stats["ffn_macs_per_token_after"] < stats["ffn_macs_per_token_before"]
        assert stats["ffn_mac_ratio"] == 0.375
