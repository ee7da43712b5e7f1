"""The classifier protocol of the benchmark (issue 12): additive mixing leaves the real draws exactly the
baseline's, the best validation checkpoint is the one returned, BatchNorm statistics come from real images
only, ratio 0 is real-only, the real-matched control draws as much as the additive arm. Tiny models, seconds."""
from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from synthaug.bench.cell import arm_data, train_and_evaluate
from synthaug.bench.grid_config import BenchConfig, Cell, ClassifierConfig, plan
from synthaug.classifier import (GlobalBatchSampler, LocalAccelerator, StandardAugment, fit_classifier, normalize,
                                 recompute_bn, train_classifier)
from synthaug.config import ConfigError, from_dict
from synthaug.data.core import ImageArrayDataset
from synthaug.mix.additive import AdditiveSynthetic, IndexStream

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmark.md"


def images_dataset(n: int, *, value: int | None = None, size: int = 8, seed: int = 0) -> ImageArrayDataset:
    """``n`` items; with ``value`` every pixel is that grey level, else random. Labels alternate 0/1."""
    rng = np.random.default_rng(seed)
    if value is None:
        images = rng.integers(0, 256, size=(n, 3, size, size), dtype=np.uint8)
    else:
        images = np.full((n, 3, size, size), value, dtype=np.uint8)
    return ImageArrayDataset(images, np.arange(n) % 2, np.arange(n).astype(str), ["a", "b"])


class Spy(torch.nn.Module):
    """A small BatchNorm classifier that records the inputs of every training forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = torch.nn.BatchNorm2d(3)
        self.head = torch.nn.Linear(3, 2)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            self.seen.append(x.detach().clone())
        return self.head(self.bn(x).mean(dim=(2, 3)))


def fit_spy(real, **kw):
    torch.manual_seed(0)
    model = Spy()
    fit = fit_classifier(model, real, steps=kw.pop("steps", 5), batch_size=8, lr=1e-2, seed=3,
                         accelerator=LocalAccelerator(), augment=StandardAugment("flip-rot90"), **kw)
    return model, fit


# --------------------------------------------------------------------------- sampling
def test_the_real_stream_is_the_one_the_benchmark_always_drew():
    """Stream 0 keeps the old formula (seed * 1_000_003 + pass), so earlier runs' real batches are unchanged."""
    n, batch, seed = 13, 8, 2
    expected, stream, epoch = [], torch.empty(0, dtype=torch.long), 0
    for _ in range(6):
        while len(stream) < batch:
            stream = torch.cat([stream, torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))])
            epoch += 1
        expected.append(stream[:batch].tolist())
        stream = stream[batch:]
    assert list(GlobalBatchSampler(n, batch, steps=6, seed=seed)) == expected


def test_additive_batches_start_with_the_baseline_batch_and_split_across_processes():
    base = list(GlobalBatchSampler(20, 8, steps=7, seed=1))
    add = list(GlobalBatchSampler(20, 8, steps=7, seed=1, extra=5, extra_per_batch=4))
    assert [b[:8] for b in add] == base
    assert all(len(b) == 12 and all(20 <= i < 25 for i in b[8:]) for b in add)
    halves = [list(GlobalBatchSampler(20, 8, steps=7, seed=1, rank=r, world=2, extra=5, extra_per_batch=4))
              for r in (0, 1)]
    for whole, h0, h1 in zip(add, *halves):  # each process: its half of the real part, then its half of the extras
        assert h0[:4] + h1[:4] == whole[:8] and h0[4:] + h1[4:] == whole[8:]
    with pytest.raises(ValueError, match="divisible by the number of processes"):
        GlobalBatchSampler(20, 8, steps=1, seed=0, world=2, extra=5, extra_per_batch=3)


def test_index_stream_passes_over_every_item_once_per_pass():
    s = IndexStream(7, seed=4, stream=1)
    first, second = s.take(7), s.take(7)
    assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(7))
    assert not torch.equal(first, second)
    assert torch.equal(IndexStream(7, seed=4, stream=1).take(14), torch.cat([first, second]))
    assert not torch.equal(IndexStream(7, seed=4, stream=0).take(7), first)  # streams are independent


# --------------------------------------------------------------------------- fit_classifier
def test_additive_training_sees_exactly_the_baseline_real_images_augmented_alike():
    real, extra = images_dataset(20), images_dataset(6, seed=9)
    base, _ = fit_spy(real)
    add, fit = fit_spy(real, extra=extra, extra_per_batch=4)
    assert len(base.seen) == len(add.seen) == 5
    for b, a in zip(base.seen, add.seen):
        assert a.shape[0] == 12 and torch.equal(a[:8], b)  # same real items, same order, same flips and turns
    assert (fit.draws, fit.extra_draws) == (40, 20)


