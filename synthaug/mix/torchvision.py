"""SyntheticMixV2: the torchvision v2 twin of ``SyntheticMix`` (``synthaug.mix.albumentations``).

Same options, same pool (``synthaug.mix.transform_pool``: a pool folder, a folder of class folders, a generator
checkpoint or a source object), same labels (a class id or a class name the pool records). With
probability ``p`` the image of a sample is replaced by a pool image of the sample's class::

    from torchvision.transforms import v2
    from synthaug import SyntheticMixV2

    transform = v2.Compose([SyntheticMixV2("pools/malaria-cvae", p=0.3), v2.RandomHorizontalFlip(),
                            v2.ToDtype(torch.float32, scale=True)])
    image, label = transform(image, label)        # or transform({"image": image, "label": label})

The image is a ``tv_tensors.Image``, a plain tensor ``(C, H, W)`` (uint8, or float in [0, 1]) or a PIL
image, and comes back as the same kind, dtype, size and channel count (1 <-> 3 channels converted, the size
changed with antialiased bilinear resizing). The label is found as torchvision finds non-image entries:
``label_key`` in a dict sample, else the first class label (an int, a 0-d or one-element integer tensor,
or a class name) after the image. Randomness comes from torch's global generator, as in every v2 transform
(``torch.manual_seed(s)`` repeats the choices). Masks, boxes, keypoints and videos are refused: a synthetic
image has none that match.

albumentations is archived upstream (June 2025; its successor is AGPL-licensed): ``SyntheticMix`` keeps
working on its last release (synthaug pins ``albumentations>=2.0,<2.1``); this twin needs torchvision only.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import PIL.Image
import torch
from torch.utils._pytree import tree_flatten, tree_unflatten
from torchvision import tv_tensors
from torchvision.transforms.v2 import Transform
from torchvision.transforms.v2 import functional as F

from ..data.imageio import convert_channels
from .items import to_uint8_image
from .transform_pool import (MixPool, PoolAccess, check_mix_options, check_p, check_pool_dir, check_pool_source,
                             check_sampling_options)
from .pool import SyntheticPool

__all__ = ["SyntheticMixV2", "match_tensor_format"]

_PAIRED = (tv_tensors.Mask, tv_tensors.BoundingBoxes, tv_tensors.Video) + (
    (tv_tensors.KeyPoints,) if hasattr(tv_tensors, "KeyPoints") else ())


def match_tensor_format(image: np.ndarray | torch.Tensor, channels: int, height: int, width: int) -> torch.Tensor:
    """A pool image (uint8 ``(C, H, W)``) as uint8 ``(channels, height, width)``: 3 -> 1 channels by luminance
    before resizing, 1 -> 3 by repetition after (as ``match_image_format`` does), antialiased bilinear resizing."""
    out = torch.from_numpy(np.array(image, copy=True)) if isinstance(image, np.ndarray) else image.clone()
    if out.ndim != 3 or out.dtype != torch.uint8:
        raise ValueError(f"pool images must be uint8 (C, H, W), got {out.dtype} {tuple(out.shape)}")
    if out.shape[0] == 3 and channels == 1:
        out = convert_channels(out[None], 1)[0]
    if tuple(out.shape[1:]) != (height, width):
        out = F.resize(out, [height, width], antialias=True)
    if out.shape[0] != channels:
        out = convert_channels(out[None], channels)[0]
    return out.contiguous()


def _is_image(value: Any) -> bool:
    return isinstance(value, (tv_tensors.Image, PIL.Image.Image))


def _is_label(value: Any) -> bool:
    if isinstance(value, (str, int, np.integer)) and not isinstance(value, bool):
        return True
    return isinstance(value, torch.Tensor) and not _is_image(value) and value.numel() == 1 and not (
        value.dtype.is_floating_point or value.dtype == torch.bool)


class SyntheticMixV2(PoolAccess, Transform):
    """With probability ``p``, replace the image by a synthetic image of the same class (see the module).

    The options are ``SyntheticMix``'s: ``pool``, ``p``, ``label_key`` (the key of the label in a dict
    sample), ``seed``, ``n_per_class``, ``batch_size``, ``device`` and ``pool_dir``.
    """

    def __init__(self, pool: str | os.PathLike | SyntheticPool | Any, p: float = 0.3, *, label_key: str = "label",
                 seed: int = 0, n_per_class: int | None = None, batch_size: int = 256, device: str | None = None,
                 pool_dir: str | os.PathLike | None = None) -> None:
        super().__init__()
        owner = "SyntheticMixV2"
        self.p = check_p(p, "SyntheticMixV2")
        if not isinstance(label_key, str) or not label_key:
            raise ValueError(f"{owner}: label_key={label_key!r} must be a non-empty string, the key of the label in a "
                             "dict sample, e.g. 'label'")
        self.label_key = label_key
        pool = check_pool_source(pool)
        pool_dir = check_pool_dir(pool_dir, owner)
        seed, n_per_class, batch_size, device = check_mix_options(seed=seed, n_per_class=n_per_class,
                                                                  batch_size=batch_size, device=device, owner=owner)
        try:
            check_sampling_options(pool, n_per_class=n_per_class, device=device, pool_dir=pool_dir)
        except ValueError as err:
            raise ValueError(f"{owner}: {err}") from None
        self.pool_seed, self.n_per_class, self.batch_size, self.device, self.pool_dir = (
            seed, n_per_class, batch_size, device, pool_dir)
        self._mix = MixPool(pool, seed=seed, n_per_class=n_per_class, batch_size=batch_size, device=device,
                            pool_dir=pool_dir, owner=owner)

    def extra_repr(self) -> str:
        return f"pool={self._mix.describe()!r}, p={self.p}, label_key={self.label_key!r}"

    # ----------------------------------------------------------------- the sample
    def _find(self, sample: Any, flat: list[Any]) -> tuple[int, Any]:
        """The position of the image in ``flat`` and the sample's label."""
        refused = [type(v).__name__ for v in flat if isinstance(v, _PAIRED)]
        if refused:
            raise ValueError(f"SyntheticMixV2 replaces the image with a synthetic one, which has no matching "
                             f"{refused[0]}; it is for classification samples (image, label)")
        positions = [i for i, v in enumerate(flat) if _is_image(v)] or [
            i for i, v in enumerate(flat) if isinstance(v, torch.Tensor) and v.ndim >= 2]
        if not positions:
            raise ValueError("SyntheticMixV2 found no image in the sample; give a tv_tensors.Image, a tensor "
                             "(C, H, W) or a PIL image with its label: mix(image, label)")
        where = positions[0]
        if isinstance(sample, dict) and self.label_key in sample:
            return where, sample[self.label_key]
        labels = [v for v in flat[where + 1:] if _is_label(v)]
        if not labels:
            raise ValueError(f"SyntheticMixV2 needs each image's class: call it as mix(image, label) or on a dict "
                             f"with the label under label_key={self.label_key!r}")
        return where, labels[0]

    def _synthetic_like(self, image: Any, row: int) -> Any:
        """Pool image ``row`` as the same kind, dtype, size and channels as ``image``."""
        pool_image = self.pool.images[row]
        if isinstance(image, PIL.Image.Image):
            like = to_uint8_image(image, where="SyntheticMixV2 image")
            out = match_tensor_format(pool_image, like.shape[0], like.shape[1], like.shape[2])
            array = out.permute(1, 2, 0).numpy()
            return PIL.Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
        if image.ndim != 3:
            raise ValueError(f"SyntheticMixV2 works on one image (C, H, W) and its label at a time, got shape "
                             f"{tuple(image.shape)}")
        channels, height, width = image.shape
        out = match_tensor_format(pool_image, int(channels), int(height), int(width))
        if image.dtype != torch.uint8:
            out = F.to_dtype(out, image.dtype, scale=True)
        out = out.to(image.device)
        return tv_tensors.wrap(out, like=image) if isinstance(image, tv_tensors.TVTensor) else out

    def forward(self, *inputs: Any) -> Any:
        # The label is needed to choose the image, and v2's transform() sees one input at a time: so this
        # transform reads the whole sample here (as v2's RandomApply does), then replaces only the image.
        sample = inputs if len(inputs) > 1 else inputs[0]
        flat, spec = tree_flatten(sample)
        where, label = self._find(sample, flat)
        if self.p == 0 or torch.rand(1).item() >= self.p:
            return sample
        row = self._mix.choose(self._mix.label_of(label, self.label_key),
                               lambda k: int(torch.randint(k, (1,)).item()))
        flat[where] = self._synthetic_like(flat[where], row)
        return tree_unflatten(flat, spec)
