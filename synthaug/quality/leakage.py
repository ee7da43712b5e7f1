"""The leakage guard of ``synthaug evaluate``: a generator must have been trained on this split's training patients.

The feature extractor and the CAS classifiers learn from the split's training patients and CAS tests on its
test patients; a generator trained on another split may have seen those test patients. ``synthaug train``
records its data, seed, train fraction, image size and training patients in ``training_options.json``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def find_training_options(path: str | os.PathLike) -> Path | None:
    """``training_options.json`` of a generator checkpoint (in its folder or the run folder above it)."""
    path = Path(path)
    for folder in (path, path.parent):
        if (folder / "training_options.json").is_file():
            return folder / "training_options.json"
    return None


def _same_data(a: str, b: str) -> bool:
    """The same data set name, or two paths of one folder."""
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


def _read_trained(found: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The options file and the data options the generator was trained with."""
    from ..config import ConfigError

    try:
        options = json.loads(found.read_text())
        cfg = options["config"]
        trained = {"data": cfg["data"]["name"], "seed": int(cfg["seed"]),
                   "train_fraction": float(cfg["data"]["train_fraction"]), "image_size": int(cfg["data"]["image_size"])}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{found}: cannot read the generator's training options ({err})") from err
    return options, trained


def check_training_options(path: str | os.PathLike, *, data: str, seed: int, train_fraction: float,
                           image_size: int | None = None, splits=None) -> dict[str, Any] | None:
    """Refuse to evaluate a generator trained on other patients than this split's training patients.

    Reads ``training_options.json`` (written by ``synthaug train``) next to the checkpoint ``path``;
    returns it, or ``None`` when there is none (nothing to check). With ``splits``, the training patients
    recorded there must be exactly ``splits.info["train_groups"]``.
    """
    from ..config import ConfigError

    found = find_training_options(path)
    if found is None:
        return None
    options, trained = _read_trained(found)
    asked = {"data": data, "seed": int(seed), "train_fraction": float(train_fraction), "image_size": image_size}
    bad = [f"{key} {trained[key]!r} (evaluation: {asked[key]!r})"
           for key in ("data", "seed", "train_fraction", "image_size")
           if asked[key] is not None and not (_same_data(trained[key], asked[key]) if key == "data"
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
