"""The sparse-attention plugin: installs block-sparse attention processors on video DiTs.

Per attention call: dense on warm-up steps, dense layers, or when the mask is full (the stock
attention call, bit for bit); otherwise reorder tokens into 3D tiles, build or reuse the block mask
(per layer, CFG branch, ``mask_reuse_steps`` steps), run ``block_sparse_attention`` and restore
the token order. Densities and attention FLOPs are logged for ``accel.summary``.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from diffusers.hooks import ModelHook

from ..compiling import eager
from ..context import CallInfo, DenoisingContext
from ..errors import ConfigError, UnsupportedModelError
from ..kernels.block_mask import BlockSparseMask
from ..parallel import context_parallel_config, parallel_config, refuse_context_parallelism
from ..pipelines.registry import unwrap
from ..plugin import Plugin, register_plugin
from .builders.dynamic import block_scores, keep_by_threshold
from .builders.head_patterns import HeadPatterns
from .builders.neighborhood import neighborhood_attention, neighborhood_blocks
from .builders.patterns import finalize
from .builders.window import window_blocks
from .config import SparseAttentionConfig
from .facts import FACTS
from .grid import SUPPORTED_FAMILIES, video_grid
from .processors import PROCESSORS, SparseProcessor
from .reorder import SequenceLayout
from .ulysses import dense_attention, group_sum, sequence_shards, ulysses_attention, ulysses_degree

if TYPE_CHECKING:
    from ..pipelines.registry import Adapter
    from ..session import DenoiserSession

#: families whose sparse attention runs under Ulysses context parallelism (video-only self-attention)
ULYSSES_FAMILIES = ("wan", "wan_vace", "skyreels_v2")

#: called with (layer_index, q, k, v [B,H,N,D] in working order, layout) on dense calls when set
Observer = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor, SequenceLayout], None]


@dataclasses.dataclass
class SparseAttentionState:
    """What one generation of sparse attention keeps and counts; reset at the start of every generation
    (the video grid is read again at every call)."""

    grid: tuple[int, int, int] | None = None  # the video token grid (frames, height, width) of this call
    #: (layer, CFG branch) -> (dynamic mask, the step it was built at, the shapes it was built for)
    masks: dict[tuple[int, str], tuple[BlockSparseMask | None, int | None, tuple]] = dataclasses.field(
        default_factory=dict
    )
    #: layer -> step ("unknown" without one) -> densities of its calls
    density: dict[int, dict[Any, list[float]]] = dataclasses.field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    flops_dense: float = 0.0
    flops_done: float = 0.0
    backends: Counter = dataclasses.field(default_factory=Counter)
    calls: Counter = dataclasses.field(default_factory=Counter)
    masks_built: int = 0
    masks_reused: int = 0
    layout_fallbacks: int = 0

    def reset(self) -> None:
        grid = self.grid
        self.__init__()  # type: ignore[misc]
        self.grid = grid

    def record(self, layer: int, step: int | None, density: float, kind: str, flops: float) -> None:
        self.density[layer]["unknown" if step is None else step].append(density)
        self.flops_dense += flops
        self.flops_done += flops * density
        self.calls[kind] += 1


class _GridHook(ModelHook):
    """Reads the video token grid from each denoiser call's inputs."""

    def __init__(self, state: SparseAttentionState, family: str) -> None:
        super().__init__()
        self.state = state
        self.family = family

    @eager
    def pre_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> tuple[tuple, dict]:
        self.state.grid = video_grid(self.family, unwrap(module), args, kwargs)
        return args, kwargs


def suffix_lengths(key_padding: torch.Tensor | None, seq_len: int) -> list[int] | None | bool:
    """Valid key counts per batch element of a boolean key-padding mask ``[B,1,1,N]`` (or ``[B,N]``).

    Returns None when every key is valid, a list of lengths when the padding is a suffix, and
    False for any other mask (which the sparse path cannot honour).
    """
    if key_padding is None:
        return None
    if (
        key_padding.dtype != torch.bool
        or key_padding.shape[-1] != seq_len
        or key_padding.numel() != key_padding.shape[0] * seq_len
    ):
        return False
    valid = key_padding.reshape(key_padding.shape[0], seq_len)
    if bool(valid.all()):
        return None
    lengths = valid.sum(-1)
    expected = torch.arange(seq_len, device=valid.device)[None, :] < lengths[:, None]
    if not torch.equal(expected, valid) or int(lengths.min()) == 0:
        return False
    return [int(n) for n in lengths]


