"""One training loop for every generator, on Accelerate (one CPU, one GPU, or many)."""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..utils import append_jsonl
from ..viz import save_grid
from .base import Generator


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; training stopped and the last good checkpoint is kept."""


@dataclass
class GeneratorTrainConfig:
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    num_workers: int = 0
    seed: int = 0
    log_every: int = 50
    checkpoint_every: int = 500
    sample_every: int = 500
    samples_per_class: int = 8

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "samples_per_class"):
            if getattr(self, name) < 1:
                raise ValueError(f"generator training: {name}={getattr(self, name)!r} must be >= 1")
        for name in ("num_workers", "log_every", "checkpoint_every", "sample_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"generator training: {name}={getattr(self, name)!r} must be >= 0 (0 turns it off)")
        if not self.lr > 0:
            raise ValueError(f"generator training: lr={self.lr!r} must be > 0")


def _batches(loader: DataLoader):
    epoch = 0
    while True:
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        yield from loader
        epoch += 1


def _kept(out: Path | None) -> str:
    return f"; the last good checkpoint in {out / 'checkpoint'} is kept" if out is not None else ""


def _grid_labels(gen: Generator, per_class: int) -> torch.Tensor:
    return torch.arange(gen.num_classes).repeat_interleave(per_class)


def save_sample_grid(gen: Generator, path: Path, *, per_class: int = 8, seed: int = 0) -> Path:
    """A grid with one row per class, from a fixed noise seed (comparable across checkpoints)."""
    labels = _grid_labels(gen, per_class)
    images = gen.sample(len(labels), labels, generator=torch.Generator().manual_seed(seed))
    return save_grid(images, path, nrow=per_class)


def train_generator(
    gen: Generator,
    dataset: Dataset,
    *,
    config: GeneratorTrainConfig | None = None,
    out_dir: str | os.PathLike | None = None,
    accelerator: Any = None,
    desc: str | None = None,
) -> Generator:
    """Train ``gen`` on ``dataset`` (items ``(uint8 image, label)``) for ``config.steps`` optimizer steps.

    Writes into ``out_dir`` (when given): ``log.jsonl`` (the loss dict every ``log_every`` steps),
    ``checkpoint/`` (every ``checkpoint_every`` steps and at the end), ``samples_<step>.png`` and
    ``samples.png``. A NaN / inf loss stops training with ``NonFiniteLossError``; the checkpoint on disk
    stays the last good one. Returns the trained generator (unwrapped, in eval mode).
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    config = config or GeneratorTrainConfig()
    accelerator = accelerator or Accelerator()
    if len(dataset) == 0:
        raise ValueError("cannot train a generator on an empty data set")
    set_seed(config.seed)
    out = Path(out_dir) if out_dir is not None else None
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, num_workers=config.num_workers,
                        drop_last=len(dataset) >= config.batch_size,
                        generator=torch.Generator().manual_seed(config.seed))
    optimizers = gen.configure_optimizers(config.lr)
    if len(optimizers) != 1:
        raise NotImplementedError(f"{gen.generator_name}: the shared loop trains generators with one optimizer")
    model, optimizer, loader = accelerator.prepare(gen, optimizers[0], loader)
    raw = accelerator.unwrap_model(model)
    main = accelerator.is_main_process
    if out is not None and main:
        out.mkdir(parents=True, exist_ok=True)

    model.train()
    batches = _batches(loader)
    bar = tqdm(range(1, config.steps + 1), desc=desc or f"train {raw.generator_name}", disable=not main or None,
               mininterval=1.0, dynamic_ncols=True)
    for step in bar:
        images, labels = next(batches)
        images = images.float().div_(255)
        losses = model(images, labels.long())
        values = {k: float(v.detach()) for k, v in losses.items()}
        if not all(math.isfinite(v) for v in values.values()):
            bad = {k: v for k, v in values.items() if not math.isfinite(v)}
            raise NonFiniteLossError(f"{raw.generator_name}: at step {step} the loss(es) {bad} are not finite{_kept(out)}. "
                                     f"Try a lower learning rate (lr={config.lr}).")
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(losses["loss"])
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        grad_norm = float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0
        if not math.isfinite(grad_norm):
            raise NonFiniteLossError(f"{raw.generator_name}: at step {step} the gradients are not finite (loss "
                                     f"{values}){_kept(out)}. Try a lower learning rate (lr={config.lr}).")
        optimizer.step()
        if step % max(1, config.log_every) == 0 or step == config.steps:
            bar.set_postfix({k: f"{v:.3g}" for k, v in values.items()})
            if out is not None and main and config.log_every:
                append_jsonl(out / "log.jsonl", {"step": step, **values})
        if out is not None and main:
            if config.checkpoint_every and step % config.checkpoint_every == 0 and step != config.steps:
                raw.save(out / "checkpoint")
            if config.sample_every and step % config.sample_every == 0:
                save_sample_grid(raw, out / f"samples_{step:06d}.png", per_class=config.samples_per_class)
    raw.eval()
    if out is not None and main:
        raw.save(out / "checkpoint")
        save_sample_grid(raw, out / "samples.png", per_class=config.samples_per_class)
    accelerator.wait_for_everyone()
    return raw


def config_to_dict(config: GeneratorTrainConfig) -> dict[str, Any]:
    return asdict(config)
