"""The benchmark harness: does synthetic data help the classifier? Real only vs real + synthetic.

    accelerate launch benchmarks/run.py --config configs/bench/malaria-quick.yaml
    python benchmarks/run.py --config configs/bench/malaria-quick.yaml --set seeds=[0] --dry-run
    accelerate launch benchmarks/run.py --config configs/bench/malaria-lowdata.yaml --shard 0/4   # 1 of 4 machines

The same command as ``synthaug bench`` (``synthaug.bench.launch``), which runs without the repository:
``synthaug bench --preset malaria-quick``, ``accelerate launch -m synthaug.cli bench --preset malaria-quick``.
Options: ``--config FILE`` or ``--preset NAME``, ``--set KEY=VALUE``, ``--out``, ``--dry-run``, ``--shard I/N``.

Writes into the run folder (``out_dir`` of the config, or ``--out``): ``config.json`` (resolved
config and versions), ``results.jsonl`` (one row per seed and arm), ``summary.md`` and
``samples.png``. A rerun with the same config skips the finished (seed, arm) cells. With ``--shard i/N``
the invocation runs its share of the cells only and writes ``results.shard-i-of-N.jsonl`` (and its own
config and runs records) into the same folder; ``synthaug report`` merges the shards.
"""
from __future__ import annotations

import sys

from synthaug.bench.launch import main

if __name__ == "__main__":
    sys.exit(main(prog="benchmarks/run.py"))
