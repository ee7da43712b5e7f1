"""Spreading a grid over machines: ``--shard i/N`` assigns cells deterministically, keeps a generator's
cells on one shard, writes one results file per shard, and the summary and report merge the shards and
refuse shards that ran different configs. Two shards run as two processes give the results of one run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from synthaug.bench import BenchConfig, build_report, load_run, plan, prepare_run_dir
from synthaug.bench.paths import Shard, config_path, read_results, record_files, results_path, runs_path
from synthaug.bench.runner import shard_cells, shard_units
from synthaug.classifier import METRICS
from synthaug.config import ConfigError, from_dict, to_dict
from synthaug.utils import append_jsonl

REPO = Path(__file__).resolve().parents[1]


def config(**overrides) -> BenchConfig:
    data = {"name": "s", "seeds": [0, 1, 2, 3, 4], "fractions": [0.02, 0.25, 1.0],
            "generators": [{"name": "cvae-tiny"}, {"name": "cvae-tiny", "label": "second"}],
            "synthetic": {"ratios": [0.25, 0.5]}, "quality": {"enabled": False}, **overrides}
    return from_dict(BenchConfig, data)


def _unit(cell) -> tuple:
    return cell.dataset, cell.fraction, cell.seed, cell.generator


# --------------------------------------------------------------------------- assignment
@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 40])
def test_every_cell_runs_on_exactly_one_shard(count):
    cfg = config()
    cells = plan(cfg)
    shards = [shard_cells(cells, cfg, Shard(i, count)) for i in range(count)]
    assert Counter(c.key() for s in shards for c in s) == Counter(c.key() for c in cells)
    for s in shards:
        assert s == [c for c in cells if c in s]  # plan order within a shard


@pytest.mark.parametrize("count", [2, 3, 4])
def test_a_generators_cells_stay_on_one_shard_and_each_shard_gets_its_share(count):
    """All ratios of one trained generator (data set, fraction, seed, generator) run on one shard; each
    generator's 15 trainings spread evenly over the shards (so no shard gets all the slow ones)."""
    cfg = config()
    owner: dict[tuple, set[int]] = {}
    per_generator: Counter = Counter()
    for i in range(count):
        for c in shard_cells(plan(cfg), cfg, Shard(i, count)):
            owner.setdefault(_unit(c), set()).add(i)
    assert all(len(shards) == 1 for shards in owner.values())
    for unit, (i,) in owner.items():
        per_generator[(unit[3], i)] += 1
    for g in (None, "cvae-tiny", "second"):
        share = [per_generator[(g, i)] for i in range(count)]
        assert sum(share) == 15 and max(share) - min(share) <= 1, (g, share)


def test_the_assignment_is_a_function_of_the_config_alone():
    cfg = config()
    first = [c.key() for c in shard_cells(plan(cfg), cfg, Shard(1, 3))]
    again = config()  # another process, another machine: rebuilt from the same config
    assert [c.key() for c in shard_cells(plan(again), again, Shard(1, 3))] == first
    units = shard_units(plan(cfg), cfg)
    assert units[0] == ("malaria-32px", 0.02, 0, None) and units[15] == ("malaria-32px", 0.02, 0, "cvae-tiny")


@pytest.mark.parametrize(("text", "message"), [
    ("2/2", "counts from 0"), ("0/0", "counts from 0"), ("-1/2", "expected i/N"), ("1", "expected i/N"),
    ("a/b", "expected i/N"), ("1/2/3", "expected i/N"),
])
def test_bad_shard_arguments_are_refused(text, message):
    with pytest.raises(ValueError, match=message):
        Shard.parse(text)


def test_shard_file_names(tmp_path):
    assert Shard.parse(" 1 / 3 ") == Shard(1, 3) and str(Shard(1, 3)) == "1/3"
    assert results_path(tmp_path, Shard(1, 3)).name == "results.shard-1-of-3.jsonl"
    assert config_path(tmp_path, Shard(0, 2)).name == "config.shard-0-of-2.json"
    assert runs_path(tmp_path, Shard(0, 2)).name == "runs.shard-0-of-2.jsonl"
    assert results_path(tmp_path, Shard(0, 1)) == results_path(tmp_path) == tmp_path / "results.jsonl"
    for name in ("results.shard-10-of-12.jsonl", "results.shard-2-of-12.jsonl", "results.jsonl",
                 "results-old.shard-0-of-2.jsonl"):
        (tmp_path / name).write_text("")
    assert [p.name for p in record_files(tmp_path, "results", "jsonl")] == [
        "results.jsonl", "results.shard-2-of-12.jsonl", "results.shard-10-of-12.jsonl"]


