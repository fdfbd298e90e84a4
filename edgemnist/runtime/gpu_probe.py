"""Which GPU runs here, and whether a model runs on it: LiteRT's GPU accelerator probed in a child process.

Usage: from edgemnist.runtime.gpu_probe import probe_model; probe_model(Path("model_int8.tflite"), "fp16")["device"]

LiteRT's GPU accelerator on Linux is WebGPU (Dawn) over Vulkan, so it needs a Vulkan driver Dawn
accepts: a real GPU's, or Google's SwiftShader, a software Vulkan device running on the CPU
(Debian: `apt-get install chromium-common libvulkan1`, which installs
/usr/lib/chromium/vk_swiftshader_icd.json). Mesa's lavapipe is not accepted by Dawn.

Which Vulkan driver: VK_ICD_FILENAMES when the caller set it, else EDGEMNIST_VULKAN_ICD (a
driver's ICD JSON), else the system's drivers and, when Dawn finds no adapter there,
SwiftShader at its Debian path. The choice is made once per process by a child process
that loads the first model (a driver or a model can crash natively; the child takes the
crash), and it is reported with what really ran: the adapter Dawn selected (name, software
or hardware), whether the model is fully accelerated or which ops fell back to the CPU.
Dawn, Vulkan and LiteRT write their own lines straight to file descriptor 2; they are passed
on there (the command's log, see `edgemnist.console`) and read for the adapter and fallback
lines. `edgemnist.runtime.accelerator.GpuRunner` runs models on what this module found.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from edgemnist.runtime.backend import load_backend
from edgemnist.runtime.preflight import PREFLIGHT_TIMEOUT_S, module_command

GPU_PRECISIONS = ("fp16", "fp32")  # fp16: LiteRT's default; fp32: GpuOptions(enforce_f32=True)
# A Vulkan driver's ICD JSON to use for the GPU accelerator (when VK_ICD_FILENAMES is not set).
VULKAN_ICD_ENV = "EDGEMNIST_VULKAN_ICD"
# Where Debian's chromium-common puts SwiftShader's Vulkan driver: the fallback when the
# system's drivers give Dawn no adapter.
SWIFTSHADER_ICD = "/usr/lib/chromium/vk_swiftshader_icd.json"
INSTALL_HINT = (f"install your GPU's Vulkan driver, or the software one (SwiftShader: apt-get install "
                f"chromium-common libvulkan1), or set {VULKAN_ICD_ENV} to a Vulkan driver's ICD JSON")
CHILD_MODULE = "edgemnist.runtime.gpu_probe"
OK_MARKER = "EDGEMNIST_GPU_OK"
ERROR_MARKER = "EDGEMNIST_GPU_ERROR"
_ADAPTER_LINE = re.compile(r"Selected adapter: (?P<name>.*?), arch=(?P<arch>[^,]*), vendor=(?P<vendor>[^,]*), "
                           r"backend=(?P<backend>[^,]*), adapterType=(?P<type>[^\n]*)")
_SPLIT_LINE = re.compile(r"(\d+) operations? will run on the GPU, and the remaining (\d+) operations? will run on the CPU")
_UNSUPPORTED_HEADER = "Following operations are not supported by GPU delegate:"
# Lines of Dawn and the Vulkan loader that say why no adapter was found.
_NO_DEVICE_MARKERS = ("No adapters found", "Failed to initialize WebGPU environment", "Found no drivers")

# Per process: the chosen device (GpuDevice), or the reason none works (str); GpuRunner reads it and
# records there that the accelerator refuses batches.
DEVICE: dict = {}
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


def exit_chatter_to_log() -> None:
    """Sends what LiteRT logs at process exit (its GPU environment's teardown) to the log fd 2 points at now.

    Called while a command's native output is captured: fd 2 is then that command's log file.
    Nothing changes when fd 2 is a terminal (`--verbose`) or the hook is already in place.
    """
    if DEVICE.get("exit_hook"):
        return
    try:
        if not stat.S_ISREG(os.fstat(2).st_mode):
            return
        log_fd = os.dup(2)
    except OSError:
        return
    DEVICE["exit_hook"] = True

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


def compiled_model_api():
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


def compile_model(path: str, precision: str, num_threads: int = 1):
    """A CompiledModel of `path` on the GPU accelerator, the CPU taking the ops the GPU cannot."""
    CompiledModel, HardwareAccelerator, Options, GpuOptions, CpuOptions = compiled_model_api()
    options = Options(hardware_accelerators=HardwareAccelerator.GPU | HardwareAccelerator.CPU,
                      cpu_options=CpuOptions(num_threads=num_threads),
                      gpu_options=GpuOptions(enforce_f32=precision == "fp32"))
    return CompiledModel.from_file(str(path), options=options)


def check_precision(precision: str) -> str:
    """`precision` if it is one of GPU_PRECISIONS (ValueError otherwise)."""
    if precision not in GPU_PRECISIONS:
        raise ValueError(f"gpu precision must be one of {', '.join(GPU_PRECISIONS)}, got {precision!r}")
    return precision


# --------------------------------------------------------------------------- the child process


def _child_main(argv: list) -> int:
    """python -m edgemnist.runtime.gpu_probe MODEL PRECISION: compile on the GPU, run one image, report."""
    path, precision = argv
    try:
        prepare_environment()
        model = compile_model(path, precision)
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
    compiled_model_api()
    if "reason" in DEVICE:
        raise AcceleratorUnavailableError(DEVICE["reason"])
    key = (hashlib.sha256(Path(path).read_bytes()).hexdigest(), precision)
    if key in _PROBES:
        return _PROBES[key]
    candidates = [None] if "device" in DEVICE else _candidate_icds()
    reasons = []
    for icd in candidates:
        probe = _run_child(Path(path), precision, icd)
        no_device = _no_device_reason(probe["stderr"]) if not probe["ok"] else None
        if no_device:
            driver = icd or os.environ.get("VK_ICD_FILENAMES") or os.environ.get("VK_DRIVER_FILES")
            where = f"VK_ICD_FILENAMES={driver}" if driver else "the system's Vulkan drivers"
            reasons.append(f"Dawn found no WebGPU adapter with {where} ({no_device})")
            continue
        if "device" not in DEVICE:
            adapter = parse_adapter(probe["stderr"])
            if adapter is None and not probe["ok"]:
                return _PROBES.setdefault(key, dict(probe, device=None))  # the model failed before Dawn ran
            adapter = adapter or {"name": "unknown adapter", "vendor": "?", "backend": "?", "adapter_type": "?"}
            if icd:
                os.environ["VK_ICD_FILENAMES"] = icd
            DEVICE["device"] = GpuDevice(adapter["name"], adapter["vendor"], adapter["backend"],
                                          adapter["adapter_type"], os.environ.get("VK_ICD_FILENAMES") or None)
        _PROBES[key] = dict(probe, device=DEVICE["device"])
        return _PROBES[key]
    DEVICE["reason"] = "; ".join(reasons) + f"; {INSTALL_HINT}"
    raise AcceleratorUnavailableError(DEVICE["reason"])


def forget_device() -> None:
    """Forgets the chosen Vulkan driver and the probed models (for tests that change the environment)."""
    hook = DEVICE.get("exit_hook")
    DEVICE.clear()  # the batch refusal too: another driver may take batches
    if hook:
        DEVICE["exit_hook"] = hook
    _PROBES.clear()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: python -m edgemnist.runtime.gpu_probe MODEL.tflite fp16|fp32", file=sys.stderr)
        sys.exit(2)
    sys.exit(_child_main(sys.argv[1:]))
