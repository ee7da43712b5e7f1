"""The benchmark's config schema (dataclasses filled from YAML) and the grid of cells it plans.

A config lists data sets, real training fractions (of the training patients), seeds, generators and
synthetic ratios; ``plan`` turns it into the cells the runner trains, in run order.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from ..checks import check_choice, check_float
from ..augment import check_augment
from ..classifier import BN_MODES, METRICS
from ..config import ConfigError, to_dict
from ..data import dataset_short_name, load_dataset
from ..data.design import PatientDesign
from ..data.splits import check_split
from ..generators import GeneratorTrainConfig
from ..mix.additive import extra_per_batch
from ..quality.gate import GateConfig
from ..mix.quotas import check_ratio
from ..options import option, validate_fields
from ..tracking import check_log_with

# "a fraction of the training patients": said by every message about a real training fraction
_FRACTION_HINT = "a fraction of the training patients"
MIXES = ("replace", "additive")


# --------------------------------------------------------------------------- checks of single options
def _split(value: Any, name: str, owner: str) -> Any:
    check_split(value)
    return value


def _design(value: Any, name: str, owner: str) -> Any:
    PatientDesign.from_mapping(value, "data.design")
    return value  # the config keeps the mapping (its saved form); loading builds the design


def _channels(value: Any, name: str, owner: str) -> int:
    if value not in (1, 3) or isinstance(value, bool):
        raise ValueError(f"data.{name}={value!r}: use 1 (greyscale) or 3 (RGB)")
    return value


def _group_aliases(value: Any, name: str, owner: str) -> Any:
    if not (isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())):
        raise ValueError(f"data.{name}={value!r}: give a mapping of patient id -> group, "
                         "e.g. {C47P8thin_Original_Motic: C47P8}")
    return value


def _regex(value: Any, name: str, owner: str) -> str:
    try:
        re.compile(value)
    except re.error as err:
        raise ValueError(f"{name}={value!r} is not a valid regular expression ({err})") from None
    return value


def _augment(value: Any, name: str, owner: str) -> str:
    return check_augment(value)


def _log_with(value: Any, name: str, owner: str) -> list[str] | None:
    return check_log_with(value, name)


def _label_distribution(value: Any, name: str, owner: str) -> Any:
    if isinstance(value, str):
        return check_choice(value, name, owner, ("match", "balanced"), hint="or a mapping {class name or id: weight}")
    check_weights(value)
    return value


@dataclass
class DataConfig:
    name: str = "malaria"
    root: str | None = None
    image_size: int = 32
    train_fraction: float = option(1.0, "share of the training patients kept", minimum=0, min_inclusive=False,
                                   maximum=1, hint=_FRACTION_HINT)
    split: list[float] = option(help="train, val, test shares of the patients", check=_split,
                                default_factory=lambda: [0.7, 0.1, 0.2])
    on_bad_file: str = option("error", "an unreadable file: stop, or skip it (listed in the run folder)",
                              choices=("error", "skip"))
    group_pattern: str | None = option(None, "folder data sets: regex whose first group is the patient id of a file "
                                       "name", check=_regex)
    group_aliases: dict[str, str] | None = option(None, "patient id -> group, for ids that name one patient twice",
                                                  check=_group_aliases)
    channels: int = option(3, "1 keeps a greyscale folder one channel (MedMNIST keeps its own)", check=_channels)
    # fixed patient roles instead of split/train_fraction: {val_patients, test_patients, donor_patients, seed,
    # train: donor|site|all, site_patients, draw} (synthaug.data.design.PatientDesign)
    design: dict | None = option(None, "fixed patient roles (synthaug.data.design.PatientDesign)", check=_design)

    def __post_init__(self) -> None:
        validate_fields(self)

    def load(self, seed: int, train_fraction: float | None = None):
        """The data set split by patient for ``seed``, keeping ``train_fraction`` of the training patients."""
        fraction = self.train_fraction if train_fraction is None else train_fraction
        return load_dataset(self.name, root=self.root, image_size=self.image_size, seed=seed,
                            train_fraction=fraction, split=tuple(self.split), on_bad_file=self.on_bad_file,
                            group_fn=self.group_pattern, group_aliases=self.group_aliases, channels=self.channels,
                            design=self.design)

    @property
    def key(self) -> str:
        """How results and folders name this data set: ``malaria-32px``, ``medmnist-breastmnist-28px``, or a
        folder's base name (``DIB-32px``), never a key built from an absolute path."""
        return f"{dataset_short_name(self.name)}-{self.image_size}px"


