"""Quality filters for synthetic samples: keep an image only when a classifier agrees with its label."""
from __future__ import annotations

import os

import torch

from ..checks import check_float
from ..classifier import batched_logits, load_classifier
from ..data.imageio import convert_channels, resize_batch


class ClassifierFilter:
    """Keep a synthetic image when a classifier trained on real images predicts the requested label
    with probability at least ``threshold``.

    ``classifier``: a checkpoint folder (``save_classifier``) or a ``(model, image_size, channels)`` tuple.
    Use it as ``SyntheticDataset(..., quality_filter=ClassifierFilter(path, threshold=0.8))``; the data
    set's ``filter_report`` then gives the rejection rate. Train the classifier on the training patients
    only: a filter trained on test patients would leak them into the synthetic data.
    """

    def __init__(self, classifier: str | os.PathLike | tuple, *, threshold: float = 0.5, batch_size: int = 256,
                 device: str | torch.device = "cpu") -> None:
        check_float(threshold, "threshold", "ClassifierFilter", minimum=0, maximum=1, hint="a probability")
        if isinstance(classifier, (str, os.PathLike)):
            model, cfg = load_classifier(classifier)
            self.image_size, self.channels = int(cfg["image_size"]), int(cfg["channels"])
        else:
            model, self.image_size, self.channels = classifier
        self.model = model.to(device).eval()
        self.threshold, self.batch_size, self.device = float(threshold), batch_size, torch.device(device)

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        images = resize_batch(convert_channels(images, self.channels), self.image_size)
        out = batched_logits(self.model, images, batch_size=self.batch_size, device=self.device)
        return torch.cat(out).softmax(1) if out else torch.zeros(0, 1)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        probs = self.probabilities(images)
        labels = labels.long().cpu()
        agree = probs.argmax(1) == labels
        confident = probs.gather(1, labels[:, None])[:, 0] >= self.threshold
        return agree & confident
