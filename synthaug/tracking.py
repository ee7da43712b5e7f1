"""Experiment trackers through Accelerate (``log_with``: tensorboard, wandb, mlflow, aim, ...) and the loss-curve
picture of a generator's ``log.jsonl``.

Accelerate-native: the trackers are those of the ``Accelerator`` (``Accelerator(log_with=..., project_dir=...)``;
``accelerator_kwargs`` builds both from a config's ``log_with`` / ``project_dir``), started with
``accelerator.init_trackers`` and fed with ``accelerator.log``. Nothing is logged when the accelerator has no
tracker, so every function here is a no-op for a plain ``Accelerator()`` or a ``LocalAccelerator``.

What synthaug logs (tags grouped by a prefix, ``/``-separated so TensorBoard folds them):

* ``generator/<which>/<loss>``: the loss dict of every ``log_every`` step of ``train_generator``, and the sample
  grids (``generator/<which>/samples``) as images where the tracker takes images (TensorBoard, W&B);
* ``classifier/<cell>/val_<metric>``: each benchmark cell's validation curve, then its ``test_<metric>`` values;
* ``quality/<cell>/<number>``: the sample-quality numbers of each generator the benchmark measures.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .checks import did_you_mean

__all__ = ["TRACKERS", "check_log_with", "accelerator_kwargs", "start_trackers", "end_trackers", "tracking",
           "log_scalars", "log_image", "tag", "plot_losses", "GeneratorTracking", "log_result_row", "LOSS_PLOT",
           "TRACKING_KEYS", "tracked_config", "log_quality"]

#: the trackers Accelerate knows (``accelerate.utils.LoggerType``), "all" for every installed one
TRACKERS = ("tensorboard", "wandb", "comet_ml", "aim", "mlflow", "clearml", "dvclive", "swanlab", "trackio", "all")
#: the picture ``train_generator`` writes beside ``log.jsonl`` at the end of training
LOSS_PLOT = "loss_curves.png"
_PIP = {"tensorboard": "pip install 'synthaug[tensorboard]'", "comet_ml": "pip install comet-ml"}


def check_log_with(value: Any, where: str = "log_with") -> list[str] | None:
    """``None``, or the tracker names of ``value`` (a name, a comma-separated string or a list), each installed."""
    if value is None or value == [] or value == "":
        return None
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{where}={value!r}: give a tracker name or a list of them, e.g. tensorboard")
    names = [n.strip() for n in names if n.strip()]
    for name in names:
        if name not in TRACKERS:
            raise ValueError(f"{where}={value!r}: {name!r} is not a tracker Accelerate knows; use one of "
                             f"{list(TRACKERS)}{did_you_mean(name, TRACKERS)}")
        if name != "all" and not _installed(name):
            raise ValueError(f"{where}: the {name} tracker needs the {name} package, which is not installed: "
                             f"{_PIP.get(name, f'pip install {name}')}")
    return names


def _installed(name: str) -> bool:
    from accelerate.utils import imports

    probe = getattr(imports, f"is_{name}_available", None)
    return bool(probe()) if probe is not None else True


def accelerator_kwargs(log_with: Any, project_dir: str | Path | None, *, default_dir: str | Path) -> dict[str, Any]:
    """``Accelerator(**accelerator_kwargs(...))``: ``log_with`` and ``project_dir`` (default ``default_dir``, the
    run folder) when trackers are wanted, nothing otherwise."""
    names = check_log_with(log_with)
    if not names:
        return {}
    return {"log_with": names, "project_dir": str(project_dir or default_dir)}


def tracking(accelerator: Any) -> bool:
    """Whether ``accelerator`` has running trackers (on this process: Accelerate runs them on the main one)."""
    return bool(getattr(accelerator, "trackers", None))


def _flat(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{"a.b": value}`` of numbers, strings and bools (lists and None as text): what every
    tracker's hyper-parameter table takes."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) else json.dumps(value)
    return out


def start_trackers(accelerator: Any, project: str, config: Mapping[str, Any] | None = None) -> bool:
    """``accelerator.init_trackers(project, config)`` when the accelerator was built with ``log_with`` and no
    tracker runs yet; True when this call started them (the caller then ends them with ``end_trackers``)."""
    if not getattr(accelerator, "log_with", None) or tracking(accelerator):
        return False
    accelerator.init_trackers(tag(project), config=_flat(config or {}))
    return tracking(accelerator)


def end_trackers(accelerator: Any, started: bool) -> None:
    """Finish the trackers ``start_trackers`` started (files flushed and closed). Unlike
    ``accelerator.end_training`` this keeps the process group: a benchmark goes on after a generator's run."""
    if not started:
        return
    for tracker in accelerator.trackers:
        tracker.finish()
    accelerator.trackers.clear()


def tag(text: str) -> str:
    """``text`` as a tracker tag: letters, digits and ``._-/`` kept, the rest ``_``."""
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9._/-]", "_", str(text))).strip("_") or "run"


