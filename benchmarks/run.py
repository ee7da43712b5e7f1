"""The benchmark harness: does synthetic data help the classifier? Real only vs real + synthetic.

    accelerate launch benchmarks/run.py --config configs/bench/malaria-quick.yaml
    python benchmarks/run.py --config configs/bench/malaria-quick.yaml --set seeds=[0] --dry-run
    accelerate launch benchmarks/run.py --config configs/bench/malaria-lowdata.yaml --shard 0/4   # 1 of 4 machines

Writes into the run folder (``out_dir`` of the config, or ``--out``): ``config.json`` (resolved
config and versions), ``results.jsonl`` (one row per seed and arm), ``summary.md`` and
``samples.png``. A rerun with the same config skips the finished (seed, arm) cells. With ``--shard i/N``
the invocation runs its share of the cells only and writes ``results.shard-i-of-N.jsonl`` (and its own
config and runs records) into the same folder; ``synthaug report`` merges the shards.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from synthaug.bench import BenchConfig, run_benchmark
from synthaug.bench.config import plan
from synthaug.bench.paths import Shard, results_path
from synthaug.bench.runner import shard_cells
from synthaug.config import ConfigError, load_config, to_dict


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="YAML preset, e.g. configs/bench/malaria-quick.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config entry, e.g. --set classifier.steps=100 (repeatable)")
    p.add_argument("--out", help="run folder (default: out_dir of the config)")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument("--shard", metavar="I/N", help="run shard I of N (counted from 0) of the grid's cells, e.g. "
                   "--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT; every shard into the same --out folder")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_config(BenchConfig, args.config, args.set)
        shard = Shard.parse(args.shard) if args.shard is not None else None
    except ValueError as err:  # ConfigError is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 2
    out_dir = Path(args.out or cfg.out_dir.format(name=cfg.name))
    if args.dry_run:
        extra = {} if shard is None else {"shard": str(shard), "shard_cells": len(shard_cells(plan(cfg), cfg, shard)),
                                          "grid_cells": len(plan(cfg))}
        print(json.dumps({**to_dict(cfg), "out_dir": str(out_dir), **extra}, indent=2))
        return 0
    from datetime import timedelta

    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    # the other processes wait while the main one measures sample quality (minutes to hours for big pools):
    # a long collective timeout instead of torch's default
    accelerator = Accelerator(kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(hours=12))])
    try:
        run_benchmark(cfg, out_dir, accelerator=accelerator, shard=shard)
    except (ConfigError, FileNotFoundError, FileExistsError, ValueError, FloatingPointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if accelerator.is_main_process:
        print((out_dir / "summary.md").read_text())
        print(f"run folder: {out_dir} ({results_path(out_dir, shard).name}, summary.md, samples/, generators/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
