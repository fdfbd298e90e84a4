"""edgemnist.runtime.interpreter (Runner): quantization, the fast path against the plain one, batching, bad input."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from _helpers import bare_interpreter_scores
from edgemnist import data
from edgemnist.runtime import Runner, fast_path

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def images(mnist_test):
    return data.to_model_input(mnist_test.images[:200])


def _raw_interpreter(path):
    """A bare LiteRT interpreter, independent of the Runner."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    return interpreter


# --------------------------------------------------------------------------- backends


def test_forced_tf_lite_backend_gives_the_same_int8_predictions(tflite_variants, images):
    litert = Runner(tflite_variants["int8"]).predict(images[:50])
    tf_lite = Runner(tflite_variants["int8"], backend="tf.lite")
    assert tf_lite.backend.name == "tf.lite"
    np.testing.assert_array_equal(tf_lite.predict(images[:50]), litert)


# --------------------------------------------------------------------------- loading


def test_runner_describes_the_int8_model(tflite_variants):
    runner = Runner(tflite_variants["int8"], num_threads=2)
    assert runner.input.dtype == np.int8 and runner.output.dtype == np.int8
    assert runner.input.quantized and runner.image_shape == (28, 28, 1)
    assert runner.num_threads == 2
    info = runner.info()
    assert info["backend"] == "ai_edge_litert" and info["threads"] == 2
    assert info["input"]["dtype"] == "int8" and info["input"]["shape"] == [1, 28, 28, 1]
    assert runner.init_seconds > 0


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        Runner(tmp_path / "absent.tflite")


def test_not_a_tflite(tmp_path):
    fake = tmp_path / "fake.tflite"
    fake.write_bytes(b"this is not a flatbuffer at all" * 4)
    with pytest.raises(ValueError, match=str(fake)):
        Runner(fake)
    with pytest.raises(ValueError, match="not a file"):
        Runner(tmp_path)


def test_truncated_tflite(tmp_path, tflite_variants):
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(tflite_variants["int8"].read_bytes()[:4000])
    with pytest.raises(ValueError):
        Runner(cut)


@pytest.mark.parametrize("threads", [0, -1, 1.5, True])
def test_bad_thread_count(tflite_variants, threads):
    with pytest.raises(ValueError, match="num_threads"):
        Runner(tflite_variants["int8"], num_threads=threads)


# --------------------------------------------------------------------------- quantization and predictions


def test_int8_input_quantization_uses_the_model_parameters(tflite_variants, images):
    runner = Runner(tflite_variants["int8"])
    detail = _raw_interpreter(tflite_variants["int8"]).get_input_details()[0]
    scale, zero = detail["quantization"]
    assert (runner.input.scale, runner.input.zero_point) == (pytest.approx(scale), zero)
    expected = np.clip(np.round(images / scale + zero), -128, 127).astype(np.int8)
    got = runner.quantize_input(images)
    assert got.dtype == np.int8
    # equal up to a different rounding of exact .5 ties
    assert np.abs(got.astype(int) - expected).max() <= 1
    assert np.mean(got == expected) > 0.999
    # extremes land on the ends of the range the parameters define
    ends = runner.quantize_input(np.array([0.0, 1.0], np.float32).reshape(1, 1, 2, 1).repeat(14, 1).repeat(14, 2))
    assert ends.min() == zero and ends.max() == min(127, round(1 / scale + zero))


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_predict_matches_a_bare_interpreter_loop(tflite_variants, images, variant):
    runner = Runner(tflite_variants[variant])
    expected = bare_interpreter_scores(tflite_variants[variant], images[:100])
    got = runner.predict(images[:100])
    assert got.shape == (100, 10) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_batched_equals_single_image(tflite_variants, images, variant):
    runner = Runner(tflite_variants[variant])
    single = np.stack([runner.predict_one(image) for image in images])
    for batch_size in (1, 7, 64, 256):
        batched = runner.predict(images, batch_size=batch_size)
        if variant == "int8":
            np.testing.assert_array_equal(batched, single)
        else:
            np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(batched.argmax(1), single.argmax(1))


def test_int8_output_is_dequantized(tflite_variants, images):
    runner = Runner(tflite_variants["int8"])
    scores = runner.predict(images[:20])
    out = runner.output
    steps = scores / out.scale + out.zero_point
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)  # on the output's quantization grid
    assert scores.min() >= 0.0 and scores.max() <= 1.0  # softmax probabilities


