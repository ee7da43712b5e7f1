"""Running the strategies grid (``strategy_config.py`` says what the arms are).

Per (fraction, seed), on one patient split: the baseline classifier first (real only; its weights are kept in
``<run>/teachers/`` as the teacher of the ``teacher`` arms and the judge of ``target_class: weakest``), then each
control and strategy arm. The generator trains on the cell's training patients only (cached as the benchmark
caches it); the donor generator on the donor pool (``<run>/generators/<data>/donor/seed<s>/``), one per seed,
shared by every fraction of that seed (the donor patients are outside all of them). Rows go to
``results.jsonl`` (or a shard's file) as the benchmark's do; a rerun skips finished arms.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..classifier import (CLASSIFIER_CONFIG, CLASSIFIER_WEIGHTS, compute_metrics, create_augment, create_classifier,
                          fit_classifier, load_classifier, operating_point, predict, save_classifier)
from ..mix.additive import extra_per_batch
from ..strategy import Draws, create_strategy, images_of, strategy_of_control
from ..tracking import end_trackers, log_quality, log_result_row, start_trackers, tracked_config
from ..utils import append_jsonl, atomic_write_text, read_jsonl
from .cell import checked_predictions, make_validator, additive_items, generator_for, measure_quality_or_record, write_samples_png
from .grid_config import Cell
from .paths import Shard, quality_dir, read_results, results_path, runs_path, samples_path, split_path
from .runner import commit_field, shard_field, positive_index, prepare_run_dir, stamp, world_size
from .strategy_config import BASELINE, Arm, StrategiesConfig, StrategyCell, plan_strategies, pretrain_steps, spec_of


def donor_pool(cfg: StrategiesConfig, seed: int) -> tuple[Any, Dataset, list[str]]:
    """The seed's split at fraction 1, the donor pool's real training items and their patients: ``donor.patients``
    of the training patients, drawn (seeded) among those outside the grid's largest fraction."""
    full = cfg.data.load(seed, 1.0)
    largest = max(cfg.fractions)
    taken = set(cfg.data.load(seed, largest).info["train_groups"]) if largest < 1 else set(full.info["train_groups"])
    free = sorted(set(full.info["train_groups"]) - taken)
    want = max(1, int(round(cfg.donor.patients * len(full.info["train_groups"]))))
    if len(free) < want:
        raise ValueError(f"donor.patients={cfg.donor.patients}: {want} donor patients wanted but only {len(free)} "
                         f"training patients are outside fraction {largest}; lower one of them")
    rng = np.random.default_rng([seed, 104729])
    chosen = sorted(free[i] for i in rng.permutation(len(free))[:want])
    groups = np.asarray(full.train.groups).astype(str)
    idx = np.flatnonzero(np.isin(groups, chosen))
    return full, full.train.subset(idx), chosen


def design_donors(cfg: StrategiesConfig) -> tuple[Any, Dataset, list[str]]:
    """Sites mode: the fixed design's donor split, its donor items and patients (the same for every unit)."""
    donors = cfg.load_design_donors()
    return donors, donors.train.subset(np.arange(len(donors.train))), list(donors.info["train_groups"])


def donor_splits(full: Any, items: Dataset, patients: list[str]) -> Any:
    """The seed's split with the donor items as its training set (validation and test patients unchanged): what
    the donor generator trains on, and what its picture and sample quality compare it with."""
    import dataclasses

    return dataclasses.replace(full, train=items, info={**full.info, "train_groups": list(patients),
                                                        "train_fraction": "donor"})


