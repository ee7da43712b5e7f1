"""EditSource: label-preserving edits of real training cells, usable wherever a generator is.

A generator trained on few patients may not draw the disease; a real infected cell carries its parasite.
An *edit* keeps most of a real cell and changes the rest (the idea behind SDEdit, Meng et al. 2022, and
DA-Fusion, Trabucco et al. 2024):

- with a conditional ``ddpm``: noise the cell to a fraction ``strength`` of the noise schedule and denoise
  it under its own class (``DDPM.edit``);
- with a VAE (any model with ``encode`` and ``decode``): encode the cell, move its code by ``strength``
  standard deviations of the prior in a random direction, decode it under its own class.

``EditSource(gen, real, strength=0.3, per_image=4)`` has the generator contract (``sample(n, labels,
generator=...)``, ``num_classes``, ``channels``, ``image_size``), so ``SyntheticDataset``, ``SyntheticMix``,
``generate_pool`` and ``evaluate_generator`` take it as they take a generator. Each real cell has
``per_image`` possible edits (fixed noise per cell and variant, so a pool of edits of the same cells is
reproducible); ``sample`` draws among them for each requested class.

An edit is close to its source image by design: the memorization audit of ``evaluate_generator`` says so
(``memorization["note"]``) rather than calling it copying. Edit only images the classifier may train on
(its training patients): an edit of a validation or test cell leaks it.
"""
from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..checks import check_float, check_int
from .items import class_id, fit_image, real_classes, split_item, to_uint8_image

__all__ = ["EditSource"]

OWNER = "EditSource"


def _load(gen: Any) -> Any:
    if isinstance(gen, (str, os.PathLike)):
        from ..generators import load_generator

        return load_generator(gen)
    return gen


def _method(gen: Any) -> str:
    """``"sdedit"`` for a model with ``edit`` (the ddpm), ``"latent"`` for one with ``encode`` and ``decode``."""
    if callable(getattr(gen, "edit", None)):
        return "sdedit"
    if callable(getattr(gen, "encode", None)) and callable(getattr(gen, "decode", None)):
        return "latent"
    name = getattr(gen, "generator_name", type(gen).__name__)
    raise TypeError(f"{OWNER}: {name} cannot edit an image: it needs a ddpm (noise and denoise) or a VAE-family "
                    "model (encode and decode, e.g. cvae, conv-vae, msssim-vae, vae-gan); a GAN has no encoder")


def _read_real(real: Dataset, channels: int, size: int) -> tuple[torch.Tensor, np.ndarray]:
    """Every real item as uint8 ``(channels, size, size)`` and its class id (synthaug's data sets: all at once,
    without their transform)."""
    fast = getattr(real, "images_tensor", None)
    if callable(fast) and getattr(real, "targets", None) is not None:
        images = fast()
        if images.ndim == 4 and tuple(images.shape[1:]) == (channels, size, size) and len(images):
            return images, np.asarray(real.targets, dtype=np.int64)
    images, labels = [], []
    for i in range(len(real)):
        image, label = split_item(real[i], i)
        images.append(fit_image(to_uint8_image(image, where=f"real item {i}"), channels, size))
        labels.append(class_id(label, key=f"the label of real item {i}"))
    if not images:
        raise ValueError(f"{OWNER}: the real data set is empty; give the training images the edits start from")
    return torch.stack(images), np.asarray(labels, dtype=np.int64)


