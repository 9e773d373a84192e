"""Distillation fine-tune of a RePaViT conversion (Xu et al., arXiv 2505.21847), and its CLI.

Algorithm: train the converted student (BatchNorm FFNs, idle channels) to match the original
teacher's logits (KL at temperature T, plus cross-entropy when labels exist) with AdamW and a cosine
learning rate, then fold it with :func:`accel.reparam.reparameterize`.

The paper trains RePaViTs from scratch for 300 ImageNet epochs; this short recipe recovers a
converted pretrained ViT and its accuracy must be measured, not assumed.

CLI (on the built-in ``vit-digits`` classifier)::

    accel reparam finetune --epochs 20 --out-dir runs/repavit-vit-digits
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..errors import ConfigError
from ..files import write_json
from ..reparam.calibrate import calibrate_batchnorm, iterate_batches, num_batches
from ..reparam.serialization import read_checkpoint, save_reparameterized

STUDENT_DIR = "student"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "trainer_state.json"


def distillation_loss(
    student_out: Any,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor | None,
    temperature: float = 1.0,
    kd_weight: float = 1.0,
    ce_weight: float = 1.0,
) -> torch.Tensor:
    """``kd_weight * T^2 * KL(teacher_T || student_T) + ce_weight * CE(student, labels)`` (CE only with labels).

    A ``(cls_logits, dist_logits)`` pair (DeiT distilled students in distilled-training mode) takes
    the KL on the distillation head and the CE on the class head.
    """
    cls_logits, dist_logits = student_out if isinstance(student_out, (tuple, list)) else (student_out, student_out)
    t = temperature
    kd = F.kl_div(
        F.log_softmax(dist_logits.float() / t, dim=-1),
        F.log_softmax(teacher_logits.float() / t, dim=-1),
        reduction="batchmean",
        log_target=True,
    ) * (t * t)
    loss = kd_weight * kd
    if labels is not None and ce_weight > 0:
        loss = loss + ce_weight * F.cross_entropy(cls_logits.float(), labels)
    return loss


def cosine_lr(step: int, total: int, lr: float, warmup: int = 0, min_lr: float = 0.0) -> float:
    """Linear warm-up for ``warmup`` steps, then cosine from ``lr`` down to ``min_lr`` at ``total``."""
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# ------------------------------------------------------------------------------ checkpoints
def save_training_state(
    out_dir: str, student: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    """Write the student (safetensors + JSON), the optimizer (safetensors + JSON) and the trainer state."""
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    save_reparameterized(student, os.path.join(out_dir, STUDENT_DIR))
    opt = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entries in opt["state"].items():
        for name, value in entries.items():
            key = f"state.{index}.{name}"
            if isinstance(value, torch.Tensor):
                tensors[key] = value.detach().contiguous().cpu()
            else:
                scalars[key] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in opt["param_groups"]]
    meta = json.dumps({"param_groups": groups, "scalars": scalars})
    tmp = os.path.join(out_dir, OPTIMIZER_FILE + ".tmp")
    save_file(tensors, tmp, metadata={"optimizer": meta})
    os.replace(tmp, os.path.join(out_dir, OPTIMIZER_FILE))
    write_json(os.path.join(out_dir, STATE_FILE), state, indent=2)


def load_training_state(out_dir: str, student: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
    """Restore what :func:`save_training_state` wrote into ``student`` and ``optimizer``; None if absent."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    state_path = os.path.join(out_dir, STATE_FILE)
    if not os.path.exists(state_path):
        return None
    with open(state_path) as f:
        state = json.load(f)
    device = next(student.parameters()).device
    weights, _ = read_checkpoint(os.path.join(out_dir, STUDENT_DIR), device)
    student.load_state_dict(weights, strict=True)
    opt_path = os.path.join(out_dir, OPTIMIZER_FILE)
    with safe_open(opt_path, framework="pt") as f:
        meta = json.loads(f.metadata()["optimizer"])
    tensors = load_file(opt_path, device=str(device))
    entries: dict[int, dict[str, Any]] = {}
    for key, value in list(tensors.items()) + list(meta["scalars"].items()):
        _, index, name = key.split(".", 2)
        entries.setdefault(int(index), {})[name] = value
    for entry in entries.values():
        if "step" in entry and isinstance(entry["step"], torch.Tensor):
            entry["step"] = entry["step"].cpu()
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    optimizer.load_state_dict({"state": entries, "param_groups": groups})
    return state


