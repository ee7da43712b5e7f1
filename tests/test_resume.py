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

from synthaug.cli import main

# The kill comes at the first saved step >= 100 (checkpoints every 50 steps, polled every 20 ms): 1000 steps
# leave about 850 steps after it (seconds even on a fast machine), and the resumed run crosses epoch boundaries.
STEPS = 1000


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
    # one thread: on a busy 2-core machine two threads make this tiny model's steps many times slower (measured:
    # 150 steps took 67 s with 2 threads, 4 s with one); every run of a comparison uses the same setting
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "synthaug.cli", "train", "--config", str(cfg), "--out", str(out),
                             *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _saved_step(out: Path) -> int:
    try:
        meta = json.loads((out / "resume" / "state.json").read_text())
    except (OSError, ValueError):
        return 0
    return dict(meta["__dict__"])["step"]


def test_sigkilled_generator_training_resumes_bit_identical(tmp_path, data_root, capsys):
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

    # Without --resume the existing training is refused, and nothing in it is touched (in-process: the command's
    # main(); the runs before and after this one are true subprocesses).
    before = (cut / "checkpoint" / "model.safetensors").read_bytes()
    assert main(["train", "--config", str(cfg), "--out", str(cut)]) == 1
    assert "--resume" in capsys.readouterr().err
    assert (cut / "checkpoint" / "model.safetensors").read_bytes() == before

    proc = _train(cfg, cut, "--resume")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    assert (cut / "checkpoint" / "model.safetensors").read_bytes() == (whole / "checkpoint" / "model.safetensors").read_bytes()
    assert (cut / "log.jsonl").read_text() == (whole / "log.jsonl").read_text()


def test_resume_with_another_config_is_refused(tmp_path, data_root, capsys):
    cfg = _config(tmp_path, data_root)
    out = tmp_path / "run"
    proc = _train(cfg, out, "--set", "generator.train.steps=60")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert main(["train", "--config", str(cfg), "--out", str(out), "--resume", "--set",
                 "generator.train.steps=80"]) == 1  # in-process, as above
    assert "same config" in capsys.readouterr().err
