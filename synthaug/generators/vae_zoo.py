"""The VAE family of the zoo: fc-vae, conv-vae, beta-vae, msssim-vae, joint-vae, vae-gan.

Every model is class-conditional and exposes ``encode(images01, labels) -> (mu, logvar)`` and
``decode(z, labels) -> images01`` (what ``synthaug.latent`` uses). The convolutional ones reuse the
encoder / decoder of ``cvae`` (``vae.ConditionalVAE``) and differ in their loss:

* ``conv-vae``: the vanilla conditional VAE (beta = 1), BCE or MSE reconstruction.
* ``beta-vae``: KL weight beta, or capacity annealing (Burgess et al. 2018): ``recon + gamma * |KL - C(step)|``.
* ``msssim-vae``: reconstruction ``1 - MS-SSIM`` mixed with L1 / MSE, MS-SSIM set up for 28-64 px images.
* ``joint-vae`` (Dupont 2018): a Gaussian latent plus a Gumbel-softmax categorical one, each with its capacity.
* ``vae-gan`` (Larsen et al. 2016): reconstruction in a discriminator's feature space plus a GAN loss.

``fc-vae`` is fully connected (BatchNorm, sigmoid output, BCE + KL) and can hold one model per class.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from .base import Generator, StepFn, register_generator
from .common import diff_augment, init_weights, make_ema, parse_policy, to_signed, update_ema
from .functional import gaussian_kl, reconstruction_loss, reparameterize
from .vae import ConditionalVAE, _levels_for, default_hidden_channels

#: the five scale weights of Wang et al. (2003), finest scale first
MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


# --------------------------------------------------------------------------- option checks
def _widths(owner: str, option: str, value: object) -> list[int]:
    """A non-empty list of positive integers (tuples come back from config.json as lists)."""
    ok = isinstance(value, (list, tuple)) and len(value) > 0 and all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    if not ok:
        raise ValueError(f"{owner}: {option}={value!r} must be a non-empty list of positive integers, "
                         "e.g. [32, 64, 128]")
    return [int(v) for v in value]


def _number(owner: str, option: str, value: object, *, low: float, high: float = math.inf,
            low_open: bool = False) -> float:
    """A real number in [low, high] (or (low, high] with ``low_open``)."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not is_number or value > high or value < low or (low_open and value == low):
        interval = f"{'(' if low_open else '['}{low}, {high}]"
        raise ValueError(f"{owner}: {option}={value!r} must be a number in {interval}")
    return float(value)


