"""Fitting LinearAG's coefficients (Castillo et al., AAAI 2025, arXiv 2312.12487) on calibration runs.

Algorithm: run full classifier-free guidance on calibration prompts and seeds, record every step's
conditional and unconditional predictions, and fit per step the least-squares affine estimate of the
unconditional prediction from the current and past ones (:func:`accel.sampling.linear_ag.features`).
The coefficients are written as JSON for :class:`accel.LinearAGConfig`.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from .. import api
from ..devices import module_device_dtype, what_ran
from ..errors import StateError
from ..files import write_json
from ..fingerprint import denoiser_fingerprint
from ..sampling.cfg_batch import prediction_of
from ..sampling.linear_ag import FORMAT, features


@torch.no_grad()
def record_trajectories(pipe: Any, prompts: list[str], call: dict[str, Any], seeds: list[int]) -> list[dict]:
    """Run full CFG and record every step's conditional and unconditional predictions."""
    handle = api.apply(pipe)
    denoiser = handle.sessions[0].denoiser
    trajectories: list[dict] = []
    current: dict[str, dict[int, torch.Tensor]] = {}

    def hook(module: Any, args: Any, kwargs: Any, output: Any) -> None:
        info = handle.context.current
        pred = prediction_of(output).detach().float().cpu()
        if info.cfg_stacked:
            samples = pred.shape[0] // 2
            current["cond"][info.step_index] = pred[info.rows("cond", samples)]
            current["uncond"][info.step_index] = pred[info.rows("uncond", samples)]
        elif info.branch in ("cond", "uncond"):
            current[info.branch][info.step_index] = pred
        elif info.call_index in (0, 1):
            current["cond" if info.call_index == 0 else "uncond"][info.step_index] = pred

    remove = denoiser.register_forward_hook(hook, with_kwargs=True)
    try:
        for prompt in prompts:
            for seed in seeds:
                current.clear()
                current.update(cond={}, uncond={})
                pipe(prompt=prompt, generator=torch.Generator("cpu").manual_seed(seed), output_type="pt", **call)
                trajectories.append({"cond": dict(current["cond"]), "uncond": dict(current["uncond"])})
    finally:
        remove.remove()
        api.remove(pipe)
    if not trajectories or not trajectories[0]["uncond"]:
        raise StateError("no unconditional predictions were recorded: run the calibration with guidance_scale > 1")
    return trajectories


def fit_coefficients(trajectories: list[dict], history: int = 2) -> tuple[dict[int, list[float]], dict[int, float]]:
    """Least-squares coefficients per step and their R^2 on the calibration data."""
    steps = sorted(trajectories[0]["uncond"])
    coefficients, r2 = {}, {}
    for step in steps:
        if step < history:
            continue
        x = torch.cat([features(step, t["cond"], t["uncond"], history) for t in trajectories])
        y = torch.cat([t["uncond"][step].flatten().double() for t in trajectories])
        w = torch.linalg.lstsq(x, y[:, None]).solution[:, 0]
        residual = y - x @ w
        coefficients[step] = [round(float(v), 8) for v in w]
        r2[step] = round(float(1 - residual.var() / y.var().clamp(min=1e-12)), 6)
    return coefficients, r2


def calibrate(
    pipe: Any,
    prompts: list[str],
    call: dict[str, Any],
    seeds: list[int],
    history: int = 2,
    out: str | None = None,
    model_name: str = "",
) -> dict[str, Any]:
    """Record trajectories, fit the coefficients, and write the JSON (if ``out``)."""
    trajectories = record_trajectories(pipe, prompts, call, seeds)
    coefficients, r2 = fit_coefficients(trajectories, history)
    denoiser = getattr(pipe, "unet", None) or pipe.transformer
    data = {
        "format": FORMAT,
        "model": model_name,
        "denoiser": denoiser_fingerprint(denoiser),
        "ran": what_ran(*module_device_dtype(denoiser)),
        "scheduler": type(pipe.scheduler).__name__,
        "num_inference_steps": int(call["num_inference_steps"]),
        "guidance_scale": call.get("guidance_scale"),
        "history": history,
        "trajectories": len(trajectories),
        "form": (
            "u_t = w0 c_t + sum_k (a_k c_{t-k} + b_k u_{t-k}) + d; coefficients listed as [w0, a1, b1, ..., aK, bK, d]"
        ),
        "coefficients": {str(k): v for k, v in coefficients.items()},
        "r2": {str(k): v for k, v in r2.items()},
    }
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        write_json(out, data, indent=2)
    return data
