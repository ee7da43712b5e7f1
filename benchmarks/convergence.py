"""How fast does each diffusion recipe reach the quality target? CAS ratio against training time.

    python benchmarks/convergence.py --config configs/convergence.yaml                 # every variant (resumable)
    python benchmarks/convergence.py --config configs/convergence.yaml --variants minsnr-bf16
    python benchmarks/convergence.py --config configs/convergence.yaml --plot-only     # redraw from the records

Each variant trains a ddpm (the preset ``configs/generators/ddpm-malaria.yaml`` with the variant's options, batch
size, learning rate and precision) on the training patients of the seed's patient split. Every ``check_every``
steps the training pauses and ``synthaug.quality.GateStopper`` measures CAS on the VALIDATION patients
(``cas_images`` synthetic images in the training class frequencies, ``cas_seeds`` classifiers beside the
real-trained reference; test patients are never read) with the config's sampling settings; the check never
stops training, and the trained model is checked once more at its last step. Each check's CAS ratio, per-class recall ratios, step and the seconds training took so far
(checks excluded) go to ``OUT/<variant>/checks.jsonl``; a killed run continues from its last checkpoint
(``checkpoint_every``) and skips the checks already recorded.

``DOCS/convergence.json`` gathers the checks with each variant's options, and ``DOCS/convergence.png`` plots the
CAS ratio and the Parasitized recall ratio against training steps and against minutes, with the gate's and the
target's lines. Minutes are **steps x the seconds per step measured alone** by
``benchmarks/throughput.py --recipes`` (``DOCS/step_seconds.json``, with its threads and precision): the
trainings themselves may run side by side, so their wall time is recorded but not plotted.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PRESET = "configs/generators/ddpm-malaria.yaml"


@dataclass
class ConvergenceConfig:
    seed: int = 0
    image_size: int = 32
    train_fraction: float = 1.0
    check_every: int = 1000
    checkpoint_every: int = 500
    cas_images: int = 1000
    cas_seeds: int = 3
    sampling: dict = field(default_factory=lambda: {"sampler": "dpmpp-2m", "sample_steps": 20, "guidance": 3.0})
    gate: dict = field(default_factory=lambda: {"min_ratio": 0.8, "min_class_ratio": 0.6})
    target: dict = field(default_factory=lambda: {"min_ratio": 0.9, "min_class_ratio": 0.8})
    #: variant -> {options: {...}, steps, batch_size, lr, mixed_precision}
    variants: dict = field(default_factory=dict)
    out_dir: str = "runs/convergence"
    docs_dir: str = "docs/results/convergence"


def load_config(path: Path) -> ConvergenceConfig:
    import yaml

    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict) or not raw.get("variants"):
        raise SystemExit(f"{path}: no variants; give at least one under 'variants:' (see configs/convergence.yaml)")
    known = set(ConvergenceConfig.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SystemExit(f"{path}: unknown keys {unknown}; known: {sorted(known)}")
    return ConvergenceConfig(**raw)


def generator_config(cfg: ConvergenceConfig, name: str):
    """The preset with the variant's changes, as ``synthaug train`` would resolve it."""
    from synthaug.config import load_config as load_yaml_config
    from synthaug.train import TrainConfig

    entry = cfg.variants[name] or {}
    unknown = sorted(set(entry) - {"options", "steps", "batch_size", "lr", "mixed_precision"})
    if unknown:
        raise SystemExit(f"convergence: variant {name!r}: unknown keys {unknown}; use options, steps, batch_size, "
                         "lr, mixed_precision")
    sets = [f"seed={cfg.seed}", f"data.image_size={cfg.image_size}", f"data.train_fraction={cfg.train_fraction}",
            f"generator.train.checkpoint_every={cfg.checkpoint_every}", "generator.train.sample_every=0",
            f"generator.train.gate_every={cfg.check_every}"]
    for key in ("steps", "batch_size", "lr", "mixed_precision"):
        if key in entry:
            sets.append(f"generator.train.{key}={json.dumps(entry[key])}")
    for key, value in (entry.get("options") or {}).items():
        sets.append(f"generator.options.{key}={json.dumps(value)}")
    return load_yaml_config(TrainConfig, ROOT / PRESET, sets)


