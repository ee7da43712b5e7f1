"""Old import paths keep working for one release: each warns once, naming its new path, and hands out the same
objects as the new one."""
from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

# old module -> where its code lives now (the path the warning names)
MOVED = {
    "synthaug.synthetic": "synthaug.mix.dataset",
    "synthaug.synthetic_options": "synthaug.mix.dataset_options",
    "synthaug.transforms": "synthaug.mix.albumentations",
    "synthaug.transforms_v2": "synthaug.mix.torchvision",
    "synthaug.mix_pool": "synthaug.mix.transform_pool",
    "synthaug.pool": "synthaug.mix.pool",
    "synthaug.items": "synthaug.mix.items",
    "synthaug.mixing": "synthaug.mix.additive",
    "synthaug.edits": "synthaug.mix.edits",
    "synthaug.strategies": "synthaug.mix.teacher",
    "synthaug.quotas": "synthaug.mix.quotas",
    "synthaug.losses": "synthaug.mix.weighted_loss",
    "synthaug.bench.config": "synthaug.bench.grid_config",
    "synthaug.benchmark": "synthaug.bench",
    "synthaug.report": "synthaug.bench",
    "synthaug.metrics": "synthaug.quality",
    "synthaug.sources.core": "synthaug.sources.contract",
}


def import_fresh(name: str) -> tuple[object, list[warnings.WarningMessage]]:
    """Import ``name`` as a first import would (its module code runs again), recording synthaug's deprecation
    warnings (the new module is imported first, so that the libraries it loads warn about nothing here)."""
    importlib.import_module(MOVED[name])
    sys.modules.pop(name, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(name)
    return module, [w for w in caught if issubclass(w.category, DeprecationWarning) and "synthaug" in str(w.message)]


def where_it_lives(obj: object, new: str) -> list[object]:
    """Every module that holds ``obj`` among the new path's (the package and its loaded submodules) and the one
    that defines it (e.g. ``synthaug.sources`` for ``open_source``, which the old ``synthaug.pool`` gave out)."""
    names = [name for name in list(sys.modules) if name == new or name.startswith(new + ".")]
    modules = [sys.modules[name] for name in names] + [sys.modules.get(getattr(obj, "__module__", None) or "")]
    return [m for m in modules if m is not None and any(value is obj for value in vars(m).values())]


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_path_warns_once_with_its_new_path_and_gives_the_same_objects(old):
    new = MOVED[old]
    module, caught = import_fresh(old)
    assert len(caught) == 1, [str(w.message) for w in caught]
    message = str(caught[0].message)
    assert old in message and new in message
    assert caught[0].filename == __file__  # attributed to the importing line, not to the shim or importlib
    new_module = importlib.import_module(new)
    assert module.__all__
    for name in module.__all__:
        obj = getattr(module, name)
        if hasattr(new_module, name):
            assert obj is getattr(new_module, name), name
        else:  # a name the old module gathered from elsewhere
            assert where_it_lives(obj, new), name


def test_the_new_paths_and_the_package_names_do_not_warn():
    code = ("import synthaug, synthaug.mix, synthaug.bench.runner, synthaug.cli, synthaug.sources\n"
            "from synthaug import SyntheticDataset, SyntheticMix, SyntheticMixV2, TeacherLabels, EditSource\n"
            "from synthaug.mix import AdditiveSynthetic, weighted_cross_entropy, distill_targets, generate_pool\n"
            "assert SyntheticDataset is synthaug.mix.SyntheticDataset and SyntheticMix is synthaug.mix.SyntheticMix\n"
            f"import importlib, sys\nfor new in {sorted(set(MOVED.values()))!r}:\n    importlib.import_module(new)\n"
            f"assert not set({sorted(MOVED)!r}) & set(sys.modules), 'an old path was imported'\n")
    proc = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", code], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_synthetic_mix_keeps_the_name_saved_pipelines_carry():
    pytest.importorskip("albumentations")
    from synthaug.mix import SyntheticMix

    assert SyntheticMix.get_class_fullname() == "synthaug.transforms.SyntheticMix"
