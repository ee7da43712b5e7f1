"""Statistics over seeds of a benchmark's results: per setting, paired to the real-only controls, the ratio
selected on validation, the verdict of that ratio on the test patients (Holm-adjusted across the verdicts
of the run), and the validation learning curves. Plain data in, plain data out.

Rows (``results.jsonl``) are read by their ``arm``: ``real`` (the baseline), ``real-matched`` (real only,
as many draws as the additive arm it matches; keyed by that arm's ratio) and ``synthetic`` (a generator at
a ratio, mixed by ``mix``: ``replace`` or ``additive``). Rows written before those fields existed read as
``real`` / ``synthetic`` by their generator, and ``replace``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..classifier import METRICS
from ..stats import NO_SYNTHETIC, holm, mean_ci, paired_difference, verdict_of
from .grid_config import BenchConfig

REAL, MATCHED, SYNTHETIC = "real", "real-matched", "synthetic"
ALPHA = 0.05


def arm_of(row: dict) -> str:
    """``real``, ``real-matched`` or ``synthetic`` (rows without an ``arm`` field: by their generator)."""
    return row.get("arm") or (REAL if row.get("generator") is None else SYNTHETIC)


def mix_of(row: dict) -> str:
    """How a synthetic arm mixed: ``replace`` (rows older than the field did) or ``additive``."""
    return row.get("mix") or "replace"


def _stat(values: list[float]) -> dict[str, float]:
    mean, lo, hi = mean_ci(values)
    return {"mean": mean, "lo": lo, "hi": hi}


@dataclass
class _Groups:
    """Rows by seed: baselines per (data set, fraction), real-matched controls per (data set, fraction,
    ratio), synthetic arms per (data set, fraction, generator, mix, ratio)."""

    base: dict[tuple, dict[int, dict]] = field(default_factory=dict)
    matched: dict[tuple, dict[int, dict]] = field(default_factory=dict)
    synth: dict[tuple, dict[int, dict]] = field(default_factory=dict)

    @classmethod
    def of(cls, rows: list[dict]) -> "_Groups":
        g = cls()
        for r in rows:
            d, f, arm = r["dataset"], float(r["fraction"]), arm_of(r)
            if arm == REAL:
                g.base.setdefault((d, f), {})[int(r["seed"])] = r
            elif arm == MATCHED:
                g.matched.setdefault((d, f, float(r.get("ratio") or 0.0)), {})[int(r["seed"])] = r
            elif r.get("generator") is not None:
                key = (d, f, r["generator"], mix_of(r), float(r.get("ratio") or 0.0))
                g.synth.setdefault(key, {})[int(r["seed"])] = r
        return g

    def matched_for(self, dataset: str, fraction: float, mix: str, ratio: float) -> dict[int, dict] | None:
        """The real-matched control of an additive arm: the one of its ratio (same total draws), else one
        written without a ratio. Replace arms draw as much as the baseline and have none; nor has ratio 0."""
        if mix != "additive" or ratio == 0:
            return None
        return self.matched.get((dataset, fraction, ratio)) or self.matched.get((dataset, fraction, 0.0))


def analyze(rows: list[dict], cfg: BenchConfig) -> dict:
    """Means and 95 % t-intervals over seeds per setting, paired differences to the real-only controls
    (same data set, fraction and seed), the ratio selected on validation per (data set, fraction,
    generator, mix), the verdict of the selected setting on the test patients with raw and Holm-adjusted
    p, and the learning curves. JSON-serialisable (NaN for "not enough")."""
    groups = _Groups.of(rows)
    baselines = [_control(key, by_seed) for key, by_seed in sorted(groups.base.items())]
    controls = [_control(key, by_seed) for key, by_seed in sorted(groups.matched.items())]
    settings = [_setting(key, by_seed, groups) for key, by_seed in sorted(groups.synth.items())]
    settings = sorted(settings + _ratio_zero_from_baseline(cfg, groups, settings), key=_setting_order)
    families: dict[tuple, list[dict]] = {}
    for e in settings:
        families.setdefault((e["dataset"], e["fraction"], e["generator"], e["mix"]), []).append(e)
    verdicts = []
    for _, family in sorted(families.items()):
        best = _select_on_validation(family, cfg.primary_metric)
        if best is not None:
            verdicts.append(_verdict(best, family, cfg))
    _judge(verdicts)
    return {"name": cfg.name, "primary_metric": cfg.primary_metric, "selection": "validation patients, mean over seeds",
            "interval": "95 % Student t over seeds (not clipped to the metric's range); differences paired by "
                        "seed with a paired t-test",
            "correction": _correction(sum(not _untested(v) for v in verdicts)),
            "baselines": baselines, "controls": controls, "settings": settings, "verdicts": verdicts,
            "curves": learning_curves(groups, settings)}


def _correction(tested: int) -> str:
    return f"Holm across the {tested} verdict row{'' if tested == 1 else 's'} tested; a verdict reads Holm p < {ALPHA:g}"


def _setting_order(e: dict) -> tuple:
    return e["dataset"], e["fraction"], e["generator"], e["mix"], e["ratio"]


def _control(key: tuple, by_seed: dict[int, dict]) -> dict:
    """A real-only arm over all its seeds: the baseline ``(data set, fraction)`` or a real-matched
    control ``(data set, fraction, ratio)``."""
    seeds = sorted(by_seed)
    entry = {"dataset": key[0], "fraction": key[1], "seeds": seeds,
             "train_patients": sorted({by_seed[s]["train_patients"] for s in seeds}),
             "train_items": sorted({by_seed[s]["train_items"] for s in seeds}),
             **{part: {m: _stat([by_seed[s][part][m] for s in seeds]) for m in METRICS} for part in ("val", "test")}}
    if len(key) > 2:
        entry["ratio"] = key[2]
    return entry


def _setting(key: tuple, by_seed: dict[int, dict], groups: _Groups, *, from_baseline: bool = False) -> dict:
    """One generator, mix and ratio: statistics over the seeds it shares with the baseline (and with its
    real-matched control, if it has one), the controls over those same seeds, the paired differences."""
    d, f, g, mix, ratio = key
    base = groups.base.get((d, f), {})
    matched = groups.matched_for(d, f, mix, ratio)
    seeds = set(by_seed) & set(base) & (set(matched) if matched is not None else set(by_seed))
    seeds = sorted(seeds)
    entry: dict[str, Any] = {"dataset": d, "fraction": f, "generator": g, "mix": mix, "ratio": ratio, "seeds": seeds,
                             "selected": False, "from_baseline": from_baseline,
                             "train_patients": sorted({by_seed[s]["train_patients"] for s in seeds}),
                             # "images" for a folder data set without patient groups (each image its own group)
                             "group_kind": next((by_seed[s].get("group_kind", "patients") for s in seeds), "patients"),
                             "baseline": {}, "matched": {} if matched is not None else None}
    for part in ("val", "test"):
        entry[part] = {m: _stat([by_seed[s][part][m] for s in seeds]) for m in METRICS}
        entry["baseline"][part] = {m: _stat([base[s][part][m] for s in seeds]) for m in METRICS}
        entry[f"diff_{part}"] = {m: paired_difference([by_seed[s][part][m] for s in seeds],
                                                      [base[s][part][m] for s in seeds]) for m in METRICS}
        entry[f"diff_matched_{part}"] = None
        if matched is not None:
            entry["matched"][part] = {m: _stat([matched[s][part][m] for s in seeds]) for m in METRICS}
            entry[f"diff_matched_{part}"] = {m: paired_difference([by_seed[s][part][m] for s in seeds],
                                                                  [matched[s][part][m] for s in seeds]) for m in METRICS}
    return entry


def _ratio_zero_from_baseline(cfg: BenchConfig, groups: _Groups, settings: list[dict]) -> list[dict]:
    """When the config lists ratio 0 but no rows hold it (ratio 0 *is* the real-only arm), the baseline
    stands in as each family's ratio-0 candidate, so validation can switch synthetic off."""
    if 0.0 not in [float(r) for r in getattr(cfg.synthetic, "ratios", [])]:
        return []
    families: dict[tuple, set[int]] = {}
    for e in settings:
        families.setdefault((e["dataset"], e["fraction"], e["generator"], e["mix"]), set()).update(e["seeds"])
    have = {(e["dataset"], e["fraction"], e["generator"], e["mix"]) for e in settings if e["ratio"] == 0}
    out = []
    for (d, f, g, mix), seeds in sorted(families.items()):
        # only the seeds the family's synthetic arms reached: in a partial run the baseline's extra seeds
        # must not make ratio 0 the one "complete" candidate
        base = {s: r for s, r in groups.base.get((d, f), {}).items() if s in seeds}
        if (d, f, g, mix) not in have and base:
            out.append(_setting((d, f, g, mix, 0.0), base, groups, from_baseline=True))
    return out


