"""The command line's rough edges (issue 26): ``python -m synthaug``, exit codes, configs without their keys,
typos caught by --dry-run, Ctrl-C and a full disk during ``train``, ``--resume`` with nothing saved."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from synthaug import create_generator
from synthaug.cli import main

REPO = Path(__file__).resolve().parent.parent


def _tiny_config(tmp_path: Path, data_root: Path, **train) -> Path:
    options = {"steps": 4, "batch_size": 8, "sample_every": 0, "checkpoint_every": 2, **train}
    cfg = tmp_path / "g.yaml"
    cfg.write_text(f"data: {{name: malaria, root: {data_root}, image_size: 16, train_fraction: 0.02}}\n"
                   f"generator: {{name: cvae-tiny, train: {json.dumps(options)}}}\n")
    return cfg


def test_python_dash_m_synthaug_is_the_command(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "synthaug", "list", "cvae*"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "cvae-tiny" in proc.stdout
    usage = subprocess.run([sys.executable, "-m", "synthaug", "trian"], capture_output=True, text=True, env=env,
                           cwd=tmp_path, timeout=120)
    assert usage.returncode == 2 and "python -m synthaug: error:" in usage.stderr


def test_runtime_errors_exit_1_and_usage_errors_exit_2(tmp_path, capsys):
    assert main(["sample", "--checkpoint", str(tmp_path / "nope")]) == 1  # a missing file: met while running
    assert "not a synthaug generator checkpoint" in capsys.readouterr().err
    create_generator("cvae-tiny", num_classes=2, image_size=16, channels=3).save(tmp_path / "ckpt")
    assert main(["sample", "--checkpoint", str(tmp_path / "ckpt"), "--n", "2", "--labels", "7"]) == 2
    assert "--labels" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # argparse's own usage errors
        main(["sample"])
    assert exit_.value.code == 2


@pytest.mark.parametrize("command, text, missing", [
    ("train", "", "is empty"),
    ("train", "seed: 1\n", "has no data.name, generator.name"),
    ("train", "data: {name: malaria}\ngenerator: {options: {latent_dim: 4}}\n", "has no generator.name"),
    ("bench", "", "is empty"),
    ("bench", "name: mine\nseeds: [0]\n", "has no datasets, generators"),
    ("bench", "strategies: [{kind: samples}]\n", "has no datasets, generator"),
])
def test_a_config_without_its_keys_is_refused_naming_them(tmp_path, capsys, command, text, missing):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    assert main([command, "--config", str(cfg), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"{cfg} {missing}" in err and "--dry-run" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_an_override_can_give_the_missing_key(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {name: malaria}\n")
    assert main(["train", "--config", str(cfg), "--set", "generator.name=cvae-tiny", "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["generator"]["name"] == "cvae-tiny"


def test_train_dry_run_catches_a_generator_typo_and_prints_the_config_file(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {name: malaria}\ngenerator: {name: cvea}\n")
    assert main(["train", "--config", str(cfg), "--dry-run"]) == 2
    assert "did you mean 'cvae'" in capsys.readouterr().err
    cfg.write_text("data: {name: malaria}\ngenerator: {name: cvae, options: {latnt_dim: 4}}\n")
    assert main(["train", "--config", str(cfg), "--dry-run"]) == 2
    assert "latnt_dim" in capsys.readouterr().err
    assert main(["train", "--preset", "cvae-malaria", "--dry-run"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert Path(resolved["config_file"]).name == "cvae-malaria.yaml" and Path(resolved["config_file"]).is_file()


def test_resume_with_nothing_saved_is_refused_with_the_fresh_command(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {name: malaria}\ngenerator: {name: cvae-tiny}\n")
    out = tmp_path / "empty"
    assert main(["train", "--config", str(cfg), "--out", str(out), "--resume"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds no saved training" in err
    assert err.endswith(f"synthaug train --config {cfg} --out {out}")


def test_ctrl_c_during_train_leaves_one_line_with_the_resume_command(tmp_path, data_root, capsys, monkeypatch):
    import synthaug.generators.training as training

    def interrupt(*args, **kwargs):  # Ctrl-C once every step is trained and checkpointed: at the final grid
        raise KeyboardInterrupt

    monkeypatch.setattr(training, "save_sample_grid", interrupt)
    cfg, out = _tiny_config(tmp_path, data_root), tmp_path / "run"
    argv = ["train", "--config", str(cfg), "--out", str(out)]
    assert main(argv) == 130
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "interrupted (Ctrl-C)" in err and f"in {out} (step 4) are whole" in err
    assert err.endswith(f"continue with: synthaug train --config {cfg} --out {out} --resume")


def test_a_full_disk_during_train_leaves_one_line_and_resume_finishes(tmp_path, data_root, capsys, monkeypatch):
    import safetensors.torch
    from safetensors import SafetensorError

    real_save, calls = safetensors.torch.save_file, []

    def save_until_full(*args, **kwargs):  # the resume state of step 2 is written, that of step 4 is not
        calls.append(1)
        if len(calls) > 1:
            raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
                                  "message: \"No space left on device\" })")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", save_until_full)
    cfg, out = _tiny_config(tmp_path, data_root), tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "the disk is full" in err and f"in {out} (step 2) are whole" in err
    assert err.endswith(f"free some space, then continue with: synthaug train --config {cfg} --out {out} --resume")
    monkeypatch.setattr(safetensors.torch, "save_file", real_save)  # space freed
    assert main(["train", "--config", str(cfg), "--out", str(out), "--resume"]) == 0
    assert json.loads((out / "checkpoint" / "config.json").read_text())["training"]["steps"] == 4


def test_ctrl_c_before_anything_is_saved_says_to_start_again(tmp_path, monkeypatch, capsys):
    import synthaug.train as train

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "train_from_config", interrupt)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {name: malaria}\ngenerator: {name: cvae-tiny}\n")
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 130
    err = capsys.readouterr().err.strip()
    assert "nothing was saved" in err and err.endswith(f"start again: synthaug train --config {cfg} --out "
                                                      f"{tmp_path / 'run'}")


# --------------------------------------------------------------------------- evaluate: quick by default, with progress
def test_evaluate_is_quick_by_default_and_thorough_one_flag_away():
    from synthaug.cli import build_parser
    from synthaug.cli_evaluate import QUICK_CAS_IMAGES, cas_options, cas_setting

    base = ["evaluate", "--checkpoint", "c", "--out", "q"]
    parse = build_parser().parse_args
    assert cas_options(parse(base)) == {"cas_images": QUICK_CAS_IMAGES, "cas_seeds": 3, "cas_epochs": None}
    assert cas_options(parse([*base, "--thorough"])) == {"cas_images": None, "cas_seeds": 3, "cas_epochs": 10.0}
    assert cas_options(parse([*base, "--thorough", "--cas-seeds", "2", "--cas-images", "500"]))["cas_images"] == 500
    quick = cas_setting(**cas_options(parse(base)), train_images=18141)
    assert "2000 synthetic images, 300 steps" in quick and "--thorough trains each on 18141 images for 2835 steps" in quick
    assert "--thorough" not in cas_setting(**cas_options(parse([*base, "--thorough"])), train_images=18141)


def test_evaluate_prints_its_setting_and_a_line_per_stage(tmp_path, data_root, capsys):
    import numpy as np

    from synthaug import SyntheticPool

    labels = np.repeat([0, 1], 20)
    SyntheticPool(np.zeros((40, 3, 16, 16), np.uint8), labels, 2, {"kind": "test"}).save(tmp_path / "pool")
    assert main(["evaluate", "--pool", str(tmp_path / "pool"), "--root", str(data_root), "--image-size", "16",
                 "--train-fraction", "0.05", "--n", "20", "--out", str(tmp_path / "q"), "--cache",
                 str(tmp_path / "cache"), "--classifier-steps", "2", "--cas-seeds", "1", "--cas-images", "20"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("CAS: 1 seed(s) x (a classifier on 20 synthetic images, 2 steps")
    stages = [line for line in captured.err.splitlines() if line.startswith("[evaluate ")]
    assert [s.split(". ", 1)[1] for s in stages] == ["feature extractor (2 steps)", "sampling", "features", "fidelity",
                                                     "memorization", "cas", "CAS: synthetic only, seed 0 (2 steps)"]


def test_ctrl_c_in_bench_says_the_finished_cells_are_kept(monkeypatch, capsys):
    import synthaug.bench.launch as launch

    def interrupt(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(launch, "run", interrupt)
    assert main(["bench", "--preset", "malaria-quick"]) == 130
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "interrupted (Ctrl-C)" in err and "run the same command again" in err


def test_stage_lines_draw_an_overall_bar_in_a_terminal_only():
    import io
    import logging

    from synthaug.progress import stage_lines

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    log = logging.getLogger("synthaug.quality.test")
    for stream, bar in ((Terminal(), True), (io.StringIO(), False)):
        with stage_lines("evaluate", total=4, stream=stream):
            log.info("sampling")
            log.info("features")
        text = stream.getvalue()
        assert "[evaluate 0:00] 1. sampling" in text and "2. features" in text
        assert ("4/4" in text and "done" in text) is bar  # the bar fills when the block ends
    log.info("not shown")  # the handler is gone after the block
