"""synthaug: synthetic data augmentation for medical image classification.

``import synthaug`` stays light: albumentations and OpenCV load only when ``synthaug.SyntheticMix`` (or
``synthaug.transforms``) is first touched, matplotlib only when a figure is drawn. albumentations finds
``SyntheticMix`` in a saved pipeline once it is registered, so load such a file after
``from synthaug import SyntheticMix`` (or ``import synthaug.transforms``)::

    import albumentations as A
    from synthaug import SyntheticMix  # registers the class with albumentations
    pipeline = A.load("pipeline.json")
"""
from __future__ import annotations

from typing import Any

from ._version import __version__  # noqa: E402

from .data import load_dataset  # noqa: E402
from .edits import EditSource  # noqa: E402
from .generators import (Generator, create_generator, list_generators, load_generator,  # noqa: E402
                         register_generator)
from .pool import SyntheticPool, load_pool  # noqa: E402
from .quality import ClassifierFilter  # noqa: E402
from .strategies import TeacherLabels  # noqa: E402
from .quotas import ClassQuotas  # noqa: E402
from .synthetic import SyntheticDataset  # noqa: E402

__all__ = ["__version__", "load_dataset", "Generator", "create_generator", "list_generators", "load_generator",
           "register_generator", "SyntheticDataset", "ClassQuotas", "SyntheticPool", "load_pool",
           "ClassifierFilter", "SyntheticMix", "EditSource", "TeacherLabels"]

# Public names whose modules pull in heavy optional libraries: imported on first access (PEP 562).
_LAZY = {"SyntheticMix": "transforms"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
