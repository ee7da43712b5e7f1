"""What a strategy is: one way of using synthetic images in a classifier's training, with its real-only control.

A strategy is a class registered under a name (``@register_strategy``), like the generators. It declares

* ``params``: the parameters it takes besides ``per_real``, by name: fields of the strategies config's entry
  (``StrategySpec``), each declared once there with ``option()`` (bounds, help; ``synthaug.options``); a list of
  values is a grid of
  settings to choose among on validation patients;
* ``control``: the name of its real-only control arm, which draws exactly what the strategy draws with real
  images where the strategy has synthetic ones (several strategies may share one control);
* ``draws(ctx, setting)`` and ``control_draws(ctx, setting)``: what the classifier trains on, as ``Draws``;
* ``figure_cells(ctx, spec)``: its synthetic items for the clinician figure (optional).

``ctx`` is the runner's view of one training unit (a split with its sources and caches; ``ArmContext``): the
strategy asks it for the real items, a pool of the unit's generator, the teacher, the donor pool, ... and never
trains a classifier itself. So adding a strategy is one module with its class, its tests and a docs section
(docs/architecture.md, "Adding a strategy").
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from ..checks import did_you_mean
from ..options import OptionSpec, check_against


@dataclass(frozen=True)
class Param(OptionSpec):
    """A strategy's own parameter (``Strategy.options``): an ``option()`` spec that is not a dataclass field, so it
    carries what a field's annotation and default say: ``kind`` (float or int), ``optional`` (null allowed, a
    default decided later) and ``default``. ``grid`` (on by default): a list of values gives one setting per value,
    chosen on validation patients. Checked by ``synthaug.options.check_against``, as every option is."""

    kind: type = float
    grid: bool = True
    optional: bool = False
    default: Any = None   # its value when the config gives none


def check_param(spec: Param, value: Any, name: str, owner: str) -> Any:
    """The checked value of a strategy's parameter: a list of distinct numbers for a grid one, one value otherwise."""
    return check_against(spec, spec.kind, spec.optional, value, name, owner)


@dataclass
class Draws:
    """What one arm's classifier trains on: ``dataset`` (the real batches, as the baseline draws them), ``extra``
    items appended to each batch (as many per batch as the arm's ``per_real`` asks), ``pretrain`` items (a phase on
    them alone before), and ``record``: what the results row notes about them (e.g. the teacher's agreement)."""

    dataset: Any
    extra: Any = None
    pretrain: Any = None
    record: dict = field(default_factory=dict)


class ArmContext(Protocol):
    """The runner's unit (one split: its real items, sources and caches) as a strategy sees it."""

    real: Any                 # the unit's real training items, (uint8 image, label)
    classes: list[str]
    positive: int             # the positive class's index
    seed: int                 # the unit's seed (its pools and draws are seeded from it)

    def generator_pool(self, *, size: int | None = None, only_class: int | None = None,
                       source: str | None = None) -> Any: ...
    def edit_pool(self, strength: float, per_image: int, *, size: int | None = None,
                  source: str | None = None) -> Any: ...
    def donor_items(self) -> Any: ...
    def donor_patients(self) -> list[str]: ...
    def donor_samples(self) -> Any: ...
    def distill(self, items: Any, temperature: float) -> Any: ...
    def target_class(self, name: str) -> int: ...


def samples_of(ctx: ArmContext, spec: Any, **kwargs: Any) -> Any:
    """The pool of samples a strategy entry draws: of its ``source`` (default the unit's generator), its own
    ``pool_size`` (default the grid's); ``kwargs`` as ``ArmContext.generator_pool`` takes them."""
    return ctx.generator_pool(size=spec.pool_size, source=spec.source, **kwargs)


