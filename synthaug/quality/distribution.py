"""Distances between feature sets: FID, KID, improved precision/recall, overall and per class.

FID and KID are torchmetrics' ``FrechetInceptionDistance`` / ``KernelInceptionDistance`` fed with features
computed once (a pass-through feature module); precision and recall are the k-nearest-neighbour balls of
Kynkäänniemi et al. 2019, computed here with ``torch.cdist`` in chunks.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from ..checks import check_int


class _Precomputed(nn.Module):
    """A torchmetrics feature module for features computed before: returns its input."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = int(num_features)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def _enough_features(real: torch.Tensor, fake: torch.Tensor, minimum: int, what: str) -> bool:
    """Whether both sets hold ``minimum`` rows; an error when they are not two (N, d) matrices of one d."""
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"{what}: expected two feature matrices (N, d) with the same d, got {tuple(real.shape)} and "
                         f"{tuple(fake.shape)}")
    return len(real) >= minimum and len(fake) >= minimum


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float | None:
    """FID between two feature sets (torchmetrics ``FrechetInceptionDistance``); ``None`` below 2 samples each."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    if not _enough_features(real, fake, 2, "frechet_distance"):
        return None
    # every feature is here, in this process: no syncing with other processes (which may be doing other work)
    metric = FrechetInceptionDistance(feature=_Precomputed(real.shape[1]), sync_on_compute=False)
    metric.update(real.float(), real=True)
    metric.update(fake.float(), real=False)
    value = float(metric.compute())
    # FID >= 0; the eigenvalue route returns a tiny negative number for (nearly) identical sets
    return max(0.0, value) if math.isfinite(value) else None


def kernel_distance(real: torch.Tensor, fake: torch.Tensor, *, subset_size: int = 1000, subsets: int = 50,
                    seed: int = 0) -> tuple[float | None, float | None]:
    """KID (mean, std over subsets) with torchmetrics ``KernelInceptionDistance``.

    The subset size adapts to small sets: ``min(subset_size, len(real), len(fake))``. When that is both
    whole sets, every subset would be the same, so one is computed and the std is ``None``.
    """
    from torchmetrics.image.kid import KernelInceptionDistance

    if not _enough_features(real, fake, 2, "kernel_distance"):
        return None, None
    size = min(int(subset_size), len(real), len(fake))
    whole = size == len(real) == len(fake)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        metric = KernelInceptionDistance(feature=_Precomputed(real.shape[1]), subsets=1 if whole else int(subsets),
                                         subset_size=size, sync_on_compute=False)
    metric.update(real.float(), real=True)
    metric.update(fake.float(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the subsets are drawn from the global RNG
        mean, std = metric.compute()
    return float(mean), (None if whole else float(std))


def nearest_neighbours(queries: torch.Tensor, reference: torch.Tensor, *, k: int = 1,
                       exclude: torch.Tensor | None = None, exclude_groups: tuple[np.ndarray, np.ndarray] | None = None,
                       chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Distances (L2) and indices of the ``k`` nearest reference rows of every query, in chunks.

    ``exclude[i]``: a reference index never returned for query ``i`` (its own row; -1 for none).
    ``exclude_groups=(query_groups, reference_groups)``: skip reference rows of the query's group.
    """
    queries, reference = queries.float(), reference.float()
    if k > len(reference):
        raise ValueError(f"nearest_neighbours: k={k} but only {len(reference)} reference rows")
    dists, idx = [], []
    for start in range(0, len(queries), chunk):
        d = torch.cdist(queries[start:start + chunk], reference)
        if exclude is not None:
            rows = torch.arange(len(d))
            own = exclude[start:start + chunk].long()
            keep = own >= 0
            d[rows[keep], own[keep]] = float("inf")
        if exclude_groups is not None:
            qg, rg = exclude_groups
            same = torch.from_numpy(qg[start:start + chunk][:, None] == rg[None, :])
            d[same] = float("inf")
        v, i = d.topk(k, dim=1, largest=False)
        dists.append(v)
        idx.append(i)
    if not dists:
        return torch.zeros(0, k), torch.zeros(0, k, dtype=torch.long)
    return torch.cat(dists), torch.cat(idx)


def _knn_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of every row to its k-th nearest other row."""
    own = torch.arange(len(features))
    return nearest_neighbours(features, features, k=k, exclude=own)[0][:, k - 1]


def _covered(queries: torch.Tensor, reference: torch.Tensor, radii: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """Whether each query lies in at least one reference ball (centre ``reference[j]``, radius ``radii[j]``)."""
    out = [(torch.cdist(queries[s:s + chunk].float(), reference.float()) <= radii[None, :]).any(dim=1)
           for s in range(0, len(queries), chunk)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)


def precision_recall(real: torch.Tensor, fake: torch.Tensor, *, k: int = 3) -> tuple[float | None, float | None]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of ``fake`` against ``real`` features.

    Precision: share of fake samples inside the real manifold (the union of balls around each real sample
    reaching its k-th nearest real neighbour); recall: share of real samples inside the fake manifold.
    ``None`` when a set has no more than ``k`` samples.
    """
    check_int(k, "k", "precision_recall", minimum=1, hint="the paper uses 3")
    if not _enough_features(real, fake, k + 1, "precision_recall"):
        return None, None
    precision = _covered(fake, real, _knn_radii(real, k)).float().mean()
    recall = _covered(real, fake, _knn_radii(fake, k)).float().mean()
    return float(precision), float(recall)


def _scopes(classes: list[str], labels_a: np.ndarray, labels_b: np.ndarray) -> Iterator[tuple[str, np.ndarray,
                                                                                               np.ndarray]]:
    """("overall", all a, all b), then (class name, rows of that class in a, in b)."""
    yield "overall", np.arange(len(labels_a)), np.arange(len(labels_b))
    for c, name in enumerate(classes):
        yield name, np.flatnonzero(labels_a == c), np.flatnonzero(labels_b == c)


def fidelity_metrics(real: torch.Tensor, real_labels: np.ndarray, fake: torch.Tensor, fake_labels: np.ndarray,
                     classes: list[str], *, k: int = 3, kid_subset_size: int = 1000, kid_subsets: int = 50,
                     seed: int = 0) -> dict[str, Any]:
    """FID, KID, precision and recall of ``fake`` against ``real`` features, overall and per class."""
    out: dict[str, Any] = {"per_class": {}}
    for scope, ri, fi in _scopes(classes, np.asarray(real_labels), np.asarray(fake_labels)):
        r, f = real[torch.from_numpy(ri)], fake[torch.from_numpy(fi)]
        kid, kid_std = kernel_distance(r, f, subset_size=kid_subset_size, subsets=kid_subsets, seed=seed)
        precision, recall = precision_recall(r, f, k=k)
        row = {"n_real": len(ri), "n_synthetic": len(fi), "fid": frechet_distance(r, f), "kid": kid,
               "kid_std": kid_std, "precision": precision, "recall": recall}
        if scope == "overall":
            out["overall"] = row
        else:
            out["per_class"][scope] = row
    return out
