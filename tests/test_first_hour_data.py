"""A user's first hour with folder data sets (issue 15) and the malaria patients (issue 12, item 7).

Folder data sets are split per image unless a group pattern is given: that must be said loudly and
be fixable from the command line; a folder has a short name; a report can tell images from patients;
grayscale folders stay one channel; a data set no generator can learn from is refused before one
trains. Malaria cells are grouped by their ``C<n>P<m>`` slide/patient code.
"""
from __future__ import annotations

import csv
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import synthaug
from synthaug.cli import main
from synthaug.data import (
    ImageArrayDataset,
    Splits,
    UngroupedWarning,
    check_trainable,
    dataset_short_name,
    malaria_group_id,
    malaria_patient_id,
)

PARTS = ("train", "val", "test")
PATIENT = r"^(P\d+)_"


@pytest.fixture(autouse=True)
def _own_cache(request, tmp_path, monkeypatch):
    """Throw-away folders get a throw-away image cache; the real data keep the user's (decoding takes ~25 s)."""
    if not {"data_root", "malaria32", "breastmnist28"} & set(request.fixturenames):
        monkeypatch.setenv("SYNTHAUG_CACHE", str(tmp_path / "cache"))


def make_folder(root: Path, *, classes=("a", "b"), patients: int = 8, per_patient: int = 2, mode: str = "RGB") -> Path:
    """``root/<class>/P<p>_<k>.png``: every patient has ``per_patient`` small images in every class."""
    rng = np.random.default_rng(0)
    shape = (12, 10) if mode == "L" else (12, 10, 3)
    for cls in classes:
        (root / cls).mkdir(parents=True)
        for p in range(patients):
            for k in range(per_patient):
                Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(root / cls / f"P{p}_{k}.png")
    return root


def groups_of(splits) -> dict[str, set[str]]:
    return {part: set(getattr(splits, part).groups.tolist()) for part in PARTS}


def tiny_config(tmp_path: Path, data: Path, **data_options) -> Path:
    options = ", ".join(f"{k}: {json.dumps(v)}" for k, v in {"name": str(data), "image_size": 16,
                                                              "split": [0.5, 0.25, 0.25], **data_options}.items())
    cfg = tmp_path / "g.yaml"
    cfg.write_text(f"data: {{{options}}}\n"
                   "generator: {name: cvae-tiny, train: {steps: 2, batch_size: 4, sample_every: 0, "
                   "checkpoint_every: 0}}\n")
    return cfg


# --------------------------------------------------------------------------- 1. no silent per-image split
def test_folder_without_group_pattern_warns_loudly(tmp_path):
    root = make_folder(tmp_path / "DIB")
    with pytest.warns(UserWarning) as record:
        synthaug.load_dataset(root, image_size=8, split=(0.5, 0.25, 0.25))
    (warning,) = [w for w in record if issubclass(w.category, UngroupedWarning)]
    text = str(warning.message)
    assert str(root) in text and "its own patient" in text
    assert "group_pattern" in text and "--group-pattern" in text and "group_fn" in text
    assert warning.filename == __file__  # points at the user's call, not into synthaug


def test_folder_with_group_pattern_or_aliases_does_not_warn(tmp_path):
    root = make_folder(tmp_path / "DIB")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UngroupedWarning)
        s = synthaug.load_dataset(root, image_size=8, split=(0.5, 0.25, 0.25), group_fn=PATIENT)
    assert set().union(*groups_of(s).values()) == {f"P{p}" for p in range(8)}


def test_cli_data_info_takes_a_group_pattern(tmp_path, capsys):
    root = make_folder(tmp_path / "DIB")
    with pytest.warns(UngroupedWarning):
        assert main(["data", "info", str(root), "--image-size", "8"]) == 0
    per_image = capsys.readouterr().out
    assert "split by image" in per_image and "patients" not in per_image.split("\n", 1)[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UngroupedWarning)
        assert main(["data", "info", str(root), "--image-size", "8", "--group-pattern", PATIENT]) == 0
    out = capsys.readouterr().out
    assert out.startswith("DIB: ") and "split by patient" in out
    assert re.search(r"train +\d+ images of +\d+ patients", out)
    with pytest.raises(SystemExit) as usage:  # a usage error, refused by argparse
        main(["data", "info", str(root), "--group-pattern", "^(P\\d+_"])
    assert usage.value.code == 2 and "not a valid regular expression" in capsys.readouterr().err


