"""The metric registry of synthaug.quality: register / create / list, options checked, the default set and its
order, and the report and tables asking the metrics for their rows (no data set, no training: fast)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from synthaug.bench.tables import quality_tables
from synthaug.quality import GateConfig, evaluate_generator, format_report
from synthaug.quality.metrics import (DEFAULT_METRICS, Column, Metric, MetricContext, TableColumn, create_metric,
                                      list_metrics, metric_options, metric_record, option, register_metric,
                                      reported_metrics)

RECORD = (Path(__file__).resolve().parents[1] / "docs" / "results" / "malaria-lowdata-v2" / "run-record" / "quality"
          / "malaria-32px" / "frac1" / "seed0" / "cvae" / "quality.json")


@pytest.fixture(scope="module")
def committed() -> dict:
    return json.loads(RECORD.read_text())


@dataclass
class ConstantOptions:
    value: float = option(0.5, "the number it reports")

    def check(self, owner: str) -> None:
        if not 0 <= self.value <= 1:
            raise ValueError(f"{owner}: value={self.value!r} must be in [0, 1]")


@register_metric("test-constant")
class ConstantMetric(Metric):
    """A metric for these tests: reports its option."""

    keys = ("test_constant",)
    Options = ConstantOptions
    text_columns = (Column("const", 6, ".2f"),)

    def compute(self, context: MetricContext) -> dict[str, Any]:
        return {"test_constant": {"value": self.options.value}}

    def text_cells(self, result: dict[str, Any], side: str, name: str | None) -> list[Any]:
        return [result["test_constant"]["value"]]

    def text_section(self, result: dict[str, Any]) -> list[str]:
        return [f"constant: {result['test_constant']['value']}"]

    def table_columns(self, *, per_class: bool) -> list[TableColumn]:
        return [TableColumn("const")]

    def table_values(self, qs: list[dict[str, Any]], name: str | None) -> list[list[Any]]:
        return [[(self.record(q) or {}).get("value") for q in qs]]


def test_the_default_metrics_are_registered_first_in_their_order():
    assert DEFAULT_METRICS == ("fidelity", "memorization", "cas")
    assert list_metrics()[:3] == list(DEFAULT_METRICS) and "test-constant" in list_metrics()
    assert list(metric_options("memorization")) == ["quantile", "calibration_size", "exclude_same_patient", "pairs"]
    assert metric_options("fidelity")["k"][0] == 3 and metric_options("test-constant")["value"][1]


def test_create_metric_checks_its_name_and_options():
    assert create_metric("test-constant", value=0.25).options.value == 0.25
    with pytest.raises(ValueError, match="unknown metric 'fidelty'.*did you mean 'fidelity'"):
        create_metric("fidelty")
    with pytest.raises(ValueError, match="metric 'fidelity': no option 'kk' .*did you mean 'k'"):
        create_metric("fidelity", kk=3)
    with pytest.raises(ValueError, match="metric 'cas': cas_seeds=0 must be an integer >= 1"):
        create_metric("cas", cas_seeds=0)
    with pytest.raises(ValueError, match="metric 'memorization': quantile=2"):
        create_metric("memorization", quantile=2)
    with pytest.raises(ValueError, match="value=3"):
        create_metric("test-constant", value=3)
    with pytest.raises(ValueError, match="registered already"):
        register_metric("fidelity")(ConstantMetric)
    with pytest.raises(TypeError, match="subclass of synthaug.quality.metrics.Metric"):
        register_metric("not-a-metric")(dict)


def test_evaluate_generator_checks_its_metrics_before_anything_runs():
    # neither a source nor splits: the metrics are checked first
    with pytest.raises(ValueError, match="did you mean 'memorization'"):
        evaluate_generator(None, None, metrics=["memorisation"])
    with pytest.raises(ValueError, match=r"\['fidelity'\] named more than once"):
        evaluate_generator(None, None, metrics=["fidelity", create_metric("fidelity", k=5)])
    with pytest.raises(ValueError, match="gate judges CAS"):
        evaluate_generator(None, None, metrics=["fidelity"], gate=GateConfig())
    with pytest.raises(ValueError, match="k=0"):  # the options of a default metric named in the list
        evaluate_generator(None, None, metrics=["fidelity"], k=0)


def test_the_gate_reads_cas_through_the_registry(committed):
    assert metric_record(committed, "cas") is committed["cas"]
    gate = GateConfig(min_ratio=committed["gate"]["min_ratio"], min_class_ratio=committed["gate"]["min_class_ratio"])
    assert gate.judge(committed) == committed["gate"]
    assert gate.judge(committed | {"cas": None}) is None and GateConfig(enabled=False).judge(committed) is None


def test_the_report_and_tables_ask_the_metrics(committed):
    assert [m.name for m in reported_metrics([committed])] == list(DEFAULT_METRICS)
    plain = format_report(committed)
    assert "const" not in plain and plain.index("memorized =") < plain.index("CAS (balanced accuracy")
    with_constant = committed | {"test_constant": {"value": 0.25}}
    assert [m.name for m in reported_metrics([with_constant])][-1] == "test-constant"
    report = format_report(with_constant).splitlines()
    assert report[3].endswith("memorized  const") and report[4].endswith("  0.25")
    recall = next(i for i, line in enumerate(report) if line.startswith("  recall per class"))
    assert report.index("constant: 0.25") > recall  # its section after CAS's, in the order registered
    records = [{"dataset": "d", "fraction": 1.0, "generator": "g", "seed": s, "q": q}
               for s, q in enumerate([committed, with_constant])]
    overall, per_class = quality_tables(records)
    assert overall.header[-3:] == ["CAS", "real-trained", "const"] and per_class.header[-1] == "const"
    assert overall.rows[0][-1] == "0.25"  # the record without it is left out of its mean
    assert quality_tables(records[:1])[0].header[-1] == "real-trained"  # nobody measured it: no column