# --------------------------------------------------------------------------- run folder records
def _row(seed: int, generator: str | None, ratio: float, value: float) -> dict:
    return {"dataset": "malaria-32px", "fraction": 1.0, "seed": seed, "generator": generator, "ratio": ratio,
            "arm": "real" if generator is None else "synthetic", "train_items": 100, "train_patients": 3,
            "val": {m: value for m in METRICS}, "test": {m: value for m in METRICS}}


def _small() -> BenchConfig:
    return config(seeds=[0, 1, 2], fractions=[1.0], generators=[{"name": "cvae-tiny"}], synthetic={"ratios": [0.3]})


def _write_shards(run: Path, cfg: BenchConfig, count: int = 2) -> None:
    for i in range(count):
        shard = Shard(i, count)
        prepare_run_dir(cfg, run, shard)
        append_jsonl(runs_path(run, shard), {"started": "t0", "status": "started", "shard": str(shard)})
        for c in shard_cells(plan(cfg), cfg, shard):
            append_jsonl(results_path(run, shard), _row(c.seed, c.generator, c.ratio,
                                                        0.7 + 0.01 * c.seed + (0.02 if c.generator else 0)))
        append_jsonl(runs_path(run, shard), {"started": "t0", "status": "finished", "seconds": 60.0 * (i + 1),
                                             "shard": str(shard), "processes": 1})


def test_the_report_merges_the_shards(tmp_path):
    cfg = _small()
    _write_shards(tmp_path, cfg)
    assert not (tmp_path / "config.json").exists() and not (tmp_path / "results.jsonl").exists()
    loaded, _, rows = load_run(tmp_path)
    assert to_dict(loaded) == to_dict(cfg) and len(rows) == len(plan(cfg)) == 6
    md, _ = build_report(tmp_path)
    text = md.read_text()
    assert "6 classifier trainings (complete)" in text and "spread over 2 shards" in text
    assert "3 min of wall time summed over 2 shard(s)" in text and "the longest shard took 2 min" in text
    assert "| malaria-32px | 1 | 3 | cvae-tiny | 0.3 | replace |" in text


def test_a_shard_that_has_not_started_is_named(tmp_path):
    cfg = _small()
    _write_shards(tmp_path, cfg, count=3)
    config_path(tmp_path, Shard(2, 3)).unlink()
    results_path(tmp_path, Shard(2, 3)).unlink()
    md, _ = build_report(tmp_path)
    assert "**shards [2] have not started**" in md.read_text() and "partial:" in md.read_text()


def test_shards_of_different_configs_are_refused_by_the_report(tmp_path, capsys):
    from synthaug.cli import main

    _write_shards(tmp_path, _small())
    record = json.loads(config_path(tmp_path, Shard(1, 2)).read_text())
    record["config"]["classifier"]["lr"] = 0.5
    record["config"]["seeds"] = [0, 1]
    config_path(tmp_path, Shard(1, 2)).write_text(json.dumps(record))
    with pytest.raises(ConfigError, match=r"config.shard-1-of-2.json holds a different config than "
                                          r"config.shard-0-of-2.json \(differs in \['classifier.lr', 'seeds'\]\)"):
        load_run(tmp_path)
    assert main(["report", str(tmp_path)]) == 2
    assert "classifier.lr" in capsys.readouterr().err
    assert not (tmp_path / "report.html").exists()


def test_a_shard_run_refuses_another_config_or_another_split(tmp_path):
    cfg = _small()
    prepare_run_dir(cfg, tmp_path, Shard(0, 2))
    prepare_run_dir(cfg, tmp_path, Shard(1, 2))  # the other shard of the same split: fine
    other = config(seeds=[0, 1, 2], fractions=[1.0], generators=[{"name": "cvae-tiny"}], synthetic={"ratios": [0.5]})
    with pytest.raises(ConfigError, match=r"different config \(config.shard-0-of-2.json differs in \['synthetic.ratios'\]"):
        prepare_run_dir(other, tmp_path, Shard(1, 2))
    with pytest.raises(ConfigError, match="different numbers of shards"):
        prepare_run_dir(cfg, tmp_path, Shard(0, 3))
    with pytest.raises(ConfigError, match="different numbers of shards"):
        prepare_run_dir(cfg, tmp_path)  # unsharded into a sharded folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.shard-0-of-2.json", "config.shard-1-of-2.json"]


def test_a_cell_in_two_results_files_is_refused(tmp_path):
    append_jsonl(results_path(tmp_path, Shard(0, 2)), _row(0, None, 0.0, 0.7))
    append_jsonl(results_path(tmp_path, Shard(1, 2)), _row(0, None, 0.0, 0.7))
    with pytest.raises(ValueError, match="in both results.shard-0-of-2.jsonl and results.shard-1-of-2.jsonl"):
        read_results(tmp_path)


