"""The VAE family: cvae, cvae-tiny, fc-vae, conv-vae, beta-vae, msssim-vae (here), joint-vae (``joint_vae.py``),
vae-gan (``vae_gan.py``).

Every model is class-conditional and exposes ``encode(images01, labels) -> (mu, logvar)`` and
``decode(z, labels) -> images01`` (what ``synthaug.latent`` uses). The convolutional ones share the
encoder / decoder of ``cvae`` (``ConditionalVAE``) and differ in their loss:

* ``cvae``: KL weight beta, MSE or BCE reconstruction, a choice of normalisation.
* ``conv-vae``: the vanilla conditional VAE (beta = 1), BCE or MSE reconstruction.
* ``beta-vae``: KL weight beta, or capacity annealing (Burgess et al. 2018): ``recon + gamma * |KL - C(step)|``.
* ``msssim-vae``: reconstruction ``1 - MS-SSIM`` mixed with L1 / MSE, MS-SSIM set up for 28-64 px images.
* ``joint-vae`` (Dupont 2018): a Gaussian latent plus a Gumbel-softmax categorical one, each with its capacity.
* ``vae-gan`` (Larsen et al. 2016): reconstruction in a discriminator's feature space plus a GAN loss.

``fc-vae`` is fully connected (BatchNorm, sigmoid output, BCE + KL) and can hold one model per class.
Options: ``options.py``; losses: ``losses.py``; shared networks: ``blocks.py``.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import Generator, StepFn, register_generator
from .blocks import MLPVAE, init_weights
from .losses import capacity, gaussian_kl, ms_ssim, msssim_config, reconstruction_loss, reparameterize
from .options import (
    BetaVAEOptions,
    ConvVAEBaseOptions,
    ConvVAEOptions,
    CVAEOptions,
    CVAETinyOptions,
    FCVAEOptions,
    MSSSIMVAEOptions,
)

DEFAULT_WIDTHS = (32, 64, 128, 256)


# --------------------------------------------------------------------------- geometry
def norm_layer(kind: str, channels: int) -> nn.Module:
    """``"batch"`` (BatchNorm2d), ``"group"`` (GroupNorm, per image: the same result whatever the batch is
    split into, e.g. across processes) or ``"none"``."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    return nn.Identity()


def default_hidden_channels(image_size: int) -> list[int]:
    """As many stride-2 levels (widths 32, 64, 128, 256) as halve ``image_size`` exactly down to >= 4 px.

    32 px -> (32, 64, 128) to 4x4; 64 px -> (32, 64, 128, 256) to 4x4; 28 px -> (32, 64) to 7x7.
    """
    levels = 0
    while levels < len(DEFAULT_WIDTHS) and image_size % (2 ** (levels + 1)) == 0 and image_size // (2 ** (levels + 1)) >= 4:
        levels += 1
    return list(DEFAULT_WIDTHS[: max(1, levels)])


def levels_for(image_size: int, hidden_channels: Sequence[int], owner: str) -> int:
    """How many stride-2 levels ``hidden_channels`` asks for, if ``image_size`` halves that often to >= 2 px."""
    levels = len(hidden_channels)
    if levels < 1:
        raise ValueError(f"{owner}: hidden_channels must list at least one width, got {list(hidden_channels)}")
    if image_size % (2 ** levels) or image_size // (2 ** levels) < 2:
        raise ValueError(f"{owner}: image_size={image_size} cannot be halved {levels} times (one per entry of "
                         f"hidden_channels={list(hidden_channels)}) down to at least 2 px; use an image size divisible "
                         f"by {2 ** levels} (e.g. 32 or 64) or fewer hidden_channels")
    return levels


