"""Every registered generator against the Generator contract (generated from the registry), plus training."""
from __future__ import annotations

import json
import math
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import synthaug
from synthaug.generators import (
    GeneratorTrainConfig,
    NonFiniteLossError,
    OptimizerStep,
    create_generator,
    generator_options,
    list_generators,
    load_generator,
    options_table,
    to_uint8,
    train_generator,
)
from synthaug.generators.base import options_class
from synthaug.utils import read_jsonl
from synthaug.viz import save_grid

GENERATORS = list_generators()
SIZE, CHANNELS, CLASSES = 32, 3, 2


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: see conftest.py


# The test entry of every registered generator: small options that keep it fast at 32 px on a CPU
# ({} = its defaults). test_every_generator_has_a_test_entry_and_a_preset fails for a generator missing here.
SMALL_OPTIONS: dict[str, dict] = {
    "cvae": {"hidden_channels": (16, 32, 64), "latent_dim": 8},
    "cvae-tiny": {},
    "dcgan": {"latent_dim": 16, "g_width": 8, "d_width": 8, "embed_dim": 4},
    "cgan": {"latent_dim": 16, "g_width": 8, "d_width": 8, "embed_dim": 4},
    "infogan": {"latent_dim": 16, "g_width": 8, "d_width": 8, "embed_dim": 4},
    "fc-vae": {"hidden_units": (64, 32), "latent_dim": 8},
    "conv-vae": {"hidden_channels": (8, 16), "latent_dim": 8, "embed_dim": 4},
    "beta-vae": {"hidden_channels": (8, 16), "latent_dim": 8, "embed_dim": 4, "capacity_max": 5.0, "capacity_steps": 10},
    "msssim-vae": {"hidden_channels": (8, 16), "latent_dim": 8, "embed_dim": 4},
    "joint-vae": {"hidden_channels": (8, 16), "latent_dim": 8, "disc_dim": 3, "embed_dim": 4},
    "vae-gan": {"hidden_channels": (8, 16), "latent_dim": 8, "embed_dim": 4, "ema_decay": 0.9, "diffaugment": "translation"},
    "ddpm": {"base_width": 8, "channel_mults": (1, 2), "sample_steps": 2},
    # (the zoo: one line per generator)
}
# non-default options that must survive save / load
OTHER_OPTIONS: dict[str, dict] = {"cvae": {"hidden_channels": (16, 32), "latent_dim": 4, "beta": 0.5},
                                  "cvae-tiny": {"latent_dim": 4, "recon": "bce"},
                                  "dcgan": {"latent_dim": 8, "g_width": 8, "d_width": 8, "kernel_size": 6,
                                            "d_batchnorm": False, "d_dropout": 0.2, "ema_decay": 0.0},
                                  "cgan": {"latent_dim": 8, "g_width": 8, "d_width": 8, "conditioning": "acgan",
                                           "conditional_bn": False, "spectral_norm": False, "loss": "ns"},
                                  "infogan": {"latent_dim": 12, "g_width": 8, "d_width": 8, "n_categorical": 3,
                                              "n_continuous": 1, "continuous_loss": "mse", "diffaugment": ""},
                                  "fc-vae": {"hidden_units": (32, 16), "latent_dim": 4, "per_class": True,
                                             "init": "kaiming", "lr_halving": True, "lr_floor": 0.1},
                                  "joint-vae": {"hidden_channels": (8, 16), "latent_dim": 4, "disc_dim": 5,
                                                "temperature": 0.5, "disc_capacity_max": 1.0, "recon": "mse"},
                                  "vae-gan": {"hidden_channels": (8, 16), "disc_channels": (8, 8, 16), "latent_dim": 4,
                                              "gamma": 0.5, "ema_decay": 0.99, "diffaugment": "color,cutout"}}
PRESETS = Path(__file__).resolve().parents[1] / "configs" / "generators"


