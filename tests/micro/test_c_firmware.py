"""Tests for edgemnist.micro.c_firmware and `--runtime c` of firmware and mcu: the model as generated C,
built for the Cortex-M0 of the micro:bit and the Cortex-M3 of the STM32VLDISCOVERY without TensorFlow
Lite Micro, run under QEMU on the TFLite Micro firmware's boards, bit-exact with LiteRT's builtin kernels.

The builds need the Arm cross compiler and QEMU (tools/install_test_deps.sh), not a TFLite Micro
tree. The micro:bit runs the repo's default model (firmware_assets/ embeds it: its generated C fits
16 KB where TFLite Micro's arena alone does not); the 8 KB STM32 runs its target's preset, untrained
(only its shape matters to the runtime; the scores are whatever the random weights give, and must
match bit for bit).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from _helpers import run_cli
from conftest import FIRMWARE_ASSETS, skip_or_fail
from edgemnist.artifacts import sha256_file
from edgemnist.micro import c_firmware, codegen, firmware, mcu, qemu
from edgemnist.targets import get_target


@pytest.fixture
def c_tools():
    """The C runtime needs the Arm toolchain and QEMU but no TFLite Micro tree (group cortex-m)."""
    try:
        mcu.find_tools()
    except mcu.MissingToolError as exc:
        skip_or_fail("cortex-m", f"Cortex-M build unavailable: {exc}")


needs_tools = pytest.mark.usefixtures("c_tools")


@contextlib.contextmanager
def _without_tflm():
    """No TFLite Micro tree configured: the C runtime must not look for one."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(mcu.TFLM_ENV, raising=False)
        yield


@pytest.fixture(scope="module")
def default_model(tmp_path_factory):
    """The default model (int8, one scale per tensor) that firmware_assets/ embeds, as a .tflite."""
    manifest = json.loads((FIRMWARE_ASSETS / firmware.MANIFEST_NAME).read_text())
    model, _, _ = mcu.embedded_data(FIRMWARE_ASSETS, manifest)
    path = tmp_path_factory.mktemp("default_model") / manifest["model"]["name"]
    path.write_bytes(model)
    return path


@pytest.fixture(scope="module")
def stm32_model(tmp_path_factory):
    """The stm32vldiscovery preset, untrained, exported as int8 with one scale per tensor."""
    from edgemnist.export import convert
    from edgemnist.training.model import ModelConfig, build_ds_cnn

    folder = tmp_path_factory.mktemp("stm32_model")
    keras_path = folder / "stm32.keras"
    build_ds_cnn(ModelConfig(**get_target("stm32vldiscovery").preset)).save(keras_path)
    path = folder / "model_int8_per_tensor.tflite"
    path.write_bytes(convert.convert_variant(keras_path, "int8_per_tensor",
                                             convert.ExportConfig(representative_size=20)).tflite)
    return path


def _c_config(target: str, **kwargs) -> firmware.FirmwareConfig:
    return firmware.FirmwareConfig(runtime="c", name="mnist", target=target, **kwargs)


