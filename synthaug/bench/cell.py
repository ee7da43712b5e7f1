"""The work of one cell: train (or reuse) its generator, picture it, measure its sample quality, and
train and evaluate the classifier. The grid loop that calls these is in ``runner.py``."""
from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from ..classifier import (Fit, GlobalBatchSampler, compute_metrics, create_augment, create_classifier, fit_classifier,
                          predict)
from ..processes import LocalAccelerator, single_process
from ..checks import check_int
from ..config import ConfigError, to_dict
from ..generators import GeneratorTrainConfig, create_generator, load_generator, train_generator
from ..mix.quotas import ClassQuotas, class_weights, largest_remainder
from ..mix.dataset import SyntheticDataset
from ..utils import atomic_write_text
from ..viz import save_comparison
from .grid_config import BenchConfig, Cell, DataConfig, GeneratorSpec
from .paths import generator_dir, quality_dir


def items_fingerprint(dataset: Any) -> str:
    """sha256 (hex) of the sorted names of a data set's items, one per line: the file names when the data
    set knows them (malaria, folders), else the per-item ids in ``groups`` (MedMNIST: ``train-<index>``).

    Unlike ``data_fingerprint`` (labels and patients, which many item sets share) it names the very
    images, so a test can check that a generator trained on exactly a cell's training items.
    """
    files = getattr(dataset, "files", None)
    names = dataset.groups if files is None else files
    return hashlib.sha256("\n".join(sorted(str(n) for n in names)).encode()).hexdigest()


# --------------------------------------------------------------------------- the generator
_WARNED_SOURCES: set[str] = set()


def warn_unchecked_source(source: Any) -> None:
    """Say once per source that the benchmark cannot know which patients trained it: the same source serves every
    seed, whose validation and test patients differ, so a source trained on this data set's patients leaks them."""
    key = json.dumps(source, sort_keys=True, default=str)
    if key in _WARNED_SOURCES:
        return
    _WARNED_SOURCES.add(key)
    warnings.warn(f"generators: source {source!r} is used unchanged in every seed and fraction, and the benchmark "
                  "cannot tell which patients trained it: use only a source that never saw this data set's "
                  "validation or test patients (e.g. one trained on another data set or other patients), or the "
                  "verdicts leak", stacklevel=3)


def checkpoint_of_source(source: Any) -> Path | None:
    """The checkpoint folder a ``{checkpoint: PATH}`` / ``checkpoint:PATH`` / bare checkpoint path source names
    (None for any other kind of source)."""
    from ..sources import source_kind

    if source_kind(source) != "checkpoint":
        return None
    if isinstance(source, dict):
        return Path(source["checkpoint"])
    text = str(source)
    return Path(text.partition(":")[2] if text.startswith("checkpoint:") else text)


def check_source_patients(source: Any, splits) -> None:
    """A checkpoint source whose run folder records its training patients is checked against this split's
    validation and test patients (``LeakageError``); any other source gets the warning that nobody can check."""
    from ..data.splits import checkpoint_patients, refuse_evaluation_patients

    checkpoint = checkpoint_of_source(source)
    patients = None if checkpoint is None else checkpoint_patients(checkpoint)
    if patients is None:
        warn_unchecked_source(source)
    else:
        refuse_evaluation_patients(patients, splits, f"generators: source {source!r}")


def generator_for(spec: GeneratorSpec, splits, cell: Cell, out_dir: Path, accelerator: Any, parallel: str, *,
                  stop_when: Any = None, gen_dir: Path | None = None) -> Any:
    """Train (or reuse) ``spec`` on the training patients of this data set, fraction and seed only
    (``splits.train``; in ``gen_dir``, default the cell's generator folder).
    ``stop_when``: with ``spec.train.gate_every``, the check that may end its training early (``gate_stopper``)."""
    from ..generators.training import data_fingerprint

    if spec.source is not None:  # a ready source (a folder, a callable, a diffusers pipeline): nothing to train
        from ..sources import open_source_spec

        check_source_patients(spec.source, splits)

        return open_source_spec(spec.source, classes=splits.classes, image_size=splits.image_size,
                                channels=splits.channels, device=accelerator.device)
    gen_dir = gen_dir or generator_dir(out_dir, cell.dataset, cell.fraction, cell.seed, spec.key)
    fingerprint = data_fingerprint(splits.train)
    if (gen_dir / "done.json").is_file():
        _check_reusable(gen_dir, fingerprint, spec)
        return load_generator(gen_dir / "checkpoint", device=accelerator.device)
    gen = _train_generator(spec, splits, cell, gen_dir, accelerator, parallel, stop_when)
    if accelerator.is_main_process:
        # done.json says what the generator trained on: the count, the labels and patients, and the very items
        atomic_write_text(gen_dir / "done.json", json.dumps({"steps": gen.training_record["steps"],
                                                             "train_items": len(splits.train),
                                                             "data": fingerprint, "spec": spec.fingerprint(),
                                                             "items_sha256": items_fingerprint(splits.train),
                                                             **early_stop_fields(gen)}))
    accelerator.wait_for_everyone()
    return gen


