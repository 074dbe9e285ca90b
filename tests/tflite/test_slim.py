"""``convert.slim`` and ``convert.payload_bytes``: the slimmed flatbuffer runs bit-exactly on host TFLM,
the payload is what the docstring says, and malformed flatbuffers are refused with a PipelineError."""
import warnings

import numpy as np
import pytest

from pipeline.tflite.reader import inspect_tflite, load_schema, load_tflite, payload_bytes, payload_line
from pipeline.tflite.slim import aligned_builder, DEFAULT_SLIM_TRICKS, SLIM_TRICKS, buffer_offsets, expand_zero_points, slim, slim_with
from pipeline.errors import PipelineError
from pipeline.stages.verify import images_to_input, run_tflite_reference, run_tflm
from tests import _models

ARENA = 64 * 1024


def _inputs(info, n_images=24, n_noise=8):
    x = images_to_input(_models.images(n_images, seed=11), info)
    noise = np.random.default_rng(4).integers(-128, 128, size=(n_noise,) + x.shape[1:]).astype(np.int8)
    return np.concatenate([x, noise])


def fc_model(per_channel: bool = False, zero_points=(0, 0)) -> bytes:
    """A hand-built int8 FULLY_CONNECTED [1,4] x [2,4] + bias [2] -> [1,2], every byte countable:
    weights 8 B, bias 8 B; scales: input 1, output 1, weights 1 (or 2 per channel); the bias has its
    own scale (input x weight scale), which the payload does not count."""
    s = load_schema()
    m = s.ModelT()
    m.version = 3
    oc = s.OperatorCodeT()
    oc.builtinCode = oc.deprecatedBuiltinCode = s.BuiltinOperator.FULLY_CONNECTED
    oc.version = 1
    m.operatorCodes = [oc]

    def buf(raw: bytes):
        b = s.BufferT()
        b.data = np.frombuffer(raw, np.uint8).copy() if raw else None
        return b

    w = np.array([[1, -2, 3, -4], [5, 6, -7, 8]], np.int8)
    bias = np.array([10, -20], np.int32)
    m.buffers = [buf(b""), buf(w.tobytes()), buf(bias.tobytes()), buf(b""), buf(b"")]

    def quant(scale, zp, dim=0):
        q = s.QuantizationParametersT()
        q.scale = np.asarray(scale, np.float32)
        q.zeroPoint = np.asarray(zp, np.int64)
        q.quantizedDimension = dim
        return q

    def tensor(name, shape, ttype, buffer, q):
        t = s.TensorT()
        t.name, t.shape, t.type, t.buffer, t.quantization = name, np.asarray(shape, np.int32), ttype, buffer, q
        return t

    in_s, out_s = 0.5, 0.25
    w_s = [0.02, 0.03] if per_channel else [0.02]
    w_zp = list(zero_points) if per_channel else [0]
    sg = s.SubGraphT()
    sg.tensors = [
        tensor(b"in", [1, 4], s.TensorType.INT8, 3, quant([in_s], [-3])),
        tensor(b"w", [2, 4], s.TensorType.INT8, 1, quant(w_s, w_zp)),
        tensor(b"b", [2], s.TensorType.INT32, 2, quant([in_s * x for x in w_s], [0] * len(w_s))),
        tensor(b"out", [1, 2], s.TensorType.INT8, 4, quant([out_s], [5])),
    ]
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, np.array([0, 1, 2], np.int32), np.array([3], np.int32)
    op.builtinOptionsType = s.BuiltinOptions.FullyConnectedOptions
    op.builtinOptions = s.FullyConnectedOptionsT()
    sg.operators = [op]
    sg.inputs, sg.outputs = np.array([0], np.int32), np.array([3], np.int32)
    m.subgraphs = [sg]
    b = aligned_builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