@pytest.fixture(scope="module")
def microbit_folder(default_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("microbit") / "firmware-c"
    firmware.generate(default_model, out, _c_config("microbit"))
    return out


@pytest.fixture(scope="module")
def microbit_report(microbit_folder, tmp_path_factory):
    build_dir = tmp_path_factory.mktemp("microbit_build") / "cortex-m0-c"
    with _without_tflm():
        return mcu.run_mcu(microbit_folder, mcu.McuConfig(cpu="cortex-m0", kernels="cmsis_nn", target="microbit",
                                                          runtime="c", build_dir=str(build_dir)))


@pytest.fixture(scope="module")
def stm32_folder(stm32_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("stm32") / "firmware-c"
    firmware.generate(stm32_model, out, _c_config("stm32vldiscovery"))
    return out


def _symbols(build_dir) -> str:
    return subprocess.run(["arm-none-eabi-nm", "-C", str(build_dir / "firmware.elf")], capture_output=True, text=True,
                          check=True).stdout


def _check_release_on_board(report: dict, target_name: str) -> None:
    target = get_target(target_name)
    rel = report["release"]
    assert rel["verdict"] == "PASS" and rel["mismatches"] == 0 and rel["digits"] == report["digits"] == 20
    assert rel["correct"] == report["correct"]
    assert rel["budget"] == {"flash_bytes": target.flash_bytes, "ram_bytes": target.ram_bytes, "fits": True}
    # linked for the board's real memory with the target's stack, and run on QEMU's model of the board
    assert rel["ram_bytes"] <= target.ram_bytes and rel["stack_bytes"] == target.stack_bytes
    assert 0 < rel["stack_used_bytes"] < rel["stack_bytes"]
    sections = rel["sections"]
    assert rel["ram_used_bytes"] == sections.get(".data", 0) + sections[".bss"] + rel["stack_used_bytes"]
    assert rel["arena_bytes"] == rel["arena_used_bytes"] == report["memory"]["arena_bytes"]
    assert rel["instructions_per_inference"] > 0
    # no interpreter: not one TensorFlow Lite Micro or CMSIS-NN symbol, no printf
    nm = _symbols(Path(rel["build_dir"]))
    assert "tflite" not in nm and "arm_convolve" not in nm and "printf" not in nm
    assert "mnist_predict" in nm or "mnist_invoke" in nm


@needs_tools
def test_c_runtime_runs_bit_exact_on_the_microbit(microbit_report, microbit_folder, default_model):
    r = microbit_report
    assert r["ok"] and r["runtime"] == "c" and r["kernels"] == "c" and r["tflm_tree"] is None
    assert (r["cpu"], r["board"]) == ("cortex-m0", "microbit")
    be = r["bit_exact"]
    assert be["digits_differing"] == 0 and be["max_abs_diff"] == 0 and be["tflite_micro_host"] is None
    assert be["litert_builtin"]["bit_exact_fraction"] == 1.0 and "LiteRT" in be["expected"]
    # the expected scores are LiteRT's builtin kernels' on the same digits the TFLite Micro firmware embeds
    manifest = json.loads((microbit_folder / firmware.MANIFEST_NAME).read_text())
    digits, expected = c_firmware.embedded_data(microbit_folder, manifest)
    tflm_manifest = json.loads((FIRMWARE_ASSETS / firmware.MANIFEST_NAME).read_text())
    _, tflm_digits, _ = mcu.embedded_data(FIRMWARE_ASSETS, tflm_manifest)
    assert np.array_equal(digits, tflm_digits) and manifest["test_digits"] == tflm_manifest["test_digits"]
    from edgemnist.micro.check import litert_raw_outputs

    assert np.array_equal(expected, litert_raw_outputs(default_model, digits))
    assert r["predictions"] == expected.argmax(axis=1).tolist() and r["correct"] == 20
    # one profile row per generated layer, named as codegen names them, and the inference is their sum
    ins = r["instructions"]
    assert [o["op"] for o in ins["per_op"]] == [c_firmware.layer_tag(layer["what"])
                                                for layer in manifest["codegen"]["layers"]]
    assert all(o["instructions_per_inference"] > 0 for o in ins["per_op"])
    assert sum(o["instructions_per_inference"] for o in ins["per_op"]) <= ins["per_inference_mean"]
    # the arena is the static plan's, found in the ELF; the model's constants are in flash
    mem = r["memory"]
    assert mem["arena_bytes"] == mem["arena_used_bytes"] == manifest["codegen"]["arena_bytes"]
    assert mem["flash_bytes"] > manifest["codegen"]["const_bytes"] + mem["test_digit_bytes"]
    assert mem["ram_bytes"] <= 16 * 1024  # the checking build on the board, stack included
    _check_release_on_board(r, "microbit")


@needs_tools
def test_c_runtime_runs_bit_exact_on_the_stm32_in_its_8_kb(stm32_folder, tmp_path):
    with _without_tflm():
        r = mcu.run_mcu(stm32_folder, mcu.McuConfig(cpu="cortex-m3", kernels="cmsis_nn", target="stm32vldiscovery",
                                                    build_dir=str(tmp_path / "cortex-m3-c")))
    assert r["ok"] and r["runtime"] == "c" and r["firmware_mismatches"] == 0
    # the checking build ran on the target's checking board (the same core, more RAM), the release
    # build on the STM32's own memory map and QEMU model
    assert (r["cpu"], r["board"]) == ("cortex-m3", "mps2-an385")
    assert r["bit_exact"]["digits_differing"] == 0
    _check_release_on_board(r, "stm32vldiscovery")
    assert r["release"]["ram_bytes"] <= 8 * 1024


@needs_tools
def test_a_wrong_expected_score_fails_both_builds(microbit_folder, tmp_path):
    # Pretend the generated kernels computed something else: change one expected score (and the
    # manifest, so the folder still verifies). Both builds must report the mismatch themselves.
    folder = tmp_path / "fw"
    shutil.copytree(microbit_folder, folder, ignore=shutil.ignore_patterns("build"))
    digits_c = folder / "mnist_test_digits.c"
    text = digits_c.read_text()
    head, tail = text.split("g_mnist_expected_scores[", 1)
    first = tail.index("{", tail.index("{") + 1) + 1  # the first digit's first score
    value = int(tail[first:tail.index(",", first)])
    tail = tail[:first] + f"{(value + 1) if value < 127 else value - 1:4d}" + tail[tail.index(",", first):]
    digits_c.write_text(head + "g_mnist_expected_scores[" + tail)
    manifest = json.loads((folder / firmware.MANIFEST_NAME).read_text())
    manifest["files"]["mnist_test_digits.c"] = {"bytes": digits_c.stat().st_size, "sha256": sha256_file(digits_c)}
    (folder / firmware.MANIFEST_NAME).write_text(json.dumps(manifest))
    with _without_tflm():
        report = mcu.run_mcu(folder, mcu.McuConfig(cpu="cortex-m0", kernels="cmsis_nn", target="microbit"))
    assert not report["ok"] and report["firmware_mismatches"] == 1
    assert report["bit_exact"]["digits_differing"] == 1 and report["bit_exact"]["max_abs_diff"] == 1
    log = (folder / "build" / "cortex-m0-c" / "qemu.log").read_text()
    assert "MISMATCH" in log and "EDGEMNIST result digits=20 mismatches=1 bit_exact=0" in log
    rel = report["release"]
    assert rel["verdict"] == "FAIL" and rel["mismatches"] == 1 and not rel["ok"]


def test_the_folder_is_byte_identical_for_the_same_model(microbit_folder, default_model, tmp_path):
    # the same .tflite, copied elsewhere and written again: the same bytes in every file
    other = tmp_path / "elsewhere" / default_model.name
    other.parent.mkdir()
    shutil.copy(default_model, other)
    again = tmp_path / "again"
    manifest = firmware.generate(other, again, _c_config("microbit"))

    def contents(folder):
        return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
                if p.is_file() and "build" not in p.relative_to(folder).parts}

    assert contents(again) == contents(microbit_folder)
    # every file is in the manifest, which verify checks; no TFLite Micro file is there
    expected = {"mnist.c", "mnist.h", "mnist_test_digits.c", "mnist_test_digits.h", "Makefile", "README.md",
                "cortex_m/startup.c", "cortex_m/platform.c", "cortex_m/platform.h", "cortex_m/cortex_m.ld",
                "cortex_m/layer_profile.h", "cortex_m/main_cortex_m.c", "release/main_release.c"}
    assert set(manifest["files"]) == expected and manifest["runtime"] == "c"
    assert set(contents(again)) == expected | {firmware.MANIFEST_NAME}
    assert mcu.verify_folder(again)["runtime"] == "c"
    # the model is the codegen's, byte for byte
    generated = codegen.generate(default_model, codegen.CodegenConfig(name="mnist"))["files"]
    assert (again / "mnist.c").read_bytes() == generated["mnist.c"]
    # the start-up code, platform layer and linker script are the TFLite Micro firmware's own
    for name in c_firmware.SHARED_CORTEX_M:
        assert (again / "cortex_m" / name).read_bytes() == (FIRMWARE_ASSETS / "cortex_m" / name).read_bytes()
    # no scratch folder is left beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "elsewhere"]


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_both_runtimes_run_each_core_on_the_same_board(microbit_folder, tmp_path):
    # the C Makefile carries the TFLite Micro Makefile's cores-and-boards section verbatim ...
    assert c_firmware.boards_section() in (microbit_folder / "Makefile").read_text()
    # ... so `make run-cmd` gives the same QEMU command line for every core and board
    tools = {"make": shutil.which("make"), "qemu": "qemu-system-arm"}
    for cpu in mcu.CPUS:
        c_argv = qemu.command(microbit_folder, cpu, tmp_path / cpu, tools, timeout_s=1)
        tflm_argv = qemu.command(FIRMWARE_ASSETS, cpu, tmp_path / cpu, tools, timeout_s=1)
        assert c_argv == tflm_argv
    for board in ("stm32vldiscovery", "mps2-an385"):
        assert qemu.command(microbit_folder, "cortex-m3", tmp_path, tools, board=board) == \
            qemu.command(FIRMWARE_ASSETS, "cortex-m3", tmp_path, tools, board=board)


def test_the_runtime_must_match_the_folder(microbit_folder):
    with pytest.raises(ValueError, match=r"holds firmware for the c runtime, not tflm.*--runtime tflm"):
        mcu.run_mcu(microbit_folder, mcu.McuConfig(runtime="tflm"))
    with pytest.raises(ValueError, match=r"holds firmware for the tflm runtime, not c.*--runtime c"):
        mcu.run_mcu(FIRMWARE_ASSETS, mcu.McuConfig(runtime="c"))
    with pytest.raises(ValueError, match="runtime must be one of tflm, c"):
        mcu.McuConfig(runtime="cmsis")
    with pytest.raises(ValueError, match="runtime must be one of tflm, c"):
        firmware.FirmwareConfig(runtime="python")
    with pytest.raises(ValueError, match="arena_margin applies to the tflm runtime only"):
        firmware.FirmwareConfig(runtime="c", arena_margin=0.1)


def test_a_model_too_big_for_the_board_is_refused_and_nothing_is_written(default_model, tmp_path):
    # the default model's planned arena (7 KB) and the STM32's 1.5 KB stack do not fit in 8 KB
    out = tmp_path / "fw"
    with pytest.raises(ValueError, match=r"cannot fit stm32vldiscovery with the generated C: tensor arena .* 8,192 B"):
        firmware.generate(default_model, out, _c_config("stm32vldiscovery"))
    assert not out.exists() and list(tmp_path.iterdir()) == []


@needs_tools
def test_cli_writes_and_runs_the_c_runtime(default_model, tmp_path):
    out = tmp_path / "fw"
    run = run_cli("firmware", default_model, "--runtime", "c", "--name", "mnist", "--target", "microbit",
                  "--out", out, "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["runtime"] == "c"
    env = {k: v for k, v in os.environ.items() if k != mcu.TFLM_ENV}
    run = run_cli("mcu", out, "--runtime", "c", "--target", "microbit", "--no-release", "--json", env=env)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["ok"] and report["runtime"] == "c" and "release" not in report
    human = run_cli("mcu", out, "--target", "microbit", "--no-release", env=env)
    assert human.returncode == 0 and "generated C (no TensorFlow Lite Micro)" in human.stdout
    # a TFLite Micro folder named as a C one: one line, exit 2
    wrong = run_cli("mcu", FIRMWARE_ASSETS, "--runtime", "c", env=env)
    lines = [ln for ln in wrong.stderr.splitlines() if ln.startswith("edgemnist:")]
    assert wrong.returncode == 2 and len(lines) == 1 and "holds firmware for the tflm runtime" in lines[0]
