"""SyntheticMix: the albumentations transform that swaps an image for a synthetic one of its class."""
from __future__ import annotations

import hashlib
import json
import pickle
import subprocess
import sys
import textwrap

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from synthaug import create_generator, load_generator
from synthaug.mix import transform_pool as mix_pool_module
from synthaug.mix.albumentations import SyntheticMix, luminance, match_image_format
from synthaug.mix.items import class_id
from synthaug.mix.pool import SyntheticPool, generate_pool

PER_CLASS = 12
DARK_MAX, BRIGHT_MIN = 99, 155  # class 0 pixels are in [0, 99], class 1 pixels in [155, 255]
GRAY = 128  # the "real" input images: constant 128, neither class's range


def hand_pool(*, channels: int = 3, size: int = 16, per_class: int = PER_CLASS) -> SyntheticPool:
    """Class 0: dark noise, class 1: bright noise, so an output tells which class it came from."""
    rng = np.random.default_rng(7)
    dark = rng.integers(0, DARK_MAX + 1, (per_class, channels, size, size))
    bright = rng.integers(BRIGHT_MIN, 256, (per_class, channels, size, size))
    images = np.concatenate([dark, bright]).astype(np.uint8)
    return SyntheticPool(images, np.repeat(np.arange(2), per_class), 2)


def tiny_generator(seed: int = 0):
    torch.manual_seed(seed)
    return create_generator("cvae-tiny", num_classes=2, image_size=16, channels=3)


@pytest.fixture(scope="module")
def pool() -> SyntheticPool:
    return hand_pool()


@pytest.fixture(scope="module")
def pool_dir(tmp_path_factory, pool):
    return pool.save(tmp_path_factory.mktemp("pools") / "hand")


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory):
    return tiny_generator().save(tmp_path_factory.mktemp("ckpt") / "cvae-tiny")


def class_images(pool: SyntheticPool, label: int) -> list[np.ndarray]:
    """The pool images of ``label`` as HWC arrays (no conversion needed at the pool's own size)."""
    return [pool.images[i].transpose(1, 2, 0) for i in pool.indices_of(label)]


def match_index(image: np.ndarray, candidates: list[np.ndarray]) -> int | None:
    for i, c in enumerate(candidates):
        if c.shape == image.shape and np.array_equal(c, image):
            return i
    return None


def gray_input(shape=(16, 16, 3)) -> np.ndarray:
    return np.full(shape, GRAY, np.uint8)


def run(pipeline, labels, shape=(16, 16, 3)) -> list[np.ndarray]:
    return [pipeline(image=gray_input(shape), label=int(y))["image"] for y in labels]


LABELS = [0, 1, 1, 0, 1, 0, 0, 1] * 4


# --------------------------------------------------------------------------- what it does
@pytest.mark.parametrize("label", [0, 1])
def test_p1_gives_a_pool_image_of_the_label_class(pool, pool_dir, label):
    t = SyntheticMix(pool_dir, p=1.0)
    same, other = class_images(pool, label), class_images(pool, 1 - label)
    used = set()
    for _ in range(40):
        out = t(image=gray_input(), label=label)["image"]
        assert out.shape == (16, 16, 3) and out.dtype == np.uint8
        assert match_index(out, other) is None
        hit = match_index(out, same)
        assert hit is not None, "output is not a pool image of the label's class"
        used.add(hit)
    assert len(used) > 3, "the choice among the class's pool images should vary"


def test_works_with_a_pool_sampled_from_a_generator(tmp_path):
    gen = tiny_generator()
    pool = generate_pool(gen, np.repeat(np.arange(2), 5), seed=1)
    path = pool.save(tmp_path / "cvae-pool")
    t = SyntheticMix(path, p=1.0)
    for label in (0, 1, 1, 0):
        out = t(image=gray_input(), label=label)["image"]
        assert match_index(out, class_images(pool, label)) is not None


def test_labels_may_be_numpy_or_torch_integers(pool, pool_dir):
    t = SyntheticMix(pool_dir, p=1.0)
    for label in (np.int64(1), np.array([1]), np.array(1, dtype=np.uint8), torch.tensor(1), torch.tensor([1])):
        out = t(image=gray_input(), label=label)["image"]
        assert match_index(out, class_images(pool, 1)) is not None, label