def test_ratio_zero_is_real_only():
    """No extras per batch (ratio 0): the same weights as training on the real images alone."""
    real, extra = images_dataset(20), images_dataset(6, seed=9)
    base, _ = fit_spy(real)
    zero, fit = fit_spy(real, extra=extra, extra_per_batch=0)
    assert fit.extra_draws == 0
    for (k, v), w in zip(base.state_dict().items(), zero.state_dict().values()):
        assert torch.equal(v, w), k
    cfg = from_dict(BenchConfig, {"synthetic": {"ratios": [0, 0.25], "mix": "additive"}, "seeds": [0],
                                  "generators": [{"name": "cvae-tiny"}]})
    assert cfg.extra_per_batch(0) == 0
    # ratio 0 gets no cell of its own: the baseline is that arm, trained once
    assert [(c.arm, c.ratio) for c in plan(cfg)] == [("real", 0.0), ("real-matched", 0.25), ("synthetic", 0.25)]


def test_the_best_validation_checkpoint_is_returned():
    real = images_dataset(20)
    scores = iter([0.5, 0.9, float("nan"), 0.9, 0.7])
    states = []

    def validate(model):
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(scores)

    model, fit = fit_spy(real, steps=10, validate=validate, eval_every=2)
    assert [s for s, _ in fit.curve] == [2, 4, 6, 8, 10]
    assert fit.best_step == 4  # the best score; its tie at step 8 keeps the earlier step; NaN is never best
    for k, v in model.state_dict().items():
        assert torch.equal(v, states[1][k]), k
    assert not all(torch.equal(v, states[-1][k]) for k, v in model.state_dict().items())
    _, last = fit_spy(real, steps=10, validate=lambda m: 0.5, eval_every=3)
    assert [s for s, _ in last.curve] == [3, 6, 9, 10] and last.best_step == 3  # the last step is always evaluated


def test_batchnorm_statistics_are_recomputed_on_real_images_only():
    real, bright = images_dataset(24, value=40), images_dataset(8, value=220)
    kept, _ = fit_spy(real, extra=bright, extra_per_batch=8, bn="keep")
    redone, fit = fit_spy(real, extra=bright, extra_per_batch=8, bn="recompute", bn_data=real, bn_batches=4)
    real_mean = normalize(torch.full((1, 3, 1, 1), 40, dtype=torch.uint8)).flatten()
    assert fit.bn_images == 24  # all real images (fewer than 4 batches of 8)
    assert torch.allclose(redone.bn.running_mean, real_mean, atol=1e-5)
    assert torch.allclose(redone.bn.running_var, torch.zeros(3), atol=1e-6)  # one grey level: no spread
    assert (kept.bn.running_mean > real_mean + 0.5).all()  # as trained: pulled towards the bright synthetic images
    # deterministic for a seed, and the layer's momentum is left as it was
    again = Spy()
    again.load_state_dict(redone.state_dict())
    assert recompute_bn(again, images_dataset(30), batches=2, batch_size=8, seed=1) == 16
    twice = Spy()
    twice.load_state_dict(redone.state_dict())
    recompute_bn(twice, images_dataset(30), batches=2, batch_size=8, seed=1)
    assert torch.equal(again.bn.running_mean, twice.bn.running_mean) and again.bn.momentum == 0.1


def test_train_classifier_keeps_its_old_meaning():
    """The library's plain trainer (CAS, feature extractors): the last weights, BatchNorm as trained."""
    real = images_dataset(20)
    torch.manual_seed(0)
    model = train_classifier(Spy(), real, steps=5, batch_size=8, lr=1e-2, seed=3, accelerator=LocalAccelerator(),
                             augment=StandardAugment("flip-rot90"))
    plain, _ = fit_spy(real)
    for k, v in plain.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k


# --------------------------------------------------------------------------- the benchmark's arms
@pytest.fixture(scope="module")
def tiny_splits():
    return SimpleNamespace(train=images_dataset(40, size=16), val=images_dataset(24, size=16, seed=1),
                           test=images_dataset(24, size=16, seed=2), num_classes=2, channels=3, classes=["a", "b"],
                           image_size=16)


