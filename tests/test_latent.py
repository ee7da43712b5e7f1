"""synthaug.latent: encode / decode, inversion, interpolation, concept vectors, anomaly scores."""
from __future__ import annotations

import pytest
import torch

from synthaug import latent
from synthaug.generators import GeneratorTrainConfig, create_generator, list_generators, train_generator

SIZE = 16


def tiny(name: str = "cvae-tiny", **options):
    torch.manual_seed(0)
    from tests.test_generators import SMALL_OPTIONS

    return create_generator(name, num_classes=2, image_size=32, channels=3, **{**SMALL_OPTIONS.get(name, {}), **options})


@pytest.fixture(scope="module")
def trained_cvae(malaria32):
    """A cvae-tiny trained briefly on real cells (so encode / decode mean something)."""
    torch.manual_seed(0)
    gen = create_generator("cvae-tiny", num_classes=2, image_size=32, channels=3)
    subset = malaria32.train.subset(torch.arange(0, len(malaria32.train), 7).tolist())
    return train_generator(gen, subset, config=GeneratorTrainConfig(steps=150, batch_size=32, lr=2e-3, log_every=0,
                                                                     checkpoint_every=0, sample_every=0))


def real_batch(splits, n=16):
    items = [splits.val[i] for i in range(0, len(splits.val), max(1, len(splits.val) // n))][:n]
    return torch.stack([x for x, _ in items]), torch.tensor([int(y) for _, y in items])


def test_encode_decode_round_trip_beats_a_random_code(trained_cvae, malaria32):
    x, y = real_batch(malaria32)
    z = latent.encode(trained_cvae, x, y)
    assert z.shape == (len(x), trained_cvae.latent_dim) and z.dtype == torch.float32
    recon = latent.decode(trained_cvae, z, y)
    assert recon.dtype == torch.uint8 and recon.shape == x.shape
    random = latent.decode(trained_cvae, torch.randn(len(x), trained_cvae.latent_dim,
                                                     generator=torch.Generator().manual_seed(0)), y)
    err = (recon.float() - x.float()).abs().mean()
    err_random = (random.float() - x.float()).abs().mean()
    assert err < err_random


def test_encode_accepts_float_and_one_label(trained_cvae, malaria32):
    x, _ = real_batch(malaria32, 4)
    a = latent.encode(trained_cvae, x, 1)
    b = latent.encode(trained_cvae, x.float() / 255, torch.ones(4, dtype=torch.long))
    assert torch.allclose(a, b, atol=1e-5)


def test_interpolation_ends_match_the_codes(trained_cvae):
    g = torch.Generator().manual_seed(1)
    za, zb = torch.randn(trained_cvae.latent_dim, generator=g), torch.randn(trained_cvae.latent_dim, generator=g)
    for method in ("slerp", "linear"):
        frames = latent.interpolate(trained_cvae, za, zb, label=1, steps=5, method=method)
        assert frames.shape == (5, 3, 32, 32) and frames.dtype == torch.uint8
        assert torch.equal(frames[0], latent.decode(trained_cvae, za, [1])[0])
        assert torch.equal(frames[-1], latent.decode(trained_cvae, zb, [1])[0])
        assert not torch.equal(frames[0], frames[2])


def test_interpolation_between_images(trained_cvae, malaria32):
    x, y = real_batch(malaria32, 2)
    frames = latent.interpolate(trained_cvae, x[0], x[1], label=0, steps=4)
    assert frames.shape == (4, 3, 32, 32)


def test_concept_vector_moves_healthy_codes_towards_infected(trained_cvae, malaria32):
    x, y = real_batch(malaria32, 32)
    assert set(y.tolist()) == {0, 1}
    v = latent.concept_vector(trained_cvae, x, y, target=1, source=0)
    assert v.shape == (trained_cvae.latent_dim,) and v.norm() > 0
    z0 = latent.encode(trained_cvae, x[y == 0], 0).mean(dim=0)
    z1 = latent.encode(trained_cvae, x[y == 1], 0).mean(dim=0)
    assert torch.allclose(z0 + v, z1, atol=1e-5)
    frames = latent.apply_concept(trained_cvae, x[y == 0][0], 0, v, strengths=(0.0, 1.0, 2.0))
    assert frames.shape == (3, 3, 32, 32)
    assert not torch.equal(frames[0], frames[2])
    # strength 0 is the plain reconstruction
    assert torch.equal(frames[0], latent.decode(trained_cvae, latent.encode(trained_cvae, x[y == 0][:1], 0), [0])[0])


def test_anomaly_score_ranks_noise_above_real_cells(trained_cvae, malaria32):
    x, y = real_batch(malaria32, 16)
    noise = torch.randint(0, 256, x.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    real_scores = latent.anomaly_score(trained_cvae, x, y)
    noise_scores = latent.anomaly_score(trained_cvae, noise, y)
    assert real_scores.shape == (16,) and torch.isfinite(real_scores).all()
    assert noise_scores.min() > real_scores.max()
    again = latent.anomaly_score(trained_cvae, x, y, batch_size=5)  # deterministic, batch size aside
    assert torch.allclose(real_scores, again, rtol=1e-4, atol=1e-7)


def test_invert_finds_the_code_of_a_generated_image():
    """The latent search (used for GANs) recovers an image generated from a known code."""
    gen = tiny()
    target_code = gen.sample_noise(3, generator=torch.Generator().manual_seed(5))
    labels = torch.tensor([0, 1, 0])
    with torch.no_grad():
        gen.eval()
        target = gen.generate(target_code, labels)
    before = {k: v.clone() for k, v in gen.state_dict().items()}
    _, residual_short = latent.invert(gen, target, labels, steps=2, restarts=1)
    codes, residual = latent.invert(gen, target, labels, steps=150, restarts=2)
    assert codes.shape == (3, gen.latent_dim)
    assert (residual < residual_short).all()
    assert residual.max() < 0.02
    assert all(torch.equal(before[k], v) for k, v in gen.state_dict().items())  # weights untouched
    assert all(p.requires_grad for p in gen.parameters())


def test_principal_directions_are_orthonormal(trained_cvae, malaria32):
    x, y = real_batch(malaria32, 16)
    dirs, std = latent.principal_directions(trained_cvae, x, y, k=3)
    assert dirs.shape == (3, trained_cvae.latent_dim)
    assert torch.allclose(dirs @ dirs.T, torch.eye(3), atol=1e-4)
    assert (std[:-1] >= std[1:]).all()


@pytest.mark.parametrize("name", list_generators())
def test_every_generator_interpolates(name):
    """Decoding codes works for every registered generator (GANs through generate)."""
    gen = tiny(name)
    g = torch.Generator().manual_seed(0)
    za, zb = gen.sample_noise(2, generator=g)
    frames = latent.interpolate(gen, za, zb, label=1, steps=3)
    assert frames.shape == (3, 3, 32, 32)


def test_bad_inputs():
    gen = tiny()
    with pytest.raises(ValueError, match="image_size=32"):
        latent.encode(gen, torch.zeros(2, 3, 16, 16, dtype=torch.uint8), [0, 1])
    with pytest.raises(ValueError, match="labels are needed"):
        latent.encode(gen, torch.zeros(2, 3, 32, 32, dtype=torch.uint8), None)
    with pytest.raises(ValueError, match="latent_dim"):
        latent.decode(gen, torch.zeros(2, gen.latent_dim + 1), [0, 1])
    with pytest.raises(ValueError, match="method"):
        latent.interpolate(gen, torch.zeros(gen.latent_dim), torch.zeros(gen.latent_dim), label=0, method="cubic")
    with pytest.raises(ValueError, match="steps"):
        latent.interpolate(gen, torch.zeros(gen.latent_dim), torch.zeros(gen.latent_dim), label=0, steps=1)
    with pytest.raises(ValueError, match="no image of target class 1"):
        latent.concept_vector(gen, torch.zeros(2, 3, 32, 32, dtype=torch.uint8), [0, 0], target=1, source=0)
    with pytest.raises(ValueError, match="uint8"):
        latent.encode(gen, torch.zeros(2, 3, 32, 32, dtype=torch.int32), [0, 1])
