"""The one rule for quantizing model inputs and dequantizing model outputs (TensorFlow-free).

Usage: from edgemnist.runtime.quantize import quantize; q = quantize(images, scale, zero_point, np.int8)

A float x in [0, 1] (pixel / 255, the one input convention of edgemnist) becomes

    q = clip(rint(float32(x * float32(1 / scale)) + zero_point), dtype's range)

rounded half to even, with the sum taken exactly. A raw output q becomes
float32(q - zero_point) * float32(scale). Every quantized input in edgemnist follows this:
`Runner` (whose single-image fast path in fast_path.py is checked bit for bit against it),
the firmware's embedded test digits (micro/check.py), `diagnose`'s accuracy, and the test
helpers; the C templates' comments name it for code on a device. The multiply by the
float32 reciprocal is what the fast path can do in one numpy call, so the rule is written
that way rather than as a division (which differs from it in the last bit for some x).
"""
from __future__ import annotations

from typing import Optional

import numpy as np


def scale_inverse(scale: float) -> np.float32:
    """float32(1 / scale), computed in double precision: the factor every input is multiplied by."""
    return np.float32(1.0 / float(scale))


def pixels_to_unit(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 pixel / 255, the arithmetic of data.to_model_input."""
    return pixels.astype(np.float32) / np.float32(255.0)


def quantize(values: np.ndarray, scale: float, zero_point: int, dtype, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Float model input -> the integer input of a quantized model, by the one rule above.

    Args:
        values: float input (any shape), normally in [0, 1].
        scale: the input tensor's quantization scale (> 0).
        zero_point: its zero point.
        dtype: the integer input type (int8, uint8, int16).
        out: optional array of `dtype` to write into.

    Returns:
        The quantized values, clipped to the range of `dtype`.

    Raises:
        ValueError: scale not > 0, or `dtype` not an integer type.
    """
    dtype = np.dtype(dtype)
    if not float(scale) > 0:
        raise ValueError(f"quantization scale must be > 0, got {scale!r}")
    if dtype.kind not in "iu":
        raise ValueError(f"quantize needs an integer dtype, got {dtype.name}")
    info = np.iinfo(dtype)
    scaled = np.multiply(np.asarray(values, dtype=np.float32), scale_inverse(scale))  # rounded to float32 once
    rounded = np.rint(scaled.astype(np.float64) + int(zero_point))  # exact sum, half to even
    q = np.clip(rounded, info.min, info.max)
    if out is None:
        return q.astype(dtype)
    np.copyto(out, q, casting="unsafe")
    return out


def quantize_pixels(pixels: np.ndarray, scale: float, zero_point: int, dtype) -> np.ndarray:
    """uint8 pixels -> quantized model input: `quantize(pixel / 255, ...)`."""
    return quantize(pixels_to_unit(np.asarray(pixels, dtype=np.uint8)), scale, zero_point, dtype)


def dequantize(raw: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """A quantized model's raw output -> float32 scores: float32(raw - zero_point) * float32(scale)."""
    return (np.asarray(raw).astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
