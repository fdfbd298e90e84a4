"""Run a .tflite image classifier without TensorFlow: `Runner`, float images in, float scores out.

Usage: from edgemnist.runtime import Runner; Runner("model_int8.tflite").predict(images)

Inputs are float32 images in [0, 1] (the one input convention of edgemnist), or uint8
pixels, read as pixel / 255; an int8, uint8 or int16 model gets them quantized with its
own input scale and zero point, and its outputs come back dequantized with its own output
parameters.

The single-image path (`predict_one`, in fast_path.py) is kept to a few numpy calls with
pre-allocated buffers, written straight into the interpreter's own tensors, so it costs
little more than a bare `interpreter.invoke()` loop (benchmarks/bench_runtime.py). Beside
it, `predict_one_reference` is the plain path it must agree with bit for bit: quantize
(the one rule of quantize.py), set_tensor, invoke, get_tensor, dequantize.

The interpreter package comes from `backend.load_backend`. A file not marked trusted is
first loaded and run in a child process (`preflight`), so that a native crash becomes a
ValueError naming the file.
"""
from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from edgemnist.console import first_line
from edgemnist.runtime.backend import load_backend
from edgemnist.runtime.fast_path import FLOAT32, ONE_BITS, UINT8, SingleImagePath, raise_out_of_range
from edgemnist.runtime.preflight import preflight, trusted_by_environment
from edgemnist.runtime.quantize import dequantize, pixels_to_unit, quantize
from edgemnist.runtime.tflite_reader import check_tflite_file

@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: index, shape at batch 1, dtype and quantization."""

    index: int
    name: str
    shape: tuple  # including the batch dimension
    dtype: Any  # a numpy scalar type
    scale: float  # 0.0 for float tensors
    zero_point: int

    @property
    def quantized(self) -> bool:
        """True for an integer tensor with quantization parameters."""
        return np.issubdtype(self.dtype, np.integer) and self.scale != 0.0

    def to_json(self) -> dict:
        """A JSON-ready description, as manifests give it (tflite_info.io_tensor): a tensor without
        quantization has scale and zero point None."""
        quantized = self.scale != 0.0
        return {
            "name": self.name,
            "shape": [int(d) for d in self.shape],
            "dtype": np.dtype(self.dtype).name,
            "scale": float(self.scale) if quantized else None,
            "zero_point": int(self.zero_point) if quantized else None,
        }


def _tensor_spec(detail: dict) -> TensorSpec:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorSpec(
        int(detail["index"]), str(detail.get("name", "")), tuple(int(d) for d in detail["shape"]),
        detail["dtype"], float(scale), int(zero_point),
    )



def checked_batch_size(batch_size, n: int) -> int:
    """`batch_size` as an int no larger than the `n` images (at least 1), or ValueError."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    return int(min(batch_size, max(n, 1)))


def scores_in_batches(runner, images: np.ndarray, batch_size: int, run_batch) -> np.ndarray:
    """float32 scores (N, outputs) of checked images, `batch_size` per run: each batch is quantized
    into one input buffer (a short last batch padded with quantized zeros), run by
    `run_batch(batch_in) -> raw outputs (batch_size, ...)`, then dequantized. `runner` gives the
    tensors and the quantization (Runner, or the GPU runner, which runs batches its own way)."""
    n = images.shape[0]
    scores = np.empty((n, int(np.prod(runner.output.shape[1:]))), np.float32)
    batch_in = np.zeros((batch_size, *runner.image_shape), runner.input.dtype)
    for start in range(0, n, batch_size):
        chunk = images[start:start + batch_size]
        if chunk.shape[0] < batch_size:
            batch_in[chunk.shape[0]:] = runner.quantize_input(np.zeros_like(chunk[:1]))
        runner.quantize_input(chunk, out=batch_in[: chunk.shape[0]])
        raw = run_batch(batch_in)
        scores[start:start + chunk.shape[0]] = runner.dequantize_output(raw[: chunk.shape[0]]).reshape(
            chunk.shape[0], -1)
    return scores


