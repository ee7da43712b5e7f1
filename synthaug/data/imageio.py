"""Pure image helpers: decode any PNG/JPEG mode to uint8, letterbox to a square."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class BadImageError(ValueError):
    """An image file that cannot be decoded."""


def _to_8bit(img: Image.Image) -> Image.Image:
    # 16/32-bit integer and float images: rescale to 0..255 instead of clipping.
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        return Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    return img


def decode_image(path: str | Path, *, channels: int = 3) -> Image.Image:
    """Open ``path`` as an 8-bit RGB (``channels=3``) or L (``channels=1``) image.

    Palette, RGBA (composited on black), grayscale and 16-bit images are all converted; a file
    that cannot be decoded raises ``BadImageError`` naming it.
    """
    try:
        with Image.open(path) as img:
            img.load()
            img = _to_8bit(img)
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                img = img.convert("RGBA")
                canvas = Image.new("RGBA", img.size, (0, 0, 0, 255))
                img = Image.alpha_composite(canvas, img)
            return img.convert("RGB" if channels == 3 else "L")
    except (OSError, SyntaxError, ValueError) as err:
        raise BadImageError(f"cannot decode image file {path}: {err}. Remove or replace the file.") from err


def letterbox(img: Image.Image, size: int) -> np.ndarray:
    """Aspect-preserving resize so the longer side is ``size``, black padding to ``size`` x ``size``.

    Returns uint8 ``(C, size, size)``.
    """
    w, h = img.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    resample = Image.LANCZOS if scale < 1 else Image.BICUBIC
    resized = img.resize((nw, nh), resample)
    canvas = Image.new(img.mode, (size, size), 0)
    canvas.paste(resized, ((size - nw) // 2, (size - nh) // 2))
    arr = np.asarray(canvas, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def resize_batch(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a uint8 batch (N, C, H, W) of square images to ``size`` (antialiased bilinear)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


def convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert a uint8 batch between 1 (grayscale) and 3 (RGB) channels."""
    have = images.shape[1]
    if have == channels:
        return images
    if have == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if have == 3 and channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float32).view(1, 3, 1, 1)
        return (images.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    raise ValueError(f"cannot convert images with {have} channels to {channels} channels")