def gate_stopper(cfg: BenchConfig, spec: GeneratorSpec, splits, cell: Cell, positive: int, out_dir: Path) -> Any:
    """The ``stop_when`` of a generator whose ``train.gate_every`` is set (None otherwise): the quality gate of
    ``quality.gate`` on CAS of this cell's validation patients, measured as ``measure_quality`` measures it
    (the extractor's recipe, ``quality.cas_images`` images); the real-trained reference is cached per split in
    ``<run>/extractors/gate-cas-real``."""
    if not spec.train.gate_every:
        return None
    from ..quality import GateStopper

    q = cfg.quality
    return GateStopper(splits, gate=q.gate, n=q.cas_images, seed=cell.seed, positive=positive,
                       recipe={"model": q.extractor_model, "steps": q.extractor_steps},
                       cache_dir=Path(out_dir) / "extractors" / "gate-cas-real")


def early_stop_fields(gen: Any) -> dict:
    """``generator_steps`` and ``stopped_early_at`` (None: the whole budget) of a generator trained with
    ``train.gate_every``, for done.json and the results rows; nothing for one trained without."""
    record = getattr(gen, "training_record", None) or {}
    if not record.get("gate_every"):
        return {}
    return {"generator_steps": record.get("steps"), "stopped_early_at": record.get("stopped_early_at")}


def _check_reusable(gen_dir: Path, fingerprint: dict, spec: GeneratorSpec) -> None:
    done = json.loads((gen_dir / "done.json").read_text())
    if done.get("data") != fingerprint or done.get("spec") != spec.fingerprint():
        raise ConfigError(f"{gen_dir} holds a generator trained on other items or with other options "
                          f"({done.get('data')}, {done.get('spec')}) than this cell needs ({fingerprint}, "
                          f"{spec.fingerprint()}); use another --out folder")


def _train_generator(spec: GeneratorSpec, splits, cell: Cell, gen_dir: Path, accelerator: Any, parallel: str,
                     stop_when: Any) -> Any:
    from accelerate.utils import set_seed

    # The generator sees exactly the classifier's real training images (splits.train): never val or test
    # patients (load_dataset asserted the split; done.json records what it trained on).
    set_seed(cell.seed)  # the generator's initial weights depend on the seed alone, not on what ran before
    gen = create_generator(spec.name, num_classes=splits.num_classes, image_size=splits.image_size,
                           channels=splits.channels, **spec.options)
    if spec.init_from:  # a fine-tune (a killed one resumes from its own saved state, which replaces these weights)
        from ..generators.finetune import init_weights

        init_weights(gen, spec.init_from, splits)
    train_cfg = GeneratorTrainConfig(**{**to_dict(spec.train), "seed": cell.seed})
    # resume=True: a run killed while training this generator continues from its last checkpoint
    gen = train_generator(gen, splits.train, config=train_cfg, out_dir=gen_dir, accelerator=accelerator,
                          desc=f"{cell.dataset} {cell.fraction:g} seed {cell.seed}: {spec.key}", resume=True,
                          parallel=parallel, stop_when=stop_when)
    accelerator.free_memory()
    return gen


def write_samples_png(gen: Any, splits, path: Path, *, seed: int, per_class: int = 12) -> Path:
    """Real training images beside synthetic ones, one pair of rows per class."""
    rows = []
    rng = np.random.default_rng(seed)
    targets = np.asarray(splits.train.targets)
    for c, name in enumerate(splits.classes):
        idx = np.flatnonzero(targets == c)
        pick = rng.choice(idx, size=min(per_class, len(idx)), replace=False)
        real = torch.stack([splits.train[int(i)][0] for i in pick])
        fake = gen.sample(per_class, torch.full((per_class,), c, dtype=torch.long),
                          generator=torch.Generator().manual_seed(seed))
        rows += [(f"real\n{name}", real), (f"synthetic\n{name}", fake)]
    return save_comparison(rows, path, title=f"{gen.generator_name}: real training cells vs synthetic (seed {seed})")


