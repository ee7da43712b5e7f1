"""Pure functions: statistics over seeds, metrics, config parsing."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
import torch

from synthaug.classifier import StandardAugment, compute_metrics
from synthaug.config import ConfigError, apply_overrides, from_dict, load_config
from synthaug.stats import mean_ci, paired_difference, verdict


def test_mean_ci_matches_t_interval():
    mean, lo, hi = mean_ci([0.8, 0.9, 1.0])
    # t(0.975, 2) = 4.302653; sd = 0.1; half = 4.302653 * 0.1 / sqrt(3)
    assert mean == pytest.approx(0.9)
    assert hi - mean == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-5)
    assert mean - lo == pytest.approx(hi - mean)
    assert math.isnan(mean_ci([0.5])[1])


def test_paired_difference_and_verdicts():
    base = [0.80, 0.82, 0.78, 0.81, 0.79]
    better = [b + 0.05 + e for b, e in zip(base, [0.001, -0.002, 0.0, 0.002, -0.001])]
    d = paired_difference(better, base)
    assert d["mean"] == pytest.approx(0.05, abs=1e-3) and d["lo"] > 0 and d["p"] < 0.001
    assert verdict(d["lo"], d["hi"]) == "helps"
    worse = paired_difference(base, better)
    assert verdict(worse["lo"], worse["hi"]) == "hurts"
    noisy = paired_difference([0.8, 0.9, 0.7], [0.85, 0.8, 0.75])
    assert verdict(noisy["lo"], noisy["hi"]) == "no significant difference"
    assert verdict(float("nan"), float("nan")) == "too few seeds to tell"
    with pytest.raises(ValueError):
        paired_difference([1, 2], [1])


def test_binary_metrics_by_hand():
    # positive class 0; truth: 0,0,1,1 ; predicted class-0 probability 0.9, 0.4, 0.6, 0.1
    p0 = torch.tensor([0.9, 0.4, 0.6, 0.1])
    probs = torch.stack([p0, 1 - p0], dim=1)
    m = compute_metrics(probs, torch.tensor([0, 0, 1, 1]), positive=0)
    assert m["sensitivity"] == pytest.approx(0.5)   # one of two positives found
    assert m["specificity"] == pytest.approx(0.5)   # one of two negatives correct
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["balanced_accuracy"] == pytest.approx(0.5)
    assert m["auroc"] == pytest.approx(0.75)        # 3 of 4 positive/negative pairs ordered right
    assert m["f1"] == pytest.approx(0.5)


def test_multiclass_metrics_perfect():
    probs = torch.eye(3)[[0, 1, 2, 0, 1, 2]]
    m = compute_metrics(probs, torch.tensor([0, 1, 2, 0, 1, 2]))
    assert all(v == pytest.approx(1.0) for v in m.values())


def test_standard_augment_keeps_pixels_and_rejects_unknown():
    torch.manual_seed(0)
    x = torch.arange(2 * 4 * 4, dtype=torch.uint8).view(2, 4, 4)
    seen = {tuple(StandardAugment()(x).flatten().tolist()) for _ in range(64)}
    assert len(seen) == 8  # the 8 symmetries of the square
    assert all(sorted(s) == sorted(x.flatten().tolist()) for s in seen)
    assert torch.equal(StandardAugment("none")(x), x)
    with pytest.raises(ValueError, match="flip"):
        StandardAugment("flips")


@dataclass
class Inner:
    steps: int = 1
    lr: float = 0.1


@dataclass
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    seeds: list[int] = field(default_factory=lambda: [0])
    root: str | None = None


def test_config_types_unknown_keys_and_overrides(tmp_path):
    cfg = from_dict(Outer, {"inner": {"steps": 3, "lr": 1}, "seeds": [1, 2]})
    assert cfg.inner.steps == 3 and cfg.inner.lr == 1.0 and cfg.seeds == [1, 2] and cfg.root is None
    with pytest.raises(ConfigError, match="(?i)did you mean 'steps'"):
        from_dict(Outer, {"inner": {"stepz": 3}})
    with pytest.raises(ConfigError, match="inner.steps: expected an integer"):
        from_dict(Outer, {"inner": {"steps": "many"}})
    with pytest.raises(ConfigError, match="expected an integer"):
        from_dict(Outer, {"inner": {"steps": True}})
    assert apply_overrides({"inner": {"steps": 1}}, ["inner.steps=5", "seeds=[3]"]) == {"inner": {"steps": 5}, "seeds": [3]}
    with pytest.raises(ConfigError, match="key.sub=value"):
        apply_overrides({}, ["nonsense"])
    path = tmp_path / "c.yaml"
    path.write_text("name: y\ninner: {steps: 2}\n")
    assert load_config(Outer, path, ["inner.lr=0.5"]).inner.lr == 0.5
    path.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Outer, path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Outer, tmp_path / "missing.yaml")


def test_a_torn_results_line_is_skipped_and_later_rows_stay_readable(tmp_path):
    from synthaug.utils import append_jsonl, read_jsonl

    path = tmp_path / "results.jsonl"
    append_jsonl(path, {"seed": 0, "arm": "real"})
    with open(path, "a") as fh:
        fh.write('{"seed": 0, "arm": "synth')  # a write cut short by a crash
    with pytest.warns(UserWarning, match="line 2"):
        assert read_jsonl(path) == [{"seed": 0, "arm": "real"}]
    append_jsonl(path, {"seed": 0, "arm": "synthetic"})  # the rerun appends the cell again
    with pytest.warns(UserWarning, match="line 2"):
        assert read_jsonl(path) == [{"seed": 0, "arm": "real"}, {"seed": 0, "arm": "synthetic"}]


def test_presets_budget_rules_old_and_v2():
    """Old presets keep their fixed steps; the v2 preset budgets epochs of real data with a floor, validates,
    mixes additively with ratio 0 in the grid and its real-matched controls; both survive config.json."""
    from pathlib import Path

    from synthaug.bench import BenchConfig, plan
    from synthaug.config import to_dict

    presets = Path(__file__).resolve().parents[1] / "configs" / "bench"
    old = load_config(BenchConfig, presets / "malaria-lowdata.yaml")
    assert old.classifier.epochs is None and old.classifier.budget(226) == old.classifier.budget(18_141) == 250
    assert old.synthetic.mix == "replace" and not old.synthetic.matched and old.classifier.bn == "recompute"
    v2 = load_config(BenchConfig, presets / "malaria-lowdata-v2.yaml")
    c = v2.classifier
    # the floor the budget study set (docs/results/budget): 1,200 steps; 4 epochs of 19,200 images go past it
    assert c.steps is None and c.budget(226) == c.min_steps == 1200 and c.budget(18_141) == 1200
    assert c.budget(19_200) == 1200 and c.budget(20_000) == 1250  # ceil(4 * 20000 / 64)
    assert c.eval_every and c.bn == "recompute"
    assert v2.synthetic.mix == "additive" and v2.synthetic.matched and 0 in v2.synthetic.ratios
    arms = [cell.arm for cell in plan(v2)]
    assert arms.count("real") == 15 and arms.count("real-matched") == 45 and arms.count("synthetic") == 45
    assert from_dict(BenchConfig, to_dict(v2)) == v2  # what config.json holds rebuilds the same config


def test_the_quality_gate_section_of_a_benchmark_config():
    """``quality.gate`` fills a GateConfig (on by default, survives config.json); a gate without CAS is refused
    before any work, saying what to change."""
    from synthaug.bench import BenchConfig
    from synthaug.config import to_dict
    from synthaug.quality import GateConfig

    assert from_dict(BenchConfig, {}).quality.gate == GateConfig(enabled=True, min_ratio=0.8, min_class_ratio=0.6)
    cfg = from_dict(BenchConfig, {"quality": {"gate": {"min_ratio": 0.7, "min_class_ratio": 0.5}}})
    assert cfg.quality.gate == GateConfig(True, 0.7, 0.5)
    assert from_dict(BenchConfig, to_dict(cfg)) == cfg  # as a report reads config.json back
    with pytest.raises(ConfigError, match="quality.gate.enabled is true but quality.cas is false.*gate.enabled: false"):
        from_dict(BenchConfig, {"quality": {"cas": False}})
    assert not from_dict(BenchConfig, {"quality": {"cas": False, "gate": {"enabled": False}}}).quality.gate.enabled
    assert from_dict(BenchConfig, {"quality": {"enabled": False, "cas": False}}).quality.gate.enabled  # nothing measured
    with pytest.raises(ConfigError, match=r"quality.gate.min_ratio=1.5 must be a number in \[0, 1\]"):
        from_dict(BenchConfig, {"quality": {"gate": {"min_ratio": 1.5}}})
    with pytest.raises(ConfigError, match="quality.gate: unknown key 'ratio'"):
        from_dict(BenchConfig, {"quality": {"gate": {"ratio": 0.5}}})
