"""Training state on disk without pickle: tensors in safetensors, everything else in JSON.

A state folder is written whole into a temporary folder and then swapped in with renames, so a
crash (even SIGKILL) leaves either the previous state or the new one.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

TENSORS = "tensors.safetensors"
META = "state.json"


def _split(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in a nested dict/list by a reference and collect it in ``tensors``."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().clone().contiguous()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        if not all(isinstance(k, (str, int)) for k in obj):
            raise TypeError(f"state keys must be str or int at {prefix!r}")
        return {"__dict__": [[k, _split(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"__list__": [_split(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)],
                "tuple": isinstance(obj, tuple)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix!r} without pickle")


def _join(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {k: _join(v, tensors) for k, v in obj["__dict__"]}
        if "__list__" in obj:
            items = [_join(v, tensors) for v in obj["__list__"]]
            return tuple(items) if obj.get("tuple") else items
    return obj


def save_state(directory: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` (nested dicts / lists of tensors and JSON values) as ``directory`` atomically."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    meta = _split(state, "s", tensors)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        save_file(tensors, str(tmp / TENSORS))
        (tmp / META).write_text(json.dumps(meta))
        for f in (TENSORS, META):
            with open(tmp / f, "rb") as fh:
                os.fsync(fh.fileno())
        from .utils import make_public

        make_public(tmp)
        old = directory.with_name(directory.name + ".old")
        if directory.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_state(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The state saved by ``save_state`` (falling back to the previous one if a swap was cut short); None if none."""
    from safetensors.torch import load_file

    directory = Path(directory)
    for candidate in (directory, directory.with_name(directory.name + ".old")):
        if (candidate / META).is_file() and (candidate / TENSORS).is_file():
            meta = json.loads((candidate / META).read_text())
            return _join(meta, load_file(str(candidate / TENSORS)))
    return None


def saved_step(directory: str | os.PathLike) -> int | None:
    """The ``step`` a state saved by ``save_state`` records (the previous state if a swap was cut short), read
    without loading its tensors; None when there is none."""
    directory = Path(directory)
    for candidate in (directory, directory.with_name(directory.name + ".old")):
        if (candidate / META).is_file() and (candidate / TENSORS).is_file():
            try:
                meta = json.loads((candidate / META).read_text())
                step = dict(meta["__dict__"]).get("step")
            except (OSError, ValueError, KeyError, TypeError):
                continue
            return step if isinstance(step, int) else None
    return None