class _Unit:
    """One (fraction, seed): its split, sources and caches, shared by its arms."""

    def __init__(self, cfg: StrategiesConfig, out_dir: Path, accelerator: Any, fraction: float, seed: int):
        self.cfg, self.out_dir, self.accelerator = cfg, out_dir, accelerator
        self.fraction, self.seed = fraction, seed
        with accelerator.main_process_first():
            self.splits = cfg.load_unit(fraction, seed)
        self.positive = positive_index(cfg, cfg.data, self.splits.classes)
        self.real = self.splits.train.subset(np.arange(len(self.splits.train)))
        self.classes = list(self.splits.classes)
        self._gens: dict[str | None, Any] = {}
        self._donor_gen = self._teacher = None
        self._donor: tuple | None = None
        self._pools: dict[tuple, Dataset] = {}
        self._weakest: int | None = None

    @property
    def cell(self) -> Cell:
        return Cell(self.cfg.data.key, self.fraction, self.seed)

    # ----------------------------------------------------------------- sources
    def generator(self, source: str | None = None) -> Any:
        """The unit's generator (``source=None``: the grid's; else the config's ``sources[source]``), trained on
        the unit's training patients (a fine-tune starts from its ``init_from``), or opened when it is a ready
        source; its picture and quality measured once."""
        if source not in self._gens:
            spec = self.cfg.source_spec(source)
            self._gens[source] = generator_for(spec, self.splits, self.cell, self.out_dir, self.accelerator,
                                               self.cfg.generator_parallel)
            if spec.source is not None and self.cfg.sites is not None:
                # a ready source (the shared generator) is the same for every site of a fixed design: its gate
                # once, on the grid's gate unit, against a classifier on the design's donor cells (PLAN.md)
                measure = (self.fraction, self.seed) == shared_gate_unit(self.cfg)
                donors = measure and int(dict(self.cfg.data.design).get("donor_patients", 0)) > 0
                self._picture_and_quality(self._gens[source], spec.key,
                                          donor_splits(*self.donor()) if donors else self.splits, measure=measure)
            else:
                self._picture_and_quality(self._gens[source], spec.key, self.splits)
        return self._gens[source]

    def donor(self) -> tuple[Any, Dataset, list[str]]:
        if self._donor is None:
            full, items, patients = donor_pool(self.cfg, self.seed) if self.cfg.sites is None else design_donors(self.cfg)
            if set(patients) & set(self.splits.info["train_groups"]):
                raise RuntimeError(f"{self.cell}: a donor patient is one of the cell's own training patients")
            self._donor = (full, items, patients)
        return self._donor

    def donor_generator(self) -> Any:
        if self._donor_gen is None:
            splits = donor_splits(*self.donor())
            spec = self.cfg.donor_spec
            gen_dir = Path(self.out_dir) / "generators" / self.cfg.data.key / "donor" / f"seed{self.seed}" / spec.key
            self._donor_gen = generator_for(spec, splits, self.cell, self.out_dir, self.accelerator,
                                            self.cfg.generator_parallel, gen_dir=gen_dir)
            # compared with the donor patients it trained on; CAS on this split's validation patients
            self._picture_and_quality(self._donor_gen, f"donor-{spec.key}", splits)
        return self._donor_gen

    def _picture_and_quality(self, gen: Any, key: str, splits: Any, *, measure: bool = True) -> None:
        """The first seed's picture (real training cells vs synthetic) and, where wanted (and ``measure``), sample
        quality and the gate on this cell's validation patients."""
        if not self.accelerator.is_main_process:
            return
        samples = samples_path(self.out_dir, self.cfg.data.key, self.fraction, key)
        if self.seed == self.cfg.unit_seeds[0] and not samples.is_file():
            write_samples_png(gen, splits, samples, seed=self.seed)
        if measure and self.cfg.quality.wanted(self.fraction, self.seed):
            measure_quality_or_record(self.cfg, self.cfg.data, splits, gen, self.cell, SimpleNamespace(key=key),
                                      self.positive, self.out_dir, self.accelerator.device)
            log_quality(self.accelerator, quality_dir(self.out_dir, self.cfg.data.key, self.fraction, self.seed, key))

    def edit_source(self, strength: float, per_image: int, source: str | None = None) -> Any:
        from ..mix.edits import EditSource

        edits = EditSource(self.generator(source), self.real, strength=strength, per_image=per_image, seed=self.seed)
        self._picture_and_quality(edits, edits_label(strength, source), self.splits)
        return edits

    def teacher(self) -> torch.nn.Module:
        """The baseline classifier of this cell (trained by the baseline arm, or read back on a rerun)."""
        if self._teacher is None:
            folder = teacher_dir(self.out_dir, self.cfg.data.key, self.fraction, self.seed)
            if not all((folder / name).is_file() for name in (CLASSIFIER_CONFIG, CLASSIFIER_WEIGHTS)):
                # the baseline row exists but its weights are gone (or half written): train it again
                self.train(Arm(BASELINE, BASELINE, BASELINE))
            self._teacher = load_classifier(folder)[0].to(self.accelerator.device)
        return self._teacher

    def target_class(self, name: str) -> int:
        """``positive`` (the positive class), ``weakest`` (the lowest recall of the baseline on validation
        patients) or a class name."""
        if name == "positive":
            return self.positive
        if name == "weakest":
            if self._weakest is None:
                probs, targets = predict(self.teacher(), self.splits.val, batch_size=self.cfg.classifier.eval_batch_size)
                pred = probs.argmax(1)
                recall = [float((pred[targets == c] == c).float().mean()) for c in range(len(self.classes))]
                self._weakest = int(np.argmin(recall))
            return self._weakest
        if name not in self.classes:
            raise ValueError(f"strategies: target_class={name!r} is not a class of {self.cfg.data.name}: {self.classes}"
                             " (or 'positive', 'weakest')")
        return self.classes.index(name)

    def pool(self, source_key: tuple, make_source: Any, *, only_class: int | None = None,
             size: int | None = None, mix_of: Dataset | None = None, folder: Path | None = None) -> Dataset:
        """The synthetic items (one image each) of a source: in the class mix of ``label_distribution`` (``match``:
        of ``mix_of``, default the cell's real images), or of one class only; sampled once into ``folder`` when
        given (a pool every fraction of a seed shares)."""
        size = size or self.cfg.synthetic.pool_size
        key = (source_key, only_class, size)
        if key not in self._pools:
            dist = self.cfg.synthetic.label_distribution if only_class is None else {self.classes[only_class]: 1.0}
            self._pools[key] = additive_items(make_source(), self.real if mix_of is None else mix_of, self.classes,
                                              pool_size=size, seed=self.seed, label_distribution=dist,
                                              pool_dir=folder)
        return self._pools[key]

    def donor_samples(self) -> Dataset:
        """The donor generator's pool: the donor patients' class mix, ``donor.pool_size`` images (default: as many
        as their real cells), sampled once per seed into the donor generator's folder."""
        items = self.donor()[1]
        size = self.cfg.donor.pool_size or len(items)
        spec = self.cfg.donor_spec
        folder = (Path(self.out_dir) / "generators" / self.cfg.data.key / "donor" / f"seed{self.seed}"
                  / f"{spec.key}-pool-{size}")
        return self.pool(("donor",), self.donor_generator, mix_of=items, size=size, folder=folder)

    # ----------------------------------------------------------------- what strategies ask of the unit
    def generator_pool(self, *, size: int | None = None, only_class: int | None = None,
                       source: str | None = None) -> Dataset:
        key = ("gen",) if source is None else ("gen", source)
        return self.pool(key, lambda: self.generator(source), size=size, only_class=only_class)

    def edit_pool(self, strength: float, per_image: int, *, size: int | None = None,
                  source: str | None = None) -> Dataset:
        key = ("edits", strength, per_image) if source is None else ("edits", strength, per_image, source)
        return self.pool(key, lambda: self.edit_source(strength, per_image, source), size=size)

    def donor_items(self) -> Dataset:
        return self.donor()[1]

    def donor_patients(self) -> list[str]:
        return self.donor()[2]

    # ----------------------------------------------------------------- one arm
    def inputs(self, arm: Arm) -> dict:
        """What ``arm`` trains on: ``dataset`` (the real batches), ``extra`` items appended (``per_batch`` each
        step), ``pretrain`` items (the phase before), and what the row records of them; the arm's strategy (or
        the strategy whose control it is) says which."""
        cfg = self.cfg
        per_batch = extra_per_batch(arm.per_real, cfg.classifier.batch_size) if arm.per_real else 0
        if arm.kind == BASELINE:
            draws, per_batch = Draws(self.real), 0
        elif arm.role == "control":
            draws = strategy_of_control(arm.kind).control_draws(self, arm.setting, None)
        else:
            draws = create_strategy(arm.kind).draws(self, arm.setting, spec_of(cfg, arm))
        return {"dataset": draws.dataset, "extra": draws.extra, "pretrain": draws.pretrain,
                "per_batch": 0 if draws.pretrain is not None else per_batch, "record": draws.record}

    def save_cells(self, path: Path, per_source: int = 8) -> Path:
        """Real cells of the positive (infected) class beside those of every synthetic source the strategies use
        (generator samples, edits at each strength, the donor's samples), as uint8 arrays in one ``.npz``: the
        report's clinician figure."""
        rng = np.random.default_rng(self.seed)

        def of_class(items: Dataset) -> np.ndarray:
            idx = [i for i in range(len(items)) if int(items[i][1]) == self.positive]
            pick = rng.choice(idx, size=min(per_source, len(idx)), replace=False) if idx else []
            return np.stack([np.asarray(items[int(i)][0]) for i in pick]) if len(pick) else np.zeros((0,))

        arrays = {"real": of_class(self.real)}
        for spec in self.cfg.strategies:
            for name, items in spec.strategy.figure_cells(self, spec).items():
                if name not in arrays:
                    arrays[name] = of_class(items)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez_compressed(tmp, positive=np.asarray(self.classes[self.positive]), **arrays)
        tmp.replace(path)
        return path

    def distill(self, items: Dataset, temperature: float) -> torch.Tensor:
        """The teacher's class probabilities of ``items`` at ``temperature``."""
        from ..mix.teacher import distill_targets

        return distill_targets(self.teacher(), images_of(items), temperature).float().cpu()

    def train(self, arm: Arm) -> dict:
        """Train and evaluate ``arm``'s classifier; the baseline's weights are kept as this cell's teacher."""
        from accelerate.utils import set_seed

        cfg, c = self.cfg, self.cfg.classifier
        data = self.inputs(arm)
        steps = c.budget(len(self.real))
        set_seed(self.seed)  # the same initial weights in every arm of a seed
        model = create_classifier(c.model, num_classes=len(self.classes), channels=self.splits.channels)
        desc = f"{self.fraction:g} seed {self.seed}: {arm.name}"
        augment = create_augment(c.augment)
        pre_steps = 0
        if data["pretrain"] is not None:
            pre_steps = pretrain_steps(arm.setting, steps)
            model = fit_classifier(model, data["pretrain"], steps=pre_steps, batch_size=c.batch_size, lr=c.lr,
                                   weight_decay=c.weight_decay, seed=self.seed + 7919, accelerator=self.accelerator,
                                   augment=augment, bn="keep", desc=desc + " (pre-training)").model
        validate = None if c.eval_every is None else make_validator(self.splits.val, cfg, self.positive, self.accelerator)
        fit = fit_classifier(model, data["dataset"], steps=steps, batch_size=c.batch_size, lr=c.lr,
                             weight_decay=c.weight_decay, seed=self.seed, num_workers=c.num_workers,
                             accelerator=self.accelerator, augment=augment, extra=data["extra"],
                             extra_per_batch=data["per_batch"] if data["extra"] is not None else 0, validate=validate,
                             eval_every=c.eval_every, bn=c.bn, bn_data=self.real, bn_batches=c.bn_batches, desc=desc)
        if arm.kind == BASELINE and self.accelerator.is_main_process:
            save_classifier(fit.model, teacher_dir(self.out_dir, cfg.data.key, self.fraction, self.seed),
                            model_name=c.model, num_classes=len(self.classes), channels=self.splits.channels,
                            image_size=self.splits.image_size, classes=self.classes)
            self._teacher = None
        self.accelerator.wait_for_everyone()
        parts = ("val", "test") if cfg.score_test else ("val",)  # a pilot never reads a test patient
        preds = {part: checked_predictions(fit.model, getattr(self.splits, part), part, c.eval_batch_size,
                                           self.accelerator) for part in parts}
        out = {"test": None, **{part: compute_metrics(*preds[part], positive=self.positive) for part in preds}}
        out["fields"] = {"classifier_steps": fit.steps, "pretrain_steps": pre_steps,
                         "pretrain_draws": pre_steps * c.batch_size, "batch_size": c.batch_size,
                         "extra_per_batch": data["per_batch"] if data["extra"] is not None else 0,
                         "extra_items": 0 if data["extra"] is None else len(data["extra"]),
                         "real_draws": fit.draws, "extra_draws": fit.extra_draws, "best_step": fit.best_step,
                         "curve": [[int(st), None if v != v else v] for st, v in fit.curve], "bn": c.bn,
                         **data["record"]}
        if cfg.fixed_specificity is not None and len(self.classes) == 2 and "test" in preds:  # clinical secondary
            out["fields"]["operating_point"] = operating_point(*preds["val"], *preds["test"], positive=self.positive,
                                                               specificity=cfg.fixed_specificity)
        self.accelerator.free_memory()
        return out