def _count(owner: str, option: str, value: object, *, low: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{owner}: {option}={value!r} must be an integer >= {low}")
    return value


def _flag(owner: str, option: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{owner}: {option}={value!r} must be true or false")
    return value


def _choice(owner: str, option: str, value: object, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{owner}: {option}={value!r}: use one of {list(allowed)}")
    return str(value)


# --------------------------------------------------------------------------- pure helpers (tested directly)
def capacity(step: int | torch.Tensor, capacity_max: float, capacity_steps: int) -> float:
    """The KL target ``C(step)`` of Burgess et al. (2018): grows linearly from 0 to ``capacity_max``
    nats over ``capacity_steps`` training steps, then stays there."""
    return float(capacity_max) * min(1.0, float(step) / float(capacity_steps))


def categorical_kl(logits: torch.Tensor) -> torch.Tensor:
    """KL(q(c | x) || uniform over the K categories) of the softmax of ``logits`` (n, K), averaged over
    the batch: ``sum_k q_k log q_k + log K``, between 0 and log K."""
    log_q = F.log_softmax(logits, dim=1)
    kl = (log_q.exp() * (log_q + math.log(logits.shape[1]))).sum(dim=1)
    return kl.mean().clamp_min(0.0)


def msssim_config(image_size: int) -> tuple[int, list[float]]:
    """``(win_size, weights)`` of MS-SSIM for images of side ``image_size``.

    The standard setting (an 11-px window, 5 scales) needs images over 160 px. Here the window is 3 px
    (Gaussian, sigma 1.5) and the scales are as many (at most 5) as keep the coarsest image at least
    7 px (twice the window plus one, so its statistics come from more than a handful of windows):
    3 scales at 28 and 32 px, 4 at 64 px, 5 from 112 px. The weights are the first ones of Wang et
    al.'s five, renormalised to sum to 1.
    """
    win = 3
    scales = 1
    while scales < len(MSSSIM_WEIGHTS) and image_size // 2 ** scales >= 2 * win + 1:
        scales += 1
    weights = MSSSIM_WEIGHTS[:scales]
    return win, [w / sum(weights) for w in weights]


def ms_ssim(x: torch.Tensor, y: torch.Tensor, *, win_size: int | None = None, weights: Sequence[float] | None = None,
            sigma: float = 1.5, eps: float = 1e-4) -> torch.Tensor:
    """Multi-scale SSIM (Wang et al. 2003) of images in [0, 1], one value per image ``(n,)``.

    The same computation as ``pytorch_msssim.ms_ssim`` (Gaussian window without padding, 2x average
    pooling between scales, contrast-structure terms at the finer scales and SSIM at the coarsest,
    averaged over channels; a test checks both agree at 64 px), but usable on small images: the
    released pytorch_msssim (1.0.0) refuses any image up to ``(win_size - 1) * 16`` px (32 px with a
    3-px window) whatever the number of scales. ``win_size`` / ``weights`` default to
    ``msssim_config(image side)``. Each per-scale term is clamped to at least ``eps`` before its
    fractional power: a negative term (anti-correlated patches, common on tiny noisy images) would
    give NaN, and a zero one an infinite gradient.
    """
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"ms_ssim: x and y must be (n, C, H, W) of the same shape, got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    if win_size is None or weights is None:
        auto_win, auto_weights = msssim_config(min(x.shape[-2:]))
        win_size = auto_win if win_size is None else win_size
        weights = auto_weights if weights is None else weights
    smallest = min(x.shape[-2:]) // 2 ** (len(weights) - 1)
    if win_size % 2 != 1 or smallest < win_size:
        raise ValueError(f"ms_ssim: win_size={win_size} (must be odd) does not fit the coarsest of {len(weights)} "
                         f"scales ({smallest} px) of {tuple(x.shape[-2:])} images; use msssim_config(image_size)")
    channels = x.shape[1]
    offsets = torch.arange(win_size, dtype=x.dtype, device=x.device) - win_size // 2
    g = torch.exp(-offsets ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    rows, cols = g.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), g.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, rows, groups=channels), cols, groups=channels)

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    terms = []
    for level in range(len(weights)):
        mx, my = blur(x), blur(y)
        vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
        cs = (2 * cxy + c2) / (vx + vy + c2)
        if level == len(weights) - 1:
            luminance = (2 * mx * my + c1) / (mx * mx + my * my + c1)
            terms.append((luminance * cs).flatten(2).mean(-1))
        else:
            terms.append(cs.flatten(2).mean(-1))
            padding = [s % 2 for s in x.shape[2:]]
            x, y = F.avg_pool2d(x, 2, padding=padding), F.avg_pool2d(y, 2, padding=padding)
    w = torch.as_tensor(list(weights), dtype=terms[0].dtype, device=terms[0].device).view(-1, 1, 1)
    per_channel = torch.exp((w * torch.stack(terms).clamp_min(eps).log()).sum(dim=0))  # (n, C)
    return per_channel.mean(dim=1)


# --------------------------------------------------------------------------- fc-vae
def _distributed() -> bool:
    """True in a run of several processes (torch.distributed initialised with more than one)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized() and \
        torch.distributed.get_world_size() > 1


class _MLPVAE(nn.Module):
    """A fully connected VAE body: (flattened image [+ condition]) -> hidden widths -> (mu, logvar);
    (z [+ condition]) -> the widths reversed -> sigmoid pixels. Linear -> BatchNorm -> LeakyReLU blocks."""

    def __init__(self, features: int, cond_dim: int, hidden: list[int], latent_dim: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(*self._blocks([features + cond_dim, *hidden]),
                                     nn.Linear(hidden[-1], 2 * latent_dim))
        rev = hidden[::-1]
        self.decoder = nn.Sequential(*self._blocks([latent_dim + cond_dim, *rev]), nn.Linear(rev[-1], features),
                                     nn.Sigmoid())

    @staticmethod
    def _blocks(sizes: list[int]) -> list[nn.Module]:
        layers: list[nn.Module] = []
        for a, b in zip(sizes, sizes[1:]):
            layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.LeakyReLU(0.2)]
        return layers

    def encode(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(torch.cat([x.flatten(1), cond], dim=1)).chunk(2, dim=1)
        return mu, logvar.clamp(-12, 8)

    def decode(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.cat([z, cond], dim=1))


@register_generator("fc-vae")
class FullyConnectedVAE(Generator):
    """Fully connected class-conditional VAE (BatchNorm, sigmoid output, BCE + KL); optionally one model per class.

    Conditional mode: the one-hot label is concatenated to the flattened image and to the latent code.
    ``per_class=True``: one unconditional VAE per class (``nets[c]``) trained on its class's share of
    each batch (a class with fewer than 2 images in a batch is skipped there: BatchNorm needs 2);
    ``encode`` / ``decode`` / ``sample`` dispatch by label. ``init``: "xavier" or "kaiming".
    ``lr_halving``: the learning rate is halved after every epoch, never below ``lr_floor`` times the
    initial one (``lr_scale(epoch) = max(0.5 ** epoch, lr_floor)``).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        image_size: int,
        channels: int,
        latent_dim: int = 32,
        hidden_units: Sequence[int] = (512, 256),
        per_class: bool = False,
        init: str = "xavier",
        lr_halving: bool = False,
        lr_floor: float = 0.01,
    ) -> None:
        super().__init__(num_classes=num_classes, image_size=image_size, channels=channels, latent_dim=latent_dim)
        name = "fc-vae"
        hidden = _widths(name, "hidden_units", hidden_units)
        self.per_class = _flag(name, "per_class", per_class)
        _choice(name, "init", init, ("xavier", "kaiming"))
        self.lr_halving = _flag(name, "lr_halving", lr_halving)
        self.lr_floor = _number(name, "lr_floor", lr_floor, low=0.0, high=1.0, low_open=True)
        features = channels * image_size * image_size
        if self.per_class:
            self.nets = nn.ModuleList(_MLPVAE(features, 0, hidden, latent_dim) for _ in range(num_classes))
        else:
            self.nets = nn.ModuleList([_MLPVAE(features, num_classes, hidden, latent_dim)])
        init_weights(self, init, name)

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
        tie = sum(p.sum() for net in skipped for p in net.parameters()) * 0.0 if skipped and _distributed() else 0.0
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


