"""The generator gallery: every generator trained on the malaria training patients, with sample grids.

    python benchmarks/gallery.py --config configs/gallery.yaml            # all models in the config
    python benchmarks/gallery.py --config configs/gallery.yaml --models cvae,dcgan

For each model: its preset (``configs/generators/<name>-malaria.yaml``) with the gallery's step budget
is trained on the training patients of the seed's patient split (val and test patients are never
seen), in ``OUT/<name>/`` (resumable: a finished model is skipped, a killed one continues from its
last checkpoint). Then ``DOCS/<name>.png`` shows, per class, real training cells beside generated
ones, and ``DOCS/<name>-interpolation.png`` a walk between two latent codes. ``DOCS/gallery.json``
and the printed table record steps, wall time and sampling speed per model and (``quality: true``, the
default) its quality on the validation patients: ``cas_val``, ``real_val``, ``cas_ratio``, ``class_recall``
and ``real_class_recall`` per class name, FID/KID/precision/recall and the quality gate's verdict.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class GalleryConfig:
    """``configs/gallery.yaml``: which presets, with which step budgets, on which split."""

    presets: str = "configs/generators/{name}-malaria.yaml"
    seed: int = 0
    image_size: int = 32
    train_fraction: float = 1.0
    per_class: int = 10           # images per row in the grids
    models: dict[str, dict] = field(default_factory=dict)  # name -> overrides of the preset, e.g. {steps: 2000}
    out_dir: str = "runs/gallery"
    docs_dir: str = "docs/generators"
    # sample quality on the VALIDATION patients (never test): CAS (3 seeds) with per-class recall beside the
    # real-trained reference, FID/KID/precision/recall on features trained here, the quality gate
    quality: bool = True
    quality_n: int = 500          # images for FID/KID/precision/recall
    cas_images: int = 1000        # synthetic images CAS trains on


def _overrides(name: str, cfg: GalleryConfig, entry: dict) -> list[str]:
    sets = [f"seed={cfg.seed}", f"data.image_size={cfg.image_size}", f"data.train_fraction={cfg.train_fraction}"]
    for key, value in (entry or {}).items():
        if key in ("steps", "batch_size", "lr", "checkpoint_every", "sample_every"):
            sets.append(f"generator.train.{key}={json.dumps(value)}")
        elif key == "options":
            for opt, v in value.items():
                sets.append(f"generator.options.{opt}={json.dumps(v)}")
        else:
            raise ValueError(f"gallery: model {name!r}: unknown entry {key!r}; use steps, batch_size, lr, "
                             "checkpoint_every, sample_every or options")
    return sets


def _real_rows(splits, per_class: int, seed: int) -> dict[int, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    targets = torch.as_tensor(splits.train.targets)
    rows = {}
    for c in range(splits.num_classes):
        idx = torch.nonzero(targets == c).flatten()
        pick = idx[torch.randperm(len(idx), generator=g)[:per_class]]
        rows[c] = torch.stack([splits.train[int(i)][0] for i in pick])
    return rows


def run_model(name: str, cfg: GalleryConfig, entry: dict, out_root: Path, docs: Path) -> dict:
    from synthaug import latent
    from synthaug.cli import TrainConfig, train_from_config
    from synthaug.config import load_config
    from synthaug.generators import load_generator
    from synthaug.viz import save_comparison

    preset = ROOT / cfg.presets.format(name=name)
    if not preset.is_file():
        raise FileNotFoundError(f"gallery: no preset {preset} for model {name!r}")
    train_cfg = load_config(TrainConfig, preset, _overrides(name, cfg, entry))
    if train_cfg.generator.name != name:
        raise ValueError(f"gallery: {preset} trains {train_cfg.generator.name!r}, not {name!r}")
    out = out_root / name
    done = out / "gallery_done.json"
    record = json.loads(done.read_text()) if done.is_file() else None
    if record is None or record.get("steps") != train_cfg.generator.train.steps:
        if record is not None:
            raise FileExistsError(f"{out} was trained for {record.get('steps')} steps, the config asks for "
                                  f"{train_cfg.generator.train.steps}; delete {out} to retrain")
        start = time.perf_counter()
        resume = (out / "resume").exists()
        train_from_config(train_cfg, out, resume=resume)
        seconds = time.perf_counter() - start
        record = {"name": name, "preset": str(preset.relative_to(ROOT)), "steps": train_cfg.generator.train.steps,
                  "batch_size": train_cfg.generator.train.batch_size, "options": train_cfg.generator.options,
                  "train_seconds": round(seconds, 1), "resumed": resume}
        from synthaug.utils import atomic_write_text

        atomic_write_text(done, json.dumps(record, indent=2))
    gen = load_generator(out / "checkpoint")
    splits = train_cfg.data.load(cfg.seed)
    real = _real_rows(splits, cfg.per_class, cfg.seed)
    rows = []
    start = time.perf_counter()
    for c in range(gen.num_classes):
        labels = torch.full((cfg.per_class,), c, dtype=torch.long)
        fake = gen.sample(cfg.per_class, labels, generator=torch.Generator().manual_seed(cfg.seed + c))
        rows += [(f"real {splits.classes[c]}", real[c]), (f"{name} {splits.classes[c]}", fake)]
    sample_seconds = time.perf_counter() - start
    save_comparison(rows, docs / f"{name}.png", title=f"{name}: real training cells and samples "
                    f"({record['steps']} steps, {cfg.image_size} px)")
    g = torch.Generator().manual_seed(cfg.seed)
    za, zb = gen.sample_noise(2, generator=g)
    strips = [(f"{splits.classes[c]}", latent.interpolate(gen, za, zb, label=c, steps=cfg.per_class))
              for c in range(gen.num_classes)]
    save_comparison(strips, docs / f"{name}-interpolation.png",
                    title=f"{name}: spherical interpolation between two latent codes, per class")
    record = {**record, "sample_images_per_s": round(gen.num_classes * cfg.per_class / sample_seconds, 1),
              "grid": f"{name}.png", "interpolation": f"{name}-interpolation.png"}
    if cfg.quality:
        record.update(quality_fields(_quality(gen, splits, train_cfg, cfg, out)))
    return record


def _quality(gen, splits, train_cfg, cfg: GalleryConfig, out: Path) -> dict:
    """``quality.json`` of the model (cached in ``out/quality``): scored on the validation patients only."""
    import warnings

    from synthaug.quality import GateConfig, evaluate_generator, get_feature_extractor

    folder = out / "quality"
    if (folder / "quality.json").is_file():
        return json.loads((folder / "quality.json").read_text())
    full = splits if cfg.train_fraction == 1.0 else train_cfg.data.load(cfg.seed, 1.0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="the feature extractor was not trained on this split")
        extractor = get_feature_extractor(full, dataset_key=train_cfg.data.key, seed=cfg.seed,
                                          cache_dir=out.parent / "extractors", verbose=False)
        positive = splits.classes.index("Parasitized") if "Parasitized" in splits.classes else None
        return evaluate_generator(gen, splits, n=cfg.quality_n, seed=cfg.seed, extractor=extractor, cas=True,
                                  cas_images=cfg.cas_images, out_dir=folder, dataset_key=train_cfg.data.key,
                                  positive=positive, gate=GateConfig())


def quality_fields(q: dict) -> dict:
    """What gallery.json records of a model's quality: CAS and the real-trained reference on validation, their
    ratio, per-class recall of both, FID/KID/precision/recall, the gate's verdict."""
    cas, fid, gate = q["cas"], q["fidelity"]["overall"], q.get("gate") or {}
    return {"cas_val": cas["cas"], "real_val": cas["real_score"], "cas_ratio": cas["ratio"],
            "class_recall": cas["synthetic"]["per_class_recall"], "real_class_recall": cas["real"]["per_class_recall"],
            "fid": fid["fid"], "kid": fid["kid"], "precision": fid["precision"], "recall": fid["recall"],
            "gate": gate.get("reason"), "gate_passed": gate.get("passed")}


