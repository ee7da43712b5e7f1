"""Train and evaluate timm classifiers on uint8 image data sets (Accelerate: CPU, GPU or many)."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from .augment import AUGMENTATIONS, BatchAugment, StandardAugment, create_augment  # noqa: F401  (importable here)
from .checks import check_choice, check_int, did_you_mean
from .mix.additive import IndexStream, permutation_seed
from .processes import LocalAccelerator, default_accelerator, single_process  # noqa: F401  (still importable here)

METRICS = ("accuracy", "balanced_accuracy", "auroc", "f1", "sensitivity", "specificity")
BN_MODES = ("recompute", "keep")  # BatchNorm statistics after training: from real images, or as trained


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 images to floats centred on 0 (the same for every arm), channels-last (faster convolutions)."""
    return images.float().div(255).sub(0.5).div(0.25).contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def batched_logits(model: torch.nn.Module, images: torch.Tensor, *, batch_size: int,
                   device: torch.device | str) -> list[torch.Tensor]:
    """``model``'s float32 CPU outputs for uint8 ``images`` ``(N, C, H, W)`` (``normalize``d), ``batch_size`` at
    a time, in eval mode (its mode is restored afterwards): one tensor per batch, none for no image."""
    was_training = model.training
    model.eval()
    try:
        return [model(normalize(images[i:i + batch_size].to(device))).float().cpu()
                for i in range(0, len(images), batch_size)]
    finally:
        model.train(was_training)


def create_classifier(model: str, *, num_classes: int, channels: int) -> torch.nn.Module:
    import timm

    if model not in timm.list_models():
        raise ValueError(f"unknown timm model {model!r}{did_you_mean(model, timm.list_models())}")
    net = timm.create_model(model, pretrained=False, num_classes=num_classes, in_chans=channels)
    return net.to(memory_format=torch.channels_last)


class GlobalBatchSampler:
    """This process's share of each global batch, for ``steps`` steps.

    The global batches are consecutive ``batch_size`` slices of a stream of seeded permutations of the
    data set (one per pass, ``IndexStream``), so every step sees ``batch_size`` items even when the data set
    is smaller, and the items of a step are the same whatever the number of processes: process ``rank`` of
    ``world`` takes its contiguous ``batch_size / world`` slice.

    Additive mixing: with ``extra_per_batch`` > 0, each batch also gets that many items of an extra data set
    of ``extra`` items, drawn from a second, independent stream of the same seed and indexed after the
    ``n`` items (as in ``ConcatDataset([data, extra])``). The first items of every batch are exactly those
    of a sampler without extras, so the real draws of an additive arm are the baseline's.
    """

    def __init__(self, n: int, batch_size: int, *, steps: int, seed: int, rank: int = 0, world: int = 1,
                 extra: int = 0, extra_per_batch: int = 0) -> None:
        if n < 1:
            raise ValueError("cannot sample batches from an empty data set")
        if batch_size % world:
            raise ValueError(f"batch_size={batch_size} must be divisible by the number of processes ({world}): each "
                             "process takes an equal share of every batch")
        if extra_per_batch % world:
            raise ValueError(f"{extra_per_batch} extra items per batch must be divisible by the number of processes "
                             f"({world}): each process takes an equal share of them; choose another ratio or batch size")
        if extra_per_batch and extra < 1:
            raise ValueError("extra items per batch need a non-empty extra data set")
        self.n, self.batch_size, self.steps, self.seed, self.rank, self.world = n, batch_size, steps, seed, rank, world
        self.extra, self.extra_per_batch = extra, extra_per_batch
        self.per_process, self.extra_per_process = batch_size // world, extra_per_batch // world

    def __iter__(self):
        real = IndexStream(self.n, seed=self.seed)
        extra = IndexStream(self.extra, seed=self.seed, stream=1) if self.extra_per_batch else None
        lo, hi = self.rank * self.per_process, (self.rank + 1) * self.per_process
        elo, ehi = self.rank * self.extra_per_process, (self.rank + 1) * self.extra_per_process
        for _ in range(self.steps):
            batch = real.take(self.batch_size)[lo:hi]
            if extra is not None:
                batch = torch.cat([batch, extra.take(self.extra_per_batch)[elo:ehi] + self.n])
            yield batch.tolist()

    def __len__(self) -> int:
        return self.steps


_BN_STREAM = 3  # the IndexStream of the images BatchNorm statistics are recomputed on


