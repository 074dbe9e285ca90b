"""Training (early stopping, determinism) and evaluation (accuracy, confusion matrix) on tiny data."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import DataConfig, ModelConfig, TrainConfig
from pipeline.stages.data import make_dataset
from pipeline.errors import PipelineError
from pipeline.stages.models import build_model
from pipeline.stages.train import confusion_matrix, evaluate, train


@pytest.fixture(scope="module")
def tiny():
    return make_dataset(DataConfig(samples_per_class=12))


def _fit(ds, **kw):
    model = build_model(ModelConfig(), ds.num_classes, ds.image_shape)
    return train(model, ds, TrainConfig(batch_size=16, **kw), progress=False)


def test_train_and_evaluate(tiny):
    model, r = _fit(tiny, epochs=2)
    assert r.epochs_run == 2 and 1 <= r.best_epoch <= 2
    assert set(r.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    cm = r.test.confusion
    assert cm.shape == (6, 6) and cm.sum() == len(tiny.y_test)
    assert r.test.accuracy == pytest.approx(np.trace(cm) / cm.sum())
    assert evaluate(model, tiny).accuracy == pytest.approx(r.test.accuracy)
    m = r.metrics(tiny.class_names)
    assert m["class_names"] == list(tiny.class_names) and len(m["confusion_matrix"]) == 6
    assert set(m) >= {"test_accuracy", "epochs_run", "best_epoch", "best_val_accuracy", "train_seconds"}


def test_training_is_deterministic(tiny):
    _, a = _fit(tiny, epochs=2, seed=3)
    _, b = _fit(tiny, epochs=2, seed=3)
    assert a.history == b.history


def test_early_stopping_keeps_best(tiny):
    _, r = _fit(tiny, epochs=30, patience=1, learning_rate=1e-7, lr_schedule="constant")
    assert r.stopped_early and r.epochs_run < 30
    assert r.best_val_accuracy == max(r.history["val_accuracy"])


def test_class_count_mismatch(tiny):
    model = build_model(ModelConfig(), 4, tiny.image_shape)
    with pytest.raises(PipelineError, match="4 outputs but the data has 6 classes"):
        train(model, tiny, TrainConfig(epochs=1), progress=False)


def test_confusion_matrix():
    cm = confusion_matrix(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
