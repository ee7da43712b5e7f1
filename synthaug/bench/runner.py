"""Running the grid: the run folder (resolved config, resume), the loop over cells, the closing summary.

For each data set, fraction (of the training patients) and seed: split by patient, keep that fraction of
the training patients, train the real-only baseline classifier, and for each generator train it on
exactly those training images (cached, reused by every ratio), then train the classifier on real +
``SyntheticDataset(ratio)`` for each ratio. Every arm gets the same classifier, the same number of
optimizer steps of the same batch size, the same augmentation, the same initial weights (per seed) and
is evaluated on the same validation and test patients. What one cell does is in ``cell.py``.

``--shard i/N`` spreads the grid over N invocations (machines, SLURM array tasks): each runs the cells
``shard_cells`` gives it and writes its own results, runs and config records into the same run folder
(``paths.py`` names them); the summary and the report merge them.
"""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .._version import __version__
from ..classifier import create_classifier
from ..config import ConfigError
from ..tracking import end_trackers, log_quality, log_result_row, start_trackers, tracked_config
from ..utils import append_jsonl, atomic_write_text, read_jsonl
from .analysis import analyze, without_nan
from .cell import (early_stop_fields, gate_stopper, generator_for, measure_quality_or_record, train_and_evaluate,
                   write_samples_png)
from .grid_config import BenchConfig, Cell, DataConfig, GeneratorSpec, plan
from .paths import (Shard, check_same_config, config_path, diff_keys, quality_records, read_config_records, read_results,
                    quality_dir, results_path, runs_path, samples_path, split_path, with_neutral_defaults)
from .summary import summarize


# --------------------------------------------------------------------------- run folder
def prepare_run_dir(cfg: BenchConfig, out_dir: Path, shard: Shard | None = None) -> None:
    """Create ``out_dir`` with the resolved config (``config.json``, or the shard's own config record), or
    check that every config record already there ran the same config, split into as many shards."""
    out_dir = Path(out_dir)
    resolved = tracked_config(cfg)  # without log_with / project_dir: trackers change no result
    own = config_path(out_dir, shard)
    records = read_config_records(out_dir)
    for path, record in records.items():
        if with_neutral_defaults(record["config"]) != resolved:
            diff = sorted(diff_keys(with_neutral_defaults(record["config"]), resolved))
            raise ConfigError(f"{out_dir} holds a run of a different config ({path.name} differs in {diff[:8]}); "
                              "finished results there are kept. Use another --out folder, or delete that one to "
                              "start over.")
    if records:
        # the same config, but another split of the grid (e.g. 1/2 into a folder of 3 shards) would run cells twice
        check_same_config({**records, own: {"config": resolved}}, out_dir)
    if own.is_file():
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    versions = {"synthaug": __version__, "torch": torch.__version__, "python": platform.python_version()}
    for mod in ("timm", "torchmetrics", "accelerate"):
        versions[mod] = __import__(mod).__version__
    commit = source_commit()
    if commit is not None:
        versions["git"] = commit
    record = {"config": resolved, "versions": versions}
    if shard is not None and shard.count > 1:
        record["shard"] = str(shard)
    atomic_write_text(own, json.dumps(record, indent=2))


def source_commit() -> str | None:
    """The git commit of the synthaug checkout that runs (``-dirty`` with uncommitted changes to tracked files),
    or None outside a git checkout (an installed wheel): the run record says which code made its rows."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        top = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        if Path(top).resolve() != root:  # installed inside some other repository: not ours to name
            return None
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if dirty else head or None


def commit_field() -> dict[str, str]:
    """``{"git": commit}`` for an invocation's start record (a resume may run other code than the first start)."""
    commit = source_commit()
    return {} if commit is None else {"git": commit}


def finished_cells(out_dir: Path, shard: Shard | None = None) -> set[tuple]:
    """Keys of the cells already in this invocation's results file: a rerun skips them (resume). A shard
    reads only its own file: its cells are in no other (``check_same_config`` refuses mixed splits)."""
    return {Cell.of_row(r).key() for r in read_jsonl(results_path(out_dir, shard))}


def shard_units(cells: list[Cell], cfg: BenchConfig) -> list[tuple]:
    """The units a grid is sharded by, in shard-assignment order.

    A unit is (data set, fraction, seed, generator): every cell of one trained generator (all its ratios)
    is one unit, so the generator trains once, on one shard, and its classifiers use it as one run would;
    the real-only cells (baseline, real-matched controls) of a split are the unit with generator None.
    Ordered by generator (real-only first, then the config's order), then by plan order, so round robin
    over this list gives every shard its share of each generator's (differently costly) trainings.
    """
    rank = {None: -1, **{g.key: i for i, g in enumerate(cfg.generators)}}
    units = list(dict.fromkeys((c.dataset, c.fraction, c.seed, c.generator) for c in cells))
    return sorted(units, key=lambda u: rank.get(u[3], len(rank)))  # stable: plan order within a generator


