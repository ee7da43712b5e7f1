"""Issue 15, the plugin walls of a user's first hour: any PyTorch data set as ``real``, one item format,
pools sampled once (device, pool_dir, several processes, progress, never while pickling), and SyntheticMix
refusing annotations and saving its pool as an absolute path."""
from __future__ import annotations

import copy
import pickle
import warnings
from pathlib import Path

import albumentations as A
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset, random_split
from torch.utils.data._utils.collate import default_collate
from torchvision import transforms as T
from torchvision.datasets import ImageFolder

from synthaug import SyntheticDataset, create_generator
from synthaug.mix import pool as pool_module
from synthaug.mix import transform_pool as mix_pool_module  # where SyntheticMix samples its pool
from synthaug.mix.albumentations import SyntheticMix
from synthaug.mix.items import augmenting_steps, class_id, fit_image, read_targets, to_uint8_image
from synthaug.mix.pool import SyntheticPool, generate_pool, load_pool

SIZE = 16


@pytest.fixture(scope="module")
def gen():
    torch.manual_seed(0)
    return create_generator("cvae-tiny", num_classes=2, image_size=SIZE, channels=3)


class Counting:
    """A generator that counts its sample() calls (and is not a torch module, so it has no weights hash)."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0
        self.num_classes, self.channels, self.image_size = inner.num_classes, inner.channels, inner.image_size
        self.generator_name, self.generator_options = inner.generator_name, inner.generator_options

    def sample(self, n, labels=None, *, generator=None):
        self.calls += 1
        return self.inner.sample(n, labels, generator=generator)


def write_folder(root: Path, sizes=((SIZE, SIZE),), per_class: int = 6, mode: str = "RGB") -> Path:
    """An ImageFolder tree: classes ``cat_a`` (dark) and ``cat_b`` (bright), PNGs of the given (w, h) sizes."""
    rng = np.random.default_rng(0)
    for c, (name, low) in enumerate((("cat_a", 20), ("cat_b", 150))):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            w, h = sizes[i % len(sizes)]
            shape = (h, w, 3) if mode == "RGB" else (h, w)
            Image.fromarray(rng.integers(low, low + 80, shape).astype(np.uint8), mode).save(root / name / f"{i}.png")
    return root


def check_items_collate(ds: SyntheticDataset, channels: int = 3) -> None:
    """Every item is (uint8 (C, S, S), int); shuffled batches collate whichever kind comes first."""
    real_i, syn_i = 0, len(ds) - 1
    assert not ds.is_synthetic(real_i) and ds.is_synthetic(syn_i)
    for i in (real_i, syn_i):
        image, label = ds[i]
        assert isinstance(image, torch.Tensor) and image.dtype == torch.uint8
        assert image.shape == (channels, ds.image_size, ds.image_size)
        assert type(label) is int
    for order in ((real_i, syn_i), (syn_i, real_i)):  # a batch that starts with a real item, and one that does not
        images, labels = default_collate([ds[i] for i in order])
        assert labels.dtype == torch.int64 and labels.shape == (2,)
    loader = DataLoader(ds, batch_size=3, shuffle=True, generator=torch.Generator().manual_seed(0))
    seen = 0
    for images, labels in loader:
        assert images.dtype == torch.uint8 and images.shape[1:] == (channels, ds.image_size, ds.image_size)
        assert labels.dtype == torch.int64 and labels.ndim == 1
        seen += len(labels)
    assert seen == len(ds)


# --------------------------------------------------------------------------- every kind of real data set
def test_image_folder_without_transform(gen, tmp_path):
    folder = ImageFolder(write_folder(tmp_path / "folder"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = SyntheticDataset(gen, 0.3, real=folder)
    assert ds.classes == ["cat_a", "cat_b"] and ds.num_real == 12
    image, label = ds[0]
    assert torch.equal(image, T.PILToTensor()(folder[0][0])) and label == folder[0][1]
    check_items_collate(ds)


def test_image_folder_with_only_format_transforms_does_not_warn(gen, tmp_path):
    root = write_folder(tmp_path / "folder")
    for transform in (T.PILToTensor(), T.ToTensor(), T.Compose([T.Resize(SIZE), T.CenterCrop(SIZE), T.PILToTensor()])):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ds = SyntheticDataset(gen, 0.3, real=ImageFolder(root, transform=transform))
        check_items_collate(ds)
    # ToTensor's floats come back as the same uint8 pixels
    plain = ImageFolder(root)
    floats = SyntheticDataset(gen, 0.3, real=ImageFolder(root, transform=T.ToTensor()))
    assert torch.equal(floats[3][0], T.PILToTensor()(plain[3][0]))


def test_real_augmentation_warns_and_names_the_steps(gen, tmp_path):
    root = write_folder(tmp_path / "folder")
    augmenting = T.Compose([T.RandomHorizontalFlip(), T.PILToTensor()])
    with pytest.warns(UserWarning, match="RandomHorizontalFlip") as record:
        SyntheticDataset(gen, 0.3, real=ImageFolder(root, transform=augmenting))
    assert "PILToTensor," not in str(record[0].message).split("applies")[1].split("which")[0]
    assert augmenting_steps(T.Compose([T.PILToTensor(), T.ColorJitter(0.2)])) == ["ColorJitter"]
    # a Subset's transform sits on its parent: still seen
    with pytest.warns(UserWarning, match="RandomHorizontalFlip"):
        SyntheticDataset(gen, 0.3, real=Subset(ImageFolder(root, transform=augmenting), [0, 1, 7]))


def test_normalized_real_images_are_refused_with_the_fix(gen, tmp_path):
    root = write_folder(tmp_path / "folder")
    normalized = T.Compose([T.ToTensor(), T.Normalize((0.5,) * 3, (0.25,) * 3)])
    with pytest.warns(UserWarning, match="Normalize"), pytest.raises(ValueError, match="Normalize"):
        SyntheticDataset(gen, 0.3, real=ImageFolder(root, transform=normalized))


def test_tensor_datasets_uint8_and_float(gen):
    rng = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (20, 3, SIZE, SIZE), dtype=torch.uint8, generator=rng)
    labels = torch.tensor([0, 1] * 10)
    for real in (TensorDataset(images, labels), TensorDataset(images.float() / 255, labels)):
        ds = SyntheticDataset(gen, 0.3, real=real)
        assert torch.equal(ds[5][0], images[5]) and ds[5][1] == 1
        check_items_collate(ds)


class MedMNISTLike(Dataset):
    """Like medmnist's data sets: PIL images, labels shaped (1,), ``labels`` (N, 1) and ``info["label"]``."""

    info = {"label": {"0": "malignant", "1": "benign"}}

    def __init__(self, n: int = 14, *, declared: bool = True, mode: str = "L"):
        rng = np.random.default_rng(1)
        self.images = rng.integers(0, 256, (n, SIZE, SIZE) if mode == "L" else (n, SIZE, SIZE, 3)).astype(np.uint8)
        if declared:
            self.labels = (np.arange(n) % 2)[:, None]
        self._labels = (np.arange(n) % 2)[:, None]
        self.mode, self.reads = mode, 0

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        self.reads += 1
        return Image.fromarray(self.images[i], self.mode), self._labels[i]


