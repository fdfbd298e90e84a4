"""Tests for edgemnist.measure.compare: compare writes report.json/report.md/PNGs with the documented keys."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from edgemnist import cli
from edgemnist.measure.eval import EvalConfig, evaluate
from edgemnist.measure.compare import (PLOT_FILES, VARIANT_KEYS, CompareConfig, compare, format_table, markdown_table,
                              row_from_bench, variant_name)

SMALL = CompareConfig(limit=300, warmup=3, runs=40)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def compared(tflite_variants, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    report = compare([tflite_variants["float32"], tflite_variants["int8"]], out, SMALL)
    return out, report


def test_report_json_has_exactly_the_documented_keys(compared):
    out, report = compared
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk == report
    assert set(on_disk) == {"variants", "model", "dataset", "machine"}
    assert set(on_disk["model"]) == {"params", "macs"}
    assert set(on_disk["dataset"]) >= {"source", "split", "n"} and on_disk["dataset"]["n"] == 300
    assert {"cpu", "cores", "machine", "python"} <= set(on_disk["machine"])
    for variant in on_disk["variants"]:
        assert tuple(sorted(variant)) == tuple(sorted(VARIANT_KEYS))
        assert set(variant["latency_us"]) == {"p50", "p90", "p99", "mean", "std"}
        assert variant["latency_us"]["p50"] > 0
        assert variant["backend"].startswith("ai_edge_litert ")
        assert variant["threads"] == 1


def test_variants_are_named_by_their_manifest_and_measured(compared, tflite_variants):
    _, report = compared
    float_row, int8_row = report["variants"]
    assert (float_row["name"], int8_row["name"]) == ("float32", "int8")
    assert float_row["agreement"] == 1.0  # the float model is the reference
    assert 0.0 <= int8_row["agreement"] <= 1.0
    assert int8_row["bytes"] == tflite_variants["int8"].stat().st_size < float_row["bytes"]
    assert 0 < int8_row["gzip_bytes"] < int8_row["bytes"] * 1.1
    for row, variant in zip(report["variants"], ("float32", "int8")):
        assert row["accuracy"] == pytest.approx(evaluate(tflite_variants[variant], EvalConfig(limit=300))["accuracy"])


def test_report_paths_are_relative_to_the_report_folder(compared, tflite_variants):
    out, report = compared
    for row, variant in zip(report["variants"], ("float32", "int8")):
        assert not Path(row["path"]).is_absolute()
        assert (out / row["path"]).resolve() == tflite_variants[variant].resolve()


def test_agreement_counts_matching_predictions(compared, tflite_variants, mnist_test):
    from edgemnist import data
    from edgemnist.runtime import Runner

    _, report = compared
    images = data.to_model_input(data.load_split("test", limit=300).images)
    a = Runner(tflite_variants["float32"]).predict(images).argmax(1)
    b = Runner(tflite_variants["int8"]).predict(images).argmax(1)
    assert report["variants"][1]["agreement"] == pytest.approx(np.mean(a == b))


def test_plots_and_markdown_are_written(compared):
    out, report = compared
    for file in PLOT_FILES.values():
        assert (out / file).read_bytes()[:8] == PNG_MAGIC, file
    md = (out / "report.md").read_text()
    assert "| float32 |" in md and "| int8 |" in md
    for file in PLOT_FILES.values():
        assert f"]({file})" in md
    assert not list(out.glob(".*tmp*"))  # atomic writes leave no temporaries


def test_params_and_macs_from_the_keras_model(tflite_variants, trained_model_path, tmp_path):
    from edgemnist.training.model import load_keras_model, model_summary

    config = CompareConfig(limit=50, warmup=1, runs=5, keras=str(trained_model_path), plots=False)
    report = compare([tflite_variants["int8"]], tmp_path, config)
    summary = model_summary(load_keras_model(trained_model_path))
    assert report["model"] == {"params": summary["params"], "macs": summary["macs"]}
    assert not list(tmp_path.glob("*.png"))


def test_without_a_manifest_the_file_stem_names_the_variant(tflite_variants, tmp_path):
    bare = tmp_path / "my_model.tflite"
    shutil.copy2(tflite_variants["int8"], bare)
    assert variant_name(bare) == "my_model"
    report = compare([bare], tmp_path / "out", CompareConfig(limit=50, warmup=1, runs=5,
                                                             reference=str(tflite_variants["float32"]), plots=False))
    # the reference is added when it is not among the compared files
    assert [v["name"] for v in report["variants"]] == ["float32", "my_model"]


def test_same_names_are_made_unique(tflite_variants, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy2(tflite_variants["int8"], tmp_path / folder / "m.tflite")
    report = compare([tmp_path / "a" / "m.tflite", tmp_path / "b" / "m.tflite"], tmp_path / "out",
                     CompareConfig(limit=20, warmup=1, runs=5, plots=False))
    assert [v["name"] for v in report["variants"]] == ["a/m", "b/m"]


def test_without_matplotlib_plots_are_skipped(tflite_variants, tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    report = compare([tflite_variants["float32"], tflite_variants["int8"]], tmp_path,
                     CompareConfig(limit=30, warmup=1, runs=5))
    assert (tmp_path / "report.json").is_file() and (tmp_path / "report.md").is_file()
    assert not list(tmp_path.glob("*.png"))
    assert "matplotlib" in caplog.text
    assert len(report["variants"]) == 2


def test_reference_must_be_a_tflite(tflite_variants, tmp_path):
    with pytest.raises(FileNotFoundError):
        compare([tflite_variants["int8"]], tmp_path,
                CompareConfig(limit=10, runs=2, reference=str(tmp_path / "x.tflite")))


def test_table_rows_can_come_from_bench_json():
    bench = {"model": "/m/model_int8.tflite", "name": "model_int8", "bytes": 28864, "backend": "ai_edge_litert",
             "backend_version": "2.3.0", "threads": 1,
             "latency_us": {"p50": 51.2, "p90": 55.0, "p99": 80.1, "mean": 52.0, "std": 3.1, "min": 49, "max": 99},
             "device": {"name": "raspberrypi"}}
    row = row_from_bench(bench)
    assert set(row) == set(VARIANT_KEYS)
    assert row["name"] == "model_int8 @ raspberrypi" and row["backend"] == "ai_edge_litert 2.3.0"
    assert row["accuracy"] is None and row["latency_us"] == {"p50": 51.2, "p90": 55.0, "p99": 80.1,
                                                             "mean": 52.0, "std": 3.1}
    table = format_table([row])
    assert "model_int8 @ raspberrypi" in table and "28,864" in table and "51.2" in table and " - " in table
    assert markdown_table([row]).count("\n") == 2


def test_compare_command(tflite_variants, tmp_path, capsys):
    status = cli.main(["compare", str(tflite_variants["float32"]), str(tflite_variants["int8"]), "--out", str(tmp_path),
                       "--test-limit", "40", "--warmup", "1", "--runs", "5", "--no-plots", "--json"])
    assert status == 0
    assert json.loads(capsys.readouterr().out) == json.loads((tmp_path / "report.json").read_text())


@pytest.mark.parametrize("argv_tail, message", [
    (["{text}"], "not a .tflite"),
    (["{missing}"], "no such file"),
    (["{model}", "--test-limit", "0"], "limit"),
    (["{model}", "--reference", "{other}"], "other.tflite: no such file"),
])
def test_compare_bad_input_exits_2(tflite_variants, tmp_path, capsys, argv_tail, message):
    text = tmp_path / "notes.txt"
    text.write_text("notes")
    other = tmp_path / "other.tflite"
    values = {"text": str(text), "missing": str(tmp_path / "missing.tflite"), "model": str(tflite_variants["int8"]),
              "other": str(other)}
    status = cli.main(["compare", *[a.format(**values) for a in argv_tail], "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1 and message in err


def test_compare_result_json_from_several_machines(tflite_variants, tmp_path, capsys):
    """Bench/eval JSON files (as copied back from devices) become device x variant tables and a plot."""
    files = []
    for variant in ("float32", "int8"):
        assert cli.main(["bench", str(tflite_variants[variant]), "--warmup", "3", "--runs", "40", "--json"]) == 0
        files.append(tmp_path / f"bench_{variant}.json")
        files[-1].write_text(capsys.readouterr().out)
        assert cli.main(["eval", str(tflite_variants[variant]), "--test-limit", "200", "--json"]) == 0
        files.append(tmp_path / f"eval_{variant}.json")
        files[-1].write_text(capsys.readouterr().out)
    assert cli.main(["compare", *map(str, files), "--out", str(tmp_path / "devices"), "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["variants"] == ["model_float32", "model_int8"] and len(table["devices"]) == 1
    cells = table["cells"][table["devices"][0]]
    assert cells["model_int8"]["p50_us"] > 0 and 0 < cells["model_float32"]["accuracy"] <= 1
    assert (tmp_path / "devices" / "devices.png").read_bytes()[:8] == PNG_MAGIC
    assert cli.main(["compare", str(files[0]), str(tflite_variants["int8"]), "--out", str(tmp_path / "x")]) == 2
    assert "not both" in capsys.readouterr().err


def test_accuracy_vs_size_labels_never_overlap():
    # Variants that sit on one point (same size, accuracies 0.01 pp apart) used to get labels
    # printed over each other; each is now named once, in a legend laid out line by line.
    import matplotlib

    matplotlib.use("Agg")
    from edgemnist.measure.plots import accuracy_vs_size_figure

    variants = [{"name": f"variant_{i}", "bytes": 35_000 + (i % 3) * 8, "accuracy": 0.9953 + (i % 2) * 1e-4}
                for i in range(12)]
    fig = accuracy_vs_size_figure(variants, 10_000)
    ax = fig.axes[0]
    assert not ax.texts  # nothing written at the points
    legend = ax.get_legend()
    assert [t.get_text().split(" ")[0] for t in legend.get_texts()] == [v["name"] for v in variants]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in legend.get_texts()]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    assert not any(box.overlaps(ax.get_window_extent(renderer)) for box in boxes)  # beside the axes


def test_latency_plot_stays_readable_when_one_variant_is_50x_slower():
    # A 50x slower variant (aie_int16x8 on the CPU) squeezed every other bar of a linear axis to a
    # sliver with its value label over the whisker: the axis is logarithmic and each value sits
    # past the end of its whisker, outside every bar.
    import matplotlib

    matplotlib.use("Agg")
    try:
        from edgemnist.measure.plots import latency_figure
    except ImportError:  # before the plots moved out of compare
        from edgemnist.measure.compare import latency_figure

    variants = [{"name": n, "latency_us": {"p50": p50, "p90": p50 * 1.2}, "backend": "ai_edge_litert 2.3.0",
                 "threads": 1} for n, p50 in (("float32", 16.0), ("int8", 14.0), ("aie_int16x8", 800.0))]
    fig = latency_figure(variants, None)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    bars = sorted(ax.patches, key=lambda p: p.get_y())
    labels = sorted(ax.texts, key=lambda t: t.get_position()[1])
    assert len(bars) == len(labels) == 3
    for bar, label in zip(bars, labels):
        assert label.get_position()[0] > bar.get_width() * 1.2  # past the p90 whisker
        assert label.get_ha() == "left"
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert all(bar.get_window_extent(renderer).width > 20 for bar in bars)  # no sliver


def test_compare_cpu_and_gpu_side_by_side(tflite_variants, tmp_path, capsys):
    from _gpu import gpu_runner

    gpu_runner(tflite_variants["int8"])  # skips where no GPU accelerator can run
    out = tmp_path / "report"
    status = cli.main(["compare", str(tflite_variants["float32"]), str(tflite_variants["int8"]), "--out", str(out),
                       "--accelerator", "gpu", "--test-limit", "30", "--runs", "10", "--warmup", "2"])
    text = capsys.readouterr().out
    assert status == 0
    assert "GPU accuracy" in text and "GPU = CPU" in text and "gpu: " in text  # one table, CPU and GPU columns
    report = json.loads((out / "report.json").read_text())
    assert report["accelerators"]["gpu"]["available"] is True and report["accelerators"]["gpu"]["adapter"]
    for v in report["variants"]:
        gpu = v["gpu"]
        assert gpu["cpu_agreement"] >= 0.9 and gpu["max_score_diff"] <= 0.02 and gpu["fully_accelerated"] is True
        assert gpu["latency_us"]["p50"] > 0 and gpu["startup_ms"] > 0 and abs(gpu["accuracy"] - v["accuracy"]) <= 0.1
    assert (out / "latency.png").read_bytes()[:8] == PNG_MAGIC and "**GPU:**" in (out / "report.md").read_text()
