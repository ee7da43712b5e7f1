"""Group-aware (patient-level) splitting: pure functions on label and group arrays.

Leakage is the classic mistake with the NIH malaria cells: one patient gives many cells, so a
cell-level split puts the same patient on both sides. Everything here works on *groups*.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..checks import check_float


class LeakageError(AssertionError):
    """A group (patient) appears in more than one split."""


def check_split(split: Sequence[float]) -> tuple[float, float, float]:
    try:
        fractions = tuple(float(f) for f in split)
    except (TypeError, ValueError):
        raise ValueError(f"split={split!r}: give three numbers (train, val, test), e.g. (0.7, 0.1, 0.2)") from None
    if len(fractions) != 3 or any(not (0 < f < 1) for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(
            f"split={split!r}: give three fractions (train, val, test), each in (0, 1), summing to 1, "
            "e.g. (0.7, 0.1, 0.2)"
        )
    return fractions  # type: ignore[return-value]


def group_signatures(targets: np.ndarray, groups: np.ndarray) -> dict[str, tuple[int, ...]]:
    """For every group, the sorted tuple of classes its items carry."""
    signatures: dict[str, set[int]] = {}
    for group, target in zip(groups.tolist(), targets.tolist()):
        signatures.setdefault(group, set()).add(int(target))
    return {group: tuple(sorted(classes)) for group, classes in signatures.items()}


def split_by_group(
    targets: np.ndarray,
    groups: np.ndarray,
    *,
    split: Sequence[float] = (0.7, 0.1, 0.2),
    seed: int = 0,
    num_classes: int | None = None,
    classes: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split item indices into train / val / test so that no group is on two sides.

    Groups are stratified by the set of classes they contain (for malaria: patients with
    parasitized cells, and patients with uninfected cells only), each stratum is shuffled with
    ``seed`` and cut by ``split`` (fractions of groups, not of items). Every split must hold every
    class; otherwise a ``ValueError`` names the split, the class (by its name in ``classes`` when
    given) and how many groups and items of it there are in each split.
    """
    targets = np.asarray(targets)
    groups = np.asarray(groups).astype(str)
    if targets.shape != groups.shape or targets.ndim != 1:
        raise ValueError(f"targets {targets.shape} and groups {groups.shape} must be 1-D and of equal length")
    fractions = check_split(split)
    num_classes = int(targets.max()) + 1 if num_classes is None else num_classes
    signatures = group_signatures(targets, groups)
    strata: dict[tuple[int, ...], list[str]] = {}
    for group in sorted(signatures):
        strata.setdefault(signatures[group], []).append(group)

    rng = np.random.default_rng(seed)
    assignment: dict[str, int] = {}
    for signature in sorted(strata):
        members = strata[signature]
        order = rng.permutation(len(members))
        n = len(members)
        n_val = int(round(n * fractions[1]))
        n_test = int(round(n * fractions[2]))
        n_val, n_test = min(n_val, n), min(n_test, max(0, n - n_val))
        for rank, position in enumerate(order):
            part = 1 if rank < n_val else 2 if rank < n_val + n_test else 0
            assignment[members[position]] = part

    part_of_item = np.array([assignment[g] for g in groups.tolist()], dtype=np.int64)
    parts = tuple(np.flatnonzero(part_of_item == p) for p in range(3))
    check_every_class(targets, groups, parts, num_classes=num_classes, classes=classes, split=fractions)
    assert_disjoint_groups(groups, *parts)
    return parts


