"""The strategies grid's analysis and report: one sentence that answers the question, one figure a clinician
reads in 30 seconds (real infected cells beside synthetic ones; missed infections per arm), then the tables.

Per fraction and strategy, the setting with the best mean validation score is chosen (test is not looked at);
its verdict on the test patients is read against the stronger, on validation, of the baseline and the
strategy's own control (``strategy_config``), paired by seed, with Holm-adjusted p across the local strategies'
verdicts. The donor strategy answers another question (a generator trained on other patients, against sharing
their images) and is reported apart: its own Holm family, and the share of the donor-real upper bound's gain
that the donor generator recovers.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..classifier import METRICS
from ..config import from_dict
from ..quality.metrics import metric_record
from ..strategy import create_strategy
from ..stats import HELPS, HURTS, NO_DIFFERENCE, holm, mean_ci, paired_difference, verdict_of
from ..utils import atomic_write_text
from .analysis import without_nan
from .document import Bullets, Figure, Heading, Para, Table, render_html, render_markdown
from .paths import check_same_config, read_config_records, read_results
from .clinician import clinician_figure, patients_text
from .report import read_runs
from .strategy_config import BASELINE, StrategiesConfig, arms
from .tables import INTERVAL_NOTE, fmt_interval, fmt_p, fmt_ratio, runs_table

ALPHA = 0.05
SHOWN = ("balanced_accuracy", "sensitivity")


def is_strategies_run(run_dir: str | os.PathLike) -> bool:
    records = read_config_records(Path(run_dir))
    return bool(records) and "strategies" in next(iter(records.values())).get("config", {})


def load_strategies_run(run_dir: str | os.PathLike) -> tuple[StrategiesConfig, list[dict]]:
    run_dir = Path(run_dir)
    records = read_config_records(run_dir)
    config = check_same_config(records, run_dir)
    return from_dict(StrategiesConfig, config, where=next(iter(records)).name), read_results(run_dir)


# --------------------------------------------------------------------------- analysis
def _stat(values: list[float]) -> dict[str, Any]:
    mean, lo, hi = mean_ci(values)
    return {"mean": mean, "lo": lo, "hi": hi, "values": [float(v) for v in values]}


def analyze_strategies(rows: list[dict], cfg: StrategiesConfig) -> dict:
    """Settings (every synthetic arm, paired with the baseline and its control), the setting chosen on
    validation per fraction and strategy, and its test verdict; the donor's recovered share."""
    primary = cfg.primary_metric
    by: dict[tuple, dict[int, dict]] = {}
    patients: dict[float, set] = {}
    for r in rows:
        by.setdefault((float(r["fraction"]), r["arm"]), {})[int(r["seed"])] = r
        patients.setdefault(float(r["fraction"]), set()).add(r["train_patients"])
    settings = []
    for f in cfg.unit_sizes:
        base = by.get((f, BASELINE), {})
        for arm in arms(cfg):
            if arm.role != "synthetic" or (f, arm.name) not in by:
                continue
            mine, control = by[(f, arm.name)], by.get((f, arm.control), {})
            seeds = sorted(set(mine) & set(base) & set(control))
            e: dict[str, Any] = {"fraction": f, "arm": arm.name, "strategy": arm.strategy, "kind": arm.kind,
                                 "setting": arm.setting, "control": arm.control, "seeds": seeds,
                                 "train_patients": sorted({mine[s]["train_patients"] for s in seeds})}
            for part in ("val", "test"):
                for name, src in (("arm", mine), ("baseline", base), ("control", control)):
                    e[f"{name}_{part}"] = {m: _stat([src[s][part][m] for s in seeds]) for m in METRICS}
                for ref, src in (("baseline", base), ("control", control)):
                    e[f"diff_{ref}_{part}"] = {m: paired_difference([mine[s][part][m] for s in seeds],
                                                                    [src[s][part][m] for s in seeds]) for m in METRICS}
                # the control against the baseline: for the donor, the upper bound's gain
                e[f"diff_control_baseline_{part}"] = {m: paired_difference([control[s][part][m] for s in seeds],
                                                                           [base[s][part][m] for s in seeds])
                                                      for m in METRICS}
            e["per_seed"] = {s: {"arm": mine[s]["test"][primary], "baseline": base[s]["test"][primary],
                                 "control": control[s]["test"][primary]} for s in seeds}
            settings.append(e)
    verdicts = [_verdict(family, primary) for family in _families(settings)]
    verdicts = [v for v in verdicts if v is not None]
    for donor in (False, True):
        family = [v for v in verdicts if sharing(v) == donor]
        for v, p in zip(family, holm([v["diff"]["p"] for v in family])):
            v["p_holm"] = p
            v["verdict"] = verdict_of(v["diff"], p=p, alpha=ALPHA)
    return {"name": cfg.name, "primary_metric": primary, "settings": settings, "verdicts": verdicts,
            "baselines": _arm_table(by, cfg, role=("baseline", "control")),
            "patients": {f: sorted(p) for f, p in patients.items()}}


