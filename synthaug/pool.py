"""Moved to ``synthaug.mix.pool``: this old path works, with a DeprecationWarning, for one release."""
from __future__ import annotations

from ._deprecated import warn_moved
from .mix.pool import (POOL_META, Processes, SyntheticPool, check_device, check_pool_matches, check_progress,
                       current_processes, describe_filter, generate_pool, generation_device, is_pool,
                       labels_fingerprint, load_pool, progress_bar, sample_until_kept, shared_pool,
                       weights_fingerprint)
from .sources import open_source

__all__ = ["POOL_META", "SyntheticPool", "is_pool", "load_pool", "progress_bar", "check_progress", "generate_pool",
           "sample_until_kept", "check_device", "generation_device", "Processes", "current_processes",
           "weights_fingerprint", "labels_fingerprint", "check_pool_matches", "shared_pool", "describe_filter",
           "open_source"]

warn_moved(__name__, "synthaug.mix.pool")
