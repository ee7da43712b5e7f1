"""``synthaug report RUN_DIR``: the benchmark's answer as a page people read.

Writes ``report.md`` and ``report.html`` (self-contained: every image embedded) into the output folder
(default: the run folder), with the pictures in ``report_files/``:

- the verdict table (ratio selected on the validation patients, scored on the test patients);
- the primary metric against the real training fraction, with 95 % bands, baseline vs each generator;
- the paired gain against the synthetic ratio, on validation and test, per generator;
- sample grids per generator and class beside real training cells;
- sample-quality metrics (FID, KID, precision, recall, memorization, CAS), overall and per class, and the
  closest synthetic / training pairs of the memorization audit;
- the resolved config, the versions and the wall time of the run.

Everything is read from the run folder (``config.json``, ``results.jsonl``, ``samples/``, ``quality/``,
``runs.jsonl``); nothing is recomputed except the statistics, which ``synthaug.benchmark.analyze`` derives
from ``results.jsonl`` exactly as the run did.
"""
from __future__ import annotations

import base64
import html
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .benchmark import BenchConfig, _fmt, _isnan, _list as _span, _triple as _t, analyze, quality_dir
from .classifier import METRICS
from .config import ConfigError, from_dict
from .utils import atomic_write_text, read_jsonl


# --------------------------------------------------------------------------- blocks, rendered twice
@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Para:
    text: str  # may hold **bold** and `code`, rendered in both formats


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Figure:
    path: Path  # inside the output folder
    caption: str


@dataclass
class Code:
    text: str


def _inline_html(text: str) -> str:
    out, parts = [], html.escape(text).split("`")
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f"<code>{part}</code>")
        else:
            bold = part.split("**")
            out.append("".join(f"<strong>{b}</strong>" if j % 2 else b for j, b in enumerate(bold)))
    return "".join(out)


