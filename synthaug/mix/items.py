"""The edge between PyTorch data sets and synthaug: any ``(image, label)`` item in one format.

Real data sets come from torchvision, MedMNIST, ``TensorDataset``, ``Subset`` / ``random_split`` or a
user's own class, and give PIL images, uint8 or float tensors, numpy arrays, and labels as ints, numpy
integers, 0-d or one-element tensors. These pure helpers convert each item once, where it enters, into
the format ``SyntheticDataset`` shares between real and synthetic items (a uint8 ``(C, S, S)`` tensor and
an ``int``), and read a data set's labels, class names and transforms without decoding its images.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import ConcatDataset, Dataset, Subset, TensorDataset

from ..checks import did_you_mean, is_int
from ..data.imageio import convert_channels, letterbox

__all__ = ["class_id", "class_ids_by_name", "to_uint8_image", "fit_image", "split_item", "read_targets", "declared", "real_classes",
           "real_transforms", "augmenting_steps", "FORMAT_ONLY"]


# --------------------------------------------------------------------------- the edge: any item -> one format
def class_id(value: Any, *, key: str = "label") -> int:
    """One integer class id from an int, a numpy integer, or a one-element integer array or tensor."""
    if is_int(value):  # the common case, read for every real item: skip numpy
        return int(value)
    try:
        arr = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{key}={value!r}: cannot read a class id from it ({err})") from err
    if arr.size != 1 or arr.dtype.kind not in "iu":
        raise ValueError(f"{key}={value!r}: the label must be one integer class id (an int, or an integer array "
                         f"or tensor with one element), got {type(value).__name__} of dtype {arr.dtype} and "
                         f"shape {arr.shape}")
    return int(arr.reshape(()))


def class_ids_by_name(labels: Any, names: list[str] | None, num_classes: int, *, what: str = "labels",
                      owner: str = "this generator",
                      unnamed: str = "a checkpoint saved before synthaug recorded them, or trained on data without "
                                     "names") -> list[int]:
    """Class ids for ``labels`` given as ids or class names ("Parasitized"; case-insensitive when unique), the
    way ``synthaug sample --labels`` reads them. An unknown name gets a "did you mean" and the list of names;
    ``what`` names the argument and ``owner`` the thing whose classes these are, in errors; ``unnamed`` says
    why it may have no names."""
    names = list(names or [])
    exact = {name: i for i, name in enumerate(names)}
    folded: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        folded.setdefault(name.casefold(), []).append(i)
    ids = []
    for label in labels:
        if is_int(label):
            ids.append(int(label))
            continue
        if not isinstance(label, str):
            raise ValueError(f"{what}: {label!r} is neither a class id nor a class name")
        text = label.strip()
        # a name wins over a number: a checkpoint whose classes are called "0", "1", ... means them
        if text in exact:
            ids.append(exact[text])
        elif len(folded.get(text.casefold(), [])) == 1:
            ids.append(folded[text.casefold()][0])
        elif text.lstrip("-").isdigit():
            ids.append(int(text))
        elif not names:
            raise ValueError(f"{what}: {text!r} is not a class id, and {owner} has no class names ({unnamed}); "
                             f"give class ids: {', '.join(map(str, range(num_classes)))}")
        else:
            listed = ", ".join(f"{i}={name!r}" for i, name in enumerate(names))
            raise ValueError(f"{what}: unknown class {text!r}{did_you_mean(text, names)}; {owner}'s classes are "
                             f"{listed} (give names or ids)")
    return ids


_WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def _pil_to_array(image: Image.Image) -> np.ndarray:
    """A PIL image as uint8 ``(H, W)`` or ``(H, W, 3)``, the way synthaug's folder loader decodes files:
    16-bit and float images rescaled to 0..255, transparency composited on black, other modes made RGB."""
    mode = image.mode
    if mode in _WIDE_MODES:
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") else max(float(arr.max()), 1.0)
        return np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if mode in ("1", "L"):
        return np.asarray(image.convert("L"))
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
        return np.asarray(flat.convert("L" if mode == "LA" else "RGB"))
    return np.asarray(image.convert("RGB"))


def _as_chw(arr: np.ndarray, *, channels_last: bool, where: str) -> np.ndarray:
    """``arr`` as ``(C, H, W)`` with C in {1, 3}; ``channels_last`` says which layout to try first."""
    if arr.ndim == 2:
        return arr[None]
    if arr.ndim == 3:
        last, first = arr.shape[-1] in (1, 3), arr.shape[0] in (1, 3)
        if last and (channels_last or not first):
            return arr.transpose(2, 0, 1)
        if first:
            return arr
        if 4 in (arr.shape[0], arr.shape[-1]):
            raise ValueError(f"{where}: an image with 4 channels {arr.shape}; give RGB (3 channels) or grayscale "
                             "(1) images, e.g. PIL's image.convert('RGB')")
    raise ValueError(f"{where}: cannot read an image of shape {tuple(arr.shape)}; give (C, H, W) tensors, (H, W, C) "
                     "arrays or PIL images with 1 or 3 channels")


def _as_uint8(arr: np.ndarray, *, where: str) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind == "f":
        if arr.size and not np.isfinite(arr).all():
            raise ValueError(f"{where}: the image has NaN or infinite values")
        low, high = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if low < 0 or high > 1:
            raise ValueError(f"{where}: a float image with values from {low:.3g} to {high:.3g}; float images must be "
                             "in [0, 1] (as ToTensor or ToDtype(torch.float32, scale=True) give). Values outside "
                             "[0, 1] usually come from Normalize on the real data set: move it to "
                             "SyntheticDataset(transform=...), which real and synthetic items share")
        return np.rint(arr * 255.0).astype(np.uint8)
    if arr.dtype.kind in "iu":
        low, high = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if low < 0 or high > 255:
            raise ValueError(f"{where}: integer image values from {low} to {high} do not fit 0..255; scale them to "
                             "uint8 (or to floats in [0, 1]) in the real data set")
        return arr.astype(np.uint8)
    raise ValueError(f"{where}: images of dtype {arr.dtype} are not supported; give uint8 or float images")


def to_uint8_image(image: Any, *, where: str = "image") -> torch.Tensor:
    """Any image a PyTorch data set gives as a uint8 tensor ``(C, H, W)`` with C in {1, 3}.

    Accepted: PIL images (any mode, decoded as synthaug's folder loader does), tensors ``(C, H, W)`` (or
    ``(H, W)``) of uint8, other integers in 0..255 or floats in [0, 1], and numpy arrays ``(H, W, C)`` or
    ``(H, W)`` of the same types. ``where`` names the item in error messages.
    """
    if isinstance(image, torch.Tensor):
        if image.dtype == torch.uint8 and image.ndim == 3 and image.shape[0] in (1, 3) and image.device.type == "cpu":
            return image  # the common case, already in the internal format: no copy
        tensor = image.detach().cpu()
        if tensor.dtype in (torch.float16, torch.bfloat16):
            tensor = tensor.float()
        arr, channels_last = tensor.numpy(), False
    elif isinstance(image, Image.Image):
        arr, channels_last = _pil_to_array(image), True
    elif isinstance(image, np.ndarray):
        arr, channels_last = image, True
    else:
        raise ValueError(f"{where}: got {type(image).__name__}; the real data set must give images as PIL images, "
                         "tensors (C, H, W) or numpy arrays (H, W, C)")
    if arr.dtype == np.bool_:
        raise ValueError(f"{where}: boolean images are not supported; give uint8 or float images")
    chw = np.ascontiguousarray(_as_chw(_as_uint8(arr, where=where), channels_last=channels_last, where=where))
    if not chw.flags.writeable:  # e.g. np.asarray of a PIL image: torch wants memory it may write
        chw = chw.copy()
    return torch.from_numpy(chw)


def fit_image(image: torch.Tensor, channels: int, size: int) -> torch.Tensor:
    """A uint8 ``(C, H, W)`` image as ``(channels, size, size)``: 1 <-> 3 channels converted (luminance or
    repetition); another size letterboxed (the longer side resized to ``size``, black padding), as synthaug's
    folder loader prepares the images its generators are trained on."""
    if image.shape[0] != channels:
        image = convert_channels(image[None], channels)[0]
    if tuple(image.shape[1:]) != (size, size):
        arr = image.permute(1, 2, 0).numpy()
        pil = Image.fromarray(arr[..., 0] if channels == 1 else arr, mode="L" if channels == 1 else "RGB")
        image = torch.from_numpy(np.array(letterbox(pil, size)))  # a writable copy
    return image


def split_item(item: Any, index: int) -> tuple[Any, Any]:
    """``(image, label)`` of real item ``index``, refusing items of another shape with a message naming it."""
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return item[0], item[1]
    what = f"a {type(item).__name__}" + (f" of {len(item)} elements" if isinstance(item, (tuple, list)) else "")
    raise ValueError(f"real item {index} is {what}; the real data set must give (image, label) pairs")


# --------------------------------------------------------------------------- the real data set, read cheaply
def parents_of(ds: Any) -> list[Any]:
    """The data sets ``ds`` reads from (a Subset's parent, a ConcatDataset's parts), for looking through."""
    if isinstance(ds, Subset):
        return [ds.dataset]
    if isinstance(ds, ConcatDataset):
        return list(ds.datasets)
    return []


def _declared_targets(ds: Any) -> np.ndarray | None:
    """Labels a data set declares without decoding images: ``targets`` / ``labels`` (torchvision, MedMNIST),
    a TensorDataset's second tensor, a Subset's parent's labels at its indices, a ConcatDataset's parts."""
    try:
        n = len(ds)
    except TypeError:
        return None
    candidates = [getattr(ds, name, None) for name in ("targets", "labels")]
    if isinstance(ds, TensorDataset) and len(ds.tensors) >= 2:
        candidates.append(ds.tensors[1])
    for value in candidates:
        if value is None or callable(value) or isinstance(value, (str, dict)):
            continue
        try:
            arr = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value)
        except (TypeError, ValueError, RuntimeError):
            continue
        if arr.ndim == 2 and arr.shape[1] == 1:  # MedMNIST's (N, 1)
            arr = arr[:, 0]
        if arr.ndim == 1 and len(arr) == n and arr.dtype.kind in "iu":
            return arr.astype(np.int64)
    if isinstance(ds, Subset):
        parent = _declared_targets(ds.dataset)
        if parent is not None:
            return parent[np.asarray(ds.indices, dtype=np.int64)]
    if isinstance(ds, ConcatDataset):
        parts = [_declared_targets(part) for part in ds.datasets]
        if all(part is not None for part in parts):
            return np.concatenate(parts) if parts else np.zeros(0, np.int64)
    return None


def read_targets(real: Dataset) -> np.ndarray:
    """Every real item's class id (int64), read cheaply when the data set (or, through ``Subset`` and
    ``random_split``, its parent) declares its labels; else item by item, decoding every image once."""
    declared = _declared_targets(real)
    if declared is not None:
        return declared
    n = len(real)
    logging.getLogger("synthaug").info("reading the labels of %d real items one by one (the data set has no "
                                       "targets or labels attribute)", n)
    return np.array([class_id(split_item(real[i], i)[1], key=f"the label of real item {i}") for i in range(n)],
                    dtype=np.int64)


def declared(ds: Any, name: str) -> Any:
    """An attribute of ``ds`` or, looking through Subsets and ConcatDatasets, of its parents (None if absent)."""
    value = getattr(ds, name, None)
    if value is not None:
        return value
    found = [declared(parent, name) for parent in parents_of(ds)]
    if found and all(f is not None for f in found) and all(_same(f, found[0]) for f in found[1:]):
        return found[0]
    return None


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):  # arrays compare element-wise
        return np.array_equal(np.asarray(a, dtype=object), np.asarray(b, dtype=object))


def real_classes(real: Dataset) -> list[str] | None:
    """Class names: ``classes`` (torchvision) or MedMNIST's ``info["label"]``, looking through Subsets."""
    classes = declared(real, "classes")
    if classes is not None:
        return [str(c) for c in classes]
    info = declared(real, "info")  # MedMNIST: info["label"] = {"0": "malignant", ...}
    labels = info.get("label") if isinstance(info, Mapping) else None
    if isinstance(labels, Mapping) and all(str(i) in labels for i in range(len(labels))):
        return [str(labels[str(i)]) for i in range(len(labels))]
    return None


