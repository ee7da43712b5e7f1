"""SyntheticMixV2, the torchvision v2 twin of SyntheticMix: same options, pool and labels; tv_tensors in, the
same kind out; the same output as the albumentations SyntheticMix wherever the choice is not random."""
from __future__ import annotations

import pickle

import albumentations as A
import numpy as np
import PIL.Image
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from synthaug import SyntheticMix, SyntheticMixV2, SyntheticPool

CLASSES = ["Parasitized", "Uninfected"]


def one_per_class(tmp_path, *, size: int = 16, channels: int = 3) -> str:
    """A pool of one textured image per class: which image a call picks is not random."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, channels, size, size), dtype=np.uint8)
    pool = SyntheticPool(images, np.array([0, 1]), 2, {"class_names": CLASSES})
    return str(pool.save(tmp_path / f"pool{channels}"))


@pytest.fixture()
def pool_path(tmp_path) -> str:
    return one_per_class(tmp_path)


@pytest.mark.parametrize("label", [0, 1, "Uninfected", "parasitized"])
@pytest.mark.parametrize("channels_in", [3, 1])
def test_same_output_as_the_albumentations_transform(tmp_path, label, channels_in):
    path = one_per_class(tmp_path, channels=1 if channels_in == 1 else 3)
    hwc = np.zeros((16, 16, channels_in), np.uint8)
    albu = A.Compose([SyntheticMix(path, p=1.0)], seed=0)(image=hwc[..., 0] if channels_in == 1 else hwc,
                                                          label=label)["image"]
    image, out_label = SyntheticMixV2(path, p=1.0)(torch.zeros(channels_in, 16, 16, dtype=torch.uint8), label)
    assert out_label == label
    expected = albu[None] if channels_in == 1 else albu.transpose(2, 0, 1)
    assert image.dtype == torch.uint8 and np.array_equal(image.numpy(), expected)


def test_gray_pool_into_rgb_images_matches_too(tmp_path):
    path = one_per_class(tmp_path, channels=1)
    albu = A.Compose([SyntheticMix(path, p=1.0)], seed=0)(image=np.zeros((16, 16, 3), np.uint8), label=1)["image"]
    image, _ = SyntheticMixV2(path, p=1.0)(torch.zeros(3, 16, 16, dtype=torch.uint8), 1)
    assert np.array_equal(image.numpy(), albu.transpose(2, 0, 1))  # 1 -> 3 channels by repetition in both


def test_p_zero_returns_the_sample_unchanged_in_both(pool_path):
    image = torch.full((3, 16, 16), 7, dtype=torch.uint8)
    assert SyntheticMixV2(pool_path, p=0.0)(image, 1)[0] is image
    albu = A.Compose([SyntheticMix(pool_path, p=0.0)])(image=np.full((16, 16, 3), 7, np.uint8), label=1)["image"]
    assert (albu == 7).all()


def test_tv_tensors_plain_tensors_pil_and_dicts_keep_their_kind(pool_path):
    mix = SyntheticMixV2(pool_path, p=1.0)
    out, label = mix(tv_tensors.Image(torch.zeros(3, 16, 16, dtype=torch.uint8)), torch.tensor(1))
    assert type(out) is tv_tensors.Image and label.item() == 1
    floats, _ = mix(torch.zeros(3, 24, 20), 0)  # float in [0, 1], another size: resized, still float
    assert type(floats) is torch.Tensor and floats.dtype == torch.float32 and floats.shape == (3, 24, 20)
    assert 0 <= floats.min() and floats.max() <= 1 and floats.std() > 0
    pil, _ = mix(PIL.Image.new("L", (12, 10)), "Uninfected")
    assert isinstance(pil, PIL.Image.Image) and pil.mode == "L" and pil.size == (12, 10)
    sample = mix({"image": tv_tensors.Image(torch.zeros(3, 16, 16, dtype=torch.uint8)), "label": 0, "id": "a"})
    assert set(sample) == {"image", "label", "id"} and sample["image"].float().std() > 0


def test_composes_and_repeats_under_torch_manual_seed(tmp_path):
    labels = np.repeat([0, 1], 8)
    images = np.random.default_rng(1).integers(0, 256, (16, 3, 8, 8), dtype=np.uint8)
    path = str(SyntheticPool(images, labels, 2).save(tmp_path / "pool"))
    pipeline = v2.Compose([SyntheticMixV2(path, p=0.5), v2.ToDtype(torch.float32, scale=True)])

    def run() -> list[torch.Tensor]:
        torch.manual_seed(3)
        return [pipeline(torch.zeros(3, 8, 8, dtype=torch.uint8), i % 2)[0] for i in range(20)]

    first, again = run(), run()
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    replaced = [bool(x.std() > 0) for x in first]
    assert 0 < sum(replaced) < len(replaced)  # p=0.5 over 20 draws: some replaced, some kept
    copy = pickle.loads(pickle.dumps(pipeline))  # for DataLoader workers: the pool is re-mapped, not copied
    torch.manual_seed(3)
    assert torch.equal(copy(torch.zeros(3, 8, 8, dtype=torch.uint8), 0)[0], first[0])


def test_bad_options_and_samples_are_refused_in_one_line(pool_path, tmp_path):
    with pytest.raises(ValueError, match=r"^SyntheticMixV2: p=2 must be a number in \[0, 1\] \(p is the probability"):
        SyntheticMixV2(pool_path, p=2)
    with pytest.raises(ValueError, match="n_per_class=4 only applies when pool is a generator checkpoint"):
        SyntheticMixV2(pool_path, n_per_class=4)
    mix = SyntheticMixV2(pool_path, p=1.0)
    with pytest.raises(ValueError, match="needs each image's class"):
        mix(torch.zeros(3, 16, 16, dtype=torch.uint8))
    with pytest.raises(ValueError, match="no matching Mask"):
        mix(torch.zeros(3, 16, 16, dtype=torch.uint8), tv_tensors.Mask(torch.zeros(16, 16)), 0)
    with pytest.raises(ValueError, match=r"unknown class 'Parasitised' \(did you mean 'Parasitized'\?\)"):
        mix(torch.zeros(3, 16, 16, dtype=torch.uint8), "Parasitised")
    missing = SyntheticMixV2(str(tmp_path / "elsewhere"), p=1.0)  # built anywhere, fails on first use
    with pytest.raises(FileNotFoundError, match="does not exist on this machine"):
        missing(torch.zeros(3, 16, 16, dtype=torch.uint8), 0)
