"""Teacher labels: synthetic images relabelled by a classifier trained on the real images only.

A conditional generator's label says what the image was asked to be, not what it shows. A *teacher*, a
classifier trained on the real training images alone, says what it shows:

- ``mode="soft"``: the label becomes the teacher's class probabilities at a ``temperature``
  (``softmax(logits / T)``; T > 1 spreads them, as in knowledge distillation, Hinton et al. 2015);
- ``mode="hard"``: the label becomes the teacher's most likely class;
- dropping the images the teacher disagrees with is ``ClassifierFilter`` (``quality_filter=``), not a mode.

``SyntheticDataset(gen, 0.3, real=train, teacher=TeacherLabels(model, mode="soft", temperature=2.0))`` runs
the teacher once per pool, in the process that samples the pool, and keeps its logits with the pool (in
``pool_dir`` too, whose recipe then names the teacher's weights). ``distill_targets(model, images, T)`` is
the same distillation for any images, e.g. the real ones (the control that tells a gain from synthetic
images apart from a gain of self-distillation).
"""
from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

import numpy as np
import torch

from ..checks import check_choice, check_float, check_int
from ..classifier import batched_logits, load_classifier
from ..data.imageio import convert_channels, resize_batch
from .pool import check_device, weights_fingerprint

__all__ = ["TeacherLabels", "distill_targets", "labels_from_logits", "teacher_logits", "teacher_report", "one_hot",
           "encode_array", "decode_array"]

OWNER = "TeacherLabels"
MODES = ("soft", "hard")
DEFAULT_TEMPERATURE = 2.0


def _open(teacher: Any) -> tuple[torch.nn.Module, int | None, int | None]:
    """``(model, image_size, channels)`` of a checkpoint folder, a ``(model, image_size, channels)`` tuple (the
    forms ``ClassifierFilter`` takes) or a bare model (then images are given to it as they come)."""
    if isinstance(teacher, (str, os.PathLike)):
        model, cfg = load_classifier(teacher)
        return model, int(cfg["image_size"]), int(cfg["channels"])
    if isinstance(teacher, tuple) and len(teacher) == 3 and isinstance(teacher[0], torch.nn.Module):
        model, size, channels = teacher
        return (model, check_int(size, "image_size", OWNER, minimum=1),
                check_int(channels, "channels", OWNER, minimum=1, maximum=3))
    if isinstance(teacher, torch.nn.Module):
        return teacher, None, None
    raise ValueError(f"{OWNER}: teacher={type(teacher).__name__} must be a classifier trained on the real training "
                     "images only: a torch model, a (model, image_size, channels) tuple, or a checkpoint folder "
                     "written by synthaug.classifier.save_classifier")


class TeacherLabels:
    """Labels for synthetic images from a teacher classifier trained on the real training images only.

    Args:
        teacher: a torch model (it gets the images as they come, uint8 in the data set's format), a
            ``(model, image_size, channels)`` tuple or a classifier checkpoint folder (images are resized and
            converted to that format first), the forms ``ClassifierFilter`` takes.
        mode: ``"soft"`` (class probabilities at ``temperature``) or ``"hard"`` (the teacher's argmax).
        temperature: soft mode only, > 0 (default 2.0); 1 gives the teacher's own probabilities.
        batch_size: images per forward pass.
        device: where the teacher runs (the model is moved there); default: where its weights are.

    The teacher runs batched, under ``torch.no_grad``, in eval mode (the model's mode is restored afterwards,
    so a model still being trained is left as it was), on the classifier's normalisation
    (``synthaug.classifier.normalize``, as ``ClassifierFilter`` feeds its model).
    """

    def __init__(self, teacher: Any, *, mode: str = "soft", temperature: float | None = None, batch_size: int = 256,
                 device: str | torch.device | None = None) -> None:
        self.mode = check_choice(mode, "mode", OWNER, MODES,
                                 hint="to drop the images the teacher disagrees with, use "
                                      "quality_filter=ClassifierFilter(...) instead")
        if mode == "hard" and temperature is not None:
            raise ValueError(f"{OWNER}: temperature={temperature!r} applies to mode='soft' only; a hard label is the "
                             "teacher's most likely class at any temperature: leave temperature out")
        self.temperature = None if mode == "hard" else check_float(
            DEFAULT_TEMPERATURE if temperature is None else temperature, "temperature", OWNER, minimum=0,
            min_inclusive=False, hint="softens the teacher's probabilities: 1 keeps them, 2-4 is usual")
        self.batch_size = check_int(batch_size, "batch_size", OWNER, minimum=1)
        self.model, self.image_size, self.channels = _open(teacher)
        if device is not None:
            self.model.to(check_device(device, OWNER))

    @property
    def device(self) -> torch.device:
        """Where the teacher runs: where its weights are (read at every call, so a moved model is followed)."""
        first = next(self.model.parameters(), None)
        return first.device if first is not None else torch.device("cpu")

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """The teacher's logits ``(N, classes)``, float32 on the CPU, for uint8 images ``(N, C, H, W)``."""
        images = torch.as_tensor(images)
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"{OWNER}: images must be uint8 (N, C, H, W), as synthaug's items are; got "
                             f"{images.dtype} {tuple(images.shape)}")
        if self.image_size is not None:
            images = resize_batch(convert_channels(images, self.channels), self.image_size)
        out = batched_logits(self.model, images, batch_size=self.batch_size, device=self.device)
        if not out:
            return torch.zeros(0, 0)
        logits = torch.cat(out)
        if logits.ndim != 2:
            raise ValueError(f"{OWNER}: the teacher returned shape {tuple(logits.shape)} for {len(images)} images; "
                             "it must return logits (N, classes)")
        return logits

    def from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Labels from logits: float32 probabilities ``(N, classes)`` (soft) or int64 class ids ``(N,)`` (hard)."""
        return torch.from_numpy(labels_from_logits(torch.as_tensor(logits).detach().float().cpu().numpy(), self.mode,
                                                   self.temperature))

    def targets(self, images: torch.Tensor) -> torch.Tensor:
        """The teacher's labels for uint8 images ``(N, C, H, W)`` (see ``from_logits``)."""
        return self.from_logits(self.logits(images))

    def fingerprint(self) -> str:
        """What the logits depend on: the weights (``weights_fingerprint``) and the input format. Not the mode
        or temperature, which apply to stored logits, so one pool serves every temperature."""
        digest = hashlib.sha256(str(weights_fingerprint(self.model)).encode())
        digest.update(f"{type(self.model).__qualname__} {self.image_size} {self.channels} normalize".encode())
        return digest.hexdigest()

    def __repr__(self) -> str:
        setting = "mode='hard'" if self.mode == "hard" else f"mode='soft', temperature={self.temperature:g}"
        return f"TeacherLabels({type(self.model).__name__}, {setting})"


