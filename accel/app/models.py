"""A thread-safe registry of the demo's pipelines: built-in models, injected ones (tests, scripts) and
models the user loads by hub id or local path.

Every entry has two locks:

* ``load_lock``: the pipeline is loaded once, even when several requests ask for it at the same time;
* ``run_lock``: held for a whole request (attach plugins -> baseline -> accelerated run -> remove), so
  two users never share a pipeline that carries plugins or their caches.

User-loaded models are kept in a small LRU (``max_custom``); the oldest is dropped from the registry
when a new one arrives (a request still running on it keeps its own reference until it finishes).
Nothing here runs user code: pipelines are loaded with ``DiffusionPipeline.from_pretrained`` without
``trust_remote_code`` or ``custom_pipeline``, and only from safetensors weights.
"""

from __future__ import annotations

import collections
import dataclasses
import inspect
import logging
import os
import re
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from ..devices import resolve_device, resolve_dtype
from ..errors import AccelError
from ..pipelines.builtin import BUILTIN_MODELS, DEFAULT_MODEL

if TYPE_CHECKING:
    from ..plan import Plan

log = logging.getLogger(__name__)


class AppError(AccelError, ValueError):
    """A problem the user can fix (bad input, unavailable model); its message is shown as is."""


#: Why a model has no "tuned" preset: no ``plan.json`` in its plan folder (or no plan folder at all).
NO_TUNED_PLAN = "no tuned plan is shipped for this model; make one with `accel tune MODEL --out DIR`"


@dataclasses.dataclass(frozen=True)
class Limits:
    """Bounds on one request, so that one user cannot exhaust the machine."""

    max_steps: int = 50
    max_batch: int = 4
    max_prompt_chars: int = 300
    max_size_builtin: int = 64  # built-in models were trained at 32 px
    max_size_custom: int = 1024
    max_frames: int = 33
    max_guidance: float = 20.0
    max_seed: int = 2**31 - 1
    max_source_chars: int = 300  # hub id / path of a user model


@dataclasses.dataclass
class ModelSpec:
    """A pipeline handed to :func:`accel.app.build_app` (tests, notebooks), with how to call it.

    ``call_defaults``: extra keyword arguments of every call (e.g. ``height``/``width``);
    ``examples``: example prompts; ``max_size``: the resolution bound; ``plan_dir``: the folder of
    the model's tuned plan (``accel tune ... --out DIR``), None: no tuned preset.
    """

    pipe: Any
    title: str = ""
    call_defaults: dict[str, Any] = dataclasses.field(default_factory=dict)
    examples: tuple[str, ...] = ()
    max_size: int | None = None
    plan_dir: str | None = None


class ModelEntry:
    """One selectable model: where it comes from, whether it can run, its tuned plan, and its locks.

    ``plan_dir``: the folder holding the model's ``plan.json`` (built-in models: their shipped plan
    folder, :attr:`BuiltinModel.plan_dir`); None for models without a plan (user-loaded ones).
    """

    def __init__(
        self,
        name: str,
        title: str,
        source: str,
        *,
        loader: Callable[[], Any] | None = None,
        pipe: Any = None,
        call_defaults: dict[str, Any] | None = None,
        examples: tuple[str, ...] = (),
        max_size: int = 64,
        available: bool = True,
        reason: str = "",
        plan_dir: str | None = None,
    ) -> None:
        self.name = name
        self.title = title
        self.source = source  # "builtin", "injected" or "custom"
        self.loader = loader
        self.pipe = pipe
        self.call_defaults = dict(call_defaults or {})
        self.examples = tuple(examples)
        self.max_size = max_size
        self.available = available
        self.reason = reason
        self.plan_dir = plan_dir
        self.load_lock = threading.Lock()
        self.run_lock = threading.Lock()
        self.warmed = False
        self.local = False  # a user model loaded from a folder on the server (not a hub id)
        self._adapter: Any = None
        self._adapter_error: str | None = None
        self._plan_lock = threading.Lock()
        self._plan: tuple[int, Plan] | None = None  # (mtime of plan.json, the plan read from it)

    # ------------------------------------------------------------------ derived facts (after loading)
    @property
    def loaded(self) -> bool:
        return self.pipe is not None

    def adapter(self) -> Any:
        """The accel adapter of the (first) denoiser, or None (see :meth:`adapter_error`)."""
        if self._adapter is None and self._adapter_error is None and self.pipe is not None:
            from ..api import adapter_of
            from ..errors import AccelError

            try:
                self._adapter = adapter_of(self.pipe)
            except AccelError as exc:
                self._adapter_error = str(exc)
        return self._adapter

    def adapter_error(self) -> str | None:
        self.adapter()
        return self._adapter_error

    def plan(self) -> Plan:
        """The :class:`accel.plan.Plan` in :attr:`plan_dir`; raises :class:`AppError` saying why there is none.

        Read once and kept until ``plan.json`` changes. Its messages name no server path.
        """
        from ..plan import load_plan

        path = os.path.join(self.plan_dir, "plan.json") if self.plan_dir else None
        try:
            stamp = os.stat(path).st_mtime_ns if path else None
        except OSError:
            stamp = None
        if stamp is None:
            raise AppError(NO_TUNED_PLAN)
        with self._plan_lock:
            if self._plan is None or self._plan[0] != stamp:
                try:
                    self._plan = (stamp, load_plan(path))
                except (AccelError, OSError) as exc:
                    log.warning("the tuned plan of %s cannot be read: %s", self.name, exc)
                    raise AppError(f"the tuned plan of this model cannot be read: {without_paths(str(exc))}") from None
            return self._plan[1]

    def call_parameters(self) -> set[str]:
        return set(inspect.signature(self.pipe.__call__).parameters) if self.pipe is not None else set()

    @property
    def kind(self) -> str:
        """ "video" or "image" (needs the pipeline, or a built-in spec)."""
        spec = BUILTIN_MODELS.get(self.name)
        if self.source == "builtin" and spec is not None:
            return spec.kind
        if self.pipe is not None:
            return "video" if "num_frames" in self.call_parameters() else "image"
        return "image"

    def default_size(self) -> int:
        if "height" in self.call_defaults:
            return int(self.call_defaults["height"])
        pipe = self.pipe
        if pipe is not None:
            denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
            sample = getattr(getattr(denoiser, "config", None), "sample_size", None)
            factor = getattr(pipe, "vae_scale_factor", None) or getattr(pipe, "vae_scale_factor_spatial", None)
            if isinstance(sample, (list, tuple)):
                sample = sample[0]
            if isinstance(sample, int) and isinstance(factor, int):
                return min(self.max_size, sample * factor)
        return min(self.max_size, 512)

    def default_frames(self) -> int:
        return int(self.call_defaults.get("num_frames", 9))

    def label(self) -> str:
        if not self.available:
            return f"{self.name} (unavailable)"
        return self.name


