"""The `synthaug` command line."""
from __future__ import annotations

import json

import pytest
import torch

from synthaug import create_generator
from synthaug.cli import main
from synthaug.data import DownloadError, download_malaria


def test_list_shows_registered_generators(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "cvae " in out and "cvae-tiny" in out


def test_sample_writes_a_grid_and_npy(tmp_path, capsys):
    import numpy as np

    gen = create_generator("cvae-tiny", num_classes=2, image_size=16, channels=3)
    gen.save(tmp_path / "ckpt")
    assert main(["sample", "--checkpoint", str(tmp_path / "ckpt"), "--n", "6", "--labels", "1",
                 "--grid", str(tmp_path / "g.png"), "--output", str(tmp_path / "s.npy")]) == 0
    assert (tmp_path / "g.png").stat().st_size > 100
    arr = np.load(tmp_path / "s.npy")
    assert arr.shape == (6, 3, 16, 16) and arr.dtype == np.uint8
    expected = gen.sample(6, torch.ones(6, dtype=torch.long), generator=torch.Generator().manual_seed(0))
    assert np.array_equal(arr, expected.numpy())


def test_sample_bad_inputs_give_clear_errors(tmp_path, capsys):
    assert main(["sample", "--checkpoint", str(tmp_path / "nope")]) == 1  # runtime error
    assert "not a synthaug generator checkpoint" in capsys.readouterr().err
    gen = create_generator("cvae-tiny", num_classes=2, image_size=16, channels=3)
    gen.save(tmp_path / "ckpt")
    assert main(["sample", "--checkpoint", str(tmp_path / "ckpt"), "--n", "3", "--labels", "0,1"]) == 2
    assert "--labels" in capsys.readouterr().err
    assert main(["sample", "--checkpoint", str(tmp_path / "ckpt"), "--n", "2", "--labels", "5"]) == 2
    assert "class ids in [0, 2)" in capsys.readouterr().err


def test_train_command_runs_a_tiny_config(tmp_path, data_root, capsys):
    cfg = tmp_path / "g.yaml"
    cfg.write_text(
        f"data: {{name: malaria, root: {data_root}, image_size: 16, train_fraction: 0.02}}\n"
        "generator: {name: cvae-tiny, train: {steps: 3, batch_size: 8, sample_every: 0, checkpoint_every: 0}}\n"
    )
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--out", str(out)]) == 0
    assert (out / "checkpoint" / "model.safetensors").is_file() and (out / "samples.png").is_file()
    options = json.loads((out / "training_options.json").read_text())
    assert not set(options["splits"]["train_groups"]) & set(options["splits"]["test_groups"])
    # the checkpoint knows its classes and what it was trained on
    config = json.loads((out / "checkpoint" / "config.json").read_text())
    assert config["class_names"] == ["Parasitized", "Uninfected"]
    record = config["training"]
    assert record["dataset"] == "malaria" and record["steps"] == 3 and record["image_size"] == 16
    assert record["groups"] == len(options["splits"]["train_groups"])
    assert main(["sample", "--checkpoint", str(out / "checkpoint"), "--n", "2", "--labels", "Parasitized"]) == 0
    assert main(["train", "--config", str(cfg), "--set", "generator.train.stepz=1", "--dry-run"]) == 2
    assert "did you mean 'steps'" in capsys.readouterr().err.lower()


def test_download_without_network_fails_clearly(tmp_path):
    # port 9 (discard) on loopback: nothing listens, so the connection is refused at once
    with pytest.raises(DownloadError, match="could not download"):
        download_malaria(tmp_path, url="http://127.0.0.1:9/cell_images.zip", timeout=5)
    assert not (tmp_path / "malaria-nih" / "cell_images").exists()


def test_train_on_a_folder_skips_bad_files_and_lists_them(tmp_path, monkeypatch):
    import numpy as np
    from PIL import Image

    monkeypatch.setenv("SYNTHAUG_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "cells"
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (data / cls).mkdir(parents=True)
        for p in range(6):
            Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(data / cls / f"P{p}_x.png")
    (data / "a" / "P0_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    cfg = tmp_path / "g.yaml"
    cfg.write_text(f"data: {{name: {data}, image_size: 16, group_pattern: '^(P\\d+)_', split: [0.5, 0.25, 0.25]}}\n"
                   "generator: {name: cvae-tiny, train: {steps: 2, batch_size: 4, sample_every: 0}}\n")
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "strict")]) == 1  # default: stop, name the file
    assert not (tmp_path / "strict" / "checkpoint").exists()
    with pytest.warns(UserWarning, match="P0_broken.png"):
        assert main(["train", "--config", str(cfg), "--set", "data.on_bad_file=skip", "--out", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "skipped_files.txt").read_text().split() == ["a/P0_broken.png"]