class Observer:
    """``stop_when`` that measures and records but never stops: the gate's decision on CAS of the validation
    patients at this step, with the training seconds so far (the checks' own time excluded)."""

    def __init__(self, stopper, log: Path, sampling: dict, target) -> None:
        self.stopper, self.log, self.sampling, self.target = stopper, log, sampling, target
        self.started, self.check_seconds = time.perf_counter(), 0.0
        self.done = {row["step"] for row in _read(log)}

    def __call__(self, gen, step: int) -> dict[str, Any]:
        from synthaug.utils import append_jsonl

        if step in self.done:
            return {"passed": False, "reason": "recorded before the resume"}
        begin = time.perf_counter()
        saved, options = {k: getattr(gen, k) for k in self.sampling}, dict(getattr(gen, "generator_options", {}))
        for key, value in self.sampling.items():
            setattr(gen, key, value)
        try:
            record = self.stopper(gen, step)
        finally:
            for key, value in saved.items():
                setattr(gen, key, value)
            if options:  # the settings recorded for saving as they were: the resume state must match the config
                gen.generator_options.clear()
                gen.generator_options.update(options)
        target = self.target.apply({k: record[k] for k in ("ratio", "cas", "real_score")} |
                                   {"class_recall_ratio": record["class_recall_ratio"], "chance": record["chance"]})
        row = {"step": step, "cas_ratio": record["ratio"], "cas": record["cas"], "real": record["real_score"],
               "class_recall_ratio": record["class_recall_ratio"], "gate_passed": record["passed"],
               "target_met": target["passed"], "check_seconds": round(time.perf_counter() - begin, 1),
               "wall_train_seconds": round(begin - self.started - self.check_seconds, 1),
               "threads": torch.get_num_threads()}
        self.check_seconds += time.perf_counter() - begin
        append_jsonl(self.log, row)
        print(f"  step {step}: CAS ratio {row['cas_ratio']:.3f}, class recall ratios "
              f"{ {k: round(v, 3) for k, v in row['class_recall_ratio'].items() if v is not None} }", flush=True)
        return {"passed": False, "ratio": record["ratio"], "reason": "observed (never stops)"}


