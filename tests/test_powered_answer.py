"""The confirmatory verdict of the powered answer (synthaug.bench.powered_answer) on made-up rows whose answer is
known: Holm over the four primary rows, TOST's upper bound, the share of the donor cells' gain with its bootstrap
CI (undefined when that gain is not significant), gates counted per draw, and the confirmatory config written from
the pilot config and its choices without a hand edit."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from synthaug.bench.powered_answer import (AnswerRules, confirmatory_answer, confirmatory_config, headline, markdown,
                                           paired_values)
from synthaug.stats import holm

ROOT = Path(__file__).resolve().parents[1]
# k -> strategy -> true test-AUROC gain over the real-matched control
GAINS = {7.0: {"donor-gen": 0.0, "donor-ft": 0.05, "edits": 0.0, "donor-cells": 0.05},
         3.0: {"donor-gen": -0.04, "donor-ft": 0.0, "edits": 0.0, "donor-cells": 0.0}}


def rows(draws: int = 30, spread: float = 0.005) -> list[dict]:
    """Test AUROC carries GAINS; validation AUROC carries the opposite gains (so reading validation for test would
    flip every verdict); balanced accuracy and sensitivity carry none (so reading them for AUROC would show). The
    arms' noise comes in +/- pairs over consecutive draws, so over an even number of draws each arm's mean
    difference is its gain exactly (a null row cannot turn significant by the seed's luck)."""
    rng = np.random.default_rng(1)
    out = []
    z = {(k, s): spread * rng.standard_normal(draws) for k in GAINS for s in GAINS[k]}
    for k, gains in GAINS.items():
        for d in range(draws):
            control = 0.90 + 0.02 * rng.standard_normal()
            out.append(_row(k, d, "real-repeat r0.5", "control", None, None, control, control, rng))
            for strategy, gain in gains.items():
                noise = z[(k, strategy)][d - d % 2] * (1 if d % 2 == 0 else -1)
                out.append(_row(k, d, f"{strategy} r0.5", "synthetic", strategy, "real-repeat r0.5",
                                control + gain + noise, control - gain + noise, rng))
    return out


def _row(k, draw, arm, role, strategy, control, test_auroc, val_auroc, rng):
    other = 0.8 + 0.001 * rng.standard_normal()
    return {"fraction": k, "seed": draw, "arm": arm, "role": role, "strategy": strategy, "control": control,
            "kind": strategy, "setting": {"per_real": 0.5}, "val": {"auroc": val_auroc},
            "test": {"auroc": test_auroc, "balanced_accuracy": other},
            "operating_point": {"test_sensitivity": other - 0.1}}


def test_the_primary_family_holm_tost_and_the_verdicts():
    gates = {(7.0, d, "donor-gen"): d % 3 != 0 for d in range(30)}  # 10 of 30 draws failed the gate
    a = confirmatory_answer(rows(), gates)
    by = {r["id"]: r for r in a["primary"]}
    assert [by[i]["strategy"] for i in ("P1", "P2", "P3", "P4")] == ["donor-gen", "donor-ft", "donor-gen", "donor-ft"]
    assert [by[i]["k"] for i in ("P1", "P2", "P3", "P4")] == [7.0, 7.0, 3.0, 3.0]
    assert [r["holm_p"] for r in a["primary"]] == holm([r["diff"]["p"] for r in a["primary"]])  # none missing here
    assert a["complete"] and a["planned_draws"] is None
    assert by["P2"]["verdict"] == "helps" and by["P3"]["verdict"] == "hurts"
    assert by["P1"]["verdict"] == "no significant difference"
    # a null row with a tight spread excludes +0.02; the helping one does not
    assert by["P1"]["excludes_gain"] and by["P1"]["tost"]["upper"] < 0.02
    assert not by["P2"]["excludes_gain"]
    assert by["P1"]["gate"] == {"passed": 20, "failed": 10, "not_measured": 0}
    assert by["P2"]["gate"]["not_measured"] == 30
    assert by["P1"]["mde"] < 0.02 and by["P1"]["draws"] == 30
    # primary rows on AUROC are not repeated as exploratory rows; their other endpoints are
    explored = {(r["k"], r["strategy"], r["endpoint"]) for r in a["exploratory"]}
    assert (7.0, "donor-gen", "test auroc") not in explored and (7.0, "edits", "test auroc") in explored
    assert (7.0, "donor-gen", "test sensitivity@spec") in explored
    assert all(r["label"] == "exploratory" for r in a["exploratory"])
    # the other endpoints carry no gain: donor-ft's +0.05 AUROC must not show in its balanced accuracy
    ba = next(r for r in a["exploratory"] if (r["k"], r["strategy"], r["endpoint"]) ==
              (7.0, "donor-ft", "test balanced_accuracy"))
    assert abs(ba["diff"]["mean"]) < 0.01


def test_a_row_without_a_test_still_counts_in_the_holm_family():
    """Holm over the plan's 4 rows even when one has too few draws: the others are not corrected more mildly."""
    from synthaug.bench.powered_answer import family_holm

    got = family_holm([0.01, math.nan, 0.02, 0.04])
    assert math.isnan(got[1])
    # p = 1 for the missing row: sorted 0.01, 0.02, 0.04, 1 -> 4 x 0.01, 3 x 0.02, max(0.06, 2 x 0.04)
    assert got[0] == pytest.approx(0.04) and got[2] == pytest.approx(0.06) and got[3] == pytest.approx(0.08)
    short = [r for r in rows() if not (r["fraction"] == 7.0 and r["strategy"] == "donor-gen")]
    a = confirmatory_answer(short)
    p1 = next(r for r in a["primary"] if r["id"] == "P1")
    assert p1["draws"] == 0 and math.isnan(p1["holm_p"]) and p1["verdict"] == "too few seeds to tell"
    others = [r["diff"]["p"] for r in a["primary"] if r["id"] != "P1"]
    assert [r["holm_p"] for r in a["primary"] if r["id"] != "P1"] == family_holm([math.nan, *others])[1:]


def test_an_incomplete_run_is_an_interim_look_and_says_so_first():
    a = confirmatory_answer(rows(draws=10), planned_draws=30)
    assert not a["complete"] and headline(a, 7.0).startswith("INTERIM (10 of 30 planned draws; not the verdict): ")
    assert confirmatory_answer(rows(draws=10), planned_draws=10)["complete"]


def test_two_settings_of_one_strategy_in_one_unit_are_refused():
    doubled = rows(draws=3) + [{**r, "arm": r["arm"] + " bis"} for r in rows(draws=3) if r["strategy"] == "donor-gen"]
    with pytest.raises(ValueError, match="more than one arm"):
        confirmatory_answer(doubled)


def test_the_share_uses_the_donor_cells_control_when_the_generator_arm_has_another():
    """With teacher labels the generator arm's own control is teacher-real; the share's numerator and denominator
    are both taken against real-repeat, the donor cells' control."""
    base = rows()
    teacher = [{**r, "arm": "teacher-real r0.5 T2", "test": {**r["test"], "auroc": r["test"]["auroc"] - 0.05}}
               for r in base if r["arm"] == "real-repeat r0.5"]
    moved = [{**r, "control": "teacher-real r0.5 T2"} if r["strategy"] == "donor-ft" else r for r in base]
    share = {(s["k"], s["strategy"]): s for s in confirmatory_answer(moved + teacher)["shares"]}
    assert share[(7.0, "donor-ft")]["share"] == pytest.approx(1.0)  # not 2: teacher-real is 0.05 lower


def test_the_share_of_the_donor_cells_gain_and_when_it_is_undefined():
    a = confirmatory_answer(rows())
    share = {(s["k"], s["strategy"]): s for s in a["shares"]}
    ft = share[(7.0, "donor-ft")]
    assert ft["defined"] and ft["lo"] < 1.0 < ft["hi"] and ft["share"] == pytest.approx(1.0)
    gen = share[(7.0, "donor-gen")]
    assert gen["defined"] and gen["lo"] < 0.0 < gen["hi"]
    assert not share[(3.0, "donor-gen")]["defined"] and "not significantly positive" in share[(3.0, "donor-gen")]["why"]
    # the same seed gives the same interval
    assert confirmatory_answer(rows())["shares"][1]["lo"] == ft["lo"]


def test_the_report_opens_with_the_answer_in_one_sentence():
    a = confirmatory_answer(rows())
    line = headline(a, 7.0)
    assert line.startswith("At 7 patients, adding samples of a diffusion model trained on 100 other patients")
    assert "a gain of +0.02 is excluded" in line and "Holm p" in line
    assert "undefined" in headline(a, 3.0)
    text = markdown(a, run="made-up")
    assert text.splitlines()[2] == line and "| P4 | 3 | donor-ft | 30 |" in text
    assert len(paired_values(rows(), 7.0, "donor-ft", AnswerRules())) == 30


def test_too_few_draws_give_no_verdict_rather_than_a_wrong_one():
    a = confirmatory_answer(rows(draws=1))
    assert all(r["verdict"] == "too few seeds to tell" and not r["excludes_gain"] for r in a["primary"])
    assert all(math.isnan(r["sd"]) for r in a["primary"])


def test_the_confirmatory_config_is_the_pilot_config_with_its_choices(monkeypatch):
    from synthaug.bench.strategy_config import StrategiesConfig, plan_strategies
    from synthaug.config import from_dict

    pilot = yaml.safe_load((ROOT / "configs" / "bench" / "malaria-powered-pilot.yaml").read_text())
    choices = {"per_real": 0.5, "finetune_steps": 1000, "edit_strength": 0.3, "teacher": False, "draws": 34}
    cfg = confirmatory_config(pilot, choices)
    assert cfg["sites"] == {"patients": [3, 7], "draws": list(range(34))}
    assert cfg["sources"]["ft"]["train"]["steps"] == 1000 and set(cfg["sources"]) == {"shared", "ft"}
    assert cfg["score_test"] is True and cfg["quality"]["seeds"] is None and cfg["fixed_specificity"] == 0.95
    assert pilot["sites"]["draws"] == [1000, 1001, 1002, 1003, 1004]  # the pilot's dict is not changed
    loaded = from_dict(StrategiesConfig, cfg)
    arms = {c.arm.name for c in plan_strategies(loaded) if c.fraction == 7 and c.seed == 0}
    assert arms == {"baseline", "real-repeat r0.5", "donor-gen r0.5", "donor-ft r0.5", "edits r0.5 s0.3",
                    "donor-cells r0.5"}
    with_teacher = confirmatory_config(pilot, {**choices, "teacher": True})
    assert {s["kind"] for s in with_teacher["strategies"][:2]} == {"teacher"}
    assert with_teacher["strategies"][0]["temperature"] == next(
        s["temperature"] for s in pilot["strategies"] if s["kind"] == "teacher")  # the pilot's, not a constant
    with pytest.raises(ValueError, match="finetune_steps=500"):  # a fine-tune length the pilot did not try
        confirmatory_config(pilot, {**choices, "finetune_steps": 500})
