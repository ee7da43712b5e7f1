"""Loss helpers for training on real and synthetic items together.

``weighted_cross_entropy(logits, target, is_synthetic, synthetic_weight=0.3)`` is cross-entropy in which a
synthetic item counts ``synthetic_weight`` times a real one (with ``SyntheticDataset(...,
return_is_synthetic=True)``, whose items say which they are)::

    for images, labels, is_synthetic in loader:
        loss = weighted_cross_entropy(model(normalize(images)), labels, is_synthetic, synthetic_weight=0.3)

Normalisation: the mean over the batch of ``w_i * loss_i`` (``w = 1`` for a real item), i.e. divided by the
batch size, not by ``sum(w)``. So a synthetic item's weight is ``synthetic_weight`` in every batch, whatever
else the batch holds, and each real item contributes exactly what plain cross-entropy on the same batch gives
it: only the synthetic items' share of the gradient changes, which keeps the comparison with the unweighted
run clean. Dividing by ``sum(w)`` instead would raise the real items' weight whenever synthetic ones are
down-weighted, give a batch of synthetic items only its full weight back (``w`` cancels), and divide by zero
at ``synthetic_weight=0`` on such a batch. The price: the loss *value* falls as the synthetic share rises (it
is not comparable across weights); with AdamW, whose steps do not scale with the loss, this hardly matters.
With ``synthetic_weight=1`` it is ``torch.nn.functional.cross_entropy``.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..checks import check_float

__all__ = ["weighted_cross_entropy"]

OWNER = "weighted_cross_entropy"


def _flags(is_synthetic: Any, batch: int, device: torch.device) -> torch.Tensor:
    """``is_synthetic`` as a bool tensor ``(batch,)`` on ``device``: bools, or integers 0 and 1."""
    flags = torch.as_tensor(is_synthetic, device=device)
    if flags.shape != (batch,):
        raise ValueError(f"{OWNER}: is_synthetic has shape {tuple(flags.shape)} but the batch has {batch} items; give "
                         "one flag per item (the third element of SyntheticDataset(..., return_is_synthetic=True)'s "
                         "items, collated)")
    if flags.dtype != torch.bool:
        if flags.is_floating_point() or flags.is_complex() or not bool(((flags == 0) | (flags == 1)).all()):
            raise ValueError(f"{OWNER}: is_synthetic must hold bools (or 0 and 1), got {flags.dtype} values "
                             f"{flags.unique()[:5].tolist()}")
        flags = flags.bool()
    return flags


def weighted_cross_entropy(logits: torch.Tensor, target: torch.Tensor, is_synthetic: Any,
                           synthetic_weight: float = 0.3) -> torch.Tensor:
    """Cross-entropy over a batch with every synthetic item weighted ``synthetic_weight`` (real items 1):
    ``mean(w_i * cross_entropy_i)`` over the batch (see the module docstring for why not ``/ sum(w)``).

    Args:
        logits: ``(B, classes)`` model outputs.
        target: class ids ``(B,)`` (int64) or class probabilities ``(B, classes)`` (float), such as the soft
            labels of ``SyntheticDataset(..., teacher=TeacherLabels(model, mode="soft"))``.
        is_synthetic: ``(B,)`` bools (or 0/1): which items are synthetic.
        synthetic_weight: >= 0; 0 ignores the synthetic items, 1 is plain cross-entropy, 0.1-0.5 is usual.
    """
    weight = check_float(synthetic_weight, "synthetic_weight", OWNER, minimum=0,
                         hint="how much a synthetic item counts against a real one: 0 ignores it, 1 counts it "
                              "fully; 0.1-0.5 is usual")
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise ValueError(f"{OWNER}: logits must be a (batch, classes) tensor, got "
                         f"{tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__}")
    target = torch.as_tensor(target, device=logits.device)
    soft = target.is_floating_point()
    if target.shape != ((len(logits), logits.shape[1]) if soft else (len(logits),)):
        raise ValueError(f"{OWNER}: target has shape {tuple(target.shape)} ({target.dtype}) for logits "
                         f"{tuple(logits.shape)}; give class ids ({len(logits)},) or class probabilities "
                         f"({len(logits)}, {logits.shape[1]})")
    flags = _flags(is_synthetic, len(logits), logits.device)
    losses = F.cross_entropy(logits, target, reduction="none")
    weights = torch.where(flags, torch.full_like(losses, weight), torch.ones_like(losses))
    return (weights * losses).mean()