def bench_config(**synthetic) -> BenchConfig:
    return from_dict(BenchConfig, {
        "seeds": [0], "generators": [{"name": "cvae-tiny"}], "synthetic": {"pool_size": 8, **synthetic},
        "classifier": {"model": "test_resnet", "steps": None, "epochs": 2, "min_steps": 3, "eval_every": 2,
                       "batch_size": 8, "eval_batch_size": 16, "bn_batches": 2}})


def test_every_arm_records_its_draws_curve_and_best_step(tiny_splits):
    from synthaug.generators import create_generator

    cfg = bench_config(ratios=[0, 0.5], mix="additive")
    gen = create_generator("cvae-tiny", num_classes=2, image_size=16, channels=3)
    rows = {}
    for cell in plan(cfg):
        out = train_and_evaluate(cfg, tiny_splits, cell, 1, LocalAccelerator(), gen if cell.generator else None)
        rows[cell.arm] = out["fields"] | {"synthetic_items": out["synthetic_items"], "val": out["val"]}
    base, matched, synth = rows["real"], rows["real-matched"], rows["synthetic"]
    assert base["classifier_steps"] == matched["classifier_steps"] == synth["classifier_steps"] == 10  # 2 x 40 / 8
    assert (base["mix"], matched["mix"], synth["mix"]) == (None, "additive", "additive")
    assert base["real_draws"] == synth["real_draws"] == 80 and base["synthetic_draws"] == 0
    assert synth["synthetic_draws"] == 40 and synth["synthetic_items"] == 8  # 4 a batch; pool_size items
    assert matched["real_draws"] == synth["real_draws"] + synth["synthetic_draws"] and matched["synthetic_draws"] == 0
    for r in rows.values():
        assert [s for s, _ in r["curve"]] == [2, 4, 6, 8, 10] and r["best_step"] in (2, 4, 6, 8, 10)
        best = dict((s, v) for s, v in r["curve"])[r["best_step"]]
        assert best == max(v for _, v in r["curve"])
        assert r["val"]["balanced_accuracy"] == pytest.approx(best, abs=1e-6)  # the kept weights were tested
        assert r["bn"] == "recompute" and r["bn_images"] == 16


def test_replace_arm_counts_its_synthetic_draws(tiny_splits):
    from synthaug.generators import create_generator

    cfg = bench_config(ratios=[0.5])
    gen = create_generator("cvae-tiny", num_classes=2, image_size=16, channels=3)
    cell = Cell("malaria-32px", 1.0, 0, "cvae-tiny", 0.5)
    data = arm_data(cfg, tiny_splits, cell, gen)
    assert data.extra is None and len(data.dataset) == 80 and data.synthetic_items == 40
    additive = bench_config(ratios=[0.5], mix="additive", pool_size=None)
    extra = arm_data(additive, tiny_splits, cell, gen).extra
    assert len(extra) == 20 and sorted(np.bincount([label for _, label in extra])) == [10, 10]  # 0.5 x 40, matched
    out = train_and_evaluate(cfg, tiny_splits, cell, 1, LocalAccelerator(), gen)
    f = out["fields"]
    assert f["mix"] == "replace" and f["real_draws"] + f["synthetic_draws"] == 10 * 8 and 0 < f["synthetic_draws"] < 80


