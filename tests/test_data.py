"""Real data sets, patient-level splits, image decoding and the on-disk cache."""
from __future__ import annotations

import os
import re
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import synthaug
from synthaug.data import (
    BadImageError,
    LeakageError,
    assert_disjoint_groups,
    UngroupedWarning,
    malaria_group_id,
    malaria_patient_id,
    read_malaria_mapping,
    split_by_group,
    subsample_groups,
)

MALARIA_TOTAL = 27558
PARTS = ("train", "val", "test")


def group_set(ds) -> set[str]:
    return set(ds.groups.tolist())


def items_per_group(ds) -> Counter:
    return Counter(ds.groups.tolist())


def files_per_group(ds) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for g, f in zip(ds.groups.tolist(), ds.files.tolist()):
        out.setdefault(g, set()).add(f)
    return out


@pytest.fixture(scope="module")
def malaria_seed1(data_root, malaria_dir):
    return synthaug.load_dataset("malaria", root=data_root, image_size=32, seed=1)


@pytest.fixture(scope="module")
def malaria_frac05(data_root, malaria_dir):
    return synthaug.load_dataset("malaria", root=data_root, image_size=32, seed=0, train_fraction=0.05)


# --------------------------------------------------------------------------- malaria: patient splits
def test_malaria_splits_are_disjoint_by_patient(malaria32):
    sets = {p: group_set(getattr(malaria32, p)) for p in PARTS}
    assert not sets["train"] & sets["val"]
    assert not sets["train"] & sets["test"]
    assert not sets["val"] & sets["test"]
    assert all(sets[p] for p in PARTS)
    # 201 ids before _IMG_ (README), 200 patients: C47P8 was imaged under two microscopes
    assert len(sets["train"] | sets["val"] | sets["test"]) == 200


def test_malaria_splits_cover_everything_once(malaria32):
    assert sum(len(getattr(malaria32, p)) for p in PARTS) == MALARIA_TOTAL
    files = np.concatenate([getattr(malaria32, p).files for p in PARTS])
    assert len(set(files.tolist())) == MALARIA_TOTAL
    targets = np.concatenate([getattr(malaria32, p).targets for p in PARTS])
    assert np.bincount(targets).tolist() == [13779, 13779]


@pytest.mark.parametrize("part", PARTS)
def test_malaria_every_split_has_both_classes(malaria32, part):
    counts = getattr(malaria32, part).class_counts()
    assert counts.shape == (2,)
    assert (counts > 0).all(), counts


@pytest.mark.parametrize("part", PARTS)
def test_malaria_split_info_matches_groups(malaria32, part):
    ds = getattr(malaria32, part)
    assert malaria32.info[f"{part}_groups"] == sorted(group_set(ds))
    assert malaria32.info[f"{part}_items"] == len(ds)


def test_malaria_split_depends_on_seed(malaria32, malaria_seed1):
    assert group_set(malaria32.train) != group_set(malaria_seed1.train)
    assert group_set(malaria32.test) != group_set(malaria_seed1.test)
    # still a split of the same data
    assert sum(len(getattr(malaria_seed1, p)) for p in PARTS) == MALARIA_TOTAL
    assert not group_set(malaria_seed1.train) & group_set(malaria_seed1.test)


def test_malaria_same_seed_same_split(malaria32, data_root):
    again = synthaug.load_dataset("malaria", root=data_root, image_size=32, seed=0)
    for part in PARTS:
        a, b = getattr(malaria32, part), getattr(again, part)
        assert group_set(a) == group_set(b)
        np.testing.assert_array_equal(a.targets, b.targets)
        np.testing.assert_array_equal(a.groups, b.groups)
        np.testing.assert_array_equal(a.files, b.files)


# --------------------------------------------------------------------------- malaria: train_fraction
def test_train_fraction_keeps_whole_patients(malaria32, malaria_frac05):
    full = files_per_group(malaria32.train)
    kept = files_per_group(malaria_frac05.train)
    assert kept, "train_fraction=0.05 kept no patient"
    assert set(kept) < set(full)
    for patient, files in kept.items():
        assert files == full[patient], f"patient {patient}: only some of its training cells were kept"
    assert len(malaria_frac05.train) == sum(len(full[p]) for p in kept)


