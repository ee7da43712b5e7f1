"""The pool a SyntheticMix transform reads, shared by the albumentations one (``synthaug.mix.albumentations``) and its
torchvision v2 twin (``synthaug.mix.torchvision``): the option checks, the pool loaded or sampled on first use,
the class of a label (an id or a class name) and the choice of a pool image of that class.

No albumentations, OpenCV or torchvision here: each transform keeps only its framework's protocol.

A pool is given as a path so a transform serializes and pickles cheaply to DataLoader workers: nothing is
read or generated before the first call (``prepare()`` does it on demand; pickling never does), and a pool
folder is memory-mapped again in each worker instead of being copied into it. A path is not read when the
transform is built, so a saved pipeline loads on a machine without the pool; the first use there says
which path is missing.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..options import check_value, option
from ..generators.base import CONFIG_FILE, WEIGHTS_FILE
from .items import class_id, class_ids_by_name
from .pool import (Processes, SyntheticPool, check_device, current_processes, generate_pool, generation_device,
                   is_pool, labels_fingerprint, load_pool, shared_pool, weights_fingerprint)
from ..sources import FolderSource, is_checkpoint, is_class_folder, open_source_spec

__all__ = ["MixPool", "PoolAccess", "DEFAULT_PER_CLASS", "check_pool_dir", "check_pool_source", "check_sampling_options",
           "check_mix_options"]

#: images per class generated when ``pool`` is a generator checkpoint and ``n_per_class`` is not given
DEFAULT_PER_CLASS = 256

POOL_HINT = ("give a pool folder (made by `synthaug sample --pool DIR` or SyntheticPool.save), a folder of class "
             "folders (<folder>/<class name>/<images>, e.g. from `synthaug export`) or a generator checkpoint folder "
             f"({CONFIG_FILE} + {WEIGHTS_FILE}, made by gen.save or `synthaug train`)")


# --------------------------------------------------------------------------- option checks
def check_pool_dir(value: Any, owner: str = "SyntheticMix") -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise ValueError(f"{owner}: pool_dir={value!r} must be a folder path (where the pool sampled from the "
                         "checkpoint is written once and read by every worker, process and later run) or None")
    return os.path.abspath(Path(os.fspath(value)).expanduser())


def _check_path(text: str) -> None:
    """Refuse a path that is there but is no pool, class folder or checkpoint (a missing one waits for first use)."""
    path = Path(text).expanduser()
    if path.exists() and not (is_pool(path) or is_checkpoint(path) or is_class_folder(path)):
        raise ValueError(f"pool={text!r} is neither a pool folder, a folder of class folders nor a generator "
                         f"checkpoint: {POOL_HINT}")


def check_pool_source(value: Any) -> str | Any:
    """A pool folder / class folder / checkpoint path (an absolute string, so a saved pipeline loads from any
    working directory), a SyntheticPool, or a source object (a generator, a FolderSource, ...). A path that
    does not exist here is accepted: the first use says so (a pipeline saved elsewhere still loads)."""
    if isinstance(value, SyntheticPool):
        return value
    if callable(getattr(value, "sample", None)) and hasattr(value, "num_classes"):
        return value
    if isinstance(value, (str, os.PathLike)):
        text = os.fsdecode(value)
        if not text:
            raise ValueError(f"pool='' is empty: {POOL_HINT}")
        _check_path(text)
        return os.path.abspath(Path(text).expanduser())
    raise ValueError(f"pool must be a path to a pool folder, a folder of class folders or a generator checkpoint (or "
                     f"a SyntheticPool or generator object), got {type(value).__name__}: {value!r}")


def is_ready_made(pool: Any) -> bool:
    """A pool or a folder of images (read as they are), as opposed to a generator to sample a pool from."""
    if isinstance(pool, SyntheticPool):
        return True
    return isinstance(pool, str) and (is_pool(Path(pool).expanduser()) or is_class_folder(pool))


def check_sampling_options(pool: Any, *, n_per_class: Any, device: Any, pool_dir: Any) -> None:
    """Refuse sampling options given with a ready-made pool (a path not here yet is checked on first use)."""
    if not is_ready_made(pool):
        return
    where = pool if isinstance(pool, str) else "the given SyntheticPool"
    if n_per_class is not None:
        raise ValueError(f"n_per_class={n_per_class} only applies when pool is a generator checkpoint; {where} is a "
                         "ready-made pool, whose size was fixed when it was sampled")
    for name, value in (("device", device), ("pool_dir", pool_dir)):
        if value is not None:
            raise ValueError(f"{name}={value!r} only applies when pool is a generator checkpoint; {where} is a "
                             "ready-made pool, which is only read")


@dataclass
class MixSettings:
    """The options both transforms (``SyntheticMix``, ``SyntheticMixV2``) take, declared once."""

    p: float = option(0.3, "probability of replacing an image", minimum=0, maximum=1,
                      hint="p is the probability of replacing an image, e.g. p=0.3")
    seed: int = option(0, "seed of the pool generated from a checkpoint", minimum=0)
    n_per_class: int | None = option(None, "images per class generated from a checkpoint", minimum=1)
    batch_size: int = option(256, "generation batch size for a checkpoint", minimum=1)


def check_p(p: Any, owner: str) -> float:
    """A transform's probability of replacing an image, in [0, 1]."""
    return check_value(MixSettings, "p", p, owner)


