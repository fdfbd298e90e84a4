"""edgemnist.runtime.accelerator: every exported variant on LiteRT's GPU accelerator (a software
Vulkan device where there is no GPU), against the same file on the CPU; what ran is reported;
a model the GPU cannot fully take shows its fallback; no driver is one clear error."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from _gpu import SCORE_TOLERANCE, confident, gpu_runner
from _helpers import cli_command, export_variant
from edgemnist import data
from edgemnist.runtime import Runner
from edgemnist.runtime.accelerator import (ACCELERATORS, DEFAULT_ACCELERATOR, DEFAULT_GPU_PRECISION,
                                           AcceleratorUnavailableError, GpuRunner, RuntimeSettings, open_runner,
                                           parse_fallback)

SUBSET = 40  # SwiftShader runs a GPU's work on the CPU: a few milliseconds per image


@pytest.fixture(scope="module")
def images(mnist_test):
    return data.to_model_input(mnist_test.images[:SUBSET])


@pytest.fixture(scope="module")
def int16x8_path(trained_model_path, tmp_path_factory):
    """AI Edge Quantizer's int16-activation export: the WebGPU delegate has no int16 kernels."""
    return export_variant(trained_model_path, "aie_int16x8", tmp_path_factory.mktemp("int16x8") / "model.tflite")


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_every_variant_runs_on_the_gpu_like_on_the_cpu(tflite_variants, images, variant):
    runner = gpu_runner(tflite_variants[variant])
    gpu = runner.predict(images)
    cpu = Runner(tflite_variants[variant]).predict(images)
    assert gpu.shape == cpu.shape == (SUBSET, 10)
    assert np.abs(gpu - cpu).max() <= SCORE_TOLERANCE
    sure = confident(cpu)
    assert sure.sum() >= SUBSET // 2  # enough images to compare classes on
    assert np.array_equal(gpu.argmax(axis=1)[sure], cpu.argmax(axis=1)[sure])
    assert np.array_equal(runner.predict_one(images[3]), gpu[3])  # the single-image path is the same model
    pixels = np.rint(images[3] * 255).astype(np.uint8)
    assert np.array_equal(runner.predict_one(pixels), runner.predict_one(pixels.astype(np.float32) / 255))


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_what_ran_is_reported(tflite_variants, variant):
    info = gpu_runner(tflite_variants[variant]).accelerator_info()
    assert info["name"] == "gpu" and info["adapter"] and info["adapter"] != "unknown adapter"
    assert info["backend"] == "Vulkan" and info["precision"] == "fp16"
    assert info["fully_accelerated"] is True and info["fallback_ops"] == []
    assert info["startup_ms"] > 0 and info["max_batch"] >= 1
    if "SwiftShader" in info["adapter"]:
        assert info["software"] is True


def test_a_model_the_gpu_cannot_fully_take_shows_its_fallback(int16x8_path, images):
    runner = gpu_runner(int16x8_path)
    info = runner.accelerator_info()
    assert info["fully_accelerated"] is False
    assert info["cpu_ops"] > 0 and info["gpu_ops"] >= 0
    ops = {f["op"] for f in info["fallback_ops"]}
    assert {"CONV_2D", "FULLY_CONNECTED"} <= ops
    assert all("INT16" in f["reason"] for f in info["fallback_ops"])
    # what did run still matches the CPU interpreter
    assert np.abs(runner.predict(images[:8]) - Runner(int16x8_path).predict(images[:8])).max() <= SCORE_TOLERANCE


def test_fp32_precision_is_asked_for_and_reported(tflite_variants, images):
    runner = gpu_runner(tflite_variants["float32"], precision="fp32")
    assert runner.accelerator_info()["precision"] == "fp32"
    cpu = Runner(tflite_variants["float32"]).predict(images[:8])
    assert np.abs(runner.predict(images[:8]) - cpu).max() <= 1e-4  # float32 on both sides


def test_the_accelerator_takes_no_batch_and_predict_still_covers_every_image(tflite_variants, images):
    runner = gpu_runner(tflite_variants["int8"])
    scores = runner.predict(images[:7], batch_size=4)
    assert scores.shape == (7, 10)
    # a batch of 4 was tried: max_batch is 4, or 1 exactly where the accelerator refused the resize (LiteRT
    # 2.3's WebGPU does, and is then remembered as refusing); either way every image is scored, the padded
    # last batch included, exactly as one at a time
    from edgemnist.runtime import accelerator

    assert 4 in runner._batched
    refused = runner._batched[4] is None
    assert runner.max_batch == (1 if refused else 4) and accelerator.DEVICE.get("refuses_batches", False) == refused
    assert runner.accelerator_info()["max_batch"] == runner.max_batch
    for i in range(7):
        assert np.array_equal(scores[i], runner.predict_one(images[i])), i


