"""`picotflm deploy MODEL.tflite` and recipes that start from a .tflite, run as a user runs them (a
subprocess): refusals are exit 2 with one line and leave no run behind; what is deployed is verified
against host TFLM (golden outputs equal host TFLM's, bit for bit) and TFLite's reference kernels."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests import _models
from tests.conftest import cli


def _one_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-3000:])
    assert "Traceback" not in r.stderr + r.stdout, r.stderr[-3000:]
    errors = [line for line in r.stderr.splitlines() if "error:" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("picotflm: error: ") and "(hint: " in errors[0], r.stderr
    assert r.stderr.rstrip("\n").splitlines()[-1] == errors[0]
    for n in needles:
        assert n in errors[0], (n, errors[0])


def _deploy(tmp_path, data: bytes | None, *extra, name="m.tflite"):
    if data is not None:
        (tmp_path / name).write_bytes(data)
    return cli("deploy", str(tmp_path / name), "--runs-dir", str(tmp_path / "runs"), "--no-progress", *extra,
               cwd=tmp_path)


@pytest.mark.parametrize("kind,needle", [
    ("empty", "is empty"), ("random", "not a TFLite flatbuffer"), ("truncated", "truncated"),
    ("keras", "zip archive"), ("elf", "ELF"), ("missing", "does not exist"),
])
def test_a_file_that_is_not_a_model_is_refused_with_nothing_written(tmp_path, kind, needle):
    data = _models.pool_add_int8_tflite()
    content = {"empty": b"", "random": os.urandom(4000), "truncated": data[: len(data) // 2],
               "keras": b"PK\x03\x04" + os.urandom(200), "elf": b"\x7fELF\x01\x01\x01\x00" + os.urandom(200)}.get(kind)
    _one_error(_deploy(tmp_path, content), needle)
    assert not (tmp_path / "runs").exists()


def test_an_operator_tflm_lacks_is_refused_before_anything_is_written(tmp_path):
    _one_error(_deploy(tmp_path, _models.reverse_tflite()), "REVERSE_V2")
    assert not (tmp_path / "runs").exists()


def test_an_arena_beyond_the_sram_is_refused(tmp_path):
    _one_error(_deploy(tmp_path, _models.big_activation_int8_tflite()), "SRAM")
    assert not (tmp_path / "runs").exists()


def test_inputs_of_the_wrong_shape_are_refused(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((3, 28, 28, 1), np.int8))
    _one_error(_deploy(tmp_path, _models.pool_add_int8_tflite(), "--inputs", str(tmp_path / "x.npy")), "28x28x1")
    assert not (tmp_path / "runs").exists()


def test_a_recipe_that_starts_from_a_tflite_verifies_and_renders(tmp_path):
    """No firmware needed: tflite -> verify -> render; the golden outputs are host TFLM's for the
    golden inputs, the accuracy comes from the user's labels."""
    from pipeline.stages.verify import run_tflm

    data = _models.pool_add_int8_tflite()
    (tmp_path / "m.tflite").write_bytes(data)
    x = np.random.default_rng(1).integers(-128, 128, (12, 32, 32, 1)).astype(np.int8)
    np.savez(tmp_path / "in.npz", x=x, y=np.arange(12) % 3)
    (tmp_path / "r.toml").write_text('stages = ["tflite", "verify", "render"]\n[tflite]\n'
                                     f'path = "{(tmp_path / "m.tflite").as_posix()}"\n'
                                     f'inputs = "{(tmp_path / "in.npz").as_posix()}"\n'
                                     '[render]\nmodel_name = "mine"\ngolden_count = 5\n')
    r = cli("run", str(tmp_path / "r.toml"), "--runs-dir", str(tmp_path / "runs"), "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "runs" / "r"
    man = json.loads((run / "manifest.json").read_text())
    assert [s for s in man["stages"]] == ["tflite", "verify", "render"]
    assert (run / "model.tflite").read_bytes() == data
    ver = man["stages"]["verify"]["metrics"]
    assert ver["test_samples"] == 12 and ver["tflm_test_accuracy"] is not None
    assert ver["tflm_vs_tflite"]["max_abs_diff"] <= 1 and "tflm_vs_tflite_warning" not in ver
    golden = json.loads((run / "golden.json").read_text())
    host, _ = run_tflm(data, x[golden["test_indices"]], 64 * 1024)
    assert golden["outputs"] == [bytes(h.tobytes()).hex() for h in host]
    assert golden["test_indices"] == [0, 1, 2, 3, 4]  # one per class in turn
    assert "g_mine_model_data" in (run / "firmware" / "model_data.h").read_text()
    report = (run / "report.md").read_text()
    assert "AVERAGE_POOL_2D" in report and "deployable" in report


def test_verify_reports_a_graph_tflm_and_tflite_compute_differently():
    """A Keras dilated convolution (SPACE_TO_BATCH_ND ... BATCH_TO_SPACE_ND): said plainly by verify."""
    from pipeline.config import VerifyConfig
    from pipeline.stages.inputs import random_inputs
    from pipeline.stages.verify import verify_inputs
    from pipeline.tflite.reader import inspect_tflite

    data = _models.dilated_int8_tflite()
    info = inspect_tflite(data)
    assert "SPACE_TO_BATCH_ND" in info.ops
    m = verify_inputs(data, random_inputs(info, 8, 0).x, None, VerifyConfig(reference_samples=8)).metrics
    agree = m["tflm_vs_tflite"]
    assert agree["max_abs_diff"] > 1 and agree["inputs_differing"] > 0
    assert "compute this model differently" in m["tflm_vs_tflite_warning"]
    assert f"{agree['inputs_differing']} of {agree['inputs']}" in m["tflm_vs_tflite_warning"]
    assert m["tflm_test_accuracy"] is None and "no labels" in m["accuracy_note"]
