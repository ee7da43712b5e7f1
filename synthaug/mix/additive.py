"""Additive mixing: synthetic images *on top of* each real batch, the real draws left exactly as they were.

``SyntheticDataset(gen, ratio, real=train)`` *replaces*: a share of each epoch is synthetic, so at a fixed
number of steps the classifier sees fewer real images. ``AdditiveSynthetic`` adds instead: every real
batch your loader gives keeps its images, labels and order, and ``round(per_real * len(batch))`` synthetic
items are appended, so a gain cannot come from seeing fewer real images, nor a loss::

    synthetic = SyntheticDataset(gen, 0.2, real=train)       # its synthetic items match the real classes
    extra = AdditiveSynthetic(synthetic, per_real=0.25, seed=0)
    for images, labels in loader:
        images, labels = extra.extend(images, labels)         # 64 real + 16 synthetic

The synthetic items are drawn as the benchmark draws real ones: consecutive seeded permutations of the
synthetic items (``IndexStream``), so every item is seen once per pass and a seed gives the same draws.

The strategy items of ``SyntheticDataset`` work too: with a soft teacher (``teacher=TeacherLabels(model)``) the
appended labels are probability vectors and int real labels become one-hot; a real batch with is_synthetic flags
(``return_is_synthetic=True``) comes back with ``True`` for the appended items, ready for
``synthaug.mix.weighted_cross_entropy``: ``images, labels, flags = extra.extend(images, labels, flags)``.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..checks import check_float, check_int, is_int
from .items import class_id

__all__ = ["AdditiveSynthetic", "IndexStream", "extra_per_batch", "permutation_seed"]

OWNER = "AdditiveSynthetic"

# The stream salt keeps independent streams of one seed apart (real batches, synthetic extras, BatchNorm
# images). Stream 0 is the formula the benchmark has always drawn its real batches with, so runs made before
# the other streams existed draw the same real batches. torch's CPU generator keeps only the low 32 bits of a
# seed, so the salt must change those: a multiple of 2**32 would give every stream the same draws.
_STREAM_SALT = 0x9E3779B1


def permutation_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """The seed of pass ``epoch`` of stream ``stream`` of ``seed``."""
    return int(seed) * 1_000_003 + int(epoch) + int(stream) * _STREAM_SALT


class IndexStream:
    """An endless stream of the indices ``0 .. n-1``: consecutive seeded permutations, one per pass.

    ``take(k)`` gives the next ``k`` indices; a pass boundary may fall inside a batch, so a batch can
    be larger than ``n``. The same ``(n, seed, stream)`` always gives the same stream.
    """

    def __init__(self, n: int, *, seed: int, stream: int = 0) -> None:
        if n < 1:
            raise ValueError("cannot draw items from an empty data set")
        self.n, self.seed, self.stream = int(n), int(seed), int(stream)
        self.passes = 0
        self._buffer = torch.empty(0, dtype=torch.long)

    def take(self, k: int) -> torch.Tensor:
        while len(self._buffer) < k:
            g = torch.Generator().manual_seed(permutation_seed(self.seed, self.passes, self.stream))
            self._buffer = torch.cat([self._buffer, torch.randperm(self.n, generator=g)])
            self.passes += 1
        out, self._buffer = self._buffer[:k], self._buffer[k:]
        return out


def extra_per_batch(per_real: float, batch_size: int) -> int:
    """Synthetic items appended to a real batch of ``batch_size``: ``round(per_real * batch_size)``."""
    return int(round(float(per_real) * int(batch_size)))


def _synthetic_indices(source: Dataset) -> tuple[int, int]:
    """``(first, count)`` of the synthetic items of ``source``: a ``SyntheticDataset`` built with ``real=``
    holds its real items first, which are not what is appended; any other data set is synthetic throughout."""
    first = int(getattr(source, "num_real", 0) or 0)
    return first, len(source) - first


class AdditiveSynthetic:
    """Append ``round(per_real * len(batch))`` synthetic items to every real batch (``extend``).

    ``source``: a map-style data set of synthetic ``(image, label)`` or ``(image, label, is_synthetic)`` items,
    typically a ``SyntheticDataset`` (of a generator, a checkpoint folder or a pool; built with ``real=`` its
    synthetic labels follow the real class frequencies, and only its synthetic items are drawn). A label is a
    class id (an int, a numpy integer or a one-element integer tensor) or a float probability vector
    ``(classes,)`` (``teacher=TeacherLabels(model, mode="soft")``), one kind for the whole source. ``per_real``:
    synthetic items appended per real item of a batch (0.25: 16 on top of 64; the word the benchmark's additive
    arms use too, where ``ratio`` is ``SyntheticDataset``'s share of an epoch that *replaces* real items;
    ``share=`` is its old name, kept for one release). ``seed``: the draws; each call of ``draw`` or ``extend``
    continues the stream.

    The synthetic items must come in the format of the real batch (same dtype and image shape): give the
    ``SyntheticDataset`` the transform the real items get (``transform=``). Call ``extend`` in the training
    loop, not in DataLoader workers (each worker would draw the same items).
    """

    def __init__(self, source: Dataset, per_real: float = 0.25, *, seed: int = 0, share: float | None = None) -> None:
        if not (hasattr(source, "__len__") and hasattr(source, "__getitem__")):
            raise ValueError(f"AdditiveSynthetic: source={type(source).__name__} must be a map-style data set of "
                             "synthetic (image, label) items, e.g. SyntheticDataset(gen, 0.2, real=train)")
        if share is not None:
            import warnings

            warnings.warn("AdditiveSynthetic(share=...) is now per_real= (synthetic items appended per real item of "
                          "a batch); share= works for one release", DeprecationWarning, stacklevel=2)
            per_real = share
        self.per_real = check_float(per_real, "per_real", "AdditiveSynthetic", minimum=0,
                                    hint="synthetic items appended per real item of a batch, e.g. 0.25")
        self.seed = check_int(seed, "seed", "AdditiveSynthetic", minimum=0)
        self.source = source
        self.first, count = _synthetic_indices(source)
        if count < 1:
            raise ValueError(f"AdditiveSynthetic: the source holds no synthetic items ({len(source)} items, "
                             f"{self.first} of them real); build it with a ratio > 0 or a length")
        self._stream = IndexStream(count, seed=self.seed, stream=1)
        self.drawn = 0  # synthetic items appended so far

    def draw(self, n: int) -> tuple[torch.Tensor, ...]:
        """The next ``n`` synthetic items stacked, in the arity of the source's items: ``(images, labels)``, or
        ``(images, labels, is_synthetic)`` (a bool tensor ``(n,)``) when the items have three elements.

        ``labels``: int64 ``(n,)`` for class ids, float32 ``(n, classes)`` for probability vectors (soft teacher
        labels).
        """
        n = check_int(n, "n", f"{OWNER}.draw", minimum=1)
        indices = self._stream.take(n)
        items = [self.source[self.first + int(i)] for i in indices]
        self.drawn += n
        arity = {len(item) if isinstance(item, (tuple, list)) else None for item in items}
        if arity not in ({2}, {3}):
            raise ValueError(f"{OWNER}: the source's items must all be (image, label) or (image, label, "
                             f"is_synthetic) tuples, got items of {sorted(arity, key=str)} elements; give a "
                             "SyntheticDataset or a data set of such tuples")
        images = torch.stack([torch.as_tensor(item[0]) for item in items])
        labels = _stack_labels([item[1] for item in items], [self.first + int(i) for i in indices])
        if arity == {2}:
            return images, labels
        return images, labels, torch.tensor([bool(item[2]) for item in items], dtype=torch.bool)

    def extend(self, images: torch.Tensor, labels: torch.Tensor, *rest: Any) -> tuple[torch.Tensor, ...]:
        """A real batch with ``round(per_real * len(images))`` synthetic items appended after the real ones (which
        keep their order), on the real batch's device; the same arity as given.

        - ``extend(images, labels)`` gives ``(images, labels)``; ``extend(images, labels, is_synthetic)`` (flags
          ``(B,)`` of bools or 0/1, e.g. a loader over ``SyntheticDataset(..., return_is_synthetic=True)``) gives
          ``(images, labels, is_synthetic)`` with ``True`` for the appended items (``1`` when the flags came as
          0/1 integers: the real flags are kept as they are).
        - Labels: class ids ``(B,)`` get the synthetic class ids in their dtype (the real labels unchanged).
          Soft synthetic labels ``(n, classes)`` turn int real labels into one-hot float ``(B, classes)``, so
          both concatenate; soft real labels ``(B, classes)`` get soft synthetic ones of the same width, or
          synthetic class ids made one-hot. A different number of classes is refused.
        - A batch too small to get an item (``round(per_real * B) == 0``) is returned as it came.
        """
        if len(rest) > 1:
            raise ValueError(f"{OWNER}.extend: got {2 + len(rest)} batch elements; give (images, labels) or "
                             "(images, labels, is_synthetic)")
        batch = len(images)
        if len(labels) != batch:
            raise ValueError(f"{OWNER}.extend: {len(labels)} labels for {batch} images; give one label per image")
        flags = [_real_flags(rest[0], batch)] if rest else []
        n = extra_per_batch(self.per_real, batch)
        if n == 0:
            return (images, labels, *rest)
        extra_images, extra_labels = self.draw(n)[:2]
        _check_same_format(images, extra_images)
        extra_images = extra_images.to(images.device, non_blocking=True)
        labels, extra_labels = _matching_labels(labels, extra_labels.to(labels.device))
        out = (torch.cat([images, extra_images]), torch.cat([labels, extra_labels]))
        if flags:  # in the flags' dtype: True for bools (1 for 0/1 integers)
            out += (torch.cat([flags[0], torch.ones(n, dtype=flags[0].dtype, device=flags[0].device)]),)
        return out

    def __repr__(self) -> str:
        return f"AdditiveSynthetic(per_real={self.per_real:g}, seed={self.seed}, items={self._stream.n})"

    @property
    def share(self) -> float:
        """The old name of ``per_real`` (one release)."""
        return self.per_real


def _soft_label(label: Any) -> torch.Tensor | None:
    """``label`` as a float32 probability vector when it is a 1-d float tensor or array, else None."""
    if is_int(label) or isinstance(label, bool):
        return None
    try:
        tensor = torch.as_tensor(label)
    except (TypeError, ValueError, RuntimeError):
        return None
    return tensor.float() if tensor.is_floating_point() and tensor.ndim == 1 else None


def _stack_labels(labels: list[Any], indices: list[int]) -> torch.Tensor:
    """Source labels stacked: int64 ``(n,)`` class ids, or float32 ``(n, classes)`` probability vectors."""
    soft = [_soft_label(label) for label in labels]
    if all(vector is None for vector in soft):
        return torch.tensor([class_id(label, key=f"{OWNER}: the label of source item {i}")
                             for label, i in zip(labels, indices)], dtype=torch.long)
    if any(vector is None for vector in soft):
        i = indices[soft.index(None)]
        raise ValueError(f"{OWNER}: the source's labels mix probability vectors and class ids (item {i}: "
                         f"{labels[soft.index(None)]!r}); give one kind for every item")
    widths = sorted({len(vector) for vector in soft})
    if len(widths) > 1:
        raise ValueError(f"{OWNER}: the source's probability vectors have {widths} classes; every soft label "
                         "must have one entry per class")
    return torch.stack(soft)


def _real_flags(flags: Any, batch: int) -> torch.Tensor:
    """The real batch's is_synthetic flags as a tensor ``(batch,)`` of bools or integers, values as they came
    (``weighted_cross_entropy`` checks them where they are used)."""
    flags = torch.as_tensor(flags)
    if flags.shape != (batch,) or flags.is_floating_point() or flags.is_complex():
        raise ValueError(f"{OWNER}.extend: is_synthetic is {flags.dtype} {tuple(flags.shape)} for a batch of "
                         f"{batch}; give one bool per item (the collated third element of SyntheticDataset(..., "
                         "return_is_synthetic=True)'s items)")
    return flags


def _one_hot(ids: torch.Tensor, classes: int, dtype: torch.dtype, whose: str) -> torch.Tensor:
    """Class ids ``(k,)`` as one-hot ``(k, classes)`` of ``dtype``, refusing ids outside ``0 .. classes-1``."""
    if ids.is_floating_point() or ids.dtype == torch.bool:
        raise ValueError(f"{OWNER}.extend: the {whose} labels are {ids.dtype} {tuple(ids.shape)}; give class ids "
                         "as integers to mix them with probability vectors")
    if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= classes):
        raise ValueError(f"{OWNER}.extend: the {whose} class ids go from {int(ids.min())} to {int(ids.max())} but "
                         f"the probability vectors have {classes} classes; build the SyntheticDataset on the real "
                         "data set's classes (and a teacher trained on them)")
    return F.one_hot(ids.long(), classes).to(dtype)


def _matching_labels(real: torch.Tensor, synthetic: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Real and synthetic labels in one format, so they concatenate (see ``AdditiveSynthetic.extend``)."""
    real_soft, synthetic_soft = real.ndim == 2 and real.is_floating_point(), synthetic.ndim == 2
    if real.ndim != 1 and not real_soft:
        raise ValueError(f"{OWNER}.extend: the real labels are {real.dtype} {tuple(real.shape)}; give class ids "
                         "(B,) or probability vectors (B, classes)")
    if not synthetic_soft:
        if real_soft:
            return real, _one_hot(synthetic, real.shape[1], real.dtype, "synthetic")
        return real, synthetic.to(real.dtype)
    classes = synthetic.shape[1]
    if not real_soft:
        return _one_hot(real, classes, synthetic.dtype, "real"), synthetic
    if real.shape[1] != classes:
        raise ValueError(f"{OWNER}.extend: the synthetic soft labels have {classes} classes but the real batch's "
                         f"have {real.shape[1]}; give the SyntheticDataset a teacher of the real data set's classes")
    return real, synthetic.to(real.dtype)


def _check_same_format(real: torch.Tensor, synthetic: torch.Tensor) -> None:
    if real.dtype != synthetic.dtype or tuple(real.shape[1:]) != tuple(synthetic.shape[1:]):
        raise ValueError(f"AdditiveSynthetic: the synthetic items are {synthetic.dtype} {tuple(synthetic.shape[1:])} "
                         f"but the real batch is {real.dtype} {tuple(real.shape[1:])}; give the SyntheticDataset the "
                         "transform the real items get (SyntheticDataset(..., transform=...)), so both come in one "
                         "format")