# --------------------------------------------------------------------------- sample quality
def measure_quality(cfg: BenchConfig, data: DataConfig, splits, gen: Any, cell: Cell, spec: GeneratorSpec,
                    positive: int, out_dir: Path, device: Any = "cpu") -> dict:
    """FID/KID/precision/recall/memorization/CAS of one trained generator (skipped when already written).

    Features: a classifier trained on *all* training patients of this seed (a superset of this fraction's
    training patients; never a validation or test patient), cached per data set and seed in
    ``<run>/extractors``. The memorization audit compares with the images this generator trained on; CAS
    trains on synthetic images only and is compared with a classifier trained on this fraction's real images.
    """
    from ..quality import evaluate_generator, get_feature_extractor

    folder = quality_dir(out_dir, cell.dataset, cell.fraction, cell.seed, spec.key)
    if (folder / "quality.json").is_file():
        return json.loads((folder / "quality.json").read_text())
    q = cfg.quality
    recipe = {"model": q.extractor_model, "steps": q.extractor_steps}
    full, extractor_seed, trained_on = extractor_split(data, splits, cell)
    if not set(splits.info["train_groups"]) <= set(full.info["train_groups"]):
        raise RuntimeError(f"{cell}: the unit's training patients are not within the extractor's ({trained_on})")
    # the main process alone (the others wait): its classifiers must not wait for the other processes
    with single_process(device), warnings.catch_warnings():
        # "extractor not trained on this split's items": it is, on a superset of them (asserted above)
        warnings.filterwarnings("ignore", message="the feature extractor was not trained on this split")
        extractor = get_feature_extractor(full, dataset_key=cell.dataset, seed=extractor_seed,
                                          cache_dir=out_dir / "extractors", verbose=False, **recipe)
        result = evaluate_generator(gen, splits, n=q.n, seed=cell.seed, extractor=extractor, cas=q.cas,
                                    cas_images=q.cas_images, out_dir=folder, dataset_key=cell.dataset, recipe=recipe,
                                    positive=positive, gate=q.gate)
    result["extractor"]["trained_on"] = trained_on
    record = getattr(gen, "training_record", None) or {}
    if record.get("gate_every"):  # trained with early stopping: where it stopped and what each check said
        result["generator_training"] = {key: record.get(key) for key in ("planned_steps", "steps", "gate_every",
                                                                         "stopped_early_at", "gate_checks")}
    atomic_write_text(folder / "quality.json", json.dumps(result, indent=2))
    return result


def extractor_split(data: DataConfig, splits, cell: Cell) -> tuple[Any, int, str]:
    """The split the quality feature extractor trains on, its cache seed and a line saying so: every training
    patient of the seed (fraction 1); for a site of a fixed patient design, the design's donor and site pools
    together (one extractor for every draw); for the design's donor (or all) split, that split itself. Never a
    validation or test patient."""
    design = dict(splits.info.get("design") or {}) if data.design is not None else {}
    if design.get("train") == "site":
        import dataclasses

        design = {k: v for k, v in design.items() if k not in ("site_patients", "draw")}
        seed = int(design.get("seed", 0))
        full = dataclasses.replace(data, design={**design, "train": "all"}).load(seed)
        return full, seed, f"all {len(full.train)} training images of the fixed design (donor and site pools)"
    if design and cell.fraction != 1.0:  # a design's donor split measured in a sites grid: itself
        return splits, cell.seed, f"the {len(splits.train)} training images of the design's {design.get('train')} patients"
    full = splits if cell.fraction == 1.0 else data.load(cell.seed, 1.0)
    return full, cell.seed, f"all {len(full.train)} training images of seed {cell.seed} (fraction 1)"


