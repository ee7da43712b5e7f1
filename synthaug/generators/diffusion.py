"""ddpm: a small class-conditional diffusion model (UNet, classifier-free guidance, DDIM sampling).

Training (Ho et al. 2020): images in [-1, 1] are noised to a uniformly drawn timestep ``t`` of a
``linear`` or ``cosine`` schedule, ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``, and a UNet
conditioned on ``t`` and the class predicts ``v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0`` (default;
Salimans & Ho 2022) or ``eps``; the loss is the mean squared error. v-prediction is the default
because it suits short CPU trainings: after a few hundred steps an eps model's x_0 estimates at
high noise are still so noisy that deterministic DDIM keeps visible pixel noise, while a v model
already gives smooth cells. With probability ``p_uncond`` a label is replaced by an extra
"null" class, so the same network also learns the unconditional model (classifier-free guidance,
Ho & Salimans 2021). An EMA copy of the UNet is kept and used for sampling.

Sampling: DDIM (Song et al. 2021) with ``sample_steps`` steps spread evenly over the ``timesteps``.
Guidance convention (Ho & Salimans): ``out = (1 + w) out(x, y) - w out(x, null)`` on the network's
output (eps or v: the same, as both are linear in it), so ``guidance=0`` is
the purely conditional model (one network evaluation per step) and ``w > 0`` trades diversity for
class fidelity (two evaluations per step, batched into one forward). Sampling time is proportional to
``sample_steps x (2 if guidance > 0 else 1)`` UNet evaluations.

Randomness: ``sample_noise(n)`` draws the starting noise ``x_T`` as ``(n, C*H*W)`` (``latent_dim``).
With ``eta=0`` (default) DDIM is deterministic given ``x_T``. With ``eta > 0`` every step adds fresh
noise, drawn from a CPU ``torch.Generator`` per image seeded by a hash of that image's ``x_T``: the same
``sample_noise`` gives the same images, whatever the chunking or the device.
"""
from __future__ import annotations

import hashlib
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import is_int
from .base import Generator, register_generator
from .blocks import make_ema, to_signed, to_unit, update_ema
from .options import SCHEDULES, DDPMOptions, check_guidance, check_sample_steps, check_value
from .samplers import ddim, dpmpp_2m, sampler_timesteps
from .unet import UNet, default_channel_mults, unet_levels  # noqa: F401 (default_channel_mults: importable here)

#: log-normal noise levels (``noise_sampling="lognormal"``): EDM's ``P_mean``, ``P_std`` (Karras et al. 2022)
LOGNORMAL_MEAN, LOGNORMAL_STD = -1.2, 1.2

# --------------------------------------------------------------------------- noise schedules
def beta_schedule(name: str, timesteps: int) -> torch.Tensor:
    """``betas`` (float64, length ``timesteps``) of the ``"linear"`` or ``"cosine"`` schedule.

    linear (Ho et al.): from 1e-4 to 0.02 for 1000 steps, both scaled by ``1000 / timesteps`` so the
    total amount of noise does not depend on ``timesteps``. cosine (Nichol & Dhariwal 2021):
    ``abar(t) = cos^2(((t / T + s) / (1 + s)) pi / 2)`` with ``s = 0.008``, betas clipped at 0.999.
    """
    if name == "linear":
        scale = 1000.0 / timesteps
        return torch.linspace(1e-4 * scale, 0.02 * scale, timesteps, dtype=torch.float64).clamp(max=0.999)
    if name == "cosine":
        s = 0.008
        steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
        abar = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
    raise ValueError(f"noise schedule {name!r}: use one of {list(SCHEDULES)}")


def ddim_timesteps(timesteps: int, sample_steps: int) -> list[int]:
    """The ``sample_steps`` timesteps DDIM visits, from ``timesteps - 1`` down to 0, evenly spaced
    (one step: ``[timesteps - 1]``, straight from noise to the predicted image)."""
    return sampler_timesteps("ddim", timesteps, sample_steps)


# --------------------------------------------------------------------------- the generator
class _SamplingSetting:
    """A sampling option of ``DDPM`` that can change after training: ``gen.<name> = value`` checks the
    value with ``gen._check_<name>`` and records it in ``gen.generator_options``, so ``save`` keeps it."""

    def __init__(self, doc: str) -> None:
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        return self if obj is None else getattr(obj, "_" + self.name)

    def __set__(self, obj: Any, value: Any) -> None:
        value = getattr(obj, "_check_" + self.name)(value)
        setattr(obj, "_" + self.name, value)
        if obj.generator_name:  # made by create_generator: a saved checkpoint samples as the model does now
            obj.generator_options[self.name] = value


