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

A list of values (``per_real: [0.25, 0.5]``: synthetic items appended per real item of a batch) makes one
setting per value; the setting is chosen on validation
patients. The donor pool: ``donor.patients`` of the seed's training patients, drawn from those outside the
largest fraction of the grid (fractions are nested), so no fraction's own patients, and never a validation or
test patient, train the donor generator.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..checks import check_choice, check_int
from ..mix.additive import extra_per_batch
from ..options import like, option, validate_fields
from ..strategy import create_strategy, list_controls, list_strategies
from .grid_config import BenchConfig, ClassifierConfig, DataConfig, GeneratorSpec, QualityConfig, SyntheticConfig

BASELINE = "baseline"
# arm names: "r" is per_real (it was called ratio before; the names stay, so old run folders resume)
_SHORT = {"per_real": "r", "ratio": "r", "weight": "w", "temperature": "T", "strength": "s"}


def reserved_names() -> set[str]:
    """Arm names a strategy label may not take: the baseline and every registered control."""
    return {BASELINE, *list_controls()}


def _distinct_ints(minimum: int):
    """The check of a list of distinct integers >= ``minimum`` (at least one)."""
    def check(values: Any, name: str, owner: str) -> list[int]:
        if not isinstance(values, list) or not values or len(set(values)) != len(values):
            raise ValueError(f"{owner}.{name}={values}: give at least one value, without repeats")
        return [check_int(v, name, owner, minimum=minimum) for v in values]
    return check


@dataclass
class StrategySpec:
    """One way of using synthetic cells (``kind``: a registered strategy); lists give settings to choose among on
    validation. Each parameter is declared once here; a strategy names those it takes (``Strategy.params``)."""

    kind: str = "samples"
    label: str | None = None
    per_real: float | list[float] = option(0.25, "synthetic items appended per real item of a batch (not pretrain)",
                                           minimum=0, min_inclusive=False, grid=True)
    weight: float | list[float] = option(0.3, "weighted: what a synthetic item's loss counts", minimum=0, grid=True)
    temperature: float | list[float] = option(2.0, "teacher: softmax(logits / T) of the baseline classifier",
                                              minimum=0, min_inclusive=False, grid=True)
    target_class: str = "positive"              # minority: a class name, "positive" or "weakest" (validation recall)
    strength: float | list[float] = option(0.1, "edits: share of the noise schedule (ddpm) or latent step",
                                           minimum=0, min_inclusive=False, maximum=1, grid=True)
    per_image: int = option(4, "edits: distinct edits per real image", minimum=1)
    steps: int | None = option(None, "pretrain: steps on synthetic only", minimum=1, hint="or null: the cell's budget")
    pool_size: int | None = option(None, "its distinct synthetic images (not donor)", minimum=1,
                                   hint="or null: synthetic.pool_size")
    options: dict = field(default_factory=dict)  # the strategy's own parameters (``Strategy.options``)
    source: str | None = None                    # a name of the config's ``sources`` (null: ``generator``)

    #: old key -> new key: a config with the old one loads, with a FutureWarning (``synthaug.config.from_dict``)
    RENAMED: ClassVar[dict[str, str]] = {"ratio": "per_real"}

    def __post_init__(self) -> None:
        check_choice(self.kind, "kind", "strategies", list_strategies())
        owner = f"strategies ({self.key})"
        validate_fields(self, owner)
        self.options = self.strategy.check_options(self.options, owner)
        if not self.strategy.takes_per_real and len(self.per_real) > 1:
            raise ValueError(f"{owner}: {self.kind} draws synthetic images alone, then real ones: it takes no "
                             "per_real list")
        self.strategy.check(self, owner)

    @property
    def key(self) -> str:
        return self.label or self.kind

    @property
    def strategy(self):
        return create_strategy(self.kind)

    def settings(self) -> list[dict[str, Any]]:
        """Every combination of this strategy's listed values, as ``{parameter: value}``, with its fixed entries."""
        strategy = self.strategy
        names = (["per_real"] if strategy.takes_per_real else []) + list(strategy.params)
        grids = [getattr(self, n) for n in names]
        for name, spec in strategy.options.items():
            values = self.options[name]
            names.append(name)
            grids.append(values if spec.grid else [values])
        fixed = strategy.fixed(self)
        return [{**dict(zip(names, combo)), **fixed} for combo in itertools.product(*grids)]


@dataclass
class DonorConfig:
    """The donor pool of the ``donor`` strategy: ``patients`` of the seed's training patients, outside the
    grid's largest fraction; ``generator``: what trains on them (null: the grid's generator); ``pool_size``: the
    distinct images its arm draws from (null: as many as the donor patients' real cells, what its upper bound
    draws from), sampled once per seed into the donor generator's folder."""

    patients: float = option(0.25, "share of the seed's training patients in the donor pool", minimum=0,
                             min_inclusive=False, maximum=1, hint="a share of the seed's training patients, e.g. 0.25")
    generator: GeneratorSpec | None = None
    pool_size: int | None = option(None, "distinct images the donor arm draws from", minimum=1,
                                   hint="or null: as many as the donor's real cells")

    def __post_init__(self) -> None:
        validate_fields(self, "donor")


