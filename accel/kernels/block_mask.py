"""The block-sparse mask format that every attention kernel in :mod:`accel.kernels` takes.

A :class:`BlockSparseMask` lists, for each (batch, head, query block), the key blocks that query
block attends to: ``kv_idx[B, H, Mb, MAXK]`` (int32 block ids, active ones first, ascending) and
``kv_num[B, H, Mb]`` (how many entries of ``kv_idx`` are active). This is the layout of VSA's Triton
kernel and of FlexAttention's ``BlockMask`` (Video Sparse Attention, arXiv 2505.13389; PyTorch
FlexAttention). The batch and head dimensions may be 1 and then broadcast.

Kernels only read masks; the plugins that use them build them (``accel.sparse_attention.builders``).
A query row whose block has no active key block attends to nothing and its output is zero.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from ..errors import ConfigError


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
                raise ConfigError(f"BlockSparseMask.{name} must be a positive integer, got {value!r}")
        if self.kv_idx.dtype != torch.int32 or self.kv_num.dtype != torch.int32:
            raise ConfigError(
                f"BlockSparseMask needs int32 kv_idx and kv_num, got {self.kv_idx.dtype} and {self.kv_num.dtype}"
            )
        if self.kv_idx.ndim != 4 or self.kv_num.ndim != 3:
            raise ConfigError(
                f"BlockSparseMask needs kv_idx [B,H,Mb,MAXK] and kv_num [B,H,Mb], got shapes "
                f"{tuple(self.kv_idx.shape)} and {tuple(self.kv_num.shape)}"
            )
        if tuple(self.kv_idx.shape[:3]) != tuple(self.kv_num.shape):
            raise ConfigError(
                f"kv_idx {tuple(self.kv_idx.shape)} and kv_num {tuple(self.kv_num.shape)} disagree on [B,H,Mb]"
            )
        if self.kv_idx.shape[2] != self.num_q_blocks:
            raise ConfigError(
                f"kv_idx has {self.kv_idx.shape[2]} query blocks; q_len={self.q_len} with "
                f"block_m={self.block_m} needs {self.num_q_blocks}"
            )
        if self.kv_idx.shape[3] > self.num_kv_blocks or self.kv_idx.shape[3] < 1:
            raise ConfigError(
                f"kv_idx lists {self.kv_idx.shape[3]} slots per row; must be in [1, {self.num_kv_blocks}]"
            )

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
    def from_block_bool(
        cls, blocks: torch.Tensor, block_m: int, block_n: int, q_len: int, kv_len: int
    ) -> BlockSparseMask:
        """From a boolean block map ``[B, H, Mb, Nb]`` (``[Mb, Nb]`` is taken as B = H = 1)."""
        if blocks.ndim == 2:
            blocks = blocks[None, None]
        if blocks.ndim != 4 or blocks.dtype != torch.bool:
            raise ConfigError(f"block map must be a bool tensor [B,H,Mb,Nb], got {blocks.dtype} {tuple(blocks.shape)}")
        nb = blocks.shape[-1]
        if nb != math.ceil(kv_len / block_n):
            raise ConfigError(
                f"block map has {nb} key blocks; kv_len={kv_len} with block_n={block_n} needs "
                f"{math.ceil(kv_len / block_n)}"
            )
        kv_num = blocks.sum(-1, dtype=torch.int32)
        order = torch.argsort((~blocks).to(torch.int8), dim=-1, stable=True)
        maxk = max(int(kv_num.max()) if kv_num.numel() else 1, 1)
        kv_idx = order[..., :maxk].to(torch.int32).contiguous()
        return cls(kv_idx, kv_num.contiguous(), block_m, block_n, q_len, kv_len)

    @classmethod
    def full(
        cls,
        q_len: int,
        kv_len: int,
        block_m: int,
        block_n: int | None = None,
        batch: int = 1,
        heads: int = 1,
        device: torch.device | str = "cpu",
    ) -> BlockSparseMask:
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
    def expand(self, batch: int, heads: int) -> BlockSparseMask:
        """Broadcast size-1 batch/head dimensions (views, no copy)."""
        if (self.batch, self.heads) == (batch, heads):
            return self
        for have, want, name in ((self.batch, batch, "batch"), (self.heads, heads, "heads")):
            if have not in (1, want):
                raise ConfigError(f"mask has {name}={have}; cannot broadcast to {want}")
        idx = self.kv_idx.expand(batch, heads, *self.kv_idx.shape[2:])
        num = self.kv_num.expand(batch, heads, self.kv_num.shape[2])
        return dataclasses.replace(self, kv_idx=idx, kv_num=num)

    def select_batch(self, index: int) -> BlockSparseMask:
        """The mask of one batch element (kept as a batch of one)."""
        index = 0 if self.batch == 1 else index
        return dataclasses.replace(self, kv_idx=self.kv_idx[index : index + 1], kv_num=self.kv_num[index : index + 1])

    def truncate_kv(self, kv_len: int) -> BlockSparseMask:
        """The same mask over the first ``kv_len`` keys (e.g. without trailing padded text tokens)."""
        if kv_len == self.kv_len:
            return self
        if not 1 <= kv_len <= self.kv_len:
            raise ConfigError(f"kv_len must be in [1, {self.kv_len}], got {kv_len}")
        blocks = self.to_block_bool()[..., : math.ceil(kv_len / self.block_n)]
        return BlockSparseMask.from_block_bool(blocks, self.block_m, self.block_n, self.q_len, kv_len)

    def to(self, device: torch.device | str) -> BlockSparseMask:
        return dataclasses.replace(self, kv_idx=self.kv_idx.to(device), kv_num=self.kv_num.to(device))
