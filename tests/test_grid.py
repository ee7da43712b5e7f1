"""The benchmark grid: planning, validation-selected ratios, verdicts (Holm-adjusted, against the stronger
real-only control), learning curves, and 2 processes == 1 process."""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from synthaug.bench import BenchConfig, Cell, analyze, plan, summarize
from synthaug.bench.tables import fmt_interval
from synthaug.classifier import METRICS
from synthaug.stats import holm, verdict_of
from synthaug.config import from_dict

REPO = Path(__file__).resolve().parents[1]


def config(**overrides) -> BenchConfig:
    data = {"name": "t", "seeds": [0, 1, 2], "fractions": [0.1, 1.0],
            "generators": [{"name": "cvae-tiny"}, {"name": "cvae", "label": "big"}],
            "synthetic": {"ratios": [0.1, 0.5]}, **overrides}
    return from_dict(BenchConfig, data)


def test_plan_covers_the_grid_once_baseline_first():
    cfg = config()
    cells = plan(cfg)
    assert len(cells) == 1 * 2 * 3 * (1 + 2 * 2)
    assert len({c.key() for c in cells}) == len(cells)
    assert cells[0] == Cell("malaria-32px", 0.1, 0) and cells[0].arm == "real"
    assert cells[1] == Cell("malaria-32px", 0.1, 0, "cvae-tiny", 0.1)
    assert Cell.of_row({"dataset": "malaria-32px", "fraction": 1, "seed": 2, "generator": "big", "ratio": 0.5}) in cells


def _row(fraction, seed, generator, ratio, val, test, **extra):
    return {"dataset": "malaria-32px", "fraction": fraction, "seed": seed, "generator": generator, "ratio": ratio,
            "arm": "real" if generator is None else "synthetic", "train_items": 100, "train_patients": 3,
            "positive_class": "Parasitized",
            "val": {m: val for m in METRICS}, "test": {m: test for m in METRICS}, **extra}


def test_the_ratio_is_selected_on_validation_never_on_test():
    """Validation prefers ratio 0.1, test would prefer 0.5: 0.1 is selected and scored on test."""
    cfg = config(fractions=[0.1], generators=[{"name": "cvae-tiny"}])
    rows = []
    for s in range(3):
        rows += [_row(0.1, s, None, 0.0, 0.70, 0.70),
                 _row(0.1, s, "cvae-tiny", 0.1, 0.80 + 0.01 * s, 0.60 + 0.01 * s),   # best on val, hurts on test
                 _row(0.1, s, "cvae-tiny", 0.5, 0.65, 0.90 + 0.01 * s)]               # best on test: not selected
    a = analyze(rows, cfg)
    (v,) = a["verdicts"]
    assert v["ratio"] == 0.1 and v["ratios_tried"] == [0.1, 0.5]
    assert v["verdict"] == "hurts" and v["diff"]["mean"] == pytest.approx(-0.09)
    selected = [(e["ratio"], e["selected"]) for e in a["settings"]]
    assert selected == [(0.1, True), (0.5, False)]
    md = summarize(rows, cfg, analysis=a)
    assert "| malaria-32px | 0.1 | 3 | cvae-tiny | 0.1 |" in md and "**hurts**" in md
    assert "| malaria-32px | 0.1 | cvae-tiny | 0.5 | replace |  |" in md  # listed, not selected


@pytest.mark.parametrize("deltas, expected", [
    ([0.05, 0.06, 0.04], "helps"),
    ([-0.05, -0.06, -0.04], "hurts"),
    ([0.05, -0.06, 0.01], "no significant difference"),
])
def test_verdicts_follow_the_paired_interval(deltas, expected):
    cfg = config(fractions=[1.0], generators=[{"name": "cvae-tiny"}], synthetic={"ratios": [0.3]})
    rows = []
    for s, d in enumerate(deltas):
        base = 0.6 + 0.1 * s  # seeds differ a lot: only pairing makes small gains visible
        rows += [_row(1.0, s, None, 0.0, base, base), _row(1.0, s, "cvae-tiny", 0.3, base + d, base + d)]
    (v,) = analyze(rows, cfg)["verdicts"]
    assert v["verdict"] == expected