def real_transforms(ds: Any) -> list[Any]:
    """The ``transform`` of ``ds`` and of the data sets it reads from (a Subset's transform is its parent's)."""
    found = [getattr(ds, "transform", None)]
    for parent in parents_of(ds):
        found += real_transforms(parent)
    return [t for t in found if t is not None]


#: transforms that only change an image's type, range, size or channels: synthetic items are made in the
#: resulting format anyway, so a real data set may keep them
FORMAT_ONLY = frozenset({"PILToTensor", "ToTensor", "ToImage", "ToImageTensor", "ToPureTensor", "ToDtype",
                         "ConvertImageDtype", "ConvertDtype", "Resize", "CenterCrop", "Grayscale", "RGB",
                         "Identity", "ToPILImage"})


def augmenting_steps(transform: Any) -> list[str]:
    """The steps of ``transform`` (looking inside ``Compose``) that do more than convert the format: the
    ones synthetic items would miss if they stayed on the real data set."""
    steps = getattr(transform, "transforms", None)
    if isinstance(steps, (list, tuple)):
        return [name for step in steps for name in augmenting_steps(step)]
    name = type(transform).__name__
    if name in FORMAT_ONLY:
        return []
    return [getattr(transform, "__name__", name) if callable(transform) and name == "function" else name]