def test_labels_shaped_one_as_medmnist_gives(gen):
    real = MedMNISTLike()
    ds = SyntheticDataset(gen, 0.3, real=real)
    assert ds.classes == ["malignant", "benign"]
    assert ds.channels == 1  # grayscale real images: synthetic ones are converted to one channel
    assert real.reads == 1  # the labels came from .labels; only item 0 was read, for the image format
    np.testing.assert_array_equal(ds.real_targets, np.arange(14) % 2)
    check_items_collate(ds, channels=1)


def test_pil_dataset_without_declared_labels_reads_them_once(gen):
    real = MedMNISTLike(declared=False, mode="RGB")
    ds = SyntheticDataset(gen, 0.3, real=real)
    assert real.reads == len(real) + 1  # no cheap path: every label read once (and item 0 for the format)
    check_items_collate(ds)


class Arrays(Dataset):
    """numpy (H, W, C) images with numpy, 0-d tensor or Python labels."""

    def __init__(self, label_kind: str):
        self.images = np.random.default_rng(2).integers(0, 256, (10, SIZE, SIZE, 3)).astype(np.uint8)
        self.kind = label_kind

    def __len__(self):
        return 10

    def __getitem__(self, i):
        label = {"numpy": np.int64(i % 2), "tensor0d": torch.tensor(i % 2), "tensor1": torch.tensor([i % 2]),
                 "python": i % 2}[self.kind]
        return self.images[i], label


