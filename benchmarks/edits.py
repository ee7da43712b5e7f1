"""Edits of real cells against drawings: does an edit carry the diagnosis where a sample does not?

    python benchmarks/edits.py --editor cvae --fraction 0.05 --steps 2000 --strengths 0.2,0.4,0.6 \\
        --out runs/edits --docs docs/results/edits

Trains the editor's preset (``configs/generators/<editor>-malaria.yaml``, with ``--steps``) on ``--fraction``
of the training patients of the seed's patient split (resumable), then scores on the VALIDATION patients
(never test): the editor's own samples and ``EditSource(editor, train, strength=s)`` for every strength:
CAS (a classifier trained on the synthetic images only, 3 seeds) against the same classifier trained on the
fraction's real cells, per-class recall, FID/KID on our own features, the memorization share, and the
quality gate's verdict. Writes ``<docs>/<editor>-frac<f>.json``, a Markdown table
``<docs>/<editor>-frac<f>.md`` and a picture ``<docs>/<editor>-frac<f>.png`` (real training cells, the
editor's samples, and edits of the same real cells at each strength). Each scored source is cached in
``<out>`` (``quality.json``): a rerun only does what is missing.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _parse_strengths(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"--strengths {text!r}: give comma-separated numbers in (0, 1], e.g. 0.2,0.4,0.6")
    if not values or not all(0 < v <= 1 for v in values):
        raise SystemExit(f"--strengths {text!r}: every strength must be in (0, 1]")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--editor", default="cvae", help="a generator preset with an encoder or the ddpm (default cvae)")
    p.add_argument("--fraction", type=float, default=0.05, help="share of the training patients (default 0.05)")
    p.add_argument("--steps", type=int, default=None, help="editor training steps (default: the preset's)")
    p.add_argument("--seed", type=int, default=0, help="the patient split's seed (default 0)")
    p.add_argument("--strengths", default="0.2,0.4,0.6", help="edit strengths, comma-separated")
    p.add_argument("--per-image", type=int, default=4, help="distinct edits per real cell (default 4)")
    p.add_argument("--n", type=int, default=500, help="images for FID/KID and the memorization audit")
    p.add_argument("--cas-images", type=int, default=1000, help="synthetic images CAS trains on")
    p.add_argument("--out", default="runs/edits", help="work folder (checkpoints, quality records)")
    p.add_argument("--docs", default="docs/results/edits", help="where the table, JSON and picture go")
    return p


def train_editor(args, out: Path):
    from synthaug.train import TrainConfig, train_from_config
    from synthaug.config import load_config
    from synthaug.generators import load_generator

    preset = ROOT / f"configs/generators/{args.editor}-malaria.yaml"
    if not preset.is_file():
        raise SystemExit(f"--editor {args.editor}: no preset {preset.relative_to(ROOT)}; use a name from "
                         "configs/generators/ (cvae, msssim-vae, vae-gan, ddpm, ...)")
    sets = [f"seed={args.seed}", f"data.train_fraction={args.fraction}"]
    if args.steps is not None:
        sets.append(f"generator.train.steps={args.steps}")
    cfg = load_config(TrainConfig, preset, sets)
    folder = out / "editor"
    done = out / "editor_done.json"
    if not done.is_file():
        start = time.perf_counter()
        train_from_config(cfg, folder, resume=(folder / "resume").exists())
        from synthaug.utils import atomic_write_text

        atomic_write_text(done, json.dumps({"steps": cfg.generator.train.steps,
                                            "train_seconds": round(time.perf_counter() - start, 1)}))
    record = json.loads(done.read_text())
    if record["steps"] != cfg.generator.train.steps:
        raise SystemExit(f"{folder} was trained for {record['steps']} steps, not {cfg.generator.train.steps}; "
                         "delete it or use another --out")
    return cfg, load_generator(folder / "checkpoint"), record


def score(source, name: str, splits, extractor, args, out: Path, key: str) -> dict:
    from synthaug.quality import GateConfig, evaluate_generator

    folder = out / name
    if (folder / "quality.json").is_file():
        return json.loads((folder / "quality.json").read_text())
    positive = splits.classes.index("Parasitized") if "Parasitized" in splits.classes else None
    return evaluate_generator(source, splits, n=args.n, seed=args.seed, extractor=extractor, cas=True,
                              cas_images=args.cas_images, out_dir=folder, dataset_key=key, positive=positive,
                              gate=GateConfig())


def row_of(name: str, strength, q: dict) -> dict:
    cas, gate, mem = q["cas"], q.get("gate") or {}, q["memorization"]
    return {"source": name, "strength": strength, "cas_val": cas["cas"], "cas_ci": cas.get("cas_ci"),
            "real_val": cas["real_score"], "cas_ratio": cas["ratio"],
            "class_recall": cas["synthetic"]["per_class_recall"], "real_class_recall": cas["real"]["per_class_recall"],
            "class_recall_ratio": cas.get("class_recall_ratio"), "fid": q["fidelity"]["overall"]["fid"],
            "memorized": mem["overall"]["share"], "gate": gate.get("reason"), "passed": gate.get("passed"),
            "seconds": q["seconds"]["total"]}


def _fmt(v, spec=".3f"):
    return "n/a" if v is None else format(v, spec)


def markdown(rows: list[dict], meta: dict, command: str) -> str:
    names = list(rows[0]["class_recall"])
    head = ("| source | CAS (val) [95% CI] | real-trained | CAS ratio | "
            + " | ".join(f"{n} recall (syn / real)" for n in names) + " | FID | memorized | gate |")
    lines = [f"# Edits of real cells vs. samples: {meta['editor']}, fraction {meta['fraction']:g} "
             f"({meta['train_patients']} training patients, {meta['train_images']} cells, seed {meta['seed']})", "",
             f"Reproduce: `{command}`", "",
             f"Editor: `{meta['editor']}` preset, {meta['steps']} steps, trained in {meta['train_seconds']:.0f} s on "
             "the fraction's training patients only. Every number is scored on the validation patients "
             f"({meta['val_images']} cells); test patients are not touched. CAS: a classifier trained on "
             f"{meta['cas_images']} synthetic images only (3 seeds) against the same classifier trained on the "
             "fraction's real cells. An edit is near its source by design: its memorized share measures how "
             "mild the edit is, not copying.", "", head,
             "|" + "---|" * (7 + len(names))]
    for r in rows:
        ci = r["cas_ci"]
        recall = " | ".join(f"{_fmt(r['class_recall'][n])} / {_fmt(r['real_class_recall'][n])}" for n in names)
        lines.append(f"| {r['source']} | {_fmt(r['cas_val'])}" + (f" [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "")
                     + f" | {_fmt(r['real_val'])} | {_fmt(r['cas_ratio'], '.2f')} | {recall} | "
                     f"{_fmt(r['fid'], '.1f')} | {_fmt(r['memorized'], '.2f')} | {r['gate']} |")
    return "\n".join(lines) + "\n"


def picture(gen, sources: dict, splits, path: Path, title: str, per_class: int = 10, seed: int = 0) -> None:
    """Per class: real training cells, edits of those same cells at each strength, the editor's samples."""
    from synthaug.viz import save_comparison

    g = torch.Generator().manual_seed(seed)
    targets = torch.as_tensor(splits.train.targets)
    rows = []
    for c, name in enumerate(splits.classes):
        idx = torch.nonzero(targets == c).flatten()
        pick = idx[torch.randperm(len(idx), generator=g)[:per_class]].numpy()
        rows.append((f"real {name}", torch.stack([splits.train[int(i)][0] for i in pick])))
        for label, source in sources.items():
            rows.append((f"{label} {name}", source.edit(pick, 0)))
        labels = torch.full((per_class,), c, dtype=torch.long)
        rows.append((f"samples {name}", gen.sample(per_class, labels, generator=torch.Generator().manual_seed(seed))))
    save_comparison(rows, path, title=title)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    strengths = _parse_strengths(args.strengths)
    from synthaug.mix.edits import EditSource
    from synthaug.quality import get_feature_extractor
    from synthaug.utils import atomic_write_text

    out = Path(args.out) / f"{args.editor}-frac{args.fraction:g}-seed{args.seed}"
    docs = Path(args.docs)
    cfg, gen, record = train_editor(args, out)
    splits = cfg.data.load(args.seed)
    full = cfg.data.load(args.seed, 1.0)
    if not set(splits.info["train_groups"]) <= set(full.info["train_groups"]):
        raise RuntimeError("the fraction's training patients are not within the seed's training patients")
    key = cfg.data.key
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="the feature extractor was not trained on this split")
        extractor = get_feature_extractor(full, dataset_key=key, seed=args.seed, cache_dir=Path(args.out) / "extractors",
                                          verbose=False)
        rows = [row_of("samples", None, score(gen, "samples", splits, extractor, args, out, key))]
        sources = {}
        for s in strengths:
            source = EditSource(gen, splits.train, strength=s, per_image=args.per_image, seed=args.seed)
            sources[f"edit {s:g}"] = source
            rows.append(row_of(f"edits, strength {s:g}", s, score(source, f"edit-{s:g}", splits, extractor, args,
                                                                   out, key)))
    meta = {"editor": args.editor, "fraction": args.fraction, "seed": args.seed, "steps": record["steps"],
            "train_seconds": record["train_seconds"], "train_patients": len(splits.info["train_groups"]),
            "train_images": len(splits.train), "val_images": len(splits.val), "cas_images": args.cas_images,
            "per_image": args.per_image}
    command = "python benchmarks/edits.py " + " ".join(sys.argv[1:] if argv is None else argv)
    stem = f"{args.editor}-frac{args.fraction:g}"
    docs.mkdir(parents=True, exist_ok=True)
    atomic_write_text(docs / f"{stem}.json", json.dumps({"meta": meta, "command": command, "rows": rows}, indent=2))
    atomic_write_text(docs / f"{stem}.md", markdown(rows, meta, command))
    picture(gen, sources, splits, docs / f"{stem}.png", seed=args.seed,
            title=f"{args.editor}, {meta['train_patients']} training patients: real cells, edits of the same cells, "
                  "samples")
    print(markdown(rows, meta, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
