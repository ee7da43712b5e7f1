"""benchmarks/convergence.py: the recorder never stops training, resumes without repeating checks, and the curve is
drawn in alone-measured minutes."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import convergence  # noqa: E402

from synthaug.quality import GateConfig  # noqa: E402


class FakeStopper:
    """Stands in for GateStopper: a decision record whose CAS ratio grows with the step."""

    def __init__(self) -> None:
        self.calls = []

    def __call__(self, gen, step):
        self.calls.append((step, gen.guidance))
        ratio = min(1.0, step / 4000)
        return {"passed": ratio >= 0.8, "ratio": ratio, "cas": 0.9 * ratio, "real_score": 0.9, "chance": 0.5,
                "class_recall_ratio": {"Parasitized": ratio - 0.1, "Uninfected": ratio}}


class Gen:
    guidance = 1.0


def test_observer_records_and_never_stops(tmp_path):
    stopper = FakeStopper()
    log = tmp_path / "checks.jsonl"
    observer = convergence.Observer(stopper, log, {"guidance": 3.0}, GateConfig(min_ratio=0.9, min_class_ratio=0.8))
    gen = Gen()
    for step in (1000, 4000):
        assert observer(gen, step)["passed"] is False
    assert gen.guidance == 1.0 and [g for _, g in stopper.calls] == [3.0, 3.0]  # checked with the config's sampling
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["step"] for r in rows] == [1000, 4000]
    assert [r["gate_passed"] for r in rows] == [False, True]
    assert [r["target_met"] for r in rows] == [False, True]
    # a resumed run skips the checks it already recorded
    again = convergence.Observer(stopper, log, {"guidance": 3.0}, GateConfig())
    assert again(gen, 1000)["passed"] is False and len(stopper.calls) == 2


def test_gather_converts_steps_to_alone_minutes_and_plots(tmp_path, monkeypatch):
    monkeypatch.setattr(convergence, "ROOT", tmp_path)
    cfg = convergence.ConvergenceConfig(variants={"a": {"steps": 2000}, "b": {"steps": 2000}},
                                        out_dir="runs", docs_dir="docs")
    for name in ("a", "b"):
        (tmp_path / "runs" / name).mkdir(parents=True)
        rows = [{"step": s, "cas_ratio": s / 4000, "class_recall_ratio": {"Parasitized": s / 5000}}
                for s in (1000, 2000)]
        (tmp_path / "runs" / name / "checks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "step_seconds.json").write_text(json.dumps(
        {"step_seconds": {"a": {"seconds_per_step": 0.3, "mixed_precision": "bf16", "threads": 2}}}))
    record = convergence.gather(cfg)
    assert [r["minutes"] for r in record["variants"]["a"]["checks"]] == [5.0, 10.0]
    assert [r["minutes"] for r in record["variants"]["b"]["checks"]] == [None, None]  # not timed: not plotted
    convergence.plot(record, tmp_path / "docs" / "convergence.png")
    assert (tmp_path / "docs" / "convergence.png").stat().st_size > 1000


def test_variants_resolve_onto_the_preset_and_bad_keys_are_named(tmp_path):
    cfg = convergence.ConvergenceConfig(variants={"v": {"steps": 10, "mixed_precision": "bf16",
                                                        "options": {"loss_weighting": "min-snr"}},
                                                  "bad": {"stepz": 3}})
    resolved = convergence.generator_config(cfg, "v")
    assert resolved.generator.name == "ddpm" and resolved.generator.options["loss_weighting"] == "min-snr"
    assert resolved.generator.train.mixed_precision == "bf16" and resolved.generator.train.steps == 10
    assert resolved.generator.train.gate_every == cfg.check_every
    with pytest.raises(SystemExit, match="stepz"):
        convergence.generator_config(cfg, "bad")
    empty = tmp_path / "empty.yaml"
    empty.write_text("seed: 0\n")
    with pytest.raises(SystemExit, match="no variants"):
        convergence.load_config(empty)
