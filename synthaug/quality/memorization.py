"""The memorization audit: the nearest real training image of every synthetic sample, and how unusually close.

"Unusually close" is calibrated on the training set itself (how far training images are from their nearest
other training image) and checked on real held-out (validation) patients, who should score about the
quantile. Also the audit's outputs: the closest pairs, ``nearest_train.csv`` and ``memorization_pairs.png``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..options import check_value, option
from .distribution import nearest_neighbours
from .numbers import fmt

OWNER = "memorization_audit"


@dataclass
class AuditSettings:
    """The memorization audit's options, declared once (the ``memorization`` metric and ``memorization_audit``)."""

    quantile: float = option(0.05, "a sample is memorized when as close to a training image as this share of "
                                   "training images are to theirs", minimum=0, maximum=1, min_inclusive=False,
                             max_inclusive=False, hint="e.g. 0.05")
    calibration_size: int = option(2000, "training (and validation) images whose nearest neighbour calibrates",
                                   minimum=2, hint="training images whose nearest neighbour calibrates")


def check_audit_options(quantile: Any, calibration_size: Any, owner: str = OWNER) -> None:
    """The audit's options, checked before anything is trained."""
    check_value(AuditSettings, "quantile", quantile, owner)
    check_value(AuditSettings, "calibration_size", calibration_size, owner)


def _mean(values: np.ndarray) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _median(values: np.ndarray) -> float | None:
    return float(np.median(values)) if len(values) else None


def _calibration(train: torch.Tensor, train_labels: np.ndarray, num_classes: int, *, quantile: float,
                 calibration_size: int, train_groups: np.ndarray | None, rng: np.random.Generator):
    """Calibration rows, their nearest-other-training-image distances, the overall and per-class thresholds."""
    calib = np.sort(rng.choice(len(train), size=min(int(calibration_size), len(train)), replace=False))
    groups = None if train_groups is None else (np.asarray(train_groups)[calib], np.asarray(train_groups))
    calib_d = nearest_neighbours(train[torch.from_numpy(calib)], train, exclude=torch.from_numpy(calib),
                                 exclude_groups=groups)[0][:, 0]
    finite = torch.isfinite(calib_d)  # a patient alone in the training set has no other-patient neighbour
    calib, calib_d = calib[finite.numpy()], calib_d[finite]
    calib_labels = train_labels[calib]
    overall = float(torch.quantile(calib_d, quantile)) if len(calib_d) else float("nan")
    per_class = np.array([float(torch.quantile(calib_d[torch.from_numpy(calib_labels == c)], quantile))
                          if (calib_labels == c).any() else overall for c in range(num_classes)])
    return calib_d.numpy(), calib_labels, overall, per_class


