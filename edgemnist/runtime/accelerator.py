"""Pick where a .tflite runs: the CPU interpreter (`Runner`) or LiteRT's GPU accelerator (`GpuRunner`).

Usage: from edgemnist.runtime.accelerator import open_runner; open_runner("model_int8.tflite", "gpu").predict(images)

`gpu` runs the file through LiteRT's `CompiledModel` API (ai-edge-litert >= 2) with the GPU
accelerator and the CPU as fallback for the ops the GPU cannot take. On Linux that
accelerator is WebGPU (Dawn) over Vulkan, so it needs a Vulkan driver Dawn accepts: a real
GPU's, or Google's SwiftShader, a software Vulkan device running on the CPU (Debian:
`apt-get install chromium-common libvulkan1`, which installs
/usr/lib/chromium/vk_swiftshader_icd.json). Mesa's lavapipe is not accepted by Dawn.

Which Vulkan driver: VK_ICD_FILENAMES when the caller set it, else EDGEMNIST_VULKAN_ICD (a
driver's ICD JSON), else the system's drivers and, when Dawn finds no adapter there,
SwiftShader at its Debian path. The choice is made once per process by a child process
that loads the first model (a driver or a model can crash natively; the child takes the
crash), and it is reported with what really ran: the adapter Dawn selected (name, software
or hardware), whether the model is fully accelerated or which ops fell back to the CPU, and
the precision asked for (`fp16`, LiteRT's default, or `fp32`: enforce_f32).

The GPU accelerator compiles the model for the batch size in its file (1 for edgemnist's
exports) and refuses to resize it, so `GpuRunner.predict` runs one image per call where
resizing fails. Dawn, Vulkan and LiteRT write their own lines straight to file descriptor
2; they are passed on there (the command's log, see `edgemnist.console`) and read for the
adapter and fallback lines.
"""
from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import re
import signal
import stat
import subprocess
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from edgemnist.runtime.backend import load_backend
from edgemnist.runtime.interpreter import Runner, checked_batch_size, scores_in_batches
from edgemnist.runtime.preflight import PREFLIGHT_TIMEOUT_S, module_command, trusted_by_environment

ACCELERATORS = ("cpu", "gpu")  # "npu" would join here (LiteRT's HardwareAccelerator.NPU)
GPU_PRECISIONS = ("fp16", "fp32")  # fp16: LiteRT's default; fp32: GpuOptions(enforce_f32=True)
# A Vulkan driver's ICD JSON to use for the GPU accelerator (when VK_ICD_FILENAMES is not set).
VULKAN_ICD_ENV = "EDGEMNIST_VULKAN_ICD"
# Where Debian's chromium-common puts SwiftShader's Vulkan driver: the fallback when the
# system's drivers give Dawn no adapter.
SWIFTSHADER_ICD = "/usr/lib/chromium/vk_swiftshader_icd.json"
INSTALL_HINT = (f"install your GPU's Vulkan driver, or the software one (SwiftShader: apt-get install "
                f"chromium-common libvulkan1), or set {VULKAN_ICD_ENV} to a Vulkan driver's ICD JSON")
CHILD_MODULE = "edgemnist.runtime.accelerator"
OK_MARKER = "EDGEMNIST_GPU_OK"
ERROR_MARKER = "EDGEMNIST_GPU_ERROR"
_ADAPTER_LINE = re.compile(r"Selected adapter: (?P<name>.*?), arch=(?P<arch>[^,]*), vendor=(?P<vendor>[^,]*), "
                           r"backend=(?P<backend>[^,]*), adapterType=(?P<type>[^\n]*)")
_SPLIT_LINE = re.compile(r"(\d+) operations? will run on the GPU, and the remaining (\d+) operations? will run on the CPU")
_UNSUPPORTED_HEADER = "Following operations are not supported by GPU delegate:"
# Lines of Dawn and the Vulkan loader that say why no adapter was found.
_NO_DEVICE_MARKERS = ("No adapters found", "Failed to initialize WebGPU environment", "Found no drivers")

