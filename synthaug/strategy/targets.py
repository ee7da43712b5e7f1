"""Items with soft targets and loss weights, the form ``fit_classifier`` trains on when labels are not one class.

``TargetItems(items, num_classes, weight=w, probs=p)`` gives ``(image, class probabilities, weight)``: the labels
of ``items`` as one-hot vectors (or the rows of ``probs``, e.g. a teacher's), each item weighted ``w`` in the
loss (the mean of ``weight * cross_entropy`` over the batch).
"""
from __future__ import annotations

import torch
from torch.utils.data import Dataset


class TargetItems(Dataset):
    """Items ``(image, class probabilities, weight)`` of a data set of ``(image, label)`` items (module docstring)."""

    def __init__(self, items: Dataset, num_classes: int, *, weight: float = 1.0, probs: torch.Tensor | None = None):
        if probs is not None and tuple(probs.shape) != (len(items), num_classes):
            raise ValueError(f"TargetItems: probs of shape {tuple(probs.shape)} for {len(items)} items of "
                             f"{num_classes} classes")
        self.items, self.num_classes, self.probs = items, int(num_classes), probs
        self.weight = torch.tensor(float(weight))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        image, label = self.items[index][:2]
        if self.probs is not None:
            target = self.probs[index]
        else:
            target = torch.nn.functional.one_hot(torch.as_tensor(int(label)), self.num_classes).float()
        return image, target, self.weight


def images_of(items: Dataset) -> torch.Tensor:
    """Every image of a data set of uint8 ``(image, label)`` items, stacked."""
    return torch.stack([torch.as_tensor(items[i][0]) for i in range(len(items))])


def labels_of(items: Dataset) -> torch.Tensor:
    """Every label of a data set of ``(image, label)`` items."""
    return torch.as_tensor([int(items[i][1]) for i in range(len(items))])