def _f(value, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def table(models: dict) -> str:
    """The gallery's Markdown table: budget, time, sampling speed and (when measured) quality on validation."""
    lines = ["| model | steps | batch | train time | sampling images/s | CAS (val) | real (val) | CAS ratio | "
             "Parasitized recall (syn / real) | FID | gate |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in models.items():
        syn, real = r.get("class_recall") or {}, r.get("real_class_recall") or {}
        recall = (f"{_f(syn.get('Parasitized'))} / {_f(real.get('Parasitized'))}" if "Parasitized" in real
                  else "n/a")
        gate = "n/a" if r.get("gate_passed") is None else ("passed" if r["gate_passed"] else "rejected")
        lines.append(f"| {name} | {r['steps']} | {r['batch_size']} | {r['train_seconds'] / 60:.1f} min | "
                     f"{r['sample_images_per_s']:.0f} | {_f(r.get('cas_val'))} | {_f(r.get('real_val'))} | "
                     f"{_f(r.get('cas_ratio'), '.2f')} | {recall} | {_f(r.get('fid'), '.1f')} | {gate} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from synthaug.config import ConfigError, load_config

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "gallery.yaml"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--models", help="comma-separated subset of the config's models")
    args = p.parse_args(argv)
    try:
        cfg = load_config(GalleryConfig, args.config, args.set)
    except (ConfigError, FileNotFoundError) as err:
        print(f"gallery: {err}", file=sys.stderr)
        return 2
    names = list(cfg.models)
    if args.models:
        wanted = [m.strip() for m in args.models.split(",") if m.strip()]
        unknown = [m for m in wanted if m not in cfg.models]
        if unknown:
            print(f"gallery: --models {unknown} are not in {args.config} (it has {names})", file=sys.stderr)
            return 2
        names = wanted
    out_root, docs = ROOT / cfg.out_dir, ROOT / cfg.docs_dir
    docs.mkdir(parents=True, exist_ok=True)
    summary_path = docs / "gallery.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {"models": {}}
    total = time.perf_counter()
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        try:
            summary["models"][name] = run_model(name, cfg, cfg.models[name], out_root, docs)
        except (ConfigError, FileNotFoundError, FileExistsError, ValueError) as err:
            print(f"gallery: {name}: {err}", file=sys.stderr)
            return 2
        summary["environment"] = {"torch": torch.__version__, "python": platform.python_version(),
                                  "threads": torch.get_num_threads(), "machine": platform.machine()}
        from synthaug.utils import atomic_write_text

        atomic_write_text(summary_path, json.dumps(summary, indent=2, sort_keys=True))
    print(f"\ngallery: {len(names)} model(s) in {time.perf_counter() - total:.0f} s (trainings already done are "
          "skipped)\n")
    print(table(summary["models"]))
    print(f"\nwrote {summary_path} and the grids in {docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
