"""One optimizer step of generator training, as ``Generator.training_step`` calls it: finiteness checks, backward
in the run's precision, gradients averaged across processes, the step."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from .precision import Precision

#: under fp16, optimizer steps in a row whose gradients overflowed before the run counts as diverged (the scaler
#: halves its scale at each: 30 halvings take the default 65536 below 1e-4)
MAX_OVERFLOWS = 30


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; training stopped and the last good checkpoint is kept."""


def kept_note(out: Path | None) -> str:
    return f"; the last good checkpoint in {out / 'checkpoint'} is kept" if out is not None else ""


def precision_state(precision: Precision) -> dict[str, Any]:
    """The precision's part of the resume state: nothing for float32 (states stay as they were before mixed
    precision existed), else the precision and the fp16 loss scale."""
    return {} if precision.precision == "no" else {"precision": precision.state_dict()}


class OptimizerStep:
    """The ``step(optimizer, loss, name)`` given to ``Generator.training_step``: checks that the loss is
    finite, zeroes, back-propagates (outside autocast; scaled under fp16), averages gradients across
    processes, unscales them, checks that they are finite, and steps. Raises ``NonFiniteLossError`` before any
    update; under fp16 an overflow of the scaled gradients skips the step instead (the scaler lowers its scale).

    Backward does not go through ``accelerator.backward``: the generators are not ``prepare``d, and under fp16 the
    Accelerator would scale a loss whose gradients nothing unscales; ``precision`` does both."""

    def __init__(self, model_name: str = "generator", accelerator: Any = None, step: int = 0, lr: float | None = None,
                 out: Path | None = None, world: int | None = None, precision: Precision | None = None) -> None:
        self.model_name, self.accelerator, self.step, self.lr, self.out = model_name, accelerator, step, lr, out
        self.precision = precision if precision is not None else Precision()
        # processes whose gradients are averaged (default: all of the accelerator's)
        self.world = world if world is not None else (accelerator.num_processes if accelerator is not None else 1)
        self.calls = 0

    def __call__(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor, name: str = "loss") -> None:
        name_ = self.model_name
        value = float(loss.detach())
        if not math.isfinite(value):
            raise NonFiniteLossError(f"{name_}: at step {self.step} the {name} is {value}, not finite"
                                     f"{kept_note(self.out)}.{self._hint()}")
        optimizer.zero_grad(set_to_none=True)
        self.precision.backward(loss)
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        world = self.world
        if world > 1:
            import torch.distributed as dist

            for p in params:
                dist.all_reduce(p.grad)
                p.grad.div_(world)
        self.precision.unscale(optimizer)
        grad_norm = float(torch.stack([p.grad.detach().float().norm() for p in params]).sum()) if params else 0.0
        overflows = self.precision.overflowed(math.isfinite(grad_norm))
        if overflows and (not self.precision.skips_overflow or overflows > MAX_OVERFLOWS):
            in_a_row = f", {overflows} fp16 steps in a row" if self.precision.skips_overflow else ""
            raise NonFiniteLossError(f"{name_}: at step {self.step} the gradients of the {name} are not finite "
                                     f"({name} {value}{in_a_row}){kept_note(self.out)}.{self._hint()}")
        self.precision.step(optimizer)
        self.calls += 1

    def _hint(self) -> str:
        return f" Try a lower learning rate (lr={self.lr})." if self.lr is not None else ""
