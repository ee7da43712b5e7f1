"""Moved to ``synthaug.bench``: this old path works, with a DeprecationWarning, for one release. The code lives in
``bench.report`` (``build_report``, ``load_run``), ``bench.tables`` (the tables ``summary.md`` shares),
``bench.document`` (the blocks and their Markdown / HTML renderers) and ``bench.plots`` (the pictures)."""
from ._deprecated import warn_moved
from .bench.document import Code, Figure, Heading, Para, Table, render_html, render_markdown
from .bench.plots import plot_fraction, plot_gain
from .bench.report import build_report, load_run

__all__ = ["build_report", "load_run", "plot_fraction", "plot_gain", "render_markdown", "render_html", "Heading",
           "Para", "Table", "Figure", "Code"]

warn_moved(__name__, "synthaug.bench")
