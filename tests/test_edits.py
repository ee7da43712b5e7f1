"""EditSource: label-preserving edits of real images (SDEdit with the ddpm, latent steps with a VAE)."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from synthaug import SyntheticDataset
from synthaug.generators import create_generator
from synthaug.mix.edits import EditSource
from synthaug.mix.pool import generate_pool, weights_fingerprint

TINY_DDPM = {"base_width": 8, "channel_mults": (1, 2), "sample_steps": 10}


class Real(TensorDataset):
    classes = ["a", "b"]


def real_set(n: int = 12, size: int = 16, seed: int = 0) -> Real:
    """Class 0: dark images, class 1: bright ones (uint8 (3, size, size))."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    base = torch.where(labels == 1, 200, 40).view(n, 1, 1, 1)
    images = (base + torch.randint(-20, 20, (n, 3, size, size), generator=g)).clamp(0, 255).to(torch.uint8)
    real = Real(images, labels)
    real.targets = labels.numpy()
    return real


def ddpm(size: int = 16):
    torch.manual_seed(0)
    return create_generator("ddpm", num_classes=2, image_size=size, channels=3, **TINY_DDPM)


def cvae(size: int = 16):
    torch.manual_seed(0)
    return create_generator("cvae-tiny", num_classes=2, image_size=size, channels=3)


@pytest.mark.parametrize("make", [ddpm, cvae], ids=["ddpm", "cvae"])
def test_sample_contract_and_reproducible(make):
    real = real_set()
    source = EditSource(make(), real, strength=0.3, per_image=2, seed=1)
    labels = torch.tensor([0, 1, 1, 0, 1])
    a = source.sample(5, labels, generator=torch.Generator().manual_seed(3))
    sources_a = source.last_sources.copy()
    b = source.sample(5, labels, generator=torch.Generator().manual_seed(3))
    assert a.dtype == torch.uint8 and a.shape == (5, 3, 16, 16)
    assert torch.equal(a, b)
    # every edit starts from a real image of the requested class
    assert np.array_equal(real.targets[sources_a], labels.numpy())
    assert (source.num_classes, source.channels, source.image_size) == (2, 3, 16)
    assert source.generator_name in {"edit-ddpm", "edit-cvae-tiny"}


def test_sdedit_strength_orders_the_distance_to_the_source():
    """A mild edit stays nearer its source than a strong one; strength 1 is a fresh sample."""
    real = real_set()
    gen = ddpm()
    labels = torch.tensor(real.targets[:6])
    images = real.tensors[0][:6]
    noise = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    dist = []
    for strength in (0.05, 0.5, 1.0):
        out = gen.edit(images, labels, strength=strength, noise=noise)
        assert out.shape == (6, 3, 16, 16) and 0 <= out.min() and out.max() <= 1
        dist.append((out - images.float() / 255).abs().mean().item())
    assert dist[0] < dist[1] < dist[2] + 1e-9
    assert dist[0] < 0.1  # at 5% of the schedule the (untrained) model keeps the image
    unchanged = gen.edit(images, labels, strength=0.0, noise=noise)
    assert torch.allclose(unchanged, images.float() / 255, atol=1 / 255)


def test_per_image_bounds_the_distinct_edits():
    real = real_set(n=4)
    source = EditSource(cvae(), real, strength=0.5, per_image=2)
    out = source.sample(200, torch.zeros(200, dtype=torch.long), generator=torch.Generator().manual_seed(0))
    distinct = {bytes(x.numpy().tobytes()) for x in out}
    assert len(distinct) <= 2 * 2  # two real images of class 0, two variants each
    assert len(distinct) >= 3


def test_plugs_into_synthetic_dataset_and_pool():
    real = real_set()
    source = EditSource(cvae(), real, strength=0.3)
    ds = SyntheticDataset(source, 0.25, real=real, seed=0)
    n_syn = sum(ds.is_synthetic(i) for i in range(len(ds)))
    assert n_syn == 4 and len(ds) == 16
    images, labels = next(iter(DataLoader(ds, batch_size=len(ds), shuffle=True)))
    assert images.dtype == torch.uint8 and images.shape[1:] == (3, 16, 16)
    pool = generate_pool(source, np.array([0, 1, 0]), seed=0, progress=False)
    assert pool.images.shape == (3, 3, 16, 16)
    # the pool's identity changes with the edit settings
    other = EditSource(source.gen, real, strength=0.6)
    assert weights_fingerprint(source) != weights_fingerprint(other)


def test_synthetic_mix_takes_an_edit_source():
    from synthaug import SyntheticMix

    real = real_set()
    mix = SyntheticMix(EditSource(cvae(), real, strength=0.3), p=1.0, n_per_class=4, seed=0)
    image = np.zeros((16, 16, 3), dtype=np.uint8)
    out = mix(image=image, label=1)
    assert out["label"] in (0, 1) and out["image"].shape == (16, 16, 3)


@pytest.mark.parametrize("kwargs, match", [
    ({"strength": 0}, "strength=0"),
    ({"strength": 1.5}, "strength=1.5"),
    ({"per_image": 0}, "per_image=0"),
    ({"seed": -1}, "seed=-1"),
])
def test_bad_options_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EditSource(cvae(), real_set(), **kwargs)


def test_refuses_what_cannot_edit_or_be_edited():
    gan = create_generator("dcgan", num_classes=2, image_size=32, channels=3)
    with pytest.raises(TypeError, match="no encoder"):
        EditSource(gan, real_set())
    with pytest.raises(ValueError, match="ddpm settings"):
        EditSource(cvae(), real_set(), sample_steps=5)
    with pytest.raises(ValueError, match="empty"):
        EditSource(cvae(), Real(torch.zeros(0, 3, 16, 16, dtype=torch.uint8), torch.zeros(0, dtype=torch.long)))
    only_zeros = Real(torch.zeros(3, 3, 16, 16, dtype=torch.uint8), torch.zeros(3, dtype=torch.long))
    source = EditSource(cvae(), only_zeros)
    with pytest.raises(ValueError, match=r"no real image of class \['b'\]"):
        source.sample(2, torch.tensor([0, 1]))


def test_memorization_note_in_evaluation_text():
    from synthaug.quality.text import format_report

    row = {"fid": 1.0, "kid": 0.0, "precision": 1.0, "recall": 1.0}
    mem = {"overall": {"share": 0.9, "heldout_share": 0.05}, "per_class": {}, "quantile": 0.05,
           "note": "every image is an edit of a real training image"}
    result = {"extractor": {"recipe": {}}, "n": 8, "data": {"classes": []}, "memorization": mem, "cas": None,
              "fidelity": {"overall": row, "per_class": {}}}
    lines = format_report(result).splitlines()
    assert any(line.startswith("note: every image is an edit") for line in lines)


def test_edit_by_index_matches_sample():
    real = real_set()
    source = EditSource(cvae(), real, strength=0.4, per_image=3)
    out = source.sample(6, torch.tensor([1, 0, 1, 0, 1, 0]), generator=torch.Generator().manual_seed(0))
    again = torch.stack([source.edit([j], v)[0] for j, v in zip(*source.choose(
        torch.tensor([1, 0, 1, 0, 1, 0]), torch.Generator().manual_seed(0)))])
    assert torch.equal(out, again)
    with pytest.raises(ValueError, match="variants must be in"):
        source.edit([0], 3)
    with pytest.raises(ValueError, match="indices must be in"):
        source.edit([len(real)])