def _select_on_validation(family: list[dict], primary: str) -> dict | None:
    """Mark and return the ratio with the best mean validation score among the settings with the most
    seeds (ties: the smaller ratio, so ratio 0 wins a tie); test is not looked at. None when no setting
    has a seed."""
    scored = [e for e in family if e["seeds"]]
    if not scored:
        return None
    most = max(len(e["seeds"]) for e in scored)
    complete = [e for e in scored if len(e["seeds"]) == most]
    best = max(complete, key=lambda e: (np.nan_to_num(e["val"][primary]["mean"], nan=-np.inf), -e["ratio"]))
    best["selected"] = True
    return best


def reference_of(setting: dict, primary: str) -> str:
    """The control a setting's verdict is read against: the stronger (higher mean *validation* score over
    the paired seeds) of the baseline and its real-matched control. Like every other choice of the
    protocol it is made on validation patients, so the test verdict is not read against a control
    picked for its test score (which would make "hurts" easier to reach as much as "helps" harder)."""
    if setting["matched"] is None:
        return "real only"
    base, matched = setting["baseline"]["val"][primary]["mean"], setting["matched"]["val"][primary]["mean"]
    return "real-matched" if not math.isnan(matched) and (math.isnan(base) or matched > base) else "real only"


def _verdict(best: dict, family: list[dict], cfg: BenchConfig) -> dict:
    primary = cfg.primary_metric
    reference = reference_of(best, primary)
    diff = best["diff_test" if reference == "real only" else "diff_matched_test"][primary]
    return {"dataset": best["dataset"], "fraction": best["fraction"], "generator": best["generator"],
            "mix": best["mix"], "ratio": best["ratio"], "ratios_tried": sorted(e["ratio"] for e in family),
            "seeds": best["seeds"], "train_patients": best["train_patients"],
            "group_kind": best.get("group_kind", "patients"), "metric": primary,
            "baseline": best["baseline"]["test"][primary],
            "matched": best["matched"]["test"][primary] if best["matched"] is not None else None,
            "synthetic": best["test"][primary], "reference": reference, "diff": diff,
            "diff_baseline": best["diff_test"][primary],
            "diff_matched": best["diff_matched_test"][primary] if best["matched"] is not None else None,
            "p": diff["p"], "p_holm": math.nan, "verdict": "", "complete": len(best["seeds"]) == len(cfg.seeds)}


