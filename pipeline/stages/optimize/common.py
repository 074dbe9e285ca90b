"""What the compression stages share: cloning (tfmot mutates layers), fine-tuning, weight stats."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from pipeline.errors import PipelineError


def keras():
    """``tf_keras`` (Keras 2), the only Keras tfmot works with (set up once, in keras_setup)."""
    from pipeline.keras_setup import keras as setup_keras

    return setup_keras()


def tfmot():
    keras()
    import tensorflow_model_optimization as tfmot_mod

    return tfmot_mod


def fresh_copy(model):
    """An independent copy with the same weights: every tfmot stage gets one of these."""
    k = keras()
    clone = k.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def fine_tune(model, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], *, epochs: int,
              learning_rate: float, batch_size: int = 32, callbacks: Sequence[Any] = (), seed: int = 0,
              lr_schedule: str = "constant") -> dict:
    """Compile and fit ``model`` in place; return the last epoch's metrics. ``lr_schedule="cosine"``
    decays the learning rate to 0 over the ``epochs``."""
    from pipeline.keras_setup import seed_everything

    k = keras()
    seed_everything(seed)  # seeds and deterministic ops: the same result in any process
    lr: Any = learning_rate
    if lr_schedule == "cosine":
        steps = epochs * -(-len(train[0]) // batch_size)
        lr = k.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, steps))
    elif lr_schedule != "constant":
        raise ValueError(f"lr_schedule must be 'constant' or 'cosine', not {lr_schedule!r}")
    model.compile(optimizer=k.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    hist = model.fit(train[0], train[1], validation_data=val, epochs=epochs, batch_size=batch_size,
                     callbacks=list(callbacks), verbose=0, shuffle=True)
    return {k_: float(v[-1]) for k_, v in hist.history.items()}


def evaluate_accuracy(model, data: tuple[np.ndarray, np.ndarray]) -> float:
    pred = model.predict(data[0], verbose=0, batch_size=256)
    return float(np.mean(np.argmax(pred, axis=1) == np.asarray(data[1]).astype(int)))


KERNEL_LAYERS = ("Conv2D", "DepthwiseConv2D", "Dense")


def kernel_of(layer):
    """The kernel weight of a conv/dense layer (DepthwiseConv2D calls it depthwise_kernel)."""
    for w in layer.weights:
        name = w.name.split("/")[-1]
        if name.startswith("kernel") or name.startswith("depthwise_kernel"):
            return w
    return None


def kernel_stats(model) -> list[dict[str, Any]]:
    """Per layer with a kernel: name, type, weights, zeros (sparsity), unique values."""
    rows = []
    for layer in model.layers:
        if type(layer).__name__ not in KERNEL_LAYERS:
            continue
        w = kernel_of(layer)
        if w is None:
            continue
        v = np.asarray(w.numpy())
        rows.append({"layer": layer.name, "type": type(layer).__name__, "weights": int(v.size),
                     "sparsity": float(np.mean(v == 0)), "unique_values": int(np.unique(v).size)})
    return rows


def require_kernel_layers(model, types: Sequence[str], what: str) -> list:
    layers = [l for l in model.layers if type(l).__name__ in types and kernel_of(l) is not None]
    if not layers:
        raise PipelineError(f"the model has no layer that can be {what} (looked for {', '.join(types)})",
                            hint="use a model with Conv2D or Dense layers")
    return layers
