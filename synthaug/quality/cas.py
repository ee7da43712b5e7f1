"""CAS (classification accuracy score, Ravuri & Vinyals 2019), measured so that it can be a gate.

The classifier recipe is trained on synthetic images alone and tested on the real *validation* patients, beside
the same recipe trained on the real training images. Validation, never test: CAS chooses between generators and
decides the quality gate, and a number that chooses must not be the one the benchmark's final verdicts report.

One short training is not a measurement: with 100 steps on 1000 images the score of a tiny ResNet moved by
0.12 with the order of the batches alone.
So every classifier here is trained to convergence (``epochs`` passes over its training images, never fewer
than the recipe's steps) and over several seeds; the result gives the mean, its t-interval and every seed.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..options import check_value, option
from ..classifier import compute_metrics, predict
from ..stats import mean_ci, paired_difference
from .recipe import budget_steps, classifier_recipe, per_class_recall, train_recipe

#: passes over the training images of every CAS classifier (at least the recipe's steps): on 1000 malaria
#: cells (test_resnet, batch 32, lr 1e-2), 10 epochs instead of 3 brought the spread (sd) of one classifier's
#: test score over batch orders and seeds from 0.03 to under 0.01
DEFAULT_EPOCHS = 10.0
#: seeds of every CAS measurement: an interval needs 2, and with 3 its half-width is 2.5 sd instead of 9
DEFAULT_SEEDS = 3


@dataclass
class CASSettings:
    """The options of a CAS measurement, declared once (the ``cas`` metric, ``GateStopper`` and
    ``classification_accuracy_score`` take them)."""

    cas_seeds: int = option(DEFAULT_SEEDS, "classifiers trained per side, each with its own seed", minimum=1,
                            hint="classifiers trained per measurement, e.g. 3")
    cas_epochs: float | None = option(DEFAULT_EPOCHS, "passes over the training images of every classifier (at least "
                                      "the recipe's steps; null: the recipe's steps alone)", minimum=0,
                                      min_inclusive=False,
                                      hint="passes over the training images, or None for the recipe's steps alone")


def check_cas_options(seeds: Any, epochs: Any, owner: str = "classification_accuracy_score") -> None:
    """The options of the CAS measurement, checked before anything is trained."""
    check_value(CASSettings, "cas_seeds", seeds, owner)
    check_value(CASSettings, "cas_epochs", epochs, owner)


def score_on(model: nn.Module, dataset, classes: list[str], *, positive: int | None = None) -> dict[str, Any]:
    """compute_metrics of ``model`` on ``dataset``, plus its number of items and the recall of each class."""
    probs, targets = predict(model, dataset)
    return {**compute_metrics(probs, targets, positive=positive), "items": len(targets),
            "per_class_recall": per_class_recall(probs, targets, classes)}


def score_on_val(model: nn.Module, splits, *, positive: int | None = None) -> dict[str, Any]:
    """``score_on`` the real validation patients: where CAS and every other quality number are measured."""
    return score_on(model, splits.val, splits.classes, positive=positive)


def score_on_test(model: nn.Module, splits, *, positive: int | None = None) -> dict[str, Any]:
    """``score_on`` the real test patients: for final verdicts only. Quality (CAS, the gate) never uses it."""
    return score_on(model, splits.test, splits.classes, positive=positive)


def _mean_scores(scores: list[dict[str, Any]]) -> dict[str, Any]:
    """The mean over seeds of every metric of ``score_on`` (a class recall missing in one seed: None)."""
    def mean(values: list[Any]) -> float | None:
        return None if any(v is None for v in values) else float(np.mean(values))

    out = {key: mean([s[key] for s in scores]) for key in scores[0] if key not in ("items", "per_class_recall")}
    out["items"] = scores[0]["items"]
    out["per_class_recall"] = {name: mean([s["per_class_recall"][name] for s in scores])
                               for name in scores[0]["per_class_recall"]}
    return out


def _spread(values: list[float]) -> tuple[float | None, list[float] | None]:
    """Sample standard deviation and 95 % t-interval of the mean (None for a single value)."""
    if len(values) < 2:
        return None, None
    _, lo, hi = mean_ci(values)
    return float(np.std(values, ddof=1)), [lo, hi]


def _train_and_score(train_set, splits, recipe: dict[str, Any], *, seed: int, steps: int, positive: int | None,
                     desc: str) -> dict[str, Any]:
    model = train_recipe(recipe, train_set, num_classes=splits.num_classes, channels=splits.channels, seed=seed,
                         steps=steps, desc=desc)
    return score_on_val(model, splits, positive=positive)


def _recall_ratios(synthetic: dict[str, float | None], real: dict[str, float | None]) -> dict[str, float | None]:
    """Per class: synthetic-trained recall / real-trained recall (None when either is missing or real is 0)."""
    return {name: (None if synthetic.get(name) is None or not real.get(name) else synthetic[name] / real[name])
            for name in real}


def _summary(synthetic: list[dict[str, Any]], real: list[dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    """The headline numbers: means over seeds, their spread and intervals, the paired difference, the recall of
    each class (means over seeds) and its ratio to the real-trained one, each seed."""
    cas = [s["balanced_accuracy"] for s in synthetic]
    ref = [s["balanced_accuracy"] for s in real]
    cas_std, cas_ci = _spread(cas)
    real_std, real_ci = _spread(ref)
    diff = paired_difference(cas, ref)
    cas_mean, real_mean = float(np.mean(cas)), float(np.mean(ref))
    class_recall = _mean_scores(synthetic)["per_class_recall"]
    real_class_recall = _mean_scores(real)["per_class_recall"]
    return {"cas": cas_mean, "cas_std": cas_std, "cas_ci": cas_ci,
            "real_score": real_mean, "real_std": real_std, "real_ci": real_ci,
            "ratio": cas_mean / real_mean if real_mean else None,
            "difference": diff["mean"], "difference_ci": None if math.isnan(diff["lo"]) else [diff["lo"], diff["hi"]],
            "class_recall": class_recall, "real_class_recall": real_class_recall,
            "class_recall_ratio": _recall_ratios(class_recall, real_class_recall),
            "per_seed": [{"seed": s, "cas": c, "real_score": r, "class_recall": sc["per_class_recall"],
                          "real_class_recall": rc["per_class_recall"]}
                         for s, c, r, sc, rc in zip(seeds, cas, ref, synthetic, real)]}


def real_scores(splits, recipe: dict[str, Any], *, seed: int, steps: int, positive: int | None = None,
                cache_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Validation scores of the recipe trained ``steps`` steps on the real training images with ``seed``.

    They depend on the split, never on the generator, so with ``cache_dir`` they are computed once per
    training and validation items, recipe, steps and seed (a benchmark evaluates many generators of one split).
    """
    from ..utils import atomic_write_text
    from .features import training_fingerprint

    # format 2: scored on validation (format 1 held test scores; its files are never read again)
    key = {"format": 2, "train": training_fingerprint(splits.train), "val": training_fingerprint(splits.val),
           "image_size": splits.image_size, "channels": splits.channels, "classes": list(splits.classes),
           "recipe": recipe, "steps": int(steps), "seed": int(seed), "positive": positive}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = None if cache_dir is None else Path(cache_dir) / f"real-seed{seed}-{digest}.json"
    if path is not None and path.is_file():
        try:
            saved = json.loads(path.read_text())
            if saved.get("key") == json.loads(json.dumps(key)):
                return saved["scores"]
        except (OSError, ValueError, KeyError):  # a damaged file is simply computed again
            pass
    scores = _train_and_score(splits.train, splits, recipe, seed=seed, steps=steps, positive=positive,
                              desc=f"CAS: real, seed {seed}")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"key": key, "scores": scores}, indent=2))
    return scores


