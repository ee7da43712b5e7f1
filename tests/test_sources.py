"""Sources from anywhere: a folder of class folders, any callable, a diffusers pipeline; each usable by
SyntheticDataset, SyntheticMix, `synthaug evaluate --gate` and a benchmark config, with class names checked."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import TensorDataset

from synthaug import SyntheticDataset, create_generator
from synthaug.bench.cell import generator_for
from synthaug.bench.grid_config import Cell, GeneratorSpec
from synthaug.cli import main
from synthaug.sources import CallableSource, FolderSource, list_sources, match_classes, open_source_spec

DARK, BRIGHT = 20, 230  # class "Parasitized" is dark, "Uninfected" bright, in every source below


def write_class_folders(root: Path, *, size: int = 16, per_class: int = 6, manifest: bool = False) -> Path:
    """Parasitized/ (dark PNGs) and Uninfected/ (bright PNGs); with ``manifest`` an export.json listing the
    classes in the order Uninfected, Parasitized (as `synthaug export` records a generator's order)."""
    for name, value in (("Parasitized", DARK), ("Uninfected", BRIGHT)):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.full((size, size, 3), value + i, np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    if manifest:
        (root / "export.json").write_text(json.dumps({"class_folders": ["Uninfected", "Parasitized"],
                                                      "class_names": ["Uninfected", "Parasitized"]}))
    return root


class Real(TensorDataset):
    """A tiny real data set with torchvision-style class names."""

    def __init__(self, classes: list[str], n: int = 8, size: int = 16) -> None:
        super().__init__(torch.zeros(n, 3, size, size, dtype=torch.uint8), torch.arange(n) % 2)
        self.classes = classes


def dark_or_bright(n: int, labels: torch.Tensor) -> torch.Tensor:
    """A callable source: label 0 dark, label 1 bright, with noise from torch's global random state."""
    base = torch.where(labels == 0, DARK, BRIGHT).view(-1, 1, 1, 1).float()
    return (base + torch.rand(n, 3, 16, 16) * 10).to(torch.uint8)


def _brightness(images: torch.Tensor) -> list[int]:
    return [int(v) for v in images.float().mean((1, 2, 3)).round()]


def test_folder_source_samples_each_class_from_its_folder(tmp_path):
    source = FolderSource(write_class_folders(tmp_path / "f"))
    assert source.class_names == ["Parasitized", "Uninfected"]  # no export.json: alphabetical, as ImageFolder
    assert (source.num_classes, source.channels, source.image_size, len(source)) == (2, 3, 16, 12)
    labels = torch.tensor([0, 1, 0, 1, 0, 0, 0, 0, 0])
    first = source.sample(9, labels, generator=torch.Generator().manual_seed(3))
    assert first.dtype == torch.uint8 and first.shape == (9, 3, 16, 16)
    assert all((b < 100) == (c == 0) for b, c in zip(_brightness(first), labels.tolist()))
    assert torch.equal(first, source.sample(9, labels, generator=torch.Generator().manual_seed(3)))
    dark = _brightness(first[labels == 0])
    assert len(dark) == 7 and set(dark) == set(range(DARK, DARK + 6))  # all six dark images before one repeats
    assert source.fingerprint() == FolderSource(tmp_path / "f").fingerprint()


def test_folder_source_follows_an_export_record_and_the_real_class_order(tmp_path):
    exported = FolderSource(write_class_folders(tmp_path / "f", manifest=True))
    assert exported.class_names == ["Uninfected", "Parasitized"]  # the generator's order, from export.json
    assert _brightness(exported.sample(1, torch.tensor([0])))[0] > 100
    # the real data set numbers the classes the other way round: the folder is re-ordered to match
    ds = SyntheticDataset(str(tmp_path / "f"), 0.5, real=Real(["Parasitized", "Uninfected"]))
    for i in range(ds.num_real, len(ds)):
        image, label = ds[i]
        assert (_brightness(image[None])[0] < 100) == (label == 0)
    with pytest.raises(ValueError, match=r"classes \['Uninfected', 'Parasitized'\] but the real data set has the "
                                         r"classes \['cat', 'dog'\]"):
        SyntheticDataset(str(tmp_path / "f"), 0.5, real=Real(["cat", "dog"]))


def test_callable_source_is_seeded_by_the_callers_generator(tmp_path):
    source = CallableSource(dark_or_bright, classes=["Parasitized", "Uninfected"])
    assert (source.channels, source.image_size) == (3, 16)  # from one probe image
    state = torch.random.get_rng_state()
    a = source.sample(4, torch.tensor([0, 1, 1, 0]), generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's global random state is untouched
    b = source.sample(4, torch.tensor([0, 1, 1, 0]), generator=torch.Generator().manual_seed(1))
    c = source.sample(4, torch.tensor([0, 1, 1, 0]), generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert [v > 100 for v in _brightness(a)] == [False, True, True, False]
    reordered = match_classes(source, ["Uninfected", "Parasitized"])
    assert _brightness(reordered.sample(1, torch.tensor([0])))[0] > 100  # label 0 now means Uninfected
    # float (n, H, W, C) arrays in [0, 1] are converted, and resized to the asked size
    floats = CallableSource(lambda n, labels: np.full((n, 8, 8, 3), 0.5, np.float32), num_classes=2, image_size=16)
    assert floats.sample(2).shape == (2, 3, 16, 16) and int(floats.sample(1).float().mean()) in (127, 128)


def test_callable_source_refuses_bad_output_naming_it():
    with pytest.raises(ValueError, match=r"returned 1 images for n=2"):
        CallableSource(lambda n, labels: torch.zeros(1, 3, 8, 8, dtype=torch.uint8), num_classes=2,
                       image_size=8, channels=3).sample(2)
    with pytest.raises(ValueError, match="give classes="):
        CallableSource(dark_or_bright)
    with pytest.raises(ValueError, match="callable: unknown option 'clases' \\(did you mean 'classes'\\?\\)"):
        open_source_spec({"callable": "tests.test_sources:dark_or_bright", "clases": ["a", "b"]})


def test_specs_name_a_registered_kind(tmp_path):
    assert {"folder", "callable", "diffusers", "checkpoint", "pool"} <= set(list_sources())
    folder = write_class_folders(tmp_path / "f")
    assert isinstance(open_source_spec(str(folder)), FolderSource)  # a bare path, recognised by its layout
    assert isinstance(open_source_spec(f"folder:{folder}", image_size=8), FolderSource)
    assert open_source_spec({"folder": str(folder), "image_size": 8}).sample(1).shape == (1, 3, 8, 8)
    with pytest.raises(ValueError, match=r"did you mean 'folder'"):
        open_source_spec({"foldr": str(folder)})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_source_spec(str(tmp_path / "nowhere"))
    run = tmp_path / "run"  # a training run folder: its checkpoint/ holds no images, so it is no class folder
    create_generator("cvae-tiny", num_classes=2, image_size=16, channels=3).save(run / "checkpoint")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(run / "samples.png")
    with pytest.raises(ValueError, match=r"did you mean '.*run/checkpoint'"):
        open_source_spec(str(run))


def test_a_benchmark_generator_entry_can_be_a_source(tmp_path):
    folder = write_class_folders(tmp_path / "f", manifest=True)
    spec = GeneratorSpec(label="exported", source={"folder": str(folder)})
    assert spec.name == "folder" and spec.key == "exported"
    splits = SimpleNamespace(classes=["Parasitized", "Uninfected"], image_size=16, channels=3)
    gen = generator_for(spec, splits, Cell("malaria", 1.0, 0, "exported", 0.3), tmp_path / "run",
                        SimpleNamespace(device=torch.device("cpu")), "replicate")
    assert gen.class_names == splits.classes  # matched to the data set's order
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written
    # checked before any work (GeneratorSpec.check): a source of other classes is refused, naming both lists
    (tmp_path / "other" / "cat").mkdir(parents=True)
    (tmp_path / "other" / "dog").mkdir()
    for name in ("cat", "dog"):
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "other" / name / "0.png")
    GeneratorSpec(source={"folder": str(folder)}).check(splits)
    with pytest.raises(ValueError, match=r"\['cat', 'dog'\] but the real data set has the classes \['Parasitized'"):
        GeneratorSpec(label="pets", source={"folder": str(tmp_path / "other")}).check(splits)
    with pytest.raises(ValueError, match=r"generators \(gone\): source .*does not exist"):
        GeneratorSpec(label="gone", source={"folder": str(tmp_path / "gone")}).check(splits)
    with pytest.raises(ValueError, match="is a pool, which only holds images"):
        GeneratorSpec(source={"pool": str(folder)})
    with pytest.raises(ValueError, match="name exactly one kind of source"):
        GeneratorSpec(source={"fodler": str(folder)})


# --------------------------------------------------------------------------- `synthaug evaluate --source`
EVALUATE = ["--image-size", "16", "--train-fraction", "0.2", "--n", "24", "--classifier-steps", "30",
            "--cas-seeds", "1", "--cas-epochs", "1", "--cas-images", "32"]


def test_evaluate_gate_takes_a_folder_and_a_callable(tmp_path, data_root, monkeypatch, capsys):
    folder = write_class_folders(tmp_path / "f", manifest=True)  # flat colours: the gate must reject them
    common = ["--root", str(data_root), *EVALUATE, "--cache", str(tmp_path / "cache")]
    assert main(["evaluate", "--source", f"folder:{folder}", "--out", str(tmp_path / "q1"), *common, "--gate"]) == 0
    saved = json.loads((tmp_path / "q1" / "quality.json").read_text())
    assert saved["source"] == {"kind": "generator", "name": "folder", "options": {
        "folder": str(folder), "image_size": 16, "channels": 3, "classes": ["Parasitized", "Uninfected"]}}
    assert saved["gate"]["passed"] is False and "generator rejected (" in capsys.readouterr().out
    # a callable: a source object defined in an importable module
    (tmp_path / "mygen.py").write_text("from synthaug.sources import CallableSource\n"
                                       "from tests.test_sources import dark_or_bright\n"
                                       "source = CallableSource(dark_or_bright, classes=['Uninfected', "
                                       "'Parasitized'])\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["evaluate", "--source", "callable:mygen:source", "--out", str(tmp_path / "q2"), *common,
                 "--no-cas"]) == 0
    assert json.loads((tmp_path / "q2" / "quality.json").read_text())["source"]["options"]["classes"] == [
        "Parasitized", "Uninfected"]  # re-ordered to the data's classes
    (tmp_path / "other.py").write_text("from synthaug.sources import CallableSource\n"
                                       "from tests.test_sources import dark_or_bright\n"
                                       "source = CallableSource(dark_or_bright, classes=['cat', 'dog'])\n")
    assert main(["evaluate", "--source", "callable:other:source", "--out", str(tmp_path / "q3"), *common]) != 0
    err = capsys.readouterr().err
    assert "['cat', 'dog']" in err and "['Parasitized', 'Uninfected']" in err


# --------------------------------------------------------------------------- diffusers (an optional extra)
def test_a_tiny_class_conditional_diffusers_unet_is_a_source():
    diffusers = pytest.importorskip("diffusers")
    from synthaug.sources import DiffusersSource

    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=16, in_channels=3, out_channels=3, layers_per_block=1,
                                 block_out_channels=(8, 16), down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), num_class_embeds=2, norm_num_groups=4)
    for scheduler in (diffusers.DDPMScheduler(num_train_timesteps=50), diffusers.DDIMScheduler(num_train_timesteps=50)):
        source = DiffusersSource(diffusers.DDPMPipeline(unet=unet, scheduler=scheduler),
                                 classes=["Parasitized", "Uninfected"], steps=3)
        assert (source.num_classes, source.channels, source.image_size) == (2, 3, 16)
        labels = torch.tensor([0, 1, 1])
        a = source.sample(3, labels, generator=torch.Generator().manual_seed(1))
        assert a.dtype == torch.uint8 and a.shape == (3, 3, 16, 16)
        assert torch.equal(a, source.sample(3, labels, generator=torch.Generator().manual_seed(1)))
    ds = SyntheticDataset(source, 0.5, real=Real(["Parasitized", "Uninfected"], n=4))
    assert ds[len(ds) - 1][0].shape == (3, 16, 16)
    with pytest.raises(ValueError, match="no class embedding"):
        DiffusersSource(diffusers.UNet2DModel(sample_size=16, block_out_channels=(8, 16), norm_num_groups=4,
                                              down_block_types=("DownBlock2D", "DownBlock2D"),
                                              up_block_types=("UpBlock2D", "UpBlock2D")),
                        scheduler=diffusers.DDPMScheduler(), classes=["a", "b"])