def test_train_fraction_group_count_and_classes(malaria32, malaria_frac05):
    n_train_groups = len(group_set(malaria32.train))
    n_kept = len(group_set(malaria_frac05.train))
    expected = round(0.05 * n_train_groups)
    assert n_kept in (expected, expected + 1), (n_kept, n_train_groups)
    assert (malaria_frac05.train.class_counts() > 0).all()
    assert malaria_frac05.info["train_groups"] == sorted(group_set(malaria_frac05.train))


def test_train_fraction_leaves_val_and_test_alone(malaria32, malaria_frac05):
    for part in ("val", "test"):
        a, b = getattr(malaria32, part), getattr(malaria_frac05, part)
        np.testing.assert_array_equal(a.files, b.files)
        np.testing.assert_array_equal(a.targets, b.targets)
        np.testing.assert_array_equal(a.groups, b.groups)


def test_train_fraction_is_nested(data_root, malaria32, malaria_frac05):
    quarter = synthaug.load_dataset("malaria", root=data_root, image_size=32, seed=0, train_fraction=0.25)
    small, large = group_set(malaria_frac05.train), group_set(quarter.train)
    assert small < large
    assert large < group_set(malaria32.train)
    assert len(large) in (round(0.25 * len(group_set(malaria32.train))), round(0.25 * len(group_set(malaria32.train))) + 1)


# --------------------------------------------------------------------------- malaria: items and patient ids
def test_malaria_items(malaria32):
    ds = malaria32.train
    assert ds.classes == ["Parasitized", "Uninfected"]
    assert malaria32.classes == ["Parasitized", "Uninfected"]
    for i in (0, len(ds) // 2, len(ds) - 1):
        image, label = ds[i]
        assert isinstance(image, torch.Tensor)
        assert image.dtype == torch.uint8
        assert image.shape == (3, 32, 32)
        assert type(label) is int and label in (0, 1)
        assert label == ds.targets[i]
        assert image.max() > 0  # not an empty canvas
    assert len(ds.targets) == len(ds.groups) == len(ds.files) == len(ds)
    assert ds.targets.dtype == np.int64
    # the class of an item is the folder it came from
    for f, t in zip(ds.files[::997].tolist(), ds.targets[::997].tolist()):
        assert f.split("/")[0] == ds.classes[t]


def test_malaria_patient_ids_follow_file_names_and_mapping(malaria32, malaria_dir):
    mapping = read_malaria_mapping(malaria_dir / "patient_mapping")
    assert len(mapping) == MALARIA_TOTAL
    for part in PARTS:
        ds = getattr(malaria32, part)
        for f, g in zip(ds.files.tolist(), ds.groups.tolist()):
            assert mapping[os.path.basename(f)] == malaria_patient_id(f)  # the id as NIH wrote it
            assert g == malaria_group_id(malaria_patient_id(f))  # grouped by its C<n>P<m> code


def test_malaria_patient_id_function():
    assert malaria_patient_id("Parasitized/C100P61ThinF_IMG_20150918_144104_cell_162.png") == "C100P61ThinF"
    assert malaria_patient_id("C39P4thinF_original_IMG_20150622_105102_cell_94.png") == "C39P4thinF_original"
    with pytest.raises(ValueError, match="no_patient.png"):
        malaria_patient_id("Uninfected/no_patient.png")


def test_read_malaria_mapping_handles_split_list_cells(tmp_path):
    (tmp_path / "patientid_cellmapping_parasitized.csv").write_text(
        "C1P1ThinF,\"['C1P1ThinF_IMG_1_cell_1.png'\",\" 'C1P1ThinF_IMG_1_cell_2.png']\",\n"
        "\n"
        "C2P2ThinF,['C2P2ThinF_IMG_2_cell_9.png'],\n"
    )
    mapping = read_malaria_mapping(tmp_path)
    assert mapping == {
        "C1P1ThinF_IMG_1_cell_1.png": "C1P1ThinF",
        "C1P1ThinF_IMG_1_cell_2.png": "C1P1ThinF",
        "C2P2ThinF_IMG_2_cell_9.png": "C2P2ThinF",
    }
    (tmp_path / "patientid_cellmapping_uninfected.csv").write_text("C3P3ThinF,['broken'\n")
    with pytest.raises(ValueError, match="patientid_cellmapping_uninfected.csv"):
        read_malaria_mapping(tmp_path)


# --------------------------------------------------------------------------- pure split functions
def toy_groups(n_groups: int, per_group: int = 4, mixed_every: int = 3):
    """Items of ``n_groups`` groups; group g is class g % 2, and every ``mixed_every``-th group holds both."""
    targets, groups = [], []
    for g in range(n_groups):
        for k in range(per_group):
            label = g % 2 if g % mixed_every else k % 2
            targets.append(label)
            groups.append(f"g{g:03d}")
    return np.array(targets), np.array(groups)


def test_split_by_group_disjoint_and_complete():
    targets, groups = toy_groups(60)
    train, val, test = split_by_group(targets, groups, split=(0.6, 0.2, 0.2), seed=3)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(len(targets)))
    sets = [set(groups[idx].tolist()) for idx in (train, val, test)]
    assert not sets[0] & sets[1] and not sets[0] & sets[2] and not sets[1] & sets[2]
    for idx in (train, val, test):
        assert set(targets[idx].tolist()) == {0, 1}
    # fractions are of groups, roughly respected
    assert 30 <= len(sets[0]) <= 42 and 8 <= len(sets[1]) <= 16 and 8 <= len(sets[2]) <= 16


