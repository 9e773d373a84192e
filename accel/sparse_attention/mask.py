"""Moved: the mask format is :mod:`accel.kernels.block_mask`, its editing helpers are
:mod:`accel.sparse_attention.builders.combine`. The old names keep working until accel 0.3.0."""

from ..deprecation import moved_names

__getattr__ = moved_names(
    __name__,
    {
        "BlockSparseMask": "accel.kernels.block_mask",
        "TEXT_POSITIONS": "accel.sparse_attention.reorder",
        **{
            name: "accel.sparse_attention.builders.combine"
            for name in ("union", "diagonal_blocks", "force_diagonal", "text_blocks", "dense_text")
        },
    },
)
