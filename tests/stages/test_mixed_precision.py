"""Per-layer mixed precision (quantize.layer_bits): the flatbuffer's weight dtypes follow the bits asked
for, and bad names, bit widths and mixes TFLM cannot run are refused before any training."""
import functools

import numpy as np
import pytest

from pipeline.config import ConfigError, ConvertConfig, QuantizeConfig
from pipeline.flow.recipe import load_recipe
from pipeline.stages.convert import convert
from pipeline.tflite.reader import inspect_tflite
from pipeline.errors import PipelineError
from pipeline.stages.optimize.quantize import check_layer_bits, quantize
from tests import _models

_OP_OF = {"Conv2D": "CONV_2D", "DepthwiseConv2D": "DEPTHWISE_CONV_2D", "Dense": "FULLY_CONNECTED"}


@functools.lru_cache(maxsize=None)
def _data():
    x = _models.images(64, seed=11).astype(np.float32) / 255.0
    y = np.clip((x[..., 0].mean(axis=(1, 2)) * 6).astype(int), 0, 5)
    return (x[:48], y[:48]), (x[48:], y[48:])


@functools.lru_cache(maxsize=None)
def _model():
    return _models.micropizzanet_like(seed=3)


def _weighted(model):
    return [(l.name, type(l).__name__) for l in model.layers if type(l).__name__ in _OP_OF]


@pytest.mark.parametrize("default", [4, 8])
def test_flatbuffer_weight_dtypes_follow_the_requested_bits_per_layer(default):
    train, val = _data()
    layers = _weighted(_model())
    other = 8 if default == 4 else 4
    # the first conv and the first depthwise at the other width, the rest at the default
    first_conv = next(n for n, t in layers if t == "Conv2D")
    first_dw = next(n for n, t in layers if t == "DepthwiseConv2D")
    cfg = QuantizeConfig(method="qat", weight_bits=default, epochs=1, layer_bits={first_conv: other, first_dw: other})
    m, metrics, qat = quantize(_model(), train, val, cfg)
    assert qat and metrics["layer_bits"][first_conv] == other and metrics["layer_bits"][layers[-1][0]] == default
    info = inspect_tflite(convert(m, train[0], ConvertConfig(representative_samples=16), qat=True))
    weighted = [l for l in info.layers if l.weight_bytes]
    assert [l.op for l in weighted] == [_OP_OF[t] for _, t in layers]  # one flatbuffer op per Keras layer, in order
    for (name, _), l in zip(layers, weighted):
        want = cfg.layer_bits.get(name, default)
        assert l.weight_dtype == f"INT{want}", (name, l.weight_dtype)
        assert l.weight_bytes == (l.weight_count + 1) // 2 if want == 4 else l.weight_count
    assert info.input.dtype == "INT8" and info.output.dtype == "INT8"


def test_tflm_runs_the_mixed_model():
    from pipeline.stages.verify import images_to_input, run_tflm

    train, val = _data()
    first_conv = _weighted(_model())[0][0]
    m, _, _ = quantize(_model(), train, val, QuantizeConfig(method="qat", weight_bits=4, epochs=1,
                                                            layer_bits={first_conv: 8}))
    data = convert(m, train[0], ConvertConfig(representative_samples=16), qat=True)
    info = inspect_tflite(data)
    out, _ = run_tflm(data, images_to_input(_models.images(4), info), 64 * 1024)
    assert out.shape == (4, 6)


def test_an_unknown_layer_is_refused_with_the_names_before_training():
    train, val = _data()
    cfg = QuantizeConfig(method="qat", weight_bits=4, epochs=1000, layer_bits={"nope": 8})
    with pytest.raises(PipelineError, match="'nope', which the model does not have") as e:
        quantize(_model(), train, val, cfg)  # 1000 epochs: would take minutes if it trained first
    assert all(n in e.value.hint for n, _ in _weighted(_model()))


def test_a_layer_without_weights_is_refused():
    relu = next(l.name for l in _model().layers if type(l).__name__ == "ReLU")
    with pytest.raises(PipelineError, match="no weights to quantize"):
        quantize(_model(), *_data(), QuantizeConfig(method="qat", weight_bits=4, layer_bits={relu: 8}))


def test_4bit_weights_on_an_op_without_int4_kernels_are_refused():
    types = {"a": "Conv2D", "t": "Conv2DTranspose"}
    with pytest.raises(PipelineError, match="4-bit weights, which TFLM cannot run"):
        check_layer_bits(types, QuantizeConfig(method="qat", layer_bits={"t": 4}))
    with pytest.raises(PipelineError, match=r"layer\(s\) t 4-bit weights"):
        check_layer_bits(types, QuantizeConfig(method="qat", weight_bits=4, layer_bits={"a": 8}))
    check_layer_bits(types, QuantizeConfig(method="qat", weight_bits=4, layer_bits={"t": 8}))  # fine


@pytest.mark.parametrize("bits", [2, 16, True, "4"])
def test_bit_widths_other_than_4_and_8_are_refused(bits):
    with pytest.raises(ConfigError, match=r"layer_bits\.conv0"):
        QuantizeConfig(method="qat", layer_bits={"conv0": bits})


def test_layer_bits_need_qat():
    with pytest.raises(ConfigError, match="needs quantize.method = 'qat'"):
        QuantizeConfig(method="ptq", layer_bits={"conv0": 8})


def test_the_recipe_is_refused_at_load_for_micropizzanet(tmp_path):
    with pytest.raises(PipelineError, match="'conv9', which the model does not have"):
        load_recipe("mixed-int4", {"quantize": {"layer_bits": {"conv9": 8}}})
    with pytest.raises(PipelineError, match="'bn0' .*no weights"):
        load_recipe("mixed-int4", {"quantize": {"layer_bits": {"bn0": 4}}})
    r = load_recipe("mixed-int4")
    assert r.config("quantize").layer_bits == {"conv0": 8} and r.config("quantize").weight_bits == 4


def test_the_cli_refuses_a_bad_layer_in_one_line(tmp_path):
    from tests.conftest import assert_cli_error, cli

    r = cli("run", "mixed-int4", "--set", "quantize.layer_bits={conv9=8}", "--runs-dir", str(tmp_path), "--no-progress")
    assert_cli_error(r, "conv9", "conv0, dw1, pw2")
    assert not (tmp_path / "mixed-int4" / "data.npz").exists()  # refused at recipe load, before any stage ran


def test_micropizzanet_layer_table_matches_the_built_model():
    from pipeline.stages.models.micropizzanet import LAYER_TYPES, build_micropizzanet

    m = build_micropizzanet()
    assert {l.name: type(l).__name__ for l in m.layers} == LAYER_TYPES
