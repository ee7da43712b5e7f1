"""Moved to ``synthaug.mix.items``: this old path works, with a DeprecationWarning, for one release."""
from __future__ import annotations

from ._deprecated import warn_moved
from .mix.items import (FORMAT_ONLY, augmenting_steps, class_id, class_ids_by_name, declared, fit_image,
                        read_targets, real_classes, real_transforms, split_item, to_uint8_image)

__all__ = ["class_id", "class_ids_by_name", "to_uint8_image", "fit_image", "split_item", "read_targets", "declared",
           "real_classes", "real_transforms", "augmenting_steps", "FORMAT_ONLY"]

warn_moved(__name__, "synthaug.mix.items")
