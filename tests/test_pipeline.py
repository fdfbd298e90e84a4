"""Tests for edgemnist/pipeline.py: the whole job end to end (--quick), and reruns that skip
unchanged stages."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgemnist import pipeline
from edgemnist.runtime import tflite_info

REPORT_KEYS = {"variants", "model", "dataset", "machine"}
VARIANT_KEYS = {"name", "path", "bytes", "gzip_bytes", "accuracy", "agreement", "latency_us", "backend", "threads"}


STAGE_PREFIXES = tuple(f"[{stage}] " for stage in pipeline.STAGES)


@pytest.mark.slow
def test_quick_pipeline_end_to_end(quick_pipeline):
    base, result = quick_pipeline
    out = base / "run"
    summary = json.loads(result.stdout)  # stdout holds only the result
    assert summary["quick"] is True and summary["train"]["test_accuracy"] > 0.8

    report = json.loads((out / "report" / "report.json").read_text())
    assert set(report) == REPORT_KEYS
    names = {v["name"] for v in report["variants"]}
    assert {"float32", "int8", "qat_int8", "pruned_int8", "pruned_qat_int8", "aie_int8"} <= names
    for variant in report["variants"]:
        assert set(variant) == VARIANT_KEYS
        assert set(variant["latency_us"]) == {"p50", "p90", "p99", "mean", "std"}
        assert not Path(variant["path"]).is_absolute()
        tflite_info.validate(out / "report" / variant["path"])  # relative to report.json; every model is whole
    by_name = {v["name"]: v for v in report["variants"]}
    assert by_name["int8"]["accuracy"] > 0.8 and by_name["int8"]["agreement"] > 0.9
    assert report["model"]["params"] == summary["train"]["params"]
    assert (out / "report" / "report.md").is_file()
    assert (out / "firmware" / "mnist_model_data.cc").is_file()

    state = json.loads((out / pipeline.STATE_FILE).read_text())
    assert set(state["stages"]) == set(pipeline.STAGES)
    exported = state["stages"]["export"]["result"]["variants"]
    assert len(exported) == 12 and all(v["seconds"] > 0 for v in exported.values())


@pytest.mark.slow
def test_quick_pipeline_console_shows_only_edgemnist(quick_pipeline):
    """Native output of TensorFlow, the converter, AI Edge Quantizer and LiteRT goes to logs/, not the console."""
    base, result = quick_pipeline
    foreign = [line for line in result.stderr.splitlines() if not line.startswith(STAGE_PREFIXES)]
    assert foreign == [], "\n".join(foreign[:20])
    for i, stage in enumerate(pipeline.STAGES, start=1):
        assert f"[{stage}] running (stage {i} of {len(pipeline.STAGES)}, " in result.stderr
    assert "[export] 12/12 " in result.stderr  # each variant as it is written
    logs = base / "run" / "logs"
    assert {p.name for p in logs.iterdir()} >= {f"{stage}.log" for stage in pipeline.STAGES}
    assert "fully_quantize" in (logs / "export.log").read_text()  # the converter's printf: kept, not lost


@pytest.mark.slow
def test_rerun_skips_unchanged_stages_and_redoes_damaged_ones(quick_pipeline, tmp_path):
    shutil.copytree(quick_pipeline[0] / "run", tmp_path / "run")  # a moved run folder is still a run folder
    out = tmp_path / "run"
    command = [sys.executable, "-m", "edgemnist", "pipeline", "--out", "run", "--quick"]
    # Nothing changed: every stage is skipped and nothing is rewritten.
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.tflite")}
    rerun = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    for stage in pipeline.STAGES:
        assert f"[{stage}] unchanged since the last run, skipped" in rerun.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.tflite")} == mtimes

    # A damaged output makes its stage (and only the stages after it that depend on it) run again.
    damaged = out / "firmware" / "firmware_manifest.json"
    damaged.write_text("{}")
    third = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "[firmware] running" in third.stderr and "[export] unchanged since the last run, skipped" in third.stderr
    assert json.loads(damaged.read_text())["flash_bytes"] > 0


def test_pipeline_config_validation():
    with pytest.raises(ValueError, match="quantizer must be one of tflite, ai-edge, all, got 'onnx'"):
        pipeline.PipelineConfig(quantizer="onnx")
    with pytest.raises(ValueError, match="epochs must be >= 1, got 0"):
        pipeline.PipelineConfig(epochs=0)
    with pytest.raises(ValueError, match="patience must be >= 1, got 0"):
        pipeline.PipelineConfig(patience=0)
    with pytest.raises(ValueError, match="unknown target 'esp32'"):
        pipeline.PipelineConfig(target="esp32")
    with pytest.raises(ValueError, match="threads must be >= 1, got 0"):
        pipeline.PipelineConfig(threads=0)
    with pytest.raises(ValueError, match="accelerator must be one of cpu, gpu, got 'tpu'"):
        pipeline.PipelineConfig(accelerator="tpu")


@pytest.mark.parametrize("accelerator", ["cpu", "gpu"])
def test_compare_stage_fingerprints_the_settings_it_always_has(accelerator, tmp_path):
    """The compare stage's settings are the flat dict CompareConfig gave before its runtime settings became one
    RuntimeSettings: a run made then still skips the stage."""
    from types import SimpleNamespace

    recorded = {}

    def record(name, settings, inputs, work):
        recorded[name] = settings
        return {}

    config = pipeline.PipelineConfig(threads=2, accelerator=accelerator)
    run = SimpleNamespace(config=config, test_limit=1000, folder=lambda stage: tmp_path / stage,
                          stages=SimpleNamespace(run=record))
    pipeline._compare(run, Path("model.keras"), [])
    expected = {"reference": None, "limit": 1000, "data_dir": None, "prepare": None, "threads": 2, "backend": None,
                "batch_size": 256, "warmup": 50, "runs": 1000, "keras": "model.keras", "plots": True}
    if accelerator == "gpu":  # cpu runs leave these out: the runs made before the GPU settings existed
        expected.update(accelerator="gpu", gpu_precision="fp16")
    assert recorded["compare"] == expected


@pytest.mark.parametrize("patience", [None, 100])
def test_train_stage_fingerprints_patience_only_when_given(patience, tmp_path):
    """Early stopping's patience reaches training and its fingerprint; left at the default, the train stage's
    settings are the dict they were before --patience existed, so those runs still skip the stage."""
    from types import SimpleNamespace

    from edgemnist.targets import get_target

    recorded = {}

    def record(name, settings, inputs, work):
        recorded[name] = settings
        return {}

    config = pipeline.PipelineConfig(epochs=100, patience=patience)
    run = SimpleNamespace(config=config, train_limit=None, target=get_target("default"), runtime=None,
                          folder=lambda stage: tmp_path / stage, stages=SimpleNamespace(run=record), verbose=False)
    pipeline._train(run)
    settings = recorded["train"]
    assert settings["epochs"] == 100 and "patience" not in settings["config"]
    if patience is None:
        assert set(settings) == {"config", "epochs"}
    else:
        assert settings["patience"] == 100


def _load_benchmark(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_seeds_parses_seeds_and_names_results_by_settings():
    import argparse

    bench = _load_benchmark("bench_seeds")
    assert bench.parse_seeds("0-4") == [0, 1, 2, 3, 4] and bench.parse_seeds("0,2,5") == [0, 2, 5]
    for bad in ("3-1", "1,1", "", "-1"):
        with pytest.raises((argparse.ArgumentTypeError, ValueError)):
            bench.parse_seeds(bad)
    summary = bench.summarize({0: {"int8": 0.99, "float32": 0.992}, 1: {"int8": 0.98}, 2: {"int8": 0.97}})
    assert summary["int8"] == {"n": 3, "mean": 0.98, "min": 0.97, "max": 0.99, "seed0": 0.99}
    assert summary["float32"]["n"] == 1
    args = argparse.Namespace(target="cortex-m4", seeds=[0, 1, 2, 3, 4], quick=False, epochs=None, patience=None,
                              env=["TF_ENABLE_ONEDNN_OPTS=0"], out="runs/seeds")
    assert bench.results_name(args) == "seeds_cortex-m4_TF_ENABLE_ONEDNN_OPTS-0.json"
    smoke = argparse.Namespace(target="microbit", seeds=[0, 1], quick=True, epochs=3, patience=None, env=[])
    assert bench.results_name(smoke) == "seeds_microbit_seeds0-1_quick_epochs3.json"
    # a run folder is named by what changes the training (not by the seeds studied): the environment, which the
    # pipeline's fingerprints cannot see, never lets a study read another's runs
    assert bench.run_folder(args, 2) == Path("runs/seeds/cortex-m4-seed2_TF_ENABLE_ONEDNN_OPTS-0")
    default = argparse.Namespace(target="cortex-m4", seeds=[0, 1], quick=False, epochs=None, patience=None, env=[],
                                 out="runs/seeds")
    assert bench.run_folder(default, 0) == Path("runs/seeds/cortex-m4-seed0")
    longer = argparse.Namespace(**dict(vars(default), epochs=100, patience=100))
    assert bench.run_folder(longer, 0) == Path("runs/seeds/cortex-m4-seed0_epochs100_patience100")
