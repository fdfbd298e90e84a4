"""Smoke runs of benchmark scripts whose numbers the README quotes (tiny settings, real conversions)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_layers_times_every_prefix_of_the_model(trained_model_path, tmp_path):
    out = tmp_path / "layers.json"
    assert _load("bench_layers").main([str(trained_model_path), "--runs", "50", "--warmup", "5",
                                       "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [r["up_to"] for r in rows][0] == "stem_relu" and rows[-1]["up_to"] == "classifier"
    assert all(r["int8_us"] > 0 and r["float32_us"] > 0 for r in rows)
    ops = [len(r["ops"]) for r in rows]
    assert ops == sorted(ops) and rows[0]["ops"][-1] == "CONV_2D" and rows[-1]["ops"][-1] == "SOFTMAX"  # each adds ops
    assert abs(sum(r["int8_added_us"] for r in rows) - rows[-1]["int8_us"]) < 0.05


def test_bench_layers_stems(tmp_path):
    out = tmp_path / "stems.json"
    assert _load("bench_layers").main(["--stems", "--runs", "50", "--warmup", "5", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["up_to"] for r in rows] == ["stem 3x3 stride 2", "stem 2x2 stride 2", "stem 4x4 stride 2",
                                           "space-to-depth + 1x1", "space-to-depth + 2x2"]
    assert all(r["ops"] == ["CONV_2D"] for r in rows[:3])
    assert all(r["ops"] == ["RESHAPE", "TRANSPOSE", "RESHAPE", "CONV_2D"] for r in rows[3:])