def test_p0_is_identity(pool_dir):
    t = A.Compose([SyntheticMix(pool_dir, p=0.0)], seed=0)
    rng = np.random.default_rng(0)
    for y in LABELS:
        image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        out = t(image=image.copy(), label=y)
        assert np.array_equal(out["image"], image) and out["label"] == y


def test_p_sets_the_share_of_replaced_images(pool, pool_dir):
    t = A.Compose([SyntheticMix(pool_dir, p=0.3)], seed=5)
    outs = run(t, [1] * 400)
    replaced = [not np.array_equal(o, gray_input()) for o in outs]
    assert 0.2 < np.mean(replaced) < 0.4
    bright = class_images(pool, 1)
    assert all(match_index(o, bright) is not None for o, r in zip(outs, replaced) if r)


# --------------------------------------------------------------------------- seeds
def test_same_compose_seed_same_outputs(pool_dir):
    a = run(A.Compose([SyntheticMix(pool_dir, p=0.5)], seed=11), LABELS)
    b = run(A.Compose([SyntheticMix(pool_dir, p=0.5)], seed=11), LABELS)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_different_compose_seeds_differ(pool_dir):
    a = run(A.Compose([SyntheticMix(pool_dir, p=1.0)], seed=11), LABELS)
    b = run(A.Compose([SyntheticMix(pool_dir, p=1.0)], seed=12), LABELS)
    assert not all(np.array_equal(x, y) for x, y in zip(a, b))


# --------------------------------------------------------------------------- serialization
def pipeline_for(pool_dir, seed: int | None = 3):
    return A.Compose([A.HorizontalFlip(p=0.5), SyntheticMix(pool_dir, p=0.7, label_key="y"), A.RandomRotate90()],
                     seed=seed)


def run_y(pipeline, labels) -> list[np.ndarray]:
    return [pipeline(image=gray_input(), y=int(y))["image"] for y in labels]


def test_to_dict_stores_the_path_and_from_dict_rebuilds(pool_dir):
    t = SyntheticMix(pool_dir, p=0.7, label_key="y", seed=4, batch_size=8)
    d = A.to_dict(t)
    args = d["transform"]
    assert args["__class_fullname__"] == "synthaug.transforms.SyntheticMix"
    assert args["pool"] == str(pool_dir) and isinstance(args["pool"], str)
    assert {k: args[k] for k in ("p", "label_key", "seed", "n_per_class", "batch_size")} == {
        "p": 0.7, "label_key": "y", "seed": 4, "n_per_class": None, "batch_size": 8}
    json.dumps(d)  # plain data only: no pool object
    back = A.from_dict(d)
    assert isinstance(back, SyntheticMix)
    assert back.pool_path == str(pool_dir) and back.label_key == "y" and back.pool_seed == 4 and back.p == 0.7
    assert back.batch_size == 8 and back.n_per_class is None
    assert back.device is None and back.pool_dir is None
    assert set(t.get_transform_init_args_names()) == {"pool", "label_key", "seed", "n_per_class", "batch_size",
                                                      "device", "pool_dir"}

    original, rebuilt = pipeline_for(pool_dir), A.from_dict(A.to_dict(pipeline_for(pool_dir)))
    rebuilt.set_random_seed(3)  # Compose does not serialize its seed
    assert all(np.array_equal(x, y) for x, y in zip(run_y(original, LABELS), run_y(rebuilt, LABELS)))


@pytest.mark.parametrize("data_format", ["json", "yaml"])
def test_save_load_gives_the_same_outputs(tmp_path, pool_dir, data_format):
    path = tmp_path / f"pipeline.{data_format}"
    A.save(pipeline_for(pool_dir), str(path), data_format=data_format)
    assert str(pool_dir) in path.read_text()
    loaded = A.load(str(path), data_format=data_format)
    mix = loaded.transforms[1]
    assert isinstance(mix, SyntheticMix) and mix.pool_path == str(pool_dir) and mix.label_key == "y"
    loaded.set_random_seed(3)
    expected = run_y(pipeline_for(pool_dir), LABELS)
    assert all(np.array_equal(x, y) for x, y in zip(expected, run_y(loaded, LABELS)))


