"""Shared fixtures: the real data root, an optional fresh cache, and the malaria data at 32 px.

Environment:
- ``SYNTHAUG_DATA``: the folder holding ``malaria-nih/`` and ``medmnist/`` (default: ``<repo>/../shared/data``
  when it exists; otherwise the tests that need real data are skipped).
- ``SYNTHAUG_TEST_FRESH_CACHE=1``: decode into a temporary image cache for this session (slow: about 20 s
  more for malaria); by default the user's cache is used, so a second run is fast.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

try:
    import synthaug  # noqa: F401
except ImportError:  # not installed and not run from the repo root
    sys.path.insert(0, str(REPO_ROOT))
    import synthaug  # noqa: F401


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory):
    """A throw-away ``SYNTHAUG_CACHE`` for the session, only when ``SYNTHAUG_TEST_FRESH_CACHE=1``."""
    if os.environ.get("SYNTHAUG_TEST_FRESH_CACHE") != "1":
        yield None
        return
    cache = tmp_path_factory.mktemp("synthaug-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYNTHAUG_CACHE", str(cache))
        yield cache


@pytest.fixture(scope="session")
def data_root() -> Path:
    env = os.environ.get("SYNTHAUG_DATA")
    if env:
        root = Path(env).expanduser()
        if not root.is_dir():
            pytest.skip(f"SYNTHAUG_DATA={env} is not a folder; point it at the folder holding malaria-nih/ and medmnist/")
        return root
    default = REPO_ROOT.parent / "shared" / "data"
    if default.is_dir():
        return default
    pytest.skip(f"no real data: set SYNTHAUG_DATA to the folder holding malaria-nih/ and medmnist/ "
                f"(or provide {default})")


@pytest.fixture(scope="session")
def malaria_dir(data_root) -> Path:
    path = data_root / "malaria-nih"
    if not (path / "cell_images").is_dir():
        pytest.skip(f"no NIH malaria data at {path}")
    return path


@pytest.fixture(scope="session")
def breastmnist_npz(data_root) -> Path:
    path = data_root / "medmnist" / "breastmnist.npz"
    if not path.is_file():
        pytest.skip(f"no BreastMNIST file at {path}")
    return path


@pytest.fixture(scope="session")
def malaria32(data_root, malaria_dir):
    """All of malaria at 32 px, split by patient with seed 0 (decoded once, then cached on disk)."""
    return synthaug.load_dataset("malaria", root=data_root, image_size=32, seed=0)


@pytest.fixture(scope="session")
def breastmnist28(data_root, breastmnist_npz):
    return synthaug.load_dataset("medmnist:breastmnist", root=data_root, image_size=28)


# --------------------------------------------------------------------------- headless Chromium
def _install_chromium() -> str | None:
    """Make Debian's ``chromium`` and ``chromedriver`` available; return why not when that is impossible."""
    import shutil
    import subprocess

    if shutil.which("chromium") and shutil.which("chromedriver"):
        return None
    apt = shutil.which("apt-get")
    if apt is None:
        return "no chromium/chromedriver and no apt-get to install them (install Debian's chromium and chromium-driver)"
    prefix = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if prefix is None:
        return "chromium is missing and this user cannot install it (not root, no sudo)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in ([*prefix, apt, "update", "-q"], [*prefix, apt, "install", "-y", "-q", "chromium", "chromium-driver"]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0 and "install" in cmd:
            return f"`{' '.join(cmd)}` failed: {proc.stderr.strip()[-300:]}"
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        return "apt-get installed chromium but chromium/chromedriver are still not on PATH"
    return None


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium driven by selenium (Debian's chromium + chromium-driver, installed when missing)."""
    import shutil

    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the dev extras: pip install -e .[dev]")
    from selenium.webdriver.chrome.service import Service

    why = _install_chromium()
    if why:
        pytest.skip(why)
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-extensions", "--no-first-run",
                "--window-size=1280,1600"):
        options.add_argument(arg)
    options.binary_location = shutil.which("chromium")
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
