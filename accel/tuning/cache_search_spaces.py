"""What ``accel search-cache`` searches over: bit vectors that decode to caching configs, with a FLOP
cost model measured once on the model.

* :class:`BlockScheduleSpace` (DiTs): one bit per (step >= 1, block, component); step 0 always
  recomputes. Cost: per-component FLOPs measured with ``torch.utils.flop_counter`` on one dense
  denoiser call, plus everything outside the components.
* :class:`DeepCacheStepSpace` (U-Nets): one bit per step >= 1 (full U-Net or shallow branch only),
  for a fixed branch. Cost: one full and one shallow call, measured.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from .. import api
from ..caching.block_cache import BlockCacheConfig
from ..caching.deepcache import DeepCacheConfig
from ..caching.schedule import CacheSchedule, fora_schedule
from ..files import write_json


def _one_call_flops(
    pipe: Any, call: dict[str, Any], prompt: str, modules: dict[str, torch.nn.Module] | None = None
) -> tuple[int, dict[str, int]]:
    """FLOPs of the first denoiser call of a short generation: in total, and inside each of ``modules``."""
    from torch.utils.flop_counter import FlopCounterMode

    denoiser = getattr(pipe, "unet", None) or pipe.transformer
    per_module: dict[str, int] = {}
    state: dict[str, Any] = {"calls": 0}
    handles = []

    def counting(name: str) -> tuple[Any, Any]:
        def pre(module: Any, args: Any) -> None:
            if state["calls"] == 1:
                state[name] = FlopCounterMode(display=False)
                state[name].__enter__()

        def post(module: Any, args: Any, output: Any) -> None:
            if name in state and state["calls"] == 1:
                state[name].__exit__(None, None, None)
                per_module[name] = int(state.pop(name).get_total_flops())

        return pre, post

    def root_pre(module: Any, args: Any) -> None:
        state["calls"] += 1
        if state["calls"] == 1 and not modules:
            state["root"] = FlopCounterMode(display=False)
            state["root"].__enter__()

    def root_post(module: Any, args: Any, output: Any) -> None:
        if "root" in state:
            state["root"].__exit__(None, None, None)
            state["total"] = int(state.pop("root").get_total_flops())

    handles += [denoiser.register_forward_pre_hook(root_pre), denoiser.register_forward_hook(root_post)]
    for name, module in (modules or {}).items():
        pre, post = counting(name)
        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    try:
        with torch.no_grad():
            pipe(
                prompt=prompt,
                generator=torch.Generator("cpu").manual_seed(0),
                output_type="latent",
                **{**call, "num_inference_steps": 2},
            )
    finally:
        for h in handles:
            h.remove()
    if modules:
        total, _ = _one_call_flops(pipe, call, prompt)
        return total, per_module
    return state["total"], per_module


@dataclasses.dataclass
class BlockScheduleSpace:
    """Bits = ``recompute[1:, block, component]`` (flattened) for a DiT; with ``forecast_order`` k > 0 a
    second bit per unit chooses, where the unit is cached, a degree-k forecast (1) or plain reuse (0)."""

    family: str
    components: tuple[str, ...]
    num_steps: int
    num_blocks: int
    component_flops: np.ndarray  # [blocks, components] FLOPs per call
    call_flops: int  # FLOPs of one dense denoiser call
    present: np.ndarray  # [blocks, components] whether the block has the component
    forecast_order: int = 0

    kind = "block"

    @classmethod
    def measure(
        cls, pipe: Any, call: dict[str, Any], prompt: str, num_steps: int, forecast_order: int = 0
    ) -> BlockScheduleSpace:
        handle = api.apply(pipe)
        adapter = handle.sessions[0].adapter
        denoiser = handle.sessions[0].denoiser
        api.remove(pipe)
        components = adapter.component_names()
        blocks = adapter.blocks(denoiser)
        modules = {}
        for block_name, block in blocks:
            for attr, (module, _kind) in adapter.components(block).items():
                if attr in components:
                    modules[f"{block_name}.{attr}"] = module
        total, per_module = _one_call_flops(pipe, call, prompt, modules)
        flops = np.zeros((len(blocks), len(components)))
        present = np.zeros((len(blocks), len(components)), dtype=bool)
        for b, (block_name, block) in enumerate(blocks):
            for attr in adapter.components(block):
                if attr in components:
                    c = components.index(attr)
                    present[b, c] = True
                    flops[b, c] = per_module.get(f"{block_name}.{attr}", 0)
        return cls(adapter.family, components, num_steps, len(blocks), flops, total, present, forecast_order)

    @property
    def _units(self) -> int:
        return (self.num_steps - 1) * self.num_blocks * len(self.components)

    @property
    def n_var(self) -> int:
        return self._units * (2 if self.forecast_order else 1)

    def to_mask(self, bits: np.ndarray) -> np.ndarray:
        mask = np.ones((self.num_steps, self.num_blocks, len(self.components)), dtype=bool)
        recompute = np.asarray(bits[: self._units], dtype=bool)
        mask[1:] = recompute.reshape(self.num_steps - 1, self.num_blocks, len(self.components))
        mask[:, ~self.present] = True  # absent components cost nothing either way
        return mask

    def to_forecast(self, bits: np.ndarray) -> np.ndarray | None:
        """Per unit, the forecast order used where it is cached (None without forecasting)."""
        if not self.forecast_order:
            return None
        orders = np.zeros((self.num_steps, self.num_blocks, len(self.components)), dtype=np.int64)
        flags = np.asarray(bits[self._units :], dtype=np.int64)
        orders[1:] = flags.reshape(self.num_steps - 1, self.num_blocks, len(self.components)) * self.forecast_order
        return orders

    def from_mask(self, mask: np.ndarray, forecast: bool = False) -> np.ndarray:
        bits = np.asarray(mask[1:], dtype=bool).reshape(-1)
        if not self.forecast_order:
            return bits
        return np.concatenate([bits, np.full(self._units, forecast, dtype=bool)])

    def cost(self, bits: np.ndarray) -> float:
        """Predicted FLOPs of a generation relative to no caching."""
        mask = self.to_mask(bits)
        rest = self.call_flops - self.component_flops.sum()
        per_step = rest + (mask * self.component_flops[None]).sum(axis=(1, 2))
        return float(per_step.sum() / (self.num_steps * self.call_flops))

    def schedule(self, bits: np.ndarray) -> CacheSchedule:
        return CacheSchedule(self.components, self.to_mask(bits), family=self.family, forecast=self.to_forecast(bits))

    def config(self, bits: np.ndarray, path: str) -> BlockCacheConfig:
        self.schedule(bits).save(path)
        return BlockCacheConfig(schedule=path)

    def seeds(self) -> list[np.ndarray]:
        """Hand-made starting points: FORA every-N with warm-up and live end blocks, per component subset."""
        out = []
        for interval in (2, 3, 4):
            for warmup in (0, 2):
                for live in (0, 1):
                    for cached in (None, tuple(c for c in self.components if "attn" in c)):
                        sched = fora_schedule(
                            self.num_steps,
                            self.num_blocks,
                            self.components,
                            interval,
                            warmup,
                            live,
                            live,
                            cached or None,
                        )
                        choices = (True, False) if self.forecast_order else (False,)  # forecasting first
                        out += [self.from_mask(sched.recompute, forecast=f) for f in choices]
        return out


@dataclasses.dataclass
class DeepCacheStepSpace:
    """Bits = ``full_step_mask[1:]`` for a U-Net at a fixed DeepCache branch; with ``forecast_order`` k > 0 a
    second bit per step chooses, on cached steps, a degree-k forecast of the deep features or reuse."""

    num_steps: int
    branch: int
    full_flops: int
    shallow_flops: int
    forecast_order: int = 0

    kind = "deepcache"

    @classmethod
    def measure(
        cls, pipe: Any, call: dict[str, Any], prompt: str, num_steps: int, branch: int, forecast_order: int = 0
    ) -> DeepCacheStepSpace:
        from torch.utils.flop_counter import FlopCounterMode

        def two_steps() -> int:
            with torch.no_grad(), FlopCounterMode(display=False) as mode:
                pipe(
                    prompt=prompt,
                    generator=torch.Generator("cpu").manual_seed(0),
                    output_type="latent",
                    **{**call, "num_inference_steps": 2},
                )
            return int(mode.get_total_flops())

        full, _ = _one_call_flops(pipe, call, prompt)
        outside = two_steps() - 2 * full  # text encoding etc., the same with and without caching
        api.apply(pipe, DeepCacheConfig(interval=2, branch=branch))  # step 0 full, step 1 shallow
        try:
            shallow = two_steps() - outside - full
        finally:
            api.remove(pipe)
        return cls(num_steps, branch, full, int(shallow), forecast_order)

    @property
    def n_var(self) -> int:
        return (self.num_steps - 1) * (2 if self.forecast_order else 1)

    def to_mask(self, bits: np.ndarray) -> tuple[bool, ...]:
        return (True,) + tuple(bool(b) for b in bits[: self.num_steps - 1])

    def to_forecast(self, bits: np.ndarray) -> tuple[int, ...] | None:
        """Per step, the forecast order used if the step is cached (None without forecasting)."""
        if not self.forecast_order:
            return None
        return (0,) + tuple(int(b) * self.forecast_order for b in bits[self.num_steps - 1 :])

    def cost(self, bits: np.ndarray) -> float:
        full = 1 + int(np.sum(bits[: self.num_steps - 1]))
        return float(
            (full * self.full_flops + (self.num_steps - full) * self.shallow_flops)
            / (self.num_steps * self.full_flops)
        )

    def config(self, bits: np.ndarray, path: str) -> DeepCacheConfig:

        config = DeepCacheConfig(
            branch=self.branch, full_step_mask=self.to_mask(bits), forecast_steps=self.to_forecast(bits)
        )
        write_json(path, {"format": "accel-deepcache-schedule/1", "config": config.to_dict()})
        return config

    def seeds(self) -> list[np.ndarray]:
        out = []
        for interval in (2, 3, 4, 5):
            for schedule in ("uniform", "quadratic"):
                mask = np.array(DeepCacheConfig(interval=interval, schedule=schedule).full_steps(self.num_steps)[1:])
                for forecast in (True, False) if self.forecast_order else (False,):  # forecasting first
                    flags = np.full(self.num_steps - 1, forecast) if self.forecast_order else np.zeros(0, dtype=bool)
                    out.append(np.concatenate([mask, flags]).astype(bool))
        return out