def test_partial_results_are_marked():
    cfg = config(fractions=[1.0], generators=[{"name": "cvae-tiny"}], synthetic={"ratios": [0.3]})
    rows = [_row(1.0, 0, None, 0.0, 0.6, 0.6), _row(1.0, 0, "cvae-tiny", 0.3, 0.7, 0.7), _row(1.0, 1, None, 0.0, 0.5, 0.5)]
    a = analyze(rows, cfg)
    (v,) = a["verdicts"]
    assert v["seeds"] == [0] and not v["complete"] and v["verdict"] == "too few seeds to tell"
    assert "(1 of 3 seeds)" in summarize(rows, cfg, analysis=a)


# --------------------------------------------------------------------------- statistics of a run (issue 12, item 6)
def test_the_verdicts_of_a_run_are_holm_adjusted_together():
    """Three verdicts each significant alone (raw p 0.044, 0.044, 0.013): Holm keeps only the strongest."""
    deltas = {0.1: [0.02, 0.04, 0.045], 0.5: [0.01, 0.02, 0.012], 1.0: [0.05, 0.06, 0.04]}
    cfg = config(fractions=list(deltas), generators=[{"name": "cvae-tiny"}], synthetic={"ratios": [0.3]})
    rows = []
    for f, ds in deltas.items():
        for s, d in enumerate(ds):
            base = 0.6 + 0.1 * s
            rows += [_row(f, s, None, 0.0, base, base), _row(f, s, "cvae-tiny", 0.3, base + d, base + d)]
    a = analyze(rows, cfg)
    raw = [v["p"] for v in a["verdicts"]]
    assert all(p < 0.05 for p in raw) and all(verdict_of(v["diff"]) == "helps" for v in a["verdicts"])  # uncorrected
    assert [v["p_holm"] for v in a["verdicts"]] == pytest.approx(holm(raw))
    assert [v["verdict"] for v in a["verdicts"]] == ["no significant difference", "no significant difference", "helps"]
    assert a["verdicts"][2]["p_holm"] == pytest.approx(3 * raw[2])
    md = summarize(rows, cfg, analysis=a)
    assert "| p (raw) | p (Holm) | verdict |" in md and "Holm across the 3 verdict rows tested" in md
    assert f"| {raw[0]:.3f} | {a['verdicts'][0]['p_holm']:.3f} | **no significant difference** |" in md


def test_constant_differences_give_no_verdict_and_leave_the_family():
    cfg = config(fractions=[0.1, 1.0], generators=[{"name": "cvae-tiny"}], synthetic={"ratios": [0.3]})
    rows = []
    for s in range(3):
        base = 0.6 + 0.1 * s
        rows += [_row(0.1, s, None, 0.0, base, base), _row(0.1, s, "cvae-tiny", 0.3, base, base + 0.05),  # constant
                 _row(1.0, s, None, 0.0, base, base), _row(1.0, s, "cvae-tiny", 0.3, base, base + [0.05, 0.06, 0.04][s])]
    a = analyze(rows, cfg)
    const, tested = a["verdicts"]
    assert const["verdict"] == "too few distinct values" and math.isnan(const["p"]) and math.isnan(const["p_holm"])
    assert tested["p_holm"] == pytest.approx(tested["p"])  # a family of one: the constant row is not counted
    assert "**too few distinct values**" in summarize(rows, cfg, analysis=a)


def test_the_baseline_column_is_over_the_paired_seeds_only():
    cfg = config(fractions=[1.0], generators=[{"name": "cvae-tiny"}], synthetic={"ratios": [0.3]})
    rows = [_row(1.0, s, None, 0.0, b, b) for s, b in enumerate([0.6, 0.7, 0.95])]
    rows += [_row(1.0, s, "cvae-tiny", 0.3, b + 0.01, b + 0.01) for s, b in enumerate([0.6, 0.7])]  # seed 2 missing
    (v,) = analyze(rows, cfg)["verdicts"]
    assert v["seeds"] == [0, 1] and v["baseline"]["mean"] == pytest.approx(0.65)  # not 0.75 over all three seeds


