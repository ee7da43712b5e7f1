"""`make demo` shows the practice of the committed runs: additive mixing beside a real-matched control, the
quality gate measured and reported, and (its generator being rejected) where a generator that passes is."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from synthaug.bench import BenchConfig
from synthaug.bench.tables import gate_headline
from synthaug.config import load_config

REPO = Path(__file__).resolve().parents[1]


def _gate(passed: bool, seed: int = 0) -> dict:
    return {"passed": passed, "seed": seed, "ratio": 0.64, "failed": [] if passed else ["ratio"], "min_ratio": 0.8,
            "min_class_ratio": 0.6}


def test_demo_config_mixes_additively_beside_its_control_and_measures_the_gate():
    cfg = load_config(BenchConfig, REPO / "configs" / "bench" / "malaria-quick.yaml")
    assert cfg.synthetic.mix == "additive" and cfg.synthetic.matched
    assert cfg.quality.enabled and cfg.quality.cas and cfg.quality.gate.enabled
    assert cfg.quality.wanted(cfg.fractions[0], cfg.seeds[0])
    assert cfg.classifier.eval_every and cfg.classifier.bn == "recompute"


def test_headline_only_when_every_measured_generator_was_rejected():
    key = ("malaria-32px", 0.05, "cvae")
    text = gate_headline({key: [_gate(False)]})
    assert "No generator of this run passed the quality gate" in text and "CAS ratio 0.64" in text
    assert "configs/recipes.yaml" in text and "ddpm" in text
    assert gate_headline({key: [_gate(False)], ("malaria-32px", 0.05, "ddpm"): [_gate(True)]}) is None
    assert gate_headline({}) is None


def test_the_demos_first_line_says_its_generator_fails_the_gate():
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    first = subprocess.run(["make", "-s", "--no-print-directory", "demo-notice"], cwd=REPO, capture_output=True, text=True,
                           timeout=60).stdout.splitlines()[0]
    assert "NOT pass the quality gate" in first and "configs/recipes.yaml" in first
    plan = subprocess.run(["make", "-n", "--no-print-directory", "demo"], cwd=REPO, capture_output=True, text=True, timeout=60).stdout
    assert plan.splitlines()[0].startswith("echo") and "malaria-quick.yaml" in plan
