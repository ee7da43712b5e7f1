"""The report's pictures (matplotlib, imported only when a picture is drawn)."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> Path:
    """Write ``fig`` to ``path`` through a temporary file (a crash never leaves half a PNG) and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    os.replace(tmp, path)
    return path


def _nan(x: Any) -> float:
    return math.nan if x is None else float(x)


def _fraction_series(analysis: dict, dataset: str, metric: str) -> list[tuple[str, list[float], list[dict]]]:
    """(label, fractions, statistics): the baseline first, then each generator at its selected ratio."""
    base = sorted((b for b in analysis["baselines"] if b["dataset"] == dataset), key=lambda b: b["fraction"])
    series = [("real only", [b["fraction"] for b in base], [b["test"][metric] for b in base])]
    verdicts = [v for v in analysis["verdicts"] if v["dataset"] == dataset]
    several = len({v.get("mix") for v in verdicts}) > 1
    for g, mix in sorted({(v["generator"], v.get("mix", "replace")) for v in verdicts}):
        vs = sorted((v for v in verdicts if v["generator"] == g and v.get("mix", "replace") == mix),
                    key=lambda v: v["fraction"])
        label = f"+ {g}" + (f" ({mix})" if several else "") + " (val-selected ratio)"
        series.append((label, [v["fraction"] for v in vs], [v["synthetic"] for v in vs]))
    return series


def plot_fraction(analysis: dict, dataset: str, path: Path) -> Path:
    """Primary metric on the test patients against the real training fraction: the baseline and each
    generator at its validation-selected ratio, mean over seeds with the 95 % t band."""
    plt = pyplot()
    metric = analysis["primary_metric"]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    series = _fraction_series(analysis, dataset, metric)
    for i, (label, xs, stats) in enumerate(series):
        mean = np.array([_nan(s["mean"]) for s in stats])
        lo = np.array([_nan(s["lo"]) for s in stats])
        hi = np.array([_nan(s["hi"]) for s in stats])
        style = {"color": "black", "lw": 2.2} if i == 0 else {"lw": 1.6}
        err = np.nan_to_num(np.stack([mean - lo, hi - mean]))
        line = ax.errorbar(xs, mean, yerr=err, marker="o", capsize=3, label=label, **style)[0]
        if np.isfinite(lo).any() and len(xs) > 1:
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.15, lw=0)
    fractions = sorted(set(series[0][1]))
    if len(fractions) > 1 and fractions[-1] / fractions[0] >= 4:
        ax.set_xscale("log")
    ax.set_xticks(fractions, [f"{f:g}" for f in fractions])
    ax.minorticks_off()
    ax.set_xlabel("real training fraction (of the training patients)")
    ax.set_ylabel(f"{metric} on the test patients")
    ax.set_title(f"{dataset}: mean over seeds, 95 % t band", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_gain(analysis: dict, dataset: str, generator: str, path: Path) -> Path:
    """Paired difference to the baseline against the synthetic ratio, one line per fraction; validation
    dashed (it selects), test solid (it reports); the selected ratio is ringed."""
    plt = pyplot()
    metric = analysis["primary_metric"]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    settings = [e for e in analysis["settings"] if e["dataset"] == dataset and e["generator"] == generator]
    several = len({e.get("mix") for e in settings}) > 1
    for f, mix in sorted({(e["fraction"], e.get("mix", "replace")) for e in settings}):
        es = sorted((e for e in settings if e["fraction"] == f and e.get("mix", "replace") == mix),
                    key=lambda e: e["ratio"])
        xs = [e["ratio"] for e in es]
        test = [e["diff_test"][metric] for e in es]
        mean = np.array([_nan(d["mean"]) for d in test])
        err = np.array([[_nan(d["mean"]) - _nan(d["lo"]) for d in test], [_nan(d["hi"]) - _nan(d["mean"]) for d in test]])
        name = f"fraction {f:g}" + (f" {mix}" if several else "")
        cont = ax.errorbar(xs, mean, yerr=np.nan_to_num(err), marker="o", capsize=3, label=f"{name}: test")
        color = cont[0].get_color()
        ax.plot(xs, [_nan(e["diff_val"][metric]["mean"]) for e in es], ls="--", color=color, alpha=0.6,
                label=f"{name}: validation")
        for e, m in zip(es, mean):
            if e["selected"]:
                ax.plot([e["ratio"]], [m], marker="o", ms=13, mfc="none", mec=color, mew=1.5)
    ax.axhline(0, color="grey", lw=1)
    ax.set_xlabel("synthetic ratio")
    ax.set_ylabel(f"{metric}: synthetic - real only (paired)")
    ax.set_title(f"{dataset}, {generator}: gain per ratio, 95 % paired t interval (ring: selected on val)",
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_curves(analysis: dict, dataset: str, fraction: float, path: Path) -> Path:
    """Validation primary metric against the optimizer step, one line per arm (mean over seeds), the
    baseline in black; a marker at each arm's median best step (the checkpoint kept)."""
    plt = pyplot()
    curves = [c for c in analysis.get("curves") or [] if c["dataset"] == dataset and c["fraction"] == fraction]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for c in curves:
        style = {"color": "black", "lw": 2.2} if c["arm"] == "real only" else {"lw": 1.4}
        mean = np.array([_nan(m) for m in c["mean"]])
        line = ax.plot(c["steps"], mean, label=f"{c['arm']} ({len(c['seeds'])} seeds)", **style)[0]
        best = float(np.median(c["best_steps"]))
        ax.plot([best], [np.interp(best, c["steps"], mean)], marker="v", ms=8, color=line.get_color())
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(f"{analysis['primary_metric']} on the validation patients")
    ax.set_title(f"{dataset}, fraction {fraction:g}: validation curves, mean over seeds (marker: median best step)",
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)
