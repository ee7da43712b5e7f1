"""Where things live in a benchmark run folder, and reading its records back with the shards merged: one
place, read by the runner, the report and the tests.

    config.json                                  resolved config and versions
    results.jsonl, runs.jsonl                    one row per finished cell; one record per invocation
    config.shard-<i>-of-<N>.json, ...            the same three files of shard i of N (``--shard i/N``)
    summary.md, summary.json                     the analysis (of every shard finished so far)
    splits/<data>/frac<f>/seed<s>.json           the patient split of a cell
    generators/<data>/frac<f>/seed<s>/<label>/   a trained generator (checkpoint/, done.json)
    samples/<data>-frac<f>-<label>.png           real training cells beside synthetic ones
    quality/<data>/frac<f>/seed<s>/<label>/      sample-quality metrics (quality.json)
    extractors/                                  cached feature extractors
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..quality.metrics import metric_record
from ..utils import read_jsonl


def _cell_dir(out_dir: Path, part: str, dataset: str, fraction: float, seed: int) -> Path:
    return Path(out_dir) / part / dataset / f"frac{fraction:g}" / f"seed{seed}"


def split_path(out_dir: Path, dataset: str, fraction: float, seed: int) -> Path:
    """The JSON record of the patient split (``splits.info``) of one data set, fraction and seed."""
    return Path(out_dir) / "splits" / dataset / f"frac{fraction:g}" / f"seed{seed}.json"


def generator_dir(out_dir: Path, dataset: str, fraction: float, seed: int, label: str) -> Path:
    return _cell_dir(out_dir, "generators", dataset, fraction, seed) / label


def quality_dir(out_dir: Path, dataset: str, fraction: float, seed: int, label: str) -> Path:
    return _cell_dir(out_dir, "quality", dataset, fraction, seed) / label


def samples_path(out_dir: Path, dataset: str, fraction: float, label: str) -> Path:
    return Path(out_dir) / "samples" / f"{dataset}-frac{fraction:g}-{label}.png"


def quality_records(run_dir: Path, cfg: Any) -> list[dict]:
    """Every ``quality.json`` of the run (``cfg``: its ``BenchConfig``), as ``{"dataset", "fraction", "generator",
    "seed", "folder", "q"}``: read by the summary (the quality gate beside the verdicts) and the report."""
    out = []
    for d in cfg.datasets:
        for f in cfg.fractions:
            for g in cfg.generators:
                for s in cfg.seeds:
                    path = quality_dir(run_dir, d.key, f, s, g.key) / "quality.json"
                    if path.is_file():
                        out.append({"dataset": d.key, "fraction": f, "generator": g.key, "seed": s,
                                    "folder": path.parent, "q": _with_gate(json.loads(path.read_text()), cfg)})
    return out


def _with_gate(q: dict, cfg: Any) -> dict:
    """A record measured before the benchmark passed its gate (no ``gate``), judged by the run's gate: the gate
    is a pure function of the CAS record. Only a CAS of validation patients is judged; an older one (test
    patients) is not, since the gate must not decide on test patients."""
    cas, gate = metric_record(q, "cas") or {}, getattr(cfg.quality, "gate", None)
    if q.get("gate") is None and gate is not None and cas.get("split") == "val" and "ratio" in cas:
        q = {**q, "gate": gate.apply(cas)}
    return q


# --------------------------------------------------------------------------- shards
@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (counted from 0, as SLURM array task ids of ``--array=0-<N-1>``)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not (self.count >= 1 and 0 <= self.index < self.count):
            raise ValueError(f"--shard {self.index}/{self.count}: the index counts from 0 and must be below the "
                             f"number of shards, e.g. 0/{max(self.count, 2)} to {max(self.count, 2) - 1}/"
                             f"{max(self.count, 2)}")

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """``"i/N"`` -> ``Shard(i, N)``."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
        if not match:
            raise ValueError(f"--shard {text!r}: expected i/N, shard i of N counted from 0, e.g. --shard 0/4 "
                             "(with SLURM: --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)")
        return cls(int(match[1]), int(match[2]))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def suffix(self) -> str:
        return f"shard-{self.index}-of-{self.count}"


_SHARD_FILE = re.compile(r"(?P<stem>[\w-]+)\.shard-(?P<index>\d+)-of-(?P<count>\d+)\.(?P<ext>\w+)")


