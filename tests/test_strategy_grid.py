"""The strategies grid (issue 14): its config and arms, the donor pool's patients, one tiny run on the real
malaria data through every strategy and control, resume, and the report's analysis and headline."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from synthaug.bench.strategy_config import StrategiesConfig, StrategySpec, arms, plan_strategies
from synthaug.config import ConfigError, from_dict

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ROOT = Path(__file__).resolve().parents[1]

TINY_DDPM = {"name": "ddpm", "options": {"base_width": 8, "channel_mults": [1, 2], "num_res_blocks": 1,
                                         "attention": False, "timesteps": 50, "sample_steps": 2},
             "train": {"steps": 4, "batch_size": 16, "checkpoint_every": 4, "sample_every": 4}}
EVERY_KIND = [{"kind": "samples", "per_real": 0.25, "pool_size": 24}, {"kind": "weighted", "per_real": 0.25, "weight": [0.0, 0.5]},
              {"kind": "teacher", "per_real": 0.25, "temperature": 2.0},
              {"kind": "minority", "per_real": 0.25, "target_class": "weakest"},
              {"kind": "edits", "per_real": 0.25, "strength": 0.1, "per_image": 2},
              {"kind": "pretrain", "steps": 3, "pool_size": 32}, {"kind": "donor", "per_real": 0.25},
              {"kind": "mixup", "per_real": 0.25, "options": {"alpha": 0.4}}]


def config(**over) -> StrategiesConfig:
    data = {"datasets": [{"name": "malaria", "image_size": 16}], "fractions": [0.02], "seeds": [0],
            "generator": TINY_DDPM, "donor": {"patients": 0.05}, "strategies": EVERY_KIND,
            "synthetic": {"pool_size": 32},
            "classifier": {"model": "test_resnet", "steps": 6, "eval_every": 3, "batch_size": 16, "bn_batches": 2},
            "quality": {"enabled": False}, "positive_class": "Parasitized", **over}
    return from_dict(StrategiesConfig, data)


# --------------------------------------------------------------------------- config and arms
def test_per_real_was_called_ratio_an_old_config_loads_with_a_warning_and_an_old_record_reads_silently():
    """One word per meaning: ``per_real`` (synthetic items appended per real item of a batch) was ``ratio`` in
    strategies configs; the old key loads with a FutureWarning naming the new one, both at once are refused, and
    a run record or row written with the old name reads under the new one (arm names are unchanged: ``r0.25``)."""
    import warnings

    from synthaug.bench.paths import upgrade_row, with_current_names, with_neutral_defaults

    with pytest.warns(FutureWarning, match="'ratio' is now called 'per_real'"):
        old = config(strategies=[{"kind": "samples", "ratio": [0.25, 0.5]}])
    assert [a.name for a in arms(old)] == [a.name for a in arms(config(strategies=[{"kind": "samples",
                                                                                      "per_real": [0.25, 0.5]}]))]
    assert "samples r0.5" in [a.name for a in arms(old)]
    with pytest.raises(ConfigError, match="both 'ratio' and 'per_real'"):
        config(strategies=[{"kind": "samples", "ratio": 0.25, "per_real": 0.5}])
    record = json.loads((ROOT / "docs" / "results" / "malaria-strategies" / "run-record" /
                         "config.shard-0-of-5.json").read_text())["config"]
    assert "ratio" in record["strategies"][0] and "per_real" not in record["strategies"][0]
    current = with_current_names(record)
    assert current["strategies"][0]["per_real"] == record["strategies"][0]["ratio"]
    assert with_neutral_defaults(record)["strategies"][0]["per_real"] == record["strategies"][0]["ratio"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a record of an old run is read without a warning
        from_dict(StrategiesConfig, with_neutral_defaults(record))
    row = {"mix": "strategy", "ratio": 0.25, "setting": {"ratio": 0.25, "strength": 0.1}, "arm": "edits r0.25 s0.1"}
    assert upgrade_row(row) == {"mix": "strategy", "per_real": 0.25, "setting": {"per_real": 0.25, "strength": 0.1},
                                "arm": "edits r0.25 s0.1"}
    grid_row = {"mix": "additive", "ratio": 0.25}
    assert upgrade_row(grid_row) is grid_row  # the ratio grid's rows keep their field


def test_every_strategy_has_its_control_and_shared_controls_train_once():
    cfg = config()
    names = [a.name for a in arms(cfg)]
    assert names[0] == "baseline" and len(names) == len(set(names))
    by_name = {a.name: a for a in arms(cfg)}
    controls = {a.strategy: by_name[a.control].kind for a in arms(cfg) if a.role == "synthetic"}
    assert controls == {"samples": "real-repeat", "weighted": "weighted-real", "teacher": "teacher-real",
                        "minority": "minority-real", "edits": "real-repeat", "pretrain": "pretrain-real",
                        "donor": "donor-real", "mixup": "mixup-real"}
    # samples and edits share one real-repeat control at per_real 0.25; each weight has its weighted-real control
    assert sum(a.kind == "real-repeat" for a in arms(cfg)) == 1
    assert by_name["weighted r0.25 w0.5"].control == "weighted-real r0.25 w0.5"
    # a list is one setting per value; the control keeps what the strategy shares with it (teacher, class, steps)
    assert [a.setting["weight"] for a in arms(cfg) if a.kind == "weighted"] == [0.0, 0.5]
    assert by_name["teacher r0.25 T2"].control == "teacher-real r0.25 T2"
    assert by_name["pretrain steps3"].control == "pretrain-real steps3"
    assert len(plan_strategies(config(seeds=[0, 1], fractions=[0.02, 0.05]))) == 4 * len(names)


@pytest.mark.parametrize("over, message", [
    ({"strategies": [{"kind": "cutmix"}]}, "kind"),
    ({"strategies": [{"kind": "samples", "per_real": 0.01}]}, "appends no item"),
    ({"strategies": [{"kind": "samples"}, {"kind": "samples"}]}, "distinct label"),
    ({"strategies": [{"kind": "edits", "strength": 1.5}]}, "strength"),
    ({"strategies": [{"kind": "weighted", "weight": [0.1, 0.1]}]}, "distinct numbers"),
    ({"fractions": [0.9], "donor": {"patients": 0.25}}, "donor.patients"),
    ({"datasets": [{"name": "malaria"}, {"name": "malaria", "image_size": 16}]}, "one data set"),
    ({"strategies": [{"kind": "samples", "label": "real-repeat"}]}, "name the baseline or a control"),
    ({"generator": {**TINY_DDPM, "train": {"steps": 4, "gate_every": 2}}}, "gate_every"),
])
def test_bad_strategy_configs_are_refused_with_the_key(over, message):
    with pytest.raises(ConfigError, match=message):
        config(**over)


def test_a_strategy_spec_expands_its_lists_on_its_own_parameters_only():
    spec = StrategySpec(kind="edits", per_real=[0.25, 0.5], strength=[0.1, 0.2], weight=[0.1, 0.9])
    assert spec.settings() == [{"per_real": 0.25, "strength": 0.1}, {"per_real": 0.25, "strength": 0.2},
                               {"per_real": 0.5, "strength": 0.1}, {"per_real": 0.5, "strength": 0.2}]


# --------------------------------------------------------------------------- the donor pool
def test_donor_patients_are_training_patients_outside_every_fraction(malaria_dir, data_root, monkeypatch):
    from synthaug.bench.strategy_run import donor_pool

    monkeypatch.setenv("SYNTHAUG_DATA", str(data_root))
    cfg = config(fractions=[0.02, 0.25], donor={"patients": 0.25})
    full, items, patients = donor_pool(cfg, seed=0)
    local = set(cfg.data.load(0, 0.25).info["train_groups"])
    assert patients and not set(patients) & local
    assert set(patients) <= set(full.info["train_groups"])
    assert not set(patients) & (set(full.info["val_groups"]) | set(full.info["test_groups"]))
    assert set(np.asarray(items.groups).astype(str)) == set(patients)
    assert len(patients) == round(0.25 * len(full.info["train_groups"]))
    assert donor_pool(cfg, seed=0)[2] == patients  # seeded: the same pool every time


# --------------------------------------------------------------------------- one tiny run, every arm
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, data_root):
    import os

    from synthaug.bench.strategy_run import run_strategies

    old = os.environ.get("SYNTHAUG_DATA")
    os.environ["SYNTHAUG_DATA"] = str(data_root)
    try:
        out = tmp_path_factory.mktemp("strategies")
        rows = run_strategies(config(), out)
    finally:
        if old is None:
            os.environ.pop("SYNTHAUG_DATA", None)
        else:
            os.environ["SYNTHAUG_DATA"] = old
    return out, rows


def test_every_arm_trains_once_with_what_its_strategy_draws(tiny_run):
    out, rows = tiny_run
    by = {r["arm"]: r for r in rows}
    assert set(by) == {a.name for a in arms(config())}
    real = by["baseline"]["train_items"]
    # every arm but pretraining draws the baseline's real batches, and its extras on top
    assert {r["real_draws"] for r in rows} == {6 * 16}
    assert by["baseline"]["extra_draws"] == 0 and by["real-repeat r0.25"]["extra_items"] == real
    # a strategy's own pool size, else synthetic.pool_size
    assert by["samples r0.25"]["extra_per_batch"] == 4 and by["samples r0.25"]["extra_items"] == 24
    assert by["teacher r0.25 T2"]["extra_items"] == by["minority r0.25 weakest"]["extra_items"] == 32
    assert by["pretrain steps3"]["pretrain_steps"] == by["pretrain-real steps3"]["pretrain_steps"] == 3
    # the minority arm and its control take the class the baseline misses most on validation patients
    assert by["minority r0.25 weakest"]["target_class"] == by["minority-real r0.25 weakest"]["target_class"]
    assert by["minority-real r0.25 weakest"]["extra_items"] < real
    # the donor's upper bound draws the donor patients' real cells, never the cell's own
    assert by["donor-real r0.25"]["donor_patients"] >= 1
    # the donor generator's arm draws from as many distinct images as its upper bound's real cells, in their
    # class mix, sampled once per seed on disk
    assert by["donor r0.25"]["extra_items"] == by["donor-real r0.25"]["extra_items"] == by["donor r0.25"]["donor_items"]
    assert list((out / "generators").rglob("donor/seed0/*-pool-*/images.npy"))
    assert 0 <= by["teacher r0.25 T2"]["teacher_agreement"] <= 1
    # mixup mixes the generator's pool with real cells, its control real cells with real cells
    assert by["mixup r0.25 alpha0.4"]["extra_items"] == 32 and by["mixup-real r0.25 alpha0.4"]["extra_items"] == real
    assert (out / "teachers").is_dir() and list((out / "cells").glob("*.npz"))
    assert len(list((out / "generators").rglob("done.json"))) == 2  # the cell's ddpm and the donor's


def test_the_donor_generator_trained_on_the_donor_patients_only(tiny_run, data_root, monkeypatch):
    from synthaug.bench.cell import items_fingerprint
    from synthaug.bench.strategy_run import donor_pool

    out, _ = tiny_run
    monkeypatch.setenv("SYNTHAUG_DATA", str(data_root))
    cfg = config()
    done = json.loads(next((out / "generators").rglob("donor/**/done.json")).read_text())
    assert done["items_sha256"] == items_fingerprint(donor_pool(cfg, 0)[1])
    local = json.loads(next(p for p in (out / "generators").rglob("done.json") if "donor" not in p.parts).read_text())
    assert local["items_sha256"] == items_fingerprint(cfg.data.load(0, 0.02).train)


def test_a_rerun_skips_finished_arms_and_the_report_answers_in_one_sentence(tiny_run, data_root, monkeypatch):
    from synthaug.bench.strategy_report import build_strategies_report, is_strategies_run
    from synthaug.bench.strategy_run import run_strategies

    out, rows = tiny_run
    monkeypatch.setenv("SYNTHAUG_DATA", str(data_root))
    again = run_strategies(config(), out)
    assert len(again) == len(rows)
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert runs[-1]["cells_run"] == 0
    assert is_strategies_run(out)
    md, page = build_strategies_report(out, out / "report")
    text = md.read_text()
    # one seed: no verdict can be reached, and the sentence says so before the largest estimate
    assert text.splitlines()[2].startswith("**Too few seeds to answer yet; the largest estimate so far: at 3 patients")
    assert (out / "report" / "report_files" / "clinician.png").stat().st_size > 1000
    assert "donor generator" in text and "Holm p" in text and "Target (a helps verdict" in text
    # few seeds make t intervals pass 0 or 1: the report says they are shown as computed, and its time is the
    # arms' own training time beside the finished invocations' wall time
    assert "not clipped to the metric's range" in text
    trained = sum(r["seconds"] for r in rows) / 60
    assert f"Their classifier training adds up to {trained:.0f} min" in text
    assert "stopped before finishing" not in text
    with (out / "runs.jsonl").open("a") as f:  # an invocation killed before it finished
        f.write(json.dumps({"processes": 1, "started": "2026-01-01T00:00:00", "status": "started"}) + "\n")
    md, _ = build_strategies_report(out, out / "report")
    assert "1 invocation(s) stopped before finishing and were resumed" in md.read_text()


# --------------------------------------------------------------------------- analysis
def _row(arm: str, seed: int, val: float, test: float, fraction: float = 0.02, patients: int = 3) -> dict:
    metrics = lambda v: {m: v for m in ("accuracy", "balanced_accuracy", "auroc", "f1", "sensitivity",  # noqa: E731
                                        "specificity")}
    return {"dataset": "malaria-16px", "fraction": fraction, "seed": seed, "arm": arm, "train_patients": patients,
            "val": metrics(val), "test": metrics(test)}


def test_the_verdict_reads_against_the_stronger_control_on_validation_and_holm_adjusts():
    from synthaug.bench.strategy_report import analyze_strategies, headline

    cfg = config(seeds=[0, 1, 2, 3, 4], strategies=[{"kind": "teacher", "per_real": 0.25},
                                                    {"kind": "samples", "per_real": 0.25}])
    rows = []
    for s in range(5):
        jitter = 0.001 * s
        rows += [_row("baseline", s, 0.70, 0.70 + jitter), _row("real-repeat r0.25", s, 0.69, 0.69),
                 # the teacher's control is stronger on validation: the teacher arm is read against it
                 _row("teacher-real r0.25 T2", s, 0.75, 0.74 + jitter),
                 _row("teacher r0.25 T2", s, 0.76, 0.77 + 2 * jitter),
                 _row("samples r0.25", s, 0.71, 0.60 + jitter * 3)]
    analysis = analyze_strategies(rows, cfg)
    by = {v["strategy"]: v for v in analysis["verdicts"]}
    assert by["teacher"]["reference"] == "teacher-real r0.25 T2"
    assert by["teacher"]["diff"]["mean"] == pytest.approx(0.03 + 0.001 * 2)
    assert by["samples"]["reference"] == "baseline" and by["samples"]["verdict"] == "hurts"
    raw = [by["teacher"]["diff"]["p"], by["samples"]["diff"]["p"]]
    assert sorted([by["teacher"]["p_holm"], by["samples"]["p_holm"]]) == pytest.approx(
        sorted([min(1, 2 * min(raw)), max(min(1, 2 * min(raw)), max(raw))]))
    sentence = headline(analysis)
    if by["teacher"]["verdict"] == "helps":
        assert sentence.startswith("At 3 patients, teacher (per_real 0.25, temperature 2) changed balanced accuracy by "
                                   "+0.032")
    else:  # nothing helped: it says so before the row that came closest
        assert sentence.startswith("No strategy helped at any number of patients")
        assert "the closest: at 3 patients, teacher (per_real 0.25, temperature 2) changed balanced accuracy by +0.032" \
            in sentence
    assert "against teacher-real r0.25 T2" in sentence and "samples hurt" in sentence


def test_the_clinician_figure_shows_every_seed_inside_0_to_100(tmp_path, monkeypatch):
    from synthaug.bench import plots
    from synthaug.bench.clinician import clinician_figure
    from synthaug.bench.strategy_report import analyze_strategies

    cfg = config(seeds=[0, 1], strategies=[{"kind": "samples", "per_real": 0.25}])
    # two seeds far apart: a t interval over them would leave [0, 100] missed infections per 100
    rows = [_row("baseline", 0, 0.70, 0.05), _row("baseline", 1, 0.70, 0.95),
            _row("real-repeat r0.25", 0, 0.69, 0.10), _row("real-repeat r0.25", 1, 0.69, 0.90),
            _row("samples r0.25", 0, 0.71, 0.02), _row("samples r0.25", 1, 0.71, 0.97)]
    analysis = analyze_strategies(rows, cfg)
    base = next(b for b in analysis["baselines"] if b["arm"] == "baseline")
    assert base["test"]["sensitivity"]["values"] == [0.05, 0.95]
    drawn = {}
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: drawn.setdefault("fig", fig) and path)
    clinician_figure(analysis, None, tmp_path / "clinician.png")
    right = drawn["fig"].axes[1]
    assert right.get_ylim() == (0, 100)
    dots = sorted(round(y, 6) for line in right.lines if line.get_marker() == "o" for y in line.get_ydata())
    assert dots == [3.0, 5.0, 95.0, 98.0]  # 100 x (1 - sensitivity), one per seed, baseline and samples


def test_the_headline_says_plainly_when_nothing_helped_and_names_the_closest():
    from synthaug.bench.strategy_report import analyze_strategies, headline, target_line

    cfg = config(seeds=[0, 1, 2], strategies=[{"kind": "samples", "per_real": 0.25}, {"kind": "edits", "per_real": 0.25}])
    rows = []
    for s in range(3):
        rows += [_row("baseline", s, 0.70, 0.70 + 0.01 * s), _row("real-repeat r0.25", s, 0.69, 0.69),
                 _row("samples r0.25", s, 0.71, 0.69 + 0.013 * s), _row("edits r0.25 s0.1", s, 0.72, 0.705 + 0.008 * s)]
    analysis = analyze_strategies(rows, cfg)
    sentence = headline(analysis)
    assert sentence.startswith("No strategy helped at any number of patients (Holm-adjusted, against the stronger "
                               "control); the closest: at 3 patients, edits (per_real 0.25, strength 0.1)")
    assert "**not met**" in target_line(analysis)
    # the line says whether the target was tried with sources that passed the quality gate
    by = {v["strategy"]: v for v in analysis["verdicts"]}
    by["samples"]["gate"], by["edits"]["gate"] = "failed", "not measured"
    line = target_line(analysis)
    assert "Of the 2 verdicts at 7 patients or fewer, the sources' quality gates (CAS on validation patients): " \
           "failed 1, not measured 1." in line and "not about synthetic cells that carry the diagnosis" in line
    by["edits"]["gate"] = "passed"
    line = target_line(analysis)
    assert "passed 1, failed 1." in line and "Only edits at 3 patients drew from a source that passed." in line


def test_the_donor_recovers_a_share_of_the_real_donor_gain_only_when_that_gain_is_there():
    from synthaug.bench.strategy_report import analyze_strategies, donor_table, donor_target_line

    cfg = config(seeds=[0, 1, 2], strategies=[{"kind": "donor", "per_real": 0.25}])
    rows = []
    for s in range(3):
        rows += [_row("baseline", s, 0.70, 0.70 + 0.01 * s), _row("donor-real r0.25", s, 0.8, 0.80 + 0.012 * s),
                 _row("donor r0.25", s, 0.75, 0.75 + 0.011 * s)]
    (v,) = analyze_strategies(rows, cfg)["verdicts"]
    assert v["reference"] == "baseline"  # the upper bound is not a control to beat
    assert v["share"] == pytest.approx(v["diff"]["mean"] / v["upper_diff"]["mean"]) and 0.4 < v["share"] < 0.6
    assert v["share_ci"][0] <= v["share"] <= v["share_ci"][1]
    share = 100 * v["share"]
    assert donor_target_line([v]).endswith(f"at 3 patients {'met' if v['share'] >= 0.5 else 'not met'} ({share:.0f} %).")
    flat = [dict(r, test={**r["test"], "balanced_accuracy": 0.70 + 0.01 * r["seed"]}) if r["arm"] == "donor-real r0.25"
            else r for r in rows]
    (v,) = analyze_strategies(flat, cfg)["verdicts"]
    assert math.isnan(v["share"]) and math.isnan(v["share_estimate"])  # no gain of sharing the data: nothing to recover
    assert "not measurable (the upper bound's gain is not significant)" in donor_target_line([v])
    # a gain of sharing that the seeds do not establish: the table gives the ratio as an estimate, not a share
    noisy = [dict(r, test={**r["test"], "balanced_accuracy": 0.70 + (0.2 if r["seed"] == 0 else -0.05)})
             if r["arm"] == "donor-real r0.25" else r for r in rows]
    (v,) = analyze_strategies(noisy, cfg)["verdicts"]
    assert math.isnan(v["share"]) and v["share_estimate"] == pytest.approx(v["diff"]["mean"] / v["upper_diff"]["mean"])
    assert "(an estimate only: the upper bound's gain is not significant)" in donor_table([v]).rows[0][5]


def test_weighted_items_give_the_mean_of_weight_times_cross_entropy():
    from torch.utils.data import TensorDataset

    from synthaug.strategy import TargetItems
    from synthaug.classifier import batch_loss

    images = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    items = TargetItems(TensorDataset(images, torch.tensor([0, 1, 1, 0])), 2, weight=0.25)
    image, target, weight = items[1]
    assert target.tolist() == [0.0, 1.0] and float(weight) == 0.25
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    per_item = torch.nn.functional.cross_entropy(logits, labels.argmax(1), reduction="none")
    got = batch_loss(torch.nn.CrossEntropyLoss(), logits, labels, [torch.tensor([1.0, 0.25])])
    assert got.item() == pytest.approx(((per_item * torch.tensor([1.0, 0.25])).mean()).item(), rel=1e-6)


def test_shards_split_the_grid_by_seed_so_a_seeds_donor_generator_trains_on_one_shard():
    from synthaug.bench.paths import Shard
    from synthaug.bench.strategy_run import shard_strategy_cells

    cells = plan_strategies(config(seeds=[0, 1, 2, 3, 4], fractions=[0.02, 0.05, 0.25], donor={"patients": 0.25}))
    parts = [shard_strategy_cells(cells, Shard(i, 2)) for i in range(2)]
    assert sorted(c.key() for part in parts for c in part) == sorted(c.key() for c in cells)  # each cell once
    assert [sorted({c.seed for c in part}) for part in parts] == [[0, 2, 4], [1, 3]]
    assert all({c.fraction for c in part if c.seed == s} == {0.02, 0.05, 0.25} for part in parts
               for s in {c.seed for c in part})  # every fraction of a seed with it


def test_a_sites_grid_without_the_per_seed_donor_shards_by_unit_so_both_shards_get_half(data_root, monkeypatch):
    """5 draws x 2 site sizes: by seed the shards would get 6 and 4 units; by unit they get 5 and 5. A grid with
    the per-seed ``donor`` strategy keeps sharding by seed (its fractions share the seed's donor generator)."""
    from synthaug.bench.paths import Shard
    from synthaug.bench.strategy_run import shard_strategy_cells, strategy_units, units_share_nothing

    monkeypatch.setenv("SYNTHAUG_DATA", str(data_root))
    data = {"name": "malaria", "image_size": 16, "design": DESIGN}
    sites = {"patients": [3, 7], "draws": [0, 1, 2, 3, 4]}
    cfg = config(datasets=[data], fractions=[0.02], seeds=[0, 1, 2], sites=sites, strategies=[{"kind": "samples"}])
    assert units_share_nothing(cfg)
    cells = plan_strategies(cfg)
    parts = [shard_strategy_cells(cells, Shard(i, 2), by_unit=True) for i in range(2)]
    assert sorted(c.key() for part in parts for c in part) == sorted(c.key() for c in cells)  # each cell once
    assert [len(strategy_units(part)) for part in parts] == [5, 5]
    assert not set(strategy_units(parts[0])) & set(strategy_units(parts[1]))
    assert all(len(part) == len(cells) // 2 for part in parts)  # every arm of a unit on the unit's shard
    with_donor = config(datasets=[data], fractions=[0.02], seeds=[0, 1, 2], sites=sites,
                        strategies=[{"kind": "samples"}, {"kind": "donor"}])
    assert not units_share_nothing(with_donor)
    assert not units_share_nothing(config(strategies=[{"kind": "samples"}]))  # a fractions grid


def test_fit_classifier_refuses_a_third_item_element_that_is_not_a_float_weight():
    from torch.utils.data import TensorDataset

    from synthaug.classifier import create_classifier, fit_classifier

    images = torch.zeros(8, 3, 16, 16, dtype=torch.uint8)
    flags = TensorDataset(images, torch.tensor([0, 1] * 4), torch.tensor([True, False] * 4))  # is_synthetic flags
    model = create_classifier("test_resnet", num_classes=2, channels=3)
    with pytest.raises(ValueError, match="weighted_cross_entropy"):
        fit_classifier(model, flags, steps=1, batch_size=4, lr=1e-3)


def _shared_checkpoint(folder, patients):
    """A tiny ddpm saved as a `synthaug train` run would leave it: checkpoint/ and the patients it trained on."""
    from synthaug.generators import create_generator

    torch.manual_seed(5)
    gen = create_generator("ddpm", num_classes=2, image_size=16, channels=3, **TINY_DDPM["options"])
    gen.class_names = ["Parasitized", "Uninfected"]
    gen.save_pretrained(folder / "checkpoint")
    (folder / "training_options.json").write_text(json.dumps({"splits": {"train_groups": list(patients)}}))
    return folder / "checkpoint"


def test_named_sources_a_shared_checkpoint_and_a_fine_tune_of_it(tmp_path, data_root, monkeypatch):
    """The data-sharing answer's sources in a strategies grid: a generator shared from other patients (a ready
    checkpoint: nothing trains) and its fine-tune on the unit's own patients (init_from), each drawn by the
    strategy entry that names it; a checkpoint that saw a validation patient of the unit is refused."""
    from synthaug.bench.strategy_run import run_strategies
    from synthaug.data import LeakageError

    monkeypatch.setenv("SYNTHAUG_DATA", str(data_root))
    shared = _shared_checkpoint(tmp_path / "donor", ["not-a-patient"])
    sources = {"shared": {"source": {"checkpoint": str(shared)}},
               "tuned": {**TINY_DDPM, "train": {**TINY_DDPM["train"], "steps": 2}, "init_from": str(shared)}}
    strategies = [{"kind": "samples", "label": "shared-gen", "source": "shared"},
                  {"kind": "samples", "label": "tuned-gen", "source": "tuned"}]
    cfg = config(sources=sources, strategies=strategies, classifier={"model": "test_resnet", "steps": 3,
                                                                     "batch_size": 16, "bn_batches": 2})
    assert cfg.sources["tuned"].key == "tuned" and cfg.source_spec(None) is cfg.generator
    rows = run_strategies(cfg, tmp_path / "run")
    by = {r["arm"]: r for r in rows}
    assert set(by) == {"baseline", "real-repeat r0.25", "shared-gen r0.25", "tuned-gen r0.25"}
    assert by["shared-gen r0.25"]["extra_items"] == by["tuned-gen r0.25"]["extra_items"] == 32
    trained = sorted(p.parent.name for p in (tmp_path / "run" / "generators").rglob("done.json"))
    assert trained == ["tuned"]  # the shared checkpoint is used as it is; only the fine-tune trains
    with pytest.raises(ValueError, match="not a name of `sources`"):
        config(sources=sources, strategies=[{"kind": "samples", "source": "shraed"}])
    with pytest.raises(ValueError, match="distinct"):
        config(sources={"a": {"label": "ddpm", **TINY_DDPM}}, strategies=[{"kind": "samples", "source": "a"}])
    # a shared generator that saw one of the unit's validation patients never enters it
    val = cfg.data.load(0, 0.02).info["val_groups"]
    leaky = _shared_checkpoint(tmp_path / "leaky", val[:1])
    cfg = config(sources={"shared": {"source": {"checkpoint": str(leaky)}}},
                 strategies=[{"kind": "samples", "source": "shared"}])
    with pytest.raises(LeakageError, match="validation/test"):
        run_strategies(cfg, tmp_path / "leak")


DESIGN = {"val_patients": 25, "test_patients": 40, "donor_patients": 100, "seed": 0, "train": "donor"}


def test_a_shared_source_of_a_sites_grid_is_gated_once_against_the_donor_cells(tmp_path, data_root, monkeypatch):
    """PLAN.md: a source that does not depend on the draw (the shared checkpoint) is measured once, its CAS
    reference a classifier on the design's donor cells; a per-site source (a fine-tune) on every draw. The
    confirmatory verdict's script reads the run and each arm's gate."""
    import importlib.util

    from synthaug.bench.powered_answer import source_gates
    from synthaug.bench.strategy_run import run_strategies

    monkeypatch.setenv("SYNTHAUG_DATA", str(data_root))
    shared = _shared_checkpoint(tmp_path / "donor", ["not-a-patient"])
    sources = {"shared": {"source": {"checkpoint": str(shared)}},
               "tuned": {**TINY_DDPM, "train": {**TINY_DDPM["train"], "steps": 2}, "init_from": str(shared)}}
    small = {"val_patients": 6, "test_patients": 6, "donor_patients": 8, "seed": 0, "train": "donor"}
    cfg = config(datasets=[{"name": "malaria", "image_size": 16, "design": small}], fractions=[0.02], seeds=[0, 1, 2],
                 sites={"patients": [3], "draws": [0, 1]}, sources=sources,
                 strategies=[{"kind": "samples", "label": "donor-gen", "source": "shared"},
                             {"kind": "samples", "label": "donor-ft", "source": "tuned"}, {"kind": "donor-cells"}],
                 quality={"n": 8, "cas_images": 16, "extractor_steps": 2},
                 classifier={"model": "test_resnet", "steps": 2, "batch_size": 16, "bn_batches": 2})
    rows = run_strategies(cfg, tmp_path / "run")
    measured = sorted((p.parent.parent.name, p.parent.name) for p in (tmp_path / "run" / "quality").rglob("quality.json"))
    assert measured == [("seed0", "shared"), ("seed0", "tuned"), ("seed1", "tuned")], measured
    record = json.loads(next((tmp_path / "run" / "quality").rglob("shared/quality.json")).read_text())
    assert record["cas"]["real_images"] == len(cfg.load_design_donors().train)  # the donors' cells, not the site's
    assert "design's donor patients" in record["extractor"]["trained_on"]
    tuned = json.loads(next((tmp_path / "run" / "quality").rglob("seed1/tuned/quality.json")).read_text())
    assert "fixed design (donor and site pools)" in tuned["extractor"]["trained_on"]
    from synthaug.bench.cell import extractor_split
    from synthaug.bench.grid_config import Cell

    site = cfg.load_unit(3, 1)
    full, seed, _ = extractor_split(cfg.data, site, Cell(cfg.data.key, 3.0, 1))
    held_out = set(site.info["val_groups"]) | set(site.info["test_groups"])
    assert set(site.info["train_groups"]) < set(full.info["train_groups"])  # the site's patients, and more
    assert not set(full.info["train_groups"]) & held_out and seed == 0  # never a validation or test patient
    gates = source_gates(tmp_path / "run", cfg, rows)
    assert gates[(3.0, 0, "donor-gen")] == gates[(3.0, 1, "donor-gen")] == record["gate"]["passed"]
    assert isinstance(gates[(3.0, 1, "donor-ft")], bool) and gates[(3.0, 0, "donor-cells")] is None
    spec = importlib.util.spec_from_file_location("powered_answer_script", ROOT / "benchmarks" / "powered_answer.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main([str(tmp_path / "run"), "--out", str(tmp_path / "out" / "answer")]) == 0
    text = (tmp_path / "out" / "answer.md").read_text()
    assert "| P3 | 3 | donor-gen | 2 |" in text and "| P1 | 7 | donor-gen | 0 |" in text
    assert (tmp_path / "out" / "answer.png").is_file() and (tmp_path / "out" / "report" / "report.md").is_file()


def test_sites_of_a_fixed_design_are_the_units(tmp_path, data_root, monkeypatch):
    """The powered answer's units: sites of k patients drawn from the fixed design's site pool, one per draw, the
    classifier seeded by the draw, every unit judged on the same validation and test patients, and the donor
    strategy's pool the design's donor patients."""
    from synthaug.bench.strategy_run import run_strategies
    from synthaug.bench.strategy_report import build_strategies_report

    monkeypatch.setenv("SYNTHAUG_DATA", str(data_root))
    data = {"name": "malaria", "image_size": 16, "design": DESIGN}
    unset = {"fractions": [0.02], "seeds": [0, 1, 2]}  # the defaults: with sites they are not used
    cfg = config(datasets=[data], **unset, sites={"patients": [3], "draws": [0, 1]},
                 strategies=[{"kind": "samples"}, {"kind": "donor"}], donor={"pool_size": 16}, fixed_specificity=0.95,
                 classifier={"model": "test_resnet", "steps": 3, "batch_size": 16, "bn_batches": 2})
    assert cfg.unit_sizes == [3.0] and cfg.unit_seeds == [0, 1]
    units = [cfg.load_unit(3, d) for d in (0, 1)]
    assert [len(u.info["train_groups"]) for u in units] == [3, 3]
    assert units[0].info["train_groups"] != units[1].info["train_groups"]
    assert units[0].info["val_groups"] == units[1].info["val_groups"] and \
        units[0].info["test_groups"] == units[1].info["test_groups"]
    rows = run_strategies(cfg, tmp_path / "run")
    assert sorted({(r["fraction"], r["seed"]) for r in rows}) == [(3.0, 0), (3.0, 1)]
    assert {r["train_patients"] for r in rows} == {3}
    # the clinical operating point: its threshold fixed on validation patients, read on test ones
    assert all(r["operating_point"]["val_specificity"] >= 0.95 and 0 <= r["operating_point"]["test_sensitivity"] <= 1
               for r in rows)
    donor_real = [r for r in rows if r["arm"] == "donor-real r0.25"]
    assert {r["donor_patients"] for r in donor_real} == {100}
    md, _ = build_strategies_report(tmp_path / "run")
    assert "1 site sizes x 2 site draws" in md.read_text()
    with pytest.raises(ValueError, match="fixed_specificity"):
        config(fixed_specificity=1.0)
    with pytest.raises(ValueError, match="need data.design"):
        config(**unset, sites={"patients": [3], "draws": [0]})
    with pytest.raises(ValueError, match="remove fractions"):
        config(datasets=[data], fractions=[0.05], seeds=[0, 1, 2], sites={"patients": [3], "draws": [0]})
