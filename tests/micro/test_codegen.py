"""edgemnist codegen: generated C compiled for the host gives LiteRT's builtin-kernel scores, every one.

Small models with random weights exercise each covered op (stride, padding, dilation, depth
multiplier, per-channel and per-tensor weights, max and average pooling, mean, flatten and
fully connected) with and without fusion, windows wholly in the padding and layers without
activation (where the roundings differ); the shipped int8 model (space-to-depth stem,
dilated depthwise convolutions, mean, softmax) is checked on real test digits. The arena is surrounded by guard bytes the harness checks after every input.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edgemnist.micro import codegen
from edgemnist.micro.check import litert_raw_outputs, quantize_images
from edgemnist.runtime.models import shipped_path
from edgemnist.runtime.tflite_reader import read_model

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc for the host build")

GUARD = 64


def _keras_models():
    """name -> a tf.keras model with random weights (seeded) whose TFLite ops codegen covers."""
    import tensorflow as tf

    layers = tf.keras.layers
    tf.keras.utils.set_random_seed(0)
    x = inp = layers.Input((28, 28, 1))
    x = layers.Conv2D(6, 3, strides=2, padding="same", activation="relu6")(x)  # 14x14, stride + SAME
    x = layers.DepthwiseConv2D(3, dilation_rate=2, padding="same", depth_multiplier=2, activation="relu")(x)
    x = layers.MaxPooling2D(2, padding="same")(x)  # 7x7: fused with the depthwise convolution
    x = layers.Conv2D(8, 1, activation="relu")(x)
    x = layers.AveragePooling2D(2, strides=1, padding="valid")(x)  # 6x6
    x = layers.Conv2D(8, 3, padding="valid")(x)  # 4x4, no activation: negative values reach the classifier
    x = layers.MaxPooling2D(3, strides=1, padding="same")(x)  # overlapping windows, SAME padding: fused too
    x = layers.Conv2D(12, 1)(x)  # 1x1 before the flatten: fused with the classifier
    x = layers.Flatten()(x)
    out = layers.Dense(10)(x)  # raw logits out: every rounding of the classifier shows, negative ones too
    ops = tf.keras.Model(inp, out)

    x = inp2 = layers.Input((28, 28, 1))
    x = layers.Conv2D(8, 5, strides=2, padding="valid", activation="relu")(x)  # 12x12, VALID, 5x5
    x = layers.DepthwiseConv2D(3, strides=2, padding="same", activation="relu6")(x)  # 6x6, strided depthwise
    x = layers.Conv2D(16, 1, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)  # MEAN
    out2 = layers.Dense(10)(x)  # logits (SOFTMAX: the shipped model's test, where it is not flat)
    mean = tf.keras.Model(inp2, out2)

    x = inp4 = layers.Input((28, 28, 1))
    x = layers.Conv2D(4, 3, dilation_rate=2, padding="same")(x)  # dilated: a row's taps are apart
    x = layers.Conv2D(8, 5, strides=4, padding="valid")(x)  # 6x6
    x = layers.Conv2D(8, 4, strides=2, padding="valid")(x)  # 2x2
    # kernel 2, dilation 3, SAME on a 2x2 map: the windows of the first row and column lie wholly in the
    # padding; no activation: negative outputs, where the roundings differ
    x = layers.DepthwiseConv2D(2, dilation_rate=3, padding="same", depth_multiplier=2)(x)
    x = layers.Flatten()(x)
    out4 = layers.Dense(10)(x)
    edges = tf.keras.Model(inp4, out4)

    x = inp3 = layers.Input((28, 28, 1))
    a = layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    b = layers.Conv2D(4, 3, padding="same", activation="relu")(a)
    x = layers.Add()([a, b])  # a branch: not a chain
    x = layers.Flatten()(x)
    out3 = layers.Dense(10, activation="softmax")(x)
    branch = tf.keras.Model(inp3, out3)
    return {"ops": ops, "mean": mean, "edges": edges, "branch": branch}


@pytest.fixture(scope="module")
def models(tmp_path_factory, mnist_train):
    """name -> .tflite path: the random-weight models in int8 (per-channel) and int8_per_tensor."""
    from edgemnist.export.convert import ExportConfig, export_variant

    folder = tmp_path_factory.mktemp("codegen_models")
    paths = {}
    calibration = mnist_train.images[:100]
    for name, model in _keras_models().items():
        for variant in ("int8", "int8_per_tensor"):
            if name in ("branch", "edges") and variant != "int8":
                continue
            path = folder / f"{name}_{variant}.tflite"
            export_variant(model, variant, path, ExportConfig(representative_size=100), representative=calibration)
            paths[f"{name}_{variant}"] = path
    return paths


def _scores(model_path, images, folder, fuse=True):
    """(LiteRT's int8 scores, the generated C's) for uint8 images, with a guarded arena."""
    codegen.write(model_path, folder, codegen.CodegenConfig(fuse=fuse))
    model = read_model(model_path)
    x = model.tensors[model.main.inputs[0]]
    q = quantize_images(images, x.scale, x.zero_point)
    exe = codegen.host_build(folder, guard=GUARD)
    ref = litert_raw_outputs(model_path, q)
    return ref, codegen.host_predict(exe, q, ref.shape[1])


@pytest.mark.parametrize("name", ["ops_int8", "ops_int8_per_tensor", "mean_int8", "mean_int8_per_tensor", "edges_int8"])
@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
def test_every_score_matches_litert(models, mnist_test, tmp_path, name, fuse):
    ref, got = _scores(models[name], mnist_test.images[:200], tmp_path / "c", fuse=fuse)
    assert ref.shape == got.shape == (200, 10)
    mismatched = np.flatnonzero((ref != got).any(axis=1))
    assert mismatched.size == 0, f"{mismatched.size} of 200 inputs differ, first {mismatched[:5]}"
    # The random-weight models must exercise the arithmetic, not saturate it.
    assert len(np.unique(ref)) > 20, np.unique(ref)


@pytest.mark.parametrize("name", ["ops_int8", "edges_int8"])
def test_every_layer_matches_litert(models, mnist_test, tmp_path, name):
    """Each generated layer's output equals the tensor LiteRT computed for the same op (not only the scores)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    path = models[name]
    folder = tmp_path / "c"
    report = codegen.write(path, folder, codegen.CodegenConfig(fuse=False))
    exe = codegen.host_build(folder, trace=True)
    model = read_model(path)
    x = model.tensors[model.main.inputs[0]]
    interpreter = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    for image in quantize_images(mnist_test.images[:5], x.scale, x.zero_point):
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image[None])
        interpreter.invoke()
        outputs = codegen.host_trace(exe, image)
        assert len(outputs) == len(report["layers"])
        for layer, out in zip(report["layers"], outputs):
            want = interpreter.get_tensor(model.main.operators[layer["ops"][-1]].outputs[0]).reshape(-1)
            np.testing.assert_array_equal(out, want, err_msg=f"layer {layer['layer']} ({layer['what']})")


