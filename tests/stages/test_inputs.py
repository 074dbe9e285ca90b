"""A user's inputs as ready input tensors: .npz/.npy files, image folders and seeded random inputs."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import TfliteConfig
from pipeline.errors import PipelineError
from pipeline.stages.inputs import ModelInputs, make_inputs
from pipeline.tflite.reader import inspect_tflite
from tests import _models


@pytest.fixture(scope="module")
def info():
    return inspect_tflite(_models.pool_add_int8_tflite())  # INT8 1x32x32x1


def _cfg(inputs: str = "", **kw) -> TfliteConfig:
    return TfliteConfig(path="m.tflite", inputs=inputs, **kw)


def test_seeded_random_inputs_cover_the_int8_range_and_repeat(info):
    a = make_inputs(_cfg(random_inputs=40, seed=3), info)
    b = make_inputs(_cfg(random_inputs=40, seed=3), info)
    assert a.x.shape == (40, 32, 32, 1) and a.x.dtype == np.int8 and a.y is None
    assert a.x.min() == -128 and a.x.max() == 127 and np.array_equal(a.x, b.x)
    assert "seeded random int8" in a.source and "no labels" in a.source
    assert a.to_npz_bytes() == b.to_npz_bytes()  # the artifact's bytes depend only on the arrays


def test_float_inputs_are_random_in_a_float_range():
    fi = inspect_tflite(_models.float_io_tflite())
    got = make_inputs(_cfg(random_inputs=5), fi)
    assert got.x.dtype == np.float32 and got.x.shape == (5, 12, 12, 2) and -1 <= got.x.min() and got.x.max() < 1


def test_npz_with_labels_and_npy_without_batch(tmp_path, info):
    x = np.random.default_rng(0).integers(-128, 128, (6, 32, 32, 1)).astype(np.int8)
    np.savez(tmp_path / "in.npz", x=x, y=np.array([0, 1, 2, 0, 1, 2]))
    got = make_inputs(_cfg(str(tmp_path / "in.npz")), info)
    assert np.array_equal(got.x, x) and list(got.y) == [0, 1, 2, 0, 1, 2] and got.class_names == ("0", "1", "2")
    back = ModelInputs.load(_write(tmp_path / "a.npz", got))
    assert np.array_equal(back.x, x) and list(back.y) == list(got.y) and back.source == got.source
    np.save(tmp_path / "one.npy", x[0])  # one input, no batch dimension
    one = make_inputs(_cfg(str(tmp_path / "one.npy")), info)
    assert one.x.shape == (1, 32, 32, 1) and one.y is None


def _write(path, inputs: ModelInputs):
    inputs.save(path)
    return path


def test_floats_for_an_int8_input_are_quantized_with_its_scale(tmp_path, info):
    f = np.full((2, 32, 32, 1), 0.5, np.float32)
    np.save(tmp_path / "f.npy", f)
    got = make_inputs(_cfg(str(tmp_path / "f.npy")), info)
    s, z = info.input.scale[0], info.input.zero_point[0]
    assert got.x.dtype == np.int8 and int(got.x[0, 0, 0, 0]) == int(np.clip(np.round(0.5 / s + z), -128, 127))
    assert "quantized" in got.notes[0]


@pytest.mark.parametrize("arr,needle", [
    (np.zeros((2, 28, 28, 1), np.int8), "shape 2x28x28x1"),
    (np.zeros((2, 32, 32, 1), np.uint8), "uint8"),
    (np.zeros((0, 32, 32, 1), np.int8), "no inputs"),
])
def test_inputs_that_do_not_fit_the_model(tmp_path, info, arr, needle):
    np.save(tmp_path / "bad.npy", arr)
    with pytest.raises(PipelineError) as e:
        make_inputs(_cfg(str(tmp_path / "bad.npy")), info)
    assert needle in e.value.message and e.value.hint


def test_unreadable_inputs_files(tmp_path, info):
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    (tmp_path / "x.csv").write_text("1,2")
    for name, needle in (("x.npz", "cannot read"), ("x.csv", "neither"), ("nope.npy", "do not exist")):
        with pytest.raises(PipelineError) as e:
            make_inputs(_cfg(str(tmp_path / name)), info)
        assert needle in e.value.message


def test_an_image_folder_with_class_folders_gives_labels(tmp_path, info):
    from PIL import Image

    for k, c in enumerate(("cat", "dog")):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (40, 50), (80 * k, 40 * i, 200)).save(tmp_path / "imgs" / c / f"{i}.png")
    (tmp_path / "imgs" / "dog" / "junk.png").write_bytes(b"not a png")
    got = make_inputs(_cfg(str(tmp_path / "imgs")), info)
    assert got.x.shape == (6, 32, 32, 1) and got.x.dtype == np.int8
    assert list(got.y) == [0, 0, 0, 1, 1, 1] and got.class_names == ("cat", "dog")
    assert any("unreadable" in n for n in got.notes)


def test_max_inputs_keeps_the_first(tmp_path, info):
    np.save(tmp_path / "many.npy", np.zeros((10, 32, 32, 1), np.int8))
    got = make_inputs(_cfg(str(tmp_path / "many.npy"), max_inputs=4), info)
    assert len(got.x) == 4 and "max_inputs" in got.notes[-1]
