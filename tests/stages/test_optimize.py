"""Each compression stage proves its property on a small model in seconds."""
import functools

import numpy as np
import pytest

from pipeline.config import ClusterConfig, ConvertConfig, PruneConfig, QuantizeConfig
from pipeline.stages.convert import convert
from pipeline.tflite.reader import inspect_tflite
from pipeline.errors import PipelineError
from pipeline.stages.optimize.cluster import cluster, fold_batchnorm
from pipeline.stages.optimize.common import fine_tune, kernel_stats
from pipeline.stages.optimize.prune import prune
from pipeline.stages.optimize.quantize import quantize
from tests import _models


@functools.lru_cache(maxsize=None)
def _data():
    x = _models.images(120, seed=11).astype(np.float32) / 255.0
    y = np.clip((x[..., 0].mean(axis=(1, 2)) * 6).astype(int), 0, 5)
    return (x[:96], y[:96]), (x[96:], y[96:])


@functools.lru_cache(maxsize=None)
def _trained():
    train, val = _data()
    m = _models.micropizzanet_like(seed=2)
    fine_tune(m, train, val, epochs=1, learning_rate=3e-3)
    return m


def test_magnitude_pruning_reaches_the_target_and_survives_conversion():
    train, val = _data()
    before = [w.copy() for w in _trained().get_weights()]
    pruned, m = prune(_trained(), train, val, PruneConfig(target_sparsity=0.6, epochs=2, frequency=2))
    assert all(np.array_equal(a, b) for a, b in zip(before, _trained().get_weights())), "input model was mutated"
    rows = {r["layer"]: r for r in m["layers"]}
    for r in rows.values():
        if r["type"] in ("Conv2D", "Dense"):
            assert r["sparsity"] >= 0.6 - 1.0 / r["weights"]
        else:
            assert r["sparsity"] == 0.0  # tfmot never prunes DepthwiseConv2D
    info = inspect_tflite(convert(pruned, train[0], ConvertConfig(representative_samples=16)))
    convs = [l for l in info.layers if l.op in ("CONV_2D", "FULLY_CONNECTED")]
    assert all(l.sparsity >= 0.6 - 1.0 / l.weight_count for l in convs)


def test_a_schedule_that_cannot_complete_is_refused():
    train, val = _data()
    with pytest.raises(PipelineError, match="0 % zeros"):
        prune(_trained(), train, val, PruneConfig(target_sparsity=0.5, epochs=1, frequency=1000))


def test_boundary_pruning_zeroes_below_tau_times_max_and_keeps_the_mask():
    train, val = _data()
    tau = 0.3
    src = {r["layer"]: r for r in kernel_stats(_trained())}
    pruned, m = prune(_trained(), train, val, PruneConfig(method="boundary", tau=tau, epochs=1))
    for layer in pruned.layers:
        if layer.name in m["mask_kept"]:
            w = layer.get_weights()[0]
            assert np.mean(w == 0) >= 1 - m["mask_kept"][layer.name] - 1e-6
    assert set(m["mask_kept"]) == set(src)  # depthwise layers included: our own pruning covers them
    assert 0 < m["sparsity_pruned_layers"] < 1


def test_folding_batchnorm_keeps_the_outputs():
    x = _data()[1][0]
    m = _trained()
    folded = fold_batchnorm(m)
    assert not any(type(l).__name__ == "BatchNormalization" for l in folded.layers)
    np.testing.assert_allclose(folded.predict(x, verbose=0), m.predict(x, verbose=0), atol=1e-4)


def test_clustering_leaves_at_most_k_values_and_the_flatbuffer_keeps_them_per_channel():
    train, val = _data()
    clustered, m = cluster(_trained(), train, val, ClusterConfig(clusters=6, epochs=1))
    for r in m["layers"]:
        if r["type"] in ("Conv2D", "Dense"):
            assert r["unique_values"] <= 6
    assert m["not_clustered"] and all("depthwise" in n for n in m["not_clustered"])
    info = inspect_tflite(convert(clustered, train[0], ConvertConfig(representative_samples=16)))
    for l in info.layers:
        if l.op in ("CONV_2D", "FULLY_CONNECTED"):
            assert l.unique_per_channel_max <= 6


def test_more_clusters_than_weights_is_refused():
    train, val = _data()
    with pytest.raises(PipelineError, match=r"more than the \d+ weights of layer"):
        cluster(_trained(), train, val, ClusterConfig(clusters=200, epochs=1))


def test_ptq_is_left_to_the_converter():
    train, val = _data()
    m, metrics, qat = quantize(_trained(), train, val, QuantizeConfig())
    assert m is _trained() and qat is False and metrics["method"] == "ptq"


@pytest.mark.slow
def test_4bit_qat_gives_packed_int4_weights_that_tflm_runs():
    from pipeline.stages.verify import images_to_input, run_tflm

    train, val = _data()
    m, metrics, qat = quantize(_trained(), train, val, QuantizeConfig(method="qat", weight_bits=4, epochs=1))
    assert qat
    data = convert(m, train[0], ConvertConfig())
    info = inspect_tflite(data)
    weighted = [l for l in info.layers if l.weight_bytes]
    assert weighted and all(l.weight_dtype == "INT4" for l in weighted)
    assert all(l.weight_bytes == (l.weight_count + 1) // 2 for l in weighted)
    assert all(l.unique_values <= 16 for l in weighted)
    assert info.input.dtype == "INT8" and info.output.dtype == "INT8"
    out, _ = run_tflm(data, images_to_input(_models.images(4), info), 64 * 1024)
    assert out.shape == (4, 6)
    # verify still measures TFLM accuracy; the TFLite reference may lack INT4 kernels and says so
    from pipeline.config import VerifyConfig
    from pipeline.stages.verify import verify

    m = verify(data, _models.images(12), np.arange(12) % 6, VerifyConfig(reference_samples=4)).metrics
    assert 0.0 <= m["tflm_test_accuracy"] <= 1.0
    agree = m["tflm_vs_tflite"]
    assert "bit_exact_rate" in agree or agree["not_measured"].startswith("the TFLite interpreter cannot run")


def test_cosine_fine_tuning_decays_the_learning_rate_to_zero():
    train, val = _data()
    m = _models.micropizzanet_like(seed=2)
    fine_tune(m, train, val, epochs=2, learning_rate=1e-3, lr_schedule="cosine")
    lr = m.optimizer.get_config()["learning_rate"]
    assert lr["class_name"] == "CosineDecay"
    assert lr["config"]["initial_learning_rate"] == pytest.approx(1e-3) and lr["config"]["alpha"] == 0.0
    assert lr["config"]["decay_steps"] == 2 * 3 == int(m.optimizer.iterations.numpy())  # 96 images, batches of 32
    with pytest.raises(ValueError, match="lr_schedule"):
        fine_tune(m, train, val, epochs=1, learning_rate=1e-3, lr_schedule="step")