def _record_file(out_dir: Path, stem: str, ext: str, shard: Shard | None) -> Path:
    # one shard of one is the whole grid: the plain names, so `--shard 0/1` and no --shard share a folder
    sharded = shard is not None and shard.count > 1
    return Path(out_dir) / (f"{stem}.{shard.suffix}.{ext}" if sharded else f"{stem}.{ext}")


def config_path(out_dir: Path, shard: Shard | None = None) -> Path:
    return _record_file(out_dir, "config", "json", shard)


def results_path(out_dir: Path, shard: Shard | None = None) -> Path:
    return _record_file(out_dir, "results", "jsonl", shard)


def runs_path(out_dir: Path, shard: Shard | None = None) -> Path:
    return _record_file(out_dir, "runs", "jsonl", shard)


def shard_of(path: Path) -> Shard | None:
    """The shard a record file belongs to (None: the plain, unsharded name)."""
    match = _SHARD_FILE.fullmatch(Path(path).name)
    return Shard(int(match["index"]), int(match["count"])) if match else None


def record_files(out_dir: Path, stem: str, ext: str) -> list[Path]:
    """The plain file (if there) and then every shard's, in shard order: ``record_files(run, "results", "jsonl")``."""
    out_dir = Path(out_dir)
    plain = [out_dir / f"{stem}.{ext}"] if (out_dir / f"{stem}.{ext}").is_file() else []
    shards = []
    for path in out_dir.glob(f"{stem}.shard-*-of-*.{ext}"):
        match = _SHARD_FILE.fullmatch(path.name)
        if match and match["stem"] == stem:
            shards.append(((int(match["count"]), int(match["index"])), path))
    return plain + [path for _, path in sorted(shards)]


