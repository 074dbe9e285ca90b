"""The in-place memory plan on the board: picotflm's planner places the buffers pipeline/codegen/memplan.py
names, the first convolution runs in place, and every output stays bit-exact."""
import pytest

from pipeline.codegen.memplan import inplace_plan

pytestmark = pytest.mark.hardware


def test_in_place_plan_is_applied_and_exact(board, host_model):
    data, _info, _ = host_model
    plan = inplace_plan(data)
    assert plan is not None and plan.op_index == 0  # MicroPizzaNet: the first conv over the input frame
    info = board.handshake()
    if info["kernels"] != "picotflm":
        pytest.skip("stock kernels: no in-place plan")
    assert info["plan_entries"] == len(plan.entries) and info["plan_matched"] == info["plan_entries"]
    before = info["inplace_ops"]
    g = board.request("golden", timeout=60)
    assert g["exact"] == g["count"] > 0 and g["max_diff"] == 0
    assert board.request("info")["inplace_ops"] >= before + g["count"]
    m = board.request("mem")
    # Without the overlap TFLM needs the whole input and output at once, plus its own structures.
    assert m["arena_used"] < plan.input_bytes + plan.output_bytes


def test_host_thresholds_are_verified_and_used(board):
    """Every convolution's ReLU thresholds come from the host's table, checked equal to the
    firmware's own at boot (none rejected), and the outputs stay bit-exact."""
    info = board.handshake()
    if info["kernels"] != "picotflm":
        pytest.skip("stock kernels: no quant tables")
    assert info["quant_tables_matched"] > 0
    assert info["threshold_tables"] == info["quant_tables_matched"] and info["threshold_tables_rejected"] == 0
    g = board.request("golden", timeout=60)
    assert g["exact"] == g["count"] > 0


def test_host_expanded_weights_are_used(board, host_model):
    """Every CONV_2D whose weights the host wrote out expanded (render.wide_weights) uses them: the
    firmware compared them with the model's weights at Prepare; the outputs stay bit-exact."""
    from pipeline.codegen.kernels import conv_quant_tables

    info = board.handshake()
    if info["kernels"] != "picotflm":
        pytest.skip("stock kernels: no expanded weights")
    wide = [t for t in conv_quant_tables(host_model[0]) if t["wx"]]
    assert len(wide) > 0 and info["wide_tables"] == len(wide)
    g = board.request("golden", timeout=60)
    assert g["exact"] == g["count"] > 0


def test_builtin_params_come_from_flash(board, host_model):
    """Every operator's builtin parameters equal an entry the host wrote into the op resolver's tables
    (pipeline/codegen/builtin_params.py), so the arena holds none of them; the outputs stay bit-exact."""
    from pipeline.codegen.builtin_params import STRUCTS

    info = board.handshake()
    if info["kernels"] != "picotflm":
        pytest.skip("stock kernels: TFLM's parsers as they are")
    ops = host_model[1].op_sequence
    handled = sum(op in STRUCTS for op in ops)
    assert handled >= 5  # MicroPizzaNet: CONV_2D x3, DEPTHWISE_CONV_2D x2, MEAN, FULLY_CONNECTED, SOFTMAX
    assert info["params_in_flash"] == handled and info["params_in_arena"] == 0
    g = board.request("golden", timeout=60)
    assert g["exact"] == g["count"] > 0


def test_op_data_comes_from_flash(board, host_model):
    """Every fast op's data (what its Eval reads) equals a record the host wrote into the op resolver
    (pipeline/codegen/op_data.py), so the arena keeps none of it; the outputs stay bit-exact."""
    from pipeline.codegen.kernels import FAST_KERNEL_OPS

    info = board.handshake()
    if info["kernels"] != "picotflm":
        pytest.skip("stock kernels: TFLM's op data")
    fast = sum(op in FAST_KERNEL_OPS for op in host_model[1].op_sequence)
    assert fast >= 8  # MicroPizzaNet: CONV_2D x3, DEPTHWISE_CONV_2D x2, MEAN, FULLY_CONNECTED, SOFTMAX
    assert info["op_data_in_flash"] == fast and info["op_data_in_arena"] == 0
    g = board.request("golden", timeout=60)
    assert g["exact"] == g["count"] > 0
