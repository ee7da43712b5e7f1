"""The generator gallery: every generator trained on the malaria training patients, with sample grids.

    python benchmarks/gallery.py --config configs/gallery.yaml            # all models in the config
    python benchmarks/gallery.py --config configs/gallery.yaml --models cvae,dcgan
    python benchmarks/gallery.py --config configs/recipes.yaml            # the recipes and their ablations

For each model: its preset (``configs/generators/<name>-malaria.yaml``) with the gallery's step budget
is trained on the training patients of the seed's patient split (val and test patients are never
seen), in ``OUT/<name>/`` (resumable: a finished model is skipped, a killed one continues from its
last checkpoint). Then ``DOCS/<name>.png`` shows, per class, real training cells beside generated
ones, and ``DOCS/<name>-interpolation.png`` a walk between two latent codes. ``DOCS/gallery.json``
and the printed table record steps, wall time and sampling speed per model and (``quality: true``, the
default) its quality on the validation patients: ``cas_val``, ``real_val``, ``cas_ratio``, ``class_recall``
and ``real_class_recall`` per class name, FID/KID/precision/recall and the quality gate's verdict;
``DOCS/gallery.md`` is that table.

A model entry may name another preset (``preset: cgan``), so one preset appears under several names with
different options (an ablation), and may list ``sampling`` settings of the trained model (e.g. ddpm
``[{guidance: 0}, {guidance: 2}]``): each is scored on the validation patients and the best CAS is kept
(chosen on validation, never test), its settings drawing the grid. ``gate`` sets the quality gate's
thresholds, ``target`` stricter ones reported beside it, and ``budget_minutes`` the training time a recipe
may take (the table says which met each). ``cas_images: null`` gives CAS as many synthetic images as real
training images; records of other image counts are kept apart (``quality-n<N>-cas<M>...``).
"""
from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    cas_images: int | None = 1000  # synthetic images CAS trains on; null: as many as the real training images
                                   # (CAS as Ravuri & Vinyals define it; the real-trained reference always has them all)
    gate: dict = field(default_factory=dict)  # {min_ratio, min_class_ratio}; empty: the library's defaults
    target: dict = field(default_factory=dict)  # stricter thresholds to report beside the gate (empty: none)
    budget_minutes: float | None = None       # the training time a recipe may take (the table marks each)

    def gate_config(self, which: str = "gate") -> Any:
        """``GateConfig`` of ``gate`` (or of ``target``: None when it is empty)."""
        from synthaug.quality import GateConfig

        entries = getattr(self, which)
        if which == "target" and not entries:
            return None
        unknown = sorted(set(entries) - {"min_ratio", "min_class_ratio"})
        if unknown:
            raise ValueError(f"gallery: {which} entries {unknown} are unknown; use min_ratio and min_class_ratio")
        return GateConfig(**entries)


#: what a model entry may hold besides the training overrides
_TRAIN_KEYS = ("steps", "batch_size", "lr", "checkpoint_every", "sample_every")
_SAMPLING_KEYS = ("guidance", "sample_steps", "eta")


def _overrides(name: str, cfg: GalleryConfig, entry: dict) -> list[str]:
    sets = [f"seed={cfg.seed}", f"data.image_size={cfg.image_size}", f"data.train_fraction={cfg.train_fraction}"]
    for key, value in (entry or {}).items():
        if key in _TRAIN_KEYS:
            sets.append(f"generator.train.{key}={json.dumps(value)}")
        elif key == "options":
            for opt, v in value.items():
                sets.append(f"generator.options.{opt}={json.dumps(v)}")
        elif key not in ("preset", "sampling"):
            raise ValueError(f"gallery: model {name!r}: unknown entry {key!r}; use steps, batch_size, lr, "
                             "checkpoint_every, sample_every, options, preset or sampling")
    return sets


def sampling_settings(name: str, entry: dict) -> list[dict]:
    """The entry's ``sampling`` list (each a dict of guidance / sample_steps / eta), checked; [] without."""
    settings = (entry or {}).get("sampling") or []
    if not isinstance(settings, list) or not all(isinstance(s, dict) and s for s in settings):
        raise ValueError(f"gallery: model {name!r}: sampling must be a list of settings such as "
                         "[{guidance: 0}, {guidance: 2}]")
    for s in settings:
        unknown = sorted(set(s) - set(_SAMPLING_KEYS))
        if unknown:
            raise ValueError(f"gallery: model {name!r}: sampling setting {s} has unknown keys {unknown}; use "
                             f"{', '.join(_SAMPLING_KEYS)}")
    return settings