def shard_cells(cells: list[Cell], cfg: BenchConfig, shard: Shard | None) -> list[Cell]:
    """The cells of ``shard``, in plan order: unit ``k`` of ``shard_units`` goes to shard ``k mod N``. The
    same config gives the same split on every machine (no randomness, no host names)."""
    if shard is None or shard.count == 1:
        return list(cells)
    mine = {u for k, u in enumerate(shard_units(cells, cfg)) if k % shard.count == shard.index}
    return [c for c in cells if (c.dataset, c.fraction, c.seed, c.generator) in mine]


def stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t))


# --------------------------------------------------------------------------- checks before any work
def validate_models(cfg: BenchConfig) -> None:
    """Fail before any training when a generator or the classifier cannot be built from the config."""
    for d in cfg.datasets:
        splits = d.load(cfg.seeds[0], cfg.fractions[0])
        try:
            for g in cfg.generators:
                g.check(splits)  # a generator that builds, or a source that opens with the data's classes
            create_classifier(cfg.classifier.model, num_classes=splits.num_classes, channels=splits.channels)
            positive_index(cfg, d, splits.classes)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"config of {cfg.name!r}, data set {d.name}: {err}") from err
        cfg.check_processes(world_size())  # the batch and the items appended to it (additive mixing)


def world_size() -> int:
    """The number of processes ``accelerate launch`` started (before any Accelerator exists)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def positive_index(cfg: BenchConfig, data: DataConfig, classes: list[str]) -> int:
    """The class binary metrics call positive: ``positive_class`` of the config, else class 1."""
    wanted = cfg.positive_class.get(data.name) if isinstance(cfg.positive_class, dict) else cfg.positive_class
    if wanted is None:
        return 1
    if wanted not in classes:
        raise ConfigError(f"positive_class={wanted!r} is not a class of {data.name}: {classes}")
    return classes.index(wanted)


# --------------------------------------------------------------------------- the grid
@dataclass
class _Run:
    """What every cell of one invocation shares."""

    cfg: BenchConfig
    out_dir: Path
    accelerator: Any
    bar: Any
    specs: dict[str, GeneratorSpec] = field(default_factory=dict)
    shard: Shard | None = None

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process


def run_benchmark(cfg: BenchConfig, out_dir: str | Path, *, accelerator: Any = None,
                  shard: Shard | None = None) -> list[dict]:
    """Run every cell of the grid (of ``shard``, when given) not yet in its results file; return all rows
    of the run folder, every shard's.

    A killed run loses at most the cell in progress (and resumes a generator training from its last
    checkpoint); a rerun skips finished cells. Writes ``summary.md`` and ``summary.json`` at the end, of
    every shard finished so far.
    """
    from accelerate import Accelerator

    started = time.time()
    accelerator = accelerator or Accelerator()
    out_dir = Path(out_dir)
    _start(cfg, out_dir, accelerator, started, shard)
    done = finished_cells(out_dir, shard)
    cells = shard_cells(plan(cfg), cfg, shard)
    bar = tqdm(total=len(cells), initial=sum(c.key() in done for c in cells),
               desc=f"{cfg.name}: cells" + (f" of shard {shard}" if shard else ""),
               disable=not accelerator.is_main_process or None, dynamic_ncols=True)
    run = _Run(cfg, out_dir, accelerator, bar, {g.key: g for g in cfg.generators}, shard)
    trackers = start_trackers(accelerator, cfg.name + (f"-shard{shard.index}" if shard else ""), tracked_config(cfg))
    ran = 0
    for group in _by_split(cells).values():
        todo = [c for c in group if c.key() not in done]
        if todo:
            _run_split(run, todo)
            ran += len(todo)
    bar.close()
    end_trackers(accelerator, trackers)
    if accelerator.is_main_process:
        _finish(cfg, out_dir, shard, started=started, ran=ran, processes=accelerator.num_processes)
    accelerator.wait_for_everyone()
    return read_results(out_dir)


def _start(cfg: BenchConfig, out_dir: Path, accelerator: Any, started: float, shard: Shard | None) -> None:
    with accelerator.main_process_first():  # one process decodes an empty cache, the others then read it
        validate_models(cfg)
    if accelerator.is_main_process:
        prepare_run_dir(cfg, out_dir, shard)
        # a start record: an invocation killed before its end record shows in the report as interrupted
        append_jsonl(runs_path(out_dir, shard), {"started": stamp(started), "status": "started",
                                                 "processes": accelerator.num_processes, **shard_field(shard),
                                                 **commit_field()})
    accelerator.wait_for_everyone()


def shard_field(shard: Shard | None) -> dict:
    """The ``shard`` entry of a run record (nothing when the grid is not sharded)."""
    return {"shard": str(shard)} if shard is not None and shard.count > 1 else {}


def _by_split(cells: list[Cell]) -> dict[tuple, list[Cell]]:
    """Cells grouped by (data set, fraction, seed): one patient split serves each group."""
    groups: dict[tuple, list[Cell]] = {}
    for c in cells:
        groups.setdefault((c.dataset, c.fraction, c.seed), []).append(c)
    return groups


def _run_split(run: _Run, todo: list[Cell]) -> None:
    """The unfinished cells of one data set, fraction and seed, on one patient split."""
    dkey, fraction, seed = todo[0].dataset, todo[0].fraction, todo[0].seed
    data = next(d for d in run.cfg.datasets if d.key == dkey)
    with run.accelerator.main_process_first():
        splits = data.load(seed, fraction)
    positive = positive_index(run.cfg, data, splits.classes)
    if run.main:
        atomic_write_text(split_path(run.out_dir, dkey, fraction, seed), json.dumps(splits.info, indent=1))
        if splits.info.get("skipped_files"):
            atomic_write_text(run.out_dir / "skipped_files.txt", "\n".join(splits.info["skipped_files"]) + "\n")
    generators: dict[str, Any] = {}
    for cell in todo:
        start = time.time()
        gen = None
        if cell.generator is not None:
            spec = run.specs[cell.generator]
            if spec.key not in generators:
                generators[spec.key] = _ready_generator(run, data, splits, cell, spec, positive)
            gen = generators[spec.key]
        # the arm's training data (real only, replace, additive, real-matched) is built in cell.arm_data
        metrics = train_and_evaluate(run.cfg, splits, cell, positive, run.accelerator, gen)
        if run.main:
            row = _row(run, cell, splits, positive, metrics["synthetic_items"], metrics, start, gen)
            append_jsonl(results_path(run.out_dir, run.shard), row)
            log_result_row(run.accelerator, row, metric=run.cfg.primary_metric)
        run.bar.update(1)
    run.accelerator.wait_for_everyone()


def _ready_generator(run: _Run, data: DataConfig, splits, cell: Cell, spec: GeneratorSpec, positive: int) -> Any:
    """The cell's trained generator, its samples picture and (when wanted) its sample quality."""
    gen = generator_for(spec, splits, cell, run.out_dir, run.accelerator, run.cfg.generator_parallel,
                        stop_when=gate_stopper(run.cfg, spec, splits, cell, positive, run.out_dir))
    samples = samples_path(run.out_dir, cell.dataset, cell.fraction, spec.key)
    # the first seed's generator draws the picture: the same picture whichever shard or rerun gets there first
    if run.main and cell.seed == run.cfg.seeds[0] and not samples.is_file():
        write_samples_png(gen, splits, samples, seed=cell.seed)
    if run.main and run.cfg.quality.wanted(cell.fraction, cell.seed):
        measure_quality_or_record(run.cfg, data, splits, gen, cell, spec, positive, run.out_dir,
                                  run.accelerator.device)
        log_quality(run.accelerator, quality_dir(run.out_dir, cell.dataset, cell.fraction, cell.seed, spec.key))
    run.accelerator.wait_for_everyone()
    return gen


