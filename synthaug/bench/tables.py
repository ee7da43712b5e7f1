"""The benchmark's tables, built once as plain data (``Table`` and the headings and notes around them),
shown by both ``summary.md`` and the report (which adds pictures around them).

- ``answer``: the verdicts in one sentence per data set (the report opens with it);
- ``verdict_section``: per data set, fraction, generator and mix, the ratio selected on validation scored on
  test, against the stronger real-only control, with raw and Holm-adjusted p;
- ``settings_section``: every setting with its validation and test differences;
- ``selected_section``: all metrics of each selected setting;
- ``curves_section``: the best validation step of every arm (runs whose rows carry learning curves);
- ``quality_tables``: sample-quality metrics of the generators, overall and per class;
- ``gate_cell`` / ``gate_note``: the quality gate beside each verdict, and in words;
- ``runs_table``: the invocations of the benchmark that made the run folder.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..classifier import METRICS
from ..quality.metrics import reported_metrics
from ..stats import HELPS, HURTS, verdict_of
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


# --------------------------------------------------------------------------- the answer, in one sentence
def unit(v: dict) -> str:
    """What a verdict row's training groups are: "patients", or "images" for a folder data set without
    patient groups (every image its own group; the report must not call them patients)."""
    return "images" if v.get("group_kind") == "images" else "patients"


def _arm(v: dict, *, where: bool) -> str:
    """``cvae additive 0.1`` (and ``at 3 training patients`` when the sentence covers several fractions)."""
    return f"{v['generator']} {v.get('mix', 'replace')} {v['ratio']:g}" + (
        f" at {span(v['train_patients'])} training {unit(v)}" if where else "")


def _evidence(v: dict) -> str:
    return f"{fmt_stat(v['diff'], signed=True)}, Holm p {fmt_p(v.get('p_holm'))}"


def _names(verdicts: list[dict], *, where: bool) -> str:
    """The generators of some verdict rows, once each (with their training patients over several fractions)."""
    names = [v["generator"] + (f" at {span(v['train_patients'])} training {unit(v)}" if where else "")
             for v in verdicts]
    return ", ".join(dict.fromkeys(names))


def answer_sentence(verdicts: list[dict], metric: str, *, dataset: str | None = None) -> str:
    """One data set's verdict rows in one sentence: which generators changed ``metric`` significantly (Holm)
    against the real-only control, or else the best difference found; then the rows that tested nothing
    (validation chose no synthetic, too few seeds). E.g. "At 3 training patients, no generator changed balanced
    accuracy significantly against the stronger real-only control (best: cvae additive 0.1, -0.004 [-0.030,
    +0.020], Holm p 0.900); validation chose no synthetic for ddpm." ``dataset``: named when the run has several."""
    fractions = {v["fraction"] for v in verdicts}
    where = len(fractions) > 1
    patients = span(sorted({p for v in verdicts for p in v["train_patients"]}))
    what = unit(verdicts[0]) if verdicts else "patients"
    at = (f"at {len(fractions)} training fractions ({patients} training {what})" if where
          else f"at {patients} training {what}")
    at = (f"On {dataset}, {at}" if dataset else at[0].upper() + at[1:])
    control = ("the stronger real-only control" if any(v.get("matched") is not None for v in verdicts)
               else "the real-only baseline")
    name = metric.replace("_", " ")
    tested = [v for v in verdicts if v["ratio"] != 0 and not is_missing(v.get("p_holm"))]
    helps, hurts = ([v for v in tested if v["verdict"] == word] for word in (HELPS, HURTS))
    listed = " and ".join(f"{_arm(v, where=where)} ({_evidence(v)})" for v in helps or hurts)
    if helps:
        clause = f"{listed} improved {name} significantly against {control}"
        if hurts:
            clause += " and " + " and ".join(f"{_arm(v, where=where)} ({_evidence(v)})" for v in hurts) + " lowered it"
    elif hurts:
        clause = f"no generator improved {name} significantly against {control}, and {listed} lowered it"
    elif tested:
        best = max(tested, key=lambda v: v["diff"]["mean"])
        clause = (f"no generator changed {name} significantly against {control} "
                  f"(best: {_arm(best, where=where)}, {_evidence(best)})")
    else:
        clause = f"no generator could be tested against {control}"
    untested = [v for v in verdicts if v not in tested]
    tails = [f"{word} for {_names([v for v in untested if v['verdict'] == word], where=where)}"
             for word in dict.fromkeys(v["verdict"] for v in untested)]
    return f"{at}, {clause}" + "".join(f"; {t}" for t in tails) + "."


def answer(analysis: dict) -> str:
    """The run's answer: one ``answer_sentence`` per data set, in the order of the verdicts."""
    datasets = list(dict.fromkeys(v["dataset"] for v in analysis["verdicts"]))
    return " ".join(answer_sentence([v for v in analysis["verdicts"] if v["dataset"] == d],
                                    analysis["primary_metric"], dataset=d if len(datasets) > 1 else None)
                    for d in datasets)


