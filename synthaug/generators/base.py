"""The Generator contract, the registry, and checkpoints (safetensors + JSON, never pickle).

Every generator is registered with its options dataclass (see ``options.py``):
``@register_generator("cvae", options=CVAEOptions)``. ``create_generator`` checks the geometry and the
options once, then calls ``factory(num_classes=, image_size=, channels=, options=<the dataclass>)``.

A checkpoint (``gen.save_pretrained(dir)``, read by ``Generator.from_pretrained(dir)`` or
``load_generator(dir)``) is ``model.safetensors`` plus ``config.json``: the registered name and options
that rebuild the model (recorded at construction, so a registered class built directly saves too),
``class_names``, the ``training`` record and the versions. Checkpoints without the last ones still load.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import inspect
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checks import check_int, did_you_mean, is_int
from ..mix.items import class_ids_by_name
from ..utils import atomic_write_bytes, atomic_write_text
from .options import GeneratorOptions, build_options, check_declarations, markdown_table, option_defaults
from .precision import autocast

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

    What the model is travels with its weights (``save_pretrained`` / ``from_pretrained``): the
    registered name and options that rebuild it, ``class_names`` (what each label id means) and
    ``training_record`` (what it was trained on; ``train_generator`` fills both).
    """

    #: the registered name and the options that rebuild this model: recorded when a registered class
    #: is built directly, and set by ``create_generator`` (which knows the name it was asked for)
    generator_name: str = ""
    generator_options: dict[str, Any]
    #: what ``train_generator`` last did with this model (data set, fingerprint, steps, seconds, version)
    training_record: dict[str, Any] | None = None
    sample_batch_size: int = 256
    #: the precision ``sample`` runs the network in (``no``, ``bf16``, ``fp16``: autocast; a runtime setting, not
    #: saved with the model, so a pool sampled from a reloaded checkpoint is sampled as from the trained object:
    #: float32 unless asked). Training draws its sample grids in the training's precision.
    mixed_precision: str = "no"
    #: options that only change how the trained model samples (settable after training): a resumed training does
    #: not compare them with the saved state's
    sampling_settings: tuple[str, ...] = ()

    def __new__(cls, *args: Any, **kwargs: Any) -> "Generator":
        obj = super().__new__(cls)
        # Recorded before __init__ runs, from the arguments the user gave, so a model built as
        # ConditionalVAE(num_classes=..., options=CVAEOptions(...)) can be saved and rebuilt like one made
        # by create_generator (diffusers' register_to_config, without decorating every __init__).
        name, options = _construction_record(cls, args, kwargs)
        obj.__dict__["generator_name"] = name
        obj.__dict__["generator_options"] = options
        return obj

    def __init__(self, *, num_classes: int, image_size: int, channels: int, latent_dim: int) -> None:
        super().__init__()
        for arg, value in (("num_classes", num_classes), ("image_size", image_size), ("channels", channels),
                           ("latent_dim", latent_dim)):
            check_int(value, arg, type(self).__name__)
        self.num_classes = num_classes
        self.image_size = image_size
        self.channels = channels
        self.latent_dim = latent_dim
        self.__dict__.setdefault("generator_options", {})
        self._class_names: list[str] | None = None

    @property
    def class_names(self) -> list[str] | None:
        """The name of each class id (``class_names[i]`` for label ``i``), or None when unknown."""
        return self.__dict__.get("_class_names")

    @class_names.setter
    def class_names(self, names: Sequence[str] | None) -> None:
        self._class_names = check_class_names(names, self.num_classes)

    def class_ids(self, labels: Sequence[int | str], *, what: str = "labels") -> list[int]:
        """Class ids for ``labels`` given as ids or class names ("Parasitized", case-insensitive when unique).

        An unknown name gets a "did you mean" and the list of names; ``what`` names the argument in errors.
        """
        return class_ids_by_name(labels, self.class_names, self.num_classes, what=what, owner="this generator")

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
        return check_sample_labels(n, labels, self.num_classes)

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
                with autocast(self.mixed_precision, device):
                    x = self.generate(noise[start:stop].to(device), labels[start:stop].to(device))
                chunks.append(to_uint8(x.float()).cpu())
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
        """What ``config.json`` holds: how to rebuild the model, its class names and its training record."""
        from .._version import __version__

        return {"format": CHECKPOINT_FORMAT, "name": self.generator_name, "options": dict(self.generator_options),
                "class_names": self.class_names, "training": self.training_record,
                "synthaug_version": __version__, "torch_version": torch.__version__}

    def save_pretrained(self, directory: str | os.PathLike, *, quality: Any = None) -> Path:
        """Write ``model.safetensors`` (the weights), ``config.json`` (name, options, class names, training
        record, versions) and ``README.md`` (a Hub model card) into ``directory``, each atomically: the folder
        ``huggingface_hub.PyTorchModelHubMixin`` uses. ``quality``: a quality.json of ``synthaug evaluate
        --gate`` (path or dict) whose gate result the card records."""
        return self.save(directory, quality=quality)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, *, device: str | torch.device = "cpu") -> "Generator":
        """The generator saved in ``directory`` (by ``save_pretrained``, ``save`` or ``synthaug train``), or
        downloaded from the Hugging Face Hub when ``directory`` is a model id (``"org/name"``, ``hub.py``).

        ``Generator.from_pretrained`` loads any registered generator; on a subclass it also checks that
        the checkpoint holds that kind of model. Same as ``synthaug.load_generator`` for a folder.
        """
        from .hub import resolve_pretrained

        gen = load_generator(resolve_pretrained(directory), device=device)
        if not isinstance(gen, cls):
            raise TypeError(f"{directory} holds a {gen.generator_name!r} generator ({type(gen).__name__}), not a "
                            f"{cls.__name__}; load it with synthaug.Generator.from_pretrained or load_generator")
        return gen

    def save(self, directory: str | os.PathLike, *, quality: Any = None) -> Path:
        """Write ``model.safetensors``, ``config.json`` and the ``README.md`` model card into ``directory``
        (each atomically; ``save_pretrained``)."""
        from safetensors.torch import save

        from .hub import CARD_FILE, model_card, read_quality

        if not self.generator_name:
            raise ValueError(f"{type(self).__name__} is not a registered generator, so a checkpoint could not say "
                             "how to rebuild it: register the class with @synthaug.register_generator(name, "
                             "options=...) and build it directly or with synthaug.create_generator(name, ...)")
        config = json.dumps(self.config_dict(), indent=2, sort_keys=True)
        _check_rebuildable(self.generator_name, self.generator_options)  # before anything is written
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().clone().contiguous() for k, v in self.state_dict().items()}
        atomic_write_bytes(directory / WEIGHTS_FILE, save(state))
        atomic_write_text(directory / CONFIG_FILE, config)
        atomic_write_text(directory / CARD_FILE, model_card(self, quality=read_quality(quality)))
        return directory