class EditSource:
    """Edits of the real images of ``real`` by ``gen`` (a ddpm or a VAE-family generator, or its checkpoint
    folder), with the generator contract.

    Args:
        gen: the editing model, trained on the same classifier-training images (never validation or test).
        real: the real training data set whose images are edited (any ``(image, label)`` data set).
        strength: how far an edit goes, in (0, 1]: the share of the ddpm's noise schedule, or the size of
            the latent step in prior standard deviations for a VAE. 0.2-0.4 keeps a cell's parasite.
        per_image: distinct edits per real image (1-1000); ``sample`` draws among them.
        seed: seeds the edits' noise (with the image and the variant).
        sample_steps, guidance: DDIM steps over the whole schedule (the edit visits those below its start)
            and guidance scale of a ddpm; default: the model's.
        batch_size: images edited per forward pass.
    """

    def __init__(self, gen: Any, real: Dataset, *, strength: float = 0.3, per_image: int = 4, seed: int = 0,
                 sample_steps: int | None = None, guidance: float | None = None, batch_size: int = 128) -> None:
        self.gen = _load(gen)
        self.method = _method(self.gen)
        self.strength = check_float(strength, "strength", OWNER, minimum=0, maximum=1, min_inclusive=False,
                                    hint="how far an edit moves a real image; 0.2-0.4 keeps its content")
        self.per_image = check_int(per_image, "per_image", OWNER, minimum=1, maximum=1000)
        self.seed = check_int(seed, "seed", OWNER, minimum=0)
        self.batch_size = check_int(batch_size, "batch_size", OWNER, minimum=1)
        if self.method == "latent" and (sample_steps is not None or guidance is not None):
            raise ValueError(f"{OWNER}: sample_steps and guidance are ddpm settings; "
                             f"{self.gen.generator_name} edits in its latent space; leave them out")
        self.sample_steps, self.guidance = sample_steps, guidance
        self.num_classes = int(self.gen.num_classes)
        self.channels = int(self.gen.channels)
        self.image_size = int(self.gen.image_size)
        self.images, self.labels = _read_real(real, self.channels, self.image_size)
        if self.labels.min() < 0 or self.labels.max() >= self.num_classes:
            raise ValueError(f"{OWNER}: the real labels run from {self.labels.min()} to {self.labels.max()} but the "
                             f"generator has {self.num_classes} classes; edit the data set it was trained on")
        names = real_classes(real)
        gen_names = list(getattr(self.gen, "class_names", None) or [])
        if names and gen_names and names != gen_names:
            raise ValueError(f"{OWNER}: the real data set's classes {names} are not the generator's {gen_names}")
        self.class_names = gen_names or names or [str(c) for c in range(self.num_classes)]
        self._of_class = [np.flatnonzero(self.labels == c) for c in range(self.num_classes)]
        self.generator_name = f"edit-{getattr(self.gen, 'generator_name', type(self.gen).__name__)}"
        self.generator_options = {"editor": getattr(self.gen, "generator_name", None),
                                  "editor_options": dict(getattr(self.gen, "generator_options", {}) or {}),
                                  "method": self.method, "strength": self.strength, "per_image": self.per_image,
                                  "seed": self.seed, "sample_steps": sample_steps, "guidance": guidance}
        #: for each image of the last ``sample`` call, the index (into ``real``) of the image it edits
        self.last_sources = np.zeros(0, dtype=np.int64)

    # ----------------------------------------------------------------- the generator contract
    @property
    def device(self) -> torch.device:
        return getattr(self.gen, "device", torch.device("cpu"))

    def to(self, device: Any) -> "EditSource":
        self.gen.to(device)
        return self

    @property
    def edits_real_images(self) -> bool:
        """True: every image is an edit of a real training image (the memorization audit reads this)."""
        return True

    def fingerprint(self) -> str:
        """SHA-256 of the editor's weights, the real images and the edit settings (a pool's identity)."""
        from .pool import weights_fingerprint

        digest = hashlib.sha256()
        digest.update(str(weights_fingerprint(self.gen)).encode())
        digest.update(self.images.numpy().tobytes())
        digest.update(self.labels.tobytes())
        digest.update(repr(sorted(self.generator_options.items())).encode())
        return digest.hexdigest()

    def check_labels(self, n: int, labels: Any) -> torch.Tensor:
        from ..generators.base import check_sample_labels

        labels = check_sample_labels(n, labels, self.num_classes, owner=f"{OWNER}.sample")
        missing = sorted({int(c) for c in labels.tolist()} - {c for c in range(self.num_classes)
                                                              if len(self._of_class[c])})
        if missing:
            raise ValueError(f"{OWNER}.sample: no real image of class {[self.class_names[c] for c in missing]} to "
                             "edit; give a real data set with every requested class")
        return labels

    def choose(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """For each label, a real image of that class and one of its ``per_image`` variants, drawn uniformly."""
        sources = np.zeros(len(labels), dtype=np.int64)
        variants = np.zeros(len(labels), dtype=np.int64)
        for c in labels.unique().tolist():
            where = (labels == c).nonzero().flatten()
            pool = self._of_class[c]
            k = torch.randint(0, len(pool) * self.per_image, (len(where),), generator=generator).numpy()
            sources[where.numpy()] = pool[k // self.per_image]
            variants[where.numpy()] = k % self.per_image
        return sources, variants

    def _noise(self, sources: np.ndarray, variants: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
        """The noise of each (image, variant): the same edit whenever the same variant is drawn."""
        rows = []
        for j, v in zip(sources.tolist(), variants.tolist()):
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + j) * 1009 + v)
            rows.append(torch.randn(shape, generator=g))
        return torch.stack(rows) if rows else torch.zeros((0, *shape))

    def _edit(self, images: torch.Tensor, labels: torch.Tensor, sources: np.ndarray,
              variants: np.ndarray) -> torch.Tensor:
        """Edits of uint8 ``images`` in [0, 1] (the model in eval mode)."""
        gen, device = self.gen, self.device
        if self.method == "sdedit":
            noise = self._noise(sources, variants, tuple(images.shape[1:]))
            return gen.edit(images, labels, strength=self.strength, noise=noise, sample_steps=self.sample_steps,
                            guidance=self.guidance)
        mu, _ = gen.encode(images.to(device).float().div(255), labels.to(device))
        noise = self._noise(sources, variants, tuple(mu.shape[1:])).to(device, mu.dtype)
        return gen.decode(mu + self.strength * noise, labels.to(device)).clamp(0, 1)

    def edit(self, indices: Any, variants: Any = 0) -> torch.Tensor:
        """Edits (uint8) of the real images at ``indices`` (into ``real``), variant ``variants`` (an int or
        one per index, each below ``per_image``), under their own labels: what ``sample`` draws among."""
        indices = np.atleast_1d(np.asarray(indices, dtype=np.int64))
        variants = np.broadcast_to(np.asarray(variants, dtype=np.int64), indices.shape).copy()
        if len(indices) and (indices.min() < 0 or indices.max() >= len(self.labels)):
            raise ValueError(f"{OWNER}.edit: indices must be in [0, {len(self.labels)}), the real images")
        if len(variants) and (variants.min() < 0 or variants.max() >= self.per_image):
            raise ValueError(f"{OWNER}.edit: variants must be in [0, per_image={self.per_image})")
        return self._run(indices, variants)

    def _run(self, sources: np.ndarray, variants: np.ndarray) -> torch.Tensor:
        from ..generators.base import to_uint8

        labels = torch.from_numpy(self.labels[sources])
        chunks = []
        was_training = self.gen.training
        self.gen.eval()  # no BatchNorm statistics or dropout change under an edit
        try:
            with torch.no_grad():
                for start in range(0, len(labels), self.batch_size):
                    sl = slice(start, start + self.batch_size)
                    edited = self._edit(self.images[sources[sl]], labels[sl], sources[sl], variants[sl])
                    chunks.append(to_uint8(edited).cpu())
        finally:
            self.gen.train(was_training)
        if not chunks:
            return torch.zeros(0, self.channels, self.image_size, self.image_size, dtype=torch.uint8)
        return torch.cat(chunks)

    def sample(self, n: int, labels: Any = None, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` edits as uint8 ``(n, channels, image_size, image_size)``: for each label an edit of a real
        image of that class. Same generator state, same images; ``last_sources`` names their real images."""
        labels = self.check_labels(n, labels)
        sources, variants = self.choose(labels, generator)
        images = self._run(sources, variants)
        self.last_sources = sources
        return images

    def __repr__(self) -> str:
        return (f"EditSource({getattr(self.gen, 'generator_name', type(self.gen).__name__)}, "
                f"{len(self.labels)} real images, strength={self.strength:g}, per_image={self.per_image}, "
                f"method={self.method!r})")
