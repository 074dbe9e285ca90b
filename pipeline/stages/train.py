"""Training and evaluation of the float Keras model.

``train(model, dataset, cfg)`` fits with Adam and sparse categorical cross-entropy, stops early on
validation accuracy and keeps the best weights; ``evaluate(model, dataset)`` gives the accuracy and
the confusion matrix on the held-out test split (rows: true class, columns: predicted class).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.config import TrainConfig
from pipeline.stages.data import Dataset, to_model_input
from pipeline.errors import PipelineError


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    confusion: np.ndarray  # [true, predicted] counts
    split: str = "test"

    @property
    def samples(self) -> int:
        return int(self.confusion.sum())

    def per_class_accuracy(self) -> list[float]:
        rows = self.confusion.sum(axis=1)
        return [float(self.confusion[i, i] / rows[i]) if rows[i] else float("nan") for i in range(len(rows))]


@dataclass(frozen=True)
class TrainResult:
    epochs_run: int
    best_epoch: int  # 1-based epoch whose weights were kept
    best_val_accuracy: float
    stopped_early: bool
    seconds: float
    history: dict[str, list[float]]
    test: Evaluation

    def metrics(self, class_names: tuple[str, ...] | list[str]) -> dict[str, Any]:
        """The train stage's manifest metrics."""
        return {
            "where": "Keras float32 (host)",
            "test_accuracy": self.test.accuracy,
            "test_samples": self.test.samples,
            "best_val_accuracy": self.best_val_accuracy,
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "train_seconds": round(self.seconds, 2),
            "per_class_accuracy": dict(zip(class_names, self.test.per_class_accuracy())),
            "confusion_matrix": self.test.confusion.tolist(),
            "class_names": list(class_names),
        }


def compile_model(model: Any, learning_rate: float, decay_steps: int = 0) -> None:
    """Adam (with cosine decay over ``decay_steps`` when > 0), sparse categorical cross-entropy."""
    from pipeline.keras_setup import keras

    k = keras()
    lr: Any = learning_rate
    if decay_steps > 0:
        lr = k.optimizers.schedules.CosineDecay(learning_rate, decay_steps=decay_steps, alpha=0.02)
    model.compile(optimizer=k.optimizers.Adam(learning_rate=lr),
                  loss=k.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])


def train(model: Any, dataset: Dataset, cfg: TrainConfig, progress: bool = True) -> tuple[Any, TrainResult]:
    """Fit ``model`` in place (and return it) with early stopping; evaluate it on the test split."""
    from pipeline.keras_setup import keras, seed_everything
    from pipeline.progress import keras_epochs

    if int(model.output_shape[-1]) != dataset.num_classes:
        raise PipelineError(
            f"the model has {model.output_shape[-1]} outputs but the data has {dataset.num_classes} classes",
            hint="check data.classes and the model",
        )
    k = keras()
    seed_everything(cfg.seed)
    steps = int(np.ceil(len(dataset.y_train) / cfg.batch_size)) * cfg.epochs
    compile_model(model, cfg.learning_rate, steps if cfg.lr_schedule == "cosine" else 0)
    stop = k.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=cfg.patience,
                                     restore_best_weights=True)
    t0 = time.perf_counter()
    hist = model.fit(
        to_model_input(dataset.x_train), dataset.y_train,
        validation_data=(to_model_input(dataset.x_val), dataset.y_val),
        epochs=cfg.epochs, batch_size=cfg.batch_size, shuffle=True, verbose=0,
        callbacks=[stop, keras_epochs(cfg.epochs, desc="train", enabled=progress)],
    )
    seconds = time.perf_counter() - t0
    history = {key: [float(v) for v in vals] for key, vals in hist.history.items()}
    val = history.get("val_accuracy", [float("nan")])
    best = int(np.argmax(val))
    epochs_run = len(val)
    result = TrainResult(
        epochs_run=epochs_run,
        best_epoch=best + 1,
        best_val_accuracy=float(val[best]),
        stopped_early=epochs_run < cfg.epochs,
        seconds=seconds,
        history=history,
        test=evaluate(model, dataset),
    )
    return model, result


def predict(model: Any, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities for ``uint8`` images."""
    return np.asarray(model.predict(to_model_input(images), batch_size=batch_size, verbose=0))


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return cm


def evaluate(model: Any, dataset: Dataset, split: str = "test") -> Evaluation:
    """Accuracy and confusion matrix of ``model`` on one split (the held-out test split by default)."""
    x, y = dataset.split(split)
    if len(y) == 0:
        raise PipelineError(f"the {split} split is empty", hint="use more images per class")
    pred = predict(model, x).argmax(axis=1)
    return Evaluation(accuracy=float(np.mean(pred == y)), confusion=confusion_matrix(y, pred, dataset.num_classes),
                      split=split)
