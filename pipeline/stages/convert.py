"""Keras -> ``.tflite`` bytes: full-integer int8 (post-training or from a QAT model) and float32."""
from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np

from pipeline.config import ConvertConfig
from pipeline.errors import PipelineError
from pipeline.tflite.slim import slim


def convert(model, representative: np.ndarray, cfg: ConvertConfig, *, qat: bool = False) -> bytes:
    """Full-integer int8 ``.tflite`` (int8 input and output) of a Keras model.

    ``representative`` is float input data (post-training quantization calibrates on its first
    ``cfg.representative_samples`` rows). A QAT model (``qat=True``) carries its own ranges:
    only the int8 input/output types are set (TFLITE_BUILTINS_INT8 would demand calibration data).
    Returns the flatbuffer, slimmed if ``cfg.slim``.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if not qat:
        rep = np.asarray(representative[: cfg.representative_samples], dtype=np.float32)

        def gen() -> Iterable[list[np.ndarray]]:
            for row in rep:
                yield [row[None, ...]]

        converter.representative_dataset = gen
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    data = bytes(_quiet(converter.convert))
    return slim(data) if cfg.slim else data


def convert_float(model) -> bytes:
    """Float32 ``.tflite`` of the same model, for the size comparison only."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    return bytes(_quiet(converter.convert))


def _quiet(fn: Callable[[], Any]) -> Any:
    """TFLiteConverter prints pages of MLIR logs on fd 2; keep them out of the user's terminal."""
    import os
    import tempfile

    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            return fn()
        except Exception as e:
            os.dup2(saved, 2)
            sink.seek(0)
            tail = sink.read()[-2000:].decode("utf-8", "replace")
            raise PipelineError(f"TFLiteConverter failed: {e}".splitlines()[0],
                                hint=f"converter log tail: {tail.strip().splitlines()[-1] if tail.strip() else 'empty'}") from None
        finally:
            os.dup2(saved, 2)
            os.close(saved)


# What ``slim`` may change, each one checked against what TFLM reads (tensorflow/lite/micro sources of the
