"""The Python API: read digits in real images with a .tflite model, no TensorFlow needed.

Usage: import edgemnist; model = edgemnist.load(); print(model.predict("photo.jpg").digit)

`edgemnist.load()` with no path reads the int8 model shipped in the package
(edgemnist/runtime/models); `load("model_int8.tflite")` reads your own export.

`load` gives a `Model`: `predict` (one image of one digit), `predict_batch` (many, one
invoke per batch) and `predict_number` (one image of several digits, read left to
right). Images are file paths, encoded bytes, PIL images or numpy arrays, of any size;
each is first put into MNIST's form by `edgemnist.runtime.prepare` (unless the model was
loaded with `prepare=False`, for input that is MNIST-shaped already), then run through
`Runner`, which handles float and integer-input models alike.

The rejection rule (docs/outputs.md): a prediction is `rejected` when no digit was found
(nothing stands out of the paper: no guess is made); when the ink reaches all four sides
of the frame or lies in more than 5 pieces (a texture, a scene); when the prepared image
holds more ink than MNIST's digits ever do (a blob); when the digit-or-not gate
(`edgemnist.runtime.gate`, a tiny separate .tflite shipped in the package, run on the
prepared image) says it is not a digit (a letter, a garment, a shape); or when the model's
probability for its digit is below `min_probability`. All but the first still carry the
model's best guess. `gate=None` (predict's --no-gate) leaves the gate out.

The probabilities are calibrated (docs/outputs.md): the model's softmax output p becomes
softmax(log(p) / T) with the model's temperature T, which `edgemnist export` fits on
held-out digits and stores in the manifest beside the .tflite (runtime/temperature.py); a
model without one keeps T = 1, its raw output. Calibrated, a printed 0.95 is right about 95 %
of the time; the digit and the order of the runners-up never change, and the low-confidence
rule applies to the calibrated probability.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from edgemnist.runtime.accelerator import DEFAULT_ACCELERATOR, DEFAULT_GPU_PRECISION, open_runner
from edgemnist.runtime.gate import DEFAULT_GATE, Gate
from edgemnist.runtime.models import is_shipped, resolve_model
from edgemnist.runtime.prepare import ImageSource, Prepared, PrepareConfig, plain, prepare, prepare_digits
from edgemnist.runtime.temperature import calibrated, check_temperature, probability_floor, read_temperature

# Below this probability a digit is flagged as low confidence. benchmarks/bench_predict.py
# measures what it costs on digits and what it catches on images that hold none.
MIN_PROBABILITY = 0.5
LOW_CONFIDENCE = "low confidence"
NOT_A_DIGIT = "not a digit"
DEFAULT = "default"  # gate="default": the gate shipped in the package


@dataclass(frozen=True)
class Prediction:
    """The model's reading of one digit.

    Attributes:
        digit: the most probable digit; None when no digit was found.
        probability: its probability (the model's softmax output, calibrated by the model's
            temperature); None without a digit.
        runner_up: the second most probable digit; None without a digit.
        runner_up_probability: its probability; None without a digit.
        probabilities: all ten probabilities, digit 0 first; None without a digit.
        rejected: no digit found, or the probability is under the model's min_probability.
        reason: why it was rejected ("no digit found", "ink all over the frame", "too much
            ink for a digit", "not a digit", "low confidence"); None when accepted.
        image: the uint8 28x28 image the model saw (None without a digit).
        box: (top, left, bottom, right) of the digit in the input's pixels, when prepared.
        inverted: the input was dark on light and was inverted.
    """

    digit: Optional[int]
    probability: Optional[float]
    runner_up: Optional[int]
    runner_up_probability: Optional[float]
    probabilities: Optional[tuple]
    rejected: bool
    reason: Optional[str] = None
    image: Optional[np.ndarray] = field(default=None, repr=False, compare=False)
    box: Optional[tuple] = None
    inverted: bool = False

    def top(self, k: int = 2) -> list:
        """The k most probable digits as [(digit, probability)], most probable first ([] without a digit)."""
        if self.probabilities is None:
            return []
        order = np.argsort(-np.asarray(self.probabilities), kind="stable")[:k]
        return [(int(d), float(self.probabilities[d])) for d in order]

    def to_json(self, top: int = 2) -> dict:
        """The JSON object of `edgemnist predict --json` for this digit (keys: docs/outputs.md)."""
        return {
            "digit": self.digit,
            "probability": _rounded(self.probability),
            "runner_up": self.runner_up,
            "runner_up_probability": _rounded(self.runner_up_probability),
            "top": [{"digit": d, "probability": _rounded(p)} for d, p in self.top(top)],
            "probabilities": None if self.probabilities is None else [_rounded(p) for p in self.probabilities],
            "rejected": self.rejected,
            "reason": self.reason,
            "box": None if self.box is None else list(self.box),
            "inverted": self.inverted,
        }


@dataclass(frozen=True)
class NumberPrediction:
    """The model's reading of a number: its digits, left to right.

    Attributes:
        number: the digits as a string ("2024"); None when no digit was found.
        digits: one Prediction per digit, left to right.
        probability: the product of the digits' probabilities (that every digit is right,
            were they independent); None without digits.
        rejected: no digit found, or any digit rejected.
        reason: "no digit found", or the first rejected digit's reason; None when accepted.
    """

    number: Optional[str]
    digits: tuple
    probability: Optional[float]
    rejected: bool
    reason: Optional[str] = None

    def to_json(self, top: int = 2) -> dict:
        """The JSON object of `edgemnist predict --digits --json` for this image (keys: docs/outputs.md)."""
        return {
            "number": self.number,
            "probability": _rounded(self.probability),
            "rejected": self.rejected,
            "reason": self.reason,
            "digits": [d.to_json(top) for d in self.digits],
        }


def _rounded(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(float(value), 6)


class Model:
    """A .tflite digit classifier that reads real images: `predict`, `predict_batch`, `predict_number`.

    Attributes:
        runner: the underlying `Runner` or `GpuRunner` (path, backend, threads, input and output tensors).
        prepare: whether images are put into MNIST's form first.
        min_probability: the rejection threshold.
        config: the preparation settings.
        temperature: the T the probabilities are calibrated with (1.0: the raw softmax output).
    """

    def __init__(self, path: Union[str, os.PathLike, None] = None, threads: int = 1, backend: Optional[str] = None,
                 prepare: bool = True, min_probability: float = MIN_PROBABILITY,
                 config: PrepareConfig = PrepareConfig(), trusted: Optional[bool] = None,
                 accelerator: str = DEFAULT_ACCELERATOR, gpu_precision: str = DEFAULT_GPU_PRECISION,
                 temperature: Optional[float] = None,
                 gate: Union[str, os.PathLike, Gate, None] = DEFAULT):
        """Loads a .tflite model that gives one score per digit.

        Args:
            path: the .tflite file (any exported variant: float or integer input), or the name
                of a model shipped with edgemnist ("int8", "float32"); None: the shipped int8
                model (edgemnist.runtime.models).
            threads: interpreter threads (>= 1).
            backend: force one of runtime.BACKENDS; None picks the first installed.
            prepare: put images into MNIST's form first (False: they are MNIST-shaped already:
                white digit on black, centred; other sizes are resized to 28x28).
            min_probability: predictions under this probability are rejected (0 keeps all).
            config: preparation settings.
            trusted: as for `Runner` (True skips the child-process check of the file).
            accelerator: "cpu" (the interpreter) or "gpu" (LiteRT's GPU accelerator,
                edgemnist.runtime.accelerator).
            gpu_precision: with "gpu": "fp16" or "fp32".
            temperature: calibrates the probabilities (softmax(log p / T)); None reads it from
                the manifest beside the model (`<model>.tflite.json`, written by `edgemnist
                export`), 1.0 when there is none; a number > 0 overrides it.
            gate: the digit-or-not gate run on each prepared image: "default" (the one shipped
                in the package), a gate's .tflite path (its JSON beside it), a `Gate`, or None
                (no gate).

        Raises:
            FileNotFoundError: no such file (model or gate).
            ValueError: not a .tflite model, one that does not give 10 scores per image, a
                bad setting (a temperature that is not a number > 0), or an unreadable manifest.
            BackendNotFoundError: no interpreter package is installed.
            AcceleratorUnavailableError: the accelerator asked for cannot run here.
        """
        if not 0.0 <= float(min_probability) <= 1.0:
            raise ValueError(f"min_probability must be in [0, 1], got {min_probability!r}")
        if not isinstance(config, PrepareConfig):
            raise ValueError(f"config must be a PrepareConfig, got {type(config).__name__}")
        if temperature is not None:
            temperature = check_temperature(temperature)
        path = resolve_model(path)
        if trusted is None and is_shipped(path):
            trusted = True  # it came with the package, as the shipped gate does
        self.runner = open_runner(path, accelerator, num_threads=threads, backend=backend, trusted=trusted,
                                  gpu_precision=gpu_precision)
        classes = int(np.prod(self.runner.output.shape[1:]))
        if classes != 10 or tuple(self.runner.image_shape[:2]) != (28, 28):
            raise ValueError(f"{self.runner.path}: expected a digit classifier taking 28x28 images and giving 10 "
                             f"scores, got input {tuple(self.runner.input.shape)} and output "
                             f"{tuple(self.runner.output.shape)}")
        self.prepare = bool(prepare)
        self.min_probability = float(min_probability)
        self.gate = _open_gate(gate, threads, backend, trusted)
        self.config = config
        if temperature is None:
            temperature = read_temperature(self.runner.path)
        self.temperature = 1.0 if temperature is None else temperature
        self._floor = probability_floor(self.runner.output)

    @property
    def path(self):
        """The model file."""
        return self.runner.path

    def prepared(self, image: ImageSource) -> Prepared:
        """The image as the model will see it (MNIST's form, or only resized with prepare=False).

        Raises:
            FileNotFoundError, ValueError: a missing, unreadable or truncated image.
        """
        if self.prepare:
            return prepare(image, self.config)
        return Prepared(plain(image))

    def predict(self, image: ImageSource) -> Prediction:
        """Reads the digit in one image.

        Args:
            image: a file path, encoded image bytes, a PIL image, or a numpy array (H, W),
                (H, W, 3) or (H, W, 4) (RGBA: alpha composited, as a canvas's ImageData),
                uint8, uint16 or float in [0, 1]. A file is read upright by its EXIF orientation.

        Returns:
            Prediction.

        Raises:
            FileNotFoundError, ValueError: a missing, unreadable or truncated image, one over
                Pillow's decompression-bomb limit, an animation or multi-page file, or a format
                this Pillow cannot decode (HEIC without its plugin); the message names it.
        """
        ready = self.prepared(image)
        if ready.image is None:
            return _no_digit(ready)
        return self._gated(self._prediction(self.runner.predict_one(ready.image), ready))

    def predict_batch(self, images: Iterable[ImageSource], batch_size: int = 64) -> list:
        """Reads the digit in each of many images, `batch_size` images per invoke.

        Args:
            images: image sources, as `predict` takes.
            batch_size: images per invoke (>= 1).

        Returns:
            list of Prediction, in the order given.

        Raises:
            FileNotFoundError, ValueError: a missing, unreadable or truncated image (the first one).
        """
        ready = [self.prepared(image) for image in images]
        found = [i for i, r in enumerate(ready) if r.image is not None]
        results: list = [_no_digit(r) for r in ready]
        if found:
            images = np.stack([ready[i].image for i in found])
            scores = self.runner.predict(images, batch_size=batch_size)
            digit = self.gate.is_digit(images, batch_size) if self.gate is not None else [True] * len(found)
            for i, row, is_digit in zip(found, scores, digit):
                results[i] = self._gated(self._prediction(row, ready[i]), bool(is_digit))
        return results

    def predict_number(self, image: ImageSource) -> NumberPrediction:
        """Reads a number: the image is cut into digits (left to right), each read on its own.

        Args:
            image: as for `predict`.

        Returns:
            NumberPrediction.

        Raises:
            FileNotFoundError, ValueError: a missing, unreadable or truncated image.
        """
        if not self.prepare:
            raise ValueError("predict_number needs the preparation step (load the model with prepare=True)")
        digits, reason, inverted = prepare_digits(image, self.config)
        if not digits:
            return NumberPrediction(None, (), None, True, reason)
        predictions = tuple(self._gated(self._prediction(self.runner.predict_one(d.image), d)) for d in digits)
        number = "".join(str(p.digit) for p in predictions)
        probability = float(np.prod([p.probability for p in predictions]))
        reasons = [p.reason for p in predictions if p.rejected]
        return NumberPrediction(number, predictions, probability, bool(reasons), reasons[0] if reasons else None)

    def _prediction(self, scores: np.ndarray, ready: Prepared) -> Prediction:
        probabilities = calibrated(np.asarray(scores, dtype=np.float64).reshape(-1), self.temperature, self._floor)
        order = np.argsort(-probabilities, kind="stable")
        best, second = int(order[0]), int(order[1])
        probability = float(probabilities[best])
        reason = ready.reason or (LOW_CONFIDENCE if probability < self.min_probability else None)
        return Prediction(
            digit=best, probability=probability, runner_up=second,
            runner_up_probability=float(probabilities[second]),
            probabilities=tuple(float(p) for p in probabilities),
            rejected=reason is not None, reason=reason,
            image=ready.image, box=ready.box, inverted=ready.inverted,
        )

    def _gated(self, prediction: Prediction, is_digit: Optional[bool] = None) -> Prediction:
        """The prediction, rejected as NOT_A_DIGIT when the gate says its image holds no digit (the rule's order:
        preparation's reasons first, the gate before low confidence)."""
        if self.gate is None or (prediction.rejected and prediction.reason != LOW_CONFIDENCE):
            return prediction
        if is_digit is None:
            is_digit = self.gate.holds_digit(prediction.image)
        return prediction if is_digit else replace(prediction, rejected=True, reason=NOT_A_DIGIT)

    def __repr__(self) -> str:
        return (f"Model({str(self.path)!r}, prepare={self.prepare}, min_probability={self.min_probability}, "
                f"temperature={self.temperature}, "
                f"gate={None if self.gate is None else str(self.gate.path)!r}, "
                f"backend={self.runner.backend.describe()!r}, threads={self.runner.num_threads})")


def _open_gate(gate, threads: int, backend: Optional[str], trusted: Optional[bool]) -> Optional[Gate]:
    """Model's `gate` argument -> a Gate or None."""
    if gate is None or isinstance(gate, Gate):
        return gate
    if not isinstance(gate, (str, os.PathLike)):
        raise ValueError(f"gate must be 'default', a path, a Gate or None, got {type(gate).__name__}")
    # Gate trusts the shipped file itself, whatever `trusted` says
    return Gate(DEFAULT_GATE if gate == DEFAULT else gate, threads=threads, backend=backend, trusted=trusted)


def _no_digit(ready: Prepared) -> Prediction:
    return Prediction(None, None, None, None, None, True, ready.reason, None, None, ready.inverted)


def load(path: Union[str, os.PathLike, None] = None, threads: int = 1, backend: Optional[str] = None, prepare: bool = True,
         min_probability: float = MIN_PROBABILITY, config: PrepareConfig = PrepareConfig(),
         trusted: Optional[bool] = None, accelerator: str = DEFAULT_ACCELERATOR,
         gpu_precision: str = DEFAULT_GPU_PRECISION,
         temperature: Optional[float] = None, gate: Union[str, os.PathLike, Gate, None] = DEFAULT) -> Model:
    """Loads a .tflite digit classifier for reading real images (`Model`'s arguments).

    Args:
        path: the .tflite file, a shipped model's name ("int8", "float32"), or None: the shipped
            int8 model.
        threads: interpreter threads.
        backend: force an interpreter package.
        prepare: put images into MNIST's form first.
        min_probability: the rejection threshold.
        config: preparation settings.
        trusted: as for `Runner`.
        accelerator: "cpu" or "gpu".
        gpu_precision: with "gpu": "fp16" or "fp32".
        temperature: calibrates the probabilities; None: the manifest's, else 1.0.
        gate: the digit-or-not gate: "default" (shipped), a .tflite path, a Gate, or None.

    Returns:
        Model.

    Raises:
        FileNotFoundError, ValueError, BackendNotFoundError, AcceleratorUnavailableError: as `Model`.
    """
    return Model(path, threads=threads, backend=backend, prepare=prepare, min_probability=min_probability,
                 config=config, trusted=trusted, accelerator=accelerator, gpu_precision=gpu_precision,
                 temperature=temperature, gate=gate)


__all__: Sequence[str] = ("load", "Model", "Prediction", "NumberPrediction", "MIN_PROBABILITY", "NOT_A_DIGIT")
