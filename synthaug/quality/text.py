"""The plain-text rendering of an evaluation (``synthaug evaluate`` prints it); the one place numbers of
quality.json become text."""
from __future__ import annotations

from typing import Any


def fmt(value: Any, spec: str = ".3f") -> str:
    """``value`` formatted with ``spec``, or ``n/a`` when it is missing."""
    return "n/a" if value is None else format(value, spec)


def _interval(ci: list[float] | None) -> str:
    return "" if not ci else f" [{fmt(ci[0])}, {fmt(ci[1])}]"


def _fidelity_lines(result: dict[str, Any]) -> list[str]:
    mem = result["memorization"]
    lines = [f"{'':24s} {'FID':>8s} {'KID':>8s} {'precision':>9s} {'recall':>7s} {'memorized':>9s}"]

    def row(name: str, fid: dict, memo: float | None) -> str:
        return (f"{name:24s} {fmt(fid['fid'], '8.2f')} {fmt(fid['kid'], '8.4f')} {fmt(fid['precision'], '9.3f')} "
                f"{fmt(fid['recall'], '7.3f')} {fmt(memo, '9.3f')}")

    fid = result["fidelity"]
    lines.append(row("synthetic: overall", fid["overall"], mem["overall"]["share"]))
    for name, r in fid["per_class"].items():
        lines.append(row(f"synthetic: {name}", r, mem["per_class"][name]["share"]))
    ref = result.get("reference_heldout")
    if ref:
        lines.append(row("real val (reference)", ref["overall"], mem["overall"]["heldout_share"]))
        for name, r in ref["per_class"].items():
            lines.append(row(f"real val: {name}", r, mem["per_class"][name]["heldout_share"]))
    lines += ["", f"memorized = share of samples at most as far from their nearest training image as the closest "
                  f"{mem['quantile']:.0%} of training images are from theirs (real val images should give about "
                  f"{mem['quantile']:g})"]
    if mem.get("note"):
        lines.append(f"note: {mem['note']}")
    return lines


def _cas_lines(cas: dict[str, Any]) -> list[str]:
    seeds = cas.get("per_seed") or []
    over = f"mean of {len(seeds)} seeds [95% t-interval]" if len(seeds) > 1 else "1 seed"
    # records written before CAS moved to validation were scored on test and say so
    split = cas.get("split", "test")
    items = cas.get(f"{split}_items")
    where = f"{items} real {'validation' if split == 'val' else split} images"
    lines = [f"CAS (balanced accuracy on {where}, {cas['recipe']['model']}, {over}):",
             f"  synthetic-trained {fmt(cas['cas'])}{_interval(cas.get('cas_ci'))} ({cas.get('steps')} steps) vs "
             f"real-trained {fmt(cas['real_score'])}{_interval(cas.get('real_ci'))} ({cas.get('real_steps')} steps), "
             f"ratio {fmt(cas['ratio'], '.2f')}"]
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
    lines += _fidelity_lines(result)
    if result.get("cas"):
        lines += [""] + _cas_lines(result["cas"])
    if result.get("gate"):
        lines += ["", gate_line(result["gate"])]
    return "\n".join(lines)
