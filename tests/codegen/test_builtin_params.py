"""The builtin-parameter tables the op resolver keeps in flash (pipeline/codegen/builtin_params.py).
That the firmware finds every op's parsed parameters in them is checked on the board
(tests/hil/test_inplace.py); here, what the tables hold."""
from types import SimpleNamespace

from pipeline.codegen.builtin_params import STRUCTS, builtin_params, initializer
from pipeline.tflite.reader import inspect_tflite
from tests import _models


def test_one_table_per_struct_with_each_distinct_value_once():
    data = _models.int8_tflite()
    ops = inspect_tflite(data).op_sequence
    tables = builtin_params([data])
    assert {t["op"] for t in tables} == {op for op in ops if op in STRUCTS}
    for t in tables:
        assert (t["struct"], t["parser"]) == STRUCTS[t["op"]]
        assert len(t["entries"]) == len(set(t["entries"])) >= 1
        assert len(t["entries"]) <= ops.count(t["op"])
    # The same model twice (two variants) adds no entry.
    assert builtin_params([data, data]) == tables


def test_initializers_follow_tflm_field_order():
    conv = SimpleNamespace(padding=1, strideW=2, strideH=3, fusedActivationFunction=3, dilationWFactor=1,
                           dilationHFactor=1, quantizedBiasType=0, depthMultiplier=4)
    types = {0: "FLOAT32", 9: "INT8"}
    assert initializer("CONV_2D", conv, types) == "{kTfLitePaddingValid, 2, 3, kTfLiteActRelu6, 1, 1, kTfLiteFloat32}"
    assert initializer("DEPTHWISE_CONV_2D", conv, types) == "{kTfLitePaddingValid, 2, 3, 4, kTfLiteActRelu6, 1, 1}"
    assert initializer("SOFTMAX", SimpleNamespace(beta=0.5), types) == "{0x1.0000000000000p-1f}"
    assert initializer("MEAN", SimpleNamespace(keepDims=True), types) == "{true}"
    assert initializer("CONV_2D", None, types) == "{}"  # no options: TFLM's parser leaves the struct zeroed
    # A value with no known C name: no entry (the firmware then keeps the parsed struct in the arena).
    assert initializer("CONV_2D", SimpleNamespace(**{**vars(conv), "fusedActivationFunction": 99}), types) is None
