"""ddpm: noise schedules, the training loss, label dropout, DDIM sampling, guidance, EMA, options, real training."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from synthaug.generators import GeneratorTrainConfig, OptimizerStep, create_generator, load_generator, train_generator
from synthaug.generators.diffusion import DDPM, beta_schedule, ddim_timesteps, default_channel_mults

TINY = {"base_width": 8, "channel_mults": (1, 2), "sample_steps": 3}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: see conftest.py


def ddpm(seed: int = 0, *, image_size: int = 32, channels: int = 3, num_classes: int = 2, **options) -> DDPM:
    torch.manual_seed(seed)
    return create_generator("ddpm", num_classes=num_classes, image_size=image_size, channels=channels,
                            **{**TINY, **options})


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Recorder(nn.Module):
    """Stands in for the UNet: records its inputs, returns ``fill`` (zeros by default)."""

    def __init__(self, fill: float = 0.0) -> None:
        super().__init__()
        self.fill, self.calls = fill, []

    def forward(self, x, t, y):
        self.calls.append((x.detach().clone(), t.clone(), y.clone()))
        return torch.full_like(x, self.fill)


class Oracle(nn.Module):
    """The exact denoiser when every training image is ``target`` (in [-1, 1]): eps or v of x_t."""

    def __init__(self, gen: DDPM, target: torch.Tensor) -> None:
        super().__init__()
        self.gen, self.target, self.calls = [gen], target, []

    def forward(self, x, t, y):
        self.calls.append(len(x))
        abar = self.gen[0].alphas_cumprod[t].view(-1, 1, 1, 1)
        eps = (x - abar.sqrt() * self.target) / (1 - abar).sqrt()
        if self.gen[0].prediction == "eps":
            return eps
        return abar.sqrt() * eps - (1 - abar).sqrt() * self.target


# --------------------------------------------------------------------------- schedules
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("timesteps", [1000, 50])
def test_alphas_cumprod_decrease_in_0_1(schedule, timesteps):
    gen = ddpm(schedule=schedule, timesteps=timesteps)
    abar = gen.alphas_cumprod.double()
    assert abar.shape == (timesteps,)
    assert (abar > 0).all() and (abar <= 1).all()
    assert (abar[1:] < abar[:-1]).all()
    assert abar[0] > 0.98 and abar[-1] < 0.01  # from almost clean to almost pure noise
    assert torch.allclose(abar, torch.cumprod(1 - gen.betas.double(), 0), rtol=1e-5)


def test_linear_schedule_endpoints():
    betas = beta_schedule("linear", 1000)
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    abar = torch.cumprod(1 - betas, 0)
    assert abar[0].item() == pytest.approx(0.9999)
    expected_last = float(np.prod(1 - np.linspace(1e-4, 0.02, 1000)))
    assert abar[-1].item() == pytest.approx(expected_last, rel=1e-9)
    assert expected_last == pytest.approx(4.04e-5, rel=0.01)  # the well-known DDPM value
    # fewer timesteps: betas scaled by 1000 / T, so the total noise stays comparable
    assert beta_schedule("linear", 500)[-1].item() == pytest.approx(0.04)


def test_cosine_schedule_follows_the_formula():
    abar = torch.cumprod(1 - beta_schedule("cosine", 1000), 0)
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for t in (0, 100, 500, 900):
        assert abar[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-6)


def test_ddim_timesteps():
    assert ddim_timesteps(1000, 1) == [999]
    assert ddim_timesteps(1000, 2) == [999, 0]
    for steps in (3, 50, 999, 1000):
        ts = ddim_timesteps(1000, steps)
        assert len(ts) == steps and ts[0] == 999 and ts[-1] == 0
        assert all(a > b for a, b in zip(ts, ts[1:]))


def test_q_sample_closed_form():
    gen = ddpm(schedule="linear")
    betas = np.linspace(1e-4, 0.02, 1000)
    x0 = torch.rand(4, 3, 32, 32) * 2 - 1
    noise = torch.randn(4, 3, 32, 32)
    t = torch.tensor([0, 10, 500, 999])
    xt = gen.q_sample(x0, t, noise)
    for i, ti in enumerate(t.tolist()):
        abar = float(np.prod(1 - betas[: ti + 1]))
        expected = math.sqrt(abar) * x0[i] + math.sqrt(1 - abar) * noise[i]
        assert torch.allclose(xt[i], expected, atol=1e-5), ti


# --------------------------------------------------------------------------- the training loss
@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_loss_is_the_mse_of_the_prediction(prediction):
    """With a network that predicts 0 the loss is mean(target^2), target = the drawn noise (eps) or v;
    the network sees q_sample(x0, t, noise) and the timesteps / labels drawn from the global RNG."""
    gen = ddpm(prediction=prediction, p_uncond=0.0, guidance=0.0)
    gen.unet = Recorder()
    images = torch.rand(6, 3, 32, 32)
    labels = torch.tensor([0, 1, 0, 1, 1, 0])
    torch.manual_seed(11)
    loss = gen(images, labels)["loss"]
    torch.manual_seed(11)  # replay the draws: t, then the noise
    t = torch.randint(0, gen.timesteps, (6,))
    noise = torch.randn(6, 3, 32, 32)
    x0 = images * 2 - 1
    xt, t_seen, y_seen = gen.unet.calls[0]
    assert torch.equal(t_seen, t) and torch.equal(y_seen, labels)
    assert torch.allclose(xt, gen.q_sample(x0, t, noise), atol=1e-6)
    abar = gen.alphas_cumprod[t].view(-1, 1, 1, 1)
    target = noise if prediction == "eps" else abar.sqrt() * noise - (1 - abar).sqrt() * x0
    assert loss.item() == pytest.approx(target.pow(2).mean().item(), rel=1e-5)


def test_loss_near_one_at_init():
    """eps-prediction with random weights: the MSE against unit-variance noise starts near 1."""
    torch.manual_seed(0)
    gen = create_generator("ddpm", num_classes=2, image_size=32, channels=3, prediction="eps")  # the default network
    losses = [gen(torch.rand(8, 3, 32, 32), torch.arange(8) % 2)["loss"].item() for _ in range(3)]
    assert all(math.isfinite(v) for v in losses)
    assert 0.7 < np.mean(losses) < 1.6, losses


@pytest.mark.parametrize("p_uncond", [0.0, 0.1, 0.3])
def test_label_dropout_rate(p_uncond):
    gen = ddpm(p_uncond=p_uncond, guidance=0.0, num_classes=3)
    gen.unet = Recorder()
    n = 4000
    labels = torch.arange(n) % 3
    torch.manual_seed(5)
    gen(torch.rand(n, 3, 8, 8).repeat(1, 1, 4, 4), labels)
    y = gen.unet.calls[0][2]
    null = y == 3
    assert gen.null_class == 3
    assert abs(null.float().mean().item() - p_uncond) < 0.025  # 4000 draws: sd <= 0.0073
    assert torch.equal(y[~null], labels[~null])  # the other labels are kept


# --------------------------------------------------------------------------- DDIM sampling
@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("steps, eta", [(1, 0.0), (2, 0.0), (10, 0.0), (10, 1.0)])
def test_ddim_with_an_exact_denoiser_recovers_the_data(prediction, steps, eta):
    """If all data is one image, the exact denoiser makes DDIM land on it from any noise, in any number of steps."""
    gen = ddpm(prediction=prediction, sample_steps=steps, eta=eta)
    target = torch.rand(3, 32, 32, generator=seeded(1)) * 2 - 1
    gen.ema = Oracle(gen, target)
    images = gen.sample(4, generator=seeded(0)).float() / 255
    assert torch.allclose(images, ((target + 1) / 2).expand(4, -1, -1, -1), atol=1 / 255 + 1e-6)


def test_guidance_is_one_batched_forward_per_step():
    gen = ddpm(sample_steps=4)
    gen.ema = Oracle(gen, torch.zeros(3, 32, 32))
    gen.sample(5, generator=seeded(0), guidance=2.0)
    assert gen.ema.calls == [10] * 4  # conditional + unconditional together
    gen.ema.calls.clear()
    gen.sample(5, generator=seeded(0), guidance=0.0)
    assert gen.ema.calls == [5] * 4


def test_guidance_combines_conditional_and_unconditional():
    """eps = (1 + w) out(x, y) - w out(x, null): a network that outputs 1 for class 1 and 3 for the null
    class gives eps = 1 - 2w, and x0 = (x - sqrt(1 - abar) eps) / sqrt(abar)."""
    class ByClass(nn.Module):
        def forward(self, x, t, y):
            return torch.where(y == 2, 3.0, 1.0).view(-1, 1, 1, 1).expand_as(x).clone()

    gen = ddpm(schedule="linear", prediction="eps")
    gen.ema = ByClass()
    x = torch.randn(2, 3, 32, 32, generator=seeded(0)) * 0.1
    abar = gen.alphas_cumprod[0]
    for w in (0.0, 0.5, 2.0):
        gen.guidance = w
        eps, x0 = gen._predict_eps_x0(x, 0, torch.tensor([1, 1]))
        assert torch.allclose(eps, torch.full_like(x, 1 - 2 * w), atol=1e-3), w
        assert torch.allclose(x0, (x - (1 - abar).sqrt() * (1 - 2 * w)) / abar.sqrt(), atol=1e-5), w


def test_ddim_is_deterministic_and_steps_1_2_work():
    gen = ddpm()
    a = gen.sample(4, generator=seeded(0))
    assert torch.equal(a, gen.sample(4, generator=seeded(0)))
    assert not torch.equal(a, gen.sample(4, generator=seeded(1)))
    for steps in (1, 2):
        x = gen.sample(4, generator=seeded(0), sample_steps=steps)
        assert x.shape == (4, 3, 32, 32) and torch.equal(x, gen.sample(4, generator=seeded(0), sample_steps=steps))
    assert gen.sample_steps == 3  # a per-call setting does not stick


def test_eta_adds_reproducible_noise_independent_of_chunking():
    gen = ddpm(eta=1.0, sample_steps=4)
    a = gen.sample(7, generator=seeded(0))
    assert torch.equal(a, gen.sample(7, generator=seeded(0)))
    assert not torch.equal(a, gen.sample(7, generator=seeded(0), eta=0.0))
    gen.sample_batch_size = 3
    # the noise is drawn per sample, not per chunk; the convolutions of other batch sizes may round differently
    # in float, which can move a pixel by one grey level
    assert (a.int() - gen.sample(7, generator=seeded(0)).int()).abs().max() <= 1


def test_guidance_changes_the_samples():
    gen = ddpm()
    labels = torch.tensor([0, 1, 0, 1])
    plain = gen.sample(4, labels, generator=seeded(0), guidance=0.0)
    guided = gen.sample(4, labels, generator=seeded(0), guidance=3.0)
    assert not torch.equal(plain, guided)


def test_sampling_settings_can_change_after_training_and_are_saved(tmp_path):
    gen = ddpm()
    gen.sample_steps, gen.guidance, gen.eta = 5, 0.5, 0.25
    loaded = load_generator(gen.save(tmp_path / "ckpt"))
    assert (loaded.sample_steps, loaded.guidance, loaded.eta) == (5, 0.5, 0.25)
    assert torch.equal(gen.sample(3, generator=seeded(2)), loaded.sample(3, generator=seeded(2)))


# --------------------------------------------------------------------------- EMA
def test_sampling_uses_the_ema():
    gen = ddpm()
    before = gen.sample(4, generator=seeded(0))
    with torch.no_grad():
        for p in gen.unet.parameters():
            p.add_(torch.randn_like(p))
    assert torch.equal(before, gen.sample(4, generator=seeded(0)))  # the trained net is not used
    with torch.no_grad():
        next(gen.ema.parameters()).add_(1.0)
    assert not torch.equal(before, gen.sample(4, generator=seeded(0)))


def test_ema_follows_the_training_with_a_warm_up():
    gen = ddpm(ema_decay=0.999)
    gen.train()
    (opt,) = gen.configure_optimizers(1e-2)
    assert all(p.requires_grad for p in gen.unet.parameters())
    assert not any(p.requires_grad for p in gen.ema.parameters())
    assert {id(p) for p in opt.param_groups[0]["params"]} == {id(p) for p in gen.unet.parameters()}
    old = gen.ema.conv_in.weight.clone()
    gen.training_step(torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 0, 1]), [opt], OptimizerStep("ddpm"))
    new = gen.unet.conv_in.weight
    assert not torch.equal(new, old)
    # first update: decay min(0.999, 1 / 10) = 0.1
    assert torch.allclose(gen.ema.conv_in.weight, 0.1 * old + 0.9 * new.detach(), atol=1e-6)
    assert int(gen.ema_updates) == 1


def test_no_ema_samples_from_the_trained_net():
    gen = ddpm(ema_decay=0.0)
    assert gen.ema is None and gen.sampling_net is gen.unet
    assert not any(k.startswith("ema.") for k in gen.state_dict())
    before = gen.sample(2, generator=seeded(0))
    with torch.no_grad():
        gen.unet.conv_out.bias.add_(0.5)
    assert not torch.equal(before, gen.sample(2, generator=seeded(0)))


# --------------------------------------------------------------------------- sizes, options
@pytest.mark.parametrize("size, channels, mults", [(28, 1, [1, 2, 4]), (32, 3, [1, 2, 4]), (64, 3, [1, 2, 4, 4]),
                                                   (28, 3, [1, 2, 4]), (64, 1, [1, 2, 4, 4])])
def test_sizes(size, channels, mults):
    assert default_channel_mults(size) == mults
    gen = ddpm(image_size=size, channels=channels, base_width=8, channel_mults=None, sample_steps=2)
    assert gen.latent_dim == channels * size * size
    assert gen.sample_noise(3).shape == (3, gen.latent_dim)
    x = gen.sample(3, generator=seeded(0))
    assert x.shape == (3, channels, size, size) and x.dtype == torch.uint8
    gen.train()
    loss = gen(torch.rand(2, channels, size, size), torch.tensor([0, 1]))["loss"]
    assert math.isfinite(loss.item())


def test_attention_and_res_blocks_change_the_network():
    plain = ddpm(attention=False)
    assert not any("mid_attn" in k for k in plain.state_dict())
    assert any("mid_attn" in k for k in ddpm(attention=True).state_dict())
    n_params = lambda g: sum(p.numel() for p in g.unet.parameters())  # noqa: E731
    assert n_params(ddpm(num_res_blocks=2)) > n_params(ddpm(num_res_blocks=1))
    assert n_params(ddpm(base_width=16)) > n_params(ddpm(base_width=8))
    # one count per level: no block at 32 px going down (one going up), two at 16 px
    light = ddpm(num_res_blocks=[0, 2])
    assert [len(b) for b in light.unet.down_blocks] == [0, 2] and [len(b) for b in light.unet.up_blocks] == [3, 1]
    assert light.sample(2, generator=seeded(0)).shape == (2, 3, 32, 32)


def test_save_load_with_other_options(tmp_path):
    gen = ddpm(prediction="v", schedule="linear", timesteps=200, eta=0.5, guidance=0.5, p_uncond=0.2,
               channel_mults=[1, 2, 2], attention=True, dropout=0.1, num_res_blocks=2)
    gen.train()
    gen.training_step(torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 0, 1]), gen.configure_optimizers(1e-3),
                      OptimizerStep("ddpm"))
    loaded = load_generator(gen.save(tmp_path / "ckpt"))
    assert (loaded.prediction, loaded.schedule, loaded.timesteps, loaded.eta) == ("v", "linear", 200, 0.5)
    assert int(loaded.ema_updates) == 1
    assert torch.equal(gen.sample(4, generator=seeded(3)), loaded.sample(4, generator=seeded(3)))


@pytest.mark.parametrize("options, match", [
    ({"schedule": "sigmoid"}, r"ddpm: schedule='sigmoid'.*linear.*cosine"),
    ({"prediction": "x0"}, r"ddpm: prediction='x0'"),
    ({"sample_steps": 0}, r"ddpm: sample_steps=0 must be an integer >= 1"),
    ({"sample_steps": 1001}, r"ddpm: sample_steps=1001 .*timesteps=1000"),
    ({"sample_steps": 60, "timesteps": 50}, r"ddpm: sample_steps=60 .*timesteps=50"),
    ({"sample_steps": 2.5}, r"ddpm: sample_steps=2.5"),
    ({"p_uncond": -0.1}, r"ddpm: p_uncond=-0.1 must be a number in \[0, 1\)"),
    ({"p_uncond": 1.0}, r"ddpm: p_uncond=1.0 must be a number in \[0, 1\)"),
    ({"guidance": -1.0}, r"ddpm: guidance=-1.0 must be .*>= 0"),
    ({"guidance": float("nan")}, r"ddpm: guidance=nan"),
    ({"guidance": 1.0, "p_uncond": 0.0}, r"ddpm: guidance=1.0 needs an unconditional model.*p_uncond=0"),
    ({"eta": 1.5}, r"ddpm: eta=1.5 must be a number in \[0, 1\]"),
    ({"timesteps": 1}, r"ddpm: timesteps=1"),
    ({"ema_decay": 1.0}, r"ddpm: ema_decay=1.0"),
    ({"base_width": 7}, r"ddpm: base_width=7"),
    ({"num_res_blocks": 0}, r"ddpm: num_res_blocks=0 must be an integer >= 1 or a list"),
    ({"num_res_blocks": [1, 1, 1]}, r"ddpm: num_res_blocks=\[1, 1, 1\] .*one integer >= 0 per level.*\[1, 2\]"),
    ({"channel_mults": []}, r"ddpm: channel_mults=\[\]"),
    ({"channel_mults": [1, 2, 2, 2, 2, 2]}, r"ddpm: image_size=32 cannot be halved 5 times"),
    ({"latent_dim": 64}, r"ddpm: latent_dim=64.*3072.*None"),
    ({"dropout": 1.0}, r"ddpm: dropout=1.0"),
    ({"attention": "yes"}, r"ddpm: attention='yes'"),
])
def test_bad_options_are_refused(options, match):
    with pytest.raises(ValueError, match=match):
        ddpm(**options)


def test_bad_sampling_settings_are_refused_at_sampling_time():
    gen = ddpm()
    with pytest.raises(ValueError, match="sample_steps=0"):
        gen.sample_steps = 0
    with pytest.raises(ValueError, match="guidance=-0.5"):
        gen.sample(2, guidance=-0.5)
    with pytest.raises(ValueError, match="eta=2"):
        gen.eta = 2
    assert (gen.sample_steps, gen.guidance, gen.eta) == (3, 1.0, 0.0)
    explicit = create_generator("ddpm", num_classes=2, image_size=32, channels=3, latent_dim=3072, **TINY)
    assert explicit.latent_dim == 3072  # the one value latent_dim can take


def test_image_size_30_with_three_levels_is_refused():
    with pytest.raises(ValueError, match=r"image_size=30.*divisible by 4"):
        ddpm(image_size=30, channel_mults=[1, 2, 2])
    assert ddpm(image_size=30, channel_mults=None).sample(1).shape == (1, 3, 30, 30)  # default: 30 -> 15


# --------------------------------------------------------------------------- real data
def test_short_training_on_malaria_cells(malaria32):
    data = malaria32.train.subset(np.arange(320))
    gen = ddpm(seed=0)
    losses: list[float] = []
    original = gen.training_step

    def recording(*args, **kwargs):
        out = original(*args, **kwargs)
        losses.append(float(out["loss"].detach()))
        return out

    gen.training_step = recording
    config = GeneratorTrainConfig(steps=20, batch_size=16, lr=1e-3, checkpoint_every=0, sample_every=0, log_every=0)
    trained = train_generator(gen, data, config=config)
    assert len(losses) == 20 and all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-5:]) < np.mean(losses[:5]), losses
    assert int(trained.ema_updates) == 20
    images = trained.sample(4, generator=seeded(0))
    assert images.shape == (4, 3, 32, 32) and images.float().std() > 0


def test_interrupted_training_resumes_bit_identical(malaria32, tmp_path):
    """The EMA copy and its warm-up counter are in the checkpoint: a crash after step 3 and a resume end
    exactly where an uninterrupted run does."""
    data = malaria32.train.subset(np.arange(64))
    config = GeneratorTrainConfig(steps=5, batch_size=8, checkpoint_every=3, sample_every=0, log_every=1)
    # channel_mults as a list: options given as tuples do not resume in-process (see the report)
    whole = train_generator(ddpm(seed=4, channel_mults=[1, 2]), data, config=config, out_dir=tmp_path / "whole")

    crashing = ddpm(seed=4, channel_mults=[1, 2])
    original = crashing.training_step

    def crash_at_step_4(images, labels, optimizers, step):
        if int(crashing.ema_updates) == 3:
            raise RuntimeError("simulated crash")
        return original(images, labels, optimizers, step)

    crashing.training_step = crash_at_step_4
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_generator(crashing, data, config=config, out_dir=tmp_path / "cut")
    resumed = train_generator(ddpm(seed=99, channel_mults=[1, 2]), data, config=config, out_dir=tmp_path / "cut",
                              resume=True)
    assert int(resumed.ema_updates) == 5
    for (k, v), (k2, v2) in zip(whole.state_dict().items(), resumed.state_dict().items()):
        assert k == k2 and torch.equal(v, v2), k


def test_latent_interpolation_between_starting_noises():
    """With eta=0 DDIM maps x_T to an image deterministically, so synthaug.latent can interpolate codes."""
    from synthaug import latent

    gen = ddpm()
    a, b = gen.sample_noise(2, generator=seeded(0))
    path = latent.interpolate(gen, a, b, label=1, steps=4)
    ends = latent.decode(gen, torch.stack([a, b]), 1)
    assert path.shape == (4, 3, 32, 32)
    assert torch.equal(path[0], ends[0]) and torch.equal(path[-1], ends[1])
    with pytest.raises(ValueError, match="latent search"):
        latent.invert(gen, torch.zeros(1, 3, 32, 32, dtype=torch.uint8), 0)
