"""synthaug.quality and `synthaug evaluate`: FID, KID, precision/recall, memorization, CAS, the extractor cache.

Fast on purpose: a tiny timm model (test_resnet) trained 100 steps on a subset of the real malaria cells at
32 px, one torch thread (on a shared 2-core machine two threads are many times slower for models this small).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from synthaug import create_generator
from synthaug.cli import main
from synthaug.config import ConfigError
from synthaug.data import Splits
from synthaug.quality import (FeatureExtractor, check_training_options, evaluate_generator, format_report,
                              frechet_distance, get_feature_extractor, kernel_distance, memorization_audit,
                              precision_recall, train_features)
from synthaug.mix.pool import SyntheticPool

TINY = {"model": "test_resnet", "steps": 100, "batch_size": 32, "lr": 1e-2}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: see conftest.py


def _subset(splits: Splits, n_train: int, n_val: int, n_test: int, seed: int = 0) -> Splits:
    rng = np.random.default_rng(seed)

    def pick(ds, n):
        return ds.subset(np.sort(rng.choice(len(ds), size=min(n, len(ds)), replace=False)))

    parts = {"train": pick(splits.train, n_train), "val": pick(splits.val, n_val), "test": pick(splits.test, n_test)}
    info = dict(splits.info) | {f"{k}_groups": sorted(set(v.groups.tolist())) for k, v in parts.items()}
    return Splits(parts["train"], parts["val"], parts["test"], info)


@pytest.fixture(scope="module")
def small(malaria32) -> Splits:
    return _subset(malaria32, 1000, 300, 400)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("extractors")


@pytest.fixture(scope="module")
def extractor(small, cache) -> FeatureExtractor:
    return get_feature_extractor(small, dataset_key="malaria", seed=0, cache_dir=cache, verbose=False, **TINY)


def _pool(images: torch.Tensor | np.ndarray, labels: np.ndarray) -> SyntheticPool:
    images = images.numpy() if isinstance(images, torch.Tensor) else images
    return SyntheticPool(np.ascontiguousarray(images), np.asarray(labels, dtype=np.int64), 2, {"kind": "test"})


# --------------------------------------------------------------------------- distances on features
def test_fid_of_gaussians_is_the_squared_mean_shift_and_zero_for_the_same_set():
    x = torch.randn(2000, 8, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    for shift in (0.5, 1.0, 2.0):
        a = torch.full((8,), shift)
        # the same covariance: FID = |a|^2 exactly
        assert frechet_distance(x, x + a) == pytest.approx(float(a @ a), rel=1e-4)
    # a different covariance adds tr(S1 + S2 - 2 sqrt(S1 S2)) = 8 (sqrt(1) - sqrt(4))^2 = 8 for scale 2
    assert frechet_distance(x, 2 * x) == pytest.approx(8.0 * float(x.var(0).mean()), rel=0.05)
    assert frechet_distance(x[:1], x) is None


def test_kid_near_zero_for_the_same_distribution_and_growing_with_a_shift():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(400, 16, generator=g), torch.randn(400, 16, generator=g)
    same, _ = kernel_distance(x, y, subset_size=100, subsets=20)
    small_shift, std = kernel_distance(x, y + 0.5, subset_size=100, subsets=20)
    big_shift, _ = kernel_distance(x, y + 1.5, subset_size=100, subsets=20)
    assert abs(same) < 0.05 < small_shift < big_shift and std is not None and std > 0
    # the subset size adapts to small sets; whole equal sets need one subset and have no spread
    mean, std = kernel_distance(x[:30], y[:30] + 1.5, subset_size=1000)
    assert mean > 0.1 and std is None
    # seeded: the same subsets every time
    assert kernel_distance(x, y, subset_size=50, seed=3) == kernel_distance(x, y, subset_size=50, seed=3)


def test_precision_recall_identical_sets_and_off_manifold_samples():
    g = torch.Generator().manual_seed(2)
    real = torch.randn(500, 10, generator=g)
    assert precision_recall(real, real) == (1.0, 1.0)
    fresh = precision_recall(real, torch.randn(500, 10, generator=g))
    assert fresh[0] > 0.8 and fresh[1] > 0.8
    far = precision_recall(real, torch.randn(500, 10, generator=g) + 10)
    assert far == (0.0, 0.0)
    # half the samples off the manifold: precision halves, recall (real covered by fakes) stays high
    mixed = torch.cat([real[:250] + 0.01, torch.randn(250, 10, generator=g) + 10])
    p, r = precision_recall(real, mixed)
    assert 0.45 <= p <= 0.55 and r > 0.5
    # mode collapse: 20 real samples copied 25 times each: all precise, but 20 of 500 real samples recalled
    collapsed = real[:20].repeat(25, 1) + 0.001 * torch.randn(500, 10, generator=g)
    assert precision_recall(real, collapsed) == pytest.approx((1.0, 20 / 500))
    assert precision_recall(real[:3], real, k=3) == (None, None)
    with pytest.raises(ValueError, match="k=0"):
        precision_recall(real, real, k=0)


# --------------------------------------------------------------------------- the extractor
def test_extractor_reports_val_accuracy_and_features_feed_torchmetrics(extractor, small):
    from torchmetrics.image.fid import FrechetInceptionDistance

    assert extractor.info["val"]["balanced_accuracy"] > 0.7, extractor.info["val"]  # the features see the classes
    assert extractor.info["key"]["train"]["items"] == len(small.train)  # trained on the training split only
    images = small.train.images_tensor()[:200]
    feats = extractor(images)
    assert feats.shape == (200, extractor.num_features) and feats.dtype == torch.float32
    # the module itself is a torchmetrics feature extractor: same FID as on features computed once
    fid = FrechetInceptionDistance(feature=extractor)
    fid.update(images[:100], real=True)
    fid.update(images[100:], real=False)
    assert float(fid.compute()) == pytest.approx(frechet_distance(feats[:100], feats[100:]), rel=1e-3)
    with pytest.raises(ValueError, match="uint8 images"):
        extractor(images.float())
    with pytest.raises(ValueError, match="uint8 images"):
        extractor(torch.zeros(2, 3, 16, 16, dtype=torch.uint8))


def test_fid_and_precision_on_real_cells_react_to_shifts_and_noise(extractor, small):
    images = small.train.images_tensor()[:300]
    base = extractor.features(images)
    fids = []
    for shift in (0, 20, 60):
        shifted = (images.int() + shift).clamp(0, 255).to(torch.uint8)
        fids.append(frechet_distance(base, extractor.features(shifted)))
    assert fids[0] < 1e-3 < fids[1] < fids[2]
    noise = torch.randint(0, 256, images.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    noise_feats = extractor.features(noise)
    assert frechet_distance(base, noise_feats) > fids[2]
    assert precision_recall(base, noise_feats)[0] < 0.1


def test_extractor_is_cached_and_a_new_training_set_gives_a_new_entry(extractor, small, cache, monkeypatch):
    import synthaug.quality.recipe as recipe

    def no_training(*args, **kwargs):
        raise AssertionError("trained again although the extractor is cached")

    monkeypatch.setattr(recipe, "train_classifier", no_training)
    again = get_feature_extractor(small, dataset_key="malaria", seed=0, cache_dir=cache, verbose=False, **TINY)
    assert again.info["cache_hit"] and again.info["path"] == extractor.info["path"]
    images = small.val.images_tensor()[:8]
    assert torch.allclose(again(images), extractor(images))
    monkeypatch.undo()
    # other training items (a different patient subset) or other options: another entry, trained anew
    other = _subset(small, 900, 50, 50, seed=1)
    fresh = get_feature_extractor(other, dataset_key="malaria", seed=0, cache_dir=cache, verbose=False,
                                  **(TINY | {"steps": 3}))
    assert not fresh.info["cache_hit"] and fresh.info["path"] != extractor.info["path"]
    # a damaged entry is trained again, with a warning
    (Path(fresh.info["path"]) / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.warns(UserWarning, match="damaged"):
        redone = get_feature_extractor(other, dataset_key="malaria", seed=0, cache_dir=cache, verbose=False,
                                       **(TINY | {"steps": 3}))
    assert not redone.info["cache_hit"]
    with pytest.raises(ValueError, match="unknown timm model"):
        get_feature_extractor(small, cache_dir=cache, model="resnet_18", verbose=False)
    with pytest.raises(ValueError, match="steps=0"):
        get_feature_extractor(small, cache_dir=cache, steps=0, verbose=False)


# --------------------------------------------------------------------------- memorization
def test_memorization_audit_flags_copies_and_is_calibrated_on_heldout_patients(extractor, small):
    train = train_features(extractor, small)
    val = extractor.dataset_features(small.val)
    copies = torch.arange(0, 1000, 5)
    audit = memorization_audit(train[copies] + 1e-4, small.train.targets[copies.numpy()], train, small.train.targets,
                               small.classes, heldout=val, heldout_labels=small.val.targets, quantile=0.05)
    assert audit["overall"]["share"] == 1.0
    assert torch.allclose(train[torch.from_numpy(audit["nearest_index"])], train[copies], atol=1e-3)
    assert audit["overall"]["heldout_share"] < 0.15  # new patients: about the quantile
    assert all(row["share"] == 1.0 for row in audit["per_class"].values())
    with pytest.raises(ValueError, match="quantile"):
        memorization_audit(train, small.train.targets, train, small.train.targets, small.classes, quantile=1.5)


# --------------------------------------------------------------------------- the whole evaluation
def test_evaluate_a_copying_pool_memorizes_and_its_cas_matches_real(extractor, small, tmp_path):
    order = np.random.default_rng(0).permutation(len(small.train))
    copies = _pool(small.train.images_tensor()[torch.from_numpy(order)], small.train.targets[order])
    result = evaluate_generator(copies, small, n=300, extractor=extractor, out_dir=tmp_path, recipe=TINY)
    fid, mem, cas = result["fidelity"], result["memorization"], result["cas"]
    assert fid["overall"]["precision"] > 0.9 and set(fid["per_class"]) == set(small.classes)
    assert mem["overall"]["share"] == 1.0 and mem["overall"]["heldout_share"] < 0.15
    assert mem["closest_pairs"][0]["distance"] == pytest.approx(0.0, abs=1e-3) and len(mem["closest_pairs"]) == 16
    # CAS trains to convergence (10 epochs of 1000 images at batch 32, above the recipe's 100 steps), 3 seeds a side;
    # the extractor (100 steps) is not that classifier, so the real side is trained here too
    assert cas["synthetic_images"] == len(small.train) and cas["steps"] == cas["real_steps"] == 313
    assert cas["seeds"] == [0, 1, 2] and [s["seed"] for s in cas["per_seed"]] == [0, 1, 2]
    assert cas["real_model"] == "trained here"
    assert cas["cas"] == pytest.approx(np.mean([s["cas"] for s in cas["per_seed"]]))
    assert cas["cas_ci"][0] <= cas["cas"] <= cas["cas_ci"][1]
    assert cas["real_ci"][0] <= cas["real_score"] <= cas["real_ci"][1]
    assert cas["difference"] == pytest.approx(cas["cas"] - cas["real_score"])
    # The same images as the real training set in another order: CAS and the real score differ by the batch order
    # alone. Measured over 6 orders x 3 seed triples (this data, tiny recipe): mean difference -0.001, sd 0.0044,
    # largest 0.009 on the 400 test items CAS used before (100 steps and one seed gave sd 0.054, largest 0.115);
    # on the 300 validation items it uses now: mean 0.0001, sd 0.0041, largest 0.0064, class recall ratios
    # 0.98-1.01. 0.03 is about 7 sd.
    assert abs(cas["cas"] - cas["real_score"]) < 0.03, cas
    assert set(cas["synthetic"]["per_class_recall"]) == set(small.classes)
    # scored on the validation patients (all of them), never on test; per class by name, and its ratio
    assert cas["split"] == "val"
    assert cas["val_items"] == cas["synthetic"]["items"] == cas["real"]["items"] == len(small.val)
    assert cas["class_recall"] == cas["synthetic"]["per_class_recall"]
    assert cas["real_class_recall"] == cas["real"]["per_class_recall"]
    assert set(cas["class_recall_ratio"]) == set(small.classes)
    assert all(0.9 < r < 1.1 for r in cas["class_recall_ratio"].values()), cas["class_recall_ratio"]
    assert result["gate"] is None  # not asked for
    saved = json.loads((tmp_path / "quality.json").read_text())
    assert saved == result
    assert (tmp_path / "memorization_pairs.png").stat().st_size > 1000
    assert len((tmp_path / "nearest_train.csv").read_text().splitlines()) == result["n"] + 1
    report = format_report(result)
    assert "CAS" in report and "real val (reference)" in report and "per seed" in report
    assert f"on {len(small.val)} real validation images" in report and "(ratio " in report


def test_evaluate_noise_scores_chance_cas_and_no_precision(extractor, small):
    n = len(small.train)
    noise = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    result = evaluate_generator(_pool(noise, small.train.targets), small, n=200, extractor=extractor, recipe=TINY,
                                cas_seeds=1)
    assert result["fidelity"]["overall"]["precision"] < 0.1
    assert result["fidelity"]["overall"]["fid"] > 10 * result["reference_heldout"]["overall"]["fid"]
    assert result["memorization"]["overall"]["share"] < 0.05
    cas = result["cas"]
    assert abs(cas["cas"] - 0.5) < 0.1 and cas["real_score"] > 0.7
    assert cas["cas_ci"] is None and cas["cas_std"] is None and len(cas["per_seed"]) == 1  # one seed: no interval
    # the real-trained scores depend on the split only: kept beside the extractor for the next generator
    assert list((Path(extractor.info["path"]) / "cas-real").glob("real-seed0-*.json"))


def test_cas_budget_is_epochs_with_the_recipe_steps_as_floor():
    from synthaug.quality.recipe import budget_steps, classifier_recipe

    recipe = classifier_recipe(**TINY)
    assert budget_steps(recipe, 1000, epochs=10) == 313  # ceil(10 * 1000 / 32)
    assert budget_steps(recipe, 100, epochs=10) == 100  # the floor: the recipe's steps
    assert budget_steps(recipe, 10**6, epochs=None) == 100  # None: the recipe's steps alone


def test_evaluate_a_generator_without_cas_and_bad_arguments(extractor, small, tmp_path):
    gen = create_generator("cvae-tiny", num_classes=2, image_size=32, channels=3)
    result = evaluate_generator(gen, small, n=40, extractor=extractor, cas=False, recipe=TINY)
    assert result["cas"] is None and result["n"] == 40 and result["source"]["name"] == "cvae-tiny"
    assert sum(r["n_synthetic"] for r in result["fidelity"]["per_class"].values()) == 40
    again = evaluate_generator(gen, small, n=40, extractor=extractor, cas=False, recipe=TINY)
    assert again["fidelity"] == result["fidelity"] and again["memorization"] == result["memorization"]  # seeded
    with pytest.warns(UserWarning, match="not trained on this split"):  # an extractor of other training items
        evaluate_generator(gen, _subset(small, 500, 50, 50, seed=2), n=20, extractor=extractor, cas=False)
    with pytest.raises(ValueError, match="n=1"):
        evaluate_generator(gen, small, n=1, extractor=extractor, cas=False)
    with pytest.raises(ValueError, match="16 x 16"):
        evaluate_generator(create_generator("cvae-tiny", num_classes=2, image_size=16, channels=3), small,
                           extractor=extractor, cas=False)
    # options are checked before anything is trained (no extractor given: it would train one)
    for bad, message in (({"quantile": 0}, "quantile=0"), ({"k": 0}, "k=0"), ({"pairs": -1}, "pairs=-1"),
                         ({"calibration_size": 1}, "calibration_size=1"), ({"recipe": {"steps": 0}}, "steps=0"),
                         ({"cas_seeds": 0}, "cas_seeds=0"), ({"cas_epochs": 0}, "cas_epochs=0")):
        with pytest.raises(ValueError, match=message):
            evaluate_generator(gen, small, n=20, cas=False, cache_dir=tmp_path / "never", **bad)
    assert not (tmp_path / "never").exists()
    with pytest.raises(ValueError, match="cas_images"):
        evaluate_generator(gen, small, n=20, extractor=extractor, cas_images=0)
    with pytest.raises(TypeError, match="SyntheticPool"):
        evaluate_generator(object(), small, extractor=extractor)


# --------------------------------------------------------------------------- `synthaug evaluate`
def _training_options(folder, *, seed=0, train_fraction=1.0, data="malaria", image_size=32, train_groups=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "training_options.json").write_text(json.dumps({
        "config": {"data": {"name": data, "image_size": image_size, "train_fraction": train_fraction}, "seed": seed},
        "splits": {"train_groups": train_groups}}))


def test_evaluate_command_refuses_a_generator_trained_on_other_patients(tmp_path, data_root, capsys):
    run = tmp_path / "run"
    create_generator("cvae-tiny", num_classes=2, image_size=32, channels=3).save(run / "checkpoint")
    _training_options(run, seed=1)
    # (a tiny classifier and a private cache: were the refusal to break, the test would stay short)
    args = ["evaluate", "--checkpoint", str(run / "checkpoint"), "--root", str(data_root), "--seed", "0", "--n", "20",
            "--out", str(tmp_path / "q"), "--no-cas", "--cache", str(tmp_path / "cache"), "--classifier-steps", "1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "seed 1" in err and "leakage" in err and not (tmp_path / "q").exists()
    _training_options(run, seed=0, train_fraction=0.5)
    assert main(args) == 2
    assert "train_fraction 0.5" in capsys.readouterr().err
    # a pool is checked against the checkpoint it was sampled from
    noise = np.zeros((4, 3, 32, 32), np.uint8)
    SyntheticPool(noise, np.array([0, 1, 0, 1]), 2, {"checkpoint": str(run / "checkpoint")}).save(tmp_path / "pool")
    assert main(["evaluate", "--pool", str(tmp_path / "pool"), *args[3:]]) == 2
    assert "train_fraction 0.5" in capsys.readouterr().err
    # same options but other training patients recorded (e.g. another split): refused too
    _training_options(run, seed=0, train_groups=["C1P1", "C2P2"])
    assert main(args) == 2
    assert "training patients" in capsys.readouterr().err


def test_check_training_options_accepts_the_same_split(tmp_path, small):
    _training_options(tmp_path, train_groups=small.info["train_groups"])
    assert check_training_options(tmp_path / "checkpoint", data="malaria", seed=0, train_fraction=1.0,
                                  image_size=32, splits=small) is not None
    assert check_training_options(tmp_path / "elsewhere" / "checkpoint", data="malaria", seed=0,
                                  train_fraction=1.0) is None
    with pytest.raises(ConfigError, match="image_size 32"):
        check_training_options(tmp_path, data="malaria", seed=0, train_fraction=1.0, image_size=64)


def test_evaluate_command_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--out", str(tmp_path)])  # neither --checkpoint nor --pool
    assert "--checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "--checkpoint", "a", "--pool", "b", "--out", str(tmp_path)])
    assert "not allowed with" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "q")]) == 1  # a runtime error
    assert "not a synthaug generator checkpoint" in capsys.readouterr().err
    assert main(["evaluate", "--pool", str(tmp_path / "nope"), "--out", str(tmp_path / "q")]) == 1  # a runtime error
    assert "not a synthaug pool" in capsys.readouterr().err
