"""Benchmark v1: real-only vs real + synthetic, same classifier, steps, augmentation and seeds.

For each seed: split by patient, keep ``train_fraction`` of the training patients, train the
generator on exactly those training images, then train the classifier twice (real only; real +
``SyntheticDataset(ratio)``) and evaluate both on the validation and test patients.
"""
from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from . import __version__
from .classifier import METRICS, StandardAugment, compute_metrics, create_classifier, predict, train_classifier
from .config import ConfigError, to_dict
from .data import load_dataset
from .generators import GeneratorTrainConfig, create_generator, load_generator, train_generator
from .stats import mean_ci, paired_difference, verdict
from .synthetic import SyntheticDataset, check_ratio
from .utils import append_jsonl, atomic_write_text, read_jsonl
from .viz import save_comparison

ARMS = ("real", "synthetic")


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

    def load(self, seed: int):
        return load_dataset(self.name, root=self.root, image_size=self.image_size, seed=seed,
                            train_fraction=self.train_fraction, split=tuple(self.split), on_bad_file=self.on_bad_file,
                            group_fn=self.group_pattern)


@dataclass
class GeneratorConfig:
    name: str = "cvae"
    options: dict[str, Any] = field(default_factory=dict)
    train: GeneratorTrainConfig = field(default_factory=GeneratorTrainConfig)

    def __post_init__(self) -> None:
        if self.train.seed != 0:
            raise ValueError("generator.train.seed: the generator's seed is the run's seed; set `seeds` (benchmark) or "
                             "`seed` (synthaug train) instead")


@dataclass
class SyntheticConfig:
    ratio: float = 0.3
    label_distribution: str | dict[str, float] = "match"
    pool_size: int | None = None

    def __post_init__(self) -> None:
        check_ratio(self.ratio)
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
class BenchConfig:
    name: str = "bench"
    data: DataConfig = field(default_factory=DataConfig)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    positive_class: str | None = None
    primary_metric: str = "balanced_accuracy"
    out_dir: str = "runs/{name}"

    def __post_init__(self) -> None:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds={self.seeds}: give at least one seed, without repeats")
        if self.primary_metric not in METRICS:
            raise ValueError(f"primary_metric={self.primary_metric!r}: use one of {METRICS}")


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


# --------------------------------------------------------------------------- one seed
def _generator_for_seed(cfg: BenchConfig, splits, seed: int, out_dir: Path, accelerator) -> Any:
    """Train (or reuse, when finished before) the generator on this seed's training patients only."""
    from .generators.training import data_fingerprint

    gen_dir = out_dir / "generators" / f"seed{seed}"
    fingerprint = data_fingerprint(splits.train)
    if (gen_dir / "done.json").is_file():
        done = json.loads((gen_dir / "done.json").read_text())
        if done.get("data") != fingerprint:
            raise ConfigError(f"{gen_dir} holds a generator trained on other items ({done.get('data')}) than this "
                              f"seed's training patients ({fingerprint}); use another --out folder")
        return load_generator(gen_dir / "checkpoint", device=accelerator.device)
    # The generator sees exactly the classifier's real training images (splits.train): never val or test
    # patients (load_dataset asserted the split; done.json records what it trained on).
    from accelerate.utils import set_seed

    set_seed(seed)  # the generator's initial weights depend on the seed alone, not on what ran before
    gen = create_generator(cfg.generator.name, num_classes=splits.num_classes, image_size=splits.image_size,
                           channels=splits.channels, **cfg.generator.options)
    train_cfg = GeneratorTrainConfig(**{**to_dict(cfg.generator.train), "seed": seed})
    # resume=True: a run killed while training this generator continues from its last checkpoint
    gen = train_generator(gen, splits.train, config=train_cfg, out_dir=gen_dir, accelerator=accelerator,
                          desc=f"seed {seed}: {cfg.generator.name}", resume=True)
    accelerator.free_memory()
    if accelerator.is_main_process:
        atomic_write_text(gen_dir / "done.json", json.dumps({"steps": train_cfg.steps, "train_items": len(splits.train),
                                                             "data": fingerprint}))
    return gen


def _train_and_evaluate(cfg: BenchConfig, splits, train_set, seed: int, arm: str, positive: int, accelerator) -> dict:
    from accelerate.utils import set_seed

    c = cfg.classifier
    set_seed(seed)  # the same initial weights in both arms
    model = create_classifier(c.model, num_classes=splits.num_classes, channels=splits.channels)
    model = train_classifier(model, train_set, steps=c.steps, batch_size=c.batch_size, lr=c.lr,
                             weight_decay=c.weight_decay, seed=seed, num_workers=c.num_workers,
                             accelerator=accelerator, desc=f"seed {seed}: {arm}")
    out = {}
    for part in ("val", "test"):
        probs, targets = predict(model, getattr(splits, part), batch_size=c.eval_batch_size, accelerator=accelerator)
        if len(targets) != len(getattr(splits, part)):
            raise RuntimeError(f"{part}: gathered {len(targets)} predictions for {len(getattr(splits, part))} items")
        out[part] = compute_metrics(probs, targets, positive=positive)
    accelerator.free_memory()
    return out