def _real_scores(splits, recipe: dict[str, Any], *, seed: int, steps: int, positive: int | None,
                 cache_dir: str | os.PathLike | None, memo: dict | None) -> dict[str, Any]:
    """``real_scores``, looked up first in ``memo`` (a dict kept by the caller for one split), then kept there."""
    key = json.dumps({"recipe": recipe, "seed": int(seed), "steps": int(steps), "positive": positive}, sort_keys=True)
    if memo is not None and key in memo:
        return memo[key]
    scores = real_scores(splits, recipe, seed=seed, steps=steps, positive=positive, cache_dir=cache_dir)
    if memo is not None:
        memo[key] = scores
    return scores


def classification_accuracy_score(images: np.ndarray | torch.Tensor, labels: np.ndarray, splits, *,
                                  recipe: dict[str, Any], seed: int = 0, seeds: int = DEFAULT_SEEDS,
                                  epochs: float | None = DEFAULT_EPOCHS, real_model: nn.Module | None = None,
                                  positive: int | None = None, cache_dir: str | os.PathLike | None = None,
                                  real_cache: dict | None = None) -> dict[str, Any]:
    """CAS: ``recipe`` trained on the synthetic ``images`` alone, tested on the real validation patients.

    ``seeds`` classifiers (initial weights and batches from ``seed``, ``seed + 1``, ...) are trained on the
    synthetic images, and as many on the real training images with the same seeds (paired). Each trains
    ``max(recipe steps, epochs x its images / batch)`` steps. ``cas`` and ``real_score`` are the means of
    the balanced accuracy over seeds, ``cas_ci`` / ``real_ci`` their 95 % t-intervals, ``per_seed`` each
    seed; ``synthetic`` and ``real`` hold the mean of every metric. ``class_recall`` / ``real_class_recall``: the
    mean recall of each class (by class name), ``class_recall_ratio`` their ratio, ``ratio`` = cas / real_score
    (what ``quality_gate`` judges). The test patients are never touched. ``real_model``: the real-trained
    classifier of ``seed`` when one exists with these very steps (the feature extractor), not trained again.
    ``cache_dir``: where the real-trained classifiers' scores are kept (``real_scores``). ``real_cache``: a dict
    the caller keeps between calls on the same ``splits`` (``GateStopper``): the real-trained scores are then
    computed once in memory, keyed by seed, steps, recipe and positive class.
    """
    from ..data import ImageArrayDataset

    check_cas_options(seeds, epochs)
    recipe = classifier_recipe(**recipe)  # validated, with the defaults of what it leaves out
    if len(splits.val) == 0:
        raise ValueError("CAS is measured on the real validation patients, and the validation split is empty; give a "
                         "split with validation patients (the test patients are kept for the final verdicts)")
    images = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    labels = np.asarray(labels, dtype=np.int64)
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"CAS: {len(images)} synthetic images and {len(labels)} labels; give the same number (> 0)")
    start = time.time()
    synthetic_set = ImageArrayDataset(images, labels, np.full(len(labels), "synthetic"), splits.classes)
    steps, real_steps = budget_steps(recipe, len(labels), epochs=epochs), budget_steps(recipe, len(splits.train),
                                                                                       epochs=epochs)
    seed_list = [seed + i for i in range(seeds)]
    synthetic = [_train_and_score(synthetic_set, splits, recipe, seed=s, steps=steps, positive=positive,
                                  desc=f"CAS: synthetic only, seed {s}") for s in seed_list]
    syn_seconds = time.time() - start
    real = [score_on_val(real_model, splits, positive=positive) if s == seed and real_model is not None else
            _real_scores(splits, recipe, seed=s, steps=real_steps, positive=positive, cache_dir=cache_dir,
                         memo=real_cache)
            for s in seed_list]
    return {"recipe": recipe, "seed": seed, "seeds": seed_list, "epochs": epochs, "steps": steps,
            "real_steps": real_steps, "synthetic_images": len(labels), "real_images": len(splits.train),
            "split": "val", "val_items": len(splits.val),
            "synthetic": _mean_scores(synthetic), "real": _mean_scores(real),
            **_summary(synthetic, real, seed_list),
            "seconds": round(time.time() - start, 1), "synthetic_seconds": round(syn_seconds, 1)}