def test_intervals_are_not_clipped_and_the_tables_say_so():
    assert fmt_interval(0.95, 0.85, 1.05) == "0.950 [0.850, 1.050]"
    assert fmt_interval(-0.5, -1.2, 0.2, signed=True) == "-0.500 [-1.200, +0.200]"
    cfg = config(fractions=[1.0], generators=[{"name": "cvae-tiny"}], synthetic={"ratios": [0.3]})
    rows = []
    for s, b in enumerate([0.80, 1.0, 0.99]):
        rows += [_row(1.0, s, None, 0.0, b, b), _row(1.0, s, "cvae-tiny", 0.3, b, b)]
    a = analyze(rows, cfg)
    assert a["verdicts"][0]["baseline"]["hi"] > 1
    md = summarize(rows, cfg, analysis=a)
    assert f"{a['verdicts'][0]['baseline']['hi']:.3f}]" in md and "not clipped" in md


def _additive(matched_gain: float, synth_gain: float) -> list[dict]:
    """Three seeds: the baseline, a real-matched control and an additive arm at ratio 0.3, by their gain."""
    rows = []
    for s in range(3):
        base = 0.6 + 0.1 * s
        rows += [_row(1.0, s, None, 0.0, base, base),
                 _row(1.0, s, None, 0.3, base + matched_gain, base + matched_gain + [0.0, 0.004, -0.003][s],
                      arm="real-matched"),
                 _row(1.0, s, "cvae-tiny", 0.3, base + synth_gain, base + synth_gain + [0.001, -0.002, 0.002][s],
                      mix="additive")]
    return rows


def test_helps_is_read_against_the_stronger_real_only_control():
    cfg = config(fractions=[1.0], generators=[{"name": "cvae-tiny"}], synthetic={"ratios": [0.3]})
    rows = _additive(matched_gain=0.05, synth_gain=0.05)  # synthetic beats the baseline, not the matched control
    a = analyze(rows, cfg)
    (v,) = a["verdicts"]
    assert v["mix"] == "additive" and v["reference"] == "real-matched"
    assert verdict_of(v["diff_baseline"]) == "helps" and v["verdict"] == "no significant difference"
    assert v["matched"]["mean"] == pytest.approx(0.7 + 0.05 + 0.001 / 3)  # over the paired seeds
    md = summarize(rows, cfg, analysis=a)
    assert "| real-matched |" in md and "| additive |" in md and "as many draws as the additive arm" in md
    (v,) = analyze(_additive(matched_gain=-0.02, synth_gain=0.05), cfg)["verdicts"]  # a weaker control
    assert v["reference"] == "real only" and v["verdict"] == "helps"


def test_replace_arms_have_no_matched_control():
    cfg = config(fractions=[1.0], generators=[{"name": "cvae-tiny"}], synthetic={"ratios": [0.3]})
    rows = [r for r in _additive(matched_gain=0.05, synth_gain=0.05)]
    rows += [{**r, "mix": "replace"} for r in rows if r["arm"] == "synthetic"]
    by_mix = {v["mix"]: v for v in analyze(rows, cfg)["verdicts"]}
    assert by_mix["replace"]["reference"] == "real only" and by_mix["replace"]["matched"] is None
    assert by_mix["additive"]["reference"] == "real-matched"


def test_validation_choosing_ratio_0_says_so():
    cfg = config(fractions=[1.0], generators=[{"name": "cvae-tiny"}], synthetic={"ratios": [0.3]})
    rows = []
    for s in range(3):
        base = 0.6 + 0.1 * s
        rows += [_row(1.0, s, None, 0.0, base, base), _row(1.0, s, "cvae-tiny", 0.0, base, base),
                 _row(1.0, s, "cvae-tiny", 0.3, base - 0.02, base + [0.05, 0.06, 0.04][s])]  # worse on val
    a = analyze(rows, cfg)
    (v,) = a["verdicts"]
    assert v["ratio"] == 0 and v["verdict"] == "validation chose no synthetic" and math.isnan(v["p_holm"])
    assert "**validation chose no synthetic**" in summarize(rows, cfg, analysis=a)


