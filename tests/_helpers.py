"""Test helpers shared by several test modules: the CLI as a child process, flatbuffer edits, exports, ports.

Usage: from _helpers import run_cli, repack, export_variant, bare_interpreter_scores, serving
"""
from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def cli_command(*args) -> list:
    """argv that runs `edgemnist ARGS` in a fresh Python, as a user's shell would."""
    return [sys.executable, "-m", "edgemnist", *map(str, args)]


def run_cli(*args, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """Runs `edgemnist ARGS` in a child process; text output captured; extra subprocess.run options pass on."""
    return subprocess.run(cli_command(*args), capture_output=True, text=True, timeout=timeout, **kwargs)


def repack(buf: bytes, edit) -> bytes:
    """Unpacks a .tflite with the schema's object API, applies `edit(model)`, packs it again."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(buf), 0)
    edit(model)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def export_variant(keras_path, variant: str, out_path) -> Path:
    """Exports one variant of a Keras model with edgemnist.export.convert (100 calibration images); returns the path."""
    from edgemnist.export import convert

    convert.export_variant(keras_path, variant, out_path, convert.ExportConfig(representative_size=100))
    return Path(out_path)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sigint_default():
    """A Popen preexec_fn: the child takes SIGINT as Ctrl-C (KeyboardInterrupt) even when the test run was
    started where SIGINT is ignored (nohup, `&` in a script, some CI runners), which children inherit."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def serving(command: list, port: int, log_path: Path, timeout: float = 120, **popen_kwargs):
    """Runs `command` (an `edgemnist serve ... --host 127.0.0.1 --port PORT` command line) as a child process,
    its output in `log_path`; once it answers GET /health, yields its base URL ("http://127.0.0.1:PORT/"); then
    stops it as Ctrl-C does (SIGINT; killed if it has not ended 30 s later). Fails the test, with the log, when
    the server exits or stays silent for `timeout` seconds."""
    import pytest

    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=sigint_default,
                                **popen_kwargs)
    base = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                pytest.fail(f"edgemnist serve exited {proc.returncode}: {log_path.read_text(errors='replace')}")
            try:
                with urllib.request.urlopen(base + "health", timeout=5) as answer:
                    assert json.load(answer)["status"] == "ok"
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"edgemnist serve did not answer /health: {log_path.read_text(errors='replace')}")
                time.sleep(0.2)
        yield base
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def bare_interpreter_scores(model, images) -> "np.ndarray":
    """float32 scores (N, classes) from a plain LiteRT set_tensor/invoke/get_tensor loop, independent of Runner.

    Args:
        model: a .tflite path or its bytes.
        images: float model input in [0, 1], (N,) + the model's image shape; quantized here with
            the interpreter's own input parameters by the one rule (edgemnist.runtime.quantize).
    """
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    from edgemnist.runtime.quantize import dequantize, quantize

    source = {"model_content": bytes(model)} if isinstance(model, (bytes, bytearray)) else {"model_path": str(model)}
    interpreter = Interpreter(**source, num_threads=1)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scores = []
    for image in images:
        x = image[np.newaxis]
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            x = quantize(x, scale, zero, inp["dtype"])
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"])[0]
        if out["dtype"] != np.float32:
            scale, zero = out["quantization"]
            y = dequantize(y, scale, zero)
        scores.append(y)
    return np.stack(scores)


def cortex_m_missing() -> str:
    """Why a Cortex-M build cannot run here (no Arm toolchain, QEMU or TFLite Micro tree), or ''."""
    from edgemnist.micro import mcu

    try:
        mcu.find_tools()
        mcu.resolve_tflm(None, "cmsis_nn")
    except mcu.MissingToolError as exc:
        return str(exc)
    return ""