def check_mix_options(*, seed: Any, n_per_class: Any, batch_size: Any, device: Any,
                      owner: str) -> tuple[int, int | None, int, str | None]:
    """``seed``, ``n_per_class``, ``batch_size`` and ``device`` (as a string) checked, in that order."""
    seed, n_per_class, batch_size = (check_value(MixSettings, name, value, owner) for name, value in
                                     (("seed", seed), ("n_per_class", n_per_class), ("batch_size", batch_size)))
    parsed = check_device(device, owner)
    return seed, n_per_class, batch_size, None if parsed is None else str(parsed)


# --------------------------------------------------------------------------- the pool, loaded on first use
class MixPool:
    """The pool of a SyntheticMix, loaded (or sampled from a checkpoint) on first use; see the module."""

    def __init__(self, source: Any, *, seed: int = 0, n_per_class: int | None = None, batch_size: int = 256,
                 device: str | None = None, pool_dir: str | None = None, owner: str = "SyntheticMix") -> None:
        self.source = source  # an absolute path string, a SyntheticPool or a source object
        self.seed, self.n_per_class, self.batch_size = seed, n_per_class, batch_size
        self.device, self.pool_dir, self.owner = device, pool_dir, owner
        self._pool: SyntheticPool | None = source if isinstance(source, SyntheticPool) else None
        self._on_disk = False  # True once the pool is memory-mapped from a folder (workers re-map it)
        self._by_class: list[np.ndarray] | None = None

    @property
    def path(self) -> str | None:
        """The pool folder, class folder or checkpoint path (None for an object)."""
        return self.source if isinstance(self.source, str) else None

    def describe(self) -> str:
        return self.path or type(self.source).__name__

    @property
    def pool(self) -> SyntheticPool:
        if self._pool is None:
            self._pool = self._load(Processes())
        return self._pool

    def prepare(self, accelerator: Any = None) -> None:
        if self._pool is None:
            self._pool = self._load(current_processes(accelerator, f"{self.owner}.prepare"))

    def _check_here(self) -> None:
        """On first use: the path must be here (a saved pipeline may have been loaded on another machine)."""
        path = self.path
        if path is not None and not Path(path).exists():
            raise FileNotFoundError(f"{self.owner}: the pool {path!r} does not exist on this machine (a pipeline saved "
                                    "elsewhere names the pool by its absolute path); copy the pool folder there, or "
                                    f"build the transform with this machine's path: {POOL_HINT}")
        if path is not None:
            _check_path(path)
            check_sampling_options(path, n_per_class=self.n_per_class, device=self.device, pool_dir=self.pool_dir)

    def _load(self, processes: Processes) -> SyntheticPool:
        self._check_here()
        source = self.source
        if isinstance(source, str) and is_pool(Path(source)):
            self._on_disk = True
            return load_pool(source)
        if isinstance(source, str) and is_class_folder(source):
            return FolderSource(source).as_pool()  # every image of the folder, decoded once
        if self._on_disk and self.pool_dir is not None and is_pool(Path(self.pool_dir)):
            return load_pool(self.pool_dir)  # a copy of a transform whose pool_dir was checked where it was made
        if source is None:
            raise RuntimeError(f"this {self.owner} was copied to another process (a DataLoader worker?) before its "
                               "pool was sampled, and a generator object does not travel with it: call "
                               "mix.prepare() in the main process before the DataLoader starts, or build it from a "
                               "checkpoint or pool folder")
        from torch.utils.data import get_worker_info

        if get_worker_info() is not None and not (self.pool_dir and is_pool(Path(self.pool_dir))):
            warnings.warn(f"{self.owner} is sampling its pool inside a DataLoader worker, so every worker samples the "
                          "same pool; call mix.prepare() in the main process before the DataLoader starts, or give "
                          "pool_dir= (or a pool folder made by `synthaug sample --pool`)", stacklevel=3)
        gen = open_source_spec(source, device=self.device) if isinstance(source, str) else source
        labels = np.repeat(np.arange(int(gen.num_classes), dtype=np.int64), self.n_per_class or DEFAULT_PER_CLASS)
        recipe = {}
        if self.pool_dir is not None:
            recipe = {"generator": getattr(gen, "generator_name", type(gen).__name__),
                      "generator_options": getattr(gen, "generator_options", {}),
                      "weights_sha256": weights_fingerprint(gen), "seed": int(self.seed),
                      "batch_size": int(self.batch_size), "labels_sha256": labels_fingerprint(labels),
                      "quality_filter": None}
        pool = shared_pool(lambda: self._generate(gen, labels), directory=self.pool_dir, labels=labels,
                           recipe=recipe, processes=processes)
        self._on_disk = self.pool_dir is not None
        return pool

    def _generate(self, gen: Any, labels: np.ndarray) -> SyntheticPool:
        with generation_device(gen, None if self.device is None else torch.device(self.device)):
            return generate_pool(gen, labels, seed=self.seed, batch_size=self.batch_size,
                                 desc=f"{self.owner}: sampling synthetic pool")

    # ----------------------------------------------------------------- labels and choices
    def label_of(self, value: Any, key: str) -> int:
        """The class id of a label given as an id (int, numpy or one-element tensor) or a class name (as
        ``synthaug sample --labels`` reads it), checked against the pool's classes."""
        pool = self.pool
        if isinstance(value, str):
            names = pool.meta.get("class_names")
            label = class_ids_by_name([value], names, pool.num_classes, what=f"{key}={value!r}",
                                      owner=f"the pool {self.describe()}",
                                      unnamed="made before synthaug recorded them")[0]
        else:
            label = class_id(value, key=key)
        if not 0 <= label < pool.num_classes:
            raise ValueError(f"{key}={label} is outside the pool's classes [0, {pool.num_classes}); "
                             f"pool: {self.describe()}")
        return label

    def choose(self, label: int, draw: Any) -> int:
        """A pool row of class ``label``; ``draw(k)`` picks one of ``k`` candidates (the transform's random state)."""
        if self._by_class is None:
            pool = self.pool
            self._by_class = [pool.indices_of(c) for c in range(pool.num_classes)]
        candidates = self._by_class[label]
        if len(candidates) == 0:
            raise ValueError(f"the pool {self.path or ''} has no images of class {label}; sample a pool with every "
                             "class")
        return int(candidates[draw(len(candidates))])

    def __getstate__(self) -> dict[str, Any]:
        # Never samples: copying or saving a transform must stay cheap (prepare() samples on demand). A pool on
        # disk is memory-mapped again in each worker: cheaper than pickling its images. A pool already sampled
        # in memory travels with the copy, so workers only read it.
        state = self.__dict__.copy()
        state["_by_class"] = None
        if self._on_disk:
            state["_pool"] = None
        if not isinstance(state["source"], (str, SyntheticPool)):
            state["source"] = None  # a generator object stays in this process
        return state


class PoolAccess:
    """The pool of a transform that keeps a ``MixPool`` in ``self._mix``: both SyntheticMix faces offer this."""

    _mix: MixPool

    @property
    def pool_path(self) -> str | None:
        """The pool folder, class folder or checkpoint path this transform was built from (None for an object)."""
        return self._mix.path

    @property
    def pool(self) -> SyntheticPool:
        """The synthetic pool, loaded (or sampled from the checkpoint) on first access."""
        return self._mix.pool

    def prepare(self, *, accelerator: Any = None) -> Any:
        """Load or sample the pool now, in this process; returns the transform.

        Call it in the main process before a DataLoader starts its workers, so they receive the pool (or,
        with ``pool_dir``, memory-map it) instead of each sampling the same one. Under several processes
        (``accelerator=`` an ``accelerate.Accelerator``, or an initialised ``torch.distributed``) with
        ``pool_dir``, the main process samples and writes the pool while the others wait, then all read it.
        """
        self._mix.prepare(accelerator)
        return self