def setting_label(setting: dict) -> str:
    return ", ".join(f"{k} {v:g}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in setting.items())


def choose_sampling(variants: list[dict], listed: bool) -> tuple[dict, dict]:
    """The quality fields of the variant with the best CAS on the validation patients (the choice never sees
    test) and its sampling setting; with ``listed`` (the entry listed settings) the fields also say which was
    chosen and hold every variant."""
    best = max(variants, key=lambda v: v["cas_val"])
    quality = {k: v for k, v in best.items() if k != "sampling"}
    if listed:
        quality.update(sampling_chosen=best["sampling"], sampling_variants=variants)
    return quality, best["sampling"]


def _apply_sampling(gen: Any, setting: dict) -> None:
    for key, value in setting.items():
        if not hasattr(type(gen), key):
            raise ValueError(f"gallery: {type(gen).__name__} has no sampling setting {key!r} "
                             f"(sampling settings are for ddpm: {', '.join(_SAMPLING_KEYS)})")
        setattr(gen, key, value)  # validated by the generator


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
    from synthaug.train import TrainConfig, train_from_config
    from synthaug.config import load_config
    from synthaug.generators import load_generator
    from synthaug.generators.precision import cpu_features, resolve_precision
    from synthaug.viz import save_comparison

    preset_name = (entry or {}).get("preset", name)
    preset = ROOT / cfg.presets.format(name=preset_name)
    if not preset.is_file():
        raise FileNotFoundError(f"gallery: no preset {preset} for model {name!r}")
    train_cfg = load_config(TrainConfig, preset, _overrides(name, cfg, entry))
    if not (preset_name == train_cfg.generator.name or preset_name.startswith(train_cfg.generator.name + "-")):
        raise ValueError(f"gallery: {preset} trains {train_cfg.generator.name!r}, not {preset_name!r}")
    settings = sampling_settings(name, entry)
    out = out_root / name
    done = out / "gallery_done.json"
    record = json.loads(done.read_text()) if done.is_file() else None
    if record is not None and (record.get("steps") != train_cfg.generator.train.steps
                               or record.get("options", train_cfg.generator.options) != train_cfg.generator.options):
        raise FileExistsError(f"{out} was trained for {record.get('steps')} steps with options "
                              f"{record.get('options')}, the config asks for {train_cfg.generator.train.steps} steps "
                              f"with {train_cfg.generator.options}; delete {out} to retrain")
    if record is None:
        start = time.perf_counter()
        resume = (out / "resume").exists()
        train_from_config(train_cfg, out, resume=resume)
        seconds = time.perf_counter() - start
        record = {"name": name, "preset": str(preset.relative_to(ROOT)), "steps": train_cfg.generator.train.steps,
                  "batch_size": train_cfg.generator.train.batch_size, "options": train_cfg.generator.options,
                  "train_seconds": round(seconds, 1), "resumed": resume, "threads": torch.get_num_threads(),
                  "mixed_precision": resolve_precision(train_cfg.generator.train.mixed_precision), **cpu_features()}
        from synthaug.utils import atomic_write_text

        atomic_write_text(done, json.dumps(record, indent=2))
    gen = load_generator(out / "checkpoint")
    splits = train_cfg.data.load(cfg.seed)
    quality: dict = {}
    if cfg.quality:
        variants = []
        for setting in settings or [{}]:
            _apply_sampling(gen, setting)
            q = _quality(gen, splits, train_cfg, cfg, out, setting)
            fields = quality_fields(q)
            target = cfg.gate_config("target")
            if target is not None:
                fields["target_met"] = target.apply(q["cas"])["passed"]
            variants.append({"sampling": setting, **fields})
        quality, chosen = choose_sampling(variants, listed=bool(settings))
        _apply_sampling(gen, chosen)
    elif settings:
        _apply_sampling(gen, settings[0])
    real = _real_rows(splits, cfg.per_class, cfg.seed)
    rows = []
    start = time.perf_counter()
    for c in range(gen.num_classes):
        labels = torch.full((cfg.per_class,), c, dtype=torch.long)
        fake = gen.sample(cfg.per_class, labels, generator=torch.Generator().manual_seed(cfg.seed + c))
        rows += [(f"real {splits.classes[c]}", real[c]), (f"{name} {splits.classes[c]}", fake)]
    sample_seconds = time.perf_counter() - start
    chosen = setting_label(quality.get("sampling_chosen") or {})
    save_comparison(rows, docs / f"{name}.png", title=f"{name}: real training cells and samples "
                    f"({record['steps']} steps, {cfg.image_size} px{', ' + chosen if chosen else ''})")
    g = torch.Generator().manual_seed(cfg.seed)
    za, zb = gen.sample_noise(2, generator=g)
    strips = [(f"{splits.classes[c]}", latent.interpolate(gen, za, zb, label=c, steps=cfg.per_class))
              for c in range(gen.num_classes)]
    save_comparison(strips, docs / f"{name}-interpolation.png",
                    title=f"{name}: spherical interpolation between two latent codes, per class")
    return {**record, "sample_images_per_s": round(gen.num_classes * cfg.per_class / sample_seconds, 1),
            "grid": f"{name}.png", "interpolation": f"{name}-interpolation.png", **quality}


def _quality(gen, splits, train_cfg, cfg: GalleryConfig, out: Path, setting: dict | None = None) -> dict:
    """``quality.json`` of the model at a sampling ``setting`` (cached in ``out/quality[-<setting>]``): scored on
    the validation patients only, with the config's gate."""
    import warnings

    from synthaug.quality import evaluate_generator, get_feature_extractor

    suffix = "".join(f"-{k}{v:g}" if isinstance(v, (int, float)) else f"-{k}{v}" for k, v in (setting or {}).items())
    default = GalleryConfig()
    counts = "" if (cfg.quality_n, cfg.cas_images) == (default.quality_n, default.cas_images) else \
        f"-n{cfg.quality_n}-cas{cfg.cas_images or 'all'}"  # other image counts never reuse these records
    folder = out / f"quality{counts}{suffix}"
    if (folder / "quality.json").is_file():
        q = json.loads((folder / "quality.json").read_text())
        want = cfg.cas_images or len(splits.train)
        if q["n"] != cfg.quality_n or q["cas"]["synthetic_images"] != want:
            raise FileExistsError(f"{folder} holds quality with n={q['n']} and {q['cas']['synthetic_images']} CAS "
                                  f"images, the config asks for {cfg.quality_n} and {want}; delete it to measure again")
        return {**q, "gate": cfg.gate_config().apply(q["cas"])}  # the config's thresholds, also on a cached record
    full = splits if cfg.train_fraction == 1.0 else train_cfg.data.load(cfg.seed, 1.0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="the feature extractor was not trained on this split")
        extractor = get_feature_extractor(full, dataset_key=train_cfg.data.key, seed=cfg.seed,
                                          cache_dir=out.parent / "extractors", verbose=False)
        positive = splits.classes.index("Parasitized") if "Parasitized" in splits.classes else None
        return evaluate_generator(gen, splits, n=cfg.quality_n, seed=cfg.seed, extractor=extractor, cas=True,
                                  cas_images=cfg.cas_images, out_dir=folder, dataset_key=train_cfg.data.key,
                                  positive=positive, gate=cfg.gate_config())


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


def table(models: dict, budget_minutes: float | None = None) -> str:
    """The gallery's Markdown table: budget, time, sampling speed and (when measured) quality on validation; a
    ``sampling`` column when a model chose its sampling settings on validation, and ``within budget`` with
    ``budget_minutes``."""
    extra = any(r.get("sampling_chosen") is not None for r in models.values())
    head = ("| model | steps | batch | train time | sampling images/s | CAS (val) | real (val) | CAS ratio | "
            "Parasitized recall (syn / real) | FID | gate |")
    rule = "|---|---|---|---|---|---|---|---|---|---|---|"
    if extra:
        head, rule = head + " sampling (chosen on val) |", rule + "---|"
    targeted = any("target_met" in r for r in models.values())
    if targeted:
        head, rule = head + " target |", rule + "---|"
    if budget_minutes is not None:
        head, rule = head + f" within {budget_minutes:g} min |", rule + "---|"
    lines = [head, rule]
    for name, r in models.items():
        syn, real = r.get("class_recall") or {}, r.get("real_class_recall") or {}
        recall = (f"{_f(syn.get('Parasitized'))} / {_f(real.get('Parasitized'))}" if "Parasitized" in real
                  else "n/a")
        gate = "n/a" if r.get("gate_passed") is None else ("passed" if r["gate_passed"] else "rejected")
        line = (f"| {name} | {r['steps']} | {r['batch_size']} | {r['train_seconds'] / 60:.1f} min | "
                f"{r['sample_images_per_s']:.0f} | {_f(r.get('cas_val'))} | {_f(r.get('real_val'))} | "
                f"{_f(r.get('cas_ratio'), '.2f')} | {recall} | {_f(r.get('fid'), '.1f')} | {gate} |")
        if extra:
            line += f" {setting_label(r.get('sampling_chosen') or {}) or 'preset'} |"
        if targeted:
            line += f" {_met(r.get('target_met'))} |"
        if budget_minutes is not None:
            line += f" {'yes' if r['train_seconds'] <= 60 * budget_minutes else 'no'} |"
        lines.append(line)
    return "\n".join(lines)


def _met(value: bool | None) -> str:
    return "n/a" if value is None else ("met" if value else "not met")


def variants_table(models: dict) -> str:
    """Every sampling setting scored on validation, per model that lists several ("" when none does)."""
    rows = [(name, v, r.get("sampling_chosen")) for name, r in models.items() for v in r.get("sampling_variants") or []]
    if not rows:
        return ""
    targeted = any("target_met" in v for _, v, _ in rows)
    lines = ["| model | sampling | CAS (val) | CAS ratio | Parasitized recall (syn / real) | FID | gate |"
             + (" target |" if targeted else "") + " chosen |", "|---|---|---|---|---|---|---|" + ("---|" if targeted else "")
             + "---|"]
    for name, v, chosen in rows:
        syn, real = v.get("class_recall") or {}, v.get("real_class_recall") or {}
        recall = f"{_f(syn.get('Parasitized'))} / {_f(real.get('Parasitized'))}" if "Parasitized" in real else "n/a"
        gate = "n/a" if v.get("gate_passed") is None else ("passed" if v["gate_passed"] else "rejected")
        lines.append(f"| {name} | {setting_label(v['sampling'])} | {_f(v.get('cas_val'))} | "
                     f"{_f(v.get('cas_ratio'), '.2f')} | {recall} | {_f(v.get('fid'), '.1f')} | {gate} | "
                     + (f"{_met(v.get('target_met'))} | " if targeted else "")
                     + f"{'yes' if v['sampling'] == chosen else ''} |")
    return "\n".join(lines)


def markdown(summary: dict, cfg: GalleryConfig, command: str) -> str:
    """``gallery.md``: the table (and the sampling settings scored), with the command that made it (its arguments
    after ``benchmarks/gallery.py``)."""
    gate, target = cfg.gate_config(), cfg.gate_config("target")
    cas = f"{cfg.cas_images} synthetic images" if cfg.cas_images else "as many synthetic images as real ones"
    parts = [f"Made by `python benchmarks/gallery.py {command}`: each model trained on the training "
             f"patients of the seed-{cfg.seed} split (fraction {cfg.train_fraction:g}) at {cfg.image_size} px, scored on "
             f"the validation patients (CAS: {cas}; the real-trained reference: all the real training images). "
             f"Quality gate: CAS ratio >= {gate.min_ratio:g} and weakest class recall ratio >= "
             f"{gate.min_class_ratio:g}."
             + (f" Target: CAS ratio >= {target.min_ratio:g} and weakest class recall ratio >= "
                f"{target.min_class_ratio:g}." if target else "")
             + f" Environment: {json.dumps(summary.get('environment', {}), sort_keys=True)}.",
             "", table(summary["models"], cfg.budget_minutes)]
    variants = variants_table(summary["models"])
    if variants:
        parts += ["", "Sampling settings scored on the validation patients (the best CAS is chosen):", "", variants]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    from synthaug.config import ConfigError, load_config
    from synthaug.utils import atomic_write_text

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "gallery.yaml"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--models", help="comma-separated subset of the config's models")
    args = p.parse_args(argv)
    try:
        cfg = load_config(GalleryConfig, args.config, args.set)
        cfg.gate_config(), cfg.gate_config("target")  # their thresholds checked before anything trains
        for name, entry in cfg.models.items():
            sampling_settings(name, entry)
    except (ConfigError, FileNotFoundError, ValueError) as err:
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
        atomic_write_text(summary_path, json.dumps(summary, indent=2, sort_keys=True))
    print(f"\ngallery: {len(names)} model(s) in {time.perf_counter() - total:.0f} s (trainings already done are "
          "skipped)\n")
    config_path = Path(args.config).resolve()
    shown = config_path.relative_to(ROOT) if config_path.is_relative_to(ROOT) else Path(args.config).name
    command = " ".join([f"--config {shown}"] + [f"--models {args.models}"] * bool(args.models)
                       + [f"--set {shlex.quote(s)}" for s in args.set])
    atomic_write_text(docs / "gallery.md", markdown(summary, cfg, command))
    print(table(summary["models"], cfg.budget_minutes))
    variants = variants_table(summary["models"])
    if variants:
        print("\n" + variants)
    print(f"\nwrote {summary_path}, {docs / 'gallery.md'} and the grids in {docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
