"""The VAE family of the zoo (synthaug/generators/vae.py, joint_vae.py, vae_gan.py, losses.py): losses, options,
and what each model adds.

The contract every generator follows (sampling, checkpoints, one optimizer step, 28 / 64 px) is tested
for these models by tests/test_generators.py from its SMALL_OPTIONS entries.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from synthaug.generators import (
    GeneratorTrainConfig,
    OptimizerStep,
    create_generator,
    generator_options,
    list_generators,
    load_generator,
    train_generator,
)
from synthaug.generators.losses import (
    MSSSIM_WEIGHTS,
    capacity,
    categorical_kl,
    gaussian_kl,
    ms_ssim,
    msssim_config,
    reconstruction_loss,
)
from synthaug.utils import read_jsonl

from tests.test_generators import SMALL_OPTIONS

ZOO = ["fc-vae", "conv-vae", "beta-vae", "msssim-vae", "joint-vae", "vae-gan"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: see conftest.py


def build(name: str, *, seed: int = 0, size: int = 32, channels: int = 3, classes: int = 2, **overrides):
    torch.manual_seed(seed)
    return create_generator(name, num_classes=classes, image_size=size, channels=channels,
                            **{**SMALL_OPTIONS[name], **overrides})


def num(value) -> float:
    return float(value.detach()) if isinstance(value, torch.Tensor) else float(value)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(n: int = 8, size: int = 32, channels: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.rand(n, channels, size, size, generator=seeded(seed)), torch.arange(n) % 2


def params_of(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def moved(before: dict[str, torch.Tensor], module: torch.nn.Module) -> list[str]:
    return [k for k, v in module.named_parameters() if not torch.equal(before[k], v)]


def test_the_zoo_is_registered_with_encode_and_decode():
    assert set(ZOO) <= set(list_generators())
    for name in ZOO:
        gen = build(name)
        x, y = batch(4)
        gen.eval()
        mu, logvar = gen.encode(x, y)
        assert mu.shape == logvar.shape == (4, gen.latent_dim)
        out = gen.decode(mu, y)
        assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
        assert generator_options(name)["latent_dim"] == 32  # the default


# --------------------------------------------------------------------------- bad options
BAD_OPTIONS = [
    ("fc-vae", {"hidden_units": []}, "hidden_units"),
    ("fc-vae", {"hidden_units": [64, 0]}, "hidden_units"),
    ("fc-vae", {"per_class": "yes"}, "per_class"),
    ("fc-vae", {"init": "dcgan"}, "init"),
    ("fc-vae", {"lr_halving": 1}, "lr_halving"),
    ("fc-vae", {"lr_floor": 0.0}, "lr_floor"),
    ("fc-vae", {"lr_floor": 2.0}, "lr_floor"),
    ("conv-vae", {"recon": "l1"}, "recon"),
    ("conv-vae", {"init": "orthogonal"}, "init"),
    ("conv-vae", {"hidden_channels": [8, -1]}, "hidden_channels"),
    ("conv-vae", {"hidden_channels": [8, 8, 8, 8, 8, 8]}, "image_size=32"),
    ("conv-vae", {"embed_dim": 0}, "embed_dim"),
    ("beta-vae", {"beta": -1.0}, "beta"),
    ("beta-vae", {"capacity_max": -1.0}, "capacity_max"),
    ("beta-vae", {"capacity_steps": 0}, "capacity_steps"),
    ("beta-vae", {"gamma": float("nan")}, "gamma"),
    ("msssim-vae", {"alpha": 1.5}, "alpha"),
    ("msssim-vae", {"pixel_loss": "huber"}, "pixel_loss"),
    ("joint-vae", {"disc_dim": 1}, "disc_dim"),
    ("joint-vae", {"temperature": 0.0}, "temperature"),
    ("joint-vae", {"disc_capacity_max": 5.0}, "disc_capacity_max"),  # above log(3)
    ("joint-vae", {"capacity_steps": 0}, "capacity_steps"),
    ("joint-vae", {"recon": "msssim"}, "recon"),
    ("vae-gan", {"diffaugment": "zoom"}, "diffaugment"),
    ("vae-gan", {"ema_decay": 1.0}, "ema_decay"),
    ("vae-gan", {"ema_decay": -0.1}, "ema_decay"),
    ("vae-gan", {"disc_channels": [8]}, "disc_channels"),
    ("vae-gan", {"gamma": -1.0}, "gamma"),
]


@pytest.mark.parametrize(("name", "options", "match"), BAD_OPTIONS,
                         ids=[f"{n}-{next(iter(o))}-{i}" for i, (n, o, _) in enumerate(BAD_OPTIONS)])
def test_bad_options_are_refused_naming_model_and_option(name, options, match):
    with pytest.raises(ValueError, match=match) as err:
        build(name, **options)
    assert name in str(err.value)


def test_unsupported_image_size_is_refused():
    with pytest.raises(ValueError, match=r"conv-vae.*image_size=30.*divisible"):
        build("conv-vae", size=30)


# --------------------------------------------------------------------------- fc-vae
def test_fc_vae_loss_is_bce_plus_kl():
    gen = build("fc-vae")
    gen.train()
    x, y = batch(8)
    torch.manual_seed(1)
    losses = gen(x, y)
    net = gen.nets[0]
    cond = F.one_hot(y, 2).float()
    torch.manual_seed(1)
    mu, logvar = net.encode(x, cond)
    z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
    recon = net.decode(z, cond).view_as(x)
    assert torch.allclose(losses["recon"], reconstruction_loss(recon, x, "bce"), rtol=1e-5)
    assert torch.allclose(losses["kl"], gaussian_kl(mu, logvar), rtol=1e-5)
    assert torch.allclose(losses["loss"], losses["recon"] + losses["kl"])
    assert len(gen.nets) == 1 and net.encoder[0].in_features == 3 * 32 * 32 + 2  # one-hot label concatenated
    assert net.decoder[0].in_features == gen.latent_dim + 2
    assert isinstance(net.decoder[-1], torch.nn.Sigmoid)


def test_fc_vae_per_class_dispatches_to_the_class_model():
    gen = build("fc-vae", per_class=True, classes=3)
    assert len(gen.nets) == 3 and gen.nets[0].encoder[0].in_features == 3 * 32 * 32  # unconditional models
    labels = torch.tensor([0, 1, 2, 1, 0, 2])
    before = gen.sample(6, labels, generator=seeded(0))
    with torch.no_grad():
        for p in gen.nets[1].parameters():
            p.add_(0.5 * torch.randn_like(p))
    after = gen.sample(6, labels, generator=seeded(0))
    for i, label in enumerate(labels.tolist()):
        assert torch.equal(before[i], after[i]) == (label != 1), (i, label)
    # encode / decode dispatch too: row i goes through nets[labels[i]]
    gen.eval()
    x, _ = batch(6)
    mu, logvar = gen.encode(x, labels)
    z = torch.randn(6, gen.latent_dim, generator=seeded(2))
    out = gen.decode(z, labels)
    for i, label in enumerate(labels.tolist()):
        m, lv = gen.nets[label].encode(x[i:i + 1], x.new_zeros(1, 0))
        assert torch.allclose(mu[i], m[0], atol=1e-6) and torch.allclose(logvar[i], lv[0], atol=1e-6)
        assert torch.allclose(out[i].flatten(), gen.nets[label].decode(z[i:i + 1], z.new_zeros(1, 0))[0], atol=1e-6)


def test_fc_vae_per_class_training_skips_classes_with_one_image():
    gen = build("fc-vae", per_class=True, classes=3)
    gen.train()
    x, _ = batch(5)
    optimizers = gen.configure_optimizers(1e-3)
    before = [params_of(net) for net in gen.nets]
    losses = gen.training_step(x, torch.tensor([0, 0, 1, 0, 2]), optimizers, OptimizerStep("fc-vae"))
    assert math.isfinite(num(losses["loss"]))
    assert moved(before[0], gen.nets[0]), "class 0 (3 images) should train"
    assert not moved(before[1], gen.nets[1]) and not moved(before[2], gen.nets[2]), "one image each: skipped"
    # a batch where no class has two images: a zero loss, no gradient, nothing moves (not even by momentum)
    before = params_of(gen)
    losses = gen.training_step(x[:3], torch.tensor([0, 1, 2]), optimizers, OptimizerStep("fc-vae"))
    assert num(losses["loss"]) == 0.0 and not moved(before, gen)


def test_fc_vae_per_class_under_several_processes_gives_every_model_a_gradient(monkeypatch):
    """Gradients are all-reduced per tensor: every process must give the same tensors a gradient, so
    there a skipped class's model gets a zero one (alone, a skipped model gets none)."""
    import synthaug.generators.vae as vae

    monkeypatch.setattr(vae, "is_distributed", lambda: True)
    gen = build("fc-vae", per_class=True, classes=3)
    gen.train()
    x, _ = batch(5)
    for labels in (torch.tensor([0, 0, 1, 0, 2]), torch.tensor([0, 1, 2, 0, 1])[:3]):
        gen.zero_grad(set_to_none=True)
        gen(x[:len(labels)], labels)["loss"].backward()
        assert all(p.grad is not None for p in gen.parameters())
        assert all(float(p.grad.abs().sum()) == 0 for p in gen.nets[2].parameters())


