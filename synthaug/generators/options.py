"""Generator options: one typed dataclass per registered generator, each option declared once.

A field is declared with ``option(default, help, ...)``: its annotation is its type, ``help`` is one
line for the docs, ``minimum`` / ``maximum`` (``min_inclusive`` / ``max_inclusive``), ``choices`` or a
``check`` function bound it, and ``hint`` ends its error message. From that one declaration come

* the validation ``create_generator`` and ``load_generator`` run once, before a model is built
  (``build_options``: "did you mean" for unknown names, each value through ``synthaug.checks``, then the
  dataclass's ``check(owner)`` for rules that relate options to each other);
* the defaults ``generator_options(name)`` lists;
* the option tables of docs/generators.md (``markdown_table``; a test keeps the docs in step).

Rules that need the image geometry (how many times an image size halves, which sizes a GAN supports)
stay with the model, which computes that geometry to build itself. Sampler settings of ``ddpm``
(``sample_steps``, ``eta``, ``guidance``) are options too, because checkpoints save them.

The machinery (``option``, ``OptionSpec``, ``check_value``, ``markdown_table``, ...) is ``synthaug.options``,
shared with the configs, the strategies and the metrics; its names stay importable from here.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..checks import check_float, check_int, check_int_list, did_you_mean, is_int  # noqa: F401 (its old home)
from ..options import (OptionCheck, OptionSpec, check_value, field_type, is_list_of_int, like, markdown_table,  # noqa: F401
                       option, option_defaults, type_members)  # (OptionSpec, check_value, ...: importable from here too)
from .blocks import INIT_SCHEMES, parse_policy
from .losses import LOSSES

RECONS = ("mse", "bce")
NORMS = ("batch", "group", "none")
SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("eps", "v")
#: ddpm loss weighting over noise levels: none (plain MSE) or min-SNR-gamma (Hang et al. 2023)
LOSS_WEIGHTINGS = ("none", "min-snr")
#: how training draws noise levels: uniform timesteps, or log-normal noise levels (Karras et al. 2022)
NOISE_SAMPLINGS = ("uniform", "lognormal")
#: ddpm samplers (synthaug.generators.samplers)
SAMPLERS = ("ddim", "dpmpp-2m")


@dataclass
class GeneratorOptions:
    """Base of every generator's options. Subclasses are dataclasses of ``option()`` fields."""

    def check(self, owner: str) -> None:
        """Rules between options (each option alone is checked from its declaration); raise ValueError."""


# --------------------------------------------------------------------------- validation
def check_declarations(options: type) -> None:
    """Refuse (TypeError, at registration) an options class whose fields cannot be checked or documented."""
    if not (isinstance(options, type) and issubclass(options, GeneratorOptions) and dataclasses.is_dataclass(options)):
        raise TypeError(f"options={options!r} must be a dataclass subclassing GeneratorOptions")
    for f in dataclasses.fields(options):
        spec = f.metadata.get("spec")
        if spec is None:
            raise TypeError(f"{options.__name__}.{f.name} is not declared with option(default, help, ...)")
        members, _ = type_members(field_type(options, f.name))
        known = len(members) == 1 and (members[0] in (bool, int, float, str) or is_list_of_int(members[0]))
        if spec.check is None and not known:
            raise TypeError(f"{options.__name__}.{f.name}: type {f.type} needs check=... in its option()")


def build_options(options: type, given: Mapping[str, Any], owner: str) -> GeneratorOptions:
    """The dataclass ``options`` filled from ``given`` (the user's options), every value checked."""
    names = [f.name for f in dataclasses.fields(options)]
    for key in given:
        if key not in names:
            raise ValueError(f"generator {owner!r} has no option {key!r}{did_you_mean(key, names)}. "
                             f"Its options: {sorted(names)}")
    built = options(**{key: check_value(options, key, value, owner) for key, value in given.items()})
    built.check(owner)
    return built


# --------------------------------------------------------------------------- checks shared by declarations
def _policy(value: Any, name: str, owner: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{owner}: {name}={value!r} must be a string such as 'color,translation,cutout' "
                         "('' turns it off)")
    parse_policy(value, owner)
    return value


def _even(minimum: int, hint: str) -> OptionCheck:
    def check(value: Any, name: str, owner: str) -> int:
        if not is_int(value) or value < minimum or value % 2:
            raise ValueError(f"{owner}: {name}={value!r} must be an even integer >= {minimum} ({hint})")
        return int(value)
    return check


def _res_blocks(value: Any, name: str, owner: str) -> int | list[int]:
    if is_int(value) and value >= 1:
        return int(value)
    if isinstance(value, (list, tuple)) and all(is_int(b) and b >= 0 for b in value) and sum(value) >= 1:
        return [int(b) for b in value]
    raise ValueError(f"{owner}: {name}={value!r} must be an integer >= 1 or a list of one integer >= 0 per level "
                     "of channel_mults")