def test_cli_train_takes_a_group_pattern(tmp_path, capsys):
    root = make_folder(tmp_path / "DIB")
    cfg = tiny_config(tmp_path, root)
    out = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UngroupedWarning)
        assert main(["train", "--config", str(cfg), "--group-pattern", PATIENT, "--out", str(out)]) == 0
    options = json.loads((out / "training_options.json").read_text())
    assert options["config"]["data"]["group_pattern"] == PATIENT
    train, test = set(options["splits"]["train_groups"]), set(options["splits"]["test_groups"])
    assert train and train <= {f"P{p}" for p in range(8)} and not train & test
    assert "training cvae-tiny on the training patients only" in capsys.readouterr().out


def test_cli_train_default_folder_is_named_by_the_short_name(tmp_path, capsys):
    root = make_folder(tmp_path / "DIB")
    cfg = tiny_config(tmp_path, root, group_pattern=PATIENT)
    assert main(["train", "--config", str(cfg), "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["out_dir"] == "runs/cvae-tiny-DIB-seed0"


class _Loaded(Exception):
    """Raised by a stand-in load_dataset: the command got as far as loading the data."""


def _capture_load(monkeypatch) -> dict:
    import synthaug.data

    seen: dict = {}

    def fake(name, **kwargs):
        seen.update(kwargs, name=name)
        raise _Loaded

    monkeypatch.setattr(synthaug.data, "load_dataset", fake)
    return seen


@pytest.mark.parametrize("command", ["evaluate", "explore"])
def test_cli_evaluate_and_explore_take_a_group_pattern(tmp_path, monkeypatch, command):
    gen = synthaug.create_generator("cvae-tiny", num_classes=2, image_size=16, channels=1)
    gen.save(tmp_path / "ckpt")
    seen = _capture_load(monkeypatch)
    extra = ["--out", str(tmp_path / "q")] if command == "evaluate" else []
    with pytest.raises(_Loaded):
        main([command, "--checkpoint", str(tmp_path / "ckpt"), "--data", str(tmp_path / "DIB"),
              "--group-pattern", PATIENT, *extra])
    assert seen["group_fn"] == PATIENT
    assert seen["channels"] == 1  # the data as the generator saw them


# --------------------------------------------------------------------------- 2. short names, images or patients
@pytest.mark.parametrize(("name", "short"), [
    ("/tmp/x/DIB", "DIB"), ("/tmp/x/DIB/", "DIB"), ("malaria", "malaria"),
    ("medmnist:BreastMNIST", "medmnist-breastmnist"), ("/data/my cells (v2)", "my-cells-v2"),
])
def test_dataset_short_name(name, short):
    assert dataset_short_name(name) == short


def test_folder_splits_say_images_without_groups_and_patients_with_them(tmp_path):
    root = make_folder(tmp_path / "DIB")
    with pytest.warns(UngroupedWarning):
        per_image = synthaug.load_dataset(root, image_size=8, split=(0.5, 0.25, 0.25))
    assert per_image.name == "DIB" and per_image.info["short_name"] == "DIB"
    assert per_image.grouped is False and per_image.group_kind == "images"
    assert per_image.info["grouped"] is False
    assert "patients" not in per_image.summary() and f"{len(per_image.train)} images" in per_image.summary()
    by_patient = synthaug.load_dataset(root, image_size=8, split=(0.5, 0.25, 0.25), group_fn=PATIENT)
    assert by_patient.grouped is True and by_patient.group_kind == "patients"
    n = len(groups_of(by_patient)["train"])
    assert f"{len(by_patient.train)} images of {n:4d} patients" in by_patient.summary()


def test_malaria_and_medmnist_group_kinds(malaria32, breastmnist28):
    assert malaria32.grouped and malaria32.group_kind == "patients" and malaria32.name == "malaria"
    assert not breastmnist28.grouped and breastmnist28.group_kind == "images"
    assert breastmnist28.name == "medmnist-breastmnist"


# --------------------------------------------------------------------------- 3. grayscale folders stay one channel
def test_cli_data_info_keeps_a_grayscale_folder_one_channel(tmp_path, capsys):
    root = make_folder(tmp_path / "grey", mode="L")
    assert main(["data", "info", str(root), "--image-size", "16", "--group-pattern", PATIENT, "--channels", "1"]) == 0
    assert "1 x 16 x 16" in capsys.readouterr().out
    assert main(["data", "info", str(root), "--image-size", "16", "--group-pattern", PATIENT]) == 0
    assert "3 x 16 x 16" in capsys.readouterr().out  # the default stays RGB


def test_cli_train_keeps_a_grayscale_folder_one_channel(tmp_path):
    root = make_folder(tmp_path / "grey", mode="L")
    cfg = tiny_config(tmp_path, root, group_pattern=PATIENT)
    assert main(["train", "--config", str(cfg), "--channels", "1", "--out", str(tmp_path / "run")]) == 0
    gen = synthaug.load_generator(tmp_path / "run" / "checkpoint")
    assert gen.channels == 1


# --------------------------------------------------------------------------- 4. refused before a generator trains
def test_one_class_folder_is_refused(tmp_path):
    root = make_folder(tmp_path / "only", classes=("cells",))
    with pytest.raises(ValueError, match=r"one class folder \('cells', 16 images\)") as err:
        synthaug.load_dataset(root, image_size=8, group_fn=PATIENT)
    assert str(root) in str(err.value) and "Add a folder per class" in str(err.value)


def test_cli_train_refuses_a_one_class_folder_before_training(tmp_path, capsys):
    root = make_folder(tmp_path / "only", classes=("cells",))
    cfg = tiny_config(tmp_path, root, group_pattern=PATIENT)
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 1
    assert "one class folder" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_class_missing_from_a_split_is_refused_with_counts(tmp_path):
    root = make_folder(tmp_path / "DIB", classes=("a", "b"), patients=8)
    make_folder(tmp_path / "DIB", classes=("rare",), patients=2)  # 2 patients cannot fill 3 splits
    with pytest.raises(ValueError) as err:
        synthaug.load_dataset(root, image_size=8, group_fn=PATIENT, split=(0.5, 0.25, 0.25))
    text = str(err.value)
    assert text.startswith(f"folder data set {root}: the val split has no item of class 'rare'")
    assert "train 2 group(s) / 4 item(s), val 0 group(s) / 0 item(s), test 0 group(s) / 0 item(s)" in text
    assert "add images" in text


def _hand_splits(train_targets, val_targets, test_targets, classes=("a", "b")) -> Splits:
    def part(targets, prefix):
        n = len(targets)
        return ImageArrayDataset(np.zeros((n, 1, 8, 8), np.uint8), np.array(targets, dtype=np.int64),
                                 np.array([f"{prefix}{i}" for i in range(n)]), list(classes))

    return Splits(part(train_targets, "t"), part(val_targets, "v"), part(test_targets, "s"))


def test_check_trainable_refuses_tiny_splits_and_missing_training_classes():
    check_trainable(_hand_splits([0, 1], [0, 1], [0, 1]))  # no error
    with pytest.raises(ValueError, match=r"mydata: the val split holds 1 item\(s\) \(train 2, val 1, test 2\)"):
        check_trainable(_hand_splits([0, 1], [0], [0, 1]), where="mydata")
    with pytest.raises(ValueError, match=r"the train split has no item of class\(es\) \['b'\]"):
        check_trainable(_hand_splits([0, 0], [0, 1], [0, 1]))
    with pytest.raises(ValueError, match="at least two classes"):
        check_trainable(_hand_splits([0, 0], [0, 0], [0, 0], classes=("a",)))


# --------------------------------------------------------------------------- 5. malaria patients and group aliases
def manifest_ids(malaria_dir: Path) -> set[str]:
    with open(malaria_dir / "manifest.csv", newline="") as fh:
        return {row["patient_id"] for row in csv.DictReader(fh)}


def test_malaria_ids_map_to_patient_codes(malaria_dir):
    ids = manifest_ids(malaria_dir)
    assert len(ids) == 201
    groups: dict[str, list[str]] = {}
    for patient_id in ids:
        groups.setdefault(malaria_group_id(patient_id), []).append(patient_id)
    assert len(groups) == 200
    assert sorted(groups["C47P8"]) == ["C47P8thinOriginalOlympusCX21", "C47P8thin_Original_Motic"]
    assert all(len(v) == 1 for k, v in groups.items() if k != "C47P8")
    for patient_id in ids:
        code = re.match(r"C\d+[A-Z]?P\d+", patient_id)
        # an id with a slide/patient code maps to it, any other id (C1_thinF, C201ThinF, ...) stays as it is
        assert malaria_group_id(patient_id) == (code.group(0) if code else patient_id)
    assert malaria_group_id("C37BP2_thinF") == "C37BP2" and malaria_group_id("C3thin_original") == "C3thin_original"
    assert malaria_group_id("C173P134NThinF") == "C173P134" and malaria_group_id("C12NThinF") == "C12NThinF"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_malaria_patient_code_lands_in_one_split(data_root, malaria_dir, seed):
    splits = synthaug.load_dataset("malaria", root=data_root, image_size=32, seed=seed)
    where: dict[str, set[str]] = {}
    for part in PARTS:
        ds = getattr(splits, part)
        for f in set(ds.files.tolist()):
            patient_id = malaria_patient_id(f)
            code = re.match(r"C\d+[A-Z]?P\d+", patient_id)
            where.setdefault(code.group(0) if code else patient_id, set()).add(part)
    assert len(where) == 200
    spread = {code: parts for code, parts in where.items() if len(parts) > 1}
    assert not spread, f"seed {seed}: patients in two splits: {spread}"
    assert sum(len(getattr(splits, p)) for p in PARTS) == 27558


def test_malaria_group_aliases_merge_ids(data_root, malaria_dir):
    aliases = {"C3thin_original": "C3-4", "C4thin_original": "C3-4"}  # two ids given as one patient
    splits = synthaug.load_dataset("malaria", root=data_root, image_size=32, seed=0, group_aliases=aliases)
    parts = [p for p, g in groups_of(splits).items() if "C3-4" in g]
    assert len(parts) == 1
    assert not any("C3thin_original" in g or "C4thin_original" in g for g in groups_of(splits).values())
    with pytest.raises(ValueError, match=r"group_aliases: \['C3thin_orignal'\].*did you mean 'C3thin_original'"):
        synthaug.load_dataset("malaria", root=data_root, image_size=32, group_aliases={"C3thin_orignal": "x"})


def test_folder_group_aliases_merge_ids(tmp_path):
    root = make_folder(tmp_path / "DIB")
    aliases = {"P0": "same", "P1": "same"}  # one patient scanned under two names
    s = synthaug.load_dataset(root, image_size=8, split=(0.5, 0.25, 0.25), group_fn=PATIENT, group_aliases=aliases)
    groups = set().union(*groups_of(s).values())
    assert "same" in groups and not {"P0", "P1"} & groups and len(groups) == 7
    with pytest.raises(ValueError, match=r"group_aliases: \['P9'\]"):
        synthaug.load_dataset(root, image_size=8, group_fn=PATIENT, group_aliases={"P9": "x"})
    with pytest.raises(ValueError, match="group_aliases="):
        synthaug.load_dataset(root, image_size=8, group_fn=PATIENT, group_aliases=["P0", "P1"])


def make_fake_malaria(root: Path, ids: list[str], mapping: dict[str, str] | None = None) -> Path:
    """A tiny NIH layout: every id has 2 cells of each class; ``mapping`` (file -> id) written as NIH CSVs."""
    cells = root / "malaria-nih" / "cell_images"
    rng = np.random.default_rng(0)
    per_class: dict[str, dict[str, list[str]]] = {}
    for cls in ("Parasitized", "Uninfected"):
        (cells / cls).mkdir(parents=True)
        for patient_id in ids:
            for k in range(2):
                name = f"{patient_id}_IMG_2015_cell_{k}.png"
                Image.fromarray(rng.integers(0, 255, (10, 10, 3), dtype=np.uint8)).save(cells / cls / name)
                per_class.setdefault(cls, {}).setdefault((mapping or {}).get(name, patient_id), []).append(name)
    if mapping is not None:
        (root / "malaria-nih" / "patient_mapping").mkdir()
        for cls, by_id in per_class.items():
            lines = [f"{pid},{names!r}" for pid, names in by_id.items()]  # headerless: id, then a list literal
            (root / "malaria-nih" / "patient_mapping" / f"patientid_cellmapping_{cls.lower()}.csv").write_text(
                "\n".join(lines) + "\n")
    return root


FAKE_IDS = ["C47P8thinOriginalOlympusCX21", "C47P8thin_Original_Motic"] + [f"C{i}P{i}ThinF" for i in range(60, 72)]


def test_fake_malaria_two_microscopes_are_one_patient_and_the_mapping_is_checked(tmp_path):
    root = make_fake_malaria(tmp_path / "ok", FAKE_IDS, mapping={})  # the CSVs agree with the file names
    for seed in range(6):
        s = synthaug.load_dataset("malaria", root=root, image_size=8, seed=seed, split=(0.5, 0.25, 0.25))
        parts = [p for p, g in groups_of(s).items() if "C47P8" in g]
        assert len(parts) == 1 and not any("C47P8thin" in g for gs in groups_of(s).values() for g in gs)
    wrong = {"C60P60ThinF_IMG_2015_cell_0.png": "C61P61ThinF"}
    bad = make_fake_malaria(tmp_path / "bad", FAKE_IDS, mapping=wrong)
    with pytest.raises(ValueError, match="disagree with") as err:
        synthaug.load_dataset("malaria", root=bad, image_size=8, split=(0.5, 0.25, 0.25))
    assert "C60P60ThinF_IMG_2015_cell_0.png" in str(err.value)