def measure_quality_or_record(cfg: BenchConfig, data: DataConfig, splits, gen: Any, cell: Cell,
                              spec: GeneratorSpec, positive: int, out_dir: Path, device: Any = "cpu") -> None:
    """``measure_quality``, and on any failure an ``error.txt`` in its folder and a warning: quality is a
    side measurement, the grid goes on."""
    try:
        measure_quality(cfg, data, splits, gen, cell, spec, positive, out_dir, device)
    except Exception as err:  # noqa: BLE001 - quality is a side measurement: record, go on
        folder = quality_dir(out_dir, cell.dataset, cell.fraction, cell.seed, spec.key)
        atomic_write_text(folder / "error.txt", f"{type(err).__name__}: {err}\n")
        print(f"warning: sample quality of {spec.key} ({cell.dataset}, fraction {cell.fraction:g}, seed {cell.seed}) "
              f"failed: {type(err).__name__}: {err}; written to {folder / 'error.txt'}; the grid goes on", flush=True)


# --------------------------------------------------------------------------- the classifier
@dataclass
class ArmData:
    """What a cell's classifier draws from: ``dataset`` (``batch_size`` items a step), and for additive
    mixing ``extra`` (``extra_per_batch`` items appended to each batch: synthetic items, or for the
    real-matched control the real items again); ``real`` is the real training set (BatchNorm statistics)."""

    real: Dataset
    dataset: Dataset
    extra: Dataset | None = None
    extra_per_batch: int = 0
    synthetic_items: int = 0      # distinct synthetic items of an epoch (replace) or of the extra set (additive)
    extra_is_synthetic: bool = False


def arm_data(cfg: BenchConfig, splits, cell: Cell, gen: Any = None) -> ArmData:
    """The training data of ``cell``: real only, real + ``SyntheticDataset(ratio)`` (replace), or real plus
    extras appended to each batch (additive: synthetic items, or real ones for the real-matched control)."""
    real = splits.train.subset(np.arange(len(splits.train)))
    if cell.arm == "real":
        return ArmData(real, real)
    if cell.arm == "real-matched":
        return ArmData(real, real, extra=real, extra_per_batch=cfg.extra_per_batch(cell.ratio))
    syn = cfg.synthetic
    if syn.mix == "replace":
        mixed = SyntheticDataset(gen, cell.ratio, real=real, seed=cell.seed, label_distribution=syn.label_distribution,
                                 pool_size=syn.pool_size)
        return ArmData(real, mixed, synthetic_items=mixed.num_synthetic)
    # the grid's ratio of an additive arm is its per_real; without a pool size, as many distinct images as the
    # extra stream draws in one pass of the real items
    pool_size = syn.pool_size if syn.pool_size is not None else max(1, round(cell.ratio * len(real)))
    extra = additive_items(gen, real, splits.classes, pool_size=pool_size, seed=cell.seed,
                           label_distribution=syn.label_distribution)
    return ArmData(real, real, extra=extra, extra_per_batch=cfg.extra_per_batch(cell.ratio),
                   synthetic_items=len(extra), extra_is_synthetic=True)


def additive_items(gen: Any, real: Dataset, classes: list[str], *, pool_size: int, seed: int,
                   label_distribution: Any, pool_dir: Path | None = None) -> Dataset:
    """The pool an additive arm draws its extras from: ``pool_size`` distinct synthetic items, one image each,
    labels by ``label_distribution`` (``match``: the class frequencies of ``real``)."""
    total = check_int(pool_size, "pool_size", "additive_items", minimum=1)
    weights = class_weights(label_distribution, num_classes=len(classes), classes=classes,
                            real_targets=np.asarray(real.targets))
    counts = largest_remainder(total, weights)
    mixed = SyntheticDataset(gen, None, real=real, seed=seed, pool_dir=pool_dir,  # pool_dir: sampled once, on disk
                             label_distribution=ClassQuotas({i: int(n) for i, n in enumerate(counts)}))
    return Subset(mixed, range(mixed.num_real, len(mixed)))  # the synthetic items only


