"""Working in a generator's latent space: encode / decode, interpolation, concept vectors, anomaly scores.

Every function takes a synthaug ``Generator``. Images go in and come out as uint8 tensors
``(n, C, H, W)`` (the data sets' format); latent codes are float tensors ``(n, latent_dim)`` on the CPU,
laid out as ``gen.sample_noise`` draws them (so a code can be passed to ``gen.generate``).

* Models with an encoder (the VAEs: ``gen.encode(images01, labels) -> (mu, logvar)``) encode in one pass.
* Models without one (GANs) are inverted by a latent search (AnoGAN, Schlegl et al. 2017): the code
  whose image is closest to the target, found by gradient descent from seeded starting points.
* ``anomaly_score``: how far an image is from what the model learned. VAEs: the reconstruction error
  of ``decode(encode(x))``; GANs: the residual left by the latent search (plus, when the model exposes
  ``discriminator_features``, the distance in discriminator feature space).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .generators.base import Generator, to_uint8

__all__ = ["has_encoder", "encode", "decode", "invert", "interpolate", "concept_vector", "apply_concept",
           "anomaly_score", "principal_directions"]


def has_encoder(gen: Generator) -> bool:
    """True when ``gen`` has ``encode`` and ``decode`` (a VAE); otherwise latent codes come from a search."""
    return callable(getattr(gen, "encode", None)) and callable(getattr(gen, "decode", None))


def _images01(gen: Generator, images: torch.Tensor, what: str = "images") -> torch.Tensor:
    images = torch.as_tensor(images)
    if images.ndim == 3:
        images = images[None]
    expected = (gen.channels, gen.image_size, gen.image_size)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
        raise ValueError(f"{what} must be (n, {expected[0]}, {expected[1]}, {expected[2]}) for this generator "
                         f"({gen.generator_name}), got {tuple(images.shape)}; load the data at image_size="
                         f"{gen.image_size} with {gen.channels} channel(s)")
    if images.dtype == torch.uint8:
        return images.float().div(255).to(gen.device)
    if not images.dtype.is_floating_point:
        raise ValueError(f"{what} must be uint8 (0-255) or float in [0, 1], got {images.dtype}")
    return images.float().to(gen.device)


def _labels(gen: Generator, labels, n: int) -> torch.Tensor:
    if labels is None:
        raise ValueError(f"labels are needed: {gen.generator_name} is class-conditional (give one class id per image)")
    labels = torch.as_tensor(labels)
    if labels.ndim == 0:
        labels = labels.repeat(n)
    return gen.check_labels(n, labels).to(gen.device)


@torch.no_grad()
def encode(gen: Generator, images: torch.Tensor, labels, *, steps: int = 200, restarts: int = 4,
           seed: int = 0) -> torch.Tensor:
    """Latent codes of ``images`` (uint8 or float in [0, 1]) under class ``labels``.

    VAEs: the posterior means. Other models: ``invert`` (a latent search of ``steps`` steps).
    """
    x = _images01(gen, images)
    y = _labels(gen, labels, len(x))
    if not has_encoder(gen):
        with torch.enable_grad():
            return invert(gen, x, y, steps=steps, restarts=restarts, seed=seed)[0]
    was = gen.training
    gen.eval()
    try:
        mu, _ = gen.encode(x, y)
    finally:
        gen.train(was)
    return mu.detach().cpu()


def _render(gen: Generator, codes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Codes -> float images in [0, 1] (eval mode), through ``decode`` when there is one."""
    codes = codes.to(gen.device)
    if has_encoder(gen):
        return gen.decode(codes, labels)
    return gen.generate(codes, labels)


@torch.no_grad()
def decode(gen: Generator, codes: torch.Tensor, labels) -> torch.Tensor:
    """Latent codes -> uint8 images of class ``labels``."""
    codes = torch.as_tensor(codes, dtype=torch.float32)
    if codes.ndim == 1:
        codes = codes[None]
    if codes.ndim != 2 or codes.shape[1] != gen.latent_dim:
        raise ValueError(f"codes must be (n, latent_dim={gen.latent_dim}) for {gen.generator_name}, got {tuple(codes.shape)}")
    y = _labels(gen, labels, len(codes))
    was = gen.training
    gen.eval()
    try:
        return to_uint8(_render(gen, codes, y)).cpu()
    finally:
        gen.train(was)


