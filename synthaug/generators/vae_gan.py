"""``vae-gan`` (Larsen et al. 2016): ``cvae``'s encoder / decoder, reconstruction in a discriminator's feature
space plus a GAN loss."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import StepFn, register_generator
from .blocks import FeatureDiscriminator, diff_augment, make_ema, parse_policy, to_signed, update_ema
from .losses import gaussian_kl, reparameterize
from .options import VAEGANOptions
from .vae import ConvVAEBase, levels_for


@register_generator("vae-gan", options=VAEGANOptions)
class VAEGAN(ConvVAEBase):
    """VAE-GAN (Larsen et al. 2016), conditional: ``cvae``'s encoder / decoder plus a discriminator whose
    intermediate features replace the pixel reconstruction loss.

    Three optimizers, stepped in this order each batch: the discriminator (real vs reconstructions and
    prior samples), the encoder (``beta * KL + feature reconstruction``), the decoder (``gamma * feature
    reconstruction + non-saturating GAN loss`` on reconstructions and prior samples). ``diffaugment``:
    DiffAugment ops applied to every discriminator input of the GAN terms; ``ema_decay`` > 0 keeps an
    EMA copy of the decoder (buffer-tracked warm-up) used for sampling and ``decode`` in eval mode.
    """

    owner = "vae-gan"

    def __init__(self, *, num_classes: int, image_size: int, channels: int,
                 options: VAEGANOptions | None = None) -> None:
        options = options or VAEGANOptions()
        super().__init__(num_classes=num_classes, image_size=image_size, channels=channels, options=options,
                         beta=options.beta)
        widths = [m.out_channels for m in self.encoder if isinstance(m, nn.Conv2d)] \
            if options.disc_channels is None else [int(w) for w in options.disc_channels]
        if len(widths) < 2:
            raise ValueError(f"{self.owner}: the discriminator needs at least 2 levels (its features are those of all "
                             f"but the last); got disc_channels={widths}: give 2 or more widths, e.g. [32, 64]")
        levels_for(image_size, widths, f"{self.owner} (disc_channels)")
        self.gamma = float(options.gamma)
        self.diffaugment = parse_policy(options.diffaugment, self.owner)
        self.ema_decay = float(options.ema_decay)
        self.discriminator = FeatureDiscriminator(channels, widths, image_size, num_classes)
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
