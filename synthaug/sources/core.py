"""Moved to ``synthaug.sources.contract``: this old path works, with a DeprecationWarning, for one release."""
from __future__ import annotations

from .._deprecated import warn_moved
from .contract import Source, check_geometry, class_order, is_checkpoint, match_classes, source_class_names

__all__ = ["Source", "is_checkpoint", "check_geometry", "source_class_names", "match_classes", "class_order"]

warn_moved(__name__, "synthaug.sources.contract")
