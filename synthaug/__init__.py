"""synthaug: synthetic data augmentation for medical image classification.

``import synthaug`` stays light: albumentations and OpenCV load only when ``synthaug.SyntheticMix`` (or
``synthaug.mix.albumentations``) is first touched, torchvision's v2 transforms only with ``synthaug.SyntheticMixV2``,
diffusers only with ``synthaug.sources.DiffusersSource``, matplotlib only when a figure is drawn.
albumentations finds ``SyntheticMix`` in a saved pipeline once synthaug is imported (when albumentations was
imported first) or ``synthaug.mix.albumentations`` is; ``synthaug.load_pipeline`` works in any order::

    import synthaug
    pipeline = synthaug.load_pipeline("pipeline.json")  # A.load with SyntheticMix registered
"""
from __future__ import annotations

import sys
from typing import Any

from ._version import __version__  # noqa: E402

from .data import load_dataset  # noqa: E402
from .mix.edits import EditSource  # noqa: E402
from .generators import (Generator, create_generator, list_generators, load_generator,  # noqa: E402
                         register_generator)
from .mix.pool import SyntheticPool, load_pool  # noqa: E402
from .quality import ClassifierFilter  # noqa: E402
from .mix.teacher import TeacherLabels  # noqa: E402
from .mix.quotas import ClassQuotas  # noqa: E402
from .sources import CallableSource, FolderSource  # noqa: E402
from .mix.dataset import SyntheticDataset  # noqa: E402

__all__ = ["__version__", "load_dataset", "Generator", "create_generator", "list_generators", "load_generator",
           "register_generator", "SyntheticDataset", "ClassQuotas", "SyntheticPool", "load_pool",
           "ClassifierFilter", "SyntheticMix", "SyntheticMixV2", "load_pipeline", "EditSource", "TeacherLabels",
           "FolderSource", "CallableSource"]

# Public names whose modules pull in heavy optional libraries: imported on first access (PEP 562).
_LAZY = {"SyntheticMix": "mix.albumentations", "load_pipeline": "mix.albumentations",
         "SyntheticMixV2": "mix.torchvision"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def _build_synthetic_mix(**args: Any) -> Any:
    from .mix.albumentations import SyntheticMix

    return SyntheticMix(**args)


def _register_with_albumentations() -> None:
    """With albumentations already imported, let ``A.load`` / ``A.from_dict`` find SyntheticMix without loading
    ``synthaug.mix.albumentations`` now: a stand-in that builds the class on first use (importing it replaces it).
    The key is the name saved pipelines carry (``SyntheticMix.get_class_fullname``)."""
    serialization = sys.modules.get("albumentations.core.serialization")
    registry = getattr(serialization, "SERIALIZABLE_REGISTRY", None)
    if isinstance(registry, dict):
        registry.setdefault("synthaug.transforms.SyntheticMix", _build_synthetic_mix)


_register_with_albumentations()
