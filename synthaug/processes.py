"""Which processes run a classifier's work: Accelerate's (one CPU, one GPU or many), or this process alone
(``single_process``, ``LocalAccelerator``) for work only the main process of a multi-process run does."""
from __future__ import annotations

from typing import Any

import torch


class LocalAccelerator:
    """The part of ``accelerate.Accelerator`` that ``train_classifier`` and ``predict`` use, for one process
    alone: no wrapping, no gathering. For work that only the main process of a multi-process run does
    (sample-quality metrics), where a distributed ``prepare`` would wait for the other processes forever."""

    process_index, num_processes, is_main_process = 0, 1, True

    def __init__(self, device: Any = "cpu") -> None:
        self.device = torch.device(device)

    def prepare(self, *objects: Any) -> Any:
        out = tuple(o.to(self.device) if isinstance(o, torch.nn.Module) else o for o in objects)
        return out[0] if len(out) == 1 else out

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def unwrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def gather_for_metrics(self, data: Any) -> Any:
        return data

    def free_memory(self, *objects: Any) -> None:
        return None


_LOCAL_DEVICE: list[Any] = []  # set by single_process(): the default accelerator is then a LocalAccelerator


def default_accelerator() -> Any:
    """``accelerate.Accelerator()``, or a ``LocalAccelerator`` inside ``with single_process(device):``."""
    if _LOCAL_DEVICE:
        return LocalAccelerator(_LOCAL_DEVICE[-1])
    from accelerate import Accelerator

    return Accelerator()


class single_process:
    """``with single_process(device):`` classifiers trained and evaluated inside use this process only."""

    def __init__(self, device: Any = "cpu") -> None:
        self.device = device

    def __enter__(self) -> "single_process":
        _LOCAL_DEVICE.append(self.device)
        return self

    def __exit__(self, *exc: Any) -> None:
        _LOCAL_DEVICE.pop()
