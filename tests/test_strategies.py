"""Ways of using synthetic data: the is_synthetic flag and the weighted loss, teacher labels, minority-class
synthesis and synthetic-only data sets (tiny models, CPU, no real data needed)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from synthaug import ClassQuotas, SyntheticDataset, TeacherLabels, create_generator
from synthaug.classifier import normalize
from synthaug.mix.pool import generate_pool
from synthaug.mix.teacher import distill_targets
from synthaug.mix.weighted_loss import weighted_cross_entropy

CLASSES = ["Parasitized", "Uninfected"]


@pytest.fixture(scope="module")
def gen():
    torch.manual_seed(0)
    return create_generator("cvae-tiny", num_classes=2, image_size=32, channels=3)


@pytest.fixture(scope="module")
def real():
    """60 random 32 px RGB images, 45 of class 0 and 15 of class 1, named like malaria's classes."""
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (60, 3, 32, 32), dtype=torch.uint8, generator=g)
    ds = TensorDataset(images, torch.tensor([0] * 45 + [1] * 15))
    ds.classes = CLASSES
    return ds


def small_teacher(seed: int = 0) -> nn.Module:
    """A classifier with BatchNorm, so train and eval mode give different outputs."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 2))


def eval_logits(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """What the teacher should say: eval mode, the classifier's normalisation, no gradient."""
    was = model.training
    model.eval()
    with torch.no_grad():
        out = model(normalize(images)).float()
    model.train(was)
    return out


def synthetic_rows(ds: SyntheticDataset) -> range:
    return range(ds.num_real, len(ds))


# --------------------------------------------------------------------------- 1. is_synthetic and the weighted loss
def test_items_carry_is_synthetic(gen, real):
    plain = SyntheticDataset(gen, 0.3, real=real, seed=0)
    flagged = SyntheticDataset(gen, 0.3, real=real, seed=0, return_is_synthetic=True)
    assert all(len(plain[i]) == 2 for i in (0, len(plain) - 1))
    for i in range(len(flagged)):
        image, label, is_synthetic = flagged[i]
        assert is_synthetic is flagged.is_synthetic(i) and isinstance(is_synthetic, bool)
        assert torch.equal(image, plain[i][0]) and label == plain[i][1]


def test_is_synthetic_through_a_shuffled_loader(gen, real):
    ds = SyntheticDataset(gen, 0.3, real=real, seed=0, return_is_synthetic=True)
    batches = list(DataLoader(ds, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0)))
    images, labels, flags = batches[0]
    assert images.dtype == torch.uint8 and labels.dtype == torch.int64 and flags.dtype == torch.bool
    assert images.shape == (16, 3, 32, 32) and labels.shape == flags.shape == (16,)
    assert sum(int(b[2].sum()) for b in batches) == ds.num_synthetic
    assert sum(len(b[2]) for b in batches) == len(ds)


def test_weighted_loss_equals_a_hand_computed_value():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [3.0, -1.0]])
    target = torch.tensor([0, 0, 1, 1])
    flags = torch.tensor([False, True, False, True])
    per_item = [math.log(1 + math.exp(-2)), math.log(1 + math.exp(1)), math.log(2), math.log(1 + math.exp(4))]
    w = 0.25
    expected = (per_item[0] + w * per_item[1] + per_item[2] + w * per_item[3]) / 4  # mean(w * l), not / sum(w)
    got = weighted_cross_entropy(logits, target, flags, synthetic_weight=w)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    assert weighted_cross_entropy(logits, target, flags, synthetic_weight=0).item() == pytest.approx(
        (per_item[0] + per_item[2]) / 4, rel=1e-6)
    assert weighted_cross_entropy(logits, target, flags.long(), synthetic_weight=w).item() == pytest.approx(expected)


def test_weighted_loss_is_cross_entropy_at_weight_one_with_hard_and_soft_targets():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 3, generator=g, requires_grad=True)
    hard = torch.randint(0, 3, (8,), generator=g)
    soft = torch.rand(8, 3, generator=g).softmax(1)
    flags = torch.rand(8, generator=g) < 0.5
    for target in (hard, soft):
        assert torch.allclose(weighted_cross_entropy(logits, target, flags, synthetic_weight=1.0),
                              F.cross_entropy(logits, target))
    soft_expected = -(soft * logits.log_softmax(1)).sum(1)
    soft_expected = (torch.where(flags, 0.5, 1.0) * soft_expected).mean()
    got = weighted_cross_entropy(logits, soft, flags, synthetic_weight=0.5)
    assert torch.allclose(got, soft_expected)
    got.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


