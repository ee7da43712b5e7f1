"""Sample grids: one row (or more) per class, labelled with the class name; without labels, as before."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from synthaug import create_generator
from synthaug.cli import main
from synthaug.viz import image_grid, save_grid


def _batch(n: int, size: int = 8) -> torch.Tensor:
    return torch.full((n, 3, size, size), 128, dtype=torch.uint8)


def _dark_rows(img: np.ndarray, left: int) -> np.ndarray:
    """Rows of the image whose first ``left`` columns hold text (dark pixels)."""
    return np.flatnonzero((img[:, :left] < 100).any(axis=(1, 2)))


def test_without_labels_the_grid_is_unchanged(tmp_path):
    images = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    saved = np.asarray(Image.open(save_grid(images, tmp_path / "g.png", nrow=4, scale=1)))
    assert np.array_equal(saved, image_grid(images, nrow=4))


def test_labelled_grid_has_a_named_row_per_class(tmp_path):
    labels = torch.tensor([1, 0, 1, 0, 1, 1])  # mixed order: grouped by class in the picture
    path = save_grid(_batch(6), tmp_path / "g.png", nrow=8, scale=2, labels=labels,
                     class_names=["Parasitized", "Uninfected"])
    img = np.asarray(Image.open(path).convert("RGB"))
    row = (8 + 4) * 2  # one row of 8 px images with its padding, drawn twice as large
    assert img.shape[0] == 2 * row  # two classes, each fits one row of 8
    plain = np.asarray(Image.open(save_grid(_batch(6), tmp_path / "p.png", nrow=8, scale=2)).convert("RGB"))
    margin = img.shape[1] - (4 * (8 + 2) + 2) * 2  # the widest class has 4 images
    assert margin > 30 and plain.shape[1] < img.shape[1]
    text = _dark_rows(img, margin)
    assert text.min() < row <= text.max()  # a name beside each class's row
    short = np.asarray(Image.open(save_grid(_batch(6), tmp_path / "s.png", labels=labels)).convert("RGB"))
    assert short.shape[1] < img.shape[1]  # "class 0" / "class 1" when the names are unknown: a narrower margin


def test_a_class_with_more_images_than_nrow_takes_several_rows(tmp_path):
    labels = torch.tensor([0] * 5 + [1] * 2)
    img = np.asarray(Image.open(save_grid(_batch(7), tmp_path / "g.png", nrow=2, scale=1, labels=labels)))
    assert img.shape[0] == 3 * (8 + 2) + 2 + (8 + 4)  # class 0: 3 rows of 2; class 1: one row


def test_sample_grid_of_the_cli_is_labelled(tmp_path):
    gen = create_generator("cvae-tiny", num_classes=2, image_size=16, channels=3)
    gen.class_names = ["Parasitized", "Uninfected"]
    gen.save(tmp_path / "ckpt")
    assert main(["sample", "--checkpoint", str(tmp_path / "ckpt"), "--n", "4", "--grid", str(tmp_path / "g.png")]) == 0
    img = np.asarray(Image.open(tmp_path / "g.png").convert("RGB"))
    assert img.shape[0] == 2 * (16 + 4) * 2 and len(_dark_rows(img, 30))  # two labelled class rows
