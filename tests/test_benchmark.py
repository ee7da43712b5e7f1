"""The benchmark harness end to end at tiny size, on the real malaria data."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "--set", "synthetic={ratios: [0.3], mix: replace}",   # replace mixing (the demo mixes additively)
    "--set", "classifier.eval_every=null",                 # no validation curve (the demo validates every 100)
    "--set", "seeds=[0,1]",
    "--set", "classifier.model=test_resnet",
    "--set", "classifier.steps=4",
    "--set", "classifier.batch_size=16",
    "--set", "generators=[{name: cvae-tiny, options: {}, train: {steps: 4, batch_size: 16}}]",
    "--set", "datasets.0.image_size=16",
    "--set", "fractions=[0.03]",
    "--set", "quality={n: 40, cas_images: 64, extractor_steps: 3, seeds: [0]}",
]
DKEY = "malaria-16px"


def bench_env(data_root: Path) -> dict[str, str]:
    # one torch thread: on a busy 2-core machine two threads make these tiny models many times slower; every run
    # of this file uses the same setting (the sigkill test compares its metrics with the tiny run's exactly)
    return {**os.environ, "SYNTHAUG_DATA": str(data_root), "OMP_NUM_THREADS": "1"}


def run_bench(out: Path, *extra: str, data_root: Path) -> subprocess.CompletedProcess:
    env = bench_env(data_root)
    cmd = [sys.executable, str(REPO / "benchmarks" / "run.py"), "--config",
           str(REPO / "configs" / "bench" / "malaria-quick.yaml"), *TINY, *extra, "--out", str(out)]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("bench") / "run"
    proc = run_bench(out, data_root=data_root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_writes_results_summary_and_samples(tiny_run):
    out, proc = tiny_run
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted((r["seed"], r["arm"]) for r in rows) == [(0, "real"), (0, "synthetic"), (1, "real"), (1, "synthetic")]
    assert all(r["dataset"] == DKEY and r["fraction"] == 0.03 for r in rows)
    assert {r["generator"] for r in rows} == {None, "cvae-tiny"}
    for r in rows:
        assert r["classifier_steps"] == 4
        for part in ("val", "test"):
            assert set(r[part]) == {"accuracy", "balanced_accuracy", "auroc", "f1", "sensitivity", "specificity"}
            assert all(0.0 <= v <= 1.0 for v in r[part].values())
        assert (r["synthetic_items"] > 0) == (r["arm"] == "synthetic")
        if r["arm"] == "synthetic":
            # ratio 0.3 of the epoch: round(n / 0.7) - n synthetic items
            assert r["synthetic_items"] == round(r["train_items"] / 0.7) - r["train_items"]
    summary = (out / "summary.md").read_text()
    assert "| metric | real only | real + synthetic | difference | p | verdict |" in summary
    assert "## Verdicts on the test patients (balanced_accuracy)" in summary
    assert f"| {DKEY} | 0.03 |" in summary and "| cvae-tiny | 0.3 |" in summary
    assert "Verdicts" in proc.stdout  # the summary is printed
    analysis = json.loads((out / "summary.json").read_text())  # standard JSON (no NaN)
    (verdict,) = analysis["verdicts"]
    assert verdict["ratio"] == 0.3 and verdict["seeds"] == [0, 1] and verdict["complete"]
    assert (out / "samples" / f"{DKEY}-frac0.03-cvae-tiny.png").stat().st_size > 1000
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["classifier"]["model"] == "test_resnet"
    assert "torch" in config["versions"]
    from synthaug.bench.runner import source_commit

    assert config["versions"].get("git") == source_commit()  # the code that made the rows (None: not a checkout)


def test_generator_and_classifier_saw_only_training_patients(tiny_run):
    out, _ = tiny_run
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    for seed in (0, 1):
        info = json.loads((out / "splits" / DKEY / "frac0.03" / f"seed{seed}.json").read_text())
        train, val, test = set(info["train_groups"]), set(info["val_groups"]), set(info["test_groups"])
        assert not (train & val) and not (train & test) and not (val & test)
        done = json.loads((out / "generators" / DKEY / "frac0.03" / f"seed{seed}" / "cvae-tiny" / "done.json").read_text())
        # the generator was trained on exactly the classifier's real training items
        assert done["train_items"] == info["train_items"]
        assert all(r["train_items"] == info["train_items"] for r in rows if r["seed"] == seed)
    # different seeds split differently
    s0 = json.loads((out / "splits" / DKEY / "frac0.03" / "seed0.json").read_text())
    s1 = json.loads((out / "splits" / DKEY / "frac0.03" / "seed1.json").read_text())
    assert s0["test_groups"] != s1["test_groups"]


def test_generator_fingerprint_names_the_cells_training_items_of_training_patients_only(tiny_run, data_root):
    """What the generator recorded it trained on (done.json) equals a fingerprint the test computes itself
    from the cell's training items (load_dataset at the cell's fraction and seed), and those items' patients
    are none of the validation or test patients; the classifier's rows and split record name the same."""
    import hashlib

    from synthaug.data import load_dataset

    out, _ = tiny_run
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    recorded = set()
    for seed in (0, 1):
        splits = load_dataset("malaria", root=data_root, image_size=16, seed=seed, train_fraction=0.03)
        files = sorted(map(str, splits.train.files))
        assert len(set(files)) == len(files)
        expected = hashlib.sha256("\n".join(files).encode()).hexdigest()
        done = json.loads((out / "generators" / DKEY / "frac0.03" / f"seed{seed}" / "cvae-tiny" / "done.json").read_text())
        assert done["items_sha256"] == expected and done["train_items"] == len(files)
        recorded.add(done["items_sha256"])
        patients = set(map(str, splits.train.groups))
        val, test = set(map(str, splits.val.groups)), set(map(str, splits.test.groups))
        assert patients and not (patients & val) and not (patients & test)
        assert not set(files) & (set(map(str, splits.val.files)) | set(map(str, splits.test.files)))
        # the classifier trained on the same items: the split the run recorded names the same patients
        info = json.loads((out / "splits" / DKEY / "frac0.03" / f"seed{seed}.json").read_text())
        assert set(info["train_groups"]) == patients and info["train_items"] == len(files)
        assert {(r["train_items"], r["train_patients"]) for r in rows if r["seed"] == seed} == {(len(files), len(patients))}
    full = load_dataset("malaria", root=data_root, image_size=16, seed=0)
    everything = hashlib.sha256("\n".join(sorted(map(str, full.train.files))).encode()).hexdigest()
    assert len(recorded) == 2 and everything not in recorded  # the fingerprint tells item sets apart


