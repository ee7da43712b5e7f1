"""The denoiser of the diffusion model: a DDPM-style UNet conditioned on the timestep and the class.

Apart from the noise schedule and the samplers (``diffusion.py``, ``samplers.py``): the network alone.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import is_int
from .options import DDPMOptions

MAX_DOWNSAMPLES = 3


def _groups(ch: int) -> int:
    """GroupNorm groups: about 4 channels per group, at most 32, dividing ``ch``."""
    g = min(32, max(1, ch // 4))
    while ch % g:
        g -= 1
    return g


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding ``(n, dim)`` of integer timesteps ``t`` (n,)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / max(1, half))
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    return F.pad(emb, (0, dim - 2 * half))


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, plus the (time + class) embedding, GroupNorm -> SiLU -> dropout -> conv, residual."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(in_ch), in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.norm2 = nn.GroupNorm(_groups(out_ch), out_ch)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Single-head self-attention over the pixels of a feature map, residual."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(_groups(ch), ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.out = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).flatten(2).transpose(1, 2).chunk(3, dim=2)  # (n, hw, c) each
        a = F.scaled_dot_product_attention(q, k, v)
        return x + self.out(a.transpose(1, 2).reshape(n, c, h, w))


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 convolution."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """A DDPM-style UNet: one level per entry of ``channel_mults`` (width ``base_width * mult``) with
    ``num_res_blocks[level]`` residual blocks going down and one more going up (on the skip
    connections), stride-2 convolutions down, nearest-neighbour upsampling + conv up, and a middle of
    two residual blocks with optional self-attention between them. Every block adds the embedding
    ``MLP(sinusoid(t)) + Embedding(class)``; class ``num_classes`` is the "null" class.
    """

    def __init__(self, *, channels: int, num_classes: int, base_width: int, channel_mults: Sequence[int],
                 num_res_blocks: Sequence[int], attention: bool, dropout: float) -> None:
        super().__init__()
        self.base_width = base_width
        emb_dim = 4 * base_width
        self.time_mlp = nn.Sequential(nn.Linear(base_width, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.class_embed = nn.Embedding(num_classes + 1, emb_dim)  # the last row: the null class
        self.conv_in = nn.Conv2d(channels, base_width, 3, padding=1)

        widths = [base_width * m for m in channel_mults]
        self.down_blocks, self.downsample = nn.ModuleList(), nn.ModuleList()
        skips, ch = [base_width], base_width  # channels of what the down path hands to the up path
        for level, width in enumerate(widths):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks[level]):
                blocks.append(ResBlock(ch, width, emb_dim, dropout))
                ch = width
                skips.append(ch)
            self.down_blocks.append(blocks)
            if level < len(widths) - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
        self.mid1 = ResBlock(ch, ch, emb_dim, dropout)
        self.mid_attn = SelfAttention(ch) if attention else nn.Identity()
        self.mid2 = ResBlock(ch, ch, emb_dim, dropout)
        self.up_blocks, self.upsample = nn.ModuleList(), nn.ModuleList()
        for level in reversed(range(len(widths))):
            blocks = nn.ModuleList()
            for _ in range(num_res_blocks[level] + 1):
                blocks.append(ResBlock(ch + skips.pop(), widths[level], emb_dim, dropout))
                ch = widths[level]
            self.up_blocks.append(blocks)
            if level > 0:
                self.upsample.append(Upsample(ch))
        self.norm_out = nn.GroupNorm(_groups(ch), ch)
        self.conv_out = nn.Conv2d(ch, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.base_width)) + self.class_embed(y)
        h = self.conv_in(x)
        hs = [h]
        for level, blocks in enumerate(self.down_blocks):
            for block in blocks:
                h = block(h, emb)
                hs.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)
                hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for level, blocks in enumerate(self.up_blocks):
            for block in blocks:
                h = block(torch.cat([h, hs.pop()], dim=1), emb)
            if level < len(self.upsample):
                h = self.upsample[level](h)
        return self.conv_out(F.silu(self.norm_out(h)))


def default_channel_mults(image_size: int) -> list[int]:
    """Widths (x ``base_width``) 1, 2, 4, 4: one more level per halving of ``image_size`` while it
    stays even and >= 7 px, at most 3 halvings. 28 px -> [1, 2, 4] (28, 14, 7 px); 32 px -> [1, 2, 4]
    (32, 16, 8 px); 64 px -> [1, 2, 4, 4] (64, 32, 16, 8 px)."""
    halvings, size = 0, image_size
    while halvings < MAX_DOWNSAMPLES and size % 2 == 0 and size // 2 >= 7:
        size //= 2
        halvings += 1
    return [1, 2, 4, 4][: halvings + 1]


def unet_levels(image_size: int, options: DDPMOptions, owner: str = "ddpm") -> tuple[list[int], list[int]]:
    """``(channel_mults, num_res_blocks)``, one entry per UNet level, for ``image_size``: the options'
    (or the defaults for that size), refused when the blocks do not match the levels or the image size
    does not halve once per level but the last."""
    mults = default_channel_mults(image_size) if options.channel_mults is None else list(options.channel_mults)
    blocks = options.num_res_blocks
    blocks = [blocks] * len(mults) if is_int(blocks) else list(blocks)
    if len(blocks) != len(mults):
        raise ValueError(f"{owner}: num_res_blocks={options.num_res_blocks!r} must be an integer >= 1 or a list of "
                         f"one integer >= 0 per level of channel_mults={mults} (e.g. {[1] * len(mults)})")
    halvings = len(mults) - 1
    if image_size % (2 ** halvings) or image_size // (2 ** halvings) < 2:
        raise ValueError(f"{owner}: image_size={image_size} cannot be halved {halvings} times (one fewer than the "
                         f"entries of channel_mults={mults}) down to at least 2 px; use an image size divisible "
                         f"by {2 ** halvings} (e.g. 32 or 64) or fewer channel_mults")
    return mults, blocks
