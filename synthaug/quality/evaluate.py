"""``evaluate_generator``: every quality metric of a generator (or a pool) against the real training patients.

Draw synthetic images in the training split's class frequencies, embed them once with the feature extractor,
then FID/KID/precision/recall (against as many real training images per class, and the real validation
images as the reference scale), the memorization audit (calibrated on validation patients), CAS (scored on
validation patients) and, when asked, the quality gate; write quality.json and the audit's files. No number
here touches a test patient: those are kept for the benchmark's final verdicts.
"""
from __future__ import annotations

import json
import logging
import os
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ..checks import check_int
from .cas import DEFAULT_EPOCHS, DEFAULT_SEEDS
from .features import FeatureExtractor, get_feature_extractor, train_features, training_fingerprint
from .gate import GateConfig
from .metrics import DEFAULT_METRICS, Metric, MetricContext, create_metric, metric_class
from .metrics.base import as_metrics, draw_images, in_training_frequencies
from .recipe import classifier_recipe

OWNER = "evaluate_generator"
log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- the source and its images
def _as_source(source: Any):
    """A Generator or SyntheticPool; a path is loaded as a pool folder or a generator checkpoint."""
    from ..mix.pool import SyntheticPool, is_pool, load_pool

    if isinstance(source, (str, os.PathLike)):
        if is_pool(source):
            return load_pool(source)
        from ..generators import load_generator

        return load_generator(source)
    if isinstance(source, SyntheticPool) or hasattr(source, "sample"):
        return source
    raise TypeError(f"evaluate_generator: expected a synthaug Generator, a SyntheticPool or a folder of one, got "
                    f"{type(source).__name__}")


def _check_compatible(source, splits) -> None:
    got = (int(source.num_classes), int(source.channels), int(source.image_size))
    want = (splits.num_classes, splits.channels, splits.image_size)
    if got != want:
        raise ValueError(f"the generator makes {got[0]} classes of {got[1]} x {got[2]} x {got[2]} images but the data "
                         f"set has {want[0]} classes of {want[1]} x {want[2]} x {want[2]}; evaluate it on the data it "
                         "was trained on (same --image-size)")


@contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    log.info(key)  # a progress line where a caller listens (synthaug evaluate)
    start = time.time()
    yield
    timings[key] = time.time() - start


# --------------------------------------------------------------------------- the parts of the evaluation
def _metrics_of(metrics: Sequence[str | Metric] | None, *, cas: bool, k: Any, quantile: Any,
                calibration_size: Any, exclude_same_patient: Any, pairs: Any, cas_images: Any, cas_seeds: Any,
                cas_epochs: Any, positive: Any) -> list[Metric]:
    """The metrics to run, each built and checked before anything is trained: ``metrics`` (names or built
    metrics; default ``DEFAULT_METRICS``), the default ones named with the options given to ``evaluate_generator``,
    CAS left out when ``cas`` is False (its options are still checked)."""
    legacy = {"fidelity": {"k": k},
              "memorization": {"quantile": quantile, "calibration_size": calibration_size,
                               "exclude_same_patient": exclude_same_patient, "pairs": pairs},
              "cas": {"cas_images": cas_images, "cas_seeds": cas_seeds, "cas_epochs": cas_epochs,
                      "positive": positive}}
    built = {name: create_metric(name, owner=OWNER, **options) for name, options in legacy.items()}
    names = list(DEFAULT_METRICS) if metrics is None else metrics
    if isinstance(names, (str, Metric)):
        names = [names]  # one metric alone: a list of one
    chosen = as_metrics([built.get(m, m) if isinstance(m, str) else m for m in names], OWNER)
    return [m for m in chosen if cas or m.name != "cas"]


