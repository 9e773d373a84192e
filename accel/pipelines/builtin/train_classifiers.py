"""Train the domain classifiers behind the proving-ground metrics (a few minutes on 2 CPU cores).

* ``digits``: 10-way digit classifier on the digits train split (+-2 px shifts).
* ``shapes``: three heads (shape, colour, position) on procedural shapes; video frames of the
  moving-shapes set are mixed in for the shape and colour heads (their position head is masked),
  so the same network scores the video model frame by frame.
* ``varied_shapes``: shape, colour and position heads plus binned size, background and shading
  heads on the varied shapes; the nuisance heads make the features (FID's) see more than the class.
* ``moving_shapes``: a 3D CNN on whole clips with shape, colour and direction heads; its
  features give the video-level FID.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import CLASSIFIER_DIRS, data
from .classifier import HEADS, DomainClassifier, VideoClassifier, save_classifier
from .training import fit, write_report


def _accuracy(model: DomainClassifier, images: torch.Tensor, labels: dict[str, torch.Tensor]) -> dict[str, float]:
    with torch.no_grad():
        probs = model.probabilities(data.to_unit(images))
    return {name: float((probs[name].argmax(-1) == target).float().mean()) for name, target in labels.items()}


def _fit_and_save(
    name: str,
    model: torch.nn.Module,
    loss_fn,
    evaluate,
    out_dir: str,
    *,
    batch_size: int,
    max_steps: int,
    minutes: float,
    seed: int,
) -> dict:
    """The recipe all three share (AdamW 2e-3, 50 warm-up steps, EMA 0.995); ``evaluate(trained)`` gives
    the held-out figures saved with the weights and in ``training.json``."""
    report, (trained,) = fit(
        name,
        [model],
        loss_fn,
        batch_size=batch_size,
        max_steps=max_steps,
        max_minutes=minutes,
        lr=2e-3,
        warmup=50,
        ema_decay=0.995,
        seed=seed,
    )
    extra = evaluate(trained)
    save_classifier(trained, out_dir, extra)
    write_report(out_dir, report, extra)
    return {**report.as_dict(), **extra}


def train_digits_classifier(
    minutes: float = 10.0, max_steps: int = 1100, batch_size: int = 64, seed: int = 0, out_dir: str | None = None
) -> dict:
    out_dir = out_dir or CLASSIFIER_DIRS["digits"]
    torch.manual_seed(seed)
    model = DomainClassifier(HEADS["digits"])
    images, labels = data.digits("train")
    g = torch.Generator().manual_seed(seed)

    def loss_fn(step: int) -> torch.Tensor:
        idx = torch.randint(len(images), (batch_size,), generator=g)
        x = data.augment_digits(images[idx], g)
        return F.cross_entropy(model.logits(data.to_unit(x))["digit"], labels[idx])

    def evaluate(trained: DomainClassifier) -> dict:
        held_images, held_labels = data.digits("heldout")
        return {"heldout_accuracy": _accuracy(trained, held_images, {"digit": held_labels})}

    return _fit_and_save(
        "classifier-digits",
        model,
        loss_fn,
        evaluate,
        out_dir,
        batch_size=batch_size,
        max_steps=max_steps,
        minutes=minutes,
        seed=seed,
    )


def train_shapes_classifier(
    minutes: float = 10.0, max_steps: int = 1700, batch_size: int = 64, seed: int = 0, out_dir: str | None = None
) -> dict:
    out_dir = out_dir or CLASSIFIER_DIRS["shapes"]
    torch.manual_seed(seed)
    model = DomainClassifier(HEADS["shapes"])
    images, labels, _ = data.shapes(12000, seed)
    videos, vlabels, _ = data.moving_shapes(800, seed)
    frames = videos.flatten(0, 1)
    frame_labels = vlabels[:, None, :2].expand(-1, videos.shape[1], -1).reshape(-1, 2)
    g = torch.Generator().manual_seed(seed)

    def loss_fn(step: int) -> torch.Tensor:
        idx = torch.randint(len(images), (batch_size * 3 // 4,), generator=g)
        fidx = torch.randint(len(frames), (batch_size // 4,), generator=g)
        logits = model.logits(data.to_unit(torch.cat([images[idx], frames[fidx]])))
        n = len(idx)
        loss = F.cross_entropy(logits["position"][:n], labels[idx, 2])
        loss = loss + F.cross_entropy(logits["shape"], torch.cat([labels[idx, 0], frame_labels[fidx, 0]]))
        loss = loss + F.cross_entropy(logits["colour"], torch.cat([labels[idx, 1], frame_labels[fidx, 1]]))
        return loss

    def evaluate(trained: DomainClassifier) -> dict:
        held, held_labels, _ = data.shapes(600, seed, split="heldout")
        acc = _accuracy(
            trained, held, {"shape": held_labels[:, 0], "colour": held_labels[:, 1], "position": held_labels[:, 2]}
        )
        hv, hvl, _ = data.moving_shapes(60, seed, split="heldout")
        frame_acc = _accuracy(
            trained,
            hv.flatten(0, 1),
            {
                "shape": hvl[:, None, 0].expand(-1, hv.shape[1]).flatten(),
                "colour": hvl[:, None, 1].expand(-1, hv.shape[1]).flatten(),
            },
        )
        return {"heldout_accuracy": acc, "heldout_video_frame_accuracy": frame_acc}

    return _fit_and_save(
        "classifier-shapes",
        model,
        loss_fn,
        evaluate,
        out_dir,
        batch_size=batch_size,
        max_steps=max_steps,
        minutes=minutes,
        seed=seed,
    )


def _fit_heads(
    name: str,
    model: torch.nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    heldout,
    out_dir: str,
    *,
    batch_size: int,
    max_steps: int,
    minutes: float,
    seed: int,
) -> dict:
    """For sets whose label columns are the model's heads in order: each batch sums the heads'
    cross-entropies; ``heldout()`` returns (inputs, labels, captions) of the held-out split."""
    inputs, labels = train
    names = list(model.head_sizes)
    g = torch.Generator().manual_seed(seed)

    def loss_fn(step: int) -> torch.Tensor:
        idx = torch.randint(len(inputs), (batch_size,), generator=g)
        logits = model.logits(data.to_unit(inputs[idx]))
        return sum(F.cross_entropy(logits[head], labels[idx, i]) for i, head in enumerate(names))

    def evaluate(trained: torch.nn.Module) -> dict:
        held, held_labels, _ = heldout()
        return {
            "heldout_accuracy": _accuracy(trained, held, {head: held_labels[:, i] for i, head in enumerate(names)})
        }

    return _fit_and_save(
        name, model, loss_fn, evaluate, out_dir, batch_size=batch_size, max_steps=max_steps, minutes=minutes, seed=seed
    )


def train_varied_shapes_classifier(
    minutes: float = 30.0, max_steps: int = 6000, batch_size: int = 64, seed: int = 0, out_dir: str | None = None
) -> dict:
    torch.manual_seed(seed)
    model = DomainClassifier(HEADS["varied_shapes"])
    images, labels, _ = data.varied_shapes(48000, seed)
    return _fit_heads(
        "classifier-varied-shapes",
        model,
        (images, labels),
        lambda: data.varied_shapes(1200, seed, split="heldout"),
        out_dir or CLASSIFIER_DIRS["varied_shapes"],
        batch_size=batch_size,
        max_steps=max_steps,
        minutes=minutes,
        seed=seed,
    )


def train_video_classifier(
    minutes: float = 20.0, max_steps: int = 1500, batch_size: int = 32, seed: int = 0, out_dir: str | None = None
) -> dict:
    torch.manual_seed(seed)
    model = VideoClassifier(HEADS["moving_shapes"])
    videos, labels, _ = data.moving_shapes(2400, seed)
    return _fit_heads(
        "classifier-moving-shapes",
        model,
        (videos, labels),
        lambda: data.moving_shapes(240, seed, split="heldout"),
        out_dir or CLASSIFIER_DIRS["moving_shapes"],
        batch_size=batch_size,
        max_steps=max_steps,
        minutes=minutes,
        seed=seed,
    )


if __name__ == "__main__":
    print(train_digits_classifier())
    print(train_shapes_classifier())
    print(train_varied_shapes_classifier())
    print(train_video_classifier())
