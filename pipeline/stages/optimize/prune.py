"""Pruning: tfmot magnitude pruning with a polynomial schedule, or boundary pruning.

Boundary pruning zeroes, per layer, every weight with ``|w| < tau * max|W|`` and keeps that mask
during fine-tuning. Both prove their property afterwards: measured sparsity per layer.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.config import PruneConfig
from pipeline.errors import PipelineError
from pipeline.stages.optimize.common import (evaluate_accuracy, fine_tune, fresh_copy, keras, kernel_of, kernel_stats,
                                      require_kernel_layers, tfmot)

# tfmot prunes Conv2D and Dense; its registry maps DepthwiseConv2D to no weights.
TFMOT_PRUNABLE = ("Conv2D", "Dense")
BOUNDARY_PRUNABLE = ("Conv2D", "DepthwiseConv2D", "Dense")
FINE_TUNE_LR = 5e-4


def prune(model, train, val, cfg: PruneConfig, *, batch_size: int = 32, seed: int = 0):
    """Return ``(pruned_model, metrics)``; ``model`` is not modified."""
    if cfg.method == "magnitude":
        pruned = _magnitude(model, train, val, cfg, batch_size, seed)
        layers = TFMOT_PRUNABLE
        target = cfg.target_sparsity
    elif cfg.method == "groups":
        pruned, masks = _groups(model, train, val, cfg, batch_size, seed)
        layers = ("Conv2D",)
        target = None
    else:
        pruned, masks = _boundary(model, train, val, cfg, batch_size, seed)
        layers = BOUNDARY_PRUNABLE
        target = None
    stats = kernel_stats(pruned)
    pruned_rows = [r for r in stats if r["type"] in layers and r["layer"] not in cfg.skip_layers]
    total = sum(r["weights"] for r in pruned_rows)
    zeros = sum(r["weights"] * r["sparsity"] for r in pruned_rows)
    metrics: dict[str, Any] = {
        "method": cfg.method,
        "layers": stats,
        "sparsity_pruned_layers": zeros / total if total else 0.0,
        "keras_val_accuracy": evaluate_accuracy(pruned, val),
    }
    if target is not None:
        metrics["target_sparsity"] = target
        # Proof: every tfmot-pruned layer reached the target (rounding allows one weight less).
        short = [r for r in pruned_rows if r["sparsity"] + 1.0 / r["weights"] < target]
        if short:
            names = ", ".join(f"{r['layer']} {r['sparsity']:.1%}" for r in short)
            raise PipelineError(
                f"pruning did not reach the target sparsity {target:.0%}: {names}",
                hint="raise prune.epochs or lower prune.frequency so the schedule completes",
            )
    elif cfg.method == "groups":
        metrics["target_sparsity"] = cfg.target_sparsity
        metrics["groups_pruned"] = masks
    else:
        metrics["tau"] = cfg.tau
        metrics["mask_kept"] = masks
    return pruned, metrics


def _magnitude(model, train, val, cfg: PruneConfig, batch_size: int, seed: int):
    t = tfmot()
    require_kernel_layers(model, TFMOT_PRUNABLE, "pruned by tfmot")
    steps_per_epoch = int(np.ceil(len(train[0]) / batch_size))
    total = steps_per_epoch * cfg.epochs
    end_step = max(1, int(total * 0.7))
    if cfg.frequency > end_step:
        raise PipelineError(
            f"prune.frequency = {cfg.frequency} is larger than the {end_step} pruning steps of this run: "
            "the model would train with 0 % zeros",
            hint="lower prune.frequency or raise prune.epochs",
        )
    schedule = t.sparsity.keras.PolynomialDecay(initial_sparsity=0.0, final_sparsity=cfg.target_sparsity,
                                                begin_step=0, end_step=end_step, frequency=cfg.frequency)
    k = keras()

    def wrap(layer):
        if type(layer).__name__ in TFMOT_PRUNABLE:
            return t.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer

    # The wrappers take the copy's layers (and their weights) as they are; the copy is thrown away.
    wrapped = k.models.clone_model(fresh_copy(model), clone_function=wrap)
    fine_tune(wrapped, train, val, epochs=cfg.epochs, learning_rate=FINE_TUNE_LR, batch_size=batch_size,
              callbacks=[t.sparsity.keras.UpdatePruningStep()], seed=seed)
    return t.sparsity.keras.strip_pruning(wrapped)


class _KeepMasks:
    """A Keras callback re-applying the boundary masks after every training batch."""

    def __new__(cls, masks):
        k = keras()

        class Cb(k.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                for var, mask in masks:
                    var.assign(var.numpy() * mask)

        return Cb()


def _boundary(model, train, val, cfg: PruneConfig, batch_size: int, seed: int):
    pruned = fresh_copy(model)
    layers = require_kernel_layers(pruned, BOUNDARY_PRUNABLE, "pruned")
    masks = []
    kept = {}
    for layer in layers:
        var = kernel_of(layer)
        w = var.numpy()
        peak = float(np.max(np.abs(w)))
        mask = (np.abs(w) >= cfg.tau * peak).astype(w.dtype)
        var.assign(w * mask)
        masks.append((var, mask))
        kept[layer.name] = float(mask.mean())
    fine_tune(pruned, train, val, epochs=cfg.epochs, learning_rate=FINE_TUNE_LR, batch_size=batch_size,
              callbacks=[_KeepMasks(masks)], seed=seed)
    for var, mask in masks:  # proof: the mask held through fine-tuning
        if np.any(var.numpy()[mask == 0] != 0):
            raise PipelineError("boundary pruning lost its mask during fine-tuning", hint="this is a bug")
    return pruned, kept


GROUP = 4  # output channels the conv kernels compute together (pk_conv_s8's groups)


def _groups(model, train, val, cfg: PruneConfig, batch_size: int, seed: int):
    """Whole groups of four output channels of each Conv2D kernel (but ``skip_layers``) set to zero, the
    groups of smallest L2 norm first, round(target_sparsity x groups) of them; fine-tuned with the zeros
    kept. A layer with fewer than four output channels, or leftovers after its last group, keeps them.

    A pruned channel outputs exactly zero, not a constant: its bias, and the shift (beta) and moving
    mean of a BatchNormalization right after the conv, are zeroed and kept zero too. A constant would
    be a tiny value that int8 rounds to a whole step, and fine-tuning lets later layers lean on it with
    large weights, so that one rounding moved the int8 model's accuracy by tens of points."""
    pruned = fresh_copy(model)
    unknown = sorted(set(cfg.skip_layers) - {l.name for l in pruned.layers})
    if unknown:
        raise PipelineError(f"prune.skip_layers names no layer of the model: {', '.join(unknown)}",
                            hint="use the layer names of the model summary")
    layers = [l for l in require_kernel_layers(pruned, ("Conv2D",), "pruned by groups") if l.name not in cfg.skip_layers]
    masks, pruned_groups = [], {}
    for layer in layers:
        var = kernel_of(layer)
        w = var.numpy()  # (kh, kw, in, out)
        groups = w.shape[-1] // GROUP
        norms = [float(np.sum(w[..., GROUP * g:GROUP * g + GROUP] ** 2)) for g in range(groups)]
        drop = sorted(np.argsort(norms, kind="stable")[: int(round(cfg.target_sparsity * groups))].tolist())
        mask = np.ones_like(w)
        for g in drop:
            mask[..., GROUP * g:GROUP * g + GROUP] = 0
        var.assign(w * mask)
        masks.append((var, mask))
        keep = mask.reshape(-1, w.shape[-1])[0]  # per output channel: 1 kept, 0 pruned
        for v in _channel_shifts(pruned, layer):
            v.assign(v.numpy() * keep)
            masks.append((v, keep))
        pruned_groups[layer.name] = drop
    fine_tune(pruned, train, val, epochs=cfg.epochs, learning_rate=FINE_TUNE_LR, batch_size=batch_size,
              callbacks=[_KeepMasks(masks)], seed=seed)
    for var, mask in masks:  # proof: the pruned groups (weights, biases, BatchNorm shifts) are still zero
        if np.any(var.numpy()[mask == 0] != 0):
            raise PipelineError("group pruning lost its zeros during fine-tuning", hint="this is a bug")
    return pruned, pruned_groups


def _channel_shifts(model, layer) -> list:
    """What adds a per-output-channel constant to ``layer``'s output: its bias, and the beta and
    moving mean of a BatchNormalization that reads only that output."""
    out = [layer.bias] if getattr(layer, "use_bias", False) else []
    for bn in model.layers:
        if type(bn).__name__ != "BatchNormalization":
            continue
        try:
            reads = bn.input is layer.output
        except (AttributeError, ValueError):  # a layer without (or with several) inbound nodes
            reads = False
        if reads:
            out += [v for v in (bn.beta, bn.moving_mean) if v is not None]
    return out
