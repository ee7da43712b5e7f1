"""SyntheticDataset: mix generator output into a real torch data set.

The real data set may be any map-style torch data set of ``(image, label)`` items: images as PIL images,
uint8 tensors ``(C, H, W)``, float tensors in [0, 1] or numpy ``(H, W, C)`` arrays; labels as Python or
numpy integers, 0-d tensors or one-element arrays (MedMNIST's ``(1,)``). Each item is converted once, on
read, into the one item format both kinds share, ``(uint8 tensor (C, S, S), int)`` (``synthaug.mix.items``).
Options change the label and the item: ``teacher=TeacherLabels(...)`` (``synthaug.mix.teacher``) relabels the
synthetic images, ``return_is_synthetic=True`` adds a third element saying which items are generated.
"""
from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..checks import check_int, is_int
from ..data.imageio import convert_channels, resize_batch
from .items import (augmenting_steps, class_id, declared, fit_image, read_targets, real_classes, real_transforms,
                    split_item, to_uint8_image)
from .pool import (Processes, SyntheticPool, check_device, check_progress, current_processes, describe_filter,
                   generate_pool, generation_device, labels_fingerprint, sample_until_kept, shared_pool,
                   weights_fingerprint)
from .quotas import ClassQuotas, LabelDistribution, QualityFilter, check_ratio, class_weights, largest_remainder
from ..sources import match_classes, open_source, source_class_names
from .dataset_options import check_dataset_arguments
from .teacher import (TeacherLabels, decode_array, encode_array, labels_from_logits, one_hot, teacher_logits,
                      teacher_report)

__all__ = ["SyntheticDataset"]


