"""Synthetic pizzas (deterministic, balanced, fast), splits, and the loader of a user's folder."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from pipeline.config import PIZZA_CLASSES, DataConfig
from pipeline.stages.data import Dataset, load_folder, make_dataset, synthetic_images, to_model_input, write_samples
from pipeline.errors import PipelineError


def _hash(ds: Dataset) -> str:
    return hashlib.sha256(ds.to_npz_bytes()).hexdigest()


def test_same_seed_same_bytes_other_seed_other_bytes():
    a = make_dataset(DataConfig(samples_per_class=12, seed=3))
    b = make_dataset(DataConfig(samples_per_class=12, seed=3))
    c = make_dataset(DataConfig(samples_per_class=12, seed=4))
    assert _hash(a) == _hash(b)
    assert _hash(a) != _hash(c)


def test_image_i_does_not_depend_on_sample_count():
    x_small, y_small = synthetic_images(DataConfig(samples_per_class=5))
    x_big, y_big = synthetic_images(DataConfig(samples_per_class=9))
    for c in range(len(PIZZA_CLASSES)):
        assert np.array_equal(x_small[y_small == c], x_big[y_big == c][:5])


def test_shapes_dtype_and_balance():
    ds = make_dataset(DataConfig(samples_per_class=20))
    assert ds.class_names == PIZZA_CLASSES
    for split in ("train", "val", "test"):
        x, y = ds.split(split)
        assert x.dtype == np.uint8 and x.shape[1:] == (48, 48, 3)
        assert len(set(np.bincount(y, minlength=6))) == 1  # the same count for every class
    assert ds.counts()["test"]["basic"] == 3 and ds.counts()["train"]["basic"] == 14
    m = to_model_input(ds.x_test)
    assert m.dtype == np.float32 and 0.0 <= m.min() and m.max() <= 1.0


def test_classes_look_different():
    """Cheap sanity check of the drawing: burnt pizzas are darker, progression has more red (sauce)."""
    x, y = synthetic_images(DataConfig(samples_per_class=30))
    centre = x[:, 16:32, 16:32].astype(float)
    bright = [centre[y == c].mean() for c in range(6)]
    assert bright[PIZZA_CLASSES.index("burnt")] < min(b for i, b in enumerate(bright) if PIZZA_CLASSES[i] != "burnt")


def test_splits_disjoint_and_stratified():
    cfg = DataConfig(samples_per_class=40, val_fraction=0.2, test_fraction=0.25)
    ds = make_dataset(cfg)
    keys = {s: {hashlib.sha1(img.tobytes()).hexdigest() for img in ds.split(s)[0]} for s in ("train", "val", "test")}
    assert not keys["train"] & keys["val"] and not keys["train"] & keys["test"] and not keys["val"] & keys["test"]
    counts = ds.counts()
    assert all(v == 10 for v in counts["test"].values())
    assert all(v == 8 for v in counts["val"].values())
    assert all(v == 22 for v in counts["train"].values())


def test_npz_round_trip(tmp_path):
    ds = make_dataset(DataConfig(samples_per_class=6))
    p = ds.save(tmp_path / "data.npz")
    back = Dataset.load(p)
    assert back.class_names == ds.class_names
    for s in ("train", "val", "test"):
        assert np.array_equal(back.split(s)[0], ds.split(s)[0]) and np.array_equal(back.split(s)[1], ds.split(s)[1])
    assert p.read_bytes() == ds.to_npz_bytes()




def test_write_samples(tmp_path):
    ds = make_dataset(DataConfig(samples_per_class=10))
    files = write_samples(ds, tmp_path / "s", per_class=3)
    assert len(files) == 6 * 3 + 1
    assert Image.open(tmp_path / "s" / "samples.png").size == (3 * 48 * 4, 6 * 48 * 4)


# ------------------------------------------------------------------------------- folders
def _folder(root, classes=("cat_a", "cat_b"), per_class=4, size=(64, 40)):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            img = Image.fromarray(rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8))
            fmt = ["PNG", "JPEG", "BMP", "WEBP"][i % 4]
            img.save(root / c / f"{i}.{fmt.lower()}", format=fmt)
    return root


def test_folder_loader_resizes_and_skips_corrupt_files(tmp_path):
    root = _folder(tmp_path / "imgs")
    (root / "cat_a" / "broken.jpg").write_bytes(b"not a jpeg at all")
    (root / "cat_b" / "notes.txt").write_text("hello")
    (root / "cat_b" / "gray.png").parent.mkdir(exist_ok=True)
    Image.new("L", (30, 30), 128).save(root / "cat_b" / "gray.png")
    x, y, skipped = load_folder(root, ("cat_a", "cat_b"), 48)
    assert x.shape == (9, 48, 48, 3) and x.dtype == np.uint8
    assert sorted(skipped) == ["cat_a/broken.jpg", "cat_b/notes.txt"]
    warnings = []
    ds = make_dataset(DataConfig(source=str(root), classes=("cat_a", "cat_b")), warn=warnings.append)
    assert sorted(ds.skipped) == sorted(skipped)
    assert len(warnings) == 1 and "broken.jpg" in warnings[0] and "notes.txt" in warnings[0]
    assert sum(len(ds.split(s)[1]) for s in ("train", "val", "test")) == 9


@pytest.mark.parametrize("setup, match", [
    (lambda root: None, "does not exist"),
    (lambda root: root.mkdir(), "is empty"),
    (lambda root: (root.mkdir(), (root / "x.png").write_bytes(b"")), "no class sub-folders"),
    (lambda root: _folder(root, ("cat_a", "dog")), r"missing cat_b; unexpected dog"),
])
def test_folder_errors(tmp_path, setup, match):
    root = tmp_path / "imgs"
    setup(root)
    with pytest.raises(PipelineError, match=match):
        load_folder(root, ("cat_a", "cat_b"), 48)


def test_folder_with_only_corrupt_images(tmp_path):
    root = tmp_path / "imgs"
    for c in ("cat_a", "cat_b"):
        (root / c).mkdir(parents=True)
        (root / c / "x.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(PipelineError, match=r"no readable images .*2 unreadable"):
        load_folder(root, ("cat_a", "cat_b"), 48)


def test_folder_with_too_few_images_per_class(tmp_path):
    root = _folder(tmp_path / "imgs", per_class=2)
    with pytest.raises(PipelineError, match="too few"):
        make_dataset(DataConfig(source=str(root), classes=("cat_a", "cat_b")))


def test_synthetic_refuses_other_classes():
    with pytest.raises(PipelineError, match="synthetic generator draws only"):
        make_dataset(DataConfig(classes=("basic", "calzone")))
