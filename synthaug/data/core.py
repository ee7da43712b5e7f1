"""Real image data sets: one format in memory (uint8 N x C x H x W), one item format out."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset


class ImageArrayDataset(Dataset):
    """Items ``(image, label)`` from a uint8 array ``(N, C, H, W)`` (which may be memory-mapped).

    ``image`` is a uint8 tensor ``C x H x W``, or whatever ``transform`` makes of it. The data set
    exposes ``targets`` (int label per item), ``groups`` (patient / group id per item),
    ``classes`` (class names) and ``files`` (source of each item, when known).
    """

    def __init__(
        self,
        images: np.ndarray,
        targets: np.ndarray,
        groups: np.ndarray,
        classes: list[str],
        *,
        indices: np.ndarray | None = None,
        files: np.ndarray | None = None,
        transform: Callable[[torch.Tensor], Any] | None = None,
    ) -> None:
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(f"images must be a uint8 array (N, C, H, W), got {images.dtype} {images.shape}")
        self._images = images
        self._indices = np.arange(len(images), dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64)
        self._all_targets = np.asarray(targets, dtype=np.int64)
        self._all_groups = np.asarray(groups).astype(str)
        self._all_files = None if files is None else np.asarray(files).astype(str)
        self.classes = list(classes)
        self.transform = transform

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, index: int):
        i = self._indices[index]
        image = torch.from_numpy(np.array(self._images[i], copy=True))
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self._all_targets[i])

    @property
    def targets(self) -> np.ndarray:
        return self._all_targets[self._indices]

    @property
    def groups(self) -> np.ndarray:
        return self._all_groups[self._indices]

    @property
    def files(self) -> np.ndarray | None:
        return None if self._all_files is None else self._all_files[self._indices]

    @property
    def channels(self) -> int:
        return int(self._images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self._images.shape[2])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, indices: np.ndarray) -> "ImageArrayDataset":
        """A view on some of this data set's items (positions relative to this data set)."""
        return ImageArrayDataset(
            self._images,
            self._all_targets,
            self._all_groups,
            self.classes,
            indices=self._indices[np.asarray(indices, dtype=np.int64)],
            files=self._all_files,
            transform=self.transform,
        )

    def images_tensor(self) -> torch.Tensor:
        """All images of this data set as one uint8 tensor (N, C, H, W), without the transform."""
        return torch.from_numpy(np.ascontiguousarray(self._images[self._indices]))

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.targets, minlength=self.num_classes)

    def __repr__(self) -> str:
        counts = ", ".join(f"{c}={n}" for c, n in zip(self.classes, self.class_counts().tolist()))
        return (
            f"{type(self).__name__}(n={len(self)}, groups={len(set(self.groups.tolist()))}, "
            f"image={self.channels}x{self.image_size}x{self.image_size}, {counts})"
        )


@dataclass
class Splits:
    """The train / val / test data sets of one data set, split by group, plus what made them."""

    train: ImageArrayDataset
    val: ImageArrayDataset
    test: ImageArrayDataset
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        return self.train.classes

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def channels(self) -> int:
        return self.train.channels

    @property
    def image_size(self) -> int:
        return self.train.image_size

    @property
    def name(self) -> str:
        """The data set's short name (``malaria``, ``medmnist-breastmnist``, a folder's base name)."""
        return str(self.info.get("short_name") or self.info.get("name") or "data")

    @property
    def grouped(self) -> bool:
        """Whether items carry real group (patient) ids; False when every image is its own group
        (a folder without a group pattern, MedMNIST). Reports then count images, not patients."""
        if "grouped" in self.info:
            return bool(self.info["grouped"])
        # splits built by hand: grouped when some group holds more than one item
        groups = np.concatenate([self.train.groups, self.val.groups, self.test.groups])
        return len(set(groups.tolist())) < len(groups)

    @property
    def group_kind(self) -> str:
        """``"patients"`` when the splits are by patient (``grouped``), else ``"images"``: the word to count with."""
        return "patients" if self.grouped else "images"

    def summary(self) -> str:
        """One line per split: images, patients (only when there are groups) and images per class."""
        lines = []
        for name in ("train", "val", "test"):
            ds = getattr(self, name)
            counts = ", ".join(f"{c}: {n}" for c, n in zip(ds.classes, ds.class_counts().tolist()))
            n = len(set(ds.groups.tolist()))
            patients = f" of {n:4d} patient{'' if n == 1 else 's'}" if self.grouped else ""
            lines.append(f"{name:5s} {len(ds):6d} images{patients} ({counts})")
        if not self.grouped:
            lines.append("no patient groups: every image counts as its own patient")
        return "\n".join(lines)