def test_split_by_group_is_deterministic():
    targets, groups = toy_groups(60)
    a = split_by_group(targets, groups, seed=5)
    b = split_by_group(targets, groups, seed=5)
    c = split_by_group(targets, groups, seed=6)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c))


def test_split_by_group_does_not_depend_on_item_order():
    targets, groups = toy_groups(40)
    perm = np.random.default_rng(0).permutation(len(targets))
    a = split_by_group(targets, groups, seed=1)
    b = split_by_group(targets[perm], groups[perm], seed=1)
    for x, y in zip(a, b):
        assert set(groups[x].tolist()) == set(groups[perm][y].tolist())


def test_split_by_group_too_few_groups():
    targets, groups = toy_groups(3, mixed_every=100)  # 3 single-class groups cannot feed 3 splits x 2 classes
    with pytest.raises(ValueError, match="groups"):
        split_by_group(targets, groups, split=(0.7, 0.1, 0.2))


def test_split_by_group_bad_input():
    targets, groups = toy_groups(30)
    with pytest.raises(ValueError, match="equal length"):
        split_by_group(targets, groups[:-1])
    with pytest.raises(ValueError, match="split="):
        split_by_group(targets, groups, split=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="split="):
        split_by_group(targets, groups, split=(0.8, 0.2))
    with pytest.raises(ValueError, match="split="):
        split_by_group(targets, groups, split="abc")


def test_assert_disjoint_groups():
    groups = np.array(["a", "a", "b", "c", "c"])
    assert_disjoint_groups(groups, np.array([0, 1]), np.array([2]), np.array([3, 4]))  # no error
    with pytest.raises(LeakageError, match="'c'"):
        assert_disjoint_groups(groups, np.array([0, 1, 3]), np.array([2]), np.array([4]))
    assert issubclass(LeakageError, AssertionError)


def test_subsample_groups():
    targets, groups = toy_groups(40)
    indices = np.arange(len(targets))
    for bad in (0, 0.0, 1.5, -0.1, "0.5"):
        with pytest.raises(ValueError, match="train_fraction"):
            subsample_groups(indices, targets, groups, fraction=bad)
    np.testing.assert_array_equal(subsample_groups(indices, targets, groups, fraction=1.0), indices)
    kept = subsample_groups(indices, targets, groups, fraction=0.25, seed=2)
    kept_groups = set(groups[kept].tolist())
    assert len(kept_groups) in (10, 11)
    # whole groups only
    assert len(kept) == sum(int((groups == g).sum()) for g in kept_groups)
    assert set(targets[kept].tolist()) == {0, 1}
    smaller = set(groups[subsample_groups(indices, targets, groups, fraction=0.1, seed=2)].tolist())
    assert smaller <= kept_groups


def test_subsample_groups_adds_a_group_for_a_missing_class():
    # 19 groups of class 0 and one of class 1: 5% keeps one group, which must be topped up to cover class 1
    targets = np.array([0] * 19 + [1])
    groups = np.array([f"g{i}" for i in range(20)])
    for seed in range(10):
        kept = subsample_groups(np.arange(20), targets, groups, fraction=0.05, seed=seed)
        assert set(targets[kept].tolist()) == {0, 1}
        assert len(kept) in (1, 2)


