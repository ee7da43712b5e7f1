"""Run folders and generator checkpoints written before a config gained a key still resume: the committed run
records' configs equal today's resolution of the YAML that wrote them, and a reused generator's fingerprint did not
move."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthaug.bench.grid_config import BenchConfig, GeneratorSpec
from synthaug.bench.paths import diff_keys, with_neutral_defaults
from synthaug.bench.strategy_config import StrategiesConfig
from synthaug.config import load_config
from synthaug.tracking import tracked_config

ROOT = Path(__file__).resolve().parents[1]
RECORDS = [("malaria-strategies", "configs/bench/malaria-strategies.yaml", StrategiesConfig),
           ("malaria-lowdata-v2-floor1200", None, BenchConfig)]


@pytest.mark.parametrize("name,yaml,cls", RECORDS)
def test_committed_run_records_are_the_same_config_today(name, yaml, cls):
    records = sorted((ROOT / "docs" / "results" / name / "run-record").glob("config*.json"))
    assert records
    old = json.loads(records[0].read_text())["config"]
    if yaml is None:  # a run whose YAML changed since: its own record, resolved by today's code
        cfg = _from_record(cls, old)
    else:
        cfg = load_config(cls, ROOT / yaml, [])
    now = tracked_config(cfg)
    assert with_neutral_defaults(old) == now, sorted(diff_keys(with_neutral_defaults(old), now))


def _from_record(cls, record: dict):
    """Today's resolution of an old record (keys it lacks take today's defaults, as a YAML without them would)."""
    from synthaug.config import from_dict

    return from_dict(cls, record)


def test_a_default_generator_spec_keeps_its_fingerprint():
    """The hash a reused generator checkpoint (done.json) is matched by: the same as before mixed_precision."""
    assert GeneratorSpec(name="ddpm").fingerprint() == "48668d1c083f"
    assert GeneratorSpec().fingerprint() == "fb8bfc7fbe05"
    from synthaug.generators import GeneratorTrainConfig

    bf16 = GeneratorSpec(name="ddpm", train=GeneratorTrainConfig(mixed_precision="bf16"))
    assert bf16.fingerprint() != "48668d1c083f"  # a bf16 generator is another generator
