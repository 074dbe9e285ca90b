"""MicroPizzaNet's exact structure, the registry, user model files and MAC counting."""
from __future__ import annotations

import pytest

from pipeline.config import ModelConfig
from pipeline.errors import PipelineError
from pipeline.keras_setup import keras
from pipeline.stages.models import MODELS, build_model, count_macs, load_user_model


@pytest.fixture(scope="module")
def net():
    return build_model(ModelConfig(), 6, (48, 48, 3))


def test_micropizzanet_structure(net):
    k = keras()
    L = k.layers
    expect = [
        ("input", L.InputLayer, None), ("conv0", L.Conv2D, (24, 24, 8)), ("bn0", L.BatchNormalization, None),
        ("relu0", L.ReLU, None), ("dw1", L.DepthwiseConv2D, (12, 12, 8)), ("bn1", L.BatchNormalization, None),
        ("relu1", L.ReLU, None), ("pw2", L.Conv2D, (12, 12, 16)), ("bn2", L.BatchNormalization, None),
        ("relu2", L.ReLU, None), ("dw3", L.DepthwiseConv2D, (6, 6, 16)), ("bn3", L.BatchNormalization, None),
        ("relu3", L.ReLU, None), ("pw4", L.Conv2D, (6, 6, 32)), ("bn4", L.BatchNormalization, None),
        ("relu4", L.ReLU, None), ("gap", L.GlobalAveragePooling2D, None), ("classifier", L.Dense, None),
    ]
    assert [(l.name, type(l)) for l in net.layers] == [(n, t) for n, t, _ in expect]
    for name, _, shape in expect:
        if shape:
            assert net.get_layer(name).output_shape[1:] == shape
    conv0, dw1, pw2 = net.get_layer("conv0"), net.get_layer("dw1"), net.get_layer("pw2")
    assert conv0.kernel_size == (3, 3) and conv0.strides == (2, 2) and conv0.padding == "same" and not conv0.use_bias
    assert dw1.kernel_size == (3, 3) and dw1.strides == (2, 2) and not dw1.use_bias
    assert pw2.kernel_size == (1, 1) and not pw2.use_bias
    assert net.get_layer("classifier").units == 6
    assert net.get_layer("classifier").activation.__name__ == "softmax"
    assert net.input_shape == (None, 48, 48, 3)


def test_macs_and_params(net):
    assert count_macs(net) == 177_024
    assert net.count_params() == 1_590


def test_same_seed_same_weights():
    a = build_model(ModelConfig(seed=7), 6, (48, 48, 3)).get_weights()
    b = build_model(ModelConfig(seed=7), 6, (48, 48, 3)).get_weights()
    assert all((x == y).all() for x, y in zip(a, b))


def test_registry_and_unknown_name():
    assert "micropizzanet" in MODELS
    with pytest.raises(PipelineError, match="unknown model 'resnet'.*micropizzanet"):
        build_model(ModelConfig(name="resnet"), 6, (48, 48, 3))


def test_user_model_file(tmp_path, net):
    p = tmp_path / "mine.keras"
    net.save(p)
    m = build_model(ModelConfig(name=str(p)), 6, (48, 48, 3))
    assert count_macs(m) == 177_024
    with pytest.raises(PipelineError, match=r"expects input \(48, 48, 3\), but the images are \(32, 32, 3\)"):
        load_user_model(p, 6, (32, 32, 3))
    with pytest.raises(PipelineError, match="output shape .* 4 classes"):
        load_user_model(p, 4, (48, 48, 3))


def test_user_model_file_errors(tmp_path):
    with pytest.raises(PipelineError, match="does not exist"):
        load_user_model(tmp_path / "missing.keras", 6, (48, 48, 3))
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"this is not a zip file")
    with pytest.raises(PipelineError, match="is not a Keras model file"):
        load_user_model(junk, 6, (48, 48, 3))


def test_mac_count_of_other_layers():
    k = keras()
    L = k.layers
    i = L.Input((10, 10, 4))
    x = L.Conv2D(6, 3, padding="valid")(i)            # 8*8*6*3*3*4 = 13824
    x = L.DepthwiseConv2D(3, depth_multiplier=2)(x)    # 6*6*12*9 = 3888
    x = L.Flatten()(x)
    x = L.Dense(5)(x)                                  # 432*5 = 2160
    assert count_macs(k.Model(i, x)) == 13824 + 3888 + 2160
