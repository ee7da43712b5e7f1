"""A diffusers model as a synthaug source (the optional extra ``pip install synthaug[diffusers]``).

``DiffusersSource(pipeline, classes=[...])`` takes a diffusers pipeline whose denoiser is class-conditional:

- a pipeline with a ``unet`` and a ``scheduler`` (``DDPMPipeline``, ``DDIMPipeline``, or any pipeline saved
  with a ``UNet2DModel(num_class_embeds=...)``): synthaug runs the denoising loop itself, passing the labels
  as ``class_labels`` (the stock unconditional pipelines would drop them);
- any other pipeline that takes ``class_labels`` (``DiTPipeline``): called with them, ``output_type="np"``.

``DiffusersSource(unet, scheduler=..., classes=[...])`` takes the two parts directly. The number of
denoising steps (``steps``) and ``guidance_scale`` (class-label pipelines) are sampling settings. Noise is
drawn on the CPU from the caller's torch generator, so a seed gives the same images on any device (up to
its kernels). ``DiffusersSource.from_pretrained(folder, classes=...)`` loads a saved pipeline from disk only
(nothing is downloaded).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from ..checks import check_int
from ..generators.base import check_sample_labels
from .contract import source_class_names

__all__ = ["DiffusersSource"]


def _require_diffusers() -> Any:
    try:
        import diffusers
    except ImportError as err:
        raise ImportError("DiffusersSource needs diffusers: pip install 'synthaug[diffusers]' (or pip install "
                          "diffusers)") from err
    return diffusers


class DiffusersSource:
    """A class-conditional diffusers pipeline (or ``unet`` + ``scheduler``) as a source (see the module)."""

    generator_name = "diffusers"

    def __init__(self, pipeline: Any, *, scheduler: Any = None, classes: Sequence[str] | None = None,
                 num_classes: int | None = None, steps: int = 50, guidance_scale: float | None = None,
                 image_size: int | None = None, channels: int | None = None) -> None:
        owner = "DiffusersSource"
        self.unet = getattr(pipeline, "unet", None) if scheduler is None else pipeline
        self.scheduler = getattr(pipeline, "scheduler", None) if scheduler is None else scheduler
        self.pipeline = pipeline if scheduler is None else None
        if self.unet is None and not callable(pipeline):
            raise ValueError(f"{owner}: {type(pipeline).__name__} is neither a diffusers pipeline nor a UNet; give a "
                             "pipeline (e.g. DDPMPipeline(unet, scheduler)) or DiffusersSource(unet, scheduler=...)")
        config = getattr(self.unet, "config", None)
        embeds = getattr(config, "num_class_embeds", None) if config is not None else None
        if classes is None and num_classes is None:
            num_classes = embeds
        if classes is None and num_classes is None:
            raise ValueError(f"{owner}: give classes=[names, one per class id] (the real data set's classes)")
        count = len(classes) if classes is not None else check_int(num_classes, "num_classes", owner)
        if self.unet is not None and embeds is None:
            raise ValueError(f"{owner}: the UNet has no class embedding (num_class_embeds is None), so it cannot make "
                             "images of a class; give a class-conditional UNet2DModel(num_class_embeds=...)")
        if embeds is not None and embeds < count:
            raise ValueError(f"{owner}: the UNet embeds {embeds} classes but {count} are asked for ({classes})")
        self.num_classes = count
        self.class_names = None if classes is None else [str(c) for c in classes]
        self.steps = check_int(steps, "steps", owner, minimum=1, hint="denoising steps, e.g. 50")
        self.guidance_scale = guidance_scale
        size = getattr(config, "sample_size", None) if config is not None else None
        size = size[0] if isinstance(size, (list, tuple)) else size
        self.image_size = int(image_size or size or 0) or self._probe_size()
        self.channels = int(channels or getattr(config, "out_channels", 0) or 3)

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, *, classes: Sequence[str] | None = None,
                        device: Any = None, steps: int = 50, guidance_scale: float | None = None,
                        image_size: int | None = None, channels: int | None = None) -> DiffusersSource:
        """A pipeline saved with ``save_pretrained`` in ``folder``, loaded from disk only."""
        diffusers = _require_diffusers()
        if not os.path.isdir(os.fspath(folder)):
            raise FileNotFoundError(f"diffusers pipeline {os.fspath(folder)!r} is not a folder; give the folder a "
                                    "pipeline was saved to with save_pretrained (nothing is downloaded)")
        pipeline = diffusers.DiffusionPipeline.from_pretrained(os.fspath(folder), local_files_only=True)
        if device is not None:
            pipeline.to(device)
        return cls(pipeline, classes=classes, steps=steps, guidance_scale=guidance_scale, image_size=image_size,
                   channels=channels)

    @property
    def generator_options(self) -> dict[str, Any]:
        model = self.unet if self.unet is not None else self.pipeline
        return {"model": type(model).__name__, "scheduler": type(self.scheduler).__name__, "steps": self.steps,
                "guidance_scale": self.guidance_scale, "classes": source_class_names(self)}

    @property
    def device(self) -> torch.device:
        model = self.unet if self.unet is not None else self.pipeline
        return getattr(model, "device", torch.device("cpu"))

    def fingerprint(self) -> str:
        """SHA-256 of the denoiser's weights and the sampling settings (a pool's identity)."""
        import hashlib
        import json

        from ..mix.pool import weights_fingerprint

        model = self.unet if self.unet is not None else getattr(self.pipeline, "transformer", None)
        text = json.dumps({"weights": weights_fingerprint(model), **self.generator_options}, sort_keys=True,
                          default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def _probe_size(self) -> int:
        return int(self.sample(1, torch.zeros(1, dtype=torch.long)).shape[-1])

    @torch.no_grad()
    def _denoise(self, labels: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Images in [0, 1] from the unet + scheduler loop, labels passed as ``class_labels``."""
        unet, scheduler, device = self.unet, self.scheduler, self.device
        shape = (len(labels), unet.config.in_channels, self.image_size, self.image_size)
        x = torch.randn(shape, generator=generator).to(device) * getattr(scheduler, "init_noise_sigma", 1.0)
        scheduler.set_timesteps(self.steps)
        step_seeds = torch.randint(0, 2**31 - 1, (len(scheduler.timesteps),), generator=generator).tolist()
        for t, seed in zip(scheduler.timesteps, step_seeds):
            model_in = scheduler.scale_model_input(x, t) if hasattr(scheduler, "scale_model_input") else x
            eps = unet(model_in, t, class_labels=labels.to(device)).sample
            x = _step(scheduler, eps, t, x, torch.Generator().manual_seed(seed))
        return (x.float().cpu() / 2 + 0.5).clamp(0, 1)

    def _call_pipeline(self, labels: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        options = {} if self.guidance_scale is None else {"guidance_scale": self.guidance_scale}
        out = self.pipeline(class_labels=labels.tolist(), num_inference_steps=self.steps, output_type="np",
                            generator=torch.Generator(self.device).manual_seed(seed), **options)
        return torch.as_tensor(out.images).permute(0, 3, 1, 2).float().clamp(0, 1)

    def sample(self, n: int, labels: torch.Tensor | None = None, *,
               generator: torch.Generator | None = None) -> torch.Tensor:
        labels = check_sample_labels(n, labels, self.num_classes, owner="DiffusersSource.sample")
        if n == 0:
            return torch.zeros(0, self.channels, self.image_size, self.image_size, dtype=torch.uint8)
        images = self._denoise(labels, generator) if self.unet is not None else self._call_pipeline(labels, generator)
        return (images * 255).round().to(torch.uint8)


def _step(scheduler: Any, eps: torch.Tensor, t: Any, x: torch.Tensor, noise: torch.Generator) -> torch.Tensor:
    """One scheduler step, its noise drawn on the CPU from ``noise``: as ``variance_noise`` where the scheduler
    takes it (DDIM), else through its ``generator`` (DDPM), so the caller's torch generator fixes every step."""
    import inspect

    params = inspect.signature(scheduler.step).parameters
    if "variance_noise" in params:
        variance = torch.randn(x.shape, generator=noise).to(x.device, x.dtype)
        return scheduler.step(eps, t, x, variance_noise=variance).prev_sample
    if "generator" in params:
        return scheduler.step(eps, t, x, generator=noise).prev_sample
    return scheduler.step(eps, t, x).prev_sample