def test_nothing_is_loaded_before_first_use(monkeypatch, pool_dir):
    class Loaded(Exception):
        pass

    def refuse(path):
        raise Loaded(path)

    monkeypatch.setattr(mix_pool_module, "load_pool", refuse)
    t = SyntheticMix(pool_dir, p=1.0)
    back = A.from_dict(A.to_dict(A.Compose([t])))
    pickle.loads(pickle.dumps(back))
    repr(back)
    with pytest.raises(Loaded):
        back(image=gray_input(), label=0)


def test_pickles_without_the_pool_images_and_gives_the_same_outputs(pool_dir):
    big = SyntheticPool(np.zeros((400, 3, 32, 32), np.uint8), np.repeat(np.arange(2), 200), 2)
    path = big.save(pool_dir.parent / "big")
    t = SyntheticMix(path, p=1.0)
    t(image=gray_input(), label=1)  # loads the pool (memory-mapped)
    assert len(pickle.dumps(t)) < big.images.nbytes / 10

    pipeline = A.Compose([SyntheticMix(pool_dir, p=0.5)], seed=2)
    run(pipeline, [0, 1])
    copy = pickle.loads(pickle.dumps(pipeline))  # same random state, pool re-mapped on first use
    a, b = run(pipeline, LABELS), run(copy, LABELS)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


# --------------------------------------------------------------------------- in a pipeline
def test_composes_with_flips_and_rotations_before(pool, pool_dir):
    t = A.Compose([A.HorizontalFlip(p=1), A.RandomRotate90(p=1), SyntheticMix(pool_dir, p=1.0)], seed=0)
    for y, out in zip(LABELS, run(t, LABELS)):
        assert match_index(out, class_images(pool, y)) is not None


def test_composes_with_flips_and_rotations_after(pool, pool_dir):
    flip = A.Compose([SyntheticMix(pool_dir, p=1.0), A.HorizontalFlip(p=1)], seed=0)
    for y, out in zip(LABELS, run(flip, LABELS)):
        assert match_index(out, class_images(pool, y)) is None  # it was flipped
        assert match_index(np.ascontiguousarray(out[:, ::-1]), class_images(pool, y)) is not None

    rotate = A.Compose([SyntheticMix(pool_dir, p=1.0), A.RandomRotate90(p=1)], seed=0)
    turns = set()
    for y, out in zip(LABELS, run(rotate, LABELS)):
        ks = [k for k in range(4) if match_index(np.ascontiguousarray(np.rot90(out, -k)), class_images(pool, y))
              is not None]
        assert ks, "output is not a rotated pool image of the label's class"
        turns.update(ks)
    assert len(turns) > 1


def test_composes_with_normalize_after(pool, pool_dir):
    t = A.Compose([SyntheticMix(pool_dir, p=1.0), A.Normalize(mean=0, std=1, max_pixel_value=255.0)], seed=0)
    for y, out in zip(LABELS, run(t, LABELS)):
        assert out.dtype == np.float32 and out.shape == (16, 16, 3)
        back = np.rint(out * 255).astype(np.uint8)
        assert match_index(back, class_images(pool, y)) is not None


def test_float_images_are_refused(pool_dir):
    t = A.Compose([A.Normalize(), SyntheticMix(pool_dir, p=0.5)])
    with pytest.raises(ValueError, match="uint8"):
        t(image=gray_input(), label=0)


def test_strict_compose_accepts_the_label_key(pool, pool_dir):
    t = A.Compose([SyntheticMix(pool_dir, p=1.0, label_key="target")], strict=True)
    out = t(image=gray_input(), target=1)
    assert match_index(out["image"], class_images(pool, 1)) is not None and out["target"] == 1


