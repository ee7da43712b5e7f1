"""Any ImageFolder layout ``<folder>/<class>/<image>``: scan, decode (cached), group images into patients.

Groups come from a regex or a function of the file name, optionally merged by an alias table.
Without them every image is its own group, which is said loudly (``UngroupedWarning``): patient-level
splitting is what synthaug promises, and it needs to know the patients.
"""
from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..checks import did_you_mean
from .cache import cached_arrays, files_fingerprint
from .core import ImageArrayDataset
from .imageio import IMAGE_EXTENSIONS, BadImageError, decode_image, letterbox

_IGNORED_FILES = {"thumbs.db", ".ds_store", "desktop.ini"}

GroupFn = Callable[[str], str]


class UngroupedWarning(UserWarning):
    """A folder data set was split per image: no group pattern says which images share a patient."""


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


def decode_files(folder: Path, files: list[str], *, image_size: int, channels: int,
                 on_bad_file: str, desc: str) -> tuple[np.ndarray, list[int], list[str]]:
    """Letterboxed uint8 images of ``files``, the positions kept and the files skipped as unreadable."""
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


def load_image_folder(folder: Path, files: list[str], labels: list[int], classes: list[str],
                      group_of: Callable[[list[str]], list[str]], *, name: str, image_size: int, channels: int,
                      on_bad_file: str, cache: bool) -> ImageArrayDataset:
    """Decode (or read from the cache) the images of ``files``; groups are computed afresh every time
    with ``group_of`` (never cached), so a different grouping can never reuse stale patient ids."""
    options = {"name": name, "image_size": image_size, "channels": channels, "on_bad_file": on_bad_file}

    def build():
        images, kept, bad = decode_files(folder, files, image_size=image_size, channels=channels,
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


# --------------------------------------------------------------------------- groups
def check_group_fn(group_fn: GroupFn | str | None) -> None:
    """Refuse a group pattern that is no regex (before anything is scanned) or a ``group_fn`` of another type."""
    if isinstance(group_fn, str):
        try:
            re.compile(group_fn)
        except re.error as err:
            raise ValueError(f"group pattern {group_fn!r} is not a valid regular expression ({err}); e.g. "
                             r"'^(P\d+)_' takes 'P12' from 'P12_scan3.png'") from None
    elif group_fn is not None and not callable(group_fn):
        raise ValueError(f"group_fn={group_fn!r}: give a regex (its first group is the patient id of a file name) "
                         "or a function of the file name")


def apply_group_aliases(groups: list[str], aliases: Mapping[str, str] | None, *, raw: list[str] | None = None,
                        where: str = "the data set") -> list[str]:
    """``groups`` with every id that ``aliases`` names replaced by its group.

    ``aliases`` maps an id to the group it belongs to, e.g. two scans of one patient under two
    names: ``{"scanA-17": "patient17", "scanB-17": "patient17"}``. A key may be a group id or, for
    malaria, an id as written before ``_IMG_`` (``raw``). A key that names no id is an error: a
    typo there would silently leave one patient in two splits.
    """
    if not aliases:
        return groups
    raw = groups if raw is None else raw
    known = set(groups) | set(raw)
    unknown = sorted(str(k) for k in aliases if str(k) not in known)
    if unknown:
        raise ValueError(f"group_aliases: {unknown[:5]} name(s) no group of {where}"
                         f"{did_you_mean(unknown[0], sorted(known))}; its ids look like {sorted(known)[:3]}. "
                         "Fix or remove those entries.")
    table = {str(k): str(v) for k, v in aliases.items()}
    return [table.get(r, table.get(g, g)) for g, r in zip(groups, raw)]


def group_ids_from_pattern(pattern: str, names: list[str], *, folder: Path) -> list[str]:
    """The group of every file: the first group of ``pattern`` searched in its base name (or the whole match)."""
    compiled = re.compile(pattern)
    groups = []
    for f in names:
        m = compiled.search(os.path.basename(f))
        if m is None:
            raise ValueError(f"group pattern {pattern!r} does not match file {folder / f}; fix the pattern "
                             "or the file name")
        groups.append(m.group(1) if m.groups() else m.group(0))
    return groups


def _warn_ungrouped(folder: Path, n_files: int) -> None:
    warnings.warn(
        f"folder data set {folder}: no group pattern given, so every one of its {n_files} images is treated as its "
        "own patient. Images of one patient can then land in train and test, which inflates every score. Say which "
        "images share a patient: load_dataset(..., group_fn=r'^(P\\d+)_') in Python, --group-pattern REGEX on the "
        "command line or data.group_pattern in a config (a regex whose first group, searched in the file name, is "
        "the patient id). If every image really is a different patient, silence this with "
        "warnings.filterwarnings('ignore', category=synthaug.data.UngroupedWarning).",
        UngroupedWarning, stacklevel=5)  # -> folder_dataset -> _grouped_full -> load_dataset -> its caller


def _check_two_classes(folder: Path, classes: list[str], labels: list[int]) -> None:
    if len(classes) < 2:
        raise ValueError(f"folder data set {folder} has one class folder ({classes[0]!r}, {len(labels)} images): "
                         "synthaug trains class-conditional generators and classifiers, which need at least two "
                         f"classes. Add a folder per class, e.g. {folder}/<other class>/<images>.")


def folder_dataset(folder: Path, *, image_size: int, channels: int, group_fn: GroupFn | str | None,
                   aliases: Mapping[str, str] | None, on_bad_file: str, cache: bool) -> ImageArrayDataset:
    """All images of an ImageFolder layout with their groups (refused with one class; warned without groups)."""
    files, labels, classes = scan_class_folders(folder)
    _check_two_classes(folder, classes, labels)
    if group_fn is None and not aliases:
        _warn_ungrouped(folder, len(files))

    def group_of(names: list[str]) -> list[str]:
        if group_fn is None:
            groups = list(names)  # no groups given: every file is its own group
        elif isinstance(group_fn, str):
            groups = group_ids_from_pattern(group_fn, names, folder=folder)
        else:
            groups = [str(group_fn(os.path.basename(f))) for f in names]
        return apply_group_aliases(groups, aliases, where=str(folder))

    group_of(files)  # fail early on a file the grouping cannot place, before decoding
    return load_image_folder(folder, files, labels, classes, group_of, name=f"folder-{folder.name}",
                             image_size=image_size, channels=channels, on_bad_file=on_bad_file, cache=cache)