def _validate_models(cfg: BenchConfig) -> None:
    """Fail before any training when the generator or classifier cannot be built from the config."""
    splits = cfg.data.load(cfg.seeds[0])
    try:
        create_generator(cfg.generator.name, num_classes=splits.num_classes, image_size=splits.image_size,
                         channels=splits.channels, **cfg.generator.options)
        create_classifier(cfg.classifier.model, num_classes=splits.num_classes, channels=splits.channels)
        _positive_index(cfg, splits.classes)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"config of {cfg.name!r}: {err}") from err


def _positive_index(cfg: BenchConfig, classes: list[str]) -> int:
    if cfg.positive_class is None:
        return 1
    if cfg.positive_class not in classes:
        raise ConfigError(f"positive_class={cfg.positive_class!r} is not a class of {cfg.data.name}: {classes}")
    return classes.index(cfg.positive_class)


def run_benchmark(cfg: BenchConfig, out_dir: str | Path, *, accelerator: Any = None) -> list[dict]:
    """Run every (seed, arm) not yet in ``out_dir/results.jsonl``; return all rows."""
    from accelerate import Accelerator

    accelerator = accelerator or Accelerator()
    out_dir = Path(out_dir)
    main = accelerator.is_main_process
    with accelerator.main_process_first():  # one process decodes an empty cache, the others then read it
        _validate_models(cfg)
    if main:
        prepare_run_dir(cfg, out_dir)
    accelerator.wait_for_everyone()
    results_path = out_dir / "results.jsonl"
    done = {(r["seed"], r["arm"]) for r in read_jsonl(results_path)}
    augment = StandardAugment(cfg.classifier.augment)
    for seed in tqdm(cfg.seeds, desc=cfg.name, disable=not main or None, dynamic_ncols=True):
        todo = [arm for arm in ARMS if (seed, arm) not in done]
        if not todo:
            continue
        with accelerator.main_process_first():
            splits = cfg.data.load(seed)
        positive = _positive_index(cfg, splits.classes)
        if main:
            atomic_write_text(out_dir / "splits" / f"seed{seed}.json", json.dumps(splits.info, indent=1))
            if splits.info.get("skipped_files"):
                atomic_write_text(out_dir / "skipped_files.txt", "\n".join(splits.info["skipped_files"]) + "\n")
        gen = _generator_for_seed(cfg, splits, seed, out_dir, accelerator) if "synthetic" in todo else None
        for arm in todo:
            start = time.time()
            real = splits.train.subset(np.arange(len(splits.train)))
            if arm == "real":
                real.transform = augment
                train_set, n_syn = real, 0
            else:
                train_set = SyntheticDataset(gen, cfg.synthetic.ratio, real=real, transform=augment, seed=seed,
                                             label_distribution=cfg.synthetic.label_distribution,
                                             pool_size=cfg.synthetic.pool_size)
                n_syn = train_set.num_synthetic
            metrics = _train_and_evaluate(cfg, splits, train_set, seed, arm, positive, accelerator)
            row = {"seed": seed, "arm": arm, "generator": cfg.generator.name if arm == "synthetic" else None,
                   "ratio": cfg.synthetic.ratio if arm == "synthetic" else 0.0, "ratio_choice": "fixed in config",
                   "train_items": len(splits.train), "train_patients": len(splits.info["train_groups"]),
                   "synthetic_items": n_syn, "classifier_steps": cfg.classifier.steps,
                   "positive_class": splits.classes[positive] if splits.num_classes == 2 else None,
                   "val": metrics["val"], "test": metrics["test"], "seconds": round(time.time() - start, 1),
                   "processes": accelerator.num_processes}
            if main:
                append_jsonl(results_path, row)
        if main and gen is not None and not (out_dir / "samples.png").is_file():
            write_samples_png(gen, splits, out_dir / "samples.png", seed=seed)
    accelerator.wait_for_everyone()
    rows = read_jsonl(results_path)
    if main:
        atomic_write_text(out_dir / "summary.md", summarize(rows, cfg))
    return rows


