"""The benchmark from the command line, with or without the repository: ``synthaug bench``.

    synthaug bench --preset malaria-quick                         # a preset installed with synthaug
    synthaug bench --config my-grid.yaml --set seeds=[0] --dry-run
    accelerate launch -m synthaug.cli bench --preset malaria-quick # CPU, GPU or many
    accelerate launch -m synthaug.bench.launch --preset malaria-lowdata --shard 0/4   # 1 of 4 machines

``benchmarks/run.py`` in the repository is the same command. Writes into the run folder (``out_dir`` of the
config, or ``--out``): ``config.json`` (resolved config and versions), ``results.jsonl`` (one row per seed and
arm), ``summary.md`` and ``samples.png``. A rerun with the same config skips the finished (seed, arm) cells. With
``--shard i/N`` the invocation runs its share of the cells only and writes ``results.shard-i-of-N.jsonl`` (and
its own config and runs records) into the same folder; ``synthaug report`` merges the shards.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

from ..config import ConfigError, load_config, to_dict
from ..failures import exit_code
from ..presets import config_file, list_presets

# errors a user can fix (bad config, file, value, a run that diverged): a message, no traceback, and exit code 2
# for a wrong config (a usage error), 1 for the rest (synthaug.failures)
USER_ERRORS = (ConfigError, FileNotFoundError, FileExistsError, ValueError, FloatingPointError)
#: what a benchmark config file must give (an empty file is refused rather than run as the default grid)
REQUIRED_KEYS = ("datasets", "generators")
STRATEGIES_REQUIRED_KEYS = ("datasets", "generator", "strategies")


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The benchmark's options, on ``parser`` (``synthaug bench``, ``benchmarks/run.py``, this module's ``main``)."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", metavar="NAME",
                        help=f"a benchmark preset installed with synthaug: {', '.join(list_presets('bench'))} "
                             "(a YAML file path works too)")
    source.add_argument("--config", metavar="FILE", help="a YAML benchmark config, e.g. configs/bench/malaria-quick.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config entry, e.g. --set classifier.steps=100 (repeatable)")
    parser.add_argument("--out", help="run folder (default: out_dir of the config)")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--shard", metavar="I/N",
                        help="run shard I of N (counted from 0) of the grid's cells, e.g. "
                             "--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT; every shard into the same --out "
                             "folder")
    parser.add_argument("--log-with", metavar="TRACKERS", help="log to these Accelerate trackers, e.g. tensorboard (comma-separated; same as "
                        "--set log_with=NAME; they write into --out unless project_dir is set)")
    parser.set_defaults(bench_prog=parser.prog)  # errors name the command the user typed
    return parser


def run(args: argparse.Namespace) -> int:
    """Run (or with ``--dry-run`` describe) the benchmark of parsed ``args``; 0 when done, 2 when the command or
    its config is wrong, 1 when the run meets an error."""
    from . import BenchConfig, run_benchmark
    from .grid_config import plan
    from .paths import Shard, results_path
    from .runner import shard_cells

    from .strategy_config import StrategiesConfig, plan_strategies
    from .strategy_run import run_strategies, shard_strategy_cells, units_share_nothing

    prog = getattr(args, "bench_prog", "synthaug bench")
    try:
        path = config_file(config=args.config, preset=args.preset, kind="bench")
        strategies = is_strategies_config(path)
        tracking = [] if getattr(args, "log_with", None) is None else [f"log_with={args.log_with}"]
        cfg = load_config(StrategiesConfig if strategies else BenchConfig, path, [*args.set, *tracking],
                          required=STRATEGIES_REQUIRED_KEYS if strategies else REQUIRED_KEYS)
        shard = Shard.parse(args.shard) if args.shard is not None else None
    except ValueError as err:  # ConfigError is a ValueError
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    out_dir = Path(args.out or cfg.out_dir.format(name=cfg.name))
    if args.dry_run:
        cells = plan_strategies(cfg) if strategies else plan(cfg)
        mine = shard_strategy_cells(cells, shard, by_unit=units_share_nothing(cfg)) if strategies else shard_cells(cells, cfg, shard)
        extra = {} if shard is None else {"shard": str(shard), "shard_cells": len(mine), "grid_cells": len(cells)}
        print(json.dumps({**to_dict(cfg), "out_dir": str(out_dir), "config_file": str(path), **extra}, indent=2))
        return 0
    from datetime import timedelta

    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    from ..tracking import accelerator_kwargs

    # the other processes wait while the main one measures sample quality (minutes to hours for big pools):
    # a long collective timeout instead of torch's default
    accelerator = Accelerator(kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(hours=12))],
                              **accelerator_kwargs(cfg.log_with, cfg.project_dir, default_dir=out_dir))
    try:
        (run_strategies if strategies else run_benchmark)(cfg, out_dir, accelerator=accelerator, shard=shard)
    except USER_ERRORS as err:
        # a ValueError deep inside a long run may be a bug rather than bad input: keep its traceback at hand
        if os.environ.get("SYNTHAUG_DEBUG") == "1":
            traceback.print_exc()
        print(f"{prog}: error: {err}", file=sys.stderr)
        if not isinstance(err, (ConfigError, FileNotFoundError, FileExistsError)):
            print(f"{prog}: ({type(err).__name__}; finished cells are kept, rerun the same command to resume; "
                  "SYNTHAUG_DEBUG=1 prints the traceback)", file=sys.stderr)
        return exit_code(err)
    if accelerator.is_main_process and strategies:
        reader = f"synthaug report {out_dir}" if cfg.score_test else f"python benchmarks/pilot.py {out_dir} (a pilot)"
        print(f"run folder: {out_dir} ({results_path(out_dir, shard).name}); read it with: {reader}")
    elif accelerator.is_main_process:
        print((out_dir / "summary.md").read_text())
        print(f"run folder: {out_dir} ({results_path(out_dir, shard).name}, summary.md, samples/, generators/)")
    return 0


def is_strategies_config(path: str | os.PathLike) -> bool:
    """Whether a YAML config is a strategies grid (it has a top-level ``strategies`` list)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return False  # load_config says what is wrong with it
    return isinstance(data, dict) and "strategies" in data


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Does synthetic data help the classifier? Real only vs "
                                                            "real + synthetic.")
    return add_arguments(parser)


def main(argv: list[str] | None = None, *, prog: str | None = "synthaug bench") -> int:
    """``python -m synthaug.bench.launch`` / ``accelerate launch -m synthaug.bench.launch``: the benchmark."""
    return run(build_parser(prog).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