@pytest.mark.parametrize("label_kind", ["numpy", "tensor0d", "tensor1", "python"])
def test_numpy_images_and_any_label_type(gen, label_kind):
    real = Arrays(label_kind)
    ds = SyntheticDataset(gen, 0.3, real=real)
    assert torch.equal(ds[4][0], torch.from_numpy(real.images[4]).permute(2, 0, 1))
    check_items_collate(ds)


class CountingFolder(ImageFolder):
    def __init__(self, root):
        self.reads = 0
        super().__init__(root)

    def __getitem__(self, i):
        self.reads += 1
        return super().__getitem__(i)


def test_subset_and_random_split_read_the_parents_targets(gen, tmp_path):
    parent = CountingFolder(write_folder(tmp_path / "folder", per_class=10))
    part = Subset(parent, [19, 3, 11, 0, 8, 12])
    ds = SyntheticDataset(gen, 0.3, real=part)
    assert parent.reads == 1  # labels looked up in parent.targets; item 0 read for the image format
    np.testing.assert_array_equal(ds.real_targets, np.asarray(parent.targets)[[19, 3, 11, 0, 8, 12]])
    assert ds.classes == ["cat_a", "cat_b"]
    check_items_collate(ds)
    train, _ = random_split(parent, [0.7, 0.3], generator=torch.Generator().manual_seed(0))
    nested = Subset(train, [0, 2, 4, 6])  # a Subset of a random_split part: still cheap
    parent.reads = 0
    for real in (train, nested):
        SyntheticDataset(gen, 0.3, real=real)
    assert parent.reads == 2
    np.testing.assert_array_equal(read_targets(nested), [parent.targets[train.indices[i]] for i in (0, 2, 4, 6)])
    check_items_collate(SyntheticDataset(gen, 0.3, real=train))


