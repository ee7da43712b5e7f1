"""The confirmatory verdict of the powered malaria answer, by the analysis its plan fixed (PLAN.md).

``confirmatory_config(pilot, choices)`` turns the pilot's config and the choices ``synthaug.bench.powered`` read
from it into the confirmatory config: the chosen per_real, fine-tune steps, edit strength and labels, draws
``0 .. N-1``, the gate on every draw, test patients scored. Nothing is chosen by hand between the two.

``confirmatory_answer(rows, gates)`` reads the confirmatory run's rows (and the gate of each source on each
draw) and gives, on TEST AUROC:

- the primary family (P1-P4: donor-gen and donor-ft against their control at k = 7 and k = 3): paired t-tests
  over draws, Holm within the family, the verdict "helps" / "hurts" / "no significant difference";
- the equivalence verdict of each primary row: paired TOST against +-``margin``, with the one-sided 95 % upper
  bound (the largest gain the data do not exclude);
- the share of the donor cells' gain each generator arm recovers, ``(arm - control) / (donor-real - control)``
  with a percentile bootstrap CI over draws, where donor-real - control is itself significantly positive;
- exploratory rows (labelled so): edits, donor-real, and every row's sensitivity at the validation-fixed
  specificity and balanced accuracy; raw intervals, no multiplicity correction;
- the power the design had: the observed SD of each primary row and the minimum detectable effect at its N.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..stats import holm, minimum_detectable_effect, paired_difference, tost, verdict_of
from .powered import synthetic_rows_with_controls

PRIMARY = (("P1", 7.0, "donor-gen"), ("P2", 7.0, "donor-ft"), ("P3", 3.0, "donor-gen"), ("P4", 3.0, "donor-ft"))


@dataclass(frozen=True)
class AnswerRules:
    """The plan's analysis: endpoint, family, equivalence margin and the share's bootstrap."""

    metric: str = "auroc"
    part: str = "test"
    margin: float = 0.02
    alpha: float = 0.05
    resamples: int = 10_000
    bootstrap_seed: int = 0
    donor_real: str = "donor-cells"


# --------------------------------------------------------------------------- the confirmatory config
def confirmatory_config(pilot: dict, choices: dict) -> dict:
    """The confirmatory config: ``pilot`` (its config as a dict) with the pilot's ``choices`` applied."""
    cfg = copy.deepcopy(pilot)
    r, steps, strength = choices["per_real"], int(choices["finetune_steps"]), choices["edit_strength"]
    tried = {int(spec["train"]["steps"]): name for name, spec in cfg["sources"].items() if spec.get("init_from")}
    if steps not in tried:
        raise ValueError(f"finetune_steps={steps}: the pilot config fine-tunes for {sorted(tried)} steps only; "
                         "give the pilot's choices (benchmarks/pilot.py)")
    chosen = tried[steps]
    cfg["sources"] = {"shared": cfg["sources"]["shared"], "ft": cfg["sources"][chosen]}
    pilot_teacher = next((s for s in pilot["strategies"] if s.get("kind") == "teacher"), {})
    teacher = ({"kind": "teacher", "temperature": pilot_teacher.get("temperature", 2.0)} if choices["teacher"]
               else {"kind": "samples"})
    cfg["strategies"] = [{**teacher, "label": "donor-gen", "source": "shared", "per_real": r},
                         {**teacher, "label": "donor-ft", "source": "ft", "per_real": r},
                         {"kind": "edits", "label": "edits", "source": "shared", "strength": strength,
                          "per_image": 4, "per_real": r},
                         {"kind": "donor-cells", "per_real": r}]
    cfg["name"] = "malaria-powered"
    cfg["sites"] = {**cfg["sites"], "draws": list(range(int(choices["draws"])))}
    cfg["quality"] = {**cfg["quality"], "seeds": None}  # the gate of every per-site source on every draw
    cfg["score_test"], cfg["fixed_specificity"] = True, 0.95
    return cfg


