"""A fixed patient design: the same validation and test patients for every draw, a fixed donor pool, site draws.

The data-sharing question ("does a generator trained on many *other* patients help a small site?") needs roles
that do not move with the seed: validation and test patients fixed once (so one shared generator serves every
draw and every choice is made on the same patients), a **donor pool** of training patients that trains the
shared generator once, and a **site pool** from which small sites of ``k`` patients are drawn, each draw with
its own seed (separate from the classifier's initialisation seed). No patient has two roles (asserted).

Roles are assigned per stratum of patients (those with infected cells, those with only uninfected ones; in
general: the set of classes a patient's items carry), by proportional allocation of each role's count, each
stratum shuffled with the design's ``seed``. Pure functions on label and group arrays, like ``splits.py``::

    design = PatientDesign(val_patients=25, test_patients=40, donor_patients=100, seed=0)
    roles = design.roles(targets, groups)          # {"val": [...], "test": [...], "donor": [...], "sites": [...]}
    site = draw_site(roles["sites"], targets, groups, patients=7, draw=3)
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from ..options import option, validate_fields
from .splits import LeakageError, group_signatures

ROLES = ("val", "test", "donor", "sites")
#: what a design's training split holds: the donor pool, one site draw, or every training patient
TRAIN_ROLES = ("donor", "site", "all")
MAX_DRAW_TRIES = 10_000


@dataclass(frozen=True)
class PatientDesign:
    """Patient counts per role, the seed that assigns them, and which training patients a split trains on.

    ``train``: ``"donor"`` (the donor pool), ``"site"`` (``site_patients`` patients of the site pool, draw
    ``draw``) or ``"all"`` (donor and site pools together). Validation and test patients never change with
    ``train``, ``site_patients`` or ``draw``.
    """

    val_patients: int = option(25, "validation patients", minimum=1)
    test_patients: int = option(40, "test patients", minimum=1)
    donor_patients: int = option(100, "patients of the donor pool", minimum=0)
    seed: int = option(0, "the seed that assigns the roles", minimum=0)
    train: str = option("donor", "what the training split holds", choices=TRAIN_ROLES)
    site_patients: int | None = option(None, "train: site: the site's patient count k", minimum=1,
                                       hint="the site's patient count k, e.g. 3 or 7")
    draw: int | None = option(None, "train: site: the site draw's seed", minimum=0, hint="the site draw's seed, e.g. 0")

    def __post_init__(self) -> None:
        validate_fields(self, prefix="design.")
        missing = [name for name in ("site_patients", "draw") if getattr(self, name) is None]
        if self.train == "site" and missing:
            raise ValueError(f"design.{missing[0]}=None with design.train='site': a site draw needs site_patients (the "
                             "site's patient count k, e.g. 3 or 7) and draw (the site draw's seed, e.g. 0)")
        if self.train != "site" and len(missing) < 2:
            raise ValueError(f"design.site_patients={self.site_patients}, design.draw={self.draw} with "
                             f"design.train={self.train!r}: a site is only drawn with train: site; remove them")
        if self.train == "donor" and self.donor_patients == 0:
            raise ValueError("design.train='donor' with design.donor_patients=0: give the donor pool patients")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | PatientDesign, where: str = "design") -> PatientDesign:
        """A design from a config mapping; unknown keys are refused with the known ones."""
        if isinstance(values, PatientDesign):
            return values
        if not isinstance(values, Mapping):
            raise ValueError(f"{where}={values!r}: give a mapping such as {{val_patients: 25, test_patients: 40, "
                             "donor_patients: 100, seed: 0, train: donor}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; use {known}")
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def roles(self, targets: np.ndarray, groups: np.ndarray) -> dict[str, list[str]]:
        """Every patient's role: ``val``, ``test``, ``donor`` or ``sites`` (the pool sites are drawn from)."""
        return assign_roles(targets, groups, counts={"val": self.val_patients, "test": self.test_patients,
                                                     "donor": self.donor_patients}, seed=self.seed)

    def train_patients(self, targets: np.ndarray, groups: np.ndarray) -> list[str]:
        """The patients this design's training split holds (see ``train``)."""
        roles = self.roles(targets, groups)
        if self.train == "donor":
            return roles["donor"]
        if self.train == "all":
            return sorted(roles["donor"] + roles["sites"])
        return draw_site(roles["sites"], targets, groups, patients=int(self.site_patients), draw=int(self.draw))