# Per process: the chosen device (GpuDevice), or the reason none works (str).
_DEVICE: dict = {}
# (sha256, precision) -> the child's probe of that model (a dict), for the rest of the process.
_PROBES: dict = {}


class AcceleratorUnavailableError(RuntimeError):
    """The asked-for accelerator cannot run here: no package, no driver, no device.

    Attributes:
        reason: what is missing and what to install, without the accelerator's name (for
            reports that say "gpu: not available (reason)").
    """

    def __init__(self, reason: str, accelerator: str = "gpu"):
        super().__init__(f"{accelerator} not available: {reason}")
        self.reason = reason


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


@dataclass(frozen=True)
class GpuDevice:
    """The WebGPU adapter Dawn selected, and the Vulkan driver that gave it."""

    name: str  # e.g. "SwiftShader Device (Subzero)"
    vendor: str
    backend: str  # Dawn's backend: "Vulkan"
    adapter_type: str  # Dawn's adapterType: "CPU / Software", "Discrete GPU", ...
    icd: Optional[str]  # the ICD JSON set in VK_ICD_FILENAMES; None: the system's drivers

    @property
    def software(self) -> bool:
        """True for a CPU emulating a GPU (SwiftShader): its speed is a CPU's, not a GPU's."""
        kind = self.adapter_type.lower()
        return "software" in kind or "cpu" in kind

    def to_json(self) -> dict:
        """A JSON-ready description."""
        return {"adapter": self.name, "vendor": self.vendor, "backend": self.backend,
                "adapter_type": self.adapter_type, "software": self.software, "vulkan_icd": self.icd}


def parse_adapter(text: str) -> Optional[dict]:
    """The adapter Dawn logged ("Selected adapter: ..."), as {"name", "vendor", "backend", "adapter_type"}, or None."""
    match = _ADAPTER_LINE.search(text)
    if not match:
        return None
    return {"name": match["name"].strip(), "vendor": match["vendor"].strip(), "backend": match["backend"].strip(),
            "adapter_type": match["type"].strip()}


def parse_fallback(text: str) -> dict:
    """What LiteRT's GPU delegate logged about ops it left to the CPU.

    Returns:
        {"gpu_ops", "cpu_ops" (None when not logged), "unsupported": [{"op", "reason"}]}.
    """
    unsupported = []
    if _UNSUPPORTED_HEADER in text:
        for line in text.split(_UNSUPPORTED_HEADER, 1)[1].splitlines()[1:]:
            op, sep, reason = line.partition(":")
            if not sep or not re.fullmatch(r"[A-Z0-9_]+", op.strip()):
                break
            unsupported.append({"op": op.strip(), "reason": reason.strip()})
    split = _SPLIT_LINE.search(text)
    return {"gpu_ops": int(split[1]) if split else None, "cpu_ops": int(split[2]) if split else None,
            "unsupported": unsupported}


def litert_message(exc: BaseException) -> str:
    """A LiteRT exception's text on one line, without its source locations (`ERROR: [file.h:12]`, `└`)."""
    text = re.sub(r"(ERROR: )?\[[^\]]*\.(h|cc):\d+\]", " ", str(exc)).replace("└", " ")
    return " ".join(text.split()) or type(exc).__name__


def native_error(text: str) -> Optional[str]:
    """The first error line LiteRT or Dawn logged (absl's `E0000 ... file.cc:123] message`), or None."""
    match = re.search(r"^E\d{4} [^\]]*\] (?P<message>.+)$", text, re.MULTILINE)
    return match["message"].strip() if match else None


def _no_device_reason(text: str) -> Optional[str]:
    """Why Dawn found no adapter, from its log, or None when it found one."""
    if not any(marker in text for marker in _NO_DEVICE_MARKERS) or parse_adapter(text):
        return None
    details = [line.strip() for line in text.splitlines()
               if line.strip().startswith("Warning: Vulkan") or "Found no drivers" in line]
    return details[0].removeprefix("Warning: ") if details else "No adapters found"


