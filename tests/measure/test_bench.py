"""Tests for edgemnist.measure.bench: percentiles, the benchmark result, the bench command (tflite and --keras)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgemnist import cli
from edgemnist.measure.bench import BenchConfig, benchmark, latency_percentiles
from edgemnist.runtime.accelerator import RuntimeSettings

SMALL = ["--warmup", "3", "--runs", "40", "--batch-size", "32", "--throughput-images", "128"]
TOP_KEYS = {"model", "name", "bytes", "backend", "backend_version", "threads", "warmup", "runs", "init_ms",
            "latency_us", "call_latency_us", "pixel_call_latency_us", "throughput", "memory", "input", "machine"}
LATENCY_KEYS = {"p50", "p90", "p99", "mean", "std", "min", "max"}


def test_latency_percentiles():
    stats = latency_percentiles(np.arange(1, 101, dtype=float))
    assert set(stats) == LATENCY_KEYS
    assert stats["p50"] == pytest.approx(50.5) and stats["p99"] == pytest.approx(99.01)
    assert stats["min"] == 1 and stats["max"] == 100 and stats["mean"] == 50.5
    assert stats["p50"] <= stats["p90"] <= stats["p99"]
    with pytest.raises(ValueError):
        latency_percentiles([])


@pytest.mark.parametrize("field, value", [("runs", 0), ("warmup", -1), ("batch_size", 0), ("throughput_images", 0)])
def test_bench_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        BenchConfig(**{field: value})


@pytest.mark.parametrize("field, value", [("threads", 0), ("backend", "onnx")])
def test_bench_runtime_settings_reject_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        BenchConfig(runtime=RuntimeSettings(**{field: value}))


def test_benchmark_result_is_complete_and_positive(tflite_variants):
    result = benchmark(tflite_variants["int8"], BenchConfig(warmup=3, runs=60, batch_size=32, throughput_images=128))
    assert TOP_KEYS <= set(result)
    for key in ("latency_us", "call_latency_us", "pixel_call_latency_us"):
        assert set(result[key]) == LATENCY_KEYS
        assert 0 < result[key]["min"] <= result[key]["p50"] <= result[key]["p99"] <= result[key]["max"]
    assert result["runs"] == 60 and result["threads"] == 1
    assert result["backend"] == "ai_edge_litert" and result["backend_version"][0].isdigit()
    assert result["init_ms"] > 0 and result["bytes"] == tflite_variants["int8"].stat().st_size
    assert result["throughput"]["images_per_second"] > 0 and result["throughput"]["images"] == 128
    assert result["memory"]["peak_rss_bytes"] > 10 * 2**20
    assert result["input"]["dtype"] == "int8"
    assert result["machine"]["cores"] >= 1


def test_bench_command_json(tflite_variants, capsys):
    assert cli.main(["bench", str(tflite_variants["float32"]), "--threads", "2", *SMALL, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert TOP_KEYS <= set(result)
    assert result["threads"] == 2 and result["latency_us"]["p50"] > 0


def test_bench_command_summary(tflite_variants, capsys):
    assert cli.main(["bench", str(tflite_variants["int8"]), *SMALL]) == 0
    out = capsys.readouterr().out
    assert "p50" in out and "images/s" in out and "ai_edge_litert" in out


@pytest.mark.parametrize("argv, message", [
    (["bench"], "give a MODEL.tflite"),
    (["bench", "{missing}"], "no such file"),
    (["bench", "{model}", "--runs", "0"], "runs"),
    (["bench", "{model}", "--device", "gpu"], "--keras only"),
    (["bench", "{model}", "--keras", "{model}"], "not both"),
])
def test_bench_bad_input_exits_2(tflite_variants, tmp_path, capsys, argv, message):
    values = {"missing": str(tmp_path / "missing.tflite"), "model": str(tflite_variants["int8"])}
    status = cli.main([a.format(**values) for a in argv])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and message in err


def test_bench_keras_cpu(trained_model_path, capsys):
    status = cli.main(["bench", "--keras", str(trained_model_path), "--device", "cpu", "--warmup", "2",
                       "--runs", "20", "--batch-size", "64", "--throughput-images", "128", "--json"])
    assert status == 0
    result = json.loads(capsys.readouterr().out)
    assert result["backend"] == "tensorflow" and result["device"] == "cpu"
    assert result["latency_us"]["p50"] > 0 and result["throughput"]["images_per_second"] > 0


def test_bench_keras_gpu_skips_without_a_gpu(trained_model_path, capsys):
    from edgemnist._tensorflow import import_tensorflow

    if import_tensorflow().config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU: the skip path does not apply")
    status = cli.main(["bench", "--keras", str(trained_model_path), "--device", "gpu", "--json"])
    captured = capsys.readouterr()
    assert status == 0
    assert "no GPU" in captured.err
    assert json.loads(captured.out)["skipped"] == "no GPU"


def test_bench_keras_missing_file(tmp_path, capsys):
    assert cli.main(["bench", "--keras", str(tmp_path / "absent.keras")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_bench_thread_sweep(tflite_variants, capsys):
    assert cli.main(["bench", str(tflite_variants["int8"]), "--threads", "1,2", *SMALL, "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["threads"] for r in results] == [1, 2]
    assert all(TOP_KEYS <= set(r) and r["latency_us"]["p50"] > 0 for r in results)
    assert cli.main(["bench", str(tflite_variants["int8"]), "--threads", "1,2", *SMALL]) == 0
    table = capsys.readouterr().out
    assert "thread sweep" in table and len(table.strip().splitlines()) == 4


@pytest.mark.parametrize("threads", ["0", "1,x", ""])
def test_bench_bad_thread_list_exits_2(tflite_variants, capsys, threads):
    assert cli.main(["bench", str(tflite_variants["int8"]), "--threads", threads]) == 2
    assert "--threads" in capsys.readouterr().err


def test_bench_on_the_gpu(tflite_variants, capsys):
    from _gpu import gpu_runner

    gpu_runner(tflite_variants["int8"])  # skips where no GPU accelerator can run
    status = cli.main(["bench", str(tflite_variants["int8"]), "--accelerator", "gpu", "--warmup", "2", "--runs", "10",
                       "--batch-size", "4", "--throughput-images", "8", "--json"])
    assert status == 0
    result = json.loads(capsys.readouterr().out)
    assert TOP_KEYS <= set(result) and result["accelerator"]["adapter"] and result["init_ms"] > 0
    assert result["latency_us"]["p50"] > 0 and result["throughput"]["images"] == 8
    assert result["throughput"]["batch_size"] == result["accelerator"]["max_batch"]  # the batch that really ran
