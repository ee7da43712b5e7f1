"""SyntheticDataset: mix generator output into a real torch data set."""
from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .data.imageio import convert_channels, resize_batch
from .pool import SyntheticPool, generate_pool, is_pool, load_pool



@dataclass(frozen=True)
class ClassQuotas:
    """Exact numbers of synthetic items per class (class id or name -> count), instead of a ratio.

    ``SyntheticDataset(gen, None, real=train, label_distribution=ClassQuotas({"Parasitized": 500}))``
    adds exactly 500 synthetic parasitized cells to every epoch.
    """

    counts: Mapping[int | str, int]


LabelDistribution = str | Mapping[int | str, float] | ClassQuotas
#: a quality filter: (uint8 images (n, C, H, W), requested labels (n,)) -> bool mask of the images to keep
QualityFilter = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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
    ``"balanced"``, a dict ``{class id or name: weight}``, or ``ClassQuotas`` (exact counts; then pass
    ``ratio=None``). Without ``real``, ``length`` synthetic items (``"match"`` then means balanced).

    ``gen`` is a generator, a generator checkpoint folder, or a pool (``SyntheticPool`` or a folder made by
    ``synthaug sample --pool``, memory-mapped: nothing is generated). From a generator, images are
    generated in batches into a pool of ``pool_size`` images (default: one per synthetic item) from
    ``torch.Generator().manual_seed(seed)``, in the main process: DataLoader workers only read the pool.
    Synthetic images come in the real items' format (uint8 ``C x H x W``, resized and channel-converted
    when they differ) and go through the same ``transform``.

    ``refresh_every=N``: call ``set_epoch(epoch)`` before each epoch (as with ``DistributedSampler``);
    every N epochs the pool is regenerated (from a generator) or re-drawn (from a larger pool), with a
    seed derived from ``seed`` and the epoch, so long trainings do not reuse the same images and runs stay
    reproducible. Use non-persistent DataLoader workers with refresh (they are re-forked each epoch).

    ``quality_filter``: a callable ``(images, labels) -> keep mask`` or a ``ClassifierFilter``; rejected
    images are replaced by new ones (same seed, same result) and ``filter_report`` gives the rejection rate.
    """

    def __init__(
        self,
        gen: Any,
        ratio: float | None = 0.3,
        *,
        real: Dataset | None = None,
        length: int | None = None,
        label_distribution: LabelDistribution = "match",
        transform: Callable[[torch.Tensor], Any] | None = None,
        seed: int = 0,
        pool_size: int | None = None,
        batch_size: int = 256,
        refresh_every: int | None = None,
        quality_filter: QualityFilter | None = None,
        max_filter_rounds: int = 20,
    ) -> None:
        self._source_pool: SyntheticPool | None = None
        if isinstance(gen, SyntheticPool):
            self._source_pool = gen
        elif isinstance(gen, (str, os.PathLike)):
            if is_pool(gen):
                self._source_pool = load_pool(gen)
            else:
                from .generators import load_generator

                gen = load_generator(gen)
        source = self._source_pool if self._source_pool is not None else gen
        if self._source_pool is None and (not callable(getattr(gen, "sample", None)) or not hasattr(gen, "num_classes")):
            raise TypeError(f"gen must be a synthaug generator, a checkpoint folder or a pool, got {type(gen).__name__}")
        self._gen = None if self._source_pool is not None else gen
        quotas = label_distribution if isinstance(label_distribution, ClassQuotas) else None
        if quotas is not None:
            if ratio is not None:
                raise ValueError("with ClassQuotas the quotas set the synthetic count: pass ratio=None")
        else:
            ratio = check_ratio(ratio)
        if real is None and length is None and quotas is None:
            raise ValueError("give real=<data set> (the synthetic share follows ratio) or length=<number of synthetic items>")
        if real is not None and length is not None:
            raise ValueError("give either real= (the epoch length follows from ratio) or length=, not both")
        if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 0):
            raise ValueError(f"length={length!r} must be a non-negative integer")
        if pool_size is not None and (isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1):
            raise ValueError(f"pool_size={pool_size!r} must be a positive integer or None (one image per synthetic item)")
        if pool_size is not None and self._source_pool is not None:
            raise ValueError("pool_size applies when generating; a ready pool is used as it is")
        if quality_filter is not None and self._source_pool is not None:
            raise ValueError("quality_filter applies when generating; filter a ready pool before saving it")
        for name, value in (("batch_size", batch_size), ("max_filter_rounds", max_filter_rounds)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        if refresh_every is not None and (isinstance(refresh_every, bool) or not isinstance(refresh_every, int)
                                          or refresh_every < 1):
            raise ValueError(f"refresh_every={refresh_every!r} must be a positive number of epochs or None")
        if quality_filter is not None and not callable(quality_filter):
            raise ValueError("quality_filter must be a callable (images, labels) -> keep mask, e.g. a ClassifierFilter")

        self.real = real
        self.transform = transform
        self.seed = int(seed)
        self.batch_size, self.refresh_every = batch_size, refresh_every
        self.quality_filter, self.max_filter_rounds = quality_filter, max_filter_rounds
        self.num_classes = int(source.num_classes)
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
        if quotas is not None:
            counts = self._quota_counts(quotas)
            weights = counts.astype(np.float64)
        else:
            total = length if real is None else int(round(self.num_real / (1 - ratio)))
            weights = class_weights(label_distribution, num_classes=self.num_classes, classes=self.classes,
                                    real_targets=self.real_targets)
            counts = largest_remainder(total - self.num_real, weights)
        self.num_synthetic = int(counts.sum())
        self.ratio = self.num_synthetic / max(1, self.num_real + self.num_synthetic) if quotas is not None else ratio
        rng = np.random.default_rng([self.seed, 104729])
        self.synthetic_labels = rng.permutation(np.repeat(np.arange(self.num_classes), counts))
        self.channels, self.image_size = self._target_format(real, source)
        self.class_counts = counts
        if self._source_pool is None:
            if pool_size is None:
                plan = counts
            else:
                plan = largest_remainder(pool_size, np.where(counts > 0, weights, 0.0)) if counts.sum() else counts
                plan = np.where((counts > 0) & (plan == 0), 1, plan)
            self._plan_labels = np.repeat(np.arange(self.num_classes), plan)
        else:
            for c in np.flatnonzero(counts):
                if not len(self._source_pool.indices_of(int(c))):
                    raise ValueError(f"the pool has no image of class {c} ({self.classes[c]}), which needs {counts[c]}")
        self.filter_report: dict[str, Any] | None = None
        self.epoch = 0
        self._generation = -1
        self._refresh(0)

    # ----------------------------------------------------------------- construction helpers
    def _quota_counts(self, quotas: ClassQuotas) -> np.ndarray:
        counts = np.zeros(self.num_classes, dtype=np.int64)
        for key, value in quotas.counts.items():
            idx = self.classes.index(key) if isinstance(key, str) and key in self.classes else key
            if isinstance(idx, bool) or not isinstance(idx, (int, np.integer)) or not 0 <= idx < self.num_classes:
                raise ValueError(f"ClassQuotas: unknown class {key!r}; classes are {self.classes}")
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"ClassQuotas: the count of class {key!r} must be an integer >= 0, got {value!r}")
            counts[idx] = int(value)
        return counts

    @staticmethod
    def _target_format(real: Dataset | None, source: Any) -> tuple[int, int]:
        channels, size = getattr(source, "channels"), getattr(source, "image_size")
        if real is None:
            return int(channels), int(size)
        real_channels, real_size = getattr(real, "channels", None), getattr(real, "image_size", None)
        if real_channels is None or real_size is None:
            if len(real) == 0:
                return int(channels), int(size)
            image = real[0][0]
            if not (isinstance(image, torch.Tensor) and image.dtype == torch.uint8 and image.ndim == 3):
                raise ValueError("the real data set must give uint8 tensors C x H x W (to match synthetic images to); "
                                 "move its transform to SyntheticDataset(transform=...)")
            real_channels, real_size = image.shape[0], image.shape[-1]
        if {int(real_channels), int(channels)} - {1, 3} and real_channels != channels:
            raise ValueError(f"real images have {real_channels} channels, the generator makes {channels}; cannot convert")
        return int(real_channels), int(real_size)

    def _generation_seed(self, generation: int) -> int:
        return self.seed if generation == 0 else self.seed + 1_000_003 * generation

    def _refresh(self, generation: int) -> None:
        if generation == self._generation:
            return
        seed = self._generation_seed(generation)
        if self._source_pool is not None:
            self._images = self._source_pool.images  # memory-mapped: workers read, nothing is copied
            self.pool_labels = self._source_pool.labels
            rng = np.random.default_rng([seed, 15485863])
            self._pool_index = self._assign(lambda c: rng.permutation(self._source_pool.indices_of(c)))
        else:
            images = self._generate(self._plan_labels, seed)
            self._images = resize_batch(convert_channels(images, self.channels), self.image_size)
            self.pool_labels = self._plan_labels
            self._pool_index = self._assign(lambda c: np.flatnonzero(self.pool_labels == c))
        self._generation = generation

    def _assign(self, slots_of: Callable[[int], np.ndarray]) -> np.ndarray:
        """Pool row of every synthetic item: the items of class c cycle through ``slots_of(c)``."""
        index = np.zeros(self.num_synthetic, dtype=np.int64)
        for c in range(self.num_classes):
            items = np.flatnonzero(self.synthetic_labels == c)
            if len(items):
                slots = slots_of(c)
                index[items] = slots[np.arange(len(items)) % len(slots)]
        return index

    def _generate(self, labels: np.ndarray, seed: int) -> torch.Tensor:
        gen = self._gen
        if gen is None:
            raise RuntimeError("this SyntheticDataset was copied into another process without its generator; call "
                               "set_epoch() in the main process, before the DataLoader starts its workers")
        if self.quality_filter is None:
            return torch.from_numpy(generate_pool(gen, labels, seed=seed, batch_size=self.batch_size).images)
        empty = torch.zeros(0, gen.channels, gen.image_size, gen.image_size, dtype=torch.uint8)
        return self._generate_filtered(labels, torch.Generator().manual_seed(seed), empty)

    def _generate_filtered(self, labels: np.ndarray, torch_gen: torch.Generator, empty: torch.Tensor) -> torch.Tensor:
        """Sample until every requested label has an image the filter keeps (deterministic for a seed)."""
        need = np.bincount(labels, minlength=self.num_classes)
        kept: dict[int, list[torch.Tensor]] = {c: [] for c in range(self.num_classes)}
        generated = np.zeros(self.num_classes, dtype=np.int64)
        accepted = np.zeros(self.num_classes, dtype=np.int64)
        for _ in range(self.max_filter_rounds):
            missing = np.repeat(np.arange(self.num_classes), np.maximum(need - accepted, 0))
            if not len(missing):
                break
            for start in range(0, len(missing), self.batch_size):
                part = torch.from_numpy(missing[start:start + self.batch_size])
                images = self._gen.sample(len(part), part, generator=torch_gen)
                keep = torch.as_tensor(self.quality_filter(images, part)).bool().cpu()
                if keep.shape != (len(part),):
                    raise ValueError(f"quality_filter returned shape {tuple(keep.shape)}; expected ({len(part)},)")
                for c in range(self.num_classes):
                    mask = part == c
                    generated[c] += int(mask.sum())
                    chosen = images[mask & keep]
                    kept[c].append(chosen)
                    accepted[c] += len(chosen)
        short = [self.classes[c] for c in range(self.num_classes) if accepted[c] < need[c]]
        rates = {self.classes[c]: (1 - accepted[c] / generated[c]) if generated[c] else 0.0
                 for c in range(self.num_classes)}
        self.filter_report = {"generated": int(generated.sum()), "accepted": int(accepted.sum()),
                              "rejection_rate": float(1 - accepted.sum() / max(1, generated.sum())),
                              "rejection_rate_per_class": rates}
        if short:
            raise ValueError(f"the quality filter rejected too many images of class(es) {short} "
                             f"(rejection rates {rates}) after {self.max_filter_rounds} rounds; lower its threshold, "
                             "raise max_filter_rounds, or train the generator longer")
        logging.getLogger("synthaug").info("quality filter: rejected %.1f %% of %d generated images",
                                           100 * self.filter_report["rejection_rate"], generated.sum())
        out = [torch.cat(kept[c])[: need[c]] if need[c] else empty for c in range(self.num_classes)]
        by_class = {c: iter(out[c]) for c in range(self.num_classes)}
        return torch.stack([next(by_class[int(c)]) for c in labels]) if len(labels) else empty

    # ----------------------------------------------------------------- epochs
    def set_epoch(self, epoch: int) -> None:
        """Tell the data set the epoch (call it before each epoch's iterator is created, in every process).

        With ``refresh_every=N`` the pool changes every N epochs; the same epoch always gives the same pool.
        """
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch={epoch!r} must be a non-negative integer")
        self.epoch = epoch
        if self.refresh_every:
            self._refresh(epoch // self.refresh_every)

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers (and spawned processes) read the pool; the generator stays in this process.
        state = self.__dict__.copy()
        state["_gen"] = None
        return state

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

    def _synthetic_image(self, j: int) -> torch.Tensor:
        row = self._images[self._pool_index[j]]
        if isinstance(row, torch.Tensor):
            return row.clone()
        image = torch.from_numpy(np.array(row, copy=True))  # a memory-mapped pool: convert on read
        if image.shape[0] != self.channels or image.shape[-1] != self.image_size:
            image = resize_batch(convert_channels(image[None], self.channels), self.image_size)[0]
        return image

    def __getitem__(self, index: int):
        index = self._check_index(index)
        if index < self.num_real:
            image, label = self.real[index]
        else:
            j = index - self.num_real
            image, label = self._synthetic_image(j), int(self.synthetic_labels[j])
        if self.transform is not None:
            image = self.transform(image)
        return image, label

    @property
    def pool(self) -> torch.Tensor:
        """The current pool of synthetic images (uint8 N x C x H x W; a copy when it is memory-mapped)."""
        if isinstance(self._images, torch.Tensor):
            return self._images
        return torch.from_numpy(np.array(self._images, copy=True))

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
        extra = ""
        if self.filter_report is not None:
            extra = f", filter rejected {100 * self.filter_report['rejection_rate']:.1f} %"
        return (f"SyntheticDataset(real={self.num_real}, synthetic={self.num_synthetic}, ratio={self.ratio:.3g}, "
                f"pool={len(self.pool_labels)}, classes={self.classes}{extra})")
