"""Why CAS fell below chance at 7 patients (malaria-strategies, fraction 0.05, seed 0, its 300-step ddpm).

    SYNTHAUG_DATA=... OMP_NUM_THREADS=1 python benchmarks/cas_below_chance.py \\
        --out runs/cas-below-chance --docs docs/results/malaria-strategies

Rebuilds the cell's patient split (checked against the committed run record's split file), trains the ddpm of
configs/bench/malaria-strategies.yaml on those 7 patients exactly as the strategies run does (resumable, cached in
``--out``), samples the CAS images as ``evaluate_generator`` does, and measures on the VALIDATION patients only:
CAS per class and per validation patient, how often real-trained classifiers (on the fraction's patients, and on all
training patients of the seed) agree with the generator's labels, and the colour of the cells (mean RGB and
hue, dark-spot share and graininess of the cell's pixels) per class and patient, real and synthetic; colour-only
rules; CAS with the colour taken away (grey samples and grey validation cells) and with the speckle blurred away;
the same at guidance 0 and 3; the stain shares of fraction 0.25. Writes ``<docs>/cas-below-chance.json`` and the
figures ``<docs>/cas-below-chance-*.png`` (docs/results/malaria-strategies/cas-below-chance.md reads them).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs/bench/malaria-strategies.yaml"
RECORD = ROOT / "docs/results/malaria-strategies/run-record"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fraction", type=float, default=0.05, help="share of the training patients (default 0.05)")
    p.add_argument("--seed", type=int, default=0, help="the patient split's seed (default 0)")
    p.add_argument("--cas-images", type=int, default=1000, help="synthetic images CAS trains on (as the run)")
    p.add_argument("--cas-seeds", type=int, default=3, help="classifier seeds per CAS (as the run)")
    p.add_argument("--out", default="runs/cas-below-chance", help="work folder (the generator's checkpoint)")
    p.add_argument("--docs", default="docs/results/malaria-strategies", help="where the JSON and figures go")
    return p


def load_splits(args):
    """The cell's split, checked against the run record's split file when there is one."""
    from synthaug.data import load_dataset

    splits = load_dataset("malaria", image_size=32, seed=args.seed, train_fraction=args.fraction)
    record = RECORD / f"splits/malaria-32px/frac{args.fraction:g}/seed{args.seed}.json"
    if record.is_file():
        saved = json.loads(record.read_text())
        if saved["train_groups"] != splits.info["train_groups"] or saved["train_items"] != len(splits.train):
            raise SystemExit(f"the rebuilt split differs from {record.relative_to(ROOT)}: "
                             f"{splits.info['train_groups']} vs {saved['train_groups']}")
    return splits


def train_ddpm(splits, args, out: Path):
    """The strategies run's ddpm (its options and training settings), trained as ``bench.cell`` trains it."""
    from accelerate.utils import set_seed

    from synthaug.generators import GeneratorTrainConfig, create_generator, load_generator, train_generator

    spec = yaml.safe_load(CONFIG.read_text())["generator"]
    folder = out / f"ddpm-frac{args.fraction:g}-seed{args.seed}"
    if (folder / "done.json").is_file():
        return load_generator(folder / "checkpoint"), json.loads((folder / "done.json").read_text())
    set_seed(args.seed)
    gen = create_generator(spec["name"], num_classes=splits.num_classes, image_size=splits.image_size,
                           channels=splits.channels, **spec["options"])
    start = time.perf_counter()
    gen = train_generator(gen, splits.train, config=GeneratorTrainConfig(**{**spec["train"], "seed": args.seed}),
                          out_dir=folder, resume=(folder / "resume").exists())
    done = {"steps": gen.training_record["steps"], "seconds": round(time.perf_counter() - start, 1),
            "class_names": gen.class_names, "options": spec["options"], "train": spec["train"]}
    (folder / "done.json").write_text(json.dumps(done, indent=2))
    return gen, done