# --------------------------------------------------------------------------- bit-exact on host TFLM
def test_slim_is_bit_exact_on_host_tflm_and_smaller_than_dropping_names_alone():
    full = _models.int8_tflite(slim=False)
    info = inspect_tflite(full)
    x = _inputs(info)
    ref, _ = run_tflm(full, x, ARENA)
    names_only = slim_with(full, ["names"])  # what slim did before
    out = slim(full)
    assert len(out) < len(names_only) < len(full)
    got, _ = run_tflm(out, x, ARENA)
    assert np.array_equal(got, ref)
    for trick in SLIM_TRICKS:  # each trick alone is bit-exact too (zero_points included: TFLM accepts it)
        alone, _ = run_tflm(slim_with(full, [trick]), x, ARENA)
        assert np.array_equal(alone, ref), trick
    assert all(o % 16 == 0 for o in buffer_offsets(out))  # int32 biases stay aligned for the Cortex-M0+


def test_slim_keeps_what_tflm_reads_and_drops_what_it_does_not():
    full = _models.int8_tflite(slim=False)
    schema, m = load_tflite(slim(full))
    sg = m.subgraphs[0]
    assert all(t.shapeSignature is None and not t.name for t in sg.tensors)
    assert m.signatureDefs is None and m.metadata is None
    ops = {int(oc.deprecatedBuiltinCode): k for k, oc in enumerate(m.operatorCodes)}
    conv = (ops[schema.BuiltinOperator.CONV_2D], ops[schema.BuiltinOperator.DEPTHWISE_CONV_2D])
    fc = ops[schema.BuiltinOperator.FULLY_CONNECTED]
    checked = 0
    for op in sg.operators:
        if op.opcodeIndex not in conv + (fc,):
            continue
        q = sg.tensors[op.inputs[1]].quantization
        # per-channel weights keep a scale per channel and one zero point (TFLM reads one as all)
        assert q is not None and len(q.zeroPoint) == 1 and len(q.scale) >= 1
        if op.opcodeIndex == fc:
            assert op.inputs[2] == -1  # zero Dense bias: the converter leaves it out (see the hand-built FC)
        else:
            assert sg.tensors[op.inputs[2]].quantization is None  # no int8 conv kernel reads it
        checked += 1
    assert checked == 6
    activations = [t for t in sg.tensors if m.buffers[t.buffer].data is None or len(m.buffers[t.buffer].data) == 0]
    assert activations and all(t.buffer == 0 for t in activations)
    assert m.buffers[0].data is None


def test_single_zero_points_run_on_tflite_once_expanded_again():
    full = _models.int8_tflite(slim=False)
    x = _inputs(inspect_tflite(full), 4, 0)
    assert "zero_points" in DEFAULT_SLIM_TRICKS
    slimmed = slim(full)
    # TFLite itself refuses one zero point for several scales ...
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import tensorflow as tf

        with pytest.raises((ValueError, RuntimeError), match="zero_point"):
            tf.lite.Interpreter(model_content=slimmed).allocate_tensors()
    # ... so it gets the vector written out again: the same outputs as the unslimmed model.
    expanded = expand_zero_points(slimmed)
    assert expanded != slimmed and expand_zero_points(full) == full
    assert np.array_equal(run_tflite_reference(slimmed, x), run_tflite_reference(full, x))
    assert np.array_equal(run_tflm(slimmed, x, 64 * 1024)[0], run_tflm(full, x, 64 * 1024)[0])
    assert len(slimmed) < len(slim_with(full, [t for t in SLIM_TRICKS if t != "zero_points"]))


def test_slim_is_idempotent_and_keeps_the_payload():
    full = _models.int8_tflite(slim=False)
    once = slim(full)
    assert slim(once) == once
    before, after = payload_bytes(full), payload_bytes(once)
    assert after["payload_bytes"] == before["payload_bytes"]
    assert after["ratio"] < before["ratio"]
    assert after["weight_bytes"] == inspect_tflite(full).weight_bytes == 1264
    # Untrained BatchNorm folds into all-zero int32 conv biases of 8, 8, 16, 16 and 32 channels; identical
    # buffers count once (8 + 16 + 32); the zero Dense bias is left out by the converter. MEAN: 2 int32 axes.
    assert after["bias_bytes"] == 4 * (8 + 16 + 32) and after["other_constant_bytes"] == 8