def test_shipped_model_matches_litert_on_test_digits(mnist_test, tmp_path):
    """The shipped int8 model (the default model: space-to-depth stem, dilated depthwise, mean, softmax)."""
    ref, got = _scores(shipped_path("int8"), mnist_test.images, tmp_path / "c")
    np.testing.assert_array_equal(got, ref)
    assert (got.argmax(axis=1) == mnist_test.labels).mean() > 0.97


def test_fusion_and_in_place_layers_shrink_the_arena(models, tmp_path):
    report = codegen.write(models["ops_int8"], tmp_path / "c")
    unfused = codegen.write(models["ops_int8"], tmp_path / "u", codegen.CodegenConfig(fuse=False))
    assert len(report["fusions"]) >= 2
    assert report["arena_bytes"] < unfused["arena_bytes"] == report["unfused_arena_bytes"]
    assert report["arena_bytes"] < report["ping_pong_bytes"]
    # the stated arena is the largest tensor or more, and every layer's tensors lie inside it
    plan = json.loads((tmp_path / "c" / codegen.PLAN_NAME).read_text())
    for layer in plan["layers"]:
        assert 0 <= layer["output_offset"] and layer["output_offset"] + layer["output_bytes"] <= plan["arena_bytes"]
    header = (tmp_path / "c" / "mnist.h").read_text()
    assert f"#define MNIST_ARENA_BYTES {report['arena_bytes']}" in header


