"""The GAN family (synthaug.generators: gan, infogan, blocks, losses): DiffAugment, EMA, losses, tricks, spectral norm, projection /
ACGAN conditioning, InfoGAN codes, and a short real training of each GAN on malaria cells."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from synthaug.generators import GeneratorTrainConfig, OptimizerStep, create_generator, load_generator, train_generator
from synthaug.generators.blocks import DIFFAUGMENT_OPS, diff_augment, has_spectral_norm, level_widths, parse_policy, to_unit
from synthaug.generators.gan import GAN
from synthaug.generators.losses import discriminator_loss, generator_loss, mutual_information_loss

GANS = ["dcgan", "cgan", "infogan"]
TINY = {"latent_dim": 16, "g_width": 8, "d_width": 8, "embed_dim": 4}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: see conftest.py


def build(name: str, *, seed: int = 0, size: int = 32, channels: int = 3, classes: int = 2, **options) -> GAN:
    torch.manual_seed(seed)
    return create_generator(name, num_classes=classes, image_size=size, channels=channels, **{**TINY, **options})


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(n: int = 8, size: int = 32, channels: int = 3, classes: int = 2):
    return torch.rand(n, channels, size, size, generator=seeded(0)), torch.arange(n) % classes


def train_steps(gen: GAN, steps: int = 3, lr: float = 1e-3) -> dict:
    gen.train()
    images, labels = batch()
    optimizers = gen.configure_optimizers(lr)
    losses = {}
    for i in range(steps):
        losses = gen.training_step(images, labels, optimizers, OptimizerStep(gen.generator_name, step=i + 1))
    return losses


# --------------------------------------------------------------------------- DiffAugment (blocks.py)
def signed_images(n: int = 6, channels: int = 3, size: int = 32) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=seeded(1)) * 2 - 1


@pytest.mark.parametrize("ops", [(op,) for op in DIFFAUGMENT_OPS] + [DIFFAUGMENT_OPS])
def test_diffaugment_shape_change_and_gradient(ops):
    x = signed_images().requires_grad_(True)
    torch.manual_seed(0)
    y = diff_augment(x, ops)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert not torch.equal(y, x), f"{ops} left the images unchanged"
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0 and torch.isfinite(x.grad).all()


def test_diffaugment_ops_do_what_they_say():
    x = signed_images() * 0.5 + 0.5  # in [0, 1]: no exact zeros
    torch.manual_seed(0)
    cut = diff_augment(x, ("cutout",))
    assert ((cut == 0).flatten(1).sum(1) > 0).all()  # a zeroed square in every image
    assert torch.equal(cut[cut != 0], x[cut != 0])    # and nothing else touched
    torch.manual_seed(1)
    moved = diff_augment(x, ("translation",))
    # a shift only moves pixels or pads with zeros: every value of a moved image is in the original or is 0
    assert set(moved.unique().tolist()) <= set(x.unique().tolist()) | {0.0}
    torch.manual_seed(2)
    color = diff_augment(x, ("color",))
    assert (color - x).flatten(1).abs().mean(1).min() > 0  # every image recoloured
    gray = signed_images(channels=1)
    torch.manual_seed(3)
    assert diff_augment(gray, DIFFAUGMENT_OPS).shape == gray.shape


def test_diffaugment_empty_policy_is_identity():
    assert parse_policy("", "dcgan") == () and parse_policy(None, "dcgan") == ()
    x = signed_images()
    assert diff_augment(x, parse_policy("", "dcgan")) is x
    assert parse_policy(" color , cutout ", "dcgan") == ("color", "cutout")
    # the model with diffaugment="" feeds D the images as they are
    gen = build("dcgan", diffaugment="")
    assert gen.policy == () and gen.augment(x) is x


def test_diffaugment_unknown_op_is_refused():
    with pytest.raises(ValueError, match=r"dcgan.*zoom.*color"):
        parse_policy("color,zoom", "dcgan")
    for name in GANS:
        with pytest.raises(ValueError, match=rf"{name}.*diffaugment.*zoom"):
            build(name, diffaugment="zoom")
        with pytest.raises(ValueError, match="diffaugment"):
            build(name, diffaugment=["color"])


def test_diffaugment_is_applied_to_real_and_fake_in_both_steps(monkeypatch):
    gen = build("dcgan")
    seen = []
    original = gen.augment
    monkeypatch.setattr(gen, "augment", lambda x: seen.append(x.requires_grad) or original(x))
    train_steps(gen, steps=1)
    # D step: real (no grad), detached fake (no grad); G step: fake (with grad)
    assert seen == [False, False, True]


# --------------------------------------------------------------------------- EMA
def test_ema_starts_as_g_then_lags_and_is_what_generate_uses():
    gen = build("dcgan")
    for (k, e), (_, g) in zip(gen.g_ema.state_dict().items(), gen.g.state_dict().items()):
        assert torch.equal(e, g), k
    assert all(not p.requires_grad for p in gen.g_ema.parameters())
    before = [p.detach().clone() for p in gen.g_ema.parameters()]
    g_before = [p.detach().clone() for p in gen.g.parameters()]
    train_steps(gen, steps=1)
    # the first update uses the warm-up decay min(0.999, 1 / 10) = 0.1
    assert gen.current_ema_decay() == pytest.approx(2 / 11)
    for e0, e1, g1, g0 in zip(before, gen.g_ema.parameters(), gen.g.parameters(), g_before):
        assert torch.allclose(e1, 0.1 * e0 + 0.9 * g1, atol=1e-6)
    train_steps(gen, steps=3)
    assert int(gen.ema_updates) == 4
    differ = [not torch.equal(e, g) for e, g in zip(gen.g_ema.parameters(), gen.g.parameters())]
    assert all(differ)
    gen.eval()
    noise, labels = gen.sample_noise(4, generator=seeded(0)), torch.tensor([0, 1, 0, 1])
    with torch.no_grad():
        out = gen.generate(noise, labels)
        assert torch.equal(out, to_unit(gen.g_ema(noise, labels)))
        assert not torch.allclose(out, to_unit(gen.g(noise, labels)))
    assert 0 <= out.min() and out.max() <= 1


def test_ema_stays_in_eval_mode():
    gen = build("cgan")
    gen.train()
    assert gen.training and gen.g.training and not gen.g_ema.training


def test_ema_off_generates_with_g():
    gen = build("dcgan", ema_decay=0.0)
    assert gen.g_ema is None
    assert not any(k.startswith("g_ema.") for k in gen.state_dict())
    train_steps(gen, steps=2)
    gen.eval()
    noise, labels = gen.sample_noise(3, generator=seeded(0)), torch.tensor([0, 1, 1])
    with torch.no_grad():
        assert torch.equal(gen.generate(noise, labels), to_unit(gen.g(noise, labels)))


def test_ema_is_in_the_checkpoint(tmp_path):
    gen = build("infogan")
    train_steps(gen, steps=2)
    assert any(k.startswith("g_ema.") for k in gen.state_dict()) and "ema_updates" in gen.state_dict()
    loaded = load_generator(gen.save(tmp_path / "ckpt"))
    assert int(loaded.ema_updates) == 2
    assert torch.equal(gen.sample(6, generator=seeded(3)), loaded.sample(6, generator=seeded(3)))


@pytest.mark.parametrize("decay", [-0.1, 1.0, "0.9", True])
def test_bad_ema_decay(decay):
    with pytest.raises(ValueError, match="ema_decay"):
        build("dcgan", ema_decay=decay)


# --------------------------------------------------------------------------- R1 and adaptive augmentation
def test_r1_is_lazy_and_counted():
    gen = build("cgan", r1_gamma=1.0, r1_every=2)
    gen.train()
    images, labels = batch()
    optimizers = gen.configure_optimizers(1e-3)
    due = []
    for i in range(5):
        terms = gen.training_step(images, labels, optimizers, OptimizerStep("cgan", step=i + 1))
        due.append("d_r1" in terms)
        if "d_r1" in terms:
            assert math.isfinite(float(terms["d_r1"])) and float(terms["d_r1"]) > 0
    assert due == [True, False, True, False, True]
    assert int(gen.d_steps) == 5


def test_r1_penalty_is_the_squared_gradient_norm_at_real_images():
    gamma, every = 2.0, 4
    gen = build("cgan", r1_gamma=gamma, r1_every=every, diffaugment="")
    gen.eval()  # spectral norm's power iteration and noise stay still between the two passes
    images, labels = batch()
    real = images * 2 - 1
    fake = torch.rand_like(real, generator=None) * 2 - 1
    noise = gen.sample_noise(len(real))
    with_r1 = gen.discriminator_terms(real, fake, labels, noise, r1=True)
    plain = gen.discriminator_terms(real, fake, labels, noise)
    x = real.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(gen.d.logits(gen.d.features(x, labels), labels).sum(), x)
    expected = 0.5 * gamma * every * grad.square().sum((1, 2, 3)).mean()
    assert float(with_r1["d_r1"].detach()) == pytest.approx(float(expected), rel=1e-4)
    assert float((with_r1["d_loss"] - plain["d_loss"]).detach()) == pytest.approx(float(expected), rel=1e-4, abs=1e-6)
    # the penalty trains D: it has a gradient with respect to D's weights
    params = [p for p in gen.discriminator_parameters() if p.requires_grad]
    grads = torch.autograd.grad(with_r1["d_r1"], params, allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_ada_probability_follows_the_overfitting_heuristic():
    gen = build("cgan", ada_target=0.6, ada_kimg=0.1)  # p moves by n / 100 per update
    assert float(gen.ada_p) == 0.0
    confident = torch.ones(10)  # E[sign(D(real))] = 1 > 0.6: D is overfitting, augment more
    gen.update_ada(confident)
    assert float(gen.ada_p) == pytest.approx(0.1)
    gen.update_ada(-confident)  # -1 < 0.6: less
    gen.update_ada(-confident)
    assert float(gen.ada_p) == 0.0  # clamped at 0
    for _ in range(20):
        gen.update_ada(confident)
    assert float(gen.ada_p) == 1.0  # clamped at 1


def test_ada_augments_each_image_with_probability_p():
    gen = build("cgan", ada_target=0.6)
    x = signed_images(n=64)
    assert torch.equal(gen.augment(x), x)  # p starts at 0
    gen.ada_p.fill_(1.0)
    changed = (gen.augment(x) != x).flatten(1).any(1)
    assert changed.all()
    gen.ada_p.fill_(0.5)
    torch.manual_seed(0)
    changed = (gen.augment(x) != x).flatten(1).any(1)
    assert 10 < int(changed.sum()) < 54  # about half of 64


def test_ada_and_r1_train_resume_and_load(tmp_path):
    gen = build("cgan", ada_target=0.6, ada_kimg=0.01, r1_gamma=1.0, r1_every=2)
    losses = train_steps(gen, steps=3)
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert "ada_p" in losses and 0.0 <= float(gen.ada_p) <= 1.0
    loaded = load_generator(gen.save(tmp_path / "ckpt"))
    assert int(loaded.d_steps) == 3 and float(loaded.ada_p) == float(gen.ada_p)


def test_models_without_r1_or_ada_keep_their_state_dict_keys():
    keys = set(build("cgan").state_dict())
    assert "d_steps" not in keys and "ada_p" not in keys  # older checkpoints load strictly


@pytest.mark.parametrize("options, match", [
    ({"ada_target": 0.6, "diffaugment": ""}, "diffaugment is off"),
    ({"ada_target": 1.0}, "ada_target"),
    ({"r1_gamma": -1.0}, "r1_gamma"),
    ({"r1_every": 0}, "r1_every"),
])
def test_bad_r1_and_ada_options(options, match):
    with pytest.raises(ValueError, match=match):
        build("cgan", **options)


# --------------------------------------------------------------------------- losses
def test_hinge_losses_on_hand_made_logits():
    real = torch.tensor([0.5, 2.0, -1.0])
    fake = torch.tensor([-0.5, 1.0, -2.0])
    # relu(1 - l) on real: 0.5, 0, 2; relu(1 + l) on fake: 0.5, 2, 0
    assert float(discriminator_loss(real, 1.0, "hinge")) == pytest.approx(2.5 / 3)
    assert float(discriminator_loss(fake, 0.0, "hinge")) == pytest.approx(2.5 / 3)
    assert float(generator_loss(fake, "hinge")) == pytest.approx(0.5)  # -mean(l) = -(-0.5 + 1 - 2) / 3
    # a soft target mixes both hinges: 0.9 * relu(1 - 0) + 0.1 * relu(1 + 0) = 1
    assert float(discriminator_loss(torch.zeros(2), 0.9, "hinge")) == pytest.approx(1.0)
    assert float(discriminator_loss(torch.tensor([3.0]), 0.9, "hinge")) == pytest.approx(0.1 * 4)


def test_ns_losses_on_hand_made_logits():
    l = torch.tensor([0.0, 2.0, -3.0])
    sig = torch.sigmoid(l)
    assert float(discriminator_loss(l, 1.0, "ns")) == pytest.approx(float(-sig.log().mean()), rel=1e-5)
    assert float(discriminator_loss(l, 0.0, "ns")) == pytest.approx(float(-(1 - sig).log().mean()), rel=1e-5)
    assert float(discriminator_loss(torch.zeros(4), 1.0, "ns")) == pytest.approx(math.log(2))
    # non-saturating: -log D(G(z)), so a confident fake-detecting D still gives a gradient
    assert float(generator_loss(l, "ns")) == pytest.approx(float(-sig.log().mean()), rel=1e-5)
    x = torch.tensor([-20.0], requires_grad=True)
    generator_loss(x, "ns").backward()
    assert x.grad.abs().item() > 0.99
    # a soft target: BCE(0, 0.9) = log 2 whatever the target
    assert float(discriminator_loss(torch.zeros(3), 0.9, "ns")) == pytest.approx(math.log(2))
    assert float(discriminator_loss(torch.tensor([2.0]), torch.tensor([0.9]), "ns")) == pytest.approx(
        float(-(0.9 * torch.sigmoid(torch.tensor(2.0)).log() + 0.1 * torch.sigmoid(torch.tensor(-2.0)).log())),
        rel=1e-5)


def test_unknown_loss_is_refused():
    with pytest.raises(ValueError, match="wgan"):
        discriminator_loss(torch.zeros(2), 1.0, "wgan")
    with pytest.raises(ValueError, match="wgan"):
        generator_loss(torch.zeros(2), "wgan")
    for name in GANS:
        with pytest.raises(ValueError, match=rf"{name}.*loss='wgan'"):
            build(name, loss="wgan")


@pytest.mark.parametrize("loss", ["ns", "hinge"])
def test_the_loss_option_is_used(loss):
    gen = build("dcgan", loss=loss, diffaugment="", label_smoothing=0.0)
    gen.train()
    images, labels = batch()
    torch.manual_seed(5)
    terms = gen(images, labels)
    torch.manual_seed(5)
    real = images * 2 - 1
    noise = gen.sample_noise(len(images))
    fake = gen.g(noise, labels)
    l_real, l_fake = gen.d(real, labels), gen.d(fake, labels)
    expected_d = discriminator_loss(l_real, 1.0, loss) + discriminator_loss(l_fake, 0.0, loss)
    assert float(terms["d_loss"].detach()) == pytest.approx(float(expected_d.detach()), rel=1e-4)
    assert float(terms["g_loss"].detach()) == pytest.approx(float(generator_loss(l_fake, loss).detach()), rel=1e-4)


# --------------------------------------------------------------------------- the training step
def test_training_step_order_detach_and_frozen_d():
    gen = build("cgan", conditioning="acgan")
    gen.train()
    images, labels = batch()
    opt_d, opt_g = gen.configure_optimizers(1e-3)
    inner = OptimizerStep("cgan")
    calls = []

    def step(opt, loss, name):
        d_grads = [None if p.grad is None else p.grad.clone() for p in gen.d.parameters()]
        inner(opt, loss, name)
        calls.append(name)
        if name == "d_loss":
            assert opt is opt_d
            # the fake images were detached: the D loss gave the generator no gradient
            assert all(p.grad is None for p in gen.g.parameters())
        else:
            assert opt is opt_g
            assert all(p.grad is not None for p in gen.g.parameters())
            # D was frozen: its gradients are still those of the D step
            for before, p in zip(d_grads, gen.d.parameters()):
                assert torch.equal(before, p.grad)

    losses = gen.training_step(images, labels, [opt_d, opt_g], step)
    assert all(p.requires_grad for p in gen.d.parameters())  # unfrozen after the G step
    assert calls == ["d_loss", "g_loss"]
    assert {"d_loss", "g_loss", "d_real", "d_fake", "d_cls", "g_cls"} <= set(losses)
    assert all(not v.requires_grad for v in losses.values())
    with pytest.raises(ValueError, match="two optimizers"):
        gen.training_step(images, labels, [opt_d], step)


def test_optimizers_order_lr_and_betas():
    gen = build("infogan", lr_d=4e-4)
    opt_d, opt_g = gen.configure_optimizers(1e-4)
    d_params = {id(p) for p in opt_d.param_groups[0]["params"]}
    g_params = {id(p) for p in opt_g.param_groups[0]["params"]}
    assert d_params == {id(p) for p in gen.d.parameters()} | {id(p) for p in gen.q.parameters()}
    assert g_params == {id(p) for p in gen.g.parameters()}
    assert not d_params & {id(p) for p in gen.g_ema.parameters()}
    assert opt_d.param_groups[0]["lr"] == 4e-4 and opt_g.param_groups[0]["lr"] == 1e-4
    assert opt_d.param_groups[0]["betas"] == (0.5, 0.999) == opt_g.param_groups[0]["betas"]
    opt_d, _ = build("dcgan").configure_optimizers(1e-4)
    assert opt_d.param_groups[0]["lr"] == 1e-4
    with pytest.raises(ValueError, match="lr_d"):
        build("dcgan", lr_d=0.0)


# --------------------------------------------------------------------------- DCGAN tricks
def test_label_smoothing_and_noise_change_the_targets():
    plain = build("dcgan")
    real, fake = plain.d_targets(1000)
    assert torch.equal(real, torch.ones(1000)) and torch.equal(fake, torch.zeros(1000))
    smooth = build("dcgan", label_smoothing=0.1)
    real, fake = smooth.d_targets(1000)
    assert torch.allclose(real, torch.full((1000,), 0.9)) and torch.equal(fake, torch.zeros(1000))
    noisy = build("dcgan", label_noise=0.2, label_smoothing=0.1)
    torch.manual_seed(0)
    real, fake = noisy.d_targets(20000)
    assert torch.allclose(real[real > 0], torch.tensor(0.9))
    assert (real == 0).float().mean() == pytest.approx(0.2, abs=0.02)
    assert (fake > 0).float().mean() == pytest.approx(0.2, abs=0.02)
    assert torch.allclose(fake[fake > 0], torch.tensor(0.9))
    # and the D loss sees them
    images, labels = batch()
    losses = []
    for gen in (plain, smooth):
        gen.train()
        torch.manual_seed(0)
        losses.append(float(gen(images, labels)["d_loss"].detach()))
    assert losses[0] != pytest.approx(losses[1])


@pytest.mark.parametrize("option, value", [("label_smoothing", 0.5), ("label_smoothing", -0.1), ("label_noise", 0.6),
                                           ("d_dropout", 1.0), ("d_dropout", -0.5)])
def test_bad_trick_values(option, value):
    with pytest.raises(ValueError, match=option):
        build("dcgan", **{option: value})


@pytest.mark.parametrize("kernel_size", [3, 5, 0, 1, 4.0, True, "4"])
def test_kernel_size_must_be_even(kernel_size):
    for name in GANS:
        with pytest.raises(ValueError, match=rf"{name}.*kernel_size.*even"):
            build(name, kernel_size=kernel_size)


@pytest.mark.parametrize("kernel_size", [2, 6])
@pytest.mark.parametrize("size", [28, 32, 64])
def test_other_even_kernel_sizes_keep_the_geometry(kernel_size, size):
    gen = build("dcgan", kernel_size=kernel_size, size=size, channels=1, classes=3)
    assert gen.sample(2, generator=seeded(0)).shape == (2, 1, size, size)
    images = torch.rand(4, 1, size, size)
    assert gen.d(images, torch.tensor([0, 1, 2, 0])).shape == (4,)


def test_d_dropout_is_in_d_only_and_off_when_sampling():
    gen = build("dcgan", d_dropout=0.3)
    assert any(isinstance(m, torch.nn.Dropout) for m in gen.d.modules())
    assert not any(isinstance(m, torch.nn.Dropout) for m in gen.g.modules())
    assert not any(isinstance(m, torch.nn.Dropout) for m in build("dcgan").d.modules())
    gen.train()
    x, y = batch()
    assert not torch.equal(gen.d(x, y), gen.d(x, y))  # dropout active in training
    gen.eval()
    assert torch.equal(gen.d(x, y), gen.d(x, y))


def test_dcgan_is_classic():
    gen = build("dcgan")
    assert gen.d.conditioning == "concat" and gen.loss_kind == "ns" and not has_spectral_norm(gen)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in gen.g.modules())
    assert not any(isinstance(m, (torch.nn.MaxPool2d, torch.nn.AvgPool2d)) for m in gen.d.modules())
    # BatchNorm in D on every level but the first (classic DCGAN); off with d_batchnorm=False
    levels = list(gen.d.trunk)[:-1]
    assert [any(isinstance(m, torch.nn.BatchNorm2d) for m in level) for level in levels] == [False, True, True]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in build("dcgan", d_batchnorm=False).d.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in build("cgan").d.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in build("cgan", d_batchnorm=True).d.modules())
    with pytest.raises(ValueError, match="d_batchnorm"):
        build("dcgan", d_batchnorm="no")
    assert any(isinstance(m, torch.nn.LeakyReLU) for m in gen.d.modules())
    # the D sees the labels as maps: its first conv has channels + classes inputs
    first = next(m for m in gen.d.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 3 + 2
    # normal latent, tanh output mapped to [0, 1]
    assert gen.sample_noise(2000, generator=seeded(0)).std() == pytest.approx(1.0, abs=0.05)
    gen.eval()
    with torch.no_grad():
        raw = gen.g_ema(gen.sample_noise(3, generator=seeded(0)), torch.tensor([0, 1, 0]))
        out = gen.generate(gen.sample_noise(3, generator=seeded(0)), torch.tensor([0, 1, 0]))
    assert raw.min() >= -1 and raw.max() <= 1 and torch.allclose(out, (raw + 1) / 2)


def test_level_widths():
    assert level_widths(64, 3) == [256, 128, 64]
    assert level_widths(64, 4) == [256, 256, 128, 64]
    assert level_widths(32, 2) == [64, 32]


@pytest.mark.parametrize("size", [16, 30, 48, 128])
def test_unsupported_sizes(size):
    for name in GANS:
        with pytest.raises(ValueError, match=rf"{name}.*image_size={size}.*28.*32.*64"):
            build(name, size=size)


# --------------------------------------------------------------------------- spectral norm, cgan
def test_spectral_norm_present_and_absent():
    assert has_spectral_norm(build("cgan").d) and not has_spectral_norm(build("cgan").g)
    assert not has_spectral_norm(build("cgan", spectral_norm=False))
    assert has_spectral_norm(build("dcgan", spectral_norm=True).d)
    assert any("parametrizations.weight.original" in k for k in build("cgan").state_dict())
    with pytest.raises(ValueError, match="spectral_norm"):
        build("cgan", spectral_norm="yes")


def test_spectral_norm_bounds_the_weights():
    gen = build("cgan", d_width=16)
    train_steps(gen, steps=3, lr=1e-2)
    gen.train()
    x, y = batch()
    for _ in range(20):  # power iterations (one per forward in training mode)
        gen.d(x, y)
    convs = [m for m in gen.d.modules() if isinstance(m, torch.nn.Conv2d)]
    for conv in convs:
        sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
        assert sigma == pytest.approx(1.0, abs=0.05)
    unnormed = build("cgan", d_width=16, spectral_norm=False)
    train_steps(unnormed, steps=3, lr=1e-2)
    sigmas = [float(torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2))
              for m in unnormed.d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert not all(s == pytest.approx(1.0, abs=0.05) for s in sigmas)


def test_spectral_norm_checkpoint_round_trip(tmp_path):
    gen = build("cgan")
    train_steps(gen, steps=2)  # power-iteration vectors and weights away from their init
    loaded = load_generator(gen.save(tmp_path / "ckpt"))  # loads with strict=True
    assert has_spectral_norm(loaded.d)
    for (k, v), (k2, v2) in zip(gen.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k
    assert torch.equal(gen.sample(6, generator=seeded(1)), loaded.sample(6, generator=seeded(1)))
    assert torch.equal(gen.sample(6, generator=seeded(1)), gen.sample(6, generator=seeded(1)))
    gen.eval()
    x, y = batch()
    with torch.no_grad():
        assert torch.equal(gen.d(x, y), loaded.d(x, y))


@pytest.mark.parametrize("conditioning", ["projection", "acgan"])
def test_projection_and_acgan_train_one_step(conditioning):
    gen = build("cgan", conditioning=conditioning)
    assert (gen.d.embed is not None) == (conditioning == "projection")
    assert (gen.d.classifier is not None) == (conditioning == "acgan")
    head = gen.d.embed if conditioning == "projection" else gen.d.classifier
    before = [p.detach().clone() for p in head.parameters()]
    g_before = [p.detach().clone() for p in gen.g.parameters()]
    losses = train_steps(gen, steps=1)
    assert all(math.isfinite(float(v)) for v in losses.values())
    assert ("d_cls" in losses) == (conditioning == "acgan") == ("g_cls" in losses)
    assert all(not torch.equal(b, p) for b, p in zip(before, head.parameters()))
    assert all(not torch.equal(b, p) for b, p in zip(g_before, gen.g.parameters()))


def test_projection_logit_is_the_inner_product():
    gen = build("cgan", spectral_norm=False)
    gen.eval()
    x, _ = batch(4)
    h = gen.d.features(x, torch.zeros(4, dtype=torch.long))
    zeros, ones = gen.d.logits(h, torch.zeros(4, dtype=torch.long)), gen.d.logits(h, torch.ones(4, dtype=torch.long))
    w = gen.d.embed.weight
    assert torch.allclose(ones - zeros, h @ (w[1] - w[0]), atol=1e-5)


def test_acgan_weight_scales_the_class_loss():
    def d_loss(weight):
        gen = build("cgan", conditioning="acgan", acgan_weight=weight, diffaugment="")
        gen.train()
        torch.manual_seed(0)
        return gen(*batch())

    zero, two = d_loss(0.0), d_loss(2.0)
    assert float((two["d_loss"] - zero["d_loss"]).detach()) == pytest.approx(2 * float(two["d_cls"].detach()), rel=1e-4)
    assert float((two["g_loss"] - zero["g_loss"]).detach()) == pytest.approx(2 * float(two["g_cls"].detach()), rel=1e-4)
    with pytest.raises(ValueError, match="acgan_weight"):
        build("cgan", conditioning="acgan", acgan_weight=-1.0)


def test_cgan_bad_options():
    with pytest.raises(ValueError, match="conditioning='concat'"):
        build("cgan", conditioning="concat")
    with pytest.raises(ValueError, match="conditional_bn"):
        build("cgan", conditional_bn=1)


def test_conditional_batchnorm_changes_the_generator():
    from synthaug.generators.blocks import ClassBatchNorm2d

    with_cbn, without = build("cgan"), build("cgan", conditional_bn=False)
    assert any(isinstance(m, ClassBatchNorm2d) for m in with_cbn.g.modules())
    assert not any(isinstance(m, ClassBatchNorm2d) for m in without.g.modules())
    # a class-specific gain changes that class's images only
    cbn = next(m for m in with_cbn.g.modules() if isinstance(m, ClassBatchNorm2d))
    with_cbn.eval()
    noise = with_cbn.sample_noise(4, generator=seeded(0))
    labels = torch.tensor([0, 1, 0, 1])
    with torch.no_grad():
        before = with_cbn.g(noise, labels)
        cbn.gain.weight[1] *= 3
        after = with_cbn.g(noise, labels)
    assert torch.equal(before[labels == 0], after[labels == 0])
    assert not torch.allclose(before[labels == 1], after[labels == 1])


# --------------------------------------------------------------------------- InfoGAN
def test_infogan_noise_layout():
    gen = build("infogan", latent_dim=20, n_categorical=5, n_continuous=3)
    layout = gen.noise_layout()
    assert layout == {"z": slice(0, 12), "categorical": slice(12, 17), "continuous": slice(17, 20)}
    assert gen.latent_dim == 20 and gen.z_dim == 12
    noise = gen.sample_noise(500, generator=seeded(0))
    assert noise.shape == (500, 20)
    cat = noise[:, layout["categorical"]]
    assert torch.equal(cat.sum(1), torch.ones(500)) and set(cat.unique().tolist()) == {0.0, 1.0}
    assert len(cat.argmax(1).unique()) == 5
    cont = noise[:, layout["continuous"]]
    assert cont.min() >= -1 and cont.max() <= 1 and cont.std() > 0.4
    assert torch.equal(noise, gen.sample_noise(500, generator=seeded(0)))


def test_infogan_without_one_kind_of_code():
    only_cont = build("infogan", n_categorical=0, n_continuous=3)
    assert only_cont.noise_layout()["categorical"] == slice(13, 13)
    assert only_cont.sample(3, generator=seeded(0), codes=torch.tensor([0.1, 0.2, 0.3])).shape == (3, 3, 32, 32)
    with pytest.raises(ValueError, match="n_categorical=0"):
        only_cont.sample(3, codes=1)
    only_cat = build("infogan", n_categorical=3, n_continuous=0)
    assert only_cat.sample(3, generator=seeded(0), codes=2).shape == (3, 3, 32, 32)
    with pytest.raises(ValueError, match="n_continuous=0"):
        only_cat.sample(3, codes={"continuous": torch.zeros(3, 0)})
    train_steps(only_cat, steps=1)
    neither = build("infogan", n_categorical=0, n_continuous=0)
    assert neither.q is None and "d_info" not in train_steps(neither, steps=1)


def test_infogan_codes_fix_and_vary_the_images():
    gen = build("infogan")
    train_steps(gen, steps=2)
    n = 6
    fixed = {"categorical": 1, "continuous": torch.tensor([0.5, -0.5])}
    a = gen.sample(n, generator=seeded(0), codes=fixed)
    b = gen.sample(n, generator=seeded(0), codes=fixed)
    assert torch.equal(a, b)  # same seed, same codes: same images
    # the same z with another continuous / categorical code: other images (compared before the rounding to
    # uint8, which can swallow the small differences of a generator trained for 2 steps)
    labels = torch.arange(n) % 2
    gen.eval()
    with torch.no_grad():
        def render(codes):
            return gen.generate(gen.sample_noise(n, generator=seeded(0), codes=codes), labels)

        base = render(fixed)
        assert not torch.allclose(base, render({"categorical": 1, "continuous": torch.tensor([-0.9, 0.9])}))
        assert not torch.allclose(base, render({"categorical": 3, "continuous": torch.tensor([0.5, -0.5])}))
    # a sweep of the first continuous code along a row, everything else fixed
    sweep = torch.stack([torch.linspace(-1, 1, n), torch.zeros(n)], dim=1)
    with torch.no_grad():
        row = gen.generate(gen.sample_noise(n, generator=seeded(0), codes={"continuous": sweep}),
                           torch.zeros(n, dtype=torch.long))
    assert all(not torch.allclose(row[i], row[i + 1]) for i in range(n - 1))
    # codes only override their slots: z (and the codes not given) are those of the seed
    noise = gen.sample_noise(n, generator=seeded(0))
    fixed_noise = gen.sample_noise(n, generator=seeded(0), codes=2)
    layout = gen.noise_layout()
    assert torch.equal(noise[:, layout["z"]], fixed_noise[:, layout["z"]])
    assert torch.equal(noise[:, layout["continuous"]], fixed_noise[:, layout["continuous"]])
    assert torch.equal(fixed_noise[:, layout["categorical"]].argmax(1), torch.full((n,), 2))
    # sample(codes=...) is generate() on that noise
    gen.eval()
    with torch.no_grad():
        labels = gen.check_labels(n, None)
        expected = (gen.generate(gen.with_codes(noise, fixed), labels).clamp(0, 1) * 255).round().to(torch.uint8)
    assert torch.equal(a, expected)


def test_infogan_code_forms():
    gen = build("infogan")
    n = 4
    as_int = gen.sample(n, generator=seeded(0), codes=2)
    assert torch.equal(as_int, gen.sample(n, generator=seeded(0), codes={"categorical": torch.tensor(2)}))
    assert torch.equal(as_int, gen.sample(n, generator=seeded(0), codes=torch.full((n,), 2)))
    per_sample = torch.tensor([0, 1, 2, 3])
    assert torch.equal(gen.sample(n, generator=seeded(0), codes=per_sample),
                       gen.sample(n, generator=seeded(0), codes=[0, 1, 2, 3]))
    cont = torch.tensor([0.3, -0.2])
    assert torch.equal(gen.sample(n, generator=seeded(0), codes=cont),
                       gen.sample(n, generator=seeded(0), codes=cont.repeat(n, 1)))
    # without codes nothing is fixed, and the pending codes do not leak into the next draw
    free = gen.sample(n, generator=seeded(0))
    assert not torch.equal(free, as_int)
    assert torch.equal(free, gen.sample(n, generator=seeded(0)))


@pytest.mark.parametrize("codes, match", [
    (4, r"categorical code values must be in \[0, 4\)"),
    (-1, r"\[0, 4\)"),
    (torch.tensor([0, 1, 2]), "length n=4"),
    ({"categorical": 1.0}, "categorical code must be an int"),
    ({"categorical": torch.tensor([True, False, True, False])}, "categorical"),
    (torch.zeros(3), r"continuous codes must be \(2,\) or \(n=4, 2\)"),
    (torch.zeros(4, 3), r"\(n=4, 2\)"),
    (torch.tensor([float("nan"), 0.0]), "finite"),
    ({"cat": 1}, "unknown key"),
    ({"continuous": "big"}, "continuous codes must be a number"),
    (True, "not booleans"),
], ids=["cat-too-big", "cat-negative", "cat-short", "cat-float", "cat-bool", "cont-short", "cont-wide", "cont-nan",
        "bad-key", "cont-str", "bool"])
def test_infogan_bad_codes(codes, match):
    gen = build("infogan")
    with pytest.raises(ValueError, match=match):
        gen.sample(4, generator=seeded(0), codes=codes)


def test_infogan_bad_options():
    with pytest.raises(ValueError, match=r"latent_dim=6.*latent_dim >= 7"):
        build("infogan", latent_dim=6)
    with pytest.raises(ValueError, match="n_categorical=1"):
        build("infogan", n_categorical=1)
    with pytest.raises(ValueError, match="n_continuous"):
        build("infogan", n_continuous=-1)
    with pytest.raises(ValueError, match="info_weight"):
        build("infogan", info_weight=-0.5)
    with pytest.raises(ValueError, match="continuous_loss"):
        build("infogan", continuous_loss="l1")


def test_mutual_information_loss_on_hand_made_inputs():
    logits = torch.zeros(3, 4)  # uniform over 4 codes
    target = torch.tensor([0, 1, 3])
    assert float(mutual_information_loss(logits, target, None, None)) == pytest.approx(math.log(4))
    c = torch.tensor([[0.5, -0.5], [0.0, 1.0]])
    assert float(mutual_information_loss(None, None, c, c, torch.zeros(2, 2))) == pytest.approx(0.0)
    mean = torch.zeros(2, 2)
    # Gaussian NLL without constants: 0.5 * (logvar + err^2 / var), summed over codes, mean over samples
    logvar = torch.full((2, 2), math.log(4.0))
    expected = (0.5 * (math.log(4.0) * 2 + (0.25 + 0.25) / 4) + 0.5 * (math.log(4.0) * 2 + 1.0 / 4)) / 2
    assert float(mutual_information_loss(None, None, mean, c, logvar)) == pytest.approx(expected, rel=1e-6)
    assert float(mutual_information_loss(None, None, mean, c)) == pytest.approx((0.25 + 0.5) / 2)  # 0.5 * err^2
    both = mutual_information_loss(logits[:2], target[:2], mean, c)
    assert float(both) == pytest.approx(math.log(4) + (0.25 + 0.5) / 2)
    big = torch.tensor([[10.0, 0.0, 0.0, 0.0]])
    assert float(mutual_information_loss(big, torch.tensor([0]), None, None)) < 1e-3


def test_infogan_info_loss_trains_q_and_g():
    gen = build("infogan", continuous_loss="mse", info_weight=2.0)
    gen.train()
    torch.manual_seed(0)
    terms = gen(*batch())
    assert {"d_info", "g_info"} <= set(terms)
    assert terms["d_info"] > 0
    q_before = [p.detach().clone() for p in gen.q.parameters()]
    train_steps(gen, steps=1)
    assert all(not torch.equal(b, p) for b, p in zip(q_before, gen.q.parameters()))
    q_out = [m for m in gen.q.modules() if isinstance(m, torch.nn.Linear)][-1]
    assert q_out.out_features == 4 + 2  # no log-variance with mse
    nll = build("infogan", continuous_loss="nll")  # mean and log-variance per continuous code
    assert [m for m in nll.q.modules() if isinstance(m, torch.nn.Linear)][-1].out_features == 4 + 4
    assert build("infogan").continuous_loss == "mse"  # the default: nll collapsed G in the gallery run


# --------------------------------------------------------------------------- misc
@pytest.mark.parametrize("name", GANS)
def test_discriminator_features_for_the_latent_search(name):
    gen = build(name)
    gen.eval()
    x, y = batch(4)
    h = gen.discriminator_features(x, y)
    assert h.shape == (4, gen.d.feature_dim)


def test_bad_widths():
    for option in ("g_width", "d_width", "embed_dim"):
        with pytest.raises(ValueError, match=option):
            build("dcgan", **{option: 0})


# --------------------------------------------------------------------------- real training
@pytest.fixture(scope="module")
def malaria_cells(malaria32):
    """1024 real training cells at 32 px."""
    return malaria32.train.subset(np.arange(1024))


@pytest.mark.parametrize("name", GANS)
def test_short_real_training_stays_finite(name, malaria_cells, tmp_path):
    torch.manual_seed(0)
    gen = create_generator(name, num_classes=2, image_size=32, channels=3)
    steps = 30
    config = GeneratorTrainConfig(steps=steps, batch_size=32, lr=2e-4, checkpoint_every=0, sample_every=0,
                                  log_every=1)
    trained = train_generator(gen, malaria_cells, config=config, out_dir=tmp_path)
    from synthaug.utils import read_jsonl

    rows = read_jsonl(tmp_path / "log.jsonl")
    assert [r["step"] for r in rows] == list(range(1, steps + 1))
    assert all(math.isfinite(v) for r in rows for v in r.values())
    assert int(trained.ema_updates) == steps
    images = trained.sample(8, generator=seeded(0))
    assert images.shape == (8, 3, 32, 32) and images.float().std() > 1
    # the generator learnt something of the cells: its mean colour moved toward theirs
    real = torch.stack([malaria_cells[i][0] for i in range(256)]).float()
    fresh = create_generator(name, num_classes=2, image_size=32, channels=3).sample(256, generator=seeded(0)).float()
    gap_after = (trained.sample(256, generator=seeded(0)).float().mean((0, 2, 3)) - real.mean((0, 2, 3))).abs().mean()
    gap_before = (fresh.mean((0, 2, 3)) - real.mean((0, 2, 3))).abs().mean()
    assert gap_after < gap_before
    if name == "infogan":
        assert rows[-1]["d_info"] < rows[0]["d_info"]  # Q learns to read the codes