def build(name: str, *, seed: int = 0, **overrides) -> synthaug.generators.Generator:
    torch.manual_seed(seed)
    options = {**SMALL_OPTIONS.get(name, {}), **overrides}
    return create_generator(name, num_classes=CLASSES, image_size=SIZE, channels=CHANNELS, **options)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registry_lists_the_vaes():
    assert "cvae" in GENERATORS and "cvae-tiny" in GENERATORS
    assert GENERATORS == sorted(GENERATORS)
    assert list_generators("cvae-t*") == ["cvae-tiny"]
    assert list_generators("no-such-*") == []


# --------------------------------------------------------------------------- the sample() contract
@pytest.mark.parametrize("name", GENERATORS)
def test_sample_shape_dtype_range(name):
    gen = build(name)
    images = gen.sample(6, generator=seeded(0))
    assert isinstance(images, torch.Tensor)
    assert images.dtype == torch.uint8
    assert images.shape == (6, CHANNELS, SIZE, SIZE)
    assert images.device.type == "cpu"
    assert images.float().std() > 0  # not a constant image
    assert (gen.num_classes, gen.image_size, gen.channels) == (CLASSES, SIZE, CHANNELS)
    empty = gen.sample(0)
    assert empty.shape == (0, CHANNELS, SIZE, SIZE) and empty.dtype == torch.uint8


@pytest.mark.parametrize("name", GENERATORS)
def test_sample_does_not_change_training_mode(name):
    gen = build(name)
    gen.train()
    gen.sample(2, generator=seeded(0))
    assert gen.training
    gen.eval()
    gen.sample(2, generator=seeded(0))
    assert not gen.training


@pytest.mark.parametrize("name", GENERATORS)
def test_labels_are_honoured(name):
    gen = build(name)
    labels = torch.tensor([1, 0, 1, 1, 0])
    assert gen.sample(5, labels, generator=seeded(0)).shape == (5, CHANNELS, SIZE, SIZE)
    assert gen.sample(3, [0, 1, 1], generator=seeded(0)).shape == (3, CHANNELS, SIZE, SIZE)
    # the label conditions the image: same noise, other class, other image
    zeros = gen.sample(4, torch.zeros(4, dtype=torch.long), generator=seeded(3))
    ones = gen.sample(4, torch.ones(4, dtype=torch.long), generator=seeded(3))
    assert not torch.equal(zeros, ones)


@pytest.mark.parametrize("name", GENERATORS)
@pytest.mark.parametrize(
    ("n", "labels"),
    [
        (3, torch.tensor([0.0, 1.0, 0.0])),            # float
        (3, torch.tensor([True, False, True])),        # bool
        (3, torch.tensor([0, 1])),                     # too short
        (3, torch.tensor([0, 1, 0, 1])),               # too long
        (2, torch.tensor([[0, 1]])),                   # 2-D
        (3, torch.tensor([0, 1, 2])),                  # class 2 of 2
        (3, torch.tensor([0, -1, 1])),                 # negative
    ],
    ids=["float", "bool", "short", "long", "2d", "too-large", "negative"],
)
def test_bad_labels(name, n, labels):
    gen = build(name)
    with pytest.raises(ValueError, match="labels"):
        gen.sample(n, labels)


@pytest.mark.parametrize("name", GENERATORS)
@pytest.mark.parametrize("n", [-1, 2.0, True])
def test_bad_n(name, n):
    with pytest.raises(ValueError, match="n="):
        build(name).sample(n)


@pytest.mark.parametrize("name", GENERATORS)
def test_labels_none_is_balanced(name):
    gen = build(name)
    for n in (1, 7, 10):
        labels = gen.check_labels(n, None)
        counts = np.bincount(labels.numpy(), minlength=CLASSES)
        assert counts.sum() == n and counts.max() - counts.min() <= 1
    balanced = torch.arange(10) % CLASSES
    assert torch.equal(gen.sample(10, generator=seeded(4)), gen.sample(10, balanced, generator=seeded(4)))


