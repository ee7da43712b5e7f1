"""On-disk cache of decoded images, keyed by the source files and the decoding options.

The key is a hash of every source file's relative path, size and modification time plus the
options (image size, channels, ...): cheap to compute (no image is read), and any change to the
files or options gives a new entry. Entries are written to a temporary folder and renamed, so an
interrupted build never leaves a half-written entry.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

CACHE_FORMAT = 1


def cache_root() -> Path:
    """``$SYNTHAUG_CACHE``, else ``~/.cache/synthaug``."""
    env = os.environ.get("SYNTHAUG_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "synthaug"


def files_fingerprint(base: Path, relpaths: list[str], options: dict[str, Any]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": CACHE_FORMAT, **options}, sort_keys=True).encode())
    for rel in relpaths:
        st = os.stat(base / rel)
        digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def cached_arrays(
    name: str,
    key: str,
    build: Callable[[], tuple[np.ndarray, dict[str, Any]]],
    *,
    enabled: bool = True,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Return ``(images, meta)`` from the cache entry ``name-key``, building it on a miss.

    ``images`` is memory-mapped read-only on a hit. ``meta`` must be JSON-serialisable.
    """
    if not enabled:
        return build()
    entry = cache_root() / f"{name}-{key}"
    if (entry / "meta.json").is_file() and (entry / "images.npy").is_file():
        try:
            meta = json.loads((entry / "meta.json").read_text())
            return np.load(entry / "images.npy", mmap_mode="r"), meta
        except (OSError, ValueError):
            shutil.rmtree(entry, ignore_errors=True)  # a damaged entry: rebuild it
    images, meta = build()
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=entry.parent))
        np.save(tmp / "images.npy", images)
        (tmp / "meta.json").write_text(json.dumps(meta))
        from ..utils import make_public

        make_public(tmp)
        if entry.exists() and not ((entry / "meta.json").is_file() and (entry / "images.npy").is_file()):
            shutil.rmtree(entry, ignore_errors=True)  # an incomplete entry (e.g. a file deleted by hand)
        try:
            os.replace(tmp, entry)
        except OSError:  # another process finished the same entry first
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as err:
        import warnings

        warnings.warn(f"could not write the image cache under {entry.parent} ({err}); set SYNTHAUG_CACHE "
                      "to a writable folder to make the next load fast", stacklevel=2)
    return images, meta
