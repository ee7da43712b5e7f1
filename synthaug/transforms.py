"""SyntheticMix: the albumentations face of synthetic augmentation.

``SyntheticMix(pool, p)`` is an albumentations ``ImageOnlyTransform`` that, with probability ``p``,
replaces the image by a synthetic image of the same class, read from a pool of pre-generated images
(a pool folder, memory-mapped, or a pool generated once from a generator checkpoint)::

    import albumentations as A
    from synthaug.transforms import SyntheticMix

    pipeline = A.Compose([SyntheticMix("pools/malaria-cvae", p=0.3), A.HorizontalFlip(), A.Normalize()], seed=0)
    out = pipeline(image=image, label=label)      # image: uint8 (H, W) or (H, W, C); label: class id

The pool is given as a path so the pipeline serializes (``A.save`` / ``A.load`` store it as an absolute
path, so a saved pipeline loads from any working directory) and pickles cheaply to DataLoader workers:
nothing is read or generated before the first call (``prepare()`` does it on demand; pickling never
does), and a pool folder is memory-mapped again in each worker instead of being copied into it. Which
pool image is used comes from the transform's albumentations random generator, so
``A.Compose(..., seed=S)`` repeats the same choices.

A synthetic image has no matching mask, boxes or keypoints, so a call that passes any of them is refused:
SyntheticMix is for classification pipelines (``image=..., label=...``). ``A.from_dict`` / ``A.load`` find the class once ``synthaug.transforms``
has been imported (``from synthaug import SyntheticMix`` does that; a bare ``import synthaug`` does not, so
that it stays free of albumentations and OpenCV).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from albumentations.core.transforms_interface import BaseTransformInitSchema, ImageOnlyTransform
from pydantic import field_validator, model_validator

from .checks import check_int
from .generators.base import CONFIG_FILE, WEIGHTS_FILE
from .pool import (Processes, SyntheticPool, check_device, current_processes, generate_pool, generation_device,
                   is_pool, labels_fingerprint, load_pool, shared_pool, weights_fingerprint)
from .items import class_id
from .sources import FolderSource, is_checkpoint, is_class_folder

__all__ = ["SyntheticMix", "match_image_format", "luminance", "class_id", "is_checkpoint", "DEFAULT_PER_CLASS"]
# class_id lives in synthaug.items (SyntheticDataset reads real labels with it too) and is re-exported here.

#: images per class generated when ``pool`` is a generator checkpoint and ``n_per_class`` is not given
DEFAULT_PER_CLASS = 256

# Keys albumentations treats as data; a label stored under one of them would be transformed as data.
_DATA_KEYS = frozenset({"image", "images", "mask", "masks", "bboxes", "keypoints", "volume", "volumes",
                        "mask3d", "masks3d", "applied_transforms"})
# One label per call cannot say what to put in each image of a batch or slice of a volume.
_BATCH_KEYS = ("images", "volume", "volumes")
# Targets tied to the image's content: a synthetic image has none that match them.
_PAIRED_KEYS = ("mask", "masks", "mask3d", "masks3d", "bboxes", "keypoints")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


# --------------------------------------------------------------------------- pure helpers
def luminance(image: np.ndarray) -> np.ndarray:
    """uint8 RGB ``(H, W, 3)`` to uint8 gray ``(H, W)``: 0.299 R + 0.587 G + 0.114 B, rounded."""
    gray = image.astype(np.float32) @ _LUMA
    return np.clip(np.rint(gray), 0, 255).astype(np.uint8)


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize uint8 ``(h, w, c)`` to ``(height, width, c)``: area averaging down, bilinear up."""
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    shrinking = height <= h and width <= w
    out = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return out[..., None] if out.ndim == 2 else out  # cv2 drops a single channel axis