@torch.no_grad()
def recompute_bn(model: torch.nn.Module, real: Dataset, *, batches: int, batch_size: int, seed: int,
                 device: Any = "cpu") -> int:
    """Set the running mean and variance of every BatchNorm layer to their average over ``batches`` batches
    of ``real`` images (unaugmented; a seeded draw without repeats; all images when there are fewer).

    Why: a BatchNorm layer normalises test images with running statistics accumulated during training, so
    images that only trained the model (synthetic ones) would shape how real test images are normalised.
    Like ``torch.optim.swa_utils.update_bn``, but deterministic for a seed and weighted by batch size.
    Returns the number of images used (0 when the model has no BatchNorm with running statistics).
    """
    layers = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
              and m.track_running_stats]
    if not layers or len(real) == 0:
        return 0
    order = IndexStream(len(real), seed=seed, stream=_BN_STREAM).take(min(len(real), batches * batch_size))
    momenta, was_training = [m.momentum for m in layers], model.training
    model.train()  # BatchNorm updates its running statistics in training mode only
    seen = 0
    try:
        for images, _ in DataLoader(Subset(real, order.tolist()), batch_size=batch_size, shuffle=False):
            for m in layers:  # running = seen/(seen+b) * running + b/(seen+b) * batch: the mean over all images
                m.momentum = len(images) / (seen + len(images))
            model(normalize(images.to(device)))
            seen += len(images)
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        model.train(was_training)
    return seen


@dataclass
class Fit:
    """What ``fit_classifier`` did."""

    model: torch.nn.Module      # the weights of the best validation step (the last without validation)
    steps: int                  # optimizer steps run
    best_step: int              # the step whose weights ``model`` holds
    curve: list[list[float]]    # [step, validation score] at every evaluation
    draws: int                  # items of the data set drawn, over all processes
    extra_draws: int            # items of the extra data set drawn (additive mixing)
    bn_images: int              # real images the returned BatchNorm statistics come from (0: kept from training)


class _BestWeights:
    """Validation every ``every`` steps and at the last step; the weights of the best score, in memory."""

    def __init__(self, validate: Callable[[torch.nn.Module], float] | None, every: int | None, steps: int,
                 prepare: Callable[[torch.nn.Module], int]) -> None:
        self.validate, self.every, self.steps, self.prepare = validate, every, steps, prepare
        self.curve: list[list[float]] = []
        self.best_step, self.best_score, self.bn_images = steps, -math.inf, 0
        self.best_state: dict[str, torch.Tensor] | None = None

    def due(self, step: int) -> bool:
        return self.validate is not None and (step == self.steps or bool(self.every and step % self.every == 0))

    def evaluate(self, net: torch.nn.Module, step: int) -> float:
        images = self.prepare(net)  # the statistics the score is measured with are the ones kept
        score = float(self.validate(net))
        net.train()
        self.curve.append([step, score])
        key = -math.inf if math.isnan(score) else score
        if self.best_state is None or key > self.best_score:  # ties keep the earlier step
            self.best_score, self.best_step, self.bn_images = key, step, images
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}
        return score

    def finish(self, net: torch.nn.Module) -> None:
        if self.best_state is None:
            self.bn_images = self.prepare(net)
        else:
            net.load_state_dict(self.best_state)


