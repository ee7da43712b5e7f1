"""Hub-compatible checkpoints: config.json + model.safetensors + a README.md model card; ``synthaug.Generator``;
a Hub id without a network is refused in one line; checkpoints written before the card still load."""
from __future__ import annotations

import json

import pytest
import torch

import synthaug
from synthaug import Generator, create_generator, load_generator


def _gen():
    torch.manual_seed(0)
    gen = create_generator("cvae-tiny", num_classes=2, image_size=16, channels=3)
    gen.class_names = ["Parasitized", "Uninfected"]
    gen.training_record = {"dataset": "malaria", "steps": 5, "groups": 7, "synthaug_version": synthaug.__version__}
    return gen


def _same(a, b) -> bool:
    seed = torch.Generator().manual_seed(1)
    return torch.equal(a.sample(4, generator=seed), b.sample(4, generator=torch.Generator().manual_seed(1)))


def test_generator_is_exported_and_loads_what_save_pretrained_wrote(tmp_path):
    assert "Generator" in synthaug.__all__ and synthaug.Generator is Generator
    gen = _gen()
    gen.save_pretrained(tmp_path / "g")
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["README.md", "config.json", "model.safetensors"]
    loaded = Generator.from_pretrained(tmp_path / "g")
    assert loaded.class_names == gen.class_names and loaded.training_record == gen.training_record
    assert _same(gen, loaded)
    with pytest.raises(TypeError, match="synthaug.Generator.from_pretrained"):  # the name the message gives exists
        type(create_generator("dcgan", num_classes=2, image_size=32, channels=3)).from_pretrained(tmp_path / "g")


def test_the_model_card_has_hub_front_matter_the_training_record_and_the_gate(tmp_path):
    from huggingface_hub import ModelCard

    gen = _gen()
    gen.save_pretrained(tmp_path / "g")
    card = ModelCard.load(tmp_path / "g" / "README.md")
    assert card.data.library_name == "synthaug" and "cvae-tiny" in card.data.tags
    assert "| dataset | malaria |" in card.text and "0: Parasitized, 1: Uninfected" in card.text
    assert "Not measured" in card.text  # no gate result known yet
    quality = {"cas": {"cas": 0.7, "real_score": 0.9, "val_items": 2721, "seeds": [0, 1, 2]},
               "gate": {"passed": False, "reason": "CAS ratio 0.78 < 0.8", "ratio": 0.78}}
    (tmp_path / "quality.json").write_text(json.dumps(quality))
    gen.save_pretrained(tmp_path / "g", quality=tmp_path / "quality.json")
    text = (tmp_path / "g" / "README.md").read_text()
    assert "**rejected**" in text and "CAS ratio 0.78 < 0.8" in text and "2721 real validation images" in text
    gen.training_record = {**gen.training_record, "gate_checks": [{"step": 4, "passed": True, "ratio": 0.85,
                                                                  "reason": "CAS ratio 0.85 >= 0.8"}]}
    gen.save_pretrained(tmp_path / "g2")
    assert "**passed** at step 4" in (tmp_path / "g2" / "README.md").read_text()
    with pytest.raises(ValueError, match="not a readable quality.json"):
        gen.save_pretrained(tmp_path / "g3", quality=tmp_path / "nope.json")


def test_a_checkpoint_without_a_card_still_loads(tmp_path):
    gen = _gen()
    gen.save_pretrained(tmp_path / "old")
    (tmp_path / "old" / "README.md").unlink()  # what synthaug wrote before model cards
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    for key in ("class_names", "training", "synthaug_version", "torch_version", "format"):
        config.pop(key)  # and before class names and training records
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    assert _same(gen, load_generator(tmp_path / "old")) and _same(gen, Generator.from_pretrained(tmp_path / "old"))


def test_a_hub_id_without_network_is_refused_in_one_line(tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # as HF_HUB_OFFLINE=1 does, and nothing in the cache
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    with pytest.raises(OSError) as err:
        Generator.from_pretrained("some-org/no-such-generator")
    text = str(err.value)
    assert "'some-org/no-such-generator' is no local folder" in text and "\n" not in text
    assert "HF_HUB_OFFLINE=1" in text and "local checkpoint folder" in text
