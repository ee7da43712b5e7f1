"""The strategies grid's config and plan (issue 14): *how* synthetic cells are used, each way against its control.

A strategies config (``configs/bench/malaria-strategies.yaml``) holds a ``strategies:`` list; ``benchmarks/run.py``
sees it and runs this grid instead of the generator-by-ratio one. Every arm is additive (it draws exactly the
baseline's real batches; what a strategy adds comes on top) and has a real-only control that gets the same draws
and the same treatment, with real cells where the strategy has synthetic ones:

- ``samples``: generator samples on top, hard labels; control ``real-repeat`` (the cell's real images again);
- ``weighted``: the same, each synthetic item's loss weighted ``weight``; control ``weighted-real`` (the real
  images again, weighted alike);
- ``teacher``: samples relabelled by the cell's baseline (soft, ``temperature``); control ``teacher-real`` (the
  real images, the same teacher: self-distillation);
- ``minority``: samples of one class only (``target_class``); control ``minority-real`` (that class's real images);
- ``edits``: ``EditSource`` edits of the cell's real images; control ``real-repeat`` (an edit of strength 0 is the
  cell itself);
- ``pretrain``: ``steps`` on samples only, then the budget on real; control ``pretrain-real`` (``steps`` on real,
  then the same);
- ``donor``: samples of a generator trained on *other* training patients (the donor pool), in their class mix;
  control ``donor-real``: those patients' real cells, the upper bound of sharing the data itself.

A list of values (``ratio: [0.25, 0.5]``) makes one setting per value; the setting is chosen on validation
patients. The donor pool: ``donor.patients`` of the seed's training patients, drawn from those outside the
largest fraction of the grid (fractions are nested), so no fraction's own patients, and never a validation or
test patient, train the donor generator.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from ..checks import check_choice, check_float, check_int
from ..classifier import METRICS
from ..mix.additive import extra_per_batch
from ..tracking import check_log_with
from .grid_config import ClassifierConfig, DataConfig, GeneratorSpec, QualityConfig, check_weights

KINDS = ("samples", "weighted", "teacher", "minority", "edits", "pretrain", "donor")
BASELINE = "baseline"
CONTROL_KINDS = ("real-repeat", "weighted-real", "teacher-real", "minority-real", "pretrain-real", "donor-real")
RESERVED = {BASELINE, *CONTROL_KINDS}
# the parameters a kind takes (besides ``ratio``, which every kind but pretrain takes)
_PARAMS = {"samples": (), "weighted": ("weight",), "teacher": ("temperature",), "minority": (),
           "edits": ("strength",), "pretrain": (), "donor": ()}
_SHORT = {"ratio": "r", "weight": "w", "temperature": "T", "strength": "s"}


def _values(value: Any, name: str, owner: str, *, minimum: float, min_inclusive: bool = True,
            maximum: float | None = None) -> list[float]:
    values = value if isinstance(value, list) else [value]
    if not values or len(set(values)) != len(values):
        raise ValueError(f"{owner}.{name}={value!r}: give a number or a list of distinct numbers")
    for v in values:
        check_float(v, name, owner, minimum=minimum, min_inclusive=min_inclusive, maximum=maximum)
    return [float(v) for v in values]


@dataclass
class StrategySpec:
    """One way of using synthetic cells; lists give settings to choose among on validation."""

    kind: str = "samples"
    label: str | None = None
    ratio: float | list[float] = 0.25           # synthetic items per real item of a batch (not pretrain)
    weight: float | list[float] = 0.3           # weighted: what a synthetic item's loss counts
    temperature: float | list[float] = 2.0      # teacher: softmax(logits / T) of the baseline classifier
    target_class: str = "positive"              # minority: a class name, "positive" or "weakest" (validation recall)
    strength: float | list[float] = 0.1         # edits: share of the noise schedule (ddpm) or latent step (VAE)
    per_image: int = 4                          # edits: distinct edits per real image
    steps: int | None = None                    # pretrain: steps on synthetic only (null: the cell's budget)
    pool_size: int | None = None                # its distinct synthetic images (null: synthetic.pool_size; not donor)

    def __post_init__(self) -> None:
        check_choice(self.kind, "kind", "strategies", KINDS)
        owner = f"strategies ({self.key})"
        self.ratio = _values(self.ratio, "ratio", owner, minimum=0, min_inclusive=False)
        self.weight = _values(self.weight, "weight", owner, minimum=0)
        self.temperature = _values(self.temperature, "temperature", owner, minimum=0, min_inclusive=False)
        self.strength = _values(self.strength, "strength", owner, minimum=0, min_inclusive=False, maximum=1)
        check_int(self.per_image, "per_image", owner, minimum=1)
        if self.steps is not None:
            check_int(self.steps, "steps", owner, minimum=1, hint="or null: the cell's budget")
        if self.pool_size is not None:
            check_int(self.pool_size, "pool_size", owner, minimum=1, hint="or null: synthetic.pool_size")
        if self.kind == "pretrain" and len(self.ratio) > 1:
            raise ValueError(f"{owner}: pretrain draws synthetic images alone, then real ones: it takes no ratio list")

    @property
    def key(self) -> str:
        return self.label or self.kind

    def settings(self) -> list[dict[str, float]]:
        """Every combination of this strategy's listed values, as ``{parameter: value}``."""
        names = ([] if self.kind == "pretrain" else ["ratio"]) + list(_PARAMS[self.kind])
        grids = [getattr(self, n) for n in names]
        fixed: dict[str, Any] = {}
        if self.kind == "minority":
            fixed["target_class"] = self.target_class  # "positive", "weakest" or a class name
        if self.kind == "pretrain":
            fixed["steps"] = self.steps or "budget"    # steps on synthetic (the control: on real) first
        return [{**dict(zip(names, combo)), **fixed} for combo in itertools.product(*grids)]


