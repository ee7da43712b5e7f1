"""GANs: the shared adversarial training (``GAN``: DiffAugment, EMA generator), dcgan and cgan.

``GAN`` takes one discriminator step then one generator step per batch, applies DiffAugment to real
and fake images before the discriminator, and samples from an EMA copy of the generator. Subclasses
add auxiliary losses through ``d_aux_losses`` / ``g_aux_losses`` (cgan's ACGAN head; InfoGAN's
mutual-information term, in ``infogan.py``). The networks are in ``blocks.py`` (``GeneratorNet``,
``Discriminator``), the losses in ``losses.py``, the options in ``options.py``.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from . import blocks
from .base import Generator, StepFn, register_generator
from .blocks import (
    Discriminator,
    GeneratorNet,
    apply_spectral_norm,
    diff_augment,
    gan_geometry,
    init_weights,
    make_ema,
    parse_policy,
    to_signed,
    to_unit,
)
from .losses import discriminator_loss, generator_loss
from .options import CGANOptions, DCGANOptions, GANOptions

#: Adam betas of both optimizers (Radford et al. 2016)
BETAS = (0.5, 0.999)


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

    def __init__(self, *, num_classes: int, image_size: int, channels: int, options: GANOptions, owner: str,
                 d_conditioning: str, conditional_bn: bool) -> None:
        super().__init__(num_classes=num_classes, image_size=image_size, channels=channels,
                         latent_dim=options.latent_dim)
        gan_geometry(image_size, owner)
        self.loss_kind = options.loss
        self.label_smoothing = float(options.label_smoothing)
        self.label_noise = float(options.label_noise)
        self.ema_decay = float(options.ema_decay)
        self.lr_d = None if options.lr_d is None else float(options.lr_d)
        self.policy = parse_policy(options.diffaugment, owner)
        self.aux_weights = {}
        self.r1_gamma, self.r1_every = float(options.r1_gamma), int(options.r1_every)
        self.ada_target = None if options.ada_target is None else float(options.ada_target)
        self.ada_kimg = float(options.ada_kimg)
        if self.ada_target is not None and not self.policy:
            raise ValueError(f"{owner}: ada_target={self.ada_target} steers how often the DiffAugment policy is "
                             "applied, but diffaugment is off; set diffaugment (e.g. 'color,translation,cutout') "
                             "or ada_target: null")

        self.g = GeneratorNet(noise_dim=options.latent_dim, num_classes=num_classes, image_size=image_size,
                              channels=channels, width=options.g_width, embed_dim=options.embed_dim,
                              kernel_size=options.kernel_size, conditional_bn=conditional_bn, owner=owner)
        self.d = Discriminator(image_size=image_size, channels=channels, num_classes=num_classes, width=options.d_width,
                               kernel_size=options.kernel_size, conditioning=d_conditioning, spectral_norm=False,
                               dropout=float(options.d_dropout), batchnorm=options.d_batchnorm, owner=owner)
        init_weights(self.g, options.init, owner)
        init_weights(self.d, options.init, owner)
        if options.spectral_norm:  # after the init: the parametrization starts from the initialised weights
            apply_spectral_norm(self.d)
        self.g_ema = make_ema(self.g) if self.ema_decay > 0 else None
        # EMA updates so far (a buffer, so it is checkpointed and resumed): the warm-up of the decay
        self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))
        # only with the features on (checkpoints of models without them keep loading): discriminator steps so
        # far (when lazy R1 is due) and ADA's augmentation probability, both checkpointed and resumed
        if self.r1_gamma > 0:
            self.register_buffer("d_steps", torch.zeros((), dtype=torch.long))
        if self.ada_target is not None:
            self.register_buffer("ada_p", torch.zeros(()))

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
        """DiffAugment with this model's policy (images in [-1, 1]; identity when the policy is empty). With
        ``ada_target`` each image is augmented with probability ``ada_p`` only (global RNG)."""
        if self.ada_target is None:
            return diff_augment(x, self.policy)
        p = float(self.ada_p)
        if p <= 0 or not self.policy:
            return x
        keep = (torch.rand(len(x), 1, 1, 1, device=x.device) < p).to(x.dtype)
        return keep * diff_augment(x, self.policy) + (1 - keep) * x

    @torch.no_grad()
    def update_ada(self, real_logits: torch.Tensor) -> None:
        """ADA's heuristic (Karras et al. 2020): r = E[sign(D(real))]; above the target D is overfitting the
        real images and p rises, below it p falls, by ``batch / (ada_kimg * 1000)`` per step, within [0, 1]."""
        if self.ada_target is None:
            return
        r = float(torch.sign(real_logits.detach()).mean())
        step = len(real_logits) / (self.ada_kimg * 1000.0)
        self.ada_p.copy_((self.ada_p + (step if r > self.ada_target else -step)).clamp(0.0, 1.0))

    def r1_due(self) -> bool:
        """Whether this discriminator step takes the (lazy) R1 penalty: every ``r1_every``-th step, from the first."""
        return self.r1_gamma > 0 and int(self.d_steps) % self.r1_every == 0

    def r1_penalty(self, real_aug: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
        """``r1_gamma / 2 * E ||d D(x) / d x||^2`` at the (augmented) real images ``real_aug``, times ``r1_every``
        (lazy regularisation keeps the penalty's average strength); differentiable for D's step."""
        (grad,) = torch.autograd.grad(real_logits.sum(), real_aug, create_graph=True)
        return 0.5 * self.r1_gamma * self.r1_every * grad.square().flatten(1).sum(1).mean()

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
                            noise: torch.Tensor, *, r1: bool = False, adapt: bool = False) -> dict[str, torch.Tensor]:
        """``d_loss`` (and what to log) on real and (detached) fake images in [-1, 1]; with ``r1`` the R1
        penalty is added to it (and logged as ``d_r1``); with ``adapt`` (a training step) ADA's probability is
        updated from D's logits on the real images."""
        real_aug = self.augment(real)
        if r1:  # the gradient is taken at the images D sees
            real_aug = real_aug.detach().requires_grad_(True)
        h_real = self.d.features(real_aug, labels)
        h_fake = self.d.features(self.augment(fake), labels)
        l_real, l_fake = self.d.logits(h_real, labels), self.d.logits(h_fake, labels)
        t_real, t_fake = self.d_targets(len(real), real.device)
        adv = discriminator_loss(l_real, t_real, self.loss_kind) + discriminator_loss(l_fake, t_fake, self.loss_kind)
        terms = self._with_aux(adv, self.d_aux_losses(h_real, fake, labels, noise), "d")
        if r1:
            penalty = self.r1_penalty(real_aug, l_real)
            terms["d_loss"] = terms["d_loss"] + penalty
            terms["d_r1"] = penalty
        if self.ada_target is not None:
            terms["ada_p"] = self.ada_p.clone()  # the probability this batch was augmented with
            if adapt:
                self.update_ada(l_real)
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
        r1 = self.r1_due()
        d_terms = self.discriminator_terms(real, fake.detach(), labels, noise, r1=r1, adapt=True)
        step(opt_d, d_terms["d_loss"], "d_loss")
        if self.r1_gamma > 0:
            self.d_steps += 1
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
        blocks.update_ema(self.g_ema, self.g, self.current_ema_decay())
        self.ema_updates += 1


# --------------------------------------------------------------------------- the models
@register_generator("dcgan", options=DCGANOptions)
class DCGAN(GAN):
    """Class-conditional DCGAN (Radford et al. 2016) with DiffAugment and an EMA generator.

    G: label embedding concatenated to z, transposed convolutions, BatchNorm, ReLU, tanh. D: one-hot label
    maps concatenated to the image, strided convolutions (no pooling), BatchNorm after every level but the
    first (``d_batchnorm``), LeakyReLU, optional dropout. Tricks as options: ``kernel_size`` (even),
    ``d_dropout``, ``label_smoothing`` (real target 1 - s), ``label_noise`` (flip probability), ``loss``
    ("ns" or "hinge"), ``spectral_norm``.
    """

    def __init__(self, *, num_classes: int, image_size: int, channels: int,
                 options: DCGANOptions | None = None) -> None:
        super().__init__(num_classes=num_classes, image_size=image_size, channels=channels,
                         options=options or DCGANOptions(), owner="dcgan", d_conditioning="concat",
                         conditional_bn=False)


@register_generator("cgan", options=CGANOptions)
class ConditionalGAN(GAN):
    """Class-conditional GAN with a projection or ACGAN discriminator, spectral norm and hinge loss.

    ``conditioning``: ``"projection"`` (Miyato & Koyama 2018: the logit gets ``<embed(y), features>``) or
    ``"acgan"`` (Odena et al. 2017: a class head; D minimises its cross-entropy on real images, G on fake
    ones, both weighted by ``acgan_weight``). G: label embedding concatenated to z and, with
    ``conditional_bn``, class-conditional BatchNorm. ``spectral_norm`` on every D layer.
    """

    def __init__(self, *, num_classes: int, image_size: int, channels: int,
                 options: CGANOptions | None = None) -> None:
        options = options or CGANOptions()
        super().__init__(num_classes=num_classes, image_size=image_size, channels=channels, options=options,
                         owner="cgan", d_conditioning=options.conditioning, conditional_bn=options.conditional_bn)
        self.aux_weights = {"cls": float(options.acgan_weight)}

    def d_aux_losses(self, h_real, fake, labels, noise):
        if self.d.classifier is None:
            return {}
        return {"cls": F.cross_entropy(self.d.classify(h_real), labels)}

    def g_aux_losses(self, h_fake, fake, labels, noise):
        if self.d.classifier is None:
            return {}
        return {"cls": F.cross_entropy(self.d.classify(h_fake), labels)}
