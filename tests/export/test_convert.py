"""Tests for edgemnist.export.convert: real TFLite conversions of a small trained model, run with LiteRT."""
from __future__ import annotations

import json

import numpy as np
import pytest

from _helpers import bare_interpreter_scores
from edgemnist import data
from edgemnist.export import convert
from edgemnist.artifacts import gzip_size, sha256_file
from edgemnist.export.convert import ExportConfig

CONFIG = ExportConfig(representative_size=100)


def run_tflite(path_or_bytes, images: np.ndarray) -> np.ndarray:
    """Dequantized float outputs of a .tflite for uint8 (N, 28, 28) images, from a plain LiteRT loop."""
    return bare_interpreter_scores(path_or_bytes, data.to_model_input(images))


@pytest.fixture(scope="module")
def exported(tmp_path_factory, trained_model_path):
    """float32, int8 and AI Edge int8 exports of the session's trained model."""
    out = tmp_path_factory.mktemp("export")
    manifests = {}
    for variant in ("float32", "int8", "aie_int8"):
        manifests[variant] = convert.export_variant(
            trained_model_path, variant, out / convert.variant_filename(variant, CONFIG), CONFIG
        )
    return manifests


@pytest.fixture(scope="module")
def keras_probabilities(trained_model_path, mnist_test):
    from edgemnist.training.model import load_keras_model

    model = load_keras_model(trained_model_path)
    return model.predict(data.to_model_input(mnist_test.images[:200]), verbose=0)


def test_float32_matches_keras(exported, keras_probabilities, mnist_test):
    tflite = run_tflite(exported["float32"]["path"], mnist_test.images[:200])
    np.testing.assert_allclose(tflite, keras_probabilities, atol=1e-4)


def test_int8_accuracy_close_to_float(exported, keras_probabilities, mnist_test):
    labels = mnist_test.labels[:200]
    int8 = run_tflite(exported["int8"]["path"], mnist_test.images[:200]).argmax(1)
    float_pred = keras_probabilities.argmax(1)
    assert (int8 == labels).mean() >= (float_pred == labels).mean() - 0.03
    assert (int8 == float_pred).mean() >= 0.9


def test_int8_has_integer_io_and_native_dilated_ops(exported):
    manifest = exported["int8"]
    assert manifest["inputs"][0]["dtype"] == "int8" and manifest["outputs"][0]["dtype"] == "int8"
    assert manifest["inputs"][0]["scale"] == pytest.approx(1 / 255, rel=1e-3)
    assert manifest["inputs"][0]["shape"] == [1, 28, 28, 1]
    for variant in exported.values():
        assert "SPACE_TO_BATCH_ND" not in variant["ops"] and "BATCH_TO_SPACE_ND" not in variant["ops"]
        assert "DEPTHWISE_CONV_2D" in variant["ops"]


def test_manifest_matches_file(exported, trained_model_path):
    for manifest in exported.values():
        on_disk = json.loads(open(manifest["manifest_path"]).read())
        data_bytes = open(manifest["path"], "rb").read()
        assert on_disk["sha256"] == sha256_file(manifest["path"])
        assert on_disk["bytes"] == len(data_bytes)
        assert on_disk["gzip_bytes"] == gzip_size(data_bytes) < len(data_bytes)
        assert on_disk["source_sha256"] == sha256_file(trained_model_path)
        assert on_disk["variant"] in manifest["path"]
        assert on_disk["converter"]["versions"]


def test_manifest_gives_the_temperature_fitted_on_the_runs_validation_split(exported):
    for manifest in exported.values():
        on_disk = json.loads(open(manifest["manifest_path"]).read())
        fit = on_disk["temperature_fit"]
        assert on_disk["temperature"] > 0 and on_disk["temperature"] == manifest["temperature"]
        assert fit["data"].startswith("validation split of the training run") and fit["images"] == 150
        assert fit["nll_calibrated"] < fit["nll"] and 0 < fit["accuracy"] <= 1
        assert fit["floor"] == (on_disk["outputs"][0]["scale"] / 2 if on_disk["outputs"][0]["scale"] else 1e-12)


def test_export_without_a_training_run_fits_on_a_training_sample(trained_model_path, tmp_path):
    """A Keras model outside its run folder (as pruned and QAT models are) still exports, with a temperature
    fitted on training digits; temperature_size=0 fits none, and the .tflite is the same either way."""
    import edgemnist

    bare = tmp_path / "model.keras"
    bare.write_bytes(trained_model_path.read_bytes())
    fitted = convert.export_variant(bare, "int8", tmp_path / "fitted.tflite",
                                    ExportConfig(representative_size=100, temperature_size=300))
    assert fitted["temperature_fit"]["data"].startswith("sample of the training split")
    assert fitted["temperature_fit"]["images"] == 300 and fitted["temperature"] > 0
    assert fitted["settings"]["temperature_size"] == 300
    none = convert.export_variant(bare, "int8", tmp_path / "none.tflite",
                                  ExportConfig(representative_size=100, temperature_size=0))
    assert none["temperature"] is None and none["temperature_fit"] is None and none["sha256"] == fitted["sha256"]
    assert edgemnist.load(tmp_path / "none.tflite").temperature == 1.0
    assert edgemnist.load(tmp_path / "fitted.tflite").temperature == fitted["temperature"]


