"""The Generator contract, the registry, and checkpoints (safetensors + JSON, never pickle)."""
from __future__ import annotations

import fnmatch
import inspect
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..utils import atomic_write_bytes, atomic_write_text, did_you_mean

#: ``step(optimizer, loss, name)``: the optimizer step ``Generator.training_step`` calls
StepFn = Callable[[torch.optim.Optimizer, torch.Tensor, str], None]

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CHECKPOINT_FORMAT = 1


class Generator(nn.Module):
    """Base class of every synthaug generator.

    Attributes: ``num_classes``, ``image_size``, ``channels``, ``latent_dim``.
    ``sample(n, labels=None, *, generator=None)`` returns a uint8 tensor ``(n, channels, image_size,
    image_size)`` on the CPU. Subclasses implement ``generate(noise, labels) -> float images in
    [0, 1]`` and ``forward(images, labels) -> dict of losses with a "loss" key`` (images in [0, 1]),
    and may override ``sample_noise`` and ``configure_optimizers``.
    """

    #: set by ``create_generator``: the registered name and the options that rebuild this model
    generator_name: str = ""
    generator_options: dict[str, Any]
    sample_batch_size: int = 256

    def __init__(self, *, num_classes: int, image_size: int, channels: int, latent_dim: int) -> None:
        super().__init__()
        for arg, value in (("num_classes", num_classes), ("image_size", image_size), ("channels", channels),
                           ("latent_dim", latent_dim)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{type(self).__name__}: {arg}={value!r} must be a positive integer")
        self.num_classes = num_classes
        self.image_size = image_size
        self.channels = channels
        self.latent_dim = latent_dim
        self.generator_options = {}

    # ----------------------------------------------------------------- contract
    def generate(self, noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample_noise(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Latent noise for ``n`` samples, drawn on the CPU so results do not depend on the device."""
        return torch.randn(n, self.latent_dim, generator=generator)

    def configure_optimizers(self, lr: float) -> list[torch.optim.Optimizer]:
        """The optimizers ``training_step`` receives, in order (default: one Adam over all parameters)."""
        return [torch.optim.Adam(self.parameters(), lr=lr)]

    def training_step(self, images: torch.Tensor, labels: torch.Tensor, optimizers: list[torch.optim.Optimizer],
                      step: "StepFn") -> dict[str, torch.Tensor]:
        """One training iteration on a batch (images float in [0, 1]); returns the losses to log.

        The default computes ``self(images, labels)`` and takes one step on ``losses["loss"]`` with the
        first optimizer. Models with several optimizers (GANs) override this and call
        ``step(optimizer, loss, "name")`` once per optimizer: ``step`` checks that the loss and the
        gradients are finite, zeroes, back-propagates, averages gradients across processes and steps.
        """
        losses = self(images, labels)
        step(optimizers[0], losses["loss"], "loss")
        return losses

    def lr_scale(self, epoch: int) -> float:
        """Multiplier of every optimizer's initial learning rate during ``epoch`` (0-based); default 1."""
        return 1.0

    def check_labels(self, n: int, labels: torch.Tensor | None) -> torch.Tensor:
        """Validate ``labels`` (or make balanced ones: 0, 1, ..., 0, 1, ...) for ``n`` samples."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"n={n!r}: the number of samples must be a non-negative integer")
        if labels is None:
            return torch.arange(n, dtype=torch.long) % self.num_classes
        labels = torch.as_tensor(labels)
        if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.ndim != 1 or len(labels) != n:
            raise ValueError(f"labels must be a 1-D integer tensor of length n={n}, got {labels.dtype} "
                             f"{tuple(labels.shape)}")
        labels = labels.long().cpu()
        if n and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"labels must be class ids in [0, {self.num_classes}), got values from "
                             f"{int(labels.min())} to {int(labels.max())}")
        return labels

    @torch.no_grad()
    def sample(self, n: int, labels: torch.Tensor | None = None, *,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images as uint8 ``(n, channels, image_size, image_size)``; same generator state, same images."""
        labels = self.check_labels(n, labels)
        noise = self.sample_noise(n, generator=generator)
        device = self.device
        was_training = self.training
        self.eval()
        try:
            chunks = []
            for start in range(0, n, self.sample_batch_size):
                stop = start + self.sample_batch_size
                x = self.generate(noise[start:stop].to(device), labels[start:stop].to(device))
                chunks.append(to_uint8(x).cpu())
        finally:
            self.train(was_training)
        if not chunks:
            return torch.zeros(0, self.channels, self.image_size, self.image_size, dtype=torch.uint8)
        return torch.cat(chunks)

    @property
    def device(self) -> torch.device:
        try:
            return next(self.parameters()).device
        except StopIteration:
            return torch.device("cpu")

    # ----------------------------------------------------------------- checkpoints
    def config_dict(self) -> dict[str, Any]:
        from .. import __version__

        return {"format": CHECKPOINT_FORMAT, "name": self.generator_name, "options": dict(self.generator_options),
                "synthaug_version": __version__, "torch_version": torch.__version__}

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``model.safetensors`` and ``config.json`` into ``directory`` (each atomically)."""
        from safetensors.torch import save

        if not self.generator_name:
            raise ValueError("this generator was not made by create_generator(), so it has no registered name to "
                             "save; build it with synthaug.create_generator(name, ...)")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().clone().contiguous() for k, v in self.state_dict().items()}
        atomic_write_bytes(directory / WEIGHTS_FILE, save(state))
        atomic_write_text(directory / CONFIG_FILE, json.dumps(self.config_dict(), indent=2, sort_keys=True))
        return directory


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] to uint8 (rounded, clamped)."""
    return (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)


# --------------------------------------------------------------------------- registry
_REGISTRY: dict[str, Callable[..., Generator]] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register_generator(name: str, *, description: str | None = None):
    """Decorator: register a Generator subclass or a factory function under ``name``."""
    def decorator(factory: Callable[..., Generator]):
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"a generator named {name!r} is registered already ({_REGISTRY[name]})")
        _REGISTRY[name] = factory
        doc = description or (inspect.getdoc(factory) or "").split("\n")[0]
        _DESCRIPTIONS[name] = doc
        return factory
    return decorator


def list_generators(pattern: str = "*") -> list[str]:
    """Registered generator names matching a shell-style ``pattern``, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def describe_generator(name: str) -> str:
    return _DESCRIPTIONS.get(name, "")


def generator_options(name: str) -> dict[str, Any]:
    """The options a registered generator accepts, with their defaults."""
    factory = _lookup(name)
    sig = inspect.signature(factory)
    return {p.name: (None if p.default is inspect.Parameter.empty else p.default)
            for p in sig.parameters.values() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def _lookup(name: str) -> Callable[..., Generator]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown generator {name!r}.{did_you_mean(name, _REGISTRY)} Known: {list_generators()}")
    return _REGISTRY[name]


def create_generator(name: str, *, num_classes: int, image_size: int, channels: int, **options: Any) -> Generator:
    """Build the registered generator ``name`` for ``num_classes`` classes of ``channels`` x ``image_size``²."""
    factory = _lookup(name)
    sig = inspect.signature(factory)
    if not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        accepted = set(sig.parameters) - {"num_classes", "image_size", "channels"}
        for key in options:
            if key not in accepted:
                raise ValueError(f"generator {name!r} has no option {key!r}.{did_you_mean(key, accepted)} "
                                 f"Its options: {sorted(accepted)}")
    gen = factory(num_classes=num_classes, image_size=image_size, channels=channels, **options)
    if not isinstance(gen, Generator):
        raise TypeError(f"the factory registered as {name!r} returned {type(gen).__name__}, not a synthaug Generator")
    gen.generator_name = name
    gen.generator_options = {"num_classes": num_classes, "image_size": image_size, "channels": channels, **options}
    return gen


def load_generator(directory: str | os.PathLike, *, device: str | torch.device = "cpu") -> Generator:
    """Rebuild a generator from ``directory`` (``config.json`` + ``model.safetensors``); no pickle is read."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise FileNotFoundError(f"{directory} is not a synthaug generator checkpoint: it needs {CONFIG_FILE} and "
                                f"{WEIGHTS_FILE} (made by gen.save(directory) or `synthaug train`)")
    try:
        config = json.loads(config_path.read_text())
        name, options = config["name"], config["options"]
        if not isinstance(name, str) or not isinstance(options, dict):
            raise TypeError("name must be a string and options an object")
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{config_path}: not a valid generator config ({err})") from err
    if name not in _REGISTRY:
        raise ValueError(f"{config_path} names generator {name!r}, which is not registered.{did_you_mean(name, _REGISTRY)}"
                         " Refusing to load it.")
    options = dict(options)
    try:
        gen = create_generator(name, num_classes=options.pop("num_classes"), image_size=options.pop("image_size"),
                               channels=options.pop("channels"), **options)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{config_path}: cannot build generator {name!r} from its options ({err})") from err
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{weights_path}: not a readable safetensors file ({err})") from err
    expected = gen.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k}: {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        raise ValueError(f"{weights_path} does not fit generator {name!r} built from {config_path}: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shapes {wrong[:5]}")
    gen.load_state_dict(state, strict=True)
    return gen.to(device).eval()
