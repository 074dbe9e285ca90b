"""Weight clustering with tfmot (k-means), optionally after folding BatchNorm into the kernels.

Converting folds BatchNorm into conv weights, which multiplies the distinct values of a clustered
kernel (16 clusters become 44-63 values in the flatbuffer). Folding first keeps the clusters
all the way into the int8 flatbuffer. Proof afterwards: unique values per clustered kernel (per output
channel with ``per_channel``) <= clusters. With ``index_bits`` < 8 (codebook weights) only the Conv2D
kernels are clustered: they are the ones stored as codebooks.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.config import ClusterConfig
from pipeline.errors import PipelineError
from pipeline.stages.optimize.common import (evaluate_accuracy, fine_tune, fresh_copy, keras, kernel_of, kernel_stats,
                                      require_kernel_layers, tfmot)

# tfmot clusters Conv2D and Dense kernels; DepthwiseConv2D is never clustered.
CLUSTERABLE = ("Conv2D", "Dense")
CODEBOOK_LAYERS = ("Conv2D",)  # the layers whose int8 filters pipeline/tflite/codebook.py encodes
FINE_TUNE_LR = 3e-4
_INIT = {
    "kmeans_plus_plus": "KMEANS_PLUS_PLUS",
    "linear": "LINEAR",
    "density": "DENSITY_BASED",
    "random": "RANDOM",
}


def fold_batchnorm(model):
    """A copy of a single-chain model with every Conv/DepthwiseConv + BatchNorm pair folded into one
    layer with a bias. Other graph shapes are refused with a clear error."""
    k = keras()
    layers = model.layers
    conf = model.get_config()
    for prev, spec in zip(conf.get("layers", []), conf.get("layers", [])[1:]):
        nodes = spec.get("inbound_nodes") or []
        sources = [t[0] for t in nodes[0]] if len(nodes) == 1 else []
        if len(sources) != 1 or sources[0] != prev["name"]:
            raise PipelineError(
                f"cannot fold BatchNorm: layer {spec['name']} is not part of a single chain",
                hint="set cluster.fold_batchnorm = false for models with branches",
            )
    x = inputs = k.Input(model.input_shape[1:], name=layers[0].name)
    i = 1
    while i < len(layers):
        layer = layers[i]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        kind = type(layer).__name__
        if kind in ("Conv2D", "DepthwiseConv2D") and type(nxt).__name__ == "BatchNormalization":
            cfg = layer.get_config()
            cfg["use_bias"] = True
            cfg["name"] = layer.name
            new = type(layer).from_config(cfg)
            x = new(x)
            w = kernel_of(layer).numpy()
            b = layer.bias.numpy() if layer.use_bias else np.zeros(w.shape[-1] if kind == "Conv2D" else w.shape[2] * w.shape[3], np.float32)
            gamma, beta, mean, var = (v.numpy() for v in (nxt.gamma, nxt.beta, nxt.moving_mean, nxt.moving_variance))
            scale = gamma / np.sqrt(var + nxt.epsilon)
            if kind == "Conv2D":
                w_f = w * scale.reshape(1, 1, 1, -1)
            else:  # depthwise kernel: (kh, kw, in, multiplier); channel = in * multiplier
                w_f = w * scale.reshape(1, 1, w.shape[2], w.shape[3])
            new.set_weights([w_f.astype(np.float32), (beta + (b - mean) * scale).astype(np.float32)])
            i += 2
            continue
        new = type(layer).from_config(layer.get_config())
        x = new(x)
        new.set_weights(layer.get_weights())
        i += 1
    return k.Model(inputs, x, name=model.name)


def channel_unique_max(layer) -> int:
    """The most distinct values in one output channel (the last kernel axis) of a layer's kernel."""
    w = np.asarray(kernel_of(layer).numpy())
    w = w.reshape(-1, w.shape[-1])
    return max(int(np.unique(w[:, c]).size) for c in range(w.shape[1]))