# ------------------------------------------------------------------------------- payload by hand
def test_payload_of_a_hand_built_model_counts_every_byte():
    data = fc_model()
    p = payload_bytes(data)
    # weights 8 B + bias 8 B; scales: input, weights, output (the bias scale is derived): 3 x 4 B;
    # zero points: one each for input, weights, output: 3 x 4 B
    assert (p["weight_bytes"], p["bias_bytes"], p["other_constant_bytes"]) == (8, 8, 0)
    assert (p["scales"], p["zero_points"]) == (3, 3)
    assert p["payload_bytes"] == 8 + 8 + 12 + 12 == 40
    assert p["flatbuffer_bytes"] == len(data) and p["ratio"] == round(len(data) / 40, 3)
    assert payload_line(p) == f"flatbuffer {len(data):,} B vs payload 40 B = {len(data) / 40:.2f}x"


def test_payload_counts_per_channel_scales_and_only_distinct_zero_points():
    same = payload_bytes(fc_model(per_channel=True, zero_points=(0, 0)))
    assert (same["scales"], same["zero_points"]) == (4, 3)  # 2 weight scales, one shared zero point
    differ = payload_bytes(fc_model(per_channel=True, zero_points=(0, 1)))
    assert (differ["scales"], differ["zero_points"]) == (4, 4)


def test_hand_built_model_runs_the_same_before_and_after_slim():
    data = fc_model()
    x = np.random.default_rng(0).integers(-128, 128, size=(32, 1, 4)).astype(np.int8)
    ref, _ = run_tflm(data, x.reshape(32, 4), 16 * 1024)
    out = slim(data)
    assert len(out) < len(data)
    got, _ = run_tflm(out, x.reshape(32, 4), 16 * 1024)
    assert np.array_equal(got, ref)
    _, m = load_tflite(out)
    assert m.subgraphs[0].tensors[2].quantization is not None  # FULLY_CONNECTED's bias keeps its scale


# ------------------------------------------------------------------------------- malformed input
@pytest.mark.parametrize("data, match", [
    (b"", "not a TFLite flatbuffer"),
    (b"\x00" * 64, "not a TFLite flatbuffer"),
])
def test_slim_refuses_what_is_not_a_flatbuffer(data, match):
    with pytest.raises(PipelineError, match=match):
        slim(data)
    with pytest.raises(PipelineError, match=match):
        payload_bytes(data)


def test_slim_refuses_a_truncated_flatbuffer():
    data = _models.int8_tflite(slim=False)
    with pytest.raises(PipelineError, match="corrupt or truncated"):
        slim(data[: len(data) // 3])


def _broken(edit) -> bytes:
    _, m = load_tflite(fc_model())
    edit(m)
    b = aligned_builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


@pytest.mark.parametrize("edit, what", [
    (lambda m: setattr(m.subgraphs[0].tensors[1], "buffer", 99), "buffer 99"),
    (lambda m: setattr(m.subgraphs[0].operators[0], "opcodeIndex", 7), "opcode 7"),
    (lambda m: setattr(m.subgraphs[0].operators[0], "inputs", np.array([0, 1, 42], np.int32)), "tensor 42"),
])
def test_slim_refuses_dangling_references(edit, what):
    data = _broken(edit)
    with pytest.raises(PipelineError, match=f"malformed.*{what}") as e:
        slim(data)
    assert e.value.hint and e.value.exit_code == 2
    with pytest.raises(PipelineError, match="malformed"):
        payload_bytes(data)


def test_unknown_trick_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match="shrink"):
        slim_with(fc_model(), ["shrink"])


def test_bench_prints_the_ratio_per_recipe(tmp_path):
    from pipeline.bench.recipes import flatbuffer_payload_markdown

    (tmp_path / "int8").mkdir()
    (tmp_path / "int8" / "model.tflite").write_bytes(fc_model())
    md = flatbuffer_payload_markdown(tmp_path, ["int8", "int4"])
    assert md[1].startswith(f"- int8: {payload_line(payload_bytes(fc_model()))} (goal <= 1.5x")
    assert md[2] == "- int4: flatbuffer vs payload: no model.tflite"


def test_slim_of_the_float_model_is_bit_exact_too():
    full = _models.float_tflite()
    x = np.random.default_rng(2).random((6, 48, 48, 3)).astype(np.float32)
    out = slim(full)
    assert len(out) < len(full)
    assert np.array_equal(run_tflm(out, x, 256 * 1024)[0], run_tflm(full, x, 256 * 1024)[0])