def _families(settings: list[dict]) -> list[list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for e in settings:
        out.setdefault((e["fraction"], e["strategy"]), []).append(e)
    return list(out.values())


def _verdict(family: list[dict], primary: str) -> dict | None:
    """The setting with the best mean validation score among those with the most seeds, read on test against
    the stronger control on validation (the donor: against the baseline, with its upper bound beside it)."""
    scored = [e for e in family if e["seeds"]]
    if not scored:
        return None
    most = max(len(e["seeds"]) for e in scored)
    best = max((e for e in scored if len(e["seeds"]) == most),
               key=lambda e: np.nan_to_num(e["arm_val"][primary]["mean"], nan=-np.inf))
    best["selected"] = True
    base, control = best["baseline_val"][primary]["mean"], best["control_val"][primary]["mean"]
    use_control = not sharing(best) and not math.isnan(control) and control > np.nan_to_num(base, nan=-np.inf)
    ref = "control" if use_control else "baseline"
    out = {"fraction": best["fraction"], "strategy": best["strategy"], "kind": best["kind"], "arm": best["arm"],
           "setting": best["setting"], "settings_tried": len(family), "seeds": best["seeds"],
           "train_patients": best["train_patients"], "reference": best["control"] if use_control else BASELINE,
           "diff": best[f"diff_{ref}_test"][primary], "arm_test": best["arm_test"][primary],
           "reference_test": best[f"{ref}_test"][primary],
           "diff_sensitivity": best[f"diff_{ref}_test"]["sensitivity"], "p_holm": math.nan, "verdict": ""}
    if sharing(best):  # the share of sharing the donor's images' gain that its generator recovers
        upper = best["diff_control_baseline_test"][primary]
        out["upper_diff"] = upper
        out["upper_test"] = best["control_test"][primary]
        there = upper["mean"] > 0 and not math.isnan(upper["lo"]) and upper["lo"] > 0
        out["share"] = out["diff"]["mean"] / upper["mean"] if there else math.nan
        # the ratio of the means even when the upper bound's gain is not significant: an estimate, not a finding
        out["share_estimate"] = out["diff"]["mean"] / upper["mean"] if upper["mean"] > 0 else math.nan
        out["share_ci"] = _share_interval(best["per_seed"]) if there else [math.nan, math.nan]
    return out


def _share_interval(per_seed: dict, draws: int = 4000) -> list[float]:
    """A 95 % percentile bootstrap over seeds of mean(generator - baseline) / mean(donor real - baseline); draws
    whose denominator is not positive count as a share of 0 (no gain to recover in that resample)."""
    seeds = sorted(per_seed)
    gen = np.array([per_seed[s]["arm"] - per_seed[s]["baseline"] for s in seeds])
    up = np.array([per_seed[s]["control"] - per_seed[s]["baseline"] for s in seeds])
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(seeds), size=(draws, len(seeds)))
    num, den = gen[idx].mean(1), up[idx].mean(1)
    shares = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    return [float(np.percentile(shares, 2.5)), float(np.percentile(shares, 97.5))]


def _arm_table(by: dict, cfg: StrategiesConfig, role: tuple) -> list[dict]:
    out = []
    for f in cfg.unit_sizes:
        for arm in arms(cfg):
            if arm.role in role and (f, arm.name) in by:
                rows = by[(f, arm.name)]
                seeds = sorted(rows)
                out.append({"fraction": f, "arm": arm.name, "seeds": seeds,
                            **{part: {m: _stat([rows[s][part][m] for s in seeds]) for m in METRICS}
                               for part in ("val", "test")}})
    return out