@dataclass
class ClassifierConfig:
    """The classifier every arm trains, and the training protocol (the same rule for every arm).

    Budget: ``steps`` optimizer steps, or with ``epochs`` (then ``steps: null``) passes over the cell's real
    training images, ``max(min_steps, ceil(epochs * real images / batch_size))`` steps, so every fraction
    trains to a comparable point. ``eval_every``: validation (the primary metric on the validation
    patients) every so many steps and at the last; the weights of the best step are kept and tested.
    ``bn``: ``recompute`` BatchNorm statistics on ``bn_batches`` batches of real training images after
    training (and before each validation), or ``keep`` those of training (which synthetic images shaped).
    """

    model: str = "resnet18"
    steps: int | None = option(160, "optimizer steps (null: an epochs budget)", minimum=1)
    epochs: float | None = option(None, "passes over the cell's real training images (null: a steps budget)",
                                  minimum=0, min_inclusive=False,
                                  hint="passes over the cell's real training images, e.g. 8")
    min_steps: int = option(0, "the floor of an epochs budget", minimum=0)
    eval_every: int | None = option(None, "validation every so many steps and at the last", minimum=1,
                                    hint="or null: no validation during training")
    batch_size: int = option(64, "real images per batch", minimum=1)
    lr: float = option(1e-3, "learning rate", minimum=0, min_inclusive=False)
    weight_decay: float = option(0.05, "weight decay", minimum=0)
    augment: str = option("flip-rot90", "augmentation: a preset or a pipeline file (synthaug.augment)", check=_augment)
    num_workers: int = option(0, "DataLoader workers", minimum=0)
    eval_batch_size: int = option(256, "images per batch when predicting", minimum=1)
    bn: str = option("recompute", "BatchNorm statistics after training: recompute on real images, or keep",
                     choices=BN_MODES)
    bn_batches: int = option(16, "real batches that recompute BatchNorm statistics", minimum=1)

    def __post_init__(self) -> None:
        validate_fields(self)
        if (self.steps is None) == (self.epochs is None):
            raise ValueError(f"classifier: steps={self.steps}, epochs={self.epochs}: give exactly one budget, a fixed "
                             "number of steps or epochs of real data (set the other to null, e.g. "
                             "--set classifier.steps=null --set classifier.epochs=8)")
        if self.steps is not None and self.min_steps:
            raise ValueError(f"classifier: min_steps={self.min_steps} is the floor of an `epochs` budget; with a "
                             "fixed `steps` leave it at 0")

    def budget(self, real_items: int) -> int:
        """Optimizer steps of a cell with ``real_items`` real training images (every arm of the cell alike)."""
        if self.steps is not None:
            return self.steps
        return max(self.min_steps, 1, math.ceil(self.epochs * real_items / self.batch_size))