# --------------------------------------------------------------------------- BreastMNIST
def test_breastmnist(breastmnist28):
    s = breastmnist28
    assert (len(s.train), len(s.val), len(s.test)) == (546, 78, 156)
    assert s.channels == 1 and s.num_classes == 2 and len(s.classes) == 2
    image, label = s.train[0]
    assert image.dtype == torch.uint8 and image.shape == (1, 28, 28)
    assert label in (0, 1)
    for part in PARTS:
        assert (getattr(s, part).class_counts() > 0).all()


def test_breastmnist_matches_npz(breastmnist28, breastmnist_npz):
    with np.load(breastmnist_npz) as npz:
        for part in PARTS:
            ds = getattr(breastmnist28, part)
            np.testing.assert_array_equal(ds.images_tensor()[:, 0].numpy(), npz[f"{part}_images"])
            np.testing.assert_array_equal(ds.targets, npz[f"{part}_labels"].reshape(-1))


def test_breastmnist_resized(data_root, breastmnist_npz):
    with pytest.warns(UserWarning, match="upsampled; put breastmnist_64.npz beside it"):  # only 28 px here
        s = synthaug.load_dataset("medmnist:breastmnist", root=data_root, image_size=32)
    assert s.train[0][0].shape == (1, 32, 32)
    assert len(s.train) == 546


def copy_npz(src: Path, dst_dir: Path, *, edit=None) -> Path:
    (dst_dir / "medmnist").mkdir(parents=True, exist_ok=True)
    with np.load(src) as npz:
        arrays = {k: npz[k] for k in npz.files}
    if edit is not None:
        edit(arrays)
    path = dst_dir / "medmnist" / "breastmnist.npz"
    np.savez(path, **arrays)
    return path


def test_breastmnist_labels_n_by_1(tmp_path, breastmnist28, breastmnist_npz):
    def reshape(arrays):
        for part in PARTS:
            arrays[f"{part}_labels"] = arrays[f"{part}_labels"].reshape(-1, 1)

    copy_npz(breastmnist_npz, tmp_path, edit=reshape)
    s = synthaug.load_dataset("medmnist:breastmnist", root=tmp_path, image_size=28)
    for part in PARTS:
        a, b = getattr(s, part), getattr(breastmnist28, part)
        np.testing.assert_array_equal(a.targets, b.targets)
        assert torch.equal(a.images_tensor(), b.images_tensor())


def test_breastmnist_missing_key(tmp_path, breastmnist_npz):
    path = copy_npz(breastmnist_npz, tmp_path, edit=lambda a: a.pop("val_labels"))
    with pytest.raises(ValueError, match=re.escape(str(path))) as err:
        synthaug.load_dataset("medmnist:breastmnist", root=tmp_path, image_size=28)
    assert "val_labels" in str(err.value)


def test_breastmnist_mismatched_lengths(tmp_path, breastmnist_npz):
    def cut(arrays):
        arrays["test_labels"] = arrays["test_labels"][:-3]

    path = copy_npz(breastmnist_npz, tmp_path, edit=cut)
    with pytest.raises(ValueError, match=re.escape(str(path))) as err:
        synthaug.load_dataset("medmnist:breastmnist", root=tmp_path, image_size=28)
    assert "test" in str(err.value)


def test_breastmnist_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="breastmnist.npz"):
        synthaug.load_dataset("medmnist:breastmnist", root=tmp_path, image_size=28)


def test_medmnist_unknown_flag(tmp_path):
    with pytest.raises(ValueError, match="breastmnsit"):
        synthaug.load_dataset("medmnist:breastmnsit", root=tmp_path, image_size=28)


def test_breastmnist_train_fraction(data_root, breastmnist28, breastmnist_npz):
    s = synthaug.load_dataset("medmnist:breastmnist", root=data_root, image_size=28, train_fraction=0.1)
    assert len(s.train) in (55, 56)
    assert (s.train.class_counts() > 0).all()
    assert len(s.val) == 78 and len(s.test) == 156


def test_breastmnist_bad_split_is_rejected(data_root, breastmnist_npz):
    with pytest.raises(ValueError, match="split"):
        synthaug.load_dataset("medmnist:breastmnist", root=data_root, image_size=28, split=(0.5, 0.5, 0.5))


