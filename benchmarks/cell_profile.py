"""Where a strategies grid's classifier cell spends its time: one arm trained under cProfile, its seconds split
into training backward, training forward and loss, validations (BatchNorm recompute, prediction, metrics),
augmentation and the optimizer step.

    SYNTHAUG_DATA=<data root> python benchmarks/cell_profile.py --config configs/bench/malaria-powered-pilot.yaml \\
        --unit 3 1000 --arm baseline --threads 1 --json runs/cell-profile.json

It trains the arm of one unit (site size or fraction, draw or seed) as the grid would, with quality off, in a
folder of its own (``--out``), and reads only what that arm reads (a pilot config: validation patients only).
Run it alone on the machine: a profile beside another job measures that job too.
"""
from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (label, file suffix, function name): cumulative seconds of these calls
PARTS = [("validations (BatchNorm recompute, prediction, metrics)", "synthaug/classifier.py", "evaluate"),
         ("training backward", "torch/autograd/graph.py", "_engine_run_backward"),
         ("augmentation", "synthaug/classifier.py", "_augment"),
         ("optimizer step (AdamW)", "torch/optim/optimizer.py", "wrapper")]


def profile_arm(config: str, size: float, seed: int, arm_name: str, out: Path,
                overrides: list[str]) -> tuple[float, dict, pstats.Stats]:
    from accelerate import Accelerator

    from synthaug.bench.launch import STRATEGIES_REQUIRED_KEYS
    from synthaug.bench.strategy_config import StrategiesConfig, plan_strategies
    from synthaug.bench.strategy_run import build_unit
    from synthaug.config import load_config

    cfg = load_config(StrategiesConfig, config, ["quality.enabled=false", *overrides], required=STRATEGIES_REQUIRED_KEYS)
    arms = {c.arm.name: c.arm for c in plan_strategies(cfg) if c.fraction == size and c.seed == seed}
    if arm_name not in arms:
        raise SystemExit(f"--arm {arm_name!r}: not an arm of unit ({size:g}, {seed}); arms: {sorted(arms)}")
    unit = build_unit(cfg, out, Accelerator(cpu=True), size, seed)
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    metrics = unit.train(arms[arm_name])
    profiler.disable()
    return time.perf_counter() - start, metrics, pstats.Stats(profiler)


def split_seconds(stats: pstats.Stats) -> dict[str, float]:
    """Cumulative seconds of each part (the largest entry of each: nested calls are not added twice)."""
    out = {}
    for label, path, name in PARTS:
        times = [cum for (file, _, func), (_, _, _, cum, _) in stats.stats.items()
                 if file.replace("\\", "/").endswith(path) and func == name]
        out[label] = round(max(times), 2) if times else 0.0
    return out


def main(argv: list[str] | None = None) -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="a strategies grid config")
    p.add_argument("--unit", nargs=2, metavar=("SIZE", "SEED"), required=True,
                   help="the unit: site size (or fraction) and draw (or seed), e.g. 3 1000")
    p.add_argument("--arm", default="baseline", help="the arm to train (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    p.add_argument("--out", type=Path, help="the folder the arm writes into (default: a temporary one)")
    p.add_argument("--json", type=Path, help="write the split here")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides, e.g. classifier.min_steps=100")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    size, seed = float(args.unit[0]), int(args.unit[1])
    with tempfile.TemporaryDirectory() as tmp:
        seconds, metrics, stats = profile_arm(args.config, size, seed, args.arm, args.out or Path(tmp),
                                              args.set)
    parts = split_seconds(stats)
    record = {"config": args.config, "overrides": args.set, "unit": [size, seed], "arm": args.arm, "threads": args.threads,
              "torch": torch.__version__, "seconds": round(seconds, 2), "parts": parts,
              "steps": metrics["fields"].get("classifier_steps")}
    print(json.dumps(record, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