def memorization_audit(synthetic: torch.Tensor, synthetic_labels: np.ndarray, train: torch.Tensor,
                       train_labels: np.ndarray, classes: list[str], *, heldout: torch.Tensor | None = None,
                       heldout_labels: np.ndarray | None = None, quantile: float = 0.05,
                       calibration_size: int = 2000, train_groups: np.ndarray | None = None,
                       seed: int = 0) -> dict[str, Any]:
    """Nearest real training image of every synthetic sample, and how unusually close it is.

    The threshold of class c is the ``quantile`` of the distances of class-c training images to their
    nearest *other* training image (``calibration_size`` of them, searched among all training images; with
    ``train_groups``, only among other patients' images). ``share`` is the fraction of synthetic samples
    of class c at or below it; real held-out (validation) images give the calibration ``heldout_share``,
    which should be near ``quantile``. A generator that copies its training images scores near 1.

    Returns a JSON-ready dict plus three arrays with one entry per synthetic sample (keys
    ``nearest_index``, ``nearest_distance``, ``flagged``), which ``evaluate_generator`` writes to
    ``nearest_train.csv``.
    """
    check_audit_options(quantile, calibration_size)
    if len(train) < 2:
        raise ValueError("the memorization audit needs at least 2 training images")
    synthetic_labels, train_labels = np.asarray(synthetic_labels), np.asarray(train_labels)
    rng = np.random.default_rng(seed)
    calib_d, calib_labels, overall_threshold, thresholds = _calibration(
        train, train_labels, len(classes), quantile=quantile, calibration_size=calibration_size,
        train_groups=train_groups, rng=rng)
    syn_d, syn_i = nearest_neighbours(synthetic, train)
    syn_d, syn_i = syn_d[:, 0].numpy(), syn_i[:, 0].numpy()
    syn_flag = syn_d <= thresholds[synthetic_labels]
    if heldout is not None and len(heldout):
        pick = np.sort(rng.choice(len(heldout), size=min(int(calibration_size), len(heldout)), replace=False))
        held_d = nearest_neighbours(heldout[torch.from_numpy(pick)], train)[0][:, 0].numpy()
        held_labels = np.asarray(heldout_labels)[pick]
    else:
        held_d, held_labels = np.zeros(0), np.zeros(0, dtype=np.int64)
    held_flag = held_d <= thresholds[held_labels]

    def summary(mask_syn: np.ndarray, mask_cal: np.ndarray, mask_held: np.ndarray, threshold: float) -> dict:
        return {"n_synthetic": int(mask_syn.sum()), "threshold": threshold,
                "share": _mean(syn_flag[mask_syn]), "heldout_share": _mean(held_flag[mask_held]),
                "median_distance": _median(syn_d[mask_syn]),
                "train_median_distance": _median(calib_d[mask_cal]),
                "heldout_median_distance": _median(held_d[mask_held]),
                "nearest_same_class": _mean(train_labels[syn_i[mask_syn]] == synthetic_labels[mask_syn])}

    out: dict[str, Any] = {
        "quantile": float(quantile), "train_items": len(train), "calibration_items": len(calib_d),
        "heldout_items": len(held_d), "exclude_same_patient": train_groups is not None,
        "overall": summary(np.ones(len(syn_d), bool), np.ones(len(calib_d), bool), np.ones(len(held_d), bool),
                           overall_threshold),
        "per_class": {name: summary(synthetic_labels == c, calib_labels == c, held_labels == c, float(thresholds[c]))
                      for c, name in enumerate(classes)},
        "nearest_index": syn_i, "nearest_distance": syn_d, "flagged": syn_flag,
    }
    out["overall"]["threshold_note"] = "shares use the threshold of each sample's class"
    return out


def closest_pairs(nearest_index: np.ndarray, nearest_distance: np.ndarray, labels: np.ndarray, train,
                  classes: list[str], *, pairs: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The ``pairs`` synthetic samples closest to a training image (their positions, closest first) and a
    JSON row for each naming the training image's label, patient and file."""
    order = np.argsort(nearest_distance, kind="stable")[:pairs]
    files, groups, targets = train.files, train.groups, train.targets
    rows = [{"synthetic_index": int(i), "label": classes[int(labels[i])], "train_index": int(nearest_index[i]),
             "train_label": classes[int(targets[nearest_index[i]])], "train_patient": str(groups[nearest_index[i]]),
             "train_file": None if files is None else str(files[nearest_index[i]]),
             "distance": float(nearest_distance[i])}
            for i in order]
    return order, rows


def write_nearest_csv(path: Path, labels: np.ndarray, nearest_index: np.ndarray, nearest_distance: np.ndarray,
                      flagged: np.ndarray, train, classes: list[str]) -> None:
    """``nearest_train.csv``: one row per synthetic sample with its nearest training image."""
    from ..utils import atomic_write_text

    files, groups, targets = train.files, train.groups, train.targets
    rows = ["synthetic_index,label,train_index,train_label,train_patient,train_file,distance,flagged"]
    for i in range(len(labels)):
        j = int(nearest_index[i])
        file = "" if files is None else str(files[j]).replace('"', '""')
        rows.append(f'{i},{classes[int(labels[i])]},{j},{classes[int(targets[j])]},{groups[j]},'
                    f'"{file}",{float(nearest_distance[i]):.6g},{int(bool(flagged[i]))}')
    atomic_write_text(path, "\n".join(rows) + "\n")


def save_closest_pairs(path: Path, images: np.ndarray, order: np.ndarray, nearest_index: np.ndarray,
                       nearest_distance: np.ndarray, train, audit: dict[str, Any]) -> None:
    """``memorization_pairs.png``: the closest synthetic samples above their nearest training images."""
    from ..viz import save_comparison

    syn = torch.from_numpy(np.ascontiguousarray(images[order]))
    real = train.subset(nearest_index[order]).images_tensor()
    title = (f"{len(order)} closest synthetic / real-training pairs (feature L2 "
             f"{float(nearest_distance[order[0]]):.3g} to {float(nearest_distance[order[-1]]):.3g}; memorized share "
             f"{fmt(audit['overall']['share'])}, held-out real {fmt(audit['overall']['heldout_share'])} at "
             f"quantile {audit['quantile']:g})")
    save_comparison([("synthetic", syn), ("nearest real\n(train)", real)], path, title=title)
