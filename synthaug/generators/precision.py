"""Mixed precision for generator training and sampling: autocast, and a gradient scaler under fp16.

Weights, optimizer states and checkpoints stay float32; only the forward passes run in the lower precision
(``torch.autocast``), which is what makes them faster: on a CPU with AMX-BF16 units most families' training steps
run 1.4-1.6x faster under bf16 autocast at 2 threads (docs/generators.md, ``benchmarks/throughput.py --precision``).
Backward runs outside
autocast (as PyTorch recommends). Under fp16, whose range is narrow, the loss is scaled before backward and the
gradients unscaled before they are checked, clipped or used (``torch.amp.GradScaler``); a step whose scaled
gradients overflowed is skipped and the scale lowered, as the scaler intends, instead of stopping training.

The precision comes from ``GeneratorTrainConfig.mixed_precision`` or, when that is None, from the Accelerator
(``accelerate launch --mixed_precision bf16`` / ``Accelerator(mixed_precision="bf16")``).
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch

#: the precisions Accelerate names: ``no`` (float32), ``bf16``, ``fp16``
PRECISIONS = ("no", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


#: a config may also say ``auto``: bf16 where it is the faster precision (``auto_precision``), else float32
AUTO = "auto"


def check_precision(value: Any, owner: str = "mixed_precision", *, allow_auto: bool = False) -> str:
    """``value`` as one of ``PRECISIONS`` (``"fp32"``, ``"float32"`` and ``"none"`` read as ``"no"``), or
    ``"auto"`` where ``allow_auto`` (a config: resolved on the machine that trains, ``resolve_precision``)."""
    aliases = {"fp32": "no", "float32": "no", "none": "no", "bfloat16": "bf16", "float16": "fp16"}
    allowed = PRECISIONS + ((AUTO,) if allow_auto else ())
    if isinstance(value, str) and aliases.get(value.lower(), value.lower()) in allowed:
        return aliases.get(value.lower(), value.lower())
    raise ValueError(f"{owner}={value!r}: use one of {list(allowed)} (no = float32; bf16 is fast on CPUs with "
                     "AMX and on recent GPUs; fp16 on GPUs" + ("; auto: bf16 where it is faster, else float32)"
                                                               if allow_auto else ")"))


def cpu_features() -> dict[str, Any]:
    """This machine's CPU model and the bf16 units its flags name (Linux ``/proc/cpuinfo``; empty elsewhere):
    bf16 autocast beats float32 on CPUs with AMX-BF16; with avx512_bf16 alone it was slower (docs/generators.md)."""
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return {}
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "")
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    return {"cpu": model, "amx_bf16": "amx_bf16" in flags, "avx512_bf16": "avx512_bf16" in flags}


def auto_precision(device: torch.device | str = "cpu") -> str:
    """What ``auto`` means on ``device``: bf16 on a CUDA GPU that supports it and on a CPU with AMX-BF16 units
    (where bf16 autocast was 1.6-1.9x faster than float32); float32 (``"no"``) elsewhere, including CPUs with
    avx512_bf16 alone, where it was 1.35x slower (docs/generators.md)."""
    device = torch.device(device)
    if device.type == "cuda":  # native bf16 (Ampere and later); emulated bf16 on older GPUs is slow
        return "bf16" if torch.cuda.get_device_capability(device)[0] >= 8 else "no"
    if device.type == "cpu":
        return "bf16" if cpu_features().get("amx_bf16") else "no"
    return "no"


def resolve_precision(configured: str | None, accelerator: Any = None) -> str:
    """The precision a run uses: the configured one (``auto`` resolved on the accelerator's device by
    ``auto_precision``), else the Accelerator's, else ``"no"``."""
    if configured is not None:
        value = check_precision(configured, allow_auto=True)
        return auto_precision(getattr(accelerator, "device", "cpu")) if value == AUTO else value
    value = getattr(accelerator, "mixed_precision", None) or "no"
    return check_precision(str(value), "accelerator.mixed_precision")


@contextlib.contextmanager
def autocast(precision: str, device: torch.device | str) -> Iterator[None]:
    """``torch.autocast`` on ``device``'s type in ``precision`` (nothing for ``"no"``)."""
    precision = check_precision(precision)
    if precision == "no":
        yield
        return
    with torch.autocast(device_type=torch.device(device).type, dtype=_DTYPES[precision]):
        yield


class Precision:
    """The training loop's precision: ``autocast()`` around the forward passes, ``backward`` / ``unscale`` /
    ``step`` / ``update`` around each optimizer step (a ``GradScaler`` under fp16, plain calls otherwise)."""

    def __init__(self, precision: str = "no", device: torch.device | str = "cpu") -> None:
        self.precision = check_precision(precision)
        self.device = torch.device(device)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None
        self.overflows = 0  # optimizer steps in a row whose gradients were not finite

    def autocast(self):
        return autocast(self.precision, self.device)

    def backward(self, loss: torch.Tensor) -> None:
        """Back-propagate ``loss`` (scaled under fp16), outside autocast."""
        with torch.autocast(device_type=self.device.type, enabled=False):
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Bring ``optimizer``'s gradients back to their true scale (before checking or clipping them)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    @property
    def skips_overflow(self) -> bool:
        """Whether non-finite gradients are an expected overflow (fp16: the step is skipped, the scale lowered)
        rather than a diverged training."""
        return self.scaler is not None

    def overflowed(self, finite: bool) -> int:
        """Count an optimizer step whose gradients were (not) finite; the overflows in a row so far. Under fp16 a
        few are the scaler finding its scale; a long run of them is a diverged training, not an overflow."""
        self.overflows = 0 if finite else self.overflows + 1
        return self.overflows

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.step(optimizer)
        else:
            optimizer.step()

    def update(self) -> None:
        """Once per training step, after every optimizer stepped: adjust the fp16 loss scale."""
        if self.scaler is not None:
            self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return {"precision": self.precision, **({"scaler": self.scaler.state_dict()} if self.scaler else {})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
