"""Classifier augmentation: named presets and user pipelines, drawn per batch from a seeded generator.

``classifier.augment`` of a benchmark config (and ``fit_classifier(augment=...)``) is one of

* a preset name: ``none``, ``flip-rot90`` (flips and 90° turns) or ``strong`` (``StrongAugment``: a mild
  random resized crop, flips and 90° turns, and brightness / contrast / saturation / hue jitter for the
  stain and illumination differences between blood-smear slides);
* a file path: an albumentations pipeline saved with ``A.save(transform, "aug.json")`` (``.json`` or
  ``.yaml``), or a torchvision v2 spec, a YAML/JSON file with one key ``torchvision`` listing
  ``transforms.v2`` classes in order, each ``{ClassName: {argument: value}}``::

      torchvision:
        - RandomResizedCrop: {size: 32, scale: [0.8, 1.0], antialias: true}
        - RandomHorizontalFlip: {}
        - ColorJitter: {brightness: 0.2, contrast: 0.2, saturation: 0.2, hue: 0.04}

Every augmenter maps uint8 ``(C, H, W)`` images to uint8 images of the same shape, and has ``batch(images, *,
generator, offset, total)``: its random parameters come from ``generator`` for a global batch of ``total``
items, so a run gives the same augmentation for a seed whatever the number of processes. Synthetic and real
training items are augmented alike (the benchmark augments whole batches).
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import torch

from .checks import check_choice

__all__ = ["AUGMENTATIONS", "BatchAugment", "StandardAugment", "StrongAugment", "create_augment", "check_augment",
           "register_augment"]


class BatchAugment(Protocol):
    def __call__(self, image: torch.Tensor) -> torch.Tensor: ...

    def batch(self, images: torch.Tensor, *, generator: torch.Generator, offset: int = 0,
              total: int | None = None) -> torch.Tensor: ...


_PRESETS: dict[str, Callable[[], BatchAugment]] = {}


def register_augment(name: str) -> Callable:
    """Register a preset: ``@register_augment("mine")`` on a class or function taking no argument."""
    def add(factory: Callable[[], BatchAugment]) -> Callable[[], BatchAugment]:
        _PRESETS[name] = factory
        return factory
    return add


def _flip_turn(images: torch.Tensor, hflip: torch.Tensor, vflip: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Flip and turn each image of a batch by its own draws (boolean / 0-3 tensors of the batch's length)."""
    for j, image in enumerate(images):
        if hflip[j]:
            image = image.flip(-1)
        if vflip[j]:
            image = image.flip(-2)
        images[j] = torch.rot90(image, int(turns[j]), dims=(-2, -1)) if turns[j] else image
    return images


class StandardAugment:
    """Random horizontal / vertical flip and 90° rotation of a uint8 C x H x W tensor (``flip-rot90``), or
    nothing (``none``).

    Blood-smear cells have no preferred orientation, so these are label-preserving. Called on one image it
    uses the torch global RNG (seeded per process / per DataLoader worker), so runs are reproducible.
    """

    def __init__(self, kind: str = "flip-rot90") -> None:
        self.kind = check_choice(kind, "augmentation", "StandardAugment", ("none", "flip-rot90"))

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if self.kind == "none":
            return image
        if torch.rand(()) < 0.5:
            image = image.flip(-1)
        if torch.rand(()) < 0.5:
            image = image.flip(-2)
        k = int(torch.randint(0, 4, ()))
        return torch.rot90(image, k, dims=(-2, -1)) if k else image

    def batch(self, images: torch.Tensor, *, generator: torch.Generator, offset: int = 0,
              total: int | None = None) -> torch.Tensor:
        """Augment a batch with parameters drawn from ``generator`` for a global batch of ``total`` items,
        of which ``images`` are items ``offset ... offset + len(images)``: every process of a multi-process
        run draws the same parameters and uses its own slice, so the result does not depend on how many
        processes share the batch."""
        if self.kind == "none" or not len(images):
            return images
        total = len(images) if total is None else total
        mine = slice(offset, offset + len(images))
        hflip = torch.rand(total, generator=generator) < 0.5
        vflip = torch.rand(total, generator=generator) < 0.5
        turns = torch.randint(0, 4, (total,), generator=generator)
        return _flip_turn(images.clone(), hflip[mine], vflip[mine], turns[mine])

    def __repr__(self) -> str:
        return f"StandardAugment({self.kind!r})"


register_augment("none")(lambda: StandardAugment("none"))
register_augment("flip-rot90")(lambda: StandardAugment("flip-rot90"))


