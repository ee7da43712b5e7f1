"""The strategy registry: the built-in strategies and their controls, a strategy added from outside through one
class (its own options, its control, its arms), and mixup's items."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from synthaug.bench.strategy_config import StrategiesConfig, arms
from synthaug.config import ConfigError, from_dict
from synthaug.strategy import (Draws, Param, Strategy, create_strategy, list_controls, list_strategies,
                               register_strategy, strategy_of_control, unregister_strategy)
from synthaug.strategy.mixup import MixedItems


def strategies_config(strategies: list[dict]) -> StrategiesConfig:
    return from_dict(StrategiesConfig, {"datasets": [{"name": "malaria", "image_size": 16}], "seeds": [0],
                                        "strategies": strategies, "classifier": {"batch_size": 16}})


def test_the_built_in_strategies_and_their_controls():
    assert list_strategies()[:7] == ["samples", "weighted", "teacher", "minority", "edits", "pretrain", "donor"]
    assert "mixup" in list_strategies()
    assert set(list_controls()) == {"real-repeat", "weighted-real", "teacher-real", "minority-real", "pretrain-real",
                                    "donor-real", "mixup-real"}
    assert strategy_of_control("real-repeat").name == "samples"  # edits shares it; the first registered runs it
    with pytest.raises(ValueError, match="did you mean 'samples'"):
        create_strategy("sample")


class Doubled(Strategy):
    """A strategy from outside synthaug: the generator's pool, appended twice."""

    name, control = "doubled", "doubled-real"
    options = {"copies": Param("how many times the pool is appended", kind=int, minimum=1, grid=False, default=2)}

    def draws(self, ctx, setting, spec):
        return Draws(ctx.real, extra=torch.utils.data.ConcatDataset([ctx.generator_pool()] * setting["copies"]))

    def control_draws(self, ctx, setting, spec):
        return Draws(ctx.real, extra=torch.utils.data.ConcatDataset([ctx.real] * setting["copies"]))


@pytest.fixture
def doubled():
    register_strategy(Doubled)
    yield Doubled
    unregister_strategy("doubled")


def test_a_strategy_registered_from_outside_gets_its_arms_control_and_option_checks(doubled):
    cfg = strategies_config([{"kind": "doubled", "per_real": [0.25, 0.5], "options": {"copies": 3}}])
    by = {a.name: a for a in arms(cfg)}
    assert set(by) == {"baseline", "doubled r0.25 copies3", "doubled-real r0.25 copies3", "doubled r0.5 copies3",
                       "doubled-real r0.5 copies3"}
    assert by["doubled r0.5 copies3"].control == "doubled-real r0.5 copies3"
    assert strategies_config([{"kind": "doubled"}]).strategies[0].options == {"copies": 2}  # its default
    with pytest.raises((ValueError, ConfigError), match="copies"):
        strategies_config([{"kind": "doubled", "options": {"copies": 0}}])
    with pytest.raises((ValueError, ConfigError), match="did you mean 'copies'"):
        strategies_config([{"kind": "doubled", "options": {"copy": 2}}])
    with pytest.raises((ValueError, ConfigError), match="name the baseline or a control"):
        strategies_config([{"kind": "samples", "label": "doubled-real"}])


def test_a_strategy_that_sets_the_old_takes_ratio_is_honoured_with_a_warning():
    from synthaug.strategy import Strategy

    with pytest.warns(DeprecationWarning, match="takes_per_real"):
        class Alone(Strategy):  # not registered: only the attribute's old name is under test
            name, control, takes_ratio = "alone", "alone-real", False
    assert Alone.takes_per_real is False and Strategy.takes_per_real is True


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match="exists"):
        register_strategy(type("Other", (Strategy,), {"name": "samples", "control": "other-real"}))
    with pytest.raises(ValueError, match="may not share a name"):
        register_strategy(type("Other", (Strategy,), {"name": "real-repeat", "control": "x"}))
    assert "other-real" not in list_controls()


def test_mixup_settings_are_a_grid_over_alpha_and_its_control_shares_alpha():
    cfg = strategies_config([{"kind": "mixup", "options": {"alpha": [0.2, 1.0]}}])
    names = [a.name for a in arms(cfg)]
    assert names == ["baseline", "mixup-real r0.25 alpha0.2", "mixup r0.25 alpha0.2", "mixup-real r0.25 alpha1",
                     "mixup r0.25 alpha1"]


def test_mixed_items_mix_images_and_labels_alike_and_are_seeded():
    a = TensorDataset(torch.full((6, 3, 4, 4), 200, dtype=torch.uint8), torch.zeros(6, dtype=torch.long))
    b = TensorDataset(torch.full((5, 3, 4, 4), 0, dtype=torch.uint8), torch.ones(5, dtype=torch.long))
    items = MixedItems(a, b, 2, alpha=0.4, seed=3)
    assert len(items) == 6
    for i in range(6):
        image, target, weight = items[i]
        lam = float(items.lam[i])
        assert image.dtype == torch.uint8 and torch.all((image.float() - 200 * lam).abs() <= 1)  # rounded
        assert torch.allclose(target, torch.tensor([lam, 1 - lam])) and float(weight) == 1.0
    again = MixedItems(a, b, 2, alpha=0.4, seed=3)
    assert np.array_equal(items.lam, again.lam) and np.array_equal(items.partner, again.partner)
    assert not np.array_equal(items.lam, MixedItems(a, b, 2, alpha=0.4, seed=4).lam)
    with pytest.raises(ValueError, match="nothing to mix"):
        MixedItems(a, TensorDataset(torch.zeros(0, 3, 4, 4), torch.zeros(0)), 2, alpha=0.4, seed=0)
