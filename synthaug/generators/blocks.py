"""Network pieces the generator families share: DiffAugment, EMA copies, weight init, the GAN
generator / discriminator, the fully connected VAE body and VAE-GAN's feature discriminator.

* ``parse_policy`` / ``diff_augment``: differentiable augmentation before a discriminator.
* ``make_ema`` / ``update_ema``: a frozen moving-average copy of a network (GANs, VAE-GAN, ddpm).
* ``init_weights``: ``"xavier"``, ``"kaiming"``, ``"dcgan"`` or ``"default"``.
* ``gan_geometry`` / ``level_widths`` / ``check_kernel_size``: the GAN resolutions (28 px: 7x7, 2 levels;
  32 px: 4x4, 3 levels; 64 px: 4x4, 4 levels) and widths.
* ``Discriminator`` (``down_block`` levels, conditioning by label maps, projection or an auxiliary
  classifier), ``GeneratorNet`` / ``ClassBatchNorm2d``, ``apply_spectral_norm`` / ``has_spectral_norm``.
* ``MLPVAE`` (fc-vae's body) and ``FeatureDiscriminator`` (vae-gan's).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_choice, is_int

DIFFAUGMENT_OPS = ("color", "translation", "cutout")
INIT_SCHEMES = ("xavier", "kaiming", "dcgan", "default")
#: image size -> (start resolution, number of stride-2 levels) of the GAN networks
GAN_SIZES = {28: (7, 2), 32: (4, 3), 64: (4, 4)}
D_CONDITIONINGS = ("none", "concat", "projection", "acgan")
#: the widest GAN level is at most this many times the base width
WIDTH_CAP = 4


# --------------------------------------------------------------------------- DiffAugment
def parse_policy(policy: str | None, owner: str) -> tuple[str, ...]:
    """``"color,translation,cutout"`` -> a tuple of op names ("" or None -> no augmentation)."""
    if not policy:
        return ()
    ops = tuple(p.strip() for p in str(policy).split(",") if p.strip())
    bad = [p for p in ops if p not in DIFFAUGMENT_OPS]
    if bad:
        raise ValueError(f"{owner}: diffaugment={policy!r}: unknown op(s) {bad}; use a comma-separated subset of "
                         f"{list(DIFFAUGMENT_OPS)}, or '' to turn it off")
    return ops


def diff_augment(x: torch.Tensor, ops: tuple[str, ...], *, translation: float = 0.125,
                 cutout: float = 0.5) -> torch.Tensor:
    """Differentiable augmentation (Zhao et al. 2020) of images in [-1, 1], applied to real and fake
    images alike before the discriminator, so a GAN trained on a few hundred images does not overfit.

    ``color``: random brightness, saturation and contrast per image; ``translation``: shift by up to
    ``translation`` of the size with zero padding; ``cutout``: a zeroed square of ``cutout`` of the size
    at a random place. Gradients flow to ``x``. Randomness comes from the global torch RNG.
    """
    if not ops:
        return x
    n, _, h, w = x.shape
    device, dtype = x.device, x.dtype
    if "color" in ops:
        x = x + (torch.rand(n, 1, 1, 1, device=device, dtype=dtype) - 0.5)
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (torch.rand(n, 1, 1, 1, device=device, dtype=dtype) * 2) + mean
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * (torch.rand(n, 1, 1, 1, device=device, dtype=dtype) + 0.5) + mean
    if "translation" in ops:
        sh, sw = max(1, int(h * translation + 0.5)), max(1, int(w * translation + 0.5))
        dy = torch.randint(-sh, sh + 1, (n,), device=device)
        dx = torch.randint(-sw, sw + 1, (n,), device=device)
        padded = F.pad(x, (sw, sw, sh, sh))
        rows = (torch.arange(h, device=device)[None, :] + sh - dy[:, None]).clamp(0, h + 2 * sh - 1)  # (n, h)
        cols = (torch.arange(w, device=device)[None, :] + sw - dx[:, None]).clamp(0, w + 2 * sw - 1)  # (n, w)
        idx_r = rows[:, None, :, None].expand(n, x.shape[1], h, w + 2 * sw)
        x = padded.gather(2, idx_r)
        idx_c = cols[:, None, None, :].expand(n, x.shape[1], h, w)
        x = x.gather(3, idx_c)
    if "cutout" in ops:
        ch, cw = max(1, int(h * cutout + 0.5)), max(1, int(w * cutout + 0.5))
        # top-left corner anywhere from half outside on one side to half outside on the other
        y0 = torch.randint(-(ch // 2), h - ch // 2 + 1, (n, 1, 1), device=device)
        x0 = torch.randint(-(cw // 2), w - cw // 2 + 1, (n, 1, 1), device=device)
        ys = torch.arange(h, device=device)[None, :, None]
        xs = torch.arange(w, device=device)[None, None, :]
        inside = (ys >= y0) & (ys < y0 + ch) & (xs >= x0) & (xs < x0 + cw)
        x = x * (~inside)[:, None].to(dtype)
    return x


# --------------------------------------------------------------------------- EMA, init, value ranges
def make_ema(module: nn.Module) -> nn.Module:
    """A frozen copy of ``module`` to hold an exponential moving average of its weights."""
    ema = copy.deepcopy(module)
    for p in ema.parameters():
        p.requires_grad_(False)
    return ema.eval()


@torch.no_grad()
def update_ema(ema: nn.Module, module: nn.Module, decay: float) -> None:
    """``ema = decay * ema + (1 - decay) * module`` for parameters; buffers (BatchNorm statistics) are copied."""
    for e, p in zip(ema.parameters(), module.parameters()):
        e.lerp_(p.detach(), 1.0 - decay)
    for e, b in zip(ema.buffers(), module.buffers()):
        e.copy_(b)


def init_weights(module: nn.Module, scheme: str, owner: str) -> None:
    """Initialise Linear / Conv weights: ``"xavier"``, ``"kaiming"``, ``"dcgan"`` (N(0, 0.02)) or ``"default"``."""
    check_choice(scheme, "init", owner, INIT_SCHEMES)
    if scheme == "default":
        return
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            if scheme == "xavier":
                nn.init.xavier_uniform_(m.weight)
            elif scheme == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0.2, nonlinearity="leaky_relu")
            else:
                nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and scheme == "dcgan" and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def to_signed(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1]."""
    return x * 2 - 1


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1]."""
    return (x + 1) / 2


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


# --------------------------------------------------------------------------- GAN geometry and networks
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


def check_kernel_size(kernel_size: object, owner: str) -> int:
    """A kernel size for stride-2 (transposed) convolutions: an even integer >= 2, so the kernel covers
    whole strides (no checkerboard from uneven overlap) and padding ``(k - 2) // 2`` halves / doubles exactly."""
    if not is_int(kernel_size) or kernel_size < 2 or kernel_size % 2:
        raise ValueError(f"{owner}: kernel_size={kernel_size!r} must be an even integer >= 2 (divisible by the "
                         "stride 2), e.g. 4")
    return int(kernel_size)


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
        check_choice(conditioning, "conditioning", owner, D_CONDITIONINGS)
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


# --------------------------------------------------------------------------- VAE family bodies
class MLPVAE(nn.Module):
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


class FeatureDiscriminator(nn.Module):
    """Strided 4x4 convolutions with spectral norm and LeakyReLU. ``features``: the output of all but
    the last level (the layer the VAE-GAN reconstruction compares); ``forward``: a logit, conditional on
    the label by projection (Miyato & Koyama 2018)."""

    def __init__(self, channels: int, widths: list[int], image_size: int, num_classes: int) -> None:
        from torch.nn.utils.parametrizations import spectral_norm

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
