"""What every source shares: the contract, the checks of a source's class names against the real data's."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from ..checks import check_int

__all__ = ["Source", "is_checkpoint", "check_geometry", "source_class_names", "match_classes", "class_order"]


@runtime_checkable
class Source(Protocol):
    """What every source offers (a synthaug ``Generator`` is one)."""

    num_classes: int
    channels: int
    image_size: int

    def sample(self, n: int, labels: torch.Tensor | None = None, *,
               generator: torch.Generator | None = None) -> torch.Tensor: ...


def is_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a generator checkpoint folder (``config.json`` + ``model.safetensors``)."""
    from ..generators.base import CONFIG_FILE, WEIGHTS_FILE

    path = Path(path).expanduser()
    return (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def check_geometry(image_size: Any, channels: Any, owner: str) -> None:
    if image_size is not None:
        check_int(image_size, "image_size", owner, minimum=1, hint="the side of the square images, e.g. 32")
    if channels is not None and channels not in (1, 3):
        raise ValueError(f"{owner}: channels={channels!r}: give 1 (grayscale) or 3 (RGB), or None (from the images)")


# --------------------------------------------------------------------------- class names
def source_class_names(source: Any) -> list[str] | None:
    """A source's class names (``class_names``; a pool's ``meta["class_names"]``), or None when it has none."""
    names = getattr(source, "class_names", None)
    if names is None:
        names = (getattr(source, "meta", None) or {}).get("class_names")
    return None if names is None else [str(n) for n in names]


def match_classes(source: Any, classes: Sequence[str] | None, *, where: str = "the real data set") -> Any:
    """``source`` with the classes of ``classes`` (the real data set's names, in its order).

    Names equal: the source as it is. The same names in another order: re-ordered when the source can be
    (``with_classes``: folders, callables), refused otherwise. Other names, or another number of classes:
    refused, naming both lists."""
    if classes is None:
        return source
    classes = [str(c) for c in classes]
    names = source_class_names(source)
    what = getattr(source, "generator_name", type(source).__name__)
    if names is None:
        if int(source.num_classes) != len(classes):
            raise ValueError(f"the source {what} makes {source.num_classes} classes but {where} has {len(classes)} "
                             f"({classes}); give a source of these classes")
        return source
    if names == classes:
        return source
    if sorted(n.casefold() for n in names) == sorted(c.casefold() for c in classes):
        reorder = getattr(source, "with_classes", None)
        if callable(reorder):
            return reorder(classes)
        raise ValueError(f"the source {what} has the classes {names} and {where} has {classes}: the same names in "
                         "another order, so its label 0 would mean another class; give a source in this order")
    raise ValueError(f"the source {what} has the classes {names} but {where} has the classes {classes}; give a "
                     "source of the real data set's classes (folder names or classes=[...] must be those names)")


def class_order(names: list[str], classes: list[str]) -> list[int]:
    """For each class of ``classes``, its position in ``names`` (matched exactly, else ignoring case)."""
    exact = {n: i for i, n in enumerate(names)}
    folded = {n.casefold(): i for i, n in enumerate(names)}
    return [exact[c] if c in exact else folded[c.casefold()] for c in classes]