def _untested(v: dict) -> bool:
    """A verdict row that tests nothing: validation chose ratio 0, or no p (too few seeds, constant)."""
    return v["ratio"] == 0 or math.isnan(v["p"])


def _judge(verdicts: list[dict]) -> None:
    """Holm-adjust the p of every tested verdict row of the run together; each verdict reads its adjusted p."""
    adjusted = holm([math.nan if _untested(v) else v["p"] for v in verdicts])
    for v, p in zip(verdicts, adjusted):
        v["p_holm"] = p
        v["verdict"] = NO_SYNTHETIC if v["ratio"] == 0 else verdict_of(v["diff"], p=p, alpha=ALPHA)


# --------------------------------------------------------------------------- learning curves
def learning_curves(groups: _Groups, settings: list[dict]) -> list[dict]:
    """Validation curves (the rows' ``curve``: [step, validation primary metric] pairs) per data set and
    fraction: the baseline, each real-matched control, and each generator and mix at its selected ratio;
    the mean over seeds per step, and each seed's best step. Empty for rows without curves."""
    out = [_curve(d, f, "real only", by_seed) for (d, f), by_seed in sorted(groups.base.items())]
    out += [_curve(d, f, f"real-matched ({r:g})", by_seed) for (d, f, r), by_seed in sorted(groups.matched.items())]
    for e in settings:
        if e["selected"] and not e["from_baseline"]:
            by_seed = groups.synth[(e["dataset"], e["fraction"], e["generator"], e["mix"], e["ratio"])]
            out.append(_curve(e["dataset"], e["fraction"], f"{e['generator']} {e['mix']} @ {e['ratio']:g}", by_seed))
    return sorted((c for c in out if c is not None), key=lambda c: (c["dataset"], c["fraction"]))


def _curve(dataset: str, fraction: float, arm: str, by_seed: dict[int, dict]) -> dict | None:
    seeds = sorted(s for s, r in by_seed.items() if r.get("curve"))
    if not seeds:
        return None
    per_step: dict[int, list[float]] = {}
    best, last = [], []
    for s in seeds:
        points = [(int(step), math.nan if v is None else float(v)) for step, v in by_seed[s]["curve"]]
        for step, v in points:
            per_step.setdefault(step, []).append(v)
        chosen = by_seed[s].get("best_step")
        if chosen is None:  # the first step with the best validation score, as a checkpoint rule would keep
            chosen = max(points, key=lambda p: (np.nan_to_num(p[1], nan=-np.inf), -p[0]))[0]
        best.append(int(chosen))
        last.append(max(step for step, _ in points))
    steps = sorted(per_step)
    return {"dataset": dataset, "fraction": fraction, "arm": arm, "seeds": seeds, "steps": steps,
            "mean": [_nanmean(per_step[s]) for s in steps],
            "best_steps": best, "last_steps": last, "at_last": sum(b >= n for b, n in zip(best, last))}


def _nanmean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan


def without_nan(obj: Any) -> Any:
    """NaN (too few seeds) as null, so summary.json is standard JSON (browsers, jq); keys that are not strings
    (a fraction, a tuple) become their ``str``, tuples lists."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k if isinstance(k, str) else str(k): without_nan(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [without_nan(v) for v in obj]
    return obj
