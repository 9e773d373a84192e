"""RePaViT (arXiv 2505.21847) beyond ViT: timm Swin, MLP-Mixer and PoolFormer (MetaFormer).

Conversion, BatchNorm calibration, distillation, folding (folded equals unfolded), saving, the accel
plugin (exact remove) and the official checkpoints' layouts (upstream ``repaswin.py``,
``repamlpmixer.py``, ``repapoolformer.py``), each against a forward written from upstream's code.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import accel
from accel.pipelines.testing import tiny_denoiser
from accel.reparam import (
    ChannelIdleMlp,
    RePaFFN,
    build_official_model,
    calibrate_batchnorm,
    ffn_macs_per_token,
    load_official_checkpoint,
    load_reparameterized,
    reparameterize,
    save_reparameterized,
    to_repavit,
)
from accel.reparam.repavit import repa_blocks

FAMILIES = ("timm_swin", "timm_mixer", "timm_metaformer")


def _features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Pre-logit features (timm's Mixer zero-initialises its classifier, so logits would hide errors)."""
    return model.forward_head(model.forward_features(x), pre_logits=True)


def _randomise_norms(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics and affines, so that folding has something to fold."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(1 + 0.2 * torch.randn(n, generator=g))
                m.bias.copy_(0.2 * torch.randn(n, generator=g))


@pytest.mark.parametrize("family", FAMILIES)
def test_convert_calibrate_fold_save_on_every_family(family, tmp_path):
    model = tiny_denoiser(family)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    student = to_repavit(model, 0.75)
    with pytest.raises(accel.UnsupportedModelError, match="no RePaViT blocks"):
        repa_blocks(model)  # converted a copy
    blocks = repa_blocks(student)
    assert blocks and all(isinstance(b.mlp, ChannelIdleMlp) for _, b in blocks)
    assert all(b.act_channels == b.hidden_features // 4 for _, b in blocks)  # ceil(h * 0.25)
    with pytest.raises(accel.UnsupportedModelError, match="already a RePaViT block"):
        to_repavit(student)

    calibrate_batchnorm(student, torch.randn(16, 3, 32, 32), batch_size=8)
    norm = blocks[0][1].mlp.norm1
    assert norm.running_var.sub(1).abs().max() > 1e-3, "calibration must set the BatchNorm statistics"
    _randomise_norms(student)
    with torch.no_grad():
        unfolded = _features(student.eval(), x)
        folded_model = reparameterize(student)
        folded = _features(folded_model, x)
    assert all(isinstance(b.mlp, ChannelIdleMlp) for _, b in repa_blocks(student)), "reparameterize copies"
    assert all(isinstance(b.mlp, RePaFFN) for _, b in repa_blocks(folded_model))
    assert (folded - unfolded).abs().max() < 1e-5
    for (_, before), (_, after) in zip(repa_blocks(student), repa_blocks(folded_model), strict=True):
        d, h = before.mlp.in_features, before.hidden_features
        assert ffn_macs_per_token(after.mlp) == d * d + 2 * d * h // 4  # d^2 + 2 d a: 0.375x at h = 4d
        assert ffn_macs_per_token(after.mlp) / ffn_macs_per_token(before.mlp) == pytest.approx(0.375)

    save_reparameterized(folded_model, str(tmp_path / "folded"))
    save_reparameterized(student, str(tmp_path / "student"))
    base = tiny_denoiser(family) if family == "timm_metaformer" else None  # its layers are not JSON
    with torch.no_grad():
        reloaded = load_reparameterized(str(tmp_path / "folded"), model=base)
        assert torch.equal(_features(reloaded, x), folded)
        trained = load_reparameterized(str(tmp_path / "student"), model=tiny_denoiser(family) if base else None)
        assert torch.equal(_features(trained, x), unfolded)


@pytest.mark.parametrize("family", FAMILIES)
def test_plugin_loads_a_checkpoint_folds_and_removes_exactly(family, tmp_path):
    model = tiny_denoiser(family)
    x = torch.randn(2, 3, 32, 32)
    student = to_repavit(model, 0.75)
    calibrate_batchnorm(student, torch.randn(8, 3, 32, 32), batch_size=8)
    _randomise_norms(student, seed=3)
    with torch.no_grad():
        for p in student.parameters():  # a "fine-tuned" student: every weight differs from the model's
            p.add_(0.01 * torch.randn_like(p))
    save_reparameterized(student, str(tmp_path / "student"))
    with torch.no_grad():
        expected = _features(student.eval(), x)
        baseline = _features(model, x)
        accel.apply(model, accel.RePaViTConfig(idle_ratio=0.75, checkpoint=str(tmp_path / "student")))
        stats = accel.summary(model)["denoisers"][type(model).__name__]["plugins"]["repavit"]
        assert (_features(model, x) - expected).abs().max() < 1e-5
        assert stats["reparameterized"] and stats["ffn_mac_ratio"] == pytest.approx(0.375)
        assert stats["family"] == {"timm_swin": "swin", "timm_mixer": "mixer", "timm_metaformer": "metaformer"}[family]
        accel.remove(model)
        assert torch.equal(_features(model, x), baseline)
        with pytest.raises(accel.ConfigError, match="idle_ratio=0.5"):
            accel.apply(model, accel.RePaViTConfig(idle_ratio=0.5, checkpoint=str(tmp_path / "student")))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "changes the model's outputs" without a checkpoint
            accel.apply(model, accel.RePaViTConfig(idle_ratio=0.5))
        assert {b.act_channels * 2 == b.hidden_features for _, b in repa_blocks(model)} == {True}
        accel.remove(model)
        assert torch.equal(_features(model, x), baseline)


def test_distillation_finetune_on_swin_and_poolformer(tmp_path):
    from accel.tuning import repavit_finetune as ft

    g = torch.Generator().manual_seed(0)
    images = torch.randn(32, 3, 32, 32, generator=g)
    for family in ("timm_swin", "timm_metaformer"):
        teacher = tiny_denoiser(family)
        with torch.no_grad():
            teacher.get_classifier().weight.normal_(0, 0.5)  # non-trivial logits to distil
            for name, p in teacher.named_parameters():
                if name.endswith(".scale"):  # PoolFormer's 1e-5 layer scales would make every block ~identity
                    p.fill_(0.5)
        student = calibrate_batchnorm(to_repavit(teacher, 0.75), images, max_batches=2, batch_size=16)

        def gap(model: nn.Module, teacher: nn.Module = teacher) -> float:
            with torch.no_grad():
                return float(ft.distillation_loss(model.eval()(images), teacher(images), None))

        before = gap(student)
        result = ft.finetune(
            student, teacher, images, epochs=10, lr=1e-3, batch_size=16, out_dir=str(tmp_path / family), progress=False
        )
        assert result["steps"] == 20
        assert gap(student) < 0.2 * before, (family, before, gap(student))  # the student moves to the teacher
        with torch.no_grad():
            assert (reparameterize(student)(images[:4]) - student.eval()(images[:4])).abs().max() < 1e-5


def test_unsupported_metaformer_and_mixer_variants_are_refused_with_the_reason():
    import timm.models.metaformer as mf
    from timm.models.mlp_mixer import MlpMixer, ResBlock

    caformer_like = mf.MetaFormer(
        depths=(1, 1, 1, 1), dims=(8, 8, 16, 16), token_mixers=mf.Pooling, res_scale_init_values=1.0, num_classes=3
    )
    with pytest.raises(accel.UnsupportedModelError, match="scaled \\(res_scale"):
        to_repavit(caformer_like)
    resmlp = MlpMixer(
        img_size=32, patch_size=8, embed_dim=16, num_blocks=1, block_layer=ResBlock, mlp_ratio=4, num_classes=3
    )
    with pytest.raises(accel.UnsupportedModelError, match="ResBlock, not a timm MixerBlock"):
        to_repavit(resmlp)
    with pytest.raises(accel.UnsupportedModelError, match="SwinTransformer"):
        to_repavit(nn.Sequential(nn.Linear(2, 2)))


# ----------------------------------------------------------------------------------- upstream layouts
def _bn(g: torch.Generator, n: int, shape: tuple[int, ...] = ()) -> dict[str, torch.Tensor]:
    return {
        "weight": 1 + 0.2 * torch.randn(n, generator=g),
        "bias": 0.2 * torch.randn(n, generator=g),
        "running_mean": 0.3 * torch.randn(n, generator=g),
        "running_var": torch.rand(n, generator=g) + 0.5,
        "num_batches_tracked": torch.tensor(5),
    }


def _upstream_ffn(g: torch.Generator, d: int, h: int, conv: bool = False, ls: bool = False) -> dict[str, torch.Tensor]:
    """Training-form keys of upstream's ``Mlp(feature_norm="BatchNorm")``."""
    k = (1, 1) if conv else ()
    out = {
        "fc1.weight": 0.1 * torch.randn(h, d, *k, generator=g),
        "fc1.bias": 0.1 * torch.randn(h, generator=g),
        "fc2.weight": 0.1 * torch.randn(d, h, *k, generator=g),
        "fc2.bias": 0.1 * torch.randn(d, generator=g),
    }
    out.update({f"norm1.{k}": v for k, v in _bn(g, d).items()})
    out.update({f"norm2.{k}": v for k, v in _bn(g, h).items()})
    if ls:
        out["ls"] = 0.5 + torch.rand(d, generator=g)
    return out


def _bn_apply(t: torch.Tensor, p: dict[str, torch.Tensor], dim: int) -> torch.Tensor:
    shape = [1] * t.dim()
    shape[dim] = -1
    mean, var = p["running_mean"].view(shape), p["running_var"].view(shape)
    return (t - mean) / torch.sqrt(var + 1e-5) * p["weight"].view(shape) + p["bias"].view(shape)


def _upstream_ffn_forward(x: torch.Tensor, p: dict[str, torch.Tensor], a: int, dim: int = -1) -> torch.Tensor:
    """Upstream ``Mlp.forward`` (BatchNorm, channel idle), shortcut included."""
    sub = {k.split(".", 1)[1]: v for k, v in p.items() if k.startswith("norm1.")}
    h = _bn_apply(x, sub, dim)
    if dim == 1:
        h = F.conv2d(h, p["fc1.weight"], p["fc1.bias"])
    else:
        h = F.linear(h, p["fc1.weight"], p["fc1.bias"])
    h = torch.cat([F.gelu(h.narrow(dim, 0, a)), h.narrow(dim, a, h.shape[dim] - a)], dim)
    h = _bn_apply(h, {k.split(".", 1)[1]: v for k, v in p.items() if k.startswith("norm2.")}, dim)
    h = F.conv2d(h, p["fc2.weight"], p["fc2.bias"]) if dim == 1 else F.linear(h, p["fc2.weight"], p["fc2.bias"])
    if "ls" in p:
        h = h * p["ls"].view(-1, 1, 1)
    return x + h


def _upstream_fold(p: dict[str, torch.Tensor], a: int) -> dict[str, torch.Tensor]:
    """Upstream ``reparam()`` (BatchNorms into fc1/fc2, then RePaMlp's fc1 d->d, fc2 d->a, fc3 a->d),
    written from its code, including its PoolFormer layer scale applied to fc2's weight only."""
    shape = p["fc1.weight"].shape
    w1, w2 = p["fc1.weight"].flatten(1).double(), p["fc2.weight"].flatten(1).double()

    def affine(prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
        std = torch.sqrt(p[prefix + "running_var"].double() + 1e-5)
        scale = p[prefix + "weight"].double() / std
        return scale, p[prefix + "bias"].double() - p[prefix + "running_mean"].double() * scale

    s1, t1 = affine("norm1.")
    s2, t2 = affine("norm2.")
    b1, w1 = w1 @ t1 + p["fc1.bias"].double(), w1 * s1[None]
    b2, w2 = w2 @ t2 + p["fc2.bias"].double(), w2 * s2[None]
    if "ls" in p:
        w2 = w2 * p["ls"].double()[:, None]
    d = w1.shape[1]
    k = (1, 1) if len(shape) == 4 else ()
    return {
        "fc1.weight": (w1[a:].T @ w2[:, a:].T + torch.eye(d, dtype=torch.float64)).T.float().reshape(d, d, *k),
        "fc1.bias": (b1[a:] @ w2[:, a:].T + b2).float(),
        "fc2.weight": w1[:a].float().reshape(a, d, *k),
        "fc2.bias": b1[:a].float(),
        "fc3.weight": w2[:, :a].float().reshape(d, a, *k),
    }


def _folded_forward(x: torch.Tensor, p: dict[str, torch.Tensor], dim: int = -1) -> torch.Tensor:
    """Upstream ``RePaMlp.forward``: ``fc3(act(fc2(x))) + fc1(x)``."""
    op = F.conv2d if dim == 1 else F.linear
    return op(F.gelu(op(x, p["fc2.weight"], p["fc2.bias"])), p["fc3.weight"]) + op(x, p["fc1.weight"], p["fc1.bias"])


def _swin_upstream_state(g: torch.Generator) -> tuple[dict[str, torch.Tensor], nn.Module]:
    """An upstream ``repaswin.py`` state dict (original Swin names, BatchNorm FFNs, persistent masks),
    and the timm Swin whose attention half it was drawn from."""
    model = tiny_denoiser("timm_swin")
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=g) + (1 if "norm" in name and name.endswith("weight") else 0))
    state = {}
    for key, value in model.state_dict().items():
        if ".norm2." in key or ".mlp." in key:
            continue
        if key.startswith("layers.") and ".downsample." in key:  # timm: start of stage s+1; upstream: end of s
            stage = int(key.split(".")[1])
            key = f"layers.{stage - 1}." + key.split(".", 2)[2]
        state[key.replace("head.fc.", "head.")] = value
    for name, module in model.named_modules():
        if type(module).__name__ == "SwinTransformerBlock":
            d, h = module.mlp.fc1.in_features, module.mlp.fc1.out_features
            state.update({f"{name}.mlp.{k}": v for k, v in _upstream_ffn(g, d, h).items()})
            state[f"{name}.attn.relative_position_index"] = module.attn.relative_position_index
            if module.attn_mask is not None:
                state[f"{name}.attn_mask"] = module.attn_mask
    return state, model


class _UpstreamSwinFFN(nn.Module):
    """Upstream's Swin FFN without the shortcut (timm's block adds it)."""

    def __init__(self, keys: dict[str, torch.Tensor], a: int, folded: bool) -> None:
        super().__init__()
        self.keys, self.a, self.folded = keys, a, folded

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _folded_forward(x, self.keys) if self.folded else _upstream_ffn_forward(x, self.keys, self.a)
        return out - x


def _swin_reference(state: dict[str, torch.Tensor], x: torch.Tensor, folded: bool = False) -> torch.Tensor:
    """Upstream Swin: timm's own port of the original Swin layout (``checkpoint_filter_fn``) for everything
    but the FFNs, which follow upstream's formula."""
    from timm.models.swin_transformer import checkpoint_filter_fn

    reference = tiny_denoiser("timm_swin")
    for name, module in list(reference.named_modules()):
        if type(module).__name__ == "SwinTransformerBlock":
            keys = {k[len(name) + 5 :]: v for k, v in state.items() if k.startswith(f"{name}.mlp.")}
            module.norm2 = nn.Identity()
            module.mlp = _UpstreamSwinFFN(keys, module.dim, folded)
    rest = {k: v for k, v in state.items() if ".mlp." not in k}
    missing, unexpected = reference.load_state_dict(checkpoint_filter_fn(rest, reference), strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    with torch.no_grad():
        return _features(reference.eval(), x)


def test_official_swin_layout_loads_and_matches_upstream():
    g = torch.Generator().manual_seed(0)
    state, _ = _swin_upstream_state(g)
    x = torch.randn(2, 3, 32, 32, generator=g)
    arch = {"family": "swin", "img_size": 32, "patch_size": 4, "window_size": 4, "num_classes": 10}
    model = load_official_checkpoint(
        state, idle_ratio=0.75, arch=dict(arch, embed_dim=16, depths=[2, 2], num_heads=[2, 4])
    )
    inferred = load_official_checkpoint(state)  # sizes and input size read from the tensors
    with torch.no_grad():
        expected = _swin_reference(state, x)
        assert (_features(model, x) - expected).abs().max() < 1e-5
        assert torch.equal(_features(inferred, x), _features(model, x))
        folded_accel = _features(reparameterize(model), x)
        assert (folded_accel - expected).abs().max() < 1e-5

    # An upstream checkpoint saved after its reparam(): fc1 (d->d), fc2 (d->a), fc3 (a->d).
    upstream_folded = {}
    for key, value in state.items():
        if ".mlp." in key:
            continue
        upstream_folded[key] = value
    for prefix in {k.split(".mlp.")[0] for k in state if ".mlp." in k}:
        keys = {k.split(".mlp.")[1]: v for k, v in state.items() if k.startswith(prefix + ".mlp.")}
        a = keys["fc1.weight"].shape[0] // 4
        upstream_folded.update({f"{prefix}.mlp.{k}": v for k, v in _upstream_fold(keys, a).items()})
    reloaded = load_official_checkpoint(upstream_folded)
    with torch.no_grad():
        expected_folded = _swin_reference(upstream_folded, x, folded=True)
        assert (_features(reloaded, x) - expected_folded).abs().max() < 1e-5
        assert (expected_folded - expected).abs().max() < 1e-4  # upstream's fold is exact for Swin
    with pytest.raises(accel.ConfigError, match="active channels"):
        load_official_checkpoint(upstream_folded, idle_ratio=0.5)
    layernorm_ffn = {k.replace("mlp.norm1.weight", "mlp.norm.weight"): v for k, v in state.items()}
    with pytest.raises(accel.UnsupportedModelError, match="feature_norm=LayerNorm"):
        load_official_checkpoint(layernorm_ffn)


def _mixer_upstream_state(g: torch.Generator, dim=32, blocks=2, patch=8, img=32, classes=10):
    n = (img // patch) ** 2
    r = lambda *s: 0.1 * torch.randn(*s, generator=g)  # noqa: E731
    state = {
        "stem.proj.weight": r(dim, 3, patch, patch),
        "stem.proj.bias": r(dim),
        "norm.weight": 1 + r(dim),
        "norm.bias": r(dim),
        "head.weight": r(classes, dim),
        "head.bias": r(classes),
    }
    for i in range(blocks):
        p = f"blocks.{i}."
        state.update(
            {
                p + "mlp_tokens.norm.weight": 1 + r(n),
                p + "mlp_tokens.norm.bias": r(n),
                p + "mlp_tokens.fc1.weight": r(dim // 2, n),
                p + "mlp_tokens.fc1.bias": r(dim // 2),
                p + "mlp_tokens.fc2.weight": r(n, dim // 2),
                p + "mlp_tokens.fc2.bias": r(n),
            }
        )
        state.update({p + "mlp_channels." + k: v for k, v in _upstream_ffn(g, dim, 4 * dim).items()})
    return state


def _mixer_reference(state, x, dim=32, blocks=2, patch=8, folded=False):
    """Upstream RePaMlpMixer's forward, written from ``repamlpmixer.py``."""
    t = F.conv2d(x, state["stem.proj.weight"], state["stem.proj.bias"], stride=patch).flatten(2).transpose(1, 2)
    n = t.shape[1]
    for i in range(blocks):
        p = f"blocks.{i}."
        u = t.transpose(1, 2)  # (B, C, N): upstream's token MLP normalises over tokens
        h = F.layer_norm(u, (n,), state[p + "mlp_tokens.norm.weight"], state[p + "mlp_tokens.norm.bias"], 1e-5)
        h = F.linear(F.gelu(F.linear(h, state[p + "mlp_tokens.fc1.weight"], state[p + "mlp_tokens.fc1.bias"])),
                     state[p + "mlp_tokens.fc2.weight"], state[p + "mlp_tokens.fc2.bias"])  # fmt: skip
        t = (u + h).transpose(1, 2)
        keys = {k[len(p + "mlp_channels.") :]: v for k, v in state.items() if k.startswith(p + "mlp_channels.")}
        t = _folded_forward(t, keys) if folded else _upstream_ffn_forward(t, keys, dim)
    t = F.layer_norm(t, (dim,), state["norm.weight"], state["norm.bias"], 1e-6)
    return t.mean(1)


def test_official_mixer_layout_loads_and_matches_upstream():
    g = torch.Generator().manual_seed(1)
    state = _mixer_upstream_state(g)
    x = torch.randn(2, 3, 32, 32, generator=g)
    model = load_official_checkpoint(state)
    with torch.no_grad():
        expected = _mixer_reference(state, x)
        assert (_features(model, x) - expected).abs().max() < 1e-5
        assert (_features(reparameterize(model), x) - expected).abs().max() < 1e-5
    with pytest.raises(accel.ConfigError, match="keeps 32 of 128 channels active"):
        load_official_checkpoint(state, idle_ratio=0.5)
    upstream_folded = {k: v for k, v in state.items() if ".mlp_channels." not in k}
    for i in range(2):
        p = f"blocks.{i}.mlp_channels."
        keys = {k[len(p) :]: v for k, v in state.items() if k.startswith(p)}
        upstream_folded.update({p + k: v for k, v in _upstream_fold(keys, 32).items()})
    with torch.no_grad():
        reloaded = _features(load_official_checkpoint(upstream_folded), x)
        assert (reloaded - _mixer_reference(upstream_folded, x, folded=True)).abs().max() < 1e-5
        assert (reloaded - expected).abs().max() < 1e-4


def _poolformer_upstream_state(g, depths=(1, 1, 2, 1), dims=(16, 24, 32, 48), classes=10):
    r = lambda *s: 0.1 * torch.randn(*s, generator=g)  # noqa: E731
    state = {
        "patch_embed.proj.weight": r(dims[0], 3, 7, 7),
        "patch_embed.proj.bias": r(dims[0]),
        "norm.weight": 1 + r(dims[-1]),
        "norm.bias": r(dims[-1]),
        "head.weight": r(classes, dims[-1]),
        "head.bias": r(classes),
    }
    for s, (depth, d) in enumerate(zip(depths, dims, strict=True)):
        for j in range(depth):
            p = f"network.{2 * s}.{j}."
            state.update({p + "norm1.weight": 1 + r(d), p + "norm1.bias": r(d), p + "layer_scale_1": 0.5 + r(d)})
            state.update({p + "mlp." + k: v for k, v in _upstream_ffn(g, d, 4 * d, conv=True, ls=True).items()})
        if s + 1 < len(dims):
            state[f"network.{2 * s + 1}.proj.weight"] = r(dims[s + 1], d, 3, 3)
            state[f"network.{2 * s + 1}.proj.bias"] = r(dims[s + 1])
    return state


def _poolformer_reference(state, x, depths=(1, 1, 2, 1), folded=False):
    """Upstream RePaPoolFormer's forward, written from ``repapoolformer.py``."""
    t = F.conv2d(x, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=4, padding=2)
    for s, depth in enumerate(depths):
        for j in range(depth):
            p = f"network.{2 * s}.{j}."
            h = F.group_norm(t, 1, state[p + "norm1.weight"], state[p + "norm1.bias"], 1e-5)
            h = F.avg_pool2d(h, 3, 1, 1, count_include_pad=False) - h
            t = t + state[p + "layer_scale_1"].view(-1, 1, 1) * h
            keys = {k[len(p + "mlp.") :]: v for k, v in state.items() if k.startswith(p + "mlp.")}
            if folded:
                t = _folded_forward(t, keys, dim=1)
            else:
                t = _upstream_ffn_forward(t, keys, keys["fc1.weight"].shape[0] // 4, dim=1)
        if s + 1 < len(depths):
            p = f"network.{2 * s + 1}.proj."
            t = F.conv2d(t, state[p + "weight"], state[p + "bias"], stride=2, padding=1)
    t = F.group_norm(t, 1, state["norm.weight"], state["norm.bias"], 1e-5)
    return t.mean((-2, -1))


def test_official_poolformer_layout_loads_and_matches_upstream():
    g = torch.Generator().manual_seed(2)
    state = _poolformer_upstream_state(g)
    x = torch.randn(2, 3, 32, 32, generator=g)
    model = load_official_checkpoint(state)
    with torch.no_grad():
        expected = _poolformer_reference(state, x)
        assert (_features(model, x) - expected).abs().max() < 1e-5
        assert (_features(reparameterize(model), x) - expected).abs().max() < 1e-5  # accel's fold is exact
    upstream_folded = {k: v for k, v in state.items() if ".mlp." not in k}
    for prefix in {k.split(".mlp.")[0] for k in state if ".mlp." in k}:
        keys = {k.split(".mlp.")[1]: v for k, v in state.items() if k.startswith(prefix + ".mlp.")}
        upstream_folded.update(
            {f"{prefix}.mlp.{k}": v for k, v in _upstream_fold(keys, keys["fc1.weight"].shape[0] // 4).items()}
        )
    with torch.no_grad():
        reloaded = _features(load_official_checkpoint(upstream_folded), x)
        upstream = _poolformer_reference(upstream_folded, x, folded=True)
        assert (reloaded - upstream).abs().max() < 1e-5  # loaded as it is ...
        assert (upstream - expected).abs().max() > 1e-3  # ... though upstream's fold leaves fc2's bias unscaled


def test_official_architecture_names_for_every_family():
    sizes = {
        "RePaSwin_Tiny": 12,
        "RePaMlpMixer_s32": 8,
        "RePaPoolformer_s12": 12,
    }
    for name, blocks in sizes.items():
        model = build_official_model(name)
        assert len(repa_blocks(model)) == blocks
    mixer = build_official_model("RePaMlpMixer_s32")
    assert type(mixer.blocks[0].norm1).__name__ == "TokenAxisLayerNorm"
    pool = build_official_model("RePaPoolformer_s12")
    assert type(pool.head.global_pool).__name__ == "NormThenPool"
    assert {b.act_channels for _, b in repa_blocks(pool)} == {64, 128, 320, 512}  # int(4d * 0.25)
    with pytest.raises(accel.ConfigError, match="RePaSwin_Base"):
        build_official_model("RePaSwin_Huge")
