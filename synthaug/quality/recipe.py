"""The classifier recipe shared by the feature extractor and the CAS classifiers.

Both are trained as the benchmark trains its classifiers (``train_classifier``: AdamW, warm-up then cosine,
flips and 90° rotations); this module validates the recipe once and trains a fresh model from it.
"""
from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import nn

from ..checks import check_float, check_int
from ..augment import check_augment, create_augment
from ..classifier import create_classifier, train_classifier

#: the default recipe: a small ResNet (timm's 4-block ``test_resnet``, 96 features) reaches about 0.9 balanced
#: accuracy on the malaria validation patients at 32 px in 300 steps (well under a minute on a CPU), where
#: resnet18 after the benchmark's 160 steps reaches 0.74 in over three minutes
DEFAULT_MODEL, DEFAULT_STEPS = "test_resnet", 300


def classifier_recipe(model: str = DEFAULT_MODEL, steps: int = DEFAULT_STEPS, batch_size: int = 64, lr: float = 1e-3,
                      weight_decay: float = 0.05, augment: str = "flip-rot90") -> dict[str, Any]:
    """The validated training recipe of the feature extractor and of the CAS classifiers."""
    owner = "classifier"
    check_int(steps, "steps", owner, minimum=1)
    check_int(batch_size, "batch_size", owner, minimum=1)
    check_float(lr, "lr", owner, minimum=0, min_inclusive=False)
    check_float(weight_decay, "weight_decay", owner, minimum=0)
    check_augment(augment)
    if not isinstance(model, str) or not model:
        raise ValueError(f"{owner}: model={model!r}: give a timm model name, e.g. 'resnet18'")
    return {"model": model, "steps": int(steps), "batch_size": int(batch_size), "lr": float(lr),
            "weight_decay": float(weight_decay), "augment": augment}


def budget_steps(recipe: dict[str, Any], images: int, *, epochs: float | None) -> int:
    """Optimizer steps of a classifier trained on ``images`` items: ``epochs`` passes over them, at least
    the recipe's ``steps`` (the floor); ``epochs=None`` gives the recipe's steps alone."""
    if epochs is None:
        return recipe["steps"]
    return max(recipe["steps"], math.ceil(epochs * images / recipe["batch_size"]))


def train_recipe(recipe: dict[str, Any], train_set, *, num_classes: int, channels: int, seed: int, desc: str,
                 steps: int | None = None) -> nn.Module:
    """A fresh classifier trained with ``recipe`` on ``train_set`` (initial weights from ``seed``);
    ``steps`` overrides the recipe's number of steps."""
    from accelerate.utils import set_seed

    set_seed(seed)  # the same initial weights whatever the training images: real-trained and CAS are paired
    logging.getLogger(__name__).info("%s (%d steps)", desc, recipe["steps"] if steps is None else steps)
    model = create_classifier(recipe["model"], num_classes=num_classes, channels=channels)
    return train_classifier(model, train_set, steps=recipe["steps"] if steps is None else steps,
                            batch_size=recipe["batch_size"], lr=recipe["lr"], weight_decay=recipe["weight_decay"],
                            seed=seed, augment=create_augment(recipe["augment"]), desc=desc)


def per_class_recall(probs: torch.Tensor, targets: torch.Tensor, classes: list[str]) -> dict[str, float | None]:
    """Recall of each class (``None`` for a class absent from ``targets``)."""
    pred = probs.argmax(1)
    return {name: (float((pred[targets == c] == c).float().mean()) if (targets == c).any() else None)
            for c, name in enumerate(classes)}