# --------------------------------------------------------------------------- format conversion
def test_larger_input_gets_an_upscaled_pool_image(pool, pool_dir):
    t = SyntheticMix(pool_dir, p=1.0)
    expected = [cv2.resize(np.ascontiguousarray(img), (32, 32), interpolation=cv2.INTER_LINEAR)
                for img in class_images(pool, 1)]
    for _ in range(10):
        out = t(image=gray_input((32, 32, 3)), label=1)["image"]
        assert out.shape == (32, 32, 3) and out.dtype == np.uint8
        assert match_index(out, expected) is not None


def test_smaller_and_non_square_inputs(pool, pool_dir):
    t = SyntheticMix(pool_dir, p=1.0)
    # 16 -> 6 px, not an exact halving (where bilinear and area averaging agree)
    small = [cv2.resize(np.ascontiguousarray(img), (6, 6), interpolation=cv2.INTER_AREA)
             for img in class_images(pool, 0)]
    out = t(image=gray_input((6, 6, 3)), label=0)["image"]
    assert match_index(out, small) is not None
    out = t(image=gray_input((24, 40, 3)), label=0)["image"]
    assert out.shape == (24, 40, 3) and out.max() <= DARK_MAX


def reference_luminance(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    return np.rint(0.299 * r + 0.587 * g + 0.114 * b)


@pytest.mark.parametrize("shape", [(16, 16), (16, 16, 1)])
def test_grayscale_input_with_an_rgb_pool(pool, pool_dir, shape):
    t = SyntheticMix(pool_dir, p=1.0)
    for label in (0, 1, 1):
        out = t(image=gray_input(shape), label=label)["image"]
        assert out.shape == shape and out.dtype == np.uint8
        gray = out.reshape(16, 16).astype(np.float64)
        diffs = [np.abs(gray - reference_luminance(img)).max() for img in class_images(pool, label)]
        assert min(diffs) <= 1  # float32 vs float64 rounding at .5


@pytest.mark.parametrize("shape", [(16, 16), (16, 16, 1), (16, 16, 3)])
def test_outputs_are_writable_copies(tmp_path, shape):
    # A pool folder is a read-only memory map; even without any conversion the output must be an own array.
    channels = 3 if len(shape) == 3 and shape[2] == 3 else 1
    t = SyntheticMix(hand_pool(channels=channels).save(tmp_path / "pool"), p=1.0)
    out = t(image=gray_input(shape), label=0)["image"]
    assert out.shape == shape and out.flags.writeable and out.flags.c_contiguous
    out[...] = 0  # must not raise, and must not change the pool
    assert t.pool.images[t.pool.indices_of(0)].max() > 0


def test_rgb_input_with_a_grayscale_pool(tmp_path):
    gray_pool = hand_pool(channels=1)
    t = SyntheticMix(gray_pool.save(tmp_path / "gray"), p=1.0)
    out = t(image=gray_input(), label=1)["image"]
    assert out.shape == (16, 16, 3)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 0], out[..., 2])
    assert match_index(out[..., :1], class_images(gray_pool, 1)) is not None


def test_match_image_format_directly():
    rng = np.random.default_rng(0)
    chw = rng.integers(0, 256, (3, 10, 10), dtype=np.uint8)
    hwc = np.ascontiguousarray(chw.transpose(1, 2, 0))
    assert np.array_equal(match_image_format(chw, (10, 10, 3)), hwc)
    assert np.array_equal(match_image_format(chw, (4, 4, 3)), cv2.resize(hwc, (4, 4), interpolation=cv2.INTER_AREA))
    assert np.array_equal(match_image_format(chw, (20, 20, 3)),
                          cv2.resize(hwc, (20, 20), interpolation=cv2.INTER_LINEAR))
    assert np.abs(luminance(hwc).astype(float) - reference_luminance(hwc)).max() <= 1
    with pytest.raises(ValueError, match="channel"):
        match_image_format(chw, (10, 10, 4))
    with pytest.raises(ValueError, match="uint8"):
        match_image_format(chw.astype(np.float32), (10, 10, 3))


