"""benchmarks/gallery.py and the generator presets."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from synthaug.train import TrainConfig
from synthaug.config import load_config
from synthaug.generators import create_generator

ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted((ROOT / "configs" / "generators").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_every_preset_loads_and_builds_its_generator(preset):
    cfg = load_config(TrainConfig, preset)
    assert cfg.data.name == "malaria" and cfg.data.image_size in (28, 32, 64)
    torch.manual_seed(0)
    gen = create_generator(cfg.generator.name, num_classes=2, image_size=cfg.data.image_size, channels=3,
                           **cfg.generator.options)
    assert gen.sample(2).shape == (2, 3, cfg.data.image_size, cfg.data.image_size)


def test_gallery_config_names_only_presets_that_exist():
    from benchmarks.gallery import GalleryConfig

    cfg = load_config(GalleryConfig, ROOT / "configs" / "gallery.yaml")
    assert cfg.models
    for name in cfg.models:
        assert (ROOT / cfg.presets.format(name=name)).is_file(), name


def test_gallery_trains_draws_and_skips_finished_models(tmp_path, data_root, malaria32):
    config = tmp_path / "gallery.yaml"
    config.write_text(f"""
presets: configs/generators/{{name}}-smoke.yaml
image_size: 32
train_fraction: 0.05
per_class: 4
quality: false
out_dir: {tmp_path / 'runs'}
docs_dir: {tmp_path / 'docs'}
models:
  cvae-tiny: {{steps: 6, checkpoint_every: 3, sample_every: 0}}
  tiny-wide: {{preset: cvae-tiny, steps: 6, sample_every: 0, options: {{latent_dim: 12}}}}
