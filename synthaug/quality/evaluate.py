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
from typing import Any, Iterator

import numpy as np
import torch

from ..checks import check_int
from .cas import DEFAULT_EPOCHS, DEFAULT_SEEDS, check_cas_options, classification_accuracy_score
from .distribution import fidelity_metrics
from .features import FeatureExtractor, get_feature_extractor, train_features, training_fingerprint
from .gate import GateConfig
from .memorization import (check_audit_options, closest_pairs, memorization_audit, save_closest_pairs,
                           write_nearest_csv)
from .recipe import budget_steps, classifier_recipe

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


def _per_class_draw(targets: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of ``counts[c]`` random items of each class c (all of them when there are fewer)."""
    picks = [rng.choice(np.flatnonzero(targets == c), size=min(int(n), int((targets == c).sum())), replace=False)
             for c, n in enumerate(counts)]
    return np.sort(np.concatenate(picks)).astype(np.int64)


def _draw(source, counts: np.ndarray, *, seed: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images and labels: ``counts[c]`` of class c (a pool gives what it has, at most that)."""
    from ..mix.pool import SyntheticPool, generate_pool

    if isinstance(source, SyntheticPool):
        idx = _per_class_draw(source.labels, counts, rng)
        return np.asarray(source.images[idx]), source.labels[idx].astype(np.int64)
    labels = np.repeat(np.arange(len(counts)), counts)
    pool = generate_pool(source, labels, seed=seed, desc="sampling for evaluation")
    return pool.images, pool.labels


def _in_training_frequencies(n: int, splits) -> np.ndarray:
    from ..mix.quotas import largest_remainder

    return largest_remainder(n, np.bincount(splits.train.targets, minlength=splits.num_classes))


@contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    log.info(key)  # a progress line where a caller listens (synthaug evaluate)
    start = time.time()
    yield
    timings[key] = time.time() - start


# --------------------------------------------------------------------------- the parts of the evaluation
def _check_options(*, n: Any, cas_images: Any, pairs: Any, k: Any, quantile: Any, calibration_size: Any,
                   cas_seeds: Any, cas_epochs: Any, cas: bool, gate: Any) -> None:
    """Every option, checked before anything is trained."""
    check_int(n, "n", OWNER, minimum=2, hint="the number of synthetic images, e.g. 1000")
    if cas_images is not None:
        check_int(cas_images, "cas_images", OWNER, minimum=1, hint="or None: as many as real training images")
    check_int(pairs, "pairs", OWNER, minimum=0, hint="the number of closest pairs to draw")
    check_int(k, "k", OWNER, minimum=1, hint="the neighbours of precision/recall; the paper uses 3")
    check_audit_options(quantile, calibration_size, OWNER)
    check_cas_options(cas_seeds, cas_epochs, OWNER)
    if gate is not None and not isinstance(gate, GateConfig):
        raise TypeError(f"{OWNER}: gate={gate!r}: give a synthaug.quality.GateConfig (or None for no gate)")
    if gate is not None and gate.enabled and not cas:
        raise ValueError(f"{OWNER}: the quality gate judges CAS, and cas=False; measure CAS or drop the gate")


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


def _fidelity(splits, train_feats: torch.Tensor, syn_feats: torch.Tensor, val_feats: torch.Tensor,
              labels: np.ndarray, *, k: int, seed: int, rng: np.random.Generator) -> tuple[dict, dict | None]:
    """FID/KID/precision/recall against as many real training images per class as synthetic ones (k-NN radii
    and FID depend on n), and the same for real validation images: the scale of a good score at this n."""
    train_targets = splits.train.targets
    syn_counts = np.bincount(labels, minlength=splits.num_classes)
    real_idx = _per_class_draw(train_targets, syn_counts, rng)
    real_feats, real_labels = train_feats[torch.from_numpy(real_idx)], train_targets[real_idx]
    fidelity = fidelity_metrics(real_feats, real_labels, syn_feats, labels, splits.classes, k=k, seed=seed)
    if not len(splits.val):
        return fidelity, None
    val_targets = splits.val.targets
    val_idx = _per_class_draw(val_targets, syn_counts, rng)
    reference = fidelity_metrics(real_feats, real_labels, val_feats[torch.from_numpy(val_idx)], val_targets[val_idx],
                                 splits.classes, k=k, seed=seed)
    return fidelity, reference


def _cas(source, splits, extractor: FeatureExtractor, *, own_split: bool, recipe: dict[str, Any], seed: int,
         cas_images: int | None, cas_seeds: int, cas_epochs: float | None, positive: int | None) -> dict[str, Any]:
    """CAS on ``cas_images`` synthetic images (default: as many as real training images), drawn apart from
    the fidelity images; the extractor serves as the real-trained classifier of ``seed`` when it was trained
    on these items with this recipe, seed and number of steps; the other real-trained scores are cached in
    the extractor's folder."""
    n_cas = len(splits.train) if cas_images is None else cas_images
    cas_x, cas_y = _draw(source, _in_training_frequencies(n_cas, splits), seed=seed + 1,
                         rng=np.random.default_rng(seed + 1))
    key = extractor.info.get("key", {})
    reuse = (own_split and key.get("recipe") == recipe and key.get("seed") == seed
             and budget_steps(recipe, len(splits.train), epochs=cas_epochs) == recipe["steps"])
    cache = Path(extractor.info["path"]) / "cas-real" if extractor.info.get("path") else None
    result = classification_accuracy_score(cas_x, cas_y, splits, recipe=recipe, seed=seed, seeds=cas_seeds,
                                           epochs=cas_epochs, positive=positive, cache_dir=cache,
                                           real_model=extractor.model if reuse else None)
    result["real_model"] = ("trained here" if not reuse else "the feature extractor (same recipe, steps and seed)"
                            + ("" if cas_seeds == 1 else f" for seed {seed}, trained here for the other seeds"))
    if len(cas_y) < n_cas:
        result["note"] = f"the pool holds {len(cas_y)} images of the {n_cas} asked for"
    return result


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
                       pairs: int = 16, positive: int | None = None, gate: GateConfig | None = None) -> dict[str, Any]:
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

    ``extractor``: default ``get_feature_extractor(splits, cache_dir=..., **recipe)``. ``out_dir``: writes
    ``quality.json``, ``memorization_pairs.png`` and ``nearest_train.csv``. Returns the dict of quality.json.
    """
    t0 = time.time()
    _check_options(n=n, cas_images=cas_images, pairs=pairs, k=k, quantile=quantile, calibration_size=calibration_size,
                   cas_seeds=cas_seeds, cas_epochs=cas_epochs, cas=cas, gate=gate)
    source = _as_source(source)
    _check_compatible(source, splits)
    seed = int(seed if seed is not None else splits.info.get("seed", 0))
    recipe = classifier_recipe(**(recipe or {}))
    extractor, own_split = _extractor_of(splits, extractor, dataset_key=dataset_key, seed=seed, cache_dir=cache_dir,
                                         recipe=recipe)
    timings: dict[str, float] = {}
    rng = np.random.default_rng(seed)
    with _timed(timings, "sampling"):
        images, labels = _draw(source, _in_training_frequencies(n, splits), seed=seed, rng=rng)
    if len(labels) < 2:
        raise ValueError(f"only {len(labels)} synthetic images to evaluate; the pool is too small")
    with _timed(timings, "features"):
        train_feats, syn_feats = train_features(extractor, splits), extractor.features(images)
        val_feats = (extractor.dataset_features(splits.val) if len(splits.val)
                     else torch.zeros(0, extractor.num_features))
    with _timed(timings, "fidelity"):
        fidelity, reference = _fidelity(splits, train_feats, syn_feats, val_feats, labels, k=k, seed=seed, rng=rng)
    with _timed(timings, "memorization"):
        audit = memorization_audit(syn_feats, labels, train_feats, splits.train.targets, splits.classes,
                                   heldout=val_feats, heldout_labels=splits.val.targets if len(splits.val) else None,
                                   quantile=quantile, calibration_size=calibration_size, seed=seed,
                                   train_groups=splits.train.groups if exclude_same_patient else None)
        audit["heldout_split"] = "val"
        if getattr(source, "edits_real_images", False):
            audit["note"] = (f"every image is an edit of a real training image (strength "
                             f"{getattr(source, 'strength', 'n/a')}): closeness to its source is by design, not "
                             "copying; the memorized share measures how mild the edits are")
        nearest = audit.pop("nearest_index"), audit.pop("nearest_distance"), audit.pop("flagged")
        order, audit["closest_pairs"] = closest_pairs(nearest[0], nearest[1], labels, splits.train, splits.classes,
                                                      pairs=pairs)
    cas_result = None
    if cas:
        with _timed(timings, "cas"):
            cas_result = _cas(source, splits, extractor, own_split=own_split, recipe=recipe, seed=seed,
                              cas_images=cas_images, cas_seeds=cas_seeds, cas_epochs=cas_epochs, positive=positive)
    result = _describe(source, splits, extractor, n=int(len(labels)), seed=seed) | {
        "fidelity": fidelity, "reference_heldout": reference, "memorization": audit, "cas": cas_result,
        "gate": None if gate is None or cas_result is None else gate.apply(cas_result),
        "seconds": {key: round(v, 1) for key, v in timings.items()} | {"total": round(time.time() - t0, 1)}}
    result = json.loads(json.dumps(result, default=_json_default))
    if out_dir is not None:
        write_outputs(Path(out_dir), result, images, labels, *nearest, order, splits)
    return result


def write_outputs(out_dir: Path, result: dict, images: np.ndarray, labels: np.ndarray, nearest_index: np.ndarray,
                  nearest_distance: np.ndarray, flagged: np.ndarray, order: np.ndarray, splits) -> None:
    """quality.json, nearest_train.csv and (with closest pairs) memorization_pairs.png in ``out_dir``."""
    from ..utils import atomic_write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    write_nearest_csv(out_dir / "nearest_train.csv", labels, nearest_index, nearest_distance, flagged, splits.train,
                      splits.classes)
    if len(order):
        save_closest_pairs(out_dir / "memorization_pairs.png", images, order, nearest_index, nearest_distance,
                           splits.train, result["memorization"])
    atomic_write_text(out_dir / "quality.json", json.dumps(result, indent=2))
