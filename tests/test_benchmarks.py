"""Smoke runs of benchmark scripts whose numbers the README quotes (tiny settings, real conversions)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tflite_models(tflite_variants):
    return tflite_variants


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
    assert all(r["ops"] == ["RESHAPE", "TRANSPOSE", "RESHAPE", "TRANSPOSE", "CONV_2D"] for r in rows[3:])


def test_bench_overhead_splits_the_single_image_call(tflite_models, tmp_path):
    out = tmp_path / "overhead.json"
    assert _load("bench_overhead").main([str(tflite_models["int8"]), "--calls", "200", "--rounds", "2",
                                         "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["us_per_call"]
    assert set(rows) == {"invoke", "bare", "predict_floats", "predict_pixels", "quantize", "quantize_invoke"}
    assert all(v > 0 for v in rows.values())
    assert rows["quantize_invoke"] > rows["quantize"] and rows["predict_floats"] > rows["quantize"]


def test_bench_step_times_training_steps(tmp_path):
    out = tmp_path / "step.json"
    assert _load("bench_step").main(["--steps", "5", "--rounds", "1", "--repeats", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["seconds_per_100_steps"]) == {"augmented", "plain", "undilated"}
    assert all(v > 0 for v in result["seconds_per_100_steps"].values())
    assert set(result["depthwise_forward_backward_ms"]) == {"14x14x32", "7x7x48"}
    # Which forms run depends on this CPU's TensorFlow kernels: each is timed or recorded as unsupported.
    for row in result["depthwise_forward_backward_ms"].values():
        assert set(row) == {"dilated_depthwise", "grouped_conv2d", "zero_filled_5x5"}
        assert all((v is None) == (name in result["unsupported"]) for name, v in row.items())
        assert all(v > 0 for v in row.values() if v is not None)
    assert row["dilated_depthwise"] is not None  # what `edgemnist train` itself runs works everywhere


@pytest.mark.usefixtures("cortex_m_tools")
def test_bench_mcu_runs_a_variant_on_cortex_m4(tflite_models, tmp_path):
    out = tmp_path / "mcu.json"
    assert _load("bench_mcu").main([str(tflite_models["int8"]), "--cpus", "cortex-m4", "--kernels", "cmsis_nn",
                                    "--digits-per-class", "1", "--work-dir", str(tmp_path / "work"),
                                    "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    (row,) = result["rows"]
    assert row["variant"] == "model_int8" and row["cpu"] == "cortex-m4" and row["kernels"] == "cmsis_nn"
    assert row["bit_exact"] and row["digits"] == 10 and row["instructions_per_inference"] > 0
    assert len(row["top_ops"]) == 3 and row["flash_bytes"] > row["model_bytes"] > 0
    assert result["targets"] == {}  # targets are read off the default variant only


def test_bench_predict_measures_speed_accuracy_numbers_and_rejection(tflite_models, tmp_path):
    out = tmp_path / "predict.json"
    assert _load("bench_predict").main([str(tflite_models["int8"]), "--per-class", "2", "--numbers", "3",
                                        "--non-digits", "3", "--mnist", "20", "--timing-images", "10",
                                        "--rounds", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    entry = result["models"]["model_int8.tflite"]
    assert entry["timing"]["images"] == 10 and entry["timing"]["images_per_second"] > 0
    assert set(entry["timing"]["step_share"]) == {"decode", "prepare", "infer", "gate", "other"}
    assert entry["gate"]["threshold"] > 0  # the shipped digit-or-not gate is part of the rule
    accuracy = entry["accuracy"]
    assert accuracy["fonts_photo"]["prepared"]["n"] == 20 and accuracy["mnist_test"]["plain_resize"]["n"] == 20
    assert entry["numbers"]["n"] == 3
    assert entry["rejection"]["blank"]["caught"] == 1.0  # a blank page never holds a digit
    assert entry["rejection"]["all"]["n"] == sum(v["n"] for k, v in entry["rejection"].items() if k != "all")
    assert len(result["fonts"]) >= 4
    # the blind sources: fonts the shipped gate never trained on (its JSON lists what it did)
    held_out = result["fonts_held_out"]
    assert held_out and set(held_out) < set(result["fonts"]) and result["held_out_fonts_the_gate_saw"] == []
    assert accuracy["fonts_photo_held_out"]["prepared"]["n"] == 20 and entry["rejection"]["letters_held_out"]["n"] == 3
    assert 0.0 <= accuracy["fonts_photo"]["prepared"]["ece"] <= 1.0


def test_bench_predict_calibration_error():
    calibration_error = _load("bench_predict").calibration_error
    assert calibration_error([1.0, 1.0, 1.0, 1.0], [True, True, False, False]) == 0.5  # sure, right half the time
    assert calibration_error([0.75] * 4, [True, True, True, False]) == 0.0  # 75 % sure, right 3 times in 4
    assert abs(calibration_error([0.95, 0.55], [True, False]) - 0.3) < 1e-12  # (0.05 + 0.55) / 2


def test_bench_temperature_measures_each_exported_temperature_on_the_test_split(tflite_models, tmp_path):
    out = tmp_path / "temperature.json"
    folder = tflite_models["int8"].parent
    assert _load("bench_temperature").main([str(folder), "--limit", "300", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["test_n"] == 300 and {r["variant"] for r in result["models"]} == {"float32", "int8"}
    for row in result["models"]:
        assert row["fitted_on"].startswith("validation split") and row["temperature"] > 0
        assert row["calibrated"]["nll"] < row["raw"]["nll"]  # fitted on other digits, it still helps here
        assert 0.0 <= row["calibrated"]["ece"] <= 1.0 and 0.0 < row["calibrated"]["mean_probability"] <= 1.0


def test_bench_mcu_target_rows_need_a_pipeline_run(tmp_path):
    # a target row reads the run's compare report first: without it, one line saying what to run
    out = tmp_path / "targets.json"
    bench = _load("bench_mcu")
    assert bench.main(["--target-run", f"microbit={tmp_path / 'run'}", "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())["target_rows"]
    assert row["target"] == "microbit" and "edgemnist pipeline --target microbit" in row["error"]
    assert bench.main(["--target-run", "microbit", "--json", str(out)]) == 2
    from edgemnist.targets import MICRO_TARGETS

    assert set(bench.TARGET_GOALS) <= set(MICRO_TARGETS)


def test_bench_finetune_photos_reads_held_out_digits_before_and_after(trained_model_path, tmp_path, monkeypatch):
    pytest.importorskip("sklearn", reason="scikit-learn provides the digits (pip install 'edgemnist[bench]')")
    monkeypatch.setenv("EDGEMNIST_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "finetune_photos.json"
    assert _load("bench_finetune_photos").main([
        "--model", str(trained_model_path), "--per-class", "5", "--mnist", "100", "--head-epochs", "1",
        "--epochs", "1", "--replay-mnist", "50", "--work", str(tmp_path / "work"), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["split"] == {"train": 30, "test": 20}
    for name in ("before", "after"):
        assert result[name]["predict"]["n"] == 20 and result[name]["mnist_test"]["n"] == 100
    assert result["cache"]["images"] == 30  # train/ read twice: prepared, then from the cache
    assert result["finetune"]["config"]["replay_mnist"] == 50
    assert (tmp_path / "work" / "after" / "model_int8.tflite").is_file()


def test_bench_decode_reads_every_kind_of_large_file(tmp_path):
    out = tmp_path / "decode.json"
    assert _load("bench_decode").main(["--side", "1500", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["kind"] for r in rows] == ["grey PNG", "RGB PNG", "1-bit PNG", "RGBA PNG", "RGB JPEG"]
    assert all(r["digit_found"] and r["peak_mb"] >= r["reading_mb"] >= 0 for r in rows)


def test_bench_serve_drives_a_real_server_at_each_concurrency(tflite_models, tmp_path):
    out = tmp_path / "serve.json"
    assert _load("bench_serve").main(["--model", str(tflite_models["int8"]), "--requests", "12", "--warmup", "1",
                                      "--images", "4", "--concurrency", "1,3", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["model"] == str(tflite_models["int8"]) and result["backend_version"]
    assert [r["concurrency"] for r in result["rows"]] == [1, 3] and result["images"]["count"] == 4
    for row in result["rows"]:
        assert row["requests"] == 12 and row["errors"] == 0 and row["requests_per_second"] > 0
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] and 0.0 <= row["right"] <= 1.0
        assert row["server_cpu_ms_per_request"] is None or row["server_cpu_ms_per_request"] >= 0


@pytest.mark.usefixtures("cortex_m_tools")
def test_bench_runtimes_runs_the_c_runtime_where_tflite_micro_cannot_fit(tmp_path):
    # The default model on the micro:bit: TFLite Micro's arena alone is over its 16 KB (refused before
    # any TFLM build, so this stays quick), the generated C fits and runs; both are rows of the table.
    from conftest import FIRMWARE_ASSETS
    from edgemnist.micro import mcu

    manifest = json.loads((FIRMWARE_ASSETS / "firmware_manifest.json").read_text())
    model = tmp_path / "run" / "tflite" / manifest["model"]["name"]
    model.parent.mkdir(parents=True)
    model.write_bytes(mcu.embedded_data(FIRMWARE_ASSETS, manifest)[0])
    bench = _load("bench_runtimes")
    results = tmp_path / "results"
    assert bench.main([f"microbit={model}", "--tflm-kernels", "cmsis_nn", "--digits-per-class", "1",
                       "--work-dir", str(tmp_path / "work"), "--results-dir", str(results)]) == 0
    # one file per target and model, every setting off its default in the name
    (path,) = results.iterdir()
    assert path.name == "runtimes_microbit_run-model_int8_per_tensor_dpc1_tflm-cmsis_nn.json"
    result = json.loads(path.read_text())
    c, tflm = result["rows"]
    assert c["runtime"] == "c" and c["bit_exact"] and c["fits"] and c["digits"] == 10
    assert c["ram_bytes"] == c["sections"].get(".data", 0) + c["sections"][".bss"] + c["stack_used_bytes"]
    assert 0 < c["flash_bytes"] < c["flash_with_test_digits_bytes"] and c["instructions_per_inference"] > 0
    assert c["checking_build"]["ok"] and c["checking_build"]["board"] == "microbit"
    assert tflm["runtime"] == "tflm" and "cannot fit microbit" in tflm["error"]
    assert result["ratios"] == {} and result["goals"]["bit_exact"]["met"]
    assert bench.main(["microbit"]) == 2 and bench.main([f"esp32={model}"]) == 2


def test_bench_predict_names_its_results_by_the_settings_that_differ():
    bench = _load("bench_predict")
    parser = bench.build_parser()

    def name(*argv):
        return bench.results_name(parser, parser.parse_args(["m.tflite", *argv]))

    assert name() == "predict.json"
    assert name("--no-gate") == "predict_no-gate.json"
    assert name("--temperature", "1") == "predict_temperature1.json"
    assert name("--no-gate", "--per-class", "10") == "predict_per-class10_no-gate.json"


def test_bench_gpu_exit_status_says_whether_every_variant_met_its_targets():
    status = _load("bench_gpu").exit_status
    met = {"gpu": {"available": True}, "rows": [{"gpu": {"targets": {"agreement": True, "accuracy_within_pp": True}}},
                                                 {"gpu": {"targets": {"agreement": True}}}]}
    assert status(met) == 0
    missed = {**met, "rows": [*met["rows"], {"gpu": {"targets": {"agreement": False}}}]}
    assert status(missed) == 1
    failed = {**met, "rows": [*met["rows"], {"gpu": {"error": "cannot run it"}}]}
    assert status(failed) == 1
    assert status({"gpu": {"available": False, "reason": "no Vulkan device"}, "rows": [{}]}) == 2
