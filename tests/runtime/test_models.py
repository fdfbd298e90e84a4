"""The models shipped in edgemnist/runtime/models: each file is what its manifest says, reads the MNIST test
set as its manifest states, and is what predict, info and edgemnist.load() use when no model is named."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _helpers import run_cli
from edgemnist import data
from edgemnist.artifacts import manifest_path, sha256_file
from edgemnist.runtime import models

NAMES = tuple(models.SHIPPED)


def _photo(tmp_path: Path, index: int) -> tuple[Path, int]:
    """MNIST test digit `index` as a phone would see it: dark ink on light paper, 200x200, JPEG."""
    split = data.load_split("test", limit=index + 1)
    ink = Image.fromarray(255 - split.images[index], "L").resize((200, 200), Image.Resampling.BILINEAR)
    path = tmp_path / f"digit{index}.jpg"
    ink.convert("RGB").save(path, "JPEG", quality=85)
    return path, int(split.labels[index])


@pytest.mark.parametrize("name", NAMES)
def test_each_shipped_file_is_what_its_manifest_says(name):
    path = models.shipped_path(name)
    manifest = models.read_manifest(name)
    assert manifest["sha256"] == sha256_file(path)
    assert manifest["bytes"] == path.stat().st_size
    shipped = manifest["shipped"]
    assert shipped["name"] == name and shipped["file"] == path.name
    assert shipped["command"].startswith("python tools/ship_models.py")
    assert shipped["pipeline_command"].startswith("edgemnist pipeline --out")
    assert isinstance(shipped["seed"], int) and shipped["test_images"] == 10000
    assert manifest["temperature"] > 0  # export's calibration travels with the file
    assert manifest_path(path).name == path.name + ".json"


@pytest.mark.parametrize("name", NAMES)
def test_each_shipped_model_reads_the_mnist_test_set_as_stated(name):
    from edgemnist.measure.eval import EvalConfig, evaluate

    stated = models.read_manifest(name)["shipped"]["test_accuracy"]
    report = evaluate(models.shipped_path(name), EvalConfig())
    assert report["n"] == 10000
    # within 10 of the 10,000 images: another CPU's kernels may round a float score differently
    assert abs(report["accuracy"] - stated) <= 0.001, (report["accuracy"], stated)
    assert report["accuracy"] >= 0.99


def test_load_without_a_path_reads_the_shipped_int8_model(tmp_path):
    import edgemnist

    model = edgemnist.load()
    assert Path(model.path) == models.shipped_path("int8")
    assert model.temperature == pytest.approx(models.read_manifest("int8")["temperature"])
    for index in range(5):
        photo, label = _photo(tmp_path, index)
        assert model.predict(photo).digit == label
    assert Path(edgemnist.load("float32").path) == models.shipped_path("float32")


def test_predict_without_a_model_uses_the_shipped_int8_model(tmp_path):
    photo, label = _photo(tmp_path, 0)
    result = run_cli("predict", photo, "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert Path(out["model"]) == models.shipped_path("int8")
    assert out["predictions"][0]["digit"] == label
    by_name = json.loads(run_cli("predict", "float32", photo, "--json").stdout)
    assert Path(by_name["model"]) == models.shipped_path("float32")
    by_flag = json.loads(run_cli("predict", photo, "--model", "float32", "--json").stdout)
    assert Path(by_flag["model"]) == models.shipped_path("float32")
    assert by_name["predictions"][0]["digit"] == by_flag["predictions"][0]["digit"] == label


def test_info_lists_the_shipped_models_and_the_default():
    result = run_cli("info", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["default"] == "int8"
    rows = {row["name"]: row for row in out["shipped_models"]}
    assert set(rows) == set(NAMES) and rows["int8"]["default"] and not rows["float32"]["default"]
    for name, row in rows.items():
        assert row["sha256"] == sha256_file(models.shipped_path(name))
    text = run_cli("info").stdout
    assert "(default)" in text and "tools/ship_models.py" in text
    described = json.loads(run_cli("info", "int8", "--json").stdout)
    assert described["bytes"] == models.shipped_path("int8").stat().st_size


def test_a_model_argument_names_a_shipped_model_unless_a_file_has_that_name(tmp_path, monkeypatch):
    assert models.resolve_model(None) == models.shipped_path("int8")
    assert models.resolve_model("float32") == models.shipped_path("float32")
    assert models.resolve_model("mine.tflite") == Path("mine.tflite")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "int8").write_bytes(b"a file of the user's")
    assert models.resolve_model("int8") == Path("int8")
    assert models.is_shipped(models.shipped_path("int8")) and not models.is_shipped(tmp_path / "int8")


def test_a_shipped_model_missing_from_the_install_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "SHIPPED_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="missing from this install"):
        models.resolve_model(None)
    with pytest.raises(ValueError, match="not a shipped model"):
        models.shipped_path("int4")


@pytest.mark.parametrize("positionals, model, expected", [
    (["photo.jpg"], None, (None, ["photo.jpg"])),
    (["m.tflite", "photo.jpg", "scans/"], None, ("m.tflite", ["photo.jpg", "scans/"])),
    (["M.TFLITE"], None, ("M.TFLITE", [])),
    (["float32", "photo.jpg"], None, ("float32", ["photo.jpg"])),
    (["photo.jpg", "m.tflite"], "int8", ("int8", ["photo.jpg", "m.tflite"])),
    ([], None, (None, [])),
])
def test_predict_splits_the_model_from_the_images(positionals, model, expected):
    from edgemnist.predict import split_model_argument

    assert split_model_argument(model, positionals) == expected


def test_shipped_probabilities_are_calibrated_like_any_export():
    import edgemnist

    model = edgemnist.load()
    digits = data.load_split("test", limit=50)
    predictions = edgemnist.load(prepare=False).predict_batch(list(digits.images))
    assert sum(p.digit == label for p, label in zip(predictions, digits.labels)) >= 49
    assert all(0.0 < p.probability <= 1.0 and np.isclose(sum(p.probabilities), 1.0) for p in predictions)
    assert model.temperature != 1.0