# ------------------------------------------------------------------------------ the loop
def finetune(
    student: nn.Module,
    teacher: nn.Module,
    data: Any,
    epochs: int = 1,
    lr: float = 5e-4,
    *,
    batch_size: int = 64,
    weight_decay: float = 0.05,
    temperature: float = 1.0,
    kd_weight: float = 1.0,
    ce_weight: float = 1.0,
    warmup_steps: int = 0,
    min_lr: float = 0.0,
    grad_clip: float | None = 1.0,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    out_dir: str | None = None,
    resume: bool = True,
    seed: int = 0,
    steps_per_epoch: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Fine-tune a converted RePaViT ``student`` by distillation from ``teacher`` (arXiv 2505.21847).

    Loss: ``kd_weight * T^2 * KL(teacher || student)`` at temperature ``temperature``, plus
    ``ce_weight * cross_entropy`` when the data carries labels. AdamW (no decay on norms, biases and
    tokens), cosine learning rate with ``warmup_steps`` of linear warm-up, a tqdm progress bar, and a
    checkpoint in ``out_dir`` after every epoch (student as safetensors + JSON, optimizer as
    safetensors, ``trainer_state.json``). With ``resume`` and an existing checkpoint, training
    continues after the last finished epoch (keep the other arguments unchanged).

    Args:
        student: the converted model (:func:`accel.reparam.to_repavit`), trained in place.
        teacher: the original model; run in eval mode without gradients.
        data: images ``(N, C, H, W)``, an ``(images, labels)`` pair, or an iterable of batches
            (tensors, ``(images, labels)`` pairs or dicts); tensors are shuffled each epoch.
        epochs: number of epochs (total, including resumed ones).
        lr: peak learning rate.
        augment: optional ``augment(images, generator) -> images`` applied to each training batch.
        steps_per_epoch: needed only when ``data`` is an iterable without ``len``.

    Returns:
        ``{"history": [per-epoch dicts], "epochs_run": int, "resumed_from": int | None, "steps": int}``.
    """
    if epochs < 1 or lr <= 0:
        raise ConfigError(f"epochs must be >= 1 and lr > 0, got epochs={epochs}, lr={lr}")
    device = torch.device(device) if device is not None else next(student.parameters()).device
    student.to(device).train()
    teacher.to(device).eval()
    per_epoch = steps_per_epoch or num_batches(data, batch_size)
    if per_epoch is None:
        raise ConfigError("data has no len(); pass steps_per_epoch")
    optimizer = torch.optim.AdamW(_param_groups(student, weight_decay), lr=lr, betas=(0.9, 0.999))
    start_epoch, step, history, resumed_from = _resume(out_dir if resume else None, student, optimizer)
    schedule = functools.partial(cosine_lr, total=per_epoch * epochs, lr=lr, warmup=warmup_steps, min_lr=min_lr)
    loss_fn = functools.partial(distillation_loss, temperature=temperature, kd_weight=kd_weight, ce_weight=ce_weight)
    fixed = {"schedule": schedule, "loss_fn": loss_fn, "grad_clip": grad_clip, "augment": augment, "device": device}
    settings = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "temperature": temperature}
    settings.update(kd_weight=kd_weight, ce_weight=ce_weight, seed=seed)
    for epoch in range(start_epoch, epochs):
        student.train()
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        batches = itertools.islice(iterate_batches(data, batch_size, shuffle=True, generator=generator), per_epoch)
        with tqdm(total=per_epoch, desc=f"repavit finetune {epoch + 1}/{epochs}", disable=not progress) as bar:
            row, step = _train_epoch(student, teacher, optimizer, batches, step, generator=generator, bar=bar, **fixed)
        history.append({"epoch": epoch, **row})
        if out_dir is not None:
            save_training_state(
                out_dir, student, optimizer, {"epoch": epoch, "step": step, "history": history, **settings}
            )
    student.eval()
    epochs_run = len(history) - (resumed_from + 1 if resumed_from is not None else 0)
    return {"history": history, "epochs_run": epochs_run, "resumed_from": resumed_from, "steps": step}


def _resume(
    out_dir: str | None, student: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[int, int, list[dict[str, Any]], int | None]:
    """``(first epoch, step, history, last finished epoch)`` from a checkpoint in ``out_dir``, or a fresh start."""
    state = load_training_state(out_dir, student, optimizer) if out_dir is not None else None
    if state is None:
        return 0, 0, [], None
    return state["epoch"] + 1, state["step"], state["history"], state["epoch"]


def _train_epoch(
    student: nn.Module,
    teacher: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Any,
    step: int,
    schedule: Callable[[int], float],
    loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor],
    grad_clip: float | None,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None,
    generator: torch.Generator,
    device: torch.device,
    bar: Any,
) -> tuple[dict[str, Any], int]:
    """One epoch of distillation steps; returns its history row (without the epoch) and the step count after it."""
    losses, started = [], time.time()
    for images, labels in batches:
        images = images.to(device)
        labels = labels.to(device) if labels is not None else None
        if augment is not None:
            images = augment(images, generator)
        current_lr = schedule(step)
        for group in optimizer.param_groups:
            group["lr"] = current_lr
        with torch.no_grad():
            teacher_logits = teacher(images)
        loss = loss_fn(student(images), teacher_logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(student.parameters(), grad_clip)
        optimizer.step()
        step += 1
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.4f}", lr=f"{current_lr:.2e}")
        bar.update(1)
    row = {"loss": sum(losses) / max(1, len(losses)), "steps": len(losses), "lr_end": schedule(max(0, step - 1))}
    return {**row, "seconds": round(time.time() - started, 2)}, step


# ------------------------------------------------------------------------------ CLI
@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on ``images``."""
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = model(images[start : start + batch_size].to(device))
        correct += int((logits.argmax(-1).cpu() == labels[start : start + batch_size]).sum())
    return correct / max(1, len(images))


def build_parser() -> argparse.ArgumentParser:
    from ..pipelines.builtin import BUILTIN_MODELS

    p = argparse.ArgumentParser(
        prog="accel reparam finetune",
        description="Convert the built-in timm ViT (vit-digits) to RePaViT, fine-tune it by distillation from "
        "the original, fold it, and report held-out accuracy at each stage (arXiv 2505.21847).",
    )
    p.add_argument(
        "--model-dir",
        default=BUILTIN_MODELS["vit-digits"].path,
        help="teacher weights directory (config.json + model.safetensors); default: built-in vit-digits",
    )
    p.add_argument(
        "--out-dir",
        default=os.path.join("runs", "repavit-vit-digits"),
        help="checkpoints, folded model and result.json (default: %(default)s)",
    )
    p.add_argument("--idle-ratio", type=float, default=0.75, help="fraction of idle FFN channels, in [0, 1]")
    p.add_argument("--no-act-norm", action="store_true", help="no BatchNorm after the activation")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--min-lr", type=float, default=1e-6)
    p.add_argument("--warmup-steps", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--kd-weight", type=float, default=1.0)
    p.add_argument("--ce-weight", type=float, default=1.0, help="0 = pure distillation, labels unused")
    p.add_argument("--calibration-batches", type=int, default=20, help="BatchNorm calibration batches (0: none)")
    p.add_argument("--train-limit", type=int, default=None, help="use only the first N training images (smoke runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-resume", action="store_true", help="start over even if --out-dir has a checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the vit-digits fine-tune recipe; returns a process exit code."""
    from ..errors import AccelError
    from ..pipelines.builtin import data as builtin_data
    from ..pipelines.builtin.vit import load_vit
    from ..reparam.fold import reparameterize
    from ..reparam.repavit import to_repavit

    args = build_parser().parse_args(argv)
    if not os.path.exists(os.path.join(args.model_dir, "model.safetensors")):
        print(
            f"error: no teacher weights in {args.model_dir}; train the built-in ViT first "
            "(python -m accel.pipelines.builtin.vit) or pass --model-dir",
            file=sys.stderr,
        )
        return 2
    torch.manual_seed(args.seed)
    teacher = load_vit(args.model_dir).to(args.device)
    train_images, train_labels = builtin_data.digits("train")
    if args.train_limit is not None:
        train_images, train_labels = train_images[: args.train_limit], train_labels[: args.train_limit]
    test_images, test_labels = builtin_data.digits("heldout")
    try:
        student = to_repavit(teacher, args.idle_ratio, act_norm=not args.no_act_norm)
    except AccelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result: dict[str, Any] = {
        "idle_ratio": args.idle_ratio,
        "act_norm": not args.no_act_norm,
        "teacher_accuracy": accuracy(teacher, test_images, test_labels),
        "converted_accuracy": accuracy(student, test_images, test_labels),
    }
    resuming = not args.no_resume and os.path.exists(os.path.join(args.out_dir, STATE_FILE))
    if args.calibration_batches > 0 and not resuming:
        calibrate_batchnorm(student, train_images, args.calibration_batches, args.batch_size)
        result["calibrated_accuracy"] = accuracy(student, test_images, test_labels)
    data = (train_images, train_labels) if args.ce_weight > 0 else train_images
    run = finetune(
        student,
        teacher,
        data,
        args.epochs,
        args.lr,
        batch_size=args.batch_size,
        weight_decay=args.weight_decay,
        temperature=args.temperature,
        kd_weight=args.kd_weight,
        ce_weight=args.ce_weight,
        warmup_steps=args.warmup_steps,
        min_lr=args.min_lr,
        augment=builtin_data.augment_digits,
        out_dir=args.out_dir,
        resume=not args.no_resume,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
    )
    result["finetuned_accuracy"] = accuracy(student, test_images, test_labels)
    folded = reparameterize(student)
    result["folded_accuracy"] = accuracy(folded, test_images, test_labels)
    with torch.no_grad():
        probe = test_images[:64].to(args.device)
        result["fold_max_abs_logit_diff"] = float((student.eval()(probe) - folded(probe)).abs().max())
    os.makedirs(args.out_dir, exist_ok=True)
    save_reparameterized(folded, os.path.join(args.out_dir, "folded"))
    result.update({"epochs": args.epochs, "history": run["history"], "resumed_from": run["resumed_from"]})
    write_json(os.path.join(args.out_dir, "result.json"), result, indent=2)
    print(json.dumps({k: v for k, v in result.items() if k != "history"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
