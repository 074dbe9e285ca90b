"""Small models shared by tests: built once per test process (TensorFlow is slow to import)."""
from __future__ import annotations

import functools
import os

import numpy as np

CLASSES = ["basic", "burnt", "combined", "mixed", "progression", "segment"]


def _keras():
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tf_keras

    return tf_keras


def micropizzanet_like(seed: int = 0):
    """MicroPizzaNet's layer structure with random weights (no training needed for these tests)."""
    keras = _keras()
    keras.utils.set_random_seed(seed)
    L = keras.layers
    i = L.Input((48, 48, 3))
    x = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(i)
    x = L.ReLU()(L.BatchNormalization()(x))
    x = L.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False)(x)
    x = L.ReLU()(L.BatchNormalization()(x))
    x = L.Conv2D(16, 1, use_bias=False)(x)
    x = L.ReLU()(L.BatchNormalization()(x))
    x = L.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False)(x)
    x = L.ReLU()(L.BatchNormalization()(x))
    x = L.Conv2D(32, 1, use_bias=False)(x)
    x = L.ReLU()(L.BatchNormalization()(x))
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(len(CLASSES), activation="softmax")(x)
    return keras.Model(i, out)


def images(n: int, seed: int = 1) -> np.ndarray:
    """Seeded uint8 'images' with some structure (smooth gradients plus noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:48, 0:48] / 47.0
    base = np.stack([yy, xx, (yy + xx) / 2], axis=-1)
    imgs = [np.clip((base * rng.random(3) + rng.normal(0, 0.15, (48, 48, 3))) * 255, 0, 255) for _ in range(n)]
    return np.asarray(imgs, dtype=np.uint8)


@functools.lru_cache(maxsize=None)
def int8_tflite(slim: bool = True) -> bytes:
    from pipeline.config import ConvertConfig
    from pipeline.stages.convert import convert

    model = micropizzanet_like()
    rep = images(32).astype(np.float32) / 255.0
    return convert(model, rep, ConvertConfig(representative_samples=32, slim=slim))


@functools.lru_cache(maxsize=None)
def float_tflite() -> bytes:
    from pipeline.stages.convert import convert_float

    return convert_float(micropizzanet_like())


def render_with_golden(data: bytes, out, cfg=None, *, golden: int = 4, host_arena_bytes: int | None = None):
    """The firmware sources of ``data`` rendered into ``out``, with ``golden`` of ``images`` as the
    golden inputs and host TFLM's outputs for them (``host_arena_bytes`` None: the host minimum).
    Returns the model's ModelInfo."""
    from pipeline.config import RenderConfig
    from pipeline.tflite.reader import inspect_tflite
    from pipeline.codegen.render import render
    from pipeline.stages.verify import images_to_input, minimal_arena, run_tflm

    info = inspect_tflite(data)
    x = images_to_input(images(golden), info)
    y, _ = run_tflm(data, x, 64 * 1024)
    arena = minimal_arena(data, info) if host_arena_bytes is None else host_arena_bytes
    render(data, cfg or RenderConfig(), out, golden_inputs=x, golden_outputs=y, golden_labels=list(range(golden)),
           class_names=CLASSES, host_arena_bytes=arena, provenance={"tool_version": "test"})
    return info


# ------------------------------------------------------- models nobody here trained (picotflm deploy)
def _convert_int8(model, shape, *, float_io: bool = False, n: int = 16) -> bytes:
    """Post-training full-integer conversion of a Keras model, int8 I/O unless ``float_io``."""
    import tensorflow as tf

    rng = np.random.default_rng(0)

    def rep():
        for _ in range(n):
            yield [rng.random((1,) + tuple(shape), dtype=np.float32)]

    c = tf.lite.TFLiteConverter.from_keras_model(model)
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.representative_dataset = rep
    c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if not float_io:
        c.inference_input_type = tf.int8
        c.inference_output_type = tf.int8
    return c.convert()


@functools.lru_cache(maxsize=None)
def pool_add_int8_tflite() -> bytes:
    """int8, input 32x32x1, with AVERAGE_POOL_2D, RESHAPE and ADD besides CONV_2D and FULLY_CONNECTED."""
    keras = _keras()
    keras.utils.set_random_seed(3)
    L = keras.layers
    i = L.Input((32, 32, 1))
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(i)
    a = L.Conv2D(8, 1, activation="relu")(x)
    x = L.Add()([x, a])
    x = L.AveragePooling2D(4)(x)
    x = L.Reshape((4 * 4 * 8,))(x)
    out = L.Dense(3)(x)
    return _convert_int8(keras.Model(i, out), (32, 32, 1))


@functools.lru_cache(maxsize=None)
def add_then_depthwise_int8_tflite() -> bytes:
    """int8, input 16x16x3: CONV_2D, ADD (TFLM's kernel), a padded 3x3 DEPTHWISE_CONV_2D, MEAN,
    FULLY_CONNECTED and SOFTMAX."""
    keras = _keras()
    keras.utils.set_random_seed(4)
    L = keras.layers
    i = L.Input((16, 16, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu")(i)
    x = L.Add()([x, L.Conv2D(8, 1)(x)])
    x = L.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(4, activation="softmax")(x)
    return _convert_int8(keras.Model(i, out), (16, 16, 3))


@functools.lru_cache(maxsize=None)
def float_io_tflite() -> bytes:
    """A float32 model (float input, weights and output): Conv2D, pooling, Dense."""
    import tensorflow as tf

    keras = _keras()
    keras.utils.set_random_seed(4)
    L = keras.layers
    i = L.Input((12, 12, 2))
    x = L.Conv2D(4, 3, activation="relu")(i)
    x = L.MaxPooling2D(2)(x)
    x = L.Flatten()(x)
    out = L.Dense(2)(x)
    return tf.lite.TFLiteConverter.from_keras_model(keras.Model(i, out)).convert()


@functools.lru_cache(maxsize=None)
def reverse_tflite() -> bytes:
    """A float model with REVERSE_V2, an operator TFLM does not have."""
    import tensorflow as tf

    keras = _keras()
    L = keras.layers
    i = L.Input((8,))
    x = L.Lambda(lambda t: tf.reverse(t, axis=[1]))(i)
    out = L.Dense(2)(x)
    return tf.lite.TFLiteConverter.from_keras_model(keras.Model(i, out)).convert()


@functools.lru_cache(maxsize=None)
def dilated_int8_tflite() -> bytes:
    """A Keras dilated convolution, int8: the converter writes SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND around
    the CONV_2D, and host TFLM computes it differently from TFLite."""
    keras = _keras()
    keras.utils.set_random_seed(0)
    L = keras.layers
    i = L.Input((20, 20, 3))
    x = L.Conv2D(4, 3, dilation_rate=2, padding="valid")(i)
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(3)(x)
    return _convert_int8(keras.Model(i, out), (20, 20, 3))


@functools.lru_cache(maxsize=None)
def big_activation_int8_tflite() -> bytes:
    """int8, input 128x128x3 and a 32-channel convolution: 512 KB of activations, more than the RP2040's SRAM."""
    keras = _keras()
    keras.utils.set_random_seed(5)
    L = keras.layers
    i = L.Input((128, 128, 3))
    x = L.Conv2D(32, 3, padding="same")(i)
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(2)(x)
    return _convert_int8(keras.Model(i, out), (128, 128, 3), n=4)
