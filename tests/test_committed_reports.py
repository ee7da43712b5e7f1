"""The committed strategies and v2 reports rebuild byte-identical (report.md) from their committed run records
with today's runner and report code: a restructuring that changes a number, a row or a word shows here."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"


@pytest.mark.parametrize("name", ["malaria-strategies", "malaria-lowdata-v2"])
def test_committed_report_rebuilds_byte_identical(name, tmp_path, monkeypatch):
    from synthaug.cli import main

    monkeypatch.chdir(tmp_path)  # the report names its run folder as given: runs/<name>, as it was built
    shutil.copytree(RESULTS / name / "run-record", tmp_path / "runs" / name)
    assert main(["report", f"runs/{name}", "--out", "report"]) == 0
    assert (tmp_path / "report" / "report.md").read_text() == (RESULTS / name / "report.md").read_text()
    if (RESULTS / name / "analysis.json").is_file():
        assert (tmp_path / "report" / "analysis.json").read_text() == (RESULTS / name / "analysis.json").read_text()
