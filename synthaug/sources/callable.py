"""Any function ``fn(n, labels) -> images`` as a source."""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from ..checks import check_int
from ..data.imageio import convert_channels, letterbox, resize_batch
from ..generators.base import check_class_names, check_sample_labels
from ..mix.items import to_uint8_image
from .contract import check_geometry, class_order

__all__ = ["CallableSource"]


@contextlib.contextmanager
def _seeded(generator: torch.Generator | None) -> Iterator[None]:
    """torch's and numpy's global random states seeded from ``generator`` (a draw from it) for the block, and
    put back afterwards: a callable that draws from the global states gives the same images for the same
    generator state and leaves the caller's random states as they were."""
    if generator is None:
        yield
        return
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(state)


def _takes_generator(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "generator" in params and params["generator"].kind in (inspect.Parameter.KEYWORD_ONLY,
                                                                  inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _as_batch(out: Any, n: int, where: str) -> torch.Tensor:
    """A callable's images as uint8 ``(n, C, H, W)``: a uint8 tensor as it is, anything else image by image."""
    if isinstance(out, torch.Tensor) and out.dtype == torch.uint8 and out.ndim == 4 and out.shape[1] in (1, 3):
        batch = out.detach().cpu()
    elif isinstance(out, (torch.Tensor, np.ndarray, list, tuple)):
        if isinstance(out, (torch.Tensor, np.ndarray)) and out.ndim != 4:
            raise ValueError(f"{where} returned an array of shape {tuple(out.shape)}; return n images, uint8 "
                             "(n, C, H, W)")
        images = [to_uint8_image(image, where=f"{where}, image {i}") for i, image in enumerate(out)]
        shapes = {tuple(image.shape) for image in images}
        if len(shapes) > 1:
            raise ValueError(f"{where} returned images of several shapes {sorted(shapes)}; return one shape")
        batch = torch.stack(images) if images else torch.zeros(0, 3, 1, 1, dtype=torch.uint8)
    else:
        raise ValueError(f"{where} returned {type(out).__name__}; return the images as a uint8 tensor (n, C, H, W)")
    if len(batch) != n:
        raise ValueError(f"{where} returned {len(batch)} images for n={n}; return exactly n, one per label")
    return batch


class CallableSource:
    """Any function ``fn(n, labels) -> images`` as a source (``labels``: a long tensor of ``n`` class ids).

    ``fn`` returns uint8 ``(n, C, H, W)`` (a tensor or array; float images in [0, 1], ``(n, H, W, C)`` arrays
    and lists of PIL images are converted). ``classes`` names the class ids (or ``num_classes`` counts them).
    When ``fn`` takes a ``generator=`` keyword it receives the torch generator; otherwise it runs with torch's
    and numpy's global random states seeded from it, so a seeded caller gets the same images every time.
    ``image_size`` / ``channels``: the format handed out (images of another size are resized, 1 <-> 3 channels
    converted); by default the format of one image ``fn`` is asked for first.
    """

    def __init__(self, fn: Callable[..., Any], *, classes: Sequence[str] | None = None,
                 num_classes: int | None = None, image_size: int | None = None, channels: int | None = None,
                 name: str | None = None) -> None:
        owner = "CallableSource"
        if not callable(fn):
            raise ValueError(f"{owner}: fn={fn!r} is not callable; give a function fn(n, labels) -> uint8 images "
                             "(n, C, H, W)")
        if classes is None and num_classes is None:
            raise ValueError(f"{owner}: give classes=[names, one per class id] (or num_classes=<count>), e.g. "
                             "classes=['Parasitized', 'Uninfected']")
        count = len(classes) if classes is not None else check_int(num_classes, "num_classes", owner, minimum=1)
        self.class_names = check_class_names(None if classes is None else list(classes), count, owner="classes")
        self.num_classes = count
        check_geometry(image_size, channels, owner)
        self.fn = fn
        self.generator_name = name or f"callable:{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"
        self._passes_generator = _takes_generator(fn)
        self._label_map = torch.arange(count)  # this source's id -> fn's id (with_classes re-orders)
        if image_size is None or channels is None:
            probe = self._call(1, torch.zeros(1, dtype=torch.long), torch.Generator().manual_seed(0))
            image_size, channels = image_size or max(probe.shape[-2:]), channels or int(probe.shape[1])
        self.image_size, self.channels = int(image_size), int(channels)

    @property
    def generator_options(self) -> dict[str, Any]:
        return {"classes": self.class_names, "image_size": self.image_size, "channels": self.channels}

    def __repr__(self) -> str:
        return f"CallableSource({self.generator_name}, classes={self.class_names})"

    def with_classes(self, classes: Sequence[str]) -> CallableSource:
        """This callable with its class ids numbered in the order of ``classes`` (the same names)."""
        order = class_order(self.class_names, list(classes))
        out = object.__new__(CallableSource)
        out.__dict__.update(self.__dict__)
        out._label_map = self._label_map[torch.tensor(order)]
        out.class_names = [self.class_names[i] for i in order]
        return out

    def fingerprint(self) -> str:
        """SHA-256 of the function's name and the source's settings (a pool's identity: change ``name`` when
        the function changes but keeps its name)."""
        text = json.dumps({"fn": self.generator_name, **self.generator_options,
                           "map": self._label_map.tolist()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def _call(self, n: int, labels: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        where = f"{self.generator_name}(n={n}, labels)"
        if self._passes_generator:
            return _as_batch(self.fn(n, labels, generator=generator), n, where)
        with _seeded(generator):
            return _as_batch(self.fn(n, labels), n, where)

    def sample(self, n: int, labels: torch.Tensor | None = None, *,
               generator: torch.Generator | None = None) -> torch.Tensor:
        labels = check_sample_labels(n, labels, self.num_classes, owner="CallableSource.sample")
        if n == 0:
            return torch.zeros(0, self.channels, self.image_size, self.image_size, dtype=torch.uint8)
        batch = self._call(n, self._label_map[labels], generator)
        if tuple(batch.shape[-2:]) != (self.image_size, self.image_size):
            if batch.shape[-1] != batch.shape[-2]:
                batch = torch.stack([torch.from_numpy(letterbox(_to_pil(image), self.image_size)) for image in batch])
            batch = resize_batch(batch, self.image_size)
        return convert_channels(batch, self.channels).contiguous()


def _to_pil(image: torch.Tensor) -> Any:
    from PIL import Image

    arr = image.permute(1, 2, 0).numpy()
    return Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
