"""Tests for edgemnist.measure.eval: accuracy equals a bare interpreter loop, the confusion matrix, the eval command."""
from __future__ import annotations

import json

import numpy as np
import pytest

from _helpers import bare_interpreter_scores
from edgemnist import cli, data
from edgemnist.measure.eval import EvalConfig, accuracy_report, confusion_matrix, evaluate
from edgemnist.runtime.accelerator import RuntimeSettings

JSON_KEYS = {"accuracy", "n", "correct", "per_class_accuracy", "per_class_count", "confusion_matrix", "model",
             "backend", "backend_version", "threads", "batch_size", "seconds", "images_per_second", "dataset"}


def test_confusion_matrix_counts():
    cm = confusion_matrix(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2]))
    assert cm.shape == (10, 10)
    assert cm[0, 0] == 1 and cm[0, 1] == 1 and cm[1, 1] == 1 and cm[2, 2] == 2 and cm[2, 0] == 1
    assert cm.sum() == 6


def test_accuracy_report_per_class():
    report = accuracy_report(np.array([3, 3, 3, 7]), np.array([3, 5, 3, 7]))
    assert report["n"] == 4 and report["correct"] == 3 and report["accuracy"] == 0.75
    assert report["per_class_accuracy"][3] == pytest.approx(2 / 3)
    assert report["per_class_accuracy"][7] == 1.0
    assert report["per_class_accuracy"][0] is None  # no examples of class 0
    assert report["per_class_count"][3] == 3


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_eval_accuracy_equals_a_bare_interpreter_loop(tflite_variants, mnist_test, variant):
    split = mnist_test.head(300)
    report = evaluate(tflite_variants[variant], EvalConfig(batch_size=64), split=split)
    expected = bare_interpreter_scores(tflite_variants[variant], data.to_model_input(split.images)).argmax(1)
    np.testing.assert_array_equal(report["predictions"], expected)
    assert report["correct"] == int(np.sum(expected == split.labels))
    assert report["accuracy"] == pytest.approx(np.mean(expected == split.labels))
    cm = np.array(report["confusion_matrix"])
    assert cm.sum() == 300 and np.trace(cm) == report["correct"]
    assert report["per_class_count"] == np.bincount(split.labels, minlength=10).tolist()


def test_eval_limit_reads_the_first_test_images(tflite_variants):
    report = evaluate(tflite_variants["int8"], EvalConfig(limit=123, runtime=RuntimeSettings(threads=2)))
    assert report["n"] == 123 and report["dataset"]["n"] == 123 and report["threads"] == 2
    assert report["backend"] == "ai_edge_litert"


@pytest.mark.parametrize("field, value", [("limit", 0), ("batch_size", 0)])
def test_eval_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        EvalConfig(**{field: value})


@pytest.mark.parametrize("field, value", [("threads", 0), ("backend", "onnx")])
def test_eval_runtime_settings_reject_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        EvalConfig(runtime=RuntimeSettings(**{field: value}))


def test_shared_run_settings_name_the_first_bad_field_and_its_value():
    from types import SimpleNamespace

    from edgemnist.measure.eval import check_run_settings

    good = dict(limit=None, runs=10, batch_size=1, warmup=0)
    check_run_settings(SimpleNamespace(**good), at_least_one=("runs", "batch_size"), at_least_zero=("warmup",))
    for bad, message in ((dict(limit=0), "limit must be >= 1, got 0"),
                         (dict(runs=0, batch_size=0), "runs must be >= 1, got 0"),
                         (dict(warmup=-1), "warmup must be >= 0, got -1")):
        with pytest.raises(ValueError, match=message):
            check_run_settings(SimpleNamespace(**{**good, **bad}), at_least_one=("runs", "batch_size"),
                               at_least_zero=("warmup",))


def test_eval_command_json(tflite_variants, capsys):
    status = cli.main(["eval", str(tflite_variants["int8"]), "--test-limit", "200", "--batch-size", "50", "--json"])
    assert status == 0
    result = json.loads(capsys.readouterr().out)
    assert JSON_KEYS <= set(result)
    assert result["n"] == 200 and 0.0 <= result["accuracy"] <= 1.0
    assert len(result["confusion_matrix"]) == 10 and sum(map(sum, result["confusion_matrix"])) == 200


def test_eval_command_table(tflite_variants, capsys):
    assert cli.main(["eval", str(tflite_variants["float32"]), "--test-limit", "100"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "confusion matrix" in out


@pytest.mark.parametrize("argv_tail, message", [
    (["{missing}"], "no such file"),
    (["{not_tflite}"], "not_a_model.tflite"),
    (["{model}", "--test-limit", "0"], "limit"),
    (["{model}", "--batch-size", "0"], "batch_size"),
    (["{model}", "--threads", "0"], "threads"),
    (["{model}", "--data-dir", "{missing}"], "does not exist"),
])
def test_eval_bad_input_exits_2_with_one_line(tflite_variants, tmp_path, capsys, argv_tail, message):
    not_tflite = tmp_path / "not_a_model.tflite"
    not_tflite.write_text("hello, I am text\n" * 10)
    values = {"missing": str(tmp_path / "missing.tflite"), "not_tflite": str(not_tflite),
              "model": str(tflite_variants["int8"])}
    status = cli.main(["eval"] + [a.format(**values) for a in argv_tail])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert len(err.splitlines()) == 1 and message in err


def test_eval_on_the_gpu_reports_what_ran_and_the_cpu_agreement(tflite_variants, capsys):
    from _gpu import gpu_runner

    gpu_runner(tflite_variants["int8"])  # skips where no GPU accelerator can run
    status = cli.main(["eval", str(tflite_variants["int8"]), "--accelerator", "gpu", "--test-limit", "30", "--json"])
    assert status == 0
    result = json.loads(capsys.readouterr().out)
    assert JSON_KEYS <= set(result) and result["n"] == 30
    gpu = result["accelerator"]
    assert gpu["name"] == "gpu" and gpu["adapter"] and gpu["fully_accelerated"] is True
    assert gpu["vs_cpu"]["agreement"] >= 0.9 and gpu["vs_cpu"]["max_score_diff"] <= 0.02
