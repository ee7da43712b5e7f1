"""SyntheticMix: the albumentations face of synthetic augmentation.

``SyntheticMix(pool, p)`` is an albumentations ``ImageOnlyTransform`` that, with probability ``p``,
replaces the image by a synthetic image of the same class, read from a pool of pre-generated images
(a pool folder, memory-mapped, or a pool generated once from a generator checkpoint)::

    import albumentations as A
    from synthaug.transforms import SyntheticMix

    pipeline = A.Compose([SyntheticMix("pools/malaria-cvae", p=0.3), A.HorizontalFlip(), A.Normalize()], seed=0)
    out = pipeline(image=image, label=label)      # image: uint8 (H, W) or (H, W, C); label: class id

The pool is given as a path so the pipeline serializes (``A.save`` / ``A.load`` store the path) and
pickles cheaply to DataLoader workers: nothing is read or generated before the first call, and a
pool folder is memory-mapped again in each worker instead of being copied into it. Which pool image
is used comes from the transform's albumentations random generator, so ``A.Compose(..., seed=S)``
repeats the same choices. ``A.from_dict`` / ``A.load`` find the class once ``synthaug.transforms``
has been imported.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from albumentations.core.transforms_interface import BaseTransformInitSchema, ImageOnlyTransform
from pydantic import field_validator, model_validator

from .generators.base import CONFIG_FILE, WEIGHTS_FILE
from .pool import SyntheticPool, generate_pool, is_pool, load_pool

__all__ = ["SyntheticMix", "match_image_format", "luminance", "class_id", "is_checkpoint", "DEFAULT_PER_CLASS"]

#: images per class generated when ``pool`` is a generator checkpoint and ``n_per_class`` is not given
DEFAULT_PER_CLASS = 256

# Keys albumentations treats as data; a label stored under one of them would be transformed as data.
_DATA_KEYS = frozenset({"image", "images", "mask", "masks", "bboxes", "keypoints", "volume", "volumes",
                        "mask3d", "masks3d", "applied_transforms"})
# One label per call cannot say what to put in each image of a batch or slice of a volume.
_BATCH_KEYS = ("images", "volume", "volumes")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


# --------------------------------------------------------------------------- pure helpers
def is_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a generator checkpoint folder (``config.json`` + ``model.safetensors``)."""
    path = Path(path)
    return (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


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


def class_id(value: Any, *, key: str = "label") -> int:
    """One integer class id from an int, a numpy integer, or a one-element integer array or tensor."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as err:  # e.g. a CUDA tensor
        raise ValueError(f"{key}={value!r}: cannot read a class id from it ({err})") from err
    if arr.size != 1 or arr.dtype.kind not in "iu":
        raise ValueError(f"{key}={value!r}: the label must be one integer class id (an int, or an integer array "
                         f"or tensor with one element), got {type(value).__name__} of dtype {arr.dtype} and "
                         f"shape {arr.shape}")
    return int(arr.reshape(()))


def _check_int(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}")
    return int(value)


def _check_pool_source(value: Any) -> str | Any:
    """A pool folder / checkpoint path (returned as a string), a SyntheticPool, or a generator."""
    if isinstance(value, SyntheticPool):
        return value
    if callable(getattr(value, "sample", None)) and hasattr(value, "num_classes"):
        return value
    if isinstance(value, (str, os.PathLike)):
        text = os.fsdecode(value)
        path = Path(text).expanduser()
        hint = ("give a pool folder (made by `synthaug sample --pool DIR` or SyntheticPool.save) or a generator "
                f"checkpoint folder ({CONFIG_FILE} + {WEIGHTS_FILE}, made by gen.save or `synthaug train`)")
        if not text:
            raise ValueError(f"pool='' is empty: {hint}")
        if not path.exists():
            raise ValueError(f"pool={text!r} does not exist: {hint}")
        if not (is_pool(path) or is_checkpoint(path)):
            raise ValueError(f"pool={text!r} is neither a pool folder nor a generator checkpoint: {hint}")
        return text
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

    Targets: image (uint8 ``(H, W)`` or ``(H, W, C)``; the synthetic image is converted to its size
    and channel count).
    """

    class InitSchema(BaseTransformInitSchema):
        pool: Any
        label_key: Any
        seed: Any
        n_per_class: Any
        batch_size: Any

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
            return _check_int("seed", value, minimum=0)

        @field_validator("n_per_class", mode="before")
        @classmethod
        def _n_per_class(cls, value: Any) -> int | None:
            return None if value is None else _check_int("n_per_class", value, minimum=1)

        @field_validator("batch_size", mode="before")
        @classmethod
        def _batch_size(cls, value: Any) -> int:
            return _check_int("batch_size", value, minimum=1)

        @model_validator(mode="after")
        def _n_per_class_needs_a_generator(self) -> SyntheticMix.InitSchema:
            ready_made = isinstance(self.pool, SyntheticPool) or (isinstance(self.pool, str) and is_pool(
                Path(self.pool).expanduser()))
            if ready_made and self.n_per_class is not None:
                where = self.pool if isinstance(self.pool, str) else "the given SyntheticPool"
                raise ValueError(f"n_per_class={self.n_per_class} only applies when pool is a generator checkpoint; "
                                 f"{where} is a ready-made pool, whose size was fixed when it was sampled")
            return self

        def model_dump(self, **kwargs: Any) -> dict[str, Any]:
            # albumentations passes model_dump() to __init__; pydantic would turn a SyntheticPool (a
            # dataclass) into a plain dict, so hand the pool object over untouched.
            out = super().model_dump(**kwargs)
            out["pool"] = self.pool
            return out

    def __init__(self, pool: str | os.PathLike | SyntheticPool | Any, p: float = 0.3, *, label_key: str = "label",
                 seed: int = 0, n_per_class: int | None = None, batch_size: int = 256) -> None:
        super().__init__(p=p)
        self.label_key = label_key
        # Not ``self.seed``: albumentations keeps its own random seed under that name.
        self.pool_seed = seed
        self.n_per_class = n_per_class
        self.batch_size = batch_size
        self._source = pool  # a path string, a SyntheticPool or a generator
        self._pool: SyntheticPool | None = pool if isinstance(pool, SyntheticPool) else None
        self._by_class: list[np.ndarray] | None = None

    # ----------------------------------------------------------------- the pool, loaded on first use
    @property
    def pool_path(self) -> str | None:
        """The pool folder or checkpoint path this transform was built from (None for an object)."""
        return self._source if isinstance(self._source, str) else None

    @property
    def pool(self) -> SyntheticPool:
        """The synthetic pool, loaded (or generated from the checkpoint) on first access."""
        if self._pool is None:
            self._pool = self._load()
        return self._pool

    def _load(self) -> SyntheticPool:
        source = self._source
        if isinstance(source, str):
            path = Path(source).expanduser()
            if is_pool(path):
                return load_pool(path)
            from .generators import load_generator

            return self._generate(load_generator(path))
        return self._generate(source)

    def _generate(self, gen: Any) -> SyntheticPool:
        per_class = self.n_per_class or DEFAULT_PER_CLASS
        labels = np.repeat(np.arange(int(gen.num_classes), dtype=np.int64), per_class)
        return generate_pool(gen, labels, seed=self.pool_seed, batch_size=self.batch_size,
                             desc="SyntheticMix: sampling synthetic pool")

    def _indices_of(self, label: int) -> np.ndarray:
        if self._by_class is None:
            pool = self.pool
            self._by_class = [pool.indices_of(c) for c in range(pool.num_classes)]
        return self._by_class[label]

    def __getstate__(self) -> dict[str, Any]:
        # A pool folder is memory-mapped again in each worker: cheaper than pickling its images.
        # A pool sampled from a checkpoint (or a generator) is made here, in the process that pickles the
        # transform (the main one), so workers only read it and never run the generator.
        if self.pool_path is not None and is_pool(Path(self.pool_path).expanduser()):
            state = self.__dict__.copy()
            state["_pool"] = None
            state["_by_class"] = None
            return state
        self.pool  # noqa: B018  (generate now, before the copy)
        state = self.__dict__.copy()
        if not isinstance(state["_source"], str):
            state["_source"] = None  # the generator object stays in this process; the pool travels
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

    def _check_data(self, data: dict[str, Any]) -> None:
        batch = [k for k in _BATCH_KEYS if k in data]
        if batch:
            raise ValueError(f"SyntheticMix works on one image and its label at a time (image=..., "
                             f"{self.label_key}=...), not on {batch[0]}=...")
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
        return ("pool", "label_key", "seed", "n_per_class", "batch_size")

    def get_transform_init_args(self) -> dict[str, Any]:
        # Written out rather than read back by attribute name: ``seed`` and ``pool`` are taken by
        # albumentations' random state and by the loaded pool.
        pool = self.pool_path if self.pool_path is not None else f"<{type(self._source).__name__} object>"
        return {"pool": pool, "label_key": self.label_key, "seed": self.pool_seed,
                "n_per_class": self.n_per_class, "batch_size": self.batch_size}

    def to_dict_private(self) -> dict[str, Any]:
        if self.pool_path is None:
            raise NotImplementedError(
                f"SyntheticMix was built from a {type(self._source).__name__} object, which cannot be saved with "
                "A.to_dict / A.save; pass a path instead, SyntheticMix('path/to/pool') for a pool folder "
                "(SyntheticPool.save(dir) or `synthaug sample --pool DIR`) or a generator checkpoint folder "
                "(gen.save(dir)), to make the pipeline serializable")
        return super().to_dict_private()
