"""Codebook weights end to end on the host: settings refused before training, per-channel clustering
that the int8 flatbuffer keeps, and the device model whose codebooks decode to the host model's
filters (pipeline/tflite/codebook.py)."""
import numpy as np
import pytest

from pipeline.config import ClusterConfig, ConfigError, ConvertConfig
from pipeline.flow.recipe import load_recipe
from pipeline.stages.convert import convert
from pipeline.tflite.codebook import decode, device_figures, encode, weight_bytes
from pipeline.tflite.reader import inspect_tflite, load_tflite
from tests.conftest import assert_cli_error, cli
from tests.stages.test_optimize import _data, _trained


@pytest.mark.parametrize("clusters,bits", [(5, 2), (17, 4), (3, 1)])
def test_clusters_that_do_not_fit_the_index_width_are_refused(clusters, bits):
    with pytest.raises(ConfigError, match="cluster.index_bits|cluster.clusters"):
        ClusterConfig(clusters=clusters, index_bits=bits)


def test_codebooks_with_kernels_that_cannot_decode_them_are_refused_before_training(tmp_path):
    r = cli("run", "codebook-2bit", "--runs-dir", str(tmp_path), "--set", "build.kernels=stock", "--no-progress")
    assert_cli_error(r, "only picotflm's", "build.kernels")
    assert not (tmp_path / "codebook-2bit" / "data.npz").exists()  # nothing ran
    r = cli("run", "codebook-2bit", "--runs-dir", str(tmp_path), "--set", "cluster.clusters=6", "--no-progress")
    assert_cli_error(r, "cluster.clusters = 6 does not fit cluster.index_bits = 2")
    with pytest.raises(ConfigError, match="int4 weights"):
        load_recipe("codebook-4bit", {"quantize": {"method": "qat", "weight_bits": 4}})


@pytest.fixture(scope="module")
def clustered_tflite():
    from pipeline.stages.optimize.cluster import cluster

    train, val = _data()
    model, m = cluster(_trained(), train, val, ClusterConfig(clusters=4, per_channel=True, index_bits=2, epochs=1))
    assert all(r["unique_values_per_channel"] <= 4 for r in m["layers"] if r["type"] == "Conv2D")
    return convert(model, train[0], ConvertConfig(representative_samples=16))


def _filters(data):
    schema, model = load_tflite(data)
    sg = model.subgraphs[0]
    out = {}
    for n, op in enumerate(sg.operators):
        oc = model.operatorCodes[op.opcodeIndex]
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == schema.BuiltinOperator.CONV_2D:
            t = sg.tensors[op.inputs[1]]
            out[n] = (t, np.asarray(model.buffers[t.buffer].data, np.uint8))
    return out


def test_per_channel_clusters_stay_in_the_int8_flatbuffer_and_decode_exactly(clustered_tflite):
    info = inspect_tflite(clustered_tflite)
    convs = [l for l in info.layers if l.op == "CONV_2D"]
    assert convs and all(l.unique_per_channel_max <= 4 for l in convs)
    dev, books = encode(clustered_tflite, 2)
    assert books and len(dev) < len(clustered_tflite)
    host, device = _filters(clustered_tflite), _filters(dev)
    for b in books:
        t, dense = host[b.op]
        _, stored = device[b.op]
        assert stored.size == b.stored_bytes < dense.size
        assert bytes(stored) == bytes(dev[b.offset:b.offset + b.stored_bytes])  # the address the firmware uses
        w = decode(stored[: b.table_bytes].view(np.int8), bytes(stored[b.table_bytes:]), b.channels, b.k, 2,
                   b.per_channel)
        assert np.array_equal(w.reshape(-1), dense.view(np.int8))
    _, fig = device_figures(clustered_tflite, 2)
    assert fig["device_weight_bytes"] == weight_bytes(dev) < fig["int8_weight_bytes"] == weight_bytes(clustered_tflite)
    # everything but the codebook filters is the same model
    assert inspect_tflite(dev).op_sequence == info.op_sequence


def test_a_model_without_few_enough_values_is_left_as_it_is(clustered_tflite):
    dev, books = encode(clustered_tflite, 4)  # fits, but only where a table per channel is smaller
    assert all(b.stored_bytes < b.dense_bytes for b in books)
    _, fig = device_figures(clustered_tflite, 8)
    assert fig["device_tflite_bytes"] == len(clustered_tflite) and fig["codebooks"] == []


def test_group_pruning_zeroes_whole_groups_of_four_channels_and_keeps_them_through_clustering():
    from pipeline.config import PruneConfig
    from pipeline.stages.optimize.cluster import cluster
    from pipeline.stages.optimize.common import kernel_of
    from pipeline.stages.optimize.prune import prune

    train, val = _data()
    pruned, m = prune(_trained(), train, val, PruneConfig(method="groups", target_sparsity=0.5, epochs=1))
    assert m["groups_pruned"]
    for layer in pruned.layers:
        if layer.name in m["groups_pruned"]:
            w = kernel_of(layer).numpy()
            zero = ~w.reshape(-1, w.shape[-1]).any(axis=0)
            groups = w.shape[-1] // 4
            assert sorted({c // 4 for c in range(w.shape[-1]) if zero[c]}) == m["groups_pruned"][layer.name]
            assert len(m["groups_pruned"][layer.name]) == round(0.5 * groups)
    clustered, cm = cluster(pruned, train, val, ClusterConfig(clusters=4, per_channel=True, index_bits=2, epochs=1))
    for name, channels in cm["zero_channels_kept"].items():
        w = kernel_of(clustered.get_layer(name)).numpy()
        assert not w[..., channels].any()
