"""Train one generator from a config (a YAML preset plus ``--set`` overrides): what ``synthaug train`` runs, and
the gallery and edits benchmarks with it."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .bench.grid_config import BenchConfig, DataConfig, GeneratorConfig
from .config import ConfigError, to_dict
from .generators.finetune import init_weights
from .options import like, validate_fields
from .tracking import accelerator_kwargs


@dataclass
class TrainConfig:
    """``synthaug train``: one generator on the training patients of one split."""

    data: DataConfig = field(default_factory=DataConfig)
    seed: int = 0
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    out_dir: str = "runs/{generator}-{data}-seed{seed}"
    log_with: list[str] | str | None = like(BenchConfig, "log_with", None)
    project_dir: str | None = None            # where they write (default: out_dir)

    def __post_init__(self) -> None:
        validate_fields(self)


#: what a ``synthaug train`` config file must give (an empty file is refused rather than run on the defaults)
REQUIRED_KEYS = ("data.name", "generator.name")


def check_train_config(cfg: TrainConfig) -> None:
    """Refuse an unknown generator (with "did you mean") or options it does not take, before any work."""
    from .generators import options_class
    from .generators.options import build_options

    try:
        build_options(options_class(cfg.generator.name), cfg.generator.options, cfg.generator.name)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"generator: {err}") from None


def check_resumable(out_dir: Path, resume: bool, *, fresh: str = "the same command without --resume") -> None:
    """Refuse ``resume`` where nothing was saved (rather than start from scratch silently); ``fresh``: the command
    that starts it instead."""
    from .state import saved_step

    if resume and saved_step(out_dir / "resume") is None and not (out_dir / "checkpoint").exists():
        raise FileNotFoundError(f"--resume: {out_dir} holds no saved training to continue (no resume/ state); to "
                                f"start it from scratch, run: {fresh}")


def train_reporting_stops(cfg: TrainConfig, out_dir: str | Path, *, resume: bool, accelerator,
                          command: tuple[str, list[str]]):
    """``train_from_config``, with Ctrl-C and a full disk turned into one line (``CommandStopped``) that says what
    is whole on disk and the command (``command``: program and arguments) that continues."""
    from .failures import (EXIT_INTERRUPTED, EXIT_RUNTIME, CommandStopped, fresh_command, is_disk_full,
                           training_stopped)

    prog, argv = command
    check_resumable(Path(out_dir), resume, fresh=fresh_command(prog, argv))
    try:
        return train_from_config(cfg, out_dir, resume=resume, accelerator=accelerator)
    except KeyboardInterrupt:
        raise CommandStopped(training_stopped("interrupted (Ctrl-C)", out_dir=out_dir, prog=prog, argv=argv),
                             code=EXIT_INTERRUPTED) from None
    except Exception as err:
        if not is_disk_full(err):
            raise
        detail = (str(err).strip().splitlines() or [""])[-1]
        raise CommandStopped(training_stopped(f"the disk is full ({type(err).__name__}: {detail})", out_dir=out_dir,
                                              prog=prog, argv=argv, fix="free some space"), code=EXIT_RUNTIME) from None


#: synthetic images of each early-stopping check of ``synthaug train --gate-every`` (the benchmark's
#: ``quality.cas_images`` default)
GATE_IMAGES = 2000


def train_from_config(cfg: TrainConfig, out_dir: str | Path, *, resume: bool = False, accelerator=None,
                      stop_when=None):
    """Train the generator of ``cfg`` on the training patients of its split into ``out_dir``; returns it.

    What ``synthaug train`` runs: loads the data (split by patient, ``train_fraction`` of the training
    patients), seeds the initial weights from ``cfg.seed``, records the options and the split in
    ``training_options.json`` and trains (``resume=True`` continues ``out_dir/resume``). With
    ``generator.train.gate_every`` (``--gate-every``) training stops once the quality gate (default thresholds)
    passes on CAS of the split's validation patients (``GateStopper``, ``GATE_IMAGES`` synthetic images at most);
    ``stop_when`` replaces that stopper (e.g. one that only records, as ``benchmarks/convergence.py`` uses).
    """
    import torch
    from accelerate import Accelerator

    from .generators import GeneratorTrainConfig, create_generator, train_generator
    from .utils import atomic_write_text

    out_dir = Path(out_dir)
    check_resumable(out_dir, resume)
    if not resume and ((out_dir / "checkpoint").exists() or (out_dir / "resume").exists()):
        raise FileExistsError(f"{out_dir} already holds a generator training; pass --resume to continue it, or "
                              "--out another folder")
    splits = cfg.data.load(cfg.seed)
    torch.manual_seed(cfg.seed)  # initial weights from the seed alone
    gen = create_generator(cfg.generator.name, num_classes=splits.num_classes, image_size=splits.image_size,
                           channels=splits.channels, **cfg.generator.options)
    if cfg.generator.init_from and not resume:  # a resumed fine-tune continues from its own saved weights
        init_weights(gen, cfg.generator.init_from, splits)
    accelerator = accelerator or Accelerator(**accelerator_kwargs(cfg.log_with, cfg.project_dir, default_dir=out_dir))
    if accelerator.is_main_process:
        print(f"training {cfg.generator.name} on the training {splits.group_kind} only:\n{splits.summary()}")
        out_dir.mkdir(parents=True, exist_ok=True)
        if not (out_dir / "training_options.json").exists():  # a resumed run keeps the first part's record
            atomic_write_text(out_dir / "training_options.json",
                              json.dumps({"config": to_dict(cfg), "splits": splits.info}, indent=2))
        if splits.info.get("skipped_files"):
            atomic_write_text(out_dir / "skipped_files.txt", "\n".join(splits.info["skipped_files"]) + "\n")
    train_cfg = GeneratorTrainConfig(**{**to_dict(cfg.generator.train), "seed": cfg.seed})
    if train_cfg.gate_every and stop_when is None:
        from .quality import GateStopper

        # the validation patients of this split decide; the real-trained reference is kept beside the run
        stop_when = GateStopper(splits, n=min(GATE_IMAGES, len(splits.train)), seed=cfg.seed,
                                cache_dir=out_dir / "gate-cas-real")
    return train_generator(gen, splits.train, config=train_cfg, out_dir=out_dir, accelerator=accelerator,
                           resume=resume, dataset_name=cfg.data.name, stop_when=stop_when)