def invert(gen: Generator, images: torch.Tensor, labels, *, steps: int = 200, restarts: int = 4, lr: float = 0.05,
           feature_weight: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """AnoGAN latent search: for each image the code whose generated image is closest to it.

    Starts from ``restarts`` seeded draws of ``gen.sample_noise`` per image, runs Adam on the codes for
    ``steps`` steps on ``(1 - feature_weight) * L1(pixels) + feature_weight * L1(discriminator features)``
    (features only when the model has ``discriminator_features(images01, labels)``), and keeps the best
    restart. Returns ``(codes, residuals)``: ``(n, latent_dim)`` and the per-image final loss.
    Only the codes change; the model's weights and mode are left as they were.
    """
    if getattr(gen, "supports_latent_search", True) is False:
        raise ValueError(f"{gen.generator_name} does not support a latent search (its sampler is too long to "
                         "differentiate through cheaply); use a VAE or a GAN for encode / anomaly scores")
    if steps < 1 or restarts < 1:
        raise ValueError(f"invert: steps={steps} and restarts={restarts} must both be >= 1")
    x = _images01(gen, images)
    y = _labels(gen, labels, len(x))
    n = len(x)
    g = torch.Generator().manual_seed(seed)
    start = gen.sample_noise(n * restarts, generator=g).to(gen.device)
    codes = start.clone().requires_grad_(True)
    target = x.repeat(restarts, 1, 1, 1)
    yy = y.repeat(restarts)
    features = getattr(gen, "discriminator_features", None)
    use_features = callable(features) and feature_weight > 0
    was = gen.training
    requires = [p.requires_grad for p in gen.parameters()]
    gen.eval()
    for p in gen.parameters():
        p.requires_grad_(False)
    try:
        opt = torch.optim.Adam([codes], lr=lr)
        with torch.no_grad():
            target_features = features(target, yy) if use_features else None
        for _ in range(steps):
            opt.zero_grad()
            loss = _search_loss(gen, codes, yy, target, target_features, feature_weight if use_features else 0.0)
            loss.sum().backward()
            opt.step()
        with torch.no_grad():
            final = _search_loss(gen, codes, yy, target, target_features, feature_weight if use_features else 0.0)
    finally:
        for p, r in zip(gen.parameters(), requires):
            p.requires_grad_(r)
        gen.train(was)
    final = final.view(restarts, n)
    best = final.argmin(dim=0)
    chosen = codes.detach().view(restarts, n, -1)[best, torch.arange(n)]
    return chosen.cpu(), final[best, torch.arange(n)].cpu()


def _search_loss(gen, codes, labels, target, target_features, feature_weight) -> torch.Tensor:
    out = gen.generate(codes, labels)
    loss = (out - target).abs().flatten(1).mean(dim=1)
    if feature_weight > 0:
        f = gen.discriminator_features(out, labels)
        loss = (1 - feature_weight) * loss + feature_weight * (f - target_features).abs().flatten(1).mean(dim=1)
    return loss


def _slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    an, bn = a / a.norm().clamp_min(1e-8), b / b.norm().clamp_min(1e-8)
    omega = torch.acos((an * bn).sum().clamp(-1 + 1e-7, 1 - 1e-7))
    if float(omega) < 1e-4:
        return torch.lerp(a[None], b[None], t[:, None])
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so)[:, None] * a[None] + (torch.sin(t * omega) / so)[:, None] * b[None]


def _as_code(gen: Generator, item: torch.Tensor, label: int, name: str, seed: int) -> torch.Tensor:
    item = torch.as_tensor(item)
    if item.ndim == 1:
        if item.shape[0] != gen.latent_dim:
            raise ValueError(f"{name}: a code must have latent_dim={gen.latent_dim} values, got {item.shape[0]}")
        return item.float().cpu()
    if item.ndim == 3:
        return encode(gen, item[None], [label], seed=seed)[0]
    raise ValueError(f"{name} must be a latent code (latent_dim,) or an image (C, H, W), got {tuple(item.shape)}")


@torch.no_grad()
def interpolate(gen: Generator, a: torch.Tensor, b: torch.Tensor, *, label: int, steps: int = 8,
                method: str = "slerp", seed: int = 0) -> torch.Tensor:
    """``steps`` uint8 images going from ``a`` to ``b`` (each a code ``(latent_dim,)`` or an image
    ``(C, H, W)``, which is encoded first), all of class ``label``. ``method``: "slerp" (spherical, the
    usual choice for Gaussian latents) or "linear"."""
    if method not in ("slerp", "linear"):
        raise ValueError(f"interpolate: method={method!r}: use 'slerp' or 'linear'")
    if steps < 2:
        raise ValueError(f"interpolate: steps={steps} must be >= 2 (the two ends)")
    za, zb = _as_code(gen, a, label, "a", seed), _as_code(gen, b, label, "b", seed)
    t = torch.linspace(0, 1, steps)
    codes = _slerp(za, zb, t) if method == "slerp" else torch.lerp(za[None], zb[None], t[:, None])
    return decode(gen, codes, torch.full((steps,), int(label)))