def _schedule(steps: int, warmup_fraction: float) -> Callable[[int], float]:
    """Linear warm-up over ``warmup_fraction`` of the steps, then cosine to 0."""
    warmup = max(1, int(steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    return factor


def _augment(augment: BatchAugment | None, images: torch.Tensor, sampler: GlobalBatchSampler, *, seed: int,
             step: int) -> torch.Tensor:
    """Augment the items of the data set with the draws of ``(seed, step)`` for the global batch, and the extra
    items with draws of their own stream: the data set's items get the same augmentation with or without extras."""
    if augment is None:
        return images
    g = torch.Generator().manual_seed(permutation_seed(seed, step))
    k = sampler.per_process
    out = augment.batch(images[:k], generator=g, offset=sampler.rank * k, total=sampler.batch_size)
    if len(images) == k:
        return out
    g_extra = torch.Generator().manual_seed(permutation_seed(seed, step, stream=1))
    more = augment.batch(images[k:], generator=g_extra, offset=sampler.rank * sampler.extra_per_process,
                         total=sampler.extra_per_batch)
    return torch.cat([out, more])


def _loader(dataset: Dataset, extra: Dataset | None, extra_per_batch: int, *, batch_size: int, steps: int, seed: int,
            num_workers: int, accelerator: Any) -> tuple[GlobalBatchSampler, DataLoader]:
    """This process's batches: items of ``dataset``, then (additive mixing) items of ``extra``."""
    sampler = GlobalBatchSampler(len(dataset), batch_size, steps=steps, seed=seed, rank=accelerator.process_index,
                                 world=accelerator.num_processes, extra=0 if extra is None else len(extra),
                                 extra_per_batch=extra_per_batch if extra is not None else 0)
    data = dataset if extra is None else ConcatDataset([dataset, extra])
    return sampler, DataLoader(data, batch_sampler=sampler, num_workers=num_workers)


def batch_loss(loss_fn: torch.nn.Module, logits: torch.Tensor, labels: torch.Tensor, weights: list) -> torch.Tensor:
    """Cross-entropy of a batch; items ``(image, target, weight)`` (``synthaug.strategy.TargetItems``:
    class probabilities and a float per-item weight) give ``mean(weight * cross_entropy)`` over the batch."""
    if not weights:
        return loss_fn(logits, labels)
    if len(weights) > 1 or not weights[0].is_floating_point():
        raise ValueError(f"fit_classifier: items of {2 + len(weights)} elements whose third is "
                         f"{weights[0].dtype}: give (image, label) items, or (image, class probabilities, float "
                         "loss weight) items. For SyntheticDataset(..., return_is_synthetic=True) items, whose third "
                         "element says which are synthetic, write your own loop with "
                         "synthaug.mix.weighted_cross_entropy (docs/plugin.md example 7)")
    per_item = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    return (weights[0].to(per_item) * per_item).mean()


def fit_classifier(
    model: torch.nn.Module, dataset: Dataset, *, steps: int, batch_size: int, lr: float, weight_decay: float = 0.05,
    warmup_fraction: float = 0.05, seed: int = 0, num_workers: int = 0, accelerator: Any = None,
    augment: BatchAugment | str | None = None, extra: Dataset | None = None, extra_per_batch: int = 0,
    validate: Callable[[torch.nn.Module], float] | None = None, eval_every: int | None = None, bn: str = "keep",
    bn_data: Dataset | None = None, bn_batches: int = 16, desc: str = "classifier",
) -> Fit:
    """Train for exactly ``steps`` optimizer steps (AdamW, linear warm-up then cosine); keep the best weights.

    Each step draws ``batch_size`` items of ``dataset`` (the global batch, split equally between processes by
    ``GlobalBatchSampler``) plus, with ``extra``, ``extra_per_batch`` items of ``extra`` (additive mixing: the
    items of ``dataset``, their order and augmentation are those of the same call without ``extra``).
    ``augment`` (an augmenter, a preset name or a pipeline file) is drawn per batch from ``(seed, step)``.
    ``validate(model) -> score`` (higher is better) runs every ``eval_every`` steps and at the last; the best
    weights are returned (ties: the earlier step), else the last. ``bn="recompute"``: BatchNorm statistics from
    ``bn_batches`` unaugmented batches of ``bn_data`` (default ``dataset``) before every validation and on the
    returned weights. Items are ``(image, label)`` or ``(image, class probabilities, float weight)``: the loss is
    then the batch mean of ``weight * cross_entropy`` (``batch_loss``).
    """
    accelerator = accelerator or default_accelerator()
    augment = create_augment(augment) if isinstance(augment, str) else augment
    _check_fit(dataset, bn, eval_every)
    sampler, loader = _loader(dataset, extra, extra_per_batch, batch_size=batch_size, steps=steps, seed=seed,
                              num_workers=num_workers, accelerator=accelerator)
    model, optimizer, scheduler = _optimizer(model, accelerator, lr=lr, weight_decay=weight_decay, steps=steps,
                                             warmup_fraction=warmup_fraction)
    best = _BestWeights(validate, eval_every, steps,
                        _bn_preparer(bn, dataset if bn_data is None else bn_data, batches=bn_batches,
                                     batch_size=batch_size, seed=seed, device=accelerator.device))
    model.train()
    train_step = _TrainStep(model, optimizer, scheduler, accelerator, augment, sampler, seed=seed, desc=desc, lr=lr)
    bar = tqdm(loader, total=steps, desc=desc, disable=not accelerator.is_main_process or None, mininterval=1.0,
               dynamic_ncols=True, leave=False)
    for step, (images, labels, *weights) in enumerate(bar):
        value = train_step(step, images, labels, weights)
        if best.due(step + 1):
            bar.set_postfix(loss=f"{value:.3f}", val=f"{best.evaluate(accelerator.unwrap_model(model), step + 1):.3f}")
        elif step % 20 == 0:
            bar.set_postfix(loss=f"{value:.3f}")
    net = accelerator.unwrap_model(model)
    best.finish(net)
    return Fit(model=net, steps=steps, best_step=best.best_step, curve=best.curve, draws=steps * batch_size,
               extra_draws=steps * sampler.extra_per_batch, bn_images=best.bn_images)


def _check_fit(dataset: Dataset, bn: str, eval_every: int | None) -> None:
    check_choice(bn, "bn", "fit_classifier", BN_MODES)
    if len(dataset) == 0:
        raise ValueError("cannot train a classifier on an empty data set")
    if eval_every is not None:
        check_int(eval_every, "eval_every", "fit_classifier", minimum=1, hint="or None: validate at the last step only")


def _optimizer(model: torch.nn.Module, accelerator: Any, *, lr: float, weight_decay: float, steps: int,
               warmup_fraction: float) -> tuple[torch.nn.Module, Any, Any]:
    """AdamW, prepared with the model by ``accelerator``, and its learning-rate schedule."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    # stepped by hand, once per optimizer step: a scheduler given to accelerator.prepare() steps once per
    # process, so the schedule would depend on the number of processes
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer,
                                                  _schedule(steps, warmup_fraction))
    return model, optimizer, scheduler


def _bn_preparer(bn: str, source: Dataset, *, batches: int, batch_size: int, seed: int,
                 device: Any) -> Callable[[torch.nn.Module], int]:
    """What runs before each validation: BatchNorm statistics recomputed from ``source`` (``"recompute"``) or
    nothing (``"keep"``); returns the number of images it read."""
    def prepare(net: torch.nn.Module) -> int:
        if bn == "keep":
            return 0
        return recompute_bn(net, source, batches=batches, batch_size=batch_size, seed=seed, device=device)

    return prepare


class _TrainStep:
    """One optimizer step of ``fit_classifier``: augment, loss, a finite-loss check, backward, AdamW, schedule."""

    def __init__(self, model: torch.nn.Module, optimizer: Any, scheduler: Any, accelerator: Any,
                 augment: BatchAugment | None, sampler: GlobalBatchSampler, *, seed: int, desc: str, lr: float):
        self.model, self.optimizer, self.scheduler, self.accelerator = model, optimizer, scheduler, accelerator
        self.augment, self.sampler, self.seed, self.desc, self.lr = augment, sampler, seed, desc, lr
        self.loss_fn = torch.nn.CrossEntropyLoss()

    def __call__(self, step: int, images: torch.Tensor, labels: torch.Tensor, weights: list) -> float:
        images, labels = images.to(self.accelerator.device), labels.to(self.accelerator.device)
        images = _augment(self.augment, images, self.sampler, seed=self.seed, step=step)
        loss = batch_loss(self.loss_fn, self.model(normalize(images)), labels, weights)
        value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(f"{self.desc}: classifier loss is {value} at step {step + 1}; lower lr={self.lr}")
        self.optimizer.zero_grad(set_to_none=True)
        self.accelerator.backward(loss)
        self.optimizer.step()
        self.scheduler.step()
        return value


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
    augment: BatchAugment | str | None = None,
    desc: str = "classifier",
) -> torch.nn.Module:
    """Train for exactly ``steps`` optimizer steps of ``batch_size`` items and return the last weights, with
    the BatchNorm statistics of training (``fit_classifier`` without validation, extras or recomputation)."""
    return fit_classifier(model, dataset, steps=steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                          warmup_fraction=warmup_fraction, seed=seed, num_workers=num_workers,
                          accelerator=accelerator, augment=augment, desc=desc).model


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


def operating_point(val_probs: torch.Tensor, val_targets: torch.Tensor, test_probs: torch.Tensor,
                    test_targets: torch.Tensor, *, positive: int, specificity: float) -> dict[str, float]:
    """The clinical operating point fixed on validation: the threshold ``t`` on the positive class's probability
    at which the validation negatives' specificity (scores ``<= t`` called negative) is at least ``specificity``
    (the ``specificity`` quantile of their scores, rounded up to a score), and test sensitivity and specificity at
    ``t``. Test patients never move the threshold."""
    val_scores, test_scores = val_probs[:, positive].double(), test_probs[:, positive].double()
    val_pos, test_pos = val_targets.long() == positive, test_targets.long() == positive
    negatives = val_scores[~val_pos]
    if len(negatives) == 0 or not test_pos.any() or test_pos.all():
        raise ValueError("operating_point: validation needs negatives and test both classes")
    t = float(torch.quantile(negatives, specificity, interpolation="higher"))
    return {"target_specificity": float(specificity), "threshold": t,
            "val_specificity": float((negatives <= t).double().mean()),
            "val_sensitivity": float((val_scores[val_pos] > t).double().mean()) if val_pos.any() else float("nan"),
            "test_sensitivity": float((test_scores[test_pos] > t).double().mean()),
            "test_specificity": float((test_scores[~test_pos] <= t).double().mean())}


CLASSIFIER_CONFIG = "classifier.json"
CLASSIFIER_WEIGHTS = "model.safetensors"


def save_classifier(model: torch.nn.Module, directory, *, model_name: str, num_classes: int, channels: int,
                    image_size: int, classes: list[str] | None = None) -> None:
    """A classifier checkpoint: safetensors weights + JSON (timm name, classes, input format); no pickle."""
    import json
    from pathlib import Path

    from safetensors.torch import save

    from ._version import __version__
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
