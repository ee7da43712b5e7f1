"""infogan: a class-conditional InfoGAN (Chen et al. 2016) on the shared GAN training of ``gan.py``.

The noise is ``[z | one-hot categorical code | continuous codes]`` (``noise_layout()``); a Q head on the
discriminator's features predicts the codes, and D (with Q) and G both minimise the weighted
``mutual_information_loss``. ``sample(..., codes=...)`` fixes codes.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import register_generator
from .blocks import init_weights
from .gan import GAN
from .losses import mutual_information_loss
from .options import InfoGANOptions


def _code_tensor(value: Any, what: str) -> torch.Tensor:
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"infogan: {what} must be a number or a tensor of numbers, got {value!r}") from err


@register_generator("infogan", options=InfoGANOptions)
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

    def __init__(self, *, num_classes: int, image_size: int, channels: int,
                 options: InfoGANOptions | None = None) -> None:
        options = options or InfoGANOptions()
        super().__init__(num_classes=num_classes, image_size=image_size, channels=channels, options=options,
                         owner="infogan", d_conditioning="projection", conditional_bn=False)
        n_categorical, n_continuous = options.n_categorical, options.n_continuous
        latent_dim, continuous_loss = options.latent_dim, options.continuous_loss
        self.n_categorical, self.n_continuous = n_categorical, n_continuous
        self.z_dim = latent_dim - n_categorical - n_continuous
        self.continuous_loss = continuous_loss
        self.aux_weights = {"info": float(options.info_weight)}
        outputs = n_categorical + n_continuous * (2 if continuous_loss == "nll" else 1)
        self.q = nn.Sequential(nn.Linear(self.d.feature_dim, 128), nn.LeakyReLU(0.2), nn.Linear(128, outputs)) \
            if outputs else None
        if self.q is not None:
            init_weights(self.q, options.init, "infogan")
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
