"""The one entry point, ``load_dataset``: malaria, MedMNIST or a folder, split by patient, checked."""
from __future__ import annotations

import os
import re
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checks import check_choice, check_float, check_int, did_you_mean, is_int
from .core import ImageArrayDataset, Splits
from .folders import GroupFn, check_group_fn, folder_dataset
from .imageio import resize_batch
from .malaria import malaria_dataset
from .design import PatientDesign, items_of
from .splits import assert_disjoint_groups, check_every_class, check_split, split_by_group, subsample_groups

__all__ = ["resolve_data_root", "dataset_short_name", "load_dataset", "check_trainable"]


def resolve_data_root(root: str | os.PathLike | None) -> Path:
    """The data root: the argument, else ``$SYNTHAUG_DATA``. Raises a clear error when neither exists."""
    if root is None:
        root = os.environ.get("SYNTHAUG_DATA")
        if not root:
            raise FileNotFoundError(
                "no data root: pass root=... (or data.root in the config), or set SYNTHAUG_DATA to the "
                "folder that holds malaria-nih/ and medmnist/"
            )
        source = "$SYNTHAUG_DATA"
    else:
        source = "root"
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"data root {path} (from {source}) does not exist or is not a folder")
    return path


# --------------------------------------------------------------------------- medmnist
def _medmnist_splits(flag: str, root: str | os.PathLike | None, *, image_size: int, download: bool) -> dict[str, ImageArrayDataset]:
    import medmnist  # slow import: only when asked for
    from medmnist import INFO

    flag = flag.lower()
    if flag not in INFO:
        raise ValueError(f"unknown MedMNIST flag {flag!r}{did_you_mean(flag, INFO)}; known: {sorted(INFO)}")
    info = INFO[flag]
    if info["task"].startswith("multi-label"):
        raise ValueError(f"medmnist:{flag} is multi-label ({info['task']}); synthaug handles single-label "
                         "classification only for now")
    base = resolve_data_root(root) if (root is not None or os.environ.get("SYNTHAUG_DATA")) else None
    candidates = [] if base is None else [base / "medmnist", base]
    cls = getattr(medmnist, info["python_class"])
    npz_dir, size = _medmnist_file(flag, candidates, image_size=image_size, download=download,
                                   sizes=list(getattr(cls, "available_sizes", [28])))
    npz_path = npz_dir / medmnist_file_name(flag, size)
    if npz_path.is_file():
        _check_medmnist_npz(npz_path)
    classes = [info["label"][str(i)] for i in range(len(info["label"]))]
    out = {}
    for split in ("train", "val", "test"):
        try:
            ds = cls(split=split, root=str(npz_dir), download=download and split == "train", size=size)
        except RuntimeError as err:
            if not download or npz_path.is_file():
                raise FileNotFoundError(f"medmnist:{flag}: could not read {npz_path}: {err}") from err
            url = info.get("url" if size == 28 else f"url_{size}", "the MedMNIST Zenodo record")
            raise FileNotFoundError(f"medmnist:{flag}: could not download {npz_path.name} (no network?); download "
                                    f"{url} on a machine with one and put it at {npz_path}") from None
        imgs = np.asarray(ds.imgs)
        labels = np.asarray(ds.labels).reshape(len(imgs), -1)
        if labels.shape[1] != 1:
            raise ValueError(f"{npz_path}: {split}_labels has shape {ds.labels.shape}; expected (N,) or (N, 1)")
        arr = imgs[:, None] if imgs.ndim == 3 else imgs.transpose(0, 3, 1, 2)
        tensor = resize_batch(torch.from_numpy(np.ascontiguousarray(arr, dtype=np.uint8)), image_size)
        out[split] = ImageArrayDataset(tensor.numpy(), labels[:, 0].astype(np.int64),
                                       np.array([f"{split}-{i}" for i in range(len(imgs))]), classes)
    return out


def medmnist_file_name(flag: str, size: int) -> str:
    """The npz file medmnist keeps a data set of ``size`` px in: ``breastmnist.npz`` (28), ``breastmnist_64.npz``."""
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