# --------------------------------------------------------------------------- generator checkpoints and objects
def test_checkpoint_as_pool(ckpt_dir):
    t = SyntheticMix(ckpt_dir, p=1.0, n_per_class=6, seed=3)
    labels = np.repeat(np.arange(2), 6)
    reference = generate_pool(load_generator(ckpt_dir), labels, seed=3)
    for label in (0, 1, 0, 1):
        out = t(image=gray_input(), label=label)["image"]
        assert match_index(out, class_images(reference, label)) is not None
        assert match_index(out, class_images(reference, 1 - label)) is None
    assert len(t.pool) == 12 and np.array_equal(t.pool.images, reference.images)

    other_seed = SyntheticMix(ckpt_dir, p=1.0, n_per_class=6, seed=4)
    assert not np.array_equal(other_seed.pool.images, reference.images)
    default = SyntheticMix(ckpt_dir, p=1.0)
    assert np.bincount(default.pool.labels).tolist() == [256, 256]


def test_checkpoint_pool_is_deterministic_for_a_seed(ckpt_dir):
    make = lambda: A.Compose([SyntheticMix(ckpt_dir, p=0.8, n_per_class=5)], seed=9)  # noqa: E731
    a, b = run(make(), LABELS), run(make(), LABELS)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert any(not np.array_equal(x, gray_input()) for x in a)


@pytest.mark.parametrize("kind", ["pool", "generator"])
def test_objects_work_but_do_not_serialize(pool, kind):
    source = pool if kind == "pool" else tiny_generator()
    t = SyntheticMix(source, p=1.0, **({} if kind == "pool" else {"n_per_class": 3}))
    out = t(image=gray_input(), label=1)["image"]
    assert out.shape == (16, 16, 3)
    if kind == "pool":
        assert match_index(out, class_images(pool, 1)) is not None
    assert "object" in repr(t)
    for save in (lambda: A.to_dict(t), lambda: A.to_dict(A.Compose([t]))):
        with pytest.raises(NotImplementedError, match="pass a path"):
            save()


# --------------------------------------------------------------------------- errors
def test_missing_label_names_the_label_key(pool_dir):
    t = A.Compose([SyntheticMix(pool_dir, p=0.5, label_key="diagnosis")])
    with pytest.raises(ValueError, match="label_key='diagnosis'"):
        t(image=gray_input())
    with pytest.raises(ValueError, match="label_key='diagnosis'"):
        t(image=gray_input(), label=1)


@pytest.mark.parametrize("label", [5, 2, -1])
def test_label_outside_the_classes(pool_dir, label):
    t = SyntheticMix(pool_dir, p=1.0)
    with pytest.raises(ValueError, match=rf"label={label} is outside the pool's classes \[0, 2\)"):
        t(image=gray_input(), label=label)


@pytest.mark.parametrize("label", [1.0, True, None, [0, 1]])  # "1" is class 1, as `synthaug sample --labels` reads it
def test_label_must_be_one_integer(pool_dir, label):
    t = SyntheticMix(pool_dir, p=1.0)
    with pytest.raises(ValueError, match="integer class id"):
        t(image=gray_input(), label=label)


def test_class_id_helper():
    assert class_id(3) == 3 and class_id(np.array([[2]])) == 2 and class_id(torch.tensor(1)) == 1
    with pytest.raises(ValueError, match="y=2.5"):
        class_id(2.5, key="y")


@pytest.mark.parametrize("options, needle", [
    ({"p": 1.5}, "1.5"),
    ({"p": -0.1}, "-0.1"),
    ({"label_key": ""}, "label_key=''"),
    ({"label_key": 3}, "label_key=3"),
    ({"label_key": "image"}, "data key"),
    ({"seed": -1}, "seed=-1"),
    ({"seed": 1.5}, "seed=1.5"),
    ({"batch_size": 0}, "batch_size=0"),
    ({"n_per_class": 4}, "n_per_class=4 only applies"),  # a ready-made pool folder
])
def test_bad_options(pool_dir, options, needle):
    with pytest.raises(ValueError, match=needle.replace(".", r"\.").replace("(", r"\(")):
        SyntheticMix(pool_dir, **options)


@pytest.mark.parametrize("n_per_class", [0, -3, 2.0, True])
def test_bad_n_per_class(ckpt_dir, n_per_class):
    with pytest.raises(ValueError, match=f"n_per_class={n_per_class!r}"):
        SyntheticMix(ckpt_dir, n_per_class=n_per_class)


