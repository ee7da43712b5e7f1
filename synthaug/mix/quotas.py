"""How many synthetic items of each class: exact quotas, label distributions and the ratio, turned into whole
counts (``SyntheticDataset``, the benchmark and the quality measurements share them)."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..checks import check_float, check_range, is_int

__all__ = ["ClassQuotas", "LabelDistribution", "QualityFilter", "check_ratio", "largest_remainder", "class_weights"]


@dataclass(frozen=True)
class ClassQuotas:
    """Exact numbers of synthetic items per class (class id or name -> count), instead of a ratio.

    ``SyntheticDataset(gen, None, real=train, label_distribution=ClassQuotas({"Parasitized": 500}))``
    adds exactly 500 synthetic parasitized cells to every epoch.
    """

    counts: Mapping[int | str, int]


LabelDistribution = str | Mapping[int | str, float] | ClassQuotas
#: a quality filter: (uint8 images (n, C, H, W), requested labels (n,)) -> bool mask of the images to keep
QualityFilter = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def check_ratio(ratio: Any) -> float:
    """The synthetic share of each epoch, a number in [0, 1)."""
    return check_range(ratio, "ratio", "", 0, 1,
                       hint="the synthetic share of each epoch, e.g. 0.3; ratio=0 gives the real data alone")


def largest_remainder(total: int, weights: np.ndarray) -> np.ndarray:
    """Split ``total`` items into integer counts proportional to ``weights`` (sum exactly ``total``)."""
    weights = np.asarray(weights, dtype=np.float64)
    share = weights / weights.sum() * total
    counts = np.floor(share).astype(np.int64)
    order = np.argsort(-(share - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return counts


def class_weights(distribution: LabelDistribution, *, num_classes: int, classes: list[str],
                  real_targets: np.ndarray | None) -> np.ndarray:
    """Per-class weights for ``"match"`` (real class frequencies), ``"balanced"`` or a dict."""
    if isinstance(distribution, str):
        if distribution == "balanced" or (distribution == "match" and real_targets is None):
            return np.ones(num_classes)
        if distribution == "match":
            counts = np.bincount(np.asarray(real_targets, dtype=np.int64), minlength=num_classes).astype(np.float64)
            if counts.sum() == 0:
                raise ValueError("label_distribution='match' needs a non-empty real data set")
            return counts
        raise ValueError(f"label_distribution={distribution!r}: use 'match', 'balanced' or a dict "
                         "{class id or name: weight}")
    if isinstance(distribution, Mapping):
        weights = np.zeros(num_classes)
        for key, value in distribution.items():
            if isinstance(key, str) and not key.isdigit():
                if key not in classes:
                    raise ValueError(f"label_distribution: unknown class {key!r}; classes are {classes}")
                idx = classes.index(key)
            else:
                if not (is_int(key) or isinstance(key, str)):
                    raise ValueError(f"label_distribution: key {key!r} must be a class id (int) or a class name")
                idx = int(key)
                if not 0 <= idx < num_classes:
                    raise ValueError(f"label_distribution: class id {idx} is outside [0, {num_classes})")
            weights[idx] = check_float(value, f"label_distribution[{key!r}]", minimum=0,
                                       hint=f"the weight of class {key!r}")
        if weights.sum() <= 0:
            raise ValueError(f"label_distribution={dict(distribution)!r}: at least one weight must be > 0")
        return weights
    raise ValueError(f"label_distribution={distribution!r}: use 'match', 'balanced' or a dict {{class: weight}}")
