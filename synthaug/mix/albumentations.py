"""SyntheticMix: the albumentations face of synthetic augmentation (its torchvision v2 twin is
``synthaug.mix.torchvision.SyntheticMixV2``).

``SyntheticMix(pool, p)`` is an albumentations ``ImageOnlyTransform`` that, with probability ``p``,
replaces the image by a synthetic image of the same class, read from a pool of pre-generated images
(a pool folder, memory-mapped; a folder of class folders; or a pool generated once from a generator
checkpoint)::

    import albumentations as A
    from synthaug.mix import SyntheticMix

    pipeline = A.Compose([SyntheticMix("pools/malaria-cvae", p=0.3), A.HorizontalFlip(), A.Normalize()], seed=0)
    out = pipeline(image=image, label=label)      # image: uint8 (H, W) or (H, W, C); label: class id or name

The pool is given as a path so the pipeline serializes (``A.save`` / ``A.load`` store it as an absolute
path, so a saved pipeline loads from any working directory, and on a machine without the pool: the first
call there names the missing path) and pickles cheaply to DataLoader workers (``synthaug.mix.transform_pool``). Which
pool image is used comes from the transform's albumentations random generator, so
``A.Compose(..., seed=S)`` repeats the same choices.

A synthetic image has no matching mask, boxes or keypoints, so a call that passes any of them is refused:
SyntheticMix is for classification pipelines (``image=..., label=...``). ``A.from_dict`` / ``A.load`` find
the class once ``synthaug.mix.albumentations`` has been imported: ``synthaug.load_pipeline(path)`` does both (a
bare ``import synthaug`` stays free of albumentations and OpenCV). albumentations is archived upstream
(June 2025); SyntheticMix works on its last release, 2.0.x.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from albumentations.core.transforms_interface import BaseTransformInitSchema, ImageOnlyTransform
from pydantic import ValidationError, field_validator, model_validator

from .items import class_id
from .transform_pool import (DEFAULT_PER_CLASS, MixPool, PoolAccess, check_mix_options, check_p, check_pool_dir,
                             check_pool_source, check_sampling_options)
from .pool import SyntheticPool
from ..sources import is_checkpoint

__all__ = ["SyntheticMix", "load_pipeline", "match_image_format", "luminance"]

#: the name albumentations saves the class under (``A.save``, ``A.to_dict``) and finds it by when loading: the
#: module's name before synthaug.mix, kept so that a pipeline saved by any synthaug version loads in any other
SAVED_NAME = "synthaug.transforms.SyntheticMix"

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


# --------------------------------------------------------------------------- the transform
def _allowed_range(schema: Any, name: str) -> str:
    """``[low, high]`` from a schema field's bounds (``Field(ge=0, le=1)`` gives ``[0, 1]``)."""
    field = getattr(schema, "model_fields", {}).get(name)
    bounds = {key: getattr(m, key) for m in getattr(field, "metadata", []) for key in ("ge", "gt", "le", "lt")
              if getattr(m, key, None) is not None}
    low = f"[{bounds['ge']}" if "ge" in bounds else f"({bounds['gt']}" if "gt" in bounds else "(-inf"
    high = f"{bounds['le']}]" if "le" in bounds else f"{bounds['lt']})" if "lt" in bounds else "inf)"
    return f"{low}, {high}"


def plain_message(err: ValidationError, owner: str, schema: Any = None) -> str:
    """One line for the wrong options of a pydantic ``ValidationError``: each option, its value, what is allowed."""
    lines = []
    for item in err.errors():
        name = ".".join(str(part) for part in item.get("loc", ())) or "options"
        value, ctx = item.get("input"), item.get("ctx") or {}
        if item.get("type") == "value_error":  # one of our validators: its message already names the value
            text = str(ctx.get("error", item.get("msg", "")))
        elif {"ge", "gt", "le", "lt"} & set(ctx):
            text = f"{name}={value!r} is outside the allowed range {_allowed_range(schema, name)}"
            if name == "p":
                text += " (p is the probability of replacing an image, e.g. p=0.3)"
        else:
            text = f"{name}={value!r}: {item.get('msg', 'invalid value')}"
        lines.append(text if text.startswith(f"{owner}:") else f"{owner}: {text}")
    return "; ".join(lines)