def test_fc_vae_inits_differ():
    xavier, kaiming = build("fc-vae", init="xavier"), build("fc-vae", init="kaiming")
    wx, wk = xavier.nets[0].encoder[0].weight.detach(), kaiming.nets[0].encoder[0].weight.detach()
    fan_out, fan_in = wx.shape
    assert not torch.equal(wx, wk)
    # xavier uniform: bound sqrt(6 / (fan_in + fan_out)); kaiming normal (leaky 0.2): std gain / sqrt(fan_in)
    assert num(wx.abs().max()) <= math.sqrt(6 / (fan_in + fan_out)) + 1e-6
    gain = math.sqrt(2 / (1 + 0.2 ** 2))
    assert num(wk.std()) == pytest.approx(gain / math.sqrt(fan_in), rel=0.05)
    assert num(wx.std()) == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.05)


def test_fc_vae_lr_scale():
    gen = build("fc-vae", lr_halving=True, lr_floor=0.05)
    assert [gen.lr_scale(e) for e in range(4)] == [1.0, 0.5, 0.25, 0.125]
    assert gen.lr_scale(50) == 0.05  # the floor: never vanishes
    assert build("fc-vae").lr_scale(5) == 1.0  # off by default


@pytest.mark.parametrize(("halving", "expected"), [(True, [1, 1, 0.5, 0.5, 0.3, 0.3]), (False, [1] * 6)])
def test_fc_vae_lr_halving_in_the_training_loop(halving, expected):
    """train_generator applies lr_scale per epoch: 16 items at batch 8 are 2 steps an epoch."""
    gen = build("fc-vae", lr_halving=halving, lr_floor=0.3)
    data = [(torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=seeded(i)), i % 2) for i in range(16)]
    seen: list[list[float]] = []
    original = gen.training_step

    def spy(images, labels, optimizers, step):
        seen.append([group["lr"] for opt in optimizers for group in opt.param_groups])
        return original(images, labels, optimizers, step)

    gen.training_step = spy
    config = GeneratorTrainConfig(steps=6, batch_size=8, lr=2e-3, log_every=0, checkpoint_every=0, sample_every=0)
    train_generator(gen, data, config=config)
    assert [row[0] / 2e-3 for row in seen] == pytest.approx(expected)