# --------------------------------------------------------------------------- reading a run back
def diff_keys(a: Any, b: Any, prefix: str = "") -> set[str]:
    """The dotted keys where two nested mappings differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: set[str] = set()
        for k in set(a) | set(b):
            out |= diff_keys(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return set() if a == b else {prefix.rstrip(".")}


def read_config_records(out_dir: Path) -> dict[Path, dict]:
    """Every config record of a run folder (``config.json`` and each shard's), by file."""
    records = {}
    for path in record_files(out_dir, "config", "json"):
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not a benchmark config record ({err}); was it written by benchmarks/run.py?")
        if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
            raise ValueError(f"{path} is not a benchmark config record (no `config` mapping); was it written by "
                             "benchmarks/run.py?")
        records[path] = record
    return records


def shard_counts(records: dict[Path, dict]) -> dict[int, list[str]]:
    """The numbers of shards the records were written for (an unsharded run: 1), with their file names."""
    counts: dict[int, list[str]] = {}
    for path in records:
        shard = shard_of(path)
        counts.setdefault(shard.count if shard else 1, []).append(path.name)
    return counts


# Keys a config gained after runs were already written, whose defaults reproduce what those runs did (they
# change no result row): a record without them is the same config. A key whose default changes results (e.g.
# classifier.bn) is deliberately NOT here, so an older run folder is refused rather than resumed differently.
NEUTRAL_DEFAULTS: dict[str, Any] = {
    "datasets.*.channels": 3,
    "datasets.*.group_aliases": None,
    "quality.gate": {"enabled": True, "min_ratio": 0.8, "min_class_ratio": 0.6},
    "generators.*.train.gate_every": 0,  # 0: no early stopping, the whole budget as before
    "generators.*.train.mixed_precision": None,  # None: the Accelerator's precision, float32 as before
    "generators.*.source": None,                 # None: a generator synthaug trains, as before
    "generator.train.mixed_precision": None,     # the same two in a strategies config
    "generator.source": None,
    "datasets.*.design": None,                   # None: split/train_fraction, as before the fixed design
    "generators.*.init_from": None,              # None: a generator trained from scratch, as before
    "generator.init_from": None,
    "strategies.*.options": {},                  # {}: a strategy's own options, none before the registry
    "strategies.*.source": None,                 # None: the grid's generator, the only one before `sources`
}
#: top-level keys of one kind of config only, as (key, default, the key that marks that kind)
NEUTRAL_TOP_DEFAULTS: list[tuple[str, Any, str]] = [
    ("sources", {}, "strategies"),  # {}: a strategies grid with its one generator, as before named sources
    ("sites", None, "strategies"),  # None: units are fractions x seeds, as before sites of a fixed design
    ("fixed_specificity", None, "strategies"),  # None: no operating point fixed on validation, as before
    ("score_test", True, "strategies"),  # True: every arm scored on test patients too, as before
]


def _parents(node: Any, path: list[str]) -> list[dict]:
    """The mappings that ``path`` (keys, ``*`` for every entry of a list) leads to from ``node``."""
    if not path:
        return [node] if isinstance(node, dict) else []
    head, rest = path[0], path[1:]
    if head == "*":
        return [p for item in node for p in _parents(item, rest)] if isinstance(node, list) else []
    return _parents(node[head], rest) if isinstance(node, dict) and head in node else []


#: keys renamed since a config record was written: dotted path (``*``: every entry of a list) -> the new name
RENAMED_KEYS = {"strategies.*.ratio": "per_real"}


def with_current_names(config: dict) -> dict:
    """A config record (resolved config as JSON) with the keys renamed since it was written under their new names
    (``RENAMED_KEYS``): an old run folder resumes, and its report reads it, without a warning."""
    out = json.loads(json.dumps(config))
    for dotted, new in RENAMED_KEYS.items():
        *parent, old = dotted.split(".")
        for target in _parents(out, parent):
            if old in target and new not in target:
                target[new] = target.pop(old)
    return out


def upgrade_row(row: dict) -> dict:
    """A results row of a strategies grid written before ``ratio`` was called ``per_real`` (in the row and its
    ``setting``), under the new name; other rows as they are."""
    if row.get("mix") != "strategy" or "ratio" not in row:
        return row
    row = dict(row)
    row["per_real"] = row.pop("ratio")
    if isinstance(row.get("setting"), dict) and "ratio" in row["setting"]:
        row["setting"] = {("per_real" if k == "ratio" else k): v for k, v in row["setting"].items()}
    return row


def with_neutral_defaults(config: dict) -> dict:
    """``config`` (a resolved config as JSON) under its current key names (``with_current_names``) with every
    missing key of ``NEUTRAL_DEFAULTS`` filled in (only where its parent exists: a config without ``datasets``
    gains none)."""
    out = with_current_names(config)
    for key, default, marker in NEUTRAL_TOP_DEFAULTS:
        if isinstance(out, dict) and marker in out:
            out.setdefault(key, json.loads(json.dumps(default)))
    for dotted, default in NEUTRAL_DEFAULTS.items():
        *parent, key = dotted.split(".")
        for target in _parents(out, parent):
            target.setdefault(key, json.loads(json.dumps(default)))
    return out


def check_same_config(records: dict[Path, dict], out_dir: Path) -> dict:
    """The one resolved config all records hold; a ``ConfigError`` naming the files and the differing keys
    when they do not agree (merged results would mix two experiments), or when the records were written
    for different numbers of shards (their cells would overlap)."""
    (first, reference), *others = records.items()
    for path, record in others:
        keys = sorted(diff_keys(with_neutral_defaults(reference["config"]), with_neutral_defaults(record["config"])))
        if keys:
            raise ConfigError(f"{out_dir}: {path.name} holds a different config than {first.name} (differs in "
                              f"{keys[:8]}); results of different configs are never merged. Run every shard with "
                              "the same config and overrides, or give the odd one its own --out folder.")
    counts = shard_counts(records)
    if len(counts) > 1:
        raise ConfigError(f"{out_dir} mixes runs split into different numbers of shards: "
                          + "; ".join(f"{n}: {', '.join(names)}" for n, names in sorted(counts.items()))
                          + ". A folder holds one split of the grid; rerun with the same --shard i/N as before, or "
                            "use another --out folder.")
    return with_neutral_defaults(reference["config"])


def row_key(row: dict) -> tuple:
    """What makes a row one cell, broad enough for every arm and mix (older rows have neither field)."""
    return (row["dataset"], float(row["fraction"]), int(row["seed"]), row.get("generator"),
            float(row.get("ratio") or 0.0), row.get("arm"), row.get("mix"))


def read_results(out_dir: Path) -> list[dict]:
    """Every result row of a run folder: ``results.jsonl`` and each shard's file, in shard order. A cell
    found in two files is an error naming both (shards of one split never share a cell)."""
    rows: list[dict] = []
    seen: dict[tuple, str] = {}
    for path in record_files(out_dir, "results", "jsonl"):
        for row in read_jsonl(path):
            key = row_key(upgrade_row(row))
            if key in seen and seen[key] != path.name:
                raise ValueError(f"{out_dir}: the cell {key} is in both {seen[key]} and {path.name}; shards of one "
                                 "run never share a cell, so these files come from different runs. Move one away.")
            seen[key] = path.name
            rows.append(upgrade_row(row))
    return rows
