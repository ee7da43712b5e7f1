"""Additive mixing: synthetic images *on top of* each real batch, the real draws left exactly as they were.

``SyntheticDataset(gen, ratio, real=train)`` *replaces*: a share of each epoch is synthetic, so at a fixed
number of steps the classifier sees fewer real images. ``AdditiveSynthetic`` adds instead: every real
batch your loader gives keeps its images, labels and order, and ``round(share * len(batch))`` synthetic
items are appended, so a gain cannot come from seeing fewer real images, nor a loss::

    synthetic = SyntheticDataset(gen, 0.2, real=train)       # its synthetic items match the real classes
    extra = AdditiveSynthetic(synthetic, share=0.25, seed=0)
    for images, labels in loader:
        images, labels = extra.extend(images, labels)         # 64 real + 16 synthetic

The synthetic items are drawn as the benchmark draws real ones: consecutive seeded permutations of the
synthetic items (``IndexStream``), so every item is seen once per pass and a seed gives the same draws.
"""
from __future__ import annotations

import torch
from torch.utils.data import Dataset

from .checks import check_float, check_int

__all__ = ["AdditiveSynthetic", "IndexStream", "extra_per_batch", "permutation_seed"]

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


def extra_per_batch(share: float, batch_size: int) -> int:
    """Synthetic items appended to a real batch of ``batch_size``: ``round(share * batch_size)``."""
    return int(round(float(share) * int(batch_size)))


def _synthetic_indices(source: Dataset) -> tuple[int, int]:
    """``(first, count)`` of the synthetic items of ``source``: a ``SyntheticDataset`` built with ``real=``
    holds its real items first, which are not what is appended; any other data set is synthetic throughout."""
    first = int(getattr(source, "num_real", 0) or 0)
    return first, len(source) - first


class AdditiveSynthetic:
    """Append ``round(share * len(batch))`` synthetic items to every real batch (``extend``).

    ``source``: a map-style data set of synthetic ``(image, label)`` items, typically a ``SyntheticDataset``
    (of a generator, a checkpoint folder or a pool; built with ``real=`` its synthetic labels follow the real
    class frequencies, and only its synthetic items are drawn). ``share``: synthetic items per real item of
    a batch (0.25: 16 on top of 64). ``seed``: the draws; each call of ``extend`` continues the stream.

    The synthetic items must come in the format of the real batch (same dtype and image shape): give the
    ``SyntheticDataset`` the transform the real items get (``transform=``). Call ``extend`` in the training
    loop, not in DataLoader workers (each worker would draw the same items).
    """

    def __init__(self, source: Dataset, share: float = 0.25, *, seed: int = 0) -> None:
        if not (hasattr(source, "__len__") and hasattr(source, "__getitem__")):
            raise ValueError(f"AdditiveSynthetic: source={type(source).__name__} must be a map-style data set of "
                             "synthetic (image, label) items, e.g. SyntheticDataset(gen, 0.2, real=train)")
        self.share = check_float(share, "share", "AdditiveSynthetic", minimum=0,
                                 hint="synthetic items per real item of a batch, e.g. 0.25")
        self.seed = check_int(seed, "seed", "AdditiveSynthetic", minimum=0)
        self.source = source
        self.first, count = _synthetic_indices(source)
        if count < 1:
            raise ValueError(f"AdditiveSynthetic: the source holds no synthetic items ({len(source)} items, "
                             f"{self.first} of them real); build it with a ratio > 0 or a length")
        self._stream = IndexStream(count, seed=self.seed, stream=1)
        self.drawn = 0  # synthetic items appended so far

    def draw(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The next ``n`` synthetic items as a stacked batch ``(images, labels)``."""
        items = [self.source[self.first + int(i)] for i in self._stream.take(n)]
        self.drawn += n
        images = [torch.as_tensor(image) for image, _ in items]
        return torch.stack(images), torch.as_tensor([int(label) for _, label in items], dtype=torch.long)

    def extend(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images, labels)`` of a real batch with the synthetic items appended after the real ones (which
        are returned unchanged, in order); on the real batch's device, in its label dtype."""
        n = extra_per_batch(self.share, len(images))
        if n == 0:
            return images, labels
        extra_images, extra_labels = self.draw(n)
        _check_same_format(images, extra_images)
        extra_images = extra_images.to(images.device, non_blocking=True)
        extra_labels = extra_labels.to(labels.device, dtype=labels.dtype)
        return torch.cat([images, extra_images]), torch.cat([labels, extra_labels])

    def __repr__(self) -> str:
        return f"AdditiveSynthetic(share={self.share:g}, seed={self.seed}, items={self._stream.n})"


def _check_same_format(real: torch.Tensor, synthetic: torch.Tensor) -> None:
    if real.dtype != synthetic.dtype or tuple(real.shape[1:]) != tuple(synthetic.shape[1:]):
        raise ValueError(f"AdditiveSynthetic: the synthetic items are {synthetic.dtype} {tuple(synthetic.shape[1:])} "
                         f"but the real batch is {real.dtype} {tuple(real.shape[1:])}; give the SyntheticDataset the "
                         "transform the real items get (SyntheticDataset(..., transform=...)), so both come in one "
                         "format")

