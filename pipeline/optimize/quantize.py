"""Quantization: post-training (nothing to do here, the convert stage calibrates) or
quantization-aware training, with its cluster-/prune-preserving forms and real 4-bit weights.

QAT models are converted in the same process (a CQAT model saved as .h5 does not reload, FINDINGS):
``quantize`` returns the trained model and the runner hands it straight to ``convert(qat=True)``.
"""
from __future__ import annotations

from typing import Any

from pipeline.config import QuantizeConfig
from pipeline.optimize.common import evaluate_accuracy, fine_tune, fresh_copy, tfmot

def quantize(model, train, val, cfg: QuantizeConfig, *, batch_size: int = 32, seed: int = 0):
    """Return ``(model, metrics, qat)``: the model to convert and whether it carries QAT ranges."""
    if cfg.method == "ptq":
        return model, {"method": "ptq", "weight_bits": 8, "note": "post-training: calibrated by the convert stage"}, False
    t = tfmot()
    q = t.quantization.keras
    base = fresh_copy(model)
    if cfg.weight_bits == 4:
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
    return qat_model, metrics, True