def edits_label(strength: float, source: str | None = None) -> str:
    """The name of an edit source's picture and quality folder: ``edits-s0.1`` (of the grid's generator) or
    ``edits-s0.1-<source>``."""
    return f"edits-s{strength:g}" + (f"-{source}" if source is not None else "")


def cells_path(out_dir: Path, dataset: str, fraction: float) -> Path:
    """Infected cells, real and synthetic, of the first seed of a fraction (the report's clinician figure)."""
    return Path(out_dir) / "cells" / f"{dataset}-frac{fraction:g}.npz"


def teacher_dir(out_dir: Path, dataset: str, fraction: float, seed: int) -> Path:
    return Path(out_dir) / "teachers" / dataset / f"frac{fraction:g}" / f"seed{seed}"


def shared_gate_unit(cfg: StrategiesConfig) -> tuple[float, int] | None:
    """The unit whose run measures the gate of a ready source of a sites grid (the shared generator): the first
    (site size, draw) that ``quality`` measures at all; None when it measures none."""
    return next(((f, s) for f in cfg.unit_sizes for s in cfg.unit_seeds if cfg.quality.wanted(f, s)), None)


def build_unit(cfg: StrategiesConfig, out_dir: str | Path, accelerator: Any, size: float, seed: int) -> "_Unit":
    """One unit of the grid (its split, sources and caches), ready to ``train(arm)`` an arm of it; for tools that
    look at one arm (benchmarks/cell_profile.py)."""
    return _Unit(cfg, Path(out_dir), accelerator, size, seed)


