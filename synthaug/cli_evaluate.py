"""``synthaug evaluate``'s CAS setting: quick by default (a few minutes on a CPU), thorough one flag away.

CAS trains classifiers: ``cas_seeds`` on synthetic images and as many on the real training images. The quick
setting trains each for the recipe's steps (300 at batch 64: 10 passes over 2,000 synthetic images, one over
malaria's 18k real ones) and reuses the feature extractor as the real-trained classifier of the first seed.
``--thorough`` is the library's setting, under which the gate's thresholds were chosen: as many synthetic
images as real training images and 10 epochs for every classifier (malaria 32 px: about ten times the steps).
"""
from __future__ import annotations

import argparse
from typing import Any

#: synthetic images of a quick CAS (the benchmark's ``quality.cas_images`` and ``synthaug train --gate-every``'s)
QUICK_CAS_IMAGES = 2000
#: what ``--thorough`` costs (malaria, 32 px, test_resnet: 6 classifiers of ~2,900 steps instead of 5 of 300; the
#: quick setting took 4 min on 2 shared CPU cores, docs/metrics.md), said in ``--help`` and by the command
THOROUGH_COST = "about 10x the classifier steps: an estimated 30-60 min on 2 CPU cores for malaria at 32 px"


def cas_options(args: argparse.Namespace) -> dict[str, Any]:
    """``cas_images``, ``cas_seeds``, ``cas_epochs`` of ``evaluate``: the quick setting unless ``--thorough`` (the
    library's: as many images as real training images, 10 epochs), each overridden by its own option."""
    from .quality.cas import DEFAULT_EPOCHS, DEFAULT_SEEDS

    epochs = args.cas_epochs if args.cas_epochs is not None else DEFAULT_EPOCHS if args.thorough else None
    images = args.cas_images if args.cas_images is not None or args.thorough else QUICK_CAS_IMAGES
    return {"cas_images": images, "cas_seeds": args.cas_seeds or DEFAULT_SEEDS, "cas_epochs": epochs}


def cas_setting(*, cas_images: int | None, cas_seeds: int, cas_epochs: float | None, train_images: int,
                steps: int | None = None) -> str:
    """One line saying what CAS will train (and, for the quick setting, what ``--thorough`` would)."""
    from .quality.cas import DEFAULT_EPOCHS
    from .quality.recipe import budget_steps, classifier_recipe

    recipe = classifier_recipe(**({} if steps is None else {"steps": steps}))
    images = train_images if cas_images is None else cas_images
    syn, real = budget_steps(recipe, images, epochs=cas_epochs), budget_steps(recipe, train_images, epochs=cas_epochs)
    line = (f"CAS: {cas_seeds} seed(s) x (a classifier on {images} synthetic images, {syn} steps + one on the "
            f"{train_images} real training images, {real} steps)")
    thorough = budget_steps(recipe, train_images, epochs=DEFAULT_EPOCHS)
    if syn + real < 2 * thorough:
        line += (f"; the quick setting: --thorough trains each on {train_images} images for {thorough} steps, as the "
                 f"gate's thresholds were set ({THOROUGH_COST})")
    return line


def add_evaluate_command(sub: argparse._SubParsersAction, handler: Any) -> argparse.ArgumentParser:
    """The ``evaluate`` sub-command and its own options (the caller adds the data options); ``handler`` runs it."""
    ev = sub.add_parser("evaluate", help="sample quality: FID, KID, precision/recall, memorization, CAS")
    source = ev.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="generator checkpoint folder (from synthaug train)")
    source.add_argument("--pool", help="pool folder (from synthaug sample --pool)")
    source.add_argument("--source", metavar="SPEC", help="any other source: a folder of class folders "
                        "(folder:PATH, e.g. from synthaug export), a source object in your module "
                        "(callable:package.module:source, e.g. source = CallableSource(fn, classes=[...])) or "
                        "diffusers:PATH")
    ev.add_argument("--data", default="malaria", help="the data set the generator was trained on")
    ev.add_argument("--root")
    ev.add_argument("--image-size", type=int, default=32)
    ev.add_argument("--seed", type=int, default=0, help="the split seed the generator was trained with")
    ev.add_argument("--train-fraction", type=float, default=1.0)
    ev.add_argument("--n", type=int, default=1000, help="synthetic images for FID, KID, precision/recall, memorization")
    ev.add_argument("--out", required=True, help="folder for quality.json, memorization_pairs.png, nearest_train.csv")
    ev.add_argument("--no-cas", action="store_true", help="skip CAS (it trains a classifier on synthetic images)")
    ev.add_argument("--thorough", action="store_true",
                    help="CAS as the gate's thresholds were set: as many synthetic images as real training images and "
                         f"every classifier 10 epochs ({THOROUGH_COST}; the default, quick setting took 4 min: 2000 "
                         "synthetic images, 300 steps per classifier)")
    ev.add_argument("--cas-images", type=int, help="synthetic images for CAS (default: 2000; --thorough: as many as "
                                                   "training images)")
    ev.add_argument("--cas-seeds", type=int, help="classifiers per CAS side, paired by seed (default: 3)")
    ev.add_argument("--cas-epochs", type=float, help="passes over its training images of each CAS classifier, at "
                                                     "least --classifier-steps (default: none, the steps alone; "
                                                     "--thorough: 10)")
    ev.add_argument("--gate", action="store_true",
                    help="quality gate: reject the generator when its CAS ratio or its weakest class's recall ratio "
                         "(on validation patients) is below the thresholds; printed and recorded in quality.json")
    ev.add_argument("--min-ratio", type=float,
                    help="gate: least CAS / real-trained score (default: 0.8; implies --gate)")
    ev.add_argument("--min-class-ratio", type=float,
                    help="gate: least recall ratio of the weakest class (default: 0.6; implies --gate)")
    ev.add_argument("--cache", help="feature extractor cache (default: $SYNTHAUG_CACHE/extractors)")
    ev.add_argument("--classifier", help="timm model of the feature extractor and CAS (default: test_resnet)")
    ev.add_argument("--classifier-steps", type=int, help="its training steps at batch 64 (default: 300)")
    ev.set_defaults(func=handler)
    return ev
