"""The memorization metric: the nearest training image of every synthetic sample, calibrated on validation
patients (``quality.memorization``); writes ``nearest_train.csv`` and ``memorization_pairs.png``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...options import like
from ..memorization import AuditSettings, closest_pairs, memorization_audit, save_closest_pairs, write_nearest_csv
from .base import Column, Metric, MetricContext, MetricOptions, TableColumn, option, register_metric


@dataclass
class MemorizationOptions(MetricOptions):
    quantile: float = like(AuditSettings, "quantile", 0.05)
    calibration_size: int = like(AuditSettings, "calibration_size", 2000)
    exclude_same_patient: bool = option(False, "calibrate against other patients' images only")
    pairs: int = option(16, "closest synthetic / training pairs drawn in memorization_pairs.png", minimum=0,
                        hint="the number of closest pairs to draw")


@register_metric("memorization")
class Memorization(Metric):
    """The share of samples unusually close to a training image, beside the share of real validation images."""

    keys = ("memorization",)
    Options = MemorizationOptions
    text_columns = (Column("memorized", 9, ".3f"),)

    def compute(self, context: MetricContext) -> dict[str, Any]:
        splits, opts, source = context.splits, self.options, context.source
        audit = memorization_audit(context.synthetic_features, context.labels, context.train_features,
                                   splits.train.targets, splits.classes, heldout=context.val_features,
                                   heldout_labels=splits.val.targets if len(splits.val) else None,
                                   quantile=opts.quantile, calibration_size=opts.calibration_size, seed=context.seed,
                                   train_groups=splits.train.groups if opts.exclude_same_patient else None)
        audit["heldout_split"] = "val"
        if getattr(source, "edits_real_images", False):
            audit["note"] = (f"every image is an edit of a real training image (strength "
                             f"{getattr(source, 'strength', 'n/a')}): closeness to its source is by design, not "
                             "copying; the memorized share measures how mild the edits are")
        nearest = audit.pop("nearest_index"), audit.pop("nearest_distance"), audit.pop("flagged")
        order, audit["closest_pairs"] = closest_pairs(nearest[0], nearest[1], context.labels, splits.train,
                                                      splits.classes, pairs=opts.pairs)
        context.extras[self.name] = (*nearest, order)
        return {"memorization": audit}

    def write(self, context: MetricContext, result: dict[str, Any], out_dir: Path) -> None:
        nearest_index, nearest_distance, flagged, order = context.extras[self.name]
        splits = context.splits
        write_nearest_csv(out_dir / "nearest_train.csv", context.labels, nearest_index, nearest_distance, flagged,
                          splits.train, splits.classes)
        if len(order):
            save_closest_pairs(out_dir / "memorization_pairs.png", context.images, order, nearest_index,
                               nearest_distance, splits.train, result["memorization"])

    def text_cells(self, result: dict[str, Any], side: str, name: str | None) -> list[Any]:
        mem = result["memorization"]
        row = mem["overall"] if name is None else mem["per_class"][name]
        return [row["share" if side == "synthetic" else "heldout_share"]]

    def text_notes(self, result: dict[str, Any]) -> list[str]:
        mem = result["memorization"]
        lines = [f"memorized = share of samples at most as far from their nearest training image as the closest "
                 f"{mem['quantile']:.0%} of training images are from theirs (real val images should give about "
                 f"{mem['quantile']:g})"]
        return lines + ([f"note: {mem['note']}"] if mem.get("note") else [])

    def table_columns(self, *, per_class: bool) -> list[TableColumn]:
        return [TableColumn("memorized")] if per_class else [TableColumn("memorized"),
                                                              TableColumn("memorized real val")]

    def table_values(self, qs: list[dict[str, Any]], name: str | None) -> list[list[Any]]:
        if name is not None:
            return [[q["memorization"]["per_class"][name]["share"] for q in qs]]
        rows = [q["memorization"]["overall"] for q in qs]
        return [[x["share"] for x in rows], [x.get("heldout_share") for x in rows]]