def _allocate(total: int, sizes: Sequence[int]) -> list[int]:
    """``total`` split over strata of ``sizes`` in proportion (largest remainders, ties to the larger stratum)."""
    grand = sum(sizes)
    exact = [total * s / grand for s in sizes]
    counts = [int(np.floor(e)) for e in exact]
    order = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - counts[i]), -sizes[i], i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def assign_roles(targets: np.ndarray, groups: np.ndarray, *, counts: Mapping[str, int], seed: int) -> dict[str, list[str]]:
    """Assign ``counts[role]`` patients to ``val``, ``test`` and ``donor``, stratified by the classes a patient's
    items carry; the rest form the site pool ``sites``. Too few patients is refused with the counts."""
    signatures = group_signatures(np.asarray(targets), np.asarray(groups).astype(str))
    strata: dict[tuple[int, ...], list[str]] = {}
    for group in sorted(signatures):
        strata.setdefault(signatures[group], []).append(group)
    keys = sorted(strata)
    wanted = sum(counts.values())
    if wanted >= len(signatures):
        raise ValueError(f"the design asks for {dict(counts)} = {wanted} patients but the data set has "
                         f"{len(signatures)}; at least one must be left for the site pool. Lower the counts.")
    per_role = {role: _allocate(n, [len(strata[k]) for k in keys]) for role, n in counts.items()}
    rng = np.random.default_rng([seed, 104729])  # a stream of its own, apart from split_by_group's
    roles: dict[str, list[str]] = {role: [] for role in ROLES}
    for s, key in enumerate(keys):
        members = [strata[key][i] for i in rng.permutation(len(strata[key]))]
        start = 0
        for role in ("test", "val", "donor"):
            take = per_role.get(role, [0] * len(keys))[s]
            roles[role] += members[start:start + take]
            start += take
        if start > len(members):
            raise ValueError(f"the design asks for more patients carrying classes {key} than the {len(members)} "
                             f"there are ({dict(counts)}); lower the counts")
        roles["sites"] += members[start:]
    roles = {role: sorted(patients) for role, patients in roles.items()}
    assert_one_role(roles)
    return roles


def assert_one_role(roles: Mapping[str, Sequence[str]]) -> None:
    """Raise ``LeakageError`` when a patient has two roles."""
    seen: dict[str, str] = {}
    for role, patients in roles.items():
        for patient in patients:
            if patient in seen:
                raise LeakageError(f"patient {patient!r} is both in {seen[patient]} and in {role}")
            seen[patient] = role


def draw_site(pool: Sequence[str], targets: np.ndarray, groups: np.ndarray, *, patients: int, draw: int,
              need_every_class: bool = True) -> list[str]:
    """``patients`` patients drawn from ``pool`` with seed ``draw``: uniformly among the draws whose patients
    carry every class (for malaria: at least one infected patient), by rejection."""
    pool = sorted(set(pool))
    if patients > len(pool):
        raise ValueError(f"a site of {patients} patients cannot be drawn from a site pool of {len(pool)}; "
                         "lower site_patients or the donor/val/test counts")
    signatures = group_signatures(np.asarray(targets), np.asarray(groups).astype(str))
    every = set(np.unique(np.asarray(targets)).tolist())
    rng = np.random.default_rng([draw, patients, 15485863])
    for _ in range(MAX_DRAW_TRIES):
        site = sorted(pool[i] for i in rng.choice(len(pool), size=patients, replace=False))
        carried = set().union(*(signatures.get(p, ()) for p in site))
        if not need_every_class or carried >= every:
            return site
    raise ValueError(f"no site of {patients} patients drawn from the pool of {len(pool)} carries every class "
                     f"({sorted(every)}) in {MAX_DRAW_TRIES} tries; draw more patients per site")


def items_of(groups: np.ndarray, patients: Sequence[str]) -> np.ndarray:
    """Indices of the items whose group is one of ``patients``."""
    wanted = set(patients)
    return np.flatnonzero(np.array([g in wanted for g in np.asarray(groups).astype(str).tolist()], dtype=bool))