def test_the_baseline_stands_in_for_ratio_0_when_no_row_holds_it():
    cfg = config(fractions=[1.0], generators=[{"name": "cvae-tiny"}], synthetic={"ratios": [0.3]})
    cfg.synthetic.ratios = [0.0, 0.3]  # as a grid with ratio 0 that does not run it as a cell of its own
    rows = []
    for s in range(3):
        base = 0.6 + 0.1 * s
        rows += [_row(1.0, s, None, 0.0, base, base), _row(1.0, s, "cvae-tiny", 0.3, base - 0.01, base + 0.05)]
    a = analyze(rows, cfg)
    zero = [e for e in a["settings"] if e["ratio"] == 0]
    assert len(zero) == 1 and zero[0]["from_baseline"] and zero[0]["selected"]
    (v,) = a["verdicts"]
    assert v["verdict"] == "validation chose no synthetic" and v["ratios_tried"] == [0.0, 0.3]
    assert "| 0 (real only) |" in summarize(rows, cfg, analysis=a)


def test_the_baseline_as_ratio_0_has_no_seed_the_synthetic_arms_lack():
    """A partial run: the baseline finished seed 2, the generator did not. Ratio 0 must not win for being
    the only candidate with three seeds."""
    cfg = config(fractions=[1.0], generators=[{"name": "cvae-tiny"}], synthetic={"ratios": [0.3]})
    cfg.synthetic.ratios = [0.0, 0.3]
    rows = [_row(1.0, 2, None, 0.0, 0.8, 0.8)]
    for s in range(2):
        rows += [_row(1.0, s, None, 0.0, 0.6 + 0.1 * s, 0.6), _row(1.0, s, "cvae-tiny", 0.3, 0.7 + 0.1 * s, 0.7)]
    a = analyze(rows, cfg)
    (zero,) = [e for e in a["settings"] if e["ratio"] == 0]
    assert zero["seeds"] == [0, 1] and not zero["selected"]
    assert a["verdicts"][0]["ratio"] == 0.3


def _curve(peak_step: int, last: int = 400) -> list[list[float]]:
    return [[step, 0.9 - abs(step - peak_step) / 1000] for step in range(100, last + 1, 100)]


def test_learning_curves_give_the_best_step_per_arm():
    cfg = config(fractions=[1.0], generators=[{"name": "cvae-tiny"}], synthetic={"ratios": [0.3]})
    rows = []
    for s in range(3):
        rows += [_row(1.0, s, None, 0.0, 0.7, 0.7, curve=_curve(400), best_step=400),       # still rising
                 _row(1.0, s, "cvae-tiny", 0.3, 0.7, 0.7 + 0.01 * s, curve=_curve(200 + 100 * (s == 2)))]
    a = analyze(rows, cfg)
    base, synth = a["curves"]
    assert base["arm"] == "real only" and base["best_steps"] == [400] * 3 and base["at_last"] == 3
    assert synth["arm"] == "cvae-tiny replace @ 0.3" and synth["best_steps"] == [200, 200, 300]  # argmax of the curve
    assert synth["steps"] == [100, 200, 300, 400] and synth["mean"][1] == pytest.approx((0.9 + 0.9 + 0.8) / 3)
    md = summarize(rows, cfg, analysis=a)
    assert "| malaria-32px | 1 | real only | 3 | 400 | 400 | 3 of 3 |" in md
    assert "| cvae-tiny replace @ 0.3 | 3 | 200 (200-300) |" in md and "Still rising at the end" in md
    assert "Learning curves" not in summarize([{k: v for k, v in r.items() if k not in ("curve", "best_step")}
                                               for r in rows], cfg)  # old rows: no section