def test_non_square_real_images_are_letterboxed_to_the_generator_size(gen, tmp_path):
    root = write_folder(tmp_path / "wide", sizes=((24, 12), (12, 24)))
    with pytest.warns(UserWarning, match="letterboxed"):
        ds = SyntheticDataset(gen, 0.3, real=ImageFolder(root))
    assert ds.image_size == SIZE
    wide, _ = ds[6]  # class cat_b (bright), 24 wide x 12 high: black bands above and below
    assert wide.shape == (3, SIZE, SIZE)
    assert int(wide[:, 0].max()) == 0 and int(wide[:, SIZE // 2].min()) > 100
    tall, _ = ds[7]  # 12 wide x 24 high: black bands left and right
    assert int(tall[:, :, 0].max()) == 0 and int(tall[:, :, SIZE // 2].min()) > 100
    check_items_collate(ds)


def test_real_images_of_another_size_than_the_first_are_fitted(gen, tmp_path):
    root = write_folder(tmp_path / "mixed", sizes=((SIZE, SIZE), (20, 20)), mode="L")
    ds = SyntheticDataset(gen, 0.3, real=ImageFolder(root))  # torchvision's loader makes every image RGB
    assert ds.image_size == SIZE and ds[1][0].shape == (3, SIZE, SIZE)
    check_items_collate(ds)


# --------------------------------------------------------------------------- the edge helpers and their errors
def test_to_uint8_image_kinds_and_errors():
    gray = np.arange(16, dtype=np.uint8).reshape(4, 4)
    assert to_uint8_image(Image.fromarray(gray, "L")).shape == (1, 4, 4)
    assert to_uint8_image(gray).shape == (1, 4, 4)
    rgb = np.random.default_rng(0).integers(0, 256, (4, 6, 3)).astype(np.uint8)
    chw = torch.from_numpy(rgb).permute(2, 0, 1)
    for image in (rgb, Image.fromarray(rgb), chw, chw.float() / 255, chw.double() / 255, chw.long()):
        assert torch.equal(to_uint8_image(image), chw)
    rgba = Image.fromarray(np.dstack([rgb, np.full((4, 6), 255, np.uint8)]), "RGBA")
    assert torch.equal(to_uint8_image(rgba), chw)  # opaque alpha: the RGB pixels
    wide = Image.fromarray((np.arange(16, dtype=np.uint16).reshape(4, 4) * 4096).astype(np.uint16))
    assert to_uint8_image(wide).max() == round(15 * 4096 / 65535 * 255)  # 16-bit rescaled, not clipped
    for bad, needle in ((chw.float(), "in \\[0, 1\\]"), (chw.long() * 300, "0..255"), ("x", "str"),
                        (torch.zeros(2, 5, 5), "shape"), (torch.zeros(4, 4, 4, dtype=torch.uint8), "4 channels"),
                        (torch.zeros(3, 4, 4, dtype=torch.bool), "boolean"),
                        (torch.full((3, 4, 4), float("nan")), "NaN")):
        with pytest.raises(ValueError, match=needle):
            to_uint8_image(bad, where="real item 7")
    assert fit_image(chw, 1, 6).shape == (1, 6, 6)


@pytest.mark.parametrize(("label", "expected"), [(3, 3), (np.int32(2), 2), (torch.tensor(1), 1),
                                                 (torch.tensor([4]), 4), (np.array([[5]]), 5)])
def test_class_id_accepts_every_integer_kind(label, expected):
    assert class_id(label) == expected and type(class_id(label)) is int


@pytest.mark.parametrize("label", [1.0, torch.tensor([0, 1]), "1", True, np.array([0.0])])
def test_class_id_refuses_others(label):
    with pytest.raises(ValueError, match="label"):
        class_id(label)


def test_bad_real_items_name_the_item(gen):
    class Triples(Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return torch.zeros(3, SIZE, SIZE, dtype=torch.uint8), 0, "extra"

    with pytest.raises(ValueError, match="real item 0 is a tuple of 3 elements"):
        SyntheticDataset(gen, 0.3, real=Triples())
    multi = TensorDataset(torch.zeros(4, 3, SIZE, SIZE, dtype=torch.uint8), torch.zeros(4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="label of real item 0"):
        SyntheticDataset(gen, 0.3, real=multi)  # multi-label targets: one class id per item is needed


# --------------------------------------------------------------------------- pools: never while pickling
def test_pickling_never_samples(gen, tmp_path):
    counting = Counting(gen)
    real = TensorDataset(torch.zeros(10, 3, SIZE, SIZE, dtype=torch.uint8), torch.tensor([0, 1] * 5))
    ds = SyntheticDataset(counting, 0.3, real=real)
    made = counting.calls
    assert made > 0
    copy.deepcopy(pickle.loads(pickle.dumps(ds)))
    assert counting.calls == made

    counting = Counting(gen)
    mix = SyntheticMix(counting, p=1.0, n_per_class=3)
    pickle.dumps(mix)
    pickle.dumps(A.Compose([mix]))
    assert counting.calls == 0  # not sampled: pickling a transform stays cheap
    fresh_copy = pickle.loads(pickle.dumps(mix))
    with pytest.raises(RuntimeError, match="prepare"):
        fresh_copy(image=np.zeros((SIZE, SIZE, 3), np.uint8), label=0)  # the generator object did not travel
    mix.prepare()
    assert counting.calls == 1
    ready_copy = pickle.loads(pickle.dumps(mix))  # a prepared pool travels with the copy
    ready_copy(image=np.zeros((SIZE, SIZE, 3), np.uint8), label=1)
    assert counting.calls == 1


def test_pickling_a_checkpoint_mix_never_samples(gen, tmp_path, monkeypatch):
    calls = []
    real_generate = mix_pool_module.generate_pool
    monkeypatch.setattr(mix_pool_module, "generate_pool", lambda *a, **k: calls.append(1) or real_generate(*a, **k))
    mix = SyntheticMix(gen.save(tmp_path / "ckpt"), p=1.0, n_per_class=2)
    state = pickle.dumps(A.Compose([mix]))
    assert calls == []
    pickle.loads(state)(image=np.zeros((SIZE, SIZE, 3), np.uint8), label=0)  # the copy samples on first use
    assert calls == [1]


# --------------------------------------------------------------------------- pools: pool_dir, processes, device
def tensor_real(n: int = 10) -> TensorDataset:
    return TensorDataset(torch.zeros(n, 3, SIZE, SIZE, dtype=torch.uint8), torch.tensor([0, 1] * (n // 2)))


def test_pool_dir_is_written_once_and_reused(gen, tmp_path):
    first = Counting(gen)
    ds = SyntheticDataset(first, 0.5, real=tensor_real(), pool_dir=tmp_path / "pool", seed=3)
    assert first.calls > 0 and (tmp_path / "pool" / "pool.json").is_file()
    second = Counting(gen)
    again = SyntheticDataset(second, 0.5, real=tensor_real(), pool_dir=tmp_path / "pool", seed=3)
    assert second.calls == 0  # loaded, memory-mapped, not sampled
    assert isinstance(again._images, np.memmap)
    for i in range(ds.num_real, len(ds)):
        assert torch.equal(ds[i][0], again[i][0]) and ds[i][1] == again[i][1]
    in_memory = SyntheticDataset(gen, 0.5, real=tensor_real(), seed=3)
    assert all(torch.equal(in_memory[i][0], ds[i][0]) for i in range(ds.num_real, len(ds)))
    # the folder is an ordinary pool folder
    assert len(load_pool(tmp_path / "pool")) == ds.num_synthetic
    SyntheticDataset(str(tmp_path / "pool"), 0.5, real=tensor_real())


def test_pool_dir_made_for_another_request_is_refused(gen, tmp_path):
    SyntheticDataset(gen, 0.5, real=tensor_real(), pool_dir=tmp_path / "pool", seed=3)
    with pytest.raises(ValueError, match="seed"):
        SyntheticDataset(gen, 0.5, real=tensor_real(), pool_dir=tmp_path / "pool", seed=4)
    with pytest.raises(ValueError, match="labels"):
        SyntheticDataset(gen, 0.3, real=tensor_real(), pool_dir=tmp_path / "pool", seed=3)
    torch.manual_seed(1)
    retrained = create_generator("cvae-tiny", num_classes=2, image_size=SIZE, channels=3)
    with pytest.raises(ValueError, match="weights_sha256"):
        SyntheticDataset(retrained, 0.5, real=tensor_real(), pool_dir=tmp_path / "pool", seed=3)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("not a pool")
    with pytest.raises(FileExistsError, match="other"):
        SyntheticDataset(gen, 0.5, real=tensor_real(), pool_dir=tmp_path / "other")
    (tmp_path / "empty").mkdir()  # an empty folder made beforehand is fine
    SyntheticDataset(gen, 0.5, real=tensor_real(), pool_dir=tmp_path / "empty")
    for bad in (3, ""):
        with pytest.raises(ValueError, match="pool_dir"):
            SyntheticDataset(gen, 0.5, real=tensor_real(), pool_dir=bad)
        with pytest.raises(ValueError, match="pool_dir"):
            SyntheticMix(gen, pool_dir=bad)
    with pytest.raises(ValueError, match="applies when generating"):
        SyntheticDataset(str(tmp_path / "pool"), 0.5, real=tensor_real(), pool_dir=tmp_path / "again")


def test_refreshed_pools_are_kept_in_pool_dir(gen, tmp_path):
    first = Counting(gen)
    ds = SyntheticDataset(first, 0.5, real=tensor_real(), pool_dir=tmp_path / "pool", refresh_every=1)
    ds.set_epoch(1)
    assert (tmp_path / "pool" / "refresh-0001" / "pool.json").is_file()
    second = Counting(gen)
    again = SyntheticDataset(second, 0.5, real=tensor_real(), pool_dir=tmp_path / "pool", refresh_every=1)
    worker_copy = pickle.loads(pickle.dumps(again))  # without the generator, but the pools are on disk
    again.set_epoch(1)
    worker_copy.set_epoch(1)
    assert second.calls == 0
    assert torch.equal(ds[len(ds) - 1][0], again[len(again) - 1][0])
    assert torch.equal(ds[len(ds) - 1][0], worker_copy[len(ds) - 1][0])
    with pytest.raises(RuntimeError, match="main process"):
        worker_copy.set_epoch(2)  # not on disk yet: only the main process can sample it


class FakeAccelerator:
    """What SyntheticDataset uses of accelerate.Accelerator; ``wait`` runs at the barrier."""

    def __init__(self, is_main: bool, wait=None):
        self.is_main_process, self.num_processes, self.waits, self._wait = is_main, 2, 0, wait

    def wait_for_everyone(self):
        self.waits += 1
        if self._wait is not None:
            self._wait()


def test_under_several_processes_the_main_one_samples_and_the_others_load(gen, tmp_path):
    main_gen, other_gen = Counting(gen), Counting(gen)
    main = FakeAccelerator(True)
    built = {}

    def main_process_runs():  # while the other process waits, the main one builds its data set
        built["main"] = SyntheticDataset(main_gen, 0.5, real=tensor_real(), pool_dir=tmp_path / "pool",
                                         accelerator=main)

    other = FakeAccelerator(False, wait=main_process_runs)
    ds = SyntheticDataset(other_gen, 0.5, real=tensor_real(), pool_dir=tmp_path / "pool", accelerator=other)
    assert other_gen.calls == 0 and main_gen.calls > 0
    assert other.waits == 1 and main.waits == 1  # each process passes the barrier once
    assert all(torch.equal(ds[i][0], built["main"][i][0]) for i in range(len(ds)))
    # a later run finds the pool: nobody samples, everybody still meets at the barrier once
    late = FakeAccelerator(True)
    SyntheticDataset(main_gen, 0.5, real=tensor_real(), pool_dir=tmp_path / "pool", accelerator=late)
    assert late.waits == 1 and main_gen.calls == 1


def test_a_failing_main_process_still_releases_the_others(gen, tmp_path):
    main = FakeAccelerator(True)
    with pytest.raises(ValueError, match="rejected too many"):
        SyntheticDataset(gen, 0.5, real=tensor_real(), pool_dir=tmp_path / "pool", accelerator=main,
                         quality_filter=lambda x, y: torch.zeros(len(x), dtype=torch.bool), max_filter_rounds=1)
    assert main.waits == 1
    with pytest.raises(RuntimeError, match="main process did not write"):
        SyntheticDataset(gen, 0.5, real=tensor_real(), pool_dir=tmp_path / "pool", accelerator=FakeAccelerator(False))


def test_several_processes_without_pool_dir_warn(gen, monkeypatch):
    monkeypatch.setattr(pool_module, "_warned_unshared", False)
    with pytest.warns(UserWarning, match="pool_dir"):
        SyntheticDataset(gen, 0.5, real=tensor_real(), accelerator=FakeAccelerator(True))
    with pytest.raises(ValueError, match="accelerator"):
        SyntheticDataset(gen, 0.5, real=tensor_real(), accelerator=object())


def test_torch_distributed_is_detected(gen, tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        processes = pool_module.current_processes()
        assert processes.is_main and processes.count == 1
        SyntheticDataset(gen, 0.5, real=tensor_real(), pool_dir=tmp_path / "pool")
    finally:
        dist.destroy_process_group()


def test_device_option(gen, tmp_path):
    cpu = SyntheticDataset(gen, 0.5, real=tensor_real(), device="cpu", seed=2)
    default = SyntheticDataset(gen, 0.5, real=tensor_real(), seed=2)
    assert torch.equal(cpu.pool, default.pool) and gen.device.type == "cpu"
    from_checkpoint = SyntheticDataset(gen.save(tmp_path / "ckpt"), 0.5, real=tensor_real(), device="cpu", seed=2)
    assert torch.equal(from_checkpoint.pool, default.pool)
    with pytest.raises(ValueError, match="device='gpu'"):
        SyntheticDataset(gen, 0.5, real=tensor_real(), device="gpu")
    with pytest.raises(ValueError, match="device=3"):
        SyntheticDataset(gen, 0.5, real=tensor_real(), device=3)
    pool = SyntheticPool(np.zeros((4, 3, SIZE, SIZE), np.uint8), np.array([0, 1, 0, 1]), 2)
    with pytest.raises(ValueError, match="applies when generating"):
        SyntheticDataset(pool, 0.5, real=tensor_real(), device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            SyntheticDataset(gen, 0.5, real=tensor_real(), device="cuda")
        with pytest.raises(ValueError, match="CUDA"):
            SyntheticMix(tmp_path / "ckpt", device="cuda")


def test_progress_bar(gen, capsys):
    labels = np.repeat([0, 1], 4)
    generate_pool(gen, labels, progress=True, desc="sampling the test pool")
    assert "sampling the test pool" in capsys.readouterr().err
    generate_pool(gen, labels, progress=False, desc="sampling the test pool")
    SyntheticDataset(gen, 0.5, real=tensor_real(), progress=False)
    assert "sampling" not in capsys.readouterr().err
    SyntheticDataset(gen, 0.5, real=tensor_real(), progress=True)
    assert "sampling" in capsys.readouterr().err
    with pytest.raises(ValueError, match="progress='yes'"):
        SyntheticDataset(gen, 0.5, real=tensor_real(), progress="yes")


# --------------------------------------------------------------------------- SyntheticMix
@pytest.fixture()
def mix_pool(tmp_path) -> Path:
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (8, 3, SIZE, SIZE)).astype(np.uint8)
    return SyntheticPool(images, np.repeat([0, 1], 4), 2).save(tmp_path / "pools" / "mix")


def image_and_mask():
    return np.zeros((SIZE, SIZE, 3), np.uint8), np.zeros((SIZE, SIZE), np.uint8)


def test_mix_refuses_masks_boxes_and_keypoints(mix_pool):
    image, mask = image_and_mask()
    cases = [
        (A.Compose([SyntheticMix(mix_pool, p=1.0)]), dict(mask=mask), "mask"),
        (A.Compose([SyntheticMix(mix_pool, p=1.0)]), dict(masks=[mask]), "masks"),
        (A.Compose([A.HorizontalFlip(), SyntheticMix(mix_pool, p=1.0)], bbox_params=A.BboxParams(format="pascal_voc",
                                                                            label_fields=["classes"])),
         dict(bboxes=[[1, 1, 5, 5]], classes=[0]), "bboxes"),
        (A.Compose([A.HorizontalFlip(), SyntheticMix(mix_pool, p=1.0)], keypoint_params=A.KeypointParams(format="xy")),
         dict(keypoints=[[2, 3]]), "keypoints"),
        (A.Compose([A.HorizontalFlip(p=1.0), SyntheticMix(mix_pool, p=1.0)], additional_targets={"lesion": "mask"}),
         dict(lesion=mask), "lesion"),
    ]
    for pipeline, extra, needle in cases:
        with pytest.raises(ValueError, match=f"no matching .*{needle}"):
            pipeline(image=image, label=0, **extra)
    with pytest.raises(ValueError, match="mask"):
        SyntheticMix(mix_pool, p=1.0)(image=image, mask=mask, label=0)
    # without annotations, the same pipelines work
    assert cases[0][0](image=image, label=0)["image"].shape == image.shape


def test_saved_pipeline_loads_from_another_working_directory(mix_pool, tmp_path, monkeypatch):
    monkeypatch.chdir(mix_pool.parent.parent)
    pipeline = A.Compose([SyntheticMix("pools/mix", p=1.0)], seed=0)
    A.save(pipeline, "pipeline.json")
    assert str(mix_pool) in (mix_pool.parent.parent / "pipeline.json").read_text()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    loaded = A.load(str(mix_pool.parent.parent / "pipeline.json"))
    out = loaded(image=np.zeros((SIZE, SIZE, 3), np.uint8), label=1)["image"]
    pool = load_pool(mix_pool)
    assert any(np.array_equal(out, pool.images[i].transpose(1, 2, 0)) for i in pool.indices_of(1))


def test_mix_pool_dir_samples_once(gen, tmp_path, monkeypatch):
    calls = []
    real_generate = mix_pool_module.generate_pool
    monkeypatch.setattr(mix_pool_module, "generate_pool", lambda *a, **k: calls.append(1) or real_generate(*a, **k))
    ckpt = gen.save(tmp_path / "ckpt")
    first = SyntheticMix(ckpt, p=1.0, n_per_class=3, pool_dir=tmp_path / "mixpool").prepare()
    assert calls == [1] and len(load_pool(tmp_path / "mixpool")) == 6
    assert A.to_dict(first)["transform"]["pool_dir"] == str(tmp_path / "mixpool")
    again = pickle.loads(pickle.dumps(SyntheticMix(ckpt, p=1.0, n_per_class=3, pool_dir=tmp_path / "mixpool")))
    again(image=np.zeros((SIZE, SIZE, 3), np.uint8), label=0)
    assert calls == [1]
    with pytest.raises(ValueError, match="labels"):
        SyntheticMix(ckpt, p=1.0, n_per_class=4, pool_dir=tmp_path / "mixpool").prepare()
    with pytest.raises(ValueError, match="pool_dir"):
        SyntheticMix(tmp_path / "mixpool", pool_dir=tmp_path / "other")  # a ready pool is only read
