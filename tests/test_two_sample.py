"""The classifier two-sample test (synthaug.quality.metrics.two_sample): the worked example of adding a metric.

Unit tests on features made up here (fast), then one evaluation of real malaria cells with the metric added to
the default ones."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from synthaug.bench.tables import quality_tables
from synthaug.data import Splits
from synthaug.mix.pool import SyntheticPool
from synthaug.quality import format_report, evaluate_generator, get_feature_extractor
from synthaug.quality.metrics import DEFAULT_METRICS, MetricContext, create_metric, list_metrics
from synthaug.quality.metrics.two_sample import two_sample_test

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: see conftest.py


def _features(n: int, shift: float, seed: int) -> torch.Tensor:
    return torch.randn(n, 16, generator=torch.Generator().manual_seed(seed)) + shift


def test_alike_features_score_chance_and_shifted_ones_give_themselves_away():
    alike = two_sample_test(_features(800, 0.0, 0), _features(800, 0.0, 1), seed=0)
    # 1600 held-out guesses: the sd of a chance accuracy is 0.0125; 0.05 is 4 sd
    assert alike["items_per_side"] == 800 and abs(alike["accuracy"] - 0.5) < 0.05 and alike["p_value"] > 0.01
    assert alike["accuracy_ci"][0] < 0.5 < alike["accuracy_ci"][1]
    # a shift of 1 in each of 16 dimensions: distance 4 between the means, the best possible accuracy 0.977
    shifted = two_sample_test(_features(800, 0.0, 0), _features(800, 1.0, 1), seed=0)
    assert shifted["accuracy"] > 0.93 and shifted["p_value"] < 1e-6 and shifted["accuracy_ci"][0] > 0.9
    assert two_sample_test(_features(800, 0.0, 0), _features(800, 1.0, 1), seed=0) == shifted  # repeatable
    capped = two_sample_test(_features(800, 0.0, 0), _features(300, 0.5, 1), max_items=200, seed=0)
    assert capped["items_per_side"] == 200  # the smaller side, at most max_items
    assert two_sample_test(_features(3, 0.0, 0), _features(800, 0.0, 1), folds=5)["accuracy"] is None


def test_the_metric_is_registered_outside_the_default_set_and_checks_its_options():
    assert "two_sample" in list_metrics() and "two_sample" not in DEFAULT_METRICS
    assert create_metric("two_sample", folds=3).options.folds == 3
    for bad, message in (({"folds": 1}, "folds=1"), ({"max_items": 0}, "max_items=0"), ({"steps": 0}, "steps=0"),
                         ({"weight_decay": -1}, "weight_decay=-1"), ({"fold": 3}, "did you mean 'folds'")):
        with pytest.raises(ValueError, match=message):
            create_metric("two_sample", **bad)


class Part:
    """The part of a split the metric reads: its targets and length."""

    def __init__(self, targets: np.ndarray) -> None:
        self.targets = targets

    def __len__(self) -> int:
        return len(self.targets)


def test_the_metric_on_a_context_overall_and_per_class_with_its_report_rows():
    val_labels, syn_labels = np.repeat([0, 1], 200), np.repeat([0, 1], 150)
    # class 0 alike, class 1 shifted
    val = torch.cat([_features(200, 0.0, 0), _features(200, 2.0, 1)])
    syn = torch.cat([_features(150, 0.0, 2), _features(150, 3.0, 3)])
    splits = SimpleNamespace(val=Part(val_labels), classes=["a", "b"])
    context = MetricContext(source=None, splits=splits, extractor=None, own_split=True, recipe={}, seed=0,
                            images=np.zeros((300, 3, 8, 8), np.uint8), labels=syn_labels, train_features=val,
                            synthetic_features=syn, val_features=val, rng=np.random.default_rng(0))
    metric = create_metric("two_sample")
    record = metric.compute(context)["two_sample"]
    assert record["split"] == "val" and record["folds"] == 5 and record["overall"]["items_per_side"] == 300
    assert abs(record["per_class"]["a"]["accuracy"] - 0.5) < 0.1 and record["per_class"]["b"]["accuracy"] > 0.85
    result = {"two_sample": record}
    lines = metric.text_section(result)
    assert lines[0].startswith("classifier two-sample test") and "300 real validation" in lines[0]
    assert "per class: a " in lines[1] and metric.text_section({"two_sample": None}) == []
    assert metric.table_values([result, {}], "b") == [[record["per_class"]["b"]["accuracy"], None]]


# --------------------------------------------------------------------------- with real cells
def _subset(splits: Splits, n_train: int, n_val: int, n_test: int) -> Splits:
    rng = np.random.default_rng(0)

    def pick(ds, n):
        return ds.subset(np.sort(rng.choice(len(ds), size=min(n, len(ds)), replace=False)))

    parts = {"train": pick(splits.train, n_train), "val": pick(splits.val, n_val), "test": pick(splits.test, n_test)}
    info = dict(splits.info) | {f"{k}_groups": sorted(set(v.groups.tolist())) for k, v in parts.items()}
    return Splits(parts["train"], parts["val"], parts["test"], info)


def test_evaluate_with_the_metric_added_keeps_the_default_entries_and_reports_it(malaria32, tmp_path):
    small = _subset(malaria32, 600, 300, 10)
    extractor = get_feature_extractor(small, dataset_key="malaria", seed=0, cache_dir=tmp_path, verbose=False,
                                      model="test_resnet", steps=60, batch_size=32, lr=1e-2)
    noise = np.random.default_rng(0).integers(0, 256, (300, 3, 32, 32), dtype=np.uint8)
    pool = SyntheticPool(noise, np.asarray(small.train.targets[:300], dtype=np.int64), 2, {"kind": "test"})
    result = evaluate_generator(pool, small, n=200, extractor=extractor, cas=False, out_dir=tmp_path / "q",
                                metrics=[*DEFAULT_METRICS, create_metric("two_sample", folds=4)])
    assert list(result)[5:] == ["fidelity", "reference_heldout", "memorization", "cas", "two_sample", "gate",
                                "seconds"]
    assert result["cas"] is None and "two_sample" in result["seconds"]
    record = result["two_sample"]
    assert record["folds"] == 4 and record["overall"]["items_per_side"] == result["n"]  # the pool gives what it has
    assert record["overall"]["accuracy"] > 0.9  # noise is told from real cells
    assert "classifier two-sample test" in format_report(result)
    overall, per_class = quality_tables([{"dataset": "malaria", "fraction": 1.0, "generator": "noise", "seed": 0,
                                          "q": result}])
    assert overall.header[-1] == per_class.header[-1] == "two-sample accuracy"
