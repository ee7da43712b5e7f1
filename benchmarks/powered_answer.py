"""The confirmatory verdict of the powered malaria answer, by its plan (docs/results/malaria-powered/PLAN.md).

    python benchmarks/powered_answer.py runs/malaria-powered --out docs/results/malaria-powered/answer

Reads the run's rows and the gate of each source on each draw and writes ``<out>.json`` (every number) and
``<out>.md`` (the headline, the primary family with Holm and TOST, the shares of the donor cells' gain, the
power, the exploratory rows) and ``<out>.png`` (each primary row's paired differences with their interval), and
beside them the run's strategies report (``report/``: its clinician figure shows the shared generator's infected
cells beside real ones and the infections each arm misses).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthaug.bench.powered_answer import confirmatory_answer, markdown, paired_values, source_gates  # noqa: E402
from synthaug.bench.strategy_report import build_strategies_report, load_strategies_run  # noqa: E402


def figure(answer: dict, rows_by: dict, path: Path) -> None:
    """One row per primary comparison: each draw's paired difference (dots), the mean and its 95 % CI, the
    equivalence margin (shaded) and 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    primary = answer["primary"]
    margin = answer["rules"]["margin"]
    fig, ax = plt.subplots(figsize=(7, 0.7 * len(primary) + 1.2))
    ax.axvspan(-margin, margin, color="0.9", label=f"equivalence margin +-{margin:g}")
    ax.axvline(0, color="0.3", lw=0.8)
    for y, r in enumerate(primary):
        diffs = rows_by.get((r["k"], r["strategy"]), [])
        ax.scatter(diffs, [y + 0.18] * len(diffs), s=8, color="tab:blue", alpha=0.5)
        d = r["diff"]
        ax.errorbar(d["mean"], y, xerr=[[d["mean"] - d["lo"]], [d["hi"] - d["mean"]]], fmt="o", color="k", capsize=3)
    ax.set_yticks(range(len(primary)), [f"{r['id']}: k={r['k']:g}, {r['strategy']}" for r in primary])
    ax.invert_yaxis()
    ax.set_xlabel(f"test {answer['rules']['metric'].upper()}: arm minus real-matched control")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="the confirmatory run's folder")
    p.add_argument("--out", type=Path, required=True, help="write <out>.json, <out>.md and <out>.png")
    args = p.parse_args(argv)
    if not args.run.is_dir():
        raise SystemExit(f"{args.run}: no such run folder; run configs/bench/malaria-powered.yaml first")
    cfg, rows = load_strategies_run(args.run)
    if not rows:
        raise SystemExit(f"{args.run}: no results rows yet")
    if any(r.get("test") is None for r in rows):
        raise SystemExit(f"{args.run}: rows without test scores (a pilot, score_test: false?): the confirmatory "
                         "verdict reads test patients; give the confirmatory run")
    answer = confirmatory_answer(rows, source_gates(args.run, cfg, rows), planned_draws=len(cfg.unit_seeds))
    if not answer["complete"]:
        print(f"warning: {args.run} holds fewer draws than its config plans ({len(cfg.unit_seeds)} per site size): "
              "this is an interim look, not the verdict; the report says so in its first line", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(answer, indent=1, default=str) + "\n")
    text = markdown(answer, run=args.run.name)
    args.out.with_suffix(".md").write_text(text)
    dots = {(r["k"], r["strategy"]): paired_values(rows, r["k"], r["strategy"], answer["rules"])
            for r in answer["primary"]}
    figure(answer, dots, args.out.with_suffix(".png"))
    build_strategies_report(args.run, args.out.parent / "report")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