# --------------------------------------------------------------------------- the grid
def strategy_units(cells: list[StrategyCell]) -> list[tuple]:
    return list(dict.fromkeys((c.fraction, c.seed) for c in cells))


def shard_strategy_cells(cells: list[StrategyCell], shard: Shard | None, *, by_unit: bool = False) -> list[StrategyCell]:
    """The ``k``-th seed of the grid goes to shard ``k mod N``, with every fraction and arm of it: a split's
    generator, teacher and pools are made once, and so is the seed's donor generator (which every fraction of
    the seed shares: two shards training it at once would write into one folder). ``by_unit``: the ``k``-th
    unit (fraction, seed) goes to shard ``k mod N`` instead, which balances a sites grid (5 draws x 2 site sizes
    split 5/5, not 6/4); only for grids whose units share no generator (``units_share_nothing``)."""
    if shard is None or shard.count == 1:
        return list(cells)
    if by_unit:
        units = strategy_units(cells)
        mine_units = {u for k, u in enumerate(units) if k % shard.count == shard.index}
        return [c for c in cells if (c.fraction, c.seed) in mine_units]
    seeds = list(dict.fromkeys(c.seed for c in cells))
    mine = {s for k, s in enumerate(seeds) if k % shard.count == shard.index}
    return [c for c in cells if c.seed in mine]