@contextlib.contextmanager
def captured_native_stderr() -> Iterator[list]:
    """Reads what native code writes to file descriptor 2 during the block, and passes it on there.

    Yields a list that holds the captured text once the block ends. The text is written to
    the original descriptor 2 afterwards (the command's log, or the terminal with --verbose).
    """
    holder: list = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield holder
        finally:
            with contextlib.suppress(Exception):
                import ctypes

                ctypes.CDLL(None).fflush(None)
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            raw = capture.read()
            with contextlib.suppress(OSError):
                os.write(2, raw)
            holder.append(raw.decode("utf-8", errors="replace"))


def _exit_chatter_to_log() -> None:
    """Sends what LiteRT logs at process exit (its GPU environment's teardown) to the log fd 2 points at now.

    Called while a command's native output is captured: fd 2 is then that command's log file.
    Nothing changes when fd 2 is a terminal (`--verbose`) or the hook is already in place.
    """
    if _DEVICE.get("exit_hook"):
        return
    try:
        if not stat.S_ISREG(os.fstat(2).st_mode):
            return
        log_fd = os.dup(2)
    except OSError:
        return
    _DEVICE["exit_hook"] = True

    def redirect():
        with contextlib.suppress(OSError):
            sys.stderr.flush()
            os.dup2(log_fd, 2)

    atexit.register(redirect)


def prepare_environment() -> None:
    """Gives Dawn a private XDG_RUNTIME_DIR when there is none (it complains without one)."""
    current = os.environ.get("XDG_RUNTIME_DIR")
    if not current or not os.path.isdir(current):
        os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="edgemnist-xdg-")  # mode 0700


def _compiled_model_api():
    """(CompiledModel, HardwareAccelerator, Options, GpuOptions, CpuOptions) of ai-edge-litert >= 2."""
    try:
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator
        from ai_edge_litert.options import CpuOptions, GpuOptions, Options
    except ImportError:
        try:
            installed = load_backend().describe()
        except ImportError:
            installed = "no interpreter package"
        raise AcceleratorUnavailableError(
            f"the GPU accelerator needs ai-edge-litert >= 2 (LiteRT's CompiledModel API); installed: {installed}; "
            "pip install 'ai-edge-litert>=2'") from None
    return CompiledModel, HardwareAccelerator, Options, GpuOptions, CpuOptions


def _compile(path: str, precision: str, num_threads: int = 1):
    """A CompiledModel of `path` on the GPU accelerator, the CPU taking the ops the GPU cannot."""
    CompiledModel, HardwareAccelerator, Options, GpuOptions, CpuOptions = _compiled_model_api()
    options = Options(hardware_accelerators=HardwareAccelerator.GPU | HardwareAccelerator.CPU,
                      cpu_options=CpuOptions(num_threads=num_threads),
                      gpu_options=GpuOptions(enforce_f32=precision == "fp32"))
    return CompiledModel.from_file(str(path), options=options)


def _check_precision(precision: str) -> str:
    if precision not in GPU_PRECISIONS:
        raise ValueError(f"gpu precision must be one of {', '.join(GPU_PRECISIONS)}, got {precision!r}")
    return precision


# --------------------------------------------------------------------------- the child process


def _child_main(argv: list) -> int:
    """python -m edgemnist.runtime.accelerator MODEL PRECISION: compile on the GPU, run one image, report."""
    path, precision = argv
    try:
        prepare_environment()
        model = _compile(path, precision)
        inputs, outputs = model.create_input_buffers(0), model.create_output_buffers(0)
        details = inputs[0].get_tensor_details()
        blank = np.zeros(details["shape"], np.dtype(details["dtype"]))
        inputs[0].write(blank.view(np.uint8) if blank.dtype == np.int16 else blank)
        model.run_by_index(0, inputs, outputs)
        print(OK_MARKER, json.dumps({"fully_accelerated": bool(model.is_fully_accelerated())}), flush=True)
    except Exception as exc:  # noqa: BLE001 - every failure is reported to the parent, which decides
        message = litert_message(exc)
        print(ERROR_MARKER, type(exc).__name__, message, flush=True)
    return 0