# --------------------------------------------------------------------------- config
@pytest.mark.parametrize("classifier, synthetic, message", [
    ({"epochs": 8}, {}, "give exactly one budget"),
    ({"steps": None}, {}, "give exactly one budget"),
    ({"min_steps": 100}, {}, "floor of an `epochs` budget"),
    ({"bn": "separate"}, {}, "bn='separate'"),
    ({"eval_every": 0}, {}, "eval_every=0"),
    ({}, {"ratios": [0.0]}, "baseline"),
    ({}, {"ratios": [0.25], "real_matched": True}, "use it with mix=additive"),
    ({}, {"ratios": [0.004], "mix": "additive"}, "append no synthetic item"),
    ({}, {"ratios": [0.25, 0.255], "mix": "additive"}, "two ratios give the same batch"),
    ({}, {"ratios": [0.5], "mix": "mixed"}, "mix='mixed'"),
])
def test_bad_protocol_options_are_refused(classifier, synthetic, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        from_dict(BenchConfig, {"classifier": classifier, "synthetic": synthetic})


def test_budget_in_epochs_with_a_floor_and_processes_check():
    c = ClassifierConfig(steps=None, epochs=8, min_steps=300, batch_size=64)
    assert c.budget(400) == 300 and c.budget(18_500) == 2313  # ceil(8 * 18500 / 64)
    assert ClassifierConfig(steps=250).budget(18_500) == 250  # the old fixed budget
    cfg = from_dict(BenchConfig, {"synthetic": {"ratios": [0.1], "mix": "additive"}})  # 6 appended to 64
    cfg.check_processes(2)
    with pytest.raises(ConfigError, match="divisible by the number of processes"):
        cfg.check_processes(4)


# --------------------------------------------------------------------------- the user's additive mixing
def test_additive_synthetic_appends_to_every_real_batch():
    from synthaug import SyntheticDataset, create_generator

    real = images_dataset(40, size=16)
    gen = create_generator("cvae-tiny", num_classes=2, image_size=16, channels=3)
    synthetic = SyntheticDataset(gen, 0.2, real=real, seed=0)  # 10 synthetic items after the 40 real ones
    extra = AdditiveSynthetic(synthetic, per_real=0.25, seed=0)
    images, labels = torch.stack([real[i][0] for i in range(8)]), torch.tensor([real[i][1] for i in range(8)])
    more, more_labels = extra.extend(images, labels)
    assert torch.equal(more[:8], images) and torch.equal(more_labels[:8], labels) and more.shape[0] == 10
    drawn = [extra.extend(images, labels)[0][8:] for _ in range(4)]  # 2 per batch: 10 items, one pass
    pool = {tuple(synthetic[i][0].flatten().tolist()) for i in range(40, 50)}
    seen = [tuple(x.flatten().tolist()) for batch in [more[8:], *drawn] for x in batch]
    assert set(seen) <= pool and len(seen) == 10 and extra.drawn == 10
    again = AdditiveSynthetic(synthetic, per_real=0.25, seed=0).extend(images, labels)[0]
    assert torch.equal(again, more)
    with pytest.raises(ValueError, match="transform the real items get"):
        extra.extend(normalize(images), labels)


def test_the_additive_example_in_benchmark_md_runs(monkeypatch, tmp_path, data_root, capsys):
    """The short example of docs/benchmark.md (the block after 'Additive mixing in your own loop')."""
    text = DOC.read_text()
    block = re.search(r"Additive mixing in your own loop.*?```python\n(.*?)```", text, flags=re.S)
    assert block, "docs/benchmark.md lost its additive-mixing example"
    from synthaug import create_generator

    create_generator("cvae-tiny", num_classes=2, image_size=32, channels=3).save(tmp_path / "cvae" / "checkpoint")
    code = block.group(1).replace("runs/cvae-malaria/checkpoint", str(tmp_path / "cvae" / "checkpoint"))
    code = re.sub(r"^STEPS = \d+$", "STEPS = 2", code, flags=re.M)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SYNTHAUG_DATA", str(data_root))
    exec(compile(code, "benchmark.md", "exec"), {"__name__": "__doc_example__"})
    assert "2 steps, 32 synthetic cells appended" in capsys.readouterr().out


def test_the_operating_point_is_fixed_on_validation_and_read_on_test():
    """Sensitivity at a specificity fixed on validation (the powered answer's clinical secondary): the threshold is
    the validation negatives' score quantile, and test scores never move it."""
    from synthaug.classifier import operating_point

    def probs(scores):
        s = torch.tensor(scores, dtype=torch.float64)
        return torch.stack([1 - s, s], dim=1)

    val_neg = [i / 100 for i in range(100)]                   # negatives' scores 0.00 ... 0.99
    val = probs(val_neg + [0.5, 0.99]), torch.tensor([0] * 100 + [1, 1])
    test = probs([0.2, 0.96, 0.97, 0.5, 0.999]), torch.tensor([0, 0, 1, 1, 1])
    op = operating_point(*val, *test, positive=1, specificity=0.95)
    assert op["threshold"] == pytest.approx(0.95) and op["val_specificity"] >= 0.95
    assert op["test_sensitivity"] == pytest.approx(2 / 3) and op["test_specificity"] == pytest.approx(0.5)
    assert op["val_sensitivity"] == pytest.approx(0.5)
    moved = operating_point(*val, probs([0.0, 0.0, 0.0, 0.0, 0.0]), test[1], positive=1, specificity=0.95)
    assert moved["threshold"] == op["threshold"]               # test scores never set the threshold
    with pytest.raises(ValueError, match="both classes"):
        operating_point(*val, test[0], torch.tensor([1, 1, 1, 1, 1]), positive=1, specificity=0.95)
