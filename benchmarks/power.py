"""Power of a paired design, from the spread of a committed run record's paired differences.

For every (patient fraction, synthetic arm) of a strategies run record: the SD of the paired differences
(arm minus its real-only control, and minus the baseline, paired by seed) on the test metric, the minimum
detectable effect at 80 % power with the run's own seeds and Holm family, and the draws needed to detect a
given effect under a smaller Holm family. What the malaria plan (docs/results/malaria-powered/PLAN.md) sizes its
number of site draws with, before its pilot measures the spread of its own design.

    python benchmarks/power.py --record docs/results/malaria-strategies/run-record \
        --out docs/results/malaria-powered/power-from-strategies
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthaug.stats import minimum_detectable_effect, pairs_needed  # noqa: E402


def read_rows(record: Path) -> list[dict]:
    files = sorted(record.glob("results*.jsonl"))
    if not files:
        raise FileNotFoundError(f"{record}: no results*.jsonl; give the run-record folder of a strategies run")
    return [json.loads(line) for f in files for line in f.read_text().splitlines() if line.strip()]


def paired_sds(rows: list[dict], metric: str) -> list[dict]:
    """One entry per (fraction, synthetic arm, reference): the paired differences' SD and count."""
    by = defaultdict(dict)  # (fraction, arm) -> seed -> value
    control_of = {}
    for r in rows:
        by[(r["fraction"], r["arm"])][r["seed"]] = r["test"][metric]
        if r["role"] == "synthetic":
            control_of[(r["fraction"], r["arm"])] = r["control"]
    out = []
    for (fraction, arm), reference in sorted(control_of.items()):
        for against in (reference, "baseline"):
            treated, base = by[(fraction, arm)], by.get((fraction, against), {})
            seeds = sorted(set(treated) & set(base))
            diffs = [treated[s] - base[s] for s in seeds]
            if len(diffs) >= 2:
                out.append({"fraction": fraction, "arm": arm, "against": against, "n": len(diffs),
                            "mean": statistics.fmean(diffs), "sd": statistics.stdev(diffs)})
    return out


def summarize(entries: list[dict], *, family_now: int, family_plan: int, effect: float, draws: int) -> dict:
    sds = sorted(e["sd"] for e in entries)
    n_now = max(e["n"] for e in entries)
    median, top = statistics.median(sds), sds[-1]
    quartile = sds[int(0.75 * (len(sds) - 1))]
    return {
        "rows": len(entries), "seeds": n_now, "sd_median": median, "sd_upper_quartile": quartile, "sd_max": top,
        "mde_now": minimum_detectable_effect(median, n_now, family=family_now),
        "mde_plan_median_sd": minimum_detectable_effect(median, draws, family=family_plan),
        "mde_plan_upper_quartile_sd": minimum_detectable_effect(quartile, draws, family=family_plan),
        "draws_needed_median_sd": pairs_needed(median, effect, family=family_plan),
        "draws_needed_upper_quartile_sd": pairs_needed(quartile, effect, family=family_plan),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--record", type=Path, default=ROOT / "docs/results/malaria-strategies/run-record")
    p.add_argument("--metrics", default="auroc,balanced_accuracy")
    p.add_argument("--family-now", type=int, default=18, help="the Holm family of the run read (its tested rows)")
    p.add_argument("--family-plan", type=int, default=4, help="the planned primary Holm family")
    p.add_argument("--effect", type=float, default=0.02, help="the effect the plan must detect")
    p.add_argument("--draws", type=int, default=30, help="the planned number of draws")
    p.add_argument("--out", type=Path, help="write <out>.json and <out>.md")
    args = p.parse_args(argv)
    rows = read_rows(args.record)
    result = {"record": str(args.record.resolve().relative_to(ROOT)) if args.record.resolve().is_relative_to(ROOT)
              else args.record.name, "effect": args.effect, "draws": args.draws, "family_now": args.family_now,
              "family_plan": args.family_plan, "metrics": {}}
    for metric in args.metrics.split(","):
        entries = paired_sds(rows, metric)
        result["metrics"][metric] = {"summary": summarize(entries, family_now=args.family_now,
                                                          family_plan=args.family_plan, effect=args.effect,
                                                          draws=args.draws), "entries": entries}
    text = markdown(result)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(text)
    return 0


def markdown(result: dict) -> str:
    lines = [f"Paired differences in `{result['record']}` (synthetic arm minus its control and minus the baseline, "
             "paired by seed, on test patients). Minimum detectable effect (MDE): two-sided paired t-test, 80 % "
             "power, alpha 0.05 / family (Holm's first step). Command: `python benchmarks/power.py`.", "",
             f"| metric | rows | SD median | SD upper quartile | SD max | MDE with the run's seeds, family "
             f"{result['family_now']} (median SD) | MDE with {result['draws']} draws, family {result['family_plan']} "
             f"(median / upper-quartile SD) | draws for {result['effect']:g} (median / upper-quartile SD) |",
             "|---|---|---|---|---|---|---|---|"]
    for metric, m in result["metrics"].items():
        s = m["summary"]
        lines.append(f"| {metric} | {s['rows']} | {s['sd_median']:.4f} | {s['sd_upper_quartile']:.4f} | "
                     f"{s['sd_max']:.4f} | {s['mde_now']:.3f} ({s['seeds']} seeds) | "
                     f"{s['mde_plan_median_sd']:.4f} / {s['mde_plan_upper_quartile_sd']:.4f} | "
                     f"{s['draws_needed_median_sd']} / {s['draws_needed_upper_quartile_sd']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
