"""`picotflm deploy` all the way to the emulated Pico, as a user runs it: models nobody here trained
(other shapes, ops beyond MicroPizzaNet's, float32 I/O, pico-tflmicro's hello_world and person
detection) build and run unchanged, and the board's outputs equal host TFLM's bit for bit."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests import _models
from tests._tflm_examples import example_model
from tests.conftest import cli, require_emulated_pico

pytestmark = pytest.mark.firmware


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    require_emulated_pico()
    return tmp_path_factory.mktemp("deploy")  # one runs directory: one configured build folder for all


def _deploy(work, model, *extra):
    r = cli("deploy", str(model), "--runs-dir", str(work / "runs"), "--no-progress", *extra, cwd=work, timeout=1200)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    return r


def _manifest(work, name):
    return json.loads((work / "runs" / name / "manifest.json").read_text())


def _board_equals_host_tflm(work, name):
    """Golden outputs are host TFLM's for the golden inputs; the board gives them bit for bit, and its
    answers to the test frames equal host TFLM's too. Returns the measure metrics."""
    from pipeline.stages.inputs import ModelInputs
    from pipeline.stages.verify import run_tflm

    run = work / "runs" / name
    data = (run / "model.tflite").read_bytes()
    x = ModelInputs.load(run / "inputs.npz").x
    golden = json.loads((run / "golden.json").read_text())
    host, _ = run_tflm(data, x[golden["test_indices"]], 1 << 20)
    assert golden["outputs"] == [bytes(h.tobytes()).hex() for h in host]
    stages = _manifest(work, name)["stages"]
    assert all(stages[s]["status"] in ("done", "up to date") for s in ("tflite", "verify", "render", "build", "measure"))
    m = stages["measure"]["metrics"]
    assert m["golden"]["exact"] == m["golden"]["count"] == len(golden["outputs"])
    assert m["infer_vs_host_tflm"]["bit_exact"] == m["infer_vs_host_tflm"]["frames"] > 0
    return m


def test_an_int8_model_of_another_shape_with_pool_add_reshape(work):
    data = _models.pool_add_int8_tflite()
    (work / "pool_add.tflite").write_bytes(data)
    x = np.random.default_rng(2).integers(-128, 128, (10, 32, 32, 1)).astype(np.int8)
    np.savez(work / "in.npz", x=x, y=np.arange(10) % 3)
    r = _deploy(work, work / "pool_add.tflite", "--inputs", str(work / "in.npz"))
    assert "AVERAGE_POOL_2D" in r.stdout and "verdict: deployable" in r.stdout
    _board_equals_host_tflm(work, "pool_add")
    ver = _manifest(work, "pool_add")["stages"]["verify"]["metrics"]
    assert ver["tflm_test_accuracy"] is not None and ver["test_samples"] == 10


def test_a_float32_io_model_runs_on_the_stock_kernels(work):
    (work / "float_io.tflite").write_bytes(_models.float_io_tflite())
    r = _deploy(work, work / "float_io.tflite")
    assert "build.kernels = stock" in r.stdout
    m = _board_equals_host_tflm(work, "float_io")
    assert _manifest(work, "float_io")["stages"]["build"]["config"]["kernels"] == "stock"
    assert m["infer_vs_host_tflm"]["frames"] == 8


def test_hello_world_int8_and_float_then_the_arena_applied(work):
    for name in ("hello_world_int8", "hello_world_float"):
        _deploy(work, example_model(name, work))
        _board_equals_host_tflm(work, name)
    r = cli("arena", "hello_world_int8", "--runs-dir", str(work / "runs"), "--apply", "--no-progress", cwd=work,
            timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "applied and confirmed" in r.stdout
    arena = json.loads((work / "runs" / "hello_world_int8" / "arena.json").read_text())
    assert arena["applied"]["confirmed"] and arena["applied"]["golden"] == "8/8"
    r = cli("feasibility", "hello_world_int8", "--runs-dir", str(work / "runs"), cwd=work)
    assert r.returncode == 0 and "(measured)" in r.stdout
    r = cli("compare", "hello_world_int8", "hello_world_float", "--runs-dir", str(work / "runs"), "--out",
            str(work / "compare"), cwd=work)
    assert r.returncode == 0 and (work / "compare" / "compare.md").is_file()


@pytest.mark.slow
def test_person_detection_deploys_and_runs(work):
    """300 KB flatbuffer, 7.2 M MACs: invokes of a few hundred ms (emulated) do not time out. The arena
    holds at least the in-place plan's live peak and less than TFLM's own plan's live activations."""
    from pipeline.codegen.layout import arena_layout
    from pipeline.codegen.memplan import inplace_plan

    _deploy(work, example_model("person_detect", work))
    m = _board_equals_host_tflm(work, "person_detect")
    data = (work / "runs" / "person_detect" / "model.tflite").read_bytes()
    in_place, tflm_peak = inplace_plan(data).live_peak_bytes, arena_layout(data)["peak_live_bytes"]
    assert m["macs"] == 7_157_888 and in_place <= m["mem"]["arena_used"] < tflm_peak, (in_place, tflm_peak)


def test_a_dilated_convolution_is_reported_by_verify_and_runs_as_host_tflm(work):
    """TFLM and TFLite differ on it (said before the build); the board still equals host TFLM."""
    (work / "dilated.tflite").write_bytes(_models.dilated_int8_tflite())
    r = _deploy(work, work / "dilated.tflite")
    assert "compute this model differently" in r.stdout
    _board_equals_host_tflm(work, "dilated")
