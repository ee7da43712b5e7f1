"""Loaders for the supported data sets and the one entry point, ``load_dataset``."""
from __future__ import annotations

import ast
import csv
import difflib
import os
import re
import warnings
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .cache import cached_arrays, files_fingerprint
from .core import ImageArrayDataset, Splits
from .imageio import IMAGE_EXTENSIONS, BadImageError, convert_channels, decode_image, letterbox, resize_batch
from .splits import check_split, assert_disjoint_groups, split_by_group, subsample_groups

MALARIA_CLASSES = ("Parasitized", "Uninfected")
_IGNORED_FILES = {"thumbs.db", ".ds_store", "desktop.ini"}

GroupFn = Callable[[str], str]


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


# --------------------------------------------------------------------------- folders of images
def scan_class_folders(folder: Path) -> tuple[list[str], list[int], list[str]]:
    """Files (relative to ``folder``) and labels of an ImageFolder layout ``folder/<class>/<image>``."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} does not exist or is not a folder")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"{folder} has no class sub-folders: expected {folder}/<class name>/<image files>")
    files, labels, ignored = [], [], []
    for label, cls in enumerate(classes):
        found = 0
        for path in sorted((folder / cls).rglob("*")):
            if not path.is_file() or path.name.lower() in _IGNORED_FILES or path.name.startswith("."):
                continue
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                ignored.append(str(path))
                continue
            files.append(str(path.relative_to(folder)))
            labels.append(label)
            found += 1
        if found == 0:
            raise ValueError(f"class folder {folder / cls} holds no image files ({', '.join(IMAGE_EXTENSIONS)}); "
                             "remove the folder or add its images")
    if ignored:
        warnings.warn(f"ignored {len(ignored)} file(s) under {folder} that are not images by their extension, "
                      f"e.g. {ignored[:3]}", stacklevel=3)
    return files, labels, classes


def _decode_files(folder: Path, files: list[str], *, image_size: int, channels: int,
                  on_bad_file: str, desc: str) -> tuple[np.ndarray, list[int], list[str]]:
    images = np.zeros((len(files), channels, image_size, image_size), dtype=np.uint8)
    kept, bad = [], []
    for i, rel in enumerate(tqdm(files, desc=desc, unit="img", mininterval=1.0, disable=None)):
        try:
            images[len(kept)] = letterbox(decode_image(folder / rel, channels=channels), image_size)
        except BadImageError as err:
            if on_bad_file == "error":
                raise BadImageError(f"{err} Or pass on_bad_file='skip' to leave bad files out.") from err
            bad.append(rel)
            continue
        kept.append(i)
    if bad:
        warnings.warn(f"on_bad_file='skip': left out {len(bad)} unreadable file(s) under {folder}: {bad[:5]}"
                      + (" ..." if len(bad) > 5 else ""), stacklevel=3)
    return images[: len(kept)], kept, bad


def _load_folder(folder: Path, files: list[str], labels: list[int], classes: list[str],
                 group_of: Callable[[list[str]], list[str]], *, name: str, image_size: int, channels: int,
                 on_bad_file: str, cache: bool) -> ImageArrayDataset:
    """Decode (or read from the cache) the images of ``files``; groups are computed afresh every time
    with ``group_of`` (never cached), so a different grouping can never reuse stale patient ids."""
    options = {"name": name, "image_size": image_size, "channels": channels, "on_bad_file": on_bad_file}

    def build():
        images, kept, bad = _decode_files(folder, files, image_size=image_size, channels=channels,
                                          on_bad_file=on_bad_file, desc=f"decoding {name} ({image_size}px)")
        meta = {"files": [files[i] for i in kept], "targets": [labels[i] for i in kept], "classes": classes,
                "skipped": bad}
        return images, meta

    key = files_fingerprint(folder, files, options)
    images, meta = cached_arrays(re.sub(r"[^A-Za-z0-9_.-]", "_", name), key, build, enabled=cache)
    if meta.get("skipped"):
        skipped = meta["skipped"]
        warnings.warn(f"on_bad_file='skip': {len(skipped)} unreadable file(s) under {folder} are left out: "
                      f"{skipped[:5]}" + (" ..." if len(skipped) > 5 else ""), stacklevel=3)
    kept_files = list(meta["files"])
    dataset = ImageArrayDataset(images, np.array(meta["targets"]), np.array(group_of(kept_files)), classes,
                                files=np.array(kept_files))
    dataset.skipped_files = list(meta.get("skipped", []))
    return dataset


def _check_on_bad_file(on_bad_file: str) -> None:
    if on_bad_file not in ("error", "skip"):
        raise ValueError(f"on_bad_file={on_bad_file!r}: use 'error' (stop on the first bad file) or 'skip'")


# --------------------------------------------------------------------------- malaria
def find_malaria_folder(root: Path) -> Path:
    """The folder that holds ``Parasitized/`` and ``Uninfected/`` under ``root``."""
    candidates = [root / "malaria-nih" / "cell_images", root / "malaria" / "cell_images", root / "cell_images", root]
    for c in candidates:
        if all((c / cls).is_dir() for cls in MALARIA_CLASSES):
            return c
    raise FileNotFoundError(
        f"no NIH malaria data under {root}: looked for Parasitized/ and Uninfected/ in "
        f"{', '.join(str(c) for c in candidates)}. Run `synthaug data download malaria --root {root}` on a "
        "machine with a network, or point root / SYNTHAUG_DATA at the folder that holds malaria-nih/."
    )


def malaria_patient_id(file_name: str) -> str:
    """The patient (slide donor) id of an NIH cell file name: the prefix before ``_IMG_``."""
    base = os.path.basename(file_name)
    if "_IMG_" not in base:
        raise ValueError(f"malaria file {file_name!r} has no patient id (no '_IMG_' in its name); the NIH names "
                         "look like C100P61ThinF_IMG_20150918_144104_cell_162.png. Rename or remove the file.")
    return base.split("_IMG_")[0]


def read_malaria_mapping(mapping_dir: Path) -> dict[str, str]:
    """file name -> patient id from the official NIH mapping CSVs (headerless; id, then a list literal)."""
    mapping: dict[str, str] = {}
    for csv_path in sorted(mapping_dir.glob("patientid_cellmapping_*.csv")):
        with open(csv_path, newline="") as fh:
            for line_no, row in enumerate(csv.reader(fh), 1):
                if not row or not row[0].strip():
                    continue
                literal = ",".join(row[1:]).strip().rstrip(",").strip()
                try:
                    names = ast.literal_eval(literal) if literal else []
                except (ValueError, SyntaxError) as err:
                    raise ValueError(f"{csv_path}:{line_no}: cannot read the file list of patient {row[0]!r}: {err}") from err
                for fname in [names] if isinstance(names, str) else names:
                    mapping[str(fname)] = row[0].strip()
    return mapping


def _malaria_groups(folder: Path, files: list[str]) -> list[str]:
    groups = [malaria_patient_id(f) for f in files]
    mapping_dir = folder.parent / "patient_mapping"
    if mapping_dir.is_dir():
        mapping = read_malaria_mapping(mapping_dir)
        if mapping:
            wrong = [(f, g, mapping[os.path.basename(f)]) for f, g in zip(files, groups)
                     if os.path.basename(f) in mapping and mapping[os.path.basename(f)] != g]
            if wrong:
                raise ValueError(f"patient ids from file names disagree with {mapping_dir} for {len(wrong)} file(s), "
                                 f"e.g. {wrong[:3]} (file, from name, from mapping)")
            unmapped = sum(1 for f in files if os.path.basename(f) not in mapping)
            if unmapped:
                warnings.warn(f"{unmapped} malaria file(s) are not in the NIH mapping CSVs of {mapping_dir}; "
                              "their patient id comes from the file name alone", stacklevel=3)
    return groups


def _malaria_full(root: Path, *, image_size: int, on_bad_file: str, cache: bool) -> ImageArrayDataset:
    folder = find_malaria_folder(root)
    files, labels, classes = scan_class_folders(folder)
    if tuple(classes) != MALARIA_CLASSES:
        raise ValueError(f"{folder}: expected exactly the class folders {MALARIA_CLASSES}, found {classes}")
    _malaria_groups(folder, files)  # fail early on a file without a patient id, before decoding
    return _load_folder(folder, files, labels, classes, lambda kept: _malaria_groups(folder, kept), name="malaria",
                        image_size=image_size, channels=3, on_bad_file=on_bad_file, cache=cache)


# --------------------------------------------------------------------------- any ImageFolder
def _folder_full(folder: Path, *, image_size: int, channels: int, group_fn: GroupFn | str | None,
                 on_bad_file: str, cache: bool) -> ImageArrayDataset:
    files, labels, classes = scan_class_folders(folder)

    def group_of(names: list[str]) -> list[str]:
        if group_fn is None:
            return list(names)  # no groups given: every file is its own group
        if isinstance(group_fn, str):
            pattern = re.compile(group_fn)
            groups = []
            for f in names:
                m = pattern.search(os.path.basename(f))
                if m is None:
                    raise ValueError(f"group pattern {group_fn!r} does not match file {folder / f}; fix the pattern "
                                     "or the file name")
                groups.append(m.group(1) if m.groups() else m.group(0))
            return groups
        return [str(group_fn(os.path.basename(f))) for f in names]

    group_of(files)  # fail early on a file the grouping cannot place, before decoding
    return _load_folder(folder, files, labels, classes, group_of, name=f"folder-{folder.name}",
                        image_size=image_size, channels=channels, on_bad_file=on_bad_file, cache=cache)


# --------------------------------------------------------------------------- medmnist
def _medmnist_splits(flag: str, root: str | os.PathLike | None, *, image_size: int, download: bool) -> dict[str, ImageArrayDataset]:
    import medmnist  # slow import: only when asked for
    from medmnist import INFO

    flag = flag.lower()
    if flag not in INFO:
        close = difflib.get_close_matches(flag, list(INFO), n=3)
        raise ValueError(f"unknown MedMNIST flag {flag!r}" + (f"; did you mean {close}?" if close else f"; known: {sorted(INFO)}"))
    info = INFO[flag]
    if info["task"].startswith("multi-label"):
        raise ValueError(f"medmnist:{flag} is multi-label ({info['task']}); synthaug handles single-label "
                         "classification only for now")
    base = resolve_data_root(root) if (root is not None or os.environ.get("SYNTHAUG_DATA")) else None
    candidates = [] if base is None else [base / "medmnist", base]
    npz_dir = next((c for c in candidates if (c / f"{flag}.npz").is_file()), None)
    if npz_dir is None:
        if not download:
            where = ", ".join(str(c / f"{flag}.npz") for c in candidates) or "(no data root given)"
            raise FileNotFoundError(f"medmnist:{flag}: no {flag}.npz at {where}. Put the file there, or pass "
                                    "download=True on a machine with a network.")
        npz_dir = candidates[0] if candidates else Path.home() / ".medmnist"
        npz_dir.mkdir(parents=True, exist_ok=True)
    npz_path = npz_dir / f"{flag}.npz"
    if npz_path.is_file():
        _check_medmnist_npz(npz_path)
    cls = getattr(medmnist, info["python_class"])
    classes = [info["label"][str(i)] for i in range(len(info["label"]))]
    out = {}
    for split in ("train", "val", "test"):
        try:
            ds = cls(split=split, root=str(npz_dir), download=download and split == "train")
        except RuntimeError as err:
            raise FileNotFoundError(f"medmnist:{flag}: could not get {npz_path}: {err}") from err
        imgs = np.asarray(ds.imgs)
        labels = np.asarray(ds.labels).reshape(len(imgs), -1)
        if labels.shape[1] != 1:
            raise ValueError(f"{npz_path}: {split}_labels has shape {ds.labels.shape}; expected (N,) or (N, 1)")
        arr = imgs[:, None] if imgs.ndim == 3 else imgs.transpose(0, 3, 1, 2)
        tensor = resize_batch(torch.from_numpy(np.ascontiguousarray(arr, dtype=np.uint8)), image_size)
        out[split] = ImageArrayDataset(tensor.numpy(), labels[:, 0].astype(np.int64),
                                       np.array([f"{split}-{i}" for i in range(len(imgs))]), classes)
    return out


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
def load_dataset(
    name_or_path: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    image_size: int = 32,
    seed: int = 0,
    train_fraction: float = 1.0,
    split: Sequence[float] = (0.7, 0.1, 0.2),
    group_fn: GroupFn | str | None = None,
    channels: int = 3,
    on_bad_file: str = "error",
    download: bool = False,
    cache: bool = True,
) -> Splits:
    """Load a data set and split it **by group** (patient) into train / val / test.

    ``name_or_path``: ``"malaria"`` (the NIH layout under ``root`` or ``$SYNTHAUG_DATA``),
    ``"medmnist:<flag>"`` (official splits, from ``<root>/medmnist/<flag>.npz``), or a path to an
    ImageFolder layout ``<path>/<class>/<image>`` with ``group_fn`` (a regex whose first group, or a
    function of the file name, gives the group id; default: each file its own group).

    Images are uint8 ``C x image_size x image_size``: aspect-preserving resize, black padding.
    ``train_fraction`` keeps a seeded fraction of the *training groups*; val and test are never
    reduced. No group ever appears in two splits (checked, ``LeakageError`` otherwise).
    """
    if not isinstance(image_size, int) or isinstance(image_size, bool) or not (8 <= image_size <= 1024):
        raise ValueError(f"image_size={image_size!r}: must be an integer from 8 to 1024 (e.g. 32 or 64)")
    if channels not in (1, 3):
        raise ValueError(f"channels={channels!r}: must be 1 (grayscale) or 3 (RGB)")
    if not isinstance(train_fraction, (int, float)) or isinstance(train_fraction, bool) or not (0 < train_fraction <= 1):
        raise ValueError(f"train_fraction={train_fraction!r}: must be in (0, 1] (a fraction of the training patients)")
    _check_on_bad_file(on_bad_file)
    fractions = check_split(split)
    name = str(name_or_path)
    info: dict[str, Any] = {"name": name, "image_size": image_size, "seed": seed,
                            "train_fraction": train_fraction, "split": list(fractions)}

    if name.lower().startswith("medmnist:"):
        if tuple(fractions) != (0.7, 0.1, 0.2):
            raise ValueError(f"split={tuple(split)!r}: MedMNIST comes with official train/val/test splits, which "
                             "synthaug uses; leave split at its default for medmnist:<flag>")
        # grayscale MedMNIST stays 1 channel whatever `channels` says: the data decide
        parts = _medmnist_splits(name.split(":", 1)[1], root, image_size=image_size, download=download)
        train = parts["train"]
        kept = subsample_groups(np.arange(len(train)), train.targets, train.groups, fraction=train_fraction, seed=seed)
        splits = Splits(train.subset(kept), parts["val"], parts["test"], info)
        info["split"] = "official"
    else:
        if name.lower() == "malaria":
            full = _malaria_full(resolve_data_root(root), image_size=image_size, on_bad_file=on_bad_file, cache=cache)
        else:
            folder = Path(name).expanduser()
            if not folder.is_dir():
                known = ["malaria", "medmnist:<flag>"]
                close = difflib.get_close_matches(name.lower(), known, n=1)
                raise FileNotFoundError(f"data set {name!r} is neither a known name ({', '.join(known)})"
                                        + (f" (did you mean {close[0]!r}?)" if close else "")
                                        + " nor an existing folder of class sub-folders")
            full = _folder_full(folder, image_size=image_size, channels=channels, group_fn=group_fn,
                                on_bad_file=on_bad_file, cache=cache)
        train_idx, val_idx, test_idx = split_by_group(full.targets, full.groups, split=fractions, seed=seed,
                                                      num_classes=full.num_classes)
        kept = subsample_groups(train_idx, full.targets, full.groups, fraction=train_fraction, seed=seed)
        splits = Splits(full.subset(kept), full.subset(val_idx), full.subset(test_idx), info)
        info["skipped_files"] = list(getattr(full, "skipped_files", []))

    assert_disjoint_groups(np.concatenate([splits.train.groups, splits.val.groups, splits.test.groups]),
                           *_consecutive(len(splits.train), len(splits.val), len(splits.test)))
    for part in ("train", "val", "test"):
        ds = getattr(splits, part)
        info[f"{part}_items"] = len(ds)
        info[f"{part}_groups"] = sorted(set(ds.groups.tolist()))
    return splits


def _consecutive(*lengths: int) -> list[np.ndarray]:
    starts = np.cumsum([0, *lengths])
    return [np.arange(starts[i], starts[i + 1]) for i in range(len(lengths))]
