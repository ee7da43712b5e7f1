"""The fixed patient design: roles that do not move with the draw, a donor pool, site draws (no patient in two roles)."""
from __future__ import annotations

import numpy as np
import pytest

from synthaug.data import LeakageError, PatientDesign, assign_roles, draw_site, load_dataset
from synthaug.data.design import assert_one_role


def toy(n_infected: int = 30, n_healthy: int = 10, cells: int = 4):
    """Patients P0.. with both classes (infected) and H0.. with class 1 only; ``cells`` items per class each."""
    targets, groups = [], []
    for p in range(n_infected):
        targets += [0] * cells + [1] * cells
        groups += [f"P{p}"] * (2 * cells)
    for h in range(n_healthy):
        targets += [1] * cells
        groups += [f"H{h}"] * cells
    return np.array(targets), np.array(groups)


def test_roles_have_the_counts_stratified_and_disjoint():
    targets, groups = toy()
    roles = assign_roles(targets, groups, counts={"val": 8, "test": 12, "donor": 16}, seed=0)
    assert [len(roles[r]) for r in ("val", "test", "donor", "sites")] == [8, 12, 16, 4]
    # proportional to the strata (30 infected : 10 healthy patients)
    assert sum(p.startswith("H") for p in roles["test"]) == 3
    assert sum(p.startswith("H") for p in roles["val"]) == 2
    everyone = [p for r in roles.values() for p in r]
    assert len(everyone) == len(set(everyone)) == 40


def test_roles_do_not_depend_on_the_train_role_or_the_draw():
    targets, groups = toy()
    base = PatientDesign(val_patients=8, test_patients=12, donor_patients=16)
    site = PatientDesign(val_patients=8, test_patients=12, donor_patients=16, train="site", site_patients=3, draw=5)
    assert base.roles(targets, groups) == site.roles(targets, groups)
    other_seed = PatientDesign(val_patients=8, test_patients=12, donor_patients=16, seed=1)
    assert other_seed.roles(targets, groups)["test"] != base.roles(targets, groups)["test"]


def test_site_draws_come_from_the_site_pool_carry_every_class_and_vary_with_the_draw():
    targets, groups = toy(n_infected=30, n_healthy=30)
    roles = assign_roles(targets, groups, counts={"val": 10, "test": 10, "donor": 20}, seed=0)
    draws = [draw_site(roles["sites"], targets, groups, patients=3, draw=d) for d in range(20)]
    for site in draws:
        assert set(site) <= set(roles["sites"]) and len(site) == 3
        assert any(p.startswith("P") for p in site)  # at least one patient with class 0
    assert len({tuple(s) for s in draws}) > 5
    assert draws[4] == draw_site(roles["sites"], targets, groups, patients=3, draw=4)


def test_too_many_patients_asked_are_refused_with_the_counts():
    targets, groups = toy(n_infected=5, n_healthy=5)
    with pytest.raises(ValueError, match="10"):
        assign_roles(targets, groups, counts={"val": 3, "test": 3, "donor": 4}, seed=0)
    roles = assign_roles(targets, groups, counts={"val": 2, "test": 2, "donor": 2}, seed=0)
    with pytest.raises(ValueError, match="site pool of 4"):
        draw_site(roles["sites"], targets, groups, patients=5, draw=0)


def test_a_patient_in_two_roles_is_a_leak():
    with pytest.raises(LeakageError, match="P1"):
        assert_one_role({"val": ["P1"], "donor": ["P2", "P1"]})


@pytest.mark.parametrize("values, message", [
    ({"train": "site"}, "site_patients"),
    ({"train": "donor", "draw": 2}, "only drawn with train: site"),
    ({"val_patients": 0}, "val_patients"),
    ({"train": "sites"}, "design.train"),
    ({"donor": 100}, "unknown key"),
])
def test_bad_designs_name_the_key(values, message):
    with pytest.raises(ValueError, match=message):
        PatientDesign.from_mapping(values)


def test_malaria_design_splits_share_val_and_test_and_keep_roles_apart(data_root):
    design = {"val_patients": 25, "test_patients": 40, "donor_patients": 100, "seed": 0}
    donor = load_dataset("malaria", root=data_root, image_size=32, design={**design, "train": "donor"})
    site = load_dataset("malaria", root=data_root, image_size=32,
                        design={**design, "train": "site", "site_patients": 7, "draw": 0})
    assert donor.info["val_groups"] == site.info["val_groups"] and len(donor.info["val_groups"]) == 25
    assert donor.info["test_groups"] == site.info["test_groups"] and len(site.info["test_groups"]) == 40
    assert len(donor.info["train_groups"]) == 100 and len(site.info["train_groups"]) == 7
    assert not set(donor.info["train_groups"]) & set(site.info["train_groups"])
    assert "Parasitized" in {site.classes[t] for t in site.train.targets.tolist()}
    with pytest.raises(ValueError, match="train_fraction"):
        load_dataset("malaria", root=data_root, image_size=32, train_fraction=0.5, design=design)
