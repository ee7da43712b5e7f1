"""The ``Metric`` contract, the context every metric reads, and the registry of metrics.

A metric of sample quality is one class: its ``name``, its ``Options`` (a dataclass of ``option()`` fields, each
with its help and bounds, checked from that declaration; ``Options.check(owner)`` for rules between them), ``compute(context) -> dict`` (the entries it
adds to quality.json, e.g. ``{"cas": {...}}``), optionally ``write`` (its files beside quality.json), and how
it shows in the text report (``text_columns`` / ``text_cells`` / ``text_notes`` / ``text_section``) and in the
benchmark's tables (``table_columns`` / ``table_cells``). ``evaluate_generator`` builds the shared
``MetricContext`` once (images, features, splits, seed) and loops over the metrics it is given.
"""
from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import torch

from ...checks import did_you_mean
from ...options import option, option_help, validate_fields  # noqa: F401 (option: metrics declare with it from here)

#: the metrics of ``evaluate_generator`` when none are named, in the order they run and are shown
DEFAULT_METRICS = ("fidelity", "memorization", "cas")


@dataclass
class MetricContext:
    """What every metric of one evaluation reads: computed once by ``evaluate_generator``.

    ``images`` / ``labels``: the synthetic images (uint8, N x C x H x W) and their classes;
    ``train_features`` / ``synthetic_features`` / ``val_features``: the extractor's features of the real training
    images, the synthetic images and the real validation images (empty when there are none); ``rng``: the draw
    stream shared in the order the metrics run (a metric that must not depend on the others seeds its own from
    ``seed``); ``extras``: what a metric keeps for its ``write`` step (arrays that are not in quality.json)."""

    source: Any
    splits: Any
    extractor: Any
    own_split: bool
    recipe: dict[str, Any]
    seed: int
    images: np.ndarray
    labels: np.ndarray
    train_features: torch.Tensor
    synthetic_features: torch.Tensor
    val_features: torch.Tensor
    rng: np.random.Generator
    out_dir: Path | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Column:
    """A column of the text report's table: its header, right-aligned to ``width``, and the format of its cells."""

    header: str
    width: int
    spec: str


@dataclass(frozen=True)
class TableColumn:
    """A column of the benchmark's sample-quality tables: its header and how the seeds' values are summarized
    (``"mean_sd"``: mean ± sd; ``"span"``: the distinct values, ``min-max``)."""

    header: str
    summary: str = "mean_sd"


@dataclass
class MetricOptions:
    """Base of a metric's options: a dataclass of ``option()`` fields (``synthaug.options``), each checked from its
    declaration by ``create_metric``; ``check(owner)`` holds the rules between them."""

    def check(self, owner: str) -> None:
        """Rules relating options to each other (none here)."""


@dataclass
class NoOptions(MetricOptions):
    """A metric without options."""


