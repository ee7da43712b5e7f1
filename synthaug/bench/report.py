"""``synthaug report RUN_DIR``: the benchmark's answer as a page people read.

Writes ``report.md`` and ``report.html`` (self-contained: every image embedded) into the output folder
(default: the run folder), with the pictures in ``report_files/``: first the answer in one sentence per data
set (from the verdicts) and one samples picture beside real training cells; then the tables of ``summary.md``
(built once, in ``tables.py``; the quality gate beside the verdicts) with pictures around them — the primary metric against the real training
fraction, the paired gain against the synthetic ratio, sample grids beside real training cells — then
the sample-quality tables and the memorization audit's closest pairs, the resolved config, the versions
and the wall time of the run.

Everything is read from the run folder (``config.json``, ``results.jsonl``, ``samples/``, ``quality/``,
``runs.jsonl``, and the same records of every shard of a run spread with ``--shard i/N``, merged after
checking that all shards ran one config); nothing is recomputed except the statistics, which ``analyze``
derives from the results exactly as the run did.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..config import ConfigError, from_dict, to_dict
from ..tracking import LOSS_PLOT, plot_losses
from ..utils import atomic_write_text, read_jsonl
from .analysis import analyze
from .grid_config import BenchConfig, plan
from .document import Code, Figure, Heading, Para, render_html, render_markdown
from .paths import (check_same_config, generator_dir, quality_records, read_config_records, read_results,
                    record_files, samples_path, shard_of)
from .plots import plot_curves, plot_fraction, plot_gain
from .summary import classifier_budget, mixes, title
from .tables import (answer, baseline_section, curves_section, gate_headline, gates_by_generator, group_quality,
                     quality_tables, runs_table, selected_section, settings_section, verdict_section)


# --------------------------------------------------------------------------- reading the run
def load_run(run_dir: str | os.PathLike) -> tuple[BenchConfig, dict, list[dict]]:
    """The config, the versions and the result rows of a run folder, every shard's rows merged. Refuses
    (``ConfigError``, naming the files and keys) shards that ran different configs or different splits."""
    run_dir = Path(run_dir)
    records = read_config_records(run_dir)
    if not records:
        raise FileNotFoundError(f"{run_dir} is not a benchmark run folder (no config.json, nor a shard's "
                                "config.shard-<i>-of-<N>.json); give the folder that `benchmarks/run.py` wrote, "
                                "e.g. runs/malaria-quick")
    config = check_same_config(records, run_dir)
    try:
        cfg = from_dict(BenchConfig, config, where=next(iter(records)).name)
    except (KeyError, TypeError, ConfigError) as err:
        raise ValueError(f"{next(iter(records))} is not a benchmark config record ({err}); was it written by "
                         "benchmarks/run.py?") from err
    return cfg, next(iter(records.values())).get("versions", {}), read_results(run_dir)


def read_runs(run_dir: Path) -> list[dict]:
    """The invocation records of every shard (``runs.jsonl``, ``runs.shard-<i>-of-<N>.jsonl``)."""
    return [r for path in record_files(run_dir, "runs", "jsonl") for r in read_jsonl(path)]


def _copy(path: Path, folder: Path, name: str | None = None) -> Path:
    target = folder / (name or path.name)
    if path.resolve() != target.resolve():
        shutil.copyfile(path, target)
    return target


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
    runs = read_runs(run_dir)
    quality = quality_records(run_dir, cfg)
    picture = _lead_picture(run_dir, cfg)
    lead = ([Para("A real-only run (no generator in its config): it measures the real-only baseline by the "
                  "protocol below, with no synthetic arm to compare: its learning curves and the baseline table "
                  "below.")] if not cfg.generators else _answer(analysis, picture, files))
    headline = gate_headline(gates_by_generator(quality))
    lead = [lead[0], Para(headline), *lead[1:]] if headline else lead  # after the answer's sentence
    blocks: list[Any] = [Heading(title(cfg), 1), *lead,
                         *_intro(run_dir, cfg, rows, runs, analysis),
                         *verdict_section(analysis, len(cfg.seeds), quality), *_figures(cfg, analysis, files),
                         *_curves(analysis, files),
                         *(baseline_section(analysis) if not cfg.generators else
                           [*settings_section(analysis), *selected_section(analysis)]),
                         *_samples(run_dir, files, shown=picture), *_loss_curves(run_dir, cfg, files),
                         *_quality(run_dir, cfg, files, quality),
                         *_provenance(cfg, versions, runs, run_dir)]
    md_path, html_path = out / "report.md", out / "report.html"
    atomic_write_text(md_path, render_markdown(blocks, out))
    atomic_write_text(html_path, render_html(blocks, f"{cfg.name}: synthaug report"))
    return md_path, html_path


def _lead_picture(run_dir: Path, cfg: BenchConfig) -> Path | None:
    """The samples picture the report opens with: the first generator's at the largest fraction of the first
    data set (the most real data, so the best samples the run has), else the first one written, else none."""
    if not cfg.generators:  # a real-only run (e.g. a baseline check) draws nothing
        return None
    preferred = samples_path(run_dir, cfg.datasets[0].key, max(cfg.fractions), cfg.generators[0].key)
    if preferred.is_file():
        return preferred
    return next(iter(sorted((run_dir / "samples").glob("*.png"))), None)


def _answer(analysis: dict, picture: Path | None, files: Path) -> list[Any]:
    """The answer first (issue 15): one sentence per data set from the verdicts, then real beside synthetic."""
    blocks: list[Any] = [Para(answer(analysis) or "No verdict yet: no synthetic arm has finished.")]
    if picture is not None:
        blocks.append(Figure(_copy(picture, files), f"`{picture.stem}`: real training cells of each class (rows "
                                                    "'real') beside the generator's samples of that class"))
    return blocks


def _finished(records: list[dict]) -> list[dict]:
    """The invocations that ended (an end record carries a wall time)."""
    return [r for r in records if r.get("seconds") is not None]


def _intro(run_dir: Path, cfg: BenchConfig, rows: list[dict], records: list[dict], analysis: dict) -> list[Any]:
    """The run folder, how complete it is and how long it took; the design; the statistics."""
    expected = len(plan(cfg))
    status = "complete" if len(rows) >= expected else f"**partial: {len(rows)} of {expected} cells**"
    gens = ", ".join(f"`{g.key}` ({g.describe()})" for g in cfg.generators)
    return [
        Para(f"Run folder `{run_dir}`: {len(rows)} classifier trainings ({status}); " + _wall_time(records)
             + _shards_note(run_dir) + "."),
        Para(f"Data: {', '.join(f'`{d.name}` at {d.image_size} px, split by patient {d.split}' for d in cfg.datasets)} "
             f"(train / val / test); real training fractions {cfg.fractions} of the training "
             f"patients; seeds {cfg.seeds}. Classifier `{cfg.classifier.model}` from scratch, {classifier_budget(cfg)} "
             f"and augmentation `{cfg.classifier.augment}`, by the same rule in every arm. "
             f"Generators: {gens}, each trained on its cell's training patients only. Synthetic ratios "
             f"{cfg.synthetic.ratios}, mixed by {mixes(rows)}, **selected on the validation patients**; only the "
             "selected ratio is scored on test in the verdicts."),
        Para(f"Statistics: {analysis['interval']}. {analysis['correction']}, by the sign of the paired difference to "
             "the real-only baseline, or to the stronger of the baseline and the real-matched control where the "
             f"additive arms have one; primary metric `{analysis['primary_metric']}` (chosen before the run)."),
    ]


def _wall_time(records: list[dict]) -> str:
    """The wall time of the finished invocations; for a sharded run, the compute summed over shards and the
    longest shard (shards may run side by side: the wall time lies between the two)."""
    runs = _finished(records)
    started = {(r.get("shard"), r["started"]) for r in records if r.get("status") == "started"}
    interrupted = len(started - {(r.get("shard"), r.get("started")) for r in runs})
    if not runs:
        text = "wall time not recorded"
    else:
        per_shard: dict[Any, float] = {}
        for r in runs:
            per_shard[r.get("shard")] = per_shard.get(r.get("shard"), 0.0) + r["seconds"]
        total = sum(per_shard.values())
        text = (f"wall time {total / 60:.0f} min over {len(runs)} finished invocation(s) of the benchmark, "
                f"{runs[-1].get('processes', 1)} process(es)")
        if len(per_shard) > 1 or None not in per_shard:
            text = (f"{total / 60:.0f} min of wall time summed over {len(per_shard)} shard(s) ({len(runs)} finished "
                    f"invocation(s), {runs[-1].get('processes', 1)} process(es) each); the longest shard took "
                    f"{max(per_shard.values()) / 60:.0f} min")
    return text + (f"; {interrupted} invocation(s) were interrupted and are not counted" if interrupted else "")


def _shards_note(run_dir: Path) -> str:
    """Which shards of a sharded run wrote a config record (the others have not started)."""
    shards = [s for s in map(shard_of, record_files(run_dir, "config", "json")) if s is not None]
    if not shards:
        return ""
    missing = sorted(set(range(shards[0].count)) - {s.index for s in shards})
    return (f"; spread over {shards[0].count} shards (`--shard i/{shards[0].count}`), merged here"
            + (f"; **shards {missing} have not started**" if missing else ""))


def _figures(cfg: BenchConfig, analysis: dict, files: Path) -> list[Any]:
    """The primary metric against the fraction per data set; the gain against the ratio per generator."""
    metric = analysis["primary_metric"]
    blocks: list[Any] = [Heading(f"{metric} against the real training fraction")]
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
    return blocks


def _curves(analysis: dict, files: Path) -> list[Any]:
    """The best-step table and one picture of the validation curves per data set and fraction (runs whose
    rows carry curves)."""
    blocks = curves_section(analysis)
    for d, f in sorted({(c["dataset"], c["fraction"]) for c in analysis.get("curves") or []}):
        fig = plot_curves(analysis, d, f, files / f"curves-{d}-frac{f:g}.png")
        blocks.append(Figure(fig, f"{d}, fraction {f:g}: {analysis['primary_metric']} on the validation patients "
                                  "against the step, per arm (mean over seeds; marker: the median best step, whose "
                                  "checkpoint is kept)"))
    return blocks


def _samples(run_dir: Path, files: Path, *, shown: Path | None = None) -> list[Any]:
    """Every samples picture but ``shown`` (the one at the top: embedded once, the page stays small)."""
    blocks: list[Any] = [Heading("Samples beside real training cells")]
    if shown is not None:
        blocks.append(Para(f"`{shown.stem}` is shown at the top."))
    for path in sorted((run_dir / "samples").glob("*.png")):
        if path != shown:
            blocks.append(Figure(_copy(path, files), f"`{path.stem}`: real training cells of each class (rows "
                                                     "'real') beside the generator's samples of that class"))
    return blocks


def _loss_curves(run_dir: Path, cfg: BenchConfig, files: Path) -> list[Any]:
    """The loss curves of the first seed's generators (``loss_curves.png`` of their folder, drawn from its
    ``log.jsonl`` when a run older than the picture has none); nothing when the run folder keeps no generator."""
    blocks: list[Any] = []
    for d in cfg.datasets:
        for f in cfg.fractions:
            for g in cfg.generators:
                folder = generator_dir(run_dir, d.key, f, cfg.seeds[0], g.key)
                name = f"losses-{d.key}-frac{f:g}-{g.key}.png"
                if (folder / LOSS_PLOT).is_file():
                    picture = _copy(folder / LOSS_PLOT, files, name)
                elif (folder / "log.jsonl").is_file():
                    picture = plot_losses(folder / "log.jsonl", files / name, title=f"{d.key} {f:g} {g.key}")
                else:
                    continue
                if picture is not None:
                    blocks.append(Figure(picture, f"`{g.key}` at fraction {f:g} of {d.key}, seed {cfg.seeds[0]}: "
                                                  "its training losses (log.jsonl) against the step"))
    return [Heading("Generator training losses"), *blocks] if blocks else []


def _quality(run_dir: Path, cfg: BenchConfig, files: Path, records: list[dict]) -> list[Any]:
    """The sample-quality tables (``records``: the run's quality records), failures, and the memorization
    audit's closest pairs."""
    blocks: list[Any] = [Heading("Sample quality")]
    if not records:
        return blocks + [Para("No sample-quality metrics in this run (`quality.enabled` was false, or no generator "
                              "finished). `synthaug evaluate` computes them for any checkpoint.")]
    blocks += [_quality_note(records[0]["q"]), *quality_tables(records)]
    errors = sorted((run_dir / "quality").rglob("error.txt"))
    if errors:
        blocks.append(Para("Sample quality failed for: " + "; ".join(
            f"`{e.parent.relative_to(run_dir)}` ({e.read_text().strip()[:200]})" for e in errors)))
    blocks.append(Heading("Memorization audit: the closest synthetic / training pairs", 3))
    for (d, f, g), rs in group_quality(records).items():
        pairs = rs[0]["folder"] / "memorization_pairs.png"
        if pairs.is_file():
            name = f"memorization-{d}-frac{f:g}-{g}-seed{rs[0]['seed']}.png"
            blocks.append(Figure(_copy(pairs, files, name), f"{d}, fraction {f:g}, {g}, seed {rs[0]['seed']}: the "
                                 "synthetic samples nearest to a training image, above that image"))
    return blocks


def _quality_note(q0: dict) -> Para:
    """How the quality metrics were measured and how to read them."""
    recipe = q0["extractor"].get("recipe") or {}
    return Para(
        f"Features from `{recipe.get('model')}` trained {recipe.get('steps')} steps on the real training patients of "
        f"each seed (never validation or test). Up to {q0['n']} synthetic images per generator against as many real "
        "training images of the same classes (fewer where a fraction has fewer: the *n* column; FID and "
        "precision / recall depend on n, so compare rows of equal n); *real val* is the same comparison for real "
        "images of new patients, the scale of a good score. *memorized*: share of samples closer to a training image than the closest "
        f"{q0['memorization']['quantile']:.0%} of training images are to their own neighbours (real val gives "
        "about that). CAS: balanced accuracy on the real **validation** patients of a classifier trained on synthetic "
        "images only, beside the same classifier trained on the real images (the test patients are kept for the "
        "verdicts; the quality gate beside the verdicts judges this CAS). Mean ± sd over the seeds evaluated.")


def _provenance(cfg: BenchConfig, versions: dict, records: list[dict], run_dir: Path) -> list[Any]:
    """The resolved config, the versions (each shard's, where they differ), and the invocations with their
    wall times."""
    blocks: list[Any] = [Heading("Resolved config and versions"),
                         Code(json.dumps({"config": json.loads(json.dumps(to_dict(cfg))), "versions": versions},
                                         indent=2))]
    differ = {path.name: r.get("versions", {}) for path, r in read_config_records(run_dir).items()
              if r.get("versions", {}) != versions}
    if differ:
        blocks.append(Para("The shards ran with different package versions (same config): "
                           + "; ".join(f"`{name}`: {json.dumps(v)}" for name, v in differ.items())))
    runs = _finished(records)
    if runs:
        blocks.append(runs_table(runs))
    return blocks