class _PlainErrors(type(ImageOnlyTransform)):
    """albumentations' metaclass, with pydantic's multi-line validation report turned into one plain line."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except ValueError as err:
            if isinstance(err.__cause__, ValidationError):
                raise ValueError(plain_message(err.__cause__, cls.__name__, getattr(cls, "InitSchema", None))) from None
            raise


class SyntheticMix(PoolAccess, ImageOnlyTransform, metaclass=_PlainErrors):
    """With probability ``p``, replace the image by a synthetic image of the same class.

    Args:
        pool: a pool folder (``synthaug sample --pool DIR``; memory-mapped), a folder of class folders
            (``<folder>/<class name>/<images>``, e.g. from ``synthaug export``: all its images) or a
            generator checkpoint folder (a pool of ``n_per_class`` images per class is generated from it
            once, on first use, from ``seed``). A ``SyntheticPool``, generator or other source object
            (``synthaug.sources``) also works in-process, but such a transform cannot be serialized.
        p: probability of replacing the image (albumentations' own ``p``, in [0, 1]).
        label_key: the name under which the label is passed: ``pipeline(image=img, label=y)``; ``y`` is a
            class id or a class name the pool records (as ``synthaug sample --labels`` takes them).
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

        # The schema is albumentations' adapter: each field's rule lives in synthaug.options' declarations
        # (``MixSettings``) and the checks of transform_pool, which these validators call; pydantic's own bounds on
        # ``p`` (from BaseTransformInitSchema) then agree with ours.
        @field_validator("p", mode="before")
        @classmethod
        def _p(cls, value: Any) -> float:
            return check_p(value, "SyntheticMix")

        @field_validator("pool_dir", mode="before")
        @classmethod
        def _pool_dir(cls, value: Any) -> str | None:
            return check_pool_dir(value)

        @field_validator("pool", mode="before")
        @classmethod
        def _pool(cls, value: Any) -> Any:
            return check_pool_source(value)

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

        @model_validator(mode="after")
        def _sampling_options(self) -> SyntheticMix.InitSchema:
            self.seed, self.n_per_class, self.batch_size, self.device = check_mix_options(
                seed=self.seed, n_per_class=self.n_per_class, batch_size=self.batch_size, device=self.device,
                owner="SyntheticMix")
            check_sampling_options(self.pool, n_per_class=self.n_per_class, device=self.device,
                                   pool_dir=self.pool_dir)
            return self

        def model_dump(self, **kwargs: Any) -> dict[str, Any]:
            # albumentations passes model_dump() to __init__; pydantic would turn a SyntheticPool (a
            # dataclass) into a plain dict, so hand the pool object over untouched.
            out = super().model_dump(**kwargs)
            out["pool"] = self.pool
            return out

    @classmethod
    def get_class_fullname(cls) -> str:
        return SAVED_NAME  # albumentations reads this when the class is made, to register it under this name

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
        self._mix = MixPool(pool, seed=seed, n_per_class=n_per_class, batch_size=batch_size, device=device,
                            pool_dir=pool_dir, owner="SyntheticMix")
        self._paired_keys: dict[str, str] = {}  # additional targets of mask / bboxes / keypoints kinds

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
        label = self._mix.label_of(data[self.label_key], self.label_key)
        # albumentations' per-transform generator, so A.Compose(..., seed=S) repeats the choice
        return {"pool_index": self._mix.choose(label, self.random_generator.integers)}

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
        pool = self.pool_path if self.pool_path is not None else f"<{self._mix.describe()} object>"
        return {"pool": pool, "label_key": self.label_key, "seed": self.pool_seed,
                "n_per_class": self.n_per_class, "batch_size": self.batch_size, "device": self.device,
                "pool_dir": self.pool_dir}

    def to_dict_private(self) -> dict[str, Any]:
        if self.pool_path is None:
            raise NotImplementedError(
                f"SyntheticMix was built from a {self._mix.describe()} object, which cannot be saved with "
                "A.to_dict / A.save; pass a path instead, SyntheticMix('path/to/pool') for a pool folder "
                "(SyntheticPool.save(dir) or `synthaug sample --pool DIR`) or a generator checkpoint folder "
                "(gen.save(dir)), to make the pipeline serializable")
        return super().to_dict_private()


def load_pipeline(source: str | os.PathLike | dict[str, Any]) -> Any:
    """An albumentations pipeline saved with ``A.save`` (a ``.json`` or ``.yaml`` file) or ``A.to_dict``, with
    SyntheticMix registered first: ``A.load`` alone raises a bare ``KeyError`` when nothing has imported
    ``synthaug.mix.albumentations`` yet (albumentations has no plugin entry points to find it by). A transform that
    albumentations does not know here is named in a ``ValueError``."""
    import albumentations as A

    where = "the pipeline" if isinstance(source, dict) else os.fspath(source)
    try:
        if isinstance(source, dict):
            return A.from_dict(source)
        fmt = "yaml" if Path(source).suffix.lower() in (".yaml", ".yml") else "json"
        return A.load(os.fspath(source), data_format=fmt)
    except KeyError as err:
        raise ValueError(f"{where} names the transform {err.args[0]!r}, which albumentations does not know here; "
                         "import the package that defines it before loading") from None
