"""Two runs that differ only in the classifier's augmentation, paired by seed: does a strong augmentation of
the real cells beat the reference run's real-only baseline, and do that run's synthetic arms beat it?

``compare_runs(run, against)`` reads the real-only rows of ``run`` (e.g. ``configs/bench/malaria-strong-aug.yaml``)
and the rows of ``against`` (a committed run record with the same protocol and seeds, e.g. malaria-strategies'),
and returns two families of paired differences on the test patients, each Holm-adjusted on its own:

* ``augmentation``: ``run``'s real-only arm minus ``against``'s real-only baseline, per data set and fraction;
* ``synthetic``: every synthetic arm of ``against`` minus ``run``'s real-only arm ("do synthetic cells, with
  the reference augmentation, beat standard strong augmentation of the real cells alone?").

The classifier protocols of the two runs must agree in everything but ``augment`` (``protocol_differences``):
otherwise the pairing would compare more than the augmentation.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..stats import holm, paired_difference, verdict_of
from .paths import check_same_config, diff_keys, read_config_records, read_results

__all__ = ["compare_runs", "comparison_markdown", "protocol_differences"]

_REAL_ARMS = ("real", "baseline")   # malaria-lowdata-v2's and malaria-strategies' name of the real-only arm
_SAME = ("datasets", "seeds", "classifier", "primary_metric", "positive_class")


def _config(run: Path) -> dict:
    records = read_config_records(run)
    if not records:
        raise ValueError(f"{run}: no config record (config*.json); give a run folder or a run record written by "
                         "benchmarks/run.py")
    return check_same_config(records, run)


def protocol_differences(a: dict, b: dict) -> list[str]:
    """The dotted config keys (among data sets, seeds, classifier, metric) where two runs differ, but for
    ``classifier.augment``."""
    keys = set()
    for name in _SAME:
        keys |= diff_keys({name: a.get(name)}, {name: b.get(name)})
    return sorted(keys - {"classifier.augment", "classifier.num_workers", "classifier.eval_batch_size"})


def _by_cell(rows: list[dict], arm: str | None) -> dict[tuple, dict[int, dict]]:
    """``{(dataset, fraction, arm label): {seed: row}}`` of the real-only rows (``arm=None``) or of every
    synthetic row (``arm="synthetic"``)."""
    out: dict[tuple, dict[int, dict]] = {}
    for row in rows:
        label = row.get("arm") or "real"
        real = label in _REAL_ARMS
        synthetic = row.get("role") == "synthetic" or label == "synthetic"
        if (arm is None and not real) or (arm == "synthetic" and not synthetic):
            continue
        if label == "synthetic":  # malaria-lowdata-v2's rows: a generator at a ratio
            label = f"{row.get('generator')} @ {float(row.get('ratio') or 0):g}"
        out.setdefault((row["dataset"], float(row["fraction"]), "real" if real else label), {})[int(row["seed"])] = row
    return out


def _pair(treated: dict[int, dict], reference: dict[int, dict], metric: str) -> dict[str, Any]:
    seeds = sorted(set(treated) & set(reference))
    t = [treated[s]["test"][metric] for s in seeds]
    r = [reference[s]["test"][metric] for s in seeds]
    return {"seeds": seeds, "treated": sum(t) / len(t) if t else math.nan,
            "reference": sum(r) / len(r) if r else math.nan, **paired_difference(t, r)}


def _family(entries: list[dict]) -> list[dict]:
    adjusted = holm([e["p"] for e in entries])
    for e, p in zip(entries, adjusted):
        e["holm_p"] = p
        e["verdict"] = verdict_of(e, p=p)
    return entries


def compare_runs(run: str | Path, against: str | Path, *, metric: str | None = None) -> dict[str, Any]:
    """The paired comparison of ``run`` (real only, another augmentation) with ``against`` (see the module)."""
    run, against = Path(run), Path(against)
    cfg, ref_cfg = _config(run), _config(against)
    different = protocol_differences(cfg, ref_cfg)
    if different:
        raise ValueError(f"{run} and {against} differ in {different}, not only in classifier.augment: their seeds "
                         "cannot be paired; run the first with the second's config and another augment")
    metric = metric or cfg.get("primary_metric", "balanced_accuracy")
    mine, ref_rows = _by_cell(read_results(run), None), read_results(against)
    if not mine:
        raise ValueError(f"{run}: no real-only result row yet; has the run finished a cell?")
    reference, synthetic = _by_cell(ref_rows, None), _by_cell(ref_rows, "synthetic")
    augmentation, versus = [], []
    for (dataset, fraction, _), rows in sorted(mine.items()):
        base = reference.get((dataset, fraction, "real"))
        if base:
            augmentation.append({"dataset": dataset, "fraction": fraction, "arm": "real",
                                 **_pair(rows, base, metric)})
        for (d, f, label), arm_rows in sorted(synthetic.items()):
            if (d, f) == (dataset, fraction):
                versus.append({"dataset": d, "fraction": f, "arm": label, **_pair(arm_rows, rows, metric)})
    return {"run": _name(run), "against": _name(against), "metric": metric,
            "augment": cfg["classifier"]["augment"], "reference_augment": ref_cfg["classifier"]["augment"],
            "augmentation": _family(augmentation), "synthetic": _family(versus)}


def _name(run: Path) -> str:
    """A run's name: its folder's, or the committed run's for a ``.../NAME/run-record`` copy."""
    return run.resolve().parent.name if run.name == "run-record" else run.name


def _num(v: float, signed: bool = False) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else (f"{v:+.3f}" if signed else f"{v:.3f}")


def _p(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:.3g}"


def _row(e: dict, *cells: str) -> str:
    ci = f"{_num(e['mean'], True)} [{_num(e['lo'], True)}, {_num(e['hi'], True)}]"
    return "| " + " | ".join([e["dataset"], f"{e['fraction']:g}", *cells, ci, _p(e["p"]), _p(e["holm_p"]),
                              e["verdict"], str(e["n"])]) + " |"


def comparison_markdown(result: dict[str, Any]) -> str:
    """The two tables of ``compare_runs`` as Markdown."""
    metric, aug, ref = result["metric"], f"`{result['augment']}`", f"`{result['reference_augment']}`"
    head = "| data set | fraction | {} | difference [95% CI] | raw p | Holm p | verdict | seeds |"
    lines = [f"## Real only: {aug} augmentation minus {ref} (test {metric}, paired by seed)", "",
             head.format(f"{ref} | {aug}"), "|---|---|---|---|---|---|---|---|---|"]
    lines += [_row(e, _num(e["reference"]), _num(e["treated"])) for e in result["augmentation"]]
    lines += ["", f"## Synthetic arms of {result['against']} ({ref}) minus real only with {aug} (test {metric})", "",
              head.format(f"arm | arm's mean | real only, {aug}"), "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [_row(e, e["arm"], _num(e["treated"]), _num(e["reference"])) for e in result["synthetic"]]
    return "\n".join(lines) + "\n"
