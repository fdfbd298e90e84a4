"""Pick where a .tflite runs: the CPU interpreter (`Runner`) or LiteRT's GPU accelerator (`GpuRunner`).

Usage: from edgemnist.runtime.accelerator import open_runner; open_runner("model_int8.tflite", "gpu").predict(images)

`gpu` runs the file through LiteRT's `CompiledModel` API (ai-edge-litert >= 2) with the GPU
accelerator and the CPU as fallback for the ops the GPU cannot take; which GPU (and Vulkan
driver) that is, and whether a model runs there at all, `edgemnist.runtime.gpu_probe` finds
out once per process in a child process. The runner reports what really ran: the adapter,
whether the model is fully accelerated or which ops fell back to the CPU, and the precision
asked for (`fp16`, LiteRT's default, or `fp32`: enforce_f32).

The GPU accelerator compiles the model for the batch size in its file (1 for edgemnist's
exports) and refuses to resize it, so `GpuRunner.predict` runs one image per call where
resizing fails.
"""
from __future__ import annotations

import contextlib
import numbers
import os
import time
import weakref
from dataclasses import dataclass
from typing import Optional

import numpy as np

from edgemnist.runtime.backend import BACKENDS
from edgemnist.runtime.gpu_probe import (
    DEVICE,
    GPU_PRECISIONS,  # the runner's precisions: this module's API too
    AcceleratorUnavailableError,
    captured_native_stderr,
    check_precision,
    compile_model,
    compiled_model_api,
    exit_chatter_to_log,
    litert_message,
    parse_fallback,
    probe_model,
)
from edgemnist.runtime.interpreter import Runner, checked_batch_size, scores_in_batches
from edgemnist.runtime.preflight import trusted_by_environment

ACCELERATORS = ("cpu", "gpu")  # "npu" would join here (LiteRT's HardwareAccelerator.NPU)
# The defaults every command, config and function that runs a .tflite takes, written once: the CPU
# interpreter runs everywhere; fp16 is LiteRT's own default on the GPU.
DEFAULT_ACCELERATOR = "cpu"
DEFAULT_GPU_PRECISION = "fp16"


@dataclass(frozen=True)
class RuntimeSettings:
    """Where and how a .tflite runs: the one object every command that runs a .tflite takes (eval, bench,
    compare, predict, serve: their configs' `runtime`), so the defaults below are written here once and the
    checks run once, where the settings are made.

    Usage: RuntimeSettings(threads=2).open("model_int8.tflite").predict(images)

    Raises:
        ValueError: naming the first bad field and its value.
    """

    accelerator: str = DEFAULT_ACCELERATOR  # where the model runs: one of ACCELERATORS
    gpu_precision: str = DEFAULT_GPU_PRECISION  # with accelerator "gpu": fp16 (LiteRT's default) or fp32 (enforce_f32)
    threads: int = 1  # interpreter threads (on the GPU: for the ops that fall back to the CPU)
    backend: Optional[str] = None  # force an interpreter package, one of runtime.BACKENDS; None: the first installed

    def __post_init__(self):
        if self.accelerator not in ACCELERATORS:
            raise ValueError(f"accelerator must be one of {', '.join(ACCELERATORS)}, got {self.accelerator!r}")
        if self.gpu_precision not in GPU_PRECISIONS:
            raise ValueError(f"gpu_precision must be one of {', '.join(GPU_PRECISIONS)}, got {self.gpu_precision!r}")
        # a whole number: a bool or a float would reach the interpreter as something it does not take
        if isinstance(self.threads, bool) or not isinstance(self.threads, numbers.Integral):
            raise ValueError(f"threads must be an integer >= 1, got {self.threads!r}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.backend is not None and self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")

    def open(self, path, trusted: Optional[bool] = None):
        """A `Runner` or `GpuRunner` of the .tflite at `path` with these settings (open_runner's errors)."""
        return open_runner(path, self.accelerator, num_threads=self.threads, backend=self.backend,
                           gpu_precision=self.gpu_precision, trusted=trusted)

    def to_json(self) -> dict:
        """{"accelerator", "gpu_precision", "threads", "backend"}: the settings as given (a result's own
        "threads", "backend" and "accelerator" say what ran)."""
        return {"accelerator": self.accelerator, "gpu_precision": self.gpu_precision, "threads": int(self.threads),
                "backend": self.backend}


