"""``joint-vae`` (Dupont 2018): a Gaussian latent plus a Gumbel-softmax categorical one, each with its capacity;
the encoder / decoder of ``cvae`` (``vae.ConvVAEBase``)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import is_int
from .base import register_generator
from .blocks import init_weights
from .losses import capacity, categorical_kl, gaussian_kl, reconstruction_loss, reparameterize
from .options import JointVAEOptions
from .vae import ConvVAEBase, CountsSteps


@register_generator("joint-vae", options=JointVAEOptions)
class JointVAE(CountsSteps, ConvVAEBase):
    """JointVAE (Dupont 2018), conditional: a Gaussian latent plus a categorical one (Gumbel-softmax).

    The code is ``latent_dim + disc_dim`` wide (``gen.latent_dim``): ``latent_dim`` Gaussian values then
    a one-hot category of ``disc_dim``. ``sample_noise`` draws both (normal values, then a category
    with the same torch.Generator); ``sample(..., code=k)`` / ``generate(..., code=k)`` fix the category.
    Loss: ``recon + gamma * |KL_cont - C_cont| + gamma * |KL_disc - C_disc|``, both capacities growing
    linearly over ``capacity_steps`` (buffer ``train_steps``), the discrete one capped at log(disc_dim).
    """

    owner = "joint-vae"

    def __init__(self, *, num_classes: int, image_size: int, channels: int,
                 options: JointVAEOptions | None = None) -> None:
        options = options or JointVAEOptions()
        cont, disc = options.latent_dim, options.disc_dim
        super().__init__(num_classes=num_classes, image_size=image_size, channels=channels, options=options,
                         recon=options.recon, latent_dim=cont + disc)
        self.cont_dim, self.disc_dim = cont, disc
        self.temperature = float(options.temperature)
        self.cont_capacity_max = float(options.cont_capacity_max)
        self.disc_capacity_max = math.log(disc) if options.disc_capacity_max is None else \
            float(options.disc_capacity_max)
        self.capacity_steps = options.capacity_steps
        self.gamma = float(options.gamma)
        # the encoder head gives (mu, logvar) of the Gaussian part and the logits of the category
        self.to_stats = nn.Linear(self.to_stats.in_features, 2 * cont + disc)
        init_weights(self.to_stats, options.init, self.owner)
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
        if not is_int(code) or not 0 <= code < self.disc_dim:
            raise ValueError(f"{self.owner}: code={code!r} must be a category in [0, {self.disc_dim})")
        return int(code)

    def decode(self, z: torch.Tensor, labels: torch.Tensor, code: int | torch.Tensor | None = None) -> torch.Tensor:
        """Codes ``(n, latent_dim + disc_dim)`` -> images in [0, 1]. ``code`` (an int, or a long tensor
        of n categories) replaces the discrete part by that one-hot category."""
        if code is not None:
            if isinstance(code, torch.Tensor):
                if code.dtype.is_floating_point or code.shape != (len(z),) or (code < 0).any() or \
                        (code >= self.disc_dim).any():
                    raise ValueError(f"{self.owner}: code must be an int or n={len(z)} integer categories in "
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