def units_share_nothing(cfg: StrategiesConfig) -> bool:
    """A sites grid without the per-seed ``donor`` strategy: its sources are ready checkpoints, fine-tunes of
    one unit's site, or the fixed design's donor cells, so no two units write into one generator folder."""
    return cfg.sites is not None and all(spec.kind != "donor" for spec in cfg.strategies)


def run_strategies(cfg: StrategiesConfig, out_dir: str | Path, *, accelerator: Any = None,
                   shard: Shard | None = None) -> list[dict]:
    """Run every arm of the grid (of ``shard``) not yet in its results file; return every row of the folder."""
    from accelerate import Accelerator

    started = time.time()
    accelerator = accelerator or Accelerator()
    out_dir = Path(out_dir)
    if accelerator.is_main_process:
        prepare_run_dir(cfg, out_dir, shard)
        append_jsonl(runs_path(out_dir, shard), {"started": stamp(started), "status": "started",
                                                 "processes": accelerator.num_processes, **shard_field(shard),
                                                 **commit_field()})
    accelerator.wait_for_everyone()
    trackers = start_trackers(accelerator, cfg.name + (f"-shard{shard.index}" if shard else ""), tracked_config(cfg))
    check_before_work(cfg)
    done = {(r["dataset"], float(r["fraction"]), int(r["seed"]), r["arm"]) for r in read_jsonl(results_path(out_dir, shard))}
    cells = shard_strategy_cells(plan_strategies(cfg), shard, by_unit=units_share_nothing(cfg))
    bar = tqdm(total=len(cells), initial=sum(c.key() in done for c in cells), desc=f"{cfg.name}: arms",
               disable=not accelerator.is_main_process or None, dynamic_ncols=True)
    ran = 0
    for fraction, seed in strategy_units(cells):
        todo = [c for c in cells if (c.fraction, c.seed) == (fraction, seed) and c.key() not in done]
        cells_file = cells_path(out_dir, cfg.data.key, fraction)
        # the same answer in every process (the file is written before the last barrier), so all build the unit
        want_cells = seed == cfg.unit_seeds[0] and not cells_file.is_file()
        if not todo and not want_cells:
            continue
        unit = _Unit(cfg, out_dir, accelerator, fraction, seed)
        if accelerator.is_main_process:
            atomic_write_text(split_path(out_dir, cfg.data.key, fraction, seed), json.dumps(unit.splits.info, indent=1))
        for cell in todo:
            start = time.time()
            metrics = unit.train(cell.arm)
            if accelerator.is_main_process:
                row = _row(unit, cell, metrics, start)
                append_jsonl(results_path(out_dir, shard), row)
                log_result_row(accelerator, row, metric=cfg.primary_metric)
            bar.update(1)
            ran += 1
        if want_cells and accelerator.is_main_process:
            unit.save_cells(cells_file)
        accelerator.wait_for_everyone()
    bar.close()
    end_trackers(accelerator, trackers)
    if accelerator.is_main_process:
        append_jsonl(runs_path(out_dir, shard), {"started": stamp(started), "status": "finished",
                                                 "finished": stamp(time.time()),
                                                 "seconds": round(time.time() - started, 1), "cells_run": ran,
                                                 "processes": accelerator.num_processes, **shard_field(shard)})
    accelerator.wait_for_everyone()
    return read_results(out_dir)