def test_a_saved_diffusers_pipeline_opens_from_a_spec(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1,
                                 block_out_channels=(8, 8), down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), num_class_embeds=2, norm_num_groups=4)
    diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler(num_train_timesteps=20)).save_pretrained(
        tmp_path / "pipe")
    source = open_source_spec({"diffusers": str(tmp_path / "pipe"), "steps": 2}, classes=["a", "b"])
    assert source.sample(2, torch.tensor([0, 1])).shape == (2, 3, 8, 8)


def test_synthetic_mix_reads_a_folder_path_and_saves_it(tmp_path):
    import albumentations as A

    from synthaug import SyntheticMix

    folder = write_class_folders(tmp_path / "f")
    pipeline = A.Compose([SyntheticMix(str(folder), p=1.0)], seed=0)
    out = pipeline(image=np.zeros((16, 16, 3), np.uint8), label=1)["image"]
    assert out.shape == (16, 16, 3) and out.mean() > 100  # an Uninfected (bright) image
    again = A.from_dict(A.to_dict(pipeline))
    assert again.transforms[0].pool_path == str(folder)
    with pytest.raises(ValueError, match="n_per_class=4 only applies when pool is a generator checkpoint"):
        SyntheticMix(str(folder), n_per_class=4)


def test_a_benchmark_runs_a_folder_source_end_to_end(tmp_path, data_root):
    """benchmarks/run.py with a folder as its generator entry: checked before any work, re-ordered to the data
    set's classes, pictured, mixed in; nothing trained."""
    import os
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    folder = write_class_folders(tmp_path / "cells", manifest=True)  # classes in the other order
    settings = ["seeds=[0]", "classifier.model=test_resnet", "classifier.steps=4", "classifier.batch_size=16",
                f"generators=[{{label: exported, source: {{folder: {folder}}}}}]", "datasets.0.image_size=16",
                "fractions=[0.03]", "quality.fractions=[]"]
    cmd = [sys.executable, str(repo / "benchmarks" / "run.py"), "--config",
           str(repo / "configs" / "bench" / "malaria-quick.yaml"), "--out", str(tmp_path / "run")]
    env = {**os.environ, "SYNTHAUG_DATA": str(data_root), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*cmd, *(x for s in settings for x in ("--set", s))], cwd=repo, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    # the quick preset mixes additively, with its real-matched control beside the synthetic arm
    assert sorted((r["arm"], r["generator"], r["generator_name"]) for r in rows) == [
        ("real", None, None), ("real-matched", None, None), ("synthetic", "exported", "folder")]
    assert next(r for r in rows if r["arm"] == "synthetic")["synthetic_items"] > 0
    assert (tmp_path / "run" / "samples" / "malaria-16px-frac0.03-exported.png").is_file()
    assert not list((tmp_path / "run").rglob("*.safetensors"))  # nothing trained
    assert "`exported` (folder source)" in (tmp_path / "run" / "summary.md").read_text()