@register_generator("ddpm", options=DDPMOptions)
class DDPM(Generator):
    """Class-conditional diffusion model: a small UNet, classifier-free guidance, DDIM sampling.

    Network: ``base_width`` (channels of the first level), ``channel_mults`` (one level per entry;
    None: from the image size, see ``default_channel_mults``), ``num_res_blocks`` (per level: an
    integer or one integer per level), ``attention`` (self-attention at the lowest resolution),
    ``dropout``. Diffusion: ``schedule`` (``"cosine"`` or ``"linear"``), ``timesteps``,
    ``prediction`` (``"v"`` or ``"eps"``), ``p_uncond`` (label dropout, for guidance), ``ema_decay``
    (the EMA copy that samples; its decay warms up as ``min(ema_decay, (1 + k) / (10 + k))`` after
    ``k`` updates; 0: no EMA). Sampling: ``sample_steps`` (DDIM steps), ``eta`` (0: deterministic
    DDIM, 1: DDPM-like noise), ``guidance`` (``w``: ``(1 + w) out_cond - w out_uncond``; 0 = purely
    conditional). The three sampling options can be changed after training (``gen.sample_steps = 100``,
    saved with the model) or per call (``gen.sample(n, labels, sample_steps=20, guidance=0)``).
    ``latent_dim`` is always ``channels * image_size**2`` (the starting noise x_T); leave it None.
    """

    #: the sampler is dozens of UNet evaluations deep: no gradient search for latent codes (synthaug.latent)
    supports_latent_search = False
    #: images per generate() call: with guidance the UNet sees twice as many, and on a CPU batches
    #: above ~128 are slower per image
    sample_batch_size = 64
    sampling_settings = ("sampler", "sample_steps", "eta", "guidance")

    def __init__(self, *, num_classes: int, image_size: int, channels: int,
                 options: DDPMOptions | None = None) -> None:
        options = options or DDPMOptions()
        # invalid geometry is reported by the base class, argument by argument, before latent_dim
        pixels = channels * image_size ** 2 if is_int(channels) and is_int(image_size) else 1
        super().__init__(num_classes=num_classes, image_size=image_size, channels=channels, latent_dim=pixels)
        if options.latent_dim is not None and options.latent_dim != pixels:
            raise ValueError(f"ddpm: latent_dim={options.latent_dim!r}: a diffusion model's latent code is its "
                             f"starting noise, channels * image_size**2 = {pixels} values; leave latent_dim unset "
                             "(None)")
        mults, blocks = unet_levels(image_size, options)
        self.schedule, self.timesteps, self.prediction = options.schedule, options.timesteps, options.prediction
        self.p_uncond, self.ema_decay = float(options.p_uncond), float(options.ema_decay)
        self.null_class = num_classes

        self.unet = UNet(channels=channels, num_classes=num_classes, base_width=options.base_width,
                         channel_mults=mults, num_res_blocks=blocks, attention=options.attention,
                         dropout=float(options.dropout))
        self.ema = make_ema(self.unet) if self.ema_decay > 0 else None
        # how many EMA updates so far: the decay warms up as min(ema_decay, (1 + k) / (10 + k))
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        betas = beta_schedule(self.schedule, self.timesteps)
        # derived from the options, so not stored in checkpoints (persistent=False)
        self.register_buffer("alphas_cumprod", torch.cumprod(1 - betas, 0).float(), persistent=False)
        self.register_buffer("betas", betas.float(), persistent=False)
        self.loss_weighting, self.snr_gamma = options.loss_weighting, float(options.snr_gamma)
        self.noise_sampling = options.noise_sampling
        self._sampler = self._check_sampler(options.sampler)
        self._sample_steps = self._check_sample_steps(options.sample_steps)
        self._eta = self._check_eta(options.eta)
        self._guidance = self._check_guidance(options.guidance)

    # ----------------------------------------------------------------- sampling settings
    # the options' declarations check each value; the functions of options.py relate it to the model
    def _check_sample_steps(self, value: Any) -> int:
        return check_sample_steps(check_value(DDPMOptions, "sample_steps", value, "ddpm"), self.timesteps)

    @staticmethod
    def _check_sampler(value: Any) -> str:
        return check_value(DDPMOptions, "sampler", value, "ddpm")

    @staticmethod
    def _check_eta(value: Any) -> float:
        return check_value(DDPMOptions, "eta", value, "ddpm")

    def _check_guidance(self, value: Any) -> float:
        return check_guidance(check_value(DDPMOptions, "guidance", value, "ddpm"), self.p_uncond)

    #: the sampling settings: settable after training (validated), saved with the model's options
    sampler = _SamplingSetting("ddim, or dpmpp-2m (DPM-Solver++(2M), second order: 10-20 steps suffice)")
    sample_steps = _SamplingSetting("DDIM steps per image; sampling time grows linearly with it")
    eta = _SamplingSetting("DDIM stochasticity in [0, 1]: 0 deterministic, 1 DDPM-like")
    guidance = _SamplingSetting("classifier-free guidance weight w >= 0; 0: purely conditional")

    @torch.no_grad()
    def sample(self, n: int, labels: torch.Tensor | None = None, *, generator: torch.Generator | None = None,
               sample_steps: int | None = None, eta: float | None = None,
               guidance: float | None = None, sampler: str | None = None) -> torch.Tensor:
        """As ``Generator.sample``; ``sample_steps``, ``eta``, ``guidance`` and ``sampler`` override the model's
        settings for this call only. Cost: ``sample_steps`` UNet evaluations per image, twice that with guidance > 0."""
        saved = (self._sample_steps, self._eta, self._guidance, self._sampler)
        if sampler is not None:
            self._sampler = self._check_sampler(sampler)
        if sample_steps is not None:
            self._sample_steps = self._check_sample_steps(sample_steps)
        if eta is not None:
            self._eta = self._check_eta(eta)
        if guidance is not None:
            self._guidance = self._check_guidance(guidance)
        try:
            return super().sample(n, labels, generator=generator)
        finally:
            self._sample_steps, self._eta, self._guidance, self._sampler = saved

    # ----------------------------------------------------------------- diffusion
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise`` (x0 in [-1, 1], t (n,) integer timesteps)."""
        abar = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The diffusion loss on images in [0, 1]: MSE of the predicted v (or eps). Timesteps, noise and
        label dropout are drawn from the global torch RNG (which the training loop seeds and checkpoints)."""
        x0 = to_signed(images)
        n = x0.shape[0]
        t = self.draw_timesteps(n, x0.device)
        noise = torch.randn_like(x0)
        drop = torch.rand(n, device=x0.device) < self.p_uncond
        y = torch.where(drop, torch.full_like(labels, self.null_class), labels)
        xt = self.q_sample(x0, t, noise)
        if self.prediction == "eps":
            target = noise
        else:
            abar = self.alphas_cumprod[t].view(-1, 1, 1, 1)
            target = abar.sqrt() * noise - (1 - abar).sqrt() * x0
        if self.loss_weighting == "none":
            return {"loss": F.mse_loss(self.unet(xt, t, y).float(), target)}
        per_image = (self.unet(xt, t, y).float() - target).pow(2).flatten(1).mean(1)
        return {"loss": (self.loss_weights(t) * per_image).mean()}

    def draw_timesteps(self, n: int, device: torch.device) -> torch.Tensor:
        """Training timesteps ``(n,)``: uniform, or (``noise_sampling="lognormal"``) the timestep whose noise level
        ``sigma = sqrt((1 - abar) / abar)`` is nearest a log-normal draw ``log sigma ~ N(-1.2, 1.2^2)`` (EDM's)."""
        if self.noise_sampling == "uniform":
            return torch.randint(0, self.timesteps, (n,), device=device)
        log_sigma = torch.randn(n, device=device) * LOGNORMAL_STD + LOGNORMAL_MEAN
        levels = 0.5 * (torch.log1p(-self.alphas_cumprod) - torch.log(self.alphas_cumprod))  # increasing in t
        t = torch.searchsorted(levels, log_sigma).clamp(max=self.timesteps - 1)
        below = (t - 1).clamp(min=0)  # the nearer of the two neighbours
        closer = (log_sigma - levels[below]).abs() < (levels[t] - log_sigma).abs()
        return torch.where(closer, below, t)

    def loss_weights(self, t: torch.Tensor) -> torch.Tensor:
        """min-SNR-gamma weights of timesteps ``t``: ``min(SNR, gamma) / (SNR + 1)`` for v-prediction (its loss is
        the x0 loss times ``SNR + 1``), ``min(SNR, gamma) / SNR`` for eps-prediction."""
        abar = self.alphas_cumprod[t]
        snr = abar / (1 - abar)
        capped = snr.clamp(max=self.snr_gamma)
        return capped / (snr + 1) if self.prediction == "v" else capped / snr

    def configure_optimizers(self, lr: float) -> list[torch.optim.Optimizer]:
        return [torch.optim.Adam(self.unet.parameters(), lr=lr)]

    def training_step(self, images, labels, optimizers, step):
        losses = super().training_step(images, labels, optimizers, step)
        if self.ema is not None:
            k = int(self.ema_updates)
            update_ema(self.ema, self.unet, min(self.ema_decay, (1 + k) / (10 + k)))
            self.ema_updates += 1
        return losses

    @property
    def sampling_net(self) -> nn.Module:
        """The network sampling uses: the EMA copy when there is one."""
        return self.ema if self.ema is not None else self.unet

    def _predict_eps_x0(self, x: torch.Tensor, t: int, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Guided (eps, x0) at timestep ``t``; conditional and unconditional in one batched forward."""
        n = x.shape[0]
        tt = torch.full((n,), t, device=x.device, dtype=torch.long)
        net = self.sampling_net
        if self._guidance > 0:
            out_c, out_u = net(torch.cat([x, x]), torch.cat([tt, tt]),
                               torch.cat([labels, torch.full_like(labels, self.null_class)])).chunk(2)
            out = (1 + self._guidance) * out_c - self._guidance * out_u
        else:
            out = net(x, tt, labels)
        out = out.float()  # under autocast the network answers in bf16/fp16; the sampler's maths stays float32
        abar = self.alphas_cumprod[t]
        if self.prediction == "eps":
            x0 = (x - (1 - abar).sqrt() * out) / abar.sqrt()
        else:
            x0 = abar.sqrt() * x - (1 - abar).sqrt() * out
        x0 = x0.clamp(-1, 1)
        eps = (x - abar.sqrt() * x0) / (1 - abar).sqrt()  # consistent with the clipped x0
        return eps, x0

    def generate(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """DDIM from ``noise`` ``(n, C*H*W)`` (x_T) to images in [0, 1]."""
        n = noise.shape[0]
        x = noise.reshape(n, self.channels, self.image_size, self.image_size)
        step_gens = _per_image_generators(noise) if self._eta > 0 else None
        return self._denoise(x, labels, sampler_timesteps(self._sampler, self.timesteps, self._sample_steps), step_gens)

    @torch.no_grad()
    def edit(self, images: torch.Tensor, labels: torch.Tensor, *, strength: float, noise: torch.Tensor,
             sample_steps: int | None = None, guidance: float | None = None) -> torch.Tensor:
        """SDEdit (Meng et al. 2022): noise real ``images`` (uint8 or [0, 1], ``(n, C, H, W)``) to timestep
        ``t0 = round(strength * (timesteps - 1))`` with ``noise`` (standard normal, same shape) and denoise
        them with DDIM under their ``labels``; images in [0, 1]. Strength 0 returns the images, 1 draws new
        ones from pure noise. DDIM visits ``t0`` and the timesteps of the ``sample_steps`` grid below it
        (about ``strength * sample_steps`` network evaluations), with ``guidance`` (default: the model's)."""
        strength = float(strength)
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength={strength!r} must be in [0, 1] (the share of the noise schedule an edit "
                             "goes up; 0.2-0.5 keeps a cell's content)")
        x0 = images.float().div(255) if images.dtype == torch.uint8 else images.float()
        x0 = to_signed(x0.to(self.device))
        t0 = int(round(strength * (self.timesteps - 1)))
        if t0 == 0:
            return to_unit(x0).clamp(0, 1)
        steps = self._check_sample_steps(sample_steps) if sample_steps is not None else self._sample_steps
        saved = (self._guidance, self._eta)
        if guidance is not None:
            self._guidance = self._check_guidance(guidance)
        self._eta = 0.0  # deterministic DDIM: the edit depends on its noise only
        was_training = self.training
        self.eval()
        try:
            x = self.q_sample(x0, torch.full((len(x0),), t0, device=x0.device, dtype=torch.long),
                              noise.to(x0.device, x0.dtype))
            ts = [t0] + [t for t in sampler_timesteps(self._sampler, self.timesteps, steps) if t < t0]
            return self._denoise(x, labels.to(x0.device), ts, None)
        finally:
            self._guidance, self._eta = saved
            self.train(was_training)

    def _denoise(self, x: torch.Tensor, labels: torch.Tensor, ts: list[int],
                 step_gens: list[torch.Generator] | None) -> torch.Tensor:
        """The model's sampler from ``x`` at timestep ``ts[0]`` through ``ts`` (descending) to images in [0, 1]."""
        def denoise(x_t: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
            return self._predict_eps_x0(x_t, t, labels)

        if self._sampler == "dpmpp-2m":
            x = dpmpp_2m(x, ts, denoise, self.alphas_cumprod)
        else:
            def step_noise() -> torch.Tensor:
                return torch.stack([torch.randn(x.shape[1:], generator=g) for g in step_gens]).to(x.device)

            x = ddim(x, ts, denoise, self.alphas_cumprod, eta=self._eta,
                     step_noise=step_noise if step_gens is not None else None)
        return to_unit(x).clamp(0, 1)


def _per_image_generators(noise: torch.Tensor) -> list[torch.Generator]:
    """One CPU generator per image, seeded by a hash of its starting noise (for DDIM with eta > 0)."""
    gens = []
    for row in noise.detach().float().cpu().contiguous():
        seed = int.from_bytes(hashlib.blake2b(row.numpy().tobytes(), digest_size=8).digest(), "little")
        gens.append(torch.Generator().manual_seed(seed & (2 ** 63 - 1)))
    return gens