def test_bad_pool_paths(tmp_path):
    missing = tmp_path / "no-such-pool"
    t = SyntheticMix(missing, p=1.0)  # built (or loaded) anywhere; the first use says the pool is missing
    with pytest.raises(FileNotFoundError, match="does not exist on this machine") as err:
        t(image=gray_input(), label=0)
    assert str(missing) in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither a pool folder, a folder of class folders nor a generator checkpoint"):
        SyntheticMix(tmp_path / "empty")
    with pytest.raises(ValueError, match="pool must be a path"):
        SyntheticMix(42)


def test_batches_are_refused(pool_dir):
    t = A.Compose([SyntheticMix(pool_dir, p=1.0)])
    with pytest.raises(ValueError, match="one image"):
        t(images=np.stack([gray_input()] * 2), label=0)


# --------------------------------------------------------------------------- DataLoader workers
class AugmentedArrays(Dataset):
    """Constant-gray images with labels, augmented by ``pipeline`` seeded per item."""

    def __init__(self, labels, pipeline):
        self.labels = np.asarray(labels)
        self.pipeline = pipeline

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        self.pipeline.set_random_seed(1000 + i)  # per-item seed: the same item whichever worker reads it
        y = int(self.labels[i])
        return torch.from_numpy(self.pipeline(image=gray_input(), label=y)["image"]), y


def test_dataloader_workers_match_the_main_process(pool, pool_dir):
    pipeline = A.Compose([SyntheticMix(pool_dir, p=0.5), A.HorizontalFlip()])
    data = AugmentedArrays(LABELS, pipeline)
    batches = {}
    for workers in (0, 2):
        loader = DataLoader(data, batch_size=8, num_workers=workers)
        batches[workers] = [(x.clone(), y.clone()) for x, y in loader]
    replaced = 0
    for (x0, y0), (x2, y2) in zip(batches[0], batches[2]):
        assert torch.equal(x0, x2) and torch.equal(y0, y2)
        assert x0.dtype == torch.uint8 and x0.shape == (8, 16, 16, 3)
        for image, y in zip(x0.numpy(), y0.tolist()):
            if np.array_equal(image, gray_input()):
                continue
            replaced += 1
            candidates = class_images(pool, y)
            assert (match_index(image, candidates) is not None
                    or match_index(np.ascontiguousarray(image[:, ::-1]), candidates) is not None)
    assert 0 < replaced < len(LABELS)


# --------------------------------------------------------------------------- lazy imports, in fresh processes
HEAVY = ("albumentations", "cv2", "matplotlib", "selenium")


def run_fresh(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_import_synthaug_leaves_the_heavy_optional_libraries_out():
    out = run_fresh(f"""
        import json, sys
        import synthaug
        before = [m for m in {HEAVY!r} if m in sys.modules]
        mix = synthaug.SyntheticMix  # the first touch imports albumentations
        import synthaug.mix.albumentations
        print(json.dumps([before, "albumentations" in sys.modules, mix is synthaug.mix.albumentations.SyntheticMix,
                          "SyntheticMix" in dir(synthaug)]))
    """)
    assert json.loads(out) == [[], True, True, True]


def test_a_saved_pipeline_loads_in_a_fresh_process_the_documented_way(tmp_path, pool_dir):
    path = tmp_path / "pipeline.json"
    A.save(pipeline_for(pool_dir), str(path))
    expected = [hashlib.md5(image.tobytes()).hexdigest() for image in run_y(pipeline_for(pool_dir), LABELS)]
    out = run_fresh(f"""
        import hashlib, json
        import albumentations as A
        import numpy as np
        from synthaug import SyntheticMix  # registers the class with albumentations (docs/plugin.md)

        pipeline = A.load({str(path)!r})
        assert isinstance(pipeline.transforms[1], SyntheticMix)
        pipeline.set_random_seed(3)
        images = [pipeline(image=np.full((16, 16, 3), {GRAY}, np.uint8), y=y)["image"] for y in {LABELS!r}]
        print(json.dumps([hashlib.md5(image.tobytes()).hexdigest() for image in images]))
    """)
    assert json.loads(out) == expected
