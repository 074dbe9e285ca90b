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
