import numpy as np
import pytest

from pipeline.tflite.reader import TFLM_RESOLVER_METHODS, check_tflm_compatible, inspect_tflite
from pipeline.tflite.slim import buffer_offsets
from pipeline.errors import PipelineError
from pipeline.stages.verify import images_to_input, outputs_identical
from tests import _models


def test_int8_conversion_has_int8_io_and_the_expected_ops_and_macs():
    info = inspect_tflite(_models.int8_tflite())
    assert info.input.dtype == "INT8" and info.output.dtype == "INT8"
    assert info.input.shape == [1, 48, 48, 3]
    assert info.ops == ["CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "FULLY_CONNECTED", "SOFTMAX"]
    # 24*24*8*27 + 12*12*8*9 + 144*8*16 + 6*6*16*9 + 36*16*32 + 32*6
    assert info.macs == 177_024
    assert all(layer.weight_dtype == "INT8" for layer in info.layers if layer.weight_bytes)
    assert info.weight_bytes == 216 + 72 + 128 + 144 + 512 + 192
    check_tflm_compatible(info)


def test_slim_drops_names_keeps_outputs_and_alignment():
    full, slim = _models.int8_tflite(slim=False), _models.int8_tflite(slim=True)
    assert len(slim) < len(full)
    info = inspect_tflite(slim)
    assert info.input.name == "" and info.extras["signature_defs"] == 0 and info.extras["metadata"] == []
    assert inspect_tflite(full).extras["signature_defs"] >= 1
    offsets = buffer_offsets(slim)
    assert offsets and all(o % 16 == 0 for o in offsets)
    x = images_to_input(_models.images(16, seed=5), info)
    assert outputs_identical(full, slim, x, arena_bytes=64 * 1024)


@pytest.mark.parametrize("data", [b"", b"not a model at all, just text", b"\x00" * 64])
def test_garbage_is_refused_with_a_clear_error(data):
    with pytest.raises(PipelineError, match="not a TFLite flatbuffer"):
        inspect_tflite(data)


def test_truncated_model_is_refused():
    data = _models.int8_tflite()
    with pytest.raises(PipelineError, match="corrupt or truncated"):
        inspect_tflite(data[: len(data) // 3])


def test_float_model_is_refused_where_int8_is_required():
    info = inspect_tflite(_models.float_tflite())
    assert info.input.dtype == "FLOAT32"
    with pytest.raises(PipelineError, match="int8 is required"):
        check_tflm_compatible(info)
    check_tflm_compatible(info, require_int8_io=False)


def test_an_operator_tflm_lacks_is_named():
    info = inspect_tflite(_models.int8_tflite())
    info.ops = info.ops + ["SEGMENT_SUM"]
    assert "SEGMENT_SUM" not in TFLM_RESOLVER_METHODS
    with pytest.raises(PipelineError, match="SEGMENT_SUM"):
        check_tflm_compatible(info)


def test_resolver_methods_are_add_calls():
    assert TFLM_RESOLVER_METHODS["CONV_2D"] == "AddConv2D"
    assert all(m.startswith("Add") for m in TFLM_RESOLVER_METHODS.values())
    assert np.unique(list(TFLM_RESOLVER_METHODS.values())).size == len(TFLM_RESOLVER_METHODS)