# --------------------------------------------------------------------------- two processes == one run
TINY = [
    "--set", "seeds=[0,1]",
    "--set", "classifier.model=test_resnet",
    "--set", "classifier.steps=4",
    "--set", "classifier.batch_size=16",
    "--set", "generators=[{name: cvae-tiny, options: {}, train: {steps: 4, batch_size: 16}}]",
    "--set", "datasets.0.image_size=16",
    "--set", "fractions=[0.03]",
    "--set", "quality={enabled: false}",
    # the v2 protocol: ratio 0 for validation to choose, additive mixing with its real-matched control (a
    # real-only cell of the split's real unit), validation every 2 steps (learning curves, best step kept)
    "--set", "synthetic={ratios: [0, 0.3], mix: additive}",
    "--set", "classifier.eval_every=2",
]


def _bench(out: Path, data_root: Path, *extra: str) -> subprocess.Popen:
    # one thread per process: both shards run at once on a small machine, and the same kernels serve all runs
    env = {**os.environ, "SYNTHAUG_DATA": str(data_root), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(REPO / "benchmarks" / "run.py"), "--config",
           str(REPO / "configs" / "bench" / "malaria-quick.yaml"), *TINY, *extra, "--out", str(out)]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=1200)
    assert proc.returncode == 0, err[-3000:]
    return out


def _without_seconds(rows: list[dict]) -> dict[tuple, dict]:
    return {(r["seed"], r["arm"], r["generator"], r["ratio"]): {k: v for k, v in r.items() if k != "seconds"}
            for r in rows}


def test_two_shards_as_two_processes_give_the_results_of_one_run(tmp_path, data_root):
    from synthaug.bench import summarize

    _finish(_bench(tmp_path / "one", data_root))
    shards = [_bench(tmp_path / "sharded", data_root, "--shard", f"{i}/2") for i in range(2)]  # at the same time
    outputs = [_finish(p) for p in shards]
    assert "results.shard-1-of-2.jsonl" in outputs[1]
    assert not (tmp_path / "sharded" / "results.jsonl").exists()
    per_shard = [read_results_file(results_path(tmp_path / "sharded", Shard(i, 2))) for i in range(2)]
    assert {r["seed"] for r in per_shard[0]} == {0} and {r["seed"] for r in per_shard[1]} == {1}  # seed by seed
    cfg, _, rows = load_run(tmp_path / "sharded")
    reference = load_run(tmp_path / "one")[2]
    assert len(rows) == len(reference) == len(plan(cfg))
    assert _without_seconds(rows) == _without_seconds(reference)
    assert {r["arm"] for r in rows} == {"real", "real-matched", "synthetic"} and all(r["curve"] for r in rows)
    # each generator trained once, on its shard; the merged summary is the one run's
    assert len(list((tmp_path / "sharded" / "generators").rglob("done.json"))) == 2
    assert (tmp_path / "sharded" / "summary.md").is_file()
    assert summarize(rows, cfg) == summarize(reference, load_run(tmp_path / "one")[0])
    md, _ = build_report(tmp_path / "sharded", tmp_path / "report")
    assert "(complete)" in md.read_text() and "spread over 2 shards" in md.read_text()


def read_results_file(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _rewrite_config(path: Path, edit) -> None:
    record = json.loads(path.read_text())
    edit(record["config"])
    path.write_text(json.dumps(record))


def test_a_run_written_before_a_neutral_key_existed_resumes_but_not_one_that_ran_differently(tmp_path):
    """Keys added later whose defaults reproduce the old behaviour (data channels, group aliases, the quality
    gate, which only annotates) do not make an older run folder "another config"; a changed value, or a
    missing key whose default changes results (classifier.bn), still does."""
    cfg = _small()
    prepare_run_dir(cfg, tmp_path)
    path = config_path(tmp_path, None)

    def drop_neutral(c):
        del c["quality"]["gate"]
        for d in c["datasets"]:
            del d["channels"], d["group_aliases"]

    _rewrite_config(path, drop_neutral)
    prepare_run_dir(cfg, tmp_path)  # resumes
    _rewrite_config(path, lambda c: c["quality"].update(gate={"enabled": True, "min_ratio": 0.9, "min_class_ratio": 0.6}))
    with pytest.raises(ConfigError, match=r"differs in \['quality.gate.min_ratio'\]"):
        prepare_run_dir(cfg, tmp_path)
    _rewrite_config(path, lambda c: (c["quality"].pop("gate"), c["classifier"].pop("bn")))
    with pytest.raises(ConfigError, match=r"differs in \['classifier.bn'\]"):
        prepare_run_dir(cfg, tmp_path)
