"""The plugin: real training data plus synthetic images, for a torch ``DataLoader``, an albumentations or a
torchvision v2 pipeline, or a training loop that appends synthetic items to each batch.

Modules, lowest first: each imports only modules above it in this list. ``synthaug.sources`` and
``synthaug.classifier`` stand between the first four and the rest: they use ``items``, ``pool`` and
``additive``, and ``teacher``, ``edits``, the dataset and the transforms use them.

- ``items``: reading real items (images, labels, class names) into the one internal format
- ``quotas``: how many synthetic items of each class (``ClassQuotas``, the ratio, whole counts)
- ``pool``: pre-sampled pools on disk (``SyntheticPool``, ``generate_pool``, ``load_pool``)
- ``additive``: ``AdditiveSynthetic``, synthetic items appended to each real batch
- ``weighted_loss``: ``weighted_cross_entropy``, the down-weighted loss of synthetic items
- ``teacher``: ``TeacherLabels``, a classifier's soft labels for synthetic images (``distill_targets``)
- ``edits``: ``EditSource``, edits of real training cells with the generator contract
- ``dataset_options``, ``dataset``: ``SyntheticDataset``, real + synthetic items in one ``Dataset``
- ``transform_pool``: the pool a transform samples from, shared by the two transforms below
- ``albumentations``: ``SyntheticMix`` (imports albumentations and OpenCV)
- ``torchvision``: ``SyntheticMixV2``, its torchvision v2 twin (imports torchvision's v2 transforms)

Every public name below is imported on first use (PEP 562), so importing one module of the package (e.g.
``synthaug.mix.items`` from ``synthaug.generators``) loads no other, and albumentations or torchvision load only
with the transform that needs them.
"""
from __future__ import annotations

import importlib
from typing import Any

# each public name and the module of this package that defines it
_HOMES = {"SyntheticDataset": "dataset", "ClassQuotas": "quotas", "SyntheticPool": "pool", "generate_pool": "pool",
          "load_pool": "pool", "SyntheticMix": "albumentations", "load_pipeline": "albumentations",
          "SyntheticMixV2": "torchvision", "AdditiveSynthetic": "additive", "EditSource": "edits",
          "TeacherLabels": "teacher", "distill_targets": "teacher", "weighted_cross_entropy": "weighted_loss"}

__all__ = list(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