def per_class_draw(targets: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of ``counts[c]`` random items of each class c (all of them when there are fewer)."""
    picks = [rng.choice(np.flatnonzero(targets == c), size=min(int(n), int((targets == c).sum())), replace=False)
             for c, n in enumerate(counts)]
    return np.sort(np.concatenate(picks)).astype(np.int64)


def draw_images(source: Any, counts: np.ndarray, *, seed: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images and labels of a generator or pool: ``counts[c]`` of class c (a pool gives what it has, at most
    that)."""
    from ...mix.pool import SyntheticPool, generate_pool

    if isinstance(source, SyntheticPool):
        idx = per_class_draw(source.labels, counts, rng)
        return np.asarray(source.images[idx]), source.labels[idx].astype(np.int64)
    labels = np.repeat(np.arange(len(counts)), counts)
    pool = generate_pool(source, labels, seed=seed, desc="sampling for evaluation")
    return pool.images, pool.labels


def in_training_frequencies(n: int, splits: Any) -> np.ndarray:
    """``n`` split into whole counts per class in the class frequencies of the training split."""
    from ...mix.quotas import largest_remainder

    return largest_remainder(n, np.bincount(splits.train.targets, minlength=splits.num_classes))


class Metric:
    """Base class of every registered metric (see the module's docstring for the contract)."""

    name: ClassVar[str] = ""
    #: the top-level entries of quality.json this metric writes (the first is its record)
    keys: ClassVar[tuple[str, ...]] = ()
    Options: ClassVar[type] = NoOptions
    text_columns: ClassVar[tuple[Column, ...]] = ()

    def __init__(self, options: Any = None) -> None:
        self.options = self.Options() if options is None else options

    def compute(self, context: MetricContext) -> dict[str, Any]:
        raise NotImplementedError(f"metric {self.name!r}: compute(context) is not written")

    def write(self, context: MetricContext, result: dict[str, Any], out_dir: Path) -> None:
        """Files beside quality.json (``result``: the whole evaluation, as written); none by default."""

    # ----------------------------------------------------------------- the text report (``format_report``)
    def has_reference(self, result: dict[str, Any]) -> bool:
        """Whether the report's table gets the rows of real validation images (the reference scale)."""
        return False

    def text_cells(self, result: dict[str, Any], side: str, name: str | None) -> list[Any]:
        """The values of ``text_columns`` for one row: ``side`` "synthetic" or "reference", ``name`` a class
        (None: overall)."""
        return []

    def text_notes(self, result: dict[str, Any]) -> list[str]:
        """Lines under the table: how to read this metric's columns."""
        return []

    def text_section(self, result: dict[str, Any]) -> list[str]:
        """A block of its own after the table (empty: none)."""
        return []

    # ----------------------------------------------------------------- the benchmark's tables (``bench.tables``)
    def table_columns(self, *, per_class: bool) -> list[TableColumn]:
        """This metric's columns in the overall (or per-class) sample-quality table."""
        return []

    def table_values(self, qs: list[dict[str, Any]], name: str | None) -> list[list[Any]]:
        """For each of its columns, the values of one generator over the seeds' quality records ``qs`` (the
        table summarizes them): overall (``name`` None) or of class ``name``. A record without this metric's
        entry (measured without it) gives None."""
        return []

    def record(self, result: dict[str, Any]) -> Any:
        """This metric's record in an evaluation's result (None when it was not measured)."""
        return result.get(self.keys[0]) if self.keys else None


# --------------------------------------------------------------------------- the registry
_REGISTRY: dict[str, type[Metric]] = {}


def register_metric(name: str) -> Callable[[type[Metric]], type[Metric]]:
    """Class decorator: register a ``Metric`` subclass under ``name`` (shown in the order registered)."""
    def decorator(cls: type[Metric]) -> type[Metric]:
        if not (inspect.isclass(cls) and issubclass(cls, Metric)):
            raise TypeError(f"register_metric({name!r}): expected a subclass of synthaug.quality.metrics.Metric, "
                            f"got {cls!r}")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"a metric named {name!r} is registered already ({_REGISTRY[name]})")
        if not dataclasses.is_dataclass(cls.Options) or not hasattr(cls.Options, "check"):
            raise TypeError(f"metric {name!r}: Options must be a dataclass with a check(owner) method")
        cls.name = name
        _REGISTRY[name] = cls
        return cls
    return decorator


def list_metrics() -> list[str]:
    """Registered metric names, in the order registered (the order of the report)."""
    return list(_REGISTRY)


def metric_class(name: str) -> type[Metric]:
    """The class registered as ``name``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown metric {name!r}{did_you_mean(name, _REGISTRY)}. Known: {list_metrics()}")
    return _REGISTRY[name]


def metric_options(name: str) -> dict[str, tuple[Any, str]]:
    """Option name -> (default, help) of metric ``name``, in declaration order (the docs' table)."""
    return option_help(metric_class(name).Options)


def create_metric(name: str, *, owner: str | None = None, **options: Any) -> Metric:
    """The registered metric ``name`` with ``options``, each checked now (unknown names get a "did you mean")."""
    cls = metric_class(name)
    owner = owner or f"metric {name!r}"
    names = [f.name for f in dataclasses.fields(cls.Options)]
    for key in options:
        if key not in names:
            raise ValueError(f"{owner}: no option {key!r}{did_you_mean(key, names)}. Its options: {names or 'none'}")
    built = cls.Options(**options)
    validate_fields(built, owner)  # each option from its declaration, then the rules between them
    built.check(owner)
    return cls(built)


def as_metrics(metrics: Sequence[str | Metric], owner: str) -> list[Metric]:
    """``metrics`` (names or built metrics) as built metrics, each named once."""
    if isinstance(metrics, (str, Metric)) or not isinstance(metrics, Sequence):
        raise TypeError(f"{owner}: metrics={metrics!r}: give a list of metric names or metrics, e.g. "
                        f"{list(DEFAULT_METRICS)}")
    built = [m if isinstance(m, Metric) else create_metric(m, owner=owner) for m in metrics]
    names = [m.name for m in built]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{owner}: metrics={names}: {repeated} named more than once; name each metric once")
    return built


def reported_metrics(results: Sequence[dict[str, Any]]) -> list[Metric]:
    """The metrics a report shows for ``results`` (quality.json dicts): the default ones, and any other registered
    metric with a record in one of them, in the order registered."""
    out = []
    for name, cls in _REGISTRY.items():
        metric = cls()
        if name in DEFAULT_METRICS or any(metric.record(r) is not None for r in results):
            out.append(metric)
    return out


def metric_record(result: dict[str, Any], name: str) -> Any:
    """The record of the registered metric ``name`` in an evaluation's result (quality.json), or None."""
    return metric_class(name)().record(result)
