"""SyntheticDataset: mix generator output into a real torch data set."""
from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .data.imageio import convert_channels, resize_batch

LabelDistribution = str | Mapping[int | str, float]


def check_ratio(ratio: Any) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not (0 <= ratio < 1) or math.isnan(ratio):
        raise ValueError(f"ratio={ratio!r}: the synthetic share of each epoch must be in [0, 1), e.g. 0.3 "
                         "(ratio=0 gives the real data alone)")
    return float(ratio)


def largest_remainder(total: int, weights: np.ndarray) -> np.ndarray:
    """Split ``total`` items into integer counts proportional to ``weights`` (sum exactly ``total``)."""
    weights = np.asarray(weights, dtype=np.float64)
    share = weights / weights.sum() * total
    counts = np.floor(share).astype(np.int64)
    order = np.argsort(-(share - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return counts


def class_weights(distribution: LabelDistribution, *, num_classes: int, classes: list[str],
                  real_targets: np.ndarray | None) -> np.ndarray:
    """Per-class weights for ``"match"`` (real class frequencies), ``"balanced"`` or a dict."""
    if isinstance(distribution, str):
        if distribution == "balanced" or (distribution == "match" and real_targets is None):
            return np.ones(num_classes)
        if distribution == "match":
            counts = np.bincount(np.asarray(real_targets, dtype=np.int64), minlength=num_classes).astype(np.float64)
            if counts.sum() == 0:
                raise ValueError("label_distribution='match' needs a non-empty real data set")
            return counts
        raise ValueError(f"label_distribution={distribution!r}: use 'match', 'balanced' or a dict "
                         "{class id or name: weight}")
    if isinstance(distribution, Mapping):
        weights = np.zeros(num_classes)
        for key, value in distribution.items():
            if isinstance(key, str) and not key.isdigit():
                if key not in classes:
                    raise ValueError(f"label_distribution: unknown class {key!r}; classes are {classes}")
                idx = classes.index(key)
            else:
                if isinstance(key, bool) or not isinstance(key, (int, str, np.integer)):
                    raise ValueError(f"label_distribution: key {key!r} must be a class id (int) or a class name")
                idx = int(key)
                if not 0 <= idx < num_classes:
                    raise ValueError(f"label_distribution: class id {idx} is outside [0, {num_classes})")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or math.isnan(value):
                raise ValueError(f"label_distribution: weight {value!r} of class {key!r} must be a number >= 0")
            weights[idx] = float(value)
        if weights.sum() <= 0:
            raise ValueError(f"label_distribution={dict(distribution)!r}: at least one weight must be > 0")
        return weights
    raise ValueError(f"label_distribution={distribution!r}: use 'match', 'balanced' or a dict {{class: weight}}")


def _real_targets(real: Dataset) -> np.ndarray:
    targets = getattr(real, "targets", None)
    if targets is None:  # a plain data set: read the labels once
        targets = [int(real[i][1]) for i in range(len(real))]
    return np.asarray(targets, dtype=np.int64)


class SyntheticDataset(Dataset):
    """A data set whose items are real ones plus a ``ratio`` share of generated ones.

    With ``real``: an epoch has ``round(len(real) / (1 - ratio))`` items; indices ``0 .. len(real)-1``
    are the real items in order, the rest synthetic (``is_synthetic(i)``; a shuffling sampler mixes
    them). Synthetic labels follow ``label_distribution``: ``"match"`` (the real class frequencies),
    ``"balanced"``, or a dict ``{class id or name: weight}``. Without ``real``, ``length`` synthetic
    items (``"match"`` then means balanced).

    Synthetic images are generated once, in batches, into a pool of ``pool_size`` images (default:
    one per synthetic item) from ``torch.Generator().manual_seed(seed)``, in the main process: DataLoader
    workers only read the pool. They come in the real items' format (uint8 ``C x H x W``, resized and
    channel-converted to the real data's when they differ) and go through the same ``transform``.
    """

    def __init__(
        self,
        gen: Any,
        ratio: float = 0.3,
        *,
        real: Dataset | None = None,
        length: int | None = None,
        label_distribution: LabelDistribution = "match",
        transform: Callable[[torch.Tensor], Any] | None = None,
        seed: int = 0,
        pool_size: int | None = None,
        batch_size: int = 256,
    ) -> None:
        if isinstance(gen, (str, os.PathLike)):
            from .generators import load_generator

            gen = load_generator(gen)
        if not callable(getattr(gen, "sample", None)) or not hasattr(gen, "num_classes"):
            raise TypeError(f"gen must be a synthaug generator (or a checkpoint folder), got {type(gen).__name__}")
        self.ratio = check_ratio(ratio)
        if real is None and length is None:
            raise ValueError("give real=<data set> (the synthetic share follows ratio) or length=<number of synthetic items>")
        if real is not None and length is not None:
            raise ValueError("give either real= (the epoch length follows from ratio) or length=, not both")
        if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 0):
            raise ValueError(f"length={length!r} must be a non-negative integer")
        if pool_size is not None and (isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1):
            raise ValueError(f"pool_size={pool_size!r} must be a positive integer or None (one image per synthetic item)")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} must be a positive integer")

        self.real = real
        self.transform = transform
        self.seed = int(seed)
        self.num_classes = int(gen.num_classes)
        real_classes = getattr(real, "classes", None)
        if real is not None and real_classes is not None and len(real_classes) != self.num_classes:
            raise ValueError(f"the generator makes {self.num_classes} classes but the real data set has "
                             f"{len(real_classes)} ({list(real_classes)}); train a generator on this data set")
        self.classes = list(real_classes) if real_classes is not None else [str(c) for c in range(self.num_classes)]
        if real is not None and getattr(real, "transform", None) is not None:
            warnings.warn("the real data set has its own transform, which synthetic items will not get; give the "
                          "transform to SyntheticDataset(transform=...) instead so both get the same", stacklevel=2)

        self.real_targets = _real_targets(real) if real is not None else None
        if self.real_targets is not None and len(self.real_targets) and self.real_targets.max() >= self.num_classes:
            raise ValueError(f"the real data set has label {int(self.real_targets.max())}, but the generator has only "
                             f"{self.num_classes} classes")
        self.num_real = 0 if real is None else len(real)
        total = length if real is None else int(round(self.num_real / (1 - self.ratio)))
        self.num_synthetic = total - self.num_real
        weights = class_weights(label_distribution, num_classes=self.num_classes, classes=self.classes,
                                real_targets=self.real_targets)
        rng = np.random.default_rng([self.seed, 104729])
        counts = largest_remainder(self.num_synthetic, weights)
        self.synthetic_labels = rng.permutation(np.repeat(np.arange(self.num_classes), counts))

        channels, size = self._target_format(real, gen)
        self.pool, self.pool_labels = self._make_pool(gen, weights, counts, pool_size, batch_size, channels, size)
        self._pool_index = self._assign_pool(rng)

    # ----------------------------------------------------------------- construction helpers
    @staticmethod
    def _target_format(real: Dataset | None, gen: Any) -> tuple[int, int]:
        if real is None:
            return int(gen.channels), int(gen.image_size)
        channels, size = getattr(real, "channels", None), getattr(real, "image_size", None)
        if channels is None or size is None:
            if len(real) == 0:
                return int(gen.channels), int(gen.image_size)
            image = real[0][0]
            if not (isinstance(image, torch.Tensor) and image.dtype == torch.uint8 and image.ndim == 3):
                raise ValueError("the real data set must give uint8 tensors C x H x W (to match synthetic images to); "
                                 "move its transform to SyntheticDataset(transform=...)")
            channels, size = image.shape[0], image.shape[-1]
        if channels not in (1, 3) and channels != gen.channels:
            raise ValueError(f"real images have {channels} channels, the generator makes {gen.channels}; cannot convert")
        return int(channels), int(size)

    def _make_pool(self, gen, weights, counts, pool_size, batch_size, channels, size):
        if pool_size is None:
            pool_counts = counts
        else:
            pool_counts = largest_remainder(pool_size, np.where(counts > 0, weights, 0.0)) if counts.sum() else counts
            pool_counts = np.where((counts > 0) & (pool_counts == 0), 1, pool_counts)
        pool_labels = np.repeat(np.arange(self.num_classes), pool_counts)
        n = int(pool_counts.sum())
        torch_gen = torch.Generator().manual_seed(self.seed)
        chunks = []
        with tqdm(total=n, desc="sampling synthetic pool", unit="img", disable=None if n >= 2048 else True) as bar:
            for start in range(0, n, batch_size):
                labels = torch.from_numpy(pool_labels[start:start + batch_size])
                images = gen.sample(len(labels), labels, generator=torch_gen)
                images = resize_batch(convert_channels(images, channels), size)
                chunks.append(images)
                bar.update(len(labels))
        pool = torch.cat(chunks) if chunks else torch.zeros(0, channels, size, size, dtype=torch.uint8)
        return pool, pool_labels

    def _assign_pool(self, rng: np.random.Generator) -> np.ndarray:
        index = np.zeros(self.num_synthetic, dtype=np.int64)
        for c in range(self.num_classes):
            items = np.flatnonzero(self.synthetic_labels == c)
            slots = np.flatnonzero(self.pool_labels == c)
            if len(items):
                index[items] = slots[np.arange(len(items)) % len(slots)]
        return index

    # ----------------------------------------------------------------- data set protocol
    def __len__(self) -> int:
        return self.num_real + self.num_synthetic

    def _check_index(self, index: int) -> int:
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {n} items")
        return index

    def is_synthetic(self, index: int) -> bool:
        """Whether item ``index`` is a generated one."""
        return self._check_index(index) >= self.num_real

    def __getitem__(self, index: int):
        index = self._check_index(index)
        if index < self.num_real:
            image, label = self.real[index]
        else:
            j = index - self.num_real
            image, label = self.pool[self._pool_index[j]].clone(), int(self.synthetic_labels[j])
        if self.transform is not None:
            image = self.transform(image)
        return image, label

    @property
    def targets(self) -> np.ndarray:
        real = self.real_targets if self.real_targets is not None else np.zeros(0, dtype=np.int64)
        return np.concatenate([real, self.synthetic_labels.astype(np.int64)])

    @property
    def groups(self) -> np.ndarray:
        real_groups = getattr(self.real, "groups", None)
        real_groups = np.asarray(real_groups).astype(str) if real_groups is not None else np.array(
            ["real"] * self.num_real)
        return np.concatenate([real_groups, np.array(["synthetic"] * self.num_synthetic)])

    def __repr__(self) -> str:
        return (f"SyntheticDataset(real={self.num_real}, synthetic={self.num_synthetic}, ratio={self.ratio}, "
                f"pool={len(self.pool)}, classes={self.classes})")
