"""The generation tab's logic, without Gradio: validate a request, run the baseline and the accelerated
generation of the same seed on one pipeline, and measure both.

    registry = ModelRegistry({"tiny": tiny_text_pipeline("unet")})
    result = generate(registry, GenerationRequest("tiny", "a handwritten 7", steps=8,
                                                  plugins={"adaptive_guidance": {"threshold": -1}}))
    result.metrics()   # times, speedup, NFEs, PSNR/SSIM, accel summary

Concurrency: the whole request (warm-up, baseline, attach, accelerated run, remove) runs under the
model's ``run_lock``, and plugins are always removed in ``finally``: a request sees only its own
plugins and caches, whatever other users ask for at the same time.

The baseline runs with ``accel.apply(pipe)`` and no config: accel's context only counts the denoiser
calls (outputs are bit-identical to a bare pipeline), which gives the baseline NFEs.

A "tuned" request (``tuned=True, tuned_speedup=s``) uses the model's plan instead of the plugin
panels (see :mod:`.tuned`): the baseline runs the plan's full step count, the accelerated run the
configs and step count of ``plan.pick(speedup=s)``, both at the plan's guidance scale.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .. import api
from ..compat import check_compatible
from ..errors import AccelError
from ..files import brief
from ..plugin import plugin_for
from . import presets, tuned
from .models import AppError, Limits, ModelEntry, ModelRegistry, one_line

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]


@dataclasses.dataclass
class GenerationRequest:
    """One click of "Generate". ``plugins`` maps plugin keys (see :mod:`accel.app.presets`) to their
    field values; only enabled plugins are listed. ``size``/``frames`` None: the model's default.

    ``tuned``: run the model's tuned plan at ``tuned_speedup`` (x fewer denoiser FLOPs) instead of
    ``plugins``; the plan then sets the steps and the guidance (see :mod:`.tuned`)."""

    model: str
    prompt: str
    seed: int = 0
    steps: int = 20
    guidance: float = 2.0
    size: int | None = None
    batch: int = 1
    frames: int | None = None
    plugins: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    tuned: bool = False
    tuned_speedup: float | None = None


@dataclasses.dataclass
class RunOutput:
    output: torch.Tensor  # (N, 3, H, W) or (N, F, 3, H, W) in [0, 1]
    seconds: float
    nfe: float | None
    summary: dict[str, Any]


@dataclasses.dataclass
class GenerationResult:
    request: GenerationRequest
    kind: str  # "image" or "video"
    configs: list[str]
    baseline: RunOutput
    accelerated: RunOutput
    psnr: float
    ssim: float
    tuned: tuned.TunedRun | None = None  # the plan setting the accelerated run used, if tuned

    @property
    def accelerated_steps(self) -> int:
        return self.tuned.num_inference_steps if self.tuned is not None else self.request.steps

    @property
    def speedup(self) -> float:
        return self.baseline.seconds / self.accelerated.seconds if self.accelerated.seconds > 0 else float("nan")

    def metrics(self) -> dict[str, Any]:
        """JSON-compatible numbers (PSNR of identical outputs is the string "inf"); ``steps`` is the
        baseline's step count, ``tuned`` what the tuned plan ran (None without it)."""
        r = self.request
        return {
            "model": r.model,
            "prompt": r.prompt,
            "seed": r.seed,
            "steps": r.steps,
            "guidance": r.guidance,
            "size": r.size,
            "batch": r.batch,
            "frames": r.frames if self.kind == "video" else None,
            "kind": self.kind,
            "plugins": self.configs,
            "baseline_s": round(self.baseline.seconds, 4),
            "accelerated_s": round(self.accelerated.seconds, 4),
            "speedup": round(self.baseline.seconds / self.accelerated.seconds, 4)
            if self.accelerated.seconds
            else None,
            "baseline_nfe": self.baseline.nfe,
            "accelerated_nfe": self.accelerated.nfe,
            "psnr": _json_float(self.psnr),
            "ssim": _json_float(self.ssim),
            "identical": bool(torch.equal(self.baseline.output, self.accelerated.output)),
            "accelerated_steps": self.accelerated_steps,
            "tuned": self.tuned.metrics() if self.tuned is not None else None,
        }


def _json_float(value: float) -> float | str | None:
    if value is None or math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return round(float(value), 4)


