"""One training loop for every generator, on Accelerate (one CPU, one GPU, or many): ``train_generator``.

Under several processes, ``parallel="data"`` splits every batch across them and averages gradients (each
process draws its own random numbers: the result matches a single process statistically);
``parallel="replicate"`` has every process train the whole model on whole batches, exactly as one process would
(no speed-up, results identical to a single-process run). Randomness is re-seeded from ``(seed, step, rank)`` at
every step.

Early stopping (``config.gate_every = N > 0``): ``stop_when(gen, step)`` (e.g. ``synthaug.quality.GateStopper``)
is called every N steps before the last, in eval mode on the main process, without touching the training's
random state; the first decision record (a dict) whose ``passed`` is true ends training at that step (the
checkpoint and resume state are saved there; resuming returns at once). The training record then gains
``gate_every``, ``stopped_early_at`` (None: the whole budget) and ``gate_checks``; ``log.jsonl`` gets a
``{"step", "gate"}`` row per check.
"""
from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from ..checks import check_choice
from ..options import option, validate_fields
from ..state import load_state, save_state
from ..tracking import GeneratorTracking
from ..utils import append_jsonl, atomic_write_text, read_jsonl
from ..viz import save_grid
from .base import Generator
from .early_stop import StopWhen, check_gate, check_stop_when
from .optimizer_step import NonFiniteLossError, OptimizerStep, kept_note, precision_state
from .precision import Precision, check_precision, resolve_precision


OWNER = "generator training"


