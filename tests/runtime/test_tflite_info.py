"""Tests for edgemnist.runtime.tflite_info: the description of a .tflite (io tensors, bytes, `edgemnist info`)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from _helpers import run_cli
from edgemnist.runtime import tflite_info


@pytest.mark.parametrize("variant", ["int8", "float32"])
def test_io_tensors_describe_what_litert_reports(tflite_variants, variant):
    """The one description of inputs and outputs (export manifests, `info`) equals LiteRT's details:
    scale and zero point only for a per-tensor quantized tensor."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite_variants[variant]))

    def from_litert(details):
        rows = []
        for d in details:
            q = d["quantization_parameters"]
            rows.append({"name": d["name"], "shape": [int(s) for s in d["shape"]], "dtype": np.dtype(d["dtype"]).name,
                         "scale": float(q["scales"][0]) if len(q["scales"]) == 1 else None,
                         "zero_point": int(q["zero_points"][0]) if len(q["zero_points"]) == 1 else None})
        return rows

    io = tflite_info.io_tensors(tflite_variants[variant])
    assert io == {"inputs": from_litert(interpreter.get_input_details()),
                  "outputs": from_litert(interpreter.get_output_details())}
    assert (io["inputs"][0]["scale"] is None) == (variant == "float32")
    described = tflite_info.describe(tflite_variants[variant])
    assert (described["inputs"], described["outputs"]) == (io["inputs"], io["outputs"])


def test_quantization_helpers(tflite_variants):
    int8 = tflite_info.read_model(tflite_variants["int8"])
    scale, zero_point = tflite_info.input_quantization(int8)
    assert int8.inputs[0].dtype == "int8" and 0 < scale < 1 and -128 <= zero_point <= 127
    assert tflite_info.output_quantization(int8) is not None
    float32 = tflite_info.read_model(tflite_variants["float32"])
    assert tflite_info.input_quantization(float32) is None
    assert tflite_info.output_quantization(float32) is None


def test_describe_accounts_for_every_byte(tflite_variants):
    info = tflite_info.describe(tflite_variants["int8"])
    json.dumps(info)  # JSON-ready
    assert info["bytes"] == tflite_variants["int8"].stat().st_size
    assert sum(info["bytes_breakdown"].values()) == info["bytes"]
    assert all(v >= 0 for v in info["bytes_breakdown"].values())
    weights = sum(t["bytes"] for t in info["tensors"] if t["constant"])
    assert info["bytes_breakdown"]["weights"] == weights
    assert info["bytes_breakdown"]["quantization"] > 0
    assert sum(info["op_counts"].values()) == len(info["ops"])
    assert info["inputs"][0]["shape"] == [1, 28, 28, 1] and info["outputs"][0]["shape"] == [1, 10]
    text = tflite_info.format_description(info)
    assert "DEPTHWISE_CONV_2D" in text and "where the bytes go" in text
    float_info = tflite_info.describe(tflite_variants["float32"])
    assert float_info["bytes_breakdown"]["quantization"] == 0
    assert float_info["bytes_breakdown"]["weights"] > 3 * info["bytes_breakdown"]["weights"]


def test_info_cli(tflite_variants):
    result = run_cli("info", tflite_variants["int8"], "--json", timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ops"] == tflite_info.read_model(tflite_variants["int8"]).ops


def test_info_cli_rejects_bad_file_with_one_line(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x10\x00\x00\x00NOPE" + bytes(64))
    result = run_cli("info", bad, timeout=120)
    assert result.returncode == 2
    assert "bad.tflite" in result.stderr and "TFL3" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