def _medmnist_file(flag: str, candidates: list[Path], *, image_size: int, download: bool,
                   sizes: list[int]) -> tuple[Path, int]:
    """The folder and size of the MedMNIST file to read for ``image_size`` px: the smallest size of at least
    ``image_size`` (downsampling, never upsampling, when that file is there or can be downloaded), else the
    largest file present, upsampled with a warning that names the file that would be better."""
    wanted = min([s for s in sizes if s >= image_size] or [max(sizes)])
    present = [(c, s) for s in sorted(sizes) for c in candidates if (c / medmnist_file_name(flag, s)).is_file()]
    fits = [(c, s) for c, s in present if s >= image_size]
    if fits:
        return min(fits, key=lambda cs: cs[1])
    if download:  # the size asked for, into the data root (or medmnist's own folder)
        folder = candidates[0] if candidates else Path.home() / ".medmnist"
        folder.mkdir(parents=True, exist_ok=True)
        return folder, wanted
    if present:
        folder, size = present[-1]
        warnings.warn(f"medmnist:{flag} at {image_size} px: only {folder / medmnist_file_name(flag, size)} is here, "
                      f"so its {size} px images are upsampled; put {medmnist_file_name(flag, wanted)} beside it (or "
                      "pass download=True on a machine with a network) for real images of that size", stacklevel=5)
        return folder, size
    where = ", ".join(str(c / medmnist_file_name(flag, wanted)) for c in candidates) or "(no data root given)"
    other = "" if wanted == min(sizes) else f" (or {medmnist_file_name(flag, min(sizes))}, resized)"
    raise FileNotFoundError(f"medmnist:{flag}: no {medmnist_file_name(flag, wanted)} at {where}. Put the file{other} "
                            "there, or pass download=True on a machine with a network.")


def _check_medmnist_npz(path: Path) -> None:
    try:
        with np.load(path, mmap_mode="r") as npz:
            keys = set(npz.files)
            missing = [f"{s}_{k}" for s in ("train", "val", "test") for k in ("images", "labels") if f"{s}_{k}" not in keys]
            if missing:
                raise ValueError(f"{path} lacks the key(s) {missing}; a MedMNIST npz has train/val/test _images and _labels")
            for s in ("train", "val", "test"):
                n_img, n_lab = len(npz[f"{s}_images"]), len(npz[f"{s}_labels"])
                if n_img != n_lab:
                    raise ValueError(f"{path}: {s}_images has {n_img} items but {s}_labels has {n_lab}")
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} is not a readable npz file ({err}); replace it") from err


# --------------------------------------------------------------------------- entry point
def dataset_short_name(name_or_path: str | os.PathLike) -> str:
    """How results, folders and reports name a data set: ``malaria``, ``medmnist-breastmnist``, or a
    folder's base name (``DIB`` for ``/tmp/x/DIB``), never a key built from an absolute path."""
    name = str(name_or_path)
    if name.lower() == "malaria":
        return "malaria"
    if name.lower().startswith("medmnist:"):
        return "medmnist-" + name.split(":", 1)[1].lower()
    base = Path(name).expanduser().resolve().name  # "/tmp/x/DIB/", "./DIB" and "." inside DIB all give "DIB"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-.") or "folder"


