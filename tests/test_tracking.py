"""Accelerate trackers (log_with): generator losses and sample grids, benchmark rows and quality numbers in
TensorBoard event files; the loss-curve picture of log.jsonl; the config and command-line options."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from synthaug.bench.launch import main as bench_main
from synthaug.cli import main as cli_main
from synthaug.generators import GeneratorTrainConfig, create_generator, train_generator
from synthaug.tracking import LOSS_PLOT, check_log_with, log_quality, log_result_row, plot_losses, tracked_config
from synthaug.train import TrainConfig

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _events(folder: Path) -> dict[str, list[str]]:
    """The scalar and image tags of every TensorBoard event file under ``folder``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: dict[str, list[str]] = {"scalars": [], "images": []}
    files = sorted(folder.rglob("events.out.tfevents.*"))
    assert files, f"no event file under {folder}"
    for path in files:
        acc = EventAccumulator(str(path), size_guidance={"images": 0, "scalars": 0})
        acc.Reload()
        for kind in tags:
            tags[kind] += acc.Tags()[kind]
    return tags


def _tensorboard_accelerator(project_dir: Path):
    pytest.importorskip("tensorboard")
    from accelerate import Accelerator

    return Accelerator(log_with="tensorboard", project_dir=str(project_dir), cpu=True)


def test_check_log_with():
    assert check_log_with(None) is None and check_log_with([]) is None
    with pytest.raises(ValueError, match="tensorboard"):  # a typo: the list and a suggestion
        check_log_with("tensorbord")
    with pytest.raises(ValueError, match="tracker name"):
        check_log_with(3)
    pytest.importorskip("tensorboard")
    assert check_log_with("tensorboard") == ["tensorboard"]
    assert TrainConfig(log_with="tensorboard").log_with == ["tensorboard"]


def test_tracking_keys_stay_out_of_the_run_record():
    pytest.importorskip("tensorboard")
    record = tracked_config(TrainConfig(log_with=["tensorboard"], project_dir="runs/tb"))
    assert "log_with" not in record and "project_dir" not in record and "generator" in record


def test_train_generator_logs_losses_and_grids(tmp_path):
    accelerator = _tensorboard_accelerator(tmp_path / "tb")
    images = torch.randint(0, 256, (32, 3, 16, 16), dtype=torch.uint8)
    data = torch.utils.data.TensorDataset(images, torch.arange(32) % 2)
    torch.manual_seed(0)
    gen = create_generator("cvae-tiny", num_classes=2, image_size=16, channels=3)
    config = GeneratorTrainConfig(steps=4, batch_size=8, log_every=1, sample_every=2, checkpoint_every=0)
    train_generator(gen, data, config=config, out_dir=tmp_path / "gen", accelerator=accelerator, desc="tiny run")
    tags = _events(tmp_path / "tb")
    assert "generator/tiny_run/loss" in tags["scalars"]
    assert any(t.startswith("generator/tiny_run/samples") for t in tags["images"])
    assert not accelerator.trackers  # ended: a benchmark's next generator starts its own
    assert (tmp_path / "gen" / LOSS_PLOT).stat().st_size > 1000


def test_benchmark_rows_and_quality_are_logged(tmp_path):
    accelerator = _tensorboard_accelerator(tmp_path / "tb")
    accelerator.init_trackers("bench")
    row = {"dataset": "malaria-32px", "fraction": 0.02, "seed": 0, "arm": "real", "generator": None,
           "classifier_steps": 200, "curve": [[100, 0.6], [200, 0.7]], "test": {"balanced_accuracy": 0.65}}
    log_result_row(accelerator, row, metric="balanced_accuracy")
    folder = tmp_path / "quality" / "malaria-32px" / "frac0.02" / "seed0" / "ddpm"
    folder.mkdir(parents=True)
    (folder / "quality.json").write_text(json.dumps({"fid": 12.5, "cas": {"ratio": 0.7}, "note": "text"}))
    log_quality(accelerator, folder)
    accelerator.end_training()
    scalars = _events(tmp_path / "tb")["scalars"]
    cell = "classifier/malaria-32px/frac0.02/seed0/real"
    assert {f"{cell}/val_balanced_accuracy", f"{cell}/test_balanced_accuracy"} <= set(scalars)
    assert {"quality/malaria-32px/frac0.02/seed0/ddpm/fid", "quality/malaria-32px/frac0.02/seed0/ddpm/cas.ratio"} <= set(scalars)


def test_plot_losses_skips_non_numbers(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps(r) for r in [{"step": 1, "loss": 2.0, "kl": 0.5}, {"step": 2, "loss": 1.5, "kl": 0.4},
                                                      {"step": 2, "gate": {"passed": False}}]) + "\n")
    assert plot_losses(log, tmp_path / "p.png").stat().st_size > 1000
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"step": 1, "gate": {"passed": True}}) + "\n")
    assert plot_losses(empty, tmp_path / "q.png") is None


@pytest.mark.parametrize("main, argv", [
    (bench_main, ["--config", str(REPO / "configs" / "bench" / "malaria-quick.yaml")]),
    (cli_main, ["train", "--preset", "cvae-malaria"]),
])
def test_log_with_on_the_command_line(main, argv, capsys):
    pytest.importorskip("tensorboard")
    assert main([*argv, "--log-with", "tensorboard", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{"):])["log_with"] == ["tensorboard"]
    assert main([*argv, "--log-with", "tensorbord", "--dry-run"]) != 0
    assert "tensorboard" in capsys.readouterr().err


def test_the_getting_started_example_runs(tmp_path, data_root, monkeypatch):
    """The tracker example of docs/getting-started.md, at 2 steps, writes event files and the loss curves."""
    pytest.importorskip("tensorboard")
    import re

    page = (REPO / "docs" / "getting-started.md").read_text()
    (code,) = [c for c in re.findall(r"```python\n(.*?)```", page, flags=re.S) if "log_with=" in c]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SYNTHAUG_DATA", str(data_root))
    exec(compile(re.sub(r"^STEPS = \d+$", "STEPS = 2", code, flags=re.M), "getting-started.md", "exec"), {})
    assert "generator/cvae-tracked/loss" in _events(tmp_path / "runs" / "tensorboard")["scalars"]
    assert (tmp_path / "runs" / "cvae-tracked" / LOSS_PLOT).is_file()
