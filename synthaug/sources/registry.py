"""The registry of source kinds and the specs that name a source in configs and on the command line."""
from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..checks import did_you_mean
from ..mix.pool import SyntheticPool, is_pool, load_pool
from .callable import CallableSource
from .contract import is_checkpoint, match_classes
from .folder import FolderSource, is_class_folder

__all__ = ["SourceContext", "register_source", "list_sources", "source_kind", "open_source_spec", "open_source"]


@dataclass(frozen=True)
class SourceContext:
    """What the caller knows of the real data: its class names and image format (defaults for a source that
    does not say, e.g. a callable's classes) and where to load a model."""

    classes: Sequence[str] | None = None
    image_size: int | None = None
    channels: int | None = None
    device: Any = None


SourceOpener = Callable[..., Any]
_OPENERS: dict[str, SourceOpener] = {}


def register_source(kind: str) -> Callable[[SourceOpener], SourceOpener]:
    """Register ``opener(value, context, *, option=default, ...) -> source`` for specs ``{kind: value, option: ...}``
    (its keyword-only parameters are the options a spec may give; others are refused by name)."""
    def decorator(opener: SourceOpener) -> SourceOpener:
        _OPENERS[kind] = opener
        return opener

    return decorator


def list_sources() -> list[str]:
    """The registered source kinds."""
    return sorted(_OPENERS)


def _import_callable(value: Any) -> Callable[..., Any]:
    if callable(value):
        return value
    text = str(value)
    module, _, attr = text.partition(":")
    if not module or not attr:
        raise ValueError(f"callable {text!r}: write it as 'package.module:function' (a function fn(n, labels) -> "
                         "uint8 images)")
    try:
        found: Any = importlib.import_module(module)
        for part in attr.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"callable {text!r}: cannot import it ({err}); the module must be importable (installed, or "
                         "on PYTHONPATH)") from err
    return found


@register_source("folder")
def _open_folder(value: Any, context: SourceContext, *, image_size: int | None = None,
                 channels: int | None = None, on_bad_file: str = "error") -> FolderSource:
    return FolderSource(value, image_size=image_size or context.image_size, channels=channels or context.channels,
                        on_bad_file=on_bad_file)


@register_source("callable")
def _open_callable(value: Any, context: SourceContext, *, classes: Sequence[str] | None = None,
                   image_size: int | None = None, channels: int | None = None,
                   name: str | None = None) -> CallableSource:
    found = _import_callable(value)
    if callable(getattr(found, "sample", None)) and hasattr(found, "num_classes"):
        return found  # a ready source object, e.g. CallableSource(fn, classes=[...]) defined in the module
    classes = classes if classes is not None else context.classes
    if classes is None:
        raise ValueError(f"callable {value!r}: its classes are not known here; give classes: [...] beside it, or "
                         "point at a source object in your module instead, e.g. source = CallableSource(fn, "
                         "classes=['Parasitized', 'Uninfected']) and callable:package.module:source")
    return CallableSource(found, classes=classes, image_size=image_size or context.image_size,
                          channels=channels or context.channels, name=name)


@register_source("checkpoint")
def _open_checkpoint(value: Any, context: SourceContext, *, guidance: float | None = None,
                     sample_steps: int | None = None, sampler: str | None = None, eta: float | None = None) -> Any:
    """A saved generator; ``guidance``, ``sample_steps``, ``sampler``, ``eta``: sampling settings that replace
    those it was saved with (e.g. the guidance chosen on validation), for generators that have them (ddpm)."""
    from ..generators import load_generator

    gen = load_generator(value, device=context.device or "cpu")
    given = {k: v for k, v in (("guidance", guidance), ("sample_steps", sample_steps), ("sampler", sampler),
                               ("eta", eta)) if v is not None}
    known = getattr(gen, "sampling_settings", ())
    for name, setting in given.items():
        if name not in known:
            raise ValueError(f"source checkpoint {os.fspath(value)!r}: a {gen.generator_name} has no sampling setting "
                             f"{name!r} (it has {list(known) or 'none'}); leave it out")
        setattr(gen, name, setting)  # checked by the generator
    return gen


@register_source("pool")
def _open_pool(value: Any, context: SourceContext) -> Any:
    return load_pool(value)


