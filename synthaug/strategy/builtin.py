"""The built-in strategies, each with its real-only control (docs/architecture.md lists them; every arm is
additive: it draws exactly the baseline's real batches and what it adds comes on top).

- ``samples``: generator samples, hard labels; control ``real-repeat`` (the unit's real images again);
- ``weighted``: the same, each synthetic item's loss weighted ``weight``; control ``weighted-real``;
- ``teacher``: samples relabelled by the unit's baseline (soft, ``temperature``); control ``teacher-real`` (the
  real images and the same teacher: self-distillation);
- ``minority``: samples of one class (``target_class``); control ``minority-real`` (that class's real images);
- ``edits``: ``EditSource`` edits of the unit's real images; control ``real-repeat``;
- ``pretrain``: ``steps`` on samples alone, then the budget on real; control ``pretrain-real``;
- ``donor``: samples of a generator trained on other training patients (the donor pool), in their class mix;
  control ``donor-real``: those patients' real cells (the upper bound of sharing the data itself);
- ``donor-cells``: the donor pool's real cells on top, against ``real-repeat`` (the site's own cells again): the
  upper bound of sharing the data, as an arm of its own beside generators drawn from a shared ``source``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from torch.utils.data import Subset

from .base import ArmContext, Draws, Strategy, register_strategy, samples_of
from .targets import TargetItems, labels_of


@register_strategy
class Samples(Strategy):
    name, control = "samples", "real-repeat"
    summary = "generator samples on top of each real batch, hard labels"

    def draws(self, ctx: ArmContext, setting: dict, spec: Any) -> Draws:
        return Draws(ctx.real, extra=samples_of(ctx, spec))

    def control_draws(self, ctx: ArmContext, setting: dict, spec: Any) -> Draws:
        return Draws(ctx.real, extra=ctx.real)

    def figure_cells(self, ctx: ArmContext, spec: Any) -> dict:
        return {"samples" if spec.source is None else f"samples ({spec.source})": ctx.generator_pool(source=spec.source)}


@register_strategy
class Weighted(Samples):
    name, control, params = "weighted", "weighted-real", ("weight",)
    summary = "samples whose loss counts `weight` times a real item's"

    def draws(self, ctx: ArmContext, setting: dict, spec: Any) -> Draws:
        n = len(ctx.classes)
        extra = TargetItems(samples_of(ctx, spec), n, weight=setting["weight"])
        return Draws(TargetItems(ctx.real, n), extra=extra)

    def control_draws(self, ctx: ArmContext, setting: dict, spec: Any) -> Draws:
        n = len(ctx.classes)
        return Draws(TargetItems(ctx.real, n), extra=TargetItems(ctx.real, n, weight=setting["weight"]))


@register_strategy
class Teacher(Samples):
    name, control, params = "teacher", "teacher-real", ("temperature",)
    summary = "samples relabelled by the baseline classifier (soft labels at `temperature`)"

    @staticmethod
    def _distilled(ctx: ArmContext, extra: Any, temperature: float) -> Draws:
        n = len(ctx.classes)
        probs = ctx.distill(extra, temperature)
        agree = float((probs.argmax(1) == labels_of(extra)).float().mean())
        return Draws(TargetItems(ctx.real, n), extra=TargetItems(extra, n, probs=probs),
                     record={"teacher_agreement": round(agree, 4)})

    def draws(self, ctx: ArmContext, setting: dict, spec: Any) -> Draws:
        return self._distilled(ctx, samples_of(ctx, spec), setting["temperature"])

    def control_draws(self, ctx: ArmContext, setting: dict, spec: Any) -> Draws:
        return self._distilled(ctx, ctx.real, setting["temperature"])


@register_strategy
class Minority(Samples):
    name, control = "minority", "minority-real"
    summary = "samples of one class: `target_class` (a name, `positive` or `weakest` on validation)"

    def fixed(self, spec: Any) -> dict:
        return {"target_class": spec.target_class}

    def draws(self, ctx: ArmContext, setting: dict, spec: Any) -> Draws:
        c = ctx.target_class(setting["target_class"])
        return Draws(ctx.real, extra=samples_of(ctx, spec, only_class=c),
                     record={"target_class": ctx.classes[c]})

    def control_draws(self, ctx: ArmContext, setting: dict, spec: Any) -> Draws:
        c = ctx.target_class(setting["target_class"])
        mine = np.flatnonzero(np.asarray(ctx.real.targets) == c).tolist()
        return Draws(ctx.real, extra=Subset(ctx.real, mine), record={"target_class": ctx.classes[c]})


@register_strategy
class Edits(Samples):
    name, control, params, control_drops = "edits", "real-repeat", ("strength",), ("strength",)
    summary = "edits of the unit's real images (EditSource) at `strength`, `per_image` each"

    def source_label(self, spec: Any, setting: dict, cfg: Any) -> str:
        return f"edits-s{setting['strength']:g}" + (f"-{spec.source}" if spec.source is not None else "")

    def draws(self, ctx: ArmContext, setting: dict, spec: Any) -> Draws:
        return Draws(ctx.real, extra=ctx.edit_pool(setting["strength"], spec.per_image, size=spec.pool_size,
                                                   source=spec.source))

    def figure_cells(self, ctx: ArmContext, spec: Any) -> dict:
        suffix = "" if spec.source is None else f" ({spec.source})"
        return {f"edits s{s:g}{suffix}": ctx.edit_pool(s, spec.per_image, source=spec.source) for s in spec.strength}


@register_strategy
class Pretrain(Samples):
    name, control, takes_per_real = "pretrain", "pretrain-real", False
    summary = "`steps` on samples alone, then the budget on real images"

    def fixed(self, spec: Any) -> dict:
        return {"steps": spec.steps or "budget"}

    def draws(self, ctx: ArmContext, setting: dict, spec: Any) -> Draws:
        return Draws(ctx.real, pretrain=samples_of(ctx, spec))

    def control_draws(self, ctx: ArmContext, setting: dict, spec: Any) -> Draws:
        return Draws(ctx.real, pretrain=ctx.real)


@register_strategy
class Donor(Strategy):
    name, control, family = "donor", "donor-real", "sharing"
    summary = "samples of a generator trained on other training patients (the donor pool), in their class mix"

    def source_label(self, spec: Any, setting: dict, cfg: Any) -> str:
        return f"donor-{cfg.donor_spec.key}"

    @staticmethod
    def _record(ctx: ArmContext) -> dict:
        return {"donor_patients": len(ctx.donor_patients()), "donor_items": len(ctx.donor_items())}

    def draws(self, ctx: ArmContext, setting: dict, spec: Any) -> Draws:
        return Draws(ctx.real, extra=ctx.donor_samples(), record=self._record(ctx))

    def control_draws(self, ctx: ArmContext, setting: dict, spec: Any) -> Draws:
        return Draws(ctx.real, extra=ctx.donor_items(), record=self._record(ctx))

    def figure_cells(self, ctx: ArmContext, spec: Any) -> dict:
        return {"donor samples": ctx.donor_samples()}


@register_strategy
class DonorCells(Strategy):
    # family "local": in the strategies report its verdict is a plain one against its control (the report's
    # "sharing" family reads a donor generator against its donor-real upper bound, which this arm is itself)
    name, control = "donor-cells", "real-repeat"
    summary = "the donor pool's real cells on top (what sharing the data itself gives), against the site's own again"

    def source_label(self, spec: Any, setting: dict, cfg: Any) -> str:
        return "donor-cells"  # real cells: no generator, no gate

    def draws(self, ctx: ArmContext, setting: dict, spec: Any) -> Draws:
        return Draws(ctx.real, extra=ctx.donor_items(), record=Donor._record(ctx))

    def control_draws(self, ctx: ArmContext, setting: dict, spec: Any) -> Draws:
        return Draws(ctx.real, extra=ctx.real)
