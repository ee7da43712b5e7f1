"""SyntheticDataset at full strength: refresh, quotas, quality filters, disk pools, workers, distributed shares."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from synthaug import ClassifierFilter, ClassQuotas, SyntheticDataset, SyntheticPool, create_generator, load_pool
from synthaug.classifier import create_classifier, save_classifier
from synthaug.cli import main as cli


@pytest.fixture(scope="module")
def gen():
    torch.manual_seed(0)
    return create_generator("cvae-tiny", num_classes=2, image_size=28, channels=1)


@pytest.fixture(scope="module")
def real(breastmnist28):
    return breastmnist28.train  # 546 items, 1 x 28 x 28, classes malignant (147) / normal, benign (399)


# --------------------------------------------------------------------------- refresh
def test_refresh_changes_the_pool_every_n_epochs_and_is_deterministic(gen, real):
    ds = SyntheticDataset(gen, 0.3, real=real, refresh_every=2, seed=4)
    pools = {}
    for epoch in range(5):
        ds.set_epoch(epoch)
        pools[epoch] = ds.pool.clone()
    assert torch.equal(pools[0], pools[1]) and torch.equal(pools[2], pools[3])
    assert not torch.equal(pools[0], pools[2]) and not torch.equal(pools[2], pools[4])
    twin = SyntheticDataset(gen, 0.3, real=real, refresh_every=2, seed=4)
    twin.set_epoch(3)
    assert torch.equal(twin.pool, pools[3])
    ds.set_epoch(0)
    assert torch.equal(ds.pool, pools[0])
    # the epoch's composition (which items are synthetic, their labels) never changes
    assert np.array_equal(twin.synthetic_labels, ds.synthetic_labels)


def test_without_refresh_set_epoch_keeps_the_pool(gen, real):
    ds = SyntheticDataset(gen, 0.3, real=real)
    before = ds.pool.clone()
    ds.set_epoch(7)
    assert torch.equal(ds.pool, before)
    with pytest.raises(ValueError, match="epoch=-1"):
        ds.set_epoch(-1)
    with pytest.raises(ValueError, match="refresh_every=0"):
        SyntheticDataset(gen, 0.3, real=real, refresh_every=0)


# --------------------------------------------------------------------------- quotas
def test_class_quotas_give_exact_counts(gen, real):
    ds = SyntheticDataset(gen, None, real=real, label_distribution=ClassQuotas({"malignant": 7, 1: 3}))
    assert ds.num_synthetic == 10 and len(ds) == len(real) + 10
    assert np.bincount(ds.synthetic_labels, minlength=2).tolist() == [7, 3]
    assert ds.ratio == pytest.approx(10 / (len(real) + 10))
    with pytest.raises(ValueError, match="ratio=None"):
        SyntheticDataset(gen, 0.3, real=real, label_distribution=ClassQuotas({0: 1}))
    with pytest.raises(ValueError, match="unknown class 'benign'"):
        SyntheticDataset(gen, None, real=real, label_distribution=ClassQuotas({"benign": 1}))
    with pytest.raises(ValueError, match="integer >= 0"):
        SyntheticDataset(gen, None, real=real, label_distribution=ClassQuotas({0: -2}))


# --------------------------------------------------------------------------- quality filter
def test_quality_filter_keeps_only_accepted_images_and_reports_the_rate(gen, real):
    raw = SyntheticDataset(gen, 0.3, real=real, seed=1)
    cut = float(raw.pool.float().mean(dim=(1, 2, 3)).median())

    def _bright(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return images.float().mean(dim=(1, 2, 3)) > cut

    share = float(_bright(raw.pool, torch.as_tensor(raw.pool_labels)).float().mean())
    assert 0.05 < share < 0.95  # the filter bites on this generator
    ds = SyntheticDataset(gen, 0.3, real=real, seed=1, quality_filter=_bright)
    assert bool(_bright(ds.pool, torch.as_tensor(ds.pool_labels)).all())
    assert len(ds.pool) == ds.num_synthetic
    assert np.bincount(ds.pool_labels, minlength=2).tolist() == np.bincount(ds.synthetic_labels, minlength=2).tolist()
    report = ds.filter_report
    assert report["accepted"] == ds.num_synthetic and report["generated"] > report["accepted"]
    assert report["rejection_rate"] == pytest.approx(1 - report["accepted"] / report["generated"])
    assert "filter rejected" in repr(ds)
    again = SyntheticDataset(gen, 0.3, real=real, seed=1, quality_filter=_bright)
    assert torch.equal(again.pool, ds.pool)


def test_quality_filter_that_rejects_everything_fails_clearly(gen, real):
    with pytest.raises(ValueError, match="rejected too many"):
        SyntheticDataset(gen, 0.3, real=real, quality_filter=lambda x, y: torch.zeros(len(x), dtype=torch.bool),
                         max_filter_rounds=2)
    with pytest.raises(ValueError, match="shape"):
        SyntheticDataset(gen, 0.3, real=real, quality_filter=lambda x, y: torch.ones(3, dtype=torch.bool))


def test_classifier_filter_from_a_checkpoint(gen, real, tmp_path):
    torch.manual_seed(0)
    model = create_classifier("test_resnet", num_classes=2, channels=1)
    save_classifier(model, tmp_path / "clf", model_name="test_resnet", num_classes=2, channels=1, image_size=28)
    filt = ClassifierFilter(tmp_path / "clf", threshold=0.0)
    images = gen.sample(32)
    labels = torch.arange(32) % 2
    keep = filt(images, labels)
    probs = filt.probabilities(images)
    assert torch.equal(keep, probs.argmax(1) == labels)  # threshold 0: agreement alone decides
    strict = ClassifierFilter(tmp_path / "clf", threshold=1.0)
    assert not strict(images, labels).any() or bool((probs.max(1).values >= 1.0).any())
    with pytest.raises(ValueError, match="threshold=1.5"):
        ClassifierFilter(tmp_path / "clf", threshold=1.5)
    with pytest.raises(FileNotFoundError, match="not a synthaug classifier checkpoint"):
        ClassifierFilter(tmp_path / "nothing")


# --------------------------------------------------------------------------- pools on disk
@pytest.fixture(scope="module")
def pool_dir(gen, tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("ckpt") / "gen"
    gen.save(ckpt)
    out = tmp_path_factory.mktemp("pools") / "pool"
    assert cli(["sample", "--checkpoint", str(ckpt), "--n", "300", "--pool", str(out), "--seed", "5"]) == 0
    return out


def test_sample_pool_command_writes_a_memory_mapped_pool(pool_dir, gen):
    pool = load_pool(pool_dir)
    assert isinstance(pool.images, np.memmap) and pool.images.shape == (300, 1, 28, 28)
    assert np.bincount(pool.labels).tolist() == [150, 150]
    expected = gen.sample(256, torch.as_tensor(pool.labels[:256]), generator=torch.Generator().manual_seed(5))
    assert np.array_equal(pool.images[:256], expected.numpy())
    with pytest.raises(FileExistsError):
        pool.save(pool_dir)  # never overwritten


def test_dataset_from_a_disk_pool_reads_without_generating(pool_dir, real):
    pool = load_pool(pool_dir)
    ds = SyntheticDataset(str(pool_dir), 0.3, real=real, seed=2)
    by_label = {c: {bytes(pool.images[i]) for i in pool.indices_of(c)} for c in (0, 1)}
    for i in range(ds.num_real, len(ds)):
        image, label = ds[i]
        assert image.dtype == torch.uint8 and image.shape == (1, 28, 28)
        assert bytes(image.numpy()) in by_label[label]
    ds.set_epoch(1)  # without refresh_every: the same draw
    with pytest.raises(ValueError, match="pool_size"):
        SyntheticDataset(str(pool_dir), 0.3, real=real, pool_size=10)


def test_disk_pool_refresh_draws_other_images(pool_dir, real):
    ds = SyntheticDataset(str(pool_dir), 0.1, real=real, refresh_every=1, seed=2)
    first = [bytes(ds[i][0].numpy()) for i in range(ds.num_real, len(ds))]
    ds.set_epoch(1)
    second = [bytes(ds[i][0].numpy()) for i in range(ds.num_real, len(ds))]
    assert first != second


def test_pool_missing_a_class_is_refused(real):
    images = np.zeros((4, 1, 28, 28), dtype=np.uint8)
    pool = SyntheticPool(images, np.zeros(4, dtype=np.int64), 2)
    with pytest.raises(ValueError, match="no image of class 1"):
        SyntheticDataset(pool, 0.3, real=real, label_distribution="balanced")


def test_disk_pool_is_converted_to_the_real_format(pool_dir, malaria32):
    real = malaria32.train.subset(np.arange(100))  # 3 x 32 x 32 real cells, 1 x 28 x 28 pool
    ds = SyntheticDataset(str(pool_dir), 0.3, real=real)
    image, _ = ds[len(ds) - 1]
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8


def test_workers_read_the_same_items(pool_dir, real):
    ds = SyntheticDataset(str(pool_dir), 0.3, real=real, seed=3)
    batches0 = list(DataLoader(ds, batch_size=64, num_workers=0))
    batches2 = list(DataLoader(ds, batch_size=64, num_workers=2))
    for (x0, y0), (x2, y2) in zip(batches0, batches2):
        assert torch.equal(x0, x2) and torch.equal(y0, y2)


# --------------------------------------------------------------------------- distributed
SHARE_SCRIPT = textwrap.dedent("""
    import hashlib, json, sys
    import torch, synthaug
    from torch.utils.data import DataLoader, DistributedSampler
    rank, root, ckpt = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    real = synthaug.load_dataset("medmnist:breastmnist", root=root, image_size=28).train
    ds = synthaug.SyntheticDataset(ckpt, 0.3, real=real, seed=9, refresh_every=1)
    sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=0, drop_last=False)
    out = {}
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        ds.set_epoch(epoch)
        indices = list(sampler)
        items = [ds[i] for i in indices]
        out[epoch] = [[i, hashlib.md5(x.numpy().tobytes()).hexdigest(), y] for i, (x, y) in zip(indices, items)]
    print(json.dumps(out))