# ------------------------------------------------------------------------------ validation
def _int(name: str, value: Any, low: int, high: int) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AppError(f"{name} must be a whole number, got {brief(value)}") from None
    except OverflowError:  # an int beyond the float range (10**400)
        raise AppError(f"{name} must be between {low} and {high}, got a number too large to read") from None
    if not math.isfinite(number) or number != int(number):
        raise AppError(f"{name} must be a whole number, got {brief(value)}")
    if not low <= number <= high:
        raise AppError(f"{name} must be between {low} and {high}, got {number:g}")
    return int(number)


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool) or value in (0, 1, None):
        return bool(value)
    raise AppError(f"{name} must be true or false, got {brief(value)}")


def validate(request: GenerationRequest, entry: ModelEntry, limits: Limits) -> GenerationRequest:
    """A checked copy of ``request`` (defaults filled in); raises :class:`AppError` with the reason.

    A tuned request gets the plan's full step count and guidance scale, a speed inside the plan's
    range, and no panel plugins (they are not used)."""
    prompt = request.prompt if isinstance(request.prompt, str) else ""
    prompt = " ".join(prompt.split())
    if not prompt:
        raise AppError("enter a prompt (or pick an example)")
    if len(prompt) > limits.max_prompt_chars:
        raise AppError(f"the prompt is {len(prompt)} characters long; the limit is {limits.max_prompt_chars}")
    seed = _int("seed", request.seed, 0, limits.max_seed)
    steps = _int("steps", request.steps, 1, limits.max_steps)
    batch = _int("batch", request.batch, 1, limits.max_batch)
    try:
        guidance = float(request.guidance)
    except (TypeError, ValueError):
        raise AppError(f"guidance must be a number, got {request.guidance!r}") from None
    if not (math.isfinite(guidance) and 0.0 <= guidance <= limits.max_guidance):
        raise AppError(f"guidance must be between 0 and {limits.max_guidance:g}, got {request.guidance!r}")
    size = entry.default_size() if request.size in (None, 0, "") else _int("size", request.size, 8, entry.max_size)
    if size > entry.max_size:
        size = entry.max_size
    if size % 8:
        raise AppError(f"size must be a multiple of 8 pixels, got {size}")
    frames = None
    if entry.kind == "video":
        frames = (
            entry.default_frames()
            if request.frames in (None, 0, "")
            else _int("frames", request.frames, 1, limits.max_frames)
        )
    checked = dataclasses.replace(
        request,
        prompt=prompt,
        seed=seed,
        steps=steps,
        guidance=guidance,
        size=size,
        batch=batch,
        frames=frames,
        plugins={},
        tuned=False,
        tuned_speedup=None,
    )
    if _flag("tuned", request.tuned):
        return _with_plan(checked, entry, request.tuned_speedup)
    return dataclasses.replace(checked, plugins=_checked_plugins(request.plugins))


def _checked_plugins(plugins: Any) -> dict[str, dict[str, Any]]:
    """The panels' ``{key: field values}``, once they make valid configs."""
    if not isinstance(plugins, dict):
        raise AppError("plugins must be a mapping {plugin: settings}")
    try:
        presets.build_configs(plugins)
    except ValueError as exc:
        raise AppError(str(exc)) from None
    return dict(plugins)


def _with_plan(request: GenerationRequest, entry: ModelEntry, speedup: Any) -> GenerationRequest:
    """A tuned request: the plan's full step count and guidance, a speed inside its range, no panel plugins."""
    plan = tuned.plan_for(entry)
    return dataclasses.replace(
        request,
        steps=tuned.full_steps(plan, request.steps),
        guidance=tuned.guidance(plan, request.guidance),
        tuned=True,
        tuned_speedup=tuned.check_speedup(plan, speedup),
    )


