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
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import is_int
from .base import Generator, register_generator
from .blocks import make_ema, to_signed, to_unit, update_ema
from .options import SCHEDULES, DDPMOptions, check_guidance, check_sample_steps, check_value

MAX_DOWNSAMPLES = 3


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
    return [int(t) for t in torch.linspace(timesteps - 1, 0, sample_steps, dtype=torch.float64).round().long()]


def _groups(ch: int) -> int:
    """GroupNorm groups: about 4 channels per group, at most 32, dividing ``ch``."""
    g = min(32, max(1, ch // 4))
    while ch % g:
        g -= 1
    return g


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding ``(n, dim)`` of integer timesteps ``t`` (n,)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / max(1, half))
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return F.pad(emb, (0, dim - 2 * half))


# --------------------------------------------------------------------------- the UNet
class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, plus the (time + class) embedding, GroupNorm -> SiLU -> dropout -> conv, residual."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(in_ch), in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.norm2 = nn.GroupNorm(_groups(out_ch), out_ch)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Single-head self-attention over the pixels of a feature map, residual."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(_groups(ch), ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.out = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).flatten(2).transpose(1, 2).chunk(3, dim=2)  # (n, hw, c) each
        a = F.scaled_dot_product_attention(q, k, v)
        return x + self.out(a.transpose(1, 2).reshape(n, c, h, w))


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 convolution."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """A DDPM-style UNet: one level per entry of ``channel_mults`` (width ``base_width * mult``) with
    ``num_res_blocks[level]`` residual blocks going down and one more going up (on the skip
    connections), stride-2 convolutions down, nearest-neighbour upsampling + conv up, and a middle of
    two residual blocks with optional self-attention between them. Every block adds the embedding
    ``MLP(sinusoid(t)) + Embedding(class)``; class ``num_classes`` is the "null" class.
    """

    def __init__(self, *, channels: int, num_classes: int, base_width: int, channel_mults: Sequence[int],
                 num_res_blocks: Sequence[int], attention: bool, dropout: float) -> None:
        super().__init__()
        self.base_width = base_width
        emb_dim = 4 * base_width
        self.time_mlp = nn.Sequential(nn.Linear(base_width, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_embed = nn.Embedding(num_classes + 1, emb_dim)  # the last row: the null class
        self.conv_in = nn.Conv2d(channels, base_width, 3, padding=1)

        widths = [base_width * m for m in channel_mults]
        self.down_blocks, self.downsample = nn.ModuleList(), nn.ModuleList()
        skips, ch = [base_width], base_width  # channels of what the down path hands to the up path
        for level, width in enumerate(widths):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks[level]):
                blocks.append(ResBlock(ch, width, emb_dim, dropout))
                ch = width
                skips.append(ch)
            self.down_blocks.append(blocks)
            if level < len(widths) - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
        self.mid1 = ResBlock(ch, ch, emb_dim, dropout)
        self.mid_attn = SelfAttention(ch) if attention else nn.Identity()
        self.mid2 = ResBlock(ch, ch, emb_dim, dropout)
        self.up_blocks, self.upsample = nn.ModuleList(), nn.ModuleList()
        for level in reversed(range(len(widths))):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks[level] + 1):
                blocks.append(ResBlock(ch + skips.pop(), widths[level], emb_dim, dropout))
                ch = widths[level]
            self.up_blocks.append(blocks)
            if level > 0:
                self.upsample.append(Upsample(ch))
        self.norm_out = nn.GroupNorm(_groups(ch), ch)
        self.conv_out = nn.Conv2d(ch, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.base_width)) + self.class_embed(y)
        h = self.conv_in(x)
        hs = [h]
        for level, blocks in enumerate(self.down_blocks):
            for block in blocks:
                h = block(h, emb)
                hs.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)
                hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for level, blocks in enumerate(self.up_blocks):
            for block in blocks:
                h = block(torch.cat([h, hs.pop()], dim=1), emb)
            if level < len(self.upsample):
                h = self.upsample[level](h)
        return self.conv_out(F.silu(self.norm_out(h)))


def default_channel_mults(image_size: int) -> list[int]:
    """Widths (x ``base_width``) 1, 2, 4, 4: one more level per halving of ``image_size`` while it
    stays even and >= 7 px, at most 3 halvings. 28 px -> [1, 2, 4] (28, 14, 7 px); 32 px -> [1, 2, 4]
    (32, 16, 8 px); 64 px -> [1, 2, 4, 4] (64, 32, 16, 8 px)."""
    halvings, size = 0, image_size
    while halvings < MAX_DOWNSAMPLES and size % 2 == 0 and size // 2 >= 7:
        size //= 2
        halvings += 1
    return [1, 2, 4, 4][: halvings + 1]


def unet_levels(image_size: int, options: DDPMOptions, owner: str = "ddpm") -> tuple[list[int], list[int]]:
    """``(channel_mults, num_res_blocks)``, one entry per UNet level, for ``image_size``: the options'
    (or the defaults for that size), refused when the blocks do not match the levels or the image size
    does not halve once per level but the last."""
    mults = default_channel_mults(image_size) if options.channel_mults is None else list(options.channel_mults)
    blocks = options.num_res_blocks
    blocks = [blocks] * len(mults) if is_int(blocks) else list(blocks)
    if len(blocks) != len(mults):
        raise ValueError(f"{owner}: num_res_blocks={options.num_res_blocks!r} must be an integer >= 1 or a list of "
                         f"one integer >= 0 per level of channel_mults={mults} (e.g. {[1] * len(mults)})")
    halvings = len(mults) - 1
    if image_size % (2 ** halvings) or image_size // (2 ** halvings) < 2:
        raise ValueError(f"{owner}: image_size={image_size} cannot be halved {halvings} times (one fewer than the "
                         f"entries of channel_mults={mults}) down to at least 2 px; use an image size divisible "
                         f"by {2 ** halvings} (e.g. 32 or 64) or fewer channel_mults")
    return mults, blocks


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
        self._sample_steps = self._check_sample_steps(options.sample_steps)
        self._eta = self._check_eta(options.eta)
        self._guidance = self._check_guidance(options.guidance)

    # ----------------------------------------------------------------- sampling settings
    # the options' declarations check each value; the functions of options.py relate it to the model
    def _check_sample_steps(self, value: Any) -> int:
        return check_sample_steps(check_value(DDPMOptions, "sample_steps", value, "ddpm"), self.timesteps)

    @staticmethod
    def _check_eta(value: Any) -> float:
        return check_value(DDPMOptions, "eta", value, "ddpm")

    def _check_guidance(self, value: Any) -> float:
        return check_guidance(check_value(DDPMOptions, "guidance", value, "ddpm"), self.p_uncond)

    #: the sampling settings: settable after training (validated), saved with the model's options
    sample_steps = _SamplingSetting("DDIM steps per image; sampling time grows linearly with it")
    eta = _SamplingSetting("DDIM stochasticity in [0, 1]: 0 deterministic, 1 DDPM-like")
    guidance = _SamplingSetting("classifier-free guidance weight w >= 0; 0: purely conditional")

    @torch.no_grad()
    def sample(self, n: int, labels: torch.Tensor | None = None, *, generator: torch.Generator | None = None,
               sample_steps: int | None = None, eta: float | None = None,
               guidance: float | None = None) -> torch.Tensor:
        """As ``Generator.sample``; ``sample_steps``, ``eta`` and ``guidance`` override the model's settings
        for this call only. Cost: ``sample_steps`` UNet evaluations per image, twice that with guidance > 0."""
        saved = (self._sample_steps, self._eta, self._guidance)
        if sample_steps is not None:
            self._sample_steps = self._check_sample_steps(sample_steps)
        if eta is not None:
            self._eta = self._check_eta(eta)
        if guidance is not None:
            self._guidance = self._check_guidance(guidance)
        try:
            return super().sample(n, labels, generator=generator)
        finally:
            self._sample_steps, self._eta, self._guidance = saved

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
        t = torch.randint(0, self.timesteps, (n,), device=x0.device)
        noise = torch.randn_like(x0)
        drop = torch.rand(n, device=x0.device) < self.p_uncond
        y = torch.where(drop, torch.full_like(labels, self.null_class), labels)
        xt = self.q_sample(x0, t, noise)
        if self.prediction == "eps":
            target = noise
        else:
            abar = self.alphas_cumprod[t].view(-1, 1, 1, 1)
            target = abar.sqrt() * noise - (1 - abar).sqrt() * x0
        loss = F.mse_loss(self.unet(xt, t, y), target)
        return {"loss": loss}

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
        return self._denoise(x, labels, ddim_timesteps(self.timesteps, self._sample_steps), step_gens)

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
            ts = [t0] + [t for t in ddim_timesteps(self.timesteps, steps) if t < t0]
            return self._denoise(x, labels.to(x0.device), ts, None)
        finally:
            self._guidance, self._eta = saved
            self.train(was_training)

    def _denoise(self, x: torch.Tensor, labels: torch.Tensor, ts: list[int],
                 step_gens: list[torch.Generator] | None) -> torch.Tensor:
        """DDIM from ``x`` at timestep ``ts[0]`` through ``ts`` (descending) to images in [0, 1]."""
        one = torch.ones((), device=x.device)
        for i, t in enumerate(ts):
            eps, x0 = self._predict_eps_x0(x, t, labels)
            abar = self.alphas_cumprod[t]
            abar_prev = self.alphas_cumprod[ts[i + 1]] if i + 1 < len(ts) else one
            sigma = self._eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).clamp(min=0).sqrt()
            x = abar_prev.sqrt() * x0 + (1 - abar_prev - sigma ** 2).clamp(min=0).sqrt() * eps
            if step_gens is not None and i + 1 < len(ts):
                z = torch.stack([torch.randn(x.shape[1:], generator=g) for g in step_gens]).to(x.device)
                x = x + sigma * z
        return to_unit(x).clamp(0, 1)


def _per_image_generators(noise: torch.Tensor) -> list[torch.Generator]:
    """One CPU generator per image, seeded by a hash of its starting noise (for DDIM with eta > 0)."""
    gens = []
    for row in noise.detach().float().cpu().contiguous():
        seed = int.from_bytes(hashlib.blake2b(row.numpy().tobytes(), digest_size=8).digest(), "little")
        gens.append(torch.Generator().manual_seed(seed & (2 ** 63 - 1)))
    return gens
