"""The options of ``SyntheticDataset``, checked before anything is sampled (one message per wrong option)."""
from __future__ import annotations

import os
from typing import Any

from torch.utils.data import Dataset

from ..checks import check_bool, check_int
from .quotas import ClassQuotas, check_ratio
from .teacher import TeacherLabels

__all__ = ["check_dataset_arguments"]


def check_dataset_arguments(ratio: Any, *, quotas: ClassQuotas | None, real: Dataset | None, length: Any, pool_size: Any,
                     batch_size: Any, refresh_every: Any, quality_filter: Any, max_filter_rounds: Any,
                     ready_pool: bool, device: Any, pool_dir: Any, teacher: Any,
                     return_is_synthetic: Any, target_transform: Any = None) -> float | None:
    """Refuse contradictory or malformed SyntheticDataset options; returns the ratio (None with quotas)."""
    owner = "SyntheticDataset"
    if quotas is not None:
        if ratio is not None:
            raise ValueError("with ClassQuotas the quotas set the synthetic count: pass ratio=None")
    else:
        ratio = check_ratio(ratio)
    if real is None and length is None and quotas is None:
        raise ValueError("give real=<data set> (the synthetic share follows ratio) or length=<number of synthetic items>")
    if real is not None and length is not None:
        raise ValueError("give either real= (the epoch length follows from ratio) or length=, not both")
    if real is not None and not (hasattr(real, "__len__") and hasattr(real, "__getitem__")):
        raise ValueError(f"real={type(real).__name__}: the real data set must be a map-style torch data set (with "
                         "__len__ and __getitem__ giving (image, label)), not an iterable one")
    if length is not None:
        check_int(length, "length", owner, minimum=0)
    if pool_size is not None:
        check_int(pool_size, "pool_size", owner, minimum=1, hint="or None: one image per synthetic item")
    if pool_size is not None and ready_pool:
        raise ValueError("pool_size applies when generating; a ready pool is used as it is")
    if quality_filter is not None and ready_pool:
        raise ValueError("quality_filter applies when generating; filter a ready pool before saving it")
    if device is not None and ready_pool:
        raise ValueError(f"device={device!r} applies when generating; a ready pool is only read")
    if pool_dir is not None and ready_pool:
        raise ValueError(f"pool_dir={pool_dir!r} applies when generating; a ready pool is already on disk")
    if pool_dir is not None and (not isinstance(pool_dir, (str, os.PathLike)) or not os.fspath(pool_dir)):
        raise ValueError(f"{owner}: pool_dir={pool_dir!r} must be a folder path (where the pool is written once and "
                         "read by every process and later run)")
    check_int(batch_size, "batch_size", owner, minimum=1)
    check_int(max_filter_rounds, "max_filter_rounds", owner, minimum=1)
    if refresh_every is not None:
        check_int(refresh_every, "refresh_every", owner, minimum=1, hint="a number of epochs, or None")
    if quality_filter is not None and not callable(quality_filter):
        raise ValueError("quality_filter must be a callable (images, labels) -> keep mask, e.g. a ClassifierFilter")
    if teacher is not None and not isinstance(teacher, TeacherLabels):
        raise ValueError(f"{owner}: teacher={type(teacher).__name__} must be a synthaug.TeacherLabels, "
                         "e.g. teacher=TeacherLabels(model, mode='soft', temperature=2.0) with a model trained on the "
                         "real training images only (or None: the generator's labels)")
    check_bool(return_is_synthetic, "return_is_synthetic", owner)
    if target_transform is not None and not callable(target_transform):
        raise ValueError(f"{owner}: target_transform={target_transform!r} must be a callable applied to every label "
                         "(as torchvision's target_transform), or None")
    return ratio