@contextlib.contextmanager
def explicit_accelerator():
    """An accelerator asked for on the command line that cannot run here is the user's set-up, like bad
    input: a ValueError, so the command exits 2 with one line (what is missing, what to install). Every
    command taking --accelerator opens its models inside this (eval, bench, predict, serve).

    Usage: with explicit_accelerator(): runner = open_runner(path, args.accelerator)
    """
    try:
        yield
    except AcceleratorUnavailableError as exc:
        raise ValueError(str(exc)) from None


# --------------------------------------------------------------------------- the runner


class _GpuInvoker:
    """`set_tensor(index, array)` and `invoke()` on a compiled model, for the bare invoke loops of bench and compare.

    `invoke` runs the model and reads its scores back, which waits for the GPU: a latency
    without the read-back would time only the submission.
    """

    def __init__(self, runner: "GpuRunner"):
        # a proxy, not a reference: no cycle, so the runner and LiteRT's environment are freed (and log
        # their teardown) as soon as the caller drops the runner, while its output is still captured
        self._runner = weakref.proxy(runner)

    def set_tensor(self, index: int, array: np.ndarray) -> None:
        self._runner._write(self._runner._inputs, array)

    def invoke(self) -> None:
        self._runner._run(self._runner._model, self._runner._inputs, self._runner._outputs, 1)


