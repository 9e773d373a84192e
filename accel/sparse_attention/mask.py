"""One block-sparse mask representation shared by every builder and every kernel.

A :class:`BlockSparseMask` lists, for each (batch, head, query block), the key blocks that query
block attends to: ``kv_idx[B, H, Mb, MAXK]`` (int32 block ids, active ones first, ascending) and
``kv_num[B, H, Mb]`` (how many entries of ``kv_idx`` are active). This is the layout of VSA's Triton
kernel and of FlexAttention's ``BlockMask`` (Video Sparse Attention, arXiv 2505.13389; PyTorch
FlexAttention). The batch and head dimensions may be 1 and then broadcast.

Masks are built in pure torch (``accel.sparse_attention.builders``); kernels only read them.
A query row whose block has no active key block attends to nothing and its output is zero.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Sequence

import torch

TEXT_POSITIONS = ("first", "last")


@dataclasses.dataclass(frozen=True)
class BlockSparseMask:
    """Per-(batch, head, query-block) lists of active key blocks.

    Attributes:
        kv_idx: int32 ``[B, H, Mb, MAXK]``: active key-block ids first (ascending), then padding.
        kv_num: int32 ``[B, H, Mb]``: number of active entries in each ``kv_idx`` row.
        block_m: query tokens per block.
        block_n: key tokens per block.
        q_len: query sequence length (the last query block may be partial).
        kv_len: key sequence length (the last key block may be partial).
    """

    kv_idx: torch.Tensor
    kv_num: torch.Tensor
    block_m: int
    block_n: int
    q_len: int
    kv_len: int

    def __post_init__(self) -> None:
        for name in ("block_m", "block_n", "q_len", "kv_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"BlockSparseMask.{name} must be a positive integer, got {value!r}")
        if self.kv_idx.dtype != torch.int32 or self.kv_num.dtype != torch.int32:
            raise ValueError(f"BlockSparseMask needs int32 kv_idx and kv_num, got {self.kv_idx.dtype} and {self.kv_num.dtype}")
        if self.kv_idx.ndim != 4 or self.kv_num.ndim != 3:
            raise ValueError(f"BlockSparseMask needs kv_idx [B,H,Mb,MAXK] and kv_num [B,H,Mb], got shapes "
                             f"{tuple(self.kv_idx.shape)} and {tuple(self.kv_num.shape)}")
        if tuple(self.kv_idx.shape[:3]) != tuple(self.kv_num.shape):
            raise ValueError(f"kv_idx {tuple(self.kv_idx.shape)} and kv_num {tuple(self.kv_num.shape)} disagree on [B,H,Mb]")
        if self.kv_idx.shape[2] != self.num_q_blocks:
            raise ValueError(f"kv_idx has {self.kv_idx.shape[2]} query blocks; q_len={self.q_len} with "
                             f"block_m={self.block_m} needs {self.num_q_blocks}")
        if self.kv_idx.shape[3] > self.num_kv_blocks or self.kv_idx.shape[3] < 1:
            raise ValueError(f"kv_idx lists {self.kv_idx.shape[3]} slots per row; must be in [1, {self.num_kv_blocks}]")

    # ------------------------------------------------------------------ sizes
    @property
    def num_q_blocks(self) -> int:
        return math.ceil(self.q_len / self.block_m)

    @property
    def num_kv_blocks(self) -> int:
        return math.ceil(self.kv_len / self.block_n)

    @property
    def batch(self) -> int:
        return int(self.kv_num.shape[0])

    @property
    def heads(self) -> int:
        return int(self.kv_num.shape[1])

    @property
    def device(self) -> torch.device:
        return self.kv_idx.device

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_block_bool(cls, blocks: torch.Tensor, block_m: int, block_n: int, q_len: int, kv_len: int) -> "BlockSparseMask":
        """From a boolean block map ``[B, H, Mb, Nb]`` (``[Mb, Nb]`` is taken as B = H = 1)."""
        if blocks.ndim == 2:
            blocks = blocks[None, None]
        if blocks.ndim != 4 or blocks.dtype != torch.bool:
            raise ValueError(f"block map must be a bool tensor [B,H,Mb,Nb], got {blocks.dtype} {tuple(blocks.shape)}")
        nb = blocks.shape[-1]
        if nb != math.ceil(kv_len / block_n):
            raise ValueError(f"block map has {nb} key blocks; kv_len={kv_len} with block_n={block_n} needs "
                             f"{math.ceil(kv_len / block_n)}")
        kv_num = blocks.sum(-1, dtype=torch.int32)
        order = torch.argsort((~blocks).to(torch.int8), dim=-1, stable=True)
        maxk = max(int(kv_num.max()) if kv_num.numel() else 1, 1)
        kv_idx = order[..., :maxk].to(torch.int32).contiguous()
        return cls(kv_idx, kv_num.contiguous(), block_m, block_n, q_len, kv_len)

    @classmethod
    def full(cls, q_len: int, kv_len: int, block_m: int, block_n: int | None = None, batch: int = 1,
             heads: int = 1, device: torch.device | str = "cpu") -> "BlockSparseMask":
        """Every query block attends to every key block."""
        block_n = block_m if block_n is None else block_n
        mb, nb = math.ceil(q_len / block_m), math.ceil(kv_len / block_n)
        blocks = torch.ones(batch, heads, mb, nb, dtype=torch.bool, device=device)
        return cls.from_block_bool(blocks, block_m, block_n, q_len, kv_len)

    # ------------------------------------------------------------------ views
    def to_block_bool(self) -> torch.Tensor:
        """The boolean block map ``[B, H, Mb, Nb]``."""
        slots = torch.arange(self.kv_idx.shape[-1], device=self.device)
        valid = slots < self.kv_num[..., None].long()
        out = torch.zeros(*self.kv_num.shape, self.num_kv_blocks + 1, dtype=torch.bool, device=self.device)
        index = torch.where(valid, self.kv_idx.long(), self.num_kv_blocks)  # invalid slots land in a spare column
        out.scatter_(-1, index, True)
        return out[..., : self.num_kv_blocks]

    def to_dense(self) -> torch.Tensor:
        """The token-level boolean mask ``[B, H, q_len, kv_len]`` (for tests and references)."""
        blocks = self.to_block_bool()
        dense = blocks.repeat_interleave(self.block_m, dim=-2).repeat_interleave(self.block_n, dim=-1)
        return dense[..., : self.q_len, : self.kv_len]

    def to_flex(self, batch: int | None = None, heads: int | None = None) -> Any:
        """A FlexAttention ``BlockMask`` with a ``mask_mod`` that reads this block table.

        Eager (and CPU) FlexAttention ignores a ``BlockMask``'s block indices and applies only its
        ``mask_mod``; an index-only mask would silently compute dense attention. The ``mask_mod``
        here is exact on its own, and the index lists (full interior blocks, partial tail blocks)
        let compiled FlexAttention skip inactive blocks.
        """
        from torch.nn.attention.flex_attention import BlockMask

        mask = self.expand(batch or self.batch, heads or self.heads)
        blocks = mask.to_block_bool()
        tail = torch.zeros(mask.num_q_blocks, mask.num_kv_blocks, dtype=torch.bool, device=self.device)
        if self.q_len % self.block_m:
            tail[-1, :] = True
        if self.kv_len % self.block_n:
            tail[:, -1] = True
        partial, full = blocks & tail, blocks & ~tail
        bm, bn = self.block_m, self.block_n
        table = blocks

        def mask_mod(b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
            return table[b, h, q_idx // bm, kv_idx // bn]

        p_num, p_idx = _counts_and_indices(partial)
        f_num, f_idx = _counts_and_indices(full)
        return BlockMask.from_kv_blocks(p_num, p_idx, f_num, f_idx, BLOCK_SIZE=(bm, bn), mask_mod=mask_mod,
                                        seq_lengths=(self.q_len, self.kv_len))

    # ------------------------------------------------------------------ statistics
    def _block_areas(self) -> torch.Tensor:
        rows = torch.full((self.num_q_blocks,), self.block_m, dtype=torch.float64, device=self.device)
        rows[-1] = self.q_len - self.block_m * (self.num_q_blocks - 1)
        cols = torch.full((self.num_kv_blocks,), self.block_n, dtype=torch.float64, device=self.device)
        cols[-1] = self.kv_len - self.block_n * (self.num_kv_blocks - 1)
        return rows[:, None] * cols[None, :]

    def density_per_head(self) -> torch.Tensor:
        """Fraction of (query, key) token pairs computed, ``[B, H]`` (float64)."""
        area = self._block_areas()
        return (self.to_block_bool().double() * area).sum((-1, -2)) / (self.q_len * self.kv_len)

    def density(self) -> float:
        """Fraction of (query, key) token pairs computed, averaged over batch and heads; 1.0 is dense.

        This is also the fraction of attention FLOPs a block-sparse kernel spends.
        """
        return float(self.density_per_head().mean())

    def is_full(self) -> bool:
        return bool((self.kv_num == self.num_kv_blocks).all())

    # ------------------------------------------------------------------ reshaping
    def expand(self, batch: int, heads: int) -> "BlockSparseMask":
        """Broadcast size-1 batch/head dimensions (views, no copy)."""
        if (self.batch, self.heads) == (batch, heads):
            return self
        for have, want, name in ((self.batch, batch, "batch"), (self.heads, heads, "heads")):
            if have not in (1, want):
                raise ValueError(f"mask has {name}={have}; cannot broadcast to {want}")
        idx = self.kv_idx.expand(batch, heads, *self.kv_idx.shape[2:])
        num = self.kv_num.expand(batch, heads, self.kv_num.shape[2])
        return dataclasses.replace(self, kv_idx=idx, kv_num=num)

    def select_batch(self, index: int) -> "BlockSparseMask":
        """The mask of one batch element (kept as a batch of one)."""
        index = 0 if self.batch == 1 else index
        return dataclasses.replace(self, kv_idx=self.kv_idx[index:index + 1], kv_num=self.kv_num[index:index + 1])

    def truncate_kv(self, kv_len: int) -> "BlockSparseMask":
        """The same mask over the first ``kv_len`` keys (e.g. without trailing padded text tokens)."""
        if kv_len == self.kv_len:
            return self
        if not 1 <= kv_len <= self.kv_len:
            raise ValueError(f"kv_len must be in [1, {self.kv_len}], got {kv_len}")
        blocks = self.to_block_bool()[..., : math.ceil(kv_len / self.block_n)]
        return BlockSparseMask.from_block_bool(blocks, self.block_m, self.block_n, self.q_len, kv_len)

    def to(self, device: torch.device | str) -> "BlockSparseMask":
        return dataclasses.replace(self, kv_idx=self.kv_idx.to(device), kv_num=self.kv_num.to(device))

    # ------------------------------------------------------------------ pictures
    def to_image(self, path: str | Path, batch: int = 0, heads: Sequence[int] | None = None, dpi: int = 100) -> Path:
        """Save the block map of ``heads`` (default: up to 8) of one batch element as a heat-map PNG."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        blocks = self.to_block_bool()[min(batch, self.batch - 1)].float().cpu()
        heads = list(heads) if heads is not None else list(range(min(self.heads, 8)))
        fig, axes = plt.subplots(1, len(heads), figsize=(3 * len(heads), 3.2), squeeze=False)
        densities = self.density_per_head()[min(batch, self.batch - 1)]
        for ax, h in zip(axes[0], heads):
            ax.imshow(blocks[h].numpy(), cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(f"head {h}: density {float(densities[h]):.2f}", fontsize=9)
            ax.set_xlabel("key block")
            ax.set_ylabel("query block")
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)
        plt.close(fig)
        return path


