"""The denoising-loop context: which step, how many steps, how CFG is laid out.

One :class:`DenoisingContext` exists per pipeline instance (or per bare denoiser). It learns where
the loop is without touching any class:

* ``pipe.scheduler.set_timesteps`` / ``pipe.prepare_latents`` (instance attributes overridden by
  :mod:`accel.loop_binding`) mark the start of a generation, so every plugin's state
  is reset at the start of every pipeline call;
* ``pipe.scheduler.set_begin_index`` tells how many steps img2img/inpaint ``strength`` skipped;
* ``pipe.scheduler.step`` calls are counted: the sampler step is ``evaluations // scheduler.order``,
  which is right for schedulers that evaluate the denoiser more than once per step (Heun, KDPM2)
  and for pipelines that call the denoiser twice per step (separate CFG branches);
* a hook on each denoiser (registered by the session) asks :meth:`begin_call` for a
  :class:`CallInfo` that plugin hooks read through :attr:`DenoisingContext.current`.

Without a pipeline (the user calls the denoiser directly) each denoiser call is one step and the
number of steps must be given by the user; plugins that need it raise a clear error otherwise.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import math
import sys
import weakref
from collections.abc import Callable
from typing import Any

import torch

from .compiling import eager
from .errors import ConfigError, MissingContextError, StateError
from .loop_binding import LoopBinding, LoopHandlers, copy_refused
from .ownership import ThreadOwnership
from .tensors import first_tensor

#: Names under which denoisers receive their main (noisy latent) input.
MAIN_INPUT_NAMES = ("hidden_states", "sample", "x")


@dataclasses.dataclass(frozen=True)
class CallInfo:
    """What a plugin hook knows about the denoiser call in flight.

    Attributes:
        generation: counts pipeline calls (generations) since the context was created.
        step_index: sampler step, ``0 .. num_inference_steps - 1``; None if unknown.
        num_inference_steps: steps this generation actually runs (after img2img strength).
        eval_index: scheduler updates done so far in this generation.
        call_index: denoiser calls so far within this evaluation (two-call CFG: 0 then 1).
        branch: key for per-branch state: the pipeline's ``cache_context`` name when it sets one,
            ``"cond_uncond"`` for a stacked CFG batch, otherwise ``"cond"``/``"call<k>"``.
        batch_size: leading dimension of the denoiser's main input in this call.
        samples: number of samples being generated.
        cfg_stacked: the batch holds both CFG halves.
        cfg_order: ``"uncond_first"`` or ``"cond_first"`` for a stacked batch.
        timestep: the timestep argument of the call, if any.
    """

    generation: int
    step_index: int | None
    num_inference_steps: int | None
    eval_index: int
    call_index: int
    branch: str
    batch_size: int
    samples: int
    cfg_stacked: bool
    cfg_order: str = "uncond_first"
    timestep: Any = None

    def require_steps(self, who: str) -> tuple[int, int]:
        """``(step_index, num_inference_steps)`` or a :class:`MissingContextError` naming ``who``."""
        if self.step_index is None or self.num_inference_steps is None:
            raise MissingContextError(
                f"{who} needs the denoising step and the number of steps. Apply accel to the pipeline "
                "(accel.apply(pipe, ...)) so they are read from its scheduler, or pass "
                "num_inference_steps=N to accel.apply when you call the denoiser yourself "
                "(then every denoiser call counts as one step)."
            )
        return self.step_index, self.num_inference_steps

    def rows(self, half: str, samples: int | None = None) -> slice:
        """The batch rows of the ``"uncond"`` or ``"cond"`` half of a stacked CFG batch of ``2 * samples``."""
        if half not in ("uncond", "cond"):
            raise ConfigError(f"half must be 'uncond' or 'cond', got {half!r}")
        samples = self.samples if samples is None else samples
        uncond_first = self.cfg_order == "uncond_first"
        return slice(0, samples) if (half == "uncond") == uncond_first else slice(samples, 2 * samples)


@dataclasses.dataclass
class GenerationStats:
    """Counts for the last (or current) generation, reset at its start."""

    generation: int = 0
    denoiser_calls: int = 0
    nfe: float = 0.0
    steps: int | None = None
    samples: int | None = None
    calls_per_step: dict[int, int] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "steps": self.steps,
            "samples": self.samples,
            "denoiser_calls": self.denoiser_calls,
            "nfe": round(self.nfe, 4),
        }


StepWrapper = Callable[..., Any]


class LoopPhase(enum.Enum):
    """Where a context is in the life of one generation."""

    IDLE = "idle"  # no generation running (before the first, or after the last step)
    STARTED = "started"  # a generation began (timesteps set / latents prepared); no denoiser call yet
    DENOISING = "denoising"  # inside the denoising loop of the current generation


class DenoisingContext:
    """Per-pipeline (or per-bare-denoiser) view of the denoising loop; see the module docstring.

    Thread ownership lives in :class:`~accel.ownership.ThreadOwnership`, the overrides of the
    pipeline's methods in :class:`~accel.loop_binding.LoopBinding`; this class counts steps."""

    def __init__(
        self,
        pipeline: Any = None,
        num_inference_steps: int | None = None,
        cfg_stacked: bool | None = None,
        cfg_order: str = "uncond_first",
        detect_cfg: Callable[[dict, int, int | None], bool | None] | None = None,
    ) -> None:
        self._pipeline_ref = weakref.ref(pipeline) if pipeline is not None else None
        self.user_num_inference_steps = num_inference_steps
        self.user_cfg_stacked = cfg_stacked
        self.cfg_order = cfg_order
        self._detect_cfg = detect_cfg
        self.generation = 0
        self.current: CallInfo | None = None
        self.stats = GenerationStats()
        self._generation_start_callbacks: list[Callable[[], None]] = []
        self._generation_end_callbacks: list[Callable[[], None]] = []
        self._step_wrappers: list[StepWrapper] = []
        self._timesteps_wrappers: list[StepWrapper] = []
        self._ownership = ThreadOwnership(
            lambda: self.pipeline, lambda: self.busy, forget=lambda: self._reset_loop_state()
        )
        self._binding = LoopBinding(
            LoopHandlers(
                check_inputs=self._on_check_inputs,
                prepare_latents=self._on_prepare_latents,
                set_timesteps=self._on_set_timesteps,
                set_begin_index=self._on_set_begin_index,
                step=self._on_step,
            )
        )
        #: one sample's prepared latents, ``(C, H, W)``, ``(C, F, H, W)`` or packed ``(tokens, C)``, as the
        #: pipeline's ``prepare_latents`` made them for the last generation (None without a pipeline)
        self.latent_shape: tuple[int, ...] | None = None
        self._reset_loop_state()

    def __deepcopy__(self, memo: dict) -> Any:
        raise copy_refused()  # every hook holds the context: a copy would share the original's loop

    # ------------------------------------------------------------------ lifecycle
    def _reset_loop_state(self) -> None:
        self._phase = LoopPhase.IDLE
        self._eval_count = 0
        self._calls_in_eval = 0
        self._num_steps: int | None = None
        self._total_evals: int | None = None
        self._begin_index: int | None = None
        self._latent_batch: int | None = None
        self._samples: int | None = None
        self._cfg_stacked: bool | None = None

    @property
    def pipeline(self) -> Any:
        return self._pipeline_ref() if self._pipeline_ref is not None else None

    @property
    def _scheduler(self) -> Any:
        return self._binding.scheduler

    def on_generation_start(self, callback: Callable[[], None]) -> None:
        self._generation_start_callbacks.append(callback)

    def on_generation_end(self, callback: Callable[[], None]) -> None:
        self._generation_end_callbacks.append(callback)

    def remove_callbacks(self, *callbacks: Callable[[], None]) -> None:
        """Forget generation start/end callbacks (a session that is removed)."""
        for callback in callbacks:
            for registered in (self._generation_start_callbacks, self._generation_end_callbacks):
                if callback in registered:
                    registered.remove(callback)

    def add_step_wrapper(self, wrapper: StepWrapper) -> None:
        """``wrapper(step_fn, *args, **kwargs)`` runs around every ``scheduler.step`` call."""
        if self.pipeline is None:
            raise MissingContextError(
                "this plugin wraps the scheduler step; apply accel to the pipeline, not the bare denoiser"
            )
        self._step_wrappers.append(wrapper)

    def remove_step_wrapper(self, wrapper: StepWrapper) -> None:
        if wrapper in self._step_wrappers:
            self._step_wrappers.remove(wrapper)

    def add_timesteps_wrapper(self, wrapper: StepWrapper) -> None:
        """``wrapper(set_timesteps, *args, **kwargs)`` runs around every ``scheduler.set_timesteps`` call."""
        if self.pipeline is None:
            raise MissingContextError(
                "this plugin sets the scheduler's timesteps; apply accel to the pipeline, not the bare denoiser"
            )
        self._timesteps_wrappers.append(wrapper)

    def remove_timesteps_wrapper(self, wrapper: StepWrapper) -> None:
        if wrapper in self._timesteps_wrappers:
            self._timesteps_wrappers.remove(wrapper)

    @property
    def wraps_timesteps(self) -> bool:
        """A plugin already wraps ``scheduler.set_timesteps`` (it chose its schedule on the scheduler it found)."""
        return bool(self._timesteps_wrappers)

    def claim(self) -> None:
        """Make the calling thread the owner of this context, or raise :class:`ConcurrentUseError`."""
        self._ownership.claim()

    def exclusive(self, action: str) -> contextlib.AbstractContextManager[None]:
        """Hold the context for ``action`` (apply, remove, reset); see :meth:`ThreadOwnership.exclusive`."""
        return self._ownership.exclusive(action)

    @property
    def busy(self) -> bool:
        """A generation is under way."""
        return self._phase is not LoopPhase.IDLE

    @eager
    def abort(self) -> None:
        """A generation failed part-way: forget it, so that the next call (from any thread) starts
        afresh. Only the owner aborts: a refused thread leaves the owner's generation alone."""
        self._ownership.abort()

    def start_generation(self) -> None:
        """Begin a new generation: counters and every plugin's per-generation state are reset."""
        self.claim()
        self._reset_loop_state()
        self._phase = LoopPhase.STARTED
        self.generation += 1
        self.stats = GenerationStats(generation=self.generation)
        self.current = None
        try:
            for callback in list(self._generation_start_callbacks):
                callback()
        except BaseException:
            self.abort()  # a plugin refused this call: the next one starts afresh and is checked again
            raise

    def end_generation(self) -> None:
        """The last step ran: plugins may free their caches (statistics stay readable).

        A bare denoiser's owner lets go here; a pipeline's keeps the context until its call returns."""
        self._phase = LoopPhase.IDLE
        for callback in list(self._generation_end_callbacks):
            callback()
        self._ownership.release_after_bare_generation()

    def reset(self) -> None:
        """Forget the loop position; the next denoiser call starts a new generation."""
        with self.exclusive("reset"):
            self._reset_loop_state()

    # ------------------------------------------------------------------ the pipeline's loop
    def bind_pipeline(self) -> None:
        """Override the pipeline's scheduler and ``prepare_latents`` (instance attributes only)."""
        if self.pipeline is not None:
            self._binding.bind(self.pipeline)

    def unbind_pipeline(self) -> None:
        self._binding.unbind()

    def _maybe_start_generation(self) -> None:
        self.claim()
        if self._phase is not LoopPhase.STARTED:
            self.start_generation()

    def _on_check_inputs(self, original: Callable, *args: Any, **kwargs: Any) -> Any:
        """A pipeline call starts: follow a scheduler swapped since the last call before the pipeline sets
        its timesteps (Wan sets them before it prepares latents)."""
        pipe = self.pipeline
        if pipe is not None and getattr(pipe, "scheduler", None) is not self._scheduler and not self.busy:
            self._binding.follow(pipe.scheduler)
        return original(*args, **kwargs)

    def _on_prepare_latents(self, original: Callable, *args: Any, **kwargs: Any) -> Any:
        self.claim()
        pipe = self.pipeline
        if pipe is not None and getattr(pipe, "scheduler", None) is not self._scheduler:
            self._binding.follow(pipe.scheduler)  # swapped since the last call (set_timesteps ran unseen)
            self._phase = LoopPhase.IDLE
        self._maybe_start_generation()
        out = original(*args, **kwargs)
        latents = first_tensor(out)
        if latents is not None:
            self._latent_batch = int(latents.shape[0])
            self.latent_shape = tuple(int(n) for n in latents.shape[1:])
        return out

    def _on_set_timesteps(self, original: Callable, *args: Any, **kwargs: Any) -> Any:
        self._maybe_start_generation()
        call = original
        for wrapper in reversed(self._timesteps_wrappers):
            call = functools.partial(wrapper, call)
        return call(*args, **kwargs)

    def _on_set_begin_index(self, original: Callable, begin_index: int = 0, *args: Any, **kwargs: Any) -> Any:
        self.claim()
        self._begin_index = int(begin_index)
        return original(begin_index, *args, **kwargs)

    def _on_step(self, original: Callable, *args: Any, **kwargs: Any) -> Any:
        self.claim()
        call = original
        for wrapper in reversed(self._step_wrappers):
            call = functools.partial(wrapper, call)
        try:
            out = call(*args, **kwargs)
        except BaseException:
            self.abort()
            raise
        self._eval_count += 1
        self._calls_in_eval = 0
        if self._total_evals is not None and self._eval_count >= self._total_evals:
            self.end_generation()
        return out

    # ------------------------------------------------------------------ denoiser calls
    @eager
    def begin_call(self, args: tuple, kwargs: dict, pipeline_branch: str | None = None) -> CallInfo:
        """Called by the context hook before each denoiser forward; returns and stores the CallInfo."""
        self.claim()
        pipe = self.pipeline
        if pipe is not None and getattr(pipe, "scheduler", None) is not self._scheduler:
            # the user swapped the scheduler since the last call: follow it, and treat this as a new
            # generation (whose latents were already prepared)
            latent_batch = self._latent_batch
            self._binding.follow(getattr(pipe, "scheduler", None))
            self.start_generation()
            self._latent_batch = latent_batch
        if self._phase is LoopPhase.IDLE:
            self.start_generation()
        batch, timestep = _main_batch_and_timestep(args, kwargs)
        if self._phase is LoopPhase.STARTED:
            self._check_caller(_calling_pipeline())
            self._phase = LoopPhase.DENOISING
            self._cfg_stacked = self._decide_cfg(kwargs, batch)
            self._samples = self._latent_batch or (batch // 2 if self._cfg_stacked else batch)
            self._num_steps, self._total_evals = self._count_steps(timestep)
            self.stats.steps = self._num_steps
            self.stats.samples = self._samples
        cfg_stacked = (
            self._decide_cfg(kwargs, batch)
            if self._cfg_stacked is None
            else (self._cfg_stacked and batch == 2 * self._samples)
        )
        step_index = self._step_index()
        call_index = self._calls_in_eval
        if pipeline_branch:
            branch = pipeline_branch
        elif cfg_stacked:
            branch = "cond_uncond"
        else:
            branch = "cond" if call_index == 0 else f"call{call_index}"
        info = CallInfo(
            generation=self.generation,
            step_index=step_index,
            num_inference_steps=self._num_steps,
            eval_index=self._eval_count,
            call_index=call_index,
            branch=branch,
            batch_size=batch,
            samples=self._samples or batch,
            cfg_stacked=bool(cfg_stacked),
            cfg_order=self.cfg_order,
            timestep=timestep,
        )
        self.current = info
        self.stats.denoiser_calls += 1
        if step_index is not None:
            self.stats.calls_per_step[step_index] = self.stats.calls_per_step.get(step_index, 0) + 1
        return info

    def end_call(self) -> None:
        """Called by the context hook after each denoiser forward."""
        self._calls_in_eval += 1
        if self._scheduler is None:  # bare denoiser: every call is one step
            self._eval_count += 1
            self._calls_in_eval = 0
            if self._total_evals is not None and self._eval_count >= self._total_evals:
                self.end_generation()

    def count_evaluation(self, batch: int) -> None:
        """Called by the innermost hook when the denoiser really runs on ``batch`` samples."""
        samples = self._samples or batch
        self.stats.nfe += batch / samples

    def _check_caller(self, caller: Any) -> None:
        """Refuse a denoiser call from a pipeline other than the one accel is attached to, and a
        bare-denoiser step count that does not match the pipeline that calls it."""
        if caller is None or caller is self.pipeline:
            return
        if self.pipeline is not None:
            raise StateError(
                f"accel is attached to a {type(self.pipeline).__name__}, but a {type(caller).__name__} that shares "
                "its denoiser (from_pipe, or components passed on) is calling it; its scheduler steps and CFG "
                "batches are not seen. Attach accel to the pipeline you call: accel.remove(first_pipe), then "
                "accel.apply(second_pipe, ...)"
            )
        timesteps = getattr(getattr(caller, "scheduler", None), "timesteps", None)
        if self.user_num_inference_steps is None or timesteps is None:
            return
        order = max(int(getattr(caller.scheduler, "order", 1) or 1), 1)
        steps = math.ceil(len(timesteps) / order)
        if steps != self.user_num_inference_steps:
            raise StateError(
                f"accel was applied to the bare denoiser with num_inference_steps={self.user_num_inference_steps}, "
                f"but {type(caller).__name__} runs {steps} steps; apply accel to the pipeline instead "
                "(accel.apply(pipe, ...)), which reads the step count of every call"
            )

    def _decide_cfg(self, kwargs: dict, batch: int) -> bool:
        if self.user_cfg_stacked is not None:
            return self.user_cfg_stacked
        if self._detect_cfg is not None:
            detected = self._detect_cfg(kwargs, batch, self._latent_batch)
            if detected is not None:
                return detected
        return False

    def _count_steps(self, timestep: Any) -> tuple[int | None, int | None]:
        scheduler = self._scheduler
        if scheduler is None:
            steps = self.user_num_inference_steps
            return steps, steps
        timesteps = getattr(scheduler, "timesteps", None)
        if timesteps is None:
            return self.user_num_inference_steps, None
        order = max(int(getattr(scheduler, "order", 1) or 1), 1)
        begin = self._begin_index
        if begin is None:
            begin = _position_of(timesteps, timestep)
        total = len(timesteps) - begin
        return math.ceil(total / order), total

    def _step_index(self) -> int | None:
        if self._num_steps is None:
            return None
        if self._scheduler is None:
            index = self._eval_count
        else:
            order = max(int(getattr(self._scheduler, "order", 1) or 1), 1)
            index = self._eval_count // order
        return min(index, self._num_steps - 1)


def _calling_pipeline(max_depth: int = 40) -> Any:
    """The diffusers pipeline whose ``__call__`` is on the stack, if any."""
    from diffusers import DiffusionPipeline

    frame = sys._getframe(1)
    for _ in range(max_depth):
        if frame is None:
            return None
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, DiffusionPipeline):
            return candidate
        frame = frame.f_back
    return None