# --------------------------------------------------------------------------- the strong preset: pure functions
_LUMA = (0.299, 0.587, 0.114)
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def resized_crop(x: torch.Tensor, scale: torch.Tensor, log_ratio: torch.Tensor, cx: torch.Tensor,
                 cy: torch.Tensor) -> torch.Tensor:
    """Crop of each float image ``(N, C, H, W)`` covering ``scale`` of its area with aspect ``exp(log_ratio)``,
    centred at ``(cx, cy)`` in [-1, 1] of the room left, resized back to ``H x W`` (bilinear)."""
    w = torch.sqrt(scale * log_ratio.exp()).clamp(max=1.0)
    h = torch.sqrt(scale / log_ratio.exp()).clamp(max=1.0)
    theta = torch.zeros(len(x), 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = w, h
    theta[:, 0, 2], theta[:, 1, 2] = cx * (1 - w), cy * (1 - h)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def colour_jitter(x: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor, saturation: torch.Tensor,
                  hue: torch.Tensor) -> torch.Tensor:
    """Per-image brightness / contrast / saturation factors and a hue turn (fraction of a circle, a rotation
    of the chroma plane in YIQ) of float RGB images ``(N, 3, H, W)`` in [0, 1]; greyscale images
    ``(N, 1, H, W)`` get brightness and contrast only."""
    def per_image(v: torch.Tensor) -> torch.Tensor:
        return v.view(-1, 1, 1, 1)

    def grey(v: torch.Tensor) -> torch.Tensor:
        if v.shape[1] == 1:
            return v
        return sum(w * v[:, i:i + 1] for i, w in enumerate(_LUMA))

    x = (x * per_image(brightness)).clamp(0, 1)
    mean = grey(x).mean(dim=(-3, -2, -1), keepdim=True)
    x = (mean + per_image(contrast) * (x - mean)).clamp(0, 1)
    if x.shape[1] != 3:
        return x
    g = grey(x)
    x = (g + per_image(saturation) * (x - g)).clamp(0, 1)
    angle = 2 * math.pi * hue
    cos, sin = angle.cos(), angle.sin()
    rot = torch.zeros(len(x), 3, 3)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    to_yiq = _RGB_TO_YIQ.to(x)
    matrix = torch.linalg.inv(to_yiq) @ rot.to(x) @ to_yiq
    return torch.einsum("nij,njhw->nihw", matrix, x).clamp(0, 1)


@register_augment("strong")
class StrongAugment:
    """The ``strong`` preset for blood-smear cells: a random resized crop (``scale`` of the area, aspect in
    ``ratio``; cells are centred and fill most of a crop, so the range is mild), flips and 90° turns (no
    preferred orientation), and colour jitter: brightness, contrast and saturation factors in
    ``1 ± jitter`` and a hue turn in ``± hue`` of a circle (Giemsa stain and illumination vary between
    slides and microscopes). Every image gets all of them, each with its own draws."""

    def __init__(self, *, scale: tuple[float, float] = (0.8, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
                 jitter: float = 0.2, hue: float = 0.04) -> None:
        self.scale, self.ratio, self.jitter, self.hue = tuple(scale), tuple(ratio), float(jitter), float(hue)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return self.batch(image[None], generator=None)[0]

    def batch(self, images: torch.Tensor, *, generator: torch.Generator | None, offset: int = 0,
              total: int | None = None) -> torch.Tensor:
        """As ``StandardAugment.batch``: draws for ``total`` items, this process's ``images`` take theirs."""
        if not len(images):
            return images
        total = len(images) if total is None else total
        mine = slice(offset, offset + len(images))

        def uniform(lo: float, hi: float) -> torch.Tensor:
            return (lo + (hi - lo) * torch.rand(total, generator=generator))[mine]

        crop = (uniform(*self.scale), uniform(math.log(self.ratio[0]), math.log(self.ratio[1])),
                uniform(-1, 1), uniform(-1, 1))
        hflip, vflip = (torch.rand(total, generator=generator) < 0.5 for _ in range(2))
        flips = (hflip[mine], vflip[mine], torch.randint(0, 4, (total,), generator=generator)[mine])
        colour = [uniform(1 - self.jitter, 1 + self.jitter) for _ in range(3)] + [uniform(-self.hue, self.hue)]
        x = resized_crop(images.float().div(255), *crop)
        x = colour_jitter(_flip_turn(x, *flips), *colour)
        return x.mul(255).round().clamp(0, 255).to(torch.uint8)

    def __repr__(self) -> str:
        return f"StrongAugment(scale={self.scale}, ratio={self.ratio}, jitter={self.jitter}, hue={self.hue})"


AUGMENTATIONS = tuple(_PRESETS)  # the preset names (a file path is accepted beside them)


# --------------------------------------------------------------------------- user pipelines (files)
class _PerItemSeeded:
    """A user pipeline applied item by item, each item's randomness seeded from the batch's generator."""

    def __init__(self, path: str) -> None:
        self.path = path

    def one(self, image: torch.Tensor, seed: int | None) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return self.checked(self.one(image, None), image)

    def checked(self, out: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        if out.shape != image.shape or out.dtype != torch.uint8:
            raise ValueError(f"augmentation {self.path}: turned a uint8 image {tuple(image.shape)} into "
                             f"{out.dtype} {tuple(out.shape)}; the pipeline must keep the size and uint8 pixels "
                             "(crop with a resize back to the input size, no Normalize / ToFloat)")
        return out

    def batch(self, images: torch.Tensor, *, generator: torch.Generator, offset: int = 0,
              total: int | None = None) -> torch.Tensor:
        total = len(images) if total is None else total
        seeds = torch.randint(0, 2**31 - 1, (total,), generator=generator)[offset:offset + len(images)]
        out = [self.checked(self.one(image, int(s)), image) for image, s in zip(images, seeds)]
        return torch.stack(out) if out else images

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"


class AlbumentationsAugment(_PerItemSeeded):
    """An albumentations pipeline saved with ``A.save`` (HWC uint8 numpy in and out)."""

    def __init__(self, path: str, data: dict) -> None:
        super().__init__(path)
        import albumentations as A

        from .mix.albumentations import SyntheticMix  # noqa: F401  (importing it registers the class for A.load)

        fmt = "yaml" if Path(path).suffix.lower() in (".yaml", ".yml") else "json"
        self.transform = A.load(path, data_format=fmt)

    def one(self, image: torch.Tensor, seed: int | None) -> torch.Tensor:
        if seed is not None:
            self.transform.set_random_seed(seed)
        out = self.transform(image=image.permute(1, 2, 0).numpy())["image"]
        out = torch.as_tensor(out)
        return (out[..., None] if out.ndim == 2 else out).permute(2, 0, 1).contiguous()


class TorchvisionAugment(_PerItemSeeded):
    """A torchvision v2 spec: ``{"torchvision": [{ClassName: {argument: value}}, ...]}`` (see the module)."""

    def __init__(self, path: str, data: dict) -> None:
        super().__init__(path)
        from torchvision.transforms import v2

        steps = data["torchvision"]
        if not isinstance(steps, list) or not all(isinstance(s, dict) and len(s) == 1 for s in steps):
            raise ValueError(f"augmentation {path}: `torchvision` must list steps, each {{ClassName: {{argument: "
                             "value}}}}, e.g. [{RandomHorizontalFlip: {p: 0.5}}]")
        built = []
        for step in steps:
            (name, kwargs), = step.items()
            if not isinstance(getattr(v2, name, None), type):
                raise ValueError(f"augmentation {path}: {name!r} is not a torchvision.transforms.v2 class")
            try:
                built.append(getattr(v2, name)(**(kwargs or {})))
            except (TypeError, ValueError) as err:
                raise ValueError(f"augmentation {path}: {name}({kwargs}) failed: {err}") from None
        self.transform = v2.Compose(built)

    def one(self, image: torch.Tensor, seed: int | None) -> torch.Tensor:
        if seed is None:
            return self.transform(image)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.transform(image)


def _read_spec(path: Path) -> dict:
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"augmentation {path}: expected a mapping (an A.save file or {{torchvision: [...]}})")
    return data


def create_augment(spec: str | BatchAugment | None) -> BatchAugment:
    """The augmenter a ``classifier.augment`` value names: a preset (``AUGMENTATIONS``), an ``A.save`` file or a
    torchvision v2 spec file (paths relative to the working directory). An augmenter is returned as it is."""
    if spec is None:
        return StandardAugment("none")
    if not isinstance(spec, str):
        return spec
    if spec in _PRESETS:
        return _PRESETS[spec]()
    path = Path(spec)
    if path.suffix.lower() not in (".json", ".yaml", ".yml"):
        check_choice(spec, "augment", "classifier", AUGMENTATIONS,
                     hint="or the path of an A.save .json/.yaml file or of a {torchvision: [...]} spec")
    if not path.is_file():
        raise ValueError(f"classifier: augment={spec!r}: no such file (from the working directory {Path.cwd().name}/); "
                         f"give an existing A.save or torchvision spec file, or a preset {list(AUGMENTATIONS)}")
    data = _read_spec(path)
    if "torchvision" in data:
        return TorchvisionAugment(spec, data)
    if "transform" in data:
        return AlbumentationsAugment(spec, data)
    raise ValueError(f"augmentation {spec}: keys {sorted(data)}: neither an albumentations file (A.save writes a "
                     "`transform` key) nor a torchvision spec (a `torchvision` key listing v2 transforms)")


def check_augment(spec: str) -> str:
    """``spec`` when ``create_augment`` accepts it (a preset or a readable pipeline file), else a ValueError."""
    create_augment(spec)
    return spec