def test_reexport_is_byte_identical(exported, trained_model_path, tmp_path):
    for variant in ("float32", "int8"):
        again = convert.export_variant(trained_model_path, variant, tmp_path / f"{variant}.tflite", CONFIG)
        assert again["sha256"] == exported[variant]["sha256"]
        assert open(again["path"], "rb").read() == open(exported[variant]["path"], "rb").read()


def test_strip_keeps_every_output_and_io_names(trained_model_path, mnist_test):
    converted = convert.convert_variant(trained_model_path, "int8", CONFIG)
    assert len(converted.tflite) < len(converted.unstripped)
    images = mnist_test.images[:50]
    np.testing.assert_array_equal(run_tflite(converted.tflite, images), run_tflite(converted.unstripped, images))
    from ai_edge_litert.interpreter import Interpreter

    names = [
        [d["name"] for d in (it.get_input_details() + it.get_output_details())]
        for it in (Interpreter(model_content=converted.tflite), Interpreter(model_content=converted.unstripped))
    ]
    assert names[0] == names[1]
    # the default model's RESHAPEs (its space-to-depth stem) feed no FULLY_CONNECTED: all kept
    assert _ops(converted.tflite) == _ops(converted.unstripped) and "RESHAPE" in _ops(converted.tflite)


def _ops(tflite: bytes) -> list:
    from ai_edge_litert.interpreter import Interpreter

    return [op["op_name"] for op in Interpreter(model_content=tflite)._get_ops_details()]


def test_strip_folds_a_flatten_into_the_fully_connected_that_reads_it(tmp_path, mnist_test):
    """A flatten head's RESHAPE (which TFLite Micro runs as a copy of the whole map) is dropped:
    FULLY_CONNECTED reads its input as rows of the filter's width anyway, so every output stays."""
    from edgemnist.micro.check import micro_predict, quantize_images
    from edgemnist.training.model import ModelConfig, build_ds_cnn

    shape = ModelConfig(stem="conv", stem_kernel=3, stem_channels=8, block_channels=(8,), dilation_rates=(1,),
                        pool_after=(0,), global_pool="flatten")
    path = tmp_path / "flatten_head.keras"
    build_ds_cnn(shape).save(path)
    images = mnist_test.images[:50]
    for variant in ("float32", "int8"):
        converted = convert.convert_variant(path, variant, CONFIG)
        assert "RESHAPE" in _ops(converted.unstripped), variant
        assert _ops(converted.tflite) == [op for op in _ops(converted.unstripped) if op != "RESHAPE"], variant
        np.testing.assert_array_equal(run_tflite(converted.tflite, images), run_tflite(converted.unstripped, images))
    # TFLite Micro too, and it needs less arena without the copy
    digits = quantize_images(images[:10], 1 / 255, -128)
    model_paths = []
    for name, tflite in (("folded", converted.tflite), ("converted", converted.unstripped)):
        model_paths.append(tmp_path / f"{name}.tflite")
        model_paths[-1].write_bytes(tflite)
    np.testing.assert_array_equal(micro_predict(model_paths[0], digits, 64 << 10),
                                  micro_predict(model_paths[1], digits, 64 << 10))
    from edgemnist.micro.arena import measure_arena

    assert measure_arena(model_paths[0], 0.0).minimum < measure_arena(model_paths[1], 0.0).minimum


def test_conv_classifier_exports_without_fully_connected_and_runs_alike_on_tflite_micro(tmp_path, mnist_test):
    """classifier="conv": the scores come from a CONV_2D (then a RESHAPE to the 10 scores), so a firmware
    links no FULLY_CONNECTED kernel; TFLite Micro gives the int8 scores of LiteRT's builtin kernels (the ones
    it derives from: the XNNPACK delegate may round a score differently)."""
    from edgemnist.micro.check import litert_raw_outputs, micro_predict, quantize_images
    from edgemnist.runtime import tflite_info
    from edgemnist.training.model import ModelConfig, build_ds_cnn

    shape = ModelConfig(stem="conv", stem_kernel=3, stem_channels=8, block_channels=(8, 16), dilation_rates=(1, 1),
                        pool_after=(2,), pool_before_pointwise=(1,), global_pool="flatten", classifier="conv")
    path = tmp_path / "conv_head.keras"
    build_ds_cnn(shape).save(path)
    converted = convert.convert_variant(path, "int8_per_tensor", CONFIG)
    ops = _ops(converted.tflite)
    assert "FULLY_CONNECTED" not in ops and ops[-3:] == ["CONV_2D", "RESHAPE", "SOFTMAX"]
    model_path = tmp_path / "conv_head.tflite"
    model_path.write_bytes(converted.tflite)
    scale, zero_point = tflite_info.input_quantization(tflite_info.validate(converted.tflite))
    digits = quantize_images(mnist_test.images[:10], scale, zero_point)
    np.testing.assert_array_equal(micro_predict(model_path, digits, 64 << 10), litert_raw_outputs(model_path, digits))


