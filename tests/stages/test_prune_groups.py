"""Group pruning: a pruned channel outputs exactly zero (weights, bias and BatchNorm shift), through
BatchNorm folding, clustering and int8 conversion, so int8 has no constant to round; the shipped
recipe prune-groups-2bit."""
import numpy as np

from pipeline.config import ClusterConfig, ConvertConfig, PruneConfig
from pipeline.flow.recipe import load_recipe
from pipeline.stages.convert import convert
from pipeline.stages.optimize.cluster import cluster
from pipeline.stages.optimize.common import kernel_of
from pipeline.stages.optimize.prune import prune
from pipeline.tflite.reader import BIAS_INPUT, enum_names, load_tflite
from tests.stages.test_optimize import _data, _trained


def _pruned_channels(model, groups_pruned):
    out = {}
    for name in groups_pruned:
        w = kernel_of(model.get_layer(name)).numpy()
        out[name] = np.flatnonzero(~w.reshape(-1, w.shape[-1]).any(axis=0))
    return out


def test_a_pruned_channel_outputs_exactly_zero_after_its_batchnorm():
    from pipeline.keras_setup import keras

    train, val = _data()
    pruned, m = prune(_trained(), train, val, PruneConfig(method="groups", target_sparsity=0.5, epochs=2))
    chans = _pruned_channels(pruned, m["groups_pruned"])
    assert chans and all(len(c) for c in chans.values())
    for name, c in chans.items():
        bn = next(l for l in pruned.layers if type(l).__name__ == "BatchNormalization"
                  and l.input is pruned.get_layer(name).output)
        assert not bn.beta.numpy()[c].any() and not bn.moving_mean.numpy()[c].any()
        assert bn.beta.numpy().any()  # the kept channels keep their shift
        after_bn = keras().Model(pruned.input, bn.output).predict(val[0], verbose=0)
        assert not after_bn[..., c].any()
        assert after_bn[..., np.setdiff1d(np.arange(after_bn.shape[-1]), c)].any()


def test_a_pruned_channel_keeps_a_zero_bias_through_folding_clustering_and_int8():
    train, val = _data()
    pruned, m = prune(_trained(), train, val, PruneConfig(method="groups", target_sparsity=0.5, epochs=1))
    clustered, cm = cluster(pruned, train, val, ClusterConfig(clusters=4, per_channel=True, index_bits=2, epochs=1))
    chans = _pruned_channels(pruned, m["groups_pruned"])
    for name, c in chans.items():
        layer = clustered.get_layer(name)  # BatchNorm folded: the conv carries the bias
        assert not kernel_of(layer).numpy()[..., c].any() and not layer.bias.numpy()[c].any()
    schema, model = load_tflite(convert(clustered, train[0], ConvertConfig(representative_samples=16)))
    sg, names = model.subgraphs[0], enum_names(schema.BuiltinOperator)
    seen = 0
    for op in sg.operators:
        oc = model.operatorCodes[op.opcodeIndex]
        if names[max(oc.builtinCode, oc.deprecatedBuiltinCode)] != "CONV_2D":
            continue
        f = sg.tensors[op.inputs[1]]
        w = np.frombuffer(bytes(bytearray(model.buffers[f.buffer].data)), np.int8).reshape(f.shape)
        zero = np.flatnonzero(~w.reshape(w.shape[0], -1).any(axis=1))  # OHWI: output channels first
        if len(zero):
            b = sg.tensors[op.inputs[BIAS_INPUT["CONV_2D"]]]
            bias = np.frombuffer(bytes(bytearray(model.buffers[b.buffer].data)), np.int32)
            assert not bias[zero].any()  # the channel's int8 output is its zero point, exactly
            seen += 1
    assert seen == len(chans)


def test_the_shipped_recipe_prunes_groups_before_its_codebook():
    r = load_recipe("prune-groups-2bit")
    assert r.stages.index("prune") < r.stages.index("cluster") < r.stages.index("quantize")
    p, c = r.config("prune"), r.config("cluster")
    assert p.method == "groups" and p.target_sparsity == 0.5 and p.skip_layers == c.skip_layers
    assert c.index_bits == 2 and c.per_channel and c.fold_batchnorm
    assert load_recipe("prune-groups-2bit", {"prune": {"target_sparsity": 0.8}}).config("prune").target_sparsity == 0.8