def test_report_draws_the_learning_curves(tmp_path):
    from synthaug.bench import build_report, prepare_run_dir
    from synthaug.utils import append_jsonl

    cfg = config(seeds=[0, 1], fractions=[1.0], generators=[{"name": "cvae-tiny"}], synthetic={"ratios": [0.3]},
                 quality={"enabled": False})
    prepare_run_dir(cfg, tmp_path)
    for s in range(2):
        append_jsonl(tmp_path / "results.jsonl", _row(1.0, s, None, 0.0, 0.7, 0.7, curve=_curve(300)))
        append_jsonl(tmp_path / "results.jsonl", _row(1.0, s, "cvae-tiny", 0.3, 0.7, 0.7 + 0.01 * s,
                                                      curve=_curve(200)))
    md, page = build_report(tmp_path)
    picture = tmp_path / "report_files" / "curves-malaria-32px-frac1.png"
    assert picture.stat().st_size > 1000 and "](report_files/curves-malaria-32px-frac1.png)" in md.read_text()
    assert page.read_text().count("data:image/png;base64,") == 3  # fraction, gain and the curves


# --------------------------------------------------------------------------- 2 processes == 1 process
GRID = [
    "--set", "synthetic={ratios: [0.3], mix: replace}",   # replace mixing (the demo mixes additively)
    "--set", "seeds=[0]",
    "--set", "classifier.model=test_efficientnet_gn",   # GroupNorm: per image, so a split batch gives the same model
    "--set", "classifier.steps=4",
    "--set", "classifier.batch_size=16",
    "--set", "classifier.eval_batch_size=64",
    "--set", "generators=[{name: cvae-tiny, options: {norm: group}, train: {steps: 4, batch_size: 16}}]",
    "--set", "datasets.0.image_size=16",
    "--set", "fractions=[0.03]",
    # quality on the main process alone while the other waits: must not hang, and must match 1 process
    "--set", "quality={n: 30, cas_images: 32, extractor_steps: 2}",
]


