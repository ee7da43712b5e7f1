"""The classifier two-sample test (C2ST, Lopez-Paz & Oquab 2017): can a linear classifier on the extractor's
features tell real validation images from synthetic ones?

Equal numbers of real **validation** images (new patients: a generator of the class distribution, not of its
training images, should be indistinguishable from them) and synthetic images, each labelled by where it came
from; a logistic regression is trained on all folds but one and scored on the one left out, every fold in turn.
Held-out accuracy near 0.5: indistinguishable to this classifier; near 1: every synthetic image gives itself
away. Overall and within each class. The p value is the one-sided binomial test of the held-out accuracy against
0.5. Cheap: a few hundred full-batch steps of a linear model on features already computed. Test patients are
never read. Not in the default metrics: ``evaluate_generator(..., metrics=[..., "two_sample"])``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..numbers import fmt
from .base import Metric, MetricContext, MetricOptions, TableColumn, option, register_metric


@dataclass
class TwoSampleOptions(MetricOptions):
    folds: int = option(5, "cross-validation folds; every image is scored once, by a classifier that did not see it",
                        minimum=2, hint="e.g. 5")
    max_items: int = option(2000, "images per side at most (real validation, synthetic), drawn at random", minimum=2,
                            hint="images per side, e.g. 2000")
    steps: int = option(300, "full-batch Adam steps of the logistic regression", minimum=1, hint="e.g. 300")
    weight_decay: float = option(1e-3, "L2 penalty of the logistic regression", minimum=0, hint="e.g. 1e-3")


def _fit_predict(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, *, steps: int,
                 weight_decay: float) -> torch.Tensor:
    """Logistic regression on standardized features (from zero weights: no randomness); 0/1 predictions."""
    mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    weight = torch.zeros(x_train.shape[1], requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=0.05)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x_train @ weight + bias, y_train)
        (loss + weight_decay * weight.square().sum()).backward()
        optimizer.step()
    with torch.no_grad():
        return (x_test @ weight + bias > 0).float()


def two_sample_test(real: torch.Tensor, synthetic: torch.Tensor, *, folds: int = 5, max_items: int = 2000,
                    steps: int = 300, weight_decay: float = 1e-3, seed: int = 0) -> dict[str, Any]:
    """Held-out accuracy of a logistic regression telling ``real`` from ``synthetic`` features (N x d each), with
    ``min(len(real), len(synthetic), max_items)`` of each side; None values when there are fewer than ``folds``."""
    rng = np.random.default_rng(seed)
    m = min(len(real), len(synthetic), int(max_items))
    out: dict[str, Any] = {"items_per_side": m, "accuracy": None, "accuracy_ci": None, "p_value": None}
    if m < folds:
        return out
    x = torch.cat([real[torch.from_numpy(np.sort(rng.choice(len(real), m, replace=False)))],
                   synthetic[torch.from_numpy(np.sort(rng.choice(len(synthetic), m, replace=False)))]]).float()
    y = torch.cat([torch.zeros(m), torch.ones(m)])
    fold_of = rng.permutation(2 * m) % folds
    correct = 0
    for fold in range(folds):
        test = torch.from_numpy(fold_of == fold)
        predicted = _fit_predict(x[~test], y[~test], x[test], steps=steps, weight_decay=weight_decay)
        correct += int((predicted == y[test]).sum())
    from scipy import stats

    ci = stats.binomtest(correct, 2 * m).proportion_ci(confidence_level=0.95, method="wilson")  # two-sided
    p_value = stats.binomtest(correct, 2 * m, 0.5, alternative="greater").pvalue
    return out | {"accuracy": correct / (2 * m), "accuracy_ci": [float(ci.low), float(ci.high)],
                  "p_value": float(p_value)}


@register_metric("two_sample")
class TwoSample(Metric):
    """Classifier two-sample test: held-out accuracy telling real validation from synthetic images (0.5: alike)."""

    keys = ("two_sample",)
    Options = TwoSampleOptions

    def compute(self, context: MetricContext) -> dict[str, Any]:
        opts, splits = self.options, context.splits
        real_labels = np.asarray(splits.val.targets) if len(splits.val) else np.zeros(0, dtype=np.int64)
        settings = {"folds": opts.folds, "max_items": opts.max_items, "steps": opts.steps,
                    "weight_decay": opts.weight_decay}

        def test(real_rows: np.ndarray, syn_rows: np.ndarray) -> dict[str, Any]:
            # its own draws from ``seed``: the result does not depend on the metrics run before it
            return two_sample_test(context.val_features[torch.from_numpy(real_rows)],
                                   context.synthetic_features[torch.from_numpy(syn_rows)], seed=context.seed,
                                   **settings)

        record = {"split": "val", **settings,
                  "overall": test(np.arange(len(real_labels)), np.arange(len(context.labels))),
                  "per_class": {name: test(np.flatnonzero(real_labels == c), np.flatnonzero(context.labels == c))
                                for c, name in enumerate(splits.classes)}}
        return {"two_sample": record}

    def text_section(self, result: dict[str, Any]) -> list[str]:
        record = self.record(result)
        if not record:
            return []
        overall, ci = record["overall"], record["overall"]["accuracy_ci"] or [None, None]
        per = "; ".join(f"{name} {fmt(r['accuracy'])}" for name, r in record["per_class"].items())
        return [f"classifier two-sample test (logistic regression on the features, {record['folds']} folds, "
                f"{overall['items_per_side']} real validation vs as many synthetic images; 0.5 = indistinguishable):",
                f"  held-out accuracy {fmt(overall['accuracy'])} [{fmt(ci[0])}, {fmt(ci[1])}], one-sided p "
                f"{fmt(overall['p_value'], '.2g')}; per class: {per}"]

    def table_columns(self, *, per_class: bool) -> list[TableColumn]:
        return [TableColumn("two-sample accuracy")]

    def table_values(self, qs: list[dict[str, Any]], name: str | None) -> list[list[Any]]:
        records = [self.record(q) or {} for q in qs]
        rows = [r.get("overall") if name is None else (r.get("per_class") or {}).get(name) for r in records]
        return [[(row or {}).get("accuracy") for row in rows]]
