"""Throughput on this machine: generators (training and sampling images/s), or the plugin's cost.

    python benchmarks/throughput.py                    # every registered generator at 32 and 64 px
    python benchmarks/throughput.py --plugin           # classifier training: real only vs SyntheticDataset vs SyntheticMix

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

    from synthaug.pool import generate_pool
    from synthaug.transforms import SyntheticMix

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
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    env = {"torch": torch.__version__, "synthaug": synthaug.__version__, "python": platform.python_version(),
           "threads": torch.get_num_threads(), "machine": platform.machine()}
    if args.plugin:
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