def match_image_format(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A pool image (uint8 ``C x H x W``) as a uint8 albumentations image of ``shape``.

    ``shape`` is ``(H, W)`` (grayscale) or ``(H, W, C)``. Channels are converted 1 -> 3 (repeated) and
    3 -> 1 (luminance); the size is changed with ``cv2.INTER_AREA`` when shrinking and
    ``cv2.INTER_LINEAR`` when enlarging.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.dtype != np.uint8:
        raise ValueError(f"pool images must be uint8 (C, H, W), got {image.dtype} {image.shape}")
    if len(shape) not in (2, 3):
        raise ValueError(f"images must be (H, W) or (H, W, C) arrays, got shape {tuple(shape)}")
    height, width = int(shape[0]), int(shape[1])
    want = 1 if len(shape) == 2 else int(shape[2])
    have = image.shape[0]
    # Always a copy: pool images may be a read-only memory map, and later transforms may write in place.
    out = np.array(image.transpose(1, 2, 0), order="C", copy=True)
    # Convert 3 -> 1 before resizing (less to resize), 1 -> 3 after (same reason).
    if have == 3 and want == 1:
        out = luminance(out)[..., None]
    elif have != want and not (have == 1 and want == 3):
        raise ValueError(f"cannot turn {have}-channel pool images into {want}-channel images: only 1 <-> 3 channel "
                         "conversion is supported; make a pool with the channels of your images")
    out = _resize(out, height, width)
    if out.shape[2] == 1 and want == 3:
        out = np.repeat(out, 3, axis=2)
    if len(shape) == 2:
        out = out[..., 0]
    return np.ascontiguousarray(out)


def _check_pool_dir(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise ValueError(f"SyntheticMix: pool_dir={value!r} must be a folder path (where the pool sampled from the "
                         "checkpoint is written once and read by every worker, process and later run) or None")
    return os.path.abspath(Path(os.fspath(value)).expanduser())


def _check_pool_source(value: Any) -> str | Any:
    """A pool folder / checkpoint path (returned as a string), a SyntheticPool, or a generator."""
    if isinstance(value, SyntheticPool):
        return value
    if callable(getattr(value, "sample", None)) and hasattr(value, "num_classes"):
        return value
    if isinstance(value, (str, os.PathLike)):
        text = os.fsdecode(value)
        path = Path(text).expanduser()
        hint = ("give a pool folder (made by `synthaug sample --pool DIR` or SyntheticPool.save), a folder of class "
                "folders (<folder>/<class name>/<images>, e.g. from `synthaug export`) or a generator checkpoint "
                f"folder ({CONFIG_FILE} + {WEIGHTS_FILE}, made by gen.save or `synthaug train`)")
        if not text:
            raise ValueError(f"pool='' is empty: {hint}")
        if not path.exists():
            raise ValueError(f"pool={text!r} does not exist: {hint}")
        if not (is_pool(path) or is_checkpoint(path) or is_class_folder(path)):
            raise ValueError(f"pool={text!r} is neither a pool folder, a folder of class folders nor a generator "
                             f"checkpoint: {hint}")
        # absolute, so a pipeline saved with A.save loads from any working directory
        return os.path.abspath(path)
    raise ValueError(f"pool must be a path to a pool folder or a generator checkpoint (or a SyntheticPool or "
                     f"generator object), got {type(value).__name__}: {value!r}")


# --------------------------------------------------------------------------- the transform
class SyntheticMix(ImageOnlyTransform):
    """With probability ``p``, replace the image by a synthetic image of the same class.

    Args:
        pool: a pool folder (``synthaug sample --pool DIR``; memory-mapped) or a generator checkpoint
            folder (a pool of ``n_per_class`` images per class is generated from it once, on first
            use, from ``seed``). A ``SyntheticPool`` or generator object also works in-process, but
            such a transform cannot be serialized.
        p: probability of replacing the image (albumentations' own ``p``).
        label_key: the name under which the class id is passed: ``pipeline(image=img, label=y)``.
        seed: seed of the pool generated from a checkpoint (not of which pool image is chosen: that
            comes from albumentations' random state, ``A.Compose(..., seed=...)``).
        n_per_class: images per class generated from a checkpoint (default 256); only for
            checkpoints and generators, since a pool folder's size was fixed when it was sampled.
        batch_size: generation batch size for a checkpoint.
        device: where a checkpoint's pool is sampled ('cpu', 'cuda', ...; default: the CPU, or where a
            generator object is).
        pool_dir: for a checkpoint or generator: the folder the sampled pool is written to once and
            memory-mapped from by every DataLoader worker, process and later run (a folder holding a pool
            made from other weights, seed or size is refused).

    Targets: image (uint8 ``(H, W)`` or ``(H, W, C)``; the synthetic image is converted to its size
    and channel count). Calls that pass ``mask``, ``masks``, ``bboxes`` or ``keypoints`` (or additional
    targets of those kinds) are refused: the synthetic image has no matching annotation.
    """

    class InitSchema(BaseTransformInitSchema):
        pool: Any
        label_key: Any
        seed: Any
        n_per_class: Any
        batch_size: Any
        device: Any
        pool_dir: Any

        @field_validator("device", mode="before")
        @classmethod
        def _device(cls, value: Any) -> str | None:
            parsed = check_device(value, "SyntheticMix")
            return None if parsed is None else str(parsed)

        @field_validator("pool_dir", mode="before")
        @classmethod
        def _pool_dir(cls, value: Any) -> str | None:
            return _check_pool_dir(value)

        @field_validator("pool", mode="before")
        @classmethod
        def _pool(cls, value: Any) -> Any:
            return _check_pool_source(value)

        @field_validator("label_key", mode="before")
        @classmethod
        def _label_key(cls, value: Any) -> str:
            if not isinstance(value, str) or not value:
                raise ValueError(f"label_key={value!r} must be a non-empty string, the name the label is passed "
                                 "under: pipeline(image=image, label=y) needs label_key='label'")
            if value in _DATA_KEYS:
                raise ValueError(f"label_key={value!r} is an albumentations data key; choose another name, "
                                 "e.g. 'label'")
            return value

        @field_validator("seed", mode="before")
        @classmethod
        def _seed(cls, value: Any) -> int:
            return check_int(value, "seed", "SyntheticMix", minimum=0)

        @field_validator("n_per_class", mode="before")
        @classmethod
        def _n_per_class(cls, value: Any) -> int | None:
            return None if value is None else check_int(value, "n_per_class", "SyntheticMix", minimum=1)

        @field_validator("batch_size", mode="before")
        @classmethod
        def _batch_size(cls, value: Any) -> int:
            return check_int(value, "batch_size", "SyntheticMix", minimum=1)

        @model_validator(mode="after")
        def _sampling_options_need_a_generator(self) -> SyntheticMix.InitSchema:
            ready_made = isinstance(self.pool, SyntheticPool) or (isinstance(self.pool, str) and (is_pool(
                Path(self.pool).expanduser()) or is_class_folder(self.pool)))
            where = self.pool if isinstance(self.pool, str) else "the given SyntheticPool"
            if ready_made and self.n_per_class is not None:
                raise ValueError(f"n_per_class={self.n_per_class} only applies when pool is a generator checkpoint; "
                                 f"{where} is a ready-made pool, whose size was fixed when it was sampled")
            for name in ("device", "pool_dir"):
                if ready_made and getattr(self, name) is not None:
                    raise ValueError(f"{name}={getattr(self, name)!r} only applies when pool is a generator "
                                     f"checkpoint; {where} is a ready-made pool, which is only read")
            return self

        def model_dump(self, **kwargs: Any) -> dict[str, Any]:
            # albumentations passes model_dump() to __init__; pydantic would turn a SyntheticPool (a
            # dataclass) into a plain dict, so hand the pool object over untouched.
            out = super().model_dump(**kwargs)
            out["pool"] = self.pool
            return out

    def __init__(self, pool: str | os.PathLike | SyntheticPool | Any, p: float = 0.3, *, label_key: str = "label",
                 seed: int = 0, n_per_class: int | None = None, batch_size: int = 256, device: str | None = None,
                 pool_dir: str | os.PathLike | None = None) -> None:
        super().__init__(p=p)
        self.label_key = label_key
        # Not ``self.seed``: albumentations keeps its own random seed under that name.
        self.pool_seed = seed
        self.n_per_class = n_per_class
        self.batch_size = batch_size
        self.device = device  # a string (serializable), checked by InitSchema
        self.pool_dir = pool_dir  # an absolute path string or None
        self._source = pool  # an absolute path string, a SyntheticPool or a generator
        self._pool: SyntheticPool | None = pool if isinstance(pool, SyntheticPool) else None
        self._pool_on_disk = False  # True once the pool is memory-mapped from a folder (workers re-map it)
        self._by_class: list[np.ndarray] | None = None
        self._paired_keys: dict[str, str] = {}  # additional targets of mask / bboxes / keypoints kinds

    # ----------------------------------------------------------------- the pool, loaded on first use
    @property
    def pool_path(self) -> str | None:
        """The pool folder or checkpoint path this transform was built from (None for an object)."""
        return self._source if isinstance(self._source, str) else None

    @property
    def pool(self) -> SyntheticPool:
        """The synthetic pool, loaded (or sampled from the checkpoint) on first access."""
        if self._pool is None:
            self._pool = self._load(Processes())
        return self._pool

    def prepare(self, *, accelerator: Any = None) -> SyntheticMix:
        """Load or sample the pool now, in this process; returns the transform.

        Call it in the main process before a DataLoader starts its workers, so they receive the pool (or,
        with ``pool_dir``, memory-map it) instead of each sampling the same one. Under several processes
        (``accelerator=`` an ``accelerate.Accelerator``, or an initialised ``torch.distributed``) with
        ``pool_dir``, the main process samples and writes the pool while the others wait, then all read it.
        """
        if self._pool is None:
            self._pool = self._load(current_processes(accelerator, "SyntheticMix.prepare"))
        return self

    def _load(self, processes: Processes) -> SyntheticPool:
        source = self._source
        if isinstance(source, str) and is_pool(Path(source)):
            self._pool_on_disk = True
            return load_pool(source)
        if isinstance(source, str) and is_class_folder(source):
            return FolderSource(source).as_pool()  # every image of the folder, decoded once
        if self._pool_on_disk and self.pool_dir is not None and is_pool(Path(self.pool_dir)):
            return load_pool(self.pool_dir)  # a copy of a transform whose pool_dir was checked where it was made
        if source is None:
            raise RuntimeError("this SyntheticMix was copied to another process (a DataLoader worker?) before its "
                               "pool was sampled, and a generator object does not travel with it: call "
                               "mix.prepare() in the main process before the DataLoader starts, or build it from a "
                               "checkpoint or pool folder")
        from torch.utils.data import get_worker_info

        if get_worker_info() is not None and not (self.pool_dir and is_pool(Path(self.pool_dir))):
            warnings.warn("SyntheticMix is sampling its pool inside a DataLoader worker, so every worker samples the "
                          "same pool; call mix.prepare() in the main process before the DataLoader starts, or give "
                          "pool_dir= (or a pool folder made by `synthaug sample --pool`)", stacklevel=2)
        gen = self._generator()
        labels = np.repeat(np.arange(int(gen.num_classes), dtype=np.int64), self.n_per_class or DEFAULT_PER_CLASS)
        recipe = {}
        if self.pool_dir is not None:
            recipe = {"generator": getattr(gen, "generator_name", type(gen).__name__),
                      "generator_options": getattr(gen, "generator_options", {}),
                      "weights_sha256": weights_fingerprint(gen), "seed": int(self.pool_seed),
                      "batch_size": int(self.batch_size), "labels_sha256": labels_fingerprint(labels),
                      "quality_filter": None}
        pool = shared_pool(lambda: self._generate(gen, labels), directory=self.pool_dir, labels=labels,
                           recipe=recipe, processes=processes)
        self._pool_on_disk = self.pool_dir is not None
        return pool

    def _generator(self) -> Any:
        if isinstance(self._source, str):
            from .generators import load_generator

            return load_generator(Path(self._source), device=self.device or "cpu")
        return self._source

    def _generate(self, gen: Any, labels: np.ndarray) -> SyntheticPool:
        with generation_device(gen, None if self.device is None else torch.device(self.device)):
            return generate_pool(gen, labels, seed=self.pool_seed, batch_size=self.batch_size,
                                 desc="SyntheticMix: sampling synthetic pool")

    def _indices_of(self, label: int) -> np.ndarray:
        if self._by_class is None:
            pool = self.pool
            self._by_class = [pool.indices_of(c) for c in range(pool.num_classes)]
        return self._by_class[label]

    def __getstate__(self) -> dict[str, Any]:
        # Never samples: copying or saving a transform must stay cheap (prepare() samples on demand).
        # A pool on disk is memory-mapped again in each worker: cheaper than pickling its images. A pool
        # already sampled in memory travels with the copy, so workers only read it.
        state = self.__dict__.copy()
        state["_by_class"] = None
        if self._pool_on_disk:
            state["_pool"] = None
        if not isinstance(state["_source"], (str, SyntheticPool)):
            state["_source"] = None  # a generator object stays in this process
        return state

    # ----------------------------------------------------------------- albumentations protocol
    @property
    def targets_as_params(self) -> list[str]:
        return [self.label_key]

    def __call__(self, *args: Any, force_apply: bool = False, **data: Any) -> Any:
        # Check the inputs on every call that may apply, not only on the calls that do, so a wrong
        # pipeline fails at once instead of on a random later item.
        if (self.p > 0 or force_apply) and not args:
            self._check_data(data)
        return super().__call__(*args, force_apply=force_apply, **data)

    def add_targets(self, additional_targets: dict[str, str]) -> None:
        # Compose(additional_targets={"mask2": "mask"}) tells each transform the kinds of extra keys; an image-only
        # transform drops the non-image ones, so remember those tied to the image, to refuse them in a call.
        super().add_targets(additional_targets)
        for key, kind in (additional_targets or {}).items():
            if kind in _PAIRED_KEYS:
                self._paired_keys[key] = kind

    def _check_data(self, data: dict[str, Any]) -> None:
        batch = [k for k in _BATCH_KEYS if k in data]
        if batch:
            raise ValueError(f"SyntheticMix works on one image and its label at a time (image=..., "
                             f"{self.label_key}=...), not on {batch[0]}=...")
        paired = [k for k in data if (k in _PAIRED_KEYS or k in self._paired_keys) and data[k] is not None]
        if paired:
            raise ValueError(f"SyntheticMix replaces the image with a synthetic one, which has no matching "
                             f"{'/'.join(paired)}: the real {paired[0]}= would be paired with a synthetic image. "
                             f"SyntheticMix is for classification pipelines (image=..., {self.label_key}=...): leave "
                             "it out of pipelines for segmentation, detection or keypoints")
        if self.label_key not in data:
            raise ValueError(f"SyntheticMix needs each image's class under label_key={self.label_key!r}: call the "
                             f"pipeline as pipeline(image=image, {self.label_key}=class_id); got keys {sorted(data)}")
        image = data.get("image")
        if image is not None:
            if not isinstance(image, np.ndarray) or image.ndim not in (2, 3):
                raise ValueError(f"SyntheticMix: image must be a numpy array (H, W) or (H, W, C), got "
                                 f"{type(image).__name__} {getattr(image, 'shape', '')}")
            if image.dtype != np.uint8:
                raise ValueError(f"SyntheticMix: image must be uint8 (as pool images are), got {image.dtype}; put "
                                 "SyntheticMix before transforms that make float images, such as A.Normalize")

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        label = class_id(data[self.label_key], key=self.label_key)
        pool = self.pool
        if not 0 <= label < pool.num_classes:
            raise ValueError(f"{self.label_key}={label} is outside the pool's classes [0, {pool.num_classes}); "
                             f"pool: {self.pool_path or type(self._source).__name__}")
        candidates = self._indices_of(label)
        if len(candidates) == 0:
            raise ValueError(f"the pool {self.pool_path or ''} has no images of class {label}; sample a pool with "
                             "every class")
        # albumentations' per-transform generator, so A.Compose(..., seed=S) repeats the choice
        return {"pool_index": int(candidates[self.random_generator.integers(len(candidates))])}

    def apply(self, img: np.ndarray, pool_index: int, **params: Any) -> np.ndarray:
        return match_image_format(self.pool.images[pool_index], img.shape)

    def apply_to_images(self, images: np.ndarray, *args: Any, **params: Any) -> np.ndarray:
        raise ValueError("SyntheticMix works on one image and its label at a time (image=...), not on images=...")

    def apply_to_volume(self, volume: np.ndarray, *args: Any, **params: Any) -> np.ndarray:
        raise ValueError("SyntheticMix works on 2-D images (image=...), not on volumes")

    def apply_to_volumes(self, volumes: np.ndarray, *args: Any, **params: Any) -> np.ndarray:
        raise ValueError("SyntheticMix works on 2-D images (image=...), not on volumes")

    # ----------------------------------------------------------------- serialization
    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("pool", "label_key", "seed", "n_per_class", "batch_size", "device", "pool_dir")

    def get_transform_init_args(self) -> dict[str, Any]:
        # Written out rather than read back by attribute name: ``seed`` and ``pool`` are taken by
        # albumentations' random state and by the loaded pool.
        pool = self.pool_path if self.pool_path is not None else f"<{type(self._source).__name__} object>"
        return {"pool": pool, "label_key": self.label_key, "seed": self.pool_seed,
                "n_per_class": self.n_per_class, "batch_size": self.batch_size, "device": self.device,
                "pool_dir": self.pool_dir}

    def to_dict_private(self) -> dict[str, Any]:
        if self.pool_path is None:
            raise NotImplementedError(
                f"SyntheticMix was built from a {type(self._source).__name__} object, which cannot be saved with "
                "A.to_dict / A.save; pass a path instead, SyntheticMix('path/to/pool') for a pool folder "
                "(SyntheticPool.save(dir) or `synthaug sample --pool DIR`) or a generator checkpoint folder "
                "(gen.save(dir)), to make the pipeline serializable")
        return super().to_dict_private()