@pytest.mark.parametrize("name", GENERATORS)
def test_sampling_is_deterministic(name):
    gen = build(name)
    a = gen.sample(8, generator=seeded(0))
    b = gen.sample(8, generator=seeded(0))
    c = gen.sample(8, generator=seeded(1))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("name", GENERATORS)
def test_sampling_in_chunks(name):
    gen = build(name)
    whole = gen.sample(7, generator=seeded(2))
    gen.sample_batch_size = 3
    chunked = gen.sample(7, generator=seeded(2))
    assert (whole.int() - chunked.int()).abs().max() <= 1  # same images, up to float rounding


# --------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("name", GENERATORS)
def test_save_load_round_trip(name, tmp_path):
    gen = build(name)
    # make the weights differ from a fresh init (BatchNorm statistics included)
    gen.train()
    gen(torch.rand(8, CHANNELS, SIZE, SIZE), torch.arange(8) % CLASSES)
    path = gen.save(tmp_path / "ckpt")
    assert sorted(p.name for p in path.iterdir()) == ["README.md", "config.json", "model.safetensors"]  # + model card
    config = json.loads((path / "config.json").read_text())
    assert config["name"] == name
    loaded = load_generator(path)
    assert type(loaded) is type(gen) and not loaded.training
    assert (loaded.num_classes, loaded.image_size, loaded.channels) == (CLASSES, SIZE, CHANNELS)
    assert torch.equal(gen.sample(6, generator=seeded(5)), loaded.sample(6, generator=seeded(5)))
    for (k, v), (k2, v2) in zip(gen.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


@pytest.mark.parametrize("name", [n for n in GENERATORS if n in OTHER_OPTIONS])
def test_save_load_keeps_options(name, tmp_path):
    gen = build(name, **OTHER_OPTIONS[name])
    loaded = load_generator(gen.save(tmp_path / "ckpt"))
    assert loaded.latent_dim == gen.latent_dim
    assert torch.equal(gen.sample(4, generator=seeded(1)), loaded.sample(4, generator=seeded(1)))
    # and once more: the reloaded options make the same checkpoint
    again = load_generator(loaded.save(tmp_path / "ckpt2"))
    assert json.loads((tmp_path / "ckpt2" / "config.json").read_text())["options"] == \
        json.loads((tmp_path / "ckpt" / "config.json").read_text())["options"]
    assert torch.equal(again.sample(4, generator=seeded(1)), loaded.sample(4, generator=seeded(1)))


@pytest.mark.parametrize("name", GENERATORS)
def test_load_refuses_unknown_generator(name, tmp_path):
    path = build(name).save(tmp_path / "ckpt")
    config = json.loads((path / "config.json").read_text())
    config["name"] = "not-a-generator"
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="not-a-generator"):
        load_generator(path)


@pytest.mark.parametrize("name", GENERATORS)
def test_load_refuses_wrong_shapes(name, tmp_path):
    path = build(name).save(tmp_path / "ckpt")
    state = load_file(str(path / "model.safetensors"))
    key = next(k for k, v in state.items() if v.is_floating_point() and v.ndim >= 1)
    state[key] = torch.cat([state[key], state[key][:1]])  # one row too many
    save_file(state, str(path / "model.safetensors"))
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        load_generator(path)


@pytest.mark.parametrize("name", GENERATORS)
def test_load_refuses_missing_and_unexpected_tensors(name, tmp_path):
    path = build(name).save(tmp_path / "ckpt")
    state = load_file(str(path / "model.safetensors"))
    state.pop(next(iter(state)))
    state["extra.weight"] = torch.zeros(3)
    save_file(state, str(path / "model.safetensors"))
    with pytest.raises(ValueError, match="extra.weight"):
        load_generator(path)


