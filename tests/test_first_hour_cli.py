"""Issue 15, the checkpoint and command-line walls: checkpoints that know their classes and their training,
``--labels <class name>``, ``synthaug export`` (an ImageFolder of PNGs) and ``synthaug --version``."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import synthaug
from synthaug import create_generator
from synthaug.cli import main
from synthaug.generators import Generator, GeneratorTrainConfig, load_generator, train_generator
from synthaug.generators.options import CVAEOptions, DDPMOptions
from synthaug.generators.training import data_fingerprint
from synthaug.generators.vae import ConditionalVAE

MALARIA = ["Parasitized", "Uninfected"]


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tiny(num_classes: int = 2, *, size: int = 16, class_names: list[str] | None = None, seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    gen = create_generator("cvae-tiny", num_classes=num_classes, image_size=size, channels=3)
    if class_names is not None:
        gen.class_names = class_names
    return gen


def saved(tmp_path, **kwargs) -> str:
    path = tmp_path / "ckpt"
    tiny(**kwargs).save_pretrained(path)
    return str(path)


# --------------------------------------------------------------------------- checkpoints
def test_a_directly_built_generator_saves_and_reloads(tmp_path):
    torch.manual_seed(0)
    gen = ConditionalVAE(num_classes=2, image_size=32, channels=3,
                         options=CVAEOptions(hidden_channels=(8, 16), latent_dim=4, beta=0.5))
    gen.save_pretrained(tmp_path / "ckpt")
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["name"] == "cvae" and config["options"]["latent_dim"] == 4
    loaded = Generator.from_pretrained(tmp_path / "ckpt")
    assert type(loaded) is ConditionalVAE and loaded.beta == 0.5
    assert torch.equal(gen.sample(4, generator=seeded(1)), loaded.sample(4, generator=seeded(1)))
    for (k, v), (k2, v2) in zip(gen.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


def test_a_directly_built_model_keeps_sampling_settings_changed_later(tmp_path):
    from synthaug.generators.diffusion import DDPM

    gen = DDPM(num_classes=2, image_size=16, channels=1,
               options=DDPMOptions(base_width=8, channel_mults=(1, 2), timesteps=10, sample_steps=2))
    gen.guidance = 2.0  # a sampling setting changed after construction is what the checkpoint samples with
    loaded = Generator.from_pretrained(gen.save_pretrained(tmp_path / "ckpt"))
    assert loaded.guidance == 2.0 and loaded.sample_steps == 2


def test_an_unregistered_subclass_is_refused_with_what_to_do(tmp_path):
    class Mine(ConditionalVAE):
        pass

    gen = Mine(num_classes=2, image_size=32, channels=3, options=CVAEOptions(hidden_channels=(8, 16)))
    with pytest.raises(ValueError, match="register_generator"):
        gen.save_pretrained(tmp_path / "ckpt")
    assert not (tmp_path / "ckpt" / "model.safetensors").exists()


def test_from_pretrained_on_a_subclass_checks_the_kind(tmp_path):
    from synthaug.generators.gan import DCGAN

    path = saved(tmp_path)
    assert isinstance(ConditionalVAE.from_pretrained(path), ConditionalVAE)
    with pytest.raises(TypeError, match="cvae-tiny"):
        DCGAN.from_pretrained(path)


def test_class_names_travel_with_the_weights(tmp_path):
    gen = tiny(class_names=MALARIA)
    loaded = load_generator(gen.save_pretrained(tmp_path / "ckpt"))
    assert loaded.class_names == MALARIA
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["class_names"] == MALARIA
    assert torch.equal(gen.sample(4, generator=seeded(0)), loaded.sample(4, generator=seeded(0)))


@pytest.mark.parametrize("names, match", [(["a"], "2 classes"), (["a", "a"], "twice"), (["a", 3], "strings"),
                                          (["a", ""], "empty"), ("ab", "list")])
def test_bad_class_names_are_refused(names, match):
    with pytest.raises(ValueError, match=match):
        tiny().class_names = names


def test_an_old_checkpoint_without_names_or_record_still_loads(tmp_path):
    path = tmp_path / "ckpt"
    gen = tiny(class_names=MALARIA)
    gen.save_pretrained(path)
    config = json.loads((path / "config.json").read_text())
    for key in ("class_names", "training"):
        config.pop(key)
    (path / "config.json").write_text(json.dumps(config))
    loaded = load_generator(path)
    assert loaded.class_names is None and loaded.training_record is None
    assert torch.equal(gen.sample(4, generator=seeded(0)), loaded.sample(4, generator=seeded(0)))


def test_a_damaged_class_list_in_the_checkpoint_is_named(tmp_path):
    path = tmp_path / "ckpt"
    tiny(class_names=MALARIA).save_pretrained(path)
    config = json.loads((path / "config.json").read_text())
    config["class_names"] = ["only one"]
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="config.json"):
        load_generator(path)


@pytest.fixture(scope="module")
def malaria_cells(malaria32):
    train = malaria32.train
    return train.subset(np.linspace(0, len(train) - 1, 64).astype(int))  # both classes, several patients


def test_training_records_class_names_and_what_it_trained_on(malaria_cells, tmp_path):
    config = GeneratorTrainConfig(steps=3, batch_size=16, log_every=0, checkpoint_every=0, sample_every=0)
    gen = train_generator(tiny(size=32), malaria_cells, config=config, out_dir=tmp_path, dataset_name="malaria")
    assert gen.class_names == MALARIA
    loaded = load_generator(tmp_path / "checkpoint")
    assert loaded.class_names == MALARIA
    record = loaded.training_record
    assert record["dataset"] == "malaria" and record["items"] == 64 and record["steps"] == 3
    assert record["groups"] == len(set(malaria_cells.groups.tolist()))
    assert record["fingerprint"] == data_fingerprint(malaria_cells)["sha256"]
    assert (record["image_size"], record["channels"]) == (32, 3)
    assert record["seconds"] >= 0 and record["synthaug_version"] == synthaug.__version__


def test_training_takes_class_names_from_a_subset_of_a_torchvision_style_set(malaria_cells):
    class Plain(torch.utils.data.Dataset):  # what torchvision's ImageFolder gives: .classes, .targets
        classes = ["a", "b"]

        def __len__(self):
            return len(malaria_cells)

        def __getitem__(self, i):
            return malaria_cells[i]

    subset = torch.utils.data.Subset(Plain(), range(32))
    config = GeneratorTrainConfig(steps=1, batch_size=16, log_every=0, checkpoint_every=0, sample_every=0)
    gen = train_generator(tiny(size=32), subset, config=config)
    assert gen.class_names == ["a", "b"]
    assert gen.training_record["items"] == 32 and gen.training_record["dataset"] is None


def test_training_keeps_weights_bit_identical_with_the_record(malaria_cells, tmp_path):
    config = GeneratorTrainConfig(steps=4, batch_size=16, log_every=0, checkpoint_every=2, sample_every=0)
    a = train_generator(tiny(size=32, seed=1), malaria_cells, config=config, out_dir=tmp_path / "a")
    b = train_generator(tiny(size=32, seed=1), malaria_cells, config=config)
    for (k, v), (_, w) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(v, w), k


# --------------------------------------------------------------------------- sample --labels <name>
def test_sample_takes_class_names(tmp_path):
    path = saved(tmp_path, class_names=MALARIA)
    gen = load_generator(path)
    out = tmp_path / "s.npy"
    assert main(["sample", "--checkpoint", path, "--n", "3", "--labels", "Uninfected", "--output", str(out)]) == 0
    expected = gen.sample(3, torch.tensor([1, 1, 1]), generator=seeded(0))
    assert np.array_equal(np.load(out), expected.numpy())
    # names, ids and case-insensitive names mix
    assert main(["sample", "--checkpoint", path, "--n", "3", "--labels", "parasitized,1,Parasitized",
                 "--output", str(out)]) == 0
    assert np.array_equal(np.load(out), gen.sample(3, torch.tensor([0, 1, 0]), generator=seeded(0)).numpy())


def test_sample_names_an_unknown_class_with_a_did_you_mean(tmp_path, capsys):
    path = saved(tmp_path, class_names=MALARIA)
    assert main(["sample", "--checkpoint", path, "--n", "2", "--labels", "Parasitzed"]) == 2
    err = capsys.readouterr().err
    assert "'Parasitzed'" in err and "did you mean 'Parasitized'" in err and "Uninfected" in err


def test_sample_without_names_in_the_checkpoint_says_to_use_ids(tmp_path, capsys):
    path = saved(tmp_path)
    assert main(["sample", "--checkpoint", path, "--n", "2", "--labels", "Parasitized"]) == 2
    err = capsys.readouterr().err
    assert "no class names" in err and "0, 1" in err


def test_a_class_name_with_a_comma_is_one_label(tmp_path):
    path = saved(tmp_path, class_names=["malignant", "normal, benign"])
    gen = load_generator(path)
    out = tmp_path / "s.npy"
    assert main(["sample", "--checkpoint", path, "--n", "2", "--labels", "normal, benign,malignant",
                 "--output", str(out)]) == 0
    assert np.array_equal(np.load(out), gen.sample(2, torch.tensor([1, 0]), generator=seeded(0)).numpy())


def test_explore_refuses_data_whose_classes_are_not_the_checkpoints(tmp_path, data_root, capsys):
    path = saved(tmp_path, class_names=["healthy", "sick"], size=32)
    assert main(["explore", "--checkpoint", path, "--data", "malaria", "--root", str(data_root),
                 "--images", "4", "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert "healthy" in err and "Parasitized" in err


# --------------------------------------------------------------------------- export
def read_back(folder):
    from torchvision.datasets import ImageFolder

    return ImageFolder(str(folder))


def test_export_writes_an_image_folder_that_torchvision_reads(tmp_path, capsys):
    path = saved(tmp_path, class_names=MALARIA)
    out = tmp_path / "export"
    assert main(["export", "--checkpoint", path, "--n", "10", "--out", str(out), "--batch-size", "4",
                 "--seed", "3"]) == 0
    assert "10/10" in capsys.readouterr().err  # the progress bar
    ds = read_back(out)
    assert ds.classes == MALARIA and np.bincount(ds.targets).tolist() == [5, 5]
    # the files hold exactly what sampling in batches of 4 from the seed gives
    gen = load_generator(path)
    rng = seeded(3)
    labels = torch.arange(10) % 2
    expected = torch.cat([gen.sample(len(labels[i:i + 4]), labels[i:i + 4], generator=rng) for i in range(0, 10, 4)])
    from PIL import Image

    for i in range(10):
        file = out / MALARIA[i % 2] / f"{i}.png"  # zero-padded to the width of n - 1
        with Image.open(file) as img:
            assert np.array_equal(np.asarray(img), expected[i].permute(1, 2, 0).numpy()), file
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["counts"] == {"Parasitized": 5, "Uninfected": 5} and manifest["complete"]


def test_export_of_one_class_by_name(tmp_path):
    path = saved(tmp_path, class_names=MALARIA)
    assert main(["export", "--checkpoint", path, "--n", "3", "--out", str(tmp_path / "e"), "--labels",
                 "Uninfected"]) == 0
    assert sorted(p.name for p in (tmp_path / "e").iterdir() if p.is_dir()) == ["Uninfected"]
    assert len(list((tmp_path / "e" / "Uninfected").glob("*.png"))) == 3


def test_export_without_class_names_numbers_folders_in_label_order(tmp_path):
    path = saved(tmp_path, num_classes=12)
    assert main(["export", "--checkpoint", path, "--n", "24", "--out", str(tmp_path / "e")]) == 0
    ds = read_back(tmp_path / "e")
    assert ds.classes == [f"class_{i:02d}" for i in range(12)]
    # ImageFolder numbers the folders alphabetically: zero-padding keeps those numbers the label ids
    assert [ds.targets[i] for i in range(0, 24, 2)] == list(range(12))


def test_export_refuses_a_non_empty_folder_and_overwrites_only_its_own_files(tmp_path, capsys):
    path = saved(tmp_path, class_names=MALARIA)
    out = tmp_path / "e"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["export", "--checkpoint", path, "--n", "4", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "--overwrite" in err and str(out) in err and "notes.txt" in err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]

    assert main(["export", "--checkpoint", path, "--n", "8", "--out", str(out), "--overwrite"]) == 0
    assert len(read_back(out)) == 8
    before = (out / "Parasitized" / "0.png").read_bytes()
    assert main(["export", "--checkpoint", path, "--n", "4", "--out", str(out)]) == 1  # no silent overwrite
    assert (out / "Parasitized" / "0.png").read_bytes() == before and len(read_back(out)) == 8
    # a new export replaces the files the previous one wrote (so the counts are the new ones) and
    # nothing else
    assert main(["export", "--checkpoint", path, "--n", "4", "--out", str(out), "--overwrite", "--seed", "1"]) == 0
    ds = read_back(out)
    assert len(ds) == 4 and np.bincount(ds.targets).tolist() == [2, 2]
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("args, match", [(["--n", "0"], "--n"), (["--n", "4", "--batch-size", "0"], "--batch-size"),
                                         (["--n", "4", "--labels", "Uninfectd"], "did you mean")])
def test_export_bad_arguments(tmp_path, capsys, args, match):
    path = saved(tmp_path, class_names=MALARIA)
    assert main(["export", "--checkpoint", path, "--out", str(tmp_path / "e"), *args]) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "e").exists() or not any((tmp_path / "e").iterdir())


# --------------------------------------------------------------------------- --version
def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"synthaug {synthaug.__version__}"


def test_version_without_installed_metadata(capsys, monkeypatch):
    import importlib.metadata

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"synthaug {synthaug.__version__}"