@dataclass
class GeneratorTrainConfig:
    steps: int = option(2000, "optimizer steps", minimum=1)
    batch_size: int = option(64, "images per batch", minimum=1)
    lr: float = option(1e-3, "learning rate", minimum=0, min_inclusive=False)
    num_workers: int = option(0, "DataLoader workers", minimum=0, hint="0 turns it off")
    seed: int = 0
    log_every: int = option(50, "steps between two log lines", minimum=0, hint="0 turns it off")
    checkpoint_every: int = option(500, "steps between two checkpoints", minimum=0, hint="0 turns it off")
    sample_every: int = option(500, "steps between two sample grids", minimum=0, hint="0 turns it off")
    samples_per_class: int = option(8, "images per class in a sample grid", minimum=1)
    #: call ``train_generator``'s ``stop_when`` every so many steps (e.g. a ``GateStopper``: stop once the quality
    #: gate passes on the validation patients); 0 turns it off
    gate_every: int = option(0, "steps between two checks of stop_when (early stopping)", minimum=0,
                             hint="steps between two checks of stop_when, e.g. 500; 0 turns early stopping off")
    #: ``no`` (float32), ``bf16`` or ``fp16`` autocast for the forward passes (weights stay float32), or ``auto``
    #: (bf16 where it is faster: AMX-BF16 CPUs, bf16 GPUs; float32 elsewhere); None: the Accelerator's
    #: (``accelerate launch --mixed_precision ...``), float32 without one
    mixed_precision: str | None = option(None, "autocast of the forward passes: no, bf16, fp16 or auto (null: the "
                                         "Accelerator's)", check=lambda value, name, owner: check_precision(
                                             value, f"{owner}: {name}", allow_auto=True))

    def __post_init__(self) -> None:
        validate_fields(self, OWNER)


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of one epoch in a seeded order (a permutation per ``(seed, epoch)``), split across processes.

    The order depends only on the seed and the epoch, so training resumed at any step sees exactly
    the batches an uninterrupted run would (``start_batch`` skips the ones already used). Each global
    batch of ``batch_size`` items is split into equal contiguous slices, one per process, so a step
    uses the same items whatever the number of processes.
    """

    def __init__(self, n: int, batch_size: int, *, seed: int, epoch: int = 0, start_batch: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        if batch_size % world_size:
            raise ValueError(f"generator training: batch_size={batch_size} must be divisible by the number of "
                             f"processes ({world_size})")
        self.n, self.seed = n, seed
        self.epoch, self.start_batch, self.rank, self.world_size = epoch, start_batch, rank, world_size
        self.batch_size = max(world_size, min(batch_size, n) // world_size * world_size)  # the global batch
        self.per_process = self.batch_size // world_size

    def batches_per_epoch(self) -> int:
        return max(1, self.n // self.batch_size)

    def __iter__(self):
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch))
        order = order.tolist()
        for b in range(self.start_batch, self.batches_per_epoch()):
            start = b * self.batch_size + self.rank * self.per_process
            yield order[start:start + self.per_process]

    def __len__(self) -> int:
        return self.batches_per_epoch() - self.start_batch


def _batches(dataset: Dataset, config: "GeneratorTrainConfig", first_step: int, rank: int, world: int):
    """Yield batches for steps ``first_step + 1, first_step + 2, ...`` (deterministic, resumable)."""
    probe = EpochBatchSampler(len(dataset), config.batch_size, seed=config.seed, rank=rank, world_size=world)
    per_epoch = probe.batches_per_epoch()
    epoch, start = divmod(first_step, per_epoch)
    while True:
        sampler = EpochBatchSampler(len(dataset), config.batch_size, seed=config.seed, epoch=epoch, start_batch=start,
                                    rank=rank, world_size=world)
        # an explicit generator: creating a loader must not draw from the global RNG (resume would diverge)
        loader = DataLoader(dataset, batch_sampler=sampler, num_workers=config.num_workers,
                            generator=torch.Generator().manual_seed(config.seed + epoch))
        yield from loader
        epoch, start = epoch + 1, 0


def _grid_labels(gen: Generator, per_class: int) -> torch.Tensor:
    return torch.arange(gen.num_classes).repeat_interleave(per_class)


def save_sample_grid(gen: Generator, path: Path, *, per_class: int = 8, seed: int = 0,
                     precision: str | None = None) -> Path:
    """A grid with one row per class, from a fixed noise seed (comparable across checkpoints); ``precision``:
    sample in it this once (training draws its grids in the training's precision)."""
    labels = _grid_labels(gen, per_class)
    saved = gen.mixed_precision
    gen.mixed_precision = precision or saved
    try:
        images = gen.sample(len(labels), labels, generator=torch.Generator().manual_seed(seed))
    finally:
        gen.mixed_precision = saved
    return save_grid(images, path, nrow=per_class, labels=labels, class_names=gen.class_names)


def _check_fresh_or_resume(out: Path | None, resume: bool) -> dict[str, Any] | None:
    if out is None:
        if resume:
            raise ValueError("resume=True needs out_dir (where the training state is kept)")
        return None
    state = load_state(out / "resume") if resume else None
    if resume and state is None and (out / "checkpoint").exists():
        raise FileExistsError(f"{out} has a checkpoint but no resume/ state to continue from; choose another output "
                              "folder, or delete this one to start over")
    if not resume and ((out / "resume").exists() or (out / "checkpoint").exists()):
        raise FileExistsError(f"{out} already holds a generator training (checkpoint/ or resume/); pass resume=True "
                              "(`synthaug train --resume`) to continue it, or choose another output folder")
    return state


@dataclass
class _Run:
    """What every step of one ``train_generator`` call needs besides the model and its optimizers."""

    config: GeneratorTrainConfig
    accelerator: Any
    out: Path | None
    fingerprint: dict[str, Any]
    rank: int
    world: int
    #: the parts of the training record that do not change during the run (see ``_record_base``)
    record: dict[str, Any]
    #: autocast and (fp16) the gradient scaler
    precision: Precision = field(default_factory=Precision)
    #: training seconds of the runs this one resumes, and when this one started (``time.perf_counter``)
    seconds_before: float = 0.0
    started: float = 0.0
    #: with ``config.gate_every``: every check of ``stop_when`` so far, and the step whose check passed
    gate_checks: list[dict[str, Any]] = field(default_factory=list)
    stopped_early_at: int | None = None
    tracking: GeneratorTracking | None = None  # the accelerator's trackers (log_with) and the loss-curve plot

    def training_record(self, step: int) -> dict[str, Any]:
        """What the checkpoint of ``step`` records about its training (with ``gate_every``, also its checks)."""
        seconds = self.seconds_before + time.perf_counter() - self.started
        return {**self.record, "steps": step, "seconds": round(seconds, 3), **self.gate_state()}

    def gate_state(self) -> dict[str, Any]:
        """The checks of ``stop_when``, for the training record and the resume state; nothing without
        ``gate_every`` (both then stay exactly what they were before early stopping existed)."""
        if not self.config.gate_every:
            return {}
        return {"gate_every": self.config.gate_every, "stopped_early_at": self.stopped_early_at,
                "gate_checks": [dict(c) for c in self.gate_checks]}

    @property
    def last_step(self) -> int:
        """The step training ends at: the budget, or the step whose check passed."""
        return self.config.steps if self.stopped_early_at is None else self.stopped_early_at

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def writes(self) -> bool:
        """Whether this process writes the run's files (the main one, when there is an output folder)."""
        return self.out is not None and self.main


def train_generator(
    gen: Generator, dataset: Dataset, *, config: GeneratorTrainConfig | None = None,
    out_dir: str | os.PathLike | None = None, accelerator: Any = None, desc: str | None = None, resume: bool = False,
    parallel: str = "data", dataset_name: str | None = None, stop_when: StopWhen | None = None,
) -> Generator:
    """Train ``gen`` on ``dataset`` (items ``(uint8 image, label)``) for ``config.steps`` optimizer steps.

    Writes into ``out_dir`` (when given): ``log.jsonl`` (the loss dict every ``log_every`` steps),
    ``checkpoint/`` (the generator, every ``checkpoint_every`` steps and at the end), ``resume/`` (the
    full training state at the same steps: weights, optimizer, RNG), ``samples_<step>.png`` and
    ``samples.png``. With ``resume=True`` training continues from ``resume/`` and ends with the same
    weights, bit for bit on CPU, as an uninterrupted run. A NaN / inf loss or gradient stops training with
    ``NonFiniteLossError``; the files on disk stay those of the last good checkpoint. ``parallel`` (several
    processes) and ``stop_when`` (early stopping): the module's docstring.

    The model takes its ``class_names`` from the data set (``dataset.classes``, as torchvision's and
    synthaug's data sets have, also through a ``Subset``) and gets a ``training_record``: ``dataset_name``
    (default: ``dataset.name`` when there is one), the items, groups (patients) and fingerprint of the
    data, the image geometry, steps, seconds and the synthaug version. Both are saved with the weights.
    """
    from accelerate import Accelerator

    check_choice(parallel, "parallel", "train_generator", ("data", "replicate"))
    config = config or GeneratorTrainConfig()
    check_stop_when(stop_when, config.gate_every)
    accelerator = accelerator or Accelerator()
    if len(dataset) == 0:
        raise ValueError("cannot train a generator on an empty data set")
    out = Path(out_dir) if out_dir is not None else None
    state = _check_fresh_or_resume(out, resume)
    _adopt_class_names(gen, dataset)
    torch.manual_seed(config.seed)
    gen.to(accelerator.device)
    optimizers = _make_optimizers(gen, config.lr)
    run = _make_run(gen, dataset, config, accelerator, out, state, parallel=parallel, dataset_name=dataset_name)
    first_step = 0 if state is None else _restore(gen, optimizers, state, run)
    if run.world > 1:  # every process starts from rank 0's weights; gradients are averaged in step()
        _broadcast_weights(gen)
    if run.writes:
        out.mkdir(parents=True, exist_ok=True)
    run.tracking = GeneratorTracking(accelerator, desc or (out.name if out else gen.generator_name), asdict(config))

    gen.train()
    _train_steps(gen, dataset, optimizers, first_step, run, desc=desc or f"train {gen.generator_name}",
                 stop_when=stop_when)
    gen.eval()
    gen.training_record = run.training_record(run.last_step)
    if run.writes:
        save_sample_grid(gen, out / "samples.png", per_class=config.samples_per_class,
                         precision=run.precision.precision)
    run.tracking.finish(out, writes=run.writes)
    accelerator.wait_for_everyone()
    return gen


def _make_run(gen: Generator, dataset: Dataset, config: GeneratorTrainConfig, accelerator: Any, out: Path | None,
              state: dict[str, Any] | None, *, parallel: str, dataset_name: str | None) -> _Run:
    """The run state of one ``train_generator`` call: processes, precision, the record's fixed part, seconds."""
    split = parallel == "data"  # "replicate": every process trains alone, as rank 0 of a world of one
    fingerprint = data_fingerprint(dataset)
    precision = Precision(resolve_precision(config.mixed_precision, accelerator), accelerator.device)
    return _Run(config, accelerator, out, fingerprint, rank=accelerator.process_index if split else 0,
                world=accelerator.num_processes if split else 1,
                record=_record_base(gen, dataset, dataset_name, fingerprint, config, precision.precision),
                precision=precision,
                seconds_before=float(state.get("seconds", 0.0)) if state is not None else 0.0,
                started=time.perf_counter())


def _train_steps(gen: Generator, dataset: Dataset, optimizers: list[torch.optim.Optimizer], first_step: int,
                 run: _Run, *, desc: str, stop_when: StopWhen | None) -> None:
    """Steps ``first_step + 1`` to the end of training: the step, its log row, the check of ``stop_when`` when
    due, the checkpoint when due (or when the check passed, which ends training)."""
    config, out = run.config, run.out
    batches = _batches(dataset, config, first_step, run.rank, run.world)
    per_epoch = EpochBatchSampler(len(dataset), config.batch_size, seed=config.seed, rank=run.rank,
                                  world_size=run.world).batches_per_epoch()
    # a run resumed after its early stop has nothing left to train: the range is empty
    bar = tqdm(range(first_step + 1, run.last_step + 1), desc=desc, disable=not run.main or None, mininterval=1.0,
               dynamic_ncols=True, initial=first_step, total=config.steps)
    for step in bar:
        values = _train_step(gen, next(batches), optimizers, step, per_epoch, run)
        if step % max(1, config.log_every) == 0 or step == config.steps:
            bar.set_postfix({k: f"{v:.3g}" for k, v in values.items()})
            if run.writes and config.log_every:
                append_jsonl(out / "log.jsonl", {"step": step, **values})
            run.tracking.losses(values, step)
        due = stop_when is not None and step % config.gate_every == 0 and step < config.steps
        stop = due and check_gate(gen, step, stop_when, run)
        if run.writes:
            _save_progress(gen, optimizers, step, run, force=stop)
        if stop:
            break
    bar.close()


def _make_optimizers(gen: Generator, lr: float) -> list[torch.optim.Optimizer]:
    """The model's optimizers, each group remembering its initial learning rate (``lr_scale`` scales it)."""
    optimizers = gen.configure_optimizers(lr)
    if not optimizers:
        raise ValueError(f"{gen.generator_name}: configure_optimizers() returned no optimizer")
    for opt in optimizers:
        for group in opt.param_groups:
            group.setdefault("initial_lr", group["lr"])
    return optimizers


def _restore(gen: Generator, optimizers: list[torch.optim.Optimizer], state: dict[str, Any], run: _Run) -> int:
    """Load a saved training state (after checking it belongs to this config, data and model); its step."""
    out = run.out
    saved_config = state.get("config")
    if isinstance(saved_config, dict):  # states saved before early stopping / mixed precision trained without
        saved_config = {"gate_every": 0, "mixed_precision": None, **saved_config}
    saved = {"config": saved_config, "data": state.get("data"), "generator": state.get("generator"),
             "precision": state.get("precision", {}).get("precision", "no")}
    now = {"config": asdict(run.config), "data": run.fingerprint, "generator": dict(gen.generator_options),
           "precision": run.precision.precision}
    now = json.loads(json.dumps(now))  # tuples -> lists
    saved = json.loads(json.dumps(saved))  # the state may keep tuples as tuples
    for options in (now["generator"], saved["generator"] or {}):  # how it samples does not change its training
        for key in gen.sampling_settings:
            options.pop(key, None)
    if saved != now:
        diff = sorted(k for k in now if saved.get(k) != now[k])
        raise ValueError(f"{out / 'resume'} was saved by a training with another {' and '.join(diff)} "
                         f"(saved {[saved[k] for k in diff]}, now {[now[k] for k in diff]}); use the same config "
                         "and data to resume, or another output folder to start over")
    saved_opts = state.get("optimizers")
    if not isinstance(saved_opts, list) or len(saved_opts) != len(optimizers):
        raise ValueError(f"{out / 'resume'} does not hold {len(optimizers)} optimizer state(s) for "
                         f"{gen.generator_name}; it was written by another version. Start over in another folder.")
    gen.load_state_dict(state["model"])
    for opt, opt_state in zip(optimizers, saved_opts):
        opt.load_state_dict(opt_state)
    torch.set_rng_state(state["torch_rng"])
    run.precision.load_state_dict(state.get("precision") or {})
    first_step = int(state["step"])
    run.gate_checks = list(state.get("gate_checks") or [])
    run.stopped_early_at = state.get("stopped_early_at")
    if run.writes:
        _truncate_log(out / "log.jsonl", first_step)
    return first_step


def _broadcast_weights(gen: Generator) -> None:
    import torch.distributed as dist

    for tensor in list(gen.parameters()) + list(gen.buffers()):
        dist.broadcast(tensor.data, src=0)


def _train_step(gen: Generator, batch: Any, optimizers: list[torch.optim.Optimizer], step: int, per_epoch: int,
                run: _Run) -> dict[str, float]:
    """One ``training_step`` at ``step`` (1-based): learning rates, the step's seed; the losses as floats."""
    images, labels = batch
    device, config = run.accelerator.device, run.config
    images = images.to(device).float().div_(255)
    scale = float(gen.lr_scale((step - 1) // per_epoch))
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["initial_lr"] * scale
    # the step's random numbers (noise, dropout, augmentation) from (seed, step, rank): resumable, and
    # distinct across the processes that share a batch
    torch.manual_seed((config.seed * 1_000_003 + step) * 1009 + run.rank)
    stepper = OptimizerStep(gen.generator_name or type(gen).__name__, run.accelerator, step, config.lr, run.out,
                            world=run.world, precision=run.precision)
    with run.precision.autocast():
        losses = gen.training_step(images, labels.to(device).long(), optimizers, stepper)
    run.precision.update()
    values = {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for k, v in losses.items()}
    if not all(math.isfinite(v) for v in values.values()):
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        raise NonFiniteLossError(f"{gen.generator_name}: at step {step} the loss(es) {bad} are not finite"
                                 f"{kept_note(run.out)}. Try a lower learning rate (lr={config.lr}).")
    if stepper.calls == 0:
        raise RuntimeError(f"{gen.generator_name}.training_step() took no optimizer step; it must call step()")
    return values


def _save_progress(gen: Generator, optimizers: list[torch.optim.Optimizer], step: int, run: _Run, *,
                   force: bool = False) -> None:
    """The sample grid and the checkpoint (with the resume state) due at ``step`` (``force``: the checkpoint
    of an early stop, whatever ``checkpoint_every`` says)."""
    config, out = run.config, run.out
    if config.sample_every and step % config.sample_every == 0:
        run.tracking.grid(save_sample_grid(gen, out / f"samples_{step:06d}.png", per_class=config.samples_per_class,
                                        precision=run.precision.precision), step)
    if force or (config.checkpoint_every and step % config.checkpoint_every == 0) or step == config.steps:
        gen.training_record = run.training_record(step)
        # the resume state first: a kill between the two writes leaves a state to continue from
        save_state(out / "resume", {"step": step, "config": asdict(config), "data": run.fingerprint,
                                    "generator": gen.config_dict()["options"], "model": gen.state_dict(),
                                    "optimizers": [opt.state_dict() for opt in optimizers],
                                    "torch_rng": torch.get_rng_state(), "seconds": gen.training_record["seconds"],
                                    **run.gate_state(), **precision_state(run.precision)})
        gen.save(out / "checkpoint")


def data_fingerprint(dataset: Dataset) -> dict[str, Any]:
    """Size and a hash of the labels and groups (patients) of a training set: a resumed or reused
    generator must have trained on exactly these items."""
    import hashlib

    targets = getattr(dataset, "targets", None)
    groups = getattr(dataset, "groups", None)
    digest = hashlib.sha256()
    for part in (targets, groups):
        if part is not None:
            digest.update("\n".join(map(str, list(part))).encode())
    return {"items": len(dataset), "sha256": digest.hexdigest()[:16]}


def dataset_classes(dataset: Any) -> list[str] | None:
    """The class names a data set carries, or None: ``.classes`` (torchvision's and synthaug's data sets),
    MedMNIST's ``info["label"]``, looked up through ``Subset`` / ``random_split`` wrappers."""
    while dataset is not None:
        classes = getattr(dataset, "classes", None)
        if isinstance(classes, (list, tuple)):
            return [str(c) for c in classes]
        info = getattr(dataset, "info", None)
        labels = info.get("label") if isinstance(info, dict) else None
        if isinstance(labels, dict) and all(str(k).isdigit() for k in labels):
            return [str(labels[k]) for k in sorted(labels, key=int)]
        dataset = getattr(dataset, "dataset", None)  # a Subset keeps its data set's classes
    return None


def _adopt_class_names(gen: Generator, dataset: Dataset) -> None:
    """Give ``gen`` the class names of its training data (the labels it learns mean those classes)."""
    names = dataset_classes(dataset)
    if names is None:
        return
    owner = gen.generator_name or type(gen).__name__
    if len(names) != gen.num_classes:
        warnings.warn(f"{owner}: the training data name {len(names)} classes {names} but the generator has "
                      f"num_classes={gen.num_classes}; its checkpoint will not record class names", stacklevel=3)
        return
    if gen.class_names is not None and gen.class_names != names:
        warnings.warn(f"{owner}: the generator's classes {gen.class_names} are called {names} by the training data; "
                      "it takes the data's names", stacklevel=3)
    try:
        gen.class_names = names
    except ValueError as err:
        warnings.warn(f"{owner}: the training data's class names cannot be recorded ({err})", stacklevel=3)


def _record_base(gen: Generator, dataset: Dataset, name: str | None, fingerprint: dict[str, Any],
                 config: GeneratorTrainConfig, precision: str = "no") -> dict[str, Any]:
    """The training record's parts that are fixed for a run: what data, what geometry, what settings."""
    from .._version import __version__

    if name is None and isinstance(getattr(dataset, "name", None), str):
        name = dataset.name
    targets, groups = getattr(dataset, "targets", None), getattr(dataset, "groups", None)
    known = targets is not None or groups is not None
    return {"dataset": name, "items": len(dataset),
            # distinct groups (patients, or images when a data set has no groups); None when unknown
            "groups": len(set(map(str, groups))) if groups is not None else None,
            "fingerprint": fingerprint["sha256"] if known else None,
            "num_classes": gen.num_classes, "image_size": gen.image_size, "channels": gen.channels,
            "planned_steps": config.steps, "batch_size": config.batch_size, "lr": config.lr, "seed": config.seed,
            # what the seconds were measured with: the precision and the threads of this process
            "mixed_precision": precision, "threads": torch.get_num_threads(), "synthaug_version": __version__}


def _truncate_log(path: Path, step: int) -> None:
    """Drop log rows written after the step being resumed from (they will be written again)."""
    rows = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))

