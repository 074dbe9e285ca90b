"""The op-data records the op resolver keeps in flash (pipeline/codegen/op_data.py). That the firmware's
Prepare computes records byte-equal to them (so that MicroPizzaNet keeps no op data in the arena) is
checked on the board (tests/hil/test_inplace.py); here, what they hold and when none is written."""
import re

from pipeline.codegen.fc_tables import fc_quant_tables
from pipeline.codegen.kernels import conv_quant_tables
from pipeline.codegen.op_data import tflm_padding, softmax_params, op_data_records
from pipeline.tflite.reader import inspect_tflite
from tests import _models


def _records(*variants: tuple[str, bytes]):
    quant, fc = [], []
    for name, data in variants:
        quant += [{**t, "index": len(quant) + i, "variant": name} for i, t in enumerate(conv_quant_tables(data))]
        fc += [{**t, "index": len(fc) + i, "variant": name} for i, t in enumerate(fc_quant_tables(data))]
    return op_data_records(list(variants), quant, fc), quant


def _fields(init: str) -> list[str]:
    return [f.strip() for f in re.sub(r"[{}]", "", init).split(",")]


def test_one_record_per_fast_op_of_micropizzanet():
    data = _models.int8_tflite()
    ops = inspect_tflite(data).op_sequence
    recs, quant = _records(("", data))
    convs = ops.count("CONV_2D") + ops.count("DEPTHWISE_CONV_2D")
    assert len(recs["conv"]) == convs == len(quant)
    assert len(recs["mean"]) == ops.count("MEAN") and len(recs["fc"]) == ops.count("FULLY_CONNECTED")
    assert len(recs["softmax"]) == ops.count("SOFTMAX")
    # Each conv points at its own table; scratch buffers are numbered in request order: every padded
    # depthwise conv's copy of its input, then MEAN's sums.
    dw = [i for i, op in enumerate(o for o in ops if o in ("CONV_2D", "DEPTHWISE_CONV_2D")) if op == "DEPTHWISE_CONV_2D"]
    tables = [int(re.search(r"\[(\d+)\]", r).group(1)) for r in recs["conv"]]
    assert tables == list(range(convs))
    assert [int(_fields(recs["conv"][i])[-1]) for i in dw] == list(range(len(dw)))
    assert int(_fields(recs["mean"][0])[1]) == len(dw)
    # The same model twice (two variants, two interpreters): the same records, once each.
    twice, _ = _records(("a", data), ("b", data))
    assert {k: len(v) for k, v in twice.items()} == {k: len(v) for k, v in recs.items()}


def test_padding_is_tflms():
    # SAME: out = ceil(in / stride); the odd pixel of padding goes after (TFLM's offset), not before.
    assert tflm_padding(0, 2, 1, 48, 3) == 0 and tflm_padding(0, 1, 1, 12, 3) == 1 and tflm_padding(0, 1, 1, 12, 5) == 2
    assert tflm_padding(0, 2, 1, 12, 3) == 0 and tflm_padding(0, 1, 2, 12, 3) == 2
    assert tflm_padding(1, 1, 1, 12, 3) == 0 and tflm_padding(1, 2, 1, 13, 3) == 0


def test_softmax_scaling_is_tflms():
    # beta 1, input scale 1/16: 2^26 / 16 = 2^22 -> multiplier 2^30 (0.5 in Q31), left shift 23; the
    # radius 31 * 2^26 / 2^23 = 248.
    assert softmax_params(1.0, 1 / 16) == (1 << 30, 23, -248)
    # A product past 2^31 - 1 is capped there, as TFLM does.
    mult, left, _ = softmax_params(1.0, 1000.0)
    assert left == 31 and mult == (1 << 31) - 1


def test_unknown_op_before_a_scratch_user_leaves_its_record_out():
    """An op whose Prepare may request scratch buffers (ADD, run by TFLM's kernel) makes every later
    scratch index unknown: no record is written for the padded depthwise conv and MEAN after it (the
    firmware keeps theirs in the arena); records that need no index are still written."""
    data = _models.add_then_depthwise_int8_tflite()
    ops = inspect_tflite(data).op_sequence
    assert ops.index("ADD") < ops.index("DEPTHWISE_CONV_2D") < ops.index("MEAN")
    recs, quant = _records(("", data))
    dw = next(t["index"] for t in quant if t["name"] == "DEPTHWISE_CONV_2D")
    assert not any(f"[{dw}]" in r for r in recs["conv"])
    assert len(recs["conv"]) == ops.count("CONV_2D") and recs["mean"] == []
    assert len(recs["fc"]) == len(fc_quant_tables(data)) and len(recs["softmax"]) == 1
    # Without the ADD (MicroPizzaNet) both are written: what left them out was the unknown op.
    full, _ = _records(("", _models.int8_tflite()))
    assert full["mean"] and len(full["conv"]) > ops.count("CONV_2D")