def check_class_names(names: Sequence[str] | None, num_classes: int, owner: str = "class_names") -> list[str] | None:
    """``names`` as a list of ``num_classes`` distinct non-empty strings (or None: unknown)."""
    if names is None:
        return None
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
        raise ValueError(f"{owner}={names!r} must be a list of class names, one per class id")
    names = list(names)
    if not all(isinstance(n, str) for n in names):
        raise ValueError(f"{owner}={names!r} must hold strings (the name of each class id)")
    if len(names) != num_classes:
        raise ValueError(f"{owner}={names!r} names {len(names)} classes; the generator has {num_classes} classes")
    if any(not n.strip() for n in names):
        raise ValueError(f"{owner}={names!r}: a class name is empty; give every class a name")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"{owner}={names!r} names {twice} twice; each class needs its own name")
    return names


def _construction_record(cls: type, args: tuple, kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The registered name and the options that rebuild a ``cls`` built with ``args``, ``kwargs``;
    ``("", {})`` when ``cls`` is not registered itself or was built with something else than its options."""
    names = [name for name, factory in _REGISTRY.items() if factory is cls]
    if not names:
        return "", {}
    if args:  # constructors are keyword-only; a subclass that takes positionals is mapped onto its names
        try:
            kwargs = dict(inspect.signature(cls.__init__).bind(None, *args, **kwargs).arguments)
            kwargs.pop(next(iter(kwargs)))  # self
        except TypeError:
            return "", {}
    options = kwargs.get("options")
    fits = [n for n in names if (type(options) is _OPTIONS[n]) or (options is None and len(names) == 1)]
    geometry = {arg: kwargs.get(arg) for arg in ("num_classes", "image_size", "channels")}
    if len(fits) != 1 or None in geometry.values() or set(kwargs) - {"options", *geometry}:
        return "", {}
    name = fits[0]
    options = options if options is not None else _OPTIONS[name]()
    return name, {**geometry, **dataclasses.asdict(options)}


def _check_rebuildable(name: str, options: dict[str, Any]) -> None:
    """Refuse to save options that ``load_generator`` would refuse (a directly built model's are unchecked)."""
    rest = {k: v for k, v in options.items() if k not in ("num_classes", "image_size", "channels")}
    try:
        for arg in ("num_classes", "image_size", "channels"):
            check_int(options.get(arg), arg, name)
        build_options(_OPTIONS[name], rest, name)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"cannot save generator {name!r}: its options would not rebuild it ({err})") from err


def check_sample_labels(n: Any, labels: Any, num_classes: int, owner: str = "") -> torch.Tensor:
    """The labels of a ``sample(n, labels)`` call as a CPU long tensor: ``labels`` checked (1-D integers in
    ``[0, num_classes)``, ``n`` of them), or balanced ones (0, 1, ..., 0, 1, ...) when None."""
    where = f"{owner}: " if owner else ""
    if not is_int(n) or n < 0:
        raise ValueError(f"{where}n={n!r}: the number of samples must be a non-negative integer")
    if labels is None:
        return torch.arange(n, dtype=torch.long) % num_classes
    labels = torch.as_tensor(labels)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.ndim != 1 or len(labels) != n:
        raise ValueError(f"{where}labels must be a 1-D integer tensor of length n={n}, got {labels.dtype} "
                         f"{tuple(labels.shape)}")
    labels = labels.long().cpu()
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{where}labels must be class ids in [0, {num_classes}), got values from "
                         f"{int(labels.min())} to {int(labels.max())}")
    return labels


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] to uint8 (rounded, clamped)."""
    return (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)


# --------------------------------------------------------------------------- registry
_REGISTRY: dict[str, Callable[..., Generator]] = {}
_OPTIONS: dict[str, type[GeneratorOptions]] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register_generator(name: str, *, options: type[GeneratorOptions], description: str | None = None):
    """Decorator: register a Generator subclass or a factory function under ``name``.

    ``options`` is the generator's options dataclass; the factory is called as
    ``factory(num_classes=..., image_size=..., channels=..., options=<an instance, checked>)``.
    """
    check_declarations(options)

    def decorator(factory: Callable[..., Generator]):
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"a generator named {name!r} is registered already ({_REGISTRY[name]})")
        _REGISTRY[name] = factory
        _OPTIONS[name] = options
        _DESCRIPTIONS[name] = description or (inspect.getdoc(factory) or "").split("\n")[0]
        return factory
    return decorator


def list_generators(pattern: str = "*") -> list[str]:
    """Registered generator names matching a shell-style ``pattern``, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def describe_generator(name: str) -> str:
    return _DESCRIPTIONS.get(name, "")


