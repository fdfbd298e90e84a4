"""Tests for edgemnist.export.diagnose: TFLite's quantization debugger on a small trained model."""
from __future__ import annotations

import json

import pytest

from edgemnist.export import convert
from edgemnist.export import diagnose
from edgemnist.export.diagnose import DiagnoseConfig


@pytest.fixture(scope="module")
def diagnosis(trained_model_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("diagnose")
    config = DiagnoseConfig(samples=50, keep_float=2, eval_size=100)
    return out, diagnose.diagnose(trained_model_path, out, config)


def test_reports_every_quantized_layer_worst_first(diagnosis):
    _, result = diagnosis
    rows = result["layers"]
    assert len(rows) >= 10  # one row per quantized op output of the ds_cnn
    ratios = [r["rmse_over_scale"] for r in rows]
    assert ratios == sorted(ratios, reverse=True)
    assert all(r["scale"] > 0 and r["rmse"] >= 0 for r in rows)
    assert {r["op"] for r in rows} >= {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}
    assert result["worst"] == [r["tensor"] for r in rows[:5]]
    assert "rmse/scale" in diagnose.format_diagnosis(result)


def test_keep_float_exports_a_selective_model_with_float_layers(diagnosis, trained_model_path):
    out, result = diagnosis
    selective = (out / "selective_int8.tflite").read_bytes()
    assert result["selective"]["bytes"] == len(selective)
    assert len(result["selective"]["float_layers"]) == 2
    int8 = convert.convert_variant(trained_model_path, "int8", convert.ExportConfig(representative_size=50)).tflite
    assert len(selective) > len(int8)  # float weights kept for two layers
    from edgemnist.runtime import tflite_info

    ops = tflite_info.read_model(selective).ops
    assert "DEQUANTIZE" in ops or "QUANTIZE" in ops  # float islands inside the int8 graph
    assert 0.0 <= result["accuracy"]["selective"] <= 1.0
    assert json.loads((out / "diagnose.json").read_text())["selective"]["path"].endswith("selective_int8.tflite")


def test_config_validates():
    with pytest.raises(ValueError, match="keep_float must be >= 0, got -1"):
        DiagnoseConfig(keep_float=-1)
    with pytest.raises(ValueError, match="samples"):
        DiagnoseConfig(samples=0)
