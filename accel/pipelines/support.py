"""The support matrix (family x plugin), generated from the adapter registry and from discovery.

    python -m accel.pipelines.support > docs/models.md     # a test checks that the file is current

Three parts: the families with a hand-written adapter and, for each plugin, whether its ``check``
accepts them (or the reason it refuses); every diffusers transformer class without an adapter whose
repeated blocks discovery finds (built on the ``meta`` device from its default config, so nothing is
allocated); and the classes discovery cannot take, each with the reason.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..errors import AccelError
from ..plugin import plugin_for, registered_configs
from .discovery import discover
from .registry import Adapter, supported_adapters

#: Plugins shown in the matrix, in this order (their config classes' names).
PLUGIN_COLUMNS = (
    ("DeepCacheConfig", "DeepCache"),
    ("BlockCacheConfig", "BlockCache"),
    ("AdaptiveGuidanceConfig", "AG / LinearAG"),
    ("RASConfig", "RAS"),
    ("SparseAttentionConfig", "sparse attention"),
    ("RePaViTConfig", "RePaViT"),
)
#: Constructor arguments for classes whose default config cannot be built (the matrix needs only the
#: module structure; the values are the sizes of a released checkpoint's config).
INSPECTION_CONFIGS: dict[str, dict[str, Any]] = {
    "DreamLiteTransformer2DModel": {"in_channels": 64, "num_layers": 24},
    "EasyAnimateTransformer3DModel": {"in_channels": 16, "out_channels": 16, "patch_size": 2},
    "HiDreamImageTransformer2DModel": {
        "patch_size": 2,
        "out_channels": 16,
        "caption_channels": [4096, 4096],
        "llama_layers": list(range(48)),
    },
    "HunyuanDiT2DModel": {"in_channels": 4, "patch_size": 2},
    "LatteTransformer3DModel": {
        "num_layers": 28,
        "in_channels": 4,
        "out_channels": 8,
        "patch_size": 2,
        "sample_size": 64,
        "cross_attention_dim": 1152,
        "caption_channels": 4096,
    },
    "OmniGenTransformer2DModel": {"rope_scaling": {"long_factor": [1.0] * 48, "short_factor": [1.0] * 48}},
    "Transformer2DModel": {
        "num_layers": 28,
        "in_channels": 4,
        "patch_size": 2,
        "sample_size": 64,
        "norm_type": "ada_norm_zero",
        "num_embeds_ada_norm": 1000,
    },
}


@dataclasses.dataclass
class Status:
    supported: bool
    reason: str = ""


def plugin_status(adapter: Adapter, config_name: str) -> Status | None:
    """Whether the plugin of ``config_name`` accepts ``adapter``'s family (on a pipeline); None when the
    plugin is for another kind of model (a U-Net plugin on a transformer)."""
    config_cls = next(c for c in registered_configs() if c.__name__ == config_name)
    config = object.__new__(config_cls)  # the checks read the config's type only; defaults may need files
    plugin = plugin_for(config)
    if adapter.kind not in plugin.kinds:
        return None
    try:
        plugin.check(adapter, config, has_pipeline=True)
    except AccelError as exc:
        reason = str(exc).split("; supported:")[0].split("; it supports:")[0]
        return Status(False, _general(reason, adapter))
    return Status(True)


def _general(reason: str, adapter: Adapter) -> str:
    """A refusal in words that hold for every family it applies to (the footnotes are shared)."""
    return (
        reason.replace(f"{adapter.title} ({adapter.family})", "this family")
        .replace(adapter.title, "this model")
        .replace(f"the {adapter.family!r} family", "this family")
    )


def diffusers_transformer_classes() -> list[type]:
    """Every diffusers transformer model class (``diffusers.models.transformers``), by name."""
    import diffusers

    out = {}
    for name in dir(diffusers):
        cls = getattr(diffusers, name, None)
        if isinstance(cls, type) and is_diffusers_transformer_class(cls):
            out[name] = cls
    return [out[n] for n in sorted(out)]


def is_diffusers_transformer_class(cls: type) -> bool:
    from diffusers import ModelMixin

    return issubclass(cls, ModelMixin) and cls.__module__.startswith("diffusers.models.transformers")


#: Classes in ``diffusers.models.transformers`` that are not denoisers of a pipeline of their own.
NOT_DENOISERS = {
    "TransformerTemporalModel": "a temporal layer inside video U-Nets, not a denoiser of its own",
    "T5FilmDecoder": "the note decoder of the spectrogram pipeline: no repeated transformer blocks list",
    "PriorTransformer": "the image-embedding prior of unCLIP / Kandinsky 2, not an image denoiser",
}


def inspect_class(cls: type) -> tuple[Adapter | None, str]:
    """``(adapter, "")`` for a class accel takes (registered or discovered), else ``(None, reason)``."""
    if cls.__name__ in NOT_DENOISERS:
        return None, NOT_DENOISERS[cls.__name__]
    try:
        with torch.device("meta"):
            model = cls(**INSPECTION_CONFIGS.get(cls.__name__, {}))
    except Exception as exc:
        return None, f"cannot be built from its default config to read its blocks ({type(exc).__name__})"
    for adapter in supported_adapters():
        if adapter.matches(model):
            return adapter, ""
    adapter = discover(model)
    if adapter is None:
        return None, "no repeated block list (no ModuleList of blocks) to cache"
    if not any(spec.components for spec in adapter.block_specs):
        return None, "its blocks have no attention or feed-forward children discovery recognises"
    return adapter, ""


def _cell(status: Status | None, reasons: list[str]) -> str:
    if status is None:
        return "-"
    if status.supported:
        return "yes"
    if status.reason not in reasons:
        reasons.append(status.reason)
    return f"no ({reasons.index(status.reason) + 1})"


def markdown() -> str:
    reasons: list[str] = []
    lines = [
        "# Supported models",
        "",
        "Generated from the adapter registry and from automatic block discovery by "
        "`python -m accel.pipelines.support > docs/models.md`; `tests/test_pipelines_models.py` checks that it is "
        "current. A diffusers transformer with no hand-written adapter is still accelerated when its "
        "repeated blocks can be discovered (second table): BlockCache and adaptive guidance work on it, "
        "while RAS and sparse attention need a hand-written adapter. `-`: the plugin is for another kind of "
        "model (DeepCache for U-Nets, RePaViT for timm vision backbones). Every family of the first table "
        "has a test on a tiny "
        "model; of the discovered classes, two are tested (`CogView3PlusTransformer2DModel`, "
        "`LatteTransformer3DModel`), the others are read off their structure.",
        "",
        "## Families with an adapter",
        "",
        "| family | model classes | kind | " + " | ".join(title for _, title in PLUGIN_COLUMNS) + " |",
        "|---|---|---|" + "---|" * len(PLUGIN_COLUMNS),
    ]
    for adapter in supported_adapters():
        classes = ", ".join(f"`{name}`" for _, name in adapter.model_classes)
        cells = [_cell(plugin_status(adapter, config), reasons) for config, _ in PLUGIN_COLUMNS]
        lines.append(f"| `{adapter.family}` | {classes} | {adapter.kind} | " + " | ".join(cells) + " |")
    registered = {name for a in supported_adapters() for _, name in a.model_classes}
    discovered, refused = [], []
    for cls in diffusers_transformer_classes():
        if cls.__name__ in registered:
            continue
        adapter, reason = inspect_class(cls)
        (discovered if adapter is not None else refused).append((cls, adapter, reason))
    lines += [
        "",
        "## Discovered automatically",
        "",
        "diffusers transformer classes with no adapter, whose blocks discovery reads off the model "
        f"({len(discovered)} classes):",
        "",
        "| model class | block lists | cached components | " + " | ".join(t for _, t in PLUGIN_COLUMNS) + " |",
        "|---|---|---|" + "---|" * len(PLUGIN_COLUMNS),
    ]
    for cls, adapter, _ in discovered:
        components = "; ".join(
            f"{spec.block_class}: {', '.join(c.attr for c in spec.components)}" for spec in adapter.block_specs
        )
        cells = [_cell(plugin_status(adapter, config), reasons) for config, _ in PLUGIN_COLUMNS]
        lists = ", ".join(f"`{name}`" for name in adapter.block_lists)
        lines.append(f"| `{cls.__name__}` | {lists} | {components} | " + " | ".join(cells) + " |")
    lines += ["", "## Not supported", "", "| model class | why |", "|---|---|"]
    lines += [f"| `{cls.__name__}` | {reason} |" for cls, _, reason in refused]
    lines += ["", "## Why a plugin is refused", ""]
    lines += [f"{i}. {reason}" for i, reason in enumerate(reasons, start=1)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import warnings

    import accel  # noqa: F401  (registers every plugin)

    warnings.simplefilter("ignore")
    print(markdown(), end="")
