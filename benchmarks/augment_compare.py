"""Strong augmentation of the real cells against a committed run, paired by seed (issue 26).

Run the real-only grid with another ``classifier.augment`` (same protocol, seeds and fractions as the
reference run), then compare::

    accelerate launch --num_processes 1 --num_cpu_threads_per_process 1 benchmarks/run.py \\
        --config configs/bench/malaria-strong-aug.yaml
    python benchmarks/augment_compare.py runs/malaria-strong-aug \\
        --against docs/results/malaria-strategies/run-record --out docs/results/malaria-strong-aug

Writes ``comparison.md`` (two tables: the augmentation's paired difference on the real-only arm, and every
synthetic arm of the reference run against the strongly augmented real-only arm, each Holm-adjusted) and
``comparison.json`` into ``--out``, and prints the Markdown. ``synthaug.bench.augment_compare`` does the work.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from synthaug.bench.analysis import without_nan
from synthaug.bench.augment_compare import compare_runs, comparison_markdown


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="the run folder (or run record) whose real-only arm used the other augmentation")
    p.add_argument("--against", required=True, help="the reference run folder or run record (same protocol)")
    p.add_argument("--metric", default=None, help="test metric (default: the run's primary_metric)")
    p.add_argument("--out", default=None, help="folder for comparison.md and comparison.json")
    args = p.parse_args(argv)
    try:
        result = compare_runs(args.run, args.against, metric=args.metric)
    except (ValueError, OSError) as err:
        print(f"augment_compare: {err}", file=sys.stderr)
        return 1
    text = comparison_markdown(result)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "comparison.md").write_text(text)
        (out / "comparison.json").write_text(json.dumps(without_nan(result), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
