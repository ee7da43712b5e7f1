"""The benchmark's tables, built once as plain data (``Table`` and the headings and notes around them),
shown by both ``summary.md`` and the report (which adds pictures around them).

- ``verdict_section``: per data set, fraction, generator and mix, the ratio selected on validation scored on
  test, against the stronger real-only control, with raw and Holm-adjusted p;
- ``settings_section``: every setting with its validation and test differences;
- ``selected_section``: all metrics of each selected setting;
- ``curves_section``: the best validation step of every arm (runs whose rows carry learning curves);
- ``quality_tables``: sample-quality metrics of the generators, overall and per class;
- ``runs_table``: the invocations of the benchmark that made the run folder.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..classifier import METRICS
from ..stats import verdict_of
from .analysis import reference_of
from .document import Heading, Para, Table


# --------------------------------------------------------------------------- cells of a table
def is_missing(x: Any) -> bool:
    """None (NaN written to JSON) or NaN: a statistic there were too few seeds for."""
    return x is None or (isinstance(x, float) and math.isnan(x))


def fmt_interval(mean: float, lo: float, hi: float, signed: bool = False) -> str:
    """``mean [lo, hi]``. The interval is shown as computed, never clipped to the metric's range: a t
    interval over few seeds can pass 0 or 1, and the tables say so (``INTERVAL_NOTE``)."""
    if is_missing(mean):
        return "n/a"
    f = "{:+.3f}" if signed else "{:.3f}"
    ci = "" if is_missing(lo) or is_missing(hi) else f" [{f.format(lo)}, {f.format(hi)}]"
    return f.format(mean) + ci


INTERVAL_NOTE = ("Intervals are 95 % Student t intervals over seeds, shown as computed: they are not clipped to the "
                 "metric's range, so with few seeds one can pass 0 or 1. An interval is missing when there are too "
                 "few seeds, or when every paired difference is the same value (\"too few distinct values\": a "
                 "spread of 0 is no evidence of certainty).")


def fmt_stat(s: dict, signed: bool = False) -> str:
    """``fmt_interval`` of a ``{"mean", "lo", "hi"}`` statistic."""
    return fmt_interval(s["mean"], s["lo"], s["hi"], signed=signed)


def fmt_p(p: Any) -> str:
    return "n/a" if is_missing(p) else f"{p:.3f}"


def span(values: list) -> str:
    """One value, or ``min-max`` of several (e.g. the training patients of several seeds)."""
    return str(values[0]) if len(values) == 1 else f"{min(values)}-{max(values)}"


def mean_sd(values: list[Any]) -> str:
    """Mean ± sample sd of the values that are there (one value: no sd; none: n/a)."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return "n/a"
    return f"{np.mean(xs):.3g}" if len(xs) == 1 else f"{np.mean(xs):.3g} ± {np.std(xs, ddof=1):.2g}"


# --------------------------------------------------------------------------- the classifier's results
def _has_matched(analysis: dict) -> bool:
    return any(v.get("matched") is not None for v in analysis["verdicts"])


def verdict_section(analysis: dict, n_seeds: int) -> list[Any]:
    """The verdict of each data set, fraction, generator and mix (the ratio selected on validation, scored
    on test) with raw and Holm-adjusted p; ``n_seeds``: the seeds of the config, to mark verdicts over fewer."""
    matched = _has_matched(analysis)
    rows = []
    for v in analysis["verdicts"]:
        partial = "" if v["complete"] else f" ({len(v['seeds'])} of {n_seeds} seeds)"
        controls = [fmt_stat(v["baseline"])] + ([fmt_stat(v["matched"]) if v.get("matched") else "n/a"] if matched else [])
        against = [v.get("reference", "real only")] if matched else []
        rows.append([v["dataset"], f"{v['fraction']:g}", span(v["train_patients"]), v["generator"], f"{v['ratio']:g}",
                     v.get("mix", "replace"), *controls, fmt_stat(v["synthetic"]), fmt_stat(v["diff"], signed=True),
                     *against, fmt_p(v["p"]), fmt_p(v.get("p_holm")), f"**{v['verdict']}**{partial}"])
    header = (["data set", "fraction", "train patients", "generator", "ratio (val-selected)", "mix", "real only"]
              + (["real-matched"] if matched else []) + ["real + synthetic", "difference"]
              + (["against"] if matched else []) + ["p (raw)", "p (Holm)", "verdict"])
    return [Heading(f"Verdicts on the test patients ({analysis['primary_metric']})"), Table(header, rows),
            Para(_verdict_note(analysis, matched))]


