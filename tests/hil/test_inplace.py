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
    """Every CONV_2D whose weights the host wrote out expanded (render.wide_weights, and per pair of
    groups, pair_weights) uses them, and every one whose group setup the host wrote (group_records)
    reads it from flash: the firmware compared each with its own at Prepare; outputs stay bit-exact."""
    from pipeline.codegen.kernels import conv_quant_tables

    info = board.handshake()
    if info["kernels"] != "picotflm":
        pytest.skip("stock kernels: no expanded weights")
    tables = conv_quant_tables(host_model[0])
    wide = [t for t in tables if t["wx"]]
    assert len(wide) > 0 and info["wide_tables"] == len(wide)
    assert any(t["wx8"] for t in wide)
    grouped = [t for t in tables if t["groups"]]
    assert len(grouped) > 0 and info["group_tables"] == len(grouped)
    g = board.request("golden", timeout=60)
    assert g["exact"] == g["count"] > 0


def _builtin_param_ops():
    from pipeline.codegen.builtin_params import STRUCTS
    return tuple(STRUCTS)


def _fast_kernel_ops():
    from pipeline.codegen.kernels import FAST_KERNEL_OPS
    return FAST_KERNEL_OPS


# What the host writes into the op resolver for flash: each op's builtin parameters
# (pipeline/codegen/builtin_params.py) and each fast op's data (pipeline/codegen/op_data.py); `info`'s
# counters of those found there and of those kept in the arena.
@pytest.mark.parametrize("ops_of, in_flash, in_arena", [
    (_builtin_param_ops, "params_in_flash", "params_in_arena"),
    (_fast_kernel_ops, "op_data_in_flash", "op_data_in_arena"),
], ids=["builtin-params", "op-data"])
def test_what_the_host_wrote_comes_from_flash(board, host_model, ops_of, in_flash, in_arena):
    """Every op's entry equals one the host wrote, so the arena holds none of them; the outputs stay
    bit-exact."""
    info = board.handshake()
    if info["kernels"] != "picotflm":
        pytest.skip("stock kernels: TFLM's parsers and op data as they are")
    handled = sum(op in ops_of() for op in host_model[1].op_sequence)
    assert handled >= 8  # MicroPizzaNet: CONV_2D x3, DEPTHWISE_CONV_2D x2, MEAN, FULLY_CONNECTED, SOFTMAX
    assert info[in_flash] == handled and info[in_arena] == 0
    g = board.request("golden", timeout=60)
    assert g["exact"] == g["count"] > 0