@register_source("diffusers")
def _open_diffusers(value: Any, context: SourceContext, *, classes: Sequence[str] | None = None, steps: int = 50,
                    guidance_scale: float | None = None, image_size: int | None = None,
                    channels: int | None = None) -> Any:
    from .diffusion_pipeline import DiffusersSource

    return DiffusersSource.from_pretrained(value, classes=classes if classes is not None else context.classes,
                                           device=context.device, steps=steps, guidance_scale=guidance_scale,
                                           image_size=image_size, channels=channels)


def _kind_of_path(path: Any) -> str:
    if is_pool(path):
        return "pool"
    if is_checkpoint(path):
        return "checkpoint"
    if is_class_folder(path):
        return "folder"
    if not Path(path).expanduser().exists():
        raise FileNotFoundError(f"source {os.fspath(path)!r} does not exist; give a pool folder, a generator "
                                "checkpoint, a folder of class folders, or a spec such as folder:PATH")
    inner = Path(path).expanduser() / "checkpoint"
    hint = f"; did you mean {os.fspath(inner)!r} (a training run's checkpoint)?" if is_checkpoint(inner) else ""
    raise ValueError(f"source {os.fspath(path)!r} is neither a pool folder, a generator checkpoint nor a folder of "
                     f"class folders (<folder>/<class name>/<images>){hint}")


def _split_spec(spec: Any) -> tuple[str, Any, dict[str, Any]]:
    """``(kind, value, options)`` of a spec: a mapping, ``kind:value`` text, or a bare path."""
    if isinstance(spec, dict):
        kinds = [k for k in spec if k in _OPENERS]
        if len(kinds) != 1:
            unknown = [k for k in spec if k not in _OPENERS]
            hint = did_you_mean(unknown[0], list_sources()) if unknown else ""
            raise ValueError(f"source {spec!r}: name exactly one kind of source ({', '.join(list_sources())}) with "
                             f"its value, e.g. {{folder: exports/cvae}}{hint}")
        options = {k: v for k, v in spec.items() if k != kinds[0]}
        return kinds[0], spec[kinds[0]], options
    if isinstance(spec, str):
        kind, sep, rest = spec.partition(":")
        if sep and kind in _OPENERS:
            return kind, rest, {}
    if isinstance(spec, (str, os.PathLike)):
        return _kind_of_path(spec), spec, {}
    raise ValueError(f"source {spec!r}: give a mapping such as {{folder: PATH}}, text such as folder:PATH, or a path")


def source_kind(spec: Any) -> str:
    """The kind a spec names (``folder``, ``callable``, ...), checked without opening the source."""
    return _split_spec(spec)[0]


def open_source_spec(spec: Any, *, classes: Sequence[str] | None = None, image_size: int | None = None,
                     channels: int | None = None, device: Any = None) -> Any:
    """The source a spec describes (see the module docstring), with its classes matched to ``classes`` (the
    real data set's names) when they are given. ``image_size`` / ``channels``: the real data's format, the
    default of a folder's or callable's. Options a kind does not take are refused, naming the ones it takes."""
    kind, value, options = _split_spec(spec)
    opener = _OPENERS[kind]
    accepted = [name for name, p in inspect.signature(opener).parameters.items()
                if p.kind == inspect.Parameter.KEYWORD_ONLY]  # an opener declares its options, keyword-only
    unknown = [k for k in options if k not in accepted]
    if unknown:
        raise ValueError(f"source {kind}: unknown option {unknown[0]!r}{did_you_mean(unknown[0], accepted)}; "
                         f"{kind} takes {accepted or 'no options'}")
    context = SourceContext(classes=classes, image_size=image_size, channels=channels, device=device)
    return match_classes(opener(value, context, **options), classes)


def open_source(gen: Any, *, device: Any = None) -> tuple[SyntheticPool | None, Any]:
    """``(pool, None)`` for a pool or pool folder, ``(None, source)`` for a generator, a checkpoint folder (loaded
    on ``device``, default the CPU) or another source (a folder of class folders, a spec: ``synthaug.sources``)."""
    if isinstance(gen, SyntheticPool):
        return gen, None
    if isinstance(gen, (str, os.PathLike, dict)):  # a path or a source spec
        gen = open_source_spec(gen, device=device)
        if isinstance(gen, SyntheticPool):
            return gen, None
    if not callable(getattr(gen, "sample", None)) or not hasattr(gen, "num_classes"):
        raise TypeError(f"gen must be a synthaug generator, a source (a folder of class folders, a CallableSource, "
                        f"...), a checkpoint folder or a pool, got {type(gen).__name__}")
    return None, gen