def cluster(model, train, val, cfg: ClusterConfig, *, batch_size: int = 32, seed: int = 0):
    """Return ``(clustered_model, metrics)``; ``model`` is not modified."""
    t = tfmot()
    k = keras()
    base = fold_batchnorm(model) if cfg.fold_batchnorm else fresh_copy(model)
    # Codebook weights (index_bits < 8) are CONV_2D filters only: clustering another kernel would cost
    # accuracy and save nothing on the device.
    targets = require_kernel_layers(base, CODEBOOK_LAYERS if cfg.index_bits < 8 else CLUSTERABLE, "clustered")
    unknown = sorted(set(cfg.skip_layers) - {l.name for l in base.layers})
    if unknown:
        raise PipelineError(f"cluster.skip_layers names no layer of the model: {', '.join(unknown)}",
                            hint="use the layer names of the model summary (`picotflm train` prints them)")
    targets = [l for l in targets if l.name not in cfg.skip_layers]
    for layer in targets:
        n = int(kernel_of(layer).shape.num_elements())
        if cfg.clusters > n:
            raise PipelineError(
                f"cluster.clusters = {cfg.clusters} is more than the {n} weights of layer {layer.name}",
                hint=f"use at most {n} clusters",
            )
    folded_acc = evaluate_accuracy(base, val) if cfg.fold_batchnorm else None
    zero_channels = {}  # output channels all zero (structured pruning), by layer
    for layer in targets:
        w = np.asarray(kernel_of(layer).numpy())
        zero = [int(c) for c in np.flatnonzero(~w.reshape(-1, w.shape[-1]).any(axis=0))]
        if zero:
            zero_channels[layer.name] = zero
    params = {
        "number_of_clusters": cfg.clusters,
        "cluster_centroids_init": getattr(t.clustering.keras.CentroidInitialization, _INIT[cfg.init]),
    }
    if cfg.preserve_sparsity:
        params["preserve_sparsity"] = True

    def wrap(layer):
        if layer in targets:
            extra = {"cluster_per_channel": True} if cfg.per_channel and type(layer).__name__ == "Conv2D" else {}
            return t.clustering.keras.cluster_weights(layer, **params, **extra)
        return layer

    wrapped = k.models.clone_model(base, clone_function=wrap)
    if wrapped is None:  # tfmot returns None for Keras 3 models
        raise PipelineError("tfmot could not cluster this model", hint="build it with tf_keras (Keras 2)")
    fine_tune(wrapped, train, val, epochs=cfg.epochs, learning_rate=FINE_TUNE_LR, batch_size=batch_size, seed=seed)
    clustered = t.clustering.keras.strip_clustering(wrapped)
    # Output channels that came in all zero (structured pruning) leave all zero: fine-tuning the
    # centroids moves them, and the codebook conv skips only zero groups. Verify measures the result.
    for layer in clustered.layers:
        if layer.name in zero_channels:
            var = kernel_of(layer)
            w = var.numpy()
            w[..., zero_channels[layer.name]] = 0
            var.assign(w)
    stats = kernel_stats(clustered)
    if cfg.per_channel:  # Conv2D kernels: the most values of any output channel
        per_ch = {l.name: channel_unique_max(l) for l in clustered.layers if type(l).__name__ == "Conv2D"}
        for r in stats:
            if r["layer"] in per_ch:
                r["unique_values_per_channel"] = per_ch[r["layer"]]
    names = {l.name for l in targets}
    over = [r for r in stats if r["layer"] in names
            and r.get("unique_values_per_channel", r["unique_values"]) > cfg.clusters]
    if over:
        names = ", ".join(f"{r['layer']} ({r['unique_values']})" for r in over)
        raise PipelineError(f"clustering left more than {cfg.clusters} values in: {names}", hint="this is a bug")
    metrics: dict[str, Any] = {
        "clusters": cfg.clusters,
        "init": cfg.init,
        "preserve_sparsity": cfg.preserve_sparsity,
        "fold_batchnorm": cfg.fold_batchnorm,
        "per_channel": cfg.per_channel,
        "index_bits": cfg.index_bits,
        "layers": stats,
        "zero_channels_kept": zero_channels,
        "not_clustered": [r["layer"] for r in stats if r["layer"] not in names],
        "keras_val_accuracy": evaluate_accuracy(clustered, val),
    }
    if folded_acc is not None:
        metrics["keras_val_accuracy_after_fold"] = folded_acc
    return clustered, metrics