# --------------------------------------------------------------------------- images, colours, classifiers
def arrays(dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 images (N, C, H, W), labels and patients of a real data set."""
    images = np.stack([dataset[i][0].numpy() for i in range(len(dataset))])
    return images, np.asarray(dataset.targets), np.asarray(dataset.groups).astype(str)


def cas_images(gen, splits, n: int, seed: int, guidance: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """What ``evaluate_generator`` trains CAS on: ``n`` samples in the training class frequencies, sampled
    from seed + 1 (``guidance``: another guidance weight than the model's, for this draw only)."""
    from synthaug.mix.pool import generate_pool
    from synthaug.mix.quotas import largest_remainder

    counts = largest_remainder(n, np.bincount(splits.train.targets, minlength=splits.num_classes))
    labels = np.repeat(np.arange(len(counts)), counts)
    saved = gen.guidance
    if guidance is not None:
        gen.guidance = guidance
    try:
        pool = generate_pool(gen, labels, seed=seed + 1, progress=False)
    finally:
        gen.guidance = saved
    return pool.images, pool.labels


def cell_colour(images: np.ndarray) -> np.ndarray:
    """Per image: mean R, G, B (0-255) over the cell's pixels (the black letterbox/background left out)."""
    x = images.astype(np.float64)
    mask = (x.max(axis=1) > 20)[:, None]  # (N, 1, H, W): the cell, not the black surround
    return (x * mask).sum(axis=(2, 3)) / np.maximum(mask.sum(axis=(2, 3)), 1)


def hue(rgb: np.ndarray) -> float:
    """Hue (degrees) of one mean colour (hues are circular: they are never averaged themselves)."""
    import colorsys

    return colorsys.rgb_to_hsv(*(np.asarray(rgb, dtype=np.float64) / 255))[0] * 360


def as_dataset(images: np.ndarray, labels: np.ndarray, classes: list[str], group: str = "synthetic"):
    from synthaug.data import ImageArrayDataset

    return ImageArrayDataset(images, labels, np.full(len(labels), group), classes)


def train_on(dataset, splits, *, seed: int, desc: str):
    """The CAS recipe (test_resnet, 300 steps, flips and rotations) trained on ``dataset``."""
    from synthaug.quality.recipe import budget_steps, classifier_recipe, train_recipe

    recipe = classifier_recipe()
    steps = budget_steps(recipe, len(dataset), epochs=10.0)
    return train_recipe(recipe, dataset, num_classes=splits.num_classes, channels=splits.channels, seed=seed,
                        steps=steps, desc=desc)


def predicted(model, images: np.ndarray, labels: np.ndarray, classes: list[str]) -> np.ndarray:
    from synthaug.classifier import predict

    probs, _ = predict(model, as_dataset(images, labels, classes))
    return probs.argmax(1).numpy()


def balanced(pred: np.ndarray, labels: np.ndarray, k: int) -> tuple[float, list[float]]:
    """Balanced accuracy and the recall of each class."""
    recall = [float((pred[labels == c] == c).mean()) for c in range(k)]
    return float(np.mean(recall)), recall


def nearest_mean_colour(train_rgb: np.ndarray, train_y: np.ndarray, test_rgb: np.ndarray, k: int) -> np.ndarray:
    """A colour-only classifier: the class whose mean RGB (of the training cells) is nearest."""
    means = np.stack([train_rgb[train_y == c].mean(0) for c in range(k)])
    return np.argmin(((test_rgb[:, None, :] - means[None]) ** 2).sum(-1), axis=1)


def texture(images: np.ndarray) -> np.ndarray:
    """Per image: the cell's dark-spot share (pixels darker than 0.75 x the cell's median brightness: the
    stained chromatin of a parasite) and its graininess (mean absolute difference of horizontally adjacent
    cell pixels, 0-255)."""
    x = images.astype(np.float64).mean(axis=1)  # (N, H, W) brightness
    cell = x > 20
    spots, grain = [], []
    for img, m in zip(x, cell):
        med = np.median(img[m]) if m.any() else 0.0
        spots.append(float((img[m] < 0.75 * med).mean()) if m.any() else 0.0)
        pair = m[:, 1:] & m[:, :-1]
        grain.append(float(np.abs(np.diff(img, axis=1))[pair].mean()) if pair.any() else 0.0)
    return np.column_stack([spots, grain])


def describe(images: np.ndarray) -> dict[str, float]:
    """Mean colour and texture of a set of cells."""
    c, t = cell_colour(images), texture(images)
    mean = c.mean(0)
    return {"n": len(images), "r": float(mean[0]), "g": float(mean[1]), "b": float(mean[2]),
            "b_minus_r": float(mean[2] - mean[0]), "hue": hue(mean), "spots": float(t[:, 0].mean()),
            "grain": float(t[:, 1].mean())}


def colour_table(real: dict, syn: tuple[np.ndarray, np.ndarray], classes: list[str]) -> list[dict]:
    """One row per (source, patient, class): real training and validation patients, then the samples."""
    rows = []
    for part, (x, y, g) in real.items():
        for patient in sorted(set(g)):
            for c, name in enumerate(classes):
                pick = (g == patient) & (y == c)
                if pick.any():
                    rows.append({"part": part, "patient": patient, "class": name, **describe(x[pick])})
        for c, name in enumerate(classes):
            rows.append({"part": part, "patient": "all", "class": name, **describe(x[y == c])})
    for c, name in enumerate(classes):
        rows.append({"part": "synthetic", "patient": "-", "class": name, **describe(syn[0][syn[1] == c])})
    return rows


# --------------------------------------------------------------------------- the measurements
def measure_cas(syn, splits, val, seeds: list[int]) -> tuple[dict, list[np.ndarray]]:
    """CAS (balanced accuracy on the validation patients) of classifiers trained on the samples alone, per
    class and per validation patient (the share of each patient's cells of each class called class 0); and
    each seed's predictions on the validation cells."""
    classes = list(splits.classes)
    preds = [predicted(train_on(as_dataset(*syn, classes), splits, seed=s, desc=f"CAS seed {s}"), val[0], val[1],
                       classes) for s in seeds]
    return {"seeds": seeds, **summarise(preds, val, classes)}, preds


def summarise(preds: list[np.ndarray], val, classes: list[str]) -> dict:
    k = len(classes)
    scores = [balanced(p, val[1], k) for p in preds]
    per_patient = {}
    for patient in sorted(set(val[2])):
        per_patient[patient] = {name: (float(np.mean([(p[(val[2] == patient) & (val[1] == c)] == 0).mean()
                                                      for p in preds]))
                                       if ((val[2] == patient) & (val[1] == c)).any() else None)
                                for c, name in enumerate(classes)}
    return {"balanced_accuracy": float(np.mean([s[0] for s in scores])),
            "per_seed": [s[0] for s in scores],
            "class_recall": {name: float(np.mean([s[1][c] for s in scores])) for c, name in enumerate(classes)},
            "called_" + classes[0]: per_patient}


def agreement(judge, syn, classes: list[str]) -> dict:
    """How often a real-trained classifier gives a sample its generator's label, per class."""
    pred = predicted(judge, syn[0], syn[1], classes)
    return {name: float((pred[syn[1] == c] == c).mean()) for c, name in enumerate(classes)} | {
        "called_" + classes[0]: {name: float((pred[syn[1] == c] == 0).mean()) for c, name in enumerate(classes)}}


def judges(splits, train, val, args) -> dict:
    """Real-trained classifiers: on the cell's 7 patients, and on every training patient of the seed."""
    from synthaug.data import load_dataset

    full = load_dataset("malaria", image_size=32, seed=args.seed, train_fraction=1.0)
    models = {"real, the cell's patients": train_on(splits.train, splits, seed=args.seed, desc="judge: 7 patients"),
              f"real, all {len(full.train)} training cells": train_on(full.train, splits, seed=args.seed,
                                                                      desc="judge: all training patients")}
    scores = {name: summarise([predicted(m, val[0], val[1], list(splits.classes))], val, list(splits.classes))
              for name, m in models.items()}
    return {"models": models, "val": scores}


# --------------------------------------------------------------------------- figures
def grids_figure(path: Path, train, val, syn, classes: list[str], *, per_row: int = 12, seed: int = 0) -> None:
    """Real training cells per patient and class, the largest validation patients, then the samples per class."""
    from synthaug.viz import save_comparison

    rng = np.random.default_rng(seed)
    rows = []

    def pick(x, mask, label):
        idx = np.flatnonzero(mask)
        if len(idx):
            idx = rng.choice(idx, size=min(per_row, len(idx)), replace=False)
            blank = np.full((per_row - len(idx), *x.shape[1:]), 255, dtype=np.uint8)  # rows of one width
            rows.append((label, torch.from_numpy(np.concatenate([x[np.sort(idx)], blank]))))

    for c, name in enumerate(classes):
        for patient in sorted(set(train[2])):
            n = int(((train[2] == patient) & (train[1] == c)).sum())
            pick(train[0], (train[2] == patient) & (train[1] == c), f"train {patient}\n{name} ({n})")
        for r in range(2):
            pick(syn[0], syn[1] == c, f"synthetic\n{name}")
    largest = sorted(set(val[2]), key=lambda p: -int(((val[2] == p) & (val[1] == 0)).sum()))[:3]
    for patient in largest:  # the validation patients with the most cells of class 0
        for c, name in enumerate(classes):
            n = int(((val[2] == patient) & (val[1] == c)).sum())
            pick(val[0], (val[2] == patient) & (val[1] == c), f"val {patient}\n{name} ({n})")
    save_comparison(rows, path, title="real cells per patient and class (count) vs the 300-step ddpm's samples")
    from PIL import Image

    Image.open(path).convert("RGB").quantize(colors=256).save(path, optimize=True)  # a third of the bytes


def colour_figure(path: Path, table: list[dict], train, val, syn, classes: list[str]) -> None:
    """The stain (blue minus red of the cell's mean colour) against the dark-spot share: every cell (small
    dots) and every patient's mean (large markers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), sharex=True, sharey=True)
    colours = {classes[0]: "tab:red", classes[1]: "tab:blue"}
    for ax, (title, (x, y, _)) in zip(axes, [("real training cells (7 patients)", train),
                                             ("real validation cells (20 patients)", val),
                                             ("synthetic (the generator's labels)", syn + (None,))]):
        colour = cell_colour(x)
        feats = np.column_stack([colour[:, 2] - colour[:, 0], texture(x)[:, 0]])
        for c, name in enumerate(classes):
            ax.scatter(feats[y == c, 0], feats[y == c, 1], s=3, alpha=0.3, color=colours[name], label=name)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("stain: blue minus red of the cell's mean colour (0-255)")
    part_of = {"train": axes[0], "val": axes[1], "synthetic": axes[2]}
    for row in table:
        if row["patient"] == "all" or row["n"] < 5:
            continue
        ax = part_of[row["part"]]
        ax.scatter(row["b_minus_r"], row["spots"], s=90, marker="*" if row["part"] == "synthetic" else "o",
                   color=colours[row["class"]], edgecolor="black", linewidth=0.8)
        if row["part"] != "synthetic" and row["n"] >= 60 and row["class"] == classes[0]:
            ax.annotate(row["patient"], (row["b_minus_r"], row["spots"]), fontsize=7, xytext=(4, 4),
                        textcoords="offset points")
    axes[0].set_ylabel("dark-spot share of the cell's pixels")
    axes[0].legend(markerscale=4, fontsize=8, title="small: one cell; large: a patient's mean", title_fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def patients_figure(path: Path, results: dict, classes: list[str], val) -> None:
    """Per validation patient: the share of its cells of each class that the CAS classifiers call class 0,
    beside the classifier trained on the cell's real patients."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = "called_" + classes[0]
    cas, real = results["cas"][key], results["judges"]["val"]["real, the cell's patients"][key]
    patients = sorted(cas, key=lambda p: -int(((val[2] == p) & (val[1] == 0)).sum()))
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.2), sharey=True)
    for ax, (c, name) in zip(axes, enumerate(classes)):
        shown = [p for p in patients if cas[p][name] is not None]
        xs = np.arange(len(shown))
        ax.bar(xs - 0.2, [real[p][name] for p in shown], 0.4, label="trained on the 7 patients' real cells",
               color="tab:gray")
        ax.bar(xs + 0.2, [cas[p][name] for p in shown], 0.4, label="trained on the samples (CAS, 3 seeds)",
               color="tab:orange")
        counts = [int(((val[2] == p) & (val[1] == c)).sum()) for p in shown]
        ax.set_xticks(xs, [f"{p} ({n})" for p, n in zip(shown, counts)], rotation=70, fontsize=7)
        ax.set_title(f"validation {name} cells: share called {classes[0]}", fontsize=10)
    axes[0].set_ylabel(f"share called {classes[0]}")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def colour_only(train, val, syn, cas_preds: list[np.ndarray], k: int) -> dict:
    """Balanced accuracy on the validation patients of the nearest-mean-colour classifier fitted on the real
    training cells and on the samples, and how often the CAS classifiers (each seed) call a validation cell
    what the samples' colour rule calls it."""
    val_rgb = cell_colour(val[0])
    out, rules = {}, {}
    for name, (x, y) in {"real, the cell's patients": (train[0], train[1]), "synthetic": syn}.items():
        rules[name] = nearest_mean_colour(cell_colour(x), y, val_rgb, k)
        out[name] = balanced(rules[name], val[1], k)[0]
    out["cas_agrees_with_the_samples_colour_rule"] = [float((p == rules["synthetic"]).mean()) for p in cas_preds]
    # the check of tests/test_class_conditioning.py: the real cells' colour rule gives the samples their labels
    on_samples = nearest_mean_colour(cell_colour(train[0]), train[1], cell_colour(syn[0]), k)
    out["real_colour_rule_gives_the_samples_their_label"] = [float((on_samples[syn[1] == c] == c).mean())
                                                            for c in range(k)]
    return out


