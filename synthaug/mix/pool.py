"""Pools of pre-generated synthetic images: in memory, or on disk and memory-mapped.

A pool folder holds ``images.npy`` (uint8 N x C x H x W), ``labels.npy`` (int64 N) and ``pool.json``
(how it was made). Loading memory-maps the images, so DataLoader workers (and processes) share one
copy read from disk, and nothing regenerates.

``shared_pool`` makes a pool once for several processes: the main process samples it and writes the
folder, the others wait at a barrier and memory-map it; a folder already there is reused when it was
made by the same generator, seed and labels (and refused, naming what differs, when it was not).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

POOL_META = "pool.json"


@dataclass
class SyntheticPool:
    images: np.ndarray  # uint8 (N, C, H, W), possibly memory-mapped
    labels: np.ndarray  # int64 (N,)
    num_classes: int
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels)
        if self.labels.ndim != 1 or not np.issubdtype(self.labels.dtype, np.integer):
            raise ValueError(f"pool labels must be a 1-D integer array, got {self.labels.dtype} {self.labels.shape}")
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(f"pool images must be uint8 (N, C, H, W), got {self.images.dtype} {self.images.shape}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"pool has {len(self.images)} images but {len(self.labels)} labels")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= self.num_classes):
            raise ValueError(f"pool labels must be in [0, {self.num_classes})")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[2])

    def indices_of(self, label: int) -> np.ndarray:
        return np.flatnonzero(self.labels == label)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the pool folder atomically (temporary folder, then rename); refuses to overwrite.

        An existing empty folder is taken (users often create the folder first)."""
        directory = Path(directory)
        if directory.exists() and not (directory.is_dir() and not any(directory.iterdir())):
            raise FileExistsError(f"{directory} exists; choose another pool folder or delete it first")
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            np.save(tmp / "images.npy", np.ascontiguousarray(self.images))
            np.save(tmp / "labels.npy", np.asarray(self.labels, dtype=np.int64))
            meta = {**self.meta, "num_classes": self.num_classes, "count": len(self)}
            (tmp / POOL_META).write_text(json.dumps(meta, indent=2))
            from ..utils import make_public

            make_public(tmp)
            if directory.is_dir():
                directory.rmdir()  # empty (checked above); os.replace cannot replace a folder on every system
            os.replace(tmp, directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return directory


def is_pool(path: str | os.PathLike) -> bool:
    return (Path(path) / POOL_META).is_file()


def load_pool(directory: str | os.PathLike) -> SyntheticPool:
    """Memory-map a pool folder written by ``SyntheticPool.save`` / ``synthaug sample --pool``."""
    directory = Path(directory)
    if not is_pool(directory):
        raise FileNotFoundError(f"{directory} is not a synthaug pool: it needs {POOL_META}, images.npy and labels.npy "
                                "(made by `synthaug sample --pool DIR`)")
    try:
        meta = json.loads((directory / POOL_META).read_text())
        images = np.load(directory / "images.npy", mmap_mode="r", allow_pickle=False)
        labels = np.load(directory / "labels.npy", allow_pickle=False).astype(np.int64)
        return SyntheticPool(images, labels, int(meta["num_classes"]), meta)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{directory}: damaged pool ({err}); make it again with `synthaug sample --pool`") from err


def progress_bar(total: int, desc: str, progress: bool | None) -> Any:
    """A tqdm bar for sampling: ``True`` always, ``False`` never, ``None`` (the default) only on a terminal
    and only once sampling has taken more than two seconds, so small or fast pools print nothing."""
    if progress is None:
        return tqdm(total=total, desc=desc, unit="img", disable=None, delay=2.0)
    return tqdm(total=total, desc=desc, unit="img", disable=not progress)


def check_progress(progress: Any, owner: str) -> bool | None:
    if progress is not None and not isinstance(progress, bool):
        raise ValueError(f"{owner}: progress={progress!r} must be True (always show a progress bar while sampling), "
                         "False (never) or None (on a terminal, when sampling takes more than two seconds)")
    return progress


def generate_pool(gen: Any, labels: np.ndarray, *, seed: int = 0, batch_size: int = 256,
                  desc: str = "sampling synthetic pool", progress: bool | None = None) -> SyntheticPool:
    """Sample one image per entry of ``labels`` from ``gen``, in batches, from ``torch.Generator().manual_seed(seed)``.

    ``progress``: see ``progress_bar``.
    """
    labels = np.asarray(labels, dtype=np.int64)
    torch_gen = torch.Generator().manual_seed(int(seed))
    chunks = []
    n = len(labels)
    with progress_bar(n, desc, progress) as bar:
        for start in range(0, n, batch_size):
            part = torch.from_numpy(labels[start:start + batch_size])
            chunks.append(gen.sample(len(part), part, generator=torch_gen).numpy())
            bar.update(len(part))
    images = np.concatenate(chunks) if chunks else np.zeros((0, gen.channels, gen.image_size, gen.image_size), np.uint8)
    meta = {"generator": getattr(gen, "generator_name", type(gen).__name__),
            "generator_options": getattr(gen, "generator_options", {}), "seed": int(seed),
            "class_names": getattr(gen, "class_names", None)}
    return SyntheticPool(images, labels, int(gen.num_classes), meta)


def sample_until_kept(gen: Any, need: np.ndarray, keep: Callable[[torch.Tensor, torch.Tensor], Any], *, seed: int,
                      batch_size: int = 256, max_rounds: int = 20, progress: bool | None = None,
                      ) -> tuple[list[torch.Tensor], np.ndarray, np.ndarray]:
    """Sample from ``gen`` until ``keep(images, labels)`` (a bool mask) has accepted ``need[c]`` images of each class c.

    Each round asks, in batches, for the images still missing, from ``torch.Generator().manual_seed(seed)``, so the
    result is the same for a seed; after ``max_rounds`` rounds it stops even when a class is short. Returns the
    accepted images of each class (uint8 (k, C, H, W), possibly more than needed, in sampling order) and, per class,
    the numbers of images generated and accepted. The progress bar counts accepted images.
    """
    num_classes = len(need)
    torch_gen = torch.Generator().manual_seed(int(seed))
    kept: dict[int, list[torch.Tensor]] = {c: [] for c in range(num_classes)}
    generated = np.zeros(num_classes, dtype=np.int64)
    accepted = np.zeros(num_classes, dtype=np.int64)
    with progress_bar(int(np.sum(need)), "sampling filtered synthetic pool", progress) as bar:
        for _ in range(max_rounds):
            missing = np.repeat(np.arange(num_classes), np.maximum(need - accepted, 0))
            if not len(missing):
                break
            for start in range(0, len(missing), batch_size):
                part = torch.from_numpy(missing[start:start + batch_size])
                images = gen.sample(len(part), part, generator=torch_gen)
                mask = torch.as_tensor(keep(images, part)).bool().cpu()
                if mask.shape != (len(part),):
                    raise ValueError(f"quality_filter returned shape {tuple(mask.shape)}; expected ({len(part)},)")
                before = int(np.minimum(accepted, need).sum())
                for c in range(num_classes):
                    of_class = part == c
                    generated[c] += int(of_class.sum())
                    chosen = images[of_class & mask]
                    kept[c].append(chosen)
                    accepted[c] += len(chosen)
                bar.update(int(np.minimum(accepted, need).sum()) - before)
    empty = torch.zeros(0, gen.channels, gen.image_size, gen.image_size, dtype=torch.uint8)
    return [torch.cat(kept[c]) if kept[c] else empty for c in range(num_classes)], generated, accepted


# --------------------------------------------------------------------------- where and by whom a pool is sampled
def check_device(device: Any, owner: str) -> torch.device | None:
    """``None`` (sample where the generator is) or a torch device that exists on this machine."""
    if device is None:
        return None
    if not isinstance(device, (str, torch.device)):
        raise ValueError(f"{owner}: device={device!r} must be a torch device such as 'cpu', 'cuda' or 'cuda:1', "
                         "or None (sample where the generator is)")
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"{owner}: device={device!r} is not a torch device ({err}); use 'cpu', 'cuda' or "
                         "'cuda:1'") from err
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{owner}: device={device!r} but torch sees no CUDA device here; use device='cpu' or leave "
                         "it out")
    if parsed.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"{owner}: device={device!r} but MPS is not available here; use device='cpu'")
    return parsed