def distill_targets(teacher: Any, images: torch.Tensor, temperature: float = DEFAULT_TEMPERATURE, *,
                    batch_size: int = 256) -> torch.Tensor:
    """The teacher's class probabilities at ``temperature`` for uint8 images ``(N, C, H, W)``: the soft labels
    ``TeacherLabels(teacher, mode="soft", temperature=temperature)`` gives synthetic images, for any images.

    For the real images this is the self-distillation control: train once on
    ``TensorDataset(real_images, distill_targets(teacher, real_images))`` (no synthetic images), so a gain of
    distillation alone is not credited to the synthetic ones. ``teacher``: what ``TeacherLabels`` takes.
    """
    return TeacherLabels(teacher, mode="soft", temperature=temperature, batch_size=batch_size).targets(images)


def labels_from_logits(logits: np.ndarray, mode: str, temperature: float | None) -> np.ndarray:
    """float32 probabilities ``softmax(logits / temperature)`` (``"soft"``) or int64 argmax (``"hard"``)."""
    logits = np.asarray(logits, dtype=np.float32)
    if mode == "hard":
        return logits.argmax(1).astype(np.int64)
    return torch.from_numpy(logits / np.float32(temperature)).softmax(1).numpy()


def teacher_logits(teacher: TeacherLabels, images: Any, *, channels: int, image_size: int,
                   classes: list[str]) -> np.ndarray:
    """The teacher's logits for uint8 pool images ``(N, C, H, W)`` (array, memory map or tensor), shown to it as
    the classifier gets them (``channels``, ``image_size``), a few thousand at a time; refuses a teacher with
    another number of classes than ``classes``."""
    chunks = []
    for start in range(0, len(images), 4096):
        part = torch.as_tensor(np.asarray(images[start:start + 4096]))
        chunks.append(teacher.logits(resize_batch(convert_channels(part, channels), image_size)))
    logits = torch.cat(chunks).numpy() if chunks else np.zeros((0, len(classes)), np.float32)
    if logits.shape[1] != len(classes):
        raise ValueError(f"{OWNER}: the teacher predicts {logits.shape[1]} classes but the data set has "
                         f"{len(classes)} ({classes}); train the teacher on this data set's real training images")
    return logits


def teacher_report(logits: np.ndarray, labels: np.ndarray, rows: np.ndarray, classes: list[str], *,
                   teacher: str) -> dict[str, Any]:
    """How often the teacher's most likely class is the generator's label, over pool ``rows``, overall and per
    class (of the generator's label): a low agreement means the generator draws what it was not asked for, or
    that the teacher cannot tell."""
    agree = logits[rows].argmax(1) == labels[rows]
    per_class = {name: float(agree[labels[rows] == c].mean()) for c, name in enumerate(classes)
                 if np.any(labels[rows] == c)}
    return {"teacher": teacher, "images": int(len(rows)),
            "agreement": float(agree.mean()) if len(rows) else float("nan"), "agreement_per_class": per_class}


def one_hot(label: int, num_classes: int) -> torch.Tensor:
    """A float32 ``(num_classes,)`` probability vector with all its mass on ``label``."""
    out = torch.zeros(num_classes, dtype=torch.float32)
    out[label] = 1.0
    return out


def encode_array(array: np.ndarray) -> dict[str, Any]:
    """A float32 array as JSON-ready text (base64 of its bytes), exact and compact, for a pool's ``pool.json``."""
    array = np.ascontiguousarray(array, dtype="<f4")
    return {"dtype": "float32", "shape": list(array.shape), "base64": base64.b64encode(array.tobytes()).decode()}


def decode_array(data: dict[str, Any]) -> np.ndarray:
    """The array ``encode_array`` wrote."""
    raw = base64.b64decode(data["base64"])
    return np.frombuffer(raw, dtype="<f4").reshape(data["shape"]).astype(np.float32)