def test_a_plan_that_overwrites_unread_input_is_refused(models):
    """_check_plan rejects an output placed closer below its input than the simulated order allows."""
    model = read_model(models["ops_int8"])
    layers = [codegen._finish(layer) for layer in codegen.lower(model)]
    k = next(i for i, layer in enumerate(layers) if layer.kind == "dwconv")
    shift = codegen.safe_shift(layers[k])
    assert shift > 0  # a 3x3 depthwise convolution still reads the rows above its output
    sizes = [784] + [layer.out_bytes for layer in layers]
    offsets = [0] * len(sizes)
    arena = sum(sizes) * 2
    pos = 0
    for i in range(len(sizes)):  # everything apart...
        offsets[i] = pos
        pos += sizes[i]
    offsets[k + 1] = offsets[k] - shift + 1  # ...except layer k's output, one byte too close
    offsets[k] += 0
    if offsets[k + 1] < 0:
        offsets = [o + shift for o in offsets]
    with pytest.raises(codegen.CodegenError, match="overwrite input"):
        codegen._check_plan(layers, offsets, sizes, [codegen.safe_shift(layer) for layer in layers], arena + shift)


def test_deterministic_output(models, tmp_path):
    a = codegen.write(models["mean_int8"], tmp_path / "a")
    b = codegen.write(models["mean_int8"], tmp_path / "b")
    assert a["arena_bytes"] == b["arena_bytes"]
    for name in a["files"]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_unsupported_op_is_refused_by_index_and_nothing_is_written(models, tmp_path):
    out = tmp_path / "c"
    result = subprocess.run([sys.executable, "-m", "edgemnist", "codegen", str(models["branch_int8"]), "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "operator" in lines[0] and "ADD" in lines[0], result.stderr
    assert str(models["branch_int8"]) in lines[0]
    assert not out.exists()


def test_float_model_is_refused(tmp_path):
    from edgemnist.runtime.models import shipped_path

    result = subprocess.run([sys.executable, "-m", "edgemnist", "codegen", str(shipped_path("float32")), "--out",
                             str(tmp_path / "c")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "float32" in result.stderr and "int8" in result.stderr
    assert not (tmp_path / "c").exists()


def test_cli_json_report(tmp_path):
    result = subprocess.run([sys.executable, "-m", "edgemnist", "codegen", str(shipped_path("int8")), "--out",
                             str(tmp_path / "c"), "--name", "digits", "--json"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["name"] == "digits" and (tmp_path / "c" / "digits.c").is_file()
    assert report["arena_bytes"] < report["ping_pong_bytes"]
    assert [layer["what"] for layer in report["layers"]][-1] == "SOFTMAX"


def test_quantize_multiplier_matches_tflite_rules():
    assert codegen.quantize_multiplier(0.0) == (0, 0)
    assert codegen.quantize_multiplier(0.5) == (1 << 30, 0)
    m, s = codegen.quantize_multiplier(0.75)
    assert (m, s) == (round(0.75 * (1 << 31)), 0)
    m, s = codegen.quantize_multiplier(1 - 2 ** -40)  # rounds up to 2^31: halved, exponent + 1
    assert (m, s) == (1 << 30, 1)
    assert codegen.quantize_multiplier(2 ** -40) == (0, 0)  # below 2^-31: TFLite's flush to zero