def call_kwargs(entry: ModelEntry, request: GenerationRequest) -> dict[str, Any]:
    """Keyword arguments of the pipeline call (without ``generator``/callbacks)."""
    params = entry.call_parameters()
    pipe = entry.pipe
    kwargs: dict[str, Any] = {k: v for k, v in entry.call_defaults.items() if k in params}
    kwargs.update(prompt=request.prompt, num_inference_steps=request.steps, output_type="pt")
    if "guidance_scale" in params:
        kwargs["guidance_scale"] = request.guidance
    if "height" in params:
        kwargs["height"] = kwargs["width"] = request.size
    for key in ("num_images_per_prompt", "num_videos_per_prompt"):
        if key in params:
            kwargs[key] = request.batch
            break
    else:
        if request.batch > 1:
            kwargs["prompt"] = [request.prompt] * request.batch
    if request.frames is not None and "num_frames" in params:
        kwargs["num_frames"] = request.frames
    if "use_resolution_binning" in params:
        kwargs.setdefault("use_resolution_binning", False)  # the size asked for, not the nearest bin
    if "clean_caption" in params:
        kwargs.setdefault("clean_caption", False)  # needs ftfy/bs4, changes nothing for plain prompts
    if "max_sequence_length" in params and "max_sequence_length" not in kwargs:
        limit = getattr(getattr(pipe, "tokenizer", None), "model_max_length", None)
        default = _default(pipe, "max_sequence_length")
        if isinstance(limit, int) and isinstance(default, int) and limit < default:
            kwargs["max_sequence_length"] = limit
    return kwargs


def _default(pipe: Any, name: str) -> Any:
    import inspect

    param = inspect.signature(pipe.__call__).parameters.get(name)
    return None if param is None else param.default


# ------------------------------------------------------------------------------ running
def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _progress_kwargs(entry: ModelEntry, report: Callable[[int], None]) -> dict[str, Any]:
    params = entry.call_parameters()
    if "callback_on_step_end" in params:

        def on_step_end(pipe: Any, i: int, t: Any, callback_kwargs: dict) -> dict:
            report(i + 1)
            return callback_kwargs

        return {"callback_on_step_end": on_step_end}
    if "callback" in params and "callback_steps" in params:
        return {"callback": lambda i, t, latents: report(i + 1), "callback_steps": 1}
    return {}


def _output(out: Any) -> torch.Tensor:
    tensor = out.frames if hasattr(out, "frames") else out.images
    if isinstance(tensor, (list, tuple)):
        tensor = torch.stack([torch.as_tensor(np.asarray(t)) for t in tensor])
    if isinstance(tensor, np.ndarray):
        tensor = torch.from_numpy(tensor)
    return tensor.detach().float().cpu().clamp(0, 1)


def _run(
    entry: ModelEntry,
    kwargs: dict[str, Any],
    seed: int,
    configs: list,
    count: bool,
    report: Callable[[int], None] | None,
) -> RunOutput:
    """One timed generation with ``configs`` attached (and removed again, whatever happens)."""
    pipe = entry.pipe
    call = dict(kwargs)
    call["generator"] = torch.Generator("cpu").manual_seed(seed)
    if report is not None:
        call.update(_progress_kwargs(entry, report))
    attached = False
    try:
        if configs or count:
            api.apply(pipe, *configs)
            attached = True
        with torch.no_grad():
            _synchronize()
            start = time.perf_counter()
            out = pipe(**call)
            _synchronize()
            seconds = time.perf_counter() - start
        summary = dict(api.summary(pipe)) if attached else {}
    finally:
        if attached or api.get_handle(pipe) is not None:
            api.remove(pipe)
    nfe = summary.get("last_call", {}).get("nfe") if summary else None
    return RunOutput(_output(out), seconds, nfe, summary)