def _check_run(n: Any, gate: Any, metrics: list[Metric]) -> None:
    """The options of the run itself, checked before anything is trained."""
    check_int(n, "n", OWNER, minimum=2, hint="the number of synthetic images, e.g. 1000")
    if gate is not None and not isinstance(gate, GateConfig):
        raise TypeError(f"{OWNER}: gate={gate!r}: give a synthaug.quality.GateConfig (or None for no gate)")
    if gate is not None and gate.enabled and "cas" not in [m.name for m in metrics]:
        raise ValueError(f"{OWNER}: the quality gate judges CAS, and CAS is not measured (cas=False, or metrics "
                         "without 'cas'); measure CAS or drop the gate")


def _extractor_of(splits, extractor: FeatureExtractor | None, *, dataset_key: str | None, seed: int,
                  cache_dir: Any, recipe: dict[str, Any]) -> tuple[FeatureExtractor, bool]:
    """The extractor (built when not given) and whether it was trained on this split's training items."""
    if extractor is None:
        extractor = get_feature_extractor(splits, dataset_key=dataset_key, seed=seed, cache_dir=cache_dir, **recipe)
    own_split = extractor.info.get("key", {}).get("train") == training_fingerprint(splits.train)
    if not own_split:
        warnings.warn("the feature extractor was not trained on this split's training items (its cache key differs): "
                      "it may have seen validation or test patients of this split; build it with "
                      "get_feature_extractor(splits, ...)", stacklevel=3)
    return extractor, own_split


def _prepare(source, splits, extractor: FeatureExtractor, *, own_split: bool, n: int, seed: int,
             recipe: dict[str, Any], out_dir: Any, timings: dict[str, float]) -> MetricContext:
    """The shared context of the metrics: ``n`` synthetic images in the training frequencies, and the features of
    them, of the real training images and of the real validation images."""
    rng = np.random.default_rng(seed)  # the draw stream: these images first, then the metrics in their order
    with _timed(timings, "sampling"):
        images, labels = draw_images(source, in_training_frequencies(n, splits), seed=seed, rng=rng)
    if len(labels) < 2:
        raise ValueError(f"only {len(labels)} synthetic images to evaluate; the pool is too small")
    with _timed(timings, "features"):
        train_feats, syn_feats = train_features(extractor, splits), extractor.features(images)
        val_feats = (extractor.dataset_features(splits.val) if len(splits.val)
                     else torch.zeros(0, extractor.num_features))
    return MetricContext(source=source, splits=splits, extractor=extractor, own_split=own_split, recipe=recipe,
                         seed=seed, images=images, labels=labels, train_features=train_feats,
                         synthetic_features=syn_feats, val_features=val_feats, rng=rng,
                         out_dir=None if out_dir is None else Path(out_dir))


def _describe(source, splits, extractor: FeatureExtractor, *, n: int, seed: int) -> dict[str, Any]:
    """What was evaluated: the data, the source and the extractor (the head of quality.json)."""
    meta = getattr(source, "meta", None)
    return {
        "data": {key: splits.info.get(key) for key in ("name", "image_size", "seed", "train_fraction", "split")}
        | {"classes": list(splits.classes), "train_items": len(splits.train), "val_items": len(splits.val),
           "test_items": len(splits.test)},
        "source": ({"kind": "pool", "meta": meta} if meta is not None else
                   {"kind": "generator", "name": getattr(source, "generator_name", type(source).__name__),
                    "options": getattr(source, "generator_options", {})}),
        "n": n, "seed": seed,
        "extractor": {key: v for key, v in extractor.info.items() if key not in ("key",)}
        | {"recipe": extractor.info.get("key", {}).get("recipe"), "num_features": extractor.num_features},
    }


def _json_default(value: Any):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


