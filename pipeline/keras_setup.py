"""The one place where TensorFlow and Keras 2 (``tf_keras``) are set up.

tfmot only works with Keras 2, so every module that needs Keras calls :func:`keras` (never
``import keras``). TensorFlow is imported lazily, on first use, so that ``picotflm --help`` and
config errors answer at once. The C++ start-up chatter TensorFlow writes to file descriptor 2
before its logging is initialised (oneDNN notice, "Could not find cuda drivers", cuInit) is
captured during the import and shown only if the import fails.
"""
from __future__ import annotations

import os
import sys
import tempfile
from typing import Any

_tf: Any = None
_keras: Any = None


def _import_quietly() -> None:
    global _tf, _keras
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            import tensorflow as tf
            import tf_keras

            tf.config.list_physical_devices()  # device probing (cuInit) happens here, quietly
        except BaseException:
            os.dup2(saved, 2)
            tmp.seek(0)
            sys.stderr.write(tmp.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    _tf, _keras = tf, tf_keras


def tf():
    """The ``tensorflow`` module, imported on first use."""
    if _tf is None:
        _import_quietly()
    return _tf


def keras():
    """``tf_keras`` (Keras 2), the only Keras this project uses."""
    if _keras is None:
        _import_quietly()
    return _keras


def seed_everything(seed: int) -> None:
    """Python, NumPy and TensorFlow seeds, and deterministic TensorFlow ops."""
    k = keras()
    k.utils.set_random_seed(int(seed))
    tf().config.experimental.enable_op_determinism()