@torch.no_grad()
def concept_vector(gen: Generator, images: torch.Tensor, labels: Sequence[int] | torch.Tensor, *, target: int,
                   source: int, encode_as: int | None = None, seed: int = 0) -> torch.Tensor:
    """Mean latent code of the ``target``-class images minus that of the ``source``-class images
    (e.g. infected - healthy). Both groups are encoded under the same class ``encode_as`` (default
    ``source``), so the vector captures what the label does not. Returns ``(latent_dim,)``."""
    labels = torch.as_tensor(labels).long().cpu()
    x = torch.as_tensor(images)
    if len(x) != len(labels):
        raise ValueError(f"concept_vector: {len(x)} images but {len(labels)} labels")
    groups = {}
    for cls, what in ((target, "target"), (source, "source")):
        mask = labels == int(cls)
        if not bool(mask.any()):
            raise ValueError(f"concept_vector: no image of {what} class {cls} among the {len(x)} given")
        groups[what] = x[mask]
    as_cls = source if encode_as is None else encode_as
    means = {what: encode(gen, imgs, torch.full((len(imgs),), int(as_cls)), seed=seed).mean(dim=0)
             for what, imgs in groups.items()}
    return means["target"] - means["source"]


@torch.no_grad()
def apply_concept(gen: Generator, image: torch.Tensor, label: int, vector: torch.Tensor,
                  strengths: Sequence[float] = (0.0, 0.5, 1.0, 1.5), *, seed: int = 0) -> torch.Tensor:
    """Encode ``image`` (or take a code) under ``label``, add ``strength * vector`` for each strength and
    decode: ``(len(strengths), C, H, W)`` uint8 images."""
    z = _as_code(gen, image, label, "image", seed)
    vector = torch.as_tensor(vector, dtype=torch.float32).cpu()
    if vector.shape != z.shape:
        raise ValueError(f"apply_concept: vector has shape {tuple(vector.shape)}, the codes {tuple(z.shape)}")
    s = torch.as_tensor(list(strengths), dtype=torch.float32)
    return decode(gen, z[None] + s[:, None] * vector[None], torch.full((len(s),), int(label)))


@torch.no_grad()
def anomaly_score(gen: Generator, images: torch.Tensor, labels, *, batch_size: int = 256, steps: int = 100,
                  restarts: int = 2, seed: int = 0) -> torch.Tensor:
    """One score per image: higher means farther from what the model learned.

    VAEs: the mean squared reconstruction error of ``decode(encode(x))`` (posterior mean, no sampling,
    so deterministic). Others: the residual of ``invert`` (``steps`` x ``restarts`` per image; slow).
    """
    x = _images01(gen, images)
    y = _labels(gen, labels, len(x))
    scores = []
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        if has_encoder(gen):
            was = gen.training
            gen.eval()
            try:
                mu, _ = gen.encode(xb, yb)
                recon = gen.decode(mu, yb)
            finally:
                gen.train(was)
            scores.append(F.mse_loss(recon, xb, reduction="none").flatten(1).mean(dim=1).cpu())
        else:
            with torch.enable_grad():
                scores.append(invert(gen, xb, yb, steps=steps, restarts=restarts, seed=seed)[1])
    return torch.cat(scores) if scores else torch.zeros(0)


@torch.no_grad()
def principal_directions(gen: Generator, images: torch.Tensor, labels, k: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` principal directions of the encoded ``images`` (a VAE's latent space): ``(k, latent_dim)``
    unit vectors and the standard deviation along each, largest first."""
    if not has_encoder(gen):
        raise ValueError(f"principal_directions needs a model with an encoder; {gen.generator_name} has none")
    z = encode(gen, images, labels)
    if len(z) < 2:
        raise ValueError("principal_directions needs at least 2 images")
    k = max(1, min(k, z.shape[1], len(z) - 1))
    centred = z - z.mean(dim=0, keepdim=True)
    _, s, v = torch.linalg.svd(centred, full_matrices=False)
    return v[:k], s[:k] / math.sqrt(len(z) - 1)