def load_dataset(
    name_or_path: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    image_size: int = 32,
    seed: int = 0,
    train_fraction: float = 1.0,
    split: Sequence[float] = (0.7, 0.1, 0.2),
    group_fn: GroupFn | str | None = None,
    group_aliases: Mapping[str, str] | None = None,
    channels: int = 3,
    on_bad_file: str = "error",
    download: bool = False,
    cache: bool = True,
    design: PatientDesign | Mapping[str, Any] | None = None,
) -> Splits:
    """Load a data set and split it **by group** (patient) into train / val / test.

    ``name_or_path``: ``"malaria"`` (the NIH layout under ``root`` or ``$SYNTHAUG_DATA``; grouped by
    the ``C<n>P<m>`` slide/patient code), ``"medmnist:<flag>"`` (official splits, from
    ``<root>/medmnist/<flag>.npz``), or a path to an ImageFolder layout ``<path>/<class>/<image>``
    with ``group_fn`` (a regex whose first group, or a function of the file name, gives the group
    id; without it each file is its own group, with an ``UngroupedWarning``). ``group_aliases``
    maps ids to one group (e.g. two names of one patient). ``channels`` (1 or 3) applies to
    folders and malaria; MedMNIST keeps its own.

    Images are uint8 ``C x image_size x image_size``: aspect-preserving resize, black padding.
    ``train_fraction`` keeps a seeded fraction of the *training groups*; val and test are never
    reduced. No group ever appears in two splits (checked, ``LeakageError`` otherwise). A data set
    with one class, a split with fewer than two items, or a split without some class is refused.
    ``design`` (a ``PatientDesign`` or its mapping; grouped data sets only) replaces ``split`` and
    ``train_fraction`` by fixed patient roles: the same val/test patients for every draw, and a training
    split of the donor pool, one site draw or both (see ``synthaug.data.design``).
    """
    _check_load_arguments(image_size, channels, train_fraction, on_bad_file, group_fn, group_aliases)
    fractions = check_split(split)
    name = str(name_or_path)
    info: dict[str, Any] = {"name": name, "short_name": dataset_short_name(name), "image_size": image_size,
                            "seed": seed, "train_fraction": train_fraction, "split": list(fractions)}
    options = dict(seed=seed, train_fraction=train_fraction, split=fractions, info=info, design=design)
    if name.lower().startswith("medmnist:"):
        if group_fn is not None or group_aliases:
            raise ValueError(f"{name}: group_fn / group_aliases do not apply to MedMNIST, whose items carry no "
                             "patient ids and whose splits are the official ones; leave them out")
        if design is not None:
            raise ValueError(f"{name}: design= needs patient ids; MedMNIST items carry none (leave design out)")
        del options["design"]
        splits = _medmnist_load(name, root, download=download, image_size=image_size, **options)
        where = name
    else:
        full, where, info["grouped"] = _grouped_full(name, root, image_size=image_size, channels=channels,
                                                     group_fn=group_fn, aliases=group_aliases,
                                                     on_bad_file=on_bad_file, cache=cache)
        splits = _split_full(full, where=where, **options)
    check_trainable(splits, where=where)
    _record_groups(splits)
    return splits


def _check_load_arguments(image_size: Any, channels: Any, train_fraction: Any, on_bad_file: Any, group_fn: Any,
                          group_aliases: Any) -> None:
    """``load_dataset``'s arguments, checked before anything is read."""
    check_int(image_size, "image_size", minimum=8, maximum=1024, hint="e.g. 32 or 64")
    if not is_int(channels) or channels not in (1, 3):
        raise ValueError(f"channels={channels!r}: must be 1 (grayscale) or 3 (RGB)")
    check_float(train_fraction, "train_fraction", minimum=0, min_inclusive=False, maximum=1,
                hint="a fraction of the training patients")
    check_choice(on_bad_file, "on_bad_file", "", ("error", "skip"),
                 hint="'error' stops on the first bad file, 'skip' leaves bad files out with a warning")
    check_group_fn(group_fn)
    if group_aliases is not None and not isinstance(group_aliases, Mapping):
        raise ValueError(f"group_aliases={group_aliases!r}: give a mapping of id to group, e.g. "
                         "{'scanA-17': 'patient17', 'scanB-17': 'patient17'}")


def _grouped_full(name: str, root: Any, *, image_size: int, channels: int, group_fn: Any, aliases: Any,
                  on_bad_file: str, cache: bool) -> tuple[Any, str, bool]:
    """The whole malaria or folder data set before splitting, where it came from (for messages), and whether
    its items carry group (patient) ids."""
    if name.lower() == "malaria":
        full = malaria_dataset(resolve_data_root(root), image_size=image_size, channels=channels, aliases=aliases,
                               on_bad_file=on_bad_file, cache=cache)
        return full, "malaria", True  # grouped by the C<n>P<m> patient code
    folder = _existing_folder(name)
    full = folder_dataset(folder, image_size=image_size, channels=channels, group_fn=group_fn, aliases=aliases,
                          on_bad_file=on_bad_file, cache=cache)
    return full, f"folder data set {folder}", group_fn is not None or bool(aliases)


def _existing_folder(name: str) -> Path:
    folder = Path(name).expanduser()
    if not folder.is_dir():
        known = ["malaria", "medmnist:<flag>"]
        raise FileNotFoundError(f"data set {name!r} is neither a known name ({', '.join(known)})"
                                f"{did_you_mean(name.lower(), known)} nor an existing folder of class sub-folders")
    return folder


