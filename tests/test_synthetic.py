"""SyntheticDataset: real items plus a ratio of generated ones, in the real items' format."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import synthaug
from synthaug import SyntheticDataset, create_generator


def tiny(*, num_classes: int = 2, image_size: int = 32, channels: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    return create_generator("cvae-tiny", num_classes=num_classes, image_size=image_size, channels=channels)


@pytest.fixture(scope="module")
def gen():
    return tiny()


@pytest.fixture(scope="module")
def real(malaria32):
    """500 real training cells at 32 px: 400 Parasitized, 100 Uninfected (an unbalanced set)."""
    train = malaria32.train
    t = train.targets
    idx = np.concatenate([np.flatnonzero(t == 0)[::7][:400], np.flatnonzero(t == 1)[::11][:100]])
    assert len(idx) == 500
    return train.subset(np.sort(idx))


def synthetic_labels(ds) -> np.ndarray:
    return np.array([ds[i][1] for i in range(ds.num_real, len(ds))], dtype=np.int64)


def test_real_fixture_is_unbalanced(real):
    assert real.class_counts().tolist() == [400, 100]


# --------------------------------------------------------------------------- length and ratio
@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.5, 0.9])
def test_length_follows_ratio(gen, real, ratio):
    ds = SyntheticDataset(gen, ratio, real=real)
    assert len(ds) == round(len(real) / (1 - ratio))
    n_syn = len(ds) - len(real)
    assert ds.num_synthetic == n_syn and ds.num_real == len(real)
    assert abs(n_syn - ratio * len(ds)) <= 1
    assert sum(ds.is_synthetic(i) for i in range(len(ds))) == n_syn
    assert not any(ds.is_synthetic(i) for i in range(len(real)))
    assert len(ds.targets) == len(ds) and len(ds.groups) == len(ds)


def test_ratio_zero_is_the_real_data(gen, real):
    ds = SyntheticDataset(gen, 0.0, real=real)
    assert len(ds) == len(real) and ds.num_synthetic == 0
    for i in range(len(real)):
        (x, y), (rx, ry) = ds[i], real[i]
        assert torch.equal(x, rx) and y == ry
    np.testing.assert_array_equal(ds.targets, real.targets)
    np.testing.assert_array_equal(ds.groups, real.groups)
    with pytest.raises(IndexError):
        ds[len(real)]


def test_is_synthetic_and_indexing(gen, real):
    ds = SyntheticDataset(gen, 0.3, real=real)
    assert ds.is_synthetic(len(real)) and not ds.is_synthetic(len(real) - 1)
    assert ds.is_synthetic(-1) and not ds.is_synthetic(0)
    assert torch.equal(ds[-1][0], ds[len(ds) - 1][0])
    for bad in (len(ds), -len(ds) - 1):
        with pytest.raises(IndexError):
            ds[bad]
        with pytest.raises(IndexError):
            ds.is_synthetic(bad)
    # the real items come first, in order, untouched
    for i in (0, 17, len(real) - 1):
        assert torch.equal(ds[i][0], real[i][0]) and ds[i][1] == real[i][1]
    groups = ds.groups
    assert (groups[len(real):] == "synthetic").all()
    np.testing.assert_array_equal(groups[: len(real)], real.groups)
    np.testing.assert_array_equal(ds.targets[len(real):], synthetic_labels(ds))


@pytest.mark.parametrize("ratio", [-0.1, 1, 1.0, 1.5, float("nan"), float("inf"), True, False, "0.3", None])
def test_bad_ratio(gen, real, ratio):
    with pytest.raises(ValueError, match="ratio"):
        SyntheticDataset(gen, ratio, real=real)


# --------------------------------------------------------------------------- label distributions
def test_match_follows_real_frequencies(gen, real):
    ds = SyntheticDataset(gen, 0.5, real=real, label_distribution="match")
    counts = np.bincount(synthetic_labels(ds), minlength=2)
    expected = ds.num_synthetic * real.class_counts() / len(real)  # 400:100
    assert counts.sum() == ds.num_synthetic
    assert (np.abs(counts - expected) < 1).all(), (counts, expected)


def test_match_is_the_default(gen, real):
    a = SyntheticDataset(gen, 0.3, real=real)
    b = SyntheticDataset(gen, 0.3, real=real, label_distribution="match")
    np.testing.assert_array_equal(a.targets, b.targets)


@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.9])
def test_balanced(gen, real, ratio):
    ds = SyntheticDataset(gen, ratio, real=real, label_distribution="balanced")
    counts = np.bincount(synthetic_labels(ds), minlength=2)
    assert counts.sum() == ds.num_synthetic
    assert counts.max() - counts.min() <= 1


@pytest.mark.parametrize(
    ("weights", "share0"),
    [({0: 3, 1: 1}, 0.75), ({"Parasitized": 1, "Uninfected": 3}, 0.25), ({"Uninfected": 2.5}, 0.0),
     ({0: 1.0, "Uninfected": 0}, 1.0), ({"0": 1, "1": 1}, 0.5)],
)
def test_dict_weights(gen, real, weights, share0):
    ds = SyntheticDataset(gen, 0.5, real=real, label_distribution=weights)
    counts = np.bincount(synthetic_labels(ds), minlength=2)
    assert counts.sum() == ds.num_synthetic
    assert abs(counts[0] - share0 * ds.num_synthetic) < 1, counts


@pytest.mark.parametrize(
    ("distribution", "pattern"),
    [({"Healthy": 1}, "Healthy"), ({2: 1}, "2"), ({-1: 1}, "-1"), ({0: -1}, "-1"), ({0: float("nan")}, "nan"),
     ({0: 0, 1: 0}, "at least one"), ({0: "1"}, "weight"), ("uniform", "uniform"), (["match"], "match")],
)
def test_bad_label_distribution(gen, real, distribution, pattern):
    with pytest.raises(ValueError, match=pattern):
        SyntheticDataset(gen, 0.3, real=real, label_distribution=distribution)


# --------------------------------------------------------------------------- format and transform
def test_synthetic_items_have_the_real_format(gen, real):
    ds = SyntheticDataset(gen, 0.3, real=real)
    rx, _ = real[0]
    for i in range(len(real), len(ds), 37):
        x, y = ds[i]
        assert isinstance(x, torch.Tensor) and x.dtype == rx.dtype == torch.uint8
        assert x.shape == rx.shape == (3, 32, 32)
        assert type(y) is int and y in (0, 1)


def test_synthetic_images_come_from_the_generator(gen, real):
    ds = SyntheticDataset(gen, 0.3, real=real, seed=11)
    assert len(ds.pool) == ds.num_synthetic  # default: one pool image per synthetic item
    assert len(ds.pool) <= 256  # one sampling batch, so the pool is one call to gen.sample
    expected = gen.sample(len(ds.pool), torch.as_tensor(ds.pool_labels), generator=torch.Generator().manual_seed(11))
    assert torch.equal(ds.pool, expected)
    # every synthetic item is a pool image generated for that item's label, each used once
    pool = {(bytes(img.numpy()), int(lab)) for img, lab in zip(ds.pool, ds.pool_labels)}
    seen = set()
    for i in range(len(real), len(ds)):
        x, y = ds[i]
        key = (bytes(x.numpy()), y)
        assert key in pool
        seen.add(key)
    assert len(seen) == len(pool)


def test_transform_applies_to_real_and_synthetic(gen, real):
    def mark(x):
        assert x.dtype == torch.uint8  # the transform sees the same input format for both kinds
        return x.float() / 255

    plain = SyntheticDataset(gen, 0.3, real=real)
    ds = SyntheticDataset(gen, 0.3, real=real, transform=mark)
    for i in (0, len(real) - 1, len(real), len(ds) - 1):
        x, y = ds[i]
        px, py = plain[i]
        assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
        assert torch.equal(x, px.float() / 255) and y == py


def test_real_transform_warns(gen, malaria32):
    base = malaria32.train.subset(np.arange(0, 4000, 40))
    with_transform = base.subset(np.arange(len(base)))
    with_transform.transform = lambda x: x.float()
    with pytest.warns(UserWarning, match="transform"):
        SyntheticDataset(gen, 0.3, real=with_transform)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SyntheticDataset(gen, 0.3, real=base)


# --------------------------------------------------------------------------- determinism and the pool
def test_same_seed_same_items(gen, real):
    a = SyntheticDataset(gen, 0.3, real=real, seed=5)
    b = SyntheticDataset(gen, 0.3, real=real, seed=5)
    c = SyntheticDataset(gen, 0.3, real=real, seed=6)
    np.testing.assert_array_equal(a.targets, b.targets)
    assert all(torch.equal(a[i][0], b[i][0]) for i in range(len(real), len(a)))
    assert len(c) == len(a)
    assert not all(torch.equal(a[i][0], c[i][0]) for i in range(len(real), len(a)))


def test_small_pool_is_reused(gen, real):
    ds = SyntheticDataset(gen, 0.5, real=real, pool_size=10)
    assert ds.num_synthetic == 500
    assert len(ds.pool) == 10
    images = {bytes(ds[i][0].numpy()) for i in range(len(real), len(ds))}
    pool = {bytes(img.numpy()) for img in ds.pool}
    assert images <= pool and len(images) == len(pool)
    # the label distribution is still the requested one, and every item's image was made for its label
    counts = np.bincount(synthetic_labels(ds), minlength=2)
    assert (np.abs(counts - 500 * np.array([0.8, 0.2])) < 1).all()
    pool_label = {bytes(img.numpy()): int(lab) for img, lab in zip(ds.pool, ds.pool_labels)}
    for i in range(len(real), len(ds), 13):
        x, y = ds[i]
        assert pool_label[bytes(x.numpy())] == y


def test_pool_keeps_a_rare_class(gen, real):
    ds = SyntheticDataset(gen, 0.5, real=real, pool_size=2, label_distribution={0: 99, 1: 1})
    assert set(ds.pool_labels.tolist()) == {0, 1}
    assert set(synthetic_labels(ds).tolist()) == {0, 1}


@pytest.mark.parametrize("kwargs", [dict(pool_size=0), dict(pool_size=2.5), dict(batch_size=0)])
def test_bad_pool_options(gen, real, kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        SyntheticDataset(gen, 0.3, real=real, **kwargs)


def test_dataloader_workers_see_the_same_items(gen, malaria32):
    real = malaria32.train.subset(np.arange(0, 6000, 60))
    ds = SyntheticDataset(gen, 0.3, real=real, seed=3)

    def collect(workers):
        loader = DataLoader(ds, batch_size=16, shuffle=False, num_workers=workers)
        xs, ys = zip(*loader)
        return torch.cat(xs), torch.cat(ys)

    x0, y0 = collect(0)
    x2, y2 = collect(2)
    assert len(x0) == len(ds)
    assert torch.equal(x0, x2) and torch.equal(y0, y2)
    np.testing.assert_array_equal(y0.numpy(), ds.targets)


# --------------------------------------------------------------------------- generators and real data that differ
def test_class_count_mismatch(real):
    with pytest.raises(ValueError, match="3 classes"):
        SyntheticDataset(tiny(num_classes=3), 0.3, real=real)


def test_real_label_out_of_generator_range(gen):
    images = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)
    real = TensorDataset(images, torch.tensor([0, 1, 2, 1]))
    with pytest.raises(ValueError, match="label 2"):
        SyntheticDataset(gen, 0.3, real=real)


def test_checkpoint_path_as_generator(gen, real, tmp_path):
    path = gen.save(tmp_path / "ckpt")
    a = SyntheticDataset(gen, 0.3, real=real, seed=4)
    for source in (path, str(path)):
        b = SyntheticDataset(source, 0.3, real=real, seed=4)
        assert torch.equal(a.pool, b.pool)
        np.testing.assert_array_equal(a.targets, b.targets)
    with pytest.raises(FileNotFoundError):
        SyntheticDataset(tmp_path / "missing", 0.3, real=real)


def test_not_a_generator(real):
    with pytest.raises(TypeError, match="generator"):
        SyntheticDataset(object(), 0.3, real=real)


def test_without_real(gen):
    ds = SyntheticDataset(gen, length=10)
    assert len(ds) == 10 and ds.num_real == 0
    assert all(ds.is_synthetic(i) for i in range(10))
    labels = synthetic_labels(ds)
    assert np.bincount(labels, minlength=2).tolist() == [5, 5]
    x, y = ds[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.uint8
    assert ds.classes == ["0", "1"]
    assert len(SyntheticDataset(gen, length=0)) == 0


def test_without_real_dict_weights(gen):
    ds = SyntheticDataset(gen, length=9, label_distribution={1: 1})
    assert synthetic_labels(ds).tolist() == [1] * 9


@pytest.mark.parametrize("kwargs", [dict(length=-1), dict(length=2.0), dict(length=True)])
def test_bad_length(gen, kwargs):
    with pytest.raises(ValueError, match="length"):
        SyntheticDataset(gen, **kwargs)


def test_real_and_length_together(gen, real):
    with pytest.raises(ValueError, match="not both"):
        SyntheticDataset(gen, 0.3, real=real, length=10)
    with pytest.raises(ValueError, match="length"):
        SyntheticDataset(gen, 0.3)


def test_grayscale_28px_generator_with_rgb_32px_real(real):
    gray = tiny(image_size=28, channels=1)
    ds = SyntheticDataset(gray, 0.3, real=real)
    for i in range(len(real), len(ds), 23):
        x, _ = ds[i]
        assert x.shape == (3, 32, 32) and x.dtype == torch.uint8
        assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])  # grey in all three channels
    assert ds.pool.float().std() > 0


def test_rgb_32px_generator_with_grayscale_28px_real(gen, breastmnist28):
    real = breastmnist28.train
    ds = SyntheticDataset(gen, 0.2, real=real)
    assert len(ds) == round(546 / 0.8)
    x, y = ds[len(ds) - 1]
    assert x.shape == (1, 28, 28) and x.dtype == torch.uint8
    assert ds.classes == real.classes


def test_plain_torch_dataset_as_real(gen):
    images = torch.randint(0, 256, (30, 1, 16, 16), dtype=torch.uint8)
    labels = torch.tensor([0] * 20 + [1] * 10)
    ds = SyntheticDataset(gen, 0.5, real=TensorDataset(images, labels))
    assert len(ds) == 60
    x, _ = ds[59]
    assert x.shape == (1, 16, 16) and x.dtype == torch.uint8
    counts = np.bincount(synthetic_labels(ds), minlength=2)
    assert counts.tolist() == [20, 10]
    assert ds.classes == ["0", "1"]


def test_repr(gen, real):
    text = repr(SyntheticDataset(gen, 0.3, real=real))
    assert "real=500" in text and "synthetic=214" in text
