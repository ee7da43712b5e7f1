"""Throughput on this machine: generators (training and sampling images/s), or the plugin's cost.

    python benchmarks/throughput.py                    # every registered generator at 32 and 64 px
    python benchmarks/throughput.py --plugin           # classifier training: real only vs SyntheticDataset vs SyntheticMix
    python benchmarks/throughput.py --precision --sizes 32 --steps 5 --repeats 3 --json PATH   # fp32 vs bf16
    python benchmarks/throughput.py --recipes configs/convergence.yaml --steps 5 --repeats 3   # s/step per recipe

Prints a table and writes JSON (``--json``). Untrained models: only the speed matters here.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

import synthaug
from synthaug.classifier import StandardAugment, create_classifier, normalize
from synthaug.generators import OptimizerStep, create_generator, list_generators
from synthaug.generators.precision import cpu_features, resolve_precision


def _timed_steps(step, warmup: int, steps: int) -> float:
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - start


# --------------------------------------------------------------------------- generators
def generator_throughput(sizes: list[int], batch_size: int, steps: int, names: list[str] | None = None, *,
                         warmup: int = 2, sample_batches: int | None = None) -> list[dict]:
    """Training images/s (``training_step``: every optimizer of the model, as in ``train_generator``) and
    sampling images/s (``sample``, ``sample_batches`` timed batches after one warm-up batch; default ``steps``)
    of each generator with its default options, at each size."""
    rows = []
    for name in names or list_generators():
        if name.endswith("-tiny"):
            continue
        for size in sizes:
            torch.manual_seed(0)
            gen = create_generator(name, num_classes=2, image_size=size, channels=3)
            gen.train()
            optimizers = gen.configure_optimizers(1e-4)
            x, y = torch.rand(batch_size, 3, size, size), torch.arange(batch_size) % 2
            stepper = OptimizerStep(name)

            def train_step():
                gen.training_step(x, y, optimizers, stepper)

            train_s = _timed_steps(train_step, warmup, steps)
            n = batch_size * steps
            batches = sample_batches or steps
            sample_s = _timed_steps(lambda: gen.sample(batch_size), 1, batches)
            rows.append({"generator": name, "image_size": size, "batch_size": batch_size,
                         "parameters": sum(p.numel() for p in gen.parameters()),
                         "train_images_per_s": n / train_s, "train_step_s": train_s / steps,
                         "sample_images_per_s": batch_size * batches / sample_s})
            print(f"{name:12s} {size:3d}px  train {n / train_s:8.0f} img/s ({train_s / steps:6.3f} s/step)   "
                  f"sample {batch_size * batches / sample_s:8.0f} img/s", flush=True)
    return rows


# --------------------------------------------------------------------------- precision
def _min_step_seconds(step, *, warmup: int, steps: int, arms: list, repeats: int) -> dict:
    """For each arm (a context factory), the fastest of ``repeats`` timings of ``steps`` steps, arms alternating
    within each repeat so that drift in the machine's speed hits them alike (their ratio is the measurement)."""
    best = {}
    for arm, context in arms:
        with context():
            _timed_steps(step, warmup, 0)
    for _ in range(repeats):
        for arm, context in arms:
            with context():
                best[arm] = min(best.get(arm, float("inf")), _timed_steps(step, 0, steps) / steps)
    return best


