"""TensorFlow-free runtime: load and run .tflite models with LiteRT, tflite-runtime or tf.lite.

Usage: from edgemnist.runtime import Runner; scores = Runner("m.tflite").predict(images)

Needs only numpy and an interpreter package (ai-edge-litert, else tflite-runtime, else
TensorFlow's tf.lite as the last resort).
"""
from edgemnist.runtime.interpreter import (  # noqa: F401
    BACKENDS,
    Backend,
    BackendNotFoundError,
    TensorSpec,
    Runner,
    check_tflite_file,
    load_backend,
)
