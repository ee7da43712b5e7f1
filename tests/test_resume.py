"""Crashes: a training killed with SIGKILL and resumed ends exactly where an uninterrupted one does."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

STEPS = 2000


def _config(tmp_path: Path, data_root: Path) -> Path:
    cfg = tmp_path / "gen.yaml"
    cfg.write_text(
        f"data: {{name: malaria, root: {data_root}, image_size: 16, train_fraction: 0.05}}\n"
        "seed: 3\n"
        "generator:\n"
        "  name: cvae-tiny\n"
        f"  train: {{steps: {STEPS}, batch_size: 16, checkpoint_every: 50, sample_every: 0, log_every: 25}}\n"
    )
    return cfg


def _train(cfg: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "synthaug.cli", "train", "--config", str(cfg), "--out", str(out),
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _saved_step(out: Path) -> int:
    try:
        meta = json.loads((out / "resume" / "state.json").read_text())
    except (OSError, ValueError):
        return 0
    return dict(meta["__dict__"])["step"]


def test_sigkilled_generator_training_resumes_bit_identical(tmp_path, data_root):
    cfg = _config(tmp_path, data_root)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    proc = _train(cfg, whole)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]

    proc = _train(cfg, cut)
    deadline = time.time() + 300
    while _saved_step(cut) < 100 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _saved_step(cut)
    assert 100 <= killed_at < STEPS, f"the kill came at saved step {killed_at}; the test needs it mid-run"

    # Without --resume the existing training is refused, and nothing in it is touched.
    before = (cut / "checkpoint" / "model.safetensors").read_bytes()
    proc = _train(cfg, cut)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "--resume" in err
    assert (cut / "checkpoint" / "model.safetensors").read_bytes() == before

    proc = _train(cfg, cut, "--resume")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    assert (cut / "checkpoint" / "model.safetensors").read_bytes() == (whole / "checkpoint" / "model.safetensors").read_bytes()
    assert (cut / "log.jsonl").read_text() == (whole / "log.jsonl").read_text()


def test_resume_with_another_config_is_refused(tmp_path, data_root):
    cfg = _config(tmp_path, data_root)
    out = tmp_path / "run"
    proc = _train(cfg, out, "--set", "generator.train.steps=60")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    proc = _train(cfg, out, "--resume", "--set", "generator.train.steps=80")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2 and "same config" in err