def _verdict_note(analysis: dict, matched: bool) -> str:
    against = ("the stronger of the two real-only arms (`against`: the real-only baseline, or the real-matched "
               "control given as many draws as the additive arm; the stronger by mean validation score over the "
               "paired seeds)" if matched else "the real-only baseline")
    return (f"Difference: real + synthetic minus {against}, paired by seed; the real-only columns are over the same "
            f"paired seeds as the synthetic arm. {analysis.get('correction', 'Holm across the verdict rows')}; "
            "rows where validation chose ratio 0 (\"validation chose no synthetic\"), with too few seeds or with "
            f"constant differences test nothing and are left out of the correction. {INTERVAL_NOTE}")


def settings_section(analysis: dict) -> list[Any]:
    """Every setting: validation decides, test is shown for transparency."""
    primary = analysis["primary_metric"]
    matched = any(e.get("diff_matched_test") for e in analysis["settings"])
    rows = []
    for e in analysis["settings"]:
        dv, dt = e["diff_val"][primary], e["diff_test"][primary]
        ratio = f"{e['ratio']:g}" + (" (real only)" if e.get("from_baseline") else "")
        vs_matched = []
        if matched:
            dm = e.get("diff_matched_test")
            vs_matched = [fmt_stat(dm[primary], signed=True) if dm else "n/a"]
        rows.append([e["dataset"], f"{e['fraction']:g}", e["generator"], ratio, e.get("mix", "replace"),
                     "yes" if e["selected"] else "", fmt_stat(dv, signed=True), fmt_stat(dt, signed=True),
                     fmt_p(dt["p"]), *vs_matched])
    header = ["data set", "fraction", "generator", "ratio", "mix", "selected", f"val difference ({primary})",
              f"test difference ({primary})", "test p (raw)"] + (["test difference to real-matched"] if matched else [])
    return [Heading("Every setting"),
            Para("Validation decides; test is shown for transparency. `selected` marks the ratio chosen on validation. "
                 "Differences are to the real-only baseline over the paired seeds; p is uncorrected (descriptive)."),
            Table(header, rows)]


def selected_section(analysis: dict) -> list[Any]:
    """All metrics of each selected setting on the test patients, beside the controls over the same seeds."""
    primary = analysis["primary_metric"]
    blocks: list[Any] = [Heading("All metrics of the selected settings (test patients)")]
    for e in analysis["settings"]:
        if e["selected"]:
            blocks += [Heading(f"{e['dataset']}, fraction {e['fraction']:g}, {e['generator']} ({e.get('mix', 'replace')})"
                               f" at ratio {e['ratio']:g} ({len(e['seeds'])} seeds)", 3),
                       _all_metrics_table(e, primary)]
    blocks.append(Para(f"The verdicts are read on the primary metric ({primary}), chosen before the run. The other "
                       "metrics are descriptive: their p and verdicts are raw, not corrected for multiple comparisons; "
                       "the difference is to the same control as the verdict."))
    return blocks


def _all_metrics_table(setting: dict, primary: str) -> Table:
    matched = setting.get("matched") is not None
    diffs = setting["diff_matched_test" if reference_of(setting, primary) == "real-matched" else "diff_test"]
    rows = []
    for m in METRICS:
        d = diffs[m]
        controls = [fmt_stat(setting["baseline"]["test"][m])] + ([fmt_stat(setting["matched"]["test"][m])] if matched else [])
        rows.append([f"**{m}**" if m == primary else m, *controls, fmt_stat(setting["test"][m]),
                     fmt_stat(d, signed=True), fmt_p(d["p"]), verdict_of(d)])
    header = ["metric", "real only"] + (["real-matched"] if matched else []) + ["real + synthetic", "difference", "p",
                                                                                "verdict"]
    return Table(header, rows)