def _launch(out: Path, processes: int, data_root: Path) -> subprocess.CompletedProcess:
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    # several CPU processes: torchrun-style launch (--multi_gpu) with ACCELERATE_USE_CPU, which makes each
    # process a MULTI_CPU (gloo) rank; `--cpu --num_processes 2` would start one process that thinks it is alone
    env = {**os.environ, "SYNTHAUG_DATA": str(data_root), "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    mode = ["--multi_gpu"] if processes > 1 else []
    cmd = [accelerate, "launch", *mode, "--num_processes", str(processes), "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", str(REPO / "benchmarks" / "run.py"),
           "--config", str(REPO / "configs" / "bench" / "malaria-quick.yaml"), *GRID, "--out", str(out)]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def test_two_processes_give_the_metrics_of_one(tmp_path, data_root, malaria32):
    runs = {}
    for n in (1, 2):
        proc = _launch(tmp_path / f"p{n}", n, data_root)
        assert proc.returncode == 0, proc.stderr[-3000:]
        rows = [json.loads(line) for line in (tmp_path / f"p{n}" / "results.jsonl").read_text().splitlines()]
        assert len(rows) == 2 and all(r["processes"] == n for r in rows)  # written once, by the main process
        runs[n] = {(r["generator"], r["ratio"]): r for r in rows}
        quality = tmp_path / f"p{n}" / "quality" / "malaria-16px" / "frac0.03" / "seed0" / "cvae-tiny" / "quality.json"
        runs[n]["quality"] = json.loads(quality.read_text())
    assert runs[1].keys() == runs[2].keys()
    q1, q2 = runs[1].pop("quality"), runs[2].pop("quality")
    assert q1["fidelity"]["overall"]["fid"] == pytest.approx(q2["fidelity"]["overall"]["fid"], rel=1e-4)
    for key, one in runs[1].items():
        two = runs[2][key]
        assert one["train_items"] == two["train_items"] and one["synthetic_items"] == two["synthetic_items"]
        for part in ("val", "test"):
            for metric, value in one[part].items():
                assert two[part][metric] == pytest.approx(value, abs=2e-3), (key, part, metric)


def test_the_stronger_control_is_chosen_on_validation_not_on_test():
    """The matched control is better on validation but worse on test: it is still the reference (no test-based choice)."""
    cfg = config(fractions=[1.0], generators=[{"name": "cvae-tiny"}], synthetic={"ratios": [0.3]})
    rows = []
    for s in range(3):
        base = 0.6 + 0.1 * s
        rows += [_row(1.0, s, None, 0.0, base, base),
                 _row(1.0, s, None, 0.3, base + 0.05, base - 0.05 + [0.0, 0.004, -0.003][s], arm="real-matched"),
                 _row(1.0, s, "cvae-tiny", 0.3, base + 0.01, base + 0.01 + [0.001, -0.002, 0.002][s], mix="additive")]
    (v,) = analyze(rows, cfg)["verdicts"]
    assert v["reference"] == "real-matched"
    assert v["diff"] is v["diff_matched"]


# --------------------------------------------------------------------------- the quality gate and the answer
def _gate_record(generator: str, seed: int, ratio: float, weakest: float = 0.9) -> dict:
    """A quality record as ``paths.quality_records`` reads it, with the gate of a hand-made CAS record."""
    from synthaug.quality import quality_gate

    cas = {"ratio": ratio, "cas": 0.88 * ratio, "real_score": 0.88, "split": "val",
           "class_recall_ratio": {"Parasitized": weakest, "Uninfected": 1.0}}
    return {"dataset": "malaria-32px", "fraction": 1.0, "generator": generator, "seed": seed,
            "q": {"cas": cas, "gate": quality_gate(cas)}}


def _line_of(md: str, generator: str) -> str:
    (line,) = [x for x in md.splitlines() if x.startswith("| malaria-32px |") and f"| {generator} |" in x
               and "**" in x]  # the verdict table's row (the other tables have no bold verdict)
    return line


def test_a_generator_rejected_by_the_quality_gate_is_marked_beside_its_verdict():
    cfg = config(fractions=[1.0], synthetic={"ratios": [0.3]})  # generators cvae-tiny and big
    rows = []
    for s, d in enumerate([0.05, 0.06, 0.04]):
        base = 0.6 + 0.1 * s
        rows += [_row(1.0, s, None, 0.0, base, base), _row(1.0, s, "cvae-tiny", 0.3, base + d, base + d),
                 _row(1.0, s, "big", 0.3, base + d, base + d)]
    a = analyze(rows, cfg)
    quality = [_gate_record("cvae-tiny", 0, 0.55), _gate_record("big", 0, 0.91)]  # quality of seed 0 only
    md = summarize(rows, cfg, analysis=a, quality=quality)
    rejected, passed = _line_of(md, "cvae-tiny"), _line_of(md, "big")
    assert "| quality gate |" in md
    assert "**helps** | **generator rejected** (CAS ratio 0.55) |" in rejected  # the verdict stands, marked
    assert "rejected" not in passed and "| passed (CAS ratio 0.91) |" in passed
    assert ("**Rejected**: `cvae-tiny` at fraction 1 (malaria-32px), seed 0: generator rejected (CAS ratio 0.55 < 0.80"
            in md) and "`big`" not in md.split("**Rejected**")[1].split(".\n")[0]
    assert "validation** patients" in md and "still trained and benchmarked" in md
    # one seed of two rejected: still marked, with the count
    md = summarize(rows, cfg, analysis=a, quality=quality + [_gate_record("cvae-tiny", 1, 0.9)])
    assert "**generator rejected** in 1 of 2 seeds measured (CAS ratio 0.55) |" in _line_of(md, "cvae-tiny")
    # a good overall ratio with one class the generator does not draw
    md = summarize(rows, cfg, analysis=a, quality=[_gate_record("big", 0, 0.91, weakest=0.12)])
    assert "**generator rejected** (CAS ratio 0.91; Parasitized recall ratio 0.12) |" in _line_of(md, "big")
    assert "| not measured |" in _line_of(md, "cvae-tiny")
    # no gate in the records (gate off, or written before it existed): no column, no note
    plain = summarize(rows, cfg, analysis=a, quality=[{**r, "q": {**r["q"], "gate": None}} for r in quality])
    assert plain == summarize(rows, cfg, analysis=a) and "quality gate" not in plain


def test_the_answer_sentence_reads_the_verdicts():
    from synthaug.bench.tables import answer

    cfg = config(fractions=[1.0], generators=[{"name": "cvae-tiny"}], synthetic={"ratios": [0.3]})
    a = analyze(_additive(matched_gain=0.05, synth_gain=0.05), cfg)  # no gain over the matched control
    (v,) = a["verdicts"]
    text = answer(a)
    assert text.startswith("At 3 training patients, no generator changed balanced accuracy significantly against "
                           "the stronger real-only control (best: cvae-tiny additive 0.3, ")
    assert f"{fmt_interval(v['diff']['mean'], v['diff']['lo'], v['diff']['hi'], signed=True)}, Holm p " in text
    assert text.endswith(f"{v['p_holm']:.3f}).") and re.sub(r"\d\.\d", "", text).count(".") == 1  # one sentence
    a = analyze(_additive(matched_gain=-0.02, synth_gain=0.05), cfg)  # a weaker control: helps
    assert answer(a).startswith("At 3 training patients, cvae-tiny additive 0.3 (+0.050 [")
    assert "improved balanced accuracy significantly against the stronger real-only control." in answer(a)
    # validation chose ratio 0 for one generator, the other is tested against the real-only baseline
    cfg = config(fractions=[1.0], synthetic={"ratios": [0.3]})
    rows = []
    for s in range(3):
        base = 0.6 + 0.1 * s
        rows += [_row(1.0, s, None, 0.0, base, base), _row(1.0, s, "cvae-tiny", 0.0, base, base),
                 _row(1.0, s, "cvae-tiny", 0.3, base - 0.02, base), _row(1.0, s, "big", 0.3, base - 0.02,
                                                                          base - [0.05, 0.06, 0.04][s])]
    text = answer(analyze(rows, cfg))
    assert text.startswith("At 3 training patients, no generator improved balanced accuracy significantly against "
                           "the real-only baseline, and big replace 0.3 (-0.050 [")
    assert text.endswith("lowered it; validation chose no synthetic for cvae-tiny.")


def test_quality_records_without_a_gate_are_judged_by_the_runs_gate(tmp_path):
    """quality.json written before the benchmark passed its gate: the run's gate judges its CAS (validation
    patients only; a CAS of test patients, from before CAS moved to validation, is never judged)."""
    from synthaug.bench.paths import quality_dir, quality_records

    cfg = config(fractions=[1.0], seeds=[0, 1, 2], quality={"gate": {"min_ratio": 0.6}})
    for seed, split in ((0, "val"), (1, "test")):
        record = _gate_record("big", seed, 0.55)["q"]
        folder = quality_dir(tmp_path, "malaria-32px", 1.0, seed, "big")
        folder.mkdir(parents=True)
        (folder / "quality.json").write_text(json.dumps({"cas": {**record["cas"], "split": split}, "gate": None}))
    by_seed = {r["seed"]: r["q"]["gate"] for r in quality_records(tmp_path, cfg)}
    assert by_seed[0]["passed"] is False and by_seed[0]["min_ratio"] == 0.6 and by_seed[1] is None
    off = config(fractions=[1.0], quality={"gate": {"enabled": False}})
    assert all(r["q"]["gate"] is None for r in quality_records(tmp_path, off))


def test_a_data_set_without_patient_groups_is_counted_in_images_not_patients():
    from synthaug.bench.tables import answer_sentence

    cfg = config(fractions=[1.0], generators=[{"name": "cvae-tiny"}], synthetic={"ratios": [0.3]})
    rows = []
    for s in range(3):
        base = 0.6 + 0.1 * s
        rows += [_row(1.0, s, None, 0.0, base, base, group_kind="images"),
                 _row(1.0, s, "cvae-tiny", 0.3, base + 0.01, base + [0.01, 0.03, -0.02][s], group_kind="images")]
    a = analyze(rows, cfg)
    md = summarize(rows, cfg, analysis=a)
    assert "| train images |" in md and "| train patients |" not in md
    assert answer_sentence(a["verdicts"], "balanced_accuracy").startswith("At 3 training images")
    grouped = [{k: v for k, v in r.items() if k != "group_kind"} for r in rows]  # older rows: patients
    a = analyze(grouped, cfg)
    assert "| train patients |" in summarize(grouped, cfg, analysis=a)
    assert answer_sentence(a["verdicts"], "balanced_accuracy").startswith("At 3 training patients")