# --------------------------------------------------------------------------- convolutional VAEs
class _ConvVAEBase(ConditionalVAE):
    """``cvae``'s encoder / decoder with the options checked under the zoo model's own name and an
    optional weight init ("default", "xavier", "kaiming" or "dcgan")."""

    zoo_name = "conv-vae"

    def __init__(self, *, num_classes: int, image_size: int, channels: int, latent_dim: int,
                 hidden_channels: Sequence[int] | None, embed_dim: int, beta: float = 1.0, recon: str = "mse",
                 init: str = "default") -> None:
        name = self.zoo_name
        hidden = default_hidden_channels(image_size) if hidden_channels is None else \
            _widths(name, "hidden_channels", hidden_channels)
        if isinstance(image_size, int) and not isinstance(image_size, bool) and image_size > 0:
            _levels_for(image_size, hidden, name)
        _count(name, "embed_dim", embed_dim)
        _choice(name, "recon", recon, ("mse", "bce"))
        beta = _number(name, "beta", beta, low=0.0)
        _choice(name, "init", init, ("default", "xavier", "kaiming", "dcgan"))
        super().__init__(num_classes=num_classes, image_size=image_size, channels=channels, latent_dim=latent_dim,
                         hidden_channels=hidden, embed_dim=embed_dim, beta=beta, recon=recon)
        init_weights(self, init, name)


