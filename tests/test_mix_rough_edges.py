"""The rough edges of SyntheticMix and SyntheticDataset met by new users: plain one-line option errors,
labels by class name, saved pipelines that load anywhere, A.load without importing synthaug first,
target_transform and class_to_idx."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import albumentations as A
import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

import synthaug
from synthaug import SyntheticDataset, SyntheticMix, SyntheticPool, create_generator

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def named_pool(tmp_path) -> Path:
    """Class 0 "Parasitized" is dark (10), class 1 "Uninfected" bright (240); 16 px RGB."""
    labels = np.array([0, 0, 1, 1])
    images = np.where(labels[:, None, None, None] == 0, 10, 240).astype(np.uint8) * np.ones((1, 3, 16, 16), np.uint8)
    return SyntheticPool(images, labels, 2, {"class_names": ["Parasitized", "Uninfected"]}).save(tmp_path / "pool")


def _blank() -> np.ndarray:
    return np.full((16, 16, 3), 128, np.uint8)


@pytest.mark.parametrize("p, shown", [(2, "p=2"), (-0.5, "p=-0.5")])
def test_a_probability_out_of_range_is_one_plain_line(named_pool, p, shown):
    with pytest.raises(ValueError) as err:
        SyntheticMix(str(named_pool), p=p)
    text = str(err.value)
    assert text.startswith(f"SyntheticMix: {shown} must be a number in [0, 1] (p is the probability")
    assert "\n" not in text and "pydantic" not in text and "validation error" not in text


def test_our_own_option_errors_lose_the_pydantic_wrapping(named_pool):
    with pytest.raises(ValueError) as err:
        SyntheticMix(str(named_pool), seed=-1)
    assert "\n" not in str(err.value) and "seed=-1" in str(err.value) and "InitSchema" not in str(err.value)


@pytest.mark.parametrize("label", ["Uninfected", "uninfected", " Uninfected ", "1", 1, np.int64(1), torch.tensor(1)])
def test_labels_may_be_class_names_as_the_cli_takes_them(named_pool, label):
    out = A.Compose([SyntheticMix(str(named_pool), p=1.0)], seed=0)(image=_blank(), label=label)["image"]
    assert out.mean() == 240  # an Uninfected (bright) pool image


def test_an_unknown_class_name_is_refused_with_the_pools_names(named_pool, tmp_path):
    mix = A.Compose([SyntheticMix(str(named_pool), p=1.0)])
    with pytest.raises(ValueError, match=r"label='Parasitised': unknown class 'Parasitised' \(did you mean "
                                         r"'Parasitized'\?\).*0='Parasitized', 1='Uninfected'"):
        mix(image=_blank(), label="Parasitised")
    old = SyntheticPool(np.zeros((2, 3, 8, 8), np.uint8), np.array([0, 1]), 2).save(tmp_path / "old")
    with pytest.raises(ValueError, match="has no class names .*give class ids: 0, 1"):
        A.Compose([SyntheticMix(str(old), p=1.0)])(image=_blank(), label="dark")


def test_a_checkpoint_pool_records_the_generators_class_names(tmp_path):
    gen = create_generator("cvae-tiny", num_classes=2, image_size=16, channels=3)
    gen.class_names = ["dark", "light"]
    mix = SyntheticMix(str(gen.save(tmp_path / "ckpt")), p=1.0, n_per_class=2)
    out = A.Compose([mix], seed=0)(image=_blank(), label="dark")["image"]
    assert out.shape == (16, 16, 3) and mix.pool.meta["class_names"] == ["dark", "light"]


def test_a_saved_pipeline_loads_without_its_pool_and_fails_clearly_on_first_use(named_pool, tmp_path):
    saved = tmp_path / "pipeline.json"
    A.save(A.Compose([SyntheticMix(str(named_pool), p=1.0), A.HorizontalFlip()]), str(saved))
    moved = shutil.move(str(named_pool), str(tmp_path / "elsewhere"))
    pipeline = A.load(str(saved))  # the pool is not here: loading does not look for it
    with pytest.raises(FileNotFoundError, match=f"the pool '{named_pool}' does not exist on this machine"):
        pipeline(image=_blank(), label=0)
    shutil.move(moved, str(named_pool))  # back in place: the same loaded pipeline works
    assert pipeline(image=_blank(), label=0)["image"].mean() == 10


def _fresh_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_a_saved_pipeline_loads_in_a_fresh_python(named_pool, tmp_path):
    A.save(A.Compose([SyntheticMix(str(named_pool), p=1.0)]), str(tmp_path / "pipeline.json"))
    run = ("import numpy as np{}\n"
           "p = {}\n"
           "print(int(p(image=np.zeros((16, 16, 3), np.uint8), label='Uninfected')['image'].mean()))")
    # albumentations first, then a bare `import synthaug`: A.load finds SyntheticMix
    both = _fresh_python(run.format("; import albumentations as A; import synthaug",
                                    "A.load('pipeline.json')"), tmp_path)
    assert both.returncode == 0 and both.stdout.strip() == "240", both.stderr[-2000:]
    # synthaug.load_pipeline alone, in any order
    helper = _fresh_python(run.format("; import synthaug", "synthaug.load_pipeline('pipeline.json')"), tmp_path)
    assert helper.returncode == 0 and helper.stdout.strip() == "240", helper.stderr[-2000:]
    (tmp_path / "other.json").write_text(json.dumps({"__version__": "2.0.8", "transform": {
        "__class_fullname__": "someone.Else", "p": 1.0}}))
    with pytest.raises(ValueError, match="names the transform 'someone.Else'"):
        synthaug.load_pipeline(tmp_path / "other.json")


def test_synthetic_dataset_has_target_transform_and_class_to_idx():
    class Real(TensorDataset):
        classes = ["Parasitized", "Uninfected"]

    real = Real(torch.zeros(6, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1, 0, 1, 0, 1]))
    pool = SyntheticPool(np.full((4, 3, 8, 8), 200, np.uint8), np.array([0, 0, 1, 1]), 2)
    ds = SyntheticDataset(pool, 0.25, real=real, target_transform=lambda y: ds.classes[y])
    assert ds.class_to_idx == {"Parasitized": 0, "Uninfected": 1}
    assert [ds[i][1] for i in range(len(ds))] == [ds.classes[int(t)] for t in ds.targets]
    with pytest.raises(ValueError, match="target_transform=3 must be a callable"):
        SyntheticDataset(pool, 0.25, real=real, target_transform=3)