def generator_options(name: str) -> dict[str, Any]:
    """The options a registered generator accepts, with their defaults."""
    _lookup(name)
    return option_defaults(_OPTIONS[name])


def options_class(name: str) -> type[GeneratorOptions]:
    """The options dataclass of a registered generator (to build its class directly, e.g.
    ``ConditionalVAE(num_classes=2, image_size=32, channels=3, options=options_class("cvae")(latent_dim=8))``)."""
    _lookup(name)
    return _OPTIONS[name]


def options_table(name: str) -> str:
    """The Markdown table of a registered generator's options (what docs/generators.md shows)."""
    _lookup(name)
    return markdown_table(_OPTIONS[name])


def _lookup(name: str) -> Callable[..., Generator]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown generator {name!r}{did_you_mean(name, _REGISTRY)}. Known: {list_generators()}")
    return _REGISTRY[name]


def create_generator(name: str, *, num_classes: int, image_size: int, channels: int, **options: Any) -> Generator:
    """Build the registered generator ``name`` for ``num_classes`` classes of ``channels`` x ``image_size``².

    ``options`` are checked against the generator's options dataclass (unknown names get a "did you
    mean"); the model records them as given, so ``save`` writes exactly what rebuilds it.
    """
    factory = _lookup(name)
    geometry = {arg: check_int(value, arg, name) for arg, value in
                (("num_classes", num_classes), ("image_size", image_size), ("channels", channels))}
    gen = factory(**geometry, options=build_options(_OPTIONS[name], options, name))
    if not isinstance(gen, Generator):
        raise TypeError(f"the factory registered as {name!r} returned {type(gen).__name__}, not a synthaug Generator")
    gen.generator_name = name
    gen.generator_options = {**geometry, **options}
    return gen


def load_generator(directory: str | os.PathLike, *, device: str | torch.device = "cpu") -> Generator:
    """Rebuild a generator from ``directory`` (``config.json`` + ``model.safetensors``); no pickle is read."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise FileNotFoundError(f"{directory} is not a synthaug generator checkpoint: it needs {CONFIG_FILE} and "
                                f"{WEIGHTS_FILE} (made by gen.save_pretrained(directory) or `synthaug train`)")
    try:
        config = json.loads(config_path.read_text())
        name, options = config["name"], config["options"]
        if not isinstance(name, str) or not isinstance(options, dict):
            raise TypeError("name must be a string and options an object")
        # checkpoints written before these were recorded have neither: the model just does not know
        class_names, record = config.get("class_names"), config.get("training")
        if record is not None and not isinstance(record, dict):
            raise TypeError(f"training must be an object, got {record!r}")
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{config_path}: not a valid generator config ({err})") from err
    if name not in _REGISTRY:
        raise ValueError(f"{config_path} names generator {name!r}, which is not registered"
                         f"{did_you_mean(name, _REGISTRY)}. Refusing to load it.")
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
    try:
        gen.class_names = class_names
    except ValueError as err:
        raise ValueError(f"{config_path}: {err}; fix or remove class_names there") from err
    gen.training_record = record
    return gen.to(device).eval()