def test_rerun_skips_finished_cells_and_keeps_results(tiny_run, data_root):
    out, _ = tiny_run
    before = (out / "results.jsonl").read_bytes()
    proc = run_bench(out, data_root=data_root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "results.jsonl").read_bytes() == before


def test_different_config_into_same_folder_is_refused(tiny_run, data_root):
    out, _ = tiny_run
    before = (out / "results.jsonl").read_bytes()
    proc = run_bench(out, "--set", "synthetic.ratios=[0.5]", data_root=data_root)
    assert proc.returncode == 2
    assert "different config" in proc.stderr and "synthetic.ratios" in proc.stderr
    assert (out / "results.jsonl").read_bytes() == before


@pytest.mark.parametrize("override, message", [
    ("synthetic.ratios=[1.0]", "ratio=1.0"),
    ("synthetic.ratios=[0.0]", "baseline"),
    ("synthetic.ratio=0.3", "did you mean 'ratios'"),
    ("classifier.stepz=3", "did you mean 'steps'"),
    ("generators.0.name=cvea", "did you mean 'cvae'"),
    ("generators.0.options={latnt_dim: 4}", "latnt_dim"),
    ("fractions=[0]", "fractions: 0"),
    ("fractions=[0.1, 0.1]", "without repeats"),
    ("datasets.0.train_fraction=0.5", "set the real training fractions in `fractions`"),
    ("generators=[{name: cvae-tiny}, {name: cvae-tiny}]", "distinct `label`"),
    ("seeds=3", "expected a list"),
    ("synthetic.label_distribution=balancd", "balancd"),
    ("synthetic.pool_size=-5", "pool_size=-5"),
    ("datasets.0.group_pattern='(unclosed'", "not a valid regular expression"),
    ("generators.0.train.seed=3", "the cell's seed"),
    ("quality.seeds=[7]", "not in the grid's seeds"),
    ("quality.n=1", "quality.n=1"),
    ("quality.extractor_stepz=3", "did you mean 'extractor_steps'"),
])
def test_bad_config_fails_before_any_work(tmp_path, data_root, override, message, monkeypatch, capsys):
    # in-process: the same main() that benchmarks/run.py calls, without a Python + torch start per case
    # (test_different_config_into_same_folder_is_refused and test_dry_run_prints_resolved_config run the script)
    from synthaug.bench.launch import main

    monkeypatch.setenv("SYNTHAUG_DATA", str(data_root))
    out = tmp_path / "run"
    code = main(["--config", str(REPO / "configs" / "bench" / "malaria-quick.yaml"), *TINY, "--set", override,
                 "--out", str(out)], prog="benchmarks/run.py")
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert message.lower() in err.lower() and "benchmarks/run.py: error:" in err
    assert not (out / "results.jsonl").exists()