@contextlib.contextmanager
def generation_device(gen: Any, device: torch.device | None) -> Iterator[Any]:
    """Move ``gen`` to ``device`` while sampling and back afterwards, so the caller's model stays where it was.

    Noise is drawn on the CPU (the generator contract), so a pool depends on the seed, not on the device,
    up to the device's floating-point kernels."""
    if device is None:
        yield gen
        return
    if not isinstance(gen, torch.nn.Module):
        raise TypeError(f"device={str(device)!r} needs a torch generator (nn.Module) to move; "
                        f"{type(gen).__name__} is not one: leave device out and place it yourself")
    before = getattr(gen, "device", None)
    gen.to(device)
    try:
        yield gen
    finally:
        if before is not None:
            gen.to(before)


@dataclass(frozen=True)
class Processes:
    """The processes that share one pool: the main one samples it; ``barrier()`` waits for all of them."""

    is_main: bool = True
    barrier: Callable[[], None] = field(default=lambda: None)
    count: int = 1


def current_processes(accelerator: Any = None, owner: str = "SyntheticDataset") -> Processes:
    """From an ``accelerate.Accelerator`` (or any object with ``is_main_process``, ``wait_for_everyone()`` and
    ``num_processes``), else from an initialised ``torch.distributed``, else this process alone."""
    if accelerator is not None:
        if not hasattr(accelerator, "is_main_process") or not callable(getattr(accelerator, "wait_for_everyone", None)):
            raise ValueError(f"{owner}: accelerator={accelerator!r} must be an accelerate.Accelerator (it needs "
                             "is_main_process and wait_for_everyone())")
        return Processes(bool(accelerator.is_main_process), accelerator.wait_for_everyone,
                         int(getattr(accelerator, "num_processes", 2)))
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return Processes(dist.get_rank() == 0, dist.barrier, dist.get_world_size())
    return Processes()