# --------------------------------------------------------------------------- pairing
def _paired(rows: list[dict], k: float, strategy: str, read) -> dict[str, dict[int, float]]:
    """``{"arm": {draw: value}, "control": {draw: value}}`` of ``strategy``'s arm at site size ``k``."""
    out: dict[str, dict[int, float]] = {"arm": {}, "control": {}}
    seen: set[int] = set()
    for r, control in synthetic_rows_with_controls(rows):
        draw = int(r["seed"])
        if float(r["fraction"]) != k or r.get("strategy") != strategy:
            continue
        if draw in seen:
            raise ValueError(f"{strategy} at k={k:g}, draw {draw}: more than one arm (settings "
                             f"{sorted(str(x['setting']) for x in rows if x.get('strategy') == strategy)[:4]}); the "
                             "confirmatory run has one setting per strategy")
        seen.add(draw)
        a, c = read(r), None if control is None else read(control)
        if a is not None and c is not None and not (math.isnan(a) or math.isnan(c)):
            out["arm"][draw], out["control"][draw] = a, c
    return out


def _reader(part: str, metric: str):
    def read(row: dict) -> float | None:
        if metric == "sensitivity@spec":
            point = row.get("operating_point") or {}
            return point.get(f"{part}_sensitivity")
        values = row.get(part)
        return None if values is None else values.get(metric)
    return read


def _vectors(pair: dict[str, dict[int, float]]) -> tuple[list[int], np.ndarray, np.ndarray]:
    draws = sorted(pair["arm"])
    return draws, np.array([pair["arm"][d] for d in draws]), np.array([pair["control"][d] for d in draws])


def paired_values(rows: list[dict], k: float, strategy: str, rules: "AnswerRules | dict") -> list[float]:
    """Each draw's arm-minus-control value of ``strategy`` at ``k`` on the rules' endpoint (the figure's dots)."""
    part, metric = (rules["part"], rules["metric"]) if isinstance(rules, dict) else (rules.part, rules.metric)
    _, arm, control = _vectors(_paired(rows, k, strategy, _reader(part, metric)))
    return [float(v) for v in arm - control]


# --------------------------------------------------------------------------- the answer
def family_holm(pvalues: list[float]) -> list[float]:
    """Holm over the whole pre-registered family: a row without a test (too few draws, constant differences)
    still counts in the family size (its p taken as 1 for the others' adjustment) and keeps NaN itself, so a
    missing row never makes the others' correction milder than the plan's."""
    adjusted = holm([1.0 if math.isnan(p) else p for p in pvalues])
    return [math.nan if math.isnan(p) else a for p, a in zip(pvalues, adjusted)]


def confirmatory_answer(rows: list[dict], gates: dict[tuple, bool | None] | None = None,
                        rules: AnswerRules | None = None, *, planned_draws: int | None = None) -> dict[str, Any]:
    """The primary family, equivalence, shares, exploratory rows and power (module docstring). ``gates``:
    ``{(k, draw, strategy): passed}`` of the source each arm drew (None: not measured). ``planned_draws``: the
    draws per site size of the run's config; a primary row with fewer makes the answer an interim one
    (``complete`` False), which the headline and the report say first."""
    rules, gates = rules or AnswerRules(), gates or {}
    read = _reader(rules.part, rules.metric)
    primary = []
    for pid, k, strategy in PRIMARY:
        draws, arm, control = _vectors(_paired(rows, k, strategy, read))
        row = {"id": pid, "k": k, "strategy": strategy, "draws": len(draws),
               "diff": paired_difference(arm, control), "tost": tost(arm, control, margin=rules.margin,
                                                                      alpha=rules.alpha)}
        row["sd"] = float(np.std(arm - control, ddof=1)) if len(draws) >= 2 else math.nan
        row["mde"] = minimum_detectable_effect(row["sd"], len(draws), family=len(PRIMARY)) \
            if len(draws) >= 2 and not math.isnan(row["sd"]) else math.nan
        row["gate"] = _gate_count(gates, k, strategy, draws)
        primary.append(row)
    for row, p in zip(primary, family_holm([r["diff"]["p"] for r in primary])):
        row["holm_p"] = p
        row["verdict"] = verdict_of(row["diff"], p=p, alpha=rules.alpha)
        row["excludes_gain"] = bool(row["tost"]["upper"] < rules.margin) if not math.isnan(row["tost"]["upper"]) \
            else False
    shares = [_share(rows, k, strategy, read, rules) for _, k, strategy in PRIMARY]
    complete = planned_draws is None or all(r["draws"] >= planned_draws for r in primary)
    return {"rules": rules.__dict__, "planned_draws": planned_draws, "complete": complete, "primary": primary,
            "shares": shares, "exploratory": _exploratory(rows, gates, rules)}