def precision_throughput(names: list[str] | None, *, size: int, batch_size: int, steps: int, warmup: int,
                         repeats: int, sample_batches: int) -> list[dict]:
    """Training seconds per step and sampling images/s of each generator (default options) in float32 and under
    bf16 autocast, alternating in one process; ddpm samples with DPM-Solver++(2M) at 20 steps, guidance 1."""
    from synthaug.generators.precision import Precision

    rows = []
    for name in names or list_generators():
        if name.endswith("-tiny"):
            continue
        torch.manual_seed(0)
        gen = create_generator(name, num_classes=2, image_size=size, channels=3)
        if name == "ddpm":
            gen.sampler, gen.sample_steps = "dpmpp-2m", 20
        optimizers = gen.configure_optimizers(1e-4)
        x, y = torch.rand(batch_size, 3, size, size), torch.arange(batch_size) % 2
        precisions = {p: Precision(p) for p in ("no", "bf16")}

        def arm(p):
            def step():
                gen.train()
                with precisions[p].autocast():
                    gen.training_step(x, y, optimizers, OptimizerStep(name, precision=precisions[p]))
                precisions[p].update()
            return step

        row = {"generator": name, "image_size": size, "batch_size": batch_size, "threads": torch.get_num_threads()}
        for p in precisions:  # alternate the two precisions, one timing of each per repeat
            row[f"train_step_s_{p}"] = float("inf")
        for rep in range(repeats):
            for p in precisions:
                _timed_steps(arm(p), warmup if rep == 0 else 0, 0)
                row[f"train_step_s_{p}"] = min(row[f"train_step_s_{p}"], _timed_steps(arm(p), 0, steps) / steps)
        for p in precisions:
            gen.mixed_precision = p
            secs = _timed_steps(lambda: gen.sample(batch_size), 1, sample_batches)
            row[f"sample_images_per_s_{p}"] = batch_size * sample_batches / secs
        gen.mixed_precision = "no"
        row["train_speedup_bf16"] = row["train_step_s_no"] / row["train_step_s_bf16"]
        row["sample_speedup_bf16"] = row["sample_images_per_s_bf16"] / row["sample_images_per_s_no"]
        rows.append(row)
        print(f"{name:12s} train {row['train_step_s_no']:.3f} -> {row['train_step_s_bf16']:.3f} s/step "
              f"(x{row['train_speedup_bf16']:.2f}); sample {row['sample_images_per_s_no']:.0f} -> "
              f"{row['sample_images_per_s_bf16']:.0f} img/s (x{row['sample_speedup_bf16']:.2f})", flush=True)
    return rows


