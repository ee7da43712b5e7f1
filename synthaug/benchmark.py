"""The benchmark grid: data set x real training fraction x generator x synthetic ratio x seed.

For each data set, fraction (of the training patients) and seed: split by patient, keep that
fraction of the training patients, train the real-only baseline classifier, and for each
generator train it on exactly those training images (cached, reused by every ratio), then train
the classifier on real + ``SyntheticDataset(ratio)`` for each ratio. Every arm gets the same
classifier, the same number of optimizer steps of the same batch size, the same augmentation, the
same initial weights (per seed) and is evaluated on the same validation and test patients.

The synthetic ratio is selected on the validation patients (``analyze``); only the selected setting
is reported on test in the verdict table, every setting is kept in ``results.jsonl`` and listed.
"""
from __future__ import annotations

import hashlib
import json
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from . import __version__
from .classifier import (METRICS, StandardAugment, compute_metrics, create_classifier, predict, single_process,
                         train_classifier)
from .config import ConfigError, to_dict
from .data import load_dataset
from .generators import GeneratorTrainConfig, create_generator, load_generator, train_generator
from .stats import mean_ci, paired_difference, verdict
from .synthetic import SyntheticDataset, check_ratio
from .utils import append_jsonl, atomic_write_text, read_jsonl
from .viz import save_comparison

@dataclass
class DataConfig:
    name: str = "malaria"
    root: str | None = None
    image_size: int = 32
    train_fraction: float = 1.0
    split: list[float] = field(default_factory=lambda: [0.7, 0.1, 0.2])
    on_bad_file: str = "error"  # or "skip": unreadable files are left out and listed in the run folder
    group_pattern: str | None = None  # folder data sets: regex whose first group is the patient id of a file name

    def __post_init__(self) -> None:
        import re

        from .data.splits import check_split

        check_split(self.split)
        if self.on_bad_file not in ("error", "skip"):
            raise ValueError(f"on_bad_file={self.on_bad_file!r}: use 'error' or 'skip'")
        if not (0 < self.train_fraction <= 1):
            raise ValueError(f"train_fraction={self.train_fraction!r}: must be in (0, 1] (a fraction of the training "
                             "patients)")
        if self.group_pattern is not None:
            try:
                re.compile(self.group_pattern)
            except re.error as err:
                raise ValueError(f"group_pattern={self.group_pattern!r} is not a valid regular expression ({err})") from None

    def load(self, seed: int, train_fraction: float | None = None):
        fraction = self.train_fraction if train_fraction is None else train_fraction
        return load_dataset(self.name, root=self.root, image_size=self.image_size, seed=seed,
                            train_fraction=fraction, split=tuple(self.split), on_bad_file=self.on_bad_file,
                            group_fn=self.group_pattern)

    @property
    def key(self) -> str:
        """How results and folders name this data set: ``malaria-32px``, ``medmnist-breastmnist-28px``."""
        return f"{self.name.replace(':', '-').replace('/', '_')}-{self.image_size}px"




@dataclass
class ClassifierConfig:
    model: str = "resnet18"
    steps: int = 160
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    augment: str = "flip-rot90"
    num_workers: int = 0
    eval_batch_size: int = 256

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("classifier steps, batch_size and eval_batch_size must be >= 1")
        StandardAugment(self.augment)  # validates the name


