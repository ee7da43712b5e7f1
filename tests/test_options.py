"""synthaug.options: one declaration per option, enforced by one checker for generators, configs, strategies,
metrics and transforms; each refusal names the key and the value (no data, no training: fast)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from synthaug.bench.grid_config import BenchConfig, ClassifierConfig, DataConfig, QualityConfig, SyntheticConfig
from synthaug.bench.strategy_config import DonorConfig, StrategiesConfig, StrategyPools, StrategySpec
from synthaug.config import ConfigError, from_dict
from synthaug.data.design import PatientDesign
from synthaug.generators import GeneratorTrainConfig
from synthaug.mix.transform_pool import MixSettings
from synthaug.options import check_value, option, spec_of, validate_fields
from synthaug.quality.gate import GateConfig
from synthaug.quality.metrics import create_metric, list_metrics, metric_class
from synthaug.strategy import Param

CONFIGS = [DataConfig, ClassifierConfig, SyntheticConfig, QualityConfig, GateConfig, GeneratorTrainConfig,
           PatientDesign, DonorConfig, StrategyPools, StrategySpec, StrategiesConfig, BenchConfig]


def _below(cls: type, name: str):
    """A value just outside the declared lower bound of ``cls.name`` (an int for int fields)."""
    spec = spec_of(cls, name)
    number = cls.__dataclass_fields__[name].type
    if "int" in str(number) and "float" not in str(number):
        return int(spec.minimum) - 1
    return spec.minimum if not spec.min_inclusive else spec.minimum - 0.5


def _bounded(classes: list[type]) -> list[tuple[type, str]]:
    return [(cls, f.name) for cls in classes for f in dataclasses.fields(cls)
            if "spec" in f.metadata and f.metadata["spec"].minimum is not None and f.metadata["spec"].check is None]


@pytest.mark.parametrize("cls, name", _bounded(CONFIGS), ids=lambda x: getattr(x, "__name__", x))
def test_every_declared_lower_bound_of_a_config_is_enforced(cls, name):
    bad = _below(cls, name)
    with pytest.raises(ValueError) as err:
        cls(**{name: bad})
    assert f"{name}={bad!r}" in str(err.value) and "must be" in str(err.value)


@pytest.mark.parametrize("name", list_metrics())
def test_every_declared_lower_bound_of_a_metric_is_enforced(name):
    for field_name in [n for c, n in _bounded([metric_class(name).Options])]:
        bad = _below(metric_class(name).Options, field_name)
        with pytest.raises(ValueError, match=f"metric '{name}': {field_name}={bad!r} must be"):
            create_metric(name, **{field_name: bad})


def test_a_config_read_from_yaml_names_its_section_key_and_value():
    with pytest.raises(ConfigError, match=r"classifier: lr=0.0 must be a number > 0"):
        from_dict(BenchConfig, {"classifier": {"lr": 0}})
    with pytest.raises(ConfigError, match=r"classifier: bn='keeep': use one of .*did you mean 'keep'"):
        from_dict(BenchConfig, {"classifier": {"bn": "keeep"}})
    with pytest.raises(ConfigError, match=r"quality: quality.n=1 must be an integer >= 2 \(compare at least 2"):
        from_dict(BenchConfig, {"quality": {"n": 1}})
    with pytest.raises(ConfigError, match=r"donor: patients=1.5 must be a number in \(0, 1\]"):
        from_dict(StrategiesConfig, {"donor": {"patients": 1.5}})


def test_strategy_parameters_and_a_strategys_own_options_share_the_checker():
    with pytest.raises(ValueError, match=r"strategies \(edits\): strength=1.5 must be a number in \(0, 1\]"):
        StrategySpec(kind="edits", strength=[0.1, 1.5])
    with pytest.raises(ValueError, match=r"strategies \(samples\)\.per_real=\[0.5, 0.5\]: give a number or a list"):
        StrategySpec(per_real=[0.5, 0.5])
    assert StrategySpec(per_real=0.5).per_real == [0.5]  # a grid option is kept as its list
    with pytest.raises(ValueError, match=r"strategies \(mixup\): alpha=0 must be a number > 0"):
        StrategySpec(kind="mixup", options={"alpha": 0})
    assert isinstance(Param("x"), type(spec_of(StrategySpec, "per_real")))  # a Param is an option() spec


def test_transform_settings_are_declared_once():
    with pytest.raises(ValueError, match=r"^T: p=1.5 must be a number in \[0, 1\] \(p is the probability"):
        check_value(MixSettings, "p", 1.5, "T")


@dataclass
class Toy:
    n: int = option(2, "a count", minimum=1, hint="e.g. 2")
    size: int | None = option(None, "a size or null", minimum=0)
    mode: str = option("a", "a mode", choices=("a", "b"))
    widths: tuple[int, ...] = option((1, 2), "widths")
    free: int = 0  # not declared: never checked

    def __post_init__(self) -> None:
        validate_fields(self, "toy", prefix="section.")


def test_validate_fields_checks_declared_fields_only_with_owner_and_prefix():
    assert Toy(free=-5).free == -5
    with pytest.raises(ValueError, match=r"^toy: section.n=0 must be an integer >= 1 \(e.g. 2\)$"):
        Toy(n=0)
    with pytest.raises(ValueError, match=r"^toy: section.mode='c': use one of \['a', 'b'\]"):
        Toy(mode="c")
    with pytest.raises(ValueError, match=r"^toy: section.widths=\[0\] must be a non-empty list of positive integers"):
        Toy(widths=[0])
    assert Toy(size=None).size is None