def write_samples_png(gen: Any, splits, path: Path, *, seed: int, per_class: int = 12) -> Path:
    """Real training images beside synthetic ones, one pair of rows per class."""
    rows = []
    rng = np.random.default_rng(seed)
    targets = splits.train.targets
    for c, name in enumerate(splits.classes):
        idx = np.flatnonzero(targets == c)
        pick = rng.choice(idx, size=min(per_class, len(idx)), replace=False)
        real = torch.stack([splits.train[int(i)][0] for i in pick])
        fake = gen.sample(per_class, torch.full((per_class,), c, dtype=torch.long),
                          generator=torch.Generator().manual_seed(seed))
        rows += [(f"real\n{name}", real), (f"synthetic\n{name}", fake)]
    return save_comparison(rows, path, title=f"{gen.generator_name}: real training cells vs synthetic (seed {seed})")


# --------------------------------------------------------------------------- summary
def _fmt(mean: float, lo: float, hi: float, signed: bool = False) -> str:
    """``mean [lo, hi]``, the interval clipped to the metric's range ([0, 1], or [-1, 1] for differences)."""
    if np.isnan(mean):
        return "n/a"
    f = "{:+.3f}" if signed else "{:.3f}"
    lo, hi = max(lo, -1.0 if signed else 0.0), min(hi, 1.0)
    ci = "" if np.isnan(lo) else f" [{f.format(lo)}, {f.format(hi)}]"
    return f.format(mean) + ci


def summarize(rows: list[dict], cfg: BenchConfig, *, part: str = "test") -> str:
    """Markdown: mean [95 % CI] per arm and metric, paired difference, p-value and verdict."""
    by_arm = {arm: {r["seed"]: r for r in rows if r["arm"] == arm} for arm in ARMS}
    paired = sorted(set(by_arm["real"]) & set(by_arm["synthetic"]))
    lines = [f"# {cfg.name}: real only vs real + synthetic ({cfg.generator.name}, ratio {cfg.synthetic.ratio})", ""]
    any_row = next(iter(rows), None)
    if any_row is None:
        return "\n".join(lines + ["No finished results yet."]) + "\n"
    lines += [
        f"- data: `{cfg.data.name}` at {cfg.data.image_size} px; classifier trained on {cfg.data.train_fraction:g} of the "
        f"training patients ({_range('train_patients', rows)} patients, {_range('train_items', rows)} cells per seed); "
        f"split by patient {cfg.data.split}",
        f"- classifier: `{cfg.classifier.model}` from scratch, {cfg.classifier.steps} steps x batch "
        f"{cfg.classifier.batch_size} in both arms, augmentation `{cfg.classifier.augment}` in both arms",
        f"- generator: `{cfg.generator.name}` trained on the same training patients only, "
        f"{cfg.generator.train.steps} steps; synthetic ratio {cfg.synthetic.ratio} fixed in the config (not tuned)",
        f"- seeds: {paired} (paired: same split and initial weights in both arms); metrics on the **{part}** patients; "
        "positive class for binary metrics: "
        f"{any_row.get('positive_class')}",
        "- 95 % confidence intervals: Student t over seeds (clipped to the metric's range); difference = "
        "(real + synthetic) - (real only), paired by seed, with a paired t-test p-value",
        "",
        "| metric | real only | real + synthetic | difference | p | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for metric in METRICS:
        real = [by_arm["real"][s][part][metric] for s in paired]
        syn = [by_arm["synthetic"][s][part][metric] for s in paired]
        d = paired_difference(syn, real)
        name = f"**{metric}**" if metric == cfg.primary_metric else metric
        p = "n/a" if np.isnan(d["p"]) else f"{d['p']:.3f}"
        lines.append(f"| {name} | {_fmt(*mean_ci(real))} | {_fmt(*mean_ci(syn))} | "
                     f"{_fmt(d['mean'], d['lo'], d['hi'], signed=True)} | {p} | {verdict(d['lo'], d['hi'])} |")
    real = [by_arm["real"][s][part][cfg.primary_metric] for s in paired]
    syn = [by_arm["synthetic"][s][part][cfg.primary_metric] for s in paired]
    d = paired_difference(syn, real)
    lines += ["", f"**Verdict ({cfg.primary_metric}, {len(paired)} seeds): {verdict(d['lo'], d['hi'])}** "
              f"(difference {_fmt(d['mean'], d['lo'], d['hi'], signed=True)}).", "",
              f"The verdict is read on the primary metric, chosen before the run. The other rows are descriptive: "
              f"six metrics tested at 95 % each are not corrected for multiple comparisons.", ""]
    return "\n".join(lines)


def _range(key: str, rows: list[dict]) -> str:
    values = sorted({r[key] for r in rows})
    return str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}"