def _run_child(path: Path, precision: str, icd: Optional[str]) -> dict:
    """Runs the child on `path` with VK_ICD_FILENAMES=icd (None: as this process has it).

    Returns:
        {"ok", "fully_accelerated", "error", "stderr", "crashed"}.
    """
    command, env = module_command(CHILD_MODULE, str(path), precision)
    if icd:
        env["VK_ICD_FILENAMES"] = icd
    try:
        result = subprocess.run(command, capture_output=True, text=True, errors="replace", env=env,
                                timeout=PREFLIGHT_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return {"ok": False, "error": f"the GPU accelerator hung loading or running it (no result in "
                                      f"{PREFLIGHT_TIMEOUT_S:g} s)", "stderr": stderr, "crashed": True}
    with contextlib.suppress(OSError):
        sys.stderr.flush()
        os.write(2, result.stderr.encode("utf-8", errors="replace"))  # the child's native chatter: to the log
    probe = {"ok": False, "fully_accelerated": None, "error": None, "stderr": result.stderr, "crashed": False}
    if result.returncode < 0 or result.returncode > 128:
        number = -result.returncode if result.returncode < 0 else result.returncode - 128
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        probe.update(error=f"the GPU accelerator crashed loading or running it ({name})", crashed=True)
    elif OK_MARKER in result.stdout:
        probe.update(ok=True, **json.loads(result.stdout.split(OK_MARKER, 1)[1].strip().splitlines()[0]))
    elif ERROR_MARKER in result.stdout:
        reported = result.stdout.split(ERROR_MARKER, 1)[1].strip().splitlines()[0]
        probe["error"] = reported.partition(" ")[2]
        detail = native_error(result.stderr)
        if detail and detail not in probe["error"]:
            probe["error"] = f"{probe['error']}: {detail}"
    else:
        probe["error"] = f"the GPU check exited with status {result.returncode}: {result.stderr.strip()[-300:]}"
    return probe


def _candidate_icds() -> list:
    """The Vulkan drivers to try, in order: None means the process's own setting or the system's drivers."""
    if os.environ.get("VK_ICD_FILENAMES") or os.environ.get("VK_DRIVER_FILES"):
        return [None]
    chosen = os.environ.get(VULKAN_ICD_ENV)
    if chosen:
        if not Path(chosen).is_file():
            raise AcceleratorUnavailableError(f"{VULKAN_ICD_ENV}={chosen}: no such Vulkan ICD file; {INSTALL_HINT}")
        return [chosen]
    return [None] + ([SWIFTSHADER_ICD] if Path(SWIFTSHADER_ICD).is_file() else [])


def probe_model(path: Path, precision: str) -> dict:
    """Loads and runs `path` on the GPU accelerator in a child process, choosing the Vulkan driver once.

    The first call in a process tries the drivers of `_candidate_icds` until Dawn finds an
    adapter, then keeps that driver (VK_ICD_FILENAMES in this process's environment) for
    every later model. The outcome is remembered per file content and precision.

    Returns:
        {"ok", "fully_accelerated", "error", "stderr", "crashed", "device": GpuDevice}.

    Raises:
        AcceleratorUnavailableError: no driver gives an adapter (the reason and what to install).
    """
    prepare_environment()
    _compiled_model_api()
    if "reason" in _DEVICE:
        raise AcceleratorUnavailableError(_DEVICE["reason"])
    key = (hashlib.sha256(Path(path).read_bytes()).hexdigest(), precision)
    if key in _PROBES:
        return _PROBES[key]
    candidates = [None] if "device" in _DEVICE else _candidate_icds()
    reasons = []
    for icd in candidates:
        probe = _run_child(Path(path), precision, icd)
        no_device = _no_device_reason(probe["stderr"]) if not probe["ok"] else None
        if no_device:
            driver = icd or os.environ.get("VK_ICD_FILENAMES") or os.environ.get("VK_DRIVER_FILES")
            where = f"VK_ICD_FILENAMES={driver}" if driver else "the system's Vulkan drivers"
            reasons.append(f"Dawn found no WebGPU adapter with {where} ({no_device})")
            continue
        if "device" not in _DEVICE:
            adapter = parse_adapter(probe["stderr"])
            if adapter is None and not probe["ok"]:
                return _PROBES.setdefault(key, dict(probe, device=None))  # the model failed before Dawn ran
            adapter = adapter or {"name": "unknown adapter", "vendor": "?", "backend": "?", "adapter_type": "?"}
            if icd:
                os.environ["VK_ICD_FILENAMES"] = icd
            _DEVICE["device"] = GpuDevice(adapter["name"], adapter["vendor"], adapter["backend"],
                                          adapter["adapter_type"], os.environ.get("VK_ICD_FILENAMES") or None)
        _PROBES[key] = dict(probe, device=_DEVICE["device"])
        return _PROBES[key]
    _DEVICE["reason"] = "; ".join(reasons) + f"; {INSTALL_HINT}"
    raise AcceleratorUnavailableError(_DEVICE["reason"])


def forget_device() -> None:
    """Forgets the chosen Vulkan driver and the probed models (for tests that change the environment)."""
    hook = _DEVICE.get("exit_hook")
    _DEVICE.clear()  # the batch refusal too: another driver may take batches
    if hook:
        _DEVICE["exit_hook"] = hook
    _PROBES.clear()


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

    def __init__(self, path: str | os.PathLike, precision: str = "fp16", num_threads: int = 1,
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
        self.precision = _check_precision(precision)
        if backend not in (None, "ai_edge_litert"):
            raise AcceleratorUnavailableError(
                f"the GPU accelerator runs on ai-edge-litert's CompiledModel API, not on backend {backend}")
        self._cpu = Runner(path, num_threads=num_threads, backend=backend, trusted=trusted)
        if self._cpu.backend.name != "ai_edge_litert":
            _compiled_model_api()
            raise AcceleratorUnavailableError(
                f"the GPU accelerator needs ai-edge-litert >= 2; the interpreter in use is {self._cpu.backend.describe()}")
        self.path, self.backend, self.num_threads = self._cpu.path, self._cpu.backend, self._cpu.num_threads
        self.input, self.output, self.image_shape = self._cpu.input, self._cpu.output, self._cpu.image_shape
        trusted = trusted_by_environment() if trusted is None else bool(trusted)
        probe = probe_model(self.path, self.precision) if not trusted or "device" not in _DEVICE else None
        if probe is not None and not probe["ok"]:
            raise ValueError(f"{self.path}: LiteRT's GPU accelerator cannot run it ({probe['error']})")
        self.device = _DEVICE["device"]
        _exit_chatter_to_log()
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
        model = _compile(str(self.path), self.precision, self.num_threads)
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
        if batch_size not in self._batched and _DEVICE.get("refuses_batches"):
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
                    _DEVICE["refuses_batches"] = True  # a property of the accelerator, not of this model
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


def open_runner(path, accelerator: str = "cpu", num_threads: int = 1, backend: Optional[str] = None,
                trusted: Optional[bool] = None, gpu_precision: str = "fp16"):
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
    _check_precision(gpu_precision)
    if accelerator == "gpu":
        return GpuRunner(path, precision=gpu_precision, num_threads=num_threads, backend=backend, trusted=trusted)
    return Runner(path, num_threads=num_threads, backend=backend, trusted=trusted)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: python -m edgemnist.runtime.accelerator MODEL.tflite fp16|fp32", file=sys.stderr)
        sys.exit(2)
    sys.exit(_child_main(sys.argv[1:]))