@pytest.mark.parametrize("name", GENERATORS)
def test_load_refuses_bad_config(name, tmp_path):
    path = build(name).save(tmp_path / "ckpt")
    (path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json"):
        load_generator(path)
    (path / "config.json").write_text(json.dumps({"name": name, "options": {"num_classes": 2}}))
    with pytest.raises(ValueError, match="config.json"):
        load_generator(path)


class _Payload:
    """Unpickling this creates the file ``marker`` (what a malicious checkpoint could do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def evil_pickle(marker: Path) -> bytes:
    return pickle.dumps(_Payload(marker))


def test_evil_pickle_really_is_evil(tmp_path):
    """The payload used below does create its file when unpickled (else the tests below prove nothing)."""
    marker = tmp_path / "probe"
    pickle.loads(evil_pickle(marker)).close()
    assert marker.exists()


def test_load_refuses_a_pickle_only_folder(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    for fname in ("pytorch_model.bin", "model.pt", "model.pkl"):
        (ckpt / fname).write_bytes(evil_pickle(marker))
    with pytest.raises((FileNotFoundError, ValueError), match="config.json"):
        load_generator(ckpt)
    assert not marker.exists()


@pytest.mark.parametrize("name", GENERATORS)
def test_load_refuses_a_pickle_named_safetensors(name, tmp_path):
    marker = tmp_path / "pwned"
    path = build(name).save(tmp_path / "ckpt")
    (path / "model.safetensors").write_bytes(evil_pickle(marker))
    with pytest.raises(ValueError, match="model.safetensors"):
        load_generator(path)
    assert not marker.exists()
    torch_file = tmp_path / "torch.pt"
    torch.save({"x": _Payload(marker)}, torch_file)  # a torch.save zip with a pickle inside
    shutil.copy(torch_file, path / "model.safetensors")
    with pytest.raises(ValueError, match="model.safetensors"):
        load_generator(path)
    assert not marker.exists()


def test_load_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        load_generator(tmp_path / "nothing-here")


# cvae-tiny is a factory function over cvae's class; the others are registered classes
@pytest.mark.parametrize("name", [n for n in GENERATORS if n != "cvae-tiny"])
def test_a_registered_class_built_directly_saves_and_loads(name, tmp_path):
    """Options are recorded at construction: no create_generator needed to save a model."""
    torch.manual_seed(0)
    options = options_class(name)(**SMALL_OPTIONS.get(name, {}))
    gen = type(build(name))(num_classes=CLASSES, image_size=SIZE, channels=CHANNELS, options=options)
    assert gen.generator_name == name
    loaded = synthaug.generators.Generator.from_pretrained(gen.save_pretrained(tmp_path / "ckpt"))
    assert type(loaded) is type(gen)
    assert torch.equal(gen.sample(4, generator=seeded(3)), loaded.sample(4, generator=seeded(3)))


def test_save_needs_a_registered_generator(tmp_path):
    from synthaug.generators.options import CVAEOptions
    from synthaug.generators.vae import ConditionalVAE

    class Unregistered(ConditionalVAE):
        pass

    gen = Unregistered(num_classes=2, image_size=32, channels=3, options=CVAEOptions(hidden_channels=(8, 16)))
    with pytest.raises(ValueError, match="register_generator"):
        gen.save(tmp_path / "ckpt")
    assert not (tmp_path / "ckpt" / "model.safetensors").exists()


# --------------------------------------------------------------------------- one optimizer step
@pytest.mark.parametrize("name", GENERATORS)
def test_one_optimizer_step(name):
    """One ``training_step`` through the public ``OptimizerStep``: finite losses, every optimizer steps,
    trainable parameters move (a frozen EMA copy, if any, may stay)."""
    gen = build(name)
    gen.train()
    images = torch.rand(8, CHANNELS, SIZE, SIZE, generator=seeded(0))
    labels = torch.arange(8) % CLASSES
    optimizers = gen.configure_optimizers(1e-3)
    assert len(optimizers) >= 1
    before = {k: v.detach().clone() for k, v in gen.named_parameters()}
    stepper = OptimizerStep(name)
    torch.manual_seed(0)
    losses = gen.training_step(images, labels, optimizers, stepper)
    assert isinstance(losses, dict) and losses
    assert all(math.isfinite(float(v.detach() if isinstance(v, torch.Tensor) else v)) for v in losses.values())
    assert stepper.calls >= len(optimizers), "every optimizer should take a step"
    optimized = {id(p) for opt in optimizers for g in opt.param_groups for p in g["params"]}
    after = dict(gen.named_parameters())
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    trainable = [k for k, p in gen.named_parameters() if id(p) in optimized]
    assert moved, "no parameter changed"
    assert len(moved) >= 0.5 * len(trainable), f"only {len(moved)} of {len(trainable)} optimized tensors moved"


def test_step_refuses_a_nan_loss_before_updating():
    gen = build("cvae-tiny")
    (opt,) = gen.configure_optimizers(1e-3)
    before = {k: v.detach().clone() for k, v in gen.state_dict().items()}
    with pytest.raises(NonFiniteLossError, match="at step 7 the d_loss"):
        OptimizerStep("x", step=7)(opt, torch.tensor(float("nan"), requires_grad=True), "d_loss")
    assert all(torch.equal(before[k], v) for k, v in gen.state_dict().items())


# --------------------------------------------------------------------------- create_generator errors
@pytest.mark.parametrize("name", GENERATORS)
def test_unknown_option_did_you_mean(name):
    options = generator_options(name)
    assert "latent_dim" in options
    with pytest.raises(ValueError, match=r"(?i)did you mean.*latent_dim"):
        build(name, latnet_dim=4)
    with pytest.raises(ValueError, match="zzzz_qqqq"):
        build(name, zzzz_qqqq=1)


def test_unknown_generator_name():
    with pytest.raises(ValueError, match=r"(?i)cvea.*did you mean.*'cvae'"):
        create_generator("cvea", num_classes=2, image_size=32, channels=3)
    with pytest.raises(ValueError, match="no-such-generator"):
        create_generator("no-such-generator", num_classes=2, image_size=32, channels=3)


@pytest.mark.parametrize("name", GENERATORS)
@pytest.mark.parametrize("arg", [dict(num_classes=0), dict(channels=0), dict(image_size=-32), dict(num_classes=True)])
def test_bad_geometry(name, arg):
    kwargs = {"num_classes": CLASSES, "image_size": SIZE, "channels": CHANNELS, **arg}
    with pytest.raises(ValueError, match=next(iter(arg))):
        create_generator(name, **kwargs)


def test_cvae_bad_options():
    with pytest.raises(ValueError, match="recon"):
        build("cvae", recon="l1")
    with pytest.raises(ValueError, match="beta"):
        build("cvae", beta=-1.0)
    with pytest.raises(ValueError, match="hidden_channels"):
        build("cvae", hidden_channels=())


# --------------------------------------------------------------------------- options: declared once
DOCS = Path(__file__).resolve().parents[1] / "docs" / "generators.md"


@pytest.mark.parametrize("name", GENERATORS)
def test_docs_show_the_options_table_the_code_generates(name):
    table = options_table(name)
    assert all(f"| `{option}` |" in table for option in generator_options(name))
    assert table in DOCS.read_text(), (f"docs/generators.md is out of step with the options of {name!r}: replace "
                                       f"the table under '### `{name}` options' with\n{table}")


@pytest.mark.parametrize("name, option", [(n, o) for n in GENERATORS for o in generator_options(n)])
def test_every_option_refuses_a_value_of_the_wrong_kind(name, option):
    with pytest.raises(ValueError, match=rf"^{name}: {option}=\{{'wrong': 1\}}"):
        build(name, **{option: {"wrong": 1}})


@pytest.mark.parametrize("name", GENERATORS)
def test_the_declared_defaults_are_the_defaults(name):
    """Passing every default explicitly builds the very model that passing none does."""
    torch.manual_seed(0)
    implicit = create_generator(name, num_classes=2, image_size=28, channels=1)
    torch.manual_seed(0)
    explicit = create_generator(name, num_classes=2, image_size=28, channels=1, **generator_options(name))
    assert implicit.generator_options == {"num_classes": 2, "image_size": 28, "channels": 1}
    for (k, v), (k2, v2) in zip(implicit.state_dict().items(), explicit.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2), k


def test_a_misspelt_choice_gets_a_did_you_mean():
    with pytest.raises(ValueError, match=r"cvae: recon='mes': use one of \['mse', 'bce'\].*did you mean 'mse'"):
        build("cvae", recon="mes")
    with pytest.raises(ValueError, match=r"ddpm: schedule='cosin'.*did you mean 'cosine'"):
        build("ddpm", schedule="cosin")


def test_register_refuses_options_it_cannot_check_or_document():
    from dataclasses import dataclass

    from synthaug.generators import GeneratorOptions, register_generator

    @dataclass
    class Undeclared(GeneratorOptions):
        width: int = 3

    with pytest.raises(TypeError, match=r"Undeclared\.width .*option\(default, help"):
        register_generator("undeclared", options=Undeclared)
    with pytest.raises(TypeError, match="GeneratorOptions"):
        register_generator("not-a-dataclass", options=dict)
    assert "undeclared" not in list_generators()


def test_to_uint8():
    x = torch.tensor([-0.5, 0.0, 0.5, 1.0, 2.0])
    assert to_uint8(x).tolist() == [0, 0, 128, 255, 255]


# --------------------------------------------------------------------------- grayscale 28 px
@pytest.mark.parametrize("name", GENERATORS)
def test_grayscale_28px(name):
    torch.manual_seed(0)
    options = dict(SMALL_OPTIONS.get(name, {}))
    if name == "cvae":
        options["hidden_channels"] = (16, 32)  # 28 px halves twice (to 7 px)
    gen = create_generator(name, num_classes=3, image_size=28, channels=1, **options)
    images = gen.sample(4, generator=seeded(0))
    assert images.shape == (4, 1, 28, 28) and images.dtype == torch.uint8
    gen.train()
    optimizers = gen.configure_optimizers(1e-4)
    losses = gen.training_step(torch.rand(6, 1, 28, 28), torch.tensor([0, 1, 2, 0, 1, 2]), optimizers,
                               OptimizerStep(name))
    assert all(math.isfinite(float(v.detach() if isinstance(v, torch.Tensor) else v)) for v in losses.values())


@pytest.mark.parametrize("name", GENERATORS)
def test_64px(name):
    torch.manual_seed(0)
    gen = create_generator(name, num_classes=2, image_size=64, channels=3, **SMALL_OPTIONS.get(name, {}))
    assert gen.sample(2, generator=seeded(0)).shape == (2, 3, 64, 64)


def test_every_generator_has_a_test_entry_and_a_preset():
    import yaml

    presets: dict[str, list[str]] = {}
    for path in sorted(PRESETS.glob("*.yaml")):
        name = (yaml.safe_load(path.read_text()).get("generator") or {}).get("name")
        presets.setdefault(name, []).append(path.name)
    missing_entry = [n for n in GENERATORS if n not in SMALL_OPTIONS]
    missing_preset = [n for n in GENERATORS if n not in presets]
    assert not missing_entry, f"add a test entry to SMALL_OPTIONS in {__file__} for {missing_entry}"
    assert not missing_preset, f"add a preset to {PRESETS} (generator.name: ...) for {missing_preset}"
    stale = [n for n in presets if n not in GENERATORS]
    assert not stale, f"presets name unregistered generators: {[presets[n] for n in stale]}"


def test_default_cvae_grayscale_28px():
    gen = create_generator("cvae", num_classes=2, image_size=28, channels=1)
    assert gen.sample(2).shape == (2, 1, 28, 28)


@pytest.mark.parametrize("name, options", [("cvae", {"hidden_channels": [32, 64, 128]}), ("cvae-tiny", {})])
def test_image_size_30_is_refused(name, options):
    with pytest.raises(ValueError, match=r"image_size=30.*divisible"):
        create_generator(name, num_classes=2, image_size=30, channels=1, **options)


@pytest.mark.parametrize("size, bottom", [(28, 7), (30, 15), (32, 4), (64, 4)])
def test_default_cvae_levels_follow_the_image_size(size, bottom):
    gen = create_generator("cvae", num_classes=2, image_size=size, channels=3)
    assert gen.bottom == bottom
    assert gen.sample(2).shape == (2, 3, size, size)


# --------------------------------------------------------------------------- train_generator
@pytest.fixture(scope="module")
def malaria_small(malaria32):
    """256 real training cells at 32 px."""
    return malaria32.train.subset(np.arange(256))


def tiny(seed: int = 0, **options):
    torch.manual_seed(seed)
    return create_generator("cvae-tiny", num_classes=2, image_size=32, channels=3, **options)


def test_train_generator_writes_a_run(malaria_small, tmp_path):
    gen = tiny()
    initial = {k: v.detach().clone() for k, v in gen.named_parameters()}
    config = GeneratorTrainConfig(steps=20, batch_size=32, lr=2e-3, log_every=5, checkpoint_every=10,
                                  sample_every=10, samples_per_class=4)
    trained = train_generator(gen, malaria_small, config=config, out_dir=tmp_path)
    assert not trained.training
    for name in ("checkpoint/config.json", "checkpoint/model.safetensors", "samples.png", "log.jsonl",
                 "samples_000010.png", "samples_000020.png"):
        assert (tmp_path / name).is_file(), name
    rows = read_jsonl(tmp_path / "log.jsonl")
    assert [r["step"] for r in rows] == [5, 10, 15, 20]
    assert all(math.isfinite(r["loss"]) and "recon" in r and "kl" in r for r in rows)
    assert rows[-1]["recon"] < rows[0]["recon"]  # it learns something
    changed = [k for k, v in trained.named_parameters() if not torch.equal(v, initial[k])]
    assert len(changed) == len(initial), "training left some weights untouched"
    with Image.open(tmp_path / "samples.png") as grid:
        # 2 rows (classes) x 4 images of 32 px, drawn at scale 2, each row labelled with its class
        labelled = save_grid(torch.zeros(8, 3, 32, 32, dtype=torch.uint8), tmp_path / "layout.png", nrow=4,
                             labels=[0, 0, 0, 0, 1, 1, 1, 1], class_names=trained.class_names)
        with Image.open(labelled) as expected:
            assert grid.size == expected.size and grid.size[0] > (4 * 34 + 2) * 2
    loaded = load_generator(tmp_path / "checkpoint")
    assert torch.equal(trained.sample(8, generator=seeded(0)), loaded.sample(8, generator=seeded(0)))


def test_train_generator_is_reproducible(malaria_small):
    config = GeneratorTrainConfig(steps=4, batch_size=16, log_every=0, checkpoint_every=0, sample_every=0)
    a = train_generator(tiny(seed=1), malaria_small, config=config)
    b = train_generator(tiny(seed=1), malaria_small, config=config)
    for (k, v), (_, w) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(v, w), k


def test_train_generator_bad_config():
    with pytest.raises(ValueError, match="steps"):
        GeneratorTrainConfig(steps=0)
    with pytest.raises(ValueError, match="lr"):
        GeneratorTrainConfig(lr=0.0)
    with pytest.raises(ValueError, match="batch_size"):
        GeneratorTrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="empty"):
        train_generator(tiny(), [], config=GeneratorTrainConfig(steps=1))


def nan_after(gen, good_calls: int, snapshots: list):
    """Make ``gen`` return a NaN loss from forward call ``good_calls + 1`` on; keep the state at that call."""
    original = gen.forward
    calls = {"n": 0}

    def forward(images, labels):
        calls["n"] += 1
        if calls["n"] > good_calls and not snapshots:
            snapshots.append({k: v.detach().clone() for k, v in gen.state_dict().items()})
        losses = original(images, labels)
        if calls["n"] > good_calls:
            losses = {**losses, "loss": losses["loss"] * float("nan")}
        return losses

    return forward


def test_nan_loss_stops_training_and_keeps_the_checkpoint(malaria_small, tmp_path, monkeypatch):
    # a good run first: its checkpoint must survive the failing run below byte for byte
    config = GeneratorTrainConfig(steps=3, batch_size=16, log_every=1, checkpoint_every=0, sample_every=0)
    train_generator(tiny(), malaria_small, config=config, out_dir=tmp_path)
    before = {p.name: p.read_bytes() for p in (tmp_path / "checkpoint").iterdir()}
    assert set(before) == {"README.md", "config.json", "model.safetensors"}

    # a second training into the same folder is refused unless it resumes: the checkpoint is untouched
    with pytest.raises(FileExistsError, match="resume"):
        train_generator(tiny(seed=5), malaria_small, config=config, out_dir=tmp_path)
    # a NaN loss at the first step: stops with the step named, writes no checkpoint
    gen = tiny(seed=7)
    snapshots: list = []
    monkeypatch.setattr(gen, "forward", nan_after(gen, 0, snapshots))
    with pytest.raises(NonFiniteLossError, match=r"step 1\b") as err:
        train_generator(gen, malaria_small, config=config, out_dir=tmp_path / "other")
    assert "loss" in str(err.value)
    assert not (tmp_path / "other" / "checkpoint").exists()
    after = {p.name: p.read_bytes() for p in (tmp_path / "checkpoint").iterdir()}
    assert after == before
    assert issubclass(NonFiniteLossError, FloatingPointError)


def test_nan_loss_keeps_the_last_good_checkpoint_of_the_run(malaria_small, tmp_path, monkeypatch):
    gen = tiny(seed=3)
    snapshots: list = []
    monkeypatch.setattr(gen, "forward", nan_after(gen, 4, snapshots))
    config = GeneratorTrainConfig(steps=10, batch_size=16, log_every=1, checkpoint_every=2, sample_every=0)
    with pytest.raises(NonFiniteLossError, match=r"step 5\b"):
        train_generator(gen, malaria_small, config=config, out_dir=tmp_path)
    rows = read_jsonl(tmp_path / "log.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # no NaN row logged
    # the checkpoint on disk is the state after step 4, the last good one
    saved = load_file(str(tmp_path / "checkpoint" / "model.safetensors"))
    assert snapshots and set(saved) == set(snapshots[0])
    for k, v in snapshots[0].items():
        assert torch.equal(saved[k], v), k
    assert not (tmp_path / "samples.png").exists()


def test_huge_learning_rate_raises_non_finite(malaria_small, tmp_path):
    config = GeneratorTrainConfig(steps=30, batch_size=16, lr=1e12, log_every=0, checkpoint_every=0, sample_every=0)
    with pytest.raises(NonFiniteLossError, match=r"step \d+"):
        train_generator(tiny(), malaria_small, config=config, out_dir=tmp_path)
    assert not (tmp_path / "checkpoint").exists()


def test_non_finite_gradients_never_reach_the_checkpoint(malaria_small, tmp_path, monkeypatch):
    gen = tiny(seed=2)
    original = gen.forward
    calls = {"n": 0}

    def forward(images, labels):
        calls["n"] += 1
        losses = original(images, labels)
        if calls["n"] == 2:  # finite loss value, NaN gradient for one weight
            losses = {**losses, "loss": losses["loss"] + torch.sqrt(gen.label_embed_dec.weight.sum() * 0)}
        return losses

    monkeypatch.setattr(gen, "forward", forward)
    config = GeneratorTrainConfig(steps=5, batch_size=16, log_every=1, checkpoint_every=2, sample_every=0)
    with pytest.raises(NonFiniteLossError, match=r"step [23]\b"):
        train_generator(gen, malaria_small, config=config, out_dir=tmp_path)
    ckpt = tmp_path / "checkpoint" / "model.safetensors"
    if ckpt.exists():
        bad = [k for k, v in load_file(str(ckpt)).items() if v.is_floating_point() and not torch.isfinite(v).all()]
        assert not bad, f"the checkpoint kept as 'last good' holds non-finite tensors: {bad}"
