"""Pictures: sample grids and real-vs-synthetic comparisons."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def image_grid(images: torch.Tensor, *, nrow: int = 8, padding: int = 2) -> np.ndarray:
    """A uint8 batch (N, C, H, W) laid out as one HWC uint8 image, ``nrow`` images per row."""
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected a uint8 batch (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    n, c, h, w = images.shape
    if c == 1:
        images = images.expand(-1, 3, -1, -1)
    cols = max(1, min(nrow, n))
    rows = max(1, -(-n // cols))
    grid = np.zeros((rows * (h + padding) + padding, cols * (w + padding) + padding, 3), dtype=np.uint8)
    grid[:] = 255
    arr = images.permute(0, 2, 3, 1).cpu().numpy()
    for i in range(n):
        r, k = divmod(i, cols)
        y, x = padding + r * (h + padding), padding + k * (w + padding)
        grid[y:y + h, x:x + w] = arr[i]
    return grid


def save_grid(images: torch.Tensor, path: str | os.PathLike, *, nrow: int = 8, scale: int = 2) -> Path:
    """Save a uint8 batch as a PNG grid (each pixel drawn ``scale`` x ``scale``)."""
    grid = image_grid(images, nrow=nrow)
    img = Image.fromarray(grid)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    img.save(tmp)
    os.replace(tmp, path)
    return path


def save_comparison(
    rows: Sequence[tuple[str, torch.Tensor]],
    path: str | os.PathLike,
    *,
    title: str | None = None,
) -> Path:
    """One labelled row per ``(label, uint8 batch)``, e.g. real and synthetic images of each class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows = len(rows)
    width = max(len(batch) for _, batch in rows)
    fig, axes = plt.subplots(n_rows, 1, figsize=(max(6, width * 0.55), 0.75 * n_rows + (0.5 if title else 0.1)),
                             squeeze=False)
    for ax, (label, batch) in zip(axes[:, 0], rows):
        ax.imshow(image_grid(batch, nrow=width), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
        for spine in ax.spines.values():
            spine.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path
