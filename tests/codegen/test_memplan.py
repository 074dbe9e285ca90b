"""pipeline/codegen/memplan.py: which convolution runs in place, where its buffers go, and the render of it."""
import numpy as np

from pipeline.codegen.memplan import inplace_plan, min_lead
from tests._models import int8_tflite


def test_micropizzanet_first_conv_runs_in_place():
    plan = inplace_plan(int8_tflite())
    assert plan is not None and (plan.op_index, plan.op) == (0, "CONV_2D")
    assert (plan.input_bytes, plan.output_bytes, plan.lead) == (6912, 4608, 192)
    assert plan.span == 7104 and plan.saved == 6912 + 4608 - 7104
    assert plan.head_bytes == plan.live_peak_bytes == 7104
    # TFLM's description of each buffer: 16-byte aligned size, first and last allocation scope.
    got = {(e.bytes, e.first, e.last): e.offset for e in plan.entries}
    assert got[(4608, 1, 2)] == 0      # the conv's output, at the bottom
    assert got[(6912, 0, 1)] == 192    # the input frame, 192 bytes above it
    assert got[(5008, 2, 2)] == 0      # the depthwise conv's 25x25x8 padded input (aligned), over its input
    assert [o.op_index for o in plan.ops] == [0, 1]


def _check_layout(data: bytes):
    """Every pair of buffers alive at the same time shares no byte, unless an in-place operator ties
    them (its input, padded copy and output), and then the output sits lead bytes below what it reads."""
    from pipeline.codegen.memplan import choose_links, plan_buffers

    buffers, links = plan_buffers(data)
    chosen, off = choose_links(buffers, links)
    tied = {}
    for k in chosen:
        ids = [i for i in (k.input, k.output, k.pad) if i is not None and i >= 0]
        for a in ids:
            for b in ids:
                tied[(a, b)] = k
        if k.pad is not None:
            assert off[k.pad] == off[k.input]
        if k.output >= 0:
            assert off[k.source] - off[k.output] == k.lead > 0
    for a in buffers:
        for b in buffers:
            if a.id < b.id and a.first <= b.last and b.first <= a.last:
                overlap = off[a.id] < off[b.id] + b.bytes and off[b.id] < off[a.id] + a.bytes
                assert not overlap or (a.id, b.id) in tied, (a, b)
    return buffers, chosen, off


def test_layout_overlaps_only_in_place_buffers():
    from pipeline.codegen.memplan import head_bytes

    buffers, chosen, off = _check_layout(int8_tflite())
    assert head_bytes(buffers, off) == 7104 and chosen


def test_depthwise_runs_in_place_over_its_padded_copy():
    """A depthwise conv after a pointwise one (a MobileNet block at 48x48): its padded copy goes over
    its input and its output just below, so the arena needs less than the copy, input and output."""
    import numpy as np

    from pipeline.codegen.memplan import head_bytes, inplace_plan
    from tests._models import _keras
    from tests.firmware.test_kernels_c import _convert

    keras = _keras()
    keras.utils.set_random_seed(1)
    L = keras.layers
    i = L.Input((32, 32, 4))
    x = L.Conv2D(8, 1, activation="relu")(i)
    x = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = L.Conv2D(4, 1)(x)
    data = _convert(keras.Model(i, x), (32, 32, 4), seed=1)
    buffers, chosen, off = _check_layout(data)
    dw = [k for k in chosen if k.op == "DEPTHWISE_CONV_2D" and k.output >= 0]
    assert dw and dw[0].pad is not None
    plan = inplace_plan(data)
    padded, x8 = 34 * 34 * 8, 32 * 32 * 8
    assert plan.head_bytes == head_bytes(buffers, off) < padded + 2 * x8
    assert np.all([e.offset >= 0 for e in plan.entries])


def test_min_lead_is_the_rows_inequality():
    rng = np.random.default_rng(0)
    for _ in range(200):
        in_h, in_w, in_c = (int(v) for v in rng.integers(1, 40, 3))
        stride, k = int(rng.integers(1, 4)), int(rng.integers(1, 6))
        out_h, out_w, out_c = -(-in_h // stride), -(-in_w // stride), int(rng.integers(1, 33))
        pad = max((out_h - 1) * stride + k - in_h, 0) // 2
        lead = min_lead(in_h, in_w, in_c, out_h, out_w, out_c, stride, pad)
        out_row, in_row = out_w * out_c, in_w * in_c
        ok = [(oy + 1) * out_row <= lead + max(0, oy * stride - pad) * in_row for oy in range(out_h)]
        assert all(ok) and lead % 16 == 0
        assert not all((oy + 1) * out_row <= lead - 16 + max(0, oy * stride - pad) * in_row for oy in range(out_h))


def test_render_writes_the_plan_and_can_leave_it_out(tmp_path):
    from pipeline.config import RenderConfig
    from pipeline.codegen.render import render
    from pipeline.stages.verify import images_to_input, run_tflm
    from pipeline.tflite.reader import inspect_tflite
    from tests._models import images

    data = int8_tflite()
    info = inspect_tflite(data)
    x = images_to_input(images(2), info)
    y, _ = run_tflm(data, x, 64 * 1024)
    kw = dict(golden_inputs=x, golden_outputs=y, golden_labels=[0, 1], class_names=list("abcdef"),
              host_arena_bytes=16000, provenance={})
    render(data, RenderConfig(), tmp_path / "on", **kw)
    render(data, RenderConfig(inplace=False), tmp_path / "off", **kw)
    on = (tmp_path / "on" / "model_data.cc").read_text()
    off = (tmp_path / "off" / "model_data.cc").read_text()
    assert "4608, 1, 2, 0," in on and "6912, 0, 1, 192," in on and "_plan, 11 }" in on
    assert "_plan[]" not in off and "nullptr, 0 }" in off


def test_no_in_place_plan_around_space_to_batch():
    """A dilated convolution's SPACE_TO_BATCH_ND output holds 4 batches where the flatbuffer says 1: an
    in-place plan over it made the emulated Pico's outputs differ from host TFLM (golden 0/8)."""
    from pipeline.codegen.memplan import inplace_plan
    from tests import _models

    assert inplace_plan(_models.dilated_int8_tflite()) is None
    assert inplace_plan(_models.int8_tflite()) is not None  # MicroPizzaNet keeps its plan