def check_sample_steps(value: Any, timesteps: int, owner: str = "ddpm") -> int:
    """DDIM steps: an integer from 1 to ``timesteps``."""
    return check_int(value, "sample_steps", owner, minimum=1, maximum=timesteps,
                     hint=f"at most timesteps={timesteps}; e.g. 50, sampling time grows linearly with it")


def check_guidance(value: float, p_uncond: float, owner: str = "ddpm") -> float:
    """Guidance > 0 needs the unconditional model that label dropout (``p_uncond`` > 0) trains."""
    if value > 0 and p_uncond == 0:
        raise ValueError(f"{owner}: guidance={value!r} needs an unconditional model, but p_uncond=0 trains none; "
                         "use guidance=0 or train with p_uncond > 0")
    return value


_KERNEL = {"check": _even(2, "divisible by the stride 2, e.g. 4"), "allowed": "even, >= 2"}
_UNIT = {"minimum": 0, "maximum": 1, "max_inclusive": False}  # [0, 1)
_POLICY = {"check": _policy, "allowed": 'comma-separated subset of `"color,translation,cutout"`; `""` off'}


# --------------------------------------------------------------------------- VAEs
@dataclass
class CVAEOptions(GeneratorOptions):
    latent_dim: int = option(32, "width of the latent code", minimum=1)
    hidden_channels: tuple[int, ...] | None = option(
        None, "one stride-2 convolution level per width (null: from the image size)", hint="e.g. [32, 64, 128]")
    embed_dim: int = option(16, "width of the label embeddings of encoder and decoder", minimum=1)
    beta: float = option(1.0, "weight of the KL term", minimum=0)
    recon: str = option("mse", "reconstruction loss, summed over pixels", choices=RECONS)
    norm: str = option("batch", "normalisation after each convolution (group: per image)", choices=NORMS)


@dataclass
class CVAETinyOptions(GeneratorOptions):
    latent_dim: int = like(CVAEOptions, "latent_dim", 8)
    beta: float = like(CVAEOptions, "beta", 1.0)
    recon: str = like(CVAEOptions, "recon", "mse")
    norm: str = like(CVAEOptions, "norm", "batch")


@dataclass
class FCVAEOptions(GeneratorOptions):
    latent_dim: int = like(CVAEOptions, "latent_dim", 32)
    hidden_units: tuple[int, ...] = option((512, 256), "widths of the fully connected layers",
                                           hint="e.g. [32, 64, 128]")
    per_class: bool = option(False, "one unconditional VAE per class, dispatched by label")
    init: str = option("xavier", "weight init", choices=("xavier", "kaiming"))
    lr_halving: bool = option(False, "halve the learning rate after every epoch")
    lr_floor: float = option(0.01, "lowest learning rate with lr_halving, times the initial one", minimum=0,
                             maximum=1, min_inclusive=False)


@dataclass
class ConvVAEBaseOptions(GeneratorOptions):
    """Shared by the convolutional VAEs of the zoo (cvae's architecture)."""

    latent_dim: int = like(CVAEOptions, "latent_dim", 32)
    hidden_channels: tuple[int, ...] | None = like(CVAEOptions, "hidden_channels", None)
    embed_dim: int = like(CVAEOptions, "embed_dim", 16)
    init: str = option("default", "weight init (default: PyTorch's)", choices=INIT_SCHEMES)


@dataclass
class ConvVAEOptions(ConvVAEBaseOptions):
    recon: str = like(CVAEOptions, "recon", "bce")


@dataclass
class BetaVAEOptions(ConvVAEOptions):
    beta: float = like(CVAEOptions, "beta", 4.0)
    capacity_max: float = option(0.0, "capacity annealing: the KL target grows to this many nats (0: off)", minimum=0)
    capacity_steps: int = option(2000, "training steps over which the KL target grows", minimum=1)
    gamma: float = option(100.0, "weight of |KL - C| with capacity annealing", minimum=0)


@dataclass
class MSSSIMVAEOptions(ConvVAEBaseOptions):
    beta: float = like(CVAEOptions, "beta", 1.0)
    alpha: float = option(0.84, "share of 1 - MS-SSIM in the reconstruction loss (the rest: pixel_loss)", minimum=0,
                          maximum=1)
    pixel_loss: str = option("l1", "the pixel part of the reconstruction loss", choices=("l1", "mse"))