# --------------------------------------------------------------------------- the classifier's results
def _has_matched(analysis: dict) -> bool:
    return any(v.get("matched") is not None for v in analysis["verdicts"])


def verdict_section(analysis: dict, n_seeds: int, quality: list[dict] | None = None) -> list[Any]:
    """The verdict of each data set, fraction, generator and mix (the ratio selected on validation, scored
    on test) with raw and Holm-adjusted p; ``n_seeds``: the seeds of the config, to mark verdicts over fewer.
    ``quality``: the run's quality records (``paths.quality_records``); when they carry the quality gate, a
    ``quality gate`` column says beside each verdict whether its generator was rejected, and a paragraph why."""
    matched = _has_matched(analysis)
    gates = gates_by_generator(quality or [])
    rows = []
    for v in analysis["verdicts"]:
        partial = "" if v["complete"] else f" ({len(v['seeds'])} of {n_seeds} seeds)"
        controls = [fmt_stat(v["baseline"])] + ([fmt_stat(v["matched"]) if v.get("matched") else "n/a"] if matched else [])
        against = [v.get("reference", "real only")] if matched else []
        gate = [gate_cell(gates.get((v["dataset"], v["fraction"], v["generator"]), []))] if gates else []
        rows.append([v["dataset"], f"{v['fraction']:g}", span(v["train_patients"]), v["generator"], f"{v['ratio']:g}",
                     v.get("mix", "replace"), *controls, fmt_stat(v["synthetic"]), fmt_stat(v["diff"], signed=True),
                     *against, fmt_p(v["p"]), fmt_p(v.get("p_holm")), f"**{v['verdict']}**{partial}", *gate])
    kinds = {unit(v) for v in analysis["verdicts"]}
    header = (["data set", "fraction", "train patients" if kinds <= {"patients"} else "train patients (or images)"
               if len(kinds) > 1 else "train images", "generator", "ratio (val-selected)", "mix", "real only"]
              + (["real-matched"] if matched else []) + ["real + synthetic", "difference"]
              + (["against"] if matched else []) + ["p (raw)", "p (Holm)", "verdict"]
              + (["quality gate"] if gates else []))
    return [Heading(f"Verdicts on the test patients ({analysis['primary_metric']})"), Table(header, rows),
            Para(_verdict_note(analysis, matched))] + ([Para(gate_note(gates))] if gates else [])


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


def baseline_section(analysis: dict) -> list[Any]:
    """The real-only baseline of each data set and fraction, every metric on the validation and test patients
    (mean over seeds with its 95 % t interval): what a real-only run (no generator) reports."""
    primary = analysis["primary_metric"]
    blocks: list[Any] = [Heading("Real-only baseline (every metric, mean over seeds)")]
    for b in analysis.get("baselines") or []:
        patients = b.get("train_patients") or []
        blocks += [Heading(f"{b['dataset']}, fraction {b['fraction']:g} ({span(patients)} training patients, "
                           f"{len(b['seeds'])} seeds)", 3),
                   Table(["metric", "validation", "test"],
                         [[f"**{m}**" if m == primary else m, fmt_stat(b["val"][m]), fmt_stat(b["test"][m])]
                          for m in METRICS if m in b["test"]])]
    blocks.append(Para(INTERVAL_NOTE))
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
    """Sample-quality metrics, mean ± sd over the seeds evaluated: overall, and per class; a column group per
    metric (``synthaug.quality.metrics``: each says its columns and values)."""
    metrics = reported_metrics([r["q"] for r in records])
    overall, per_class = [], []
    for (d, f, g), rs in group_quality(records).items():
        qs = [r["q"] for r in rs]
        overall.append([d, f"{f:g}", g, str(len(rs))] + _metric_cells(metrics, qs, None))
        per_class += [[d, f"{f:g}", g, c] + _metric_cells(metrics, qs, c) for c in qs[0]["data"]["classes"]]
    return (Table(["data set", "fraction", "generator", "seeds"] + _metric_headers(metrics, per_class=False), overall),
            Table(["data set", "fraction", "generator", "class"] + _metric_headers(metrics, per_class=True), per_class))


def _metric_headers(metrics: list, *, per_class: bool) -> list[str]:
    return [c.header for m in metrics for c in m.table_columns(per_class=per_class)]


def _metric_cells(metrics: list, qs: list[dict], name: str | None) -> list[str]:
    """Each metric's cells for one generator (``name``: a class, or None overall)."""
    cells = []
    for m in metrics:
        for column, values in zip(m.table_columns(per_class=name is not None), m.table_values(qs, name)):
            cells.append(span(sorted(set(values))) if column.summary == "span" else mean_sd(values))
    return cells


