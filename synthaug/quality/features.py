"""The feature extractor: a classifier trained on the real training patients only, cached on disk.

No ImageNet weights are used: the features come from a timm classifier (``pretrained=False``) trained on
the *real training patients* of the split (never validation or test patients), cached per data set,
split seed, training items and recipe, together with the features of every training image.
"""
from __future__ import annotations

import hashlib
import json
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

from ..classifier import compute_metrics, load_classifier, normalize, predict, save_classifier
from .recipe import DEFAULT_MODEL, DEFAULT_STEPS, classifier_recipe, per_class_recall, train_recipe

CACHE_FORMAT = 1
EXTRACTOR_META = "extractor.json"
TRAIN_FEATURES = "features-train.safetensors"


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


def training_fingerprint(dataset) -> dict[str, Any]:
    """The fingerprint (labels and patients) of a training set, as recorded in the extractor's cache key."""
    from ..generators.training import data_fingerprint

    return data_fingerprint(dataset)


def extractor_key(splits, *, dataset_key: str, seed: int, recipe: dict[str, Any]) -> dict[str, Any]:
    """Everything the cached extractor depends on (hashed into its cache folder name)."""
    from .._version import __version__

    return {"format": CACHE_FORMAT, "synthaug": __version__, "dataset": str(dataset_key),
            "image_size": splits.image_size,
            "channels": splits.channels, "classes": list(splits.classes), "seed": int(seed),
            "train": training_fingerprint(splits.train), "recipe": recipe}


def default_cache_dir() -> Path:
    from ..data.cache import cache_root

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
    model = train_recipe(recipe, splits.train, num_classes=splits.num_classes, channels=splits.channels, seed=seed,
                         desc="feature extractor").cpu().eval()
    info: dict[str, Any] = {"key": key, "trained_seconds": round(time.time() - start, 1)}
    if len(splits.val):
        probs, targets = predict(model, splits.val)
        info["val"] = {**compute_metrics(probs, targets), "items": len(targets),
                       "per_class_recall": per_class_recall(probs, targets, splits.classes)}
    _write_entry(entry, model, info, recipe, splits)
    extractor = FeatureExtractor(model, image_size=splits.image_size, channels=splits.channels, info=info)
    extractor.info["path"] = str(entry)
    return extractor


def _write_entry(entry: Path, model: nn.Module, info: dict[str, Any], recipe: dict[str, Any], splits) -> None:
    """Written to a temporary folder, then renamed: a reader never sees half an entry."""
    from ..utils import make_public

    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        save_classifier(model, tmp, model_name=recipe["model"], num_classes=splits.num_classes,
                        channels=splits.channels, image_size=splits.image_size, classes=list(splits.classes))
        (tmp / EXTRACTOR_META).write_text(json.dumps(info, indent=2))
        make_public(tmp)
        try:
            os.replace(tmp, entry)
        except OSError:  # another process wrote the same entry first: theirs is as good
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def train_features(extractor: FeatureExtractor, splits) -> torch.Tensor:
    """Features of every training image, cached beside the extractor (the training set is in its key)."""
    from safetensors.torch import load_file, save

    from ..utils import atomic_write_bytes

    path = Path(extractor.info["path"]) / TRAIN_FEATURES if extractor.info.get("path") else None
    expected = training_fingerprint(splits.train)
    own = path is not None and extractor.info.get("key", {}).get("train") == expected
    if own and path.is_file():
        try:
            feats = load_file(str(path))["features"]
            if feats.shape == (len(splits.train), extractor.num_features):
                return feats
        except Exception:  # noqa: BLE001 - a damaged file is simply computed again
            pass
    feats = extractor.dataset_features(splits.train)
    if own:
        try:
            atomic_write_bytes(path, save({"features": feats.contiguous()}))
        except OSError as err:
            warnings.warn(f"could not cache the training features in {path.parent} ({err})", stacklevel=2)
    return feats
