"""The YAML presets that ship with synthaug: benchmark grids, generator trainings, the gallery.

They live in the repository's ``configs/`` folder and are installed as the package data of ``synthaug.configs``,
so a name works wherever synthaug is installed, with or without the repository::

    from synthaug.presets import list_presets, preset_path
    list_presets("bench")                    # ['malaria-full', 'malaria-lowdata', 'malaria-quick', 'medmnist']
    preset_path("malaria-quick")             # .../synthaug/configs/bench/malaria-quick.yaml
    preset_path("my-grid.yaml")              # a file path wins over a name
    preset_path("cvae-malaria", kind="generators")
"""
from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

from .checks import did_you_mean
from .config import ConfigError

# kind -> sub-folder of configs/ ("." for the files at its top)
KINDS = {"bench": "bench", "generators": "generators", "gallery": "."}
SUFFIX = ".yaml"
WHAT = {"bench": "benchmark", "generators": "generator", "gallery": "gallery"}  # for messages


def _name(path: Path) -> str:
    """``malaria-quick`` for ``malaria-quick``, ``malaria-quick.yaml`` and ``configs/bench/malaria-quick.yaml``."""
    return path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else path.name


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ConfigError(f"preset kind {kind!r}: use one of {list(KINDS)}{did_you_mean(kind, KINDS)}")
    return kind


def presets_dir(kind: str = "bench") -> Path:
    """The folder holding the presets of ``kind`` (the installed package data, or configs/ of an editable install)."""
    root = importlib.resources.files("synthaug.configs")
    folder = root if KINDS[_check_kind(kind)] == "." else root / KINDS[kind]
    # synthaug is installed as files (torch and its extensions cannot be imported from a zip), so this is a real path
    return Path(str(folder))


def list_presets(kind: str = "bench") -> list[str]:
    """The names of the presets of ``kind`` ("bench", "generators" or "gallery"), sorted."""
    folder = presets_dir(kind)
    return sorted(p.name[: -len(SUFFIX)] for p in folder.iterdir() if p.is_file() and p.name.endswith(SUFFIX))


def preset_path(name_or_path: str | os.PathLike, kind: str = "bench") -> Path:
    """The YAML file for ``name_or_path``: an existing file as given, else the packaged preset of that name.

    ``malaria-quick`` and ``malaria-quick.yaml`` both name ``configs/bench/malaria-quick.yaml``. An unknown name
    raises ``ConfigError`` listing the presets of ``kind`` with the closest one.
    """
    given = Path(name_or_path)
    if given.is_file():  # the user's own file, even when a preset has the same name
        return given
    name = _name(given)
    names = list_presets(kind)
    if len(given.parts) > 1:  # a path, not a name: never swapped for a preset silently
        hint = (f"; to use the {name!r} preset installed with synthaug, give its name {name!r} instead of a path"
                if name in names else "")
        raise ConfigError(f"config file {given} does not exist{hint}")
    if name in names:
        return presets_dir(kind) / f"{name}{SUFFIX}"
    raise ConfigError(f"no file {str(given)!r} here and no {WHAT[kind]} preset named {name!r}"
                      f"{did_you_mean(name, names)}; the {WHAT[kind]} presets are: {', '.join(names)}. Give one of "
                      "them or the path of a YAML file.")


def config_file(*, config: str | os.PathLike | None = None, preset: str | None = None, kind: str = "bench") -> Path:
    """The YAML file of a command's ``--config FILE`` or ``--preset NAME`` (exactly one of them).

    ``--config`` is a file; when it is missing but names a packaged preset (``configs/bench/malaria-quick.yaml``
    run outside the repository), the error says which ``--preset`` to use. ``--preset`` goes through
    ``preset_path``: a name, or a path, which wins.
    """
    if (config is None) == (preset is None):
        raise ConfigError("give either --config FILE or --preset NAME (e.g. --preset "
                          f"{(list_presets(kind) or ['NAME'])[0]})")
    if preset is not None:
        return preset_path(preset, kind=kind)
    path = Path(config)
    if path.is_file():
        return path
    name = _name(path)
    hint = (f"; the {name!r} preset is installed with synthaug: run with --preset {name} instead"
            if name in list_presets(kind) else f"; or use a packaged preset: --preset one of {list_presets(kind)}")
    raise ConfigError(f"--config {config}: the file does not exist{hint}")


__all__ = ["KINDS", "config_file", "list_presets", "preset_path", "presets_dir"]
