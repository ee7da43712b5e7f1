"""Moved to ``synthaug.bench``: this old path works, with a DeprecationWarning, for one release. The code lives in
``bench.grid_config`` (the config schema and ``plan``), ``bench.runner`` (``run_benchmark``, ``prepare_run_dir``),
``bench.cell`` (one cell's work), ``bench.analysis`` (``analyze``) and ``bench.summary`` (``summarize``)."""
from ._deprecated import warn_moved
from .bench.analysis import analyze
from .bench.cell import write_samples_png
from .bench.grid_config import (BenchConfig, Cell, ClassifierConfig, DataConfig, GeneratorConfig, GeneratorSpec,
                                QualityConfig, SyntheticConfig, plan)
from .bench.paths import quality_dir
from .bench.runner import prepare_run_dir, run_benchmark
from .bench.summary import summarize

__all__ = ["BenchConfig", "DataConfig", "ClassifierConfig", "GeneratorSpec", "GeneratorConfig", "SyntheticConfig",
           "QualityConfig", "Cell", "plan", "run_benchmark", "prepare_run_dir", "quality_dir", "write_samples_png",
           "analyze", "summarize"]

warn_moved(__name__, "synthaug.bench")
