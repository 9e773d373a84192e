"""Heat-map pictures of block-sparse masks, for people reading a plan or a dynamic mask."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..files import atomic_write
from ..kernels.block_mask import BlockSparseMask


def save_mask_image(
    mask: BlockSparseMask, path: str | Path, batch: int = 0, heads: Sequence[int] | None = None, dpi: int = 100
) -> Path:
    """Save the block map of ``heads`` (default: up to 8) of one batch element as a heat-map PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    index = min(batch, mask.batch - 1)
    blocks = mask.to_block_bool()[index].float().cpu()
    heads = list(heads) if heads is not None else list(range(min(mask.heads, 8)))
    fig, axes = plt.subplots(1, len(heads), figsize=(3 * len(heads), 3.2), squeeze=False)
    densities = mask.density_per_head()[index]
    for ax, h in zip(axes[0], heads):
        ax.imshow(blocks[h].numpy(), cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"head {h}: density {float(densities[h]):.2f}", fontsize=9)
        ax.set_xlabel("key block")
        ax.set_ylabel("query block")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(str(path), "wb") as f:
        fig.savefig(f, format="png", dpi=dpi)
    plt.close(fig)
    return path
