"""Tests for edgemnist.micro.mcu (and build, elf, qemu): the firmware built for a Cortex-M4 with CMSIS-NN
kernels, run under QEMU with the command line its Makefile gives, bit-exact.

These need the Arm cross compiler and QEMU (tools/install_test_deps.sh) and a TensorFlow Lite
Micro tree: EDGEMNIST_TFLM names a create_tflm_tree.py tree or a folder holding tree_reference/
and tree_cmsis_nn/ (.ci/run unpacks one). Without them they skip, saying what is missing.
The folder is conftest's micro_firmware (firmware_assets/ rendered again); builds go to
temporary folders so it stays as rendered.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from _helpers import run_cli
from edgemnist.micro import firmware, mcu, qemu
from edgemnist.runtime import tflite_info


needs_mcu = pytest.mark.usefixtures("cortex_m_tools")  # skips, or fails where CI requires the group


@pytest.fixture(scope="module")
def per_tensor_path(micro_firmware):
    return micro_firmware["model"]


@pytest.fixture(scope="module")
def firmware_folder(micro_firmware):
    return micro_firmware["folder"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """Compiled TFLite Micro objects: EDGEMNIST_CACHE where CI keeps them between runs, else a temporary folder."""
    return os.environ.get(mcu.CACHE_ENV) or str(tmp_path_factory.mktemp("mcu_cache"))


@pytest.fixture(scope="module")
def m4_cmsis_report(firmware_folder, cache_dir, tmp_path_factory):
    build_dir = str(tmp_path_factory.mktemp("mcu_build") / "cortex-m4-cmsis_nn")
    return mcu.run_mcu(firmware_folder, mcu.McuConfig(cpu="cortex-m4", kernels="cmsis_nn", cache_dir=cache_dir,
                                                      build_dir=build_dir))


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
    assert r["predictions"] == expected.argmax(axis=1).tolist() and r["digits"] == len(digits) == 20
    assert r["board"] == "mps2-an386" and r["qemu_command"].startswith("timeout ")
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
    # the release build (the one CI runs for the Cortex-M4): its own bit-exact check passes, and it
    # is the lean one (no printf, no error strings: smaller flash, no vsnprintf linked)
    rel = r["release"]
    assert rel["ok"] and rel["verdict"] == "PASS" and rel["mismatches"] == 0 and rel["digits"] == 20
    assert rel["correct"] == r["correct"] and rel["budget"] is None
    assert rel["flash_bytes"] < mem["flash_bytes"] and rel["model_bytes"] == mem["model_bytes"]
    assert rel["flash_without_test_digits_bytes"] == rel["flash_bytes"] - rel["test_digit_bytes"]
    assert 0 < rel["stack_used_bytes"] < rel["stack_bytes"] and rel["arena_used_bytes"] == mem["arena_used_bytes"]
    assert rel["instructions_per_inference"] > 0
    nm = subprocess.run(["arm-none-eabi-nm", str(Path(rel["build_dir"]) / "firmware.elf")], capture_output=True,
                        text=True, check=True).stdout
    assert "vsnprintf" not in nm and "vsnprintf" in subprocess.run(
        ["arm-none-eabi-nm", str(Path(r["build_dir"]) / "firmware.elf")], capture_output=True, text=True).stdout


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
    report = mcu.run_mcu(folder, mcu.McuConfig(cpu="cortex-m4", kernels="cmsis_nn", cache_dir=cache_dir,
                                               release=False))  # the checking build is the one that reports
    assert not report["ok"] and report["firmware_mismatches"] == 1
    assert report["bit_exact"]["digits_differing"] == 1 and report["bit_exact"]["max_abs_diff"] == 1
    build_log = (folder / "build" / "cortex-m4-cmsis_nn" / "build.log").read_text()
    assert "micro_interpreter.cc" not in build_log  # another folder's build reused the cached TFLM objects
    log = (folder / "build" / "cortex-m4-cmsis_nn" / "qemu.log").read_text()
    assert "MISMATCH" in log and "EDGEMNIST result digits=20 mismatches=1 bit_exact=0" in log


@needs_mcu
def test_cli_json_and_compare_take_the_report(firmware_folder, cache_dir, tmp_path, m4_cmsis_report):
    env = {**os.environ, mcu.CACHE_ENV: cache_dir}
    run = run_cli("mcu", firmware_folder, "--cpu", "cortex-m4", "--kernels", "cmsis_nn", "--build-dir", tmp_path / "build",
                  "--no-release", "--json", timeout=900, env=env)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["ok"] and report["instructions"]["per_inference_mean"] == m4_cmsis_report["instructions"]["per_inference_mean"]
    assert "release" not in report  # --no-release: the checking build only
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
def test_a_hung_firmware_is_a_failed_result_and_exit_1(firmware_folder, cache_dir, tmp_path):
    env = {**os.environ, mcu.CACHE_ENV: cache_dir}
    run = run_cli("mcu", firmware_folder, "--timeout", "0.05", "--build-dir", tmp_path / "build", "--no-release",
                  timeout=900, env=env)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stdout.startswith("FAILED: ") and len(run.stdout.strip().splitlines()) == 1
    assert "did not finish within 0.05 s under " in run.stdout and "qemu-system-arm -M mps2-an386" in run.stdout
    run = run_cli("mcu", firmware_folder, "--timeout", "0.05", "--build-dir", tmp_path / "build", "--json",
                  "--no-release", timeout=900, env=env)
    failed = json.loads(run.stdout)
    assert run.returncode == 1 and failed["ok"] is False and "did not finish within 0.05 s" in failed["error"]
    assert (failed["cpu"], failed["kernels"]) == ("cortex-m4", "cmsis_nn")


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
    with pytest.raises(ValueError, match=r"mnist_model_data.cc: changed \(sha256"):
        mcu.verify_folder(folder)


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_the_makefile_gives_the_qemu_command_line(firmware_folder, tmp_path):
    tools = {"make": shutil.which("make"), "qemu": "qemu-system-arm"}
    boards = {}
    for cpu in mcu.CPUS:
        argv = qemu.command(firmware_folder, cpu, tmp_path / cpu, tools, timeout_s=0.5)
        assert argv[:3] == ["timeout", "0.5", "qemu-system-arm"]
        assert argv[argv.index("-cpu") + 1] == cpu and argv[-2:] == ["-kernel", str(tmp_path / cpu / "firmware.elf")]
        assert "-icount" in argv and "-semihosting-config" in argv
        boards[cpu] = qemu.board(argv)
    assert len(set(boards.values())) == len(mcu.CPUS)  # a board per core
    default = qemu.command(firmware_folder, "cortex-m4", tmp_path, tools)
    assert float(default[1]) > 0 and default[2:4] == ["qemu-system-arm", "-M"]  # the Makefile's QEMU_TIMEOUT
    with pytest.raises(mcu.FirmwareRunError, match="CPU=cortex-m33 is not one of"):
        qemu.command(firmware_folder, "cortex-m33", tmp_path, tools)
    # A folder whose Makefile runs QEMU without a limit (an older edgemnist) is refused, not run unbounded.
    old = tmp_path / "old"
    shutil.copytree(firmware_folder, old)
    makefile = (old / "Makefile").read_text()
    (old / "Makefile").write_text(makefile.replace("QEMU_CMD = timeout $(QEMU_TIMEOUT) ", "QEMU_CMD = "))
    with pytest.raises(ValueError, match="no time limit"):
        qemu.command(old, "cortex-m4", tmp_path, tools)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="cortex-m33"):
        mcu.McuConfig(cpu="cortex-m33")
    with pytest.raises(ValueError, match="'fast'"):
        mcu.McuConfig(kernels="fast")
