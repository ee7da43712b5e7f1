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