def generate(
    registry: ModelRegistry, request: GenerationRequest, progress: Progress | None = None
) -> GenerationResult:
    """Run the baseline and the accelerated generation of ``request``; see the module docstring.

    Raises :class:`AppError` for anything the user can fix (bad input, unsupported plugin, model
    errors such as a size the model does not accept); other exceptions are bugs.
    """
    progress = progress or (lambda fraction, text: None)
    entry = registry.get(request.model)
    if not entry.loaded:
        progress(0.0, f"loading {entry.name} ...")
    entry = registry.load(request.model)
    request = validate(request, entry, registry.limits)
    tuned_run = tuned.resolve(tuned.plan_for(entry), request.tuned_speedup) if request.tuned else None
    configs = list(tuned_run.setting.configs) if tuned_run else presets.build_configs(request.plugins)
    adapter = entry.adapter()
    _check_configs(entry, adapter, configs)
    kwargs = call_kwargs(entry, request)
    count = adapter is not None
    steps = request.steps
    acc_steps = tuned_run.num_inference_steps if tuned_run else steps
    acc_kwargs = {**kwargs, "num_inference_steps": acc_steps}
    waiting = entry.run_lock.locked()
    if waiting:
        progress(0.0, f"waiting for another request on {entry.name} ...")
    with entry.run_lock:
        try:
            if not entry.warmed:  # first call pays one-time costs; keep them out of both timings
                progress(0.0, "warming up ...")
                _run(entry, {**kwargs, "num_inference_steps": min(2, steps)}, request.seed, [], False, None)
                entry.warmed = True
            base = _run(
                entry,
                kwargs,
                request.seed,
                [],
                count,
                lambda i: progress(0.5 * i / steps, f"baseline: step {i}/{steps}"),
            )
            acc = _run(
                entry,
                acc_kwargs,
                request.seed,
                configs,
                count,
                lambda i: progress(0.5 + 0.5 * i / acc_steps, f"accelerated: step {i}/{acc_steps}"),
            )
        except Exception as exc:  # noqa: BLE001 - e.g. a size or frame count the model rejects
            log.warning("generation on %s failed", entry.name, exc_info=True)
            raise AppError(f"{entry.name} could not run these settings: {one_line(exc)}") from None
    progress(1.0, "scoring ...")
    psnr, ssim = fidelity(acc.output, base.output)
    return GenerationResult(request, entry.kind, [str(c) for c in configs], base, acc, psnr, ssim, tuned_run)


def _check_configs(entry: ModelEntry, adapter: Any, configs: list) -> None:
    """Raise :class:`AppError` unless every config's plugin supports the model and the configs combine."""
    if configs and adapter is None:
        raise AppError(f"no accel plugin can run on {entry.name}: {entry.adapter_error()}")
    try:
        for config in configs:
            plugin_for(config).check(adapter, config, has_pipeline=True)
        check_compatible(configs)
    except AccelError as exc:
        raise AppError(str(exc)) from None


def fidelity(pred: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """Mean PSNR (dB, inf when identical) and SSIM of ``pred`` against ``target``."""
    from ..metrics.fidelity import psnr, ssim

    if torch.equal(pred, target):
        return float("inf"), 1.0
    p = float(psnr(pred, target).mean())
    s = float(ssim(pred, target).mean()) if min(pred.shape[-2:]) >= 3 else float("nan")
    return p, s


# ------------------------------------------------------------------------------ display helpers
def to_display(output: torch.Tensor, min_height: int = 192, max_width: int = 1600) -> Image.Image:  # noqa: F821
    """A PIL image: a row of images, or one row of frames per video; upscaled (nearest) for viewing."""
    from PIL import Image

    gap = 2
    if output.ndim == 4:
        rows = [list(output)]
    else:
        rows = [list(video) for video in output]
    h, w = rows[0][0].shape[-2:]
    scale = max(1, min(min_height // h, max(1, max_width // ((w + gap) * max(len(r) for r in rows)))))
    width = max(len(r) for r in rows) * (w * scale + gap) - gap
    height = len(rows) * (h * scale + gap) - gap
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    for y, row in enumerate(rows):
        for x, tile in enumerate(row):
            image = _pil(tile).resize((w * scale, h * scale), Image.NEAREST)
            canvas.paste(image, (x * (w * scale + gap), y * (h * scale + gap)))
    return canvas


def _pil(tensor: torch.Tensor) -> Image.Image:  # noqa: F821
    from PIL import Image

    array = (tensor.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(array)


_GIF_DIR = os.path.join(tempfile.gettempdir(), "accel-demo")
_GIF_LOCK = threading.Lock()


def to_gif(output: torch.Tensor, min_height: int = 160, max_age_s: float = 3600.0) -> str | None:
    """An animated GIF of a video batch (videos side by side); None for images. Old GIFs are pruned."""
    if output.ndim != 5:
        return None
    frames = [to_display(output[:, f], min_height=min_height) for f in range(output.shape[1])]
    os.makedirs(_GIF_DIR, exist_ok=True)
    with _GIF_LOCK:
        now = time.time()
        for name in os.listdir(_GIF_DIR):
            path = os.path.join(_GIF_DIR, name)
            try:
                if name.endswith(".gif") and now - os.path.getmtime(path) > max_age_s:
                    os.remove(path)
            except OSError:
                pass
    path = os.path.join(_GIF_DIR, f"{uuid.uuid4().hex}.gif")
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=160, loop=0)
    return path
