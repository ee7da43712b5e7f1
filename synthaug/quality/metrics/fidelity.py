"""The fidelity metric: FID, KID and improved precision/recall in the extractor's feature space, overall and per
class, with the same numbers for real validation images as the reference scale (``distribution``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..distribution import fidelity_metrics
from .base import Column, Metric, MetricContext, MetricOptions, TableColumn, option, per_class_draw, register_metric


@dataclass
class FidelityOptions(MetricOptions):
    k: int = option(3, "neighbours of precision/recall (the paper uses 3)", minimum=1,
                    hint="the neighbours of precision/recall; the paper uses 3")


@register_metric("fidelity")
class Fidelity(Metric):
    """FID/KID/precision/recall against as many real training images per class as synthetic ones (k-NN radii and
    FID depend on n), and the same for real validation images: the scale of a good score at this n."""

    keys = ("fidelity", "reference_heldout")
    Options = FidelityOptions
    text_columns = (Column("FID", 8, ".2f"), Column("KID", 8, ".4f"), Column("precision", 9, ".3f"),
                    Column("recall", 7, ".3f"))

    def compute(self, context: MetricContext) -> dict[str, Any]:
        splits, k, seed, rng = context.splits, self.options.k, context.seed, context.rng
        train_targets = splits.train.targets
        syn_counts = np.bincount(context.labels, minlength=splits.num_classes)
        real_idx = per_class_draw(train_targets, syn_counts, rng)
        real_feats, real_labels = context.train_features[torch.from_numpy(real_idx)], train_targets[real_idx]
        fidelity = fidelity_metrics(real_feats, real_labels, context.synthetic_features, context.labels,
                                    splits.classes, k=k, seed=seed)
        if not len(splits.val):
            return {"fidelity": fidelity, "reference_heldout": None}
        val_targets = splits.val.targets
        val_idx = per_class_draw(val_targets, syn_counts, rng)
        reference = fidelity_metrics(real_feats, real_labels, context.val_features[torch.from_numpy(val_idx)],
                                     val_targets[val_idx], splits.classes, k=k, seed=seed)
        return {"fidelity": fidelity, "reference_heldout": reference}

    def has_reference(self, result: dict[str, Any]) -> bool:
        return bool(result.get("reference_heldout"))

    def text_cells(self, result: dict[str, Any], side: str, name: str | None) -> list[Any]:
        scores = result["fidelity" if side == "synthetic" else "reference_heldout"]
        row = scores["overall"] if name is None else scores["per_class"][name]
        return [row["fid"], row["kid"], row["precision"], row["recall"]]

    def table_columns(self, *, per_class: bool) -> list[TableColumn]:
        if per_class:
            return [TableColumn("FID"), TableColumn("precision"), TableColumn("recall")]
        return [TableColumn("n", "span"), TableColumn("FID"), TableColumn("FID real val"), TableColumn("KID"),
                TableColumn("precision"), TableColumn("recall")]

    def table_values(self, qs: list[dict[str, Any]], name: str | None) -> list[list[Any]]:
        if name is not None:
            rows = [q["fidelity"]["per_class"][name] for q in qs]
            return [[x["fid"] for x in rows], [x["precision"] for x in rows], [x["recall"] for x in rows]]
        rows = [q["fidelity"]["overall"] for q in qs]
        return [[x["n_real"] for x in rows], [x["fid"] for x in rows],
                [(q.get("reference_heldout") or {}).get("overall", {}).get("fid") for q in qs],
                [x["kid"] for x in rows], [x["precision"] for x in rows], [x["recall"] for x in rows]]
