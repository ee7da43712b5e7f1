"""Moved to ``synthaug.bench.grid_config``: this old path works, with a DeprecationWarning, for one release."""
from __future__ import annotations

from .._deprecated import warn_moved
from .grid_config import (BenchConfig, Cell, ClassifierConfig, DataConfig, GeneratorConfig, GeneratorSpec, MIXES,
                          QualityConfig, SyntheticConfig, check_weights, plan)

__all__ = ["MIXES", "DataConfig", "ClassifierConfig", "GeneratorSpec", "GeneratorConfig", "SyntheticConfig",
           "check_weights", "QualityConfig", "BenchConfig", "Cell", "plan"]

warn_moved(__name__, "synthaug.bench.grid_config")
