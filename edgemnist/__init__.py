"""edgemnist: train, prune, quantize, export and measure a small depthwise-separable CNN for MNIST.

Usage: edgemnist --help
"""
import os as _os

# tensorflow-model-optimization needs Keras 2 (tf-keras). The variable must be set before
# TensorFlow is first imported, so the package sets it for its users.
_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

__version__ = "0.1.0"