def test_dry_run_prints_resolved_config(tmp_path, data_root):
    proc = run_bench(tmp_path / "run", "--dry-run", data_root=data_root)
    assert proc.returncode == 0
    resolved = json.loads(proc.stdout)
    assert resolved["classifier"]["steps"] == 4 and resolved["out_dir"] == str(tmp_path / "run")
    assert not (tmp_path / "run").exists()


def _metrics(path: Path) -> dict:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    keep = ("train_items", "synthetic_items", "val", "test")
    return {(r["fraction"], r["seed"], r["generator"], r["ratio"]): {k: r[k] for k in keep} for r in rows}


def test_sigkilled_run_resumes_to_the_same_metrics(tiny_run, tmp_path, data_root):
    """Kill the run after its first finished cell; the rerun skips it and ends with the uninterrupted
    run's metrics exactly (which also shows that the same config and seeds give the same numbers)."""
    import signal
    import time

    reference, _ = tiny_run
    out = tmp_path / "run"
    env = bench_env(data_root)
    cmd = [sys.executable, str(REPO / "benchmarks" / "run.py"), "--config",
           str(REPO / "configs" / "bench" / "malaria-quick.yaml"), *TINY, "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    results = out / "results.jsonl"
    deadline = time.time() + 600
    while proc.poll() is None and time.time() < deadline and not (results.exists() and results.read_text().strip()):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = len(results.read_text().splitlines())
    assert 1 <= finished < 4, f"{finished} cells were finished when the kill came; the test needs it mid-run"
    first_rows = results.read_bytes()
    proc = run_bench(out, data_root=data_root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert results.read_bytes().startswith(first_rows)  # finished rows are never rewritten
    assert _metrics(results) == _metrics(reference / "results.jsonl")


# --------------------------------------------------------------------------- quality and the report
def test_quality_metrics_for_the_evaluated_seed_only(tiny_run):
    out, _ = tiny_run
    q = json.loads((out / "quality" / DKEY / "frac0.03" / "seed0" / "cvae-tiny" / "quality.json").read_text())
    assert q["n"] == 40 and q["cas"]["synthetic_images"] == 64
    assert set(q["fidelity"]["per_class"]) == {"Parasitized", "Uninfected"}
    assert q["fidelity"]["overall"]["fid"] > 0 and 0 <= q["memorization"]["overall"]["share"] <= 1
    # the extractor learned from the seed's training patients (all of them: not only the fraction's), never val or test
    from synthaug.data import load_dataset
    from synthaug.quality import EXTRACTOR_META, training_fingerprint

    (meta,) = list((out / "extractors").glob(f"*/{EXTRACTOR_META}"))
    key = json.loads(meta.read_text())["key"]
    full = load_dataset("malaria", image_size=16, seed=0)
    part = load_dataset("malaria", image_size=16, seed=0, train_fraction=0.03)
    assert key["train"] == json.loads(json.dumps(training_fingerprint(full.train))) != json.loads(json.dumps(
        training_fingerprint(part.train)))
    assert q["data"]["train_items"] == len(part.train)  # the audit compares with the generator's own training images
    assert (out / "quality" / DKEY / "frac0.03" / "seed0" / "cvae-tiny" / "memorization_pairs.png").is_file()
    assert not (out / "quality" / DKEY / "frac0.03" / "seed1").exists()  # quality.seeds=[0]


def test_report_markdown_and_self_contained_html(tiny_run, tmp_path):
    from synthaug.cli import main

    out, _ = tiny_run
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "## Verdicts on the test patients (balanced_accuracy)" in md
    assert f"| {DKEY} | 0.03 | " in md and "| cvae-tiny | 0.3 |" in md
    for picture in (f"report_files/fraction-{DKEY}.png", f"report_files/gain-{DKEY}-cvae-tiny.png",
                    f"report_files/{DKEY}-frac0.03-cvae-tiny.png",
                    f"report_files/memorization-{DKEY}-frac0.03-cvae-tiny-seed0.png",
                    f"report_files/losses-{DKEY}-frac0.03-cvae-tiny.png"):  # the generator's loss curves
        assert f"]({picture})" in md and (tmp_path / "rep" / picture).stat().st_size > 1000, picture
    assert "FID real val" in md and '"versions"' in md and "wall time" in md
    # self-contained: every picture is embedded, nothing is fetched
    assert page.count('src="data:image/png;base64,') == 5
    assert "src=\"http" not in page and "report_files/" not in page
    # the answer first (issue 15): one sentence from the verdict, then the samples picture
    (v,) = json.loads((out / "summary.json").read_text())["verdicts"]
    blocks = md.split("\n\n")
    assert blocks[0].startswith("# ") and blocks[1].startswith(f"At {v['train_patients'][0]} training patients, ")
    if v["p_holm"] is None:  # 4 classifier steps may give constant differences: the sentence says what it was
        assert blocks[1].endswith(f"; {v['verdict']} for cvae-tiny.")
    else:
        assert "balanced accuracy" in blocks[1] and "cvae-tiny replace 0.3" in blocks[1]
        assert f"{v['diff']['mean']:+.3f}" in blocks[1] and "Holm p" in blocks[1] and blocks[1].endswith(".")
    gate = json.loads((out / "quality" / DKEY / "frac0.03" / "seed0" / "cvae-tiny" / "quality.json").read_text())["gate"]
    picture = 2
    if not gate["passed"]:  # the run's only generator rejected: said after the answer, with where one that passes is
        assert blocks[2].startswith("**No generator of this run passed the quality gate**")
        assert "configs/recipes.yaml" in blocks[2]
        picture = 3
    assert blocks[picture].startswith(f"![`{DKEY}-frac0.03-cvae-tiny`: real training cells")
    assert md.index("](report_files/") == md.index(f"](report_files/{DKEY}-frac0.03-cvae-tiny.png)")
    # the quality gate of the measured seed beside the verdict, in the summary and the report alike
    assert gate["split"] == "val" and "| verdict | quality gate |" in md
    (row,) = [line for line in md.splitlines() if line.startswith(f"| {DKEY} | 0.03 | ") and "**" in line]
    assert ("generator rejected" in row) == (not gate["passed"]) and f"CAS ratio {gate['ratio']:.2f}" in row
    assert "scored on the real **validation** patients" in md


def _tables(markdown: str) -> list[str]:
    """The Markdown tables of a page, each as its block of lines."""
    blocks, current = [], []
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            blocks.append("\n".join(current))
            current = []
    return blocks


def test_summary_and_report_show_the_same_tables(tiny_run, tmp_path):
    """One builder: every table of summary.md is in the report as it is, and the report adds the quality
    tables and the invocations."""
    from synthaug.bench import build_report

    out, _ = tiny_run
    md, _ = build_report(out, tmp_path / "rep")
    summary, report = _tables((out / "summary.md").read_text()), _tables(md.read_text())
    assert len(summary) == 3  # verdicts, every setting, all metrics of the one selected setting
    assert all(table in report for table in summary)
    assert len(report) == len(summary) + 3  # quality overall and per class, the invocations


def test_report_renders_in_headless_chromium(tiny_run, tmp_path, browser):
    from synthaug.bench import build_report

    out, _ = tiny_run
    _, page = build_report(out, tmp_path / "rep")
    browser.get(page.resolve().as_uri())
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.getBoundingClientRect().width])")
    assert len(images) == 5  # with the generators' loss curves
    assert all(done and natural > 100 and shown > 100 for done, natural, shown in images), images
    tables = browser.execute_script(
        "return Array.from(document.querySelectorAll('table')).map(t => [t.rows.length, t.getBoundingClientRect().height])")
    assert len(tables) >= 5 and all(rows >= 2 and height > 20 for rows, height in tables), tables
    verdict = browser.execute_script("return document.querySelector('table').rows[1].innerText")
    assert "cvae-tiny" in verdict and "0.03" in verdict


