"""The plain-text rendering of an evaluation (``synthaug evaluate`` prints it): the head (extractor, n), a table
with a column group per metric, each metric's section, the gate. Each metric says how its numbers read
(``Metric.text_columns``, ``text_cells``, ``text_notes``, ``text_section``)."""
from __future__ import annotations

from typing import Any

from .metrics import reported_metrics
from .numbers import fmt


def _table_lines(result: dict[str, Any], metrics: list) -> list[str]:
    """One table, a row per scope (synthetic overall and per class; the same for real validation images when a
    metric has them), a column group per metric (its ``text_columns``), then the metrics' notes."""
    metrics = [m for m in metrics if m.text_columns and m.record(result) is not None]
    columns = [c for m in metrics for c in m.text_columns]
    lines = [f"{'':24s} " + " ".join(f"{c.header:>{c.width}s}" for c in columns)]
    classes = list(result["data"]["classes"])
    sides = [("synthetic", "synthetic: overall", "synthetic: ")]
    if any(m.has_reference(result) for m in metrics):
        sides.append(("reference", "real val (reference)", "real val: "))
    for side, overall, prefix in sides:
        for name in [None, *classes]:
            values = [v for m in metrics for v in m.text_cells(result, side, name)]
            label = overall if name is None else prefix + name
            lines.append(f"{label:24s} " + " ".join(fmt(v, f"{c.width}{c.spec}") for v, c in zip(values, columns)))
    notes = [line for m in metrics for line in m.text_notes(result)]
    return lines + ([""] + notes if notes else [])


def gate_line(gate: dict[str, Any]) -> str:
    """The quality gate's verdict in one line, e.g. "quality gate: generator rejected (CAS ratio 0.55 < 0.80; ...)"."""
    return f"quality gate: {gate['reason']}"


def format_report(result: dict[str, Any]) -> str:
    """A plain-text table of ``evaluate_generator``'s result."""
    ext = result["extractor"]
    val = ext.get("val") or {}
    recipe = ext.get("recipe") or {}
    lines = [f"features: {recipe.get('model')} trained {recipe.get('steps')} steps on the real training patients "
             f"(val balanced accuracy {fmt(val.get('balanced_accuracy'))}; {ext.get('num_features')} features; "
             f"{'cached' if ext.get('cache_hit') else 'trained now'})",
             f"n = {result['n']} synthetic images against as many real training images per class", ""]
    metrics = reported_metrics([result])
    lines += _table_lines(result, metrics)
    for metric in metrics:
        section = metric.text_section(result)
        lines += [""] + section if section else []
    if result.get("gate"):
        lines += ["", gate_line(result["gate"])]
    return "\n".join(lines)
