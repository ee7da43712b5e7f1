"""Everything about the distribution lives in pyproject.toml except the package list, which pyproject cannot say:
every ``synthaug*`` package on disk (found, so a new sub-package ships without editing this file) plus the
top-level ``configs/`` folder installed as ``synthaug.configs`` with its YAML presets as package data, so the
presets ship in the wheel while the repository keeps them where users look for them.
"""
from setuptools import find_namespace_packages, find_packages, setup

# configs/bench and configs/generators hold only YAML; listed as (namespace) packages so setuptools copies them
presets = ["synthaug.configs", *(f"synthaug.configs.{name}" for name in
                                 find_namespace_packages(where="configs", exclude=["*__pycache__*"]))]
setup(packages=[*find_packages(include=["synthaug", "synthaug.*"]), *presets],
      package_dir={"synthaug.configs": "configs"},
      package_data={name: ["*.yaml"] for name in presets})