def test_ai_edge_int8_runs_and_agrees(exported, keras_probabilities, mnist_test):
    manifest = exported["aie_int8"]
    assert manifest["quantizer"] == "ai-edge" and manifest["inputs"][0]["dtype"] == "int8"
    pred = run_tflite(manifest["path"], mnist_test.images[:200]).argmax(1)
    assert (pred == keras_probabilities.argmax(1)).mean() >= 0.9


def test_per_tensor_is_smaller_than_per_channel(exported, trained_model_path):
    per_tensor = convert.convert_variant(trained_model_path, "int8_per_tensor", CONFIG).tflite
    assert len(per_tensor) < exported["int8"]["bytes"]


def test_bad_inputs_raise_clear_errors(exported, tmp_path):
    with pytest.raises(ValueError, match="unknown variant 'int3'"):
        convert.export_variant(exported["float32"]["path"], "int3", tmp_path / "x.tflite")
    with pytest.raises(ValueError, match="needs a Keras model"):
        convert.export_variant(exported["float32"]["path"], "int8", tmp_path / "x.tflite")
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        convert.export_variant(tmp_path / "missing.keras", "float32", tmp_path / "x.tflite")
    with pytest.raises(ValueError, match="representative_size"):
        ExportConfig(representative_size=0)
    with pytest.raises(ValueError, match=r"\(N, 28, 28"):
        convert.representative_images(CONFIG, np.zeros((4, 10, 10), np.uint8))
    assert not (tmp_path / "x.tflite").exists()


def test_variant_table_and_defaults():
    assert convert.default_variants("tflite")[0] == "float32"
    assert "aie_int8" not in convert.default_variants("tflite")
    assert set(convert.default_variants("ai-edge")) == {"float32"} | {
        v.name for v in convert.VARIANTS.values() if v.quantizer == "ai-edge"
    }
    with pytest.raises(ValueError, match="quantizer"):
        convert.default_variants("onnx")


def test_export_all_requires_named_sources(trained_model_path, tmp_path):
    with pytest.raises(ValueError, match="pruned_int8: needs the pruned model"):
        convert.export_all({"model": trained_model_path}, tmp_path, ["float32", "pruned_int8"], CONFIG)
    with pytest.raises(FileNotFoundError, match="nope.keras"):
        convert.export_all({"model": trained_model_path, "qat": tmp_path / "nope.keras"}, tmp_path, ["float32"])
    assert not list(tmp_path.iterdir())


def test_export_cli_writes_variant_and_manifest(trained_model_path, tmp_path, capsys):
    from edgemnist import cli

    status = cli.main(["export", "--from", str(trained_model_path), "--out", str(tmp_path),
                       "--variants", "float16", "--json"])
    assert status == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert "[export] 1/1 float16" in captured.err
    manifest = result["variants"]["float16"]
    assert (tmp_path / "model_float16.tflite").stat().st_size == manifest["bytes"]
    on_disk = json.loads((tmp_path / "model_float16.tflite.json").read_text())
    assert on_disk["sha256"] == manifest["sha256"]
    assert manifest["seconds"] > 0 and "seconds" not in on_disk  # timing is reported, never part of the manifest
    assert cli.main(["export", "--from", str(trained_model_path), "--out", str(tmp_path), "--variants", "int3"]) == 2


def test_export_all_converts_each_variant_once_and_reports_progress(trained_model_path, tmp_path):
    lines = []
    result = convert.export_all({"model": trained_model_path}, tmp_path, ["float16", "dynamic", "float16"],
                                CONFIG, progress=lines.append)
    assert list(result["variants"]) == ["float16", "dynamic"]
    assert [line.split()[:2] for line in lines] == [["1/2", "float16"], ["2/2", "dynamic"]]
    assert "left" in lines[0] and "left" not in lines[1]  # an ETA while work remains
    # the total covers every variant's time (each value is rounded to 0.01 s on its own)
    assert result["seconds"] >= sum(m["seconds"] for m in result["variants"].values()) - 0.01 * len(lines)
    assert len({n for n in convert.default_variants("all")}) == len(convert.default_variants("all"))
