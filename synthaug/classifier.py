"""Train and evaluate timm classifiers on uint8 image data sets (Accelerate: CPU, GPU or many)."""
from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

METRICS = ("accuracy", "balanced_accuracy", "auroc", "f1", "sensitivity", "specificity")
AUGMENTATIONS = ("none", "flip-rot90")


class LocalAccelerator:
    """The part of ``accelerate.Accelerator`` that ``train_classifier`` and ``predict`` use, for one process
    alone: no wrapping, no gathering. For work that only the main process of a multi-process run does
    (sample-quality metrics), where a distributed ``prepare`` would wait for the other processes forever."""

    process_index, num_processes, is_main_process = 0, 1, True

    def __init__(self, device: Any = "cpu") -> None:
        self.device = torch.device(device)

    def prepare(self, *objects: Any) -> Any:
        out = tuple(o.to(self.device) if isinstance(o, torch.nn.Module) else o for o in objects)
        return out[0] if len(out) == 1 else out

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def unwrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def gather_for_metrics(self, data: Any) -> Any:
        return data

    def free_memory(self, *objects: Any) -> None:
        return None


_LOCAL_DEVICE: list[Any] = []  # set by single_process(): the default accelerator is then a LocalAccelerator


def default_accelerator() -> Any:
    """``accelerate.Accelerator()``, or a ``LocalAccelerator`` inside ``with single_process(device):``."""
    if _LOCAL_DEVICE:
        return LocalAccelerator(_LOCAL_DEVICE[-1])
    from accelerate import Accelerator

    return Accelerator()


class single_process:
    """``with single_process(device):`` classifiers trained and evaluated inside use this process only."""

    def __init__(self, device: Any = "cpu") -> None:
        self.device = device

    def __enter__(self) -> "single_process":
        _LOCAL_DEVICE.append(self.device)
        return self

    def __exit__(self, *exc: Any) -> None:
        _LOCAL_DEVICE.pop()


