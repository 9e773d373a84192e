"""RAS's state for one generation and its token choice, shared by its hooks and attention processors.

Per step the first denoiser call chooses which image tokens are recomputed (the highest-importance
ones of the previous step's output, starved tokens first); every later call of that step (the other
CFG branch) reuses the choice. Reset at the start of every generation.

Under context parallelism of degree P every rank chooses the same tokens on the whole sequence (the
scores come from the gathered prediction), rounded up to a multiple of P, and computes the P-th
share of them in order (``local``), so that every rank's sequence has the same length.
"""

from __future__ import annotations

from typing import Any

import torch

from ...context import DenoisingContext
from ...errors import ConfigError
from ...parallel import SequenceShards
from ...tensors import tensor_bytes
from .config import RASConfig
from .selection import select


class TokenSelection:
    """Which tokens this call recomputes, and what RAS keeps between steps of one generation.

    Attributes:
        active: sorted image-token indices recomputed by the call in flight (None: all of them).
        local: the share of ``active`` this rank computes (all of it in one process).
        shards: how context parallelism cut the sequence (one shard in one process).
        num_tokens: image tokens of the full sequence.
        text_len: text rows ahead of the image rows in a joint sequence (Flux; all ranks together).
        text_lengths / joint_rows / joint_length: Lumina2's per-sample text rows, the rows of its dense
            joint sequence computed now, and that sequence's length.
        chosen: step -> the tokens that step recomputes (None: dense).
        tokens_per_step: step -> how many tokens it recomputed.
        scores / starved: the previous step's per-token importance, and how long each token waited.
        cached_output: the previous step's full prediction (the dropped tokens move with it).
    """

    def __init__(self, config: RASConfig, context: DenoisingContext) -> None:
        self.config = config
        self.context = context
        self.num_tokens = 0
        self.text_len = 0
        self.shards = SequenceShards()
        self.reset()

    def reset(self) -> None:
        self.active: torch.Tensor | None = None
        self.local: torch.Tensor | None = None
        self.text_lengths: list[int] = []
        self.joint_rows: torch.Tensor | None = None
        self.joint_length = 0
        self.chosen: dict[int, torch.Tensor | None] = {}
        self.tokens_per_step: dict[int, int] = {}
        self.scores: torch.Tensor | None = None
        self.starved: torch.Tensor | None = None
        self.cached_output: torch.Tensor | None = None
        self.held_bytes: dict[Any, int] = {}
        self.peak_cache_bytes = 0

    def begin_call(self, text_len: int) -> None:
        """A denoiser call starts: its tokens are chosen when the gather hook sees the sequence."""
        self.active = None
        self.local = None
        self.joint_rows = None
        self.text_len = text_len

    def choose(self, shard_tokens: int) -> torch.Tensor | None:
        """The sorted image-token indices this rank's call recomputes, given the image tokens of its
        shard (None: all of them)."""
        step, total = self.context.current.require_steps("RAS")
        num_tokens = shard_tokens * self.shards.count
        self.num_tokens = num_tokens
        if step not in self.chosen:
            self.chosen[step] = self._choose(step, total, num_tokens)
            chosen = self.chosen[step]
            self.tokens_per_step[step] = num_tokens if chosen is None else int(chosen.numel())
        self.active = self.chosen[step]
        self.local = None if self.active is None else self.shards.own(self.active, 0)
        return self.local

    def _choose(self, step: int, total: int, num_tokens: int) -> torch.Tensor | None:
        config = self.config
        count = self.shards.count
        keep = min(num_tokens, -(-config.tokens_kept(step, total, num_tokens) // count) * count)
        if not (keep < num_tokens and self.scores is not None and self.scores.numel() == num_tokens):
            self.starved = torch.zeros(num_tokens)
            return None
        if self.starved is None or self.starved.numel() != num_tokens:
            self.starved = torch.zeros(num_tokens)
        beyond = [t for t in config.keep_tokens if t >= num_tokens]
        if beyond:
            raise ConfigError(
                f"RASConfig.keep_tokens {beyond} are beyond this model's {num_tokens} image tokens "
                f"(allowed: 0..{num_tokens - 1})"
            )
        always = torch.tensor(list(config.keep_tokens), dtype=torch.long)
        active = select(self.scores, self.starved, keep, config.starvation_scale, config.keep, always)
        self.starved += 1
        self.starved[active] = 0
        return active

    def note_bytes(self, key: Any, value: Any) -> None:
        self.held_bytes[key] = tensor_bytes(value)
        self.peak_cache_bytes = max(self.peak_cache_bytes, sum(self.held_bytes.values()))