# --------------------------------------------------------------------------- the whole evaluation
def evaluate_generator(source: Any, splits, *, n: int = 1000, seed: int | None = None,
                       extractor: FeatureExtractor | None = None, cas: bool = True, cas_images: int | None = None,
                       cas_seeds: int = DEFAULT_SEEDS, cas_epochs: float | None = DEFAULT_EPOCHS,
                       out_dir: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                       dataset_key: str | None = None, recipe: dict[str, Any] | None = None, k: int = 3,
                       quantile: float = 0.05, calibration_size: int = 2000, exclude_same_patient: bool = False,
                       pairs: int = 16, positive: int | None = None, gate: GateConfig | None = None,
                       metrics: Sequence[str | Metric] | None = None) -> dict[str, Any]:
    """Sample quality of a generator (or a pool) against the real training patients of ``splits``.

    - ``n`` synthetic images with the class frequencies of the training split (a pool: ``n`` of its
      images drawn per class in those proportions, at most what it holds), compared with as many real
      training images per class (FID, KID, precision/recall), overall and per class;
      ``reference_heldout`` gives the same metrics for real validation images (new patients) against
      the same training images: the scale of a good score at this ``n``.
    - the memorization audit against all training images (``memorization_audit``);
    - ``cas=True``: CAS with ``cas_images`` synthetic images (default: as many as real training images) and
      the extractor's recipe, each classifier trained ``cas_epochs`` epochs (at least the recipe's steps)
      with ``cas_seeds`` seeds, beside the real-trained classifiers (``classification_accuracy_score``), all
      scored on the real validation patients;
    - ``gate``: ``GateConfig``; its verdict on CAS (``quality_gate``) is ``gate`` in the result (None without).
    - ``metrics``: the registered metrics to run, in order (names, or metrics built by ``create_metric``);
      default ``DEFAULT_METRICS`` (fidelity, memorization, cas). The options above are those of the default
      metrics named here; each default metric not run leaves its entries None (docs/metrics.md).

    ``extractor``: default ``get_feature_extractor(splits, cache_dir=..., **recipe)``. ``out_dir``: writes
    ``quality.json``, ``memorization_pairs.png`` and ``nearest_train.csv``. Returns the dict of quality.json.
    """
    t0 = time.time()
    chosen = _metrics_of(metrics, cas=cas, k=k, quantile=quantile, calibration_size=calibration_size,
                         exclude_same_patient=exclude_same_patient, pairs=pairs, cas_images=cas_images,
                         cas_seeds=cas_seeds, cas_epochs=cas_epochs, positive=positive)
    _check_run(n, gate, chosen)
    source = _as_source(source)
    _check_compatible(source, splits)
    seed = int(seed if seed is not None else splits.info.get("seed", 0))
    recipe = classifier_recipe(**(recipe or {}))
    extractor, own_split = _extractor_of(splits, extractor, dataset_key=dataset_key, seed=seed, cache_dir=cache_dir,
                                         recipe=recipe)
    timings: dict[str, float] = {}
    context = _prepare(source, splits, extractor, own_split=own_split, n=n, seed=seed, recipe=recipe,
                       out_dir=out_dir, timings=timings)
    # every default metric's entries are there (None when not measured): quality.json keeps one shape
    measured: dict[str, Any] = {key: None for name in DEFAULT_METRICS for key in metric_class(name).keys}
    for metric in chosen:
        with _timed(timings, metric.name):
            measured |= metric.compute(context)
    result = _describe(source, splits, extractor, n=int(len(context.labels)), seed=seed) | measured | {
        "gate": None if gate is None else gate.judge(measured),
        "seconds": {key: round(v, 1) for key, v in timings.items()} | {"total": round(time.time() - t0, 1)}}
    result = json.loads(json.dumps(result, default=_json_default))
    if out_dir is not None:
        write_outputs(Path(out_dir), result, context, chosen)
    return result


def write_outputs(out_dir: Path, result: dict, context: MetricContext, metrics: list[Metric]) -> None:
    """The metrics' files (the memorization audit's nearest_train.csv and memorization_pairs.png), then
    quality.json, in ``out_dir``."""
    from ..utils import atomic_write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    for metric in metrics:
        metric.write(context, result, out_dir)
    atomic_write_text(out_dir / "quality.json", json.dumps(result, indent=2))
