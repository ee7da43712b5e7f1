"""The strategies report's clinician figure: real infected cells beside each source's synthetic ones, and the
infections each arm misses on test patients."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from .strategy_config import BASELINE


def patients_text(v: dict) -> str:
    """``"7"`` or ``"6-8"``: the training patients of a verdict (over its seeds)."""
    p = v["train_patients"]
    return f"{p[0]}" if len(p) == 1 else f"{p[0]}-{p[-1]}"


def _cells_panel(ax: Any, cells_file: Path | None) -> None:
    """The clinician figure's left panel: a row of up to 8 positive-class cells per source (real first)."""
    ax.axis("off")
    if cells_file is None or not cells_file.is_file():
        return
    data = np.load(cells_file)
    names = [k for k in data.files if k != "positive" and data[k].ndim == 4]
    rows = []
    for k in names:
        imgs = data[k].transpose(0, 2, 3, 1)
        pad = np.full((8 - len(imgs),) + imgs.shape[1:], 255, np.uint8) if len(imgs) < 8 else imgs[:0]
        rows.append(np.concatenate(list(np.concatenate([imgs[:8], pad])), axis=1))
    if rows:
        ax.imshow(np.concatenate(rows, axis=0))
        size = rows[0].shape[0]
        for i, k in enumerate(names):
            ax.text(-4, i * size + size / 2, k, ha="right", va="center", fontsize=9)
    ax.set_title(f"{data['positive']} cells: real vs synthetic", fontsize=10)


def clinician_figure(analysis: dict, cells_file: Path | None, path: Path) -> Path:
    """Left: real infected cells beside synthetic ones (the first seed, smallest fraction); right: infections
    missed per 100 infected test cells (1 - sensitivity), baseline and each strategy's chosen setting."""
    from .plots import pyplot, save_figure

    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1, 1.3]})
    _cells_panel(left, cells_file)
    verdicts = analysis["verdicts"]
    fractions = sorted({v["fraction"] for v in verdicts})
    labels = ["baseline"] + sorted({v["strategy"] for v in verdicts})
    width = 0.8 / max(1, len(labels))
    controls_drawn = seeds_drawn = False
    for j, label in enumerate(labels):
        xs, ys = [], []
        for i, f in enumerate(fractions):
            base = next((b for b in analysis["baselines"] if b["fraction"] == f and b["arm"] == BASELINE), None)
            control = None
            if label == "baseline":
                s = base["test"]["sensitivity"] if base else None
            else:
                v = next((e for e in analysis["settings"] if e["fraction"] == f and e["strategy"] == label
                          and e.get("selected")), None)
                s = v["arm_test"]["sensitivity"] if v else None
                control = v["control_test"]["sensitivity"]["mean"] if v else None
            if s is None or math.isnan(s["mean"]):
                continue
            xs.append(i + (j - (len(labels) - 1) / 2) * width)
            ys.append(100 * (1 - s["mean"]))
            # every seed as a dot: with few seeds a t interval says little and can leave [0, 100]
            seeds = [100 * (1 - x) for x in s.get("values", []) if not math.isnan(x)]
            right.plot([xs[-1]] * len(seeds), seeds, linestyle="none", marker="o", markersize=3, color="black",
                       alpha=0.6, label="one seed" if seeds and not seeds_drawn else None, zorder=3)
            seeds_drawn = seeds_drawn or bool(seeds)
            if control is not None and not math.isnan(control):  # its own control, real cells instead
                right.plot([xs[-1]], [100 * (1 - control)], marker="_", markersize=14, color="black",
                           label="its control (mean)" if not controls_drawn else None, zorder=4)
                controls_drawn = True
        right.bar(xs, ys, width, label=label, color="0.35" if label == "baseline" else None)
    right.set_ylim(0, 100)
    right.set_xticks(range(len(fractions)))
    right.set_xticklabels([f"{patients_text({'train_patients': analysis['patients'].get(f, [0])})} patients"
                           for f in fractions])
    right.set_ylabel("infections missed per 100 infected test cells")
    right.set_title("missed infections (test patients): bar = mean over seeds, dot = one seed", fontsize=10)
    right.legend(fontsize=8, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False)
    return save_figure(fig, path)