def _row(run: _Run, cell: Cell, splits, positive: int, n_syn: int, metrics: dict, start: float,
         gen: Any = None) -> dict:
    """The results.jsonl row of a finished cell (its keys and their order are the file's format)."""
    return {"dataset": cell.dataset, "fraction": cell.fraction, "seed": cell.seed, "arm": cell.arm,
            "generator": cell.generator,
            "generator_name": run.specs[cell.generator].name if cell.generator else None, "ratio": cell.ratio,
            "train_items": len(splits.train), "train_patients": len(splits.info["train_groups"]),
            "group_kind": getattr(splits, "group_kind", "patients"), "synthetic_items": n_syn, "classifier_steps": run.cfg.classifier.steps,
            "positive_class": splits.classes[positive] if splits.num_classes == 2 else None,
            "val": metrics["val"], "test": metrics["test"], "seconds": round(time.time() - start, 1),
            "processes": run.accelerator.num_processes, **metrics.get("fields", {}),
            # a generator trained with train.gate_every: its steps and where the quality gate stopped it
            **early_stop_fields(gen)}


def _finish(cfg: BenchConfig, out_dir: Path, shard: Shard | None, *, started: float, ran: int, processes: int) -> None:
    """The end record of this invocation, and the analysis of every shard's rows so far as summary.json and
    summary.md (the last shard to finish writes the whole grid's)."""
    append_jsonl(runs_path(out_dir, shard), {"started": stamp(started), "status": "finished",
                                             "finished": stamp(time.time()), "seconds": round(time.time() - started, 1),
                                             "cells_run": ran, "processes": processes, **shard_field(shard)})
    rows = read_results(out_dir)
    analysis = analyze(rows, cfg)
    atomic_write_text(out_dir / "summary.json", json.dumps(without_nan(analysis), indent=1))
    atomic_write_text(out_dir / "summary.md", summarize(rows, cfg, analysis=analysis,
                                                        quality=quality_records(out_dir, cfg)))