def _medmnist_load(name: str, root: str | os.PathLike | None, *, download: bool, image_size: int, seed: int,
                   train_fraction: float, split: tuple[float, float, float], info: dict[str, Any]) -> Splits:
    if tuple(split) != (0.7, 0.1, 0.2):
        raise ValueError(f"split={tuple(split)!r}: MedMNIST comes with official train/val/test splits, which "
                         "synthaug uses; leave split at its default for medmnist:<flag>")
    # grayscale MedMNIST stays 1 channel whatever `channels` says: the data decide
    parts = _medmnist_splits(name.split(":", 1)[1], root, image_size=image_size, download=download)
    train = parts["train"]
    kept = subsample_groups(np.arange(len(train)), train.targets, train.groups, fraction=train_fraction, seed=seed)
    info["split"] = "official"
    info["grouped"] = False  # one group per image: MedMNIST has no patient ids
    return Splits(train.subset(kept), parts["val"], parts["test"], info)


def _split_full(full: ImageArrayDataset, *, where: str, seed: int, train_fraction: float,
                split: tuple[float, float, float], info: dict[str, Any],
                design: PatientDesign | Mapping[str, Any] | None = None) -> Splits:
    if design is not None:
        return _design_split(full, PatientDesign.from_mapping(design), where=where, train_fraction=train_fraction,
                             info=info)
    try:
        train_idx, val_idx, test_idx = split_by_group(full.targets, full.groups, split=split, seed=seed,
                                                      num_classes=full.num_classes, classes=full.classes)
    except ValueError as err:  # say which data set: a benchmark loads several
        raise ValueError(f"{where}: {err}") from None
    kept = subsample_groups(train_idx, full.targets, full.groups, fraction=train_fraction, seed=seed)
    info["skipped_files"] = list(getattr(full, "skipped_files", []))
    return Splits(full.subset(kept), full.subset(val_idx), full.subset(test_idx), info)


def _design_split(full: ImageArrayDataset, design: PatientDesign, *, where: str, train_fraction: float,
                  info: dict[str, Any]) -> Splits:
    if train_fraction != 1:
        raise ValueError(f"{where}: train_fraction={train_fraction} with a design: the design's train role "
                         f"({design.train!r}) chooses the training patients; leave train_fraction at 1.0")
    roles = design.roles(full.targets, full.groups)
    parts = [items_of(full.groups, design.train_patients(full.targets, full.groups)),
             items_of(full.groups, roles["val"]), items_of(full.groups, roles["test"])]
    try:
        check_every_class(full.targets, full.groups, parts, num_classes=full.num_classes, classes=full.classes)
    except ValueError as err:
        raise ValueError(f"{where}, design {design.to_dict()}: {err}") from None
    info.update(split="design", design=design.to_dict(), skipped_files=list(getattr(full, "skipped_files", [])))
    return Splits(*(full.subset(p) for p in parts), info)


def check_trainable(splits: Splits, *, where: str = "the data set") -> None:
    """Refuse splits a generator or classifier cannot learn from: one class, a split with fewer than
    two items, or a training split without some class (each error names the split and the counts)."""
    if splits.num_classes < 2:
        raise ValueError(f"{where} has {splits.num_classes} class ({splits.classes}): a class-conditional generator "
                         "and a classifier need at least two classes; add images of another class")
    for part in ("train", "val", "test"):
        ds = getattr(splits, part)
        if len(ds) < 2:
            raise ValueError(f"{where}: the {part} split holds {len(ds)} item(s) (train {len(splits.train)}, val "
                             f"{len(splits.val)}, test {len(splits.test)}); nothing can be learned or measured on "
                             "that. Add images (from more patients), or give that split a larger fraction.")
    counts = splits.train.class_counts()
    if (counts == 0).any():
        empty = [c for c, n in zip(splits.classes, counts.tolist()) if n == 0]
        raise ValueError(f"{where}: the train split has no item of class(es) {empty} (train counts "
                         f"{dict(zip(splits.classes, counts.tolist()))}); a generator cannot learn a class it never "
                         "sees. Add training images of that class, or use a larger train_fraction.")


def _record_groups(splits: Splits) -> None:
    assert_disjoint_groups(np.concatenate([splits.train.groups, splits.val.groups, splits.test.groups]),
                           *_consecutive(len(splits.train), len(splits.val), len(splits.test)))
    for part in ("train", "val", "test"):
        ds = getattr(splits, part)
        splits.info[f"{part}_items"] = len(ds)
        splits.info[f"{part}_groups"] = sorted(set(ds.groups.tolist()))


def _consecutive(*lengths: int) -> list[np.ndarray]:
    starts = np.cumsum([0, *lengths])
    return [np.arange(starts[i], starts[i + 1]) for i in range(len(lengths))]