def check_every_class(
    targets: np.ndarray,
    groups: np.ndarray,
    parts: Sequence[np.ndarray],
    *,
    num_classes: int,
    classes: Sequence[str] | None = None,
    split: Sequence[float] | None = None,
    names: Sequence[str] = ("train", "val", "test"),
) -> None:
    """Raise a ``ValueError`` when one of ``parts`` has no item of some class.

    A generator cannot learn a class it never sees and a metric cannot score a class absent from
    its split, so this is refused before anything trains. The message gives, for the first class
    missing somewhere, its groups and items per split, and says what to change.
    """
    targets, groups = np.asarray(targets), np.asarray(groups).astype(str)
    for name, idx in zip(names, parts):
        missing = sorted(set(range(num_classes)) - set(np.unique(targets[idx]).tolist()))
        if not missing:
            continue
        label = missing[0]
        shown = repr(classes[label]) if classes is not None and label < len(classes) else str(label)
        counts = []
        for other, other_idx in zip(names, parts):
            of_class = np.asarray(other_idx, dtype=np.int64)[targets[other_idx] == label]
            counts.append(f"{other} {len(set(groups[of_class].tolist()))} group(s) / {len(of_class)} item(s)")
        more = f" (and {len(missing) - 1} more class(es))" if len(missing) > 1 else ""
        how = f"split {tuple(split)}" if split is not None else "this split"
        raise ValueError(
            f"the {name} split has no item of class {shown}{more}: with {how} it has "
            f"{', '.join(counts)}. Every split needs every class: add images from more patients (groups) of "
            "that class, remove its folder, or give larger val/test fractions."
        )


def assert_disjoint_groups(groups: np.ndarray, *parts: np.ndarray, names: Sequence[str] = ("train", "val", "test")) -> None:
    """Raise ``LeakageError`` when one group (patient) has items in two of ``parts``."""
    groups = np.asarray(groups).astype(str)
    seen: dict[str, str] = {}
    for name, idx in zip(names, parts):
        for group in set(groups[np.asarray(idx, dtype=np.int64)].tolist()):
            if group in seen:
                raise LeakageError(f"group (patient) {group!r} is in both the {seen[group]} and the {name} split")
            seen[group] = name


def subsample_groups(
    indices: np.ndarray,
    targets: np.ndarray,
    groups: np.ndarray,
    *,
    fraction: float,
    seed: int = 0,
) -> np.ndarray:
    """Keep a seeded ``fraction`` of the *groups* among ``indices`` (at least one group per class).

    Groups are taken in one seeded order, so a smaller fraction keeps a subset of the groups a
    larger one keeps (nested), except where a group is added to cover a missing class.
    """
    check_float(fraction, "train_fraction", minimum=0, min_inclusive=False, maximum=1,
                hint="a fraction of the training patients")
    indices = np.asarray(indices, dtype=np.int64)
    if fraction == 1:
        return indices
    sub_targets = np.asarray(targets)[indices]
    sub_groups = np.asarray(groups).astype(str)[indices]
    signatures = group_signatures(sub_targets, sub_groups)
    ordered = sorted(signatures)
    rng = np.random.default_rng([seed, 7919])  # a stream of its own: independent of the split's
    ordered = [ordered[i] for i in rng.permutation(len(ordered))]
    keep_count = max(1, int(round(fraction * len(ordered))))
    kept = ordered[:keep_count]
    covered = set().union(*(signatures[g] for g in kept))
    for cls in sorted(set(sub_targets.tolist()) - covered):
        extra = next(g for g in ordered if cls in signatures[g])
        kept.append(extra)
        covered.update(signatures[extra])
    kept_set = set(kept)
    mask = np.array([g in kept_set for g in sub_groups.tolist()], dtype=bool)
    return indices[mask]


def checkpoint_patients(checkpoint) -> list[str] | None:
    """The training patients of the ``synthaug train`` run that wrote the checkpoint folder ``checkpoint`` (its
    run folder's ``training_options.json``), or None when they are not recorded there."""
    import json
    from pathlib import Path

    record = Path(checkpoint).parent / "training_options.json"
    try:
        groups = json.loads(record.read_text())["splits"]["train_groups"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return [str(g) for g in groups] if isinstance(groups, list) else None


def refuse_evaluation_patients(patients: Sequence[str], splits, what: str) -> None:
    """A ``LeakageError`` naming ``what`` when any of ``patients`` (e.g. those a generator was trained on) is a
    validation or test patient of ``splits``."""
    seen = sorted(set(map(str, patients)) & set(map(str, splits.info["val_groups"] + splits.info["test_groups"])))
    if seen:
        raise LeakageError(f"{what} was trained on {len(seen)} validation/test patient(s) of this split (e.g. "
                           f"{seen[0]!r}); use a generator trained on other patients (a fixed data.design keeps the "
                           "roles apart)")