class SyntheticDataset(Dataset):
    """A data set whose items are real ones plus a ``ratio`` share of generated ones.

    With ``real``: an epoch has ``round(len(real) / (1 - ratio))`` items; indices ``0 .. len(real)-1``
    are the real items in order, the rest synthetic (``is_synthetic(i)``; a shuffling sampler mixes
    them). Synthetic labels follow ``label_distribution``: ``"match"`` (the real class frequencies),
    ``"balanced"``, a dict ``{class id or name: weight}``, or ``ClassQuotas`` (exact counts; then pass
    ``ratio=None``). Without ``real``, ``length`` synthetic items (``"match"`` then means balanced).

    ``real`` is any map-style torch data set of ``(image, label)`` items (see the module docstring; a
    ``Subset`` or ``random_split`` part reads its parent's ``targets``, so nothing is decoded up front).
    Every item, real or synthetic, is ``(image, label)`` with ``image`` a uint8 tensor ``(C, S, S)`` (then
    ``transform(image)`` when a transform is given) and ``label`` a Python ``int`` (then
    ``target_transform(label)``; ``class_to_idx`` maps class names to ids, as torchvision's). ``C`` and ``S`` are the
    real data's channels and size (its ``channels`` / ``image_size`` attributes, else its first image;
    non-square real images make ``S`` the generator's size); real images of another size are letterboxed to
    ``S``, synthetic ones resized, and 1 <-> 3 channels converted. Without ``real``: the generator's format.

    ``gen`` is a generator, a generator checkpoint folder, or a pool (``SyntheticPool`` or a folder made by
    ``synthaug sample --pool``, memory-mapped: nothing is generated). From a generator, images are
    generated in batches into a pool of ``pool_size`` images (default: one per synthetic item) from
    ``torch.Generator().manual_seed(seed)``, in the main process: DataLoader workers only read the pool.
    ``device``: where to sample (default: where the generator is; a checkpoint folder loads on the CPU).
    ``progress``: a progress bar while sampling (None: on a terminal, once sampling takes over two seconds).

    ``pool_dir``: the folder the pool is written to and read from. If it already holds the pool this data
    set asks for (same generator weights, seed, labels and filter), it is memory-mapped and nothing is
    sampled; a pool made for something else is refused. Under several processes (``accelerator=`` an
    ``accelerate.Accelerator``, or an initialised ``torch.distributed``) the main process samples and writes
    it while the others wait, then all read it: the pool is sampled once. Give a folder all processes see.

    ``refresh_every=N``: call ``set_epoch(epoch)`` before each epoch (as with ``DistributedSampler``);
    every N epochs the pool is regenerated (from a generator) or re-drawn (from a larger pool), with a
    seed derived from ``seed`` and the epoch, so long trainings do not reuse the same images and runs stay
    reproducible. Use non-persistent DataLoader workers with refresh (they are re-forked each epoch). With
    ``pool_dir`` each refreshed pool is kept in ``pool_dir/refresh-NNNN``.

    ``quality_filter``: a callable ``(images, labels) -> keep mask`` or a ``ClassifierFilter``; rejected
    images are replaced by new ones (same seed, same result) and ``filter_report`` gives the rejection rate.

    ``teacher``: a ``TeacherLabels`` (``synthaug.mix.teacher``): a classifier trained on the real images only
    relabels the synthetic ones. It runs once per pool, in the process that samples it, and its logits are kept
    with the pool (in ``pool_dir``, whose recipe names the teacher). ``mode="soft"``: every label is a float32
    ``(num_classes,)`` tensor of probabilities (real items one-hot), which ``nn.CrossEntropyLoss`` takes as it
    is; ``mode="hard"``: a synthetic item's label is the teacher's argmax. ``teacher_report`` gives how often
    the teacher agrees with the generator's labels; ``synthetic_labels`` stay the generator's.

    ``return_is_synthetic=True``: items are ``(image, label, is_synthetic)`` (a bool), for a loss that weights
    synthetic items (``synthaug.mix.weighted_cross_entropy``). ``length`` without ``real``: synthetic
    items only (e.g. for synthetic pre-training; ``ratio`` is then not used and ``self.ratio`` is 1).
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
        target_transform: Callable[[Any], Any] | None = None,
        seed: int = 0,
        pool_size: int | None = None,
        batch_size: int = 256,
        refresh_every: int | None = None,
        quality_filter: QualityFilter | None = None,
        max_filter_rounds: int = 20,
        device: str | torch.device | None = None,
        pool_dir: str | os.PathLike | None = None,
        accelerator: Any = None,
        progress: bool | None = None,
        teacher: TeacherLabels | None = None,
        return_is_synthetic: bool = False,
    ) -> None:
        self.device = check_device(device, "SyntheticDataset")
        self.progress = check_progress(progress, "SyntheticDataset")
        self._source_pool, self._gen = open_source(gen, device=self.device)
        if real is not None and self._gen is not None:  # class names checked (a folder or callable re-ordered)
            self._gen = match_classes(self._gen, real_classes(real), where="the real data set")
        source = self._source_pool if self._source_pool is not None else self._gen
        quotas = label_distribution if isinstance(label_distribution, ClassQuotas) else None
        ratio = check_dataset_arguments(ratio, quotas=quotas, real=real, length=length, pool_size=pool_size,
                                        batch_size=batch_size, refresh_every=refresh_every,
                                        quality_filter=quality_filter, max_filter_rounds=max_filter_rounds,
                                        ready_pool=self._source_pool is not None, device=device, pool_dir=pool_dir,
                                        teacher=teacher, return_is_synthetic=return_is_synthetic,
                                        target_transform=target_transform)
        self.pool_dir = None if pool_dir is None else Path(pool_dir).expanduser().absolute()
        self._processes: Processes | None = current_processes(accelerator)
        self._identity: dict[str, Any] | None = None  # the generator's part of a pool's recipe, kept by copies
        self.real = real
        self.transform = transform
        self.target_transform = target_transform
        self.seed = int(seed)
        self.batch_size, self.refresh_every = int(batch_size), refresh_every
        self.quality_filter, self.max_filter_rounds = quality_filter, int(max_filter_rounds)
        self.return_is_synthetic = bool(return_is_synthetic)
        self._set_teacher(teacher)
        self._index_real(real, int(source.num_classes), source_class_names(source))
        counts, weights = self._synthetic_counts(ratio, quotas, length, label_distribution)
        self.num_synthetic = int(counts.sum())
        self.ratio = self._effective_ratio(real is None, quotas is not None, ratio)
        rng = np.random.default_rng([self.seed, 104729])
        self.synthetic_labels = rng.permutation(np.repeat(np.arange(self.num_classes), counts))
        self.channels, self.image_size = self._target_format(real, source)
        self.class_counts = counts
        self._plan_pool(counts, weights, pool_size)
        self.filter_report: dict[str, Any] | None = None
        self.epoch = 0
        self._generation = -1
        self._refresh(0)

    # ----------------------------------------------------------------- construction helpers
    def _set_teacher(self, teacher: TeacherLabels | None) -> None:
        self.teacher = teacher
        self.teacher_mode = None if teacher is None else teacher.mode
        self._teacher_temperature = None if teacher is None else teacher.temperature
        self._teacher_logits: np.ndarray | None = None  # per pool row, float32 (rows, num_classes)
        self._teacher_labels: np.ndarray | None = None  # per pool row: probabilities (soft) or class ids (hard)
        self.teacher_report: dict[str, Any] | None = None

    def _effective_ratio(self, no_real: bool, by_quotas: bool, ratio: float | None) -> float:
        """The synthetic share: 1 without real items, the quotas' share with ClassQuotas, else ``ratio``."""
        if no_real:
            return 1.0  # every item is synthetic
        if by_quotas:
            return self.num_synthetic / max(1, self.num_real + self.num_synthetic)
        return float(ratio)

    def _index_real(self, real: Dataset | None, num_classes: int, source_names: list[str] | None) -> None:
        """Classes, labels and size of the real data set, checked against the generator's classes."""
        self.num_classes = num_classes
        names = real_classes(real) if real is not None else None
        if names is not None and len(names) != self.num_classes:
            raise ValueError(f"the generator makes {self.num_classes} classes but the real data set has "
                             f"{len(names)} ({names}); train a generator on this data set")
        self.classes = names or source_names or [str(c) for c in range(self.num_classes)]
        if real is not None:
            self._warn_about_real_transforms(real)
        self.real_targets = read_targets(real) if real is not None else None
        if self.real_targets is not None and len(self.real_targets):
            low, high = int(self.real_targets.min()), int(self.real_targets.max())
            if low < 0 or high >= self.num_classes:
                raise ValueError(f"the real data set has label {low if low < 0 else high}, but the generator has "
                                 f"only {self.num_classes} classes (0 to {self.num_classes - 1})")
        self.num_real = 0 if real is None else len(real)

    @staticmethod
    def _warn_about_real_transforms(real: Dataset) -> None:
        """Warn when the real data set augments or normalizes: synthetic items would not get that. Format
        conversions (PILToTensor, ToTensor, Resize, ...) are fine, synthetic items come in that format anyway."""
        steps = [step for transform in real_transforms(real) for step in augmenting_steps(transform)]
        if steps:
            # stacklevel 4: the warning points at the user's SyntheticDataset(...) call
            warnings.warn(f"the real data set's transform applies {', '.join(dict.fromkeys(steps))}, which synthetic "
                          "items do not get, so the classifier would see real and synthetic images prepared "
                          "differently; give these steps to SyntheticDataset(transform=...), which real and synthetic "
                          "items share, and keep only format conversions (PILToTensor, ToTensor, Resize, CenterCrop, "
                          "Grayscale) on the real data set", stacklevel=4)

    def _synthetic_counts(self, ratio: float | None, quotas: ClassQuotas | None, length: int | None,
                          label_distribution: LabelDistribution) -> tuple[np.ndarray, np.ndarray]:
        """Synthetic items per class, and the class weights a smaller pool is split by."""
        if quotas is not None:
            counts = self._quota_counts(quotas)
            return counts, counts.astype(np.float64)
        total = length if self.real is None else int(round(self.num_real / (1 - ratio)))
        weights = class_weights(label_distribution, num_classes=self.num_classes, classes=self.classes,
                                real_targets=self.real_targets)
        return largest_remainder(total - self.num_real, weights), weights

    def _plan_pool(self, counts: np.ndarray, weights: np.ndarray, pool_size: int | None) -> None:
        """The labels of the pool to generate (every needed class gets at least one image), or, for a ready
        pool, a check that it holds every needed class."""
        if self._source_pool is None:
            if pool_size is None:
                plan = counts
            else:
                plan = largest_remainder(pool_size, np.where(counts > 0, weights, 0.0)) if counts.sum() else counts
                plan = np.where((counts > 0) & (plan == 0), 1, plan)
            self._plan_labels = np.repeat(np.arange(self.num_classes), plan)
            return
        for c in np.flatnonzero(counts):
            if not len(self._source_pool.indices_of(int(c))):
                raise ValueError(f"the pool has no image of class {c} ({self.classes[c]}), which needs {counts[c]}")

    def _quota_counts(self, quotas: ClassQuotas) -> np.ndarray:
        counts = np.zeros(self.num_classes, dtype=np.int64)
        for key, value in quotas.counts.items():
            idx = self.classes.index(key) if isinstance(key, str) and key in self.classes else key
            if not is_int(idx) or not 0 <= idx < self.num_classes:
                raise ValueError(f"ClassQuotas: unknown class {key!r}; classes are {self.classes}")
            counts[idx] = check_int(value, f"counts[{key!r}]", "ClassQuotas", minimum=0)
        return counts

    @staticmethod
    def _target_format(real: Dataset | None, source: Any) -> tuple[int, int]:
        """The items' channels and size: the real data's (declared, else its first image's), else the source's."""
        channels, size = int(getattr(source, "channels")), int(getattr(source, "image_size"))
        if channels not in (1, 3):
            raise ValueError(f"the generator makes {channels}-channel images; SyntheticDataset mixes 1- or 3-channel "
                             "images")
        if real is None:
            return channels, size
        real_channels, real_size = declared(real, "channels"), declared(real, "image_size")
        if not (is_int(real_channels) and real_channels in (1, 3) and is_int(real_size) and real_size > 0):
            if len(real) == 0:
                return channels, size
            image = to_uint8_image(split_item(real[0], 0)[0], where="real item 0")
            real_channels, (height, width) = image.shape[0], image.shape[1:]
            real_size = height
            if height != width:
                real_size = size
                warnings.warn(f"the real images are not square (item 0 is {width} x {height}): every real item is "
                              f"letterboxed to the generator's {size} x {size} (resized to fit, black padding), as "
                              "synthaug's folder loader prepares images; to crop instead, give the real data set "
                              f"transforms.Compose([Resize({size}), CenterCrop({size})])", stacklevel=3)
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
            if self.teacher_mode is not None:
                self._teach_ready_pool()
        else:
            folder = self._pool_folder(generation)
            pool = shared_pool(lambda: self._with_teacher(self._make_pool(seed)), directory=folder,
                               labels=self._plan_labels, recipe=self._recipe(seed) if folder is not None else {},
                               processes=self._processes or Processes())
            if self.teacher_mode is not None:
                self._teacher_logits = decode_array(pool.meta["teacher_logits"])
            if folder is None:  # in memory: convert once, reads are plain indexing
                images = torch.from_numpy(pool.images)
                self._images = resize_batch(convert_channels(images, self.channels), self.image_size)
            else:  # memory-mapped from pool_dir: shared by processes and workers, converted on read
                self._images = pool.images
            self.filter_report = pool.meta.get("filter_report", self.filter_report)
            self.pool_labels = self._plan_labels
            self._pool_index = self._assign(lambda c: np.flatnonzero(self.pool_labels == c))
        if self.teacher_mode is not None:
            self._teacher_labels = labels_from_logits(self._teacher_logits, self.teacher_mode,
                                                      self._teacher_temperature)
            self.teacher_report = teacher_report(self._teacher_logits, self.pool_labels, np.unique(self._pool_index),
                                                 self.classes, teacher=repr(self.teacher))
        self._generation = generation

    def _pool_folder(self, generation: int) -> Path | None:
        if self.pool_dir is None:
            return None
        return self.pool_dir if generation == 0 else self.pool_dir / f"refresh-{generation:04d}"

    def _recipe(self, seed: int) -> dict[str, Any]:
        """What makes a pool: a pool folder with another recipe is not this data set's pool."""
        gen = self._gen
        if self._identity is None and gen is not None:  # computed once, in the process that has the generator
            self._identity = {"generator": getattr(gen, "generator_name", type(gen).__name__),
                              "generator_options": getattr(gen, "generator_options", {}),
                              "weights_sha256": weights_fingerprint(gen),
                              "teacher_sha256": None if self.teacher is None else self.teacher.fingerprint()}
        if self._identity is None:
            raise RuntimeError("this SyntheticDataset was copied into another process without its generator; call "
                               "set_epoch() in the main process, before the DataLoader starts its workers")
        return {**self._identity, "seed": int(seed), "batch_size": self.batch_size,
                "labels_sha256": labels_fingerprint(self._plan_labels),
                "quality_filter": describe_filter(self.quality_filter)}

    def _make_pool(self, seed: int) -> SyntheticPool:
        gen = self._gen
        if gen is None:
            raise RuntimeError("this SyntheticDataset was copied into another process without its generator; call "
                               "set_epoch() in the main process, before the DataLoader starts its workers")
        with generation_device(gen, self.device):
            if self.quality_filter is None:
                return generate_pool(gen, self._plan_labels, seed=seed, batch_size=self.batch_size,
                                     progress=self.progress)
            empty = torch.zeros(0, gen.channels, gen.image_size, gen.image_size, dtype=torch.uint8)
            images = self._generate_filtered(self._plan_labels, seed, empty)
        meta = {"seed": int(seed), "filter_report": self.filter_report}
        return SyntheticPool(images.numpy(), self._plan_labels, self.num_classes, meta)

    # ----------------------------------------------------------------- teacher labels (synthaug.mix.teacher)
    def _run_teacher(self, images: Any) -> np.ndarray:
        if self.teacher is None:
            raise RuntimeError("this SyntheticDataset was copied into another process without its teacher; call "
                               "set_epoch() in the main process, before the DataLoader starts its workers")
        return teacher_logits(self.teacher, images, channels=self.channels, image_size=self.image_size,
                              classes=self.classes)

    def _with_teacher(self, pool: SyntheticPool) -> SyntheticPool:
        """A newly sampled pool with its teacher logits in ``meta``, written with it to ``pool_dir``."""
        if self.teacher_mode is not None:
            pool.meta["teacher_logits"] = encode_array(self._run_teacher(pool.images))
        return pool

    def _teach_ready_pool(self) -> None:
        """Teacher logits for the rows of a ready pool this epoch uses; each row is seen by the teacher once."""
        if self._teacher_logits is None:
            self._teacher_logits = np.full((len(self._source_pool), self.num_classes), np.nan, np.float32)
        rows = np.unique(self._pool_index)
        todo = rows[np.isnan(self._teacher_logits[rows, 0])]
        if len(todo):
            self._teacher_logits[todo] = self._run_teacher(self._source_pool.images[todo])

    def _synthetic_label(self, j: int) -> Any:
        if self._teacher_labels is None:
            return int(self.synthetic_labels[j])
        value = self._teacher_labels[self._pool_index[j]]
        return int(value) if self.teacher_mode == "hard" else torch.from_numpy(value.copy())

    def _assign(self, slots_of: Callable[[int], np.ndarray]) -> np.ndarray:
        """Pool row of every synthetic item: the items of class c cycle through ``slots_of(c)``."""
        index = np.zeros(self.num_synthetic, dtype=np.int64)
        for c in range(self.num_classes):
            items = np.flatnonzero(self.synthetic_labels == c)
            if len(items):
                slots = slots_of(c)
                index[items] = slots[np.arange(len(items)) % len(slots)]
        return index

    def _generate_filtered(self, labels: np.ndarray, seed: int, empty: torch.Tensor) -> torch.Tensor:
        """Images for ``labels`` that the quality filter keeps (deterministic for a seed); sets ``filter_report``."""
        need = np.bincount(labels, minlength=self.num_classes)
        kept, generated, accepted = sample_until_kept(self._gen, need, self.quality_filter, seed=seed,
                                                      batch_size=self.batch_size, max_rounds=self.max_filter_rounds,
                                                      progress=self.progress)
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
        out = [kept[c][: need[c]] if need[c] else empty for c in range(self.num_classes)]
        by_class = {c: iter(out[c]) for c in range(self.num_classes)}
        return torch.stack([next(by_class[int(c)]) for c in labels]) if len(labels) else empty

    # ----------------------------------------------------------------- epochs
    def set_epoch(self, epoch: int) -> None:
        """Tell the data set the epoch (call it before each epoch's iterator is created, in every process).

        With ``refresh_every=N`` the pool changes every N epochs; the same epoch always gives the same pool.
        """
        self.epoch = check_int(epoch, "epoch", "SyntheticDataset.set_epoch", minimum=0)
        if self.refresh_every:
            self._refresh(epoch // self.refresh_every)

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers (and spawned processes) read the pool; the generator stays in this process, and so
        # does the process group (an accelerator is no worker's business). Nothing is sampled here: the pool was
        # made in __init__ / set_epoch, in the main process.
        state = self.__dict__.copy()
        state["_gen"] = None
        state["teacher"] = None  # its labels are in _teacher_labels
        state["_processes"] = None
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

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        """``(image, label)``: a uint8 ``(C, S, S)`` tensor (or what ``transform`` makes of it) and an ``int``,
        for real and synthetic items alike, so any sampler's batches collate. With a soft teacher the label is
        a float32 ``(num_classes,)`` tensor; with ``return_is_synthetic`` a bool follows the label."""
        index = self._check_index(index)
        if index < self.num_real:
            image, label = split_item(self.real[index], index)
            image = fit_image(to_uint8_image(image, where=f"real item {index}"), self.channels, self.image_size)
            label = class_id(label, key=f"the label of real item {index}")
            if self.teacher_mode == "soft":
                label = one_hot(label, self.num_classes)
        else:
            j = index - self.num_real
            image, label = self._synthetic_image(j), self._synthetic_label(j)
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return (image, label, index >= self.num_real) if self.return_is_synthetic else (image, label)

    @property
    def pool(self) -> torch.Tensor:
        """The current pool of synthetic images (uint8 N x C x H x W; a copy when it is memory-mapped)."""
        if isinstance(self._images, torch.Tensor):
            return self._images
        return torch.from_numpy(np.array(self._images, copy=True))

    @property
    def class_to_idx(self) -> dict[str, int]:
        """Each class name's id (torchvision's ``class_to_idx``), for real and synthetic items alike."""
        return {name: i for i, name in enumerate(self.classes)}

    @property
    def targets(self) -> np.ndarray:
        """Every item's class id: a synthetic item's is the generator's label, or with a teacher the teacher's
        most likely class."""
        real = self.real_targets if self.real_targets is not None else np.zeros(0, dtype=np.int64)
        synthetic = self.synthetic_labels.astype(np.int64)
        if self._teacher_labels is not None:
            chosen = self._teacher_labels[self._pool_index]
            synthetic = chosen.astype(np.int64) if self.teacher_mode == "hard" else chosen.argmax(1)
        return np.concatenate([real, synthetic])

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
        if self.teacher_mode is not None:
            extra += ", teacher labels " + (f"soft (T={self._teacher_temperature:g})" if self.teacher_mode == "soft"
                                            else "hard")
        return (f"SyntheticDataset(real={self.num_real}, synthetic={self.num_synthetic}, ratio={self.ratio:.3g}, "
                f"pool={len(self.pool_labels)}, classes={self.classes}{extra})")
