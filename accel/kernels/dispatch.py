"""One entry point for block-sparse attention that picks the best backend available and says which ran.

``backend="auto"`` order:

1. ``"sdpa"`` when the mask is full (every block active): plain dense SDPA is the fastest exact path.
2. ``"triton"`` for CUDA tensors (:mod:`accel.kernels.triton_block_sparse`).
3. ``"flex"``: compiled FlexAttention (:mod:`accel.kernels.flex`), on CPU or GPU, unless compiling
   it failed earlier in this process on that device type (then it is not tried again).
4. ``"torch"``: the gather-based PyTorch implementation (:func:`accel.kernels.reference.gather_block_sparse`).

An explicit backend runs that backend or raises :class:`BackendUnavailableError` saying why.
``"triton"`` on CPU tensors runs under the Triton interpreter (``TRITON_INTERPRET=1`` set before
triton is imported): correct but slow, for tests.
"""

from __future__ import annotations

import os
import warnings

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import register_flop_formula

from ..errors import AccelError, ConfigError
from .block_mask import BlockSparseMask
from .reference import gather_block_sparse

BACKENDS = ("auto", "triton", "flex", "torch")

_FLEX_FAILED: dict[str, str] = {}


class BackendUnavailableError(AccelError, RuntimeError):
    """The requested block-sparse attention backend cannot run these inputs here; the message says why."""