class StandardAugment:
    """Random horizontal / vertical flip and 90° rotation of a uint8 C x H x W tensor.

    Blood-smear cells have no preferred orientation, so these are label-preserving. Uses the torch
    global RNG (seeded per process / per DataLoader worker), so runs are reproducible for a seed.
    """

    def __init__(self, kind: str = "flip-rot90") -> None:
        if kind not in AUGMENTATIONS:
            raise ValueError(f"augmentation {kind!r}: use one of {AUGMENTATIONS}")
        self.kind = kind

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
        if self.kind == "none":
            return images
        total = len(images) if total is None else total
        hflip = torch.rand(total, generator=generator) < 0.5
        vflip = torch.rand(total, generator=generator) < 0.5
        turns = torch.randint(0, 4, (total,), generator=generator)
        out = []
        for i, image in enumerate(images):
            j = offset + i
            if hflip[j]:
                image = image.flip(-1)
            if vflip[j]:
                image = image.flip(-2)
            out.append(torch.rot90(image, int(turns[j]), dims=(-2, -1)) if turns[j] else image)
        return torch.stack(out) if out else images

    def __repr__(self) -> str:
        return f"StandardAugment({self.kind!r})"


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 images to floats centred on 0 (the same for every arm), channels-last (faster convolutions)."""
    return images.float().div(255).sub(0.5).div(0.25).contiguous(memory_format=torch.channels_last)


def create_classifier(model: str, *, num_classes: int, channels: int) -> torch.nn.Module:
    import timm

    if model not in timm.list_models():
        from .utils import did_you_mean

        raise ValueError(f"unknown timm model {model!r}.{did_you_mean(model, timm.list_models())}")
    net = timm.create_model(model, pretrained=False, num_classes=num_classes, in_chans=channels)
    return net.to(memory_format=torch.channels_last)


class GlobalBatchSampler:
    """This process's share of each global batch, for ``steps`` steps.

    The global batches are consecutive ``batch_size`` slices of a stream of seeded permutations of the
    data set (one per pass), so every step sees ``batch_size`` items even when the data set is smaller,
    and the items of a step are the same whatever the number of processes: process ``rank`` of
    ``world`` takes its contiguous ``batch_size / world`` slice.
    """

    def __init__(self, n: int, batch_size: int, *, steps: int, seed: int, rank: int = 0, world: int = 1) -> None:
        if n < 1:
            raise ValueError("cannot sample batches from an empty data set")
        if batch_size % world:
            raise ValueError(f"batch_size={batch_size} must be divisible by the number of processes ({world}): each "
                             "process takes an equal share of every batch")
        self.n, self.batch_size, self.steps, self.seed, self.rank, self.world = n, batch_size, steps, seed, rank, world
        self.per_process = batch_size // world

    def __iter__(self):
        epoch, stream = 0, torch.empty(0, dtype=torch.long)
        for step in range(self.steps):
            while len(stream) < self.batch_size:
                perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + epoch))
                stream = torch.cat([stream, perm])
                epoch += 1
            batch, stream = stream[: self.batch_size], stream[self.batch_size:]
            yield batch[self.rank * self.per_process:(self.rank + 1) * self.per_process].tolist()

    def __len__(self) -> int:
        return self.steps


def train_classifier(
    model: torch.nn.Module,
    dataset: Dataset,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    weight_decay: float = 0.05,
    warmup_fraction: float = 0.05,
    seed: int = 0,
    num_workers: int = 0,
    accelerator: Any = None,
    augment: StandardAugment | None = None,
    desc: str = "classifier",
) -> torch.nn.Module:
    """Train for exactly ``steps`` optimizer steps of ``batch_size`` items (AdamW, linear warm-up then cosine).

    ``batch_size`` is the global batch: under several processes each takes an equal slice of it
    (``GlobalBatchSampler``), and ``augment`` is applied per batch with parameters drawn for the whole
    global batch from ``(seed, step)``. The items, their augmentation and the learning rate of every step
    are thus the same for 1 or N processes (BatchNorm statistics are per process, as in any data-parallel run).
    """
    accelerator = accelerator or default_accelerator()
    if len(dataset) == 0:
        raise ValueError("cannot train a classifier on an empty data set")
    sampler = GlobalBatchSampler(len(dataset), batch_size, steps=steps, seed=seed, rank=accelerator.process_index,
                                 world=accelerator.num_processes)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    warmup = max(1, int(steps * warmup_fraction))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    model, optimizer = accelerator.prepare(model, optimizer)
    # stepped by hand, once per optimizer step: a scheduler given to accelerator.prepare() steps once per
    # process, so the schedule would depend on the number of processes
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer,
                                                  schedule)
    model.train()
    loss_fn = torch.nn.CrossEntropyLoss()
    offset = accelerator.process_index * sampler.per_process
    bar = tqdm(loader, total=steps, desc=desc, disable=not accelerator.is_main_process or None, mininterval=1.0,
               dynamic_ncols=True, leave=False)
    for step, (images, labels) in enumerate(bar):
        images, labels = images.to(accelerator.device), labels.to(accelerator.device)
        if augment is not None:
            g = torch.Generator().manual_seed(seed * 1_000_003 + step)
            images = augment.batch(images, generator=g, offset=offset, total=batch_size)
        loss = loss_fn(model(normalize(images)), labels)
        value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(f"{desc}: classifier loss is {value} at step {step + 1}; lower lr={lr}")
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        optimizer.step()
        scheduler.step()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{value:.3f}")
    return accelerator.unwrap_model(model)


@torch.no_grad()
def predict(model: torch.nn.Module, dataset: Dataset, *, batch_size: int = 256, accelerator: Any = None,
            num_workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Class probabilities (N, C) and targets (N,) over the whole data set, gathered across processes."""
    accelerator = accelerator or default_accelerator()
    loader = accelerator.prepare(DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers))
    model = accelerator.prepare(model)
    model.eval()
    probs, targets = [], []
    for images, labels in loader:
        images, labels = images.to(accelerator.device), labels.to(accelerator.device)
        p = model(normalize(images)).float().softmax(dim=1)
        p, labels = accelerator.gather_for_metrics((p, labels))
        probs.append(p.cpu())
        targets.append(labels.cpu())
    return torch.cat(probs), torch.cat(targets)


