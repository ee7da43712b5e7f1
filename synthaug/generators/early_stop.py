"""Early stopping of generator training: ``train_generator(..., stop_when=..., gate_every=N)`` calls
``stop_when(gen, step)`` every N steps (e.g. ``synthaug.quality.GateStopper``, the quality gate on validation
patients) without disturbing the training's random state, records each check and stops once one passes."""
from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch

from ..utils import append_jsonl
from .base import Generator

OWNER = "generator training"
#: what ``stop_when(gen, step)`` returns: a dict with at least ``passed`` (bool); see ``train_generator``
StopWhen = Callable[[Generator, int], dict]


def check_stop_when(stop_when: Any, gate_every: int) -> None:
    """``stop_when`` and ``gate_every`` go together: one without the other is a mistake worth saying."""
    if stop_when is not None and not callable(stop_when):
        raise TypeError(f"train_generator: stop_when={stop_when!r} must be a callable (gen, step) -> dict with "
                        "'passed', e.g. synthaug.quality.GateStopper(splits)")
    if gate_every and stop_when is None:
        raise ValueError(f"{OWNER}: gate_every={gate_every} checks stop_when every {gate_every} steps, "
                         "and no stop_when was given; pass stop_when=synthaug.quality.GateStopper(splits), or set "
                         "gate_every=0")
    if stop_when is not None and not gate_every:
        raise ValueError(f"{OWNER}: stop_when is given but gate_every=0, so it would never be called; set gate_every "
                         "to the steps between two checks (e.g. 500), or drop stop_when")


@contextmanager
def random_state_kept() -> Iterator[None]:
    """Put every random generator back as it was (torch, CUDA, numpy, Python): what a check draws (a CAS
    classifier seeds them all) must not change the training around it."""
    import random

    import numpy as np

    saved = (torch.get_rng_state(), np.random.get_state(), random.getstate(),
             torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None)
    try:
        yield
    finally:
        torch.set_rng_state(saved[0])
        np.random.set_state(saved[1])
        random.setstate(saved[2])
        if saved[3] is not None:
            torch.cuda.set_rng_state_all(saved[3])


def plain_json(value: Any) -> Any:
    """A JSON value (numpy numbers as numbers): what the training record and the resume state can hold."""
    return json.loads(json.dumps(value, default=lambda v: float(v) if hasattr(v, "__float__") else str(v)))


def decision_entry(record: Any, step: int) -> dict[str, Any]:
    """The check's entry of ``gate_checks``, from the decision record ``stop_when`` returned."""
    import numpy as np

    if not isinstance(record, dict) or not isinstance(record.get("passed"), (bool, np.bool_)):
        raise TypeError(f"train_generator: stop_when(gen, {step}) returned {record!r}; it must return a dict with "
                        "'passed' (True or False), e.g. synthaug.quality.GateStopper's decision record")
    return plain_json({"step": step, "passed": bool(record["passed"]), "cas_ratio": record.get("ratio"),
                   "weakest_class": record.get("weakest_class"),
                   "weakest_class_ratio": record.get("weakest_class_ratio"), "reason": record.get("reason")})


def check_gate(gen: Generator, step: int, stop_when: StopWhen, run: Any) -> bool:
    """Call ``stop_when`` at ``step`` (the main process decides, the others are told), record the check
    (training record, ``log.jsonl``); whether training stops here. ``run`` is the training loop's run state
    (``main``, ``writes``, ``out``, ``accelerator``, ``gate_checks``, ``stopped_early_at``)."""
    entry = None
    if run.main:
        with random_state_kept():
            gen.eval()
            try:
                entry = decision_entry(stop_when(gen, step), step)
            finally:
                gen.train()
    if run.accelerator.num_processes > 1:  # every process stops at the same step
        from accelerate.utils import broadcast_object_list

        entry = broadcast_object_list([entry])[0]
    run.gate_checks.append(entry)
    if run.writes:
        append_jsonl(run.out / "log.jsonl", {"step": step, "gate": entry})
    if entry["passed"]:
        run.stopped_early_at = step
    return entry["passed"]