def _check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: BlockSparseMask) -> None:
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ConfigError(
            f"q, k, v must be [B, H, N, D]; got shapes {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if k.shape != v.shape or q.shape[:2] != k.shape[:2] or q.shape[-1] != k.shape[-1]:
        raise ConfigError(
            f"q {tuple(q.shape)}, k {tuple(k.shape)} and v {tuple(v.shape)} must share B, H and D "
            "(and k, v their length)"
        )
    if q.dtype != k.dtype or q.dtype != v.dtype:
        raise ConfigError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if (mask.q_len, mask.kv_len) != (q.shape[2], k.shape[2]):
        raise ConfigError(
            f"mask covers {mask.q_len} queries x {mask.kv_len} keys, inputs have {q.shape[2]} x {k.shape[2]}"
        )
    b, h = q.shape[:2]
    if mask.batch not in (1, b) or mask.heads not in (1, h):
        raise ConfigError(
            f"mask has batch={mask.batch}, heads={mask.heads}; inputs have B={b}, H={h} (mask dims must be 1 or equal)"
        )


def _triton_reason(q: torch.Tensor, mask: BlockSparseMask) -> str | None:
    if not q.is_cuda and os.environ.get("TRITON_INTERPRET", "0") != "1":
        return "tensors are on the CPU and TRITON_INTERPRET=1 is not set"
    try:
        from . import triton_block_sparse
    except ImportError as exc:  # no triton installed
        return f"triton is not importable ({exc})"
    return triton_block_sparse.unsupported_reason(q, mask)


def _dispatch_mode_active() -> bool:
    """Whether a ``TorchDispatchMode`` such as ``FlopCounterMode`` (``accel eval`` counts FLOPs under
    one) is active: torch.compile cannot trace FlexAttention under it."""
    length = getattr(torch._C, "_len_torch_dispatch_stack", None)
    return bool(length is not None and length() > 0)


def _flex_reason(q: torch.Tensor, mask: BlockSparseMask) -> str | None:
    from .flex import flex_available

    if not flex_available():
        return "this torch has no FlexAttention"
    if q.device.type in _FLEX_FAILED:
        return f"compiling FlexAttention failed earlier on {q.device.type}: {_FLEX_FAILED[q.device.type]}"
    if _dispatch_mode_active():
        return "a torch dispatch mode is active (e.g. FLOP counting), which compiled FlexAttention cannot run under"
    if q.is_cuda and (mask.block_m < 16 or mask.block_n < 16):
        return f"GPU FlexAttention needs mask blocks >= 16, got {mask.block_m}x{mask.block_n}"
    return None


def backend_status(q: torch.Tensor, mask: BlockSparseMask) -> dict[str, str | None]:
    """``{backend: None if usable else the reason}`` for ``"triton"``, ``"flex"`` and ``"torch"``."""
    return {"triton": _triton_reason(q, mask), "flex": _flex_reason(q, mask), "torch": None}


def _run(
    name: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: BlockSparseMask, scale: float | None
) -> torch.Tensor:
    if name == "triton":
        from .triton_block_sparse import triton_block_sparse_attention

        return triton_block_sparse_attention(q, k, v, mask, scale)
    if name == "flex":
        from .flex import flex_block_sparse_attention

        return flex_block_sparse_attention(q, k, v, mask, scale)
    return gather_block_sparse(q, k, v, mask, scale)


@torch.library.custom_op("accel::block_sparse_attention", mutates_args=())
def _counted_block_sparse(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kv_idx: torch.Tensor,
    kv_num: torch.Tensor,
    block_m: int,
    block_n: int,
    scale: float,
    backend: str,
) -> torch.Tensor:
    """One opaque op for FLOP counters: they see the attention the mask keeps, not a backend's padding."""
    mask = BlockSparseMask(kv_idx, kv_num, block_m, block_n, q.shape[2], k.shape[2])
    return _run(backend, q, k, v, mask, scale if scale > 0 else None)


@_counted_block_sparse.register_fake
def _(q, k, v, kv_idx, kv_num, block_m, block_n, scale, backend) -> torch.Tensor:  # noqa: ANN001
    return torch.empty_like(q)


@register_flop_formula(torch.ops.accel.block_sparse_attention, get_raw=True)
def _block_sparse_flops(q, k, v, kv_idx, kv_num, block_m, block_n, scale, backend, out_val=None) -> int:  # noqa: ANN001
    """``4 * D`` per (query, key) pair the mask keeps: ``Q K^T`` and ``P V``, as torch counts dense attention."""
    b, h, nq, d = q.shape
    mask = BlockSparseMask(kv_idx, kv_num, block_m, block_n, nq, k.shape[2]).expand(b, h)
    pairs = float(mask.density_per_head().sum()) * nq * k.shape[2]
    return int(round(4 * d * pairs))


def _run_counted(
    name: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: BlockSparseMask, scale: float | None
) -> torch.Tensor:
    """``_run``, through the counted op while a dispatch mode (a FLOP counter) watches."""
    if not _dispatch_mode_active():
        return _run(name, q, k, v, mask, scale)
    return torch.ops.accel.block_sparse_attention(
        q, k, v, mask.kv_idx, mask.kv_num, mask.block_m, mask.block_n, scale or -1.0, name
    )


def block_sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: BlockSparseMask,
    *,
    scale: float | None = None,
    backend: str = "auto",
) -> tuple[torch.Tensor, str]:
    """Attention of ``q`` ``[B,H,Nq,D]`` over ``k``/``v`` ``[B,H,Nk,D]`` restricted to ``mask``'s blocks.

    Returns ``(out [B,H,Nq,D] in q's dtype, backend_used)``; ``backend_used`` is one of
    ``"sdpa"`` (auto, full mask), ``"triton"``, ``"flex"``, ``"torch"``. Query rows with no active
    key give zeros. ``scale`` defaults to ``D ** -0.5``.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    _check_inputs(q, k, v, mask)
    if backend != "auto":
        reason = backend_status(q, mask)[backend]
        if reason is not None:
            raise BackendUnavailableError(f"block-sparse backend {backend!r} cannot run here: {reason}")
        return _run_counted(backend, q, k, v, mask, scale), backend
    if mask.is_full():
        return F.scaled_dot_product_attention(q, k, v, scale=scale), "sdpa"
    status = backend_status(q, mask)
    if q.is_cuda and status["triton"] is None:
        return _run_counted("triton", q, k, v, mask, scale), "triton"
    if status["flex"] is None:
        try:
            return _run("flex", q, k, v, mask, scale), "flex"
        except Exception as exc:  # Inductor/compiler failures: remember and fall back
            _FLEX_FAILED[q.device.type] = f"{type(exc).__name__}: {str(exc)[:200]}"
            warnings.warn(
                f"compiled FlexAttention failed on {q.device.type} ({_FLEX_FAILED[q.device.type]}); "
                "using the PyTorch block-sparse implementation from now on",
                RuntimeWarning,
                stacklevel=2,
            )
    return _run_counted("torch", q, k, v, mask, scale), "torch"
