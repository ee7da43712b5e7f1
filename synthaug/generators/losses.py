"""Pure loss functions of the generators (tests call them directly): VAE, GAN, InfoGAN, MS-SSIM."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

#: the adversarial losses ``discriminator_loss`` / ``generator_loss`` know
LOSSES = ("hinge", "ns")
#: the five scale weights of Wang et al. (2003), finest scale first
MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


# --------------------------------------------------------------------------- VAEs
def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)), summed over latent dimensions, averaged over the batch."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-image reconstruction error summed over pixels, averaged over the batch.

    ``recon`` and ``target`` are in [0, 1]. ``kind`` is ``"mse"`` or ``"bce"``.
    """
    if kind == "mse":
        per_pixel = F.mse_loss(recon, target, reduction="none")
    elif kind == "bce":
        per_pixel = F.binary_cross_entropy(recon.clamp(1e-6, 1 - 1e-6), target, reduction="none")
    else:
        raise ValueError(f"reconstruction loss {kind!r}: use 'mse' or 'bce'")
    return per_pixel.flatten(1).sum(dim=1).mean()


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``mu + eps * sigma`` with ``eps`` from the global torch RNG (the training loop seeds it)."""
    return mu + torch.randn_like(mu) * (0.5 * logvar).exp()


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


# --------------------------------------------------------------------------- MS-SSIM
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
    blur = _gaussian_blur(win_size, sigma, x.shape[1], x.dtype, x.device)
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


def _gaussian_blur(win_size: int, sigma: float, channels: int, dtype: torch.dtype, device: torch.device):
    """A separable Gaussian window (no padding) applied per channel: the local means of SSIM."""
    offsets = torch.arange(win_size, dtype=dtype, device=device) - win_size // 2
    g = torch.exp(-offsets ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    rows, cols = g.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), g.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, rows, groups=channels), cols, groups=channels)

    return blur


# --------------------------------------------------------------------------- GANs
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
