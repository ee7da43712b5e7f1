"""``mixup``: each appended item is a synthetic image mixed with a real one (Zhang et al. 2018, mixup), its
target the same mix of their labels; control ``mixup-real``: two real images mixed alike.

The worked example of adding a strategy (docs/architecture.md, "Adding a strategy"): this module, its tests
(tests/test_strategy_registry.py) and a docs section, nothing else. Its own parameter ``alpha`` (the Beta
distribution the mixing weight is drawn from) is declared in ``options`` and given in a config entry as
``{kind: mixup, per_real: 0.25, options: {alpha: 0.4}}``; a list of values is a grid chosen on validation.

Each pair and its weight are drawn once per pool from the unit's seed, so every epoch sees the same mixed
items and a rerun the same ones (as every other pool). Images stay uint8: ``lam * a + (1 - lam) * b``,
rounded.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .base import ArmContext, Draws, Param, Strategy, register_strategy, samples_of
from .targets import TargetItems


class MixedItems(Dataset):
    """Items ``(round(lam_i * a_j + (1 - lam_i) * b_k), lam_i * onehot(y_j) + (1 - lam_i) * onehot(y_k), 1)``:
    item ``i`` mixes item ``i`` of ``a`` with a seeded random item of ``b``, ``lam_i ~ Beta(alpha, alpha)``."""

    def __init__(self, a: Dataset, b: Dataset, num_classes: int, *, alpha: float, seed: int):
        if len(a) == 0 or len(b) == 0:
            raise ValueError(f"mixup: nothing to mix ({len(a)} and {len(b)} items)")
        rng = np.random.default_rng([seed, 4099])
        self.a, self.b, self.num_classes = a, b, int(num_classes)
        self.partner = rng.integers(0, len(b), size=len(a))
        self.lam = rng.beta(alpha, alpha, size=len(a)).astype(np.float32)
        self.weight = torch.tensor(1.0)

    def __len__(self) -> int:
        return len(self.a)

    def __getitem__(self, index: int):
        (xa, ya), (xb, yb) = self.a[index][:2], self.b[int(self.partner[index])][:2]
        lam = float(self.lam[index])
        image = (lam * torch.as_tensor(xa).float() + (1 - lam) * torch.as_tensor(xb).float()).round()
        onehot = torch.nn.functional.one_hot(torch.as_tensor([int(ya), int(yb)]), self.num_classes).float()
        return image.to(torch.uint8), lam * onehot[0] + (1 - lam) * onehot[1], self.weight


@register_strategy
class Mixup(Strategy):
    name, control = "mixup", "mixup-real"
    options = {"alpha": Param("mixup: the mixing weight's Beta(alpha, alpha); small alpha mixes little",
                              minimum=0, min_inclusive=False, default=0.4)}
    summary = "a synthetic image mixed with a real one, the labels mixed alike (mixup)"

    def draws(self, ctx: ArmContext, setting: dict, spec: Any) -> Draws:
        n = len(ctx.classes)
        mixed = MixedItems(samples_of(ctx, spec), ctx.real, n, alpha=setting["alpha"],
                           seed=ctx.seed)
        return Draws(TargetItems(ctx.real, n), extra=mixed)

    def control_draws(self, ctx: ArmContext, setting: dict, spec: Any) -> Draws:
        n = len(ctx.classes)
        return Draws(TargetItems(ctx.real, n), extra=MixedItems(ctx.real, ctx.real, n, alpha=setting["alpha"],
                                                                 seed=ctx.seed))
