"""The per-tensor view of the arena: lives read from the flatbuffer, the greedy plan, the peak, and
host TFLM's allocation print-out parsed (the head it reports is the peak the flatbuffer gives)."""
from __future__ import annotations

import pytest

from pipeline.tflite.reader import inspect_tflite
from pipeline.errors import PipelineError
from pipeline.codegen.layout import TensorLife, _plan, arena_layout, layout_markdown, tensor_lifetimes
from pipeline.stages.verify import arena_allocations, minimal_arena, parse_allocations
from tests import _models

# What host TFLM printed for the int8 run of the default recipe (print_allocations, 64-bit).
PRINT_OUT = """\
[RecordingMicroAllocator] Arena allocation total 14784 bytes
[RecordingMicroAllocator] Arena allocation head 11520 bytes
[RecordingMicroAllocator] Arena allocation tail 3264 bytes
[RecordingMicroAllocator] 'TfLiteEvalTensor data' used 528 bytes with alignment overhead (requested 528 bytes for 22 allocations)
[RecordingMicroAllocator] 'Persistent TfLiteTensor data' used 128 bytes with alignment overhead (requested 128 bytes for 2 tensors)
[RecordingMicroAllocator] 'Persistent TfLiteTensor quantization data' used 64 bytes with alignment overhead (requested 64 bytes for 4 allocations)
[RecordingMicroAllocator] 'Persistent buffer data' used 1340 bytes with alignment overhead (requested 1300 bytes for 22 allocations)
[RecordingMicroAllocator] 'NodeAndRegistration struct' used 512 bytes with alignment overhead (requested 512 bytes for 8 NodeAndRegistration structs)
"""


@pytest.fixture(scope="module")
def model() -> bytes:
    return _models.int8_tflite()


def test_micropizzanet_peak_is_the_first_conv_with_its_input(model):
    lay = arena_layout(model)
    assert lay["peak_live_bytes"] == 48 * 48 * 3 + 24 * 24 * 8 == 11_520
    assert (lay["peak_op_index"], lay["peak_op"]) == (0, "CONV_2D")
    assert lay["planned_head_bytes"] == 11_520
    ops = lay["ops"]
    assert [o["op"] for o in ops] == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D",
                                      "MEAN", "FULLY_CONNECTED", "SOFTMAX"]
    assert [o["live_bytes"] for o in ops] == [11_520, 5_760, 3_456, 2_880, 1_728, 1_184, 48, 32]
    tensors = {t["index"]: t for t in lay["tensors"]}
    assert all(len(o["live_tensors"]) == 2 for o in ops)  # a chain: the op's input and output
    roles = sorted(t["role"] for t in tensors.values())
    assert roles.count("input") == 1 and roles.count("output") == 1
    out = next(t for t in tensors.values() if t["role"] == "output")
    assert (out["bytes"], out["aligned_bytes"], out["first_op"], out["last_op"]) == (6, 16, 7, 7)


def test_the_flatbuffer_peak_is_host_tflms_head(model):
    """The head host TFLM allocates (reference kernels, no scratch here) equals the planned peak."""
    arena = minimal_arena(model, inspect_tflite(model))
    alloc = arena_allocations(model, arena)
    assert alloc["head_bytes"] == arena_layout(model)["planned_head_bytes"]
    assert alloc["total_bytes"] == arena and alloc["head_bytes"] + alloc["tail_bytes"] == alloc["total_bytes"]
    assert {k["what"] for k in alloc["kinds"]} >= {"TfLiteEvalTensor data", "NodeAndRegistration struct"}


def test_plan_places_tensors_whose_lives_overlap_apart():
    a = TensorLife(0, "", "INT8", [100], 100, 112, 0, 1, "input")
    b = TensorLife(1, "", "INT8", [64], 64, 64, 1, 2, "activation")
    c = TensorLife(2, "", "INT8", [32], 32, 32, 2, 3, "output")
    head = _plan([a, b, c])
    assert a.offset == 0 and b.offset == 112  # overlap in op 1
    assert c.offset == 0  # a is dead by op 2: c reuses its bytes (below b)
    assert head == 176


def test_not_a_flatbuffer_is_refused():
    with pytest.raises(PipelineError, match="not a TFLite flatbuffer"):
        tensor_lifetimes(b"not a model at all")
    with pytest.raises(PipelineError, match="corrupt or truncated|no subgraph"):
        tensor_lifetimes(b"\x00\x00\x00\x00TFL3" + b"\xff" * 8)
    with pytest.raises(PipelineError, match="corrupt or truncated|no subgraph"):
        tensor_lifetimes(_models.int8_tflite()[:200])


def test_parse_the_whole_print_out():
    p = parse_allocations(PRINT_OUT.splitlines())
    assert (p["total_bytes"], p["head_bytes"], p["tail_bytes"]) == (14_784, 11_520, 3_264)
    assert [k["what"] for k in p["kinds"]] == ["TfLiteEvalTensor data", "Persistent TfLiteTensor data",
                                               "Persistent TfLiteTensor quantization data", "Persistent buffer data",
                                               "NodeAndRegistration struct"]
    pb = p["kinds"][3]
    assert (pb["used_bytes"], pb["requested_bytes"], pb["count"]) == (1_340, 1_300, 22)
    assert sum(k["used_bytes"] for k in p["kinds"]) == 2_572  # the rest of the tail: TFLM's own objects


def test_parse_tolerates_noise_and_nothing():
    assert parse_allocations([]) == {"kinds": []}
    noisy = ["", "garbage 'x' used lots of bytes", "Arena allocation head twelve bytes",
             "[RecordingMicroAllocator] Arena allocation head 96 bytes\r"]
    assert parse_allocations(noisy) == {"kinds": [], "head_bytes": 96}


def test_markdown_marks_the_peak_and_compares_with_the_print_out(model):
    lay = arena_layout(model)
    md = "\n".join(layout_markdown(lay, parse_allocations(PRINT_OUT.splitlines())))
    assert "| 0 | CONV_2D |" in md and "**11,520 (peak)**" in md
    assert "head 11,520 B, tail 3,264 B, total 14,784 B (head = the peak above)" in md
    assert "| Persistent buffer data | 22 | 1,300 | 1,340 |" in md
    other = dict(lay, peak_live_bytes=11_000)
    assert "differs from the flatbuffer peak by +520 B" in "\n".join(
        layout_markdown(other, parse_allocations(PRINT_OUT.splitlines())))