@dataclass
class JointVAEOptions(ConvVAEOptions):
    disc_dim: int = option(4, "categories of the discrete (Gumbel-softmax) latent", minimum=2)
    temperature: float = option(0.67, "Gumbel-softmax temperature", minimum=0, min_inclusive=False)
    cont_capacity_max: float = option(25.0, "capacity of the Gaussian latent, in nats", minimum=0)
    disc_capacity_max: float | None = option(None, "capacity of the discrete latent (null: log(disc_dim))",
                                             minimum=0, allowed="0 to log(disc_dim)")
    capacity_steps: int = like(BetaVAEOptions, "capacity_steps", 2000)
    gamma: float = option(30.0, "weight of both |KL - C| terms", minimum=0)

    def check(self, owner: str) -> None:
        if self.disc_capacity_max is not None:
            check_float(self.disc_capacity_max, "disc_capacity_max", owner, minimum=0.0,
                        maximum=math.log(self.disc_dim), hint=f"at most log(disc_dim), disc_dim={self.disc_dim}")


@dataclass
class VAEGANOptions(ConvVAEBaseOptions):
    disc_channels: tuple[int, ...] | None = option(
        None, "discriminator widths, at least 2 (null: the encoder's)", hint="e.g. [32, 64]")
    beta: float = like(CVAEOptions, "beta", 0.1)
    gamma: float = option(0.2, "weight of the feature reconstruction in the decoder loss", minimum=0)
    diffaugment: str | None = option("", "DiffAugment ops before the discriminator", **_POLICY)
    ema_decay: float = option(0.0, "decay of the EMA decoder used for sampling (0: off)", **_UNIT,
                              hint="0 turns the EMA off; 0.999 is usual")


# --------------------------------------------------------------------------- GANs
@dataclass
class GANOptions(GeneratorOptions):
    """Shared by the GANs; these defaults are dcgan's."""

    latent_dim: int = option(64, "noise width", minimum=1)
    g_width: int = option(32, "channels of the generator's finest level (coarser ones: up to 4x)", minimum=1)
    d_width: int = option(32, "channels of the discriminator's first level (deeper ones: up to 4x)", minimum=1)
    embed_dim: int = option(16, "width of the label embedding concatenated to the noise", minimum=1)
    kernel_size: int = option(4, "kernel of the stride-2 (transposed) convolutions", **_KERNEL)
    loss: str = option("ns", "adversarial loss: non-saturating or hinge", choices=LOSSES)
    spectral_norm: bool = option(False, "spectral norm on every discriminator layer")
    d_batchnorm: bool = option(True, "BatchNorm on every discriminator level but the first")
    d_dropout: float = option(0.0, "dropout after every discriminator level", **_UNIT,
                              hint="0 turns dropout in D off")
    label_smoothing: float = option(0.0, "one-sided: the real target becomes 1 - label_smoothing", minimum=0,
                                    maximum=0.5, max_inclusive=False,
                                    hint="the real target becomes 1 - label_smoothing; 0 turns it off")
    label_noise: float = option(0.0, "probability of flipping a discriminator target", minimum=0, maximum=0.5,
                                max_inclusive=False, hint="the probability of flipping a D target; 0 turns it off")
    lr_d: float | None = option(None, "discriminator learning rate (null: the training lr)", minimum=0,
                                min_inclusive=False, hint="or null: the training lr")
    diffaugment: str | None = option("color,translation,cutout", "DiffAugment ops on real and fake images before D",
                                     **_POLICY)
    ema_decay: float = option(0.999, "decay of the EMA generator used for sampling (0: off)", **_UNIT,
                              hint="e.g. 0.999; 0 turns the EMA off")
    init: str = option("dcgan", "weight init", choices=INIT_SCHEMES)
    r1_gamma: float = option(0.0, "R1 penalty weight on D's gradient at real images (Mescheder et al. 2018; 0: off)",
                             minimum=0, hint="e.g. 0.1-10 at 32 px; 0 turns R1 off")
    r1_every: int = option(16, "lazy R1: the penalty every r1_every discriminator steps, scaled by r1_every",
                           minimum=1, hint="1 applies it every step (Karras et al. 2020 use 16)")
    ada_target: float | None = option(None, "adaptive augmentation (Karras et al. 2020): DiffAugment per image "
                                      "with a probability p steered so E[sign(D(real))] stays at this target",
                                      minimum=0, maximum=1, min_inclusive=False, max_inclusive=False,
                                      hint="e.g. 0.6; null applies the DiffAugment policy to every image")
    ada_kimg: float = option(100.0, "thousands of real images over which ADA's p can move from 0 to 1",
                             minimum=0, min_inclusive=False, hint="e.g. 100 for runs of about 100k images")


@dataclass
class DCGANOptions(GANOptions):
    pass


@dataclass
class CGANOptions(GANOptions):
    loss: str = like(GANOptions, "loss", "hinge")
    spectral_norm: bool = like(GANOptions, "spectral_norm", True)
    d_batchnorm: bool = like(GANOptions, "d_batchnorm", False)
    conditioning: str = option("projection", "how D sees the label: projection or an auxiliary classifier",
                               choices=("projection", "acgan"))
    acgan_weight: float = option(1.0, "weight of the auxiliary classifier loss (conditioning acgan)", minimum=0,
                                 hint="the weight of the auxiliary classifier loss with conditioning='acgan'")
    conditional_bn: bool = option(True, "class-conditional BatchNorm in the generator")