def check_before_work(cfg: StrategiesConfig) -> None:
    """Refuse, before anything trains, a generator or classifier that cannot be built, a class that is not the
    data set's, and extra items that the processes cannot share equally."""
    from ..config import ConfigError

    splits = cfg.load_unit(min(cfg.unit_sizes), cfg.unit_seeds[0])
    try:
        for spec in (cfg.generator, cfg.donor_spec, *cfg.sources.values()):
            spec.check(splits)  # a generator that builds, or a source that opens with the data's classes
        create_classifier(cfg.classifier.model, num_classes=splits.num_classes, channels=splits.channels)
        positive_index(cfg, cfg.data, splits.classes)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"config of {cfg.name!r}: {err}") from err
    for spec in cfg.strategies:
        if spec.kind == "minority" and spec.target_class not in ("positive", "weakest", *splits.classes):
            raise ConfigError(f"strategies ({spec.key}): target_class={spec.target_class!r} is not a class of "
                              f"{cfg.data.name} {splits.classes}, nor 'positive' or 'weakest'")
        for setting in spec.settings():
            n = extra_per_batch(setting.get("per_real", 0), cfg.classifier.batch_size)
            if n % world_size() or cfg.classifier.batch_size % world_size():
                raise ConfigError(f"strategies ({spec.key}): the batch of {cfg.classifier.batch_size} and its {n} "
                                  f"extra items must be divisible by the {world_size()} processes")


def _row(unit: _Unit, cell: StrategyCell, metrics: dict, start: float) -> dict:
    arm, splits = cell.arm, unit.splits
    return {"dataset": cell.dataset, "fraction": cell.fraction, "seed": cell.seed, "arm": arm.name, "kind": arm.kind,
            "role": arm.role, "strategy": arm.strategy, "setting": arm.setting, "control": arm.control,
            "generator": None, "per_real": arm.per_real, "mix": "strategy",
            "train_items": len(splits.train), "train_patients": len(splits.info["train_groups"]),
            "group_kind": getattr(splits, "group_kind", "patients"),
            "positive_class": splits.classes[unit.positive] if splits.num_classes == 2 else None,
            "val": metrics["val"], "test": metrics["test"], "seconds": round(time.time() - start, 1),
            "processes": unit.accelerator.num_processes, **metrics["fields"]}

