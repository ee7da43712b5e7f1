"""The NIH malaria cells: the layout, patient ids from file names, the official mapping CSVs.

Cells are grouped by the ``C<n>P<m>`` slide/patient code of their id, so one patient imaged under two
microscopes (two ids) stays in one split.
"""
from __future__ import annotations

import ast
import csv
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

from .core import ImageArrayDataset
from .folders import apply_group_aliases, load_image_folder, scan_class_folders

MALARIA_CLASSES = ("Parasitized", "Uninfected")

# The slide / patient code at the start of an NIH malaria id: "C47P8" of "C47P8thin_Original_Motic".
# One letter may follow the slide number ("C37BP2_thinF", "C51AP12thinF"); P numbers are unique.
MALARIA_CODE = re.compile(r"^(C\d+[A-Z]?P\d+)")


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
    """The id of an NIH cell file name as NIH wrote it, the prefix before ``_IMG_`` (also the id of the
    mapping CSVs); ``malaria_group_id`` gives the patient it belongs to."""
    base = os.path.basename(file_name)
    if "_IMG_" not in base:
        raise ValueError(f"malaria file {file_name!r} has no patient id (no '_IMG_' in its name); the NIH names "
                         "look like C100P61ThinF_IMG_20150918_144104_cell_162.png. Rename or remove the file.")
    return base.split("_IMG_")[0]


def malaria_group_id(patient_id: str) -> str:
    """The group (patient) an NIH malaria id belongs to: its ``C<n>P<m>`` slide/patient code.

    The ids before ``_IMG_`` are not patients: ``C47P8thinOriginalOlympusCX21`` and
    ``C47P8thin_Original_Motic`` are one slide of one patient under two microscopes, and two ids
    would let that patient fall into two splits. Ids without such a code (``C1_thinF``,
    ``C201ThinF``, ``C3thin_original``, ...) are kept as they are: nothing says they share a patient.
    """
    match = MALARIA_CODE.match(patient_id)
    return match.group(1) if match else patient_id


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
    """Group ids of malaria files: the id in the name, checked against the NIH mapping, then its code."""
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
    # the mapping is checked on the ids as NIH wrote them; the split works on patients (codes)
    return [malaria_group_id(g) for g in groups]


def malaria_dataset(root: Path, *, image_size: int, channels: int, aliases: Mapping[str, str] | None,
                    on_bad_file: str, cache: bool) -> ImageArrayDataset:
    """All NIH cells under ``root`` with their patients (``C<n>P<m>`` codes, merged further by ``aliases``)."""
    folder = find_malaria_folder(root)
    files, labels, classes = scan_class_folders(folder)
    if tuple(classes) != MALARIA_CLASSES:
        raise ValueError(f"{folder}: expected exactly the class folders {MALARIA_CLASSES}, found {classes}")

    def group_of(names: list[str]) -> list[str]:
        return apply_group_aliases(_malaria_groups(folder, names), aliases,
                                   raw=[malaria_patient_id(f) for f in names], where=str(folder))

    group_of(files)  # fail early on a file without a patient id or a wrong alias, before decoding
    return load_image_folder(folder, files, labels, classes, group_of, name="malaria", image_size=image_size,
                             channels=channels, on_bad_file=on_bad_file, cache=cache)
