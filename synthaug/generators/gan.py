"""GANs: a shared adversarial training step (DiffAugment, EMA), dcgan, cgan, infogan.

Building blocks, public so other families (e.g. a VAE-GAN) can reuse them:

* ``gan_geometry(image_size, owner)``: the start resolution and the number of stride-2 levels
  (28 px: 7x7, 2 levels; 32 px: 4x4, 3 levels; 64 px: 4x4, 4 levels).
* ``down_block`` / ``Discriminator``: a strided-convolution discriminator (LeakyReLU; optional BatchNorm,
  dropout and spectral norm) with ``features(x, labels)`` and class conditioning by label maps
  (``"concat"``), a projection (``"projection"``) or an auxiliary classifier (``"acgan"``).
* ``GeneratorNet`` / ``ClassBatchNorm2d``: a transposed-convolution generator (BatchNorm, ReLU, tanh)
  conditioned by a label embedding concatenated to the noise and, optionally, class-conditional BatchNorm.
* ``discriminator_loss`` / ``generator_loss`` (``"hinge"`` or ``"ns"``), ``mutual_information_loss``.
* ``GAN``: the base class: one discriminator step then one generator step per batch, DiffAugment on
  real and fake images before the discriminator, an EMA copy of the generator used for sampling.
"""
from __future__ import annotations

import contextlib
import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import common
from .base import Generator, StepFn, register_generator
from .common import diff_augment, init_weights, make_ema, parse_policy, to_signed, to_unit

#: image size -> (start resolution, number of stride-2 levels)
GAN_SIZES = {28: (7, 2), 32: (4, 3), 64: (4, 4)}
LOSSES = ("hinge", "ns")
D_CONDITIONINGS = ("none", "concat", "projection", "acgan")
#: Adam betas of both optimizers (Radford et al. 2016)
BETAS = (0.5, 0.999)
#: the widest level is at most this many times the base width
WIDTH_CAP = 4


# --------------------------------------------------------------------------- geometry and blocks
def gan_geometry(image_size: int, owner: str) -> tuple[int, int]:
    """``(start, levels)``: the generator starts at ``start x start`` and doubles ``levels`` times."""
    if image_size not in GAN_SIZES:
        raise ValueError(f"{owner}: image_size={image_size!r} is not supported; use 28 (7x7 upsampled twice), "
                         "32 (4x4, three times) or 64 (4x4, four times)")
    return GAN_SIZES[image_size]


def level_widths(base: int, levels: int) -> list[int]:
    """Channel widths from the coarsest level to the finest: ``base * 2**k`` capped at ``WIDTH_CAP * base``,
    ending at ``base`` (32 px, base 64: [256, 128, 64]; 64 px: [256, 256, 128, 64])."""
    return [base * min(2 ** (levels - 1 - i), WIDTH_CAP) for i in range(levels)]


def check_kernel_size(kernel_size: Any, owner: str) -> int:
    """A kernel size for stride-2 (transposed) convolutions: an even integer >= 2, so the kernel covers
    whole strides (no checkerboard from uneven overlap) and padding ``(k - 2) // 2`` halves / doubles exactly."""
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 2 or kernel_size % 2:
        raise ValueError(f"{owner}: kernel_size={kernel_size!r} must be an even integer >= 2 (divisible by the "
                         "stride 2), e.g. 4")
    return kernel_size


def down_block(in_channels: int, out_channels: int, kernel_size: int = 4, *, dropout: float = 0.0,
               batchnorm: bool = False) -> nn.Sequential:
    """Conv (stride 2, halves the size) [-> BatchNorm] -> LeakyReLU(0.2) [-> Dropout]: a discriminator level."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel_size, 2, (kernel_size - 2) // 2,
                                         bias=not batchnorm)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.LeakyReLU(0.2))
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Spectral norm (Miyato et al. 2018, ``torch.nn.utils.parametrizations``) on every Conv / Linear /
    Embedding weight of ``module``; its power-iteration vectors are buffers, so they are checkpointed."""
    from torch.nn.utils.parametrizations import spectral_norm

    for m in [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding))]:
        spectral_norm(m)
    return module


def has_spectral_norm(module: nn.Module) -> bool:
    from torch.nn.utils import parametrize

    return any(parametrize.is_parametrized(m, "weight") for m in module.modules())


