"""Load and run an untrusted .tflite once in a child process, so that a native crash cannot take this one down.

Usage: from edgemnist.runtime.preflight import preflight; preflight("model.tflite")

A structurally valid .tflite (checked by `tflite_info.validate`) can still crash a native
interpreter (e.g. a constant tensor named as the graph input segfaults LiteRT 2.3 on
`set_tensor`). So before a `Runner` loads a file, the child program
`python -m edgemnist.runtime.preflight_child` loads and runs it once: a crash or hang
there becomes a ValueError naming the file. It runs once per file content, backend and
thread count in a process. `Runner(..., trusted=True)` or `EDGEMNIST_TRUST_MODELS=1`
skips it for files you made.
"""
from __future__ import annotations

import hashlib
import os
import shlex
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Optional

from edgemnist.runtime.backend import load_backend

# Skip the child-process check of a model file when this environment variable is "1".
TRUST_ENV = "EDGEMNIST_TRUST_MODELS"
# A command that starts this Python for the preflight's child (default: sys.executable), e.g.
# an emulator launcher where sys.executable is a binary the host cannot run directly.
PYTHON_ENV = "EDGEMNIST_PYTHON"
PREFLIGHT_TIMEOUT_S = 120.0  # a model that has not loaded and run by then is reported as hanging
CHILD_MODULE = "edgemnist.runtime.preflight_child"
# What the child prints on stdout: the OK marker, or the error marker, the exception's type and message.
OK_MARKER = "EDGEMNIST_PREFLIGHT_OK"
ERROR_MARKER = "EDGEMNIST_PREFLIGHT_ERROR"
# (sha256, backend, threads) -> None for model files that passed the preflight in this
# process, or the error message of those that failed it.
_PREFLIGHT_RESULTS: dict = {}
_CHILD_PYTHON_WORKS: Optional[bool] = None


def trusted_by_environment() -> bool:
    """Whether EDGEMNIST_TRUST_MODELS=1 asks to skip the preflight."""
    return os.environ.get(TRUST_ENV, "") == "1"


def forget_results() -> None:
    """Forgets which files passed or failed, so the next preflight of each runs its child again."""
    _PREFLIGHT_RESULTS.clear()


def preflight(path: str | os.PathLike, backend: Optional[str] = None, num_threads: int = 1,
              timeout: float = PREFLIGHT_TIMEOUT_S) -> Optional[float]:
    """Loads and runs a model once in a child process, so that a native crash cannot take this one down.

    The child builds a `Runner` as the caller would and predicts one blank image, one white
    image and a batch of random images. A file that fails there in any way never reaches
    this process's interpreter: an error LiteRT raises in a fresh process can be a crash in
    one whose heap looks different (seen while fuzzing: "Tensor at index 1 was optional"
    from allocate_tensors, a segfault after a few dozen other models). The outcome (passed,
    or why not) is remembered by content (sha256), backend and thread count for the rest
    of the process.

    Where no child Python can start (user-mode emulation, a frozen app) and EDGEMNIST_PYTHON
    does not name one, a RuntimeWarning says so once and models load unchecked.

    Args:
        path: a .tflite file that already passed `tflite_info.check_tflite_file`.
        backend: the backend name the caller will use (None: the first installed).
        num_threads: the thread count the caller will use.
        timeout: seconds before the model is reported as hanging.

    Returns:
        Seconds the check took, or None when this content already passed.

    Raises:
        ValueError: the interpreter crashed (a signal), hung, exited or raised an error on this file.
    """
    path = Path(path)
    backend = load_backend(backend).name
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    key = (digest, backend, int(num_threads))
    if key in _PREFLIGHT_RESULTS:
        if _PREFLIGHT_RESULTS[key] is not None:  # the same bytes failed before, maybe under another name
            raise ValueError(f"{path}: {_PREFLIGHT_RESULTS[key]}")
        return None
    start = time.perf_counter()
    reason = _run_preflight(path, backend, int(num_threads), timeout)
    _PREFLIGHT_RESULTS[key] = reason
    if reason is not None:
        raise ValueError(f"{path}: {reason}")
    return time.perf_counter() - start


def module_command(module: str, *args: str, python: Optional[list] = None) -> tuple[list, dict]:
    """The command line and environment that run `python -m module args` with this edgemnist importable.

    Args:
        module: a module of edgemnist with a command-line entry point.
        args: its arguments.
        python: the command that starts Python (default: this interpreter, sys.executable).

    Returns:
        (argv, environment) for subprocess.
    """
    package_root = str(Path(__file__).resolve().parents[2])  # the folder (or zip) holding edgemnist
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return [*(python or [sys.executable]), "-m", module, *args], env


def _child_python() -> list:
    """The command that starts the preflight's child Python: EDGEMNIST_PYTHON, else this interpreter."""
    return shlex.split(os.environ[PYTHON_ENV]) if os.environ.get(PYTHON_ENV) else [sys.executable]


def _child_python_works() -> bool:
    """Whether a child Python starts at all here (not under user-mode emulation or a frozen app)."""
    global _CHILD_PYTHON_WORKS
    if _CHILD_PYTHON_WORKS is None:
        command, env = module_command(CHILD_MODULE, "--ping", python=_child_python())
        try:
            probe = subprocess.run(command, capture_output=True, text=True, env=env, timeout=PREFLIGHT_TIMEOUT_S,
                                   stdin=subprocess.DEVNULL)
            _CHILD_PYTHON_WORKS = probe.returncode == 0 and probe.stdout.strip() == OK_MARKER
        except (OSError, subprocess.TimeoutExpired):
            _CHILD_PYTHON_WORKS = False
        if not _CHILD_PYTHON_WORKS:
            warnings.warn(f"cannot start a child Python ({' '.join(_child_python())}), so models are loaded "
                          f"without the crash check; set {PYTHON_ENV} to a command that starts this Python",
                          RuntimeWarning, stacklevel=4)
    return _CHILD_PYTHON_WORKS


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _run_preflight(path: Path, backend: str, num_threads: int, timeout: float) -> Optional[str]:
    """None if the child loaded and ran the model (or no child can run here), else why not (no file name)."""
    if not _child_python_works():
        return None
    cmd, env = module_command(CHILD_MODULE, str(path), str(num_threads), backend, python=_child_python())
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, errors="replace", env=env,
                                timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"the interpreter hung loading or running it (no result in {timeout:g} s)"
    if result.returncode < 0 or result.returncode > 128:  # > 128: a signal as a wrapper script reports it
        number = -result.returncode if result.returncode < 0 else result.returncode - 128
        return f"the interpreter crashed loading or running it ({_signal_name(number)}); not a usable model"
    if OK_MARKER in result.stdout:
        return None
    if ERROR_MARKER in result.stdout:
        reported = result.stdout.split(ERROR_MARKER, 1)[1].strip().splitlines()[0]
        kind, _, message = reported.partition(" ")
        prefix = f"{path}: "
        if kind == "ValueError" and message.startswith(prefix):
            return message[len(prefix):]
        return f"the interpreter failed loading or running it ({message or kind})"  # e.g. RuntimeError from invoke
    # the child Python works (checked above), so the model made it exit: native code called exit()
    return f"the interpreter exited with status {result.returncode} loading or running it; not a usable model"