def is_distributed() -> bool:
    """True in a run of several processes (torch.distributed initialised with more than one)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized() and \
        torch.distributed.get_world_size() > 1


# --------------------------------------------------------------------------- cvae
@register_generator("cvae", options=CVAEOptions)
class ConditionalVAE(Generator):
    """Class-conditional convolutional VAE: label embedding into encoder and decoder, KL weight beta.

    ``hidden_channels``: one stride-2 convolution level per width (None: chosen from the image size,
    see ``default_hidden_channels``). ``recon``: ``"mse"`` or ``"bce"`` (both summed over pixels).
    ``norm``: ``"batch"``, ``"group"`` or ``"none"`` after each convolution.
    """

    #: the name in error messages (the zoo's models built on this one give theirs)
    owner = "cvae"

    def __init__(self, *, num_classes: int, image_size: int, channels: int,
                 options: CVAEOptions | None = None) -> None:
        options = options or CVAEOptions()
        super().__init__(num_classes=num_classes, image_size=image_size, channels=channels,
                         latent_dim=options.latent_dim)
        hidden = default_hidden_channels(image_size) if options.hidden_channels is None else \
            [int(h) for h in options.hidden_channels]
        levels = levels_for(image_size, hidden, self.owner)
        self.beta = float(options.beta)
        self.recon_kind = options.recon
        self.bottom = image_size // (2 ** levels)
        latent_dim, embed_dim, norm = options.latent_dim, options.embed_dim, options.norm

        self.label_embed_enc = nn.Embedding(num_classes, embed_dim)
        self.label_embed_dec = nn.Embedding(num_classes, embed_dim)
        enc: list[nn.Module] = []
        in_ch = channels + embed_dim
        for h in hidden:
            enc += [nn.Conv2d(in_ch, h, 4, 2, 1), norm_layer(norm, h), nn.LeakyReLU(0.2)]
            in_ch = h
        self.encoder = nn.Sequential(*enc, nn.Flatten())
        flat = hidden[-1] * self.bottom * self.bottom
        self.to_stats = nn.Linear(flat, 2 * latent_dim)

        self.from_latent = nn.Sequential(nn.Linear(latent_dim + embed_dim, flat), nn.ReLU())
        dec: list[nn.Module] = []
        rev = hidden[::-1]
        for h_in, h_out in zip(rev, rev[1:]):
            dec += [nn.ConvTranspose2d(h_in, h_out, 4, 2, 1), norm_layer(norm, h_out), nn.ReLU()]
        dec += [nn.ConvTranspose2d(rev[-1], channels, 4, 2, 1), nn.Sigmoid()]
        self.decoder = nn.Sequential(*dec)
        self._hidden_last = hidden[-1]

    def encode(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images in [0, 1] -> (mu, logvar) of q(z | x, y)."""
        emb = self.label_embed_enc(labels)[:, :, None, None].expand(-1, -1, *images.shape[-2:])
        stats = self.to_stats(self.encoder(torch.cat([images, emb], dim=1)))
        mu, logvar = stats.chunk(2, dim=1)
        return mu, logvar.clamp(-12, 8)

    def decode(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Latent codes -> images in [0, 1]."""
        h = self.from_latent(torch.cat([z, self.label_embed_dec(labels)], dim=1))
        return self.decoder(h.view(-1, self._hidden_last, self.bottom, self.bottom))

    def generate(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.decode(noise, labels)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        mu, logvar = self.encode(images, labels)
        recon = self.decode(reparameterize(mu, logvar), labels)
        rec = reconstruction_loss(recon, images, self.recon_kind)
        kl = gaussian_kl(mu, logvar)
        return {"loss": rec + self.beta * kl, "recon": rec, "kl": kl}


@register_generator("cvae-tiny", options=CVAETinyOptions)
def cvae_tiny(*, num_classes: int, image_size: int, channels: int,
              options: CVAETinyOptions | None = None) -> ConditionalVAE:
    """A very small cvae for tests and smoke runs."""
    options = options or CVAETinyOptions()
    return ConditionalVAE(num_classes=num_classes, image_size=image_size, channels=channels,
                          options=CVAEOptions(latent_dim=options.latent_dim, hidden_channels=(8, 16), embed_dim=4,
                                              beta=options.beta, recon=options.recon, norm=options.norm))


# --------------------------------------------------------------------------- fc-vae
@register_generator("fc-vae", options=FCVAEOptions)
class FullyConnectedVAE(Generator):
    """Fully connected class-conditional VAE (BatchNorm, sigmoid output, BCE + KL); optionally one model per class.

    Conditional mode: the one-hot label is concatenated to the flattened image and to the latent code.
    ``per_class=True``: one unconditional VAE per class (``nets[c]``) trained on its class's share of
    each batch (a class with fewer than 2 images in a batch is skipped there: BatchNorm needs 2);
    ``encode`` / ``decode`` / ``sample`` dispatch by label. ``init``: "xavier" or "kaiming".
    ``lr_halving``: the learning rate is halved after every epoch, never below ``lr_floor`` times the
    initial one (``lr_scale(epoch) = max(0.5 ** epoch, lr_floor)``).
    """

    def __init__(self, *, num_classes: int, image_size: int, channels: int,
                 options: FCVAEOptions | None = None) -> None:
        options = options or FCVAEOptions()
        latent_dim = options.latent_dim
        super().__init__(num_classes=num_classes, image_size=image_size, channels=channels, latent_dim=latent_dim)
        hidden = [int(h) for h in options.hidden_units]
        self.per_class = options.per_class
        self.lr_halving = options.lr_halving
        self.lr_floor = float(options.lr_floor)
        features = channels * image_size * image_size
        if self.per_class:
            self.nets = nn.ModuleList(MLPVAE(features, 0, hidden, latent_dim) for _ in range(num_classes))
        else:
            self.nets = nn.ModuleList([MLPVAE(features, num_classes, hidden, latent_dim)])
        init_weights(self, options.init, "fc-vae")

    def lr_scale(self, epoch: int) -> float:
        return max(0.5 ** epoch, self.lr_floor) if self.lr_halving else 1.0

    def _groups(self, labels: torch.Tensor, min_items: int = 1) -> Iterator[tuple[int, torch.Tensor]]:
        """(class, indices of its items) for every class with at least ``min_items`` items in ``labels``."""
        for c in labels.unique().tolist():
            idx = (labels == c).nonzero(as_tuple=True)[0]
            if len(idx) >= min_items:
                yield c, idx

    def _cond(self, labels: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return F.one_hot(labels, self.num_classes).to(like.dtype)

    def encode(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images in [0, 1] -> (mu, logvar) of q(z | x, y) (per_class: of class y's model)."""
        if not self.per_class:
            return self.nets[0].encode(images, self._cond(labels, images))
        mu = images.new_zeros(len(images), self.latent_dim)
        logvar = images.new_zeros(len(images), self.latent_dim)
        for c, idx in self._groups(labels):
            mu[idx], logvar[idx] = self.nets[c].encode(images[idx], images.new_zeros(len(idx), 0))
        return mu, logvar

    def decode(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Latent codes -> images in [0, 1] (per_class: each by its class's model)."""
        shape = (len(z), self.channels, self.image_size, self.image_size)
        if not self.per_class:
            return self.nets[0].decode(z, self._cond(labels, z)).view(shape)
        out = z.new_zeros(len(z), shape[1] * shape[2] * shape[3])
        for c, idx in self._groups(labels):
            out[idx] = self.nets[c].decode(z[idx], z.new_zeros(len(idx), 0))
        return out.view(shape)

    def generate(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.decode(noise, labels)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.per_class:
            # each class's model on its share of the batch; in training a class with < 2 items is skipped
            parts = [(self.nets[c], images[idx], images.new_zeros(len(idx), 0))
                     for c, idx in self._groups(labels, 2 if self.training else 1)]
        else:
            parts = [(self.nets[0], images, self._cond(labels, images))]
        used = sum(len(x) for _, x, _ in parts)
        # a skipped model gets no gradient; but when several processes average their gradients, all must
        # give the same weights one, so there a skipped model gets a zero gradient instead
        skipped = [net for net in self.nets if all(net is not n for n, _, _ in parts)]
        tie = sum(p.sum() for net in skipped for p in net.parameters()) * 0.0 if skipped and is_distributed() else 0.0
        if used == 0:  # no class has 2 images in this batch: a zero loss
            zero = images.new_zeros((), requires_grad=True) + tie
            return {"loss": zero, "recon": zero.detach(), "kl": zero.detach()}
        rec = kl = images.new_zeros(())
        for net, x, cond in parts:
            mu, logvar = net.encode(x, cond)
            recon = net.decode(reparameterize(mu, logvar), cond).view_as(x)
            rec = rec + reconstruction_loss(recon, x, "bce") * len(x)
            kl = kl + gaussian_kl(mu, logvar) * len(x)
        rec, kl = rec / used, kl / used
        return {"loss": rec + kl + tie, "recon": rec, "kl": kl}


# --------------------------------------------------------------------------- convolutional VAEs of the zoo
class ConvVAEBase(ConditionalVAE):
    """``cvae``'s encoder / decoder, errors named after the zoo model (``owner``), and a weight init
    ("default", "xavier", "kaiming" or "dcgan")."""

    owner = "conv-vae"

    def __init__(self, *, num_classes: int, image_size: int, channels: int, options: ConvVAEBaseOptions,
                 beta: float = 1.0, recon: str = "mse", latent_dim: int | None = None) -> None:
        cvae = CVAEOptions(latent_dim=options.latent_dim if latent_dim is None else latent_dim,
                           hidden_channels=options.hidden_channels, embed_dim=options.embed_dim, beta=beta, recon=recon)
        super().__init__(num_classes=num_classes, image_size=image_size, channels=channels, options=cvae)
        init_weights(self, options.init, self.owner)


class CountsSteps:
    """Mixin: the buffer ``train_steps`` counts training steps (a buffer, so it is checkpointed and
    restored on resume); ``training_step`` advances it after the optimizer step."""

    train_steps: torch.Tensor

    def _register_step_counter(self) -> None:
        self.register_buffer("train_steps", torch.zeros((), dtype=torch.long))  # type: ignore[attr-defined]

    def training_step(self, images: torch.Tensor, labels: torch.Tensor, optimizers: list[torch.optim.Optimizer],
                      step: StepFn) -> dict[str, torch.Tensor]:
        losses = super().training_step(images, labels, optimizers, step)  # type: ignore[misc]
        self.train_steps += 1
        return losses


@register_generator("conv-vae", options=ConvVAEOptions)
class ConvVAE(ConvVAEBase):
    """Vanilla class-conditional convolutional VAE (beta = 1): ``recon`` "bce" (default) or "mse" + KL.

    The architecture of ``cvae`` (label embeddings into encoder and decoder, one stride-2 level per
    entry of ``hidden_channels``); ``init`` re-initialises the weights ("default" keeps PyTorch's).
    """

    owner = "conv-vae"

    def __init__(self, *, num_classes: int, image_size: int, channels: int,
                 options: ConvVAEOptions | None = None) -> None:
        options = options or ConvVAEOptions()
        super().__init__(num_classes=num_classes, image_size=image_size, channels=channels, options=options,
                         beta=1.0, recon=options.recon)


@register_generator("beta-vae", options=BetaVAEOptions)
class BetaVAE(CountsSteps, ConvVAEBase):
    """Conditional beta-VAE: ``recon + beta * KL``, or with capacity annealing ``recon + gamma * |KL - C|``.

    ``capacity_max > 0`` turns on Burgess et al. (2018): the KL is pulled towards a target ``C`` that
    grows linearly from 0 to ``capacity_max`` nats over ``capacity_steps`` training steps (then beta is
    not used). The step count is the buffer ``train_steps``, so a resumed run continues the schedule.
    """

    owner = "beta-vae"

    def __init__(self, *, num_classes: int, image_size: int, channels: int,
                 options: BetaVAEOptions | None = None) -> None:
        options = options or BetaVAEOptions()
        super().__init__(num_classes=num_classes, image_size=image_size, channels=channels, options=options,
                         beta=options.beta, recon=options.recon)
        self.capacity_max = float(options.capacity_max)
        self.capacity_steps = options.capacity_steps
        self.gamma = float(options.gamma)
        self._register_step_counter()

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        losses = super().forward(images, labels)  # recon + beta * KL
        if self.capacity_max > 0:
            target = capacity(self.train_steps, self.capacity_max, self.capacity_steps)
            losses["loss"] = losses["recon"] + self.gamma * (losses["kl"] - target).abs()
            losses["capacity"] = torch.tensor(target)
        return losses


@register_generator("msssim-vae", options=MSSSIMVAEOptions)
class MSSSIMVAE(ConvVAEBase):
    """Conditional VAE whose reconstruction loss is ``1 - MS-SSIM`` mixed with an L1 / MSE pixel loss.

    Per image: ``C*H*W * (alpha * (1 - MS-SSIM) + (1 - alpha) * mean pixel loss)`` (scaled to the pixel
    count so it weighs against the KL like the summed losses of the other VAEs), plus ``beta * KL``.
    MS-SSIM uses a 3-px window and 3 scales at 28 / 32 px, 4 at 64 px (``msssim_config``).
    """

    owner = "msssim-vae"

    def __init__(self, *, num_classes: int, image_size: int, channels: int,
                 options: MSSSIMVAEOptions | None = None) -> None:
        options = options or MSSSIMVAEOptions()
        super().__init__(num_classes=num_classes, image_size=image_size, channels=channels, options=options,
                         beta=options.beta)
        self.alpha = float(options.alpha)
        self.pixel_loss = options.pixel_loss
        self.recon_kind = "msssim"
        self.win_size, self.msssim_weights = msssim_config(image_size)

    def reconstruction(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The mixed loss per image (summed-over-pixels scale), averaged over the batch."""
        pixels = target[0].numel()
        structural = 1 - ms_ssim(recon, target, win_size=self.win_size, weights=self.msssim_weights)
        diff = recon - target
        per_pixel = (diff.abs() if self.pixel_loss == "l1" else diff.pow(2)).flatten(1).mean(dim=1)
        return (pixels * (self.alpha * structural + (1 - self.alpha) * per_pixel)).mean()

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        mu, logvar = self.encode(images, labels)
        rec = self.reconstruction(self.decode(reparameterize(mu, logvar), labels), images)
        kl = gaussian_kl(mu, logvar)
        return {"loss": rec + self.beta * kl, "recon": rec, "kl": kl}
