"""Fuzz-style tests (hypothesis): the data loader and SyntheticDataset raise only their documented errors
for any arguments, and write nothing outside the cache folder."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import synthaug
from synthaug import SyntheticDataset, create_generator

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """Two classes, 8 patients, 3 cells each, sizes from 9 to 40 px."""
    root = tmp_path_factory.mktemp("cells")
    rng = np.random.default_rng(0)
    for cls in ("infected", "healthy"):
        (root / cls).mkdir()
        for p in range(8):
            for k in range(3):
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


numbers = st.one_of(st.integers(-3, 3), st.floats(-2, 2), st.sampled_from([math.nan, math.inf, -math.inf]))


@FUZZ
@given(image_size=st.one_of(st.integers(-4, 72), st.floats(0, 64), st.just(True)),
       seed=st.integers(0, 2**31),
       train_fraction=numbers,
       split=st.one_of(st.lists(st.one_of(st.floats(-0.5, 1.5), st.just(math.nan)), min_size=0, max_size=4),
                       st.just((0.5, 0.25, 0.25)), st.just((0.6, 0.2, 0.2)), st.floats(0, 1)))
def test_load_dataset_any_arguments(tiny_folder, sandbox, image_size, seed, train_fraction, split):
    work, cache = sandbox
    data_before = _snapshot(tiny_folder)
    try:
        splits = synthaug.load_dataset(str(tiny_folder), image_size=image_size, seed=seed,
                                       train_fraction=train_fraction, split=split, group_fn=r"^(P\d+)_")
    except ValueError as err:
        assert str(err)  # documented: a clear message
    else:
        parts = [splits.train, splits.val, splits.test]
        groups = [set(p.groups.tolist()) for p in parts]
        assert not (groups[0] & groups[1]) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])
        for p in parts:
            assert set(p.targets.tolist()) == {0, 1}
            image, label = p[0]
            assert image.dtype == torch.uint8 and image.shape == (3, image_size, image_size)
    assert _snapshot(tiny_folder) == data_before  # the data are never touched
    assert list(work.iterdir()) == []             # nothing written into the working folder
    assert all(p.is_relative_to(cache) for p in cache.rglob("*"))


@pytest.fixture(scope="module")
def real_and_gen(tiny_folder, sandbox):
    splits = synthaug.load_dataset(str(tiny_folder), image_size=16, group_fn=r"^(P\d+)_")
    torch.manual_seed(0)
    return splits.train, create_generator("cvae-tiny", num_classes=2, image_size=16, channels=3)


@FUZZ
@given(ratio=numbers,
       use_real=st.booleans(),
       length=st.one_of(st.none(), st.integers(-2, 40)),
       pool_size=st.one_of(st.none(), st.integers(-2, 30), st.just(2.5)),
       distribution=st.one_of(
           st.sampled_from(["match", "balanced", "uniform", ""]),
           st.dictionaries(st.one_of(st.integers(-1, 3), st.sampled_from(["infected", "healthy", "sick"])),
                           st.one_of(st.floats(-1, 5), st.just(math.nan), st.integers(-1, 3)), max_size=3)),
       seed=st.integers(0, 2**31))
def test_synthetic_dataset_any_arguments(real_and_gen, sandbox, ratio, use_real, length, pool_size, distribution, seed):
    real, gen = real_and_gen
    work, _ = sandbox
    try:
        ds = SyntheticDataset(gen, ratio, real=real if use_real else None, length=length,
                              label_distribution=distribution, seed=seed, pool_size=pool_size)
    except ValueError as err:
        assert str(err)
        return
    n_real = len(real) if use_real else 0
    expected = int(round(len(real) / (1 - ratio))) if use_real else length
    assert len(ds) == expected and 0 <= ratio < 1 and not math.isnan(ratio)
    assert sum(ds.is_synthetic(i) for i in range(len(ds))) == len(ds) - n_real
    for i in {0, len(ds) - 1} if len(ds) else set():
        image, label = ds[i]
        assert image.dtype == torch.uint8 and image.shape == (3, 16, 16) and label in (0, 1)
    assert list(work.iterdir()) == []