class Runner:
    """Runs a .tflite image classifier: float-in, float-out `predict` and `predict_one`.

    Attributes:
        path: the model file.
        backend: the interpreter package in use (name, version).
        num_threads: threads the interpreter may use.
        input, output: TensorSpec of the single input and output.
        image_shape: the shape of one image, e.g. (28, 28, 1).
        init_seconds: time to create the interpreter and allocate its tensors.
    """

    def __init__(self, path: str | os.PathLike, num_threads: int = 1, backend: Optional[str] = None,
                 trusted: Optional[bool] = None):
        """Loads and validates a .tflite model.

        Args:
            path: the .tflite file.
            num_threads: interpreter threads (>= 1).
            backend: force one of BACKENDS; None picks the first installed.
            trusted: True skips the child-process `preflight` (for files you just made);
                None trusts only when EDGEMNIST_TRUST_MODELS=1.

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a .tflite model, one the interpreter crashes or hangs on, not one
                input and one output, or bad num_threads.
            BackendNotFoundError: no interpreter package is installed.
        """
        if isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)) or num_threads < 1:
            raise ValueError(f"num_threads must be an integer >= 1, got {num_threads!r}")
        self.path = check_tflite_file(path)
        self.num_threads = int(num_threads)
        self.backend = load_backend(backend)
        trusted = trusted_by_environment() if trusted is None else bool(trusted)
        # seconds the child-process check took (None: skipped, or this content passed before)
        self.preflight_seconds = None if trusted else preflight(self.path, self.backend.name, self.num_threads)
        start = time.perf_counter()
        self._interpreter = self._new_interpreter()
        self.init_seconds = time.perf_counter() - start
        inputs, outputs = self._interpreter.get_input_details(), self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(
                f"{self.path}: expected a classifier with one input and one output, "
                f"got {len(inputs)} inputs and {len(outputs)} outputs"
            )
        self.input, self.output = _tensor_spec(inputs[0]), _tensor_spec(outputs[0])
        if len(self.input.shape) < 2:
            raise ValueError(f"{self.path}: input shape {self.input.shape} has no batch dimension")
        self.image_shape = tuple(self.input.shape[1:])
        self._batched = None  # a second interpreter, resized for batches, created on demand
        self._batched_size = 0
        self._single = SingleImagePath(self._interpreter, self.input, self.output, self.image_shape, self.path)
        self._in_index, self._out_index = self.input.index, self.output.index
        self._fast_shapes = {self.input.shape, self.image_shape}

    # ------------------------------------------------------------------ setup

    def _new_interpreter(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite's deprecation notice
            try:
                interpreter = self.backend.interpreter_class(model_path=str(self.path), num_threads=self.num_threads)
                interpreter.allocate_tensors()
            except (ValueError, RuntimeError, SystemError) as exc:
                first = first_line(exc)
                raise ValueError(f"{self.path}: {self.backend.describe()} cannot load it ({first})") from None
        return interpreter

    # ------------------------------------------------------------------ conversions

    def _check_images(self, images, single: bool) -> np.ndarray:
        """float32 array shaped (N,) + image_shape, or ValueError saying what was expected.

        uint8 pixels become pixel / 255 (data.to_model_input's arithmetic)."""
        arr = images if isinstance(images, np.ndarray) else np.asarray(images)
        if arr.dtype == np.uint8:
            arr = pixels_to_unit(arr)
        elif not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(
                f"expected float images in [0, 1] (pixel / 255) or uint8 pixels, got dtype {arr.dtype}"
            )
        shape = self.image_shape
        if arr.shape[-len(shape):] != shape and shape[-1] == 1 and arr.shape[-(len(shape) - 1):] == shape[:-1]:
            arr = arr[..., np.newaxis]  # (N, 28, 28) -> (N, 28, 28, 1)
        if single and arr.shape == shape:
            arr = arr[np.newaxis]
        if arr.ndim != len(shape) + 1 or arr.shape[1:] != shape or (single and arr.shape[0] != 1):
            want = f"one image of shape {shape}" if single else f"a batch of shape (N, {', '.join(map(str, shape))})"
            raise ValueError(f"expected {want}, got shape {tuple(np.shape(images))}")
        if arr.dtype != np.float32 or (single and not arr.flags.c_contiguous):
            arr = np.ascontiguousarray(arr, dtype=np.float32)
        if arr.size and np.maximum.reduce(arr.view(np.uint32), axis=None) > ONE_BITS:
            raise_out_of_range(arr)
        return arr

    def quantize_input(self, images: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        """Checked float images in [0, 1] -> the model's input dtype, from its scale and zero point.

        The rule is `quantize.quantize`'s, computed the fast way (fast_path.py).

        Args:
            images: float32 (N,) + image_shape, already checked.
            out: optional array of the model's input dtype to write into.

        Returns:
            The model input (quantized, or the float images themselves for a float model).
        """
        return self._single.quantize(images, out)

    def dequantize_output(self, raw: np.ndarray) -> np.ndarray:
        """The model's raw output -> float32 scores, from its output scale and zero point."""
        return self._single.dequantize(raw)

    # ------------------------------------------------------------------ inference

    def predict_one(self, image: np.ndarray) -> np.ndarray:
        """Scores of one image: float32 (10,). The low-overhead single-image path.

        An array shaped image_shape or (1,) + image_shape takes the fast path. uint8 pixels
        (what a camera or an image file gives) cost least: one table look-up quantizes them
        straight into the interpreter's input, and no range check is needed. float32 images
        take a range check and three numpy calls to quantize. Then invoke, and one table
        look-up dequantizes the output. Anything else is checked and converted first.

        Args:
            image: float in [0, 1] (pixel / 255) or uint8 pixels, shaped image_shape,
                (1,) + image_shape or (28, 28).

        Raises:
            ValueError: wrong shape or dtype, NaN, or values outside [0, 1]; or the model
                fails to run.
        """
        try:
            if image.__class__ is np.ndarray and image.shape in self._fast_shapes:
                dtype = image.dtype
                if dtype is FLOAT32:
                    return self._single.floats(image)
                if dtype is UINT8:
                    return self._single.pixels(image)
            return self._single.floats(self._check_images(image, single=True))
        except RuntimeError as exc:  # a malformed model (trusted=True skipped the preflight)
            raise self._invoke_error(exc) from None

    def predict_one_reference(self, image: np.ndarray) -> np.ndarray:
        """Scores of one image by the plain path that `predict_one` must equal, bit for bit.

        The interpreter's public API and the plain rule of quantize.py only:
        q = rint(float32(x * float32(1 / scale)) + zero_point) (half to even), clipped to the
        input type's range; set_tensor, invoke, get_tensor; (q - zero_point) * scale. No views into the
        interpreter's buffers, no look-up tables: slower, and there to check the fast path
        (and a new backend) against.

        Args:
            image: as for `predict_one`.

        Raises:
            ValueError: as for `predict_one`.
        """
        batch = self._check_images(image, single=True)
        spec, out = self.input, self.output
        if spec.quantized:
            model_input = quantize(batch, spec.scale, spec.zero_point, spec.dtype)
        else:
            model_input = batch.astype(spec.dtype)
        self._interpreter.set_tensor(self._in_index, model_input)
        try:
            self._interpreter.invoke()
        except RuntimeError as exc:
            raise self._invoke_error(exc) from None
        raw = self._interpreter.get_tensor(self._out_index)[0]
        if out.quantized:
            return dequantize(raw, out.scale, out.zero_point)
        return raw.astype(np.float32)

    def _batch_interpreter(self, batch_size: int):
        """A second interpreter with its input resized to `batch_size` (None if resizing fails)."""
        if self._batched is not None and self._batched_size == batch_size:
            return self._batched
        interpreter = self._new_interpreter()
        try:
            interpreter.resize_tensor_input(self._in_index, [batch_size, *self.image_shape])
            interpreter.allocate_tensors()
            ok = int(interpreter.get_output_details()[0]["shape"][0]) == batch_size
        except (ValueError, RuntimeError):
            ok = False
        self._batched, self._batched_size = (interpreter, batch_size) if ok else (None, 0)
        return self._batched

    def predict(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Scores of many images: float32 (N, 10), run `batch_size` at a time.

        The input tensor of a second interpreter is resized to `batch_size`; the last batch is
        padded with zeros. A model that cannot be resized runs one image at a time.

        Args:
            images: float in [0, 1], shaped (N,) + image_shape or (N, 28, 28).
            batch_size: images per invoke (>= 1).

        Raises:
            ValueError: wrong shape or dtype, NaN, values outside [0, 1], or bad batch_size.
        """
        images = self._check_images(images, single=False)
        batch_size = checked_batch_size(batch_size, images.shape[0])
        interpreter = self._batch_interpreter(batch_size) if batch_size > 1 else None
        if interpreter is None:
            batch_size, interpreter = 1, self._interpreter

        def run_batch(batch_in: np.ndarray) -> np.ndarray:
            interpreter.set_tensor(self._in_index, batch_in)
            try:
                interpreter.invoke()
            except RuntimeError as exc:
                raise self._invoke_error(exc) from None
            return interpreter.get_tensor(self._out_index)

        return scores_in_batches(self, images, batch_size, run_batch)

    def _invoke_error(self, exc: Exception) -> ValueError:
        first = first_line(exc)
        return ValueError(f"{self.path}: {self.backend.describe()} failed running it ({first})")

    # ------------------------------------------------------------------ raw access (benchmarks)

    @property
    def interpreter(self):
        """The underlying batch-1 interpreter (for bare invoke loops in benchmarks).

        Set inputs and invoke as you like, but never resize it or call allocate_tensors:
        predict_one holds views of its input and output buffers.
        """
        return self._interpreter

    def info(self) -> dict:
        """A JSON-ready description: path, backend, threads, input and output tensors."""
        return {
            "path": str(self.path),
            "backend": self.backend.name,
            "backend_version": self.backend.version,
            "threads": self.num_threads,
            "input": self.input.to_json(),
            "output": self.output.to_json(),
        }

    def __repr__(self) -> str:
        return (f"Runner({str(self.path)!r}, input={np.dtype(self.input.dtype).name}{list(self.input.shape)}, "
                f"backend={self.backend.describe()!r}, num_threads={self.num_threads})")