def test_bad_arguments_are_value_errors(tflite_variants):
    with pytest.raises(ValueError, match="accelerator must be one of"):
        open_runner(tflite_variants["int8"], "tpu")
    with pytest.raises(ValueError, match="precision"):
        open_runner(tflite_variants["int8"], "gpu", gpu_precision="fp8")
    assert ACCELERATORS[0] == "cpu" and isinstance(open_runner(tflite_variants["int8"]), Runner)
    with pytest.raises(AcceleratorUnavailableError, match="not on backend tflite_runtime"):
        GpuRunner(tflite_variants["int8"], backend="tflite_runtime")


@pytest.mark.parametrize("field, value, message", [
    ("accelerator", "tpu", "accelerator must be one of cpu, gpu, got 'tpu'"),
    ("gpu_precision", "fp8", "gpu_precision must be one of fp16, fp32, got 'fp8'"),
    ("threads", 0, "threads must be >= 1, got 0"),
    ("threads", 1.5, "threads must be an integer >= 1, got 1.5"),
    ("threads", True, "threads must be an integer >= 1, got True"),
    ("backend", "onnx", "backend must be one of ai_edge_litert, tflite_runtime, tf.lite, got 'onnx'"),
])
def test_runtime_settings_name_a_bad_field_and_its_value(field, value, message):
    with pytest.raises(ValueError) as raised:
        RuntimeSettings(**{field: value})
    assert str(raised.value) == message


def test_runtime_settings_are_every_command_configs_one_runtime_field():
    from dataclasses import fields

    from edgemnist.measure.bench import BenchConfig
    from edgemnist.measure.compare import CompareConfig
    from edgemnist.measure.eval import EvalConfig
    from edgemnist.predict import PredictConfig
    from edgemnist.serve import ServeConfig

    default = RuntimeSettings()
    assert (default.accelerator, default.gpu_precision, default.threads, default.backend) == (
        DEFAULT_ACCELERATOR, DEFAULT_GPU_PRECISION, 1, None)
    assert default.to_json() == {"accelerator": "cpu", "gpu_precision": "fp16", "threads": 1, "backend": None}
    for config in (EvalConfig, BenchConfig, CompareConfig, PredictConfig, ServeConfig):
        names = {f.name for f in fields(config)}
        assert not names & {"threads", "backend", "accelerator", "gpu_precision"}, config.__name__
        assert config(**({"workers": 1} if config is ServeConfig else {})).runtime == default, config.__name__


def test_runtime_settings_open_a_runner_with_them(tflite_variants):
    runner = RuntimeSettings(threads=2).open(tflite_variants["int8"])
    assert isinstance(runner, Runner) and runner.num_threads == 2


def test_fallback_log_lines_are_read():
    text = ("ERROR: Following operations are not supported by GPU delegate:\n"
            "CONV_2D: Tensor type(INT16) is not supported.\nMEAN: Tensor type(INT16) is not supported.\n"
            "4 operations will run on the GPU, and the remaining 14 operations will run on the CPU.\n")
    assert parse_fallback(text) == {"gpu_ops": 4, "cpu_ops": 14, "unsupported": [
        {"op": "CONV_2D", "reason": "Tensor type(INT16) is not supported."},
        {"op": "MEAN", "reason": "Tensor type(INT16) is not supported."}]}
    assert parse_fallback("") == {"gpu_ops": None, "cpu_ops": None, "unsupported": []}


def _without_driver() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("EDGEMNIST_VERBOSE", "EDGEMNIST_VULKAN_ICD")}
    env["VK_ICD_FILENAMES"] = "/nonexistent/vulkan_icd.json"  # hides every Vulkan driver
    return env


def test_without_a_vulkan_driver_eval_gpu_is_one_line_exit_2(tflite_variants):
    result = subprocess.run(cli_command("eval", tflite_variants["int8"], "--accelerator", "gpu", "--test-limit", "5"),
                            capture_output=True, text=True, timeout=300, env=_without_driver())
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "gpu not available" in lines[0] and "/nonexistent/vulkan_icd.json" in lines[0]
    assert "apt-get install" in lines[0]  # what to install
    assert result.stdout == ""


def test_without_a_vulkan_driver_compare_reports_gpu_not_available(tflite_variants, tmp_path):
    out = tmp_path / "report"
    result = subprocess.run(
        cli_command("compare", tflite_variants["float32"], tflite_variants["int8"], "--out", out, "--accelerator",
                    "gpu", "--test-limit", "20", "--runs", "10", "--warmup", "2", "--no-plots"),
        capture_output=True, text=True, timeout=300, env=_without_driver())
    assert result.returncode == 0, result.stderr
    assert "gpu: not available (" in result.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["accelerators"]["gpu"]["available"] is False
    assert "/nonexistent/vulkan_icd.json" in report["accelerators"]["gpu"]["reason"]
    assert all("gpu" not in v for v in report["variants"]) and len(report["variants"]) == 2
    assert "**GPU:** not available (" in (out / "report.md").read_text()


def test_the_gpu_path_imports_no_tensorflow(tflite_variants):
    code = ("import sys; from edgemnist.runtime import accelerator; "
            "assert not any(m == 'tensorflow' or m.startswith('tensorflow.') for m in sys.modules), 'tensorflow'")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120).returncode == 0