class Strategy:
    """Base of every registered strategy (see the module's docstring)."""

    name: ClassVar[str] = ""
    control: ClassVar[str] = ""
    params: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[dict[str, Param]] = {}     # its own parameters, under ``options:`` in its config entry
    control_drops: ClassVar[tuple[str, ...]] = ()  # setting entries its control does not share (edits: strength)
    takes_per_real: ClassVar[bool] = True   # False: the strategy draws no extra items per batch (pretrain)
    summary: ClassVar[str] = ""             # one line for docs and ``synthaug strategies``
    #: the question its verdicts answer: ``local`` (the site's own data, one Holm family) or ``sharing`` (data of
    #: other patients, its own Holm family, read against sharing their real images)
    family: ClassVar[str] = "local"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "takes_ratio" in cls.__dict__:  # the attribute's old name: honoured for one release
            import warnings

            warnings.warn(f"{cls.__name__}.takes_ratio is now takes_per_real; the old name works for one release",
                          DeprecationWarning, stacklevel=2)
            cls.takes_per_real = bool(cls.__dict__["takes_ratio"])

    def source_label(self, spec: Any, setting: dict[str, Any], cfg: Any) -> str:
        """The name of the source its synthetic images come from (its samples' picture and quality folder)."""
        return cfg.source_spec(spec.source).key

    def fixed(self, spec: Any) -> dict[str, Any]:
        """Setting entries that are not a grid (e.g. ``target_class``); they name the arm too."""
        return {}

    def check_options(self, values: Any, owner: str) -> dict[str, Any]:
        """The config entry's ``options`` checked against ``options``, with the defaults of those not given."""
        if not isinstance(values, dict):
            raise ValueError(f"{owner}: options={values!r} must be a mapping of {self.name}'s options "
                             f"({', '.join(self.options) or 'it has none'})")
        unknown = [k for k in values if k not in self.options]
        if unknown:
            raise ValueError(f"{owner}: unknown option {unknown[0]!r} of strategy {self.name!r}"
                             f"{did_you_mean(unknown[0], list(self.options))}; its options: "
                             f"{', '.join(self.options) or 'none'}")
        return {name: check_param(spec, values.get(name, spec.default), name, owner)
                for name, spec in self.options.items()}

    def check(self, spec: Any, owner: str) -> None:
        """Rules between parameters (each parameter alone is checked from its declaration); raise ValueError."""

    def draws(self, ctx: ArmContext, setting: dict[str, Any], spec: Any) -> Draws:
        raise NotImplementedError

    def control_draws(self, ctx: ArmContext, setting: dict[str, Any], spec: Any) -> Draws:
        raise NotImplementedError

    def figure_cells(self, ctx: ArmContext, spec: Any) -> dict[str, Any]:
        """Named sets of this strategy's synthetic items for the clinician figure (``{}``: none of its own)."""
        return {}


_REGISTRY: dict[str, type[Strategy]] = {}
_CONTROLS: dict[str, type[Strategy]] = {}


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make ``cls`` available under ``cls.name`` (and its control under ``cls.control``)."""
    if not cls.name or not cls.control:
        raise ValueError(f"register_strategy: {cls.__name__} must set `name` and `control`")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"register_strategy: a strategy named {cls.name!r} exists ({_REGISTRY[cls.name].__name__})")
    if cls.name in _CONTROLS or cls.control in _REGISTRY:
        raise ValueError(f"register_strategy: {cls.__name__}: a strategy and a control may not share a name")
    _REGISTRY[cls.name] = cls
    _CONTROLS.setdefault(cls.control, cls)  # controls shared by strategies draw the same; the first one runs them
    return cls


def unregister_strategy(name: str) -> None:
    """Remove the strategy ``name`` and the control it runs (a plugin's or a test's own strategy)."""
    cls = _REGISTRY.pop(name, None)
    if cls is not None and _CONTROLS.get(cls.control) is cls:
        del _CONTROLS[cls.control]
        other = next((c for c in _REGISTRY.values() if c.control == cls.control), None)
        if other is not None:
            _CONTROLS[cls.control] = other


def list_strategies() -> list[str]:
    """The registered strategies' names, in registration order."""
    return list(_REGISTRY)


def list_controls() -> list[str]:
    """The names of the registered strategies' control arms."""
    return list(_CONTROLS)


def create_strategy(name: str) -> Strategy:
    """The registered strategy ``name``; an unknown name is a ValueError listing the known ones."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown strategy {name!r}{did_you_mean(name, list(_REGISTRY))}; "
                         f"registered: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]()


def strategy_of_control(control: str) -> Strategy:
    """The strategy that runs the control arm ``control``."""
    if control not in _CONTROLS:
        raise ValueError(f"unknown control arm {control!r}; registered: {', '.join(_CONTROLS)}")
    return _CONTROLS[control]()
