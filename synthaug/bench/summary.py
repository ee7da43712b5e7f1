"""``summary.md``: what the grid ran, then the tables of ``tables.py`` rendered as Markdown."""
from __future__ import annotations

from typing import Any

from .analysis import analyze
from .grid_config import BenchConfig
from .document import Bullets, Heading, Para, render_markdown
from .tables import curves_section, gate_headline, gates_by_generator, selected_section, settings_section, verdict_section


def title(cfg: BenchConfig) -> str:
    return f"{cfg.name}: does synthetic data help the classifier?"


def classifier_budget(cfg: BenchConfig) -> str:
    """The classifier's training budget in words: a fixed number of steps, or epochs of real data (with a
    floor in steps); validation every K steps with the best checkpoint kept; the BatchNorm rule. Options a
    config does not have (older runs) are left out."""
    c = cfg.classifier
    epochs, floor = getattr(c, "epochs", None), getattr(c, "min_steps", 0)
    text = (f"{epochs:g} epochs of real data" + (f" (at least {floor} steps)" if floor else "")
            if epochs is not None else f"{c.steps} steps") + f" x batch {c.batch_size}"
    if getattr(c, "eval_every", None):
        text += f", validation every {c.eval_every} steps (the best checkpoint kept)"
    bn = getattr(c, "bn", None)
    if bn:
        text += (", BatchNorm statistics recomputed on real training images" if bn == "recompute"
                 else f", BatchNorm `{bn}`")
    return text


def mixes(rows: list[dict]) -> str:
    """How the synthetic arms of a run mixed (rows without ``mix`` replaced: the only way there was)."""
    found = sorted({r.get("mix") or "replace" for r in rows if r.get("generator") is not None})
    return " and ".join(f"`{m}`" for m in found) or "none"


def _setup(rows: list[dict], cfg: BenchConfig, analysis: dict) -> Bullets:
    """What every arm shared, and how the ratio is selected and the verdict read."""
    primary = cfg.primary_metric
    gens = ", ".join(f"`{g.key}` ({g.describe()})" for g in cfg.generators) or "none"
    positives = sorted({str(r.get("positive_class")) for r in rows})
    controls = ("; a real-only control given as many draws as each additive arm (`real-matched`)"
                if analysis.get("controls") else "")
    return Bullets([
        f"data: {', '.join(f'`{d.name}` at {d.image_size} px' for d in cfg.datasets)}; split by patient "
        f"{cfg.datasets[0].split}; real training fractions (of the training patients) {cfg.fractions}",
        f"classifier: `{cfg.classifier.model}` from scratch, {classifier_budget(cfg)} by the same rule in every arm, "
        f"augmentation `{cfg.classifier.augment}` in every arm, the same initial weights per seed",
        f"generators: {gens}; each trained per data set, fraction and seed on that cell's training patients only",
        f"synthetic ratios {cfg.synthetic.ratios} ({cfg.synthetic.label_distribution} labels), mixed by "
        f"{mixes(rows)}{controls}; the ratio is **selected on the validation patients** ({primary}, mean over seeds; "
        "ties: the smaller ratio) and only the selected one is scored on test below",
        f"seeds {cfg.seeds}; positive class for binary metrics: {', '.join(positives)}",
        f"{analysis['interval']}; {analysis['correction']}: \"helps\" / \"hurts\" by the sign of the difference, "
        "else \"no significant difference\"; \"too few distinct values\" when every paired difference is the same; "
        "\"validation chose no synthetic\" when ratio 0 won on validation",
    ])


def summarize(rows: list[dict], cfg: BenchConfig, *, analysis: dict | None = None,
              quality: list[dict] | None = None) -> str:
    """Markdown: the verdict per data set, fraction, generator and mix (ratio selected on validation,
    scored on test; with ``quality``, the run's quality records, the quality gate beside it), the best
    validation step per arm (when the rows carry learning curves), every setting with its validation and
    test differences, and all metrics of the selected settings."""
    analysis = analysis or analyze(rows, cfg)
    blocks: list[Any] = [Heading(title(cfg), 1)]
    if not rows:
        return render_markdown(blocks + [Para("No finished results yet.")])
    headline = gate_headline(gates_by_generator(quality or []))
    blocks += [*([Para(headline)] if headline else []), _setup(rows, cfg, analysis),
               *verdict_section(analysis, len(cfg.seeds), quality),
               *curves_section(analysis),
               *settings_section(analysis), *selected_section(analysis)]
    return render_markdown(blocks)
