"""Sample quality of a generator, measured in the feature space of a classifier trained on the same data.

No ImageNet weights are used: the features come from a timm classifier (``pretrained=False``) trained on
the *real training patients* of the split (never validation or test patients), cached on disk per data
set, split seed, training items and recipe. On those features:

- **FID** and **KID** (torchmetrics ``FrechetInceptionDistance`` / ``KernelInceptionDistance`` with a custom
  feature module);
- **improved precision and recall** (k-nearest-neighbour balls, Kynkäänniemi et al. 2019);
- a **memorization audit**: the nearest real training image of every synthetic sample, and the share of
  synthetic samples closer to a training image than real training images are to each other, calibrated on
  real held-out (validation) patients;
- **CAS** (classification accuracy score, Ravuri & Vinyals 2019): the same classifier recipe trained on
  synthetic images only, tested on the real test patients, beside the real-trained classifier.

Every metric is given overall and per class. ``evaluate_generator`` runs them all; ``synthaug evaluate`` is
its command line.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .classifier import (AUGMENTATIONS, StandardAugment, compute_metrics, create_classifier, load_classifier,
                         normalize, predict, save_classifier, train_classifier)

CACHE_FORMAT = 1
#: the default recipe: a small ResNet (timm's 4-block ``test_resnet``, 96 features) reaches about 0.9 balanced
#: accuracy on the malaria validation patients at 32 px in 300 steps (well under a minute on a CPU), where
#: resnet18 after the benchmark's 160 steps reaches 0.74 in over three minutes
DEFAULT_MODEL, DEFAULT_STEPS = "test_resnet", 300
EXTRACTOR_META = "extractor.json"
TRAIN_FEATURES = "features-train.safetensors"


# --------------------------------------------------------------------------- the classifier recipe
def classifier_recipe(model: str = DEFAULT_MODEL, steps: int = DEFAULT_STEPS, batch_size: int = 64, lr: float = 1e-3,
                      weight_decay: float = 0.05, augment: str = "flip-rot90") -> dict[str, Any]:
    """The validated training recipe of the feature extractor and of the CAS classifiers (trained as the
    benchmark trains its classifiers: ``train_classifier``, AdamW, flips and 90° rotations)."""
    for name, value in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"classifier {name}={value!r}: must be an integer >= 1")
    for name, value in (("lr", lr), ("weight_decay", weight_decay)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 \
                or (name == "lr" and value == 0):
            bound = " > 0" if name == "lr" else " >= 0"
            raise ValueError(f"classifier {name}={value!r}: must be a finite number{bound}")
    if augment not in AUGMENTATIONS:
        raise ValueError(f"classifier augment={augment!r}: use one of {AUGMENTATIONS}")
    if not isinstance(model, str) or not model:
        raise ValueError(f"classifier model={model!r}: give a timm model name, e.g. 'resnet18'")
    return {"model": model, "steps": steps, "batch_size": batch_size, "lr": float(lr),
            "weight_decay": float(weight_decay), "augment": augment}


def _train_recipe(recipe: dict[str, Any], train_set, *, num_classes: int, channels: int, seed: int,
                  desc: str) -> nn.Module:
    """A fresh classifier trained with ``recipe`` on ``train_set`` (initial weights from ``seed``)."""
    from accelerate.utils import set_seed

    set_seed(seed)  # the same initial weights whatever the training images: real-trained and CAS are paired
    model = create_classifier(recipe["model"], num_classes=num_classes, channels=channels)
    return train_classifier(model, train_set, steps=recipe["steps"], batch_size=recipe["batch_size"], lr=recipe["lr"],
                            weight_decay=recipe["weight_decay"], seed=seed, augment=StandardAugment(recipe["augment"]),
                            desc=desc)


# --------------------------------------------------------------------------- the feature extractor
class FeatureExtractor(nn.Module):
    """Pooled penultimate-layer features of a classifier trained on real training images.

    ``forward(images)``: uint8 ``(N, C, H, W)`` in, float32 ``(N, num_features)`` out (timm
    ``forward_features`` then ``forward_head(..., pre_logits=True)``). It can be given as ``feature=`` to
    torchmetrics' ``FrechetInceptionDistance`` / ``KernelInceptionDistance`` (it has ``num_features``).
    ``info`` says how it was trained and its balanced accuracy on the validation patients.
    """

    def __init__(self, model: nn.Module, *, image_size: int, channels: int, info: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.image_size, self.channels = int(image_size), int(channels)
        self.info = dict(info or {})
        with torch.no_grad():
            probe = torch.zeros(2, self.channels, self.image_size, self.image_size, dtype=torch.uint8)
            self.num_features = int(self(probe).shape[1])

    def check_images(self, images: torch.Tensor) -> None:
        expected = (self.channels, self.image_size, self.image_size)
        if images.dtype != torch.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"the feature extractor takes uint8 images (N, {', '.join(map(str, expected))}), got "
                             f"{images.dtype} {tuple(images.shape)}; evaluate images of the size and channels of "
                             "the data set the extractor was trained on")

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.check_images(images)
        self.model.eval()  # whatever a caller (e.g. a torchmetrics Metric) set
        x = normalize(images.to(next(self.model.parameters()).device))
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True).float().flatten(1)

    @torch.no_grad()
    def features(self, images: np.ndarray | torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
        """Features of a uint8 batch (tensor or array, possibly memory-mapped), in chunks, on the CPU."""
        out = []
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            chunk = torch.from_numpy(np.ascontiguousarray(chunk)) if isinstance(chunk, np.ndarray) else chunk
            out.append(self(chunk).cpu())
        return torch.cat(out) if out else torch.zeros(0, self.num_features)

    def dataset_features(self, dataset, *, batch_size: int = 256) -> torch.Tensor:
        """Features of every item of an ``ImageArrayDataset`` (its transform is not applied)."""
        images = dataset.images_tensor()
        return self.features(images, batch_size=batch_size)


def _fingerprint(dataset) -> dict[str, Any]:
    from .generators.training import data_fingerprint

    return data_fingerprint(dataset)


def extractor_key(splits, *, dataset_key: str, seed: int, recipe: dict[str, Any]) -> dict[str, Any]:
    """Everything the cached extractor depends on (hashed into its cache folder name)."""
    from . import __version__

    return {"format": CACHE_FORMAT, "synthaug": __version__, "dataset": str(dataset_key),
            "image_size": splits.image_size,
            "channels": splits.channels, "classes": list(splits.classes), "seed": int(seed),
            "train": _fingerprint(splits.train), "recipe": recipe}


def default_cache_dir() -> Path:
    from .data.cache import cache_root

    return cache_root() / "extractors"


def get_feature_extractor(splits, *, dataset_key: str | None = None, seed: int | None = None,
                          cache_dir: str | os.PathLike | None = None, model: str = DEFAULT_MODEL,
                          steps: int = DEFAULT_STEPS, batch_size: int = 64, lr: float = 1e-3,
                          weight_decay: float = 0.05, augment: str = "flip-rot90",
                          verbose: bool = True) -> FeatureExtractor:
    """The feature extractor of ``splits``: trained once on ``splits.train`` only, then read from the cache.

    The cache folder ``<cache_dir>/<dataset>-<size>px-seed<seed>-<hash>`` is keyed by the data set key,
    image size, seed, a fingerprint of the training items (labels and patients) and the recipe, and
    written atomically. A damaged entry is retrained with a warning. ``info["cache_hit"]`` tells whether
    it trained; ``info["val"]`` holds its metrics on the validation patients.
    """
    recipe = classifier_recipe(model, steps, batch_size, lr, weight_decay, augment)
    dataset_key = str(dataset_key if dataset_key is not None else splits.info.get("name", "data"))
    seed = int(seed if seed is not None else splits.info.get("seed", 0))
    if len(splits.train) == 0:
        raise ValueError("the training split is empty: there is nothing to train the feature extractor on")
    key = extractor_key(splits, dataset_key=dataset_key, seed=seed, recipe=recipe)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(dataset_key).name or dataset_key).strip("-")[:40] or "data"
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    entry = cache_dir / f"{slug}-{splits.image_size}px-seed{seed}-{digest}"
    if entry.exists():
        try:
            extractor = _load_entry(entry, key)
            extractor.info["cache_hit"] = True
            return extractor
        except (ValueError, OSError, KeyError, TypeError) as err:
            warnings.warn(f"feature extractor cache {entry} is damaged ({err}); training it again", stacklevel=2)
            shutil.rmtree(entry, ignore_errors=True)
    extractor = _build_entry(entry, splits, key, recipe, seed, verbose=verbose)
    extractor.info["cache_hit"] = False
    return extractor


def _load_entry(entry: Path, key: dict[str, Any]) -> FeatureExtractor:
    meta = json.loads((entry / EXTRACTOR_META).read_text())
    if meta.get("key") != json.loads(json.dumps(key)):
        raise ValueError("its extractor.json describes another extractor")
    model, cfg = load_classifier(entry)
    extractor = FeatureExtractor(model, image_size=cfg["image_size"], channels=cfg["channels"], info=meta)
    extractor.info["path"] = str(entry)
    return extractor


def _build_entry(entry: Path, splits, key: dict[str, Any], recipe: dict[str, Any], seed: int, *,
                 verbose: bool) -> FeatureExtractor:
    start = time.time()
    if verbose:
        print(f"training the feature extractor ({recipe['model']}, {recipe['steps']} steps) on the "
              f"{len(splits.train)} training images only; cached in {entry.parent}")
    model = _train_recipe(recipe, splits.train, num_classes=splits.num_classes, channels=splits.channels, seed=seed,
                          desc="feature extractor").cpu().eval()
    info: dict[str, Any] = {"key": key, "trained_seconds": round(time.time() - start, 1)}
    if len(splits.val):
        probs, targets = predict(model, splits.val)
        info["val"] = {**compute_metrics(probs, targets), "items": len(targets),
                       "per_class_recall": _per_class_recall(probs, targets, splits.classes)}
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        save_classifier(model, tmp, model_name=recipe["model"], num_classes=splits.num_classes,
                        channels=splits.channels, image_size=splits.image_size, classes=list(splits.classes))
        (tmp / EXTRACTOR_META).write_text(json.dumps(info, indent=2))
        from .utils import make_public

        make_public(tmp)
        try:
            os.replace(tmp, entry)
        except OSError:  # another process wrote the same entry first: theirs is as good
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    extractor = FeatureExtractor(model, image_size=splits.image_size, channels=splits.channels, info=info)
    extractor.info["path"] = str(entry)
    return extractor


def train_features(extractor: FeatureExtractor, splits) -> torch.Tensor:
    """Features of every training image, cached beside the extractor (the training set is in its key)."""
    from safetensors.torch import load_file, save

    from .utils import atomic_write_bytes

    path = Path(extractor.info["path"]) / TRAIN_FEATURES if extractor.info.get("path") else None
    expected = _fingerprint(splits.train)
    if path is not None and path.is_file() and extractor.info.get("key", {}).get("train") == expected:
        try:
            feats = load_file(str(path))["features"]
            if feats.shape == (len(splits.train), extractor.num_features):
                return feats
        except Exception:  # noqa: BLE001 - a damaged file is simply computed again
            pass
    feats = extractor.dataset_features(splits.train)
    if path is not None and extractor.info.get("key", {}).get("train") == expected:
        try:
            atomic_write_bytes(path, save({"features": feats.contiguous()}))
        except OSError as err:
            warnings.warn(f"could not cache the training features in {path.parent} ({err})", stacklevel=2)
    return feats


# --------------------------------------------------------------------------- distances between feature sets
class _Precomputed(nn.Module):
    """A torchmetrics feature module for features computed before: returns its input."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = int(num_features)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def _check_features(real: torch.Tensor, fake: torch.Tensor, minimum: int, what: str) -> bool:
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"{what}: expected two feature matrices (N, d) with the same d, got {tuple(real.shape)} and "
                         f"{tuple(fake.shape)}")
    return len(real) >= minimum and len(fake) >= minimum


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float | None:
    """FID between two feature sets (torchmetrics ``FrechetInceptionDistance``); ``None`` below 2 samples each."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    if not _check_features(real, fake, 2, "frechet_distance"):
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

    if not _check_features(real, fake, 2, "kernel_distance"):
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
    _check_int("k", k, 1, "the paper uses 3")
    if not _check_features(real, fake, k + 1, "precision_recall"):
        return None, None
    precision = _covered(fake, real, _knn_radii(real, k)).float().mean()
    recall = _covered(real, fake, _knn_radii(fake, k)).float().mean()
    return float(precision), float(recall)


# --------------------------------------------------------------------------- per class
def _scopes(classes: list[str], labels_a: np.ndarray, labels_b: np.ndarray):
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


# --------------------------------------------------------------------------- memorization
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
    _check_audit_options(quantile, calibration_size)
    if len(train) < 2:
        raise ValueError("the memorization audit needs at least 2 training images")
    synthetic_labels, train_labels = np.asarray(synthetic_labels), np.asarray(train_labels)
    rng = np.random.default_rng(seed)
    calib = np.sort(rng.choice(len(train), size=min(int(calibration_size), len(train)), replace=False))
    groups = None if train_groups is None else (np.asarray(train_groups)[calib], np.asarray(train_groups))
    calib_d = nearest_neighbours(train[torch.from_numpy(calib)], train, exclude=torch.from_numpy(calib),
                                 exclude_groups=groups)[0][:, 0]
    finite = torch.isfinite(calib_d)  # a patient alone in the training set has no other-patient neighbour
    calib, calib_d = calib[finite.numpy()], calib_d[finite]
    calib_labels = train_labels[calib]
    overall_threshold = float(torch.quantile(calib_d, quantile)) if len(calib_d) else float("nan")
    thresholds = np.array([float(torch.quantile(calib_d[torch.from_numpy(calib_labels == c)], quantile))
                           if (calib_labels == c).any() else overall_threshold for c in range(len(classes))])
    syn_d, syn_i = nearest_neighbours(synthetic, train)
    syn_d, syn_i = syn_d[:, 0].numpy(), syn_i[:, 0].numpy()
    syn_flag = syn_d <= thresholds[synthetic_labels]
    if heldout is not None and len(heldout):
        held_labels = np.asarray(heldout_labels)
        pick = np.sort(rng.choice(len(heldout), size=min(int(calibration_size), len(heldout)), replace=False))
        held_d = nearest_neighbours(heldout[torch.from_numpy(pick)], train)[0][:, 0].numpy()
        held_labels = held_labels[pick]
        held_flag = held_d <= thresholds[held_labels]
    else:
        held_d, held_labels, held_flag = np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)

    def summary(mask_syn: np.ndarray, mask_cal: np.ndarray, mask_held: np.ndarray, threshold: float) -> dict:
        return {"n_synthetic": int(mask_syn.sum()), "threshold": threshold,
                "share": _mean(syn_flag[mask_syn]), "heldout_share": _mean(held_flag[mask_held]),
                "median_distance": _median(syn_d[mask_syn]),
                "train_median_distance": _median(calib_d.numpy()[mask_cal]),
                "heldout_median_distance": _median(held_d[mask_held]),
                "nearest_same_class": _mean(train_labels[syn_i[mask_syn]] == synthetic_labels[mask_syn])}

    every = np.ones(len(syn_d), bool)
    out: dict[str, Any] = {
        "quantile": float(quantile), "train_items": len(train), "calibration_items": len(calib),
        "heldout_items": len(held_d), "exclude_same_patient": train_groups is not None,
        "overall": summary(every, np.ones(len(calib), bool), np.ones(len(held_d), bool), overall_threshold),
        "per_class": {name: summary(synthetic_labels == c, calib_labels == c, held_labels == c, float(thresholds[c]))
                      for c, name in enumerate(classes)},
        "nearest_index": syn_i, "nearest_distance": syn_d, "flagged": syn_flag,
    }
    out["overall"]["threshold_note"] = "shares use the threshold of each sample's class"
    return out


def _check_int(name: str, value: Any, minimum: int, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r}: must be an integer >= {minimum} ({hint})")


def _check_audit_options(quantile: Any, calibration_size: Any) -> None:
    if isinstance(quantile, bool) or not isinstance(quantile, (int, float)) or not 0 < quantile < 1:
        raise ValueError(f"quantile={quantile!r}: must be in (0, 1), e.g. 0.05")
    _check_int("calibration_size", calibration_size, 2, "training images whose nearest neighbour calibrates")


def _mean(values: np.ndarray) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _median(values: np.ndarray) -> float | None:
    return float(np.median(values)) if len(values) else None


# --------------------------------------------------------------------------- CAS
def _per_class_recall(probs: torch.Tensor, targets: torch.Tensor, classes: list[str]) -> dict[str, float | None]:
    pred = probs.argmax(1)
    return {name: (float((pred[targets == c] == c).float().mean()) if (targets == c).any() else None)
            for c, name in enumerate(classes)}


def score_on_test(model: nn.Module, splits, *, positive: int | None = None) -> dict[str, Any]:
    """compute_metrics on the real test patients, plus the recall of each class."""
    probs, targets = predict(model, splits.test)
    return {**compute_metrics(probs, targets, positive=positive), "items": len(targets),
            "per_class_recall": _per_class_recall(probs, targets, splits.classes)}


def classification_accuracy_score(images: np.ndarray | torch.Tensor, labels: np.ndarray, splits, *,
                                  recipe: dict[str, Any], seed: int = 0, real_model: nn.Module | None = None,
                                  positive: int | None = None) -> dict[str, Any]:
    """CAS: ``recipe`` trained on the synthetic ``images`` alone, tested on the real test patients.

    ``real_model``: the same recipe trained on the real training images (with the same seed); its test
    scores are reported beside (trained here when not given).
    """
    from .data import ImageArrayDataset

    if len(splits.test) == 0:
        raise ValueError("CAS needs real test patients, and the test split is empty")
    images = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    labels = np.asarray(labels, dtype=np.int64)
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"CAS: {len(images)} synthetic images and {len(labels)} labels; give the same number (> 0)")
    start = time.time()
    synthetic = ImageArrayDataset(images, labels, np.full(len(labels), "synthetic"), splits.classes)
    model = _train_recipe(recipe, synthetic, num_classes=splits.num_classes, channels=splits.channels, seed=seed,
                          desc="CAS: synthetic only")
    syn_scores = score_on_test(model, splits, positive=positive)
    syn_seconds = time.time() - start
    if real_model is None:
        real_model = _train_recipe(recipe, splits.train, num_classes=splits.num_classes, channels=splits.channels,
                                   seed=seed, desc="CAS: real")
    real_scores = score_on_test(real_model, splits, positive=positive)
    return {"recipe": recipe, "seed": seed, "synthetic_images": len(labels), "real_images": len(splits.train),
            "test_items": len(splits.test), "synthetic": syn_scores, "real": real_scores,
            "cas": syn_scores["balanced_accuracy"], "real_score": real_scores["balanced_accuracy"],
            "ratio": (syn_scores["balanced_accuracy"] / real_scores["balanced_accuracy"]
                      if real_scores["balanced_accuracy"] else None),
            "seconds": round(time.time() - start, 1), "synthetic_seconds": round(syn_seconds, 1)}


# --------------------------------------------------------------------------- the whole evaluation
def _as_source(source: Any):
    """A Generator or SyntheticPool; a path is loaded as a pool folder or a generator checkpoint."""
    from .pool import SyntheticPool, is_pool, load_pool

    if isinstance(source, (str, os.PathLike)):
        if is_pool(source):
            return load_pool(source)
        from .generators import load_generator

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


def _draw(source, counts: np.ndarray, *, seed: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images and labels: ``counts[c]`` of class c (a pool gives what it has, at most that)."""
    from .pool import SyntheticPool, generate_pool

    if isinstance(source, SyntheticPool):
        idx = _per_class_draw(source.labels, counts, rng)
        return np.asarray(source.images[idx]), source.labels[idx].astype(np.int64)
    labels = np.repeat(np.arange(len(counts)), counts)
    pool = generate_pool(source, labels, seed=seed, desc="sampling for evaluation")
    return pool.images, pool.labels