# --------------------------------------------------------------------------- ImageFolder
SIZES = {"RGB": (40, 20), "L": (15, 30), "RGBA": (64, 64), "P": (33, 7), "I;16": (20, 50)}


def make_image(mode: str, size: tuple[int, int], value: int) -> Image.Image:
    w, h = size
    if mode == "RGB":
        return Image.new("RGB", size, (value, value // 2, 255 - value))
    if mode == "L":
        return Image.new("L", size, value)
    if mode == "RGBA":
        arr = np.zeros((h, w, 4), dtype=np.uint8)
        arr[..., :3] = value
        arr[:, : w // 2, 3] = 255  # left half opaque, right half fully transparent
        return Image.fromarray(arr)
    if mode == "P":
        img = Image.new("P", size, 1)
        img.putpalette([0, 0, 0, value, value, value])  # palette entry 1 is the grey ``value``
        return img
    if mode == "I;16":
        return Image.fromarray(np.full((h, w), value * 257, dtype=np.uint16))
    raise AssertionError(mode)


def make_folder(root: Path, *, patients: int = 8, classes=("benign", "malignant")) -> Path:
    """``root/<class>/P<k>_<mode>.png``: every patient has one image of every mode in every class."""
    for c, cls in enumerate(classes):
        (root / cls).mkdir(parents=True)
        for p in range(patients):
            for m, (mode, size) in enumerate(SIZES.items()):
                img = make_image(mode, size, value=40 + 20 * p + 5 * m + c)
                assert img.mode == mode
                img.save(root / cls / f"P{p}_{mode.replace(';', '')}.png")
    return root


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("SYNTHAUG_CACHE", str(cache))
    return cache


def test_image_folder_load(tmp_path, tmp_cache):
    root = make_folder(tmp_path / "imgs")
    s = synthaug.load_dataset(root, image_size=16, group_fn=r"^(P\d+)_", split=(0.5, 0.25, 0.25), seed=0)
    assert s.classes == ["benign", "malignant"]
    assert sum(len(getattr(s, p)) for p in PARTS) == 8 * 5 * 2
    sets = [group_set(getattr(s, p)) for p in PARTS]
    assert set().union(*sets) == {f"P{p}" for p in range(8)}
    assert not sets[0] & sets[1] and not sets[0] & sets[2] and not sets[1] & sets[2]
    for part in PARTS:
        ds = getattr(s, part)
        assert (ds.class_counts() > 0).all()
        for i in range(len(ds)):
            image, label = ds[i]
            assert image.dtype == torch.uint8 and image.shape == (3, 16, 16)
            assert ds.groups[i] == os.path.basename(ds.files[i]).split("_")[0]
    assert any(tmp_cache.iterdir()), "the decoded images were not cached under SYNTHAUG_CACHE"


def item_by_file(splits, name: str):
    for part in PARTS:
        ds = getattr(splits, part)
        hits = np.flatnonzero(ds.files == name)
        if len(hits):
            return ds[int(hits[0])][0]
    raise KeyError(name)


def test_image_folder_letterbox_and_modes(tmp_path):
    root = make_folder(tmp_path / "imgs", patients=4)
    s = synthaug.load_dataset(root, image_size=16, group_fn=r"^(P\d+)_", split=(0.5, 0.25, 0.25), cache=False)
    # RGB 40x20 -> 16x8, centred: rows 0-3 and 12-15 are black padding
    rgb = item_by_file(s, "benign/P0_RGB.png").numpy()
    value = 40
    assert (rgb[:, :4] == 0).all() and (rgb[:, 12:] == 0).all()
    assert np.abs(rgb[:, 4:12].astype(int) - np.array([value, value // 2, 255 - value])[:, None, None]).max() <= 2
    # L 15x30 -> 8x16, grey replicated to 3 channels, black columns left and right
    grey = item_by_file(s, "benign/P0_L.png").numpy()
    assert (grey[:, :, :4] == 0).all() and (grey[:, :, 12:] == 0).all()
    assert (grey[0] == grey[1]).all() and (grey[1] == grey[2]).all()
    assert abs(int(grey[0, 8, 8]) - (value + 5)) <= 2
    # RGBA: transparent right half composited on black
    rgba = item_by_file(s, "benign/P0_RGBA.png").numpy()
    assert abs(int(rgba[0, 8, 2]) - (value + 10)) <= 2
    assert (rgba[:, :, 12:] <= 2).all()
    # P (palette) decodes to its colour
    pal = item_by_file(s, "benign/P0_P.png").numpy()
    assert abs(int(pal[0, 8, 8]) - (value + 15)) <= 3
    # 16-bit grey is rescaled, not clipped: value*257 -> value
    deep = item_by_file(s, "benign/P0_I16.png").numpy()
    assert abs(int(deep[0, 8, 8]) - (value + 20)) <= 2


def test_image_folder_one_channel(tmp_path):
    root = make_folder(tmp_path / "imgs", patients=4)
    s = synthaug.load_dataset(root, image_size=12, channels=1, group_fn=r"^(P\d+)_", split=(0.5, 0.25, 0.25),
                              cache=False)
    assert s.channels == 1
    assert s.train[0][0].shape == (1, 12, 12)


def test_image_folder_group_function_and_default_groups(tmp_path):
    root = make_folder(tmp_path / "imgs", patients=4)
    s = synthaug.load_dataset(root, image_size=8, group_fn=lambda name: name.split("_")[0].lower(),
                              split=(0.5, 0.25, 0.25), cache=False)
    assert set().union(*(group_set(getattr(s, p)) for p in PARTS)) == {"p0", "p1", "p2", "p3"}
    with pytest.warns(UngroupedWarning):
        s = synthaug.load_dataset(root, image_size=8, split=(0.5, 0.25, 0.25), cache=False)
    all_groups = np.concatenate([getattr(s, p).groups for p in PARTS])
    assert len(set(all_groups.tolist())) == len(all_groups)  # no group_fn: each file its own group


def test_image_folder_cache_respects_group_fn(tmp_path, tmp_cache):
    root = make_folder(tmp_path / "imgs", patients=4)
    with pytest.warns(UngroupedWarning):
        per_file = synthaug.load_dataset(root, image_size=8, split=(0.5, 0.25, 0.25))
    assert len(set(per_file.train.groups.tolist())) == len(per_file.train)
    by_patient = synthaug.load_dataset(root, image_size=8, group_fn=r"^(P\d+)_", split=(0.5, 0.25, 0.25))
    assert set().union(*(group_set(getattr(by_patient, p)) for p in PARTS)) == {"P0", "P1", "P2", "P3"}


def test_image_folder_group_pattern_must_match(tmp_path):
    root = make_folder(tmp_path / "imgs", patients=4)
    with pytest.raises(ValueError, match=r"does not match"):
        synthaug.load_dataset(root, image_size=8, group_fn=r"^(Q\d+)_", cache=False)


def test_image_folder_corrupt_file(tmp_path, tmp_cache):
    root = make_folder(tmp_path / "imgs", patients=4)
    bad = root / "malignant" / "P2_broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10)
    with pytest.raises(BadImageError, match="P2_broken.png"):
        synthaug.load_dataset(root, image_size=8, group_fn=r"^(P\d+)_", split=(0.5, 0.25, 0.25))
    with pytest.warns(UserWarning, match="P2_broken.png"):
        s = synthaug.load_dataset(root, image_size=8, group_fn=r"^(P\d+)_", split=(0.5, 0.25, 0.25),
                                  on_bad_file="skip")
    files = np.concatenate([getattr(s, p).files for p in PARTS]).tolist()
    assert "malignant/P2_broken.png" not in files
    assert len(files) == 4 * 5 * 2


def test_image_folder_truncated_file(tmp_path):
    root = make_folder(tmp_path / "imgs", patients=4)
    good = root / "benign" / "P1_RGB.png"
    big = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    big.save(good)
    good.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(BadImageError, match="P1_RGB.png"):
        synthaug.load_dataset(root, image_size=8, group_fn=r"^(P\d+)_", split=(0.5, 0.25, 0.25), cache=False)


def test_image_folder_empty_class(tmp_path):
    root = make_folder(tmp_path / "imgs", patients=4)
    (root / "empty").mkdir()
    with pytest.raises(ValueError, match="empty"):
        synthaug.load_dataset(root, image_size=8, group_fn=r"^(P\d+)_", cache=False)


def test_image_folder_no_class_folders(tmp_path):
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(ValueError, match="class sub-folders"):
        synthaug.load_dataset(tmp_path / "flat", image_size=8, cache=False)


def test_image_folder_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        synthaug.load_dataset(tmp_path / "nowhere", image_size=8, cache=False)


def test_malaria_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="malaria"):
        synthaug.load_dataset("malaria", root=tmp_path, image_size=32)
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        synthaug.load_dataset("malaria", root=tmp_path / "does-not-exist", image_size=32)


# --------------------------------------------------------------------------- cache
def test_malaria_cache_gives_identical_arrays(malaria32, data_root):
    again = synthaug.load_dataset("malaria", root=data_root, image_size=32, seed=0)
    for part in PARTS:
        a, b = getattr(malaria32, part), getattr(again, part)
        for i in (0, 1, len(a) // 3, len(a) - 1):
            x, y = a[i], b[i]
            assert torch.equal(x[0], y[0]) and x[1] == y[1]


def test_folder_cache_gives_identical_arrays_and_sees_changes(tmp_path, tmp_cache):
    root = make_folder(tmp_path / "imgs", patients=4)
    kwargs = dict(image_size=8, group_fn=r"^(P\d+)_", split=(0.5, 0.25, 0.25))
    first = synthaug.load_dataset(root, **kwargs)
    second = synthaug.load_dataset(root, **kwargs)
    fresh = synthaug.load_dataset(root, cache=False, **kwargs)
    for other in (second, fresh):
        assert torch.equal(first.train.images_tensor(), other.train.images_tensor())
        np.testing.assert_array_equal(first.train.files, other.train.files)
    # a changed file gives a new entry, not stale pixels
    target = "benign/P0_RGB.png"
    Image.new("RGB", (40, 20), (255, 255, 255)).save(root / target)
    os.utime(root / target, ns=(1, 1))
    changed = synthaug.load_dataset(root, **kwargs)
    assert item_by_file(changed, target).max() == 255
    assert not torch.equal(item_by_file(changed, target), item_by_file(first, target))


def cache_entries(cache: Path) -> list[Path]:
    return [p for p in cache.iterdir() if not p.name.startswith(".")]


def count_decodes(monkeypatch) -> dict:
    import synthaug.data.folders as folders

    calls = {"n": 0}
    original = folders.decode_files

    def counting(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(folders, "decode_files", counting)
    return calls


def test_folder_cache_hit_does_not_decode(tmp_path, tmp_cache, monkeypatch):
    root = make_folder(tmp_path / "imgs", patients=4)
    kwargs = dict(image_size=8, group_fn=r"^(P\d+)_", split=(0.5, 0.25, 0.25))
    calls = count_decodes(monkeypatch)
    synthaug.load_dataset(root, **kwargs)
    synthaug.load_dataset(root, **kwargs)
    assert calls["n"] == 1
    synthaug.load_dataset(root, **{**kwargs, "image_size": 12})  # other options: another entry
    assert calls["n"] == 2
    assert len(cache_entries(tmp_cache)) == 2


def test_damaged_cache_entry_is_rebuilt(tmp_path, tmp_cache, monkeypatch):
    root = make_folder(tmp_path / "imgs", patients=4)
    kwargs = dict(image_size=8, group_fn=r"^(P\d+)_", split=(0.5, 0.25, 0.25))
    first = synthaug.load_dataset(root, **kwargs)
    (entry,) = cache_entries(tmp_cache)
    data = (entry / "images.npy").read_bytes()
    (entry / "images.npy").write_bytes(data[: len(data) // 2])  # truncated, as by a full disk
    calls = count_decodes(monkeypatch)
    again = synthaug.load_dataset(root, **kwargs)
    assert calls["n"] == 1
    assert torch.equal(first.train.images_tensor(), again.train.images_tensor())
    synthaug.load_dataset(root, **kwargs)
    assert calls["n"] == 1, "the damaged entry was not replaced"


def test_incomplete_cache_entry_is_repaired(tmp_path, tmp_cache, monkeypatch):
    root = make_folder(tmp_path / "imgs", patients=4)
    kwargs = dict(image_size=8, group_fn=r"^(P\d+)_", split=(0.5, 0.25, 0.25))
    synthaug.load_dataset(root, **kwargs)
    (entry,) = cache_entries(tmp_cache)
    (entry / "meta.json").unlink()
    calls = count_decodes(monkeypatch)
    synthaug.load_dataset(root, **kwargs)
    synthaug.load_dataset(root, **kwargs)
    assert calls["n"] == 1


# --------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        (dict(image_size=0), ValueError, r"image_size=0"),
        (dict(image_size=32.0), ValueError, r"image_size=32.0"),
        (dict(train_fraction=0), ValueError, r"train_fraction=0"),
        (dict(train_fraction=1.5), ValueError, r"train_fraction=1.5"),
        (dict(train_fraction=True), ValueError, r"train_fraction=True"),
        (dict(split=(0.5, 0.5, 0.5)), ValueError, r"split=\(0.5, 0.5, 0.5\)"),
        (dict(channels=2), ValueError, r"channels=2"),
        (dict(on_bad_file="ignore"), ValueError, r"on_bad_file='ignore'"),
    ],
)
def test_load_dataset_bad_arguments(data_root, malaria_dir, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        synthaug.load_dataset("malaria", root=data_root, **{"image_size": 32, **kwargs})


def test_load_dataset_split_not_a_sequence(data_root, malaria_dir):
    with pytest.raises(ValueError, match="split=0.7"):
        synthaug.load_dataset("malaria", root=data_root, image_size=32, split=0.7)


def test_load_dataset_unknown_name(data_root, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # "malarai" must not exist as a folder either
    with pytest.raises((ValueError, FileNotFoundError), match="malarai") as err:
        synthaug.load_dataset("malarai", root=data_root)
    assert "malaria" in str(err.value).replace("malarai", "")


def test_no_data_root(monkeypatch, tmp_path):
    monkeypatch.delenv("SYNTHAUG_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="SYNTHAUG_DATA"):
        synthaug.load_dataset("malaria")


# --------------------------------------------------------------------------- medmnist sizes (64/128/224)
def _write_medmnist(folder: Path, name: str, size: int, value: int) -> Path:
    """A tiny npz as medmnist names and lays them out: grey images of one value, labels (N, 1)."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for part in PARTS:
        arrays[f"{part}_images"] = np.full((6, size, size), value, np.uint8)
        arrays[f"{part}_labels"] = (np.arange(6) % 2).reshape(-1, 1)
    np.savez(folder / name, **arrays)
    return folder / name


def test_medmnist_reads_the_file_of_the_size_asked_for(tmp_path):
    folder = tmp_path / "medmnist"
    _write_medmnist(folder, "breastmnist.npz", 28, 10)
    with pytest.warns(UserWarning, match=r"breastmnist.npz is here, so its 28 px images are upsampled; put "
                                         r"breastmnist_64.npz beside it"):
        up = synthaug.load_dataset("medmnist:breastmnist", root=tmp_path, image_size=64)
    assert up.train[0][0].shape == (1, 64, 64) and int(up.train[0][0].max()) == 10  # the 28 px file, resized
    _write_medmnist(folder, "breastmnist_64.npz", 64, 200)
    for size in (64, 32):  # the 64 px file as it is, and downsampled rather than the 28 px one upsampled
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            s = synthaug.load_dataset("medmnist:breastmnist", root=tmp_path, image_size=size)
        assert s.train[0][0].shape == (1, size, size) and int(s.train[0][0].min()) == 200
    assert int(synthaug.load_dataset("medmnist:breastmnist", root=tmp_path, image_size=28).train[0][0].max()) == 10


def test_medmnist_download_of_a_size_fails_clearly_without_a_network(tmp_path, monkeypatch):
    from medmnist.dataset import MedMNIST

    asked = []

    def offline(self):  # what medmnist's download does without a network: a RuntimeError
        asked.append(self.size)
        raise RuntimeError("Automatic download failed!\n Please download breastmnist_128.npz manually.")

    monkeypatch.setattr(MedMNIST, "download", offline)
    with pytest.raises(FileNotFoundError) as err:
        synthaug.load_dataset("medmnist:breastmnist", root=tmp_path, image_size=100, download=True)
    assert asked == [128]  # the smallest size of at least 100 px
    text = str(err.value)
    assert "\n" not in text and "could not download breastmnist_128.npz (no network?)" in text
    assert "breastmnist_128.npz?download=1" in text and str(tmp_path / "medmnist" / "breastmnist_128.npz") in text
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no breastmnist_64.npz at .* \(or breastmnist.npz, resized\)"):
        synthaug.load_dataset("medmnist:breastmnist", root=tmp_path / "empty", image_size=64)
