"""The CAS metric: classifiers trained on synthetic images alone, scored on the real validation patients beside
the same recipe trained on real images (``quality.cas``); the quality gate judges its record."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...options import like
from ..cas import DEFAULT_EPOCHS, DEFAULT_SEEDS, CASSettings, classification_accuracy_score
from ..recipe import budget_steps
from ..numbers import fmt
from .base import (Metric, MetricContext, MetricOptions, TableColumn, draw_images, in_training_frequencies, option,
                   register_metric)


@dataclass
class CASOptions(MetricOptions):
    cas_images: int | None = option(None, "synthetic images CAS trains on (null: as many as real training images)",
                                    minimum=1, hint="or None: as many as real training images")
    cas_seeds: int = like(CASSettings, "cas_seeds", DEFAULT_SEEDS)
    cas_epochs: float | None = like(CASSettings, "cas_epochs", DEFAULT_EPOCHS)
    positive: int | None = option(None, "the positive class of binary metrics (AUROC)", minimum=0)


def _interval(ci: list[float] | None) -> str:
    return "" if not ci else f" [{fmt(ci[0])}, {fmt(ci[1])}]"


@register_metric("cas")
class CAS(Metric):
    """Classification accuracy score on the validation patients, beside the real-trained classifier."""

    keys = ("cas",)
    Options = CASOptions

    def compute(self, context: MetricContext) -> dict[str, Any]:
        """CAS on ``cas_images`` synthetic images, drawn apart from the fidelity images; the extractor serves as the
        real-trained classifier of ``seed`` when it was trained on these items with this recipe, seed and number of
        steps; the other real-trained scores are cached in the extractor's folder."""
        splits, extractor, recipe, seed, opts = (context.splits, context.extractor, context.recipe, context.seed,
                                                 self.options)
        n_cas = len(splits.train) if opts.cas_images is None else opts.cas_images
        cas_x, cas_y = draw_images(context.source, in_training_frequencies(n_cas, splits), seed=seed + 1,
                                   rng=np.random.default_rng(seed + 1))
        key = extractor.info.get("key", {})
        reuse = (context.own_split and key.get("recipe") == recipe and key.get("seed") == seed
                 and budget_steps(recipe, len(splits.train), epochs=opts.cas_epochs) == recipe["steps"])
        cache = Path(extractor.info["path"]) / "cas-real" if extractor.info.get("path") else None
        result = classification_accuracy_score(cas_x, cas_y, splits, recipe=recipe, seed=seed, seeds=opts.cas_seeds,
                                               epochs=opts.cas_epochs, positive=opts.positive, cache_dir=cache,
                                               real_model=extractor.model if reuse else None)
        result["real_model"] = ("trained here" if not reuse else "the feature extractor (same recipe, steps and seed)"
                                + ("" if opts.cas_seeds == 1 else f" for seed {seed}, trained here for the other seeds"))
        if len(cas_y) < n_cas:
            result["note"] = f"the pool holds {len(cas_y)} images of the {n_cas} asked for"
        return {"cas": result}

    def text_section(self, result: dict[str, Any]) -> list[str]:
        cas = self.record(result)
        if not cas:
            return []
        seeds = cas.get("per_seed") or []
        over = f"mean of {len(seeds)} seeds [95% t-interval]" if len(seeds) > 1 else "1 seed"
        # records written before CAS moved to validation were scored on test and say so
        split = cas.get("split", "test")
        where = f"{cas.get(f'{split}_items')} real {'validation' if split == 'val' else split} images"
        lines = [f"CAS (balanced accuracy on {where}, {cas['recipe']['model']}, {over}):",
                 f"  synthetic-trained {fmt(cas['cas'])}{_interval(cas.get('cas_ci'))} ({cas.get('steps')} steps) vs "
                 f"real-trained {fmt(cas['real_score'])}{_interval(cas.get('real_ci'))} ({cas.get('real_steps')} "
                 f"steps), ratio {fmt(cas['ratio'], '.2f')}"]
        if len(seeds) > 1:
            lines.append("  per seed (synthetic vs real): " + "; ".join(
                f"{s['seed']}: {fmt(s['cas'])} vs {fmt(s['real_score'])}" for s in seeds))
        ratios = cas.get("class_recall_ratio") or {}
        per = "; ".join(f"{name} {fmt(cas['synthetic']['per_class_recall'][name])} vs "
                        f"{fmt(cas['real']['per_class_recall'][name])}"
                        + (f" (ratio {fmt(ratios[name], '.2f')})" if name in ratios else "")
                        for name in cas["real"]["per_class_recall"])
        lines.append(f"  recall per class (synthetic vs real): {per}")
        if cas.get("note"):
            lines.append(f"  note: {cas['note']}")
        return lines

    def table_columns(self, *, per_class: bool) -> list[TableColumn]:
        names = ("CAS recall", "real-trained recall") if per_class else ("CAS", "real-trained")
        return [TableColumn(name) for name in names]

    def table_values(self, qs: list[dict[str, Any]], name: str | None) -> list[list[Any]]:
        records = [self.record(q) or {} for q in qs]
        if name is None:
            return [[c.get("cas") for c in records], [c.get("real_score") for c in records]]
        return [[(c.get(arm) or {}).get("per_class_recall", {}).get(name) for c in records]
                for arm in ("synthetic", "real")]
