"""Region-adaptive sampling (RAS; Liu et al., arXiv 2502.10389) as accel hooks.

Algorithm: after dense warm-up steps, each step recomputes only the image tokens in focus (chosen
from the previous step's output), attending to fresh keys/values for them and cached ones for the
rest; the dropped tokens' latents move with their cached prediction through the scheduler step.

Hooks: the denoiser root (per call), the patch-embedding output (gather), the last projection
before unpatchify (scatter), every self/joint attention's ``to_k``/``to_v`` (or, for Flux and the
Lumina families, a RAS attention processor that caches keys after RoPE), the RoPE table (Flux,
Lumina), and a wrapper around the pipeline's ``scheduler.step`` (not a scheduler subclass). The
Lumina wiring (tuple outputs of the patch/RoPE embedders, Lumina2's text+image joint sequence with
per-sample text lengths) lives in :mod:`.lumina`. Works for batches > 1 (one selection per
step, shared by the batch), non-square latents and any patch size; state lives on the plugin
instance and resets with every pipeline call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ...errors import UnsupportedModelError
from ...facts import Field, Gene, PluginFacts
from ...parallel import SequenceShards, context_parallel_config, refuse_context_parallelism
from ...plugin import Plugin, register_plugin
from .config import RASConfig
from .flux_processor import RASFluxAttnProcessor
from .hooks import GatherHook, KVProjectionHook, RootHook, RopeHook, ScatterHook
from .layouts import LAYOUTS, RASLayout, layout_for
from .lumina import attach_lumina2, attach_lumina_next
from .selection import from_tokens, importance, to_tokens
from .state import TokenSelection

if TYPE_CHECKING:
    from ...pipelines.registry import Adapter
    from ...session import DenoiserSession


def _build(knobs: dict[str, Any], steps: int) -> RASConfig:
    """A tune genome's RAS: warm-up clamped to the step count, and one dense refresh of every cache
    halfway through the sparse steps when ``reset`` is on."""
    warmup = min(knobs["warmup"], max(1, steps - 1))
    middle = (warmup + steps) // 2
    resets = (middle,) if knobs["reset"] and warmup < middle < steps - 1 else ()
    return RASConfig(sample_ratio=knobs["ratio"], warmup_steps=warmup, error_reset_steps=resets)


FACTS = PluginFacts(
    key="ras",
    title="RAS (region-adaptive sampling)",
    blurb="Image DiTs (SD3, PixArt, Flux, ...): on sparse steps recompute only the image tokens that change most.",
    fields=(
        Field("sample_ratio", "recomputed tokens", "float", 0.05, 1.0, 0.05, info="fraction per sparse step; 1 = off"),
        Field("warmup_steps", "dense warm-up steps", "int", 1, 20, 1),
        Field("metric", "importance metric", "choice", choices=("std", "l2")),
        Field("keep", "recompute tokens with", "choice", choices=("high", "low")),
        Field("starvation_scale", "starvation scale", "float", 0.0, 1.0, 0.05),
    ),
    presets={
        "safe": dict(sample_ratio=0.75, warmup_steps=4, metric="std", keep="high", starvation_scale=0.1),
        "balanced": dict(sample_ratio=0.5, warmup_steps=4, metric="std", keep="high", starvation_scale=0.1),
        "fast": dict(sample_ratio=0.25, warmup_steps=2, metric="std", keep="high", starvation_scale=0.1),
    },
    identity=dict(sample_ratio=1.0, warmup_steps=4, metric="std", keep="high", starvation_scale=0.1),
    genes=(Gene("ratio", (0.25, 0.5, 0.75)), Gene("warmup", (1, 2, 4)), Gene("reset", (False, True))),
    build=_build,
    sweep={"sd3-shapes": [{"type": "RASConfig", "sample_ratio": r} for r in (0.5, 0.25)]},
    order=2,
    conflicts={
        "guidance_window": (
            "a guidance window that turns CFG on after RAS's dense warm-up brings in the unconditional branch on "
            "a sparse step, for which RAS holds no cached keys and values"
        )
    },
)


@register_plugin
class RASPlugin(Plugin):
    config_cls = RASConfig
    name = "ras"
    kinds = frozenset({"image_dit"})
    claims = frozenset({"token_set", "attention_processor"})
    needs_pipeline = True
    facts = FACTS

    def __init__(self, config: RASConfig, session: DenoiserSession) -> None:
        super().__init__(config, session)
        self.selection = TokenSelection(config, session.context)
        self.layout: RASLayout | None = None
        self.processors: list[Any] = []  # RAS attention processors (Flux, Lumina): reset per generation

    @classmethod
    def check(cls, adapter: Adapter, config: RASConfig, has_pipeline: bool) -> None:
        super().check(adapter, config, has_pipeline)
        if adapter.discovered:
            raise UnsupportedModelError(
                f"RASConfig needs the token layout (patch size, where image tokens enter and leave, the RoPE "
                f"table) that a hand-written adapter gives; {adapter.title} was discovered automatically"
            )
        layout_for(adapter.family)

    # ------------------------------------------------------------------ attach / detach
    def attach(self) -> None:
        model = self.session.denoiser
        self._refuse_context_parallelism()
        self.layout = layout_for(self.session.adapter.family)
        attentions = self.session.adapter.attention_modules(model, kinds=("self_attn", "joint_attn"))
        kv_attentions = [attn for _, attn, _ in attentions] if self.layout.kv == "linear" else []
        root = RootHook(self.selection, kv_attentions, self.session.adapter.family)
        self.session.register_hook(model, root, self.hook_name("root"))
        self.session.context.add_step_wrapper(self.step)
        if self.layout.kv == "lumina_next":
            attach_lumina_next(self, model)
            return
        if self.layout.kv == "lumina2":
            attach_lumina2(self, model)
            return
        selection = self.selection
        self.session.register_hook(
            model.get_submodule(self.layout.gather), GatherHook(selection), self.hook_name("gather")
        )
        scatter = model.get_submodule(self.layout.scatter)
        self.session.register_hook(scatter, ScatterHook(selection), self.hook_name("scatter"))
        if self.layout.rope:
            self.session.register_hook(
                model.get_submodule(self.layout.rope), RopeHook(selection), self.hook_name("rope")
            )
        root.pre_forward(model)  # fused projections are refused at apply too, not only at the first call
        for _, attn, _ in attentions:
            if self.layout.kv == "linear":
                for proj in (attn.to_k, attn.to_v):
                    self.session.register_hook(proj, KVProjectionHook(selection), self.hook_name("kv"))
            else:
                processor = RASFluxAttnProcessor(selection, attn.processor)
                self.session.swap_processor(attn, processor)
                self.processors.append(processor)

    def detach(self) -> None:
        self.session.context.remove_step_wrapper(self.step)

    # ------------------------------------------------------------------ per step
    def step(self, step_fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Wrapper of ``scheduler.step``: dropped tokens move with their cached prediction."""
        args = list(args)
        output = args[0] if args else kwargs["model_output"]
        sample = args[2] if len(args) > 2 else kwargs.get("sample")
        info = self.session.context.current
        selection = self.selection
        patch = self.layout.patch_size(self.session.denoiser)
        active = selection.chosen.get(info.step_index) if info is not None else None
        cached = selection.cached_output
        if active is not None and cached is not None and cached.shape == output.shape:
            tokens = to_tokens(output, patch).clone()
            dropped = torch.ones(tokens.shape[1], dtype=torch.bool)
            dropped[active] = False
            tokens[:, dropped.to(tokens.device)] = to_tokens(cached, patch)[:, dropped.to(tokens.device)].to(
                tokens.dtype
            )
            output = from_tokens(tokens, patch, output.shape)
        selection.cached_output = output.detach()
        selection.note_bytes("output", selection.cached_output)
        channels = sample.shape[1] if (sample is not None and patch is not None and sample.ndim == 4) else None
        selection.scores = importance(output, patch, self.config.metric, channels).cpu()
        if args:
            args[0] = output
        else:
            kwargs["model_output"] = output
        return step_fn(*args, **kwargs)

    # ------------------------------------------------------------------ state & statistics
    def _refuse_context_parallelism(self) -> None:
        """Under context parallelism RAS chooses on the whole sequence and splits the choice evenly, on
        the layouts mapped for it (``RASLayout.sharded``: Flux, whose plan diffusers ships); other
        layouts, and uneven shards, are refused."""
        denoiser = self.session.denoiser
        config = context_parallel_config(denoiser)
        family = self.session.adapter.family
        if not layout_for(family).sharded:
            sharded = ", ".join(name for name, layout in LAYOUTS.items() if layout.sharded)
            why = f"RAS maps {family}'s tokens for one process only (under context parallelism: {sharded})"
        elif getattr(config, "ulysses_anything", False) or getattr(config, "ring_anything", False):
            why = "its shards may differ in length (ulysses_anything / ring_anything), so no even share exists"
        else:
            return
        refuse_context_parallelism("RASConfig", denoiser, f"{why}; it would recompute every token (no speed-up)")

    def on_generation_start(self) -> None:
        self._refuse_context_parallelism()
        self.selection.reset()
        self.selection.shards = SequenceShards.of(self.session.denoiser)
        for processor in self.processors:
            processor.reset()

    def on_generation_end(self) -> None:
        self.selection.cached_output = None
        for processor in self.processors:
            processor.reset()

    def stats(self) -> dict[str, Any]:
        selection = self.selection
        steps = sorted(selection.tokens_per_step)
        tokens = [selection.tokens_per_step[s] for s in steps]
        n = selection.num_tokens or 1
        t = selection.text_len if self.layout is not None and self.layout.joint_text else 0
        dense_attn = sum((n + t) * (n + t) for _ in tokens)
        sparse_attn = sum((k + t) * (n + t) for k in tokens)
        return {
            "tokens": n,
            "text_tokens": selection.text_len,
            "tokens_per_step": tokens,
            "sparse_steps": sum(1 for k in tokens if k < n),
            "token_fraction": round(sum(tokens) / (n * len(tokens)), 4) if tokens else None,
            "attention_flops_fraction": round(sparse_attn / dense_attn, 4) if dense_attn else None,
            "attention_flops_saved": round(1 - sparse_attn / dense_attn, 4) if dense_attn else None,
            "cache_bytes": selection.peak_cache_bytes,
        }


def apply_ras(module: Any, config: RASConfig | None = None, **kwargs: Any):
    """diffusers-style entry point: ``apply_ras(pipe, RASConfig(...))``."""
    from ...api import apply

    return apply(module, config or RASConfig(), **kwargs)


__all__ = ["RASConfig", "RASPlugin", "apply_ras"]