def stain_shares(parts: dict, classes: list[str]) -> dict:
    """Per part and class, the share of cells from blue-stained patients (a patient's mean colour over all
    its cells has more blue than red; the others are pink-stained)."""
    out = {}
    for part, (x, y, g) in parts.items():
        rgb = cell_colour(x)
        blue = {p for p in set(g) if rgb[g == p, 2].mean() > rgb[g == p, 0].mean()}
        is_blue = np.array([p in blue for p in g])
        out[part] = {"blue_patients": sorted(blue)} | {
            name: float(is_blue[y == c].mean()) for c, name in enumerate(classes)}
    return out


def smoothed(images: np.ndarray) -> np.ndarray:
    """A 3 x 3 box blur (uint8 in, uint8 out): takes away the samples' pixel-scale speckle, keeps their colour."""
    x = torch.nn.functional.avg_pool2d(torch.from_numpy(images).float(), 3, stride=1, padding=1,
                                       count_include_pad=False)
    return x.round().clamp(0, 255).to(torch.uint8).numpy()


def speckle_check(syn, splits, val, judge_models: dict, args) -> dict:
    """The samples blurred: what the real-trained classifiers call them, and CAS (one seed) trained on them."""
    classes = list(splits.classes)
    blurred = (smoothed(syn[0]), syn[1])
    return {"texture": {name: {"spots": float(texture(blurred[0][blurred[1] == c])[:, 0].mean()),
                               "grain": float(texture(blurred[0][blurred[1] == c])[:, 1].mean())}
                        for c, name in enumerate(classes)},
            "agreement": {name: agreement(m, blurred, classes) for name, m in judge_models.items()},
            "cas": measure_cas(blurred, splits, val, [args.seed])[0]}