def _gate_count(gates: dict, k: float, strategy: str, draws: list[int]) -> dict[str, int]:
    states = [gates.get((k, d, strategy)) for d in draws]
    return {"passed": sum(s is True for s in states), "failed": sum(s is False for s in states),
            "not_measured": sum(s is None for s in states)}


def _share(rows: list[dict], k: float, strategy: str, read, rules: AnswerRules) -> dict[str, Any]:
    """(arm - control) / (donor-real - control) over the draws both have, both against the donor cells' control
    (real-repeat at the same per_real), with a percentile bootstrap CI; undefined unless donor-real - control is
    significantly positive (its paired t-interval above 0)."""
    arm, real = _paired(rows, k, strategy, read), _paired(rows, k, rules.donor_real, read)
    draws = sorted(set(arm["arm"]) & set(real["arm"]))
    out: dict[str, Any] = {"k": k, "strategy": strategy, "draws": len(draws), "share": math.nan,
                           "lo": math.nan, "hi": math.nan}
    if len(draws) < 2:
        return {**out, "defined": False, "why": "fewer than 2 draws with both arms"}
    # both against the donor cells' control (real-repeat at the same per_real): with teacher labels the generator
    # arm's own control is teacher-real, and a ratio of gains over two different controls would mean nothing
    gain = np.array([arm["arm"][d] - real["control"][d] for d in draws])
    real_gain = np.array([real["arm"][d] - real["control"][d] for d in draws])
    real_diff = paired_difference(real_gain, np.zeros_like(real_gain))
    out["donor_real_gain"] = real_diff
    if not real_diff["lo"] > 0:
        return {**out, "defined": False, "why": "the donor cells' own gain is not significantly positive"}
    rng = np.random.default_rng(rules.bootstrap_seed)
    idx = rng.integers(0, len(draws), size=(rules.resamples, len(draws)))
    num, den = gain[idx].mean(1), real_gain[idx].mean(1)
    boot = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    lo, hi = np.nanpercentile(boot, [2.5, 97.5])
    return {**out, "defined": True, "share": float(gain.mean() / real_gain.mean()), "lo": float(lo),
            "hi": float(hi), "resamples_undefined": int(np.isnan(boot).sum())}


def _exploratory(rows: list[dict], gates: dict, rules: AnswerRules) -> list[dict]:
    """Every (k, strategy, endpoint) row outside the primary family: raw paired intervals, labelled so."""
    strategies = sorted({r["strategy"] for r in rows if r.get("role") == "synthetic"})
    sizes = sorted({float(r["fraction"]) for r in rows}, reverse=True)
    endpoints = [(rules.part, rules.metric), (rules.part, "sensitivity@spec"), (rules.part, "balanced_accuracy")]
    primary = {(k, s) for _, k, s in PRIMARY}
    out = []
    for k in sizes:
        for strategy in strategies:
            for part, metric in endpoints:
                if (k, strategy) in primary and metric == rules.metric:
                    continue
                draws, arm, control = _vectors(_paired(rows, k, strategy, _reader(part, metric)))
                if not draws:
                    continue
                out.append({"k": k, "strategy": strategy, "endpoint": f"{part} {metric}", "draws": len(draws),
                            "diff": paired_difference(arm, control), "gate": _gate_count(gates, k, strategy, draws),
                            "label": "exploratory"})
    return out


# --------------------------------------------------------------------------- the gates
def source_gates(run_dir: Any, cfg: Any, rows: list[dict]) -> dict[tuple, bool | None]:
    """``{(k, draw, strategy): passed}``: the quality gate, on the validation patients, of the source each
    synthetic arm drew; a ready source (the shared generator) is gated once, on the grid's gate unit
    (``strategy_run.shared_gate_unit``); real donor cells have no gate (None, as a source not measured)."""
    import json
    from pathlib import Path

    from .paths import quality_dir
    from .strategy_report import ready_source, source_key
    from .strategy_run import shared_gate_unit

    first = shared_gate_unit(cfg)
    out: dict[tuple, bool | None] = {}
    for r in rows:
        if r.get("role") != "synthetic":
            continue
        v = {"kind": r["kind"], "strategy": r["strategy"], "setting": r["setting"]}
        key, ready = source_key(cfg, v), ready_source(cfg, v)
        unit = first if ready else (float(r["fraction"]), int(r["seed"]))
        path = None if unit is None else quality_dir(Path(run_dir), cfg.data.key, unit[0], unit[1], key) / "quality.json"
        gate = json.loads(path.read_text()).get("gate") if path is not None and path.is_file() else None
        out[(float(r["fraction"]), int(r["seed"]), r["strategy"])] = None if not gate else bool(gate["passed"])
    return out