@dataclass
class SitesConfig:
    """Units of a fixed patient design (``data.design``) instead of fractions and seeds: every site size ``patients``
    (k training patients drawn from the design's site pool, each site with every class) at every ``draws`` seed.
    A unit's classifier seed is its draw; validation and test patients are the design's, the same for every unit;
    the ``donor`` strategy's pool is the design's donor pool."""

    patients: list[int] = option(help="site sizes: training patients per site", check=_distinct_ints(1),
                                 default_factory=lambda: [3, 7])
    draws: list[int] = option(help="seeds of the site draws", check=_distinct_ints(0), default_factory=lambda: [0])

    def __post_init__(self) -> None:
        validate_fields(self, "sites")


@dataclass
class StrategyPools:
    """The synthetic images a strategy arm cycles through: ``pool_size`` per source and class mix, labels in the
    real class frequencies (``match``), ``balanced`` or a mapping."""

    pool_size: int = option(512, "distinct synthetic images per source and class mix", minimum=1)
    label_distribution: str | dict[str, float] = like(SyntheticConfig, "label_distribution", "match")

    def __post_init__(self) -> None:
        validate_fields(self, "synthetic")


@dataclass
class StrategiesConfig:
    """A grid of strategies: data set, fractions and seeds as the benchmark's, one generator (trained per
    fraction and seed on that cell's training patients only), the donor pool, the strategies."""

    name: str = "strategies"
    datasets: list[DataConfig] = field(default_factory=lambda: [DataConfig()])
    fractions: list[float] = field(default_factory=lambda: [0.02])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    generator: GeneratorSpec = field(default_factory=GeneratorSpec)
    # more generators a strategy may draw from by name (``source:`` of its entry): e.g. a generator shared from
    # other patients ({source: {checkpoint: PATH}}) or one fine-tuned per unit from it (init_from: PATH)
    sources: dict[str, GeneratorSpec] = field(default_factory=dict)
    sites: SitesConfig | None = None          # units of a fixed patient design instead of fractions x seeds
    donor: DonorConfig = field(default_factory=DonorConfig)
    strategies: list[StrategySpec] = field(default_factory=lambda: [StrategySpec()])
    synthetic: StrategyPools = field(default_factory=StrategyPools)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    positive_class: str | None = None
    primary_metric: str = like(BenchConfig, "primary_metric", "balanced_accuracy")
    # binary tasks: also test sensitivity at the threshold that gives this specificity on validation (e.g. 0.95)
    fixed_specificity: float | None = option(None, "binary tasks: also test sensitivity at this specificity",
                                             minimum=0, maximum=1, min_inclusive=False, max_inclusive=False,
                                             hint="e.g. 0.95, or null")
    # false: arms are scored on validation patients only (a pilot: its choices never read a test patient)
    score_test: bool = True
    generator_parallel: str = like(BenchConfig, "generator_parallel", "replicate")
    out_dir: str = "runs/{name}"
    log_with: list[str] | str | None = like(BenchConfig, "log_with", None)
    project_dir: str | None = None            # where they write (default: the run folder)

    def __post_init__(self) -> None:
        validate_fields(self)
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
        reserved = [k for k in keys if k.split(" ")[0] in reserved_names()]
        if reserved:
            raise ValueError(f"strategies: the labels {reserved} name the baseline or a control arm "
                             f"({sorted(reserved_names())}); choose other labels")
        self._check_sources()
        for spec in (self.generator, self.donor_spec, *self.sources.values()):
            if spec.train.gate_every:
                raise ValueError(f"generator {spec.key}: train.gate_every (early stopping on the quality gate) is not "
                                 "supported by the strategies grid; set it to 0")
        for d in self.datasets:
            if d.train_fraction != 1.0:
                raise ValueError(f"datasets: {d.name}: set the real training fractions in `fractions`, not "
                                 f"train_fraction={d.train_fraction}")
        self._check_sites()
        if self.sites is None and self.uses("donor") and max(self.fractions) + self.donor.patients > 1:
            raise ValueError(f"donor.patients={self.donor.patients} with fractions up to {max(self.fractions)}: the "
                             "donor patients come from outside the largest fraction, so the two must sum to <= 1")
        for s in self.strategies:
            for setting in s.settings():
                if "per_real" in setting and extra_per_batch(setting["per_real"], self.classifier.batch_size) < 1:
                    raise ValueError(f"strategies ({s.key}): per_real {setting['per_real']} appends no item to a batch of "
                                     f"{self.classifier.batch_size}; use a larger per_real")
        for name, chosen, grid in (("seeds", self.quality.seeds, self.unit_seeds),
                                   ("fractions", self.quality.fractions, self.unit_sizes)):
            missing = [v for v in chosen or [] if v not in grid]
            if missing:
                raise ValueError(f"quality.{name}={chosen}: {missing} are not in the grid's {name} {grid}")

    @property
    def data(self) -> DataConfig:
        return self.datasets[0]

    @property
    def donor_spec(self) -> GeneratorSpec:
        return self.donor.generator or self.generator

    def _check_sites(self) -> None:
        """Sites need a fixed patient design, and take the place of fractions and seeds (left at their defaults)."""
        if self.sites is None:
            return
        if self.data.design is None:
            raise ValueError("sites: units of a fixed patient design need data.design (val_patients, test_patients, "
                             "donor_patients, seed); see docs/data.md")
        default = StrategiesConfig.__dataclass_fields__
        if self.fractions != default["fractions"].default_factory() or self.seeds != default["seeds"].default_factory():
            raise ValueError(f"sites: with sites the units are sites.patients x sites.draws; remove fractions="
                             f"{self.fractions} and seeds={self.seeds} from the config")

    @property
    def unit_sizes(self) -> list[float]:
        """What a unit's ``fraction`` holds: the share of training patients, or the site's patient count k."""
        return [float(k) for k in self.sites.patients] if self.sites is not None else list(self.fractions)

    @property
    def unit_seeds(self) -> list[int]:
        """What a unit's ``seed`` holds: the seed, or the site draw (also the classifier's seed)."""
        return list(self.sites.draws) if self.sites is not None else list(self.seeds)

    def load_unit(self, size: float, seed: int) -> Any:
        """The split of one unit: fraction ``size`` of seed ``seed``'s training patients, or site ``seed`` of
        ``size`` patients of the fixed design."""
        if self.sites is None:
            return self.data.load(seed, size)
        import dataclasses

        design = {**self.data.design, "train": "site", "site_patients": int(size), "draw": int(seed)}
        return dataclasses.replace(self.data, design=design).load(seed)

    def load_design_donors(self) -> Any:
        """The fixed design's split that trains on its donor pool (sites mode)."""
        import dataclasses

        design = {k: v for k, v in self.data.design.items() if k not in ("site_patients", "draw")}
        return dataclasses.replace(self.data, design={**design, "train": "donor"}).load(self.data.design.get("seed", 0))

    def _check_sources(self) -> None:
        """Each named source labelled by its name unless it has a label; names distinct; every strategy's
        ``source`` one of them."""
        for name, spec in self.sources.items():
            spec.label = spec.label or name  # its folder, picture and quality are named by it
        names = [self.generator.key] + [spec.key for spec in self.sources.values()]
        if len(set(names)) != len(names):
            raise ValueError(f"sources: the generators' names {names} (labels, or their names in `sources`) must be "
                             "distinct from each other and from `generator`'s")
        for s in self.strategies:
            if s.source is not None and s.source not in self.sources:
                raise ValueError(f"strategies ({s.key}): source={s.source!r} is not a name of `sources` "
                                 f"({sorted(self.sources) or 'none given'})")

    def source_spec(self, name: str | None) -> GeneratorSpec:
        """The generator a strategy's ``source`` names (None: the grid's ``generator``)."""
        return self.generator if name is None else self.sources[name]

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
    def per_real(self) -> float:
        """Synthetic (or, for a control, real) items appended per real item of a batch; 0 for none."""
        return float(self.setting.get("per_real", 0.0))


def _setting_text(params: dict[str, Any]) -> str:
    return " ".join(f"{_SHORT.get(k, k)}{v:g}" if isinstance(v, (int, float)) else f"{v}" for k, v in params.items())


def control_of(spec: StrategySpec, setting: dict[str, float]) -> Arm:
    """The real-only control of a strategy setting: the same draws and treatment, real cells instead."""
    kind = spec.strategy.control
    drops = spec.strategy.control_drops  # what only the synthetic arm has (edits: strength)
    params = {k: v for k, v in setting.items() if k not in drops}
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
    return [StrategyCell(cfg.data.key, f, s, a) for f in cfg.unit_sizes for s in cfg.unit_seeds for a in arms(cfg)]


def spec_of(cfg: StrategiesConfig, arm: Arm) -> StrategySpec | None:
    return next((s for s in cfg.strategies if s.key == arm.strategy), None)


def pretrain_steps(setting: dict[str, Any], budget: int) -> int:
    """Steps of a pretrain arm's first phase: the setting's ``steps``, or the cell's budget."""
    steps = setting.get("steps", "budget")
    return int(budget) if steps == "budget" else int(steps)
