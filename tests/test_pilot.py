"""The pilot's choices by the plan's rules (synthaug.bench.powered.pilot_choices), on made-up rows whose
answer is known: validation only, ties to the smaller value, teacher only when it wins at every site size, and
the draw count from the largest SD of the primary rows."""
from __future__ import annotations

import numpy as np
import pytest

from synthaug.bench.powered import PilotRules, paired_differences, pilot_choices
from synthaug.stats import pairs_needed

EFFECTS = {  # strategy -> {per_real: validation AUROC gain over its control} (before noise)
    "donor-gen": {0.25: 0.00, 0.5: 0.02, 1.0: 0.01},
    "donor-ft250": {0.25: 0.00, 0.5: 0.01, 1.0: 0.00},
    "donor-ft1000": {0.25: 0.00, 0.5: 0.03, 1.0: 0.00},
    "edits": {0.25: 0.00, 0.5: 0.00, 1.0: 0.00},
    "donor-gen-teacher": {0.25: 0.00, 0.5: 0.00, 1.0: 0.00},
}


def rows(spread: float = 0.01, teacher_bonus: dict | None = None) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for k in (3.0, 7.0):
        for draw in range(1000, 1005):
            for r in (0.25, 0.5, 1.0):
                control = f"real-repeat r{r:g}"
                out.append({"fraction": k, "seed": draw, "arm": control, "role": "control", "strategy": None,
                            "setting": {"per_real": r}, "control": None, "val": {"auroc": 0.80}, "test": None})
                for strategy, by_ratio in EFFECTS.items():
                    strengths = [0.1, 0.3] if strategy == "edits" else [None]
                    for s in strengths:
                        gain = by_ratio[r] + (0.005 if s == 0.3 else 0.0)
                        if strategy == "donor-gen-teacher":
                            gain = EFFECTS["donor-gen"][r] + (teacher_bonus or {}).get(k, -0.01)
                        setting = {"per_real": r, **({"strength": s} if s is not None else {})}
                        out.append({"fraction": k, "seed": draw, "arm": f"{strategy} {setting}", "role": "synthetic",
                                    "strategy": strategy, "setting": setting, "control": control, "test": None,
                                    "val": {"auroc": 0.80 + gain + spread * rng.standard_normal()}})
    return out


def test_the_plan_s_choices_come_from_validation_by_its_rules():
    c = pilot_choices(rows())
    assert c["per_real"] == 0.5                         # the best mean over the generator arms
    assert c["finetune_steps"] == 1000 and c["edit_strength"] == 0.3
    assert c["teacher"] is False                     # it loses at both site sizes
    assert set(c["primary_sds"]) == {"donor-gen k=3", "donor-gen k=7", "donor-ft1000 k=3", "donor-ft1000 k=7"}
    assert c["sd_max"] == max(c["primary_sds"].values())
    assert c["draws_wanted"] == pairs_needed(c["sd_max"], 0.02, family=4)
    assert c["draws"] == min(60, max(30, c["draws_wanted"]))
    assert c["metric"] == "val auroc"                # a pilot has no test scores at all (rows' test is None)


def test_teacher_only_when_it_wins_at_every_site_size():
    assert pilot_choices(rows(teacher_bonus={3.0: 0.02, 7.0: 0.02}))["teacher"] is True
    c = pilot_choices(rows(teacher_bonus={3.0: 0.02, 7.0: -0.02}))
    assert c["teacher"] is False and c["teacher_margins"][3.0] > 0 > c["teacher_margins"][7.0]
    # with teacher labels, the primary rows' SD is the teacher arm's
    assert "donor-gen-teacher k=3" in pilot_choices(rows(teacher_bonus={3.0: 0.02, 7.0: 0.02}))["primary_sds"]


def test_ties_go_to_the_smaller_value_and_a_large_spread_hits_the_cap():
    flat = [dict(r, val={"auroc": 0.80}) for r in rows()]
    for r in flat:
        if r["role"] == "synthetic":  # every arm equal to its control: every score ties
            r["val"] = {"auroc": 0.80 + (0.001 if r["seed"] % 2 else -0.001)}
    c = pilot_choices(flat)
    assert c["per_real"] == 0.25 and c["finetune_steps"] == 250 and c["edit_strength"] == 0.1
    wide = pilot_choices(rows(spread=0.1), PilotRules(cap=60))
    assert wide["draws"] == 60 and wide["cap_binds"] and wide["mde_at_draws"] > 0.02


def test_paired_differences_pair_each_arm_with_its_own_control_by_draw():
    diffs = paired_differences(rows(spread=0.0))
    entry = diffs[(7.0, "donor-gen {'per_real': 0.5}")]
    assert sorted(entry["diffs"]) == [1000, 1001, 1002, 1003, 1004]
    assert all(d == pytest.approx(0.02) for d in entry["diffs"].values())
    with pytest.raises(ValueError, match="has the pilot run"):
        pilot_choices([r for r in rows() if r["role"] == "control"])
