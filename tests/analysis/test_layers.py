"""Layer by layer (pipeline/analysis/layers.py): the comparison of per-op outputs on crafted
differences, host TFLM's per-op outputs, a model altered on purpose named at the right op, and the
report section. No board: the firmware half is in test_layers_firmware.py."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from pipeline.analysis.layers import (OpOutput, compare_frame, compare_op_outputs, headline,
                                      host_op_outputs, layers_markdown, model_ops)
from pipeline.errors import PipelineError
from tests.analysis.layer_models import negate_weights


def _ops() -> list[OpOutput]:
    rng = np.random.default_rng(0)
    mk = lambda i, op, shape, dt: OpOutput(i, op, 10 + i, dt.upper(), shape,  # noqa: E731
                                           rng.integers(-128, 127, size=int(np.prod(shape))).astype(dt).tobytes())
    return [mk(0, "CONV_2D", [1, 4, 4, 8], "int8"), mk(1, "DEPTHWISE_CONV_2D", [1, 2, 2, 8], "int8"),
            mk(2, "CONV_2D", [1, 2, 2, 16], "int8"), mk(3, "FULLY_CONNECTED", [1, 6], "int16")]


def test_all_agree():
    host = _ops()
    r = compare_op_outputs([o.data for o in host], host)
    assert r["agree"] and r["first_differing"] is None and r["exact_ops"] == 4
    assert all(row["differing"] == 0 and row["max_abs_diff"] == 0 for row in r["ops"])
    assert headline(r) == "all 4 ops agree with host TFLM bit for bit"


def test_crafted_difference_names_the_first_op():
    host = _ops()
    board = [bytearray(o.data) for o in host]
    b2 = np.frombuffer(board[2], dtype=np.int8).copy()
    b2[[0, 5, 63]] = np.clip(b2[[0, 5, 63]].astype(int) + [5, -3, 1], -128, 127).astype(np.int8)
    assert (b2 != np.frombuffer(host[2].data, np.int8)).sum() == 3
    board[2] = b2.tobytes()
    b3 = np.frombuffer(board[3], dtype=np.int16).copy()
    b3[1] += 300  # int16: counted in the tensor's own units, not bytes
    board[3] = b3.tobytes()
    r = compare_op_outputs([bytes(b) for b in board], host)
    first = r["first_differing"]
    assert not r["agree"] and first["index"] == 2 and first["op"] == "CONV_2D"
    d2 = np.abs(np.frombuffer(board[2], np.int8).astype(int) - np.frombuffer(host[2].data, np.int8).astype(int))
    assert first["max_abs_diff"] == d2.max() and first["differing"] == 3 and first["values"] == 64
    assert r["ops"][3]["max_abs_diff"] == 300 and r["ops"][3]["differing"] == 1 and r["ops"][3]["values"] == 6
    assert [row["exact"] for row in r["ops"]] == [True, True, False, False] and r["exact_ops"] == 2
    assert headline(r).startswith("op 2 (CONV_2D) is the first that differs from host TFLM: max abs diff ")
    md = layers_markdown(r)
    assert md[0].startswith("| op | operator |") and "| first difference |" in md[4] and "| differs |" in md[5]
    assert "| bit-exact |" in md[2]


def test_a_wrong_size_and_float_outputs():
    host = _ops()[:2]
    r = compare_op_outputs([host[0].data, host[1].data[:-1]], host)
    assert r["first_differing"]["index"] == 1 and "has 31 bytes, host TFLM's 32" in r["first_differing"]["note"]
    f = OpOutput(0, "SOFTMAX", 3, "FLOAT32", [1, 3], np.array([0.5, 0.25, 0.25], np.float32).tobytes())
    r = compare_op_outputs([np.array([0.5, 0.25, 0.125], np.float32).tobytes()], [f])
    assert r["ops"][0]["max_abs_diff"] == pytest.approx(0.125) and r["ops"][0]["differing"] == 1
    with pytest.raises(PipelineError, match="the board gave 1 op outputs, the model has 2 ops"):
        compare_op_outputs([b""], host)


def test_a_board_running_another_model_is_refused():
    host = _ops()[:1]
    with pytest.raises(PipelineError, match="the board's op 0 is MEAN"):
        compare_frame([{"name": "MEAN", "tensor": 10, "data": host[0].data}], host)


@pytest.fixture(scope="module")
def model() -> bytes:
    from tests._models import int8_tflite

    return int8_tflite()


@pytest.fixture(scope="module")
def frame(model) -> np.ndarray:
    from pipeline.tflite.reader import inspect_tflite

    shape = inspect_tflite(model).input.shape
    return np.random.default_rng(3).integers(-128, 128, size=shape[1:]).astype(np.int8)


@pytest.mark.slow
def test_host_outputs_are_the_model_outputs(model, frame):
    """Every op's output from host TFLM; the last is the model's output, as verify's host TFLM gives it."""
    from pipeline.stages.verify import run_tflm

    ops = host_op_outputs(model, frame)
    assert [o.op for o in ops] == [o.op for o in model_ops(model)] and ops[0].op == "CONV_2D"
    assert all(len(o.data) == int(np.prod(o.shape)) for o in ops)  # int8 activations
    out, _ = run_tflm(model, frame[None, ...], 1 << 18)
    assert ops[-1].data == out[0].tobytes()


