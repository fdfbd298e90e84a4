"""Run a .tflite image classifier without TensorFlow: `Runner`, float images in, float scores out.

Usage: from edgemnist.runtime import Runner; Runner("model_int8.tflite").predict(images)

Inputs are float32 images in [0, 1] (the one input convention of edgemnist), or uint8
pixels, read as pixel / 255; an int8, uint8 or int16 model gets them quantized with its
own input scale and zero point, and its outputs come back dequantized with its own output
parameters.

The single-image path (`predict_one`) is kept to a few numpy calls with pre-allocated
buffers, written straight into the interpreter's own tensors, so it costs little more than
a bare `interpreter.invoke()` loop (benchmarks/bench_runtime.py). Beside it,
`predict_one_reference` is the plain path it must agree with bit for bit: quantize,
set_tensor, invoke, get_tensor, dequantize.

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
from edgemnist.runtime.preflight import preflight, trusted_by_environment
from edgemnist.runtime.tflite_info import check_tflite_file

# float32 bits of 1.0: a non-negative float32 in [0, 1] has its bits, read as uint32, at
# most this; negative values (sign bit), NaN and infinities all read larger.
_ONE_BITS = np.float32(1.0).view(np.uint32)
# Adding 1.5 * 2**23 to a float32 of magnitude < 2**22 rounds it to an integer (half to
# even, like np.rint) held in the low mantissa bits, so quantization is one multiply, one
# add and an integer cast.
_ROUNDING_MAGIC = 12582912.0
_FLOAT32, _UINT8 = np.dtype(np.float32), np.dtype(np.uint8)  # native-order dtypes are singletons


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
        self._prepare_single_call()

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

    def _prepare_single_call(self) -> None:
        spec = self.input
        self._in_index, self._out_index = spec.index, self.output.index
        self._fast_shapes = {spec.shape, self.image_shape}
        self._in_scale_inv = np.float32(1.0 / spec.scale) if spec.quantized else None
        self._in_offset = np.float32(_ROUNDING_MAGIC + spec.zero_point) if spec.quantized else None
        self._in_clip = None  # set when 1.0 lands just past the integer range (AI Edge int16: 32780 > 32767)
        if spec.quantized:
            info = np.iinfo(spec.dtype)
            lo, hi = spec.zero_point, 1.0 / spec.scale + spec.zero_point
            if info.max + 0.5 < hi <= info.max + 0.01 * (info.max - info.min):
                self._in_clip = np.float32(info.max - spec.zero_point)
                hi = info.max
            if not (spec.scale > 0 and info.min <= lo and hi <= info.max + 0.5 and abs(hi) < 2 ** 22):
                raise ValueError(
                    f"{self.path}: input quantization (scale {spec.scale}, zero point {spec.zero_point}) "
                    f"does not map [0, 1] into {np.dtype(spec.dtype).name}"
                )
        elif not np.issubdtype(spec.dtype, np.floating):
            raise ValueError(
                f"{self.path}: input is {np.dtype(spec.dtype).name} without quantization parameters; "
                "expected float32 or a quantized integer input"
            )
        out = self.output
        self._out_table = None  # 8-bit outputs dequantize by table look-up: one numpy call
        if out.quantized and np.dtype(out.dtype).itemsize == 1:
            info = np.iinfo(out.dtype)
            codes = np.arange(info.min, info.max + 1)
            self._out_table = np.empty(256, np.float32)
            # indexed by the raw codes read as uint8: negative int8 codes wrap to the upper half
            self._out_table[codes.astype(np.uint8)] = (codes.astype(np.float32) - out.zero_point) * np.float32(
                out.scale)
        # uint8 pixel -> model input, computed as pixel / 255 (data.to_model_input) then quantized
        self._pixel_table = self.quantize_input(_pixels_to_unit(np.arange(256, dtype=np.uint8))).astype(spec.dtype)
        self._single_floats, self._single_pixels = self._single_call(direct=True)
        public = self._single_call(direct=False)
        probe = np.linspace(0.0, 1.0, int(np.prod(self.image_shape)), dtype=np.float32).reshape(self.image_shape)
        try:
            agrees = np.array_equal(self._single_floats(probe), public[0](probe))
        except Exception:  # noqa: BLE001 - any trouble with the direct views: use the public API
            agrees = False
        if not agrees:
            self._single_floats, self._single_pixels = public

    def _tensor_views(self):
        """Writable numpy views of the batch-1 input and output buffers, or None.

        `Interpreter.tensor()` makes such views too, but with the interpreter's internal
        wrapper as their base, and `invoke()` refuses to run while one is alive (it guards
        calls that may reallocate, like `allocate_tensors`). This interpreter's tensors are
        allocated once and never resized, so its buffers stay put; the views are checked
        against `get_tensor` here and against the public path in `_prepare_single_call`.
        """
        interpreter = self._interpreter
        wrapper = getattr(interpreter, "_interpreter", None)
        if wrapper is None or not hasattr(wrapper, "tensor"):
            return None
        try:
            views = [wrapper.tensor(interpreter, spec.index) for spec in (self.input, self.output)]
        except Exception:  # noqa: BLE001 - another wrapper signature: no direct views
            return None
        for view, spec in zip(views, (self.input, self.output)):
            if (not isinstance(view, np.ndarray) or view.shape != spec.shape or view.dtype != spec.dtype
                    or not view.flags.c_contiguous):
                return None
        in_view = views[0]
        if not in_view.flags.writeable:
            return None
        probe = (np.arange(in_view.size) % 7).astype(in_view.dtype).reshape(in_view.shape)
        in_view[...] = probe
        if not np.array_equal(interpreter.get_tensor(self.input.index), probe):
            return None
        return views

    def _single_call(self, direct: bool):
        """Two functions of one image (image_shape or (1,) + image_shape) -> float32 scores:
        one for float32 images in [0, 1], one for uint8 pixels.

        Each does as few numpy calls as it can, because beside a model this small every call's
        fixed cost shows (benchmarks/bench_overhead.py), all into buffers made here with the
        image's own shape (broadcasting costs as much as the arithmetic at this size). With `direct`, the input
        is written straight into the interpreter's input buffer and the output read from its
        output buffer; otherwise through set_tensor / get_tensor.
        """
        interpreter, spec, out = self._interpreter, self.input, self.output
        invoke = interpreter.invoke
        views = self._tensor_views() if direct else None
        batch_shape, image_shape = spec.shape, self.image_shape
        ndim = len(batch_shape)
        in_batch = views[0] if views is not None else np.empty(batch_shape, spec.dtype)
        in_image = in_batch.reshape(image_shape)
        table = self._out_table  # indexed by the raw 8-bit codes read as uint8
        if views is not None:
            raw_row = views[1][0].view(np.uint8) if table is not None else views[1][0]

            def run():
                invoke()
                return raw_row
        else:
            in_index, out_index, set_tensor, get_tensor = self._in_index, self._out_index, \
                interpreter.set_tensor, interpreter.get_tensor
            as_codes = table is not None

            def run():
                set_tensor(in_index, in_batch)
                invoke()
                row = get_tensor(out_index)[0]
                return row.view(np.uint8) if as_codes else row

        if table is not None:
            dequantize = table.take
        elif out.quantized:  # 16-bit outputs: arithmetic, which makes a new array
            dequantize = self.dequantize_output
        else:
            def dequantize(raw):
                return raw.astype(np.float32)  # a copy: the buffer is overwritten by the next call

        lut = self._pixel_table

        def pixels(image):
            # every uint8 is a valid pixel: one table look-up quantizes it, no range check
            lut.take(image, None, in_batch if image.ndim == ndim else in_image, "clip")
            return dequantize(run())

        reduce_max, copyto = np.maximum.reduce, np.copyto
        if self._in_scale_inv is None and np.dtype(spec.dtype) == _FLOAT32:
            in_bits = in_batch.view(np.uint32).reshape(-1)

            def floats(image):
                copyto(in_batch if image.ndim == ndim else in_image, image)
                if reduce_max(in_bits, None) > _ONE_BITS:  # checked in place: no view of the image needed
                    _raise_out_of_range(image)
                return dequantize(run())
            return floats, pixels
        if self._in_scale_inv is None:  # a float16 or float64 input
            def floats(image):
                if reduce_max(image.view(np.uint32), None) > _ONE_BITS:
                    _raise_out_of_range(image)
                copyto(in_batch if image.ndim == ndim else in_image, image, casting="same_kind")
                return dequantize(run())
            return floats, pixels

        scale_inv, offset, clip = self._in_scale_inv, self._in_offset, self._in_clip
        # x * scale_inv for x in [0, 1] has bits (as uint32) at most those of scale_inv; a
        # negative x, NaN, infinity or x > 1 reads larger: the range check needs no extra view.
        limit = scale_inv.view(np.uint32)
        batch_buffer, image_buffer = np.empty(batch_shape, np.float32), np.empty(image_shape, np.float32)
        batch_bits, image_bits = batch_buffer.view(np.int32), image_buffer.view(np.int32)
        unsigned = batch_buffer.view(np.uint32).reshape(-1), image_buffer.view(np.uint32).reshape(-1)
        multiply, add, minimum = np.multiply, np.add, np.minimum

        def floats(image):
            if image.ndim == ndim:
                buffer, bits, unsigned_bits, target = batch_buffer, batch_bits, unsigned[0], in_batch
            else:
                buffer, bits, unsigned_bits, target = image_buffer, image_bits, unsigned[1], in_image
            multiply(image, scale_inv, buffer)
            if reduce_max(unsigned_bits, None) > limit:
                _raise_out_of_range(image)
            if clip is not None:
                minimum(buffer, clip, buffer)
            add(buffer, offset, buffer)
            # the rounded integer sits in the low bits; the cast keeps them (two's complement)
            copyto(target, bits, "unsafe")
            return dequantize(run())
        return floats, pixels

    # ------------------------------------------------------------------ conversions

    def _check_images(self, images, single: bool) -> np.ndarray:
        """float32 array shaped (N,) + image_shape, or ValueError saying what was expected.

        uint8 pixels become pixel / 255 (data.to_model_input's arithmetic)."""
        arr = images if isinstance(images, np.ndarray) else np.asarray(images)
        if arr.dtype == np.uint8:
            arr = _pixels_to_unit(arr)
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
        if arr.size and np.maximum.reduce(arr.view(np.uint32), axis=None) > _ONE_BITS:
            _raise_out_of_range(arr)
        return arr

    def quantize_input(self, images: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        """Checked float images in [0, 1] -> the model's input dtype, from its scale and zero point.

        Args:
            images: float32 (N,) + image_shape, already checked.
            out: optional array of the model's input dtype to write into.

        Returns:
            The model input (quantized, or the float images themselves for a float model).
        """
        if self._in_scale_inv is None:
            if out is None:
                return images
            np.copyto(out, images, casting="same_kind")
            return out
        scaled = np.multiply(images, self._in_scale_inv)
        if self._in_clip is not None:
            np.minimum(scaled, self._in_clip, out=scaled)
        np.add(scaled, self._in_offset, out=scaled)
        # the rounded integer sits in the low bits; the cast keeps them (two's complement)
        quantized = scaled.view(np.int32)
        if out is None:
            return quantized.astype(self.input.dtype)
        np.copyto(out, quantized, casting="unsafe")
        return out

    def dequantize_output(self, raw: np.ndarray) -> np.ndarray:
        """The model's raw output -> float32 scores, from its output scale and zero point."""
        if self._out_table is not None:
            return self._out_table[raw]
        if self.output.quantized:
            return ((raw.astype(np.float32) - self.output.zero_point) * np.float32(self.output.scale))
        return raw.astype(np.float32, copy=False)

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
                if dtype is _FLOAT32:
                    return self._single_floats(image)
                if dtype is _UINT8:
                    return self._single_pixels(image)
            return self._single_floats(self._check_images(image, single=True))
        except RuntimeError as exc:  # a malformed model (trusted=True skipped the preflight)
            raise self._invoke_error(exc) from None

    def predict_one_reference(self, image: np.ndarray) -> np.ndarray:
        """Scores of one image by the plain path that `predict_one` must equal, bit for bit.

        The interpreter's public API and textbook arithmetic only: q = rint(x * (1 / scale)
        + zero_point) in float32 (half to even), clipped to the input type's range;
        set_tensor, invoke, get_tensor; (q - zero_point) * scale. No views into the
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
            scaled = (batch * np.float32(1.0 / spec.scale)).astype(np.float64)  # exact from here on
            info = np.iinfo(spec.dtype)
            model_input = np.clip(np.rint(scaled + spec.zero_point), info.min, info.max).astype(spec.dtype)
        else:
            model_input = batch.astype(spec.dtype)
        self._interpreter.set_tensor(self._in_index, model_input)
        try:
            self._interpreter.invoke()
        except RuntimeError as exc:
            raise self._invoke_error(exc) from None
        raw = self._interpreter.get_tensor(self._out_index)[0]
        if out.quantized:
            return (raw.astype(np.float32) - np.float32(out.zero_point)) * np.float32(out.scale)
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
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        images = self._check_images(images, single=False)
        n = images.shape[0]
        batch_size = int(min(batch_size, max(n, 1)))
        interpreter = self._batch_interpreter(batch_size) if batch_size > 1 else None
        if interpreter is None:
            batch_size, interpreter = 1, self._interpreter
        scores = np.empty((n, int(np.prod(self.output.shape[1:]))), np.float32)
        batch_in = np.zeros((batch_size, *self.image_shape), self.input.dtype)
        for start in range(0, n, batch_size):
            chunk = images[start:start + batch_size]
            if chunk.shape[0] < batch_size:
                batch_in[chunk.shape[0]:] = self.quantize_input(np.zeros_like(chunk[:1]))
            self.quantize_input(chunk, out=batch_in[: chunk.shape[0]])
            interpreter.set_tensor(self._in_index, batch_in)
            try:
                interpreter.invoke()
            except RuntimeError as exc:
                raise self._invoke_error(exc) from None
            raw = interpreter.get_tensor(self._out_index)
            scores[start:start + chunk.shape[0]] = self.dequantize_output(raw[: chunk.shape[0]]).reshape(
                chunk.shape[0], -1)
        return scores

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


def _pixels_to_unit(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 pixel / 255, the arithmetic of data.to_model_input (no TensorFlow here)."""
    return pixels.astype(np.float32) / np.float32(255.0)


def _raise_out_of_range(images: np.ndarray) -> None:
    """Raises ValueError describing NaN or values outside [0, 1] (-0.0 passes)."""
    if np.isnan(images).any():
        raise ValueError(f"expected images in [0, 1], got {int(np.isnan(images).sum())} NaN values")
    lo, hi = float(images.min()), float(images.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"expected images in [0, 1] (pixel / 255), got values from {lo:g} to {hi:g}"
        )
