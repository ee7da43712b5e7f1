"""Pure loss functions used by the generators (called directly by tests)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


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
    return mu + torch.randn_like(mu) * (0.5 * logvar).exp()
