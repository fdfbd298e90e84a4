"""runtime.temperature: the temperature fitted at export calibrates real exports; Model and `predict` use it."""
from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

import edgemnist
from _images import digit_photo, jpeg_bytes
from edgemnist import cli
from edgemnist.artifacts import manifest_path
from edgemnist.runtime import Runner
from edgemnist.runtime.temperature import (FLOAT_FLOOR, calibrated, fit_temperature, negative_log_likelihood,
                                           probability_floor)


def test_the_fit_finds_the_temperature_that_made_a_model_overconfident():
    """Labels drawn from softmax(z) and a model that prints softmax(2 z): the fitted T undoes the factor 2."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (20000, 10))
    truth = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(10, p=p) for p in truth])
    printed = np.exp(2 * logits) / np.exp(2 * logits).sum(1, keepdims=True)
    t = fit_temperature(printed, labels)
    assert t == pytest.approx(2.0, rel=0.05)
    assert negative_log_likelihood(printed, labels, t) < negative_log_likelihood(printed, labels, 1.0)


def test_calibrated_keeps_the_order_and_leaves_t_1_alone():
    p = np.array([[0.7, 0.2, 0.1, 0.0], [0.25, 0.25, 0.3, 0.2]])
    assert calibrated(p, 1.0) is not None and np.array_equal(calibrated(p, 1.0), p)
    for t in (0.5, 2.0):
        q = calibrated(p, t)
        np.testing.assert_allclose(q.sum(1), 1.0)
        assert (np.argsort(-q, axis=1, kind="stable") == np.argsort(-p, axis=1, kind="stable")).all()
    assert calibrated(p, 0.5)[0, 0] > 0.7 > calibrated(p, 2.0)[0, 0]
    assert calibrated(p, 0.5, FLOAT_FLOOR)[0, 3] < 1e-20  # an exact 0 stays (about) 0 when sharpened


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_the_exported_temperature_lowers_the_nll_on_digits_it_was_not_fitted_on(tflite_variants, mnist_test,
                                                                                 variant):
    """Fitted at export on the training run's validation split, by the .tflite itself; checked on test digits."""
    path = tflite_variants[variant]
    manifest = json.loads(manifest_path(path).read_text())
    t = manifest["temperature"]
    assert manifest["temperature_fit"]["data"].startswith("validation split") and t != 1.0
    runner = Runner(path)
    scores = runner.predict(mnist_test.images.astype(np.float32) / 255.0)
    floor = probability_floor(runner.output)
    assert floor == (runner.output.scale / 2 if variant == "int8" else FLOAT_FLOOR)
    before = negative_log_likelihood(scores, mnist_test.labels, 1.0, floor)
    after = negative_log_likelihood(scores, mnist_test.labels, t, floor)
    assert after < before, (t, before, after)


def test_model_reads_the_manifest_and_a_given_temperature_overrides_it(tflite_variants, tmp_path):
    path = tflite_variants["int8"]
    fitted = json.loads(manifest_path(path).read_text())["temperature"]
    photo = jpeg_bytes(digit_photo("7", noise=4, light=30))
    runner = Runner(path)
    for given, expected in ((None, fitted), (1.0, 1.0), (2.5, 2.5)):
        model = edgemnist.load(path, temperature=given)
        assert model.temperature == expected and f"temperature={expected}" in repr(model)
        result = model.predict(photo)
        want = calibrated(runner.predict_one(result.image), expected, probability_floor(runner.output))
        assert result.probabilities == tuple(float(p) for p in want)
        assert result.probability == float(want.max()) and result.digit == int(np.argmax(want))
        assert model.predict_batch([photo])[0].probabilities == result.probabilities
    alone = tmp_path / "alone.tflite"  # no manifest beside it: the raw output
    shutil.copyfile(path, alone)
    assert edgemnist.load(alone).temperature == 1.0
    other = json.loads(manifest_path(tflite_variants["float32"]).read_text())  # another file's manifest
    manifest_path(alone).write_text(json.dumps(other))
    assert edgemnist.load(alone).temperature == 1.0


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, "warm", True])
def test_a_bad_temperature_is_a_clear_value_error(tflite_variants, bad):
    with pytest.raises(ValueError, match="temperature must be"):
        edgemnist.load(tflite_variants["int8"], temperature=bad)


def test_a_bad_temperature_in_the_manifest_names_the_manifest(tflite_variants, tmp_path):
    path = tmp_path / "model.tflite"
    shutil.copyfile(tflite_variants["int8"], path)
    manifest = json.loads(manifest_path(tflite_variants["int8"]).read_text())
    manifest_path(path).write_text(json.dumps({**manifest, "temperature": -2}))
    with pytest.raises(ValueError, match=r"model\.tflite\.json: temperature must be"):
        edgemnist.load(path)
    manifest_path(path).write_text("{not json")
    with pytest.raises(ValueError, match=r"model\.tflite\.json: unreadable manifest"):
        edgemnist.load(path)
    assert edgemnist.load(path, temperature=1.0).temperature == 1.0  # a given temperature needs no manifest


def test_predict_takes_a_temperature_and_reports_the_one_used(tflite_variants, tmp_path, capsys):
    image = tmp_path / "seven.jpg"
    image.write_bytes(jpeg_bytes(digit_photo("7", noise=4)))
    fitted = json.loads(manifest_path(tflite_variants["int8"]).read_text())["temperature"]
    for extra, expected in (([], fitted), (["--temperature", "3"], 3.0)):
        assert cli.main(["predict", str(tflite_variants["int8"]), str(image), "--json"] + extra) == 0
        assert json.loads(capsys.readouterr().out)["temperature"] == expected
    assert cli.main(["predict", str(tflite_variants["int8"]), str(image), "--temperature", "0"]) == 2
    err = capsys.readouterr().err
    assert "temperature must be" in err and len(err.strip().splitlines()) == 1
