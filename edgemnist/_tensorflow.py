"""Import TensorFlow (with Keras 2) on demand, with one clear error when the extra is missing.

Usage: from edgemnist._tensorflow import import_tensorflow; tf = import_tensorflow()
"""
from __future__ import annotations

import os


class MissingExtraError(RuntimeError):
    """A command needs an optional dependency that is not installed."""


TRAIN_EXTRA_HINT = "this command needs TensorFlow: pip install 'edgemnist[train]'"


def import_tensorflow():
    """Returns the tensorflow module with tf.keras being tf-keras (Keras 2).

    Raises:
        MissingExtraError: TensorFlow or tf-keras is not installed.
    """
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
        import tf_keras  # noqa: F401  (tf.keras resolves to it when TF_USE_LEGACY_KERAS=1)
    except ImportError as exc:
        raise MissingExtraError(f"{TRAIN_EXTRA_HINT} ({exc})") from None
    return tf


def keras():
    """Returns tf-keras (Keras 2), the Keras that tensorflow-model-optimization supports."""
    import_tensorflow()
    import tf_keras

    return tf_keras


def import_tfmot():
    """Returns tensorflow_model_optimization, or raises MissingExtraError."""
    import_tensorflow()
    try:
        import tensorflow_model_optimization as tfmot
    except ImportError as exc:
        raise MissingExtraError(f"{TRAIN_EXTRA_HINT} ({exc})") from None
    return tfmot