def grey(images: np.ndarray) -> np.ndarray:
    """Luminance (ITU-R 601) in all three channels: the blue and the pink stains have about the same."""
    y = np.tensordot(np.array([0.299, 0.587, 0.114]), images.astype(np.float64), axes=([0], [1]))
    return np.repeat(np.round(y)[:, None], 3, axis=1).astype(np.uint8)


def without_colour(syn, train, val, splits, args) -> dict:
    """CAS with the colour taken away from the samples and the validation cells alike (3 seeds), beside the
    classifier trained on the 7 patients' real cells in grey."""
    classes = list(splits.classes)
    grey_val = (grey(val[0]), val[1], val[2])
    cas = measure_cas((grey(syn[0]), syn[1]), splits, grey_val, [args.seed + i for i in range(args.cas_seeds)])[0]
    real = train_on(as_dataset(grey(train[0]), train[1], classes, "real"), splits, seed=args.seed, desc="grey real")
    return {"cas": {k: cas[k] for k in ("balanced_accuracy", "per_seed", "class_recall")},
            "real": balanced(predicted(real, grey_val[0], val[1], classes), val[1], len(classes))}


def other_fraction_stain(args, fraction: float = 0.25) -> dict:
    """The stain shares of the training cells of another fraction of the same seed (no training)."""
    from synthaug.data import load_dataset

    other = load_dataset("malaria", image_size=32, seed=args.seed, train_fraction=fraction)
    return stain_shares({f"train, fraction {fraction:g}": arrays(other.train)}, list(other.classes))