@dataclass
class DonorConfig:
    """The donor pool of the ``donor`` strategy: ``patients`` of the seed's training patients, outside the
    grid's largest fraction; ``generator``: what trains on them (null: the grid's generator); ``pool_size``: the
    distinct images its arm draws from (null: as many as the donor patients' real cells, what its upper bound
    draws from), sampled once per seed into the donor generator's folder."""

    patients: float = 0.25
    generator: GeneratorSpec | None = None
    pool_size: int | None = None

    def __post_init__(self) -> None:
        check_float(self.patients, "patients", "donor", minimum=0, min_inclusive=False, maximum=1,
                    hint="a share of the seed's training patients, e.g. 0.25")
        if self.pool_size is not None:
            check_int(self.pool_size, "pool_size", "donor", minimum=1, hint="or null: as many as the donor's real cells")


@dataclass
class StrategyPools:
    """The synthetic images a strategy arm cycles through: ``pool_size`` per source and class mix, labels in the
    real class frequencies (``match``), ``balanced`` or a mapping."""

    pool_size: int = 512
    label_distribution: str | dict[str, float] = "match"

    def __post_init__(self) -> None:
        check_int(self.pool_size, "pool_size", "synthetic", minimum=1)
        if isinstance(self.label_distribution, str):
            check_choice(self.label_distribution, "label_distribution", "synthetic", ("match", "balanced"))
        else:
            check_weights(self.label_distribution)


@dataclass
class StrategiesConfig:
    """A grid of strategies: data set, fractions and seeds as the benchmark's, one generator (trained per
    fraction and seed on that cell's training patients only), the donor pool, the strategies."""

    name: str = "strategies"
    datasets: list[DataConfig] = field(default_factory=lambda: [DataConfig()])
    fractions: list[float] = field(default_factory=lambda: [0.02])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    generator: GeneratorSpec = field(default_factory=GeneratorSpec)
    donor: DonorConfig = field(default_factory=DonorConfig)
    strategies: list[StrategySpec] = field(default_factory=lambda: [StrategySpec()])
    synthetic: StrategyPools = field(default_factory=StrategyPools)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    positive_class: str | None = None
    primary_metric: str = "balanced_accuracy"
    generator_parallel: str = "replicate"
    out_dir: str = "runs/{name}"
    log_with: list[str] | str | None = None   # Accelerate trackers (tensorboard, wandb, ...): synthaug/tracking.py
    project_dir: str | None = None            # where they write (default: the run folder)

    def __post_init__(self) -> None:
        check_choice(self.primary_metric, "primary_metric", "", METRICS)
        self.log_with = check_log_with(self.log_with)
        if len(self.datasets) != 1:
            raise ValueError(f"datasets: a strategies grid runs on one data set, got {len(self.datasets)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds={self.seeds}: give at least one seed, without repeats")
        if not self.fractions or len(set(self.fractions)) != len(self.fractions):
            raise ValueError(f"fractions={self.fractions}: give at least one fraction, without repeats")
        for f in self.fractions:
            if not 0 < f <= 1:
                raise ValueError(f"fractions: {f!r} must be in (0, 1] (a fraction of the training patients)")
        keys = [s.key for s in self.strategies]
        if not keys or len(set(keys)) != len(keys):
            raise ValueError(f"strategies: {keys} must be at least one, each with a distinct label")
        reserved = [k for k in keys if k.split(" ")[0] in RESERVED]
        if reserved:
            raise ValueError(f"strategies: the labels {reserved} name the baseline or a control arm ({sorted(RESERVED)}); "
                             "choose other labels")
        for spec in (self.generator, self.donor_spec):
            if spec.train.gate_every:
                raise ValueError(f"generator {spec.key}: train.gate_every (early stopping on the quality gate) is not "
                                 "supported by the strategies grid; set it to 0")
        for d in self.datasets:
            if d.train_fraction != 1.0:
                raise ValueError(f"datasets: {d.name}: set the real training fractions in `fractions`, not "
                                 f"train_fraction={d.train_fraction}")
        check_choice(self.generator_parallel, "generator_parallel", "", ("replicate", "data"))
        if any(s.kind == "donor" for s in self.strategies) and max(self.fractions) + self.donor.patients > 1:
            raise ValueError(f"donor.patients={self.donor.patients} with fractions up to {max(self.fractions)}: the "
                             "donor patients come from outside the largest fraction, so the two must sum to <= 1")
        for s in self.strategies:
            for setting in s.settings():
                if "ratio" in setting and extra_per_batch(setting["ratio"], self.classifier.batch_size) < 1:
                    raise ValueError(f"strategies ({s.key}): ratio {setting['ratio']} appends no item to a batch of "
                                     f"{self.classifier.batch_size}; use a larger ratio")
        for name, chosen in (("seeds", self.quality.seeds), ("fractions", self.quality.fractions)):
            missing = [v for v in chosen or [] if v not in getattr(self, name)]
            if missing:
                raise ValueError(f"quality.{name}={chosen}: {missing} are not in the grid's {name}")

    @property
    def data(self) -> DataConfig:
        return self.datasets[0]

    @property
    def donor_spec(self) -> GeneratorSpec:
        return self.donor.generator or self.generator

    def uses(self, kind: str) -> bool:
        return any(s.kind == kind for s in self.strategies)


