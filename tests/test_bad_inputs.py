"""Bad files in a data folder: clear errors that name the file, or warnings that list it; never a silent drop."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

import synthaug


def _cell(path, size=(20, 24)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), 180, dtype=np.uint8)).save(path)


def _malaria_layout(root, patients=("C1P1ThinF", "C2P2ThinF", "C3P3ThinF", "C4P4ThinF", "C5P5ThinF",
                                    "C6P6ThinF", "C7P7ThinF", "C8P8ThinF", "C9P9ThinF", "C10P10ThinF")):
    for cls in ("Parasitized", "Uninfected"):
        for p in patients:
            for k in range(2):
                _cell(root / "malaria-nih" / "cell_images" / cls / f"{p}_IMG_2015_cell_{k}.png")
    return root


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHAUG_CACHE", str(tmp_path / "cache"))


def test_malaria_layout_loads(tmp_path):
    root = _malaria_layout(tmp_path / "data")
    splits = synthaug.load_dataset("malaria", root=root, image_size=16, split=(0.6, 0.2, 0.2))
    assert len(splits.train) + len(splits.val) + len(splits.test) == 40


def test_malaria_file_without_patient_id_is_named(tmp_path):
    root = _malaria_layout(tmp_path / "data")
    _cell(root / "malaria-nih" / "cell_images" / "Uninfected" / "scan_0042.png")
    with pytest.raises(ValueError, match=r"scan_0042\.png.*no patient id"):
        synthaug.load_dataset("malaria", root=root, image_size=16, split=(0.6, 0.2, 0.2))


def test_malaria_mapping_disagreement_is_an_error(tmp_path):
    root = _malaria_layout(tmp_path / "data")
    mapping = root / "malaria-nih" / "patient_mapping"
    mapping.mkdir()
    (mapping / "patientid_cellmapping_parasitized.csv").write_text(
        "C1P1ThinF,['C2P2ThinF_IMG_2015_cell_0.png'],,,\n")
    with pytest.raises(ValueError, match=r"disagree.*C2P2ThinF_IMG_2015_cell_0\.png"):
        synthaug.load_dataset("malaria", root=root, image_size=16, split=(0.6, 0.2, 0.2))


def test_non_image_files_are_ignored_with_a_warning_that_names_them(tmp_path):
    root = _malaria_layout(tmp_path / "data")
    cls = root / "malaria-nih" / "cell_images" / "Parasitized"
    (cls / "notes.txt").write_text("not a cell")
    (cls / "Thumbs.db").write_bytes(b"\0" * 16)  # the NIH archive ships these: ignored quietly
    with pytest.warns(UserWarning, match=r"notes\.txt") as record:
        splits = synthaug.load_dataset("malaria", root=root, image_size=16, split=(0.6, 0.2, 0.2))
    assert not any("Thumbs.db" in str(w.message) for w in record)
    assert len(splits.train) + len(splits.val) + len(splits.test) == 40


def test_mixed_image_modes_load_as_rgb(tmp_path):
    root = _malaria_layout(tmp_path / "data")
    cls = root / "malaria-nih" / "cell_images" / "Parasitized"
    Image.fromarray(np.full((20, 20), 100, dtype=np.uint8)).save(cls / "C1P1ThinF_IMG_gray_cell_9.png")
    Image.fromarray(np.full((20, 20, 4), 100, dtype=np.uint8)).save(cls / "C1P1ThinF_IMG_rgba_cell_9.png")
    Image.fromarray(np.full((20, 20), 30000, dtype=np.uint16)).save(cls / "C1P1ThinF_IMG_16bit_cell_9.png")
    Image.fromarray(np.full((20, 20, 3), 100, dtype=np.uint8)).convert("P").save(cls / "C1P1ThinF_IMG_pal_cell_9.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: every mode is a valid image
        splits = synthaug.load_dataset("malaria", root=root, image_size=16, split=(0.6, 0.2, 0.2))
    assert len(splits.train) + len(splits.val) + len(splits.test) == 44
    assert splits.train[0][0].shape == (3, 16, 16)


def test_corrupt_file_names_the_file_or_is_skipped_and_listed(tmp_path):
    root = _malaria_layout(tmp_path / "data")
    bad = root / "malaria-nih" / "cell_images" / "Uninfected" / "C3P3ThinF_IMG_2015_cell_7.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(synthaug.data.BadImageError, match=r"C3P3ThinF_IMG_2015_cell_7\.png.*on_bad_file='skip'"):
        synthaug.load_dataset("malaria", root=root, image_size=16, split=(0.6, 0.2, 0.2))
    with pytest.warns(UserWarning, match=r"1 unreadable file"):
        splits = synthaug.load_dataset("malaria", root=root, image_size=16, split=(0.6, 0.2, 0.2), on_bad_file="skip")
    assert splits.info["skipped_files"] == ["Uninfected/C3P3ThinF_IMG_2015_cell_7.png"]
    assert len(splits.train) + len(splits.val) + len(splits.test) == 40
    with pytest.raises(ValueError, match="on_bad_file='ignore'"):
        synthaug.load_dataset("malaria", root=root, image_size=16, on_bad_file="ignore")


def test_missing_data_root_says_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"does not exist"):
        synthaug.load_dataset("malaria", root=tmp_path / "nowhere")
    monkeypatch.delenv("SYNTHAUG_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match=r"SYNTHAUG_DATA"):
        synthaug.load_dataset("malaria")


# --------------------------------------------------------------------------- CI=true: no silent skips
NEEDS_DATA_AND_BROWSER = '''
def test_needs_data(data_root):
    pass


def test_needs_a_browser(browser):
    pass
'''


def _pytest_with_this_conftest(tmp_path, env):
    """Run two tests that need the data root and the browser, with tests/conftest.py, in a fresh pytest."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    suite = tmp_path / "suite"
    suite.mkdir()
    shutil.copy(Path(__file__).with_name("conftest.py"), suite / "conftest.py")
    (suite / "test_needs.py").write_text(NEEDS_DATA_AND_BROWSER)
    # no data root, and a PATH without chromium: both missing whatever this machine has
    base = {k: v for k, v in os.environ.items() if k not in ("CI", "SYNTHAUG_DATA")}
    run_env = {**base, "SYNTHAUG_DATA": str(tmp_path / "no-data"), "PATH": str(tmp_path / "empty-bin"), **env}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(suite)],
                          cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=300)


def test_missing_data_and_browser_skip_locally_with_what_to_do(tmp_path):
    proc = _pytest_with_this_conftest(tmp_path, {})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 skipped" in proc.stdout
    assert "no-data is not a folder" in proc.stdout and "chromium and chromedriver not on PATH" in proc.stdout


def test_under_ci_a_missing_data_root_fails_the_run(tmp_path):
    proc = _pytest_with_this_conftest(tmp_path, {"CI": "true"})
    assert proc.returncode != 0
    assert "CI=true" in proc.stderr and "no-data is not a folder" in proc.stderr
    assert "passed" not in proc.stdout and "skipped" not in proc.stdout


def test_under_ci_a_missing_browser_fails_the_test(tmp_path):
    (tmp_path / "data").mkdir()  # a data root exists, so the run starts; chromium is still missing
    proc = _pytest_with_this_conftest(tmp_path, {"CI": "true", "SYNTHAUG_DATA": str(tmp_path / "data")})
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "1 passed, 1 error" in proc.stdout and "skipped" not in proc.stdout  # a fixture failure is an error
    assert "chromium and chromedriver not on PATH" in proc.stdout