def guidance_sweep(gen, splits, val, judge_models: dict, args, weights=(0.0, 3.0)) -> dict:
    """The same measurements with other guidance weights at sampling (one CAS seed each)."""
    classes = list(splits.classes)
    out = {}
    for w in weights:
        syn = cas_images(gen, splits, args.cas_images, args.seed, guidance=w)
        out[f"{w:g}"] = {"cas": measure_cas(syn, splits, val, [args.seed])[0],
                         "agreement": {name: agreement(m, syn, classes) for name, m in judge_models.items()}}
    return out


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    out, docs = Path(args.out), Path(args.docs)
    splits = load_splits(args)
    gen, done = train_ddpm(splits, args, out)
    classes = list(splits.classes)
    train, val = arrays(splits.train), arrays(splits.val)
    syn = cas_images(gen, splits, args.cas_images, args.seed)
    judged = judges(splits, train, val, args)
    cas, cas_preds = measure_cas(syn, splits, val, [args.seed + i for i in range(args.cas_seeds)])
    results = {
        "split": {"train_groups": splits.info["train_groups"],
                  "train_counts": {p: {name: int(((train[2] == p) & (train[1] == c)).sum())
                                       for c, name in enumerate(classes)} for p in sorted(set(train[2]))},
                  "val_counts": {name: int((val[1] == c).sum()) for c, name in enumerate(classes)}},
        "generator": {**done, "class_names": gen.class_names, "guidance": gen.guidance,
                      "sample_labels": {name: int((syn[1] == c).sum()) for c, name in enumerate(classes)}},
        "cas": cas,
        "judges": {"val": judged["val"],
                   "agreement": {name: agreement(m, syn, classes) for name, m in judged["models"].items()}},
        "colour_only": colour_only(train, val, syn, cas_preds, splits.num_classes),
        "stain": stain_shares({"train": train, "val": val}, classes),
        "colour": colour_table({"train": train, "val": val}, syn, classes),
        "guidance": guidance_sweep(gen, splits, val, judged["models"], args),
        "speckle": speckle_check(syn, splits, val, judged["models"], args),
        "stain_other_fraction": other_fraction_stain(args),
        "without_colour": without_colour(syn, train, val, splits, args),
    }
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "cas-below-chance.json").write_text(json.dumps(results, indent=1))
    grids_figure(docs / "cas-below-chance-grids.png", train, val, syn, classes, seed=args.seed)
    colour_figure(docs / "cas-below-chance-colour.png", results["colour"], train, val, syn, classes)
    patients_figure(docs / "cas-below-chance-patients.png", results, classes, val)
    print(json.dumps({k: results[k] for k in ("colour_only", "without_colour")}, indent=1))
    print("CAS", results["cas"]["balanced_accuracy"], results["cas"]["class_recall"])


if __name__ == "__main__":
    main()