_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


class ModelRegistry:
    """Built-in, injected and user-loaded models; safe to use from many request threads."""

    def __init__(
        self,
        models: dict[str, Any] | None = None,
        *,
        limits: Limits | None = None,
        allow_custom: bool = True,
        max_custom: int = 2,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.allow_custom = allow_custom
        self.max_custom = max_custom
        resolved = resolve_device(device)
        self.device = str(resolved)
        #: the dtype of every model the registry loads (see accel.devices: bfloat16 on CUDA, float32 elsewhere)
        self.dtype = resolve_dtype(dtype, resolved)
        self._lock = threading.RLock()
        self._entries: collections.OrderedDict[str, ModelEntry] = collections.OrderedDict()
        self._custom: collections.OrderedDict[str, None] = collections.OrderedDict()
        if models is None:
            self._add_builtins()
        else:
            for name, value in models.items():
                self._entries[name] = self._injected(name, value)

    # ------------------------------------------------------------------ building
    def _add_builtins(self) -> None:
        from ..evaluation.prompts import builtin_prompts

        for name, spec in BUILTIN_MODELS.items():
            if spec.kind not in ("image", "video"):
                continue
            trained = spec.is_trained()
            reason = (
                ""
                if trained
                else (f"no weights at {os.path.relpath(spec.path)}; train them with `accel train {name}`")
            )
            self._entries[name] = ModelEntry(
                name,
                spec.title,
                "builtin",
                loader=self._builtin_loader(name),
                call_defaults=spec.call_defaults,
                examples=tuple(builtin_prompts(name)[:12]),
                max_size=self.limits.max_size_builtin,
                available=trained,
                reason=reason,
                plan_dir=spec.plan_dir,
            )

    def _builtin_loader(self, name: str) -> Callable[[], Any]:
        def load() -> Any:
            from ..pipelines.loading import load as load_pipeline

            return load_pipeline(name, device=self.device, dtype=self.dtype)

        return load

    def _injected(self, name: str, value: Any) -> ModelEntry:
        spec = value if isinstance(value, ModelSpec) else ModelSpec(pipe=value)
        pipe = getattr(spec.pipe, "pipe", spec.pipe)  # a TinyPipeline wraps its pipeline
        if hasattr(pipe, "set_progress_bar_config"):
            pipe.set_progress_bar_config(disable=True)
        return ModelEntry(
            name,
            spec.title or type(pipe).__name__,
            "injected",
            pipe=pipe,
            call_defaults=spec.call_defaults,
            examples=spec.examples,
            max_size=spec.max_size or self.limits.max_size_builtin,
            plan_dir=spec.plan_dir,
        )

    # ------------------------------------------------------------------ queries
    def names(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    def entries(self) -> list[ModelEntry]:
        with self._lock:
            return list(self._entries.values())

    def choices(self) -> list[tuple[str, str]]:
        """``(label, name)`` pairs for a dropdown; unavailable models say so in their label."""
        return [(e.label(), e.name) for e in self.entries()]

    def default_name(self) -> str | None:
        entries = self.entries()
        for entry in entries:
            if entry.name == DEFAULT_MODEL and entry.available:
                return entry.name
        for entry in entries:
            if entry.available:
                return entry.name
        return entries[0].name if entries else None

    def get(self, name: str) -> ModelEntry:
        with self._lock:
            entry = self._entries.get(name) if isinstance(name, str) else None
            if entry is None:
                known = ", ".join(self._entries) or "none"
                raise AppError(f"unknown model {name!r}; models: {known} (or load your own by hub id or path)")
            if entry.source == "custom":
                self._custom.move_to_end(name)
            return entry

    def load(self, name: str) -> ModelEntry:
        """The entry with its pipeline loaded; raises :class:`AppError` if it cannot be."""
        entry = self.get(name)
        if not entry.available:
            raise AppError(f"model {name!r} is unavailable: {entry.reason}")
        if entry.pipe is not None:
            return entry
        with entry.load_lock:
            if entry.pipe is None:
                try:
                    pipe = entry.loader()
                except Exception as exc:  # noqa: BLE001 - a model that cannot load is reported, not raised
                    reason, what = one_line(exc), f"model {name!r}"
                    if entry.source == "custom":  # the user's own path: name no server path in the answer
                        log.warning("loading %r failed: %s", name, reason)
                        reason = without_paths(reason)
                        what = "that pipeline folder" if entry.local else f"model {without_paths(repr(name))}"
                    entry.available = False
                    entry.reason = f"loading failed: {reason}"
                    raise AppError(f"{what} could not be loaded: {reason}") from None
                if hasattr(pipe, "set_progress_bar_config"):
                    pipe.set_progress_bar_config(disable=True)
                entry.pipe = pipe
        return entry

    # ------------------------------------------------------------------ user models
    def add_custom(self, source: str) -> ModelEntry:
        """Load a pipeline by hub id or local directory and list it; returns its entry."""
        if not self.allow_custom:
            raise AppError("loading your own models is disabled on this server")
        if not isinstance(source, str) or not source.strip():
            raise AppError("enter a Hugging Face hub id (org/name) or a local pipeline directory")
        source = source.strip()
        if len(source) > self.limits.max_source_chars or any(c in source for c in "\n\r\t\0"):
            raise AppError(f"the model source must be one line of at most {self.limits.max_source_chars} characters")
        with self._lock:
            if source in self._entries:
                return self.load(source)
        local = pipeline_folder(source)
        if local is None and not _HUB_ID.match(source):
            if _looks_like_path(source):
                raise AppError(NOT_A_PIPELINE_FOLDER)  # the same words whether the path exists or not
            raise AppError(f"{source!r} is neither a local pipeline directory nor a hub id of the form org/name")
        entry = ModelEntry(
            source,
            source,
            "custom",
            loader=lambda: self._load_custom(source, local),
            max_size=self.limits.max_size_custom,
        )
        entry.local = local is not None
        with self._lock:
            entry = self._entries.setdefault(source, entry)
            self._custom[source] = None
            self._custom.move_to_end(source)
            while len(self._custom) > self.max_custom:
                old, _ = self._custom.popitem(last=False)
                self._entries.pop(old, None)
        try:
            return self.load(source)
        except AppError:
            with self._lock:  # do not list a model that does not load
                self._entries.pop(source, None)
                self._custom.pop(source, None)
            raise

    def _load_custom(self, source: str, local: str | None) -> Any:
        """Load a local pipeline folder (``local``: its real path) or, else, the hub id ``source``.

        A hub id is always fetched from the hub (a local folder of the same name is not looked at),
        so whether such a folder exists on the server does not change the answer.
        """
        from ..pipelines.loading import load as load_pipeline

        if local is None:
            from diffusers import DiffusionPipeline

            local = DiffusionPipeline.download(source, use_safetensors=True)
        return load_pipeline(local, dtype=self.dtype, device=self.device, use_safetensors=True)


#: The answer for a local path that is not a loadable pipeline folder, whether it is missing, a file,
#: a folder without ``model_index.json`` or one the server cannot read: it names no server path.
NOT_A_PIPELINE_FOLDER = (
    "that path is not a diffusers pipeline folder on this server (a folder with model_index.json and "
    "safetensors weights), or it cannot be read"
)


def pipeline_folder(source: str) -> str | None:
    """The real path of ``source`` if it is a folder holding ``model_index.json``, else None."""
    try:
        path = os.path.realpath(os.path.expanduser(source))
        return path if os.path.isfile(os.path.join(path, "model_index.json")) else None
    except (OSError, ValueError):
        return None


def _looks_like_path(source: str) -> bool:
    return os.path.isabs(os.path.expanduser(source)) or source.startswith((".", "~")) or os.path.sep in source


_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])~?/[^\s'\"`,;()\[\]]+")


def without_paths(text: str) -> str:
    """``text`` with every absolute path (``/...``, ``~/...``) replaced by ``<path>`` (URLs are kept)."""
    return _ABSOLUTE_PATH.sub("<path>", text)


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    message = text[0] if text else ""
    if len(message) > 400:
        message = message[:400] + " ..."
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