def main_input(args: tuple, kwargs: dict) -> torch.Tensor | None:
    """The denoiser's main (noisy latent) input from a forward call's arguments."""
    for name in MAIN_INPUT_NAMES:
        if isinstance(kwargs.get(name), torch.Tensor):
            return kwargs[name]
    if args and isinstance(args[0], torch.Tensor):
        return args[0]
    return None


def _main_batch_and_timestep(args: tuple, kwargs: dict) -> tuple[int, Any]:
    x = main_input(args, kwargs)
    batch = int(x.shape[0]) if x is not None else 1
    timestep = kwargs.get("timestep")
    if timestep is None and len(args) > 1 and isinstance(args[1], (torch.Tensor, int, float)):
        timestep = args[1]
    return batch, timestep


def _position_of(timesteps: torch.Tensor, timestep: Any) -> int:
    """Index of the first scheduler timestep equal to the call's timestep (0 if not found)."""
    if timestep is None:
        return 0
    t = torch.as_tensor(timestep).flatten()
    if t.numel() == 0:
        return 0
    value = float(t[0])
    ts = torch.as_tensor(timesteps, dtype=torch.float64).flatten().cpu()
    for candidate in (value, value * 1000.0):
        hits = torch.nonzero(torch.isclose(ts, torch.tensor(candidate, dtype=torch.float64), rtol=1e-4, atol=1e-3))
        if len(hits):
            return int(hits[0])
    return 0