# --------------------------------------------------------------------------- the quality gate
def gates_by_generator(records: list[dict]) -> dict[tuple, list[dict]]:
    """The quality gate's verdicts (``quality.json``'s ``gate``, each with its ``seed``) by (data set, fraction,
    generator), over the seeds whose quality was measured. Records without one (gate off, CAS off, or written
    before the gate existed) are left out: no gate is no verdict, not a pass."""
    out: dict[tuple, list[dict]] = {}
    for key, rs in group_quality(records).items():
        gates = [{**r["q"]["gate"], "seed": r["seed"]} for r in rs if r["q"].get("gate")]
        if gates:
            out[key] = gates
    return out


def _why(gates: list[dict]) -> str:
    """What the rejected seeds failed on, in short: ``CAS ratio 0.55``, the weakest class's recall ratio and a
    real-trained reference at chance where those failed."""
    # a reference at chance first: it makes the ratio beside it meaningless
    parts = ["real-trained reference at chance"] if any("reference" in g.get("failed", []) for g in gates) else []
    parts.append("CAS ratio " + ", ".join(fmt_ratio(g.get("ratio")) for g in gates))
    weak = [g for g in gates if "class" in g.get("failed", [])]
    if weak:
        parts.append(", ".join(f"{g['weakest_class']} recall ratio {fmt_ratio(g['weakest_class_ratio'])}" for g in weak))
    return "; ".join(parts)


#: where a reader whose generators the gate rejected finds one that passes
RECIPE_POINTER = ("A generator that passes the gate: the ddpm recipe (`configs/recipes.yaml`; docs/generators.md, "
                  "\"Recipes: what trains in 30 minutes on 2 cores and passes the gate\"), about 21 minutes on 2 CPU "
                  "cores at 140 training patients")


def gate_headline(gates: dict[tuple, list[dict]]) -> str | None:
    """One paragraph when the quality gate rejected every generator it measured (None otherwise): which, why,
    what that means for the verdicts, and where a generator that passes is (``RECIPE_POINTER``)."""
    if not gates or any(g["passed"] for gs in gates.values() for g in gs):
        return None
    which = "; ".join(f"`{g}` at fraction {f:g} ({_why(gs)})" for (_, f, g), gs in gates.items())
    return (f"**No generator of this run passed the quality gate**: {which}. Its verdicts test synthetic images "
            f"that do not carry the classes. {RECIPE_POINTER}.")


def fmt_ratio(x: Any) -> str:
    return "n/a" if is_missing(x) else f"{x:.2f}"


def gate_cell(gates: list[dict]) -> str:
    """The quality gate of one generator beside its verdict: ``generator rejected (CAS ratio 0.55)``,
    ``passed (CAS ratio 0.91)``, or ``not measured``. Rejected when any measured seed was (the verdict pools
    seeds the gate did not see, so one rejection already says the generator is unreliable)."""
    if not gates:
        return "not measured"
    rejected = [g for g in gates if not g["passed"]]
    if not rejected:
        return f"passed ({_why(gates)})"
    some = "" if len(rejected) == len(gates) else f" in {len(rejected)} of {len(gates)} seeds measured"
    return f"**generator rejected**{some} ({_why(rejected)})"


def gate_note(gates: dict[tuple, list[dict]]) -> str:
    """The quality gate in words: its thresholds, which generators it rejected and why (every seed's reason)."""
    first = next(iter(gates.values()))[0]
    rule = (f"Quality gate (`quality.gate`): a generator is rejected when a classifier trained on its images only, "
            f"scored on the real **validation** patients, reaches less than {first['min_ratio']:.2f} of the balanced "
            f"accuracy of the same classifier trained on the real images (CAS ratio), when its weakest class "
            f"reaches less than {first['min_class_ratio']:.2f} of the real-trained recall, or when the real-trained "
            "reference is not above chance.")
    rejected = {k: [g for g in gs if not g["passed"]] for k, gs in gates.items()}
    rejected = {k: gs for k, gs in rejected.items() if gs}
    if not rejected:
        return rule + " Every generator measured passed."
    why = "; ".join(f"`{g}` at fraction {f:g} ({d}), seed {x['seed']}: {x['reason']}"
                    for (d, f, g), gs in rejected.items() for x in gs)
    return (rule + f" **Rejected**: {why}. Rejected generators were still trained and benchmarked (their verdicts "
            "stand); a verdict beside a rejection tests images that do not carry the classes.")


# --------------------------------------------------------------------------- the run
def runs_table(runs: list[dict]) -> Table:
    """The finished invocations of the benchmark (``runs.jsonl`` records with a wall time); a shard column
    when the run was spread over shards."""
    sharded = any(r.get("shard") for r in runs)
    return Table(["started", "finished", "minutes", "processes", "cells run"] + (["shard"] if sharded else []),
                 [[r.get("started", ""), r.get("finished", ""), f"{r.get('seconds', 0) / 60:.1f}",
                   str(r.get("processes", "")), str(r.get("cells_run", ""))] + ([r.get("shard") or ""] if sharded else [])
                  for r in runs])