# --------------------------------------------------------------------------- 2. teacher labels
def test_soft_teacher_labels_sum_to_one_and_real_items_are_one_hot(gen, real):
    teacher = small_teacher()
    teacher.train()  # a model still in training: the teacher runs it in eval mode and leaves it in train mode
    ds = SyntheticDataset(gen, 0.3, real=real, seed=0, teacher=TeacherLabels(teacher, mode="soft", temperature=2.0))
    assert teacher.training
    for i in range(ds.num_real):
        label = ds[i][1]
        assert label.dtype == torch.float32 and label.shape == (2,)
        assert torch.equal(label, F.one_hot(real[i][1], 2).float())
    expected = (eval_logits(teacher, ds.pool) / 2.0).softmax(1)  # the pool is in the items' format here
    for i in synthetic_rows(ds):
        label = ds[i][1]
        assert label.shape == (2,) and label.sum().item() == pytest.approx(1.0, abs=1e-6)
        assert torch.allclose(label, expected[ds._pool_index[i - ds.num_real]], atol=1e-6)
    images, labels = next(iter(DataLoader(ds, batch_size=32, shuffle=True)))
    assert labels.shape == (32, 2) and labels.dtype == torch.float32
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 2))
    assert torch.isfinite(nn.CrossEntropyLoss()(model(normalize(images).flatten(1)), labels))  # takes it as it is
    report = ds.teacher_report
    assert report["images"] == len(ds.pool_labels) and 0 <= report["agreement"] <= 1
    assert set(report["agreement_per_class"]) <= set(CLASSES)


def test_hard_teacher_labels_are_the_teachers_argmax(gen, real):
    teacher = small_teacher(seed=3)
    ds = SyntheticDataset(gen, 0.3, real=real, seed=0, teacher=TeacherLabels(teacher, mode="hard"),
                          return_is_synthetic=True)
    argmax = eval_logits(teacher, ds.pool).argmax(1)
    labels = [ds[i][1] for i in synthetic_rows(ds)]
    assert all(isinstance(label, int) for label in labels)
    assert labels == argmax[ds._pool_index].tolist()
    assert [ds[i][1] for i in range(ds.num_real)] == real.tensors[1].tolist()  # real labels unchanged
    assert ds.targets[ds.num_real:].tolist() == labels
    assert np.array_equal(np.bincount(ds.synthetic_labels, minlength=2), ds.class_counts)  # the generator's kept


def test_distill_targets_is_the_soft_teacher_at_a_temperature():
    teacher = small_teacher()
    images = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    targets = distill_targets(teacher, images, temperature=3.0, batch_size=4)
    assert torch.allclose(targets, (eval_logits(teacher, images) / 3.0).softmax(1), atol=1e-6)
    assert torch.allclose(targets.sum(1), torch.ones(10))
    assert torch.equal(TeacherLabels(teacher, mode="hard").targets(images), eval_logits(teacher, images).argmax(1))
    # a (model, image_size, channels) teacher gets the images in its own format, as ClassifierFilter's model does
    resized = TeacherLabels((teacher, 16, 3), temperature=3.0).targets(images)
    assert resized.shape == (10, 2) and not torch.allclose(resized, targets)


def test_teacher_on_a_ready_pool_and_in_dataloader_workers(gen, real):
    pool = generate_pool(gen, np.repeat([0, 1], 12), seed=0)
    teacher = small_teacher()
    ds = SyntheticDataset(pool, 0.3, real=real, seed=0, teacher=TeacherLabels(teacher, mode="hard"), refresh_every=1)
    argmax = eval_logits(teacher, torch.from_numpy(pool.images)).argmax(1)
    assert [ds[i][1] for i in synthetic_rows(ds)] == argmax[ds._pool_index].tolist()
    ds.set_epoch(1)  # another draw from the same pool: the teacher's logits of the rows seen are kept
    assert [ds[i][1] for i in synthetic_rows(ds)] == argmax[ds._pool_index].tolist()
    loader = DataLoader(ds, batch_size=len(ds), num_workers=2)  # the workers get the labels, not the teacher
    _, labels = next(iter(loader))
    assert labels[ds.num_real:].tolist() == argmax[ds._pool_index].tolist()


def test_a_pool_dir_made_with_one_teacher_is_not_reused_with_another(gen, real, tmp_path):
    folder = tmp_path / "pool"
    kwargs = dict(real=real, seed=0, pool_dir=folder)
    first = SyntheticDataset(gen, 0.3, teacher=TeacherLabels(small_teacher(seed=0), temperature=2.0), **kwargs)
    # the same teacher at another temperature or mode reads the stored logits: nothing is sampled or run again
    same = small_teacher(seed=0)
    calls = []
    same.register_forward_hook(lambda *args: calls.append(1))
    again = SyntheticDataset(gen, 0.3, teacher=TeacherLabels(same, temperature=4.0), **kwargs)
    assert not calls and torch.equal(again.pool, first.pool)
    assert torch.allclose(again[len(again) - 1][1], (torch.from_numpy(first._teacher_logits) / 4.0).softmax(1)[
        again._pool_index[-1]])
    hard = SyntheticDataset(gen, 0.3, teacher=TeacherLabels(small_teacher(seed=0), mode="hard"), **kwargs)
    assert hard.targets[hard.num_real:].tolist() == first._teacher_logits.argmax(1)[hard._pool_index].tolist()
    with pytest.raises(ValueError, match="teacher"):
        SyntheticDataset(gen, 0.3, teacher=TeacherLabels(small_teacher(seed=1)), **kwargs)
    with pytest.raises(ValueError, match="teacher"):
        SyntheticDataset(gen, 0.3, **kwargs)  # nor without a teacher


