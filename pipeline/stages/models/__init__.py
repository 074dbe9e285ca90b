"""Models: a name -> builder registry, a user's ``.keras`` file in place of a builder, and MAC counting.

``build_model(cfg, num_classes, input_shape)`` is the stage function. ``cfg.name`` is either a
registered name (``micropizzanet``) or the path of a ``.keras`` / ``.h5`` file, which is loaded and
checked against the data (input shape, number of classes).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from pipeline.config import ModelConfig
from pipeline.errors import PipelineError
from pipeline.stages.models.micropizzanet import build_micropizzanet

MODELS: dict[str, Callable[..., Any]] = {"micropizzanet": build_micropizzanet}
MODEL_FILE_SUFFIXES = (".keras", ".h5")


def is_model_path(name: str) -> bool:
    """Whether ``model.name`` means a file rather than a registered builder."""
    return name not in MODELS and (name.endswith(MODEL_FILE_SUFFIXES) or "/" in name or "\\" in name
                                   or Path(name).is_file())


def build_model(cfg: ModelConfig, num_classes: int, input_shape: tuple[int, int, int]):
    """A fresh model from the registry, or the user's model file checked against the data."""
    if is_model_path(cfg.name):
        return load_user_model(cfg.name, num_classes, input_shape)
    builder = MODELS.get(cfg.name)
    if builder is None:
        raise PipelineError(
            f"unknown model {cfg.name!r}",
            hint="registered models: " + ", ".join(sorted(MODELS)) + "; or give the path of a .keras file",
        )
    return builder(num_classes=num_classes, input_shape=tuple(input_shape), seed=cfg.seed)


def load_user_model(path: str | Path, num_classes: int, input_shape: tuple[int, int, int]):
    """Load a user's Keras model file and check it fits the data."""
    from pipeline.keras_setup import keras

    p = Path(path)
    if not p.exists():
        raise PipelineError(f"model file {p} does not exist", hint="check model.name (a registered name or a .keras path)")
    if not p.is_file():
        raise PipelineError(f"model file {p} is not a file", hint="give the path of a .keras file")
    try:
        model = keras().models.load_model(str(p), compile=False)
    except Exception as e:  # Keras raises many types for a bad file (OSError, ValueError, BadZipFile, ...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PipelineError(
            f"{p} is not a Keras model file ({first[:160]})",
            hint="save the model with tf_keras `model.save('model.keras')` (Keras 2 format)",
        ) from None
    check_model_fits(model, num_classes, input_shape, what=str(p))
    return model


def check_model_fits(model: Any, num_classes: int, input_shape: tuple[int, int, int], what: str = "the model") -> None:
    in_shape = model.input_shape
    if isinstance(in_shape, list):
        raise PipelineError(f"{what} has {len(in_shape)} inputs; picotflm needs one image input",
                            hint="use a model with a single (height, width, 3) input")
    if tuple(in_shape[1:]) != tuple(input_shape):
        raise PipelineError(
            f"{what} expects input {tuple(in_shape[1:])}, but the images are {tuple(input_shape)}",
            hint="set data.image_size to the model's input size, or use a model for the data's size",
        )
    out_shape = model.output_shape
    if isinstance(out_shape, list) or len(out_shape) != 2 or out_shape[-1] != num_classes:
        raise PipelineError(
            f"{what} has output shape {out_shape}, but there are {num_classes} classes",
            hint="the model's last layer must be Dense(number of classes); check data.classes",
        )


def count_params(model: Any) -> int:
    return int(model.count_params())


def count_macs(model: Any) -> int:
    """Multiply-accumulates of one inference: Conv2D, DepthwiseConv2D and Dense layers."""
    from pipeline.keras_setup import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras().Model):
            total += count_macs(layer)  # a nested model
            continue
        inner = getattr(layer, "layer", layer)  # tfmot wrappers keep the real layer in .layer
        kind = type(inner).__name__
        out = layer.output_shape
        if isinstance(out, list):
            continue
        if kind == "DepthwiseConv2D":
            kh, kw = inner.kernel_size
            # output: (batch, h, w, in_channels * depth_multiplier)
            total += int(out[1]) * int(out[2]) * int(out[3]) * kh * kw
        elif kind in ("Conv2D",):
            kh, kw = inner.kernel_size
            cin = int(layer.input_shape[-1]) // int(getattr(inner, "groups", 1) or 1)
            total += int(out[1]) * int(out[2]) * int(out[3]) * kh * kw * cin
        elif kind == "Dense":
            n_in = int(layer.input_shape[-1])
            lead = 1
            for dim in out[1:-1]:
                lead *= int(dim)
            total += lead * n_in * int(out[-1])
    return total


__all__ = ["MODELS", "build_model", "build_micropizzanet", "load_user_model", "check_model_fits", "count_macs",
           "count_params", "is_model_path"]
