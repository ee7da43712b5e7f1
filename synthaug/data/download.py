"""Download the official NIH malaria archive (for users who have a network)."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

MALARIA_URL = "https://data.lhncbc.nlm.nih.gov/public/Malaria/cell_images.zip"
MALARIA_CLASS_COUNTS = {"Parasitized": 13779, "Uninfected": 13779}


class DownloadError(RuntimeError):
    pass


def _fetch(url: str, dest: Path, *, timeout: float) -> None:
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except (urllib.error.URLError, OSError) as err:
        raise DownloadError(
            f"could not download {url}: {err}. This machine may have no network access. Download the "
            f"archive on a machine that has, unzip it into <root>/malaria-nih/ (so that "
            f"<root>/malaria-nih/cell_images/Parasitized exists) and point SYNTHAUG_DATA at <root>."
        ) from err
    total = int(response.headers.get("Content-Length") or 0) or None
    with response, open(dest, "wb") as out, tqdm(total=total, unit="B", unit_scale=True, desc="cell_images.zip") as bar:
        while chunk := response.read(1 << 20):
            out.write(chunk)
            bar.update(len(chunk))


def verify_malaria(folder: Path, manifest: Path | None = None) -> None:
    """Check class folders and counts; with an NIH manifest (file, ..., orig_sha256), every hash."""
    for cls, expected in MALARIA_CLASS_COUNTS.items():
        found = sum(1 for p in (folder / "cell_images" / cls).glob("*.png"))
        if found != expected:
            raise DownloadError(f"{folder / 'cell_images' / cls}: {found} PNG files, expected {expected}")
    if manifest is not None:
        import csv

        with open(manifest, newline="") as fh:
            for row in csv.DictReader(fh):
                path = folder / row["file"]
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                if digest != row["orig_sha256"]:
                    raise DownloadError(f"{path}: sha256 {digest} differs from the manifest's {row['orig_sha256']}")


def download_malaria(root: str | Path, *, url: str = MALARIA_URL, timeout: float = 30.0,
                     manifest: str | Path | None = None) -> Path:
    """Download and unpack the NIH archive into ``root/malaria-nih`` and verify it. Returns that folder."""
    target = Path(root).expanduser() / "malaria-nih"
    if (target / "cell_images").exists():
        raise DownloadError(f"{target / 'cell_images'} exists already; remove it first to download again")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".synthaug-download-", dir=target.parent) as tmp:
        archive = Path(tmp) / "cell_images.zip"
        _fetch(url, archive, timeout=timeout)
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(unpacked)
        if not (unpacked / "cell_images").is_dir():
            raise DownloadError(f"{url}: the archive has no cell_images/ folder")
        for junk in (unpacked / "cell_images").rglob("Thumbs.db"):
            junk.unlink()
        verify_malaria(unpacked, Path(manifest) if manifest else None)
        target.mkdir(exist_ok=True)
        os.replace(unpacked / "cell_images", target / "cell_images")
    shutil.rmtree(target / "__MACOSX", ignore_errors=True)
    return target
