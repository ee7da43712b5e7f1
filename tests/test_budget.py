"""benchmarks/budget.py: the real-only baseline at several step floors, paired by seed."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "budget.py"


def _load():
    spec = importlib.util.spec_from_file_location("budget_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(folder: Path, min_steps: int, scores: list[float], *, synthetic: bool = False) -> Path:
    folder.mkdir()
    config = {"classifier": {"steps": None, "min_steps": min_steps}}
    (folder / "config.json").write_text(json.dumps({"config": config, "versions": {}}))
    rows = []
    for seed, score in enumerate(scores):
        metrics = {"balanced_accuracy": score}
        rows.append({"dataset": "malaria-32px", "fraction": 0.02, "seed": seed, "arm": "real", "generator": None,
                     "ratio": 0.0, "train_patients": 3, "classifier_steps": min_steps, "best_step": min_steps - 100,
                     "val": metrics, "test": metrics})
        if synthetic:  # a synthetic arm in the same folder is not a baseline and is left out
            rows.append({**rows[-1], "arm": "synthetic", "generator": "ddpm", "ratio": 0.25,
                         "test": {"balanced_accuracy": 0.0}, "val": {"balanced_accuracy": 0.0}})
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_budgets_are_compared_paired_by_seed_in_order_of_their_floor(tmp_path):
    budget = _load()
    short = _run(tmp_path / "short", 300, [0.60, 0.70, 0.80], synthetic=True)
    long = _run(tmp_path / "long", 600, [0.63, 0.74, 0.82])
    assert budget.main([str(long), str(short), "--out", str(tmp_path / "out")]) == 0
    rows = json.loads((tmp_path / "out" / "budget.json").read_text())
    assert [r["budget"] for r in rows] == ["min 300", "min 600"]
    assert rows[0]["test"][0] == pytest.approx(0.70) and rows[0]["diff_previous"] is None
    diff = rows[1]["diff_previous"]
    assert diff["against"] == "min 300" and diff["mean"] == pytest.approx(0.03) and diff["n"] == 3
    text = (tmp_path / "out" / "budget.md").read_text()
    assert "+0.030" in text and (tmp_path / "out" / "budget.png").stat().st_size > 1000


def test_a_folder_that_is_not_a_run_is_refused(tmp_path):
    budget = _load()
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="not a benchmark run folder"):
        budget.main([str(tmp_path / "empty"), "--out", str(tmp_path / "out")])
