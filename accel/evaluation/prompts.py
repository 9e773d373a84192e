"""Prompt sets: built-in sets for the built-in models, or a user's text/CSV file."""

from __future__ import annotations

import csv
import os

from ..errors import ConfigError, NotFoundError
from ..pipelines.builtin import BUILTIN_MODELS, data


def builtin_prompts(model: str) -> list[str]:
    """Every class of the model's dataset once, in a fixed (shuffled) order."""
    spec = BUILTIN_MODELS.get(model)
    if spec is None:
        raise ConfigError(
            f"no built-in prompt set for {model!r}; built-in models: {', '.join(BUILTIN_MODELS)}; "
            "pass a prompt file (.txt, one per line, or .csv with a 'prompt' column)"
        )
    if spec.dataset == "digits":
        return [data.digit_caption(d) for d in range(10)]
    if spec.dataset in data.SHAPE_SETS:
        return _interleaved([s.caption for s in data.all_shape_specs()])
    if spec.dataset == "moving_shapes":
        return _interleaved([s.caption for s in data.all_motion_specs()])
    raise ConfigError(f"{model} has no prompt set (it is a {spec.kind})")


def _interleaved(prompts: list[str]) -> list[str]:
    """A fixed shuffle, so that any prefix of the set covers shapes, colours and positions evenly."""
    import random

    order = list(range(len(prompts)))
    random.Random(0).shuffle(order)
    return [prompts[i] for i in order]


def load_prompts(source: str, model: str) -> list[str]:
    """``"builtin"`` (the model's set), a .txt file (one prompt per line) or a .csv with a ``prompt`` column."""
    if source == "builtin":
        return builtin_prompts(model)
    if not os.path.exists(source):
        raise NotFoundError(f"prompt file not found: {source!r}")
    if source.endswith(".csv"):
        with open(source, newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or "prompt" not in reader.fieldnames:
                raise ConfigError(f"{source}: a CSV prompt file needs a 'prompt' column (found {reader.fieldnames})")
            prompts = [row["prompt"].strip() for row in reader if row["prompt"].strip()]
    else:
        with open(source) as f:
            prompts = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    if not prompts:
        raise ConfigError(f"{source}: no prompts found")
    return prompts