# --------------------------------------------------------------------------- 3. minority / weak-class synthesis
def test_only_the_weak_class_is_synthesised_at_a_ratio(gen, real):
    ds = SyntheticDataset(gen, 0.3, real=real, seed=0, label_distribution={"Uninfected": 1.0}, pool_size=8,
                          return_is_synthetic=True)
    assert len(ds) == round(len(real) / 0.7) and ds.num_synthetic == len(ds) - len(real)
    assert ds.class_counts.tolist() == [0, ds.num_synthetic]
    assert set(ds.pool_labels.tolist()) == {1} and len(ds.pool_labels) == 8
    assert {ds[i][1] for i in synthetic_rows(ds)} == {1}
    assert np.bincount(ds.targets).tolist() == [45, 15 + ds.num_synthetic]
    quotas = SyntheticDataset(gen, None, real=real, seed=0, label_distribution=ClassQuotas({"Uninfected": 30}))
    assert quotas.class_counts.tolist() == [0, 30]
    pool = generate_pool(gen, np.repeat([0, 1], 5), seed=0)
    from_pool = SyntheticDataset(pool, 0.3, real=real, seed=0, label_distribution={1: 1.0})
    assert {from_pool[i][1] for i in synthetic_rows(from_pool)} == {1}


# --------------------------------------------------------------------------- 4. synthetic pre-training
def test_synthetic_items_only_for_pre_training(gen):
    ds = SyntheticDataset(gen, length=20, seed=0, pool_size=6, return_is_synthetic=True)
    assert len(ds) == 20 and ds.num_real == 0 and ds.ratio == 1.0 and len(ds.pool_labels) == 6
    images, labels, flags = next(iter(DataLoader(ds, batch_size=20, shuffle=True)))
    assert flags.all() and images.shape == (20, 3, 32, 32) and np.bincount(labels.numpy()).tolist() == [10, 10]


# --------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize("kwargs, message", [
    (dict(synthetic_weight=-0.1), r"weighted_cross_entropy: synthetic_weight=-0.1 must be a number >= 0"),
    (dict(synthetic_weight=float("nan")), r"synthetic_weight=nan"),
    (dict(synthetic_weight="0.3"), r"synthetic_weight='0.3'"),
    (dict(is_synthetic=torch.tensor([True, False])), r"is_synthetic has shape \(2,\) but the batch has 4"),
    (dict(is_synthetic=torch.tensor([0, 2, 0, 1])), r"is_synthetic must hold bools"),
    (dict(target=torch.tensor([0, 1])), r"target has shape \(2,\)"),
])
def test_weighted_loss_refuses_bad_arguments(kwargs, message):
    args = dict(logits=torch.zeros(4, 2), target=torch.tensor([0, 1, 0, 1]),
                is_synthetic=torch.tensor([True, False, True, False]), synthetic_weight=0.3)
    with pytest.raises(ValueError, match=message):
        weighted_cross_entropy(**{**args, **kwargs})


@pytest.mark.parametrize("kwargs, message", [
    (dict(temperature=0), r"TeacherLabels: temperature=0 must be a number > 0"),
    (dict(temperature=-1.0), r"temperature=-1.0 must be a number > 0"),
    (dict(mode="sotf"), r"TeacherLabels: mode='sotf': use one of \['soft', 'hard'\] \(did you mean 'soft'\?\)"),
    (dict(mode="drop"), r"mode='drop'.*quality_filter=ClassifierFilter"),
    (dict(mode="hard", temperature=2.0), r"temperature=2.0 applies to mode='soft' only"),
    (dict(batch_size=0), r"TeacherLabels: batch_size=0 must be an integer >= 1"),
])
def test_teacher_labels_refuse_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TeacherLabels(small_teacher(), **kwargs)


def test_synthetic_dataset_refuses_bad_strategy_arguments(gen, real):
    with pytest.raises(ValueError, match=r"teacher=Sequential must be a synthaug.TeacherLabels"):
        SyntheticDataset(gen, 0.3, real=real, teacher=small_teacher())
    with pytest.raises(ValueError, match=r"return_is_synthetic='yes' must be true or false"):
        SyntheticDataset(gen, 0.3, real=real, return_is_synthetic="yes")
    with pytest.raises(ValueError, match=r"TeacherLabels: teacher=float must be a classifier trained on the real"):
        TeacherLabels(3.0)
    three = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 3))
    with pytest.raises(ValueError, match=r"the teacher predicts 3 classes but the data set has 2"):
        SyntheticDataset(gen, 0.3, real=real, teacher=TeacherLabels(three))
    with pytest.raises(ValueError, match=r"ratio=None"):
        SyntheticDataset(gen, None, real=real)
