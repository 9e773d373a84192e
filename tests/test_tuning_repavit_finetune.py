"""RePaViT's distillation fine-tuning (``accel reparam finetune``): checkpoints, resume, the loss, the command."""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.nn.functional as F

from accel.reparam import (
    RePaFFN,
    calibrate_batchnorm,
    load_reparameterized,
    reparameterize,
    to_repavit,
)
from accel.tuning import repavit_finetune as ft


def test_finetune_one_epoch_checkpoints_and_resumes(tmp_path):
    from accel.pipelines.testing import tiny_denoiser

    teacher = tiny_denoiser("timm_vit")
    g = torch.Generator().manual_seed(0)
    images, labels = torch.randn(32, 3, 32, 32, generator=g), torch.randint(0, 10, (32,), generator=g)
    student = calibrate_batchnorm(to_repavit(teacher, 0.75), images, max_batches=2, batch_size=16)
    assert student.blocks[0].mlp.norm1.running_var.sub(1).abs().max() > 1e-3, "calibration must set BN stats"
    before = {k: v.clone() for k, v in student.state_dict().items()}
    out = str(tmp_path / "run")
    result = ft.finetune(
        student, teacher, (images, labels), epochs=1, lr=1e-3, batch_size=16, out_dir=out, progress=False
    )
    assert result["steps"] == 2 and len(result["history"]) == 1 and result["resumed_from"] is None
    assert any(not torch.equal(v, before[k]) for k, v in student.state_dict().items() if v.is_floating_point())
    assert sorted(os.listdir(out)) == ["optimizer.safetensors", "student", "trainer_state.json"]
    # Resume into a fresh conversion: the saved weights and optimizer state come back exactly.
    fresh = to_repavit(teacher, 0.75)
    optimizer = torch.optim.AdamW(ft._param_groups(fresh, 0.05), lr=1e-3)
    state = ft.load_training_state(out, fresh, optimizer)
    assert state["epoch"] == 0 and state["step"] == 2
    assert all(torch.equal(v, student.state_dict()[k]) for k, v in fresh.state_dict().items())
    assert len(optimizer.state) == sum(1 for p in fresh.parameters() if p.requires_grad)
    resumed = ft.finetune(
        fresh, teacher, (images, labels), epochs=2, lr=1e-3, batch_size=16, out_dir=out, progress=False
    )
    assert resumed["resumed_from"] == 0 and resumed["steps"] == 4 and len(resumed["history"]) == 2
    with torch.no_grad():
        x = images[:4]
        assert (reparameterize(fresh)(x) - fresh.eval()(x)).abs().max() < 1e-5


def test_distillation_loss():
    logits = torch.randn(4, 10)
    assert ft.distillation_loss(logits, logits, None).abs() < 1e-6
    assert ft.distillation_loss(logits + torch.randn(4, 10), logits, None) > 0
    labels = torch.randint(0, 10, (4,))
    assert ft.distillation_loss(logits, logits, labels) == pytest.approx(float(F.cross_entropy(logits, labels)))
    assert ft.cosine_lr(0, 100, 1.0, warmup=10) == pytest.approx(0.1)
    assert ft.cosine_lr(100, 100, 1.0, min_lr=0.01) == pytest.approx(0.01)


def test_cli_main_on_a_tiny_teacher(tmp_path, capsys):
    from safetensors.torch import save_file

    from accel.pipelines.builtin.vit import build_vit

    small = dict(patch_size=8, embed_dim=32, depth=2, num_heads=2)
    teacher_dir = tmp_path / "teacher"
    teacher_dir.mkdir()
    torch.manual_seed(0)
    save_file(
        {k: v.contiguous() for k, v in build_vit(**small).state_dict().items()}, str(teacher_dir / "model.safetensors")
    )
    (teacher_dir / "config.json").write_text(json.dumps({"model_kwargs": small}))
    out = tmp_path / "out"
    code = ft.main(
        [
            "--model-dir",
            str(teacher_dir),
            "--out-dir",
            str(out),
            "--epochs",
            "1",
            "--train-limit",
            "64",
            "--batch-size",
            "32",
            "--calibration-batches",
            "1",
            "--no-progress",
        ]
    )
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert result["fold_max_abs_logit_diff"] < 1e-4 and 0 <= result["folded_accuracy"] <= 1
    assert len(result["history"]) == 1 and result["history"][0]["steps"] == 2
    folded = load_reparameterized(str(out / "folded"))
    assert all(isinstance(b.mlp, RePaFFN) for b in folded.blocks)
    assert ft.main(["--model-dir", str(tmp_path / "missing"), "--out-dir", str(out)]) == 2
    assert "no teacher weights" in capsys.readouterr().err
