"""Pictures: sample grids and real-vs-synthetic comparisons."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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


def save_grid(images: torch.Tensor, path: str | os.PathLike, *, nrow: int = 8, scale: int = 2,
              labels: torch.Tensor | np.ndarray | Sequence[int] | None = None,
              class_names: Sequence[str] | None = None) -> Path:
    """Save a uint8 batch as a PNG grid (each pixel drawn ``scale`` x ``scale``).

    With ``labels`` (one class id per image) the images are grouped by class, each class in its own rows of at
    most ``nrow`` images, and each class's first row is labelled with its name (``class_names``; else its id).
    """
    if labels is None:
        img = _scaled(image_grid(images, nrow=nrow), scale)
    else:
        img = _class_rows(images, labels, class_names=class_names, nrow=nrow, scale=scale)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    img.save(tmp)
    os.replace(tmp, path)
    return path


def _scaled(grid: np.ndarray, scale: int) -> Image.Image:
    img = Image.fromarray(grid)
    return img.resize((img.width * scale, img.height * scale), Image.NEAREST) if scale > 1 else img


def _class_rows(images: torch.Tensor, labels: Any, *, class_names: Sequence[str] | None, nrow: int,
                scale: int) -> Image.Image:
    """The images of each class (in class-id order) in rows of at most ``nrow``, its name left of its first row."""
    from PIL import ImageDraw, ImageFont

    labels = np.asarray(torch.as_tensor(labels).cpu()).reshape(-1)
    if len(labels) != len(images):
        raise ValueError(f"save_grid: {len(labels)} labels for {len(images)} images; give one class id per image")
    blocks = [(class_names[c] if class_names is not None and 0 <= c < len(class_names) else f"class {c}",
               _scaled(image_grid(images[torch.from_numpy(np.flatnonzero(labels == c))], nrow=nrow), scale))
              for c in sorted(set(labels.tolist()))]
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    margin = max(measure.textbbox((0, 0), name, font=font)[2] for name, _ in blocks) + 8
    canvas = Image.new("RGB", (margin + max(b.width for _, b in blocks), sum(b.height for _, b in blocks)), "white")
    draw, y = ImageDraw.Draw(canvas), 0
    for name, block in blocks:
        canvas.paste(block, (margin, y))
        first_row = min(block.height, (images.shape[-2] + 4) * scale)  # the first row of images, padding included
        top = measure.textbbox((0, 0), name, font=font)
        draw.text((4, y + (first_row - (top[3] - top[1])) // 2 - top[1]), name, fill="black", font=font)
        y += block.height
    return canvas


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
