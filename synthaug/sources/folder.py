"""A folder of images in class folders, ``<folder>/<class name>/<image>``, as a source (the layout ``synthaug
export`` writes, and the ImageFolder layout other tools save)."""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checks import check_choice
from ..data.folders import decode_files, scan_class_folders
from ..data.imageio import IMAGE_EXTENSIONS
from ..export import MANIFEST
from ..generators.base import check_sample_labels
from .contract import check_geometry, class_order, match_classes

__all__ = ["FolderSource", "is_class_folder"]


def _holds_an_image(folder: Path) -> bool:
    return any(f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file() for f in folder.iterdir())


def is_class_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is the layout ``<folder>/<class name>/<image>``: a folder with a ``synthaug export``
    record, or with a sub-folder holding image files (a training run folder, whose ``checkpoint/`` holds
    none, is not one)."""
    path = Path(path).expanduser()
    if not path.is_dir() or (path / "pool.json").is_file() or (path / "config.json").is_file():
        return False
    if (path / MANIFEST).is_file():
        return True
    return any(p.is_dir() and not p.name.startswith(".") and _holds_an_image(p) for p in path.iterdir())


def _exported_classes(folder: Path, found: list[str]) -> tuple[list[str], list[str], str | None]:
    """Class folders and names in the generator's order from ``export.json`` (a ``synthaug export``), else the
    folders found, alphabetically (ImageFolder's order); and the checkpoint the export came from."""
    record = folder / MANIFEST
    if not record.is_file():
        return found, list(found), None
    try:
        manifest = json.loads(record.read_text())
        folders = [str(f) for f in manifest["class_folders"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{record} is not a readable export record ({err}); remove it to read {folder} as plain "
                         "class folders") from err
    extra = sorted(set(found) - set(folders))
    if extra:
        raise ValueError(f"{folder} holds class folders {extra} that its {MANIFEST} does not list ({folders}); "
                         f"remove them or the {MANIFEST}")
    names = manifest.get("class_names") or folders
    return folders, [str(n) for n in names], manifest.get("source")


class FolderSource:
    """Images in class folders, ``<folder>/<class name>/<image file>``, as a source of synthetic images.

    Classes: in the generator's order when ``export.json`` (written by ``synthaug export``) is there, else
    the sub-folders alphabetically (as ``torchvision.datasets.ImageFolder`` numbers them); ``classes=`` (the
    real data set's names) re-orders them to match and refuses other names. Images are decoded on first use
    to uint8 ``(channels, image_size, image_size)`` (letterboxed; default: the first image's mode and longer
    side; an unreadable file is an error naming it, or with ``on_bad_file="skip"`` left out with a warning).
    ``sample(n, labels, generator=)`` draws images of each label without replacement (all of a class
    before any repeats), from the torch generator: the same generator state gives the same images.
    """

    generator_name = "folder"

    def __init__(self, folder: str | os.PathLike, *, image_size: int | None = None, channels: int | None = None,
                 classes: Sequence[str] | None = None, on_bad_file: str = "error") -> None:
        owner = "FolderSource"
        check_geometry(image_size, channels, owner)
        self.on_bad_file = check_choice(on_bad_file, "on_bad_file", owner, ("error", "skip"))
        self.folder = Path(folder).expanduser().absolute()
        files, labels, found = scan_class_folders(self.folder)
        folders, names, self.exported_from = _exported_classes(self.folder, found)
        position = {f: i for i, f in enumerate(folders)}
        self._files = files
        self._labels = np.array([position[found[label]] for label in labels], dtype=np.int64)
        self.class_names, self.num_classes = names, len(names)
        gray, size = _probe(self.folder / files[0])
        self.channels = channels or (1 if gray else 3)
        self.image_size = image_size or size
        self._images: np.ndarray | None = None
        if classes is not None:
            matched = match_classes(self, classes, where="the real data set")
            self.__dict__.update(matched.__dict__)

    @property
    def generator_options(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "image_size": self.image_size, "channels": self.channels,
                "classes": self.class_names}

    def __len__(self) -> int:
        return len(self._files)

    def __repr__(self) -> str:
        counts = np.bincount(self._labels, minlength=self.num_classes).tolist()
        return f"FolderSource({str(self.folder)!r}, classes={self.class_names}, images per class={counts})"

    def with_classes(self, classes: Sequence[str]) -> FolderSource:
        """This folder with its classes numbered in the order of ``classes`` (the same names)."""
        order = class_order(self.class_names, list(classes))  # new id -> old id
        new_of_old = np.argsort(order)
        out = object.__new__(FolderSource)
        out.__dict__.update(self.__dict__)
        out._labels = new_of_old[self._labels].astype(np.int64)
        out.class_names = [self.class_names[i] for i in order]
        return out

    def images(self) -> np.ndarray:
        """Every image, uint8 ``(N, channels, image_size, image_size)``, decoded once."""
        if self._images is None:  # as synthaug's folder data sets decode: letterboxed, a bad file named
            images, kept, _ = decode_files(self.folder, self._files, image_size=self.image_size,
                                           channels=self.channels, on_bad_file=self.on_bad_file,
                                           desc=f"decoding {self.folder.name} ({self.image_size}px)")
            self._files, self._labels = [self._files[i] for i in kept], self._labels[kept]  # skipped files left out
            self._images = images
        return self._images

    def labels(self) -> np.ndarray:
        """The class id of every image (int64 ``(N,)``), in the order of ``images()``."""
        return self._labels.copy()

    def as_pool(self) -> Any:
        """Every image of the folder as a ``SyntheticPool`` (what ``SyntheticMix`` reads from a folder path)."""
        from ..mix.pool import SyntheticPool

        meta = {"generator": "folder", "folder": str(self.folder), "class_names": self.class_names}
        return SyntheticPool(self.images(), self.labels(), self.num_classes, meta)

    def fingerprint(self) -> str:
        """SHA-256 of the files (names, sizes, modification times), the classes and the image format."""
        digest = hashlib.sha256(json.dumps(self.generator_options, sort_keys=True).encode())
        for rel, label in zip(self._files, self._labels.tolist()):
            stat = (self.folder / rel).stat()
            digest.update(f"{rel}\0{label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()

    def sample(self, n: int, labels: torch.Tensor | None = None, *,
               generator: torch.Generator | None = None) -> torch.Tensor:
        labels = check_sample_labels(n, labels, self.num_classes, owner="FolderSource.sample")
        images = self.images()
        rows = np.zeros(n, dtype=np.int64)
        for c in labels.unique().tolist():
            where = (labels == c).nonzero().flatten().numpy()
            have = np.flatnonzero(self._labels == c)
            if not len(have):
                raise ValueError(f"FolderSource.sample: {self.folder} has no image of class {self.class_names[c]!r}; "
                                 "add images to its folder or ask for other classes")
            rounds = -(-len(where) // len(have))
            order = torch.cat([torch.randperm(len(have), generator=generator) for _ in range(rounds)])
            rows[where] = have[order[: len(where)].numpy()]
        return torch.from_numpy(images[rows].copy())


def _probe(path: Path) -> tuple[bool, int]:
    """Whether an image file is grayscale, and its longer side (without decoding its pixels)."""
    from PIL import Image

    from ..data.imageio import BadImageError

    try:
        with Image.open(path) as image:
            return image.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"), max(image.size)
    except (OSError, SyntaxError, ValueError) as err:
        raise BadImageError(f"cannot read image file {path}: {err}. Remove or replace the file.") from err
