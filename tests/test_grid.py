"""The benchmark grid: planning, validation-selected ratios, verdicts, and 2 processes == 1 process."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from synthaug.benchmark import BenchConfig, Cell, analyze, plan, summarize
from synthaug.classifier import METRICS
from synthaug.config import from_dict

REPO = Path(__file__).resolve().parents[1]


def config(**overrides) -> BenchConfig:
    data = {"name": "t", "seeds": [0, 1, 2], "fractions": [0.1, 1.0],
            "generators": [{"name": "cvae-tiny"}, {"name": "cvae", "label": "big"}],
            "synthetic": {"ratios": [0.1, 0.5]}, **overrides}
    return from_dict(BenchConfig, data)


def test_plan_covers_the_grid_once_baseline_first():
    cfg = config()
    cells = plan(cfg)
    assert len(cells) == 1 * 2 * 3 * (1 + 2 * 2)
    assert len({c.key() for c in cells}) == len(cells)
    assert cells[0] == Cell("malaria-32px", 0.1, 0) and cells[0].arm == "real"
    assert cells[1] == Cell("malaria-32px", 0.1, 0, "cvae-tiny", 0.1)
    assert Cell.of_row({"dataset": "malaria-32px", "fraction": 1, "seed": 2, "generator": "big", "ratio": 0.5}) in cells


def _row(fraction, seed, generator, ratio, val, test):
    return {"dataset": "malaria-32px", "fraction": fraction, "seed": seed, "generator": generator, "ratio": ratio,
            "arm": "real" if generator is None else "synthetic", "train_items": 100, "train_patients": 3,
            "positive_class": "Parasitized",
            "val": {m: val for m in METRICS}, "test": {m: test for m in METRICS}}


def test_the_ratio_is_selected_on_validation_never_on_test():
    """Validation prefers ratio 0.1, test would prefer 0.5: 0.1 is selected and scored on test."""
    cfg = config(fractions=[0.1], generators=[{"name": "cvae-tiny"}])
    rows = []
    for s in range(3):
        rows += [_row(0.1, s, None, 0.0, 0.70, 0.70),
                 _row(0.1, s, "cvae-tiny", 0.1, 0.80 + 0.01 * s, 0.60 + 0.01 * s),   # best on val, hurts on test
                 _row(0.1, s, "cvae-tiny", 0.5, 0.65, 0.90 + 0.01 * s)]               # best on test: not selected
    a = analyze(rows, cfg)
    (v,) = a["verdicts"]
    assert v["ratio"] == 0.1 and v["ratios_tried"] == [0.1, 0.5]
    assert v["verdict"] == "hurts" and v["diff"]["mean"] == pytest.approx(-0.09)
    selected = [(e["ratio"], e["selected"]) for e in a["settings"]]
    assert selected == [(0.1, True), (0.5, False)]
    md = summarize(rows, cfg, analysis=a)
    assert "| malaria-32px | 0.1 | 3 | cvae-tiny | 0.1 |" in md and "**hurts**" in md
    assert "| malaria-32px | 0.1 | cvae-tiny | 0.5 |  |" in md  # listed, not selected


@pytest.mark.parametrize("deltas, expected", [
    ([0.05, 0.06, 0.04], "helps"),
    ([-0.05, -0.06, -0.04], "hurts"),
    ([0.05, -0.06, 0.01], "no significant difference"),
])
def test_verdicts_follow_the_paired_interval(deltas, expected):
    cfg = config(fractions=[1.0], generators=[{"name": "cvae-tiny"}], synthetic={"ratios": [0.3]})
    rows = []
    for s, d in enumerate(deltas):
        base = 0.6 + 0.1 * s  # seeds differ a lot: only pairing makes small gains visible
        rows += [_row(1.0, s, None, 0.0, base, base), _row(1.0, s, "cvae-tiny", 0.3, base + d, base + d)]
    (v,) = analyze(rows, cfg)["verdicts"]
    assert v["verdict"] == expected


def test_partial_results_are_marked():
    cfg = config(fractions=[1.0], generators=[{"name": "cvae-tiny"}], synthetic={"ratios": [0.3]})
    rows = [_row(1.0, 0, None, 0.0, 0.6, 0.6), _row(1.0, 0, "cvae-tiny", 0.3, 0.7, 0.7), _row(1.0, 1, None, 0.0, 0.5, 0.5)]
    a = analyze(rows, cfg)
    (v,) = a["verdicts"]
    assert v["seeds"] == [0] and not v["complete"] and v["verdict"] == "too few seeds to tell"
    assert "(1 of 3 seeds)" in summarize(rows, cfg, analysis=a)


# --------------------------------------------------------------------------- 2 processes == 1 process
GRID = [
    "--set", "seeds=[0]",
    "--set", "classifier.model=test_efficientnet_gn",   # GroupNorm: per image, so a split batch gives the same model
    "--set", "classifier.steps=4",
    "--set", "classifier.batch_size=16",
    "--set", "classifier.eval_batch_size=64",
    "--set", "generators=[{name: cvae-tiny, options: {norm: group}, train: {steps: 4, batch_size: 16}}]",
    "--set", "datasets.0.image_size=16",
    "--set", "fractions=[0.03]",
    # quality on the main process alone while the other waits: must not hang, and must match 1 process
    "--set", "quality={n: 30, cas_images: 32, extractor_steps: 2}",
]


def _launch(out: Path, processes: int, data_root: Path) -> subprocess.CompletedProcess:
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    # several CPU processes: torchrun-style launch (--multi_gpu) with ACCELERATE_USE_CPU, which makes each
    # process a MULTI_CPU (gloo) rank; `--cpu --num_processes 2` would start one process that thinks it is alone
    env = {**os.environ, "SYNTHAUG_DATA": str(data_root), "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    mode = ["--multi_gpu"] if processes > 1 else []
    cmd = [accelerate, "launch", *mode, "--num_processes", str(processes), "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", str(REPO / "benchmarks" / "run.py"),
           "--config", str(REPO / "configs" / "bench" / "malaria-quick.yaml"), *GRID, "--out", str(out)]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def test_two_processes_give_the_metrics_of_one(tmp_path, data_root, malaria32):
    runs = {}
    for n in (1, 2):
        proc = _launch(tmp_path / f"p{n}", n, data_root)
        assert proc.returncode == 0, proc.stderr[-3000:]
        rows = [json.loads(line) for line in (tmp_path / f"p{n}" / "results.jsonl").read_text().splitlines()]
        assert len(rows) == 2 and all(r["processes"] == n for r in rows)  # written once, by the main process
        runs[n] = {(r["generator"], r["ratio"]): r for r in rows}
        quality = tmp_path / f"p{n}" / "quality" / "malaria-16px" / "frac0.03" / "seed0" / "cvae-tiny" / "quality.json"
        runs[n]["quality"] = json.loads(quality.read_text())
    assert runs[1].keys() == runs[2].keys()
    q1, q2 = runs[1].pop("quality"), runs[2].pop("quality")
    assert q1["fidelity"]["overall"]["fid"] == pytest.approx(q2["fidelity"]["overall"]["fid"], rel=1e-4)
    for key, one in runs[1].items():
        two = runs[2][key]
        assert one["train_items"] == two["train_items"] and one["synthetic_items"] == two["synthetic_items"]
        for part in ("val", "test"):
            for metric, value in one[part].items():
                assert two[part][metric] == pytest.approx(value, abs=2e-3), (key, part, metric)