def recipe_step_seconds(config: str, *, steps: int, warmup: int, repeats: int, channels_last: bool = False) -> dict:
    """Seconds per training step of each variant of a ``benchmarks/convergence.py`` config (its options, batch
    size and precision), the variants alternating in one process: what converts its steps into minutes. With
    ``channels_last`` every variant also runs as ``<variant>+channels_last`` (model and batch in that memory
    format), alternating with it."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from convergence import generator_config, load_config

    from synthaug.generators.precision import Precision

    cfg = load_config(Path(config))
    steppers = {}
    formats = [False, True] if channels_last else [False]
    for variant, last in [(v, f) for v in cfg.variants for f in formats]:
        name = f"{variant}+channels_last" if last else variant
        gcfg = generator_config(cfg, variant)
        torch.manual_seed(0)
        gen = create_generator("ddpm", num_classes=2, image_size=cfg.image_size, channels=3, **gcfg.generator.options)
        bs = gcfg.generator.train.batch_size
        x, y = torch.rand(bs, 3, cfg.image_size, cfg.image_size), torch.arange(bs) % 2
        if last:
            gen, x = gen.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        opts = gen.configure_optimizers(gcfg.generator.train.lr)
        prec = Precision(resolve_precision(gcfg.generator.train.mixed_precision))

        def step(gen=gen, opts=opts, x=x, y=y, prec=prec, name=name):
            with prec.autocast():
                gen.training_step(x, y, opts, OptimizerStep(name, precision=prec))
            prec.update()
        steppers[name] = (step, prec.precision)
    best = {name: float("inf") for name in steppers}
    for rep in range(repeats):
        for name, (step, _) in steppers.items():
            _timed_steps(step, warmup if rep == 0 else 0, 0)
            best[name] = min(best[name], _timed_steps(step, 0, steps) / steps)
    out = {name: {"seconds_per_step": round(best[name], 4), "mixed_precision": steppers[name][1],
                  "threads": torch.get_num_threads(), "steps_timed": steps, "repeats": repeats}
           for name in steppers}
    for name, row in out.items():
        print(f"{name:20s} {row['seconds_per_step']:.3f} s/step ({row['mixed_precision']}, {row['threads']} threads)")
    return out


# --------------------------------------------------------------------------- plugin
class AlbumentationsView(Dataset):
    """Real items through an albumentations pipeline (HWC numpy), back to uint8 CHW tensors."""

    def __init__(self, real, pipeline, augment) -> None:
        self.real, self.pipeline, self.augment = real, pipeline, augment

    def __len__(self) -> int:
        return len(self.real)

    def __getitem__(self, i):
        image, label = self.real[i]
        out = self.pipeline(image=image.permute(1, 2, 0).numpy(), label=label)["image"]
        out = torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1) if out.ndim == 3 else out[None]))
        return self.augment(out), label


def _train_rate(dataset, *, steps: int, warmup: int, batch_size: int, workers: int, seed: int = 0) -> float:
    torch.manual_seed(seed)
    model = create_classifier("resnet18", num_classes=2, channels=3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers,
                        generator=torch.Generator().manual_seed(seed), persistent_workers=workers > 0)
    batches = iter(loader)

    def step():
        nonlocal batches
        try:
            images, labels = next(batches)
        except StopIteration:
            batches = iter(loader)
            images, labels = next(batches)
        loss = torch.nn.functional.cross_entropy(model(normalize(images)), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return batch_size * steps / _timed_steps(step, warmup, steps)


def plugin_throughput(*, image_size: int, batch_size: int, workers: int, steps: int, warmup: int, repeats: int) -> dict:
    import albumentations as A

    from synthaug.mix.pool import generate_pool
    from synthaug.mix.albumentations import SyntheticMix

    splits = synthaug.load_dataset("malaria", image_size=image_size, seed=0)
    real = splits.train
    augment = StandardAugment()
    torch.manual_seed(0)
    gen = create_generator("cvae", num_classes=2, image_size=image_size, channels=3).eval()
    start = time.perf_counter()
    pooled = synthaug.SyntheticDataset(gen, 0.3, real=real, transform=augment, seed=0)
    pool_seconds = time.perf_counter() - start
    on_the_fly = pooled.num_synthetic / pool_seconds  # images/s the generator makes
    real_view = real.subset(np.arange(len(real)))
    real_view.transform = augment
    with tempfile.TemporaryDirectory() as tmp:
        labels = np.repeat(np.arange(2), 2048)
        generate_pool(gen, labels, seed=0).save(Path(tmp) / "pool")
        mix = AlbumentationsView(real, A.Compose([SyntheticMix(str(Path(tmp) / "pool"), p=0.3)], seed=0), augment)
        plain = AlbumentationsView(real, A.Compose([A.NoOp()], seed=0), augment)
        arms = {"real only": real_view, "SyntheticDataset(ratio=0.3, pool)": pooled,
                "albumentations, real only": plain, "albumentations + SyntheticMix(p=0.3, pool)": mix}
        baseline_of = {"real only": "real only", "SyntheticDataset(ratio=0.3, pool)": "real only",
                       "albumentations, real only": "albumentations, real only",
                       "albumentations + SyntheticMix(p=0.3, pool)": "albumentations, real only"}
        rates: dict[str, list[float]] = {k: [] for k in arms}
        for r in range(repeats):  # interleaved, so drifts in machine load hit every arm alike
            for name, ds in arms.items():
                rates[name].append(_train_rate(ds, steps=steps, warmup=warmup, batch_size=batch_size, workers=workers,
                                               seed=r))
    base = float(np.median(rates["real only"]))
    # on the fly, 30 % of each batch would be generated during the step
    per_batch_gen_s = 0.3 * batch_size / on_the_fly
    step_s = batch_size / base
    result = {
        "image_size": image_size, "batch_size": batch_size, "workers": workers, "steps": steps, "repeats": repeats,
        "arms": {k: {"images_per_s": float(np.median(v)), "runs": v, "baseline": baseline_of[k],
                     "relative": float(np.median(v)) / float(np.median(rates[baseline_of[k]]))}
                 for k, v in rates.items()},
        "generator_sampling_images_per_s": on_the_fly,
        "on_the_fly_estimate_relative": step_s / (step_s + per_batch_gen_s),
    }
    print(f"\nclassifier training throughput: resnet18, {image_size} px, batch {batch_size}, {workers} workers, "
          f"median of {repeats} x {steps} steps\n")
    print("| arm | images/s | relative to | ratio |\n|---|---|---|---|")
    for name, row in result["arms"].items():
        print(f"| {name} | {row['images_per_s']:.0f} | {row['baseline']} | {row['relative']:.3f} |")
    print(f"\ncvae sampling: {on_the_fly:.0f} images/s; generating the synthetic 30 % of each batch on the fly instead "
          f"of from a pool would run at about {result['on_the_fly_estimate_relative']:.3f} of real-only speed")
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--plugin", action="store_true", help="measure the plugin's cost instead of the generators")
    p.add_argument("--sizes", default="32,64", help="generator image sizes (comma separated)")
    p.add_argument("--generators", help="comma-separated names (default: every registered generator but *-tiny)")
    p.add_argument("--image-size", type=int, default=32, help="--plugin: image size")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2, help="--plugin: DataLoader workers")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5, help="untimed training steps first")
    p.add_argument("--sample-batches", type=int, help="timed sampling batches per generator (default: --steps); "
                   "ddpm samples slowly: 1-2 is enough")
    p.add_argument("--repeats", type=int, default=3, help="--plugin: interleaved repeats per arm")
    p.add_argument("--precision", action="store_true", help="float32 against bf16 autocast, per generator, at the "
                   "first of --sizes (training s/step and sampling images/s, alternating in one process)")
    p.add_argument("--recipes", metavar="CONFIG", help="seconds per training step of each variant of a "
                   "benchmarks/convergence.py config (writes step_seconds.json into its docs_dir)")
    p.add_argument("--channels-last", action="store_true", help="--recipes: every variant also in channels_last "
                   "memory format, alternating (writes step_seconds-channels-last.json instead)")
    p.add_argument("--json", help="write the results here (--recipes: instead of its docs_dir's step_seconds file)")
    args = p.parse_args(argv)
    env = {"torch": torch.__version__, "synthaug": synthaug.__version__, "python": platform.python_version(),
           "threads": torch.get_num_threads(), "machine": platform.machine(), **cpu_features()}
    if args.recipes:
        from convergence import load_config

        result = {"step_seconds": recipe_step_seconds(args.recipes, steps=args.steps, warmup=args.warmup,
                                                      repeats=args.repeats, channels_last=args.channels_last)}
        docs = Path(__file__).resolve().parents[1] / load_config(Path(args.recipes)).docs_dir
        docs.mkdir(parents=True, exist_ok=True)
        target = Path(args.json) if args.json else \
            docs / ("step_seconds-channels-last.json" if args.channels_last else "step_seconds.json")
        target.write_text(json.dumps({**result, "environment": env}, indent=1) + "\n")
        print(f"wrote {target}")
        return 0
    if args.precision:
        names = [n.strip() for n in args.generators.split(",")] if args.generators else None
        rows = precision_throughput(names, size=int(args.sizes.split(",")[0]), batch_size=args.batch_size,
                                    steps=args.steps, warmup=args.warmup, repeats=args.repeats,
                                    sample_batches=args.sample_batches or 2)
        print(f"\nfloat32 against bf16 autocast: batch {args.batch_size}, min over {args.repeats} alternating repeats of "
              f"{args.steps} steps, {torch.get_num_threads()} threads\n")
        print("| generator | train s/step fp32 | bf16 | speed-up | sample img/s fp32 | bf16 | speed-up |\n"
              "|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['generator']} | {r['train_step_s_no']:.3f} | {r['train_step_s_bf16']:.3f} | "
                  f"{r['train_speedup_bf16']:.2f}x | {r['sample_images_per_s_no']:.0f} | "
                  f"{r['sample_images_per_s_bf16']:.0f} | {r['sample_speedup_bf16']:.2f}x |")
        result = {"precision": rows}
    elif args.plugin:
        result = {"plugin": plugin_throughput(image_size=args.image_size, batch_size=args.batch_size,
                                              workers=args.workers, steps=args.steps, warmup=args.warmup,
                                              repeats=args.repeats)}
    else:
        names = [n.strip() for n in args.generators.split(",")] if args.generators else None
        rows = generator_throughput([int(s) for s in args.sizes.split(",")], args.batch_size, args.steps, names,
                                    warmup=args.warmup, sample_batches=args.sample_batches)
        print(f"\ngenerators: default options, batch {args.batch_size}, {args.steps} timed training steps, "
              f"{args.sample_batches or args.steps} timed sampling batches, {torch.get_num_threads()} threads\n")
        print("| generator | size | parameters | train images/s | s/step | sample images/s |\n|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['generator']} | {r['image_size']} | {r['parameters'] / 1e6:.2f} M | {r['train_images_per_s']:.0f} "
                  f"| {r['train_step_s']:.3f} | {r['sample_images_per_s']:.0f} |")
        result = {"generators": rows}
    if args.json:
        from synthaug.utils import atomic_write_text

        atomic_write_text(args.json, json.dumps({**result, "environment": env}, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