# --------------------------------------------------------------------------- conv-vae
def test_conv_vae_is_the_cvae_architecture_with_its_own_loss_options():
    conv = build("conv-vae")
    cvae = create_generator("cvae", num_classes=2, image_size=32, channels=3, hidden_channels=(8, 16), latent_dim=8,
                            embed_dim=4)
    assert {k: v.shape for k, v in conv.state_dict().items()} == {k: v.shape for k, v in cvae.state_dict().items()}
    assert conv.recon_kind == "bce" and conv.beta == 1.0
    x, y = batch(8)
    results = {}
    for recon in ("bce", "mse"):
        gen = build("conv-vae", recon=recon)
        gen.train()
        torch.manual_seed(0)
        results[recon] = gen(x, y)
        assert torch.allclose(results[recon]["loss"], results[recon]["recon"] + results[recon]["kl"])
    assert num(results["bce"]["recon"]) > num(results["mse"]["recon"])  # BCE of x vs x' > (x - x')^2
    a, b = build("conv-vae", init="default"), build("conv-vae", init="xavier")
    assert not torch.equal(a.encoder[0].weight, b.encoder[0].weight)
    assert num(b.to_stats.bias.abs().max()) == 0.0  # init schemes zero the biases


# --------------------------------------------------------------------------- beta-vae
def test_capacity_schedule():
    assert capacity(0, 25.0, 100) == 0.0
    assert capacity(50, 25.0, 100) == pytest.approx(12.5)
    assert capacity(100, 25.0, 100) == capacity(10_000, 25.0, 100) == 25.0
    assert capacity(torch.tensor(25), 4.0, 100) == pytest.approx(1.0)