def _per_class_draw(targets: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of ``counts[c]`` random items of each class c (all of them when there are fewer)."""
    picks = [rng.choice(np.flatnonzero(targets == c), size=min(int(n), int((targets == c).sum())), replace=False)
             for c, n in enumerate(counts)]
    return np.sort(np.concatenate(picks)).astype(np.int64)


def evaluate_generator(source: Any, splits, *, n: int = 1000, seed: int | None = None,
                       extractor: FeatureExtractor | None = None, cas: bool = True, cas_images: int | None = None,
                       out_dir: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                       dataset_key: str | None = None, recipe: dict[str, Any] | None = None, k: int = 3,
                       quantile: float = 0.05, calibration_size: int = 2000, exclude_same_patient: bool = False,
                       pairs: int = 16, positive: int | None = None) -> dict[str, Any]:
    """Sample quality of a generator (or a pool) against the real training patients of ``splits``.

    - ``n`` synthetic images with the class frequencies of the training split (a pool: ``n`` of its
      images drawn per class in those proportions, at most what it holds), compared with as many real
      training images per class (FID, KID, precision/recall), overall and per class;
      ``reference_heldout`` gives the same metrics for real validation images (new patients) against
      the same training images: the scale of a good score at this ``n``.
    - the memorization audit against all training images (``memorization_audit``);
    - ``cas=True``: CAS with ``cas_images`` synthetic images (default: as many as real training images),
      the extractor's recipe and steps, beside the real-trained classifier (the extractor itself when the
      recipe is the same).

    ``extractor``: default ``get_feature_extractor(splits, cache_dir=..., **recipe)``. ``out_dir``: writes
    ``quality.json``, ``memorization_pairs.png`` and ``nearest_train.csv``. Returns the dict of quality.json.
    """
    from .synthetic import largest_remainder

    t0 = time.time()
    # every option is checked before anything is trained
    _check_int("n", n, 2, "the number of synthetic images, e.g. 1000")
    if cas_images is not None:
        _check_int("cas_images", cas_images, 1, "or None: as many as real training images")
    _check_int("pairs", pairs, 0, "the number of closest pairs to draw")
    _check_int("k", k, 1, "the neighbours of precision/recall; the paper uses 3")
    _check_audit_options(quantile, calibration_size)
    source = _as_source(source)
    _check_compatible(source, splits)
    seed = int(seed if seed is not None else splits.info.get("seed", 0))
    recipe = classifier_recipe(**(recipe or {}))
    if extractor is None:
        extractor = get_feature_extractor(splits, dataset_key=dataset_key, seed=seed, cache_dir=cache_dir, **recipe)
    key = extractor.info.get("key", {})
    own_split = key.get("train") == _fingerprint(splits.train)
    if not own_split:
        warnings.warn("the feature extractor was not trained on this split's training items (its cache key differs): "
                      "it may have seen validation or test patients of this split; build it with "
                      "get_feature_extractor(splits, ...)", stacklevel=2)
    timings: dict[str, float] = {}
    rng = np.random.default_rng(seed)
    train_targets = splits.train.targets

    t = time.time()
    counts = largest_remainder(n, np.bincount(train_targets, minlength=splits.num_classes))
    images, labels = _draw(source, counts, seed=seed, rng=rng)
    timings["sampling"] = time.time() - t
    if len(labels) < 2:
        raise ValueError(f"only {len(labels)} synthetic images to evaluate; the pool is too small")

    t = time.time()
    train_feats = train_features(extractor, splits)
    syn_feats = extractor.features(images)
    val_feats = extractor.dataset_features(splits.val) if len(splits.val) else torch.zeros(0, extractor.num_features)
    timings["features"] = time.time() - t

    # the real reference: per class as many training images as synthetic ones (k-NN radii and FID depend on n)
    t = time.time()
    syn_counts = np.bincount(labels, minlength=splits.num_classes)
    real_idx = _per_class_draw(train_targets, syn_counts, rng)
    real_feats, real_labels = train_feats[torch.from_numpy(real_idx)], train_targets[real_idx]
    fidelity = fidelity_metrics(real_feats, real_labels, syn_feats, labels, splits.classes, k=k, seed=seed)
    reference = None
    if len(splits.val):
        val_targets = splits.val.targets
        val_idx = _per_class_draw(val_targets, syn_counts, rng)
        reference = fidelity_metrics(real_feats, real_labels, val_feats[torch.from_numpy(val_idx)],
                                     val_targets[val_idx], splits.classes, k=k, seed=seed)
    timings["fidelity"] = time.time() - t

    t = time.time()
    audit = memorization_audit(syn_feats, labels, train_feats, train_targets, splits.classes, heldout=val_feats,
                               heldout_labels=splits.val.targets if len(splits.val) else None, quantile=quantile,
                               calibration_size=calibration_size,
                               train_groups=splits.train.groups if exclude_same_patient else None, seed=seed)
    nearest_i, nearest_d, flagged = audit.pop("nearest_index"), audit.pop("nearest_distance"), audit.pop("flagged")
    order = np.argsort(nearest_d, kind="stable")[:pairs]
    files = splits.train.files
    audit["closest_pairs"] = [
        {"synthetic_index": int(i), "label": splits.classes[int(labels[i])], "train_index": int(nearest_i[i]),
         "train_label": splits.classes[int(train_targets[nearest_i[i]])],
         "train_patient": str(splits.train.groups[nearest_i[i]]),
         "train_file": None if files is None else str(files[nearest_i[i]]), "distance": float(nearest_d[i])}
        for i in order]
    timings["memorization"] = time.time() - t

    cas_result = None
    if cas:
        t = time.time()
        n_cas = len(splits.train) if cas_images is None else cas_images
        cas_counts = largest_remainder(n_cas, np.bincount(train_targets, minlength=splits.num_classes))
        cas_x, cas_y = _draw(source, cas_counts, seed=seed + 1, rng=np.random.default_rng(seed + 1))
        same_recipe = own_split and key.get("recipe") == recipe and key.get("seed") == seed
        cas_result = classification_accuracy_score(cas_x, cas_y, splits, recipe=recipe, seed=seed, positive=positive,
                                                   real_model=extractor.model if same_recipe else None)
        cas_result["real_model"] = "the feature extractor (same recipe and seed)" if same_recipe else "trained here"
        if len(cas_y) < n_cas:
            cas_result["note"] = f"the pool holds {len(cas_y)} images of the {n_cas} asked for"
        timings["cas"] = time.time() - t

    meta = getattr(source, "meta", None)
    result = {
        "data": {k_: splits.info.get(k_) for k_ in ("name", "image_size", "seed", "train_fraction", "split")}
        | {"classes": list(splits.classes), "train_items": len(splits.train), "val_items": len(splits.val),
           "test_items": len(splits.test)},
        "source": ({"kind": "pool", "meta": meta} if meta is not None else
                   {"kind": "generator", "name": getattr(source, "generator_name", type(source).__name__),
                    "options": getattr(source, "generator_options", {})}),
        "n": int(len(labels)), "seed": seed,
        "extractor": {k_: v for k_, v in extractor.info.items() if k_ not in ("key",)}
        | {"recipe": extractor.info.get("key", {}).get("recipe"), "num_features": extractor.num_features},
        "fidelity": fidelity, "reference_heldout": reference, "memorization": audit, "cas": cas_result,
        "seconds": {k_: round(v, 1) for k_, v in timings.items()} | {"total": round(time.time() - t0, 1)},
    }
    result = json.loads(json.dumps(result, default=_json_default))
    if out_dir is not None:
        _write_outputs(Path(out_dir), result, images, labels, nearest_i, nearest_d, flagged, order, splits)
    return result


def _json_default(value: Any):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _write_outputs(out_dir: Path, result: dict, images: np.ndarray, labels: np.ndarray, nearest_i: np.ndarray,
                   nearest_d: np.ndarray, flagged: np.ndarray, order: np.ndarray, splits) -> None:
    from .utils import atomic_write_text
    from .viz import save_comparison

    out_dir.mkdir(parents=True, exist_ok=True)
    files, groups, targets = splits.train.files, splits.train.groups, splits.train.targets
    rows = ["synthetic_index,label,train_index,train_label,train_patient,train_file,distance,flagged"]
    for i in range(len(labels)):
        j = int(nearest_i[i])
        file = "" if files is None else str(files[j]).replace('"', '""')
        rows.append(f'{i},{splits.classes[int(labels[i])]},{j},{splits.classes[int(targets[j])]},{groups[j]},'
                    f'"{file}",{float(nearest_d[i]):.6g},{int(bool(flagged[i]))}')
    atomic_write_text(out_dir / "nearest_train.csv", "\n".join(rows) + "\n")
    if len(order):
        syn = torch.from_numpy(np.ascontiguousarray(images[order]))
        real = splits.train.subset(nearest_i[order]).images_tensor()
        mem = result["memorization"]
        title = (f"{len(order)} closest synthetic / real-training pairs (feature L2 "
                 f"{float(nearest_d[order[0]]):.3g} to {float(nearest_d[order[-1]]):.3g}; memorized share "
                 f"{_fmt(mem['overall']['share'])}, held-out real {_fmt(mem['overall']['heldout_share'])} at "
                 f"quantile {mem['quantile']:g})")
        save_comparison([("synthetic", syn), ("nearest real\n(train)", real)], out_dir / "memorization_pairs.png",
                        title=title)
    atomic_write_text(out_dir / "quality.json", json.dumps(result, indent=2))


# --------------------------------------------------------------------------- report
def _fmt(value: Any, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def format_report(result: dict[str, Any]) -> str:
    """A plain-text table of ``evaluate_generator``'s result."""
    ext = result["extractor"]
    val = ext.get("val") or {}
    recipe = ext.get("recipe") or {}
    lines = [f"features: {recipe.get('model')} trained {recipe.get('steps')} steps on the real training patients "
             f"(val balanced accuracy {_fmt(val.get('balanced_accuracy'))}; {ext.get('num_features')} features; "
             f"{'cached' if ext.get('cache_hit') else 'trained now'})",
             f"n = {result['n']} synthetic images against as many real training images per class", "",
             f"{'':24s} {'FID':>8s} {'KID':>8s} {'precision':>9s} {'recall':>7s} {'memorized':>9s}"]
    mem = result["memorization"]

    def row(name: str, fid: dict, memo: float | None) -> str:
        return (f"{name:24s} {_fmt(fid['fid'], '8.2f')} {_fmt(fid['kid'], '8.4f')} {_fmt(fid['precision'], '9.3f')} "
                f"{_fmt(fid['recall'], '7.3f')} {_fmt(memo, '9.3f')}")

    fid = result["fidelity"]
    lines.append(row("synthetic: overall", fid["overall"], mem["overall"]["share"]))
    for name, r in fid["per_class"].items():
        lines.append(row(f"synthetic: {name}", r, mem["per_class"][name]["share"]))
    ref = result.get("reference_heldout")
    if ref:
        lines.append(row("real val (reference)", ref["overall"], mem["overall"]["heldout_share"]))
        for name, r in ref["per_class"].items():
            lines.append(row(f"real val: {name}", r, mem["per_class"][name]["heldout_share"]))
    lines += ["", f"memorized = share of samples at most as far from their nearest training image as the closest "
                  f"{mem['quantile']:.0%} of training images are from theirs (real val images should give about "
                  f"{mem['quantile']:g})"]
    cas = result.get("cas")
    if cas:
        lines += ["", f"CAS (balanced accuracy on {cas['test_items']} real test images, {cas['recipe']['model']} "
                      f"{cas['recipe']['steps']} steps): synthetic-trained {_fmt(cas['cas'])} vs real-trained "
                      f"{_fmt(cas['real_score'])} (ratio {_fmt(cas['ratio'], '.2f')})"]
        per = "; ".join(f"{name} {_fmt(cas['synthetic']['per_class_recall'][name])} vs "
                        f"{_fmt(cas['real']['per_class_recall'][name])}" for name in cas["real"]["per_class_recall"])
        lines.append(f"  recall per class (synthetic vs real): {per}")
        if cas.get("note"):
            lines.append(f"  note: {cas['note']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- leakage check
def find_training_options(path: str | os.PathLike) -> Path | None:
    """``training_options.json`` of a generator checkpoint (in its folder or the run folder above it)."""
    path = Path(path)
    for folder in (path, path.parent):
        if (folder / "training_options.json").is_file():
            return folder / "training_options.json"
    return None


def check_training_options(path: str | os.PathLike, *, data: str, seed: int, train_fraction: float,
                           image_size: int | None = None, splits=None) -> dict[str, Any] | None:
    """Refuse to evaluate a generator trained on other patients than this split's training patients.

    Reads ``training_options.json`` (written by ``synthaug train``) next to the checkpoint ``path``;
    returns it, or ``None`` when there is none (nothing to check). With ``splits``, the training patients
    recorded there must be exactly ``splits.info["train_groups"]``.
    """
    from .config import ConfigError

    found = find_training_options(path)
    if found is None:
        return None
    try:
        options = json.loads(found.read_text())
        cfg = options["config"]
        trained = {"data": cfg["data"]["name"], "seed": int(cfg["seed"]),
                   "train_fraction": float(cfg["data"]["train_fraction"]), "image_size": int(cfg["data"]["image_size"])}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{found}: cannot read the generator's training options ({err})") from err
    asked = {"data": data, "seed": int(seed), "train_fraction": float(train_fraction), "image_size": image_size}

    def same_data(a: str, b: str) -> bool:
        if a == b:
            return True
        pa, pb = Path(a).expanduser(), Path(b).expanduser()
        return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()

    bad = [f"{key} {trained[key]!r} (evaluation: {asked[key]!r})"
           for key in ("data", "seed", "train_fraction", "image_size")
           if asked[key] is not None and not (same_data(trained[key], asked[key]) if key == "data"
                                              else trained[key] == asked[key])]
    if not bad and splits is not None:
        recorded = (options.get("splits") or {}).get("train_groups")
        current = splits.info.get("train_groups")
        if recorded is not None and current is not None and sorted(map(str, recorded)) != sorted(map(str, current)):
            bad.append(f"training patients ({len(set(recorded) - set(current))} of its {len(recorded)} are not "
                       f"training patients of this split)")
    if bad:
        raise ConfigError(f"the generator was trained with {', '.join(bad)} according to {found}. Its training "
                          "patients differ from the feature extractor's and the CAS classifier's training split, and "
                          "may be validation or test patients here (leakage). Evaluate it with the data, --seed and "
                          "--train-fraction it was trained with.")
    return options
