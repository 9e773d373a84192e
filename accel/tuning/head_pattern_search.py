"""Offline search of a per-layer, per-head sparsity pattern on calibration inputs (Sparse-vDiT, arXiv 2506.03065).

For every attention call observed, sample query rows, compute their exact attention output, and
the output under each candidate pattern; keep each head's worst relative error per pattern. Then
give each head the cheapest pattern (lowest density, i.e. fewest attention FLOPs) whose error stays
under the bound, or ``"dense"``; optionally mark a head ``"skip"`` when its output is a negligible
share of the layer's attention output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..errors import ConfigError, StateError
from ..sparse_attention.builders.head_patterns import HeadPatterns
from ..sparse_attention.builders.patterns import PatternSpec, pattern_mask
from ..sparse_attention.reorder import SequenceLayout

DEFAULT_CANDIDATES = (
    "diagonal:1",
    "temporal:0",
    "multi_diagonal:2,2",
    "vertical_stripe:1,1",
    "window:1,3,3",
    "window:2,6,6",
    "temporal:2",
)


class HeadPatternSearch:
    """Accumulates per-(layer, head, pattern) errors over observed attention calls; :meth:`result` makes
    the head patterns.

    Args:
        candidates: pattern specs to try (see :mod:`.patterns`); ``"dense"`` is always the fallback.
        error_bound: largest relative error ``||O_pattern - O_dense|| / ||O_dense||`` accepted for a head.
        block_size, tile: mask geometry (must match the layouts passed to :meth:`observe`).
        allow_skip: allow ``"skip"`` (head output replaced by zeros).
        skip_bound: a head is skippable when its output norm is at most this share of the norm of
            all heads' outputs of the layer (a proxy that ignores the output projection).
        sample_rows: query rows per call used to estimate errors (evenly spaced).
        force_diagonal: as at run time, every pattern keeps the diagonal blocks.
    """

    def __init__(
        self,
        candidates: Sequence[str] = DEFAULT_CANDIDATES,
        error_bound: float = 0.05,
        block_size: int = 64,
        tile: tuple[int, int, int] = (4, 4, 4),
        allow_skip: bool = False,
        skip_bound: float = 0.02,
        sample_rows: int = 256,
        force_diagonal: bool = True,
    ) -> None:
        self.candidates = tuple(str(PatternSpec.parse(c)) for c in candidates)
        if not self.candidates:
            raise ConfigError("HeadPatternSearch needs at least one candidate pattern")
        if any(c in ("dense", "skip") for c in self.candidates):
            raise ConfigError("'dense' and 'skip' are not candidates: dense is the fallback, skip is allow_skip=True")
        if not 0.0 < error_bound:
            raise ConfigError(f"error_bound must be > 0, got {error_bound}")
        if not 0.0 <= skip_bound < 1.0:
            raise ConfigError(f"skip_bound must be in [0, 1), got {skip_bound}")
        if sample_rows < 1:
            raise ConfigError(f"sample_rows must be >= 1, got {sample_rows}")
        self.error_bound = float(error_bound)
        self.block_size = int(block_size)
        self.tile = tuple(int(t) for t in tile)
        self.allow_skip = allow_skip
        self.skip_bound = float(skip_bound)
        self.sample_rows = int(sample_rows)
        self.force_diagonal = force_diagonal
        self._errors: dict[int, dict[str, torch.Tensor]] = {}
        self._densities: dict[int, dict[str, float]] = {}
        self._share: dict[int, torch.Tensor] = {}
        self._layouts: dict[int, SequenceLayout] = {}
        self.observations = 0

    @torch.no_grad()
    def observe(
        self,
        layer: int,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        layout: SequenceLayout,
        scale: float | None = None,
    ) -> None:
        """Record one attention call of ``layer``.

        ``q``, ``k``, ``v`` are ``[B, H, N, D]`` in the working order of ``layout``.
        """
        if tuple(layout.tile) != self.tile:
            raise ConfigError(f"layout tile {layout.tile} differs from the search tile {self.tile}")
        b, h, n, d = q.shape
        if n != layout.seq_len:
            raise ConfigError(f"q has {n} tokens, layout {layout} has {layout.seq_len}")
        scale = d**-0.5 if scale is None else scale
        rows = torch.linspace(0, n - 1, min(self.sample_rows, n), device=q.device).round().long().unique()
        scores = (q[:, :, rows].float() @ k.float().transpose(-1, -2)) * scale  # [B,H,S,N]
        vf = v.float()
        dense_out = torch.softmax(scores, -1) @ vf  # [B,H,S,D]
        dense_norm = dense_out.pow(2).sum((0, 2, 3)).sqrt()  # [H]
        errors = self._errors.setdefault(layer, {})
        densities = self._densities.setdefault(layer, {})
        for spec in self.candidates:
            mask = pattern_mask([spec], layout, self.block_size, q.device, self.force_diagonal)
            row_blocks = mask.to_block_bool()[0, 0][rows // self.block_size]  # [S, Nb]
            allowed = row_blocks.repeat_interleave(self.block_size, -1)[:, :n]  # [S, N]
            probs = torch.softmax(scores.masked_fill(~allowed, float("-inf")), -1).nan_to_num(0.0)
            err = (probs @ vf - dense_out).pow(2).sum((0, 2, 3)).sqrt() / dense_norm.clamp_min(1e-12)
            errors[spec] = torch.maximum(errors[spec], err.cpu()) if spec in errors else err.cpu()
            densities[spec] = max(densities.get(spec, 0.0), mask.density())
        share = (dense_norm / dense_norm.pow(2).sum().sqrt().clamp_min(1e-12)).cpu()
        self._share[layer] = torch.maximum(self._share[layer], share) if layer in self._share else share
        self._layouts[layer] = layout
        self.observations += 1

    def result(self, meta: dict[str, Any] | None = None) -> HeadPatterns:
        """The head patterns: per layer and head, the cheapest pattern within the bound (or skip / dense)."""
        if not self._errors:
            raise StateError(
                "HeadPatternSearch.result: no attention call was observed; run the model on calibration inputs first"
            )
        layers, errors, densities = {}, {}, {}
        for layer in sorted(self._errors):
            per_spec = self._errors[layer]
            ranked = sorted(self.candidates, key=lambda s: (self._densities[layer][s], self.candidates.index(s)))
            heads = int(next(iter(per_spec.values())).numel())
            chosen, chosen_err, chosen_density = [], [], []
            for head in range(heads):
                if self.allow_skip and float(self._share[layer][head]) <= self.skip_bound:
                    pick = ("skip", float(self._share[layer][head]), 0.0)
                else:
                    ok = [s for s in ranked if float(per_spec[s][head]) <= self.error_bound]
                    pick = (
                        (ok[0], float(per_spec[ok[0]][head]), self._densities[layer][ok[0]])
                        if ok
                        else ("dense", 0.0, 1.0)
                    )
                chosen.append(pick[0])
                chosen_err.append(pick[1])
                chosen_density.append(pick[2])
            layers[layer] = tuple(chosen)
            errors[layer] = tuple(round(e, 6) for e in chosen_err)
            densities[layer] = tuple(round(x, 6) for x in chosen_density)
        info = {
            "observations": self.observations,
            "candidates": list(self.candidates),
            "layouts": {str(k): [v.frames, v.height, v.width, v.text_len] for k, v in self._layouts.items()},
        }
        info.update(meta or {})
        return HeadPatterns(
            layers=layers,
            block_size=self.block_size,
            tile=self.tile,  # type: ignore[arg-type]
            error_bound=self.error_bound,
            errors=errors,
            densities=densities,
            meta=info,
        )


def expected_density(patterns: HeadPatterns) -> float:
    """Mean chosen density over every head of every layer it covers (1.0 for empty patterns)."""
    values = [x for v in patterns.densities.values() for x in v]
    return float(sum(values) / len(values)) if values else 1.0
