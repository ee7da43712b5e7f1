"""The pilot of the powered malaria answer, read by the rules its plan fixed (docs/results/malaria-powered/PLAN.md).

``pilot_choices(rows)`` takes the rows of a sites run of the pilot config (configs/bench/malaria-powered-pilot.yaml)
and returns, from VALIDATION AUROC only (the pilot never reads test patients), the plan's choices:

- ``per_real`` (the plan's ratio ``r``: synthetic items appended per real item), one for all arms: the largest
  mean paired difference (arm minus its own control) over the
  generator arms and both site sizes;
- the fine-tune steps ``F`` and the edit strength ``s`` at that per_real, the same way (mean over site sizes);
- teacher labels for the generator arms only if the teacher arm's validation AUROC beats the hard-label arm's at
  every site size (paired by draw);
- ``sd_max``: the largest SD, over draws, of the paired differences of the primary rows (donor-gen and the chosen
  donor-ft against their control at each k), and the number of confirmatory draws
  ``N = min(cap, max(minimum, pairs_needed(sd_max, effect, family)))``, with the minimum detectable effect at N.

Ties go to the smaller value. Each choice keeps the numbers it was made from.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..stats import minimum_detectable_effect, pairs_needed


@dataclass(frozen=True)
class PilotRules:
    """The plan's pilot rules and the strategy labels of the pilot config that they read."""

    per_real: tuple[float, ...] = (0.25, 0.5, 1.0)
    shared: str = "donor-gen"
    teacher: str = "donor-gen-teacher"
    finetunes: dict[str, int] = field(default_factory=lambda: {"donor-ft250": 250, "donor-ft1000": 1000})
    edits: str = "edits"
    metric: str = "auroc"
    effect: float = 0.02
    family: int = 4
    minimum: int = 30
    cap: int = 60


def synthetic_rows_with_controls(rows: list[dict]) -> list[tuple[dict, dict | None]]:
    """Every synthetic arm's row with its control's row of the same site size and draw (None when missing), in
    (site size, draw, arm) order: the pairing the pilot and the confirmatory analysis share."""
    by = {(float(r["fraction"]), int(r["seed"]), r["arm"]): r for r in rows}
    return [(r, by.get((k, draw, r.get("control")))) for (k, draw, _), r in sorted(by.items())
            if r.get("role") == "synthetic"]


def paired_differences(rows: list[dict], metric: str = "auroc", part: str = "val") -> dict[tuple, dict]:
    """Per (site size, synthetic arm): its strategy, setting and ``{draw: arm - control}`` on ``part``."""
    out: dict[tuple, dict] = {}
    for r, control in synthetic_rows_with_controls(rows):
        if control is None or r.get(part) is None or control.get(part) is None:
            continue
        entry = out.setdefault((float(r["fraction"]), r["arm"]), {"strategy": r["strategy"], "setting": r["setting"],
                                                                  "diffs": {}})
        entry["diffs"][int(r["seed"])] = float(r[part][metric]) - float(control[part][metric])
    return out


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def _arm_means(diffs: dict[tuple, dict], strategy: str, **setting: Any) -> dict[float, float]:
    """Per site size, the mean paired difference of ``strategy``'s arm at ``setting`` (entries it must match)."""
    out = {}
    for (k, _), e in diffs.items():
        if e["strategy"] == strategy and all(abs(float(e["setting"].get(n, math.nan)) - v) < 1e-12
                                             for n, v in setting.items()):
            out.setdefault(k, []).extend(e["diffs"].values())
    return {k: _mean(v) for k, v in out.items()}


def _best(scores: dict[float, float]) -> float:
    """The value with the largest score; ties (within 1e-12) and NaN scores go to the smaller value."""
    finite = {v: s for v, s in scores.items() if not math.isnan(s)}
    if not finite:
        raise ValueError(f"pilot: no arm to choose from ({scores}); has the pilot run?")
    top = max(finite.values())
    return min(v for v, s in finite.items() if s >= top - 1e-12)


def _choose_per_real(diffs: dict[tuple, dict], rules: PilotRules) -> tuple[float, dict]:
    generators = [rules.shared, *rules.finetunes, rules.edits]
    scores = {}
    for r in rules.per_real:
        values = [m for g in generators for m in _arm_means(diffs, g, per_real=r).values()]
        scores[r] = _mean(values)
    return _best(scores), scores


def _teacher_wins(rows: list[dict], rules: PilotRules, per_real: float) -> tuple[bool, dict]:
    """Whether the teacher arm's validation metric beats the hard-label arm's at every site size (paired by draw)."""
    value = {(float(r["fraction"]), int(r["seed"]), r["strategy"]): float(r["val"][rules.metric]) for r in rows
             if r.get("role") == "synthetic" and abs(float(r["setting"].get("per_real", -1)) - per_real) < 1e-12}
    margins = {}
    for k in sorted({key[0] for key in value}):
        pairs = [value[(k, d, rules.teacher)] - value[(k, d, rules.shared)] for (kk, d, s) in value
                 if kk == k and s == rules.teacher and (k, d, rules.shared) in value]
        margins[k] = _mean(pairs)
    return bool(margins) and all(m > 0 for m in margins.values()), margins


def pilot_choices(rows: list[dict], rules: PilotRules | None = None) -> dict[str, Any]:
    """The plan's pilot choices and draw count from a pilot run's rows (module docstring)."""
    rules = rules or PilotRules()
    diffs = paired_differences(rows, rules.metric, "val")
    per_real, per_real_scores = _choose_per_real(diffs, rules)
    ft_scores = {steps: _mean(list(_arm_means(diffs, label, per_real=per_real).values()))
                 for label, steps in rules.finetunes.items()}
    steps = _best({float(s): v for s, v in ft_scores.items()})
    strengths = sorted({float(e["setting"]["strength"]) for e in diffs.values() if e["strategy"] == rules.edits})
    edit_scores = {s: _mean(list(_arm_means(diffs, rules.edits, per_real=per_real, strength=s).values())) for s in strengths}
    teacher, teacher_margins = _teacher_wins(rows, rules, per_real)
    chosen_ft = next(label for label, s in rules.finetunes.items() if s == int(steps))
    primary = [rules.teacher if teacher else rules.shared, chosen_ft]
    sds = {f"{label} k={k:g}": float(np.std(list(e["diffs"].values()), ddof=1))
           for (k, _), e in diffs.items() for label in primary
           if e["strategy"] == label and abs(float(e["setting"].get("per_real", -1)) - per_real) < 1e-12
           and len(e["diffs"]) >= 2}
    if not sds:
        raise ValueError("pilot: no primary row has two draws; the SD that sizes the run needs them")
    sd_max = max(sds.values())
    wanted = pairs_needed(sd_max, rules.effect, family=rules.family)
    n = min(rules.cap, max(rules.minimum, wanted))
    return {"per_real": per_real, "per_real_scores": per_real_scores, "finetune_steps": int(steps), "finetune_scores": ft_scores,
            "edit_strength": _best(edit_scores) if edit_scores else None, "edit_scores": edit_scores,
            "teacher": teacher, "teacher_margins": teacher_margins, "primary_sds": sds, "sd_max": sd_max,
            "draws_wanted": wanted, "draws": n, "cap_binds": wanted > rules.cap,
            "mde_at_draws": minimum_detectable_effect(sd_max, n, family=rules.family),
            "metric": f"val {rules.metric}", "rules": {"effect": rules.effect, "family": rules.family,
                                                       "minimum": rules.minimum, "cap": rules.cap}}
