"""Generator training that stops once the quality gate passes (issue 13, item 4).

Tiny and synthetic: two classes that differ in brightness (dark, bright) at 16 px, a ``cvae-tiny`` whose
sampling is replaced by a fixed drawing (a good one: dark and bright images like the data; a useless one: one
grey for both classes) while its weights train as usual, and CAS with a 30-step classifier and one seed. The
test patients are items that fail the test when anything reads them.
"""
from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch

from synthaug.cli import main
from synthaug.config import ConfigError, from_dict
from synthaug.data import ImageArrayDataset, Splits
from synthaug.generators import GeneratorTrainConfig, create_generator, load_generator, train_generator
from synthaug.quality import GateConfig, GateStopper
from synthaug.state import load_state
from synthaug.utils import read_jsonl

SIZE, CLASSES = 16, ["dark", "bright"]
TINY = {"model": "test_resnet", "steps": 30, "batch_size": 32, "lr": 1e-2}


class _Untouchable(ImageArrayDataset):
    """Test patients that fail the test when anything reads them (their count is public)."""

    def __getitem__(self, index):
        raise AssertionError("a test item was read: early stopping must use the validation patients only")

    def images_tensor(self):
        raise AssertionError("the test images were read: early stopping must use the validation patients only")

    @property
    def targets(self):
        raise AssertionError("the test labels were read: early stopping must use the validation patients only")


