"""edgemnist: train, prune, quantize, export and measure a small depthwise-separable CNN for MNIST.

Usage: edgemnist --help
"""
import os as _os

# tensorflow-model-optimization needs Keras 2 (tf-keras). The variable must be set before
# TensorFlow is first imported, so the package sets it for its users.
_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

__version__ = "0.1.0"

# The Python API (edgemnist/runtime/classify.py): `edgemnist.load("model_int8.tflite").predict("photo.jpg")`.
# Imported on first use, so that `import edgemnist` (and with it every command's start-up) stays cheap.
_API = ("load", "Model", "Prediction", "NumberPrediction")


def __getattr__(name):
    if name in _API:
        from edgemnist.runtime import classify

        return getattr(classify, name)
    raise AttributeError(f"module 'edgemnist' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))