def test_report_of_a_folder_that_is_no_run(tmp_path):
    from synthaug.cli import main

    assert main(["report", str(tmp_path)]) == 1  # a runtime error: not a run folder
    assert not (tmp_path / "report.html").exists()


@pytest.mark.parametrize("preset", sorted(p.name for p in (REPO / "configs" / "bench").glob("*.yaml")))
def test_every_benchmark_preset_builds(preset):
    """Each preset parses, and its generators and classifier build at its image size (no data needed)."""
    from synthaug.bench import BenchConfig
    from synthaug.bench.launch import is_strategies_config
    from synthaug.bench.strategy_config import StrategiesConfig
    from synthaug.classifier import create_classifier
    from synthaug.config import load_config
    from synthaug.generators import create_generator

    path = REPO / "configs" / "bench" / preset
    if is_strategies_config(path):  # the strategies grid: one generator (and the donor's), its strategies
        cfg = load_config(StrategiesConfig, path)
        if preset == "malaria-strategies.yaml":
            issue14 = {"samples", "weighted", "teacher", "minority", "edits", "pretrain", "donor"}
            assert len(cfg.seeds) >= 5 and {s.kind for s in cfg.strategies} == issue14  # every strategy of issue 14
            assert cfg.fractions == [0.02, 0.05, 0.25]  # about 3, 7 and 35 training patients
        else:  # the powered answer (pilot, GPU scale): sites of the fixed design, AUROC, strong augmentation
            assert cfg.sites is not None and cfg.data.design is not None
            assert cfg.primary_metric == "auroc" and cfg.classifier.augment == "strong"
            if preset == "malaria-powered-pilot.yaml":  # the plan's pilot draws, never a confirmatory one
                assert cfg.sites.patients == [3, 7] and cfg.sites.draws == [1000, 1001, 1002, 1003, 1004]
                assert not cfg.score_test  # its choices never read a test patient
            else:
                assert cfg.fixed_specificity == 0.95 and cfg.score_test
        # ready sources (a checkpoint trained elsewhere) are opened at run time, not built here
        generators = [cfg.generator, cfg.donor_spec, *(s for s in cfg.sources.values() if s.source is None)]
    else:
        cfg = load_config(BenchConfig, path)
        assert len(cfg.seeds) >= 3 and cfg.synthetic.ratios
        generators = cfg.generators
    for d in cfg.datasets:
        channels = 1 if d.name.startswith("medmnist:breast") else 3
        for g in generators:
            create_generator(g.name, num_classes=2, image_size=d.image_size, channels=channels, **g.options)
        create_classifier(cfg.classifier.model, num_classes=2, channels=channels)
    if preset == "malaria-lowdata.yaml":  # what the issue asks of it
        assert cfg.fractions[0] <= 0.02 and cfg.fractions[-1] == 1.0 and len(cfg.fractions) >= 4 and len(cfg.seeds) >= 5
        assert {g.name for g in cfg.generators} >= {"cvae", "ddpm"} and cfg.datasets[0].image_size == 32
        assert len(cfg.synthetic.ratios) >= 2  # something to select on validation


