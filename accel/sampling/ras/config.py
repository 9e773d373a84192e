"""RAS settings and the per-step plan (which steps are dense, how many tokens a sparse step keeps)."""

from __future__ import annotations

import dataclasses

from ...config import PluginConfig, check_choice, check_float, check_int, check_int_tuple

METRICS = ("std", "l2")
KEEP = ("high", "low")


@dataclasses.dataclass(frozen=True)
class RASConfig(PluginConfig):
    """Region-adaptive sampling settings (Liu et al., arXiv 2502.10389).

    Args:
        sample_ratio: fraction of image tokens recomputed on sparse steps (1.0 = every token, identical
            to no plugin).
        final_sample_ratio: if set, the ratio moves linearly from ``sample_ratio`` at the first sparse
            step to this value at the last step (the paper's dynamic schedule).
        warmup_steps: dense steps at the start (the paper recommends at least 4).
        error_reset_steps: dense steps in between that refresh every cache (e.g. ``(12, 20)`` of 28).
        metric: per-token importance from the previous step's model output: ``"std"`` or ``"l2"`` over
            channels, averaged over the token's patch.
        keep: which end of the importance ranking is recomputed: ``"high"`` (tokens whose output changes
            most; the default) or ``"low"``.
        starvation_scale: s >= 0. A token dropped for k consecutive steps has its importance scaled by
            ``exp(s k)`` (keep="high") or ``exp(-s k)`` (keep="low"): either way long-skipped tokens are
            pushed back into the recomputed set. 0 disables it.
        keep_tokens: image token indices (row-major over the patch grid) always recomputed. Text tokens
            are never dropped.
    """

    short_prefix = "ras"
    sample_ratio: float = 0.5
    final_sample_ratio: float | None = None
    warmup_steps: int = 4
    error_reset_steps: tuple[int, ...] = ()
    metric: str = "std"
    keep: str = "high"
    starvation_scale: float = 0.1
    keep_tokens: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_float("RASConfig", "sample_ratio", self.sample_ratio, 0.0, 1.0, low_inclusive=False)
        check_float(
            "RASConfig", "final_sample_ratio", self.final_sample_ratio, 0.0, 1.0, allow_none=True, low_inclusive=False
        )
        check_int("RASConfig", "warmup_steps", self.warmup_steps, 1, 100000)
        check_int_tuple("RASConfig", "error_reset_steps", self.error_reset_steps, 0, 100000)
        check_choice("RASConfig", "metric", self.metric, METRICS)
        check_choice("RASConfig", "keep", self.keep, KEEP)
        check_float("RASConfig", "starvation_scale", self.starvation_scale, 0.0, 10.0)
        check_int_tuple("RASConfig", "keep_tokens", self.keep_tokens, 0, 10**9)

    def is_dense(self, step: int) -> bool:
        always_dense = self.sample_ratio >= 1.0 and self.final_sample_ratio in (None, 1.0)
        return always_dense or step < self.warmup_steps or step in self.error_reset_steps

    def ratio(self, step: int, total: int) -> float:
        if self.final_sample_ratio is None or total - 1 <= self.warmup_steps:
            return self.sample_ratio
        progress = (step - self.warmup_steps) / (total - 1 - self.warmup_steps)
        return self.sample_ratio + (self.final_sample_ratio - self.sample_ratio) * min(max(progress, 0.0), 1.0)

    def tokens_kept(self, step: int, total: int, num_tokens: int) -> int:
        """Image tokens recomputed at ``step`` (all of them on dense steps)."""
        if self.is_dense(step):
            return num_tokens
        return max(1, min(num_tokens, round(self.ratio(step, total) * num_tokens)))