# --------------------------------------------------------------------------- text
def _ci(d: dict, digits: int = 3) -> str:
    if math.isnan(d.get("lo", math.nan)):
        return f"{d['mean']:+.{digits}f} [n/a]"
    return f"{d['mean']:+.{digits}f} [{d['lo']:+.{digits}f}, {d['hi']:+.{digits}f}]"


def headline(answer: dict, k: float = 7.0) -> str:
    """The answer in one sentence with its conditions (the first sentence of the report and the README)."""
    row = next(r for r in answer["primary"] if r["k"] == k and r["strategy"] == "donor-gen")
    share = next(s for s in answer["shares"] if s["k"] == k and s["strategy"] == "donor-gen")
    margin = answer["rules"]["margin"]
    recovered = (f"it recovers {100 * share['share']:.0f} % [{100 * share['lo']:.0f}, {100 * share['hi']:.0f}] of "
                 "what their real cells give" if share["defined"] else f"the share of the donor cells' gain it "
                 f"recovers is undefined ({share['why']})")
    excluded = "is excluded" if row["excludes_gain"] else "is not excluded"
    interim = "" if answer.get("complete", True) else (f"INTERIM ({row['draws']} of {answer['planned_draws']} "
                                                        "planned draws; not the verdict): ")
    return (f"{interim}At {k:g} patients, adding samples of a diffusion model trained on 100 other patients changed test "
            f"AUROC by {_ci(row['diff'])} against a real-only control with the same compute ({row['draws']} site "
            f"draws, Holm p = {row['holm_p']:.3g}: {row['verdict']}); {recovered}; a gain of +{margin:g} {excluded} "
            f"(one-sided 95 % upper bound {row['tost']['upper']:+.3f}).")


def markdown(answer: dict, *, run: str) -> str:
    """The report: the headline, the primary family, shares, power and the exploratory rows."""
    lines = [f"# The malaria answer, powered ({run})", "", headline(answer, 7.0), "", headline(answer, 3.0), "",
             "## Primary family (test AUROC, arm minus its real-matched control, Holm over P1-P4)", "",
             "| id | k | arm | draws | difference [95 % CI] | Holm p | verdict | TOST +-{:g} | upper bound | "
             "gate passed |".format(answer["rules"]["margin"]), "|---|---|---|---|---|---|---|---|---|---|"]
    for r in answer["primary"]:
        g = r["gate"]
        lines.append(f"| {r['id']} | {r['k']:g} | {r['strategy']} | {r['draws']} | {_ci(r['diff'])} | "
                     f"{r['holm_p']:.3g} | {r['verdict']} | {r['tost']['verdict']} | {r['tost']['upper']:+.3f} | "
                     f"{g['passed']}/{r['draws']}" + (f" ({g['not_measured']} not measured)" if g["not_measured"]
                                                       else "") + " |")
    lines += ["", "## Share of the donor cells' gain recovered (bootstrap over draws)", "",
              "| k | arm | share [95 % CI] | note |", "|---|---|---|---|"]
    for s in answer["shares"]:
        text = f"{100 * s['share']:.0f} % [{100 * s['lo']:.0f}, {100 * s['hi']:.0f}]" if s["defined"] else "undefined"
        lines.append(f"| {s['k']:g} | {s['strategy']} | {text} | {'' if s['defined'] else s['why']} |")
    lines += ["", "## Power", "", "| id | SD of paired differences | draws | minimum detectable effect (80 %, "
              "family 4) |", "|---|---|---|---|"]
    lines += [f"| {r['id']} | {r['sd']:.4f} | {r['draws']} | {r['mde']:.4f} |" for r in answer["primary"]]
    lines += ["", "## Exploratory (not in the confirmatory family; raw 95 % intervals)", "",
              "| k | arm | endpoint | draws | difference [95 % CI] | raw verdict |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['k']:g} | {r['strategy']} | {r['endpoint']} | {r['draws']} | {_ci(r['diff'])} | "
              f"{verdict_of(r['diff'])} |" for r in answer["exploratory"]]
    return "\n".join(lines) + "\n"
