"""AdditiveSynthetic with the strategy items of SyntheticDataset: soft teacher labels, is_synthetic flags, and the
weighted loss on an extended batch (a fake generator and tiny models, CPU, no real data needed)."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from synthaug import SyntheticDataset, TeacherLabels
from synthaug.mix.additive import AdditiveSynthetic, IndexStream
from synthaug.mix.weighted_loss import weighted_cross_entropy

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE, CLASSES = 8, 2
BATCH, SHARE, EXTRA = 8, 0.25, 2  # 2 synthetic items on top of 8 real ones


class RandomImages:
    """A generator honouring the contract with no model: random uint8 images, the class ignored."""

    num_classes, channels, image_size, latent_dim = CLASSES, 3, SIZE, 0

    def sample(self, n: int, labels=None, *, generator=None) -> torch.Tensor:
        return torch.randint(0, 256, (n, self.channels, SIZE, SIZE), dtype=torch.uint8, generator=generator)


@pytest.fixture(scope="module")
def real():
    """24 random images, labels alternating 0/1."""
    images = torch.randint(0, 256, (24, 3, SIZE, SIZE), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    ds = TensorDataset(images, torch.arange(24) % 2)
    ds.classes = ["a", "b"]
    return ds


def tiny_teacher() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * SIZE * SIZE, CLASSES))


def synthetic(real, **kwargs) -> SyntheticDataset:
    """24 real items then 8 synthetic ones."""
    return SyntheticDataset(RandomImages(), 0.25, real=real, seed=0, **kwargs)


def first_batch(ds) -> tuple[torch.Tensor, ...]:
    return next(iter(DataLoader(ds, batch_size=BATCH, shuffle=True, generator=torch.Generator().manual_seed(0))))


def expected_items(ds: SyntheticDataset, calls: int) -> list[tuple]:
    """The synthetic items ``calls`` extends append: the seeded stream 1 over the synthetic items, in order."""
    stream = IndexStream(ds.num_synthetic, seed=0, stream=1)
    return [ds[ds.num_real + int(i)] for i in stream.take(calls * EXTRA)]


# --------------------------------------------------------------------------- int labels: as before
def test_int_labels_give_the_stream_items_in_int64(real):
    ds = synthetic(real)
    extra = AdditiveSynthetic(ds, per_real=SHARE, seed=0)
    images, labels = first_batch(real)
    out = [extra.extend(images, labels) for _ in range(3)]
    want = expected_items(ds, 3)
    for k, (more, more_labels) in enumerate(out):
        assert more.shape == (BATCH + EXTRA, 3, SIZE, SIZE) and more_labels.shape == (BATCH + EXTRA,)
        assert more_labels.dtype == torch.int64
        assert torch.equal(more[:BATCH], images) and torch.equal(more_labels[:BATCH], labels)
        items = want[k * EXTRA:(k + 1) * EXTRA]
        assert torch.equal(more[BATCH:], torch.stack([image for image, _ in items]))
        assert more_labels[BATCH:].tolist() == [label for _, label in items]
    drawn = AdditiveSynthetic(ds, per_real=SHARE, seed=0).draw(EXTRA)
    assert len(drawn) == 2 and drawn[1].dtype == torch.int64 and torch.equal(drawn[0], out[0][0][BATCH:])


def test_the_old_name_share_still_works_for_one_release_with_a_warning(real):
    ds = synthetic(real)
    with pytest.warns(DeprecationWarning, match="per_real"):
        old = AdditiveSynthetic(ds, share=SHARE, seed=0)
    assert old.per_real == old.share == SHARE and "per_real=" in repr(old)
    assert torch.equal(old.draw(EXTRA)[0], AdditiveSynthetic(ds, per_real=SHARE, seed=0).draw(EXTRA)[0])


def test_a_batch_too_small_for_an_item_is_returned_as_it_came(real):
    extra = AdditiveSynthetic(synthetic(real), per_real=SHARE, seed=0)
    images, labels = first_batch(real)
    one = (images[:1], labels[:1], torch.zeros(1, dtype=torch.bool))
    out = extra.extend(*one)  # round(0.25 * 1) == 0
    assert len(out) == 3 and all(got is given for got, given in zip(out, one)) and extra.drawn == 0


# --------------------------------------------------------------------------- soft teacher labels
def test_soft_teacher_labels_make_the_real_labels_one_hot(real):
    ds = synthetic(real, teacher=TeacherLabels(tiny_teacher(), mode="soft", temperature=2.0))
    extra = AdditiveSynthetic(ds, per_real=SHARE, seed=0)
    images, labels = first_batch(real)  # int class ids (B,), as a plain real loader gives them
    more, more_labels = extra.extend(images, labels)
    assert more_labels.shape == (BATCH + EXTRA, CLASSES) and more_labels.dtype == torch.float32
    one_hot = torch.zeros(BATCH, CLASSES)
    one_hot[torch.arange(BATCH), labels] = 1.0
    assert torch.equal(more_labels[:BATCH], one_hot)
    assert torch.equal(more_labels[BATCH:], torch.stack([label for _, label in expected_items(ds, 1)]))
    assert torch.equal(more[:BATCH], images)
    # real labels already soft (a loader over the same SyntheticDataset): kept as they are
    soft_images, soft_labels = first_batch(ds)
    again, again_labels = AdditiveSynthetic(ds, per_real=SHARE, seed=0).extend(soft_images, soft_labels)
    assert torch.equal(again_labels[:BATCH], soft_labels) and torch.equal(again_labels[BATCH:], more_labels[BATCH:])
    drawn = AdditiveSynthetic(ds, per_real=SHARE, seed=0).draw(3)
    assert drawn[1].shape == (3, CLASSES) and drawn[1].dtype == torch.float32


def test_int_synthetic_labels_become_one_hot_for_soft_real_labels(real):
    ds = synthetic(real)
    extra = AdditiveSynthetic(ds, per_real=SHARE, seed=0)
    images = first_batch(real)[0]
    soft = torch.full((BATCH, CLASSES), 0.5, dtype=torch.float64)
    _, labels = extra.extend(images, soft)
    ids = [label for _, label in expected_items(ds, 1)]
    assert labels.dtype == torch.float64 and labels.shape == (BATCH + EXTRA, CLASSES)
    assert torch.equal(labels[:BATCH], soft)
    assert labels[BATCH:].argmax(1).tolist() == ids and labels[BATCH:].sum(1).tolist() == [1.0] * EXTRA


# --------------------------------------------------------------------------- is_synthetic flags
def test_three_element_items_and_is_synthetic_flags(real):
    ds = synthetic(real, return_is_synthetic=True)
    drawn = AdditiveSynthetic(ds, per_real=SHARE, seed=0).draw(3)
    assert len(drawn) == 3 and drawn[2].dtype == torch.bool and drawn[2].tolist() == [True] * 3
    images, labels, flags = first_batch(ds)  # a loader over the flagged data set: real and synthetic items
    more, more_labels, more_flags = AdditiveSynthetic(ds, per_real=SHARE, seed=0).extend(images, labels, flags)
    assert more_flags.dtype == torch.bool and more_flags.shape == (BATCH + EXTRA,)
    assert torch.equal(more_flags[:BATCH], flags) and more_flags[BATCH:].tolist() == [True] * EXTRA
    assert torch.equal(more[:BATCH], images) and torch.equal(more_labels[:BATCH], labels)
    assert more_labels[BATCH:].tolist() == [label for _, label, _ in expected_items(ds, 1)]
    # a two-element real batch gives two elements back, whatever the source's items
    assert len(AdditiveSynthetic(ds, per_real=SHARE, seed=0).extend(images, labels)) == 2
    # plain 0/1 integer flags are kept in their dtype, 1 for the appended items
    ints = AdditiveSynthetic(ds, per_real=SHARE, seed=0).extend(images, labels, flags.long())[2]
    assert ints.dtype == torch.int64 and ints.tolist() == flags.long().tolist() + [1] * EXTRA


def test_weighted_loss_on_an_extended_batch_with_soft_labels_and_flags(real):
    teacher = TeacherLabels(tiny_teacher(), mode="soft", temperature=2.0)
    ds = synthetic(real, teacher=teacher, return_is_synthetic=True)
    images, labels = first_batch(real)
    flags = torch.zeros(BATCH, dtype=torch.bool)  # a real loader's batch: nothing synthetic yet
    more, more_labels, more_flags = AdditiveSynthetic(ds, per_real=SHARE, seed=0).extend(images, labels, flags)
    assert more_flags.tolist() == [False] * BATCH + [True] * EXTRA
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * SIZE * SIZE, CLASSES))
    logits = model(more.float() / 255)
    logits.retain_grad()
    loss = weighted_cross_entropy(logits, more_labels, more_flags, synthetic_weight=0.0)
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    # weight 0: the appended items give no gradient at all, the real ones do
    assert torch.count_nonzero(logits.grad[BATCH:]) == 0 and torch.count_nonzero(logits.grad[:BATCH]) > 0


# --------------------------------------------------------------------------- clear refusals
def soft_items(classes: int, n: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A plain list as the source (every item synthetic): uniform probability vectors over ``classes``."""
    image = torch.zeros(3, SIZE, SIZE, dtype=torch.uint8)
    return [(image, torch.full((classes,), 1.0 / classes)) for _ in range(n)]