class _CountsSteps:
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


@register_generator("conv-vae")
class ConvVAE(_ConvVAEBase):
    """Vanilla class-conditional convolutional VAE (beta = 1): ``recon`` "bce" (default) or "mse" + KL.

    The architecture of ``cvae`` (label embeddings into encoder and decoder, one stride-2 level per
    entry of ``hidden_channels``); ``init`` re-initialises the weights ("default" keeps PyTorch's).
    """

    zoo_name = "conv-vae"

    def __init__(self, *, num_classes: int, image_size: int, channels: int, latent_dim: int = 32,
                 hidden_channels: Sequence[int] | None = None, embed_dim: int = 16, recon: str = "bce",
                 init: str = "default") -> None:
        super().__init__(num_classes=num_classes, image_size=image_size, channels=channels, latent_dim=latent_dim,
                         hidden_channels=hidden_channels, embed_dim=embed_dim, beta=1.0, recon=recon, init=init)


@register_generator("beta-vae")
class BetaVAE(_CountsSteps, _ConvVAEBase):
    """Conditional beta-VAE: ``recon + beta * KL``, or with capacity annealing ``recon + gamma * |KL - C|``.

    ``capacity_max > 0`` turns on Burgess et al. (2018): the KL is pulled towards a target ``C`` that
    grows linearly from 0 to ``capacity_max`` nats over ``capacity_steps`` training steps (then beta is
    not used). The step count is the buffer ``train_steps``, so a resumed run continues the schedule.
    """

    zoo_name = "beta-vae"

    def __init__(self, *, num_classes: int, image_size: int, channels: int, latent_dim: int = 32,
                 hidden_channels: Sequence[int] | None = None, embed_dim: int = 16, beta: float = 4.0,
                 capacity_max: float = 0.0, capacity_steps: int = 2000, gamma: float = 100.0, recon: str = "bce",
                 init: str = "default") -> None:
        super().__init__(num_classes=num_classes, image_size=image_size, channels=channels, latent_dim=latent_dim,
                         hidden_channels=hidden_channels, embed_dim=embed_dim, beta=beta, recon=recon, init=init)
        self.capacity_max = _number(self.zoo_name, "capacity_max", capacity_max, low=0.0)
        self.capacity_steps = _count(self.zoo_name, "capacity_steps", capacity_steps)
        self.gamma = _number(self.zoo_name, "gamma", gamma, low=0.0)
        self._register_step_counter()

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        losses = super().forward(images, labels)  # recon + beta * KL
        if self.capacity_max > 0:
            target = capacity(self.train_steps, self.capacity_max, self.capacity_steps)
            losses["loss"] = losses["recon"] + self.gamma * (losses["kl"] - target).abs()
            losses["capacity"] = torch.tensor(target)
        return losses


@register_generator("msssim-vae")
class MSSSIMVAE(_ConvVAEBase):
    """Conditional VAE whose reconstruction loss is ``1 - MS-SSIM`` mixed with an L1 / MSE pixel loss.

    Per image: ``C*H*W * (alpha * (1 - MS-SSIM) + (1 - alpha) * mean pixel loss)`` (scaled to the pixel
    count so it weighs against the KL like the summed losses of the other VAEs), plus ``beta * KL``.
    MS-SSIM uses a 3-px window and 3 scales at 28 / 32 px, 4 at 64 px (``msssim_config``).
    """

    zoo_name = "msssim-vae"

    def __init__(self, *, num_classes: int, image_size: int, channels: int, latent_dim: int = 32,
                 hidden_channels: Sequence[int] | None = None, embed_dim: int = 16, beta: float = 1.0,
                 alpha: float = 0.84, pixel_loss: str = "l1", init: str = "default") -> None:
        super().__init__(num_classes=num_classes, image_size=image_size, channels=channels, latent_dim=latent_dim,
                         hidden_channels=hidden_channels, embed_dim=embed_dim, beta=beta, init=init)
        self.alpha = _number(self.zoo_name, "alpha", alpha, low=0.0, high=1.0)
        self.pixel_loss = _choice(self.zoo_name, "pixel_loss", pixel_loss, ("l1", "mse"))
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