# --------------------------------------------------------------------------- words
def _setting(setting: dict) -> str:
    return ", ".join(f"{k} {v:g}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in setting.items())


def _diff(d: dict) -> str:
    return fmt_interval(d["mean"], d["lo"], d["hi"], signed=True)


def headline(analysis: dict) -> str:
    """One sentence that answers the question. When a strategy helped (Holm-adjusted, against the stronger
    control): the one with the largest gain. Otherwise it says so first, then gives the row that came closest
    (the largest estimate, which is not a finding: it was picked on test among many); then what hurt and what
    had too few seeds."""
    local = [v for v in analysis["verdicts"] if not sharing(v) and not math.isnan(v["diff"]["mean"])]
    if not local:
        return "No strategy has finished on enough seeds to answer yet."
    helped = [v for v in local if v["verdict"] == HELPS]
    best = max(helped or local, key=lambda v: v["diff"]["mean"])
    metric = analysis["primary_metric"].replace("_", " ")
    change = (f"{best['strategy']} ({_setting(best['setting'])}) changed {metric} by {_diff(best['diff'])} against "
              f"{best['reference']} (Holm p {fmt_p(best['p_holm'])}: {best['verdict']}{_gate_words(best)})")
    if helped:
        first = f"At {patients_text(best)} patients, {change}"
    elif all(v["verdict"] not in (HURTS, NO_DIFFERENCE) for v in local):
        first = f"Too few seeds to answer yet; the largest estimate so far: at {patients_text(best)} patients, {change}"
    else:
        first = ("No strategy helped at any number of patients (Holm-adjusted, against the stronger control); the "
                 f"closest: at {patients_text(best)} patients, {change}")
    others = [v for v in local if v is not best]
    parts = []
    helps = sorted({v["strategy"] for v in others if v["verdict"] == HELPS})
    if helps:
        parts.append(f"{', '.join(helps)} also helped somewhere")
    hurt = sorted({v["strategy"] for v in local if v["verdict"] == HURTS})
    parts.append(f"{', '.join(hurt)} hurt somewhere" if hurt else "none hurt")
    few = sorted({v["strategy"] for v in local if v["verdict"] not in (HELPS, HURTS, NO_DIFFERENCE)})
    if few:
        parts.append(f"{', '.join(few)} had too few seeds or distinct values to tell somewhere")
    return first + "; " + "; ".join(parts) + "."


def _gate_words(v: dict) -> str:
    gate = v.get("gate")
    return "" if not gate or gate == "not measured" else f"; its source {gate} the quality gate"


def target_line(analysis: dict) -> str:
    """Issue 14's target: a helps verdict of at least +0.02 at 7 training patients or fewer."""
    met = [v for v in analysis["verdicts"] if not sharing(v) and v["verdict"] == HELPS
           and v["diff"]["mean"] >= 0.02 and v["train_patients"] and max(v["train_patients"]) <= 7]
    if met:
        return ("Target (a helps verdict of at least +0.02 at 7 training patients or fewer): **met** by "
                + ", ".join(f"{v['strategy']} at {patients_text(v)} patients ({_diff(v['diff'])})" for v in met) + ".")
    return ("Target (a helps verdict of at least +0.02 at 7 training patients or fewer): **not met**; the verdict "
            "table shows which strategies came closest." + _gate_summary(analysis))


def _gate_summary(analysis: dict) -> str:
    """Whether the target was tried with sources that carry the diagnosis: the quality gates of the local
    verdicts at 7 patients or fewer (``attach_gates``), so a "not met" is read as an answer about these
    generators, not about synthetic cells in general."""
    few = [v for v in analysis["verdicts"] if not sharing(v) and v["train_patients"]
           and max(v["train_patients"]) <= 7 and v.get("gate")]
    if not few:
        return ""
    count = {g: sum(v["gate"] == g for v in few) for g in ("passed", "failed", "not measured")}
    words = ", ".join(f"{g} {n}" for g, n in count.items() if n)
    passed = sorted({f"{v['strategy']} at {patients_text(v)} patients" for v in few if v["gate"] == "passed"})
    tail = (f" Only {', '.join(passed)} drew from a source that passed." if passed and count["failed"] + count["not measured"]
            else "" if passed else " No strategy there was tried with a source that passed the gate, so this is an "
                                   "answer about these generators, not about synthetic cells that carry the diagnosis.")
    return (f" Of the {len(few)} verdicts at 7 patients or fewer, the sources' quality gates (CAS on validation "
            f"patients): {words}.{tail}")


# --------------------------------------------------------------------------- the figure
# --------------------------------------------------------------------------- tables
def verdict_table(verdicts: list[dict], metric: str) -> Table:
    rows = []
    for v in verdicts:
        rows.append([patients_text(v), v["strategy"], _setting(v["setting"]), str(len(v["seeds"])), v["reference"],
                     fmt_interval(v["arm_test"]["mean"], v["arm_test"]["lo"], v["arm_test"]["hi"]),
                     fmt_interval(v["reference_test"]["mean"], v["reference_test"]["lo"], v["reference_test"]["hi"]),
                     _diff(v["diff"]), fmt_p(v["diff"]["p"]), fmt_p(v["p_holm"]), f"**{v['verdict']}**",
                     _diff(v["diff_sensitivity"]), v.get("gate", "not measured")])
    return Table(["patients", "strategy", "setting (chosen on validation)", "seeds", "against", f"{metric} (test)",
                  "against (test)", "difference [95 % CI]", "raw p", "Holm p", "verdict", "sensitivity difference",
                  "source's quality gate"], rows)


def donor_table(verdicts: list[dict]) -> Table:
    rows = []
    for v in verdicts:
        if not sharing(v):
            continue
        rows.append([patients_text(v), _setting(v["setting"]), str(len(v["seeds"])), _diff(v["diff"]),
                     _diff(v["upper_diff"]), _share(v), fmt_p(v["p_holm"]), v["verdict"],
                     v.get("gate", "not measured")])
    return Table(["patients", "setting", "seeds", "donor generator vs local real", "donor real (upper bound) vs local "
                  "real", "share of the upper bound's gain recovered [95 % bootstrap over seeds]", "Holm p (donor family)", "verdict",
                  "donor generator's quality gate"], rows)


def _share(v: dict) -> str:
    if not math.isnan(v["share"]):
        return f"{100 * v['share']:.0f} % [{100 * v['share_ci'][0]:.0f}, {100 * v['share_ci'][1]:.0f}]"
    estimate = v.get("share_estimate", math.nan)
    if math.isnan(estimate):
        return "n/a (sharing the real cells gained nothing on average)"
    return f"{100 * estimate:.0f} % (an estimate only: the upper bound's gain is not significant)"


def donor_target_line(verdicts: list[dict]) -> str:
    """Issue 14's donor target: the shared generator recovers >= 50 % of the upper bound's gain at 3 and 7
    patients (a share read only where that gain is significant)."""
    rows = [v for v in verdicts if sharing(v) and v["train_patients"] and max(v["train_patients"]) <= 7]
    if not rows:
        return ""
    words = []
    for v in rows:
        if math.isnan(v["share"]):
            words.append(f"at {patients_text(v)} patients not measurable (the upper bound's gain is not significant)")
        else:
            words.append(f"at {patients_text(v)} patients {'met' if v['share'] >= 0.5 else 'not met'} "
                         f"({100 * v['share']:.0f} %)")
    return "Target (the shared generator recovers at least 50 % of the upper bound's gain at 7 patients or fewer): " \
           + "; ".join(words) + "."


def settings_table(settings: list[dict], metric: str) -> Table:
    rows = []
    for e in settings:
        rows.append([f"{e['fraction']:g}", e["arm"] + (" (chosen)" if e.get("selected") else ""), e["control"],
                     str(len(e["seeds"])), f"{e['arm_val'][metric]['mean']:.3f}", f"{e['control_val'][metric]['mean']:.3f}",
                     f"{e['baseline_val'][metric]['mean']:.3f}", _diff(e["diff_baseline_test"][metric]),
                     _diff(e["diff_control_test"][metric])])
    return Table(["fraction", "arm", "its control", "seeds", "val", "control val", "baseline val",
                  "test: vs baseline", "test: vs control"], rows)


def controls_table(baselines: list[dict], metric: str) -> Table:
    return Table(["fraction", "arm", "seeds", f"{metric} (val)", f"{metric} (test)", "sensitivity (test)"],
                 [[f"{b['fraction']:g}", b["arm"], str(len(b["seeds"])), fmt_interval(**_m(b["val"][metric])),
                   fmt_interval(**_m(b["test"][metric])), fmt_interval(**_m(b["test"]["sensitivity"]))]
                  for b in baselines])


def _m(s: dict) -> dict:
    return {"mean": s["mean"], "lo": s["lo"], "hi": s["hi"]}


def sharing(v: dict) -> bool:
    """A verdict of a ``sharing`` strategy (data of other patients: the donor question), not of the site's own."""
    return create_strategy(v["kind"]).family == "sharing"


def source_key(cfg: StrategiesConfig, v: dict) -> str:
    """The quality folder's name of the source a strategy draws from."""
    spec = next(s for s in cfg.strategies if s.key == v["strategy"])
    return create_strategy(v["kind"]).source_label(spec, v["setting"], cfg)


def ready_source(cfg: StrategiesConfig, v: dict) -> bool:
    """Whether a verdict's strategy draws a ready source as it is (a checkpoint, a folder: the same for every unit),
    not edits of the unit's cells nor a generator trained per unit."""
    spec = next(s for s in cfg.strategies if s.key == v["strategy"])
    return (v["kind"] != "edits" and spec.source is not None and spec.source in cfg.sources
            and cfg.sources[spec.source].source is not None)


def attach_gates(analysis: dict, run_dir: Path, cfg: StrategiesConfig) -> None:
    """Each verdict's ``gate``: "passed" or "failed" (the quality gate on validation patients, of the seeds
    measured at its fraction; failed when any failed), or "not measured"."""
    from .strategy_run import shared_gate_unit

    for v in analysis["verdicts"]:
        folder = Path(run_dir) / "quality" / cfg.data.key / f"frac{v['fraction']:g}"
        pattern = f"seed*/{source_key(cfg, v)}/quality.json"
        if ready_source(cfg, v) and cfg.sites is not None and shared_gate_unit(cfg) is not None:
            # a ready source of a sites grid is gated once, on one unit, for every site size (strategy_run)
            k, draw = shared_gate_unit(cfg)
            folder, pattern = Path(run_dir) / "quality" / cfg.data.key / f"frac{k:g}", f"seed{draw}/{source_key(cfg, v)}/quality.json"
        gates = [json.loads(p.read_text()).get("gate") for p in folder.glob(pattern)]
        gates = [g for g in gates if g]
        v["gate"] = "not measured" if not gates else ("passed" if all(g["passed"] for g in gates) else "failed")


def _donor_sizes(rows: list[dict]) -> str:
    """How many distinct images each donor arm draws from: a pool smaller than the donor's real cells gives the
    generator fewer distinct images than sharing the data would, which the share it recovers must be read with."""
    def span(kind: str) -> str:
        sizes = sorted({r["extra_items"] for r in rows if r.get("kind") == kind})
        return "-".join(str(x) for x in sorted({sizes[0], sizes[-1]})) if sizes else "n/a"

    return (f" The generator's arm draws from {span('donor')} distinct synthetic images per cell; the upper bound "
            f"from the donor patients' {span('donor-real')} real cells.")


def gate_table(run_dir: Path) -> Table | None:
    rows = []
    for path in sorted((run_dir / "quality").glob("*/frac*/seed*/*/quality.json")):
        q = json.loads(path.read_text())
        cas, gate = metric_record(q, "cas") or {}, q.get("gate") or {}  # CAS through its registered metric
        recall = cas.get("class_recall_ratio") or {}
        rows.append([path.parts[-4].replace("frac", ""), path.parts[-3].replace("seed", ""), path.parts[-2],
                     fmt_ratio(cas.get("cas")), fmt_ratio(cas.get("real_score")), fmt_ratio(cas.get("ratio")),
                     ", ".join(f"{k} {fmt_ratio(v)}" for k, v in recall.items()),
                     "passed" if gate.get("passed") else ("rejected" if gate else "n/a")])
    if not rows:
        return None
    return Table(["fraction", "seed", "source", "CAS (val)", "real-trained (val)", "CAS ratio", "class recall ratio",
                  "gate"], rows)


# --------------------------------------------------------------------------- the report
def _about_the_run(cfg: StrategiesConfig, rows: list[dict], run_dir: Path) -> Bullets:
    """The report's bullets on what ran (trainings, minutes, resumed invocations) and how verdicts are read."""
    every_run = read_runs(run_dir)
    minutes = sum(r.get("seconds", 0) for r in every_run if r.get("status") == "finished") / 60
    stopped = sum(r.get("status") == "started" for r in every_run) - sum(r.get("status") != "started" for r in every_run)
    trained = sum(r.get("seconds") or 0 for r in rows) / 60
    sizes, seeds = len(cfg.unit_sizes), len(cfg.unit_seeds)
    expected = sizes * seeds * len(arms(cfg))
    units = f"{sizes} fractions x {seeds} seeds" if cfg.sites is None else f"{sizes} site sizes x {seeds} site draws"
    return Bullets([
        f"{len(rows)} of {expected} classifier trainings ({units} x {len(arms(cfg))} arms). Their classifier "
        f"training adds up to {trained:.0f} min (without "
        "the generators, pools and quality measurements); the finished invocations took "
        f"{minutes:.0f} min of wall time (shards add up; they may have run side by side)"
        + (f", and {stopped} invocation(s) stopped before finishing and were resumed" if stopped > 0 else "")
        + ".",
        "Every arm draws exactly the baseline's real batches; a strategy's images come on top. Its control "
        "gets the same draws with real cells instead (the same teacher, class, weight or pre-training "
        "steps). Settings are chosen on validation patients; test patients only score the verdicts.",
        "A verdict is read against the stronger, on validation, of the baseline and the strategy's control, "
        "paired by seed, Holm-adjusted across the local strategies' verdict rows. The donor strategy (a "
        "generator trained on other training patients) is its own question and family."])


def build_strategies_report(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir
    cfg, rows = load_strategies_run(run_dir)
    if not rows:
        raise ValueError(f"{run_dir}: no finished arm yet; run the grid first")
    files = out / "report_files"
    files.mkdir(parents=True, exist_ok=True)
    analysis = analyze_strategies(rows, cfg)
    attach_gates(analysis, run_dir, cfg)
    metric = analysis["primary_metric"]
    from .strategy_run import cells_path

    cells = cells_path(run_dir, cfg.data.key, min(cfg.unit_sizes))
    figure = clinician_figure(analysis, cells, files / "clinician.png")
    local = [v for v in analysis["verdicts"] if not sharing(v)]
    runs = [r for r in read_runs(run_dir) if r.get("status") == "finished"]
    blocks: list[Any] = [
        Heading(f"{cfg.name}: how synthetic cells are used", 1),
        Para(f"**{headline(analysis)}**"),
        Para(target_line(analysis)),
        Figure(figure, "Left: real infected cells beside the synthetic ones each strategy uses (first seed, fewest "
                       "patients). Right: infections missed per 100 infected test cells, baseline and each "
                       "strategy at its setting chosen on validation (bar: the mean over seeds; dot: one seed); a "
                       "black dash marks the mean of that setting's own control (real cells instead)."),
        _about_the_run(cfg, rows, run_dir),
        Heading("Verdicts: a generator trained on the cell's own patients", 2),
        verdict_table(local, metric),
        Para(INTERVAL_NOTE),
    ]
    if any(sharing(v) for v in analysis["verdicts"]):
        blocks += [Heading("The data-sharing question: a donor generator", 2),
                   Para("The donor generator trained on other training patients of the same split (never validation "
                        "or test ones); its upper bound adds the donor patients' real cells instead (what sharing "
                        "the data itself would give)." + _donor_sizes(rows)),
                   donor_table(analysis["verdicts"])]
        donor_target = donor_target_line(analysis["verdicts"])
        blocks += [Para(donor_target)] if donor_target else []
    gates = gate_table(run_dir)
    if gates is not None:
        blocks += [Heading("Do the sources carry the diagnosis? (CAS on validation patients)", 2), gates]
    blocks += [Heading("Every setting", 2), settings_table(analysis["settings"], metric),
               Heading("Baseline and controls", 2), controls_table(analysis["baselines"], metric),
               Heading("Invocations", 2), runs_table(runs)]
    md, page = out / "report.md", out / "report.html"
    atomic_write_text(md, render_markdown(blocks, out))
    atomic_write_text(page, render_html(blocks, f"{cfg.name}: synthaug strategies report"))
    atomic_write_text(out / "analysis.json", json.dumps(without_nan(analysis), indent=1))
    return md, page