def render_markdown(blocks: list[Any], root: Path) -> str:
    lines: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            lines += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, Para):
            lines += [b.text, ""]
        elif isinstance(b, Table):
            lines += ["| " + " | ".join(b.header) + " |", "|" + "---|" * len(b.header)]
            lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in b.rows]
            lines.append("")
        elif isinstance(b, Figure):
            lines += [f"![{b.caption}]({b.path.relative_to(root).as_posix()})", "", f"*{b.caption}*", ""]
        elif isinstance(b, Code):
            lines += ["```", b.text.rstrip(), "```", ""]
    return "\n".join(lines)


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}th{background:#f1f3f5}tr:nth-child(even) td{background:#fafafa}
figure{margin:1em 0 1.6em}figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:.85em;color:#555}
pre{background:#f6f8fa;padding:.8em;overflow:auto;font-size:.8em}code{background:#f1f3f5;padding:0 .2em}"""


def render_html(blocks: list[Any], title: str) -> str:
    body: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            body.append(f"<h{b.level}>{html.escape(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            body.append(f"<p>{_inline_html(b.text)}</p>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{_inline_html(h)}</th>" for h in b.header)
            rows = "".join("<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>" for row in b.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(b, Figure):
            data = base64.b64encode(b.path.read_bytes()).decode()
            body.append(f'<figure><img alt="{html.escape(b.caption)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{_inline_html(b.caption)}</figcaption></figure>")
        elif isinstance(b, Code):
            body.append(f"<pre>{html.escape(b.text)}</pre>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_CSS}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")


# --------------------------------------------------------------------------- plots
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    _plt().close(fig)
    os.replace(tmp, path)
    return path


def _nan(x: Any) -> float:
    return math.nan if x is None else float(x)


def plot_fraction(analysis: dict, dataset: str, path: Path) -> Path:
    """Primary metric on the test patients against the real training fraction: the baseline and each
    generator at its validation-selected ratio, mean over seeds with the 95 % t band."""
    plt = _plt()
    metric = analysis["primary_metric"]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    base = sorted((b for b in analysis["baselines"] if b["dataset"] == dataset), key=lambda b: b["fraction"])
    series = [("real only", [b["fraction"] for b in base], [b["test"][metric] for b in base])]
    for g in sorted({v["generator"] for v in analysis["verdicts"] if v["dataset"] == dataset}):
        vs = sorted((v for v in analysis["verdicts"] if v["dataset"] == dataset and v["generator"] == g),
                    key=lambda v: v["fraction"])
        series.append((f"+ {g} (val-selected ratio)", [v["fraction"] for v in vs], [v["synthetic"] for v in vs]))
    for i, (label, xs, stats) in enumerate(series):
        mean = np.array([_nan(s["mean"]) for s in stats])
        lo = np.array([_nan(s["lo"]) for s in stats])
        hi = np.array([_nan(s["hi"]) for s in stats])
        style = {"color": "black", "lw": 2.2} if i == 0 else {"lw": 1.6}
        err = np.nan_to_num(np.stack([mean - lo, hi - mean]))
        line = ax.errorbar(xs, mean, yerr=err, marker="o", capsize=3, label=label, **style)[0]
        if np.isfinite(lo).any() and len(xs) > 1:
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.15, lw=0)
    fractions = sorted({b["fraction"] for b in base})
    if len(fractions) > 1 and fractions[-1] / fractions[0] >= 4:
        ax.set_xscale("log")
    ax.set_xticks(fractions, [f"{f:g}" for f in fractions])
    ax.minorticks_off()
    ax.set_xlabel("real training fraction (of the training patients)")
    ax.set_ylabel(f"{metric} on the test patients")
    ax.set_title(f"{dataset}: mean over seeds, 95 % t band", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_gain(analysis: dict, dataset: str, generator: str, path: Path) -> Path:
    """Paired difference to the baseline against the synthetic ratio, one line per fraction; validation
    dashed (it selects), test solid (it reports); the selected ratio is ringed."""
    plt = _plt()
    metric = analysis["primary_metric"]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    settings = [e for e in analysis["settings"] if e["dataset"] == dataset and e["generator"] == generator]
    for f in sorted({e["fraction"] for e in settings}):
        es = sorted((e for e in settings if e["fraction"] == f), key=lambda e: e["ratio"])
        xs = [e["ratio"] for e in es]
        test = [e["diff_test"][metric] for e in es]
        mean = np.array([_nan(d["mean"]) for d in test])
        err = np.array([[_nan(d["mean"]) - _nan(d["lo"]) for d in test], [_nan(d["hi"]) - _nan(d["mean"]) for d in test]])
        cont = ax.errorbar(xs, mean, yerr=np.nan_to_num(err), marker="o", capsize=3, label=f"fraction {f:g}: test")
        color = cont[0].get_color()
        ax.plot(xs, [_nan(e["diff_val"][metric]["mean"]) for e in es], ls="--", color=color, alpha=0.6,
                label=f"fraction {f:g}: validation")
        for e, m in zip(es, mean):
            if e["selected"]:
                ax.plot([e["ratio"]], [m], marker="o", ms=13, mfc="none", mec=color, mew=1.5)
    ax.axhline(0, color="grey", lw=1)
    ax.set_xlabel("synthetic ratio")
    ax.set_ylabel(f"{metric}: synthetic - real only (paired)")
    ax.set_title(f"{dataset}, {generator}: gain per ratio, 95 % paired t interval (ring: selected on val)",
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


# --------------------------------------------------------------------------- reading the run
def load_run(run_dir: str | os.PathLike) -> tuple[BenchConfig, dict, list[dict]]:
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a benchmark run folder (no config.json); give the folder that "
                                "`benchmarks/run.py` wrote, e.g. runs/malaria-quick")
    try:
        record = json.loads(config_path.read_text())
        cfg = from_dict(BenchConfig, record["config"], where="config.json")
    except (json.JSONDecodeError, KeyError, TypeError, ConfigError) as err:
        raise ValueError(f"{config_path} is not a benchmark config record ({err}); was it written by "
                         "benchmarks/run.py?") from err
    return cfg, record.get("versions", {}), read_jsonl(run_dir / "results.jsonl")


def _quality_records(run_dir: Path, cfg: BenchConfig) -> list[dict]:
    out = []
    for d in cfg.datasets:
        for f in cfg.fractions:
            for g in cfg.generators:
                for s in cfg.seeds:
                    path = quality_dir(run_dir, d.key, f, s, g.key) / "quality.json"
                    if path.is_file():
                        out.append({"dataset": d.key, "fraction": f, "generator": g.key, "seed": s,
                                    "folder": path.parent, "q": json.loads(path.read_text())})
    return out


def _mean_of(values: list[Any]) -> str:
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return "n/a"
    return f"{np.mean(xs):.3g}" if len(xs) == 1 else f"{np.mean(xs):.3g} ± {np.std(xs, ddof=1):.2g}"


def _verdict_cell(text: str) -> str:
    return f"**{text}**"


# --------------------------------------------------------------------------- the report
def build_report(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.html`` and ``report_files/`` for the run in ``run_dir``; return both paths."""
    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir
    cfg, versions, rows = load_run(run_dir)
    if not rows:
        raise ValueError(f"{run_dir / 'results.jsonl'} holds no finished cell yet; run the benchmark first")
    files = out / "report_files"
    files.mkdir(parents=True, exist_ok=True)
    analysis = analyze(rows, cfg)
    metric = analysis["primary_metric"]
    blocks: list[Any] = [Heading(f"{cfg.name}: does synthetic data help the classifier?", 1)]

    records = read_jsonl(run_dir / "runs.jsonl")
    runs = [r for r in records if r.get("seconds") is not None]  # finished invocations
    interrupted = len({r["started"] for r in records if r.get("status") == "started"} - {r.get("started") for r in runs})
    wall = sum(r["seconds"] for r in runs)
    expected = len(cfg.seeds) * len(cfg.fractions) * len(cfg.datasets) * (1 + len(cfg.generators) * len(cfg.synthetic.ratios))
    status = "complete" if len(rows) >= expected else f"**partial: {len(rows)} of {expected} cells**"
    gens = ", ".join(f"`{g.key}` ({g.name}, {g.train.steps} steps)" for g in cfg.generators)
    blocks += [
        Para(f"Run folder `{run_dir}`: {len(rows)} classifier trainings ({status}); wall time "
             + (f"{wall / 60:.0f} min over {len(runs)} finished invocation(s) of the benchmark, "
                f"{runs[-1].get('processes', 1)} process(es)" if runs else "not recorded")
             + (f"; {interrupted} invocation(s) were interrupted and are not counted" if interrupted else "") + "."),
        Para(f"Data: {', '.join(f'`{d.name}` at {d.image_size} px, split by patient {d.split}' for d in cfg.datasets)} "
             f"(train / val / test); real training fractions {cfg.fractions} of the training "
             f"patients; seeds {cfg.seeds}. Classifier `{cfg.classifier.model}` from scratch, {cfg.classifier.steps} "
             f"steps of batch {cfg.classifier.batch_size} and augmentation `{cfg.classifier.augment}` in every arm. "
             f"Generators: {gens}, each trained on its cell's training patients only. Synthetic ratios "
             f"{cfg.synthetic.ratios}, **selected on the validation patients**; only the selected ratio is scored "
             "on test in the verdicts."),
        Para(f"Statistics: {analysis['interval']}. A verdict is \"helps\" or \"hurts\" only when the 95 % interval "
             f"of the paired difference excludes 0; primary metric `{metric}` (chosen before the run)."),
        Heading(f"Verdicts on the test patients ({metric})"),
    ]
    vrows = []
    for v in analysis["verdicts"]:
        d = v["diff"]
        p = "n/a" if d["p"] is None or (isinstance(d["p"], float) and math.isnan(d["p"])) else f"{d['p']:.3f}"
        partial = "" if v["complete"] else f" ({len(v['seeds'])} of {len(cfg.seeds)} seeds)"
        vrows.append([v["dataset"], f"{v['fraction']:g}", _span(v["train_patients"]), v["generator"], f"{v['ratio']:g}",
                      _fmt(v["baseline"]["mean"], v["baseline"]["lo"], v["baseline"]["hi"]),
                      _fmt(v["synthetic"]["mean"], v["synthetic"]["lo"], v["synthetic"]["hi"]),
                      _fmt(d["mean"], d["lo"], d["hi"], signed=True), p, _verdict_cell(v["verdict"]) + partial])
    blocks.append(Table(["data set", "fraction", "train patients", "generator", "ratio (val-selected)", "real only",
                         "real + synthetic", "difference", "p", "verdict"], vrows))

    blocks.append(Heading(f"{metric} against the real training fraction"))
    for d in cfg.datasets:
        if any(b["dataset"] == d.key for b in analysis["baselines"]):
            fig = plot_fraction(analysis, d.key, files / f"fraction-{d.key}.png")
            blocks.append(Figure(fig, f"{d.key}: {metric} on the test patients, baseline and each generator at its "
                                      "validation-selected ratio; mean over seeds with 95 % t band"))
    blocks.append(Heading("Gain against the synthetic ratio"))
    for d in cfg.datasets:
        for g in cfg.generators:
            if any(e["dataset"] == d.key and e["generator"] == g.key for e in analysis["settings"]):
                fig = plot_gain(analysis, d.key, g.key, files / f"gain-{d.key}-{g.key}.png")
                blocks.append(Figure(fig, f"{d.key}, {g.key}: paired difference to real only per ratio "
                                          "(validation dashed, test with 95 % interval; ring: selected on validation)"))
    blocks += [Heading("Every setting"),
               Para("Validation decides; test is shown for transparency. All settings are in `results.jsonl`.")]
    blocks.append(Table(["data set", "fraction", "generator", "ratio", "selected on val", f"val difference",
                         "test difference", "test p"],
                        [[e["dataset"], f"{e['fraction']:g}", e["generator"], f"{e['ratio']:g}",
                          "yes" if e["selected"] else "",
                          _fmt(e["diff_val"][metric]["mean"], e["diff_val"][metric]["lo"], e["diff_val"][metric]["hi"], signed=True),
                          _fmt(e["diff_test"][metric]["mean"], e["diff_test"][metric]["lo"], e["diff_test"][metric]["hi"], signed=True),
                          "n/a" if _isnan(e["diff_test"][metric]["p"]) else f"{e['diff_test'][metric]['p']:.3f}"]
                         for e in analysis["settings"]]))
    blocks.append(Heading("All metrics of the selected settings (test patients)"))
    base = {(b["dataset"], b["fraction"]): b for b in analysis["baselines"]}
    trows = []
    for e in (e for e in analysis["settings"] if e["selected"]):
        b = base[(e["dataset"], e["fraction"])]
        for m in METRICS:
            d = e["diff_test"][m]
            trows.append([e["dataset"], f"{e['fraction']:g}", f"{e['generator']} @ {e['ratio']:g}",
                          f"**{m}**" if m == metric else m, _fmt(**_t(b["test"][m])), _fmt(**_t(e["test"][m])),
                          _fmt(d["mean"], d["lo"], d["hi"], signed=True)])
    blocks.append(Table(["data set", "fraction", "setting", "metric", "real only", "real + synthetic", "difference"],
                        trows))
    blocks.append(Para("Only the primary metric carries a verdict; the others are descriptive (many metrics at 95 % "
                       "each are not corrected for multiple comparisons)."))

    blocks.append(Heading("Samples beside real training cells"))
    for path in sorted((run_dir / "samples").glob("*.png")):
        blocks.append(Figure(_copy(path, files), f"`{path.stem}`: real training cells of each class (rows "
                                                  "'real') beside the generator's samples of that class"))

    blocks += _quality_blocks(run_dir, cfg, files)

    blocks += [Heading("Resolved config and versions"),
               Code(json.dumps({"config": json.loads(json.dumps(_plain(cfg))), "versions": versions}, indent=2))]
    if runs:
        blocks.append(Table(["started", "finished", "minutes", "processes", "cells run"],
                            [[r.get("started", ""), r.get("finished", ""), f"{r.get('seconds', 0) / 60:.1f}",
                              str(r.get("processes", "")), str(r.get("cells_run", ""))] for r in runs]))
    md_path, html_path = out / "report.md", out / "report.html"
    atomic_write_text(md_path, render_markdown(blocks, out))
    atomic_write_text(html_path, render_html(blocks, f"{cfg.name}: synthaug report"))
    return md_path, html_path


def _quality_blocks(run_dir: Path, cfg: BenchConfig, files: Path) -> list[Any]:
    records = _quality_records(run_dir, cfg)
    blocks: list[Any] = [Heading("Sample quality")]
    if not records:
        return blocks + [Para("No sample-quality metrics in this run (`quality.enabled` was false, or no generator "
                              "finished). `synthaug evaluate` computes them for any checkpoint.")]
    q0 = records[0]["q"]
    recipe = q0["extractor"].get("recipe") or {}
    blocks.append(Para(
        f"Features from `{recipe.get('model')}` trained {recipe.get('steps')} steps on the real training patients of "
        f"each seed (never validation or test). Up to {q0['n']} synthetic images per generator against as many real "
        "training images of the same classes (fewer where a fraction has fewer: the *n* column; FID and "
        "precision / recall depend on n, so compare rows of equal n); *real val* is the same comparison for real "
        "images of new patients, the scale of a good score. *memorized*: share of samples closer to a training image than the closest "
        f"{q0['memorization']['quantile']:.0%} of training images are to their own neighbours (real val gives "
        "about that). CAS: balanced accuracy on the real test patients of a classifier trained on synthetic images "
        "only, beside the same classifier trained on the real images. Mean ± sd over the seeds evaluated."))
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["dataset"], r["fraction"], r["generator"]), []).append(r)
    overall, per_class = [], []
    for (d, f, g), rs in groups.items():
        qs = [r["q"] for r in rs]
        n_real = sorted({q["fidelity"]["overall"]["n_real"] for q in qs})
        overall.append([d, f"{f:g}", g, str(len(rs)), _span(n_real),
                        _mean_of([q["fidelity"]["overall"]["fid"] for q in qs]),
                        _mean_of([(q.get("reference_heldout") or {}).get("overall", {}).get("fid") for q in qs]),
                        _mean_of([q["fidelity"]["overall"]["kid"] for q in qs]),
                        _mean_of([q["fidelity"]["overall"]["precision"] for q in qs]),
                        _mean_of([q["fidelity"]["overall"]["recall"] for q in qs]),
                        _mean_of([q["memorization"]["overall"]["share"] for q in qs]),
                        _mean_of([q["memorization"]["overall"].get("heldout_share") for q in qs]),
                        _mean_of([(q.get("cas") or {}).get("cas") for q in qs]),
                        _mean_of([(q.get("cas") or {}).get("real_score") for q in qs])])
        for c in qs[0]["fidelity"]["per_class"]:
            per_class.append([d, f"{f:g}", g, c,
                              _mean_of([q["fidelity"]["per_class"][c]["fid"] for q in qs]),
                              _mean_of([q["fidelity"]["per_class"][c]["precision"] for q in qs]),
                              _mean_of([q["fidelity"]["per_class"][c]["recall"] for q in qs]),
                              _mean_of([q["memorization"]["per_class"][c]["share"] for q in qs]),
                              _mean_of([((q.get("cas") or {}).get("synthetic") or {}).get("per_class_recall", {}).get(c)
                                        for q in qs]),
                              _mean_of([((q.get("cas") or {}).get("real") or {}).get("per_class_recall", {}).get(c)
                                        for q in qs])])
    blocks.append(Table(["data set", "fraction", "generator", "seeds", "n", "FID", "FID real val", "KID", "precision",
                         "recall", "memorized", "memorized real val", "CAS", "real-trained"], overall))
    blocks.append(Table(["data set", "fraction", "generator", "class", "FID", "precision", "recall", "memorized",
                         "CAS recall", "real-trained recall"], per_class))
    errors = sorted((run_dir / "quality").rglob("error.txt"))
    if errors:
        blocks.append(Para("Sample quality failed for: " + "; ".join(
            f"`{e.parent.relative_to(run_dir)}` ({e.read_text().strip()[:200]})" for e in errors)))
    blocks.append(Heading("Memorization audit: the closest synthetic / training pairs", 3))
    for (d, f, g), rs in groups.items():
        pairs = rs[0]["folder"] / "memorization_pairs.png"
        if pairs.is_file():
            name = f"memorization-{d}-frac{f:g}-{g}-seed{rs[0]['seed']}.png"
            blocks.append(Figure(_copy(pairs, files, name), f"{d}, fraction {f:g}, {g}, seed {rs[0]['seed']}: the "
                                 "synthetic samples nearest to a training image, above that image"))
    return blocks


def _copy(path: Path, folder: Path, name: str | None = None) -> Path:
    target = folder / (name or path.name)
    if path.resolve() != target.resolve():
        shutil.copyfile(path, target)
    return target


def _plain(cfg: BenchConfig) -> dict:
    from .config import to_dict

    return to_dict(cfg)
