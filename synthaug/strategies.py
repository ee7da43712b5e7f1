"""Moved to ``synthaug.mix.teacher``: this old path works, with a DeprecationWarning, for one release."""
from __future__ import annotations

from ._deprecated import warn_moved
from .mix.teacher import (TeacherLabels, decode_array, distill_targets, encode_array, labels_from_logits, one_hot,
                          teacher_logits, teacher_report)

__all__ = ["TeacherLabels", "distill_targets", "labels_from_logits", "teacher_logits", "teacher_report", "one_hot",
           "encode_array", "decode_array"]

warn_moved(__name__, "synthaug.mix.teacher")