def _images(n: int, seed: int, cls=ImageArrayDataset) -> ImageArrayDataset:
    """``n`` items, labels alternating: dark (grey 60) or bright (grey 190) plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    base = np.where(labels == 0, 60, 190)[:, None, None, None]
    images = np.clip(base + rng.normal(0, 25, (n, 3, SIZE, SIZE)), 0, 255).astype(np.uint8)
    return cls(images, labels, np.array([f"s{seed}-{i}" for i in range(n)]), CLASSES)


@pytest.fixture(scope="module")
def splits() -> Splits:
    return Splits(_images(128, 0), _images(64, 1), _images(64, 2, _Untouchable), {"name": "brightness", "seed": 0})


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: see conftest.py


def _tiny(seed: int = 0):
    torch.manual_seed(seed)
    return create_generator("cvae-tiny", num_classes=2, image_size=SIZE, channels=3)


def _draws(gen, kind: str):
    """Replace how ``gen`` draws images (its weights still train): ``good`` like the data, ``useless`` grey."""
    def generate(noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        n = len(labels)
        if kind == "useless":
            return torch.full((n, 3, SIZE, SIZE), 0.5)
        base = torch.where(labels == 0, 60 / 255, 190 / 255).float()[:, None, None, None]
        texture = noise.repeat(1, math.ceil(3 * SIZE * SIZE / noise.shape[1]))[:, :3 * SIZE * SIZE]
        return (base + 0.08 * texture.view(n, 3, SIZE, SIZE)).clamp(0, 1)

    gen.generate = generate
    return gen


def _config(**overrides) -> GeneratorTrainConfig:
    return GeneratorTrainConfig(**{"steps": 6, "batch_size": 16, "log_every": 1, "checkpoint_every": 0,
                                   "sample_every": 0, "samples_per_class": 2, **overrides})


def _stopper(splits, **overrides) -> GateStopper:
    return GateStopper(splits, **{"n": 64, "recipe": TINY, "cas_seeds": 1, "cas_epochs": None, **overrides})


def _weights(gen) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in gen.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class _Scripted:
    """A ``stop_when`` that passes from check ``passes_at`` on (never when None), draws from every random
    generator (as a CAS classifier does) and records the steps it was called at."""

    def __init__(self, passes_at: int | None = None) -> None:
        self.passes_at, self.steps = passes_at, []

    def __call__(self, gen, step: int) -> dict:
        assert not gen.training, "stop_when must get the generator in eval mode"
        self.steps.append(step)
        torch.manual_seed(12345), np.random.seed(1), random.seed(2)
        torch.rand(3), np.random.rand(3), random.random()
        passed = self.passes_at is not None and len(self.steps) >= self.passes_at
        return {"passed": passed, "ratio": 0.9 if passed else 0.5, "weakest_class": "dark",
                "weakest_class_ratio": np.float32(0.8), "reason": "scripted"}


# --------------------------------------------------------------------------- the gate decides
def test_a_good_generator_stops_at_the_first_check(splits, tmp_path):
    gen = _draws(_tiny(), "good")
    trained = train_generator(gen, splits.train, config=_config(gate_every=2), out_dir=tmp_path,
                              stop_when=_stopper(splits))
    record = trained.training_record
    assert record["stopped_early_at"] == 2 and record["steps"] == 2 and record["planned_steps"] == 6
    assert record["gate_every"] == 2 and not trained.training
    (check,) = record["gate_checks"]
    assert check["step"] == 2 and check["passed"] is True and check["cas_ratio"] > 0.8, check
    assert check["weakest_class"] in CLASSES and check["weakest_class_ratio"] >= 0.6
    assert check["reason"].startswith("passed (CAS ratio ")
    rows = read_jsonl(tmp_path / "log.jsonl")
    assert [r["step"] for r in rows if "loss" in r] == [1, 2]  # no step after the stop
    assert [r["gate"] for r in rows if "gate" in r] == [check]
    # the checkpoint and the resume state are those of step 2, although checkpoint_every is off
    saved = json.loads((tmp_path / "checkpoint" / "config.json").read_text())["training"]
    assert saved["stopped_early_at"] == 2 and saved["gate_checks"] == [check]
    state = load_state(tmp_path / "resume")
    assert state["step"] == 2 and state["stopped_early_at"] == 2
    assert _same(load_generator(tmp_path / "checkpoint").state_dict(), trained.state_dict())
    assert (tmp_path / "samples.png").is_file()


def test_the_decision_record_is_the_gate_on_validation_cas(splits):
    stopper = _stopper(splits, gate=GateConfig(min_ratio=0.9, min_class_ratio=0.7), seed=3)
    decision = stopper(_draws(_tiny(), "good"), 40)
    assert decision["passed"] is True and decision["step"] == 40 and decision["split"] == "val"
    assert decision["min_ratio"] == 0.9 and decision["min_class_ratio"] == 0.7
    assert decision["ratio"] == pytest.approx(decision["cas"] / decision["real_score"])
    assert decision["real_score"] > 0.9 and decision["synthetic_images"] == 64
    assert set(decision["class_recall_ratio"]) == set(CLASSES) and decision["seconds"] >= 0
    # the class frequencies of the training data: 64 images of two equal classes
    assert np.bincount(stopper.labels).tolist() == [32, 32]


def test_a_useless_generator_trains_its_whole_budget_every_check_failed(splits, tmp_path, monkeypatch):
    import synthaug.quality.cas as cas

    real_trainings = []
    real_scores = cas.real_scores
    monkeypatch.setattr(cas, "real_scores", lambda *a, **k: real_trainings.append(k["seed"]) or real_scores(*a, **k))
    gen = _draws(_tiny(), "useless")
    trained = train_generator(gen, splits.train, config=_config(gate_every=2), out_dir=tmp_path,
                              stop_when=_stopper(splits))
    record = trained.training_record
    assert record["steps"] == 6 and record["stopped_early_at"] is None
    # checks at steps 2 and 4; none at the last step (training ends there anyway)
    assert [c["step"] for c in record["gate_checks"]] == [2, 4]
    for check in record["gate_checks"]:
        assert check["passed"] is False and check["reason"].startswith("generator rejected ("), check
        assert check["cas_ratio"] < 0.8 and check["weakest_class_ratio"] < 0.6
    assert [r["gate"]["step"] for r in read_jsonl(tmp_path / "log.jsonl") if "gate" in r] == [2, 4]
    assert real_trainings == [0]  # the real-trained reference: trained at the first check only


# --------------------------------------------------------------------------- off: exactly as before
def test_gate_every_0_trains_exactly_as_before_and_checks_change_no_weight(splits, tmp_path):
    runs = {}
    for name, config, stop_when in (("default", GeneratorTrainConfig(steps=6, batch_size=16, log_every=1,
                                                                     checkpoint_every=3, sample_every=0), None),
                                    ("zero", _config(gate_every=0, checkpoint_every=3), None),
                                    ("checked", _config(gate_every=2, checkpoint_every=3), _Scripted())):
        trained = train_generator(_tiny(), splits.train, config=config, out_dir=tmp_path / name, stop_when=stop_when)
        runs[name] = (trained, load_state(tmp_path / name / "resume"), read_jsonl(tmp_path / name / "log.jsonl"))
    (default, state, log), (zero, zero_state, zero_log), (checked, checked_state, checked_log) = runs.values()
    assert _same(_weights(default), _weights(zero)) and _same(_weights(default), _weights(checked))
    # off: no gate key in the training record, the resume state or the log
    for key in ("gate_every", "stopped_early_at", "gate_checks"):
        assert key not in default.training_record and key not in zero.training_record
        assert key not in state and key not in zero_state
    assert log == zero_log and not any("gate" in r for r in log)
    # checks that draw random numbers leave the training's random state as it was
    assert torch.equal(checked_state["torch_rng"], state["torch_rng"])
    assert [r for r in checked_log if "gate" not in r] == log
    assert checked.training_record["stopped_early_at"] is None and len(checked.training_record["gate_checks"]) == 2


# --------------------------------------------------------------------------- options
@pytest.mark.parametrize("bad", [-1, "x", 1.5, True, None])
def test_bad_gate_every_is_refused_naming_the_option(bad):
    with pytest.raises(ValueError, match=rf"generator training: gate_every={bad!r} must be an integer >= 0 .*0 turns"):
        GeneratorTrainConfig(gate_every=bad)


def test_stop_when_and_gate_every_go_together(splits):
    with pytest.raises(ValueError, match=r"gate_every=2 .* no stop_when was given.*GateStopper"):
        train_generator(_tiny(), splits.train, config=_config(gate_every=2))
    with pytest.raises(ValueError, match="stop_when is given but gate_every=0"):
        train_generator(_tiny(), splits.train, config=_config(), stop_when=_Scripted())
    with pytest.raises(TypeError, match="stop_when=.* must be a callable"):
        train_generator(_tiny(), splits.train, config=_config(gate_every=2), stop_when="gate")
    with pytest.raises(TypeError, match=r"stop_when\(gen, 2\) returned 0.7; it must return a dict with 'passed'"):
        train_generator(_tiny(), splits.train, config=_config(gate_every=2), stop_when=lambda gen, step: 0.7)


def test_bad_stopper_options_are_refused(splits):
    with pytest.raises(ValueError, match="GateStopper: gate.enabled=False"):
        GateStopper(splits, gate=GateConfig(enabled=False))
    with pytest.raises(TypeError, match="GateStopper: gate="):
        GateStopper(splits, gate={"min_ratio": 0.8})
    with pytest.raises(ValueError, match="GateStopper: n=0 must be an integer >= 1"):
        GateStopper(splits, n=0)
    with pytest.raises(ValueError, match="GateStopper: cas_seeds=0"):
        GateStopper(splits, cas_seeds=0)
    with pytest.raises(ValueError, match="classifier: steps=0"):
        GateStopper(splits, recipe={"steps": 0})
    no_val = Splits(splits.train, splits.train.subset(np.arange(0)), splits.test, {})
    with pytest.raises(ValueError, match="validation split is empty"):
        GateStopper(no_val)
    with pytest.raises(TypeError, match=r"has no \['train', 'val'\]"):
        GateStopper(splits.train)


# --------------------------------------------------------------------------- resume
def test_resume_after_an_early_stop_trains_no_further(splits, tmp_path):
    out = tmp_path / "run"
    first = train_generator(_tiny(), splits.train, config=_config(steps=10, gate_every=2), out_dir=out,
                            stop_when=_Scripted(passes_at=2))
    assert first.training_record["stopped_early_at"] == 4
    log = (out / "log.jsonl").read_text()
    weights = (out / "checkpoint" / "model.safetensors").read_bytes()

    def never(gen, step):
        raise AssertionError(f"a run resumed after its early stop checked the gate again at step {step}")

    again = train_generator(_tiny(seed=9), splits.train, config=_config(steps=10, gate_every=2), out_dir=out,
                            resume=True, stop_when=never)
    assert _same(_weights(again), _weights(first))
    assert again.training_record["stopped_early_at"] == 4 and again.training_record["steps"] == 4
    assert again.training_record["gate_checks"] == first.training_record["gate_checks"]
    assert (out / "log.jsonl").read_text() == log
    assert (out / "checkpoint" / "model.safetensors").read_bytes() == weights
    # resuming it without early stopping is another config: refused, not trained on
    with pytest.raises(ValueError, match="another config"):
        train_generator(_tiny(), splits.train, config=_config(steps=10), out_dir=out, resume=True)


def test_a_run_killed_between_checks_resumes_to_the_same_stop(splits, tmp_path):
    config = _config(steps=10, gate_every=2, checkpoint_every=2)
    whole = train_generator(_tiny(), splits.train, config=config, out_dir=tmp_path / "whole",
                            stop_when=_Scripted(passes_at=3))

    class Killed(Exception):
        pass

    def killed_at_the_third_check(gen, step):
        if step == 6:
            raise Killed
        return _Scripted()(gen, step)

    with pytest.raises(Killed):
        train_generator(_tiny(), splits.train, config=config, out_dir=tmp_path / "cut",
                        stop_when=killed_at_the_third_check)
    assert load_state(tmp_path / "cut" / "resume")["step"] == 4
    resumed = train_generator(_tiny(), splits.train, config=config, out_dir=tmp_path / "cut", resume=True,
                              stop_when=_Scripted(passes_at=1))
    assert _same(_weights(resumed), _weights(whole))
    assert resumed.training_record["stopped_early_at"] == whole.training_record["stopped_early_at"] == 6
    assert [(c["step"], c["passed"]) for c in resumed.training_record["gate_checks"]] == [(2, False), (4, False),
                                                                                          (6, True)]
    assert read_jsonl(tmp_path / "cut" / "log.jsonl") == read_jsonl(tmp_path / "whole" / "log.jsonl")


# --------------------------------------------------------------------------- the benchmark
def _bench(**train) -> dict:
    return {"name": "g", "seeds": [0], "generators": [{"name": "cvae-tiny", "train": {"steps": 6, "batch_size": 16,
                                                                                       "sample_every": 0, **train}}],
            "quality": {"enabled": False, "cas_images": 64, "extractor_steps": 30,
                        "gate": {"min_ratio": 0.0, "min_class_ratio": 0.0}}}


def test_a_bench_generator_entry_stops_on_its_cells_validation_patients(splits, tmp_path):
    from accelerate import Accelerator

    from synthaug.bench.cell import early_stop_fields, gate_stopper, generator_for
    from synthaug.bench.grid_config import BenchConfig, Cell

    cfg = from_dict(BenchConfig, _bench(gate_every=2))
    spec, cell = cfg.generators[0], Cell("brightness-16px", 1.0, 0, "cvae-tiny", 0.3)
    stopper = gate_stopper(cfg, spec, splits, cell, 1, tmp_path)
    assert isinstance(stopper, GateStopper) and stopper.splits is splits and stopper.n == 64
    assert (stopper.gate.min_ratio, stopper.gate.min_class_ratio) == (0.0, 0.0)  # quality.gate's thresholds
    assert stopper.recipe["model"] == "test_resnet" and stopper.recipe["steps"] == 30
    gen = generator_for(spec, splits, cell, tmp_path, Accelerator(), "replicate", stop_when=stopper)
    assert gen.training_record["stopped_early_at"] == 2  # thresholds 0: the first check passes
    assert early_stop_fields(gen) == {"generator_steps": 2, "stopped_early_at": 2}
    done = json.loads((tmp_path / "generators" / "brightness-16px" / "frac1" / "seed0" / "cvae-tiny" /
                       "done.json").read_text())
    assert done["steps"] == 2 and done["stopped_early_at"] == 2 and done["spec"] == spec.fingerprint()
    # without gate_every: no stopper, nothing in the rows
    plain = from_dict(BenchConfig, _bench())
    assert gate_stopper(plain, plain.generators[0], splits, cell, 1, tmp_path) is None
    assert early_stop_fields(_tiny()) == {}


def test_bench_configs_written_before_early_stopping_still_match(tmp_path):
    from synthaug.bench.grid_config import BenchConfig, GeneratorSpec
    from synthaug.bench.paths import with_neutral_defaults
    from synthaug.config import to_dict

    # a reused generator's done.json: the fingerprint of gate_every 0 is the one from before the option
    assert GeneratorSpec(name="cvae-tiny", train=GeneratorTrainConfig(steps=4, batch_size=16)).fingerprint() == \
        "7402239851bc"
    assert GeneratorSpec(name="cvae-tiny", train=GeneratorTrainConfig(steps=4, batch_size=16,
                                                                      gate_every=2)).fingerprint() != "7402239851bc"
    resolved = json.loads(json.dumps(to_dict(from_dict(BenchConfig, _bench()))))
    old = json.loads(json.dumps(resolved))
    del old["generators"][0]["train"]["gate_every"]
    assert with_neutral_defaults(old) == resolved
    with pytest.raises(ConfigError, match=r"generators\[0\] \(cvae-tiny\): train.gate_every=2 .*quality.gate.enabled"):
        from_dict(BenchConfig, {**_bench(gate_every=2), "quality": {"gate": {"enabled": False}}})
    with pytest.raises(ConfigError, match=r"generators\[0\].train.gate_every: expected an integer, got 'x'"):
        from_dict(BenchConfig, _bench(gate_every="x"))
    with pytest.raises(ConfigError, match=r"generators\[0\].train: generator training: gate_every=-1 must be an int"):
        from_dict(BenchConfig, _bench(gate_every=-1))


# --------------------------------------------------------------------------- synthaug train --gate-every
def test_train_command_gate_every(tmp_path, monkeypatch, capsys):
    from PIL import Image

    import synthaug.quality

    monkeypatch.setenv("SYNTHAUG_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "cells"
    rng = np.random.default_rng(0)
    for c, grey in (("dark", 60), ("bright", 190)):
        (data / c).mkdir(parents=True)
        for p in range(10):
            for i in range(4):
                pixels = np.clip(grey + rng.normal(0, 25, (20, 20, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(data / c / f"P{p}_{i}.png")
    cfg = tmp_path / "g.yaml"
    cfg.write_text(f"data: {{name: {data}, image_size: 16, group_pattern: '^(P\\d+)_', split: [0.6, 0.2, 0.2]}}\n"
                   "generator: {name: cvae-tiny, train: {steps: 6, batch_size: 8, sample_every: 0}}\n")
    made = []

    class Stopper(_Scripted):
        def __init__(self, splits, **options):
            super().__init__(passes_at=1)
            made.append((splits, options))

    monkeypatch.setattr(synthaug.quality, "GateStopper", Stopper)
    assert main(["train", "--config", str(cfg), "--gate-every", "2", "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["generator"]["train"]["gate_every"] == 2
    assert main(["train", "--config", str(cfg), "--gate-every", "2", "--out", str(tmp_path / "run")]) == 0
    (splits, options), = made
    assert len(splits.val) > 0 and options["n"] == len(splits.train)  # the split's validation patients decide
    saved = json.loads((tmp_path / "run" / "checkpoint" / "config.json").read_text())["training"]
    assert saved["stopped_early_at"] == 2 and saved["steps"] == 2
    with pytest.raises(SystemExit):
        main(["train", "--config", str(cfg), "--gate-every", "x"])
    assert "--gate-every: 'x' is not a number of steps" in capsys.readouterr().err
    assert main(["train", "--config", str(cfg), "--set", "generator.train.gate_every=-1", "--dry-run"]) == 2
    assert "gate_every=-1 must be an integer >= 0" in capsys.readouterr().err
