"""edgemnist.measure.devices: device x variant tables from result JSON of several machines."""
from __future__ import annotations

import json

import pytest

from edgemnist.measure import devices as report_devices
from edgemnist.measure import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _bench(model: str, p50: float, cpu: str = "Test CPU", remote: dict | None = None) -> dict:
    result = {"model": model, "latency_us": {"p50": p50}, "throughput": {"images_per_second": 1000.0},
              "threads": 1, "backend": "ai_edge_litert", "backend_version": "1.0",
              "machine": {"cpu": cpu, "machine": "x86_64"}}
    if remote is not None:
        result["remote"] = remote
    return result


def _mcu(name: str) -> dict:
    return {"model": {"name": name}, "cpu": "cortex-m4", "kernels": "cmsis_nn", "ok": True,
            "instructions": {"per_inference_mean": 4_000_000},
            "memory": {"flash_bytes": 150_000, "ram_bytes": 40_000}}


@pytest.fixture()
def results(tmp_path):
    """A local bench list, a Pi's remote bench, a device-less eval and an mcu result, as files."""
    files = {
        "local.json": [_bench("runs/a/model_int8.tflite", 50.0), _bench("runs/a/model_float32.tflite", 80.0)],
        "pi.json": _bench("/tmp/x/model_int8.tflite", 400.0,
                          remote={"device": "Raspberry Pi 4 Model B", "emulated": False}),
        "eval.json": {"model": "runs/a/model_int8.tflite", "accuracy": 0.99},
        "mcu.json": _mcu("model_int8.tflite"),
    }
    for name, content in files.items():
        (tmp_path / name).write_text(json.dumps(content))
    return [tmp_path / name for name in files]


def test_results_of_several_machines_make_one_table(results, tmp_path):
    table = report_devices.compare_devices(results)
    assert table["variants"] == ["model_float32", "model_int8"]
    assert table["devices"] == ["Raspberry Pi 4 Model B", "Test CPU [x86_64]", "cortex-m4 cmsis_nn (QEMU)"]
    local, pi = table["cells"]["Test CPU [x86_64]"], table["cells"]["Raspberry Pi 4 Model B"]
    assert local["model_int8"]["p50_us"] == 50.0 and pi["model_int8"]["p50_us"] == 400.0
    # an eval result without a machine tag counts for every device that benchmarked the variant
    assert local["model_int8"]["accuracy"] == pi["model_int8"]["accuracy"] == 0.99
    assert "accuracy" not in local["model_float32"]
    mcu = table["cells"]["cortex-m4 cmsis_nn (QEMU)"]["model_int8"]
    assert mcu["instructions"] == 4_000_000 and mcu["bit_exact"] is True and mcu["emulated"] is True

    text = report_devices.format_device_tables(table)
    assert "p50 latency" in text and "instructions per inference" in text
    assert "| Raspberry Pi 4 Model B | - | 400.0 |" in text
    assert plots.plot_devices(table, tmp_path / "devices.png").read_bytes()[:8] == PNG_MAGIC


def test_device_label_prefers_the_remote_device():
    assert report_devices.device_label(_bench("m", 1.0, remote={"device": "Pi"})) == "Pi"
    assert report_devices.device_label(_bench("m", 1.0, cpu="Xeon")) == "Xeon [x86_64]"
    assert report_devices.device_label({"model": "m"}) == "unknown device"


def test_files_that_are_not_results_are_rejected(tmp_path):
    (tmp_path / "x.json").write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="x.json: expected `edgemnist bench --json`"):
        report_devices.compare_devices([tmp_path / "x.json"])
    (tmp_path / "y.json").write_text("not json")
    with pytest.raises(ValueError, match="y.json: not a JSON result file"):
        report_devices.compare_devices([tmp_path / "y.json"])
    with pytest.raises(FileNotFoundError, match="no such result file"):
        report_devices.compare_devices([tmp_path / "missing.json"])


def test_a_gpu_result_is_a_device_of_its_own(tmp_path):
    """`bench/eval --accelerator gpu --json` from a GPU machine: the adapter names the device; a software
    GPU (SwiftShader) is flagged like an emulated board."""
    gpu = {"name": "gpu", "adapter": "SwiftShader Device (Subzero)", "software": True, "precision": "fp16"}
    files = {"cpu.json": _bench("runs/a/model_int8.tflite", 15.0),
             "gpu.json": dict(_bench("runs/a/model_int8.tflite", 2500.0), accelerator=gpu),
             "gpu_eval.json": {"model": "runs/a/model_int8.tflite", "accuracy": 0.98, "accelerator": gpu}}
    for name, content in files.items():
        (tmp_path / name).write_text(json.dumps(content))
    table = report_devices.compare_devices([tmp_path / name for name in files])
    label = "SwiftShader Device (Subzero) (software GPU, LiteRT fp16)"
    assert label in table["devices"] and len(table["devices"]) == 2
    cell = table["cells"][label]["model_int8"]
    assert cell["p50_us"] == 2500.0 and cell["emulated"] is True and cell["accuracy"] == 0.98
    assert "EMULATED" in report_devices.format_device_tables(table)
