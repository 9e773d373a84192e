"""What runs on each model: the baseline, accel's plugins and stacks, and the peers at equal settings.

accel rows (random weights, so every adaptive decision is fixed in advance):

* caching: DeepCache N=2 (branch 0) on U-Nets, BlockCache FORA N=2 on DiTs, both with the order-1
  forecast;
* AG: classifier-free guidance dropped from the middle step on (``max_step``);
* RAS (SD3, Flux): ``sample_ratio=0.25`` with its default warm-up;
* sparse attention (Wan): the default dynamic block masks;
* the largest stack the model takes: BlockCache + AG + sparse attention on Wan (3 plugins); on the
  others no third plugin composes (RAS excludes BlockCache, U-Nets have two plugins), so the stack
  is the best pair: DeepCache + AG, RAS + AG.

Peers, where they install: diffusers' FirstBlockCache (threshold 0.2), TaylorSeer (interval 2, order
1: FORA N=2 with forecast's equal) and MagCache (threshold 0.1, ratios calibrated on this model),
cache-dit's DBCache (F1B0, threshold 0.16) on DiTs; the DeepCache package (interval 2, branch 0) on
U-Nets. A peer that is missing or fails is a note, not a crash.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

import accel

from ..common import attach_diffusers_cache, calibrate_mag_ratios, detach_diffusers_cache
from .models import Workload

#: block-level modules TaylorSeer caches, per model (its default patterns miss some of these)
TAYLORSEER_MODULES = {
    "sd3": r"^transformer_blocks\.\d+\.(attn|ff|ff_context)$",
    "flux": r"^(single_)?transformer_blocks\.\d+\.(attn|ff|ff_context|proj_mlp)$",
    "wan": r"^blocks\.\d+\.(attn1|attn2|ffn)$",
}


@dataclasses.dataclass
class Row:
    """One way of running the pipeline. ``peer`` names the library (None for accel's own rows)."""

    name: str
    attach: Callable[[Any], None]
    detach: Callable[[Any], None]
    peer: str | None = None
    plugins: int = 0


def accel_row(name: str, configs: list[Any]) -> Row:
    return Row(name, lambda pipe: accel.apply(pipe, *configs), accel.remove, plugins=len(configs))


def accel_rows(workload: Workload) -> list[Row]:
    steps = workload.steps
    ag = accel.AdaptiveGuidanceConfig(threshold=2.0, max_step=steps // 2)  # CFG off from the middle step
    if workload.kind == "unet":
        cache = accel.DeepCacheConfig(interval=2, branch=0, forecast_order=1)
        return [
            accel_row("DeepCache N=2 + forecast", [cache]),
            accel_row("AG (CFG off from step N/2)", [ag]),
            accel_row("stack: DeepCache + AG", [cache, ag]),
        ]
    cache = accel.BlockCacheConfig(schedule="fora", interval=2, forecast_order=1)
    rows = [accel_row("BlockCache FORA N=2 + forecast", [cache]), accel_row("AG (CFG off from step N/2)", [ag])]
    if workload.name == "wan":
        sparse = accel.SparseAttentionConfig()
        rows.append(accel_row("sparse attention (dynamic)", [sparse]))
        rows.append(accel_row("stack: BlockCache + AG + sparse", [cache, ag, sparse]))
    else:
        ras = accel.RASConfig(sample_ratio=0.25)
        rows.append(accel_row("RAS 0.25", [ras]))
        rows.append(accel_row("stack: RAS + AG", [ras, ag]))
    return rows


def peer_rows(workload: Workload) -> tuple[list[Row], dict[str, str]]:
    """The peers that run on this model, and a note for each that does not."""
    notes: dict[str, str] = {}
    if workload.kind == "unet":
        return _deepcache_package(notes), notes
    rows = [*_diffusers_caches(workload, notes), *_cache_dit(notes)]
    return rows, notes


def _deepcache_package(notes: dict[str, str]) -> list[Row]:
    try:
        from DeepCache import DeepCacheSDHelper
    except Exception as exc:  # not installed (pip install --no-deps DeepCache), or broken with this diffusers
        notes["DeepCache package"] = f"not run: {type(exc).__name__}: {exc}"
        return []
    helpers: dict[int, Any] = {}

    def attach(pipe: Any) -> None:
        helper = helpers.setdefault(id(pipe), DeepCacheSDHelper(pipe=pipe))
        helper.set_params(cache_interval=2, cache_branch_id=0)
        helper.enable()

    return [Row("DeepCache package N=2", attach, lambda pipe: helpers[id(pipe)].disable(), peer="DeepCache")]


def _diffusers_row(name: str, apply_fn: Callable[[Any], None]) -> Row:
    """A diffusers cache hook, which ``apply_fn(pipe)`` installs inside accel's loop context (its state needs
    a cache context, which SD3's pipeline never sets), so every diffusers row runs the same way."""
    return Row(name, lambda pipe: attach_diffusers_cache(pipe, apply_fn), detach_diffusers_cache, peer="diffusers")


def _diffusers_caches(workload: Workload, notes: dict[str, str]) -> list[Row]:
    from diffusers.hooks import (
        FirstBlockCacheConfig,
        TaylorSeerCacheConfig,
        apply_first_block_cache,
        apply_taylorseer_cache,
    )

    rows = [
        _diffusers_row(
            "diffusers FirstBlockCache t=0.2",
            lambda pipe: apply_first_block_cache(pipe.transformer, FirstBlockCacheConfig(threshold=0.2)),
        ),
        _diffusers_row(
            "diffusers TaylorSeer N=2 order 1",
            lambda pipe: apply_taylorseer_cache(
                pipe.transformer,
                TaylorSeerCacheConfig(
                    cache_interval=2,
                    disable_cache_before_step=2,
                    max_order=1,
                    taylor_factors_dtype=torch.float32,
                    cache_identifiers=[TAYLORSEER_MODULES[workload.name]],
                ),
            ),
        ),
    ]
    try:
        ratios = calibrate_mag_ratios(workload.pipe, workload.call)  # on this (random-weight) model
    except Exception as exc:
        notes["diffusers MagCache"] = f"not run: calibration failed: {type(exc).__name__}: {exc}"
        return rows
    from diffusers.hooks import MagCacheConfig, apply_mag_cache

    config = MagCacheConfig(threshold=0.1, num_inference_steps=workload.steps, mag_ratios=ratios, max_skip_steps=3)
    rows.append(_diffusers_row("diffusers MagCache t=0.1", lambda pipe: apply_mag_cache(pipe.transformer, config)))
    return rows


def _cache_dit(notes: dict[str, str]) -> list[Row]:
    try:
        import cache_dit
        from cache_dit import DBCacheConfig
    except Exception as exc:
        notes["cache-dit"] = f"not run: {type(exc).__name__}: {exc}"
        return []
    config = DBCacheConfig(Fn_compute_blocks=1, Bn_compute_blocks=0, residual_diff_threshold=0.16, max_warmup_steps=2)
    return [
        Row(
            "cache-dit DBCache F1B0 t=0.16",
            lambda pipe: cache_dit.enable_cache(pipe, cache_config=config),
            lambda pipe: cache_dit.disable_cache(pipe),
            peer="cache-dit",
        )
    ]
