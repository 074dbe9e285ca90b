"""Quantization: post-training (nothing to do here, the convert stage calibrates) or
quantization-aware training, with its cluster-/prune-preserving forms and real 4-bit weights.

QAT models are converted in the same process (a CQAT model saved as .h5 does not reload under quantize_scope):
``quantize`` returns the trained model and the runner hands it straight to ``convert(qat=True)``.

Mixed precision (``quantize.layer_bits``): every layer takes the weight bits of its name, or
``weight_bits``; the scheme is tfmot's n-bit scheme with a registry that hands each layer the n-bit
quantize config of its own bit width (the layout transforms, which fold BatchNorm, stay those of the
n-bit scheme: annotating layers with custom configs instead would switch that folding off).
"""
from __future__ import annotations

from typing import Any, Mapping

from pipeline.config import QuantizeConfig
from pipeline.errors import PipelineError
from pipeline.stages.optimize.common import evaluate_accuracy, fine_tune, fresh_copy, tfmot

# Keras layers whose weights TFLM runs as packed INT4: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED
INT4_LAYER_TYPES = {"Conv2D": "CONV_2D", "DepthwiseConv2D": "DEPTHWISE_CONV_2D", "Dense": "FULLY_CONNECTED"}
_WEIGHTED_LAYER_TYPES = set(INT4_LAYER_TYPES) | {"Conv1D", "Conv2DTranspose", "SeparableConv2D", "SeparableConv1D"}


def check_layer_bits(layer_types: Mapping[str, str], cfg: QuantizeConfig) -> None:
    """Refuse ``cfg.layer_bits`` names that are not weighted layers of the model (``layer_types``: name ->
    Keras class name) and 4-bit weights on layers TFLM has no INT4 kernel for."""
    weighted = [n for n, t in layer_types.items() if t in _WEIGHTED_LAYER_TYPES]
    for name, bits in cfg.layer_bits.items():
        if name not in layer_types:
            raise PipelineError(f"quantize.layer_bits names layer {name!r}, which the model does not have",
                                hint="layers with weights: " + ", ".join(weighted))
        kind = layer_types[name]
        if kind not in _WEIGHTED_LAYER_TYPES:
            raise PipelineError(f"quantize.layer_bits names layer {name!r} ({kind}), which has no weights to quantize",
                                hint="layers with weights: " + ", ".join(weighted))
        if bits == 4 and kind not in INT4_LAYER_TYPES:
            raise PipelineError(
                f"quantize.layer_bits gives layer {name!r} ({kind}) 4-bit weights, which TFLM cannot run",
                hint="TFLM takes INT4 weights only for " + ", ".join(INT4_LAYER_TYPES.values())
                + " (Keras " + ", ".join(INT4_LAYER_TYPES) + "); give it 8")
    if cfg.weight_bits == 4:
        odd = [n for n in weighted if n not in cfg.layer_bits and layer_types[n] not in INT4_LAYER_TYPES]
        if odd:
            raise PipelineError(
                f"quantize.weight_bits = 4 would give layer(s) {', '.join(odd)} 4-bit weights, which TFLM cannot run",
                hint="set those layers to 8 in quantize.layer_bits")


def layer_bits_of(model, cfg: QuantizeConfig) -> dict[str, int]:
    """Weight bits per weighted layer of ``model`` (checked against the model first)."""
    types = {l.name: type(l).__name__ for l in model.layers}
    check_layer_bits(types, cfg)
    return {n: cfg.layer_bits.get(n, cfg.weight_bits) for n, t in types.items() if t in _WEIGHTED_LAYER_TYPES}


def _mixed_scheme(bits_by_name: Mapping[str, int], default_bits: int):
    from tensorflow_model_optimization.python.core.quantization.keras import quantize_registry
    from tensorflow_model_optimization.python.core.quantization.keras.experimental.default_n_bit import (
        default_n_bit_quantize_registry as nreg,
        default_n_bit_quantize_scheme as nbit,
    )

    class PerLayerRegistry(quantize_registry.QuantizeRegistry):
        def _reg(self, layer):
            # a fresh registry per call: DefaultNBitQuantizeRegistry.__init__ writes its bit width into
            # class-level _QuantizeInfo objects (Dense, ...) shared by every instance, so two live
            # registries of different widths would give those layers the width of the last one built
            return nreg.DefaultNBitQuantizeRegistry(num_bits_weight=bits_by_name.get(layer.name, default_bits),
                                                    num_bits_activation=8)

        def supports(self, layer):
            return self._reg(layer).supports(layer)

        def get_quantize_config(self, layer):
            return self._reg(layer).get_quantize_config(layer)

    class PerLayerScheme(nbit.DefaultNBitQuantizeScheme):
        def get_quantize_registry(self):
            return PerLayerRegistry()

    return PerLayerScheme(num_bits_weight=default_bits, num_bits_activation=8)

def quantize(model, train, val, cfg: QuantizeConfig, *, batch_size: int = 32, seed: int = 0):
    """Return ``(model, metrics, qat)``: the model to convert and whether it carries QAT ranges."""
    if cfg.method == "ptq":
        return model, {"method": "ptq", "weight_bits": 8, "note": "post-training: calibrated by the convert stage"}, False
    t = tfmot()
    q = t.quantization.keras
    base = fresh_copy(model)
    bits: dict[str, int] | None = None
    if cfg.layer_bits:
        bits = layer_bits_of(base, cfg)  # before any training: a bad name or mix stops here
        scheme = _mixed_scheme(bits, cfg.weight_bits)
    elif cfg.weight_bits == 4:
        from tensorflow_model_optimization.python.core.quantization.keras.experimental.default_n_bit import (
            default_n_bit_quantize_scheme as nbit,
        )

        scheme = nbit.DefaultNBitQuantizeScheme(num_bits_weight=4, num_bits_activation=8)
    elif cfg.method == "qat":
        scheme = None
    else:
        combine = t.experimental.combine
        scheme = {
            "cqat": lambda: combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=False),
            "pqat": lambda: combine.Default8BitPrunePreserveQuantizeScheme(),
            "pcqat": lambda: combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=True),
        }[cfg.method]()
    annotated = q.quantize_annotate_model(base)
    qat_model = q.quantize_apply(annotated, scheme) if scheme is not None else q.quantize_apply(annotated)
    last = fine_tune(qat_model, train, val, epochs=cfg.epochs, learning_rate=cfg.learning_rate, batch_size=batch_size,
                     seed=seed, lr_schedule=cfg.lr_schedule)
    metrics: dict[str, Any] = {
        "method": cfg.method,
        "weight_bits": cfg.weight_bits,
        "keras_val_accuracy": evaluate_accuracy(qat_model, val),
        "last_epoch": last,
    }
    if bits is not None:
        metrics["layer_bits"] = bits
    return qat_model, metrics, True