@dataclass
class GeneratorSpec:
    """One generator of the grid: a registered name, its options and training budget. ``label`` names
    it in results (default: the name; give labels to compare two settings of one generator)."""

    name: str = "cvae"
    label: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    train: GeneratorTrainConfig = field(default_factory=GeneratorTrainConfig)

    def __post_init__(self) -> None:
        if self.train.seed != 0:
            raise ValueError("generator train.seed: the generator's seed is the cell's seed; set `seeds` (benchmark) "
                             "or `seed` (synthaug train) instead")

    @property
    def key(self) -> str:
        return self.label or self.name

    def fingerprint(self) -> str:
        text = json.dumps({"name": self.name, "options": self.options, "train": to_dict(self.train)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


GeneratorConfig = GeneratorSpec  # the name ``synthaug train`` configs use


@dataclass
class SyntheticConfig:
    ratios: list[float] = field(default_factory=lambda: [0.3])
    label_distribution: str | dict[str, float] = "match"
    pool_size: int | None = None

    def __post_init__(self) -> None:
        if not self.ratios or len(set(self.ratios)) != len(self.ratios):
            raise ValueError(f"synthetic.ratios={self.ratios}: give at least one ratio, without repeats")
        for r in self.ratios:
            check_ratio(r)
            if r == 0:
                raise ValueError("synthetic.ratios: 0 is the real-only baseline, which every grid runs anyway; "
                                 "list only ratios > 0")
        if isinstance(self.label_distribution, str) and self.label_distribution not in ("match", "balanced"):
            raise ValueError(f"label_distribution={self.label_distribution!r}: use 'match', 'balanced' or a mapping "
                             "{class name or id: weight}")
        if isinstance(self.label_distribution, dict):
            bad = {k: v for k, v in self.label_distribution.items()
                   if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0}
            if bad or not any(v > 0 for v in self.label_distribution.values()):
                raise ValueError(f"label_distribution={self.label_distribution!r}: weights must be numbers >= 0, "
                                 "at least one > 0")
        if self.pool_size is not None and self.pool_size < 1:
            raise ValueError(f"pool_size={self.pool_size!r} must be >= 1 (or null: one image per synthetic item)")


@dataclass
class QualityConfig:
    """Sample quality of every generator the grid trains (``synthaug.metrics.evaluate_generator``): FID, KID,
    precision/recall, memorization audit and CAS, in feature space of a classifier trained on all training
    patients of the seed (never val or test), cached in ``<run>/extractors``."""

    enabled: bool = True
    n: int = 500                      # synthetic images compared with as many real training images
    cas: bool = True                  # train on synthetic only, test on the real test patients
    cas_images: int | None = 2000     # synthetic images CAS trains on (null: as many as real training images)
    seeds: list[int] | None = None    # evaluate generators of these seeds only (null: every seed)
    fractions: list[float] | None = None  # ... and of these fractions only (null: every fraction)
    extractor_model: str = "test_resnet"
    extractor_steps: int = 300

    def __post_init__(self) -> None:
        if self.n < 2:
            raise ValueError(f"quality.n={self.n!r}: compare at least 2 synthetic images (e.g. 500)")
        if self.cas_images is not None and self.cas_images < 1:
            raise ValueError(f"quality.cas_images={self.cas_images!r}: must be >= 1, or null")
        if self.extractor_steps < 1:
            raise ValueError(f"quality.extractor_steps={self.extractor_steps!r}: must be >= 1")

    def wanted(self, fraction: float, seed: int) -> bool:
        return (self.enabled and (self.seeds is None or seed in self.seeds)
                and (self.fractions is None or any(abs(fraction - f) < 1e-12 for f in self.fractions)))


@dataclass
class BenchConfig:
    name: str = "bench"
    datasets: list[DataConfig] = field(default_factory=lambda: [DataConfig()])
    fractions: list[float] = field(default_factory=lambda: [1.0])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    generators: list[GeneratorSpec] = field(default_factory=lambda: [GeneratorSpec()])
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    positive_class: str | dict[str, str] | None = None  # binary metrics; a mapping gives one per data set name
    primary_metric: str = "balanced_accuracy"
    # several processes: "replicate" trains each generator whole in every process (results identical to one
    # process); "data" splits its batches across processes (faster for big generators, equal statistically)
    generator_parallel: str = "replicate"
    out_dir: str = "runs/{name}"

    def __post_init__(self) -> None:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds={self.seeds}: give at least one seed, without repeats")
        if self.primary_metric not in METRICS:
            raise ValueError(f"primary_metric={self.primary_metric!r}: use one of {METRICS}")
        if self.generator_parallel not in ("replicate", "data"):
            raise ValueError(f"generator_parallel={self.generator_parallel!r}: use 'replicate' or 'data'")
        if not self.datasets:
            raise ValueError("datasets: list at least one data set")
        keys = [d.key for d in self.datasets]
        if len(set(keys)) != len(keys):
            raise ValueError(f"datasets: {keys} repeat a data set at the same image size")
        for d in self.datasets:
            if d.train_fraction != 1.0:
                raise ValueError(f"datasets: {d.name}: set the real training fractions in `fractions`, not "
                                 f"train_fraction={d.train_fraction} of the data set")
        if not self.fractions or len(set(self.fractions)) != len(self.fractions):
            raise ValueError(f"fractions={self.fractions}: give at least one fraction, without repeats")
        for f in self.fractions:
            if not (0 < f <= 1):
                raise ValueError(f"fractions: {f!r} must be in (0, 1] (a fraction of the training patients)")
        labels = [g.key for g in self.generators]
        if len(set(labels)) != len(labels):
            raise ValueError(f"generators: {labels} repeat a name; give each entry a distinct `label`")
        if "real" in labels:
            raise ValueError("generators: 'real' names the baseline; choose another label")
        for name, chosen in (("seeds", self.quality.seeds), ("fractions", self.quality.fractions)):
            missing = [v for v in chosen or [] if v not in getattr(self, name)]
            if missing:
                raise ValueError(f"quality.{name}={chosen}: {missing} are not in the grid's {name} "
                                 f"{getattr(self, name)}")


# --------------------------------------------------------------------------- cells
@dataclass(frozen=True)
class Cell:
    """One classifier training: a data set, a fraction, a seed, and a generator + ratio (None: baseline)."""

    dataset: str
    fraction: float
    seed: int
    generator: str | None = None
    ratio: float = 0.0

    @property
    def arm(self) -> str:
        return "real" if self.generator is None else "synthetic"

    def key(self) -> tuple:
        return (self.dataset, float(self.fraction), int(self.seed), self.generator, float(self.ratio))

    @classmethod
    def of_row(cls, row: dict) -> "Cell":
        return cls(row["dataset"], float(row["fraction"]), int(row["seed"]), row.get("generator"),
                   float(row.get("ratio", 0.0)))


def plan(cfg: BenchConfig) -> list[Cell]:
    """Every cell of the grid, in run order: data set, fraction, seed; baseline first, then each
    generator with each ratio (so one generator training serves all its ratios)."""
    cells = []
    for d in cfg.datasets:
        for f in cfg.fractions:
            for s in cfg.seeds:
                cells.append(Cell(d.key, f, s))
                for g in cfg.generators:
                    cells += [Cell(d.key, f, s, g.key, r) for r in cfg.synthetic.ratios]
    return cells


# --------------------------------------------------------------------------- run folder
def prepare_run_dir(cfg: BenchConfig, out_dir: Path) -> None:
    """Create ``out_dir`` with the resolved config, or check that an existing one ran the same config."""
    resolved = to_dict(cfg)
    config_path = out_dir / "config.json"
    if config_path.is_file():
        previous = json.loads(config_path.read_text()).get("config")
        if previous != json.loads(json.dumps(resolved)):
            diff = sorted(_diff_keys(previous or {}, resolved))
            raise ConfigError(f"{out_dir} holds a run of a different config (differs in {diff[:8]}); finished results "
                              "there are kept. Use another --out folder, or delete that one to start over.")
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    versions = {"synthaug": __version__, "torch": torch.__version__, "python": platform.python_version()}
    for mod in ("timm", "torchmetrics", "accelerate"):
        versions[mod] = __import__(mod).__version__
    atomic_write_text(config_path, json.dumps({"config": resolved, "versions": versions}, indent=2))


def _diff_keys(a: Any, b: Any, prefix: str = "") -> set[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: set[str] = set()
        for k in set(a) | set(b):
            out |= _diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return set() if a == b else {prefix.rstrip(".")}



# --------------------------------------------------------------------------- one cell
def _generator_for(spec: GeneratorSpec, splits, cell: Cell, out_dir: Path, accelerator, parallel: str) -> Any:
    """Train (or reuse) ``spec`` on the training patients of this data set, fraction and seed only."""
    from accelerate.utils import set_seed

    from .generators.training import data_fingerprint

    gen_dir = out_dir / "generators" / cell.dataset / f"frac{cell.fraction:g}" / f"seed{cell.seed}" / spec.key
    fingerprint = data_fingerprint(splits.train)
    if (gen_dir / "done.json").is_file():
        done = json.loads((gen_dir / "done.json").read_text())
        if done.get("data") != fingerprint or done.get("spec") != spec.fingerprint():
            raise ConfigError(f"{gen_dir} holds a generator trained on other items or with other options "
                              f"({done.get('data')}, {done.get('spec')}) than this cell needs ({fingerprint}, "
                              f"{spec.fingerprint()}); use another --out folder")
        return load_generator(gen_dir / "checkpoint", device=accelerator.device)
    # The generator sees exactly the classifier's real training images (splits.train): never val or test
    # patients (load_dataset asserted the split; done.json records what it trained on).
    set_seed(cell.seed)  # the generator's initial weights depend on the seed alone, not on what ran before
    gen = create_generator(spec.name, num_classes=splits.num_classes, image_size=splits.image_size,
                           channels=splits.channels, **spec.options)
    train_cfg = GeneratorTrainConfig(**{**to_dict(spec.train), "seed": cell.seed})
    # resume=True: a run killed while training this generator continues from its last checkpoint
    gen = train_generator(gen, splits.train, config=train_cfg, out_dir=gen_dir, accelerator=accelerator,
                          desc=f"{cell.dataset} {cell.fraction:g} seed {cell.seed}: {spec.key}", resume=True,
                          parallel=parallel)
    accelerator.free_memory()
    if accelerator.is_main_process:
        atomic_write_text(gen_dir / "done.json", json.dumps({"steps": train_cfg.steps, "train_items": len(splits.train),
                                                             "data": fingerprint, "spec": spec.fingerprint()}))
    accelerator.wait_for_everyone()
    return gen


def quality_dir(out_dir: Path, dataset: str, fraction: float, seed: int, label: str) -> Path:
    return Path(out_dir) / "quality" / dataset / f"frac{fraction:g}" / f"seed{seed}" / label


def _quality_for(cfg: BenchConfig, data: DataConfig, splits, gen: Any, cell: Cell, spec: GeneratorSpec,
                 positive: int, out_dir: Path, device: Any = "cpu") -> dict:
    """FID/KID/precision/recall/memorization/CAS of one trained generator (skipped when already written).

    Features: a classifier trained on *all* training patients of this seed (a superset of this fraction's
    training patients; never a validation or test patient), cached per data set and seed in
    ``<run>/extractors``. The memorization audit compares with the images this generator trained on; CAS
    trains on synthetic images only and is compared with a classifier trained on this fraction's real images.
    """
    import warnings

    from .metrics import evaluate_generator, get_feature_extractor

    folder = quality_dir(out_dir, cell.dataset, cell.fraction, cell.seed, spec.key)
    if (folder / "quality.json").is_file():
        return json.loads((folder / "quality.json").read_text())
    q = cfg.quality
    recipe = {"model": q.extractor_model, "steps": q.extractor_steps}
    full = splits if cell.fraction == 1.0 else data.load(cell.seed, 1.0)
    if not set(splits.info["train_groups"]) <= set(full.info["train_groups"]):
        raise RuntimeError(f"{cell}: the fraction's training patients are not within the seed's training patients")
    # the main process alone (the others wait): its classifiers must not wait for the other processes
    with single_process(device), warnings.catch_warnings():
        # "extractor not trained on this split's items": it is, on a superset of them (asserted above)
        warnings.filterwarnings("ignore", message="the feature extractor was not trained on this split")
        extractor = get_feature_extractor(full, dataset_key=cell.dataset, seed=cell.seed,
                                          cache_dir=out_dir / "extractors", verbose=False, **recipe)
        result = evaluate_generator(gen, splits, n=q.n, seed=cell.seed, extractor=extractor, cas=q.cas,
                                    cas_images=q.cas_images, out_dir=folder, dataset_key=cell.dataset, recipe=recipe,
                                    positive=positive)
    result["extractor"]["trained_on"] = f"all {len(full.train)} training images of seed {cell.seed} (fraction 1)"
    from .utils import atomic_write_text

    atomic_write_text(folder / "quality.json", json.dumps(result, indent=2))
    return result


def _train_and_evaluate(cfg: BenchConfig, splits, train_set, cell: Cell, positive: int, accelerator) -> dict:
    from accelerate.utils import set_seed

    c = cfg.classifier
    set_seed(cell.seed)  # the same initial weights in every arm of a seed
    model = create_classifier(c.model, num_classes=splits.num_classes, channels=splits.channels)
    model = train_classifier(model, train_set, steps=c.steps, batch_size=c.batch_size, lr=c.lr,
                             weight_decay=c.weight_decay, seed=cell.seed, num_workers=c.num_workers,
                             accelerator=accelerator, augment=StandardAugment(c.augment),
                             desc=f"{cell.fraction:g} seed {cell.seed}: {cell.generator or 'real'}"
                                  + (f" @ {cell.ratio:g}" if cell.generator else ""))
    out = {}
    for part in ("val", "test"):
        data = getattr(splits, part)
        probs, targets = predict(model, data, batch_size=c.eval_batch_size, accelerator=accelerator)
        if len(targets) != len(data):
            raise RuntimeError(f"{part}: gathered {len(targets)} predictions for {len(data)} items")
        if not torch.equal(targets.cpu(), torch.as_tensor(np.asarray(data.targets)).long()):
            raise RuntimeError(f"{part}: the gathered targets are not the data set's, in order (duplicated or "
                               "dropped items across processes)")
        out[part] = compute_metrics(probs, targets, positive=positive)
    accelerator.free_memory()
    return out


def _validate_models(cfg: BenchConfig) -> None:
    """Fail before any training when a generator or the classifier cannot be built from the config."""
    for d in cfg.datasets:
        splits = d.load(cfg.seeds[0], cfg.fractions[0])
        try:
            for g in cfg.generators:
                create_generator(g.name, num_classes=splits.num_classes, image_size=splits.image_size,
                                 channels=splits.channels, **g.options)
            create_classifier(cfg.classifier.model, num_classes=splits.num_classes, channels=splits.channels)
            _positive_index(cfg, d, splits.classes)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"config of {cfg.name!r}, data set {d.name}: {err}") from err
        if cfg.classifier.batch_size % max(1, _world_size()):
            raise ConfigError(f"classifier.batch_size={cfg.classifier.batch_size} must be divisible by the number of "
                              f"processes ({_world_size()})")


def _world_size() -> int:
    import os

    return int(os.environ.get("WORLD_SIZE", "1"))


def _positive_index(cfg: BenchConfig, data: DataConfig, classes: list[str]) -> int:
    wanted = cfg.positive_class.get(data.name) if isinstance(cfg.positive_class, dict) else cfg.positive_class
    if wanted is None:
        return 1
    if wanted not in classes:
        raise ConfigError(f"positive_class={wanted!r} is not a class of {data.name}: {classes}")
    return classes.index(wanted)


def run_benchmark(cfg: BenchConfig, out_dir: str | Path, *, accelerator: Any = None) -> list[dict]:
    """Run every cell of the grid not yet in ``out_dir/results.jsonl``; return all rows.

    A killed run loses at most the cell in progress (and resumes a generator training from its last
    checkpoint); a rerun skips finished cells. Writes ``summary.md`` and ``summary.json`` at the end.
    """
    from accelerate import Accelerator

    started = time.time()
    accelerator = accelerator or Accelerator()
    out_dir = Path(out_dir)
    main = accelerator.is_main_process
    with accelerator.main_process_first():  # one process decodes an empty cache, the others then read it
        _validate_models(cfg)
    if main:
        prepare_run_dir(cfg, out_dir)
        # a start record: an invocation killed before its end record shows in the report as interrupted
        append_jsonl(out_dir / "runs.jsonl", {"started": _stamp(started), "status": "started",
                                              "processes": accelerator.num_processes})
    accelerator.wait_for_everyone()
    results_path = out_dir / "results.jsonl"
    done = {Cell.of_row(r).key() for r in read_jsonl(results_path)}
    cells = plan(cfg)
    specs = {g.key: g for g in cfg.generators}
    bar = tqdm(total=len(cells), initial=sum(c.key() in done for c in cells), desc=f"{cfg.name}: cells",
               disable=not main or None, dynamic_ncols=True)
    groups: dict[tuple, list[Cell]] = {}
    for c in cells:
        groups.setdefault((c.dataset, c.fraction, c.seed), []).append(c)
    data_of = {d.key: d for d in cfg.datasets}
    for (dkey, fraction, seed), group in groups.items():
        todo = [c for c in group if c.key() not in done]
        if not todo:
            continue
        data = data_of[dkey]
        with accelerator.main_process_first():
            splits = data.load(seed, fraction)
        positive = _positive_index(cfg, data, splits.classes)
        if main:
            atomic_write_text(out_dir / "splits" / dkey / f"frac{fraction:g}" / f"seed{seed}.json",
                              json.dumps(splits.info, indent=1))
            if splits.info.get("skipped_files"):
                atomic_write_text(out_dir / "skipped_files.txt", "\n".join(splits.info["skipped_files"]) + "\n")
        generators: dict[str, Any] = {}
        for cell in todo:
            start = time.time()
            real = splits.train.subset(np.arange(len(splits.train)))
            if cell.generator is None:
                train_set, n_syn = real, 0
            else:
                spec = specs[cell.generator]
                if spec.key not in generators:
                    generators[spec.key] = _generator_for(spec, splits, cell, out_dir, accelerator,
                                                             cfg.generator_parallel)
                    samples = out_dir / "samples" / f"{dkey}-frac{fraction:g}-{spec.key}.png"
                    if main and not samples.is_file():
                        write_samples_png(generators[spec.key], splits, samples, seed=seed)
                    if main and cfg.quality.wanted(fraction, seed):
                        try:
                            _quality_for(cfg, data, splits, generators[spec.key], cell, spec, positive, out_dir,
                                         accelerator.device)
                        except Exception as err:  # noqa: BLE001 - quality is a side measurement: record, go on
                            folder = quality_dir(out_dir, cell.dataset, cell.fraction, cell.seed, spec.key)
                            atomic_write_text(folder / "error.txt", f"{type(err).__name__}: {err}\n")
                            print(f"warning: sample quality of {spec.key} ({dkey}, fraction {fraction:g}, seed {seed}) "
                                  f"failed: {type(err).__name__}: {err}; written to {folder / 'error.txt'}; the grid "
                                  "goes on", flush=True)
                    accelerator.wait_for_everyone()
                train_set = SyntheticDataset(generators[spec.key], cell.ratio, real=real, seed=seed,
                                             label_distribution=cfg.synthetic.label_distribution,
                                             pool_size=cfg.synthetic.pool_size)
                n_syn = train_set.num_synthetic
            metrics = _train_and_evaluate(cfg, splits, train_set, cell, positive, accelerator)
            row = {"dataset": dkey, "fraction": fraction, "seed": seed, "arm": cell.arm, "generator": cell.generator,
                   "generator_name": specs[cell.generator].name if cell.generator else None, "ratio": cell.ratio,
                   "train_items": len(splits.train), "train_patients": len(splits.info["train_groups"]),
                   "synthetic_items": n_syn, "classifier_steps": cfg.classifier.steps,
                   "positive_class": splits.classes[positive] if splits.num_classes == 2 else None,
                   "val": metrics["val"], "test": metrics["test"], "seconds": round(time.time() - start, 1),
                   "processes": accelerator.num_processes}
            if main:
                append_jsonl(results_path, row)
            bar.update(1)
        accelerator.wait_for_everyone()
    bar.close()
    rows = read_jsonl(results_path)
    if main:
        ran = sum(len([c for c in g if c.key() not in done]) for g in groups.values())
        append_jsonl(out_dir / "runs.jsonl", {"started": _stamp(started), "status": "finished",
                                              "finished": _stamp(time.time()), "seconds": round(time.time() - started, 1),
                                              "cells_run": ran, "processes": accelerator.num_processes})
        analysis = analyze(rows, cfg)
        atomic_write_text(out_dir / "summary.json", json.dumps(_no_nan(analysis), indent=1))
        atomic_write_text(out_dir / "summary.md", summarize(rows, cfg, analysis=analysis))
    return rows


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t))