@dataclass
class InfoGANOptions(GANOptions):
    latent_dim: int = option(70, "the whole noise width: z + n_categorical + n_continuous", minimum=1,
                             allowed=">= n_categorical + n_continuous + 1")
    loss: str = like(GANOptions, "loss", "hinge")
    spectral_norm: bool = like(GANOptions, "spectral_norm", True)
    d_batchnorm: bool = like(GANOptions, "d_batchnorm", False)
    n_categorical: int = option(4, "values of the categorical code (0: none)", minimum=0, allowed="0, or >= 2")
    n_continuous: int = option(2, "continuous codes, uniform in [-1, 1]", minimum=0)
    info_weight: float = option(1.0, "weight of the mutual-information term", minimum=0)
    continuous_loss: str = option("mse", "how Q fits the continuous codes (nll: learned variance)",
                                  choices=("nll", "mse"))

    def check(self, owner: str) -> None:
        if self.n_categorical == 1:
            raise ValueError(f"{owner}: n_categorical=1 is a code with a single value; use 0 (no categorical code) "
                             "or >= 2")
        if self.latent_dim - self.n_categorical - self.n_continuous < 1:
            raise ValueError(f"{owner}: latent_dim={self.latent_dim} is the whole noise width (z + "
                             f"{self.n_categorical} categorical + {self.n_continuous} continuous); it must leave z at "
                             f"least 1 value: use latent_dim >= {self.n_categorical + self.n_continuous + 1}")


# --------------------------------------------------------------------------- diffusion
@dataclass
class DDPMOptions(GeneratorOptions):
    latent_dim: int | None = option(None, "always channels * image_size**2 (the starting noise); leave it null",
                                    minimum=1)
    base_width: int = option(16, "channels of the first UNet level", check=_even(4, "e.g. 16"), allowed="even, >= 4")
    channel_mults: tuple[int, ...] | None = option(
        None, "width multiplier of each UNet level (null: from the image size)",
        hint="one UNet level per entry, e.g. [1, 2, 4]")
    num_res_blocks: int | tuple[int, ...] = option(1, "residual blocks per level: one integer, or one per level",
                                                   check=_res_blocks, allowed=">= 1, or a list of >= 0 per level")
    attention: bool = option(True, "self-attention at the lowest resolution")
    dropout: float = option(0.0, "dropout in the residual blocks", **_UNIT)
    schedule: str = option("cosine", "noise schedule", choices=SCHEDULES)
    timesteps: int = option(1000, "diffusion steps", minimum=2, hint="usually 1000")
    prediction: str = option("v", "what the UNet predicts: v (v-prediction) or eps (the noise)", choices=PREDICTIONS)
    p_uncond: float = option(0.1, "label dropout: trains the unconditional model guidance needs", **_UNIT,
                             hint="0.1 is usual; 0 trains no unconditional model, so guidance must then be 0")
    ema_decay: float = option(0.999, "decay of the EMA UNet that samples (0: off)", **_UNIT,
                              hint="0 turns the EMA off; 0.999 is usual")
    loss_weighting: str = option("none", "loss weight per noise level: none, or min-snr (min(SNR, snr_gamma) "
                                 "over the prediction's SNR weight; Hang et al. 2023)", choices=LOSS_WEIGHTINGS)
    snr_gamma: float = option(5.0, "the SNR cap of min-snr weighting", minimum=0, min_inclusive=False,
                              hint="5 is the paper's value")
    noise_sampling: str = option("uniform", "training noise levels: uniform timesteps, or lognormal (log sigma ~ "
                                 "N(-1.2, 1.2^2), EDM's, at the nearest timestep)", choices=NOISE_SAMPLINGS)
    sampler: str = option("ddim", "sampling: ddim, or dpmpp-2m (DPM-Solver++(2M): as good in 10-20 steps)",
                          choices=SAMPLERS)
    sample_steps: int = option(50, "sampling: DDIM steps per image", minimum=1, allowed="1 to timesteps",
                               hint="e.g. 50; sampling time grows linearly with it")
    eta: float = option(0.0, "sampling: DDIM noise, 0 deterministic to 1 DDPM-like", minimum=0, maximum=1,
                        hint="0: deterministic DDIM, 1: DDPM-like noise")
    guidance: float = option(1.0, "sampling: classifier-free guidance weight (0: purely conditional)", minimum=0,
                             hint="0: purely conditional; 1-3: stronger class features, less diversity")

    def check(self, owner: str) -> None:
        check_sample_steps(self.sample_steps, self.timesteps, owner)
        check_guidance(self.guidance, self.p_uncond, owner)