""")


def test_two_process_shares_are_disjoint_complete_and_consistent(gen, real, data_root, tmp_path):
    ckpt = tmp_path / "gen"
    gen.save(ckpt)
    shares = []
    for rank in (0, 1):
        proc = subprocess.run([sys.executable, "-c", SHARE_SCRIPT, str(rank), str(data_root), str(ckpt)],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        shares.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    reference = SyntheticDataset(str(ckpt), 0.3, real=real, seed=9, refresh_every=1)
    n = len(reference)
    for epoch in ("0", "1"):
        a, b = ({row[0] for row in s[epoch]} for s in shares)
        assert not (a & b) and a | b == set(range(n))  # disjoint and complete (n is even or padded once)
        reference.set_epoch(int(epoch))
        import hashlib

        for share in shares:
            for i, digest, label in share[epoch]:
                x, y = reference[i]
                assert digest == hashlib.md5(x.numpy().tobytes()).hexdigest() and label == y


def test_workers_get_the_pool_not_the_generator(gen, real, tmp_path):
    import pickle

    from synthaug import SyntheticMix

    ds = SyntheticDataset(gen, 0.3, real=real, refresh_every=1)
    copy = pickle.loads(pickle.dumps(ds))
    assert copy._gen is None and torch.equal(copy.pool, ds.pool)
    assert torch.equal(copy[len(ds) - 1][0], ds[len(ds) - 1][0])
    with pytest.raises(RuntimeError, match="main process"):
        copy.set_epoch(1)  # a copy cannot regenerate; the main process refreshes
    gen.save(tmp_path / "ckpt")
    mix = SyntheticMix(str(tmp_path / "ckpt"), p=1.0, n_per_class=4)
    # the pool lives in the transform's MixPool (synthaug.mix.transform_pool), shared with the torchvision v2 twin
    assert mix.__getstate__()["_mix"].__getstate__()["_pool"] is None  # pickling never samples (issue 15)
    state = mix.prepare().__getstate__()["_mix"].__getstate__()
    assert state["_pool"] is not None and len(state["_pool"]) == 8  # sampled by prepare(), in the main process
