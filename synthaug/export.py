"""Generated images as files: PNGs in class folders (the ImageFolder layout), for tools that want files.

``export_image_folder(gen, out, n=1000)`` writes ``out/<class name>/<index>.png`` and ``out/export.json``
(what was exported, from which generator, and the list of files written). Folder names are the
generator's ``class_names`` (``class_<i>``, zero-padded, when it has none), so
``torchvision.datasets.ImageFolder(out)`` reads the export back with its classes. An existing folder
is never written into silently: a non-empty ``out`` needs ``overwrite=True``, which removes only the
files a previous export listed in its ``export.json`` and replaces same-named files; nothing else is
deleted.
"""
from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .checks import check_int
from .utils import atomic_write_text

MANIFEST = "export.json"
_BAD_CHARS = ("/", "\\", "\0")


def class_folder_names(gen: Any) -> list[str]:
    """The folder of each class id: its class name (made safe as one path component), else ``class_<i>``.

    Ids are zero-padded (``class_07``) so that ImageFolder's alphabetical numbering gives the label ids.
    """
    width = len(str(gen.num_classes - 1))
    names = getattr(gen, "class_names", None) or [f"class_{i:0{width}d}" for i in range(gen.num_classes)]
    folders = []
    for i, name in enumerate(names):
        folder = name.strip()
        for char in _BAD_CHARS:  # a name such as "A/B" must not become a sub-folder
            folder = folder.replace(char, "_")
        folders.append(folder if folder not in ("", ".", "..") else f"class_{i:0{width}d}")
    clashes = sorted({f for f in folders if folders.count(f) > 1})
    if clashes:
        raise ValueError(f"the class names {names} give the same folder name {clashes} to several classes; rename "
                         "the classes (gen.class_names = [...]) before exporting")
    return folders


def export_image_folder(gen: Any, out: str | os.PathLike, *, n: int, labels: torch.Tensor | None = None,
                        seed: int = 0, batch_size: int = 256, overwrite: bool = False, progress: bool = True,
                        source: str | None = None) -> dict[str, Any]:
    """Write ``n`` samples of ``gen`` as PNG files ``out/<class folder>/<index>.png``; returns the manifest.

    ``labels``: one class id per image (default: balanced, ``0, 1, ..., 0, 1, ...``). Images are drawn
    in batches of ``batch_size`` from ``torch.Generator().manual_seed(seed)``: the same seed and batch
    size give the same files. ``source`` (e.g. the checkpoint folder) is recorded in ``export.json``.
    """
    check_int(n, "n", "export", minimum=1)
    check_int(batch_size, "batch_size", "export", minimum=1, hint="images sampled at once, e.g. 256")
    labels = gen.check_labels(n, labels)  # before anything touches the disk
    folders = class_folder_names(gen)
    out = Path(out)
    _make_room(out, overwrite)
    width = len(str(n - 1))
    files = [f"{folders[label]}/{i:0{width}d}.png" for i, label in enumerate(labels.tolist())]
    counts = {folders[c]: int(k) for c, k in enumerate(np.bincount(labels.numpy(), minlength=gen.num_classes)) if k}
    from ._version import __version__

    manifest = {"format": 1, "generator": getattr(gen, "generator_name", "") or type(gen).__name__,
                "source": source, "n": n, "seed": seed, "batch_size": batch_size,
                "class_names": getattr(gen, "class_names", None), "class_folders": folders, "counts": counts,
                "synthaug_version": __version__, "complete": False, "files": files}
    # the file list goes first, so an export killed half-way is still cleaned up by the next overwrite
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1))
    for folder in counts:
        (out / folder).mkdir(exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    with tqdm(total=n, unit="img", desc=f"export {manifest['generator']}", disable=not progress,
              dynamic_ncols=True) as bar:
        for start in range(0, n, batch_size):
            chunk = labels[start:start + batch_size]
            images = gen.sample(len(chunk), chunk, generator=generator)
            for image, name in zip(images, files[start:start + batch_size]):
                _write_png(image, out / name)
            bar.update(len(chunk))
    manifest["complete"] = True
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1))
    return manifest


def _write_png(image: torch.Tensor, path: Path) -> None:
    from PIL import Image

    array = image.permute(1, 2, 0).numpy()
    Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(path, format="PNG")


def _make_room(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty ``out`` unless ``overwrite``; then remove only what a previous export wrote."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file; give a folder to export into")
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if not entries:
        return
    if not overwrite:
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise FileExistsError(f"--out {out} is not empty ({len(entries)} entries: {shown}); export into a new or "
                              "empty folder, or pass --overwrite (overwrite=True) to replace a previous export there "
                              "(only the files it listed in export.json and same-named files are replaced)")
    manifest = out / MANIFEST
    if not manifest.is_file():
        return
    try:
        files = json.loads(manifest.read_text())["files"]
        if not isinstance(files, list):
            raise TypeError("files is not a list")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{manifest} is not a readable export record ({err}); remove it, or export into another "
                         "folder") from err
    folders = set()
    for name in files:
        rel = PurePosixPath(str(name))
        # only <folder>/<file>.png inside out: a tampered record must not delete anything else
        if len(rel.parts) != 2 or rel.suffix != ".png" or ".." in rel.parts or rel.is_absolute():
            continue
        (out / rel).unlink(missing_ok=True)
        folders.add(out / rel.parts[0])
    for folder in folders:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    manifest.unlink()
