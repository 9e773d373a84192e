"""Prompt sets: built-in sets for the built-in models, or a user's text/CSV file."""

from __future__ import annotations

import csv

from ..errors import ConfigError
from ..files import brief, read_lines
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
    """``"builtin"`` (the model's set), a .txt file (one prompt per line) or a .csv with a ``prompt`` column.

    A prompt file is a regular UTF-8 file of at most :data:`~accel.files.MAX_PROMPT_BYTES` bytes and
    :data:`~accel.files.MAX_PROMPT_LINES` lines."""
    if source == "builtin":
        return builtin_prompts(model)
    lines = read_lines(source, "prompt file")
    if source.endswith(".csv"):
        reader = csv.DictReader(lines)
        if reader.fieldnames is None or "prompt" not in reader.fieldnames:
            raise ConfigError(
                f"{source}: a CSV prompt file needs a 'prompt' column (found {brief(reader.fieldnames)})"
            )
        try:
            prompts = [(row["prompt"] or "").strip() for row in reader]
        except csv.Error as exc:
            raise ConfigError(f"{source}: not a valid CSV file: {exc}") from None
        prompts = [p for p in prompts if p]
    else:
        prompts = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if not prompts:
        raise ConfigError(f"{source}: no prompts found")
    return prompts