def test_beta_vae_losses():
    x, y = batch(8)
    plain = build("beta-vae", capacity_max=0.0, beta=3.0)
    plain.train()
    losses = plain(x, y)
    assert torch.allclose(losses["loss"], losses["recon"] + 3.0 * losses["kl"])
    annealed = build("beta-vae", capacity_max=8.0, capacity_steps=4, gamma=10.0)
    annealed.train()
    annealed.train_steps.fill_(2)
    losses = annealed(x, y)
    assert num(losses["capacity"]) == pytest.approx(4.0)
    assert torch.allclose(losses["loss"], losses["recon"] + 10.0 * (losses["kl"] - 4.0).abs())


def test_beta_vae_capacity_step_is_a_checkpointed_buffer(malaria32, tmp_path):
    """The step count behind C(step) is the buffer ``train_steps``: saved, loaded, and continued on resume
    (a run stopped after step 3 and resumed ends bit for bit where an uninterrupted run does)."""
    data = malaria32.train.subset(np.arange(64))
    config = GeneratorTrainConfig(steps=5, batch_size=16, log_every=1, checkpoint_every=3, sample_every=0)
    # lists, as options come from YAML (a tuple in the saved resume state does not compare equal to its JSON list)
    options = {"capacity_max": 10.0, "capacity_steps": 8, "hidden_channels": [8, 16]}
    whole = build("beta-vae", **options)
    assert "train_steps" in whole.state_dict() and int(whole.train_steps) == 0
    train_generator(whole, data, config=config, out_dir=tmp_path / "whole")
    assert int(whole.train_steps) == 5 and int(load_generator(tmp_path / "whole" / "checkpoint").train_steps) == 5
    rows = read_jsonl(tmp_path / "whole" / "log.jsonl")
    assert [r["capacity"] for r in rows] == pytest.approx([0.0, 1.25, 2.5, 3.75, 5.0])  # C at steps 0 .. 4

    cut = build("beta-vae", **options)
    original = cut.training_step

    def crash_at_step_4(images, labels, optimizers, step):
        if int(cut.train_steps) == 3:
            raise KeyboardInterrupt
        return original(images, labels, optimizers, step)

    cut.training_step = crash_at_step_4
    with pytest.raises(KeyboardInterrupt):
        train_generator(cut, data, config=config, out_dir=tmp_path / "cut")
    assert int(load_generator(tmp_path / "cut" / "checkpoint").train_steps) == 3
    resumed = build("beta-vae", seed=1, **options)  # other weights: all must come from the saved state
    train_generator(resumed, data, config=config, out_dir=tmp_path / "cut", resume=True)
    assert int(resumed.train_steps) == 5
    assert [r["capacity"] for r in read_jsonl(tmp_path / "cut" / "log.jsonl")] == pytest.approx(
        [r["capacity"] for r in rows])
    for (k, v), (_, w) in zip(whole.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(v, w), k


# --------------------------------------------------------------------------- ms-ssim
@pytest.mark.parametrize(("size", "scales"), [(28, 3), (32, 3), (64, 4), (128, 5), (256, 5)])
def test_msssim_config_fits_the_image_size(size, scales):
    win, weights = msssim_config(size)
    assert win == 3 and len(weights) == scales
    assert sum(weights) == pytest.approx(1.0)
    ratios = np.array(weights) / np.array(MSSSIM_WEIGHTS[:scales])
    assert np.allclose(ratios, ratios[0])  # the standard weights, renormalised
    assert size // 2 ** (scales - 1) >= 2 * win + 1  # the coarsest scale keeps >= 7 px


def test_ms_ssim_matches_pytorch_msssim_where_it_applies():
    from pytorch_msssim import ms_ssim as reference

    g = seeded(0)
    x = torch.rand(3, 3, 64, 64, generator=g)
    y = (x + 0.1 * torch.randn(3, 3, 64, 64, generator=g)).clamp(0, 1)
    win, weights = msssim_config(64)
    ours = ms_ssim(x, y, win_size=win, weights=weights)
    ref = reference(x, y, data_range=1.0, size_average=False, win_size=win, weights=weights)
    assert torch.allclose(ours, ref, atol=1e-5)
    # and the standard setting (11-px window, 5 scales) on large images
    x, y = F.interpolate(x, size=192), F.interpolate(y, size=192)
    assert torch.allclose(ms_ssim(x, y, win_size=11, weights=MSSSIM_WEIGHTS),
                          reference(x, y, data_range=1.0, size_average=False), atol=1e-5)


@pytest.mark.parametrize("size", [28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_ms_ssim_is_finite_and_bounded_on_small_images(size, channels):
    g = seeded(size + channels)
    noise = torch.rand(4, channels, size, size, generator=g, requires_grad=True)
    other = torch.rand(4, channels, size, size, generator=g)
    flat = torch.full((4, channels, size, size), 0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for a, b in ((noise, other), (noise, 1 - noise), (flat, flat), (flat, flat + 0.2), (noise, flat)):
            value = ms_ssim(a, b)
            assert value.shape == (4,) and torch.isfinite(value).all()
            assert (value >= 0).all() and (value <= 1 + 1e-5).all()
        (1 - ms_ssim(noise, 1 - noise)).sum().backward()  # anti-correlated: negative cs terms
    assert torch.isfinite(noise.grad).all()
    assert torch.allclose(ms_ssim(other, other), torch.ones(4), atol=1e-5)
    assert (ms_ssim(other, 1 - other) < 0.01).all()  # anti-correlated: the negative terms count as (almost) 0
    assert (ms_ssim(other, (other + 0.05).clamp(0, 1)) > ms_ssim(other, noise.detach())).all()


def test_ms_ssim_refuses_a_window_that_does_not_fit():
    with pytest.raises(ValueError, match="win_size"):
        ms_ssim(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32), win_size=11, weights=MSSSIM_WEIGHTS)


@pytest.mark.parametrize(("size", "channels"), [(28, 1), (32, 3), (64, 3), (64, 1)])
def test_msssim_vae_reconstruction_loss(size, channels):
    x, _ = batch(4, size, channels)
    pixels = channels * size * size
    pure = build("msssim-vae", size=size, channels=channels, alpha=1.0)
    assert num(pure.reconstruction(x, x)) == pytest.approx(0.0, abs=1e-3)
    y = (x + 0.1).clamp(0, 1)
    assert num(pure.reconstruction(y, x)) == pytest.approx(pixels * num((1 - ms_ssim(y, x)).mean()), rel=1e-5)
    l1 = build("msssim-vae", size=size, channels=channels, alpha=0.0, pixel_loss="l1")
    mse = build("msssim-vae", size=size, channels=channels, alpha=0.0, pixel_loss="mse")
    assert num(l1.reconstruction(y, x)) == pytest.approx(num((y - x).abs().flatten(1).sum(1).mean()), rel=1e-5)
    assert num(mse.reconstruction(y, x)) == pytest.approx(num((y - x).pow(2).flatten(1).sum(1).mean()), rel=1e-5)
    mixed = build("msssim-vae", size=size, channels=channels, alpha=0.84)
    expected = 0.84 * pure.reconstruction(y, x) + 0.16 * l1.reconstruction(y, x)
    assert num(mixed.reconstruction(y, x)) == pytest.approx(num(expected), rel=1e-5)


# --------------------------------------------------------------------------- vae-gan
def _parts(gen):
    return {"encoder": [gen.label_embed_enc, gen.encoder, gen.to_stats],
            "decoder": [gen.label_embed_dec, gen.from_latent, gen.decoder],
            "discriminator": [gen.discriminator]}


def test_vae_gan_updates_all_three_parts_and_keeps_their_gradients_apart():
    gen = build("vae-gan")
    gen.train()
    parts = {k: {id(p) for m in mods for p in m.parameters()} for k, mods in _parts(gen).items()}
    optimizers = gen.configure_optimizers(1e-3)
    assert [{id(p) for g in opt.param_groups for p in g["params"]} for opt in optimizers] == \
        [parts["encoder"], parts["decoder"], parts["discriminator"]]
    before = params_of(gen)
    grads: dict[str, dict[str, set]] = {}
    inner = OptimizerStep("vae-gan")

    def recording_step(opt, loss, name):
        for p in gen.parameters():  # every gradient cleared, so what follows comes from this loss alone
            p.grad = None
        loss.backward(retain_graph=True)
        with_grad = {id(p) for p in gen.parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        grads[name] = {k: ids & with_grad for k, ids in parts.items()}
        inner(opt, loss, name)

    x, y = batch(8)
    losses = gen.training_step(x, y, optimizers, recording_step)
    assert all(math.isfinite(num(v)) for v in losses.values())
    assert list(grads) == ["d_loss", "enc_loss", "dec_loss"]
    # the discriminator loss reaches only the discriminator
    assert grads["d_loss"]["discriminator"] and not grads["d_loss"]["encoder"] and not grads["d_loss"]["decoder"]
    # the encoder's loss (KL + feature reconstruction) reaches the encoder
    assert grads["enc_loss"]["encoder"] == parts["encoder"]
    # the decoder's loss (with the GAN term) reaches the decoder, never the encoder
    assert grads["dec_loss"]["decoder"] == parts["decoder"] and not grads["dec_loss"]["encoder"]
    after = dict(gen.named_parameters())
    for part, ids in parts.items():
        names = [k for k, v in after.items() if id(v) in ids]
        assert all(not torch.equal(before[k], after[k]) for k in names), f"some {part} weights did not move"


def test_vae_gan_ema_decoder_is_used_for_sampling():
    gen = build("vae-gan", ema_decay=0.5)
    assert any(k.startswith("ema_decoder.") for k in gen.state_dict())
    assert not any(p.requires_grad for p in gen.ema_decoder.parameters())
    gen.train()
    gen.training_step(*batch(8), gen.configure_optimizers(1e-2), OptimizerStep("vae-gan"))
    assert int(gen.train_steps) == 1
    live, ema = gen.from_latent[0].weight, gen.ema_decoder["from_latent"][0].weight
    assert not torch.equal(live, ema)
    samples = gen.sample(4, generator=seeded(0))
    with torch.no_grad():
        gen.from_latent[0].weight.add_(1.0)  # the live decoder changes; samples come from the EMA copy
    assert torch.equal(samples, gen.sample(4, generator=seeded(0)))
    off = build("vae-gan", ema_decay=0.0)
    assert off.ema_decoder is None and not any(k.startswith("ema_decoder.") for k in off.state_dict())
    samples = off.sample(4, generator=seeded(0))
    with torch.no_grad():
        off.from_latent[0].weight.add_(1.0)
    assert not torch.equal(samples, off.sample(4, generator=seeded(0)))


def test_vae_gan_diffaugment_and_feature_layer():
    gen = build("vae-gan", diffaugment="color,translation,cutout")
    assert gen.diffaugment == ("color", "translation", "cutout")
    x, y = batch(2)
    f = gen.discriminator_features(x, y)
    assert f.shape == (2, 8, 16, 16)  # the first of the two discriminator levels
    assert build("vae-gan", diffaugment="").diffaugment == ()


# --------------------------------------------------------------------------- joint-vae
def test_categorical_kl():
    assert num(categorical_kl(torch.zeros(3, 4))) == pytest.approx(0.0, abs=1e-6)
    peaked = torch.tensor([[50.0, 0.0, 0.0, 0.0]])
    assert num(categorical_kl(peaked)) == pytest.approx(math.log(4), rel=1e-4)
    logits = torch.randn(16, 5, generator=seeded(0)) * 3
    q = logits.softmax(1)
    expected = (q * (q.log() + math.log(5))).sum(1).mean()
    assert num(categorical_kl(logits)) == pytest.approx(num(expected), rel=1e-5)


def test_joint_vae_code_layout_and_fixed_category():
    gen = build("joint-vae")
    assert (gen.cont_dim, gen.disc_dim, gen.latent_dim) == (8, 3, 11)
    noise = gen.sample_noise(50, generator=seeded(0))
    disc = noise[:, 8:]
    assert torch.equal(disc.sum(1), torch.ones(50)) and set(disc.argmax(1).tolist()) == {0, 1, 2}
    labels = torch.zeros(6, dtype=torch.long)
    a = gen.sample(6, labels, generator=seeded(1), code=0)
    b = gen.sample(6, labels, generator=seeded(1), code=1)
    assert not torch.equal(a, b), "the discrete code must change the images"
    # code=k keeps the Gaussian noise and sets the category: the same as decoding that code
    noise = gen.sample_noise(6, generator=seeded(1))
    gen.eval()
    with torch.no_grad():
        expected = gen.generate(torch.cat([noise[:, :8], F.one_hot(torch.full((6,), 1), 3).float()], 1), labels)
        assert torch.allclose(gen.generate(noise, labels, code=1), expected)
    assert torch.equal(b, (expected.clamp(0, 1) * 255).round().to(torch.uint8))
    assert gen._fixed_code is None  # nothing left behind
    for bad in (3, -1, 1.0, True):
        with pytest.raises(ValueError, match="code"):
            gen.sample(2, code=bad)


def test_joint_vae_kl_terms_and_capacities():
    gen = build("joint-vae", cont_capacity_max=6.0, capacity_steps=4, gamma=2.0)
    gen.train()
    x, y = batch(8)
    for steps in (0, 2, 10):
        gen.train_steps.fill_(steps)
        losses = gen(x, y)
        assert num(losses["kl_cont"]) >= 0 and 0 <= num(losses["kl_disc"]) <= math.log(3) + 1e-6
        c_cont, c_disc = capacity(steps, 6.0, 4), capacity(steps, math.log(3), 4)
        assert num(losses["capacity_cont"]) == pytest.approx(c_cont)
        assert num(losses["capacity_disc"]) == pytest.approx(c_disc)  # capped at log(3)
        expected = losses["recon"] + 2.0 * ((losses["kl_cont"] - c_cont).abs() + (losses["kl_disc"] - c_disc).abs())
        assert torch.allclose(losses["loss"], expected)
    before = int(gen.train_steps)
    gen.training_step(x, y, gen.configure_optimizers(1e-3), OptimizerStep("joint-vae"))
    assert int(gen.train_steps) == before + 1


def test_joint_vae_encode_gives_the_posterior_mean_of_the_whole_code():
    gen = build("joint-vae")
    gen.eval()
    x, y = batch(4)
    mu, logvar = gen.encode(x, y)
    m, lv, logits = gen.encode_joint(x, y)
    assert torch.allclose(mu[:, :8], m) and torch.allclose(logvar[:, :8], lv)
    assert torch.allclose(mu[:, 8:], logits.softmax(1)) and torch.allclose(mu[:, 8:].sum(1), torch.ones(4))
    assert gen.decode(mu, y).shape == x.shape


# --------------------------------------------------------------------------- a short real training
@pytest.mark.parametrize("name", ZOO)
def test_short_training_on_malaria_cells(name, malaria32, tmp_path):
    data = malaria32.train.subset(np.arange(0, 2048, 8))
    gen = build(name)
    config = GeneratorTrainConfig(steps=30, batch_size=32, lr=2e-3, log_every=5, checkpoint_every=0, sample_every=0)
    train_generator(gen, data, config=config, out_dir=tmp_path)
    rows = read_jsonl(tmp_path / "log.jsonl")
    assert len(rows) == 6 and all(math.isfinite(v) for r in rows for v in r.values())
    key = "feature_recon" if name == "vae-gan" else "recon"
    if name != "vae-gan":  # a GAN's feature space moves while it trains: finite is what we ask there
        first, last = np.mean([r[key] for r in rows[:2]]), np.mean([r[key] for r in rows[-2:]])
        assert last < first, [r[key] for r in rows]
    assert load_generator(tmp_path / "checkpoint").sample(2).shape == (2, 3, 32, 32)