@register_generator("joint-vae")
class JointVAE(_CountsSteps, _ConvVAEBase):
    """JointVAE (Dupont 2018), conditional: a Gaussian latent plus a categorical one (Gumbel-softmax).

    The code is ``latent_dim + disc_dim`` wide (``gen.latent_dim``): ``latent_dim`` Gaussian values then
    a one-hot category of ``disc_dim``. ``sample_noise`` draws both (normal values, then a category
    with the same torch.Generator); ``sample(..., code=k)`` / ``generate(..., code=k)`` fix the category.
    Loss: ``recon + gamma * |KL_cont - C_cont| + gamma * |KL_disc - C_disc|``, both capacities growing
    linearly over ``capacity_steps`` (buffer ``train_steps``), the discrete one capped at log(disc_dim).
    """

    zoo_name = "joint-vae"

    def __init__(self, *, num_classes: int, image_size: int, channels: int, latent_dim: int = 32, disc_dim: int = 4,
                 hidden_channels: Sequence[int] | None = None, embed_dim: int = 16, temperature: float = 0.67,
                 cont_capacity_max: float = 25.0, disc_capacity_max: float | None = None, capacity_steps: int = 2000,
                 gamma: float = 30.0, recon: str = "bce", init: str = "default") -> None:
        name = self.zoo_name
        cont = _count(name, "latent_dim", latent_dim)
        disc = _count(name, "disc_dim", disc_dim, low=2)
        super().__init__(num_classes=num_classes, image_size=image_size, channels=channels, latent_dim=cont + disc,
                         hidden_channels=hidden_channels, embed_dim=embed_dim, recon=recon, init=init)
        self.cont_dim, self.disc_dim = cont, disc
        self.temperature = _number(name, "temperature", temperature, low=0.0, low_open=True)
        self.cont_capacity_max = _number(name, "cont_capacity_max", cont_capacity_max, low=0.0)
        self.disc_capacity_max = math.log(disc) if disc_capacity_max is None else _number(
            name, "disc_capacity_max", disc_capacity_max, low=0.0, high=math.log(disc))
        self.capacity_steps = _count(name, "capacity_steps", capacity_steps)
        self.gamma = _number(name, "gamma", gamma, low=0.0)
        # the encoder head gives (mu, logvar) of the Gaussian part and the logits of the category
        self.to_stats = nn.Linear(self.to_stats.in_features, 2 * cont + disc)
        init_weights(self.to_stats, init, name)
        self._fixed_code: int | None = None
        self._register_step_counter()

    def encode_joint(self, images: torch.Tensor, labels: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images in [0, 1] -> (mu, logvar) of the Gaussian part and the category logits."""
        emb = self.label_embed_enc(labels)[:, :, None, None].expand(-1, -1, *images.shape[-2:])
        stats = self.to_stats(self.encoder(torch.cat([images, emb], dim=1)))
        mu, logvar, logits = stats.split([self.cont_dim, self.cont_dim, self.disc_dim], dim=1)
        return mu, logvar.clamp(-12, 8), logits

    def encode(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of the whole code, ``latent_dim + disc_dim`` wide: the Gaussian part's, then the
        mean q(c | x, y) and log variance log(q (1 - q)) of the one-hot category (so ``decode(mu)``
        decodes the posterior mean, with the category's probabilities as a soft code)."""
        mu, logvar, logits = self.encode_joint(images, labels)
        q = logits.softmax(dim=1)
        return torch.cat([mu, q], dim=1), torch.cat([logvar, (q * (1 - q)).clamp_min(1e-6).log()], dim=1)

    def _check_code(self, code: int) -> int:
        if not isinstance(code, int) or isinstance(code, bool) or not 0 <= code < self.disc_dim:
            raise ValueError(f"{self.zoo_name}: code={code!r} must be a category in [0, {self.disc_dim})")
        return code

    def decode(self, z: torch.Tensor, labels: torch.Tensor, code: int | torch.Tensor | None = None) -> torch.Tensor:
        """Codes ``(n, latent_dim + disc_dim)`` -> images in [0, 1]. ``code`` (an int, or a long tensor
        of n categories) replaces the discrete part by that one-hot category."""
        if code is not None:
            if isinstance(code, torch.Tensor):
                if code.dtype.is_floating_point or code.shape != (len(z),) or (code < 0).any() or \
                        (code >= self.disc_dim).any():
                    raise ValueError(f"{self.zoo_name}: code must be an int or n={len(z)} integer categories in "
                                     f"[0, {self.disc_dim})")
                index = code.to(z.device).long()
            else:
                index = torch.full((len(z),), self._check_code(code), dtype=torch.long, device=z.device)
            z = torch.cat([z[:, :self.cont_dim], F.one_hot(index, self.disc_dim).to(z.dtype)], dim=1)
        return super().decode(z, labels)

    def generate(self, noise: torch.Tensor, labels: torch.Tensor,
                 code: int | torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(noise, labels, code)

    def sample_noise(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Normal values for the Gaussian part, then a uniformly drawn one-hot category (or the fixed one)."""
        cont = torch.randn(n, self.cont_dim, generator=generator)
        index = torch.randint(self.disc_dim, (n,), generator=generator)
        if self._fixed_code is not None:
            index.fill_(self._fixed_code)
        return torch.cat([cont, F.one_hot(index, self.disc_dim).float()], dim=1)

    @torch.no_grad()
    def sample(self, n: int, labels: torch.Tensor | None = None, *, generator: torch.Generator | None = None,
               code: int | None = None) -> torch.Tensor:
        """As ``Generator.sample``; ``code=k`` gives every image category k (same Gaussian noise as without)."""
        if code is None:
            return super().sample(n, labels, generator=generator)
        self._fixed_code = self._check_code(code)
        try:
            return super().sample(n, labels, generator=generator)
        finally:
            self._fixed_code = None

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        mu, logvar, logits = self.encode_joint(images, labels)
        soft = F.gumbel_softmax(logits, tau=self.temperature, hard=False)
        recon = self.decode(torch.cat([reparameterize(mu, logvar), soft], dim=1), labels)
        rec = reconstruction_loss(recon, images, self.recon_kind)
        kl_cont, kl_disc = gaussian_kl(mu, logvar), categorical_kl(logits)
        c_cont = capacity(self.train_steps, self.cont_capacity_max, self.capacity_steps)
        c_disc = capacity(self.train_steps, self.disc_capacity_max, self.capacity_steps)
        loss = rec + self.gamma * ((kl_cont - c_cont).abs() + (kl_disc - c_disc).abs())
        return {"loss": loss, "recon": rec, "kl_cont": kl_cont, "kl_disc": kl_disc,
                "capacity_cont": torch.tensor(c_cont), "capacity_disc": torch.tensor(c_disc)}


# --------------------------------------------------------------------------- vae-gan
class _FeatureDiscriminator(nn.Module):
    """Strided 4x4 convolutions with spectral norm and LeakyReLU. ``features``: the output of all but
    the last level (the layer the VAE-GAN reconstruction compares); ``forward``: a logit, conditional on
    the label by projection (Miyato & Koyama 2018)."""

    def __init__(self, channels: int, widths: list[int], image_size: int, num_classes: int) -> None:
        super().__init__()
        levels: list[nn.Module] = []
        in_ch = channels
        for w in widths:
            levels.append(nn.Sequential(spectral_norm(nn.Conv2d(in_ch, w, 4, 2, 1)), nn.LeakyReLU(0.2)))
            in_ch = w
        self.lower = nn.Sequential(*levels[:-1])
        self.top = levels[-1]
        flat = widths[-1] * (image_size // 2 ** len(widths)) ** 2
        self.head = spectral_norm(nn.Linear(flat, 1))
        self.embed = spectral_norm(nn.Embedding(num_classes, flat))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.lower(x)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.top(self.lower(x)).flatten(1)
        return self.head(h).squeeze(1) + (self.embed(labels) * h).sum(dim=1)


@register_generator("vae-gan")
class VAEGAN(_ConvVAEBase):
    """VAE-GAN (Larsen et al. 2016), conditional: ``cvae``'s encoder / decoder plus a discriminator whose
    intermediate features replace the pixel reconstruction loss.

    Three optimizers, stepped in this order each batch: the discriminator (real vs reconstructions and
    prior samples), the encoder (``beta * KL + feature reconstruction``), the decoder (``gamma * feature
    reconstruction + non-saturating GAN loss`` on reconstructions and prior samples). ``diffaugment``:
    DiffAugment ops applied to every discriminator input of the GAN terms; ``ema_decay`` > 0 keeps an
    EMA copy of the decoder (buffer-tracked warm-up) used for sampling and ``decode`` in eval mode.
    """

    zoo_name = "vae-gan"

    def __init__(self, *, num_classes: int, image_size: int, channels: int, latent_dim: int = 32,
                 hidden_channels: Sequence[int] | None = None, embed_dim: int = 16,
                 disc_channels: Sequence[int] | None = None, beta: float = 0.1, gamma: float = 0.2,
                 diffaugment: str = "", ema_decay: float = 0.0, init: str = "default") -> None:
        super().__init__(num_classes=num_classes, image_size=image_size, channels=channels, latent_dim=latent_dim,
                         hidden_channels=hidden_channels, embed_dim=embed_dim, beta=beta, init=init)
        name = self.zoo_name
        widths = [m.out_channels for m in self.encoder if isinstance(m, nn.Conv2d)] if disc_channels is None else \
            _widths(name, "disc_channels", disc_channels)
        if len(widths) < 2:
            raise ValueError(f"{name}: the discriminator needs at least 2 levels (its features are those of all but "
                             f"the last); got disc_channels={widths}: give 2 or more widths, e.g. [32, 64]")
        _levels_for(image_size, widths, f"{name} (disc_channels)")
        self.gamma = _number(name, "gamma", gamma, low=0.0)
        self.diffaugment = parse_policy(diffaugment, name)
        self.ema_decay = _number(name, "ema_decay", ema_decay, low=0.0, high=1.0)
        if self.ema_decay >= 1.0:
            raise ValueError(f"{name}: ema_decay={ema_decay!r} must be below 1 (0 turns the EMA off; 0.999 is usual)")
        self.discriminator = _FeatureDiscriminator(channels, widths, image_size, num_classes)
        self.ema_decoder = make_ema(self._decoder_parts()) if self.ema_decay > 0 else None
        self.register_buffer("train_steps", torch.zeros((), dtype=torch.long))

    def _decoder_parts(self) -> nn.ModuleDict:
        """The decoder's modules (not registered again: a view for the optimizer and the EMA)."""
        return nn.ModuleDict({"embed": self.label_embed_dec, "from_latent": self.from_latent, "decoder": self.decoder})

    def _encoder_parts(self) -> list[nn.Module]:
        return [self.label_embed_enc, self.encoder, self.to_stats]

    def configure_optimizers(self, lr: float) -> list[torch.optim.Optimizer]:
        """Encoder, decoder, discriminator (in this order), Adam with betas (0.5, 0.999)."""
        groups = [nn.ModuleList(self._encoder_parts()), self._decoder_parts(), self.discriminator]
        return [torch.optim.Adam(g.parameters(), lr=lr, betas=(0.5, 0.999)) for g in groups]

    def decode(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Latent codes -> images in [0, 1]; in eval mode through the EMA decoder when there is one."""
        if self.ema_decoder is None or self.training:
            return super().decode(z, labels)
        parts = self.ema_decoder
        h = parts["from_latent"](torch.cat([z, parts["embed"](labels)], dim=1))
        return parts["decoder"](h.view(-1, self._hidden_last, self.bottom, self.bottom))

    def discriminator_features(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The discriminator features of images in [0, 1] (the space the reconstruction loss is measured in)."""
        return self.discriminator.features(to_signed(images))

    def _critic(self, images01: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.discriminator(diff_augment(to_signed(images01), self.diffaugment), labels)

    def _feature_loss(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Gaussian log-likelihood in feature space: 0.5 * squared distance summed over features, batch mean."""
        return 0.5 * (self.discriminator.features(to_signed(recon)) - target).pow(2).flatten(1).sum(dim=1).mean()

    def _d_loss(self, images, rec, prior, labels) -> torch.Tensor:
        real = F.softplus(-self._critic(images, labels)).mean()
        fake = F.softplus(self._critic(rec, labels)).mean() + F.softplus(self._critic(prior, labels)).mean()
        return real + 0.5 * fake

    def _g_gan(self, rec, prior, labels) -> torch.Tensor:
        return F.softplus(-self._critic(rec, labels)).mean() + F.softplus(-self._critic(prior, labels)).mean()

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """All losses of a batch in one graph (for evaluation; training uses ``training_step``)."""
        mu, logvar = self.encode(images, labels)
        rec = self.decode(reparameterize(mu, logvar), labels)
        prior = self.decode(torch.randn_like(mu), labels)
        target = self.discriminator.features(to_signed(images)).detach()
        kl, feature = gaussian_kl(mu, logvar), self._feature_loss(rec, target)
        g_gan = self._g_gan(rec, prior, labels)
        d_loss = self._d_loss(images, rec.detach(), prior.detach(), labels)
        enc_loss, dec_loss = self.beta * kl + feature, self.gamma * feature + g_gan
        return {"loss": enc_loss + dec_loss, "enc_loss": enc_loss, "dec_loss": dec_loss, "d_loss": d_loss, "kl": kl,
                "feature_recon": feature, "g_gan": g_gan}

    def training_step(self, images: torch.Tensor, labels: torch.Tensor, optimizers: list[torch.optim.Optimizer],
                      step: StepFn) -> dict[str, torch.Tensor]:
        opt_enc, opt_dec, opt_d = optimizers
        z_prior = torch.randn(len(images), self.latent_dim, device=images.device)
        # 1. discriminator: the VAE's outputs are made without a graph, so no gradient reaches it
        with torch.no_grad():
            mu, logvar = self.encode(images, labels)
            rec = self.decode(reparameterize(mu, logvar), labels)
            prior = self.decode(z_prior, labels)
        d_loss = self._d_loss(images, rec, prior, labels)
        step(opt_d, d_loss, "d_loss")
        # 2. encoder: KL + feature reconstruction (only the encoder steps; the GAN loss is not in this graph)
        with torch.no_grad():
            target = self.discriminator.features(to_signed(images))
        mu, logvar = self.encode(images, labels)
        z = reparameterize(mu, logvar)
        kl, feature = gaussian_kl(mu, logvar), self._feature_loss(self.decode(z, labels), target)
        enc_loss = self.beta * kl + feature
        step(opt_enc, enc_loss, "enc_loss")
        # 3. decoder: a fresh graph from the detached codes (nothing flows back into the encoder)
        rec = self.decode(z.detach(), labels)
        g_gan = self._g_gan(rec, self.decode(z_prior, labels), labels)
        dec_loss = self.gamma * self._feature_loss(rec, target) + g_gan
        step(opt_dec, dec_loss, "dec_loss")
        if self.ema_decoder is not None:
            n = float(self.train_steps)
            update_ema(self.ema_decoder, self._decoder_parts(), min(self.ema_decay, (1 + n) / (10 + n)))
        self.train_steps += 1
        return {"loss": enc_loss.detach() + dec_loss.detach(), "enc_loss": enc_loss, "dec_loss": dec_loss,
                "d_loss": d_loss, "kl": kl, "feature_recon": feature, "g_gan": g_gan}
