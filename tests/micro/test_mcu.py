"""Tests for edgemnist.micro.mcu: the firmware built for a Cortex-M4 with CMSIS-NN kernels, run under QEMU, bit-exact.

These need the Arm cross compiler and QEMU (tools/install_test_deps.sh) and a TensorFlow Lite
Micro tree: EDGEMNIST_TFLM names a create_tflm_tree.py tree or a folder holding tree_reference/
and tree_cmsis_nn/ (.ci/run unpacks one). Without them they skip, saying what is missing.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from _helpers import export_variant, run_cli
from edgemnist.micro import firmware
from edgemnist.micro import mcu
from edgemnist.runtime import tflite_info


def _missing() -> str:
    try:
        mcu.find_tools()
        mcu.resolve_tflm(None, "cmsis_nn")
    except mcu.MissingToolError as exc:
        return str(exc)
    return ""


needs_mcu = pytest.mark.skipif(bool(_missing()), reason=f"Cortex-M build unavailable: {_missing()}")


@pytest.fixture(scope="module")
def per_tensor_path(calibrated_model_path, tmp_path_factory):
    return export_variant(calibrated_model_path, "int8_per_tensor",
                          tmp_path_factory.mktemp("mcu_tflite") / "model_int8_per_tensor.tflite")


@pytest.fixture(scope="module")
def firmware_folder(per_tensor_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("mcu_firmware") / "fw"
    firmware.generate(per_tensor_path, out, firmware.FirmwareConfig(digits_per_class=1, name="mnist"))
    return out


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """Compiled TFLite Micro objects: EDGEMNIST_CACHE where CI keeps them between runs, else a temporary folder."""
    return os.environ.get(mcu.CACHE_ENV) or str(tmp_path_factory.mktemp("mcu_cache"))


@pytest.fixture(scope="module")
def m4_cmsis_report(firmware_folder, cache_dir):
    return mcu.run_mcu(firmware_folder, mcu.McuConfig(cpu="cortex-m4", kernels="cmsis_nn", cache_dir=cache_dir))


@needs_mcu
@pytest.mark.slow
def test_default_model_runs_bit_exact_on_cortex_m4_with_cmsis_nn(m4_cmsis_report, firmware_folder, per_tensor_path):
    r = m4_cmsis_report
    assert r["ok"] and r["firmware_mismatches"] == 0
    assert r["bit_exact"]["tflite_micro_host"] and r["bit_exact"]["litert_builtin"]["same_class_fraction"] == 1.0
    assert r["bit_exact"]["litert_builtin"]["max_abs_diff"] <= 1
    assert r["bit_exact"]["digits_differing"] == 0 and r["bit_exact"]["max_abs_diff"] == 0
    # the predictions are the host's, digit for digit
    _, digits, expected = mcu.embedded_data(firmware_folder, json.loads((firmware_folder / firmware.MANIFEST_NAME).read_text()))
    assert r["predictions"] == expected.argmax(axis=1).tolist() and r["digits"] == len(digits) == 10
    mem = r["memory"]
    assert mem["model_bytes"] == per_tensor_path.stat().st_size
    assert 0 < mem["arena_used_bytes"] <= mem["arena_bytes"] < mem["ram_bytes"]
    assert mem["stack_bytes"] > 0 and mem["flash_bytes"] > mem["model_bytes"] + mem["test_digit_bytes"]
    ins = r["instructions"]
    assert ins["per_inference_min"] > 0 and ins["per_inference_min"] <= ins["per_inference_mean"] <= ins["per_inference_max"]
    # one row per operator, in execution order, named as the model names it
    assert [o["op"] for o in ins["per_op"]] == tflite_info.read_model(per_tensor_path).ops
    assert all(o["instructions_per_inference"] > 0 for o in ins["per_op"])
    types = {o["op"]: o for o in ins["per_op_type"]}
    assert types["TRANSPOSE"]["count"] == 2  # the 4-D space-to-depth stem
    assert sum(o["instructions_per_inference"] for o in ins["per_op"]) <= ins["per_inference_mean"]
    assert (firmware_folder / "Makefile").is_file() and (firmware_folder / "model_ops.mk").is_file()


@needs_mcu
@pytest.mark.slow
def test_a_wrong_score_fails_the_firmware_itself(firmware_folder, cache_dir, tmp_path):
    # Pretend a kernel computed something else: change one expected score (and the manifest, so the
    # folder still verifies). The firmware must report the mismatch and exit non-zero.
    folder = tmp_path / "fw"
    shutil.copytree(firmware_folder, folder, ignore=shutil.ignore_patterns("build"))
    digits_cc = folder / "mnist_test_digits.cc"
    text = digits_cc.read_text()
    head, tail = text.split("g_mnist_expected_scores", 1)
    first = tail.index("{", tail.index("{") + 1) + 1  # the first digit's first score
    value = int(tail[first:tail.index(",", first)])
    tail = tail[:first] + f"{(value + 1) if value < 127 else value - 1:4d}" + tail[tail.index(",", first):]
    digits_cc.write_text(head + "g_mnist_expected_scores" + tail)
    manifest = json.loads((folder / firmware.MANIFEST_NAME).read_text())
    from edgemnist.artifacts import sha256_file

    manifest["files"]["mnist_test_digits.cc"]["sha256"] = sha256_file(digits_cc)
    (folder / firmware.MANIFEST_NAME).write_text(json.dumps(manifest))
    report = mcu.run_mcu(folder, mcu.McuConfig(cpu="cortex-m4", kernels="cmsis_nn", cache_dir=cache_dir))
    assert not report["ok"] and report["firmware_mismatches"] == 1
    assert report["bit_exact"]["digits_differing"] == 1 and report["bit_exact"]["max_abs_diff"] == 1
    build_log = (folder / "build" / "cortex-m4-cmsis_nn" / "build.log").read_text()
    assert "micro_interpreter.cc" not in build_log  # another folder's build reused the cached TFLM objects
    log = (folder / "build" / "cortex-m4-cmsis_nn" / "qemu.log").read_text()
    assert "MISMATCH" in log and "EDGEMNIST result digits=10 mismatches=1 bit_exact=0" in log


@needs_mcu
def test_cli_json_and_compare_take_the_report(firmware_folder, cache_dir, tmp_path, m4_cmsis_report):
    env = {**os.environ, mcu.CACHE_ENV: cache_dir}
    run = run_cli("mcu", firmware_folder, "--cpu", "cortex-m4", "--kernels", "cmsis_nn", "--json", timeout=900, env=env)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["ok"] and report["instructions"]["per_inference_mean"] == m4_cmsis_report["instructions"]["per_inference_mean"]
    (tmp_path / "mcu.json").write_text(run.stdout)
    cmp = run_cli("compare", tmp_path / "mcu.json", "--out", tmp_path / "devices", "--no-plots", "--json")
    assert cmp.returncode == 0, cmp.stderr
    table = json.loads(cmp.stdout)
    cell = table["cells"]["cortex-m4 cmsis_nn (QEMU)"]["model_int8_per_tensor"]
    assert cell["instructions"] == report["instructions"]["per_inference_mean"] and cell["bit_exact"] is True


@needs_mcu
def test_main_functions_compile_warning_free_on_the_host(firmware_folder):
    tree = mcu.resolve_tflm(None, "cmsis_nn")
    # TFLite Micro's own headers are not -Wextra clean: they are system headers here, as in the Makefile.
    includes = [f"-I{firmware_folder}"] + [f"-isystem{path}" for path in (
        tree, tree / "third_party" / "flatbuffers" / "include", tree / "third_party" / "gemmlowp")]
    for source in ("main_functions.cc", "main.cc"):
        result = subprocess.run(["g++", "-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-DTF_LITE_STATIC_MEMORY",
                                 *includes, str(firmware_folder / source)], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]


@needs_mcu
def test_a_hung_firmware_is_one_line_and_exit_1(firmware_folder, cache_dir):
    env = {**os.environ, mcu.CACHE_ENV: cache_dir}
    run = run_cli("mcu", firmware_folder, "--timeout", "0.05", timeout=900, env=env)
    assert run.returncode == 1
    errors = [ln for ln in run.stderr.splitlines() if ln.startswith("edgemnist: error:")]
    assert len(errors) == 1 and "did not finish within 0.05 s" in errors[0]


def test_missing_toolchain_is_one_line_and_exit_2(firmware_folder, tmp_path):
    env = {**os.environ, "PATH": str(tmp_path), mcu.TFLM_ENV: str(tmp_path)}
    run = run_cli("mcu", firmware_folder, env=env)
    assert run.returncode == 2
    lines = [ln for ln in run.stderr.splitlines() if ln.startswith("edgemnist:")]
    assert len(lines) == 1 and "apt-get install gcc-arm-none-eabi" in lines[0]


def test_missing_tflm_tree_is_one_line_and_exit_2(firmware_folder, tmp_path):
    if shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None:
        pytest.skip("needs the toolchain to get as far as the tree")
    env = {k: v for k, v in os.environ.items() if k != mcu.TFLM_ENV}
    run = run_cli("mcu", firmware_folder, "--tflm", tmp_path, env=env)
    assert run.returncode == 2
    assert "not a TFLite Micro tree" in run.stderr and "create_tflm_tree.py" in run.stderr


def test_a_changed_file_is_refused_before_building(firmware_folder, tmp_path):
    folder = tmp_path / "fw"
    shutil.copytree(firmware_folder, folder, ignore=shutil.ignore_patterns("build"))
    with open(folder / "mnist_model_data.cc", "a") as fh:
        fh.write("// edited\n")
    with pytest.raises(ValueError, match="mnist_model_data.cc: differs from the sha256"):
        mcu.verify_folder(folder)


def test_a_5d_transpose_is_refused_for_cmsis_nn(tmp_path, mnist_train):
    """The stem as it was (Reshape to 5-D, Permute, Reshape): CMSIS-NN would run it wrongly."""
    from edgemnist.export import convert
    from edgemnist._tensorflow import keras

    k = keras()
    inputs = k.Input((28, 28, 1), batch_size=1)
    x = k.layers.Reshape((14, 2, 14, 2))(inputs)
    x = k.layers.Permute((1, 3, 2, 4))(x)
    x = k.layers.Reshape((14, 14, 4))(x)
    x = k.layers.Conv2D(8, 2, padding="same")(x)
    x = k.layers.GlobalAveragePooling2D()(x)
    model = k.Model(inputs, k.layers.Dense(10, activation="softmax")(x))
    images = mnist_train.images[:50].astype(np.float32)[..., None] / 255.0
    path = tmp_path / "five_d.tflite"
    path.write_bytes(convert.convert_variant(model, "int8_per_tensor", convert.ExportConfig(), representative=images).tflite)
    info = tflite_info.read_model(path)
    problems = firmware.kernel_set_problems(info)
    assert [(p["kernels"], p["op"], p["input_rank"]) for p in problems] == [("cmsis_nn", "TRANSPOSE", 5)]
    with pytest.raises(ValueError, match=r"TRANSPOSE would run wrongly with TFLite Micro's cmsis_nn kernels: 5-D input"):
        firmware.micro_ops(info, str(path))


def test_kernel_sources_name_tflm_files():
    assert firmware.kernel_sources(["CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "MEAN", "RESHAPE", "TRANSPOSE"]) == [
        "conv", "depthwise_conv", "pooling", "reduce", "reshape", "transpose"]


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="cortex-m3"):
        mcu.McuConfig(cpu="cortex-m3")
    with pytest.raises(ValueError, match="'fast'"):
        mcu.McuConfig(kernels="fast")