def test_a_pipeline_that_takes_class_labels_itself_is_called_with_them():
    pytest.importorskip("diffusers")
    from synthaug.sources import DiffusersSource

    class ClassLabelPipeline:  # the call of a DiTPipeline: class_labels, steps, output_type="np", a generator
        device = torch.device("cpu")

        def __call__(self, *, class_labels, num_inference_steps, output_type, generator):
            assert output_type == "np" and num_inference_steps == 4
            noise = torch.rand(len(class_labels), 8, 8, 3, generator=generator).numpy() * 0.1
            return SimpleNamespace(images=noise + np.array(class_labels, np.float32)[:, None, None, None] * 0.8)

    source = DiffusersSource(ClassLabelPipeline(), classes=["dark", "light"], steps=4, image_size=8, channels=3)
    images = source.sample(4, torch.tensor([0, 1, 1, 0]), generator=torch.Generator().manual_seed(0))
    assert images.shape == (4, 3, 8, 8) and [b > 100 for b in _brightness(images)] == [False, True, True, False]
    assert torch.equal(images, source.sample(4, torch.tensor([0, 1, 1, 0]), generator=torch.Generator().manual_seed(0)))


def test_an_unreadable_file_is_named_or_skipped(tmp_path):
    folder = write_class_folders(tmp_path / "f")
    (folder / "Uninfected" / "zz-broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="zz-broken.png"):
        FolderSource(folder).sample(1)
    skipping = FolderSource(folder, on_bad_file="skip")
    with pytest.warns(UserWarning, match="left out 1 unreadable file"):
        assert skipping.sample(2).shape == (2, 3, 16, 16)
    assert len(skipping) == 12


def test_a_checkpoint_source_takes_the_sampling_settings_chosen_on_validation(tmp_path):
    """The shared generator is sampled at the guidance its validation CAS chose, not the one it was saved with."""
    from synthaug.generators import create_generator
    from synthaug.sources import open_source_spec

    torch.manual_seed(0)
    ddpm = create_generator("ddpm", num_classes=2, image_size=16, channels=3, base_width=8, channel_mults=(1, 2),
                            sample_steps=3, guidance=3.0)
    ddpm.save_pretrained(tmp_path / "ddpm")
    gen = open_source_spec({"checkpoint": str(tmp_path / "ddpm"), "guidance": 2, "sample_steps": 4})
    assert gen.guidance == 2.0 and gen.sample_steps == 4
    assert open_source_spec({"checkpoint": str(tmp_path / "ddpm")}).guidance == 3.0  # as saved
    with pytest.raises(ValueError, match="guidance"):
        open_source_spec({"checkpoint": str(tmp_path / "ddpm"), "guidance": -1})
    cvae = create_generator("cvae", num_classes=2, image_size=16, channels=3)
    cvae.save_pretrained(tmp_path / "cvae")
    with pytest.raises(ValueError, match="no sampling setting 'guidance'"):
        open_source_spec({"checkpoint": str(tmp_path / "cvae"), "guidance": 2})