class SparseAttention:
    """The attention call of every replaced processor: dense (the stock call) or block-sparse, with
    the masks and the token layout it needs. Holds what stays across generations (static masks)."""

    def __init__(
        self,
        config: SparseAttentionConfig,
        context: DenoisingContext,
        state: SparseAttentionState,
        patterns: HeadPatterns | None,
    ) -> None:
        self.config = config
        self.context = context
        self.state = state
        self.patterns = patterns
        self.static_masks: dict[tuple, BlockSparseMask] = {}
        self.observer: Observer | None = None  # the calibration's observer of dense calls
        self.force_dense = False  # every call dense (calibration)

    # ------------------------------------------------------------------ decisions
    def _dense_step(self, info: CallInfo | None) -> bool:
        fraction = self.config.dense_warmup_fraction
        if fraction <= 0.0 or info is None:
            return False
        step, steps = info.require_steps("SparseAttentionConfig (dense_warmup_fraction > 0)")
        return step < math.ceil(fraction * steps - 1e-9)

    def _layout(self, video_len: int, text_len: int, text_position: str) -> SequenceLayout:
        tile = tuple(self.patterns.tile) if self.patterns is not None else tuple(self.config.tile)
        grid = self.state.grid
        if grid is not None and grid[0] * grid[1] * grid[2] == video_len:
            return SequenceLayout(*grid, text_len=text_len, text_position=text_position, tile=tile)  # type: ignore[arg-type]
        self.state.layout_fallbacks += 1
        return SequenceLayout(1, 1, video_len, text_len=text_len, text_position=text_position, tile=(1, 1, 1))

    @property
    def block_size(self) -> int:
        return self.patterns.block_size if self.patterns is not None else self.config.block_size

    def _build_mask(
        self, layer: int, q: torch.Tensor, k: torch.Tensor, layout: SequenceLayout
    ) -> BlockSparseMask | None:
        config, bs = self.config, self.block_size
        heads = q.shape[1]
        if config.pattern == "searched":
            key = ("searched", layer, layout, heads, str(q.device))
            if key not in self.static_masks:
                self.static_masks[key] = self.patterns.mask(layer, layout, heads, q.device, config.force_diagonal)  # type: ignore[union-attr]
            return self.static_masks[key]
        if config.pattern == "neighborhood":
            return self._neighborhood_blocks(layout, q.device)
        if config.pattern == "window":
            key = ("window", layout, str(q.device))
            if key not in self.static_masks:
                blocks = window_blocks(layout, bs, bs, config.window, q.device)
                self.static_masks[key] = finalize(blocks, layout, bs, config.force_diagonal)
            return self.static_masks[key]
        with torch.no_grad():
            scores = block_scores(q, k, bs, bs, config.score, min(config.samples_per_block, bs))
            keep = keep_by_threshold(scores, config.tau, config.min_keep, config.max_keep)
        self.state.masks_built += 1
        return finalize(keep, layout, bs, config.force_diagonal)

    def _neighborhood_blocks(self, layout: SequenceLayout, device: torch.device) -> BlockSparseMask | None:
        """The neighbourhood pattern's block mask where it is token-exact (GNA's perfectly block-sparse
        configurations), else None (the call runs at token granularity)."""
        key = ("neighborhood", layout, str(device))
        if key not in self.static_masks:
            c, bs = self.config, self.block_size
            video = dataclasses.replace(layout, text_len=0)
            try:
                blocks, exact = neighborhood_blocks(video, bs, c.kernel_size, c.stride, c.dilation)
            except ConfigError:
                blocks, exact = None, False
            if exact:
                total = -(-layout.seq_len // bs)
                padded = torch.zeros(total, total, dtype=torch.bool)
                padded[: blocks.shape[0], : blocks.shape[1]] = blocks
                self.static_masks[key] = finalize(padded.to(device), layout, bs, force_diagonal=False)
            else:
                self.static_masks[key] = None
        return self.static_masks[key]

    def _mask(
        self, layer: int, branch: str, step: int | None, q: torch.Tensor, k: torch.Tensor, layout: SequenceLayout
    ) -> BlockSparseMask | None:
        if self.config.pattern != "dynamic":
            return self._build_mask(layer, q, k, layout)
        key = (layer, branch)
        shape = (layout, tuple(q.shape), str(q.device))
        cached = self.state.masks.get(key)
        reuse = self.config.mask_reuse_steps
        if (
            cached is not None
            and cached[2] == shape
            and step is not None
            and cached[1] is not None
            and 0 <= step - cached[1] < reuse
        ):
            self.state.masks_reused += 1
            return cached[0]
        mask = self._build_mask(layer, q, k, layout)
        if reuse > 1:
            self.state.masks[key] = (mask, step, shape)  # type: ignore[assignment]
        return mask

    # ------------------------------------------------------------------ the attention call
    @eager
    def attend(
        self,
        processor: SparseProcessor,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        *,
        seq_dim: int,
        text_len: int,
        text_position: str,
        key_padding: torch.Tensor | None,
        dense: Callable[[], torch.Tensor],
    ) -> torch.Tensor:
        """Attention for one processor call. ``q, k, v`` are ``[B,N,H,D]`` (``seq_dim=1``) or
        ``[B,H,N,D]`` (``seq_dim=2``); the result has the same layout. ``dense()`` is the stock call."""
        info = self.context.current
        step = info.step_index if info is not None else None
        branch = info.branch if info is not None else "cond"
        layer = processor.layer_index
        if seq_dim == 1:
            b, n, h, d = q.shape
        else:
            b, h, n, d = q.shape
        parallel = processor._parallel_config
        whole = n * sequence_shards(parallel)  # a rank holds 1 / shards of the sequence under context parallelism
        flops = 4.0 * b * h * whole * whole * d
        lengths = suffix_lengths(key_padding, n)
        if lengths is not None and text_position != "last":
            lengths = False
        if (
            self.force_dense
            or layer in self.config.dense_layers
            or (parallel is not None and (ulysses_degree(parallel) is None or seq_dim != 1 or text_len))
            or lengths is False
            or self._dense_step(info)
        ):
            if self.observer is not None:
                layout = self._layout(n - text_len, text_len, text_position)
                qw, kw, vw = (_working(t, layout, seq_dim) for t in (q, k, v))
                self.observer(layer, qw, kw, vw, layout)
            self.state.record(layer, step, 1.0, "dense", flops)
            return dense()

        if parallel is not None:  # Wan's video-only self-attention, sequence sharded by Ulysses
            return ulysses_attention(
                q,
                k,
                v,
                parallel,
                lambda qf, kf, vf: self._attend_whole_sequence(layer, branch, step, qf, kf, vf, parallel),
            )
        layout = self._layout(n - text_len, text_len, text_position)
        qw, kw, vw = (_working(t, layout, seq_dim) for t in (q, k, v))
        if self.config.pattern == "neighborhood" and self._neighborhood_blocks(layout, q.device) is None:
            if lengths is not None:  # padded keys: the token path takes none
                self.state.record(layer, step, 1.0, "dense", flops)
                return dense()
            c = self.config
            out = neighborhood_attention(qw, kw, vw, layout, c.kernel_size, c.stride, c.dilation)
            self.state.record(layer, step, _neighborhood_density(layout, c.kernel_size), "sparse", flops)
            return _model_order(out, layout, seq_dim)
        mask = self._mask(layer, branch, step, qw, kw, layout)
        if mask is None or mask.is_full():
            self.state.record(layer, step, 1.0, "dense", flops)
            return dense()

        from ..kernels.dispatch import block_sparse_attention

        if lengths is None:
            out, used = block_sparse_attention(qw, kw, vw, mask, backend=self.config.backend)
            self.state.backends[used] += 1
        else:
            parts = []
            for i, length in enumerate(lengths):
                m = mask.select_batch(i).truncate_kv(length)
                part, used = block_sparse_attention(
                    qw[i : i + 1], kw[i : i + 1, :, :length], vw[i : i + 1, :, :length], m, backend=self.config.backend
                )
                self.state.backends[used] += 1
                parts.append(part)
            out = torch.cat(parts, dim=0)
        self.state.record(layer, step, mask.expand(b, h).density(), "sparse", flops)
        return _model_order(out, layout, seq_dim)

    def _attend_whole_sequence(
        self,
        layer: int,
        branch: str,
        step: int | None,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        parallel: Any,
    ) -> torch.Tensor:
        """Between Ulysses' all-to-alls: ``[B, N, H / P, D]`` video tokens of this rank's heads. The mask
        and kernel are one process's; the call's FLOPs and density are summed over the group, and it
        runs dense only where every rank's heads are dense, so all ranks record the same."""
        from ..kernels.dispatch import block_sparse_attention

        b, n, h, d = q.shape
        layout = self._layout(n, 0, "last")
        qw, kw, vw = (_working(t, layout, 1) for t in (q, k, v))
        mask = self._mask(layer, branch, step, qw, kw, layout)
        flops = 4.0 * b * h * n * n * d
        density = 1.0 if mask is None else mask.expand(b, h).density()
        flops, done = group_sum([flops, flops * density], parallel)
        if mask is None or done >= flops:
            self.state.record(layer, step, 1.0, "dense", flops)
            return dense_attention(q, k, v)
        out, used = block_sparse_attention(qw, kw, vw, mask, backend=self.config.backend)
        self.state.backends[used] += 1
        self.state.record(layer, step, done / flops, "sparse", flops)
        return _model_order(out, layout, 1)


@register_plugin
class SparseAttentionPlugin(Plugin):
    """Block-sparse self/joint attention (see :class:`SparseAttentionConfig`)."""

    config_cls = SparseAttentionConfig
    name = "sparse_attention"
    kinds = frozenset({"video_dit"})
    claims = frozenset({"attention_processor"})
    facts = FACTS

    def __init__(self, config: SparseAttentionConfig, session: DenoiserSession) -> None:
        super().__init__(config, session)
        self.state = SparseAttentionState()
        patterns = HeadPatterns.load(config.patterns_path) if config.pattern == "searched" else None  # type: ignore[arg-type]
        self.attention = SparseAttention(config, session.context, self.state, patterns)
        self.processors: list[SparseProcessor] = []

    # ------------------------------------------------------------------ checks and lifecycle
    @classmethod
    def check(cls, adapter: Adapter, config: SparseAttentionConfig, has_pipeline: bool) -> None:
        super().check(adapter, config, has_pipeline)
        if adapter.discovered:
            raise UnsupportedModelError(
                f"SparseAttentionConfig replaces a family's own attention processors and needs its video token "
                f"layout, which a hand-written adapter gives; {adapter.title} was discovered automatically"
            )
        if adapter.family not in PROCESSORS:
            raise UnsupportedModelError(
                f"SparseAttentionConfig does not support {adapter.title} ({adapter.family}): it replaces the stock "
                "attention processor of the families whose processor and video token grid it knows; "
                f"it supports: {', '.join(SUPPORTED_FAMILIES)}"
            )

    def attach(self) -> None:
        self._refuse_context_parallelism()
        config: SparseAttentionConfig = self.config
        patterns = self.attention.patterns
        adapter = self.session.adapter
        model = unwrap(self.session.denoiser)
        modules = adapter.attention_modules(model)
        if not modules:
            raise UnsupportedModelError(f"{adapter.title}: found no self/joint attention modules to make sparse")
        beyond = [layer for layer in config.dense_layers if layer >= len(modules)]
        if beyond:
            raise ConfigError(
                f"SparseAttentionConfig.dense_layers {beyond} are beyond this model's {len(modules)} attention "
                f"layers (allowed: 0..{len(modules) - 1})"
            )
        proc_cls = PROCESSORS[adapter.family]
        for name, module, _kind in modules:
            stock = module.processor
            if type(stock).__name__ not in proc_cls.stock_classes:
                raise UnsupportedModelError(
                    f"{name} uses {type(stock).__name__}; SparseAttentionConfig replaces only the stock "
                    f"{' / '.join(proc_cls.stock_classes)} processor of {adapter.title}. Reset the model's processors "
                    "or remove the other attention customisation first."
                )
        for index, (name, module, _kind) in enumerate(modules):
            stock = module.processor
            processor = proc_cls(self.attention, index, name, stock)
            self.session.swap_processor(module, processor)
            self.processors.append(processor)
        if patterns is not None and patterns.layers and max(patterns.layers) >= len(modules):
            raise UnsupportedModelError(
                f"head patterns {config.patterns_path} name layer {max(patterns.layers)}, but the model "
                f"has {len(modules)} attention layers"
            )
        grid_hook = _GridHook(self.state, adapter.family)
        self.session.register_hook(self.session.denoiser, grid_hook, self.hook_name("grid"))

    def detach(self) -> None:
        self.state.masks.clear()
        self.attention.static_masks.clear()

    def _refuse_context_parallelism(self) -> None:
        """Under Ulysses, Wan's video-only self-attention runs block-sparse on the whole sequence
        (:mod:`.ulysses`); every other context-parallel layout is refused."""
        config = context_parallel_config(self.session.denoiser)
        if config is None:
            return
        family = self.session.adapter.family
        if ulysses_degree(parallel_config(self.session.denoiser)) is None:
            why = "under Ring attention no rank ever holds a head's whole sequence, where block masks are chosen"
        elif self.config.pattern == "neighborhood":
            why = "the neighbourhood pattern is not wired into Ulysses' all-to-all yet"
        elif family not in ULYSSES_FAMILIES:
            why = (
                f"under Ulysses it runs on the video-only self-attention of {', '.join(ULYSSES_FAMILIES)}; "
                f"{family} is not supported there (joint text-video attention, or untested: LTX-Video's own "
                "context-parallel cross-attention fails in diffusers 0.42.1)"
            )
        else:
            return
        refuse_context_parallelism("SparseAttentionConfig", self.session.denoiser, why + " (no speed-up)")

    def on_generation_start(self) -> None:
        self._refuse_context_parallelism()
        self.state.reset()

    def stats(self) -> dict[str, Any]:
        state = self.state
        names = {p.layer_index: p.layer_name for p in self.processors}
        steps = sorted({s for per in state.density.values() for s in per}, key=lambda s: (isinstance(s, str), s))
        by_layer, by_layer_step = {}, {}
        per_step: dict[Any, list[float]] = defaultdict(list)
        every: list[float] = []
        for layer in sorted(state.density):
            per = state.density[layer]
            values = [x for s in per for x in per[s]]
            by_layer[names.get(layer, str(layer))] = round(sum(values) / len(values), 4)
            by_layer_step[names.get(layer, str(layer))] = [
                round(sum(per[s]) / len(per[s]), 4) if per.get(s) else None for s in steps
            ]
            for s in per:
                per_step[s].extend(per[s])
            every.extend(values)
        saved = 1.0 - state.flops_done / state.flops_dense if state.flops_dense else 0.0
        return {
            "pattern": self.config.pattern,
            "mean_density": round(sum(every) / len(every), 4) if every else None,
            "density_by_step": {
                s: round(sum(v) / len(v), 4)
                for s, v in sorted(per_step.items(), key=lambda kv: (isinstance(kv[0], str), kv[0]))
            },
            "density_by_layer": by_layer,
            "density_by_layer_step": by_layer_step,
            "steps": steps,
            "attention_flops_dense": state.flops_dense,
            "attention_flops_computed": state.flops_done,
            "attention_flops_saved": round(saved, 4),
            "sparse_calls": state.calls["sparse"],
            "dense_calls": state.calls["dense"],
            "backends": dict(state.backends),
            "masks_built": state.masks_built,
            "masks_reused": state.masks_reused,
            "layout_fallbacks": state.layout_fallbacks,
        }


def _working(x: torch.Tensor, layout: SequenceLayout, seq_dim: int) -> torch.Tensor:
    """``[B,H,N,D]`` view of ``x`` with its tokens in the working order of ``layout``."""
    perm, _ = layout.permutation(x.device)
    x = x.index_select(seq_dim, perm)
    return x.transpose(1, 2) if seq_dim == 1 else x


def _model_order(out: torch.Tensor, layout: SequenceLayout, seq_dim: int) -> torch.Tensor:
    """Inverse of :func:`_working` for the ``[B,H,N,D]`` attention output."""
    _, inv = layout.permutation(out.device)
    out = out.index_select(2, inv)
    return out.transpose(1, 2) if seq_dim == 1 else out


def _neighborhood_density(layout: SequenceLayout, kernel: tuple[int, int, int]) -> float:
    """Kept fraction of the query-key pairs: ``prod(kernel)`` keys per video query, text rows and columns whole."""
    n, video, text = layout.seq_len, layout.video_len, layout.text_len
    return (video * math.prod(kernel) + text * n + video * text) / (n * n)