def compute_metrics(probs: torch.Tensor, targets: torch.Tensor, *, positive: int | None = None) -> dict[str, float]:
    """accuracy, balanced accuracy, AUROC, F1, sensitivity, specificity (torchmetrics).

    Two classes: binary metrics with ``positive`` as the positive class (default 1). More classes:
    macro averages (sensitivity = macro recall, specificity = macro specificity).
    """
    from torchmetrics.functional import classification as tmc

    num_classes = probs.shape[1]
    targets = targets.long()
    if num_classes == 2:
        pos = 1 if positive is None else int(positive)
        scores, truth = probs[:, pos], (targets == pos).long()
        sens = float(tmc.binary_recall(scores, truth))
        spec = float(tmc.binary_specificity(scores, truth))
        return {
            "accuracy": float(tmc.binary_accuracy(scores, truth)),
            "balanced_accuracy": (sens + spec) / 2,
            "auroc": float(tmc.binary_auroc(scores, truth)),
            "f1": float(tmc.binary_f1_score(scores, truth)),
            "sensitivity": sens,
            "specificity": spec,
        }
    kw = {"num_classes": num_classes}
    return {
        "accuracy": float(tmc.multiclass_accuracy(probs, targets, average="micro", **kw)),
        "balanced_accuracy": float(tmc.multiclass_recall(probs, targets, average="macro", **kw)),
        "auroc": float(tmc.multiclass_auroc(probs, targets, average="macro", **kw)),
        "f1": float(tmc.multiclass_f1_score(probs, targets, average="macro", **kw)),
        "sensitivity": float(tmc.multiclass_recall(probs, targets, average="macro", **kw)),
        "specificity": float(tmc.multiclass_specificity(probs, targets, average="macro", **kw)),
    }


CLASSIFIER_CONFIG = "classifier.json"
CLASSIFIER_WEIGHTS = "model.safetensors"


def save_classifier(model: torch.nn.Module, directory, *, model_name: str, num_classes: int, channels: int,
                    image_size: int, classes: list[str] | None = None) -> None:
    """A classifier checkpoint: safetensors weights + JSON (timm name, classes, input format); no pickle."""
    import json
    from pathlib import Path

    from safetensors.torch import save

    from . import __version__
    from .utils import atomic_write_bytes, atomic_write_text

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(directory / CLASSIFIER_WEIGHTS, save(state))
    atomic_write_text(directory / CLASSIFIER_CONFIG, json.dumps({
        "model": model_name, "num_classes": num_classes, "channels": channels, "image_size": image_size,
        "classes": classes, "synthaug_version": __version__}, indent=2))


def load_classifier(directory) -> tuple[torch.nn.Module, dict]:
    """Rebuild a classifier saved by ``save_classifier``; returns (model in eval mode, its config)."""
    import json
    from pathlib import Path

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    if not (directory / CLASSIFIER_CONFIG).is_file() or not (directory / CLASSIFIER_WEIGHTS).is_file():
        raise FileNotFoundError(f"{directory} is not a synthaug classifier checkpoint ({CLASSIFIER_CONFIG} + "
                                f"{CLASSIFIER_WEIGHTS}, made by save_classifier)")
    try:
        cfg = json.loads((directory / CLASSIFIER_CONFIG).read_text())
        model = create_classifier(cfg["model"], num_classes=int(cfg["num_classes"]), channels=int(cfg["channels"]))
        model.load_state_dict(load_file(str(directory / CLASSIFIER_WEIGHTS)), strict=True)
    except (KeyError, ValueError, RuntimeError, SafetensorError, OSError) as err:
        raise ValueError(f"{directory}: cannot rebuild the classifier from {CLASSIFIER_CONFIG} and "
                         f"{CLASSIFIER_WEIGHTS} ({err})") from err
    return model.eval(), cfg