@dataclass
class GeneratorSpec:
    """One generator of the grid: a registered name, its options and training budget. ``label`` names
    it in results (default: the name; give labels to compare two settings of one generator).

    ``source``: a ready source instead of a generator trained per cell, e.g. ``{folder: exports/cvae}``,
    ``{callable: "mypackage.gen:make"}`` or ``{diffusers: PATH}`` (``synthaug.sources``); its classes are
    checked against the data set's. ``name`` then becomes the source's kind."""

    name: str = "cvae"
    label: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    train: GeneratorTrainConfig = field(default_factory=GeneratorTrainConfig)
    source: dict[str, Any] | str | None = None
    # synthaug train: start from this checkpoint's weights (a fine-tune), e.g. runs/ddpm-donor/checkpoint; its
    # generator and options must be this entry's, and its training patients none of the split's val/test ones
    init_from: str | None = None

    def __post_init__(self) -> None:
        if self.source is not None:
            from ..sources import source_kind

            self.name = source_kind(self.source)  # refuses an unknown kind before any work starts
            if self.name == "pool":
                raise ValueError(f"generators: source {self.source!r} is a pool, which only holds images; give a "
                                 "source that samples: a folder of class folders ({folder: PATH}, e.g. from "
                                 "`synthaug export`), a checkpoint, a callable or a diffusers pipeline")
        if self.train.seed != 0:
            raise ValueError("generator train.seed: the generator's seed is the cell's seed; set `seeds` (benchmark) "
                             "or `seed` (synthaug train) instead")

    @property
    def key(self) -> str:
        return self.label or self.name

    def describe(self) -> str:
        """What the entry is, for summaries: ``cvae, 600 steps`` or ``folder source``."""
        return f"{self.name} source" if self.source is not None else f"{self.name}, {self.train.steps} steps"

    def check(self, splits: Any) -> None:
        """Fail before any work when this entry cannot serve ``splits``: a generator that cannot be built, or a
        source that cannot be opened or whose classes are not the data set's (a ValueError naming the entry)."""
        from ..generators import create_generator

        if self.source is None:
            create_generator(self.name, num_classes=splits.num_classes, image_size=splits.image_size,
                             channels=splits.channels, **self.options)
            return
        from ..sources import open_source_spec

        try:
            open_source_spec(self.source, classes=splits.classes, image_size=splits.image_size,
                             channels=splits.channels)
        except (OSError, ImportError) as err:
            raise ValueError(f"generators ({self.key}): source {self.source!r}: {err}") from err

    def fingerprint(self) -> str:
        """A short hash of the name, options and training budget: a reused checkpoint must match it."""
        train = to_dict(self.train)
        if not train["gate_every"]:  # off: the hash of a spec written before early stopping existed
            del train["gate_every"]
        if train.get("mixed_precision") is None:  # the Accelerator's: the hash of a spec from before the key
            train.pop("mixed_precision", None)
        spec = {"name": self.name, "options": self.options, "train": train}
        if self.init_from:  # a fine-tune is another generator (absent: the hash of a spec from before the key)
            spec["init_from"] = self.init_from
        text = json.dumps(spec, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


GeneratorConfig = GeneratorSpec  # the name ``synthaug train`` configs use


@dataclass
class SyntheticConfig:
    """How synthetic images enter the classifier's training.

    ``mix: replace``: a ratio r of each epoch's items is synthetic (``SyntheticDataset``), so at the same
    steps the arm sees fewer real images. ``mix: additive``: every step draws exactly the baseline's real
    batch, and ``round(r * batch_size)`` synthetic items are appended (r = synthetic per real item).
    ``ratios`` may hold 0 beside larger ones: ratio 0 is the real-only baseline, which validation can then
    choose ("validation chose no synthetic"); it is not trained again. ``real_matched`` (additive only,
    default on): a real-only control per ratio with the same draws as the additive arm (the extra items
    are real ones, repeated), the "is it just more compute?" control.
    """

    ratios: list[float] = field(default_factory=lambda: [0.3])
    mix: str = option("replace", "replace items of each epoch, or append them to each real batch", choices=MIXES)
    real_matched: bool | None = None
    label_distribution: str | dict[str, float] = option("match", "synthetic labels: the real class frequencies, "
                                                        "balanced, or a mapping of weights",
                                                        check=_label_distribution)
    pool_size: int | None = option(None, "distinct synthetic images", minimum=1,
                                   hint="or null: one image per synthetic item")

    def __post_init__(self) -> None:
        validate_fields(self)
        if not self.ratios or len(set(self.ratios)) != len(self.ratios):
            raise ValueError(f"synthetic.ratios={self.ratios}: give at least one ratio, without repeats")
        for r in self.ratios:
            if self.mix == "replace":
                check_ratio(r)
            else:
                check_float(r, "ratio", minimum=0, hint="synthetic items per real item of a batch, e.g. 0.25")
        if not any(r > 0 for r in self.ratios):
            raise ValueError(f"synthetic.ratios={self.ratios}: ratio 0 is the real-only baseline, which every grid "
                             "runs anyway; list at least one ratio > 0 (0 beside them lets validation choose no "
                             "synthetic)")
        if self.real_matched and self.mix != "additive":
            raise ValueError("synthetic.real_matched: with mix=replace every arm draws as many items as the "
                             "baseline, which is then the matched control; use it with mix=additive")

    @property
    def matched(self) -> bool:
        """Whether the grid runs the real-matched controls (additive mixing, unless turned off)."""
        return self.mix == "additive" and self.real_matched is not False


def check_weights(weights: dict[str, float]) -> None:
    """A ``label_distribution`` of class weights: numbers >= 0, at least one > 0 (a ValueError naming it)."""
    bad = {k: v for k, v in weights.items() if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0}
    if bad or not any(v > 0 for v in weights.values()):
        raise ValueError(f"label_distribution={weights!r}: weights must be numbers >= 0, at least one > 0")


@dataclass
class QualityConfig:
    """Sample quality of every generator the grid trains (``evaluate_generator``): FID, KID,
    precision/recall, memorization audit and CAS, in feature space of a classifier trained on all training
    patients of the seed (never val or test), cached in ``<run>/extractors``. CAS is scored on the validation
    patients; ``gate`` judges it (``quality_gate``) and the tables mark a rejected generator beside its verdict."""

    enabled: bool = True
    n: int = option(500, "synthetic images compared with as many real training images", minimum=2,
                    hint="compare at least 2 synthetic images, e.g. 500")
    cas: bool = True                  # train on synthetic only, score on the real validation patients
    cas_images: int | None = option(2000, "synthetic images CAS trains on (null: as many as real training images)",
                                    minimum=1, hint="or null")
    seeds: list[int] | None = None    # evaluate generators of these seeds only (null: every seed)
    fractions: list[float] | None = None  # ... and of these fractions only (null: every fraction)
    extractor_model: str = "test_resnet"
    extractor_steps: int = option(300, "training steps of the feature extractor", minimum=1)
    # reject (annotate, never drop) a generator whose CAS says its images do not carry the classes (issue 13)
    gate: GateConfig = field(default_factory=GateConfig)

    def __post_init__(self) -> None:
        validate_fields(self, prefix="quality.")
        if self.enabled and self.cas is False and self.gate.enabled:
            raise ValueError("quality.gate.enabled is true but quality.cas is false: the quality gate judges a "
                             "generator by its CAS; set quality.gate.enabled: false, or quality.cas: true")

    def wanted(self, fraction: float, seed: int) -> bool:
        """Whether the generator of this fraction and seed gets its sample quality measured."""
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
    primary_metric: str = option("balanced_accuracy", "the metric verdicts and choices are made on", choices=METRICS)
    # several processes: "replicate" trains each generator whole in every process (results identical to one
    # process); "data" splits its batches across processes (faster for big generators, equal statistically)
    generator_parallel: str = option("replicate", "several processes: each trains a generator whole, or splits its "
                                     "batches", choices=("replicate", "data"))
    out_dir: str = "runs/{name}"
    log_with: list[str] | str | None = option(None, "Accelerate trackers (tensorboard, wandb, ...): "
                                              "synthaug/tracking.py", check=_log_with)
    project_dir: str | None = None            # where they write (default: the run folder)

    def __post_init__(self) -> None:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds={self.seeds}: give at least one seed, without repeats")
        validate_fields(self)
        self._check_datasets()
        self._check_fractions()
        self._check_extras()
        labels = [g.key for g in self.generators]
        if len(set(labels)) != len(labels):
            raise ValueError(f"generators: {labels} repeat a name; give each entry a distinct `label`")
        if "real" in labels:
            raise ValueError("generators: 'real' names the baseline; choose another label")
        self._check_early_stopping()
        for name, chosen in (("seeds", self.quality.seeds), ("fractions", self.quality.fractions)):
            missing = [v for v in chosen or [] if v not in getattr(self, name)]
            if missing:
                raise ValueError(f"quality.{name}={chosen}: {missing} are not in the grid's {name} "
                                 f"{getattr(self, name)}")

    def _check_early_stopping(self) -> None:
        """``train.gate_every`` stops a generator's training once the quality gate (``quality.gate``) passes."""
        for i, g in enumerate(self.generators):
            if g.train.gate_every and not self.quality.gate.enabled:
                raise ValueError(f"generators[{i}] ({g.key}): train.gate_every={g.train.gate_every} stops training "
                                 "once the quality gate passes, and quality.gate.enabled is false; set "
                                 "quality.gate.enabled: true, or train.gate_every: 0")

    def _check_datasets(self) -> None:
        if not self.datasets:
            raise ValueError("datasets: list at least one data set")
        keys = [d.key for d in self.datasets]
        if len(set(keys)) != len(keys):
            raise ValueError(f"datasets: {keys} repeat a data set at the same image size")
        for d in self.datasets:
            if d.train_fraction != 1.0:
                raise ValueError(f"datasets: {d.name}: set the real training fractions in `fractions`, not "
                                 f"train_fraction={d.train_fraction} of the data set")

    def _check_extras(self) -> None:
        """Additive mixing: every ratio > 0 must append at least one item per batch, and two ratios must not
        append the same number (they would train the same arm twice)."""
        if self.synthetic.mix != "additive":
            return
        counts = {r: self.extra_per_batch(r) for r in self.synthetic.ratios if r > 0}
        empty = [r for r, n in counts.items() if n == 0]
        if empty:
            raise ValueError(f"synthetic.ratios: {empty} append no synthetic item to a batch of "
                             f"{self.classifier.batch_size} (round(ratio * batch_size) = 0); use larger ratios")
        if len(set(counts.values())) != len(counts):
            raise ValueError(f"synthetic.ratios={self.synthetic.ratios} append {sorted(counts.values())} synthetic items to "
                             f"a batch of {self.classifier.batch_size}: two ratios give the same batch; drop one")

    def extra_per_batch(self, ratio: float) -> int:
        """Items appended to each real batch by an additive arm (and its real-matched control) of ``ratio``."""
        return extra_per_batch(ratio, self.classifier.batch_size) if self.synthetic.mix == "additive" else 0

    def check_processes(self, world: int) -> None:
        """Refuse, before any work, a batch that ``world`` processes cannot share equally."""
        sizes = {"classifier.batch_size": self.classifier.batch_size}
        sizes.update({f"the {self.extra_per_batch(r)} items appended at ratio {r:g}": self.extra_per_batch(r)
                      for r in self.synthetic.ratios})
        for what, n in sizes.items():
            if n % max(1, world):
                raise ConfigError(f"{what} must be divisible by the number of processes ({world}): each process "
                                  "takes an equal share of every batch")

    def _check_fractions(self) -> None:
        if not self.fractions or len(set(self.fractions)) != len(self.fractions):
            raise ValueError(f"fractions={self.fractions}: give at least one fraction, without repeats")
        for f in self.fractions:
            if not (0 < f <= 1):  # "fractions: <value>": the message names the list entry, not one option
                raise ValueError(f"fractions: {f!r} must be in (0, 1] ({_FRACTION_HINT})")


# --------------------------------------------------------------------------- cells
@dataclass(frozen=True)
class Cell:
    """One classifier training: a data set, a fraction, a seed, and a generator + ratio. Without a generator:
    the real-only baseline (ratio 0), or the real-matched control of the additive arms of that ratio."""

    dataset: str
    fraction: float
    seed: int
    generator: str | None = None
    ratio: float = 0.0

    @property
    def arm(self) -> str:
        """``real``, ``real-matched`` or ``synthetic``: what results.jsonl calls the arm."""
        if self.generator is not None:
            return "synthetic"
        return "real" if self.ratio == 0 else "real-matched"

    def key(self) -> tuple:
        return (self.dataset, float(self.fraction), int(self.seed), self.generator, float(self.ratio))

    @classmethod
    def of_row(cls, row: dict) -> "Cell":
        return cls(row["dataset"], float(row["fraction"]), int(row["seed"]), row.get("generator"),
                   float(row.get("ratio", 0.0)))


def plan(cfg: BenchConfig) -> list[Cell]:
    """Every cell of the grid, in run order: data set, fraction, seed; baseline first, then the real-matched
    controls (additive mixing), then each generator with each ratio > 0 (so one generator training serves all
    its ratios). Ratio 0 has no cell of its own: it is the baseline, trained once."""
    ratios = [r for r in cfg.synthetic.ratios if r > 0]
    cells = []
    for d in cfg.datasets:
        for f in cfg.fractions:
            for s in cfg.seeds:
                cells.append(Cell(d.key, f, s))
                if cfg.synthetic.matched:
                    cells += [Cell(d.key, f, s, None, r) for r in ratios]
                for g in cfg.generators:
                    cells += [Cell(d.key, f, s, g.key, r) for r in ratios]
    return cells