def test_predict_one_accepts_the_usual_image_shapes(tflite_variants, images):
    runner = Runner(tflite_variants["int8"])
    image = images[3]
    reference = runner.predict_one(image)
    assert reference.shape == (10,)
    for variant in (image[..., 0], image[np.newaxis], image.astype(np.float64),
                    np.asfortranarray(image[..., 0]), image[..., 0].tolist()):
        np.testing.assert_array_equal(runner.predict_one(variant), reference)
    np.testing.assert_array_equal(runner.predict(images[:5, ..., 0]), runner.predict(images[:5]))


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_uint8_pixels_score_as_pixel_over_255(tflite_variants, mnist_test, variant):
    runner = Runner(tflite_variants[variant])
    pixels = mnist_test.images[:30].copy()
    pixels[0].flat[:256] = np.arange(256)  # every pixel value once
    floats = data.to_model_input(pixels)
    expected = np.stack([runner.predict_one(image) for image in floats])
    for shape in ((28, 28, 1), (1, 28, 28, 1), (28, 28)):
        got = np.stack([runner.predict_one(image.reshape(shape)) for image in pixels])
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(runner.predict(pixels), runner.predict(floats))


def _fast_and_reference(runner, images):
    fast = np.stack([runner.predict_one(image) for image in images])
    return fast, np.stack([runner.predict_one_reference(image) for image in images])


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_fast_single_image_path_equals_the_plain_reference_path(tflite_variants, images, variant):
    """predict_one (the interpreter's own buffers, look-up tables, magic-number rounding) gives
    exactly the scores of set_tensor / invoke / get_tensor with textbook quantization."""
    runner = Runner(tflite_variants[variant])
    fast, reference = _fast_and_reference(runner, images)
    np.testing.assert_array_equal(fast, reference)
    assert fast.dtype == reference.dtype == np.float32
    pixels = np.round(images[:50] * 255).astype(np.uint8)
    pixels[0].flat[:256] = np.arange(256)  # every pixel value once
    np.testing.assert_array_equal(*_fast_and_reference(runner, pixels))
    np.testing.assert_array_equal(np.stack([runner.predict_one(image) for image in images]), fast)  # no stale state


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_without_direct_buffer_views_the_public_api_path_gives_the_same_scores(tflite_variants, images, variant,
                                                                                monkeypatch):
    """Where the backend offers no views of its buffers, predict_one goes through set_tensor/get_tensor."""
    expected = Runner(tflite_variants[variant]).predict_one_reference
    monkeypatch.setattr(fast_path, "tensor_views", lambda *args: None)
    runner = Runner(tflite_variants[variant])
    np.testing.assert_array_equal(np.stack([runner.predict_one(image) for image in images[:50]]),
                                  np.stack([expected(image) for image in images[:50]]))


def test_negative_zero_is_in_range(tflite_variants, images):
    runner = Runner(tflite_variants["int8"])
    image = images[0].copy()
    image[image == 0] = -0.0
    np.testing.assert_array_equal(runner.predict_one(image), runner.predict_one(images[0]))


def test_empty_batch(tflite_variants):
    assert Runner(tflite_variants["int8"]).predict(np.zeros((0, 28, 28, 1), np.float32)).shape == (0, 10)


# --------------------------------------------------------------------------- wrong input


def _bad_inputs(image):
    nan, big, neg, inf = image.copy(), image.copy(), image.copy(), image.copy()
    nan[10, 10, 0] = np.nan
    big[5, 5, 0] = 1.5
    neg[0, 0, 0] = -0.25
    inf[0, 0, 0] = np.inf
    return {
        "int16 integers": ((image * 255).astype(np.int16), "dtype int16"),
        "wrong size": (np.zeros((28, 27), np.float32), "shape"),
        "flat": (image.reshape(-1), "shape"),
        "three channels": (np.zeros((28, 28, 3), np.float32), "shape"),
        "NaN": (nan, "NaN"),
        "above one": (big, "values from 0 to 1.5"),
        "negative": (neg, "-0.25"),
        "infinity": (inf, "inf"),
        "strings": (np.array([["a"]]), "dtype"),
    }


@pytest.mark.parametrize("variant", ["float32", "int8"])
@pytest.mark.parametrize("case", list(_bad_inputs(np.zeros((28, 28, 1), np.float32))))
def test_wrong_single_input_raises_value_error(tflite_variants, images, case, variant):
    runner = Runner(tflite_variants[variant])
    bad, fragment = _bad_inputs(images[0])[case]
    for attempt in (bad, bad[np.newaxis]):  # both fast-path shapes
        with pytest.raises(ValueError, match="expected") as info:
            runner.predict_one(attempt)
        assert fragment in str(info.value)
    # the failed call left nothing behind: the next image gets its own scores
    np.testing.assert_array_equal(runner.predict_one(images[1]),
                                  Runner(tflite_variants[variant]).predict_one(images[1]))