# --------------------------------------------------------------------------- arms
@dataclass(frozen=True)
class Arm:
    """One classifier training of a (fraction, seed): the baseline, a strategy's synthetic arm at one setting,
    or a control. ``name`` is unique within the cell and is the results row's ``arm``."""

    name: str
    kind: str                    # baseline, a strategy kind, or a control kind (real-repeat, teacher-real, ...)
    role: str                    # baseline, synthetic, control
    strategy: str | None = None  # the strategy's label (synthetic arms)
    params: tuple = ()           # ((parameter, value), ...)
    control: str | None = None   # the control arm's name (synthetic arms)

    @property
    def setting(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def ratio(self) -> float:
        return float(self.setting.get("ratio", 0.0))


def _setting_text(params: dict[str, Any]) -> str:
    return " ".join(f"{_SHORT.get(k, k)}{v:g}" if isinstance(v, (int, float)) else f"{v}" for k, v in params.items())


_CONTROL = {"samples": "real-repeat", "weighted": "weighted-real", "edits": "real-repeat", "teacher": "teacher-real",
            "minority": "minority-real", "pretrain": "pretrain-real", "donor": "donor-real"}


def control_of(spec: StrategySpec, setting: dict[str, float]) -> Arm:
    """The real-only control of a strategy setting: the same draws and treatment, real cells instead."""
    kind = _CONTROL[spec.kind]
    params = {k: v for k, v in setting.items() if k in ("ratio", "weight", "temperature", "target_class", "steps")}
    return Arm(f"{kind} {_setting_text(params)}".strip(), kind, "control", params=tuple(params.items()))


def arms(cfg: StrategiesConfig) -> list[Arm]:
    """The arms every (fraction, seed) trains, in run order: the baseline first (the teacher of ``teacher``),
    then per strategy and setting its control (once, however many strategies share it) and its synthetic arm."""
    out: dict[str, Arm] = {BASELINE: Arm(BASELINE, BASELINE, BASELINE)}
    for spec in cfg.strategies:
        for setting in spec.settings():
            control = control_of(spec, setting)
            out.setdefault(control.name, control)
            name = f"{spec.key} {_setting_text(setting)}".strip()
            out[name] = Arm(name, spec.kind, "synthetic", spec.key, tuple(setting.items()), control.name)
    return list(out.values())


@dataclass(frozen=True)
class StrategyCell:
    dataset: str
    fraction: float
    seed: int
    arm: Arm

    def key(self) -> tuple:
        return (self.dataset, float(self.fraction), int(self.seed), self.arm.name)


def plan_strategies(cfg: StrategiesConfig) -> list[StrategyCell]:
    """Every cell of the grid: per fraction and seed, every arm."""
    return [StrategyCell(cfg.data.key, f, s, a) for f in cfg.fractions for s in cfg.seeds for a in arms(cfg)]


def spec_of(cfg: StrategiesConfig, arm: Arm) -> StrategySpec | None:
    return next((s for s in cfg.strategies if s.key == arm.strategy), None)


def pretrain_steps(setting: dict[str, Any], budget: int) -> int:
    """Steps of a pretrain arm's first phase: the setting's ``steps``, or the cell's budget."""
    steps = setting.get("steps", "budget")
    return int(budget) if steps == "budget" else int(steps)