def write_samples_png(gen: Any, splits, path: Path, *, seed: int, per_class: int = 12) -> Path:
    """Real training images beside synthetic ones, one pair of rows per class."""
    rows = []
    rng = np.random.default_rng(seed)
    targets = np.asarray(splits.train.targets)
    for c, name in enumerate(splits.classes):
        idx = np.flatnonzero(targets == c)
        pick = rng.choice(idx, size=min(per_class, len(idx)), replace=False)
        real = torch.stack([splits.train[int(i)][0] for i in pick])
        fake = gen.sample(per_class, torch.full((per_class,), c, dtype=torch.long),
                          generator=torch.Generator().manual_seed(seed))
        rows += [(f"real\n{name}", real), (f"synthetic\n{name}", fake)]
    return save_comparison(rows, path, title=f"{gen.generator_name}: real training cells vs synthetic (seed {seed})")


# --------------------------------------------------------------------------- analysis
def _stat(values: list[float]) -> dict[str, float]:
    mean, lo, hi = mean_ci(values)
    return {"mean": mean, "lo": lo, "hi": hi}


def analyze(rows: list[dict], cfg: BenchConfig) -> dict:
    """Means and 95 % t-intervals over seeds per setting, paired differences to the baseline (same data
    set, fraction and seed), the ratio selected on validation per (data set, fraction, generator), and
    the verdict of the selected setting on the test patients. JSON-serialisable (NaN for "not enough")."""
    primary = cfg.primary_metric
    base: dict[tuple, dict[int, dict]] = {}
    synth: dict[tuple, dict[int, dict]] = {}
    for r in rows:
        if r.get("generator") is None:
            base.setdefault((r["dataset"], float(r["fraction"])), {})[int(r["seed"])] = r
        else:
            key = (r["dataset"], float(r["fraction"]), r["generator"], float(r["ratio"]))
            synth.setdefault(key, {})[int(r["seed"])] = r
    baselines, settings = [], []
    for (d, f), by_seed in sorted(base.items()):
        seeds = sorted(by_seed)
        baselines.append({"dataset": d, "fraction": f, "seeds": seeds,
                          "train_patients": sorted({by_seed[s]["train_patients"] for s in seeds}),
                          "train_items": sorted({by_seed[s]["train_items"] for s in seeds}),
                          **{part: {m: _stat([by_seed[s][part][m] for s in seeds]) for m in METRICS}
                             for part in ("val", "test")}})
    for (d, f, g, ratio), by_seed in sorted(synth.items()):
        b = base.get((d, f), {})
        seeds = sorted(set(by_seed) & set(b))
        entry = {"dataset": d, "fraction": f, "generator": g, "ratio": ratio, "seeds": seeds, "selected": False}
        for part in ("val", "test"):
            entry[part] = {m: _stat([by_seed[s][part][m] for s in seeds]) for m in METRICS}
            entry[f"diff_{part}"] = {m: paired_difference([by_seed[s][part][m] for s in seeds],
                                                          [b[s][part][m] for s in seeds]) for m in METRICS}
        settings.append(entry)
    verdicts = []
    families: dict[tuple, list[dict]] = {}
    for e in settings:
        families.setdefault((e["dataset"], e["fraction"], e["generator"]), []).append(e)
    for (d, f, g), family in sorted(families.items()):
        scored = [e for e in family if e["seeds"]]
        if not scored:
            continue
        most = max(len(e["seeds"]) for e in scored)
        complete = [e for e in scored if len(e["seeds"]) == most]
        # the ratio with the best mean validation score (ties: the smaller ratio); test is not looked at
        best = max(complete, key=lambda e: (np.nan_to_num(e["val"][primary]["mean"], nan=-np.inf), -e["ratio"]))
        best["selected"] = True
        diff = best["diff_test"][primary]
        baseline = next(b for b in baselines if b["dataset"] == d and b["fraction"] == f)
        verdicts.append({"dataset": d, "fraction": f, "generator": g, "ratio": best["ratio"],
                         "ratios_tried": sorted(e["ratio"] for e in family), "seeds": best["seeds"],
                         "train_patients": baseline["train_patients"], "metric": primary,
                         "baseline": {k: baseline["test"][primary][k] for k in ("mean", "lo", "hi")},
                         "synthetic": best["test"][primary], "diff": diff,
                         "verdict": verdict(diff["lo"], diff["hi"]),
                         "complete": len(best["seeds"]) == len(cfg.seeds)})
    return {"name": cfg.name, "primary_metric": primary, "selection": "validation patients, mean over seeds",
            "interval": "95 % Student t over seeds; differences paired by seed with a paired t-test",
            "baselines": baselines, "settings": settings, "verdicts": verdicts}