def test_a_different_number_of_classes_is_refused():
    images = torch.zeros(BATCH, 3, SIZE, SIZE, dtype=torch.uint8)
    soft_real = torch.full((BATCH, 3), 1.0 / 3)
    with pytest.raises(ValueError, match=r"AdditiveSynthetic\.extend: the synthetic soft labels have 2 classes but "
                                         r"the real batch's have 3"):
        AdditiveSynthetic(soft_items(2), per_real=SHARE).extend(images, soft_real)
    with pytest.raises(ValueError, match=r"AdditiveSynthetic\.extend: the real class ids go from 0 to 3 but the "
                                         r"probability vectors have 2 classes"):
        AdditiveSynthetic(soft_items(2), per_real=SHARE).extend(images, torch.arange(BATCH) % 4)
    ints = [(images[0], 2) for _ in range(4)]
    with pytest.raises(ValueError, match=r"the synthetic class ids go from 2 to 2 but the probability vectors have 2"):
        AdditiveSynthetic(ints, per_real=SHARE).extend(images, torch.full((BATCH, 2), 0.5))


@pytest.mark.parametrize("source, message", [
    ([(torch.zeros(3, SIZE, SIZE, dtype=torch.uint8), 0, True, "x")] * 4,
     r"AdditiveSynthetic: the source's items must all be \(image, label\) or \(image, label, is_synthetic\)"),
    (soft_items(2, 2) + [(torch.zeros(3, SIZE, SIZE, dtype=torch.uint8), 1)] * 2,
     r"AdditiveSynthetic: the source's labels mix probability vectors and class ids"),
    (soft_items(2, 2) + soft_items(3, 2), r"AdditiveSynthetic: the source's probability vectors have \[2, 3\]"),
])
def test_sources_of_mixed_or_malformed_items_are_refused(source, message):
    with pytest.raises(ValueError, match=message):
        AdditiveSynthetic(source, per_real=SHARE).draw(4)


def test_malformed_real_batches_are_refused():
    extra = AdditiveSynthetic([(torch.zeros(3, SIZE, SIZE, dtype=torch.uint8), 0)] * 4, per_real=SHARE)
    images, labels = torch.zeros(BATCH, 3, SIZE, SIZE, dtype=torch.uint8), torch.zeros(BATCH, dtype=torch.long)
    with pytest.raises(ValueError, match=r"AdditiveSynthetic\.extend: is_synthetic is torch\.bool \(3,\) for a batch "
                                         r"of 8"):
        extra.extend(images, labels, torch.zeros(3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"is_synthetic is torch\.float32"):
        extra.extend(images, labels, torch.zeros(BATCH))
    with pytest.raises(ValueError, match=r"got 4 batch elements"):
        extra.extend(images, labels, torch.zeros(BATCH, dtype=torch.bool), "more")
    with pytest.raises(ValueError, match=r"5 labels for 8 images"):
        extra.extend(images, labels[:5])
    with pytest.raises(ValueError, match=r"the real labels are torch\.int64 \(8, 1\)"):
        extra.extend(images, labels[:, None])
    with pytest.raises(ValueError, match=r"AdditiveSynthetic\.draw: n=0 must be an integer >= 1"):
        extra.draw(0)
