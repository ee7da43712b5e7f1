"""The benchmark: does synthetic data help the classifier? One job per module:

- ``grid_config`` the config schema (``BenchConfig`` and its parts) and ``plan``, the grid of cells;
- ``paths``     where things live in a run folder;
- ``cell``      one cell's work: train or reuse its generator, measure sample quality, train the classifier;
- ``runner``    ``run_benchmark``: the run folder, resume, the loop over cells, the closing summary;
- ``analysis``  ``analyze``: statistics over seeds, the ratio selected on validation, the verdicts;
- ``document``  headings, paragraphs, tables, figures, and their Markdown and HTML renderers;
- ``tables``    every table, built once: ``summary.md`` and the report show the same ones;
- ``summary``   ``summarize``: ``summary.md``;
- ``plots``     the report's pictures (matplotlib, imported when drawn);
- ``report``    ``build_report``: ``report.md`` and ``report.html``.
"""
from .analysis import analyze
from .cell import items_fingerprint, write_samples_png
from .grid_config import (BenchConfig, Cell, ClassifierConfig, DataConfig, GeneratorConfig, GeneratorSpec, QualityConfig,
                          SyntheticConfig, plan)
from .paths import generator_dir, quality_dir, samples_path, split_path
from .report import build_report, load_run
from .runner import prepare_run_dir, run_benchmark
from .summary import summarize

__all__ = ["BenchConfig", "DataConfig", "ClassifierConfig", "GeneratorSpec", "GeneratorConfig", "SyntheticConfig",
           "QualityConfig", "Cell", "plan", "run_benchmark", "prepare_run_dir", "analyze", "summarize",
           "build_report", "load_run", "write_samples_png", "items_fingerprint", "generator_dir", "quality_dir",
           "samples_path", "split_path"]
