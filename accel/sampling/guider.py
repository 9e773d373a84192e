"""Adaptive guidance as a diffusers guider, for modular pipelines (arXiv 2312.12487).

Algorithm: classifier-free guidance whose ``num_conditions`` drops to 1 (conditional only) from
the step after the cosine similarity of the two predictions first reaches ``threshold``; the
latch resets at step 0 of every generation. One decision per batch (guiders cannot drop CFG for
some samples only); use ``accel.AdaptiveGuidanceConfig`` on classic pipelines for per-sample.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.guiders import ClassifierFreeGuidance
from diffusers.guiders.guider_utils import BaseGuidance, GuiderOutput

from ..errors import ConfigError
from .adaptive_guidance import GuidanceLatch
from .cfg_batch import cosine_whole


class AdaptiveClassifierFreeGuidance(ClassifierFreeGuidance):
    """``ClassifierFreeGuidance`` that stops evaluating the unconditional branch once it is redundant."""

    @register_to_config
    def __init__(
        self,
        guidance_scale: float = 7.5,
        threshold: float = 0.99,
        min_steps: int = 0,
        max_step: int | None = None,
        guidance_rescale: float = 0.0,
        use_original_formulation: bool = False,
        start: float = 0.0,
        stop: float = 1.0,
        enabled: bool = True,
    ) -> None:
        BaseGuidance.__init__(self, start, stop, enabled)
        if not -1.0 <= threshold <= 2.0:
            raise ConfigError(f"threshold must be in [-1, 2], got {threshold}")
        self.guidance_scale = guidance_scale
        self.guidance_rescale = guidance_rescale
        self.use_original_formulation = use_original_formulation
        self.threshold = threshold
        self.min_steps = min_steps
        self.max_step = max_step
        self.latch = GuidanceLatch(threshold, min_steps, max_step)
        self.similarities: dict[int, float] = {}

    @property
    def dropped_at(self) -> int | None:
        """The first step without CFG in this generation (None while CFG is on)."""
        return self.latch.dropped_at

    def set_state(self, step: int, num_inference_steps: int, timestep: torch.LongTensor) -> None:
        if step == 0:
            self.latch = GuidanceLatch(self.threshold, self.min_steps, self.max_step)
            self.similarities = {}
        super().set_state(step, num_inference_steps, timestep)

    def _is_cfg_enabled(self) -> bool:
        if self._step is not None and self.latch.off(self._step):
            return False
        return super()._is_cfg_enabled()

    def forward(self, pred_cond: torch.Tensor, pred_uncond: torch.Tensor | None = None) -> GuiderOutput:
        cfg_on = self._is_cfg_enabled()
        output = super().forward(pred_cond, pred_uncond)
        if cfg_on and pred_uncond is not None and self._step is not None:
            similarity = float(cosine_whole(pred_cond, pred_uncond))
            self.similarities[self._step] = similarity
            self.latch.test(self._step, similarity)
        return output
