"""Progress bars on stderr, through one helper (tqdm).

``enabled=False`` (``--no-progress``) turns them off; when enabled they still only draw on a
terminal, so logs of pipes and CI stay clean.
"""
from __future__ import annotations

import sys
from typing import Any, Iterable


def bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
        enabled: bool = True, **kwargs: Any):
    """A tqdm bar on stderr (a no-op object when disabled or stderr is not a terminal)."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, leave=False,
                disable=None if enabled else True, dynamic_ncols=True, **kwargs)


def keras_epochs(epochs: int, *, desc: str = "train", enabled: bool = True):
    """A Keras callback drawing one bar over the epochs, with loss and accuracy as postfix."""
    from pipeline.keras_setup import keras

    k = keras()

    class _EpochBar(k.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self._bar = None

        def on_train_begin(self, logs=None):
            self._bar = bar(total=epochs, desc=desc, unit="epoch", enabled=enabled)

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            shown = {k_: f"{v:.3f}" for k_, v in logs.items() if k_ in ("loss", "accuracy", "val_accuracy")}
            self._bar.set_postfix(shown, refresh=False)
            self._bar.update(1)

        def on_train_end(self, logs=None):
            if self._bar is not None:
                self._bar.close()

    return _EpochBar()
