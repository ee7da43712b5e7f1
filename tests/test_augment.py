"""Classifier augmentation: the presets, user pipelines from files, the config check, and the paired
comparison of two runs that differ only in their augmentation."""
from __future__ import annotations

import json

import pytest
import torch

from synthaug.augment import AUGMENTATIONS, StandardAugment, create_augment
from synthaug.bench.augment_compare import compare_runs, comparison_markdown
from synthaug.bench.grid_config import ClassifierConfig
from synthaug.classifier import fit_classifier
from synthaug.processes import LocalAccelerator


def _images(n: int = 8, channels: int = 3) -> torch.Tensor:
    return torch.randint(0, 256, (n, channels, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


def _batch(augment, images, seed: int, **kw) -> torch.Tensor:
    return augment.batch(images, generator=torch.Generator().manual_seed(seed), **kw)


def test_presets_are_listed():
    assert {"none", "flip-rot90", "strong"} <= set(AUGMENTATIONS)


@pytest.mark.parametrize("channels", [1, 3])
def test_strong_keeps_format_changes_pixels_and_is_seeded(channels):
    x = _images(channels=channels)
    strong = create_augment("strong")
    out = _batch(strong, x, 1)
    assert out.dtype == torch.uint8 and out.shape == x.shape
    assert not torch.equal(out, x)
    assert torch.equal(out, _batch(strong, x, 1))
    assert not torch.equal(out, _batch(strong, x, 2))
    assert strong(x[0]).shape == x[0].shape


def test_strong_slice_of_a_global_batch_matches_the_whole():
    x = _images(8)
    strong = create_augment("strong")
    whole = _batch(strong, x, 3)
    assert torch.equal(_batch(strong, x[4:], 3, offset=4, total=8), whole[4:])


def test_flip_rot90_preset_is_the_standard_augment():
    x = _images()
    assert torch.equal(_batch(create_augment("flip-rot90"), x, 5), _batch(StandardAugment(), x, 5))


def test_albumentations_file(tmp_path):
    A = pytest.importorskip("albumentations")
    path = tmp_path / "aug.json"
    A.save(A.Compose([A.HorizontalFlip(p=1.0)]), str(path))
    x = _images(4)
    assert torch.equal(_batch(create_augment(str(path)), x, 0), x.flip(-1))


def test_torchvision_spec_file(tmp_path):
    path = tmp_path / "tv.yaml"
    path.write_text("torchvision:\n  - RandomVerticalFlip: {p: 1.0}\n  - ColorJitter: {brightness: 0.5}\n")
    tv = create_augment(str(path))
    x = _images(4)
    out = _batch(tv, x, 0)
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert torch.equal(out, _batch(tv, x, 0))
    flat = tmp_path / "flip.json"
    flat.write_text(json.dumps({"torchvision": [{"RandomVerticalFlip": {"p": 1.0}}]}))
    assert torch.equal(_batch(create_augment(str(flat)), x, 0), x.flip(-2))


@pytest.mark.parametrize("spec, words", [
    ("strnog", "strong"),                       # a typo of a preset: the presets and a suggestion
    ("missing.yaml", "no such file"),
])
def test_bad_specs_are_refused_clearly(spec, words):
    with pytest.raises(ValueError, match=words):
        create_augment(spec)
    with pytest.raises(ValueError, match=words):
        ClassifierConfig(augment=spec)


def test_bad_files_are_refused_clearly(tmp_path):
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("torchvision:\n  - NoSuchTransform: {}\n")
    with pytest.raises(ValueError, match="NoSuchTransform"):
        create_augment(str(unknown))
    resize = tmp_path / "resize.yaml"
    resize.write_text("torchvision:\n  - Resize: {size: 16}\n")
    with pytest.raises(ValueError, match="keep the size"):
        _batch(create_augment(str(resize)), _images(2), 0)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"steps": []}))
    with pytest.raises(ValueError, match="torchvision"):
        create_augment(str(other))


def test_fit_classifier_takes_a_preset_name():
    data = torch.utils.data.TensorDataset(_images(16), torch.tensor([0, 1] * 8))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 2))
    fit = fit_classifier(model, data, steps=2, batch_size=8, lr=1e-3, accelerator=LocalAccelerator(),
                         augment="strong")
    assert fit.steps == 2


# --------------------------------------------------------------------------- comparing two runs
def _run(folder, augment: str, rows: list[tuple]) -> None:
    folder.mkdir()
    config = {"datasets": [{"name": "malaria"}], "seeds": [0, 1, 2], "primary_metric": "balanced_accuracy",
              "positive_class": None, "classifier": {"model": "m", "augment": augment}}
    (folder / "config.json").write_text(json.dumps({"config": config}))
    with open(folder / "results.jsonl", "w") as f:
        for arm, role, seed, score in rows:
            f.write(json.dumps({"dataset": "d", "fraction": 0.5, "seed": seed, "arm": arm, "role": role,
                                "generator": None, "ratio": 0.0, "test": {"balanced_accuracy": score}}) + "\n")


def test_compare_runs_pairs_by_seed(tmp_path):
    _run(tmp_path / "strong", "strong", [("real", None, s, v) for s, v in [(0, 0.8), (1, 0.9), (2, 0.7)]])
    _run(tmp_path / "ref", "flip-rot90", [("baseline", "baseline", s, v) for s, v in [(0, 0.7), (1, 0.7), (2, 0.65)]]
         + [("samples r0.25", "synthetic", s, v) for s, v in [(0, 0.6), (1, 0.8), (2, 0.6)]]
         + [("real-repeat r0.25", "control", s, 0.7) for s in range(3)])
    result = compare_runs(tmp_path / "strong", tmp_path / "ref")
    (aug,), (synthetic,) = result["augmentation"], result["synthetic"]
    assert aug["n"] == 3 and aug["mean"] == pytest.approx((0.1 + 0.2 + 0.05) / 3)
    assert synthetic["arm"] == "samples r0.25" and synthetic["mean"] == pytest.approx(-0.4 / 3)
    text = comparison_markdown(result)
    assert "`strong`" in text and "samples r0.25" in text and "real-repeat" not in text


def test_compare_runs_refuses_another_protocol(tmp_path):
    _run(tmp_path / "a", "strong", [("real", None, 0, 0.8)])
    _run(tmp_path / "b", "flip-rot90", [("baseline", "baseline", 0, 0.7)])
    record = json.loads((tmp_path / "b" / "config.json").read_text())
    record["config"]["classifier"]["model"] = "other"
    (tmp_path / "b" / "config.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="classifier.model"):
        compare_runs(tmp_path / "a", tmp_path / "b")


def test_the_torchvision_spec_of_the_docs_runs(tmp_path):
    """docs/benchmark.md's torchvision v2 spec, as written there, augments a batch."""
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "benchmark.md").read_text()
    (spec,) = [block for block in re.findall(r"```yaml\n(.*?)```", page, flags=re.S) if "torchvision:" in block]
    path = tmp_path / "my-augment.yaml"
    path.write_text(spec)
    x = _images(4)
    out = _batch(create_augment(str(path)), x, 0)
    assert out.shape == x.shape and out.dtype == torch.uint8 and not torch.equal(out, x)
