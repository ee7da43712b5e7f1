"""Does the real-only baseline reach its plateau? The same baseline at several step floors, side by side.

Run the real-only protocol at a few ``classifier.min_steps`` floors (each its own run folder), then compare::

    for m in 600 1200 2400; do
      accelerate launch --num_processes 1 --num_cpu_threads_per_process 2 benchmarks/run.py \\
        --config configs/bench/malaria-lowdata-v2.yaml --set fractions=[0.02,0.05,0.25] --set 'generators=[]' \\
        --set quality.fractions=[] --set synthetic.real_matched=false --set classifier.min_steps=$m \\
        --out runs/budget-min$m
    done
    python benchmarks/budget.py runs/malaria-lowdata-v2-min300 runs/budget-min600 runs/budget-min1200 \\
        runs/budget-min2400 --out docs/results/budget

(``runs/malaria-lowdata-v2-min300``: the committed v2 run with the 300-step floor, restored from
``docs/results/malaria-lowdata-v2/run-record``; ``docs/results/budget/run-record`` holds the other three folders'
records, enough for this script.) The committed study's 2400 run (--set fractions=[0.02,0.05]) was stopped once fraction 0.02 had its 5 seeds.

Any run folder of the benchmark works (only its real-only baseline rows are read, with the step budget its
config gave them). Writes ``budget.md`` (per fraction and budget: validation and test balanced accuracy over
seeds, the paired test difference to the next smaller budget, where the best validation step fell), ``budget.png``
and ``budget.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from synthaug.bench.document import Figure, Heading, Para, Table, render_markdown
from synthaug.bench.paths import read_config_records, read_results
from synthaug.bench.plots import pyplot, save_figure
from synthaug.stats import mean_ci, paired_difference
from synthaug.utils import atomic_write_text

METRIC = "balanced_accuracy"


def baselines(run_dirs: list[Path]) -> dict[tuple, dict[int, dict]]:
    """``{(fraction, steps label): {seed: row}}`` of the real-only rows of every run folder."""
    out: dict[tuple, dict[int, dict]] = {}
    for run in run_dirs:
        records = read_config_records(run)
        if not records:
            raise SystemExit(f"{run}: not a benchmark run folder (no config record)")
        classifier = next(iter(records.values()))["config"]["classifier"]
        for r in read_results(run):
            if r.get("arm", "real") != "real" or r.get("generator") is not None:
                continue
            budget = f"min {classifier['min_steps']}" if classifier.get("steps") is None else f"{classifier['steps']}"
            out.setdefault((float(r["fraction"]), budget, int(classifier.get("min_steps") or 0)), {})[int(r["seed"])] = r
    return out


def summarize(groups: dict[tuple, dict[int, dict]]) -> list[dict]:
    rows = []
    fractions = sorted({f for f, _, _ in groups})
    for f in fractions:
        keys = sorted((k for k in groups if k[0] == f), key=lambda k: k[2])
        previous = None
        for key in keys:
            by_seed = groups[key]
            seeds = sorted(by_seed)
            entry = {"fraction": f, "budget": key[1], "min_steps": key[2], "seeds": seeds,
                     "patients": sorted({by_seed[s]["train_patients"] for s in seeds}),
                     "steps": sorted({by_seed[s]["classifier_steps"] for s in seeds}),
                     "val": mean_ci([by_seed[s]["val"][METRIC] for s in seeds]),
                     "test": mean_ci([by_seed[s]["test"][METRIC] for s in seeds]),
                     "best_at_last": sum(by_seed[s]["best_step"] >= by_seed[s]["classifier_steps"] for s in seeds),
                     "best_steps": [by_seed[s]["best_step"] for s in seeds], "diff_previous": None}
            if previous is not None:
                common = sorted(set(seeds) & set(previous[1]))
                entry["diff_previous"] = {"against": previous[0], "seeds": common, **paired_difference(
                    [by_seed[s]["test"][METRIC] for s in common], [previous[1][s]["test"][METRIC] for s in common])}
            rows.append(entry)
            previous = (key[1], by_seed)
    return rows


def _ci(t: tuple | list, signed: bool = False) -> str:
    f = "{:+.3f}" if signed else "{:.3f}"
    mean, lo, hi = t
    return f.format(mean) + ("" if np.isnan(lo) else f" [{f.format(lo)}, {f.format(hi)}]")


def plot(rows: list[dict], path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for f in sorted({r["fraction"] for r in rows}):
        mine = [r for r in rows if r["fraction"] == f]
        xs = [max(r["steps"]) for r in mine]
        ys = [r["test"][0] for r in mine]
        lo = [r["test"][0] - r["test"][1] if not np.isnan(r["test"][1]) else 0 for r in mine]
        hi = [r["test"][2] - r["test"][0] if not np.isnan(r["test"][2]) else 0 for r in mine]
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3,
                    label=f"{'-'.join(map(str, mine[0]['patients']))} patients (fraction {f:g})")
    ax.set_xscale("log")
    ax.set_xlabel("optimizer steps of the real-only baseline (batch 64)")
    ax.set_ylabel("test balanced accuracy (mean, 95 % t CI)")
    ax.set_title("Does the baseline reach its plateau?", fontsize=10)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="benchmark run folders (their real-only rows are read)")
    p.add_argument("--out", type=Path, required=True, help="folder for budget.md, budget.png, budget.json")
    args = p.parse_args(argv)
    rows = summarize(baselines(args.runs))
    if not rows:
        raise SystemExit("no real-only baseline rows in those run folders")
    args.out.mkdir(parents=True, exist_ok=True)
    picture = plot(rows, args.out / "budget.png")
    table = Table(["fraction", "patients", "budget", "steps", "seeds", "val", "test", "test vs the smaller budget (paired)",
                   "p", "best step at the last evaluation"],
                  [[f"{r['fraction']:g}", "-".join(map(str, r["patients"])), r["budget"],
                    "-".join(map(str, sorted({r['steps'][0], r['steps'][-1]}))), str(len(r["seeds"])), _ci(r["val"]),
                    _ci(r["test"]),
                    "" if r["diff_previous"] is None else f"{_ci((r['diff_previous']['mean'], r['diff_previous']['lo'], r['diff_previous']['hi']), True)} vs {r['diff_previous']['against']}",
                    "" if r["diff_previous"] is None else f"{r['diff_previous']['p']:.3f}",
                    f"{r['best_at_last']} of {len(r['seeds'])}"] for r in rows])
    command = "python benchmarks/budget.py " + " ".join(str(r) for r in args.runs) + f" --out {args.out}"
    blocks = [Heading("Does the real-only baseline reach its plateau?", 1),
              Para("The protocol's real-only baseline (`configs/bench/malaria-lowdata-v2.yaml`: test_resnet, 32 px, "
                   "batch 64, AdamW with warm-up and cosine decay, validation every 100 steps, the best validation "
                   "checkpoint, BatchNorm from real images) at several step floors (`classifier.min_steps`; the "
                   "budget is max(floor, 4 epochs of the cell's real images)), 5 seeds, paired by seed. A budget "
                   "has reached the plateau when more steps no longer raise test balanced accuracy."),
              Figure(picture, "Test balanced accuracy of the real-only baseline against its step budget"),
              table, Para(f"Made by `{command}` (the run commands are in the script's docstring).")]
    atomic_write_text(args.out / "budget.md", render_markdown(blocks, args.out))
    atomic_write_text(args.out / "budget.json", json.dumps(rows, indent=1, default=float))
    print(f"wrote {args.out / 'budget.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
