"""The per-op kernel table of `make bench`: MACs from the .tflite beside the board's `profile` on one
core and on two, stock beside picotflm; a figure is never paired with another op."""
from types import SimpleNamespace

from pipeline.bench.recipes import per_op_markdown, per_op_rows


def _layers(*ops):
    return [SimpleNamespace(op=op, macs=macs) for op, macs in ops]


def test_per_op_rows_pair_by_position_and_name():
    layers = _layers(("CONV_2D", 1000), ("DEPTHWISE_CONV_2D", 90), ("SOFTMAX", 0))
    two = [{"op": "CONV_2D", "cycles": 3000}, {"op": "DEPTHWISE_CONV_2D", "cycles": 700}, {"op": "SOFTMAX", "cycles": 50}]
    one = [{"op": "CONV_2D", "cycles": 5800}, {"op": "MEAN", "cycles": 1}, {"op": "SOFTMAX", "cycles": 50}]
    rows = per_op_rows(layers, two, one)
    assert [r["op"] for r in rows] == ["CONV_2D", "DEPTHWISE_CONV_2D", "SOFTMAX"]
    assert rows[0] == {"index": 0, "op": "CONV_2D", "macs": 1000, "cycles": 3000, "one_core_cycles": 5800}
    assert rows[1]["one_core_cycles"] is None  # the one-core profile named another op there
    # A two-core profile that does not match the model's ops gives no row at all.
    assert per_op_rows(layers, [{"op": "MEAN", "cycles": 5}], None) == []
    assert per_op_rows(layers, None, None) == []


def test_per_op_markdown_cycles_per_mac_and_speed_up():
    layers = _layers(("CONV_2D", 1000), ("SOFTMAX", 0))
    pf = {"run": "int8", "kernels": "picotflm", "cycles": 3100, "one_core_cycles": 5900,
          "per_op": per_op_rows(layers, [{"op": "CONV_2D", "cycles": 3000}, {"op": "SOFTMAX", "cycles": 100}],
                                [{"op": "CONV_2D", "cycles": 5800}, {"op": "SOFTMAX", "cycles": 100}])}
    stock = {"run": "int8", "kernels": "stock", "cycles": 20000, "one_core_cycles": 21000,
             "per_op": per_op_rows(layers, [{"op": "CONV_2D", "cycles": 19900}, {"op": "SOFTMAX", "cycles": 100}],
                                   [{"op": "CONV_2D", "cycles": 20900}, {"op": "SOFTMAX", "cycles": 100}])}
    md = per_op_markdown([stock, pf])
    conv = next(line for line in md if line.startswith("| 0 | CONV_2D"))
    assert conv == "| 0 | CONV_2D | 1,000 | 20.90 | 5.80 | 3.00 | 1.93x |"
    softmax = next(line for line in md if line.startswith("| 1 | SOFTMAX"))
    assert "| - | - | - |" in softmax  # no MACs: no cycles/MAC
    whole = next(line for line in md if "whole invoke" in line)
    assert whole == "| | whole invoke (`bench`) | 1,000 | 21.00 | 5.90 | 3.10 | 1.90x |"
    assert per_op_markdown([stock]) == []  # no picotflm row: no table