class GpuRunner:
    """Runs a .tflite image classifier on LiteRT's GPU accelerator, with `Runner`'s predict interface.

    The input and output conventions (float images in [0, 1] or uint8 pixels in, float
    scores out, quantized with the model's own parameters) are `Runner`'s: a CPU `Runner`
    of the same file holds them, and runs nothing here.

    Attributes:
        path, backend, num_threads, input, output, image_shape: as for `Runner`.
        accelerator: "gpu".
        precision: "fp16" (LiteRT's default: the GPU may compute in half precision) or "fp32".
        device: the GpuDevice that ran it.
        fully_accelerated: LiteRT's `is_fully_accelerated()`.
        fallback: parse_fallback's dict: ops left to the CPU and why.
        init_seconds: start-up: model load and shader compilation, and the first run.
        max_batch: the largest batch one run takes (1 where the compiled model cannot be resized).
    """

    accelerator = "gpu"

    def __init__(self, path: str | os.PathLike, precision: str = DEFAULT_GPU_PRECISION, num_threads: int = 1,
                 backend: Optional[str] = None, trusted: Optional[bool] = None):
        """Loads a .tflite model onto the GPU accelerator.

        Args:
            path: the .tflite file.
            precision: "fp16" (default) or "fp32" (enforce_f32).
            num_threads: CPU threads for ops that fall back to the CPU.
            backend: must be None or "ai_edge_litert" (the only package with the GPU accelerator).
            trusted: True skips the child-process check of this file (the driver is still chosen
                by a child once per process); None trusts only when EDGEMNIST_TRUST_MODELS=1.

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a usable .tflite, or one the GPU accelerator cannot load or run.
            AcceleratorUnavailableError: no ai-edge-litert >= 2, or no usable GPU or Vulkan driver.
        """
        self.precision = check_precision(precision)
        if backend not in (None, "ai_edge_litert"):
            raise AcceleratorUnavailableError(
                f"the GPU accelerator runs on ai-edge-litert's CompiledModel API, not on backend {backend}")
        self._cpu = Runner(path, num_threads=num_threads, backend=backend, trusted=trusted)
        if self._cpu.backend.name != "ai_edge_litert":
            compiled_model_api()
            raise AcceleratorUnavailableError(
                f"the GPU accelerator needs ai-edge-litert >= 2; the interpreter in use is {self._cpu.backend.describe()}")
        self.path, self.backend, self.num_threads = self._cpu.path, self._cpu.backend, self._cpu.num_threads
        self.input, self.output, self.image_shape = self._cpu.input, self._cpu.output, self._cpu.image_shape
        trusted = trusted_by_environment() if trusted is None else bool(trusted)
        probe = probe_model(self.path, self.precision) if not trusted or "device" not in DEVICE else None
        if probe is not None and not probe["ok"]:
            raise ValueError(f"{self.path}: LiteRT's GPU accelerator cannot run it ({probe['error']})")
        self.device = DEVICE["device"]
        exit_chatter_to_log()
        start = time.perf_counter()
        with captured_native_stderr() as log:
            try:
                self._model, self._inputs, self._outputs = self._new_model(1)
                self._run(self._model, self._inputs, self._outputs, 1)
            except RuntimeError as exc:
                raise ValueError(f"{self.path}: LiteRT's GPU accelerator cannot run it ({litert_message(exc)})") from None
        self.init_seconds = time.perf_counter() - start
        self.fully_accelerated = bool(self._model.is_fully_accelerated())
        text = log[0] + (probe["stderr"] if probe else "")
        self.fallback = parse_fallback(text)
        self._batched = {}  # batch size -> (model, inputs, outputs), or None where resizing failed
        self.max_batch = 1
        self._invoker = _GpuInvoker(self)

    # ------------------------------------------------------------------ the compiled model

    def _new_model(self, batch_size: int):
        model = compile_model(str(self.path), self.precision, self.num_threads)
        if batch_size != 1:
            model.resize_input_tensor(0, [batch_size, *self.image_shape], strict=False)
        return model, model.create_input_buffers(0), model.create_output_buffers(0)

    def _write(self, buffers, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        buffers[0].write(array.view(np.uint8) if array.dtype == np.int16 else array)

    def _run(self, model, inputs, outputs, count: int) -> np.ndarray:
        """Runs the model once and reads `count` images' raw outputs back (which waits for the GPU)."""
        model.run_by_index(0, inputs, outputs)
        size = count * int(np.prod(self.output.shape[1:]))
        dtype = np.dtype(self.output.dtype)
        if dtype == np.int16:
            return np.asarray(outputs[0].read(size * 2, np.uint8)).view(np.int16)
        return np.asarray(outputs[0].read(size, dtype))

    def _batch_model(self, batch_size: int):
        """A second compiled model taking `batch_size` images per run, or None when the accelerator refuses."""
        if batch_size not in self._batched and DEVICE.get("refuses_batches"):
            self._batched[batch_size] = None  # the accelerator compiles one input shape: refused before
        if batch_size not in self._batched:
            with captured_native_stderr():
                try:
                    model, inputs, outputs = self._new_model(batch_size)
                    self._write(inputs, np.zeros((batch_size, *self.image_shape), self.input.dtype))
                    self._run(model, inputs, outputs, batch_size)
                    self._batched[batch_size] = (model, inputs, outputs)
                    self.max_batch = max(self.max_batch, batch_size)
                except RuntimeError:
                    self._batched[batch_size] = None
                    DEVICE["refuses_batches"] = True  # a property of the accelerator, not of this model
        return self._batched[batch_size]

    # ------------------------------------------------------------------ Runner's interface

    def quantize_input(self, images: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        """As `Runner.quantize_input`."""
        return self._cpu.quantize_input(images, out=out)

    def dequantize_output(self, raw: np.ndarray) -> np.ndarray:
        """As `Runner.dequantize_output`."""
        return self._cpu.dequantize_output(raw)

    def predict_one(self, image: np.ndarray) -> np.ndarray:
        """Scores of one image: float32 (10,), run on the GPU accelerator.

        Args:
            image: float in [0, 1] or uint8 pixels, shaped image_shape, (1,) + image_shape or (28, 28).

        Raises:
            ValueError: wrong shape or dtype, NaN, values outside [0, 1], or the model fails to run.
        """
        checked = self._cpu._check_images(image, single=True)
        self._write(self._inputs, self.quantize_input(checked))
        try:
            raw = self._run(self._model, self._inputs, self._outputs, 1)
        except RuntimeError as exc:
            raise ValueError(f"{self.path}: LiteRT's GPU accelerator failed running it ({litert_message(exc)})") from None
        return self.dequantize_output(raw).reshape(-1)

    def predict(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Scores of many images: float32 (N, 10), `batch_size` per run where the accelerator takes a batch.

        Args:
            images: float in [0, 1], shaped (N,) + image_shape or (N, 28, 28).
            batch_size: images per run (>= 1); the compiled model is tried at that size once, and
                one image per run is used where it cannot be resized (see `max_batch`).

        Raises:
            ValueError: wrong shape or dtype, NaN, values outside [0, 1], bad batch_size, or a failed run.
        """
        images = self._cpu._check_images(images, single=False)
        batch_size = checked_batch_size(batch_size, images.shape[0])
        compiled = self._batch_model(batch_size) if batch_size > 1 else None
        if compiled is None:
            batch_size, compiled = 1, (self._model, self._inputs, self._outputs)
        model, inputs, outputs = compiled

        def run_batch(batch_in: np.ndarray) -> np.ndarray:
            self._write(inputs, batch_in)
            try:
                return self._run(model, inputs, outputs, batch_size).reshape(batch_size, -1)
            except RuntimeError as exc:
                raise ValueError(f"{self.path}: LiteRT's GPU accelerator failed running it ({litert_message(exc)})") from None

        return scores_in_batches(self, images, batch_size, run_batch)

    @property
    def interpreter(self) -> _GpuInvoker:
        """set_tensor/invoke on the batch-1 compiled model, for bare invoke loops (bench, compare)."""
        return self._invoker

    def accelerator_info(self) -> dict:
        """What really ran, JSON-ready: accelerator, device, precision, acceleration and fallback, start-up."""
        return {
            "name": "gpu",
            "api": "LiteRT CompiledModel (GPU accelerator, CPU fallback)",
            **self.device.to_json(),
            "precision": self.precision,
            "fully_accelerated": self.fully_accelerated,
            "gpu_ops": self.fallback["gpu_ops"],
            "cpu_ops": self.fallback["cpu_ops"],
            "fallback_ops": self.fallback["unsupported"],
            "max_batch": self.max_batch,
            "startup_ms": round(self.init_seconds * 1000.0, 3),
        }

    def info(self) -> dict:
        """`Runner.info` plus "accelerator" (accelerator_info)."""
        return dict(self._cpu.info(), accelerator=self.accelerator_info())

    def __repr__(self) -> str:
        return (f"GpuRunner({str(self.path)!r}, adapter={self.device.name!r}, precision={self.precision!r}, "
                f"fully_accelerated={self.fully_accelerated})")


def describe_device(info: dict) -> str:
    """One line naming what ran: `SwiftShader Device (Subzero) (software GPU: a CPU's speed), fp16, fully accelerated`."""
    kind = "software GPU: a CPU's speed, not a GPU's" if info.get("software") else info.get("adapter_type", "GPU")
    if info.get("fully_accelerated"):
        where = "fully accelerated"
    else:
        ops = ", ".join(sorted({f["op"] for f in info.get("fallback_ops") or []})) or "some ops"
        counts = (f"{info['cpu_ops']} of {info['cpu_ops'] + info['gpu_ops']} ops"
                  if info.get("cpu_ops") is not None and info.get("gpu_ops") is not None else "ops")
        where = f"NOT fully accelerated: {counts} on the CPU ({ops})"
    return f"{info.get('adapter', '?')} ({kind}), {info.get('precision')}, {where}"


def open_runner(path, accelerator: str = DEFAULT_ACCELERATOR, num_threads: int = 1, backend: Optional[str] = None,
                trusted: Optional[bool] = None, gpu_precision: str = DEFAULT_GPU_PRECISION):
    """A `Runner` (cpu) or `GpuRunner` (gpu) of a .tflite file.

    Args:
        path: the .tflite file.
        accelerator: one of ACCELERATORS.
        num_threads: interpreter threads (on the GPU: for the ops that fall back to the CPU).
        backend: force an interpreter package (runtime.BACKENDS).
        trusted: as for `Runner`.
        gpu_precision: with "gpu": one of GPU_PRECISIONS.

    Raises:
        ValueError: unknown accelerator or precision, or a model it cannot run.
        AcceleratorUnavailableError: the accelerator cannot run here (what is missing, what to install).
    """
    if accelerator not in ACCELERATORS:
        raise ValueError(f"accelerator must be one of {', '.join(ACCELERATORS)}, got {accelerator!r}")
    check_precision(gpu_precision)
    if accelerator == "gpu":
        return GpuRunner(path, precision=gpu_precision, num_threads=num_threads, backend=backend, trusted=trusted)
    return Runner(path, num_threads=num_threads, backend=backend, trusted=trusted)