def weights_fingerprint(gen: Any) -> str | None:
    """SHA-256 of a torch generator's weights (None for other objects): tells a pool folder made by another
    training of the same architecture from one made by this generator."""
    if not isinstance(gen, torch.nn.Module):
        own = getattr(gen, "fingerprint", None)  # e.g. an EditSource: its editor, real images and settings
        return own() if callable(own) else None
    digest = hashlib.sha256()
    for name, tensor in sorted(gen.state_dict().items()):
        digest.update(name.encode())
        data = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def labels_fingerprint(labels: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(labels, dtype=np.int64).tobytes()).hexdigest()


def _json_ready(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def check_pool_matches(pool: SyntheticPool, directory: Path, *, labels: np.ndarray, recipe: dict[str, Any]) -> None:
    """Refuse a pool folder made for another request (generator, weights, seed, labels, filter, teacher), naming what
    differs."""
    wanted = _json_ready(recipe)
    found = {key: pool.meta.get(key) for key in wanted}
    differ = [f"{key}: the folder has {found[key]!r}, this asks for {wanted[key]!r}"
              for key in wanted if found[key] != wanted[key]]
    if not np.array_equal(pool.labels, labels):
        differ.append(f"labels: the folder holds {len(pool.labels)} images with class counts "
                      f"{np.bincount(pool.labels, minlength=pool.num_classes).tolist()}, this asks for {len(labels)} "
                      f"with {np.bincount(labels, minlength=pool.num_classes).tolist()}")
    if differ:
        raise ValueError(f"pool_dir={str(directory)!r} holds a pool made for another request ({'; '.join(differ)}). "
                         "Give each setting (generator, seed, ratio, label distribution, filter, teacher) its own "
                         "pool_dir, or delete the folder to sample it again")


_warned_unshared = False


def shared_pool(make: Callable[[], SyntheticPool], *, directory: str | os.PathLike | None, labels: np.ndarray,
                recipe: dict[str, Any], processes: Processes) -> SyntheticPool:
    """The pool ``make()`` samples, made once and shared.

    With ``directory``: a pool folder already there (from an earlier run, or another process) is checked
    against ``labels`` and ``recipe`` and memory-mapped; otherwise the main process samples it and writes
    the folder while the others wait at ``processes.barrier()``, then every process memory-maps it. Every
    process calls the barrier exactly once, whatever it finds on disk, so none can wait for ever.
    Without ``directory``: ``make()`` in this process (with a warning when there are several processes,
    since each then samples the same pool).
    """
    if directory is None:
        global _warned_unshared
        if processes.count > 1 and not _warned_unshared:
            _warned_unshared = True
            warnings.warn(f"each of the {processes.count} processes samples the same synthetic pool; pass "
                          "pool_dir=<folder all processes see> to sample it once, on the main process", stacklevel=4)
        return make()
    directory = Path(directory).expanduser()
    failure: BaseException | None = None
    if processes.is_main and not is_pool(directory):
        try:
            pool = make()
            pool.meta.update(_json_ready(recipe))
            try:
                pool.save(directory)
                logging.getLogger("synthaug").info("wrote the synthetic pool to %s", directory)
            except OSError:
                if not is_pool(directory):  # else another process (a DataLoader worker) wrote it first: use that
                    raise
        except BaseException as err:  # the others still pass the barrier, then see that no pool came
            failure = err
    if processes.count > 1:
        processes.barrier()
    if failure is not None:
        raise failure
    if not is_pool(directory):
        raise RuntimeError(f"pool_dir={str(directory)!r}: the main process did not write the pool (see its error); "
                           "pool_dir must be a folder that every process sees")
    pool = load_pool(directory)
    check_pool_matches(pool, directory, labels=labels, recipe=recipe)
    return pool


# --------------------------------------------------------------------------- what a synthetic source is
def describe_filter(fn: Any) -> str | None:
    """A stable description of a quality filter for a pool's recipe: its repr, or (when that is only a memory
    address) its name with its plain settings and a hash of any torch model it holds, e.g. a ClassifierFilter's."""
    if fn is None:
        return None
    text = repr(fn)
    if " at 0x" not in text:
        return text
    settings = []
    for key, value in sorted(getattr(fn, "__dict__", {}).items()):
        if isinstance(value, (bool, int, float, str)):
            settings.append(f"{key}={value!r}")
        elif isinstance(value, torch.nn.Module):
            settings.append(f"{key}=<weights sha256 {weights_fingerprint(value)}>")
    return f"{getattr(fn, '__qualname__', type(fn).__qualname__)}({', '.join(settings)})"
