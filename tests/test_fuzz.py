"""Fuzz-style tests (hypothesis) for the data loader and SyntheticDataset.

Every draw is either valid by construction, and must then succeed and give items of the right type,
shape and labels, or has exactly one argument made invalid, and must then raise a ``ValueError`` whose
message names that argument. Either way nothing is written outside the cache folder.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

import synthaug
from synthaug import SyntheticDataset, create_generator

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
PATIENTS, CELLS = 8, 3  # per class; every patient has cells of both classes


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """Two classes, 8 patients, 3 cells each, sizes from 9 to 40 px."""
    root = tmp_path_factory.mktemp("cells")
    rng = np.random.default_rng(0)
    for cls in ("infected", "healthy"):
        (root / cls).mkdir()
        for p in range(PATIENTS):
            for k in range(CELLS):
                h, w = rng.integers(9, 40, size=2)
                Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / cls / f"P{p}_cell{k}.png")
    return root


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """Run from an empty folder with a private cache, to see where files get written."""
    work = tmp_path_factory.mktemp("cwd")
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        mp.setenv("SYNTHAUG_CACHE", str(cache))
        yield work, cache


def _snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def _assert_names(err: ValueError, argument: str) -> None:
    assert argument in str(err), f"the message does not name {argument}: {err}"


# --------------------------------------------------------------------------- load_dataset
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])


@st.composite
def valid_split(draw) -> tuple[float, float, float]:
    # val and test fractions that give each of them at least one of the 8 patients (round(8 f) >= 1)
    # and leave at least 4 for training; the three sum to 1 (to rounding).
    val = draw(st.floats(0.07, 0.3))
    test = draw(st.floats(0.07, 0.3))
    return (1 - val - test, val, test)


LOAD_VALID = {
    "image_size": st.integers(8, 72),
    "train_fraction": st.one_of(st.floats(0.01, 1.0), st.just(1)),
    "split": valid_split(),
}
LOAD_INVALID = {
    "image_size": st.one_of(st.integers(-4, 7), st.integers(1025, 4096), st.floats(0, 64), st.just(True),
                            st.just("32"), st.none()),
    "train_fraction": st.one_of(st.floats(-2, 0), st.floats(1, 2, exclude_min=True), NON_FINITE, st.just(True),
                                st.just("0.5")),
    "split": st.one_of(
        st.lists(st.floats(0.05, 0.9), min_size=0, max_size=2), st.lists(st.floats(0.05, 0.9), min_size=4, max_size=5),
        st.tuples(st.floats(0.05, 0.3), st.floats(0.05, 0.3), st.floats(0.05, 0.3)),  # sums to less than 1
        st.tuples(st.floats(-0.5, 0), st.floats(0.3, 0.6), st.floats(0.3, 0.6)),
        st.tuples(st.just(math.nan), st.just(0.5), st.just(0.5)),
        st.floats(0, 1)),
}


@FUZZ
@given(invalid=st.sampled_from([None, *LOAD_VALID]), seed=st.integers(0, 2**31), data=st.data())
def test_load_dataset_any_arguments(tiny_folder, sandbox, invalid, seed, data):
    work, cache = sandbox
    data_before = _snapshot(tiny_folder)
    kwargs = {name: data.draw(LOAD_INVALID[name] if name == invalid else LOAD_VALID[name], label=name)
              for name in LOAD_VALID}
    event(f"invalid: {invalid}")  # --hypothesis-show-statistics shows how often each branch ran
    call = lambda: synthaug.load_dataset(str(tiny_folder), seed=seed, group_fn=r"^(P\d+)_", **kwargs)  # noqa: E731
    if invalid is not None:
        with pytest.raises(ValueError) as err:
            call()
        _assert_names(err.value, f"{invalid}=")
    else:
        splits = call()
        parts = [splits.train, splits.val, splits.test]
        groups = [set(p.groups.tolist()) for p in parts]
        assert not (groups[0] & groups[1]) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])
        assert len(groups[1]) >= 1 and len(groups[2]) >= 1 and len(groups[0]) >= 1
        assert all(len(p) == CELLS * 2 * len(g) for p, g in zip(parts, groups))  # whole patients only
        assert len(splits.val) + len(splits.test) + len(splits.train) <= PATIENTS * CELLS * 2
        size = kwargs["image_size"]
        for p in parts:
            assert set(p.targets.tolist()) == {0, 1}
            for i in (0, len(p) - 1):
                image, label = p[i]
                assert isinstance(image, torch.Tensor) and image.dtype == torch.uint8
                assert image.shape == (3, size, size) and type(label) is int and label in (0, 1)
        if kwargs["train_fraction"] == 1:
            assert len(groups[0]) + len(groups[1]) + len(groups[2]) == PATIENTS
    assert _snapshot(tiny_folder) == data_before  # the data are never touched
    assert list(work.iterdir()) == []             # nothing written into the working folder
    assert all(p.is_relative_to(cache) for p in cache.rglob("*"))


# --------------------------------------------------------------------------- SyntheticDataset
@pytest.fixture(scope="module")
def real_and_gen(tiny_folder, sandbox):
    splits = synthaug.load_dataset(str(tiny_folder), image_size=16, group_fn=r"^(P\d+)_")
    torch.manual_seed(0)
    return splits.train, create_generator("cvae-tiny", num_classes=2, image_size=16, channels=3)


# Class keys: ids, digit strings, and (with real data, whose folders sort as healthy=0, infected=1) names.
NAMES = {"healthy": 0, "infected": 1}
SYN_VALID = {
    "ratio": lambda use_real: st.one_of(st.floats(0, 0.9), st.just(0)),
    "length": lambda use_real: st.integers(0, 40),  # only without real data
    "pool_size": lambda use_real: st.one_of(st.none(), st.integers(1, 30)),
    "label_distribution": lambda use_real: st.one_of(
        st.sampled_from(["match", "balanced"]),
        st.dictionaries(st.sampled_from([0, 1, "0", "1", *(NAMES if use_real else [])]),
                        st.one_of(st.floats(0.1, 5), st.integers(1, 3)), min_size=1, max_size=3)),
}
SYN_INVALID = {
    "ratio": st.one_of(st.floats(1, 5), st.floats(-5, -1e-6), NON_FINITE, st.just(True), st.just("0.3"), st.none()),
    "length": st.one_of(st.integers(-5, -1), st.floats(0, 10), st.just(True)),
    "pool_size": st.one_of(st.integers(-3, 0), st.floats(0.5, 5), st.just(True)),
    "label_distribution": st.one_of(
        st.sampled_from(["uniform", "", "Match", ["match"], {"sick": 1}, {2: 1}, {-1: 1}, {0: 0, 1: 0}, {True: 1}]),
        st.dictionaries(st.sampled_from([0, 1, "0", "1"]), st.one_of(st.floats(-5, -0.01), st.just(math.nan),
                                                                    st.just("1")), min_size=1, max_size=2)),
}


@FUZZ
@given(use_real=st.booleans(), invalid=st.sampled_from([None, *SYN_VALID]), seed=st.integers(0, 2**31),
       data=st.data())
def test_synthetic_dataset_any_arguments(real_and_gen, sandbox, use_real, invalid, seed, data):
    real, gen = real_and_gen
    work, _ = sandbox
    kwargs = {name: data.draw(SYN_INVALID[name] if name == invalid else SYN_VALID[name](use_real), label=name)
              for name in SYN_VALID}
    if use_real and invalid != "length":
        kwargs["length"] = None  # with real data the epoch length follows from the ratio
    ratio = kwargs.pop("ratio")
    event(f"invalid: {invalid}, real: {use_real}")
    call = lambda: SyntheticDataset(gen, ratio, real=real if use_real else None, seed=seed, **kwargs)  # noqa: E731
    if invalid is not None:
        with pytest.raises(ValueError) as err:
            call()
        _assert_names(err.value, invalid)
        return
    ds = call()
    n_real = len(real) if use_real else 0
    expected = int(round(len(real) / (1 - ratio))) if use_real else kwargs["length"]
    assert len(ds) == expected and ds.num_real == n_real and ds.num_synthetic == expected - n_real
    assert [ds.is_synthetic(i) for i in range(len(ds))] == [False] * n_real + [True] * (expected - n_real)
    synthetic = np.asarray(ds.targets[n_real:])
    _assert_follows_distribution(synthetic, kwargs["label_distribution"], real if use_real else None)
    for i in {0, n_real, len(ds) - 1} & set(range(len(ds))):
        image, label = ds[i]
        assert isinstance(image, torch.Tensor) and image.dtype == torch.uint8 and image.shape == (3, 16, 16)
        assert type(label) is int and label in (0, 1)
        if i >= n_real:
            assert label == synthetic[i - n_real]
    pool_size, needed = kwargs["pool_size"], set(np.flatnonzero(np.bincount(synthetic, minlength=2)).tolist())
    if pool_size is None:
        assert len(ds.pool_labels) == ds.num_synthetic  # one pool image per synthetic item
    elif ds.num_synthetic:
        # pool_size images, plus one for a needed class that rounding left out
        assert pool_size <= len(ds.pool_labels) <= pool_size + 1 and set(ds.pool_labels.tolist()) == needed
    assert list(work.iterdir()) == []


def _assert_follows_distribution(labels: np.ndarray, distribution, real) -> None:
    """Class counts within one item of the requested shares (largest remainder rounding)."""
    n = len(labels)
    counts = np.bincount(labels, minlength=2)
    assert counts.sum() == n
    if distribution == "match" and real is not None:
        weights = np.bincount(real.targets, minlength=2).astype(float)
    elif isinstance(distribution, dict):
        weights = np.zeros(2)
        for key, value in distribution.items():  # later keys for the same class win, as in the code
            weights[NAMES[key] if key in NAMES else int(key)] = value
    else:
        weights = np.ones(2)
    assert (np.abs(counts - n * weights / weights.sum()) < 1).all(), (counts, weights)
