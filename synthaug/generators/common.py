"""Pieces shared by the generator families: DiffAugment, an EMA copy of a network, weight init, losses."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

DIFFAUGMENT_OPS = ("color", "translation", "cutout")


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
    if scheme not in ("xavier", "kaiming", "dcgan", "default"):
        raise ValueError(f"{owner}: init={scheme!r}: use 'xavier', 'kaiming', 'dcgan' or 'default'")
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