def log_scalars(accelerator: Any, values: Mapping[str, Any], *, step: int, prefix: str = "") -> None:
    """The finite numbers of ``values`` as ``prefix/key`` scalars at ``step`` (nothing without trackers)."""
    if not tracking(accelerator):
        return
    head = f"{tag(prefix)}/" if prefix else ""
    numbers = {f"{head}{tag(k)}": float(v) for k, v in values.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}
    if numbers:
        accelerator.log(numbers, step=step)


def log_image(accelerator: Any, name: str, path: str | Path, *, step: int) -> None:
    """A PNG as an image, to every tracker that takes images (``log_images``: TensorBoard, W&B, ...)."""
    if not tracking(accelerator):
        return
    import numpy as np
    from PIL import Image

    image = np.asarray(Image.open(path).convert("RGB"))
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.log_images({tag(name): image[None]}, step=step, dataformats="NHWC")
        elif hasattr(tracker, "log_images"):
            tracker.log_images({tag(name): [image]}, step=step)


def plot_losses(log_path: str | Path, out_path: str | Path, *, title: str = "") -> Path | None:
    """Loss curves of a ``log.jsonl`` (one panel per logged number, against the step) as a PNG; None when the
    log holds no numbers."""
    rows = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line.strip()]
    series: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                series.setdefault(key, []).append((int(row["step"]), float(value)))
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(series))
    rows_n = math.ceil(len(series) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(3.6 * cols, 2.6 * rows_n), squeeze=False)
    for ax, (key, points) in zip(axes.flat, sorted(series.items(), key=lambda kv: (kv[0] != "loss", kv[0]))):
        ax.plot([s for s, _ in points], [v for _, v in points], lw=1)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(series):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out_path = Path(out_path)
    fig.savefig(out_path, dpi=110)
    plt.close(fig)
    return out_path


class GeneratorTracking:
    """What ``train_generator`` logs: its losses and sample grids to the accelerator's trackers (started here
    when the accelerator has ``log_with`` and none runs yet), and ``LOSS_PLOT`` from ``log.jsonl`` at the end."""

    def __init__(self, accelerator: Any, name: str, config: Mapping[str, Any] | None = None) -> None:
        self.accelerator, self.prefix = accelerator, f"generator/{tag(name)}"
        self.started = start_trackers(accelerator, tag(name), config)

    def losses(self, values: Mapping[str, Any], step: int) -> None:
        log_scalars(self.accelerator, values, step=step, prefix=self.prefix)

    def grid(self, path: Path, step: int) -> None:
        log_image(self.accelerator, f"{self.prefix}/samples", path, step=step)

    def finish(self, out: Path | None, *, writes: bool) -> None:
        """Plot ``out/log.jsonl`` (the main process, when it writes files) and end the trackers started here."""
        if writes and out is not None and (out / "log.jsonl").is_file():
            plot_losses(out / "log.jsonl", out / LOSS_PLOT, title=self.prefix.split("/", 1)[-1])
        end_trackers(self.accelerator, self.started)


def log_result_row(accelerator: Any, row: Mapping[str, Any], *, metric: str) -> None:
    """A benchmark cell's validation curve (``val_<metric>`` at each evaluated step) and its test metrics at the
    last step, under ``classifier/<data set>/frac<f>/seed<s>/<arm>``."""
    if not tracking(accelerator):
        return
    arm = row.get("arm") or "real"
    if row.get("generator"):
        arm = f"{row['generator']}@{float(row.get('ratio') or 0):g}"
    prefix = f"classifier/{row['dataset']}/frac{float(row['fraction']):g}/seed{row['seed']}/{arm}"
    for step, score in row.get("curve") or []:
        log_scalars(accelerator, {f"val_{metric}": score}, step=int(step), prefix=prefix)
    last = int(row.get("classifier_steps") or 0)
    log_scalars(accelerator, {f"test_{k}": v for k, v in (row.get("test") or {}).items()}, step=last, prefix=prefix)


#: config keys that say where to log, not what to run: left out of a run folder's config record
TRACKING_KEYS = ("log_with", "project_dir")


def tracked_config(cfg: Any) -> dict[str, Any]:
    """A config dataclass as the JSON its run folder records and its trackers store: without ``TRACKING_KEYS``
    (logging to a tracker or not changes no result, so a run resumed with ``--log-with`` is the same run)."""
    from .config import to_dict

    return {k: v for k, v in json.loads(json.dumps(to_dict(cfg))).items() if k not in TRACKING_KEYS}


def log_quality(accelerator: Any, folder: Path, *, step: int = 0) -> None:
    """The numbers of ``folder/quality.json`` (sample quality of one generator of a benchmark) under
    ``quality/<data set>/frac<f>/seed<s>/<generator>``."""
    path = Path(folder) / "quality.json"
    if not tracking(accelerator) or not path.is_file():
        return
    numbers = {k: v for k, v in _flat(json.loads(path.read_text())).items() if isinstance(v, (int, float))}
    log_scalars(accelerator, numbers, step=step, prefix="quality/" + "/".join(Path(folder).parts[-4:]))
