"""Pools of pre-generated synthetic images: in memory, or on disk and memory-mapped.

A pool folder holds ``images.npy`` (uint8 N x C x H x W), ``labels.npy`` (int64 N) and ``pool.json``
(how it was made). Loading memory-maps the images, so DataLoader workers (and processes) share one
copy read from disk, and nothing regenerates.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

POOL_META = "pool.json"


@dataclass
class SyntheticPool:
    images: np.ndarray  # uint8 (N, C, H, W), possibly memory-mapped
    labels: np.ndarray  # int64 (N,)
    num_classes: int
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels)
        if self.labels.ndim != 1 or not np.issubdtype(self.labels.dtype, np.integer):
            raise ValueError(f"pool labels must be a 1-D integer array, got {self.labels.dtype} {self.labels.shape}")
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(f"pool images must be uint8 (N, C, H, W), got {self.images.dtype} {self.images.shape}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"pool has {len(self.images)} images but {len(self.labels)} labels")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= self.num_classes):
            raise ValueError(f"pool labels must be in [0, {self.num_classes})")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[2])

    def indices_of(self, label: int) -> np.ndarray:
        return np.flatnonzero(self.labels == label)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the pool folder atomically (temporary folder, then rename); refuses to overwrite."""
        directory = Path(directory)
        if directory.exists():
            raise FileExistsError(f"{directory} exists; choose another pool folder or delete it first")
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            np.save(tmp / "images.npy", np.ascontiguousarray(self.images))
            np.save(tmp / "labels.npy", np.asarray(self.labels, dtype=np.int64))
            meta = {**self.meta, "num_classes": self.num_classes, "count": len(self)}
            (tmp / POOL_META).write_text(json.dumps(meta, indent=2))
            from .utils import make_public

            make_public(tmp)
            os.replace(tmp, directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return directory


def is_pool(path: str | os.PathLike) -> bool:
    return (Path(path) / POOL_META).is_file()


def load_pool(directory: str | os.PathLike) -> SyntheticPool:
    """Memory-map a pool folder written by ``SyntheticPool.save`` / ``synthaug sample --pool``."""
    directory = Path(directory)
    if not is_pool(directory):
        raise FileNotFoundError(f"{directory} is not a synthaug pool: it needs {POOL_META}, images.npy and labels.npy "
                                "(made by `synthaug sample --pool DIR`)")
    try:
        meta = json.loads((directory / POOL_META).read_text())
        images = np.load(directory / "images.npy", mmap_mode="r", allow_pickle=False)
        labels = np.load(directory / "labels.npy", allow_pickle=False).astype(np.int64)
        return SyntheticPool(images, labels, int(meta["num_classes"]), meta)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{directory}: damaged pool ({err}); make it again with `synthaug sample --pool`") from err


def generate_pool(gen: Any, labels: np.ndarray, *, seed: int = 0, batch_size: int = 256,
                  desc: str = "sampling synthetic pool") -> SyntheticPool:
    """Sample one image per entry of ``labels`` from ``gen``, in batches, from ``torch.Generator().manual_seed(seed)``."""
    labels = np.asarray(labels, dtype=np.int64)
    torch_gen = torch.Generator().manual_seed(int(seed))
    chunks = []
    n = len(labels)
    with tqdm(total=n, desc=desc, unit="img", disable=None if n >= 2048 else True) as bar:
        for start in range(0, n, batch_size):
            part = torch.from_numpy(labels[start:start + batch_size])
            chunks.append(gen.sample(len(part), part, generator=torch_gen).numpy())
            bar.update(len(part))
    images = np.concatenate(chunks) if chunks else np.zeros((0, gen.channels, gen.image_size, gen.image_size), np.uint8)
    meta = {"generator": getattr(gen, "generator_name", type(gen).__name__),
            "generator_options": getattr(gen, "generator_options", {}), "seed": int(seed)}
    return SyntheticPool(images, labels, int(gen.num_classes), meta)