def _read(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_variant(cfg: ConvergenceConfig, name: str) -> None:
    from synthaug.quality import GateConfig, GateStopper
    from synthaug.train import train_from_config

    gen_cfg = generator_config(cfg, name)
    out = ROOT / cfg.out_dir / name
    resume = (out / "resume").exists()
    if (out / "checkpoint").exists() and not resume:
        raise SystemExit(f"{out} holds a checkpoint without a resume state; delete it to start {name} over")
    splits = gen_cfg.data.load(cfg.seed)
    stopper = GateStopper(splits, gate=GateConfig(**cfg.gate), n=cfg.cas_images, seed=cfg.seed,
                          cas_seeds=cfg.cas_seeds, cache_dir=ROOT / cfg.out_dir / "cas-real")
    out.mkdir(parents=True, exist_ok=True)
    observer = Observer(stopper, out / "checks.jsonl", cfg.sampling, GateConfig(**cfg.target))
    print(f"convergence: {name} ({'resumed' if resume else 'new'}), {torch.get_num_threads()} threads", flush=True)
    gen = train_from_config(gen_cfg, out, resume=resume, stop_when=observer)
    observer(gen, gen.training_record["steps"])  # training checks only before its last step: the end's check here


def sampler_table(cfg: ConvergenceConfig, name: str, settings: list[dict]) -> list[dict]:
    """CAS ratio (validation patients) and sampling images/s of the variant's final checkpoint under each sampling
    setting (e.g. ``{"sampler": "ddim", "sample_steps": 50}``), written to ``DOCS/samplers-<variant>.json``."""
    from synthaug.generators import load_generator
    from synthaug.generators.precision import resolve_precision
    from synthaug.quality import GateConfig, GateStopper

    gen_cfg = generator_config(cfg, name)
    checkpoint = ROOT / cfg.out_dir / name / "checkpoint"
    if not checkpoint.exists():
        raise SystemExit(f"convergence: {checkpoint} does not exist; train the variant first (--variants {name})")
    gen = load_generator(checkpoint)
    gen.mixed_precision = resolve_precision(gen_cfg.generator.train.mixed_precision)  # auto: this machine's
    splits = gen_cfg.data.load(cfg.seed)
    stopper = GateStopper(splits, gate=GateConfig(**cfg.gate), n=cfg.cas_images, seed=cfg.seed,
                          cas_seeds=cfg.cas_seeds, cache_dir=ROOT / cfg.out_dir / "cas-real")
    rows = []
    for setting in settings:
        full = {**cfg.sampling, **setting}
        for key, value in full.items():
            setattr(gen, key, value)
        begin = time.perf_counter()
        gen.sample(256, generator=torch.Generator().manual_seed(1))
        per_s = 256 / (time.perf_counter() - begin)
        record = stopper(gen, gen.training_record["steps"])
        rows.append({**full, "cas_ratio": record["ratio"], "class_recall_ratio": record["class_recall_ratio"],
                     "sample_images_per_s": round(per_s, 1), "threads": torch.get_num_threads(),
                     "mixed_precision": gen.mixed_precision})
        print(f"  {full}: CAS ratio {record['ratio']:.3f}, {per_s:.1f} images/s", flush=True)
    docs = ROOT / cfg.docs_dir
    docs.mkdir(parents=True, exist_ok=True)
    (docs / f"samplers-{name}.json").write_text(json.dumps({"variant": name, "rows": rows}, indent=1) + "\n")
    return rows


def gather(cfg: ConvergenceConfig) -> dict[str, Any]:
    """The checks of every variant; minutes from ``DOCS/step_seconds.json`` (``throughput.py --recipes``)."""
    timing = ROOT / cfg.docs_dir / "step_seconds.json"
    step_seconds = json.loads(timing.read_text())["step_seconds"] if timing.exists() else {}
    out = {"config": {k: getattr(cfg, k) for k in ("seed", "image_size", "train_fraction", "check_every",
                                                    "cas_images", "cas_seeds", "sampling", "gate", "target")},
           "variants": {}}
    for name, entry in cfg.variants.items():
        checks = _read(ROOT / cfg.out_dir / name / "checks.jsonl")
        per_step = step_seconds.get(name, {}).get("seconds_per_step")
        for row in checks:
            row["minutes"] = round(row["step"] * per_step / 60, 2) if per_step else None
        out["variants"][name] = {"entry": entry, "step_seconds": step_seconds.get(name), "checks": checks}
    return out


def plot(record: dict[str, Any], path: Path) -> None:
    from synthaug.bench.plots import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    gate, target = record["config"]["gate"], record["config"]["target"]
    panels = (("cas_ratio", "CAS ratio (validation patients)", gate["min_ratio"], target["min_ratio"]),
              ("Parasitized", "Parasitized recall ratio", gate["min_class_ratio"], target["min_class_ratio"]))
    for ax, (key, label, g, t) in zip(axes, panels):
        for name, v in record["variants"].items():
            rows = [r for r in v["checks"] if r.get("minutes") is not None]
            xs = [r["minutes"] for r in rows]
            ys = [r["cas_ratio"] if key == "cas_ratio" else r["class_recall_ratio"].get(key) for r in rows]
            if xs:
                ax.plot(xs, ys, marker="o", label=name)
        ax.axhline(g, color="0.5", ls="--", lw=1, label=f"gate {g}")
        ax.axhline(t, color="k", ls=":", lw=1, label=f"target {t}")
        ax.set_xlabel("training minutes on 2 cores (steps x alone-measured s/step)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("ddpm recipes: quality on validation patients against training time")
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "convergence.yaml"))
    parser.add_argument("--variants", help="comma-separated subset of the config's variants")
    parser.add_argument("--plot-only", action="store_true", help="redraw the JSON and plot from the records")
    parser.add_argument("--samplers", metavar="VARIANT", help="instead of training: CAS ratio and images/s of the "
                        "variant's checkpoint under DDIM and DPM-Solver++(2M) at several step counts")
    args = parser.parse_args(argv)
    cfg = load_config(Path(args.config))
    if args.samplers:
        sampler_table(cfg, args.samplers, [{"sampler": "ddim", "sample_steps": 50}, {"sampler": "ddim", "sample_steps": 20},
                                           {"sampler": "dpmpp-2m", "sample_steps": 20},
                                           {"sampler": "dpmpp-2m", "sample_steps": 10}])
        return 0
    names = args.variants.split(",") if args.variants else list(cfg.variants)
    unknown = [n for n in names if n not in cfg.variants]
    if unknown:
        raise SystemExit(f"convergence: unknown variants {unknown}; the config has {list(cfg.variants)}")
    if not args.plot_only:
        for name in names:
            run_variant(cfg, name)
    docs = ROOT / cfg.docs_dir
    docs.mkdir(parents=True, exist_ok=True)
    record = gather(cfg)
    (docs / "convergence.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    plot(record, docs / "convergence.png")
    print(f"wrote {docs / 'convergence.json'} and convergence.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
