"""Temperature scaling: one number per model that makes its printed probability match how often it is right.

Usage: from edgemnist.runtime.temperature import fit_temperature, calibrated; calibrated(scores, t, floor)

A model's softmax output is sharpened or softened as softmax(log(p) / T): T < 1 makes it more
confident, T > 1 less; the order of the digits never changes, so neither does the answer.
`edgemnist export` fits T per exported file on held-out digits (`fit_on`: the NLL-minimising
T, run on the .tflite itself so that int8 rounding is included) and stores it in the manifest
beside the file (`temperature`); `edgemnist.load` reads it back (`read_temperature`).

Probabilities are recovered as log(max(p, floor)). A quantized output holds multiples of its
scale, and a 0 stands for anything under half a step, so the floor is half the output's
scale (`probability_floor`); a float output only needs log(0) kept finite.
"""
from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Optional

import numpy as np

from edgemnist.artifacts import manifest_path, sha256_file

log = logging.getLogger(__name__)

FLOAT_FLOOR = 1e-12  # a float softmax output reaches 0 only by underflow
# The search runs over 1/T, in which the negative log-likelihood is convex (a log-sum-exp of a
# linear function), so the golden-section search finds the one minimum inside these bounds.
_INVERSE_BOUNDS = (0.05, 20.0)
_SEARCH_STEPS = 60  # golden-section steps: the bracket shrinks to well under 1e-4 of T


def check_temperature(temperature, where: str = "temperature") -> float:
    """`temperature` as a float, or ValueError when it is not a finite number > 0."""
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        raise ValueError(f"{where} must be a number > 0, got {temperature!r}") from None
    if isinstance(temperature, bool) or not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"{where} must be a finite number > 0, got {temperature!r}")
    return value


def probability_floor(output) -> float:
    """The smallest probability a model's output can tell apart from 0: half its scale when quantized.

    Args:
        output: the output's TensorSpec (`Runner.output`) or its manifest entry (a dict with "scale").
    """
    scale = output.get("scale") if isinstance(output, dict) else (output.scale if output.quantized else None)
    return float(scale) / 2.0 if scale else FLOAT_FLOOR


def calibrated(probabilities: np.ndarray, temperature: float, floor: float = FLOAT_FLOOR) -> np.ndarray:
    """softmax(log(max(p, floor)) / T) over the last axis, float64; T = 1 returns `p` unchanged."""
    p = np.asarray(probabilities, dtype=np.float64)
    if temperature == 1.0:
        return p
    logits = np.log(np.maximum(p, floor)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=-1, keepdims=True)


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray, temperature: float = 1.0,
                            floor: float = FLOAT_FLOOR) -> float:
    """Mean -log(probability of the true label) after `calibrated` (the floor applies at T = 1 too)."""
    logits = np.log(np.maximum(np.asarray(probabilities, dtype=np.float64), floor)) / temperature
    top = logits.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    return float(np.mean(log_norm - logits[np.arange(len(logits)), np.asarray(labels, dtype=np.int64)]))


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray, floor: float = FLOAT_FLOOR) -> float:
    """The T that minimises the negative log-likelihood of `labels`, rounded to 4 significant digits.

    Args:
        probabilities: (N, classes) softmax outputs of held-out images.
        labels: (N,) their true classes.
        floor: `probability_floor` of the model's output.

    Raises:
        ValueError: shapes that do not match, or no images.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    if p.ndim != 2 or len(p) == 0 or labels.shape != (len(p),):
        raise ValueError(f"expected (N, classes) probabilities and N labels, got {p.shape} and {labels.shape}")
    lo, hi = _INVERSE_BOUNDS
    golden = (math.sqrt(5) - 1) / 2
    a, b = hi - golden * (hi - lo), lo + golden * (hi - lo)
    fa, fb = (negative_log_likelihood(p, labels, 1.0 / x, floor) for x in (a, b))
    for _ in range(_SEARCH_STEPS):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - golden * (hi - lo)
            fa = negative_log_likelihood(p, labels, 1.0 / a, floor)
        else:
            lo, a, fa = a, b, fb
            b = lo + golden * (hi - lo)
            fb = negative_log_likelihood(p, labels, 1.0 / b, floor)
    return float(f"{1.0 / ((lo + hi) / 2):.4g}")


def fit_on(runner, images: np.ndarray, labels: np.ndarray, batch_size: int = 256) -> dict:
    """Fits a model's temperature on held-out images, running the model itself.

    Args:
        runner: a `Runner` of the .tflite.
        images: uint8 (N, 28, 28) or float [0, 1] images the model was not trained on (as `Runner` takes them).
        labels: (N,) their digits.
        batch_size: images per invoke.

    Returns:
        {"temperature", "images", "floor", "accuracy", "nll" (at T = 1), "nll_calibrated"}.
    """
    scores = runner.predict(images, batch_size=batch_size)
    floor = probability_floor(runner.output)
    temperature = fit_temperature(scores, labels, floor)
    return {
        "temperature": temperature,
        "images": int(len(labels)),
        "floor": floor,
        "accuracy": round(float(np.mean(scores.argmax(axis=1) == labels)), 6),
        "nll": round(negative_log_likelihood(scores, labels, 1.0, floor), 6),
        "nll_calibrated": round(negative_log_likelihood(scores, labels, temperature, floor), 6),
    }


def read_temperature(model_path: str | os.PathLike) -> Optional[float]:
    """The temperature the manifest beside a .tflite gives it, or None (no manifest, no temperature in it,
    or a manifest of another file: its sha256 differs, which is logged).

    Raises:
        ValueError: the manifest is not JSON, or its temperature is not a number > 0.
    """
    path = manifest_path(model_path)
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable manifest ({exc.__class__.__name__}); fix or remove it, "
                         "or give the temperature") from None
    if not isinstance(manifest, dict) or manifest.get("temperature") is None:
        return None
    if manifest.get("sha256") and manifest["sha256"] != sha256_file(model_path):
        log.warning("%s: describes another file (sha256 differs from %s): its temperature is not used",
                    path, Path(model_path).name)
        return None
    return check_temperature(manifest["temperature"], f"{path}: temperature")
