"""The digit-or-not gate: a tiny int8 .tflite that says whether a prepared 28x28 image holds a digit at all.

Usage: from edgemnist.runtime.gate import Gate; gate = Gate(); keep = gate.is_digit(prepared_images)

A digit classifier's softmax has no "none of these" answer, so a letter or a shirt gets a
confident digit. The gate answers only that question, on the image the digit model sees
(after `edgemnist.runtime.prepare`), so one gate serves every exported variant of every
digit model. `edgemnist.load` and `edgemnist predict` use the one shipped in this folder
(DEFAULT_GATE) unless told otherwise; `edgemnist gate` (edgemnist.training.gate) trains
and writes it. Each gate is a .tflite with a JSON beside it (same stem) that holds its
threshold: an image whose "digit" output is under it is not a digit.

Needs numpy and a TFLite interpreter; no TensorFlow.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import numpy as np

from edgemnist.runtime.interpreter import Runner

DEFAULT_GATE = Path(__file__).resolve().parent / "digit_gate_int8.tflite"


def metadata_path(tflite_path: str | os.PathLike) -> Path:
    """The gate's JSON (threshold, what it was trained on, its rates): beside the .tflite, same stem."""
    return Path(tflite_path).with_suffix(".json")


class Gate:
    """Says which prepared 28x28 images hold a digit.

    Attributes:
        path: the gate's .tflite file.
        threshold: images whose digit score is under this are not digits.
        metadata: the gate's JSON (what it was trained on, its validation rates).
        runner: the Runner of the .tflite (always on the CPU: the gate is a few thousand MACs).
    """

    def __init__(self, path: str | os.PathLike = DEFAULT_GATE, threads: int = 1, backend: Optional[str] = None,
                 trusted: Optional[bool] = None):
        """Loads a gate and its threshold.

        Args:
            path: the gate's .tflite; its JSON must lie beside it (same stem, .json).
            threads: interpreter threads.
            backend: force one of runtime.BACKENDS; None picks the first installed.
            trusted: as for `Runner`; the shipped gate is always trusted.

        Raises:
            FileNotFoundError: no such .tflite, or no JSON beside it.
            ValueError: not a gate (one score per 28x28 image), or a JSON without a threshold in [0, 1].
        """
        path = Path(path)
        meta_file = metadata_path(path)
        if path.is_file() and not meta_file.is_file():
            raise FileNotFoundError(f"{meta_file}: missing; a gate's threshold lies in a JSON beside its .tflite "
                                    "(edgemnist gate writes both)")
        shipped = path.resolve() == DEFAULT_GATE
        self.runner = Runner(path, num_threads=threads, backend=backend, trusted=True if shipped else trusted)
        self.path = self.runner.path
        try:
            self.metadata = json.loads(meta_file.read_text(encoding="utf-8"))
            threshold = float(self.metadata["threshold"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{meta_file}: not a gate's JSON with a threshold ({type(exc).__name__}: {exc})") from None
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"{meta_file}: threshold must be in [0, 1], got {threshold!r}")
        if int(np.prod(self.runner.output.shape[1:])) != 1 or tuple(self.runner.image_shape[:2]) != (28, 28):
            raise ValueError(f"{self.path}: expected a gate taking 28x28 images and giving one score, got input "
                             f"{tuple(self.runner.input.shape)} and output {tuple(self.runner.output.shape)}")
        self.threshold = threshold

    def score_one(self, image: np.ndarray) -> float:
        """The digit score (0..1) of one prepared image (uint8 28x28, or float in [0, 1])."""
        return float(self.runner.predict_one(image)[0])

    def holds_digit(self, image: np.ndarray) -> bool:
        """Whether the gate takes one prepared image (28x28) for a digit."""
        return self.score_one(image) >= self.threshold

    def scores(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """The digit scores (N,) of prepared images (N, 28, 28)."""
        return self.runner.predict(images, batch_size=batch_size).reshape(-1)

    def is_digit(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """bool (N,): which prepared images (N, 28, 28) the gate takes for digits."""
        return self.scores(images, batch_size) >= self.threshold

    def describe(self) -> dict:
        """{path, threshold}: what `predict --json` reports of the gate in use."""
        return {"path": str(self.path), "threshold": self.threshold}

    def __repr__(self) -> str:
        return f"Gate({str(self.path)!r}, threshold={self.threshold})"


__all__ = ("Gate", "DEFAULT_GATE", "metadata_path")