@pytest.mark.parametrize("case", ["int16 integers", "NaN", "above one", "negative", "three channels"])
def test_wrong_batch_input_raises_value_error(tflite_variants, images, case):
    runner = Runner(tflite_variants["float32"])
    bad, fragment = _bad_inputs(images[0])[case]
    same_kind = bad.shape == images[0].shape and bad.dtype == images.dtype
    batch = np.stack([images[1], bad]) if same_kind else bad[np.newaxis]
    with pytest.raises(ValueError, match="expected") as info:
        runner.predict(batch)
    assert fragment in str(info.value)


def test_a_batch_is_not_one_image(tflite_variants, images):
    with pytest.raises(ValueError, match="one image"):
        Runner(tflite_variants["int8"]).predict_one(images[:2])


@pytest.mark.parametrize("batch_size", [0, -3, 2.0])
def test_bad_batch_size(tflite_variants, images, batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        Runner(tflite_variants["int8"]).predict(images[:4], batch_size=batch_size)


# --------------------------------------------------------------------------- no TensorFlow


def test_runtime_modules_do_not_import_tensorflow(tflite_variants):
    script = textwrap.dedent(f"""
        import importlib, pkgutil, sys
        import numpy as np
        import edgemnist.measure, edgemnist.runtime
        for package in (edgemnist.runtime, edgemnist.measure):  # every module, split ones included
            for module in pkgutil.iter_modules(package.__path__):
                importlib.import_module(package.__name__ + "." + module.name)
        from edgemnist.measure import bench
        from edgemnist.measure import eval as evaluate
        from edgemnist.measure import compare as report
        from edgemnist.runtime import Runner
        runner = Runner({str(tflite_variants["int8"])!r})
        runner.predict(np.zeros((3, 28, 28, 1), np.float32))
        evaluate.evaluate(runner.path, evaluate.EvalConfig(limit=20))
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tf_keras", "keras"))
        print("LEAKED", leaked)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "LEAKED []" in done.stdout


def _copy_installable_tree(dest: Path) -> Path:
    """The package source, copied so that building it writes nothing into the checkout."""
    dest.mkdir()
    shutil.copy2(REPO_ROOT / "pyproject.toml", dest / "pyproject.toml")
    shutil.copytree(REPO_ROOT / "edgemnist", dest / "edgemnist",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for extra in ("README.md", "LICENSE"):
        if (REPO_ROOT / extra).is_file():
            shutil.copy2(REPO_ROOT / extra, dest / extra)
    if not (dest / "README.md").exists():  # pyproject names it; the checkout may not have it yet
        (dest / "README.md").write_text("edgemnist\n")
    return dest


@pytest.mark.slow
def test_eval_and_bench_in_a_fresh_venv_without_tensorflow(tmp_path, tflite_variants):
    source = _copy_installable_tree(tmp_path / "src")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    env = {**os.environ, "PIP_CACHE_DIR": str(tmp_path / "pip-cache"), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", str(source)], env=env,
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]

    probe = subprocess.run([str(python), "-c", "import importlib.util as u; "
                            "print([m for m in ('tensorflow', 'tf_keras') if u.find_spec(m)])"],
                           env=env, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert probe.stdout.strip() == "[]", probe.stdout + probe.stderr

    cli = venv / "bin" / "edgemnist"
    model = tmp_path / "model_int8.tflite"
    shutil.copy2(tflite_variants["int8"], model)
    evaluated = subprocess.run([str(cli), "eval", str(model), "--test-limit", "500", "--json"], env=env,
                               capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    import json

    result = json.loads(evaluated.stdout)
    assert result["n"] == 500 and 0.0 <= result["accuracy"] <= 1.0
    assert result["backend"] == "ai_edge_litert"
    ours = Runner(tflite_variants["int8"]).predict(data.to_model_input(data.load_split("test", limit=500).images))
    assert result["correct"] == int(np.sum(ours.argmax(1) == data.load_split("test", limit=500).labels))

    benched = subprocess.run([str(cli), "bench", str(model), "--warmup", "5", "--runs", "50",
                              "--throughput-images", "256", "--json"], env=env,
                             capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert benched.returncode == 0, benched.stderr[-2000:]
    bench = json.loads(benched.stdout)
    assert bench["latency_us"]["p50"] > 0 and bench["backend"] == "ai_edge_litert"

    bad = subprocess.run([str(cli), "eval", str(tmp_path / "absent.tflite")], env=env,
                         capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert bad.returncode == 2 and "no such file" in bad.stderr
