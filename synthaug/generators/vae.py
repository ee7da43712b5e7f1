"""Variational autoencoders. ``cvae``: class-conditional convolutional VAE."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .base import Generator, register_generator
from .functional import gaussian_kl, reconstruction_loss, reparameterize


DEFAULT_WIDTHS = (32, 64, 128, 256)
NORMS = ("batch", "group", "none")


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


def _levels_for(image_size: int, hidden_channels: Sequence[int], name: str) -> int:
    levels = len(hidden_channels)
    if levels < 1:
        raise ValueError(f"{name}: hidden_channels must list at least one width, got {list(hidden_channels)}")
    if image_size % (2 ** levels) or image_size // (2 ** levels) < 2:
        raise ValueError(f"{name}: image_size={image_size} cannot be halved {levels} times (one per entry of "
                         f"hidden_channels={list(hidden_channels)}) down to at least 2 px; use an image size divisible "
                         f"by {2 ** levels} (e.g. 32 or 64) or fewer hidden_channels")
    return levels


@register_generator("cvae")
class ConditionalVAE(Generator):
    """Class-conditional convolutional VAE: label embedding into encoder and decoder, KL weight beta.

    ``hidden_channels``: one stride-2 convolution level per width (None: chosen from the image size,
    see ``default_hidden_channels``). ``recon``: ``"mse"`` or ``"bce"`` (both summed over pixels).
    ``norm``: ``"batch"``, ``"group"`` or ``"none"`` after each convolution.
    """

    def __init__(
        self,
        *,
        num_classes: int,
        image_size: int,
        channels: int,
        latent_dim: int = 32,
        hidden_channels: Sequence[int] | None = None,
        embed_dim: int = 16,
        beta: float = 1.0,
        recon: str = "mse",
        norm: str = "batch",
    ) -> None:
        super().__init__(num_classes=num_classes, image_size=image_size, channels=channels, latent_dim=latent_dim)
        if norm not in NORMS:
            raise ValueError(f"cvae: norm={norm!r}: use one of {list(NORMS)}")
        if recon not in ("mse", "bce"):
            raise ValueError(f"cvae: recon={recon!r}: use 'mse' or 'bce'")
        if not beta >= 0:
            raise ValueError(f"cvae: beta={beta!r} must be >= 0")
        if hidden_channels is None:
            hidden_channels = default_hidden_channels(image_size)
        hidden = [int(h) for h in hidden_channels]
        levels = _levels_for(image_size, hidden, "cvae")
        self.beta = float(beta)
        self.recon_kind = recon
        self.bottom = image_size // (2 ** levels)

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


@register_generator("cvae-tiny")
def cvae_tiny(*, num_classes: int, image_size: int, channels: int, latent_dim: int = 8, beta: float = 1.0,
              recon: str = "mse", norm: str = "batch") -> ConditionalVAE:
    """A very small cvae for tests and smoke runs."""
    return ConditionalVAE(num_classes=num_classes, image_size=image_size, channels=channels, latent_dim=latent_dim,
                          hidden_channels=(8, 16), embed_dim=4, beta=beta, recon=recon, norm=norm)