class Discriminator(nn.Module):
    """Strided-convolution discriminator on images in [-1, 1]: ``features(x, labels) -> (n, feature_dim)``,
    ``logits(h, labels) -> (n,)`` realness, ``forward = logits(features(...))``.

    ``conditioning``: ``"none"``; ``"concat"``: one-hot label maps concatenated to the image channels;
    ``"projection"``: ``logit += <embed(y), h>`` (Miyato & Koyama 2018); ``"acgan"``: an extra class
    head ``classify(h) -> (n, num_classes)`` (Odena et al. 2017). ``batchnorm``: BatchNorm on every level
    but the first (DCGAN); ``spectral_norm``: on every Conv / Linear / Embedding.
    """

    def __init__(self, *, image_size: int, channels: int, num_classes: int, width: int = 64, kernel_size: int = 4,
                 conditioning: str = "none", spectral_norm: bool = False, dropout: float = 0.0,
                 batchnorm: bool = False, owner: str = "discriminator") -> None:
        super().__init__()
        if conditioning not in D_CONDITIONINGS:
            raise ValueError(f"{owner}: discriminator conditioning={conditioning!r}: use one of "
                             f"{list(D_CONDITIONINGS)}")
        start, levels = gan_geometry(image_size, owner)
        kernel_size = check_kernel_size(kernel_size, owner)
        self.num_classes, self.conditioning = num_classes, conditioning
        widths = level_widths(width, levels)[::-1]
        in_ch = channels + (num_classes if conditioning == "concat" else 0)
        blocks = []
        for i, w in enumerate(widths):  # no BatchNorm on the first level (DCGAN)
            blocks.append(down_block(in_ch, w, kernel_size, dropout=dropout, batchnorm=batchnorm and i > 0))
            in_ch = w
        self.trunk = nn.Sequential(*blocks, nn.Flatten())
        self.feature_dim = widths[-1] * start * start
        self.adv = nn.Linear(self.feature_dim, 1)
        self.embed = nn.Embedding(num_classes, self.feature_dim) if conditioning == "projection" else None
        self.classifier = nn.Linear(self.feature_dim, num_classes) if conditioning == "acgan" else None
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, 0.0, 0.02)
        if spectral_norm:
            apply_spectral_norm(self)

    def features(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.conditioning == "concat":
            maps = F.one_hot(labels, self.num_classes).to(x.dtype)[:, :, None, None].expand(-1, -1, *x.shape[-2:])
            x = torch.cat([x, maps], dim=1)
        return self.trunk(x)

    def logits(self, h: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        out = self.adv(h).squeeze(1)
        if self.embed is not None:
            out = out + (self.embed(labels) * h).sum(dim=1)
        return out

    def classify(self, h: torch.Tensor) -> torch.Tensor:
        if self.classifier is None:
            raise RuntimeError("classify() needs a discriminator built with conditioning='acgan'")
        return self.classifier(h)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.logits(self.features(x, labels), labels)


class ClassBatchNorm2d(nn.Module):
    """Conditional BatchNorm (de Vries et al. 2017): normalise, then a per-class gain and bias
    (initialised to 1 and 0)."""

    def __init__(self, num_features: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, affine=False)
        self.gain = nn.Embedding(num_classes, num_features)
        self.bias = nn.Embedding(num_classes, num_features)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.bn(x) * self.gain(labels)[:, :, None, None] + self.bias(labels)[:, :, None, None]


class GeneratorNet(nn.Module):
    """``(noise, labels) -> images in [-1, 1]`` (tanh): Linear to ``start x start``, then transposed
    convolutions (stride 2) with BatchNorm and ReLU, the last one straight to the image channels.

    The label is a learned embedding concatenated to the noise; with ``conditional_bn`` every BatchNorm
    also gets a per-class gain and bias (``ClassBatchNorm2d``).
    """

    def __init__(self, *, noise_dim: int, num_classes: int, image_size: int, channels: int, width: int = 64,
                 embed_dim: int = 16, kernel_size: int = 4, conditional_bn: bool = False,
                 owner: str = "generator") -> None:
        super().__init__()
        start, levels = gan_geometry(image_size, owner)
        k = check_kernel_size(kernel_size, owner)
        pad = (k - 2) // 2
        widths = level_widths(width, levels)
        self.start, self.first_width = start, widths[0]

        def norm(c: int) -> nn.Module:
            return ClassBatchNorm2d(c, num_classes) if conditional_bn else nn.BatchNorm2d(c)

        self.embed = nn.Embedding(num_classes, embed_dim)
        self.fc = nn.Linear(noise_dim + embed_dim, widths[0] * start * start, bias=False)
        self.norm0 = norm(widths[0])
        self.ups = nn.ModuleList(nn.ConvTranspose2d(a, b, k, 2, pad, bias=False) for a, b in zip(widths, widths[1:]))
        self.norms = nn.ModuleList(norm(b) for b in widths[1:])
        self.to_image = nn.ConvTranspose2d(widths[-1], channels, k, 2, pad)

    @staticmethod
    def _norm(norm: nn.Module, h: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return norm(h, labels) if isinstance(norm, ClassBatchNorm2d) else norm(h)

    def forward(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([noise, self.embed(labels)], dim=1)).view(-1, self.first_width, self.start, self.start)
        h = F.relu(self._norm(self.norm0, h, labels))
        for up, norm in zip(self.ups, self.norms):
            h = F.relu(self._norm(norm, up(h), labels))
        return torch.tanh(self.to_image(h))


# --------------------------------------------------------------------------- losses
def discriminator_loss(logits: torch.Tensor, targets: torch.Tensor | float, kind: str) -> torch.Tensor:
    """Mean discriminator loss of ``logits`` whose targets are in [0, 1] (1 real, 0 fake; soft or flipped
    targets come from label smoothing / noise).

    ``"ns"``: binary cross-entropy with logits. ``"hinge"``: ``t * relu(1 - l) + (1 - t) * relu(1 + l)``,
    the usual hinge loss for ``t`` in {0, 1}.
    """
    targets = torch.as_tensor(targets, dtype=logits.dtype, device=logits.device).expand_as(logits)
    if kind == "ns":
        return F.binary_cross_entropy_with_logits(logits, targets)
    if kind == "hinge":
        return (targets * F.relu(1 - logits) + (1 - targets) * F.relu(1 + logits)).mean()
    raise ValueError(f"GAN loss {kind!r}: use one of {list(LOSSES)}")


def generator_loss(fake_logits: torch.Tensor, kind: str) -> torch.Tensor:
    """The generator's loss on the discriminator's logits of fake images: ``"ns"`` (non-saturating):
    ``-log sigmoid(l) = softplus(-l)``; ``"hinge"``: ``-l``. Both averaged."""
    if kind == "ns":
        return F.softplus(-fake_logits).mean()
    if kind == "hinge":
        return -fake_logits.mean()
    raise ValueError(f"GAN loss {kind!r}: use one of {list(LOSSES)}")


def mutual_information_loss(cat_logits: torch.Tensor | None, cat_target: torch.Tensor | None,
                            cont_mean: torch.Tensor | None, cont_target: torch.Tensor | None,
                            cont_logvar: torch.Tensor | None = None) -> torch.Tensor:
    """InfoGAN's variational bound on -I(codes; G(z, codes)) (up to constants): cross-entropy of the
    categorical code, plus for the continuous codes the Gaussian negative log-likelihood
    ``0.5 * (logvar + (c - mean)**2 / exp(logvar))`` (or, without ``cont_logvar``, ``0.5 * (c - mean)**2``),
    summed over codes and averaged over the batch. Missing parts (None) count 0."""
    total = torch.zeros(())
    if cat_logits is not None:
        total = F.cross_entropy(cat_logits, cat_target)
    if cont_mean is not None:
        err = (cont_target - cont_mean).pow(2)
        per = 0.5 * (cont_logvar + err * torch.exp(-cont_logvar)) if cont_logvar is not None else 0.5 * err
        total = total + per.sum(dim=1).mean()
    return total


# --------------------------------------------------------------------------- validation helpers
def _check_int(value: Any, name: str, owner: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{owner}: {name}={value!r} must be an integer >= {minimum}")
    return value


def _check_range(value: Any, name: str, owner: str, low: float, high: float, hint: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < high:
        raise ValueError(f"{owner}: {name}={value!r} must be a number in [{low}, {high}) ({hint})")
    return float(value)


def _check_choice(value: Any, name: str, owner: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{owner}: {name}={value!r}: use one of {list(choices)}")
    return value


def _check_bool(value: Any, name: str, owner: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{owner}: {name}={value!r} must be true or false")
    return value


# --------------------------------------------------------------------------- the base class
class GAN(Generator):
    """A class-conditional GAN: ``g`` (``GeneratorNet``), ``d`` (``Discriminator``), ``g_ema`` (an EMA copy
    of ``g`` used by ``generate``; None when ``ema_decay=0``).

    ``configure_optimizers(lr)`` returns ``[Adam(discriminator, lr_d or lr), Adam(generator, lr)]``, both
    with betas (0.5, 0.999), in that order. ``training_step`` draws noise, makes one fake batch (with the
    batch's labels), takes one discriminator step on real and detached fake images, then one generator
    step through the updated discriminator (its weights frozen), then updates the EMA copy.
    DiffAugment is applied to real and fake images before the discriminator in both steps.
    """

    #: auxiliary loss name -> weight, e.g. {"cls": acgan_weight}: ``*_aux_losses`` terms are added weighted
    aux_weights: dict[str, float]

    def __init__(self, *, num_classes: int, image_size: int, channels: int, latent_dim: int, owner: str,
                 g_width: int, d_width: int, embed_dim: int, kernel_size: int, loss: str, spectral_norm: bool,
                 d_dropout: float, label_smoothing: float, label_noise: float, lr_d: float | None,
                 diffaugment: str | None, ema_decay: float, init: str, d_conditioning: str,
                 conditional_bn: bool, d_batchnorm: bool) -> None:
        super().__init__(num_classes=num_classes, image_size=image_size, channels=channels, latent_dim=latent_dim)
        gan_geometry(image_size, owner)
        for name, value in (("g_width", g_width), ("d_width", d_width), ("embed_dim", embed_dim)):
            _check_int(value, name, owner)
        check_kernel_size(kernel_size, owner)
        self.loss_kind = _check_choice(loss, "loss", owner, LOSSES)
        _check_bool(spectral_norm, "spectral_norm", owner)
        _check_bool(conditional_bn, "conditional_bn", owner)
        _check_bool(d_batchnorm, "d_batchnorm", owner)
        d_dropout = _check_range(d_dropout, "d_dropout", owner, 0.0, 1.0, "0 turns dropout in D off")
        self.label_smoothing = _check_range(label_smoothing, "label_smoothing", owner, 0.0, 0.5,
                                            "the real target becomes 1 - label_smoothing; 0 turns it off")
        self.label_noise = _check_range(label_noise, "label_noise", owner, 0.0, 0.5,
                                        "the probability of flipping a D target; 0 turns it off")
        self.ema_decay = _check_range(ema_decay, "ema_decay", owner, 0.0, 1.0, "e.g. 0.999; 0 turns the EMA off")
        if lr_d is not None and (isinstance(lr_d, bool) or not isinstance(lr_d, (int, float)) or not lr_d > 0):
            raise ValueError(f"{owner}: lr_d={lr_d!r} must be a positive number (or null: the training lr)")
        self.lr_d = None if lr_d is None else float(lr_d)
        if diffaugment is not None and not isinstance(diffaugment, str):
            raise ValueError(f"{owner}: diffaugment={diffaugment!r} must be a string such as "
                             "'color,translation,cutout' ('' turns it off)")
        self.policy = parse_policy(diffaugment, owner)
        self.aux_weights = {}

        self.g = GeneratorNet(noise_dim=latent_dim, num_classes=num_classes, image_size=image_size, channels=channels,
                              width=g_width, embed_dim=embed_dim, kernel_size=kernel_size,
                              conditional_bn=conditional_bn, owner=owner)
        self.d = Discriminator(image_size=image_size, channels=channels, num_classes=num_classes, width=d_width,
                               kernel_size=kernel_size, conditioning=d_conditioning, spectral_norm=False,
                               dropout=d_dropout, batchnorm=d_batchnorm, owner=owner)
        init_weights(self.g, init, owner)
        init_weights(self.d, init, owner)
        if spectral_norm:  # after the init: the parametrization starts from the initialised weights
            apply_spectral_norm(self.d)
        self.g_ema = make_ema(self.g) if self.ema_decay > 0 else None
        # EMA updates so far (a buffer, so it is checkpointed and resumed): the warm-up of the decay
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))

    # ----------------------------------------------------------------- sampling
    def generate(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] from the EMA generator (or ``g`` when ``ema_decay=0``)."""
        net = self.g_ema if self.g_ema is not None else self.g
        return to_unit(net(noise, labels))

    def train(self, mode: bool = True) -> "GAN":
        super().train(mode)
        if getattr(self, "g_ema", None) is not None:
            self.g_ema.eval()  # the EMA copy always uses its (copied) BatchNorm running statistics
        return self

    def discriminator_features(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The discriminator's features ``(n, feature_dim)`` of images in [0, 1] (no augmentation)."""
        return self.d.features(to_signed(images), labels)

    # ----------------------------------------------------------------- training
    def discriminator_parameters(self) -> list[nn.Parameter]:
        return list(self.d.parameters())

    def configure_optimizers(self, lr: float) -> list[torch.optim.Optimizer]:
        """``[discriminator Adam (lr_d or lr), generator Adam (lr)]``, betas (0.5, 0.999)."""
        return [torch.optim.Adam(self.discriminator_parameters(), lr=self.lr_d or lr, betas=BETAS),
                torch.optim.Adam(self.g.parameters(), lr=lr, betas=BETAS)]

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """DiffAugment with this model's policy (images in [-1, 1]; identity when the policy is empty)."""
        return diff_augment(x, self.policy)

    def d_targets(self, n: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """The discriminator's targets for ``n`` real and ``n`` fake images: real ``1 - label_smoothing``
        (one-sided smoothing), fake 0; with ``label_noise`` each target is swapped with the other kind's
        with that probability (global RNG)."""
        real = torch.full((n,), 1.0 - self.label_smoothing, device=device)
        fake = torch.zeros(n, device=device)
        if self.label_noise > 0:
            flip_real = torch.rand(n, device=device) < self.label_noise
            flip_fake = torch.rand(n, device=device) < self.label_noise
            real = torch.where(flip_real, torch.zeros_like(real), real)
            fake = torch.where(flip_fake, torch.full_like(fake, 1.0 - self.label_smoothing), fake)
        return real, fake

    def d_aux_losses(self, h_real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor,
                     noise: torch.Tensor) -> dict[str, torch.Tensor]:
        """Extra discriminator losses (unweighted; name -> value, weighted by ``aux_weights[name]``)."""
        return {}

    def g_aux_losses(self, h_fake: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor,
                     noise: torch.Tensor) -> dict[str, torch.Tensor]:
        """Extra generator losses (unweighted; name -> value, weighted by ``aux_weights[name]``)."""
        return {}

    def _with_aux(self, total: torch.Tensor, aux: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
        terms = {}
        for name, value in aux.items():
            total = total + self.aux_weights[name] * value
            terms[f"{prefix}_{name}"] = value
        return {f"{prefix}_loss": total, **terms}

    def discriminator_terms(self, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor,
                            noise: torch.Tensor) -> dict[str, torch.Tensor]:
        """``d_loss`` (and what to log) on real and (detached) fake images in [-1, 1]."""
        h_real = self.d.features(self.augment(real), labels)
        h_fake = self.d.features(self.augment(fake), labels)
        l_real, l_fake = self.d.logits(h_real, labels), self.d.logits(h_fake, labels)
        t_real, t_fake = self.d_targets(len(real), real.device)
        adv = discriminator_loss(l_real, t_real, self.loss_kind) + discriminator_loss(l_fake, t_fake, self.loss_kind)
        terms = self._with_aux(adv, self.d_aux_losses(h_real, fake, labels, noise), "d")
        return {**terms, "d_real": l_real.mean(), "d_fake": l_fake.mean()}

    def generator_terms(self, fake: torch.Tensor, labels: torch.Tensor, noise: torch.Tensor) -> dict[str, torch.Tensor]:
        """``g_loss`` (and what to log) on fake images in [-1, 1] (gradients flow to the generator)."""
        h_fake = self.d.features(self.augment(fake), labels)
        adv = generator_loss(self.d.logits(h_fake, labels), self.loss_kind)
        return self._with_aux(adv, self.g_aux_losses(h_fake, fake, labels, noise), "g")

    @contextlib.contextmanager
    def frozen_discriminator(self):
        """Discriminator weights without gradients (the generator step needs gradients only for G)."""
        params = self.discriminator_parameters()
        flags = [p.requires_grad for p in params]
        for p in params:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p, flag in zip(params, flags):
                p.requires_grad_(flag)

    def _fake_batch(self, images: torch.Tensor,
                    labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        real = to_signed(images)
        noise = self.sample_noise(len(real)).to(real.device)  # global RNG: seeded by the training loop
        return real, noise, self.g(noise, labels)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Both losses on a batch, without any step: ``loss = d_loss + g_loss`` (for inspection)."""
        real, noise, fake = self._fake_batch(images, labels)
        d_terms = self.discriminator_terms(real, fake.detach(), labels, noise)
        g_terms = self.generator_terms(fake, labels, noise)
        return {"loss": d_terms["d_loss"] + g_terms["g_loss"], **d_terms, **g_terms}

    def training_step(self, images: torch.Tensor, labels: torch.Tensor, optimizers: list[torch.optim.Optimizer],
                      step: StepFn) -> dict[str, torch.Tensor]:
        if len(optimizers) != 2:
            raise ValueError(f"{self.generator_name or type(self).__name__}: training_step needs the two optimizers "
                             f"of configure_optimizers() ([discriminator, generator]), got {len(optimizers)}")
        opt_d, opt_g = optimizers
        real, noise, fake = self._fake_batch(images, labels)
        d_terms = self.discriminator_terms(real, fake.detach(), labels, noise)
        step(opt_d, d_terms["d_loss"], "d_loss")
        with self.frozen_discriminator():
            g_terms = self.generator_terms(fake, labels, noise)
            step(opt_g, g_terms["g_loss"], "g_loss")
        self.update_ema()
        return {k: v.detach() for k, v in {**d_terms, **g_terms}.items()}

    def current_ema_decay(self) -> float:
        """``min(ema_decay, (1 + n) / (10 + n))`` after ``n`` updates: the EMA follows G closely at first."""
        n = int(self.ema_updates)
        return min(self.ema_decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update_ema(self) -> None:
        if self.g_ema is None:
            return
        common.update_ema(self.g_ema, self.g, self.current_ema_decay())
        self.ema_updates += 1


def _shared_options(values: dict[str, Any]) -> dict[str, Any]:
    """The arguments of ``GAN.__init__`` found in a model constructor's ``locals()`` (its options)."""
    names = set(inspect.signature(GAN.__init__).parameters) - {"self"}
    return {k: v for k, v in values.items() if k in names}


# --------------------------------------------------------------------------- the models
@register_generator("dcgan")
class DCGAN(GAN):
    """Class-conditional DCGAN (Radford et al. 2016) with DiffAugment and an EMA generator.

    G: label embedding concatenated to z, transposed convolutions, BatchNorm, ReLU, tanh. D: one-hot label
    maps concatenated to the image, strided convolutions (no pooling), BatchNorm after every level but the
    first (``d_batchnorm``), LeakyReLU, optional dropout. Tricks as options: ``kernel_size`` (even),
    ``d_dropout``, ``label_smoothing`` (real target 1 - s), ``label_noise`` (flip probability), ``loss``
    ("ns" or "hinge"), ``spectral_norm``.
    """

    def __init__(self, *, num_classes: int, image_size: int, channels: int, latent_dim: int = 64, g_width: int = 32,
                 d_width: int = 32, embed_dim: int = 16, kernel_size: int = 4, loss: str = "ns",
                 spectral_norm: bool = False, d_batchnorm: bool = True, d_dropout: float = 0.0,
                 label_smoothing: float = 0.0, label_noise: float = 0.0, lr_d: float | None = None,
                 diffaugment: str | None = "color,translation,cutout", ema_decay: float = 0.999,
                 init: str = "dcgan") -> None:
        super().__init__(owner="dcgan", d_conditioning="concat", conditional_bn=False, **_shared_options(locals()))


@register_generator("cgan")
class ConditionalGAN(GAN):
    """Class-conditional GAN with a projection or ACGAN discriminator, spectral norm and hinge loss.

    ``conditioning``: ``"projection"`` (Miyato & Koyama 2018: the logit gets ``<embed(y), features>``) or
    ``"acgan"`` (Odena et al. 2017: a class head; D minimises its cross-entropy on real images, G on fake
    ones, both weighted by ``acgan_weight``). G: label embedding concatenated to z and, with
    ``conditional_bn``, class-conditional BatchNorm. ``spectral_norm`` on every D layer.
    """

    def __init__(self, *, num_classes: int, image_size: int, channels: int, latent_dim: int = 64, g_width: int = 32,
                 d_width: int = 32, embed_dim: int = 16, kernel_size: int = 4, conditioning: str = "projection",
                 acgan_weight: float = 1.0, conditional_bn: bool = True, loss: str = "hinge",
                 spectral_norm: bool = True, d_batchnorm: bool = False, d_dropout: float = 0.0,
                 label_smoothing: float = 0.0, label_noise: float = 0.0, lr_d: float | None = None,
                 diffaugment: str | None = "color,translation,cutout", ema_decay: float = 0.999,
                 init: str = "dcgan") -> None:
        _check_choice(conditioning, "conditioning", "cgan", ("projection", "acgan"))
        if isinstance(acgan_weight, bool) or not isinstance(acgan_weight, (int, float)) or not acgan_weight >= 0:
            raise ValueError(f"cgan: acgan_weight={acgan_weight!r} must be a number >= 0 (the weight of the "
                             "auxiliary classifier loss with conditioning='acgan')")
        super().__init__(owner="cgan", d_conditioning=conditioning, **_shared_options(locals()))
        self.aux_weights = {"cls": float(acgan_weight)}

    def d_aux_losses(self, h_real, fake, labels, noise):
        if self.d.classifier is None:
            return {}
        return {"cls": F.cross_entropy(self.d.classify(h_real), labels)}

    def g_aux_losses(self, h_fake, fake, labels, noise):
        if self.d.classifier is None:
            return {}
        return {"cls": F.cross_entropy(self.d.classify(h_fake), labels)}


def _code_tensor(value: Any, what: str) -> torch.Tensor:
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"infogan: {what} must be a number or a tensor of numbers, got {value!r}") from err


@register_generator("infogan")
class InfoGAN(GAN):
    """Class-conditional InfoGAN (Chen et al. 2016): latent codes the model learns to make meaningful.

    The noise is ``[z | one-hot categorical code (n_categorical) | continuous codes (n_continuous), uniform
    in [-1, 1]]``, ``latent_dim`` values in all (see ``noise_layout()``); the class label is separate (an
    embedding, as in the other GANs). A Q head on the discriminator's features (of un-augmented fake
    images) predicts the codes; D (with Q) and G both minimise ``info_weight * mutual_information_loss``
    (categorical cross-entropy + squared error of the continuous codes, the default; ``continuous_loss="nll"``
    fits a Gaussian with learned variance instead, which at ``info_weight=1`` collapsed G to a checkerboard in
    a 2000-step malaria run: its loss can go far below 0 and outweigh the adversarial term).
    ``sample(..., codes=...)`` fixes codes. D: projection conditioning, spectral norm (option).
    """

    def __init__(self, *, num_classes: int, image_size: int, channels: int, latent_dim: int = 70,
                 n_categorical: int = 4, n_continuous: int = 2, info_weight: float = 1.0,
                 continuous_loss: str = "mse", g_width: int = 32, d_width: int = 32, embed_dim: int = 16,
                 kernel_size: int = 4, loss: str = "hinge", spectral_norm: bool = True, d_batchnorm: bool = False,
                 d_dropout: float = 0.0, label_smoothing: float = 0.0, label_noise: float = 0.0,
                 lr_d: float | None = None,
                 diffaugment: str | None = "color,translation,cutout", ema_decay: float = 0.999,
                 init: str = "dcgan") -> None:
        n_categorical = _check_int(n_categorical, "n_categorical", "infogan", minimum=0)
        n_continuous = _check_int(n_continuous, "n_continuous", "infogan", minimum=0)
        if n_categorical == 1:
            raise ValueError("infogan: n_categorical=1 is a code with a single value; use 0 (no categorical code) "
                             "or >= 2")
        if isinstance(latent_dim, int) and not isinstance(latent_dim, bool) and \
                latent_dim - n_categorical - n_continuous < 1:
            raise ValueError(f"infogan: latent_dim={latent_dim} is the whole noise width (z + {n_categorical} "
                             f"categorical + {n_continuous} continuous); it must leave z at least 1 value: use "
                             f"latent_dim >= {n_categorical + n_continuous + 1}")
        if isinstance(info_weight, bool) or not isinstance(info_weight, (int, float)) or not info_weight >= 0:
            raise ValueError(f"infogan: info_weight={info_weight!r} must be a number >= 0")
        _check_choice(continuous_loss, "continuous_loss", "infogan", ("nll", "mse"))
        super().__init__(owner="infogan", d_conditioning="projection", conditional_bn=False,
                         **_shared_options(locals()))
        self.n_categorical, self.n_continuous = n_categorical, n_continuous
        self.z_dim = latent_dim - n_categorical - n_continuous
        self.continuous_loss = continuous_loss
        self.aux_weights = {"info": float(info_weight)}
        outputs = n_categorical + n_continuous * (2 if continuous_loss == "nll" else 1)
        self.q = nn.Sequential(nn.Linear(self.d.feature_dim, 128), nn.LeakyReLU(0.2), nn.Linear(128, outputs)) \
            if outputs else None
        if self.q is not None:
            init_weights(self.q, init, "infogan")
        self._codes_for_next_draw: tuple[torch.Tensor | None, torch.Tensor | None] | None = None

    # ----------------------------------------------------------------- the noise and its codes
    def noise_layout(self) -> dict[str, slice]:
        """Where each part sits in a noise vector (``noise[:, layout["continuous"]]``): ``"z"`` (normal),
        ``"categorical"`` (one-hot, ``n_categorical`` wide) and ``"continuous"`` (uniform in [-1, 1])."""
        a, b = self.z_dim, self.z_dim + self.n_categorical
        return {"z": slice(0, a), "categorical": slice(a, b), "continuous": slice(b, self.latent_dim)}

    def parse_codes(self, n: int, codes: Any) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Validate ``codes`` for ``n`` samples -> ``(categorical (n,) long or None, continuous (n, n_continuous)
        float or None)``.

        ``codes`` is one of: ``None`` (nothing fixed); an int or an integer tensor / list of length ``n``
        (the categorical code); a float tensor ``(n_continuous,)`` (the same for every sample) or
        ``(n, n_continuous)`` (the continuous codes); a dict with keys ``"categorical"`` and / or
        ``"continuous"`` holding those.
        """
        if codes is None:
            return None, None
        if isinstance(codes, dict):
            unknown = sorted(set(map(str, codes)) - {"categorical", "continuous"})
            if unknown:
                raise ValueError(f"infogan: codes has unknown key(s) {unknown}; use 'categorical' and / or "
                                 "'continuous'")
            cat, cont = codes.get("categorical"), codes.get("continuous")
        else:
            kind = _code_tensor(codes, "codes").dtype
            if kind == torch.bool:
                raise ValueError("infogan: codes must be an int or integer tensor (the categorical code), a float "
                                 "tensor (the continuous codes) or a dict {'categorical': ..., 'continuous': ...}, "
                                 "not booleans")
            cat, cont = (None, codes) if kind.is_floating_point else (codes, None)
        return self._parse_categorical(n, cat), self._parse_continuous(n, cont)

    def _parse_categorical(self, n: int, cat: Any) -> torch.Tensor | None:
        if cat is None:
            return None
        if self.n_categorical == 0:
            raise ValueError("infogan: codes fix a categorical code but this model has n_categorical=0")
        t = _code_tensor(cat, "the categorical code")
        if t.dtype.is_floating_point or t.dtype == torch.bool or t.ndim > 1 or (t.ndim == 1 and len(t) != n):
            raise ValueError(f"infogan: the categorical code must be an int or a 1-D integer tensor of length n={n}, "
                             f"got {t.dtype} {tuple(t.shape)} (float tensors are read as continuous codes)")
        t = t.long().cpu().expand(n) if t.ndim == 0 else t.long().cpu()
        if n and (t.min() < 0 or t.max() >= self.n_categorical):
            raise ValueError(f"infogan: categorical code values must be in [0, {self.n_categorical}), got "
                             f"{int(t.min())} to {int(t.max())}")
        return t

    def _parse_continuous(self, n: int, cont: Any) -> torch.Tensor | None:
        if cont is None:
            return None
        if self.n_continuous == 0:
            raise ValueError("infogan: codes fix continuous codes but this model has n_continuous=0")
        t = _code_tensor(cont, "continuous codes")
        if t.dtype == torch.bool:
            raise ValueError("infogan: continuous codes must be numbers, not booleans")
        t = t.float().cpu()
        if t.ndim == 1 and t.shape[0] == self.n_continuous:
            t = t.expand(n, -1)
        if t.shape != (n, self.n_continuous):
            raise ValueError(f"infogan: continuous codes must be ({self.n_continuous},) or (n={n}, "
                             f"{self.n_continuous}), got {tuple(t.shape)}")
        if not torch.isfinite(t).all():
            raise ValueError("infogan: continuous codes must be finite")
        return t

    def with_codes(self, noise: torch.Tensor, codes: Any) -> torch.Tensor:
        """A copy of ``noise`` (as from ``sample_noise``) with the codes given by ``codes`` (see
        ``parse_codes``) written into their slots; the rest (z and the codes not given) is kept."""
        cat, cont = self.parse_codes(len(noise), codes)
        noise = noise.clone()
        layout = self.noise_layout()
        if cat is not None:
            noise[:, layout["categorical"]] = F.one_hot(cat, self.n_categorical).to(noise)
        if cont is not None:
            noise[:, layout["continuous"]] = cont.to(noise)
        return noise

    def sample_noise(self, n: int, *, generator: torch.Generator | None = None, codes: Any = None) -> torch.Tensor:
        """``(n, latent_dim)``: z ~ N(0, I), a uniform categorical code (one-hot), continuous codes ~ U(-1, 1),
        all drawn with ``generator`` (in that order, whatever ``codes`` fixes: the same seed gives the same z);
        ``codes`` (see ``parse_codes``) then overrides some of them."""
        z = torch.randn(n, self.z_dim, generator=generator)
        cat = torch.randint(0, max(1, self.n_categorical), (n,), generator=generator)
        cont = torch.rand(n, self.n_continuous, generator=generator) * 2 - 1
        parts = [z, F.one_hot(cat, self.n_categorical).float() if self.n_categorical else z[:, :0], cont]
        noise = torch.cat(parts, dim=1)
        if codes is not None:
            return self.with_codes(noise, codes)
        if self._codes_for_next_draw is not None:
            return self.with_codes(noise, {"categorical": self._codes_for_next_draw[0],
                                           "continuous": self._codes_for_next_draw[1]})
        return noise

    @torch.no_grad()
    def sample(self, n: int, labels: torch.Tensor | None = None, *, generator: torch.Generator | None = None,
               codes: Any = None) -> torch.Tensor:
        """As ``Generator.sample``; ``codes`` fixes the categorical and / or continuous codes (see
        ``parse_codes``): e.g. ``codes=2``, ``codes=torch.tensor([0.5, -1.0])``,
        ``codes={"categorical": 1, "continuous": torch.linspace(-1, 1, n)[:, None].repeat(1, 2)}``."""
        if codes is None:
            return super().sample(n, labels, generator=generator)
        self.check_labels(n, labels)  # n and labels first, as for every generator
        self._codes_for_next_draw = self.parse_codes(n, codes)
        try:
            return super().sample(n, labels, generator=generator)
        finally:
            self._codes_for_next_draw = None

    # ----------------------------------------------------------------- the mutual-information term
    def discriminator_parameters(self) -> list[nn.Parameter]:
        return list(self.d.parameters()) + (list(self.q.parameters()) if self.q is not None else [])

    def predict_codes(self, h: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """Q's prediction from discriminator features: (categorical logits, continuous mean, continuous
        log-variance (None with continuous_loss='mse')); parts the model lacks are None."""
        out = self.q(h)
        nc, nk = self.n_categorical, self.n_continuous
        cat = out[:, :nc] if nc else None
        mean = out[:, nc:nc + nk] if nk else None
        logvar = out[:, nc + nk:].clamp(-6, 4) if nk and self.continuous_loss == "nll" else None
        return cat, mean, logvar

    def info_loss(self, fake: torch.Tensor, labels: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``mutual_information_loss`` of Q on the features of (un-augmented) fake images in [-1, 1]."""
        cat_logits, mean, logvar = self.predict_codes(self.d.features(fake, labels))
        layout = self.noise_layout()
        cat_target = noise[:, layout["categorical"]].argmax(dim=1) if cat_logits is not None else None
        return mutual_information_loss(cat_logits, cat_target, mean, noise[:, layout["continuous"]], logvar)

    def d_aux_losses(self, h_real, fake, labels, noise):
        return {"info": self.info_loss(fake, labels, noise)} if self.q is not None else {}

    def g_aux_losses(self, h_fake, fake, labels, noise):
        return {"info": self.info_loss(fake, labels, noise)} if self.q is not None else {}
