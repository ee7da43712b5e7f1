"""Samplers of the diffusion model, apart from the denoiser (as diffusers keeps its schedulers apart).

A sampler walks a list of descending timesteps with a ``denoise(x, t) -> (eps, x0)`` function (the guided,
clipped prediction of the model at timestep ``t``) and the schedule's ``alphas_cumprod``; after the last
timestep it steps to the clean image (``abar = 1``). Every step is pure tensor maths, so tests call these
functions directly with a toy denoiser.

- ``ddim`` (Song et al. 2021): first order; ``eta > 0`` adds fresh noise each step.
- ``dpmpp-2m`` (DPM-Solver++(2M), Lu et al. 2022): the multistep second-order solver in the data (x0)
  prediction, in log-SNR time ``lambda = log(alpha / sigma)``; first order at the first step and at the
  last (to ``sigma = 0``), as diffusers' ``DPMSolverMultistepScheduler`` does (a test holds the two together).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

#: ``denoise(x, t) -> (eps, x0)`` at integer timestep ``t``
Denoise = Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]
SAMPLERS = ("ddim", "dpmpp-2m")


def sampler_timesteps(sampler: str, timesteps: int, steps: int) -> list[int]:
    """The descending timesteps ``sampler`` visits in ``steps`` network evaluations. ddim: evenly spaced from
    ``timesteps - 1`` down to 0. dpmpp-2m: ``linspace(0, timesteps - 1, steps + 1)`` without the 0, the last step
    going to the clean image (diffusers' "linspace" spacing): a second-order step into timestep 0, whose
    log-SNR lies far beyond its neighbour's, overshoots (measured on Gaussian data in the tests)."""
    if sampler == "dpmpp-2m":
        grid = torch.linspace(0, timesteps - 1, steps + 1, dtype=torch.float64).round().long().tolist()
        # steps close to timesteps round onto the same timestep twice: a zero-length step (h = 0) is dropped
        return sorted({int(t) for t in grid[1:]}, reverse=True)
    return [int(t) for t in torch.linspace(timesteps - 1, 0, steps, dtype=torch.float64).round().long()]


def ddim(x: torch.Tensor, ts: list[int], denoise: Denoise, alphas_cumprod: torch.Tensor, *, eta: float = 0.0,
         step_noise: Callable[[], torch.Tensor] | None = None) -> torch.Tensor:
    """DDIM from ``x`` at ``ts[0]`` through ``ts`` to the clean image (float, the model's scale).
    ``step_noise()`` gives the fresh standard normal noise of a step (needed when ``eta > 0``)."""
    one = torch.ones((), device=x.device, dtype=alphas_cumprod.dtype)
    for i, t in enumerate(ts):
        eps, x0 = denoise(x, t)
        abar = alphas_cumprod[t]
        abar_prev = alphas_cumprod[ts[i + 1]] if i + 1 < len(ts) else one
        sigma = eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).clamp(min=0).sqrt()
        x = abar_prev.sqrt() * x0 + (1 - abar_prev - sigma ** 2).clamp(min=0).sqrt() * eps
        if eta > 0 and step_noise is not None and i + 1 < len(ts):
            x = x + sigma * step_noise()
    return x


def _log_snr(abar: torch.Tensor) -> float:
    """``lambda = log(alpha / sigma)`` of ``abar = alpha^2`` (``alpha^2 + sigma^2 = 1``)."""
    abar = float(abar)
    return 0.5 * (math.log(abar) - math.log1p(-abar))


def dpmpp_2m(x: torch.Tensor, ts: list[int], denoise: Denoise, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """DPM-Solver++(2M) from ``x`` at ``ts[0]`` through ``ts`` to the clean image (deterministic).

    From ``s`` to ``t`` with ``h = lambda_t - lambda_s``: ``x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) D``,
    where ``D`` is the model's x0 at ``s`` (first order) or, with the previous step's x0 and ``r = h_prev / h``,
    ``(1 + 1/(2r)) x0_s - 1/(2r) x0_prev`` (second order). The last step goes to ``sigma = 0``: ``x = x0``."""
    x0_prev, h_prev = None, None
    for i, s in enumerate(ts):
        _, x0 = denoise(x, s)
        if i + 1 == len(ts):
            return x0
        t = ts[i + 1]
        a_s, a_t = alphas_cumprod[s], alphas_cumprod[t]
        h = _log_snr(a_t) - _log_snr(a_s)
        d = x0
        if x0_prev is not None:  # second order from the second step on (the final x0 is the first-order step)
            r = h_prev / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
        sigma_ratio = ((1 - a_t) / (1 - a_s)).sqrt()
        x = sigma_ratio * x - a_t.sqrt() * math.expm1(-h) * d
        x0_prev, h_prev = x0, h
    return x
