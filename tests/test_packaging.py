"""synthaug without the repository: the presets ship as package data, ``synthaug bench --preset`` runs them,
and a built wheel installed elsewhere answers its documented first commands."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import synthaug
from synthaug.cli import main
from synthaug.config import ConfigError
from synthaug.presets import config_file, list_presets, preset_path

REPO = Path(__file__).resolve().parent.parent


# --- presets by name ---------------------------------------------------------------------------------------------

def test_every_preset_in_configs_is_listed_by_name():
    configs = REPO / "configs"
    assert list_presets("bench") == sorted(p.stem for p in (configs / "bench").glob("*.yaml"))
    assert list_presets("generators") == sorted(p.stem for p in (configs / "generators").glob("*.yaml"))
    assert list_presets("gallery") == ["convergence", "gallery", "recipes"]  # configs/*.yaml: the benchmark scripts' configs
    assert "malaria-quick" in list_presets("bench") and "cvae-malaria" in list_presets("generators")


def test_a_name_finds_the_packaged_preset_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ here
    path = preset_path("malaria-quick")
    assert path.is_file() and path.name == "malaria-quick.yaml" and path.parent.name == "bench"
    assert preset_path("malaria-quick.yaml") == path
    assert preset_path("cvae-malaria", kind="generators").read_text().startswith("# synthaug train")


def test_a_file_path_wins_over_a_preset_of_the_same_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "malaria-quick.yaml").write_text("name: mine\n")
    assert preset_path("malaria-quick.yaml") == Path("malaria-quick.yaml")
    assert preset_path(tmp_path / "malaria-quick.yaml") == tmp_path / "malaria-quick.yaml"


def test_an_unknown_name_lists_the_presets_and_the_closest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"no benchmark preset named 'malaria-quik' \(did you mean 'malaria-quick'\?\)"
                       ) as err:
        preset_path("malaria-quik")
    assert ", ".join(list_presets("bench")) in str(err.value)
    with pytest.raises(ConfigError, match="preset kind 'bnech'.*did you mean 'bench'"):
        list_presets("bnech")


def test_a_missing_repository_path_points_to_the_preset_of_that_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the README's path, typed outside the repository
    with pytest.raises(ConfigError, match=r"configs/bench/malaria-quick.yaml does not exist.*name 'malaria-quick'"):
        preset_path("configs/bench/malaria-quick.yaml")
    with pytest.raises(ConfigError, match=r"--config configs/bench/malaria-quick.yaml: .*--preset malaria-quick"):
        config_file(config="configs/bench/malaria-quick.yaml")
    with pytest.raises(ConfigError, match="either --config FILE or --preset NAME"):
        config_file()


# --- the commands, in this process --------------------------------------------------------------------------------

def test_bench_runs_a_preset_by_name_outside_the_repository(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "--preset", "malaria-quick", "--set", "seeds=[0]", "--out", "run", "--dry-run"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["name"] == "malaria-quick" and resolved["seeds"] == [0] and resolved["out_dir"] == "run"
    assert Path(resolved["config_file"]) == preset_path("malaria-quick")
    assert not (tmp_path / "run").exists()


def test_bench_takes_a_config_file_and_shards(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    shutil.copy(preset_path("malaria-quick"), tmp_path / "grid.yaml")
    assert main(["bench", "--config", "grid.yaml", "--shard", "1/2", "--dry-run"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["config_file"] == "grid.yaml" and resolved["shard"] == "1/2"
    assert resolved["shard_cells"] < resolved["grid_cells"]


@pytest.mark.parametrize("argv, message", [
    (["--preset", "malaria-quik"], "did you mean 'malaria-quick'"),
    (["--config", "configs/bench/malaria-quick.yaml"], "run with --preset malaria-quick instead"),
    (["--preset", "malaria-quick", "--set", "classifier.stepz=3"], "stepz"),
    (["--preset", "malaria-quick", "--shard", "2/2"], "--shard"),
])
def test_bench_errors_name_the_value_and_the_fix(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(["bench", *argv, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("synthaug bench: error:") and message in err


def test_the_repository_script_is_the_same_command(tmp_path, capsys):
    args = ["--config", str(REPO / "configs" / "bench" / "malaria-quick.yaml"), "--set", "seeds=[0, 1]",
            "--shard", "0/2", "--out", str(tmp_path / "run"), "--dry-run"]
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert main(["bench", *args]) == 0
    assert json.loads(proc.stdout) == json.loads(capsys.readouterr().out)
    bad = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--preset", "malaria-quik", "--dry-run"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "benchmarks/run.py: error:" in bad.stderr and "malaria-quick" in bad.stderr


def test_train_takes_a_preset_by_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--preset", "cvae-malaria", "--set", "generator.train.steps=7", "--dry-run"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["generator"]["name"] == "cvae" and resolved["generator"]["train"]["steps"] == 7


# --- a built wheel, installed away from the repository ------------------------------------------------------------

def _run(cmd: list[str], cwd: Path, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory) -> tuple[Path, Path]:
    """A wheel built from a copy of the sources (no build/ or egg-info written into the working tree, which other
    runs may share), installed with ``pip --target``; returns (wheel, target)."""
    root = tmp_path_factory.mktemp("packaging")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO / name, src / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("synthaug", "configs"):
        shutil.copytree(REPO / folder, src / folder, ignore=skip)
    pip = [sys.executable, "-m", "pip"]
    # --no-build-isolation: build with the setuptools of this venv (no network)
    _run([*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"), str(src)], cwd=root,
         env=os.environ.copy(), timeout=300)
    (wheel,) = (root / "dist").glob("synthaug-*.whl")
    target = root / "target"
    _run([*pip, "install", "-q", "--no-deps", "--target", str(target), str(wheel)], cwd=root, env=os.environ.copy(),
         timeout=300)
    return wheel, target


def test_the_wheel_holds_every_module_and_every_preset(installed_wheel):
    wheel, _ = installed_wheel
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "synthaug").rglob("*.py") if "__pycache__" not in p.parts}
    presets = {"synthaug/" + p.relative_to(REPO).as_posix() for p in (REPO / "configs").rglob("*.yaml")}
    assert modules - names == set() and presets - names == set()
    assert "synthaug/bench/launch.py" in names and "synthaug/configs/bench/malaria-quick.yaml" in names


def _without_the_repository(target: Path) -> tuple[list[str], dict]:
    """The interpreter and environment that see synthaug only as the files in ``target``.

    ``python -S`` reads no .pth file, so the editable install of the working tree stays out (its import finder would
    serve any module missing from the wheel out of the repository); the dependencies come from this venv's
    site-packages, put on PYTHONPATH after ``target``."""
    import site

    paths = [str(target), *site.getsitepackages()]
    return [sys.executable, "-S"], {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


@pytest.mark.slow
def test_the_installed_wheel_runs_the_first_commands_without_the_repository(installed_wheel, tmp_path):
    _, target = installed_wheel
    python, env = _without_the_repository(target)
    where = _run([*python, "-c", "import synthaug, synthaug.presets as p; print(synthaug.__file__); "
                                 "print(p.preset_path('malaria-quick'))"], cwd=tmp_path, env=env)
    module_file, preset_file = where.stdout.split()
    assert Path(module_file).is_relative_to(target) and Path(preset_file).is_relative_to(target)

    script = target / "bin" / "synthaug"  # the console script pip wrote, run by this interpreter
    assert script.is_file()
    version = _run([*python, str(script), "--version"], cwd=tmp_path, env=env)
    assert version.stdout.strip() == f"synthaug {synthaug.__version__}"
    listed = _run([*python, str(script), "list"], cwd=tmp_path, env=env)
    assert {"cvae", "dcgan", "ddpm"} <= {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}

    dry = _run([*python, "-m", "synthaug.cli", "bench", "--preset", "malaria-quick", "--dry-run"], cwd=tmp_path, env=env)
    resolved = json.loads(dry.stdout)
    assert resolved["name"] == "malaria-quick" and Path(resolved["config_file"]).is_relative_to(target)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_accelerate_launch_runs_the_bench_module_of_the_installed_wheel(installed_wheel, tmp_path):
    _, target = installed_wheel
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    if accelerate is None:
        pytest.skip("accelerate's launcher is not installed next to this interpreter")
    # accelerate starts its own interpreter (with site): synthaug is found in target first, as the preset shows
    env = {**os.environ, "PYTHONPATH": str(target), "OMP_NUM_THREADS": "1"}
    proc = _run([accelerate, "launch", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
                 "--dynamo_backend", "no", "-m", "synthaug.cli", "bench", "--preset", "malaria-quick",
                 "--set", "seeds=[0]", "--dry-run"], cwd=tmp_path, env=env)
    resolved = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert resolved["seeds"] == [0] and Path(resolved["config_file"]).is_relative_to(target)