def _counts_and_indices(blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    num = blocks.sum(-1, dtype=torch.int32)
    idx = torch.argsort((~blocks).to(torch.int8), dim=-1, stable=True).to(torch.int32)
    return num.contiguous(), idx.contiguous()


def _like(mask: BlockSparseMask, blocks: torch.Tensor) -> BlockSparseMask:
    return BlockSparseMask.from_block_bool(blocks, mask.block_m, mask.block_n, mask.q_len, mask.kv_len)


def union(*masks: BlockSparseMask) -> BlockSparseMask:
    """The OR of masks with the same block sizes and lengths (batch/head dims broadcast)."""
    if not masks:
        raise ValueError("union needs at least one mask")
    first = masks[0]
    for m in masks[1:]:
        if (m.block_m, m.block_n, m.q_len, m.kv_len) != (first.block_m, first.block_n, first.q_len, first.kv_len):
            raise ValueError("union needs masks with equal block sizes and sequence lengths, got "
                             f"{(first.block_m, first.block_n, first.q_len, first.kv_len)} and "
                             f"{(m.block_m, m.block_n, m.q_len, m.kv_len)}")
    blocks = first.to_block_bool()
    for m in masks[1:]:
        blocks = blocks | m.to_block_bool()
    return _like(first, blocks)


def diagonal_blocks(num_q_blocks: int, num_kv_blocks: int, block_m: int, block_n: int, width: int = 0,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """Bool ``[Mb, Nb]``: key blocks whose token range overlaps the query block's, widened by ``width`` blocks."""
    q_start = torch.arange(num_q_blocks, device=device) * block_m
    first = q_start // block_n
    last = (q_start + block_m - 1) // block_n
    kv = torch.arange(num_kv_blocks, device=device)
    return (kv[None, :] >= first[:, None] - width) & (kv[None, :] <= last[:, None] + width)


def force_diagonal(mask: BlockSparseMask) -> BlockSparseMask:
    """Turn on the diagonal blocks (each query block sees the keys at its own positions)."""
    diag = diagonal_blocks(mask.num_q_blocks, mask.num_kv_blocks, mask.block_m, mask.block_n, device=mask.device)
    return _like(mask, mask.to_block_bool() | diag)


def text_blocks(length: int, block: int, text_len: int, position: str) -> torch.Tensor:
    """Bool ``[ceil(length / block)]``: blocks holding at least one text token."""
    if position not in TEXT_POSITIONS:
        raise ValueError(f"text position must be one of {list(TEXT_POSITIONS)}, got {position!r}")
    if not 0 <= text_len <= length:
        raise ValueError(f"text_len must be in [0, {length}], got {text_len}")
    n = math.ceil(length / block)
    out = torch.zeros(n, dtype=torch.bool)
    if text_len == 0:
        return out
    start, stop = (0, text_len) if position == "first" else (length - text_len, length)
    out[start // block: (stop - 1) // block + 1] = True
    return out


def dense_text(mask: BlockSparseMask, text_len: int, position: str = "last") -> BlockSparseMask:
    """Text tokens (``text_len`` of them, ``"first"`` or ``"last"`` in the joint sequence) attend to
    every key and every query attends to them: their query-block rows and key-block columns become
    fully active. Blocks mixing text and video tokens become dense too (exact for text, conservative
    for video)."""
    if text_len == 0:
        return mask
    if mask.q_len != mask.kv_len:
        raise ValueError(f"dense_text needs a self/joint-attention mask (q_len == kv_len), got {mask.q_len} and {mask.kv_len}")
    rows = text_blocks(mask.q_len, mask.block_m, text_len, position).to(mask.device)
    cols = text_blocks(mask.kv_len, mask.block_n, text_len, position).to(mask.device)
    blocks = mask.to_block_bool() | rows[:, None] | cols[None, :]
    return _like(mask, blocks)