""")
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gallery.py"), "--config", str(config)]
    env = {**__import__("os").environ, "SYNTHAUG_DATA": str(data_root)}
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads((tmp_path / "docs" / "gallery.json").read_text())
    record = summary["models"]["cvae-tiny"]
    assert record["steps"] == 6 and record["train_seconds"] > 0
    assert (tmp_path / "docs" / "cvae-tiny.png").stat().st_size > 1000
    assert (tmp_path / "docs" / "cvae-tiny-interpolation.png").is_file()
    assert "| cvae-tiny | 6 |" in out.stdout and "cas_val" not in record  # quality: false
    # an entry may train another preset under its own name (an ablation), in its own folder
    alias = summary["models"]["tiny-wide"]
    assert alias["preset"] == "configs/generators/cvae-tiny-smoke.yaml" and alias["options"]["latent_dim"] == 12
    assert (tmp_path / "runs" / "tiny-wide" / "checkpoint").is_dir() and (tmp_path / "docs" / "tiny-wide.png").is_file()
    assert "| tiny-wide | 6 |" in (tmp_path / "docs" / "gallery.md").read_text()
    # a second run reuses the training (same record) and redraws
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((tmp_path / "docs" / "gallery.json").read_text())["models"]["cvae-tiny"]["train_seconds"] == \
        record["train_seconds"]
    # another budget for a finished model is refused, not silently mixed
    bad = subprocess.run(cmd + ["--set", "models.cvae-tiny.steps=9"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and "trained for 6 steps" in bad.stderr and "Traceback" not in bad.stderr
    # so are other options for a finished model
    other = subprocess.run(cmd + ["--models", "tiny-wide", "--set", "models.tiny-wide.options.latent_dim=4"], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=300)
    assert other.returncode == 2 and "delete" in other.stderr and "Traceback" not in other.stderr
    # a sampling setting a cvae does not have is refused with the reason (the grid is not redrawn)
    nosetting = subprocess.run(cmd + ["--models", "cvae-tiny", "--set", "models.cvae-tiny.sampling=[{guidance: 2}]"],
                               cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert nosetting.returncode == 2 and "guidance" in nosetting.stderr and "Traceback" not in nosetting.stderr
    unknown = subprocess.run(cmd + ["--models", "nope"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "nope" in unknown.stderr


def test_gallery_records_quality_on_validation():
    """gallery.json's quality fields come from evaluate_generator's record (CAS on the validation patients)."""
    from benchmarks.gallery import quality_fields, table

    q = {"cas": {"cas": 0.62, "real_score": 0.9, "ratio": 0.62 / 0.9, "split": "val",
                 "synthetic": {"per_class_recall": {"Parasitized": 0.3, "Uninfected": 0.94}},
                 "real": {"per_class_recall": {"Parasitized": 0.88, "Uninfected": 0.92}}},
         "fidelity": {"overall": {"fid": 41.5, "kid": 0.03, "precision": 0.5, "recall": 0.2}},
         "gate": {"passed": False, "reason": "generator rejected (CAS ratio 0.69 < 0.80)"}}
    fields = quality_fields(q)
    assert fields["cas_val"] == 0.62 and fields["real_val"] == 0.9 and fields["cas_ratio"] == 0.62 / 0.9
    assert fields["class_recall"] == {"Parasitized": 0.3, "Uninfected": 0.94}
    assert fields["real_class_recall"]["Parasitized"] == 0.88 and fields["gate_passed"] is False
    base = {"steps": 10, "batch_size": 64, "train_seconds": 60.0, "sample_images_per_s": 100.0}
    text = table({"cgan": {**base, **fields}, "old": base})
    assert "| cgan | 10 | 64 | 1.0 min | 100 | 0.620 | 0.900 | 0.69 | 0.300 / 0.880 | 41.5 | rejected |" in text
    assert "| old | 10 | 64 | 1.0 min | 100 | n/a | n/a | n/a | n/a | n/a | n/a |" in text


def test_gallery_sampling_settings_are_checked_and_applied():
    from benchmarks.gallery import _apply_sampling, sampling_settings, setting_label

    assert sampling_settings("m", {"steps": 3}) == []
    assert sampling_settings("m", {"sampling": [{"guidance": 0}, {"guidance": 2, "sample_steps": 5}]})[1] == \
        {"guidance": 2, "sample_steps": 5}
    for bad in ({"guidance": 2}, [{}], [{"temperature": 1}]):
        with pytest.raises(ValueError, match="sampling"):
            sampling_settings("m", {"sampling": bad})
    assert setting_label({"guidance": 3.0, "sample_steps": 20}) == "guidance 3, sample_steps 20"
    gen = create_generator("ddpm", num_classes=2, image_size=8, channels=3, base_width=4, channel_mults=[1],
                           num_res_blocks=1, attention=False, timesteps=20, sample_steps=4)
    _apply_sampling(gen, {"guidance": 2.5, "sample_steps": 2})
    assert gen.guidance == 2.5 and gen.sample_steps == 2 and gen.generator_options["guidance"] == 2.5
    with pytest.raises(ValueError):  # the generator's own check: guidance must be >= 0
        _apply_sampling(gen, {"guidance": -1})
    with pytest.raises(ValueError, match="no sampling setting 'guidance'"):
        _apply_sampling(create_generator("cvae-tiny", num_classes=2, image_size=32, channels=3, latent_dim=4),
                        {"guidance": 1})


def test_gallery_keeps_the_sampling_setting_with_the_best_validation_cas():
    from benchmarks.gallery import choose_sampling

    variants = [{"sampling": {"guidance": 0}, "cas_val": 0.77}, {"sampling": {"guidance": 3}, "cas_val": 0.80},
                {"sampling": {"guidance": 1}, "cas_val": 0.79}]
    quality, chosen = choose_sampling(variants, listed=True)
    assert chosen == {"guidance": 3} and quality["cas_val"] == 0.80 and quality["sampling_chosen"] == {"guidance": 3}
    assert quality["sampling_variants"] == variants and "sampling" not in quality
    # a model that lists no setting: its one measurement, nothing about settings, and the list left intact
    single = [{"sampling": {}, "cas_val": 0.7, "fid": 30.0}]
    quality, chosen = choose_sampling(single, listed=False)
    assert chosen == {} and quality == {"cas_val": 0.7, "fid": 30.0} and single[0]["sampling"] == {}


def test_gallery_tables_show_the_chosen_setting_every_setting_and_the_budget():
    from benchmarks.gallery import GalleryConfig, markdown, table, variants_table

    def fields(cas, ratio, passed):
        return {"cas_val": cas, "real_val": 0.95, "cas_ratio": ratio, "fid": 20.0, "gate_passed": passed,
                "class_recall": {"Parasitized": 0.8}, "real_class_recall": {"Parasitized": 0.9}}

    variants = [{"sampling": {"guidance": 0}, **fields(0.80, 0.84, False)},
                {"sampling": {"guidance": 3}, **fields(0.88, 0.93, True), "target_met": True}]
    ddpm = {"steps": 3000, "batch_size": 64, "train_seconds": 1700.0, "sample_images_per_s": 6.0,
            **fields(0.88, 0.93, True), "target_met": True, "sampling_chosen": {"guidance": 3},
            "sampling_variants": variants}
    cgan = {"steps": 5000, "batch_size": 64, "train_seconds": 2400.0, "sample_images_per_s": 900.0,
            **fields(0.70, 0.74, False)}
    text = table({"ddpm": ddpm, "cgan": cgan}, budget_minutes=30)
    assert "| sampling (chosen on val) | target | within 30 min |" in text.splitlines()[0]
    assert text.splitlines()[2].endswith("| passed | guidance 3 | met | yes |")
    assert text.splitlines()[3].endswith("| rejected | preset | n/a | no |")
    rows = variants_table({"ddpm": ddpm, "cgan": cgan}).splitlines()
    assert len(rows) == 4 and rows[2].startswith("| ddpm | guidance 0 | 0.800 |") and rows[2].endswith("| n/a |  |")
    assert rows[3].endswith("| passed | met | yes |") and variants_table({"cgan": cgan}) == ""
    cfg = GalleryConfig(target={"min_ratio": 0.9, "min_class_ratio": 0.8}, budget_minutes=30, cas_images=None)
    page = markdown({"models": {"ddpm": ddpm}}, cfg, "--config configs/recipes.yaml --set cas_images=null")
    assert "`python benchmarks/gallery.py --config configs/recipes.yaml --set cas_images=null`" in page and "as many synthetic images as real ones" in page
    assert "gate: CAS ratio >= 0.8 and weakest class recall ratio >= 0.6" in page
    assert "Target: CAS ratio >= 0.9 and weakest class recall ratio >= 0.8" in page
    assert GalleryConfig().gate_config("target") is None
    for which in ("gate", "target"):
        with pytest.raises(ValueError, match=f"{which} entries.*min_ratio and min_class_ratio"):
            GalleryConfig(**{which: {"ratio": 0.9}}).gate_config(which)


def test_gallery_quality_records_are_kept_apart_by_image_counts_and_checked_when_reused(tmp_path):
    from types import SimpleNamespace

    from benchmarks.gallery import GalleryConfig, _quality

    splits = SimpleNamespace(train=list(range(40)))
    cas = {"synthetic_images": 1000, "cas": 0.8, "real_score": 0.9, "ratio": 0.8 / 0.9,
           "class_recall_ratio": {"a": 0.95, "b": 0.9}, "per_seed": []}
    folder = tmp_path / "quality-guidance3"
    folder.mkdir()
    (folder / "quality.json").write_text(json.dumps({"n": 500, "cas": cas}))
    strict = GalleryConfig(gate={"min_ratio": 0.9, "min_class_ratio": 0.8})
    assert _quality(None, splits, None, strict, tmp_path, {"guidance": 3})["gate"]["passed"] is False
    # the config's thresholds, applied to the cached record: the same record passes the library's gate
    assert _quality(None, splits, None, GalleryConfig(), tmp_path, {"guidance": 3})["gate"]["passed"] is True
    (folder / "quality.json").write_text(json.dumps({"n": 400, "cas": cas}))
    with pytest.raises(FileExistsError, match="n=400"):
        _quality(None, splits, None, strict, tmp_path, {"guidance": 3})
    # other counts look in their own folder (here: one whose record says it used all 40 training images)
    full = tmp_path / "quality-n500-casall-guidance3"
    full.mkdir()
    (full / "quality.json").write_text(json.dumps({"n": 500, "cas": {**cas, "synthetic_images": 40}}))
    assert _quality(None, splits, None, GalleryConfig(cas_images=None), tmp_path, {"guidance": 3})["n"] == 500


def test_recipes_config_loads_with_existing_presets_and_the_issue_target():
    from benchmarks.gallery import GalleryConfig, sampling_settings

    cfg = load_config(GalleryConfig, ROOT / "configs" / "recipes.yaml")
    target = cfg.gate_config("target")
    assert (target.min_ratio, target.min_class_ratio) == (0.9, 0.8) and cfg.budget_minutes == 30
    for name, entry in cfg.models.items():
        assert (ROOT / cfg.presets.format(name=entry.get("preset", name))).is_file(), name
        sampling_settings(name, entry)
    assert len(sampling_settings("ddpm", cfg.models["ddpm"])) >= 2


def test_throughput_writes_a_row_per_generator_and_size(tmp_path):
    out = tmp_path / "t.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--generators", "fc-vae,dcgan",
                           "--sizes", "32", "--batch-size", "4", "--steps", "2", "--warmup", "0", "--sample-batches", "1",
                           "--json", str(out)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["generators"]
    assert [(r["generator"], r["image_size"]) for r in rows] == [("fc-vae", 32), ("dcgan", 32)]
    assert all(r["train_images_per_s"] > 0 and r["sample_images_per_s"] > 0 and r["parameters"] > 0 for r in rows)
    assert "| fc-vae | 32 |" in proc.stdout and "| dcgan | 32 |" in proc.stdout
