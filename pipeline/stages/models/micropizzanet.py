"""MicroPizzaNet: a 6-class CNN for 48x48 RGB frames, 177,024 MACs.

The layer structure is fixed (the firmware baseline and the measured cycles/MAC depend on it):

    Input 48x48x3
    conv0  Conv2D(8, 3, strides=2, same, no bias)          + bn0 + relu0
    dw1    DepthwiseConv2D(3, strides=2, same, no bias)    + bn1 + relu1
    pw2    Conv2D(16, 1, no bias)                          + bn2 + relu2
    dw3    DepthwiseConv2D(3, strides=2, same, no bias)    + bn3 + relu3
    pw4    Conv2D(32, 1, no bias)                          + bn4 + relu4
    gap    GlobalAveragePooling2D
    classifier  Dense(num_classes, softmax)

Input is float32 in [0, 1] (images / 255).
"""
from __future__ import annotations

from pipeline.keras_setup import keras

# layer name -> Keras class, known without building the model (recipe checks of quantize.layer_bits);
# tests/stages/test_mixed_precision.py checks it against the built model
LAYER_TYPES: dict[str, str] = {
    "input": "InputLayer",
    "conv0": "Conv2D", "bn0": "BatchNormalization", "relu0": "ReLU",
    "dw1": "DepthwiseConv2D", "bn1": "BatchNormalization", "relu1": "ReLU",
    "pw2": "Conv2D", "bn2": "BatchNormalization", "relu2": "ReLU",
    "dw3": "DepthwiseConv2D", "bn3": "BatchNormalization", "relu3": "ReLU",
    "pw4": "Conv2D", "bn4": "BatchNormalization", "relu4": "ReLU",
    "gap": "GlobalAveragePooling2D",
    "classifier": "Dense",
}


def build_micropizzanet(num_classes: int = 6, input_shape: tuple[int, int, int] = (48, 48, 3), seed: int = 0):
    k = keras()
    k.utils.set_random_seed(int(seed))
    L = k.layers
    inputs = L.Input(shape=tuple(input_shape), name="input")
    x = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="conv0")(inputs)
    x = L.BatchNormalization(name="bn0")(x)
    x = L.ReLU(name="relu0")(x)
    x = L.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False, name="dw1")(x)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(name="relu1")(x)
    x = L.Conv2D(16, 1, use_bias=False, name="pw2")(x)
    x = L.BatchNormalization(name="bn2")(x)
    x = L.ReLU(name="relu2")(x)
    x = L.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False, name="dw3")(x)
    x = L.BatchNormalization(name="bn3")(x)
    x = L.ReLU(name="relu3")(x)
    x = L.Conv2D(32, 1, use_bias=False, name="pw4")(x)
    x = L.BatchNormalization(name="bn4")(x)
    x = L.ReLU(name="relu4")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(num_classes, activation="softmax", name="classifier")(x)
    return k.Model(inputs, outputs, name="micropizzanet")