def train_and_evaluate(cfg: BenchConfig, splits, cell: Cell, positive: int, accelerator: Any,
                       gen: Any = None) -> dict:
    """Train the cell's classifier by the protocol of ``cfg.classifier`` (budget, validation, best weights,
    BatchNorm); its metrics on the validation and test patients and the ``fields`` its results row records."""
    from accelerate.utils import set_seed

    c = cfg.classifier
    data = arm_data(cfg, splits, cell, gen)
    steps = c.budget(len(data.real))  # from the real images: the same for every arm of the cell
    set_seed(cell.seed)  # the same initial weights in every arm of a seed
    model = create_classifier(c.model, num_classes=splits.num_classes, channels=splits.channels)
    validate = None if c.eval_every is None else make_validator(splits.val, cfg, positive, accelerator)
    fit = fit_classifier(model, data.dataset, steps=steps, batch_size=c.batch_size, lr=c.lr,
                         weight_decay=c.weight_decay, seed=cell.seed, num_workers=c.num_workers,
                         accelerator=accelerator, augment=create_augment(c.augment), extra=data.extra,
                         extra_per_batch=data.extra_per_batch, validate=validate, eval_every=c.eval_every,
                         bn=c.bn, bn_data=data.real, bn_batches=c.bn_batches,
                         desc=f"{cell.fraction:g} seed {cell.seed}: {cell.generator or cell.arm}"
                              + (f" @ {cell.ratio:g}" if cell.ratio else ""))
    out = {part: evaluate_split(fit.model, getattr(splits, part), part, c.eval_batch_size, positive, accelerator)
           for part in ("val", "test")}
    out["synthetic_items"] = data.synthetic_items
    out["fields"] = _row_fields(cfg, cell, data, fit)
    accelerator.free_memory()
    return out


def make_validator(val: Dataset, cfg: BenchConfig, positive: int, accelerator: Any):
    """The primary metric on the validation patients; every process scores the whole set on its own copy of
    the model (no gathering), so all processes keep the same step without talking to each other."""
    local = LocalAccelerator(accelerator.device)

    def validate(model: torch.nn.Module) -> float:
        probs, targets = predict(model, val, batch_size=cfg.classifier.eval_batch_size, accelerator=local)
        return compute_metrics(probs, targets, positive=positive)[cfg.primary_metric]

    return validate


def checked_predictions(model: torch.nn.Module, data: Dataset, part: str, batch_size: int,
                        accelerator: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``model``'s class probabilities and the targets of one split (``part`` names it in errors), gathered from
    every process and checked to be the split's items, in order."""
    probs, targets = predict(model, data, batch_size=batch_size, accelerator=accelerator)
    if len(targets) != len(data):
        raise RuntimeError(f"{part}: gathered {len(targets)} predictions for {len(data)} items")
    if not torch.equal(targets.cpu(), torch.as_tensor(np.asarray(data.targets)).long()):
        raise RuntimeError(f"{part}: the gathered targets are not the data set's, in order (duplicated or "
                           "dropped items across processes)")
    return probs, targets


def evaluate_split(model: torch.nn.Module, data: Dataset, part: str, batch_size: int, positive: int,
                   accelerator: Any) -> dict[str, float]:
    """The metrics of ``model`` on one split (``checked_predictions``)."""
    return compute_metrics(*checked_predictions(model, data, part, batch_size, accelerator), positive=positive)


def _row_fields(cfg: BenchConfig, cell: Cell, data: ArmData, fit: Fit) -> dict:
    """What results.jsonl records of the protocol: the mix, the steps and draws, the best step and the
    validation curve (NaN as null, so the file stays standard JSON)."""
    if data.extra is not None:
        real_draws = fit.draws + (0 if data.extra_is_synthetic else fit.extra_draws)
        synthetic_draws = fit.extra_draws if data.extra_is_synthetic else 0
    else:
        synthetic_draws = _replaced_draws(data, fit.steps, cfg.classifier.batch_size, cell.seed)
        real_draws = fit.draws - synthetic_draws
    return {"mix": None if cell.arm == "real" else ("additive" if cell.arm == "real-matched" else cfg.synthetic.mix),
            "classifier_steps": fit.steps, "batch_size": cfg.classifier.batch_size,
            "extra_per_batch": data.extra_per_batch, "real_draws": real_draws, "synthetic_draws": synthetic_draws,
            "best_step": fit.best_step, "curve": [[int(s), None if math.isnan(v) else v] for s, v in fit.curve],
            "bn": cfg.classifier.bn, "bn_images": fit.bn_images}


def _replaced_draws(data: ArmData, steps: int, batch_size: int, seed: int) -> int:
    """Synthetic items a replace arm drew: the items past the real ones in the batches of its sampler."""
    if data.dataset is data.real:
        return 0
    sampler = GlobalBatchSampler(len(data.dataset), batch_size, steps=steps, seed=seed)
    first_synthetic = len(data.real)
    return sum(sum(i >= first_synthetic for i in batch) for batch in sampler)