@pytest.mark.slow
@pytest.mark.parametrize("op_index", [0, 2])
def test_an_altered_op_is_named_first(model, frame, op_index):
    """The host model with one op's weights negated against the original: that op is named first."""
    ref = host_op_outputs(model, frame)
    altered = host_op_outputs(negate_weights(model, op_index), frame)
    r = compare_op_outputs([o.data for o in ref], altered)
    assert r["first_differing"]["index"] == op_index and r["first_differing"]["differing"] > 0
    assert all(row["exact"] for row in r["ops"][:op_index])


def test_the_report_shows_layers_json_once_however_often_it_is_written(tmp_path):
    from pipeline.analysis.report import write_report

    (tmp_path / "manifest.json").write_text(json.dumps({"run": "r", "recipe": {"name": "int8", "stages": []},
                                                        "stages": {}}))
    host = _ops()
    r = compare_op_outputs([o.data for o in host], host)
    r.update(where="emulated Pico", input="golden input 0")
    (tmp_path / "layers.json").write_text(json.dumps(r))
    for _ in range(2):
        md_path, js_path = write_report(tmp_path)
    text = md_path.read_text()
    assert len(re.findall("## Layer by layer", text)) == 1
    assert "all 4 ops agree with host TFLM bit for bit." in text
    assert json.loads(js_path.read_text())["layers"] == {"agree": True, "exact_ops": 4, "first_differing": None,
                                                          "where": "emulated Pico", "input": "golden input 0"}
    (tmp_path / "layers.json").unlink()
    assert "## Layer by layer" not in write_report(tmp_path)[0].read_text()


def test_layer_chunk_is_one_constant_and_fits_a_reply():
    """PTF_LAYER_CHUNK (firmware) is LAYER_CHUNK (host), and the largest `layer` reply fits 2,048 bytes."""
    from pipeline.board.protocol import LAYER_CHUNK

    h = (Path(__file__).resolve().parents[2] / "firmware" / "src" / "link" / "protocol.h").read_text()
    assert int(re.search(r"#define PTF_LAYER_CHUNK (\d+)", h).group(1)) == LAYER_CHUNK
    limit = int(re.search(r"#define PTF_PAYLOAD_MAX (\d+)", h).group(1))
    big = 999_999_999
    payload = {"ok": True, "cmd": "layer", "id": big, "op": big, "ops": big, "name": "UNIDIRECTIONAL_SEQUENCE_LSTM",
               "tensor": big, "type": "FLOAT32", "size": big, "offset": big, "data": "ff" * LAYER_CHUNK}
    assert len(json.dumps(payload, separators=(",", ":"))) <= limit