# --------------------------------------------------------------------------- summary
def _fmt(mean: float, lo: float, hi: float, signed: bool = False) -> str:
    """``mean [lo, hi]``, the interval clipped to the metric's range ([0, 1], or [-1, 1] for differences)."""
    if np.isnan(mean):
        return "n/a"
    f = "{:+.3f}" if signed else "{:.3f}"
    lo, hi = max(lo, -1.0 if signed else 0.0), min(hi, 1.0)
    ci = "" if np.isnan(lo) else f" [{f.format(lo)}, {f.format(hi)}]"
    return f.format(mean) + ci


def summarize(rows: list[dict], cfg: BenchConfig, *, analysis: dict | None = None) -> str:
    """Markdown: the verdict per data set, fraction and generator (ratio selected on validation, scored
    on test), every setting with its validation and test differences, and all metrics of the selected
    settings."""
    analysis = analysis or analyze(rows, cfg)
    primary = cfg.primary_metric
    gens = ", ".join(f"`{g.key}` ({g.name}, {g.train.steps} steps)" for g in cfg.generators) or "none"
    lines = [f"# {cfg.name}: does synthetic data help the classifier?", ""]
    if not rows:
        return "\n".join(lines + ["No finished results yet."]) + "\n"
    positives = sorted({str(r.get("positive_class")) for r in rows})
    lines += [
        f"- data: {', '.join(f'`{d.name}` at {d.image_size} px' for d in cfg.datasets)}; split by patient "
        f"{cfg.datasets[0].split}; real training fractions (of the training patients) {cfg.fractions}",
        f"- classifier: `{cfg.classifier.model}` from scratch, {cfg.classifier.steps} steps x batch "
        f"{cfg.classifier.batch_size} in every arm, augmentation `{cfg.classifier.augment}` in every arm, "
        "the same initial weights per seed",
        f"- generators: {gens}; each trained per data set, fraction and seed on that cell's training patients only",
        f"- synthetic ratios {cfg.synthetic.ratios} ({cfg.synthetic.label_distribution} labels); the ratio is "
        f"**selected on the validation patients** ({primary}, mean over seeds) and only the selected one is scored "
        "on test below",
        f"- seeds {cfg.seeds}; positive class for binary metrics: {', '.join(positives)}",
        f"- {analysis['interval']}; verdict: \"helps\" / \"hurts\" when the 95 % interval of the difference excludes 0, "
        "else \"no significant difference\"",
        "",
        f"## Verdicts on the test patients ({primary})",
        "",
        "| data set | fraction | train patients | generator | ratio (val-selected) | real only | real + synthetic "
        "| difference | p | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in analysis["verdicts"]:
        d = v["diff"]
        p = "n/a" if _isnan(d["p"]) else f"{d['p']:.3f}"
        partial = "" if v["complete"] else f" ({len(v['seeds'])} of {len(cfg.seeds)} seeds)"
        lines.append(f"| {v['dataset']} | {v['fraction']:g} | {_list(v['train_patients'])} | {v['generator']} | "
                     f"{v['ratio']:g} | {_fmt(**_triple(v['baseline']))} | {_fmt(**_triple(v['synthetic']))} | "
                     f"{_fmt(d['mean'], d['lo'], d['hi'], signed=True)} | {p} | **{v['verdict']}**{partial} |")
    lines += ["", "## Every setting", "",
              "Validation decides; test is shown for transparency. `selected` marks the ratio chosen on validation.", "",
              f"| data set | fraction | generator | ratio | selected | val difference ({primary}) | "
              f"test difference ({primary}) | test p |", "|---|---|---|---|---|---|---|---|"]
    for e in analysis["settings"]:
        dv, dt = e["diff_val"][primary], e["diff_test"][primary]
        p = "n/a" if _isnan(dt["p"]) else f"{dt['p']:.3f}"
        lines.append(f"| {e['dataset']} | {e['fraction']:g} | {e['generator']} | {e['ratio']:g} | "
                     f"{'yes' if e['selected'] else ''} | {_fmt(dv['mean'], dv['lo'], dv['hi'], signed=True)} | "
                     f"{_fmt(dt['mean'], dt['lo'], dt['hi'], signed=True)} | {p} |")
    lines += ["", "## All metrics of the selected settings (test patients)", ""]
    baselines = {(b["dataset"], b["fraction"]): b for b in analysis["baselines"]}
    for e in analysis["settings"]:
        if not e["selected"]:
            continue
        b = baselines[(e["dataset"], e["fraction"])]
        lines += [f"### {e['dataset']}, fraction {e['fraction']:g}, {e['generator']} at ratio {e['ratio']:g} "
                  f"({len(e['seeds'])} seeds)", "",
                  "| metric | real only | real + synthetic | difference | p | verdict |", "|---|---|---|---|---|---|"]
        for m in METRICS:
            d = e["diff_test"][m]
            p = "n/a" if _isnan(d["p"]) else f"{d['p']:.3f}"
            name = f"**{m}**" if m == primary else m
            lines.append(f"| {name} | {_fmt(**_triple(b['test'][m]))} | {_fmt(**_triple(e['test'][m]))} | "
                         f"{_fmt(d['mean'], d['lo'], d['hi'], signed=True)} | {p} | {verdict(d['lo'], d['hi'])} |")
        lines.append("")
    lines += [f"The verdicts are read on the primary metric ({primary}), chosen before the run. The other metrics are "
              "descriptive: many metrics and settings tested at 95 % each are not corrected for multiple comparisons.",
              ""]
    return "\n".join(lines)


def _no_nan(obj: Any) -> Any:
    """NaN (too few seeds) as null, so summary.json is standard JSON (browsers, jq)."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_no_nan(v) for v in obj]
    return obj


def _triple(s: dict) -> dict:
    return {"mean": s["mean"], "lo": s["lo"], "hi": s["hi"]}


def _isnan(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _list(values: list) -> str:
    return str(values[0]) if len(values) == 1 else f"{min(values)}-{max(values)}"
