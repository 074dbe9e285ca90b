"""What will and won't work before a build: operators, kernels, tensor types, flash and SRAM, and
files that are not models, on small models built here (TFLite converter) and real bytes."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import TfliteConfig
from pipeline.errors import PipelineError
from pipeline.stages.support import check_support, kernels_for, preflight, read_model_file, support, support_lines
from tests import _models


def _write(tmp_path, data: bytes, name: str = "m.tflite"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_ops_beyond_micropizzanet_are_deployable_and_listed():
    t = support(_models.pool_add_int8_tflite(), host_arena_bytes=20_000)
    ops = {r["op"]: r for r in t["operators"]}
    assert {"AVERAGE_POOL_2D", "RESHAPE", "ADD", "CONV_2D", "FULLY_CONNECTED"} <= set(ops)
    assert all(r["pico_tflmicro"] == "yes" for r in ops.values())
    assert ops["CONV_2D"]["picotflm_kernel"] == "own M0+ kernel"
    assert ops["ADD"]["picotflm_kernel"].startswith("no own kernel")
    assert t["model"]["input"] == "INT8 1x32x32x1" and t["refusals"] == [] and t["verdict"] == "deployable"
    assert t["memory"]["sram_needed_bytes"] < t["memory"]["sram_bytes"]
    text = "\n".join(support_lines(t))
    assert "AVERAGE_POOL_2D" in text and "verdict: deployable" in text and "SRAM:" in text


def test_an_operator_tflm_lacks_is_refused_by_name():
    t = support(_models.reverse_tflite())
    assert [r["op"] for r in t["operators"] if r["pico_tflmicro"] == "no"] == ["REVERSE_V2"]
    with pytest.raises(PipelineError) as e:
        check_support(t)
    assert "REVERSE_V2" in e.value.message and "TFLM cannot run it" in e.value.message and e.value.hint


def test_float_convolutions_need_the_stock_kernels():
    data = _models.float_io_tflite()
    assert kernels_for(data) == "stock"
    with pytest.raises(PipelineError) as e:
        check_support(support(data, kernels="picotflm"))
    assert "CONV_2D" in e.value.message and "FLOAT32" in e.value.message and "build.kernels=stock" in e.value.hint
    t = support(data, kernels="stock")
    assert t["refusals"] == [] and any(r["type"] == "FLOAT32" and "input" in r["where"] for r in t["types"])
    assert kernels_for(_models.pool_add_int8_tflite()) == "picotflm"


def test_an_arena_beyond_the_sram_is_refused_before_any_build(tmp_path):
    p = _write(tmp_path, _models.big_activation_int8_tflite())
    with pytest.raises(PipelineError) as e:
        preflight(TfliteConfig(path=str(p)))
    assert "SRAM" in e.value.message and "smaller" in e.value.hint


def test_a_model_beyond_the_flash_is_refused():
    data = _models.pool_add_int8_tflite()
    t = support(data + bytes(2 * 1024 * 1024))  # the same flatbuffer, padded past 2 MB
    assert any("2 MB flash" in r["message"] for r in t["refusals"])


@pytest.mark.parametrize("kind,needle", [
    ("empty", "is empty"),
    ("garbage", "not a TFLite flatbuffer"),
    ("truncated", "truncated"),
    ("keras", "zip archive"),
    ("elf", "ELF"),
    ("h5", "HDF5"),
    ("missing", "does not exist"),
    ("folder", "is a folder"),
])
def test_files_that_are_not_models(tmp_path, kind, needle):
    data = _models.pool_add_int8_tflite()
    content = {"empty": b"", "garbage": np.random.default_rng(0).bytes(3000), "truncated": data[: len(data) // 3],
               "keras": b"PK\x03\x04" + bytes(100), "elf": b"\x7fELF\x01\x01\x01" + bytes(100),
               "h5": b"\x89HDF\r\n\x1a\n" + bytes(100)}.get(kind)
    p = tmp_path / "m.tflite"
    if kind == "folder":
        p.mkdir()
    elif content is not None:
        p.write_bytes(content)
    with pytest.raises(PipelineError) as e:
        read_model_file(p)
    assert needle in e.value.message and e.value.hint


def test_every_truncation_of_a_model_is_refused_or_reads_whole(tmp_path):
    """Cut anywhere, a .tflite is refused with a PipelineError, never another exception."""
    data = _models.pool_add_int8_tflite()
    for cut in range(0, len(data), max(1, len(data) // 40)):
        p = _write(tmp_path, data[:cut])
        with pytest.raises(PipelineError):
            read_model_file(p)
