"""Test helpers shared by several test modules: the CLI as a child process, flatbuffer edits, exports, ports.

Usage: from _helpers import run_cli, repack, export_variant, bare_interpreter_scores
"""
from __future__ import annotations

import socket
import subprocess
import sys
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