def test_report_of_a_partial_grid_with_one_seed_and_no_quality(tmp_path):
    """Several fractions (log axis), a single seed (no interval), no quality folder, cells missing."""
    from synthaug.bench import BenchConfig, prepare_run_dir
    from synthaug.config import from_dict
    from synthaug.bench import build_report
    from synthaug.utils import append_jsonl

    cfg = from_dict(BenchConfig, {"name": "partial", "seeds": [0, 1], "fractions": [0.02, 0.25, 1.0],
                                  "generators": [{"name": "cvae-tiny"}], "synthetic": {"ratios": [0.25, 0.5]},
                                  "quality": {"enabled": False}})
    run = tmp_path / "run"
    prepare_run_dir(cfg, run)
    metrics = {m: 0.7 for m in ("accuracy", "balanced_accuracy", "auroc", "f1", "sensitivity", "specificity")}
    for f in (0.02, 0.25, 1.0):
        for gen, ratio in ((None, 0.0), ("cvae-tiny", 0.25), ("cvae-tiny", 0.5)):
            append_jsonl(run / "results.jsonl", {"dataset": "malaria-32px", "fraction": f, "seed": 0, "generator": gen,
                                                 "ratio": ratio, "train_items": 100, "train_patients": 3,
                                                 "val": metrics, "test": metrics})
    md, page = build_report(run)
    text = md.read_text()
    assert "partial: 9 of 18 cells" in text and "too few seeds to tell" in text and "(1 of 2 seeds)" in text
    assert "No sample-quality metrics in this run" in text and "wall time not recorded" in text
    assert (run / "report_files" / "fraction-malaria-32px.png").stat().st_size > 1000
    assert page.read_text().count("data:image/png;base64,") == 2  # the fraction and gain plots


def test_report_of_a_real_only_run(tmp_path):
    """A config with no generator (a baseline check) reports the real-only arm instead of failing."""
    from synthaug.bench import BenchConfig, build_report, prepare_run_dir
    from synthaug.config import from_dict
    from synthaug.utils import append_jsonl

    cfg = from_dict(BenchConfig, {"name": "baseline", "seeds": [0, 1], "fractions": [1.0], "generators": [],
                                  "synthetic": {"ratios": [0.25]}, "quality": {"enabled": False}})
    run = tmp_path / "run"
    prepare_run_dir(cfg, run)
    for seed, value in ((0, 0.95), (1, 0.93)):
        metrics = {m: value for m in ("accuracy", "balanced_accuracy", "auroc", "f1", "sensitivity", "specificity")}
        append_jsonl(run / "results.jsonl", {"dataset": "malaria-32px", "fraction": 1.0, "seed": seed,
                                             "generator": None, "ratio": 0.0, "train_items": 100, "train_patients": 3,
                                             "val": metrics, "test": metrics})
    md, _ = build_report(run)
    text = md.read_text()
    assert "A real-only run (no generator in its config)" in text
    assert "Real-only baseline" in text and "| **balanced_accuracy** | 0.940 [" in text  # mean of the two seeds
