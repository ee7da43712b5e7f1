"""Shared fixtures: the real data root, an optional fresh cache, and the malaria data at 32 px.

Environment:
- ``SYNTHAUG_DATA``: the folder holding ``malaria-nih/`` and ``medmnist/`` (default: ``<repo>/../shared/data``
  when it exists; otherwise the tests that need real data are skipped).
- ``CI=true``: nothing is skipped for want of real data, selenium or Chromium: the run fails at once when the
  data root is missing, and a test fails when the data, the browser or its driver it needs are missing
  (``.ci/run`` installs the browser before pytest starts; tests never install anything).
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


def under_ci() -> bool:
    """Whether this is a CI run (``CI=true``, as GitHub Actions, GitLab and .ci/run set it)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Skip the test for want of ``reason``, or fail it under CI, where a skip would hide untested code."""
    if under_ci():
        pytest.fail(f"{reason} (CI=true: a CI run must not skip these tests)", pytrace=False)
    pytest.skip(reason)


def find_data_root() -> tuple[Path | None, str]:
    """The real-data folder and "", or None and what to do about it."""
    env = os.environ.get("SYNTHAUG_DATA")
    if env:
        root = Path(env).expanduser()
        if root.is_dir():
            return root, ""
        return None, f"SYNTHAUG_DATA={env} is not a folder; point it at the folder holding malaria-nih/ and medmnist/"
    default = REPO_ROOT.parent / "shared" / "data"
    if default.is_dir():
        return default, ""
    return None, (f"no real data: set SYNTHAUG_DATA to the folder holding malaria-nih/ and medmnist/ "
                  f"(or provide {default})")


def pytest_sessionstart(session: pytest.Session) -> None:
    # Under CI a missing data root would turn about a third of the suite into skips and the run green:
    # stop before any test runs instead.
    if under_ci():
        root, why = find_data_root()
        if root is None:
            raise pytest.UsageError(f"{why}. CI=true: the real data are required, the run stops here.")


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
    root, why = find_data_root()
    if root is None:
        unavailable(why)
    return root


@pytest.fixture(scope="session")
def malaria_dir(data_root) -> Path:
    path = data_root / "malaria-nih"
    if not (path / "cell_images").is_dir():
        unavailable(f"no NIH malaria data at {path}")
    return path


@pytest.fixture(scope="session")
def breastmnist_npz(data_root) -> Path:
    path = data_root / "medmnist" / "breastmnist.npz"
    if not path.is_file():
        unavailable(f"no BreastMNIST file at {path}")
    return path


@pytest.fixture(scope="session")
def malaria32(data_root, malaria_dir):
    """All of malaria at 32 px, split by patient with seed 0 (decoded once, then cached on disk)."""
    return synthaug.load_dataset("malaria", root=data_root, image_size=32, seed=0)


@pytest.fixture(scope="session")
def breastmnist28(data_root, breastmnist_npz):
    return synthaug.load_dataset("medmnist:breastmnist", root=data_root, image_size=28)


# --------------------------------------------------------------------------- headless Chromium
@pytest.fixture(scope="session")
def browser():
    """A headless Chromium driven by selenium (Debian's chromium + chromium-driver; .ci/run installs them)."""
    import shutil

    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        unavailable("selenium is missing: it is in the dev extras, pip install -e .[dev]")
    missing = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    if missing:
        unavailable(f"{' and '.join(missing)} not on PATH: install Debian's chromium and chromium-driver "
                    "(sudo apt-get install chromium chromium-driver; .ci/run does this before pytest starts)")
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


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny models (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``),
    restored afterwards. Tiny ops gain nothing from a second intra-op thread, and on a busy 2-core machine every
    op waits for a descheduled one (measured: test_gan.py 250 s with two threads, 20 s with one). No assertion
    depends on the thread count: every comparison runs both sides with the same setting."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