def curves_section(analysis: dict) -> list[Any]:
    """The best validation step of every arm (the checkpoint kept), and whether it was the last step
    evaluated (a curve still rising at the end of its budget). Nothing for runs without curves."""
    curves = analysis.get("curves") or []
    if not curves:
        return []
    rows = [[c["dataset"], f"{c['fraction']:g}", c["arm"], str(len(c["seeds"])), _steps(c["best_steps"]),
             span(sorted(set(c["last_steps"]))), f"{c['at_last']} of {len(c['seeds'])}"] for c in curves]
    rising = [f"{c['dataset']} {c['fraction']:g} {c['arm']}" for c in curves if 2 * c["at_last"] > len(c["seeds"])]
    note = ("Best step: the validation evaluation whose checkpoint was kept, per seed (median and range). "
            "`best at the last evaluation`: seeds whose curve had not turned down by the end of the budget.")
    if rising:
        note += " **Still rising at the end for most seeds** (a longer budget may change them): " + "; ".join(rising) + "."
    return [Heading(f"Learning curves: best validation step per arm ({analysis['primary_metric']})"),
            Table(["data set", "fraction", "arm", "seeds", "best step", "last step", "best at the last evaluation"],
                  rows), Para(note)]


def _steps(values: list[int]) -> str:
    """Median and range of per-seed steps: ``300 (200-400)``, or the one value."""
    if len(set(values)) == 1:
        return str(values[0])
    return f"{float(np.median(values)):g} ({min(values)}-{max(values)})"


# --------------------------------------------------------------------------- sample quality
def group_quality(records: list[dict]) -> dict[tuple, list[dict]]:
    """Quality records (``{"dataset", "fraction", "generator", "seed", "q": quality.json}``) by
    (data set, fraction, generator), in the order given."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["dataset"], r["fraction"], r["generator"]), []).append(r)
    return groups


def quality_tables(records: list[dict]) -> tuple[Table, Table]:
    """Sample-quality metrics, mean ± sd over the seeds evaluated: overall, and per class."""
    overall, per_class = [], []
    for (d, f, g), rs in group_quality(records).items():
        qs = [r["q"] for r in rs]
        overall.append([d, f"{f:g}", g, str(len(rs))] + _overall_cells(qs))
        per_class += [[d, f"{f:g}", g, c] + _class_cells(qs, c) for c in qs[0]["fidelity"]["per_class"]]
    return (Table(["data set", "fraction", "generator", "seeds", "n", "FID", "FID real val", "KID", "precision",
                   "recall", "memorized", "memorized real val", "CAS", "real-trained"], overall),
            Table(["data set", "fraction", "generator", "class", "FID", "precision", "recall", "memorized",
                   "CAS recall", "real-trained recall"], per_class))


def _overall_cells(qs: list[dict]) -> list[str]:
    fid = [q["fidelity"]["overall"] for q in qs]
    mem = [q["memorization"]["overall"] for q in qs]
    cas = [q.get("cas") or {} for q in qs]
    return [span(sorted({x["n_real"] for x in fid})),
            mean_sd([x["fid"] for x in fid]),
            mean_sd([(q.get("reference_heldout") or {}).get("overall", {}).get("fid") for q in qs]),
            mean_sd([x["kid"] for x in fid]), mean_sd([x["precision"] for x in fid]), mean_sd([x["recall"] for x in fid]),
            mean_sd([x["share"] for x in mem]), mean_sd([x.get("heldout_share") for x in mem]),
            mean_sd([c.get("cas") for c in cas]), mean_sd([c.get("real_score") for c in cas])]


def _class_cells(qs: list[dict], c: str) -> list[str]:
    fid = [q["fidelity"]["per_class"][c] for q in qs]

    def recall(arm: str) -> list[Any]:
        return [((q.get("cas") or {}).get(arm) or {}).get("per_class_recall", {}).get(c) for q in qs]

    return [mean_sd([x["fid"] for x in fid]), mean_sd([x["precision"] for x in fid]),
            mean_sd([x["recall"] for x in fid]), mean_sd([q["memorization"]["per_class"][c]["share"] for q in qs]),
            mean_sd(recall("synthetic")), mean_sd(recall("real"))]


# --------------------------------------------------------------------------- the run
def runs_table(runs: list[dict]) -> Table:
    """The finished invocations of the benchmark (``runs.jsonl`` records with a wall time); a shard column
    when the run was spread over shards."""
    sharded = any(r.get("shard") for r in runs)
    return Table(["started", "finished", "minutes", "processes", "cells run"] + (["shard"] if sharded else []),
                 [[r.get("started", ""), r.get("finished", ""), f"{r.get('seconds', 0) / 60:.1f}",
                   str(r.get("processes", "")), str(r.get("cells_run", ""))] + ([r.get("shard") or ""] if sharded else [])
                  for r in runs])
