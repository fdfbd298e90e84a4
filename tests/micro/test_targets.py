"""Tests for edgemnist.targets: the registry, its agreement with the firmware Makefile, the
fit check before a build, `--target` on train and mcu, and `pipeline --quick --target microbit` (and
`stm32vldiscovery`): the board's preset trained, exported, built and run under QEMU's model of the board
(both builds, bit-exact).

The QEMU test needs the Arm cross compiler, QEMU and a TFLite Micro tree (as tests/micro/test_mcu.py).
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from _helpers import run_cli
from edgemnist import targets
from edgemnist.micro import firmware, mcu
from edgemnist.targets import TARGETS, fit_problems, get_micro_target, get_target

MAKEFILE = firmware.TEMPLATES / firmware.CORTEX_M_DIR / "Makefile"


needs_mcu = pytest.mark.usefixtures("cortex_m_tools")  # skips, or fails where CI requires the group


def test_every_micro_target_names_a_core_and_boards_the_makefile_has():
    text = MAKEFILE.read_text()
    boards = dict(re.findall(r"ifeq \(\$\(BOARD\),([\w-]+)\)\n(?:\s*#.*\n)*\s+BOARD_CPUS := ([\w-]+)", text))
    cpus = set(re.findall(r"ifeq \(\$\(CPU\),([\w-]+)\)", text))
    assert set(mcu.CPUS) == cpus
    for t in TARGETS.values():
        if not t.is_micro or t.runtime != "tflm":  # the Uno: tests/micro/test_avr.py
            continue
        assert t.cpu in cpus and boards[t.board] == t.cpu, t.name
        assert boards[t.check_board or t.board] == t.cpu, t.name
        assert t.qemu_machine == t.board  # the Makefile runs QEMU's machine of the board's name
        assert t.stack_bytes < t.ram_bytes <= 256 * 1024


def test_the_small_boards_are_linked_for_their_real_memory():
    text = MAKEFILE.read_text()
    memory = dict(re.findall(r"ifeq \(\$\(BOARD\),([\w-]+)\)\n(?:\s*#.*\n)*\s+BOARD_CPUS := [\w-]+\n\s+BOARD_MEMORY := (.+)", text))
    assert memory["microbit"] == "0x00000000 256K 16K"
    assert memory["stm32vldiscovery"] == "0x08000000 128K 8K"
    for name in ("microbit", "stm32vldiscovery"):
        t = get_target(name)
        assert f"{t.flash_bytes // 1024}K {t.ram_bytes // 1024}K" in memory[name]


def test_fit_problems_give_the_numbers():
    t = get_micro_target("stm32vldiscovery")
    assert fit_problems(t, model_bytes=10_000, arena_bytes=4096) == []
    problems = fit_problems(t, model_bytes=200_000, arena_bytes=26_624)
    assert len(problems) == 2
    assert "200,000 B" in problems[0] and "131,072 B" in problems[0]
    assert "26,624 B" in problems[1] and "8,192 B" in problems[1]


def test_unknown_and_non_micro_targets_are_refused():
    with pytest.raises(ValueError, match="unknown target 'esp32'.*cortex-m4"):
        get_target("esp32")
    with pytest.raises(ValueError, match="not a microcontroller"):
        get_micro_target("default")
    with pytest.raises(ValueError, match="target microbit means cpu cortex-m0"):
        mcu.McuConfig(cpu="cortex-m4", target="microbit")
    with pytest.raises(ValueError, match="stack_bytes"):
        targets.Target("x", "x", cpu="cortex-m0", board="microbit", qemu_machine="microbit", kernels="cmsis_nn",
                       flash_bytes=1024, ram_bytes=1024, stack_bytes=2048)


def test_configs_hold_the_target_looked_up_once():
    # A name is looked up where the config is made; the config holds the Target, and a pipeline
    # stage's fingerprinted settings record the name, as runs made before Target was held do.
    from edgemnist import pipeline

    microbit = get_target("microbit")
    by_name = firmware.FirmwareConfig(target="microbit")
    assert by_name.target is microbit
    assert firmware.FirmwareConfig(target=microbit).target is microbit
    config = mcu.McuConfig(cpu="cortex-m0", target=microbit)
    assert config.target is microbit
    assert pipeline._settings(config, "jobs")["target"] == "microbit"
    assert "jobs" not in pipeline._settings(config, "jobs")
    with pytest.raises(ValueError, match="runs edgemnist's generated C"):
        firmware.FirmwareConfig(target=get_target("uno"))
    with pytest.raises(ValueError, match="not a microcontroller"):
        mcu.McuConfig(target="default")
    with pytest.raises(TypeError, match="a Target or its name"):
        firmware.FirmwareConfig(target=3)


def test_targets_command_lists_them_as_json():
    result = run_cli("targets", "--json")
    assert result.returncode == 0, result.stderr
    import json

    listed = {t["name"]: t for t in json.loads(result.stdout)}
    assert set(listed) == set(TARGETS)
    assert listed["microbit"]["ram_bytes"] == 16 * 1024 and listed["microbit"]["qemu_machine"] == "microbit"
    assert listed["default"]["preset"] == {}
    # the Cortex-M4 class (whose CMSIS-NN kernels need scratch memory the host's do not) and the 8 KB
    # board measure their arena on the core; the micro:bit states the host's measurement
    assert [n for n, t in listed.items() if t["arena_on_core"]] == ["cortex-m4", "cortex-m7", "cortex-m55",
                                                                     "stm32vldiscovery"]


def test_train_target_picks_the_preset_and_flags_change_it():
    from edgemnist.cli import build_parser
    from edgemnist.training.model import ModelConfig
    from edgemnist.training.train import shape_from_args

    parser = build_parser()
    assert shape_from_args(parser.parse_args(["train", "--out", "x"])) == ModelConfig()
    m4 = shape_from_args(parser.parse_args(["train", "--out", "x", "--target", "cortex-m4"]))
    assert m4 == ModelConfig(**get_target("cortex-m4").preset) and set(m4.dilation_rates) == {1}
    wider = shape_from_args(parser.parse_args(["train", "--out", "x", "--target", "cortex-m4", "--stem-channels", "24"]))
    assert wider.stem_channels == 24 and wider.block_channels == m4.block_channels


def test_a_model_too_big_for_the_board_is_refused_before_the_build(micro_firmware, tmp_path):
    # the default model's arena (26 KB) cannot fit the STM32F100's 8 KB: refused, nothing built
    result = run_cli("mcu", str(micro_firmware["folder"]), "--target", "stm32vldiscovery")
    assert result.returncode == 2
    assert "cannot fit stm32vldiscovery" in result.stderr and "8,192 B of RAM" in result.stderr
    assert not (micro_firmware["folder"] / "build").exists()
    # firmware for the board whose arena is measured on its core refuses it before any build too: half
    # the host's figure is a bound a 32-bit core cannot go under, and it is already over the 8 KB
    out = tmp_path / "fw"
    result = run_cli("firmware", str(micro_firmware["model"]), "--out", str(out), "--target", "stm32vldiscovery")
    assert result.returncode == 2 and "cannot fit stm32vldiscovery" in result.stderr
    assert "at least half the" in result.stderr and "64-bit host" in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".fw.arena-*"))


def quick_target_pipeline(base: Path, target: str) -> tuple:
    """`edgemnist pipeline --quick --target TARGET --json` in `base`: the preset trained for one epoch
    on 4,000 digits, exported, its firmware built and run by the pipeline's mcu stage. (folder, result)."""
    import json
    import sys

    env = {**os.environ, mcu.CACHE_ENV: os.environ.get(mcu.CACHE_ENV) or str(base / "cache")}
    run = subprocess.run([sys.executable, "-m", "edgemnist", "pipeline", "--quick", "--target", target,
                          "--out", str(base / "run"), "--json"], capture_output=True, text=True, timeout=1800, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    return base / "run", json.loads(run.stdout)


def release_symbols(release: dict) -> str:
    """`arm-none-eabi-nm -C` of the release build that `edgemnist mcu` reported (its `release` entry)."""
    return subprocess.run(["arm-none-eabi-nm", "-C", str(Path(release["build_dir"]) / "firmware.elf")],
                          capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def microbit_run(tmp_path_factory):
    return quick_target_pipeline(tmp_path_factory.mktemp("microbit"), "microbit")


@needs_mcu
@pytest.mark.slow
def test_microbit_target_runs_bit_exact_in_its_16_kb(microbit_run):
    import json

    folder, result = microbit_run
    # the pipeline for a microcontroller: the preset, no optimize stage, two variants, an mcu stage
    assert result["target"] == "microbit" and result["mcu"]["ok"] and result["mcu"]["release"]["fits"]
    assert [v["name"] for v in result["variants"]] == ["float32", "int8_per_tensor"]
    assert not (folder / "optimize").exists() and result["optimize"] == {}
    state = json.loads((folder / "pipeline.json").read_text())
    assert set(state["stages"]) == {"train", "export", "compare", "firmware", "mcu"}
    assert state["stages"]["train"]["result"]["params"] == 23_122  # the micro:bit preset, not the default model
    # the arena is stated without a margin over the host's measurement (tight RAM), and the run proves it
    manifest = json.loads((folder / "firmware" / "firmware_manifest.json").read_text())
    assert manifest["arena"]["margin"] == get_target("microbit").arena_margin == 0.0
    report = json.loads((folder / "mcu" / "mcu.json").read_text())
    assert report["ok"] and report["board"] == "microbit"
    assert report["bit_exact"]["tflite_micro_host"] and report["firmware_mismatches"] == 0
    rel = report["release"]
    assert rel["verdict"] == "PASS" and rel["mismatches"] == 0 and rel["digits"] == report["digits"] == 20
    assert rel["budget"]["fits"] and rel["ram_bytes"] <= 16 * 1024
    assert 0 < rel["stack_used_bytes"] <= rel["stack_bytes"] == get_target("microbit").stack_bytes
    assert 0 < rel["arena_used_bytes"] <= rel["arena_bytes"]
    # the release build is the lean one: no vsnprintf, smaller than the checking build
    assert rel["flash_bytes"] < report["memory"]["flash_bytes"]
    nm = release_symbols(rel)
    assert "vsnprintf" not in nm and "MicroPrintf" not in nm
    # both builds were linked for the board's real memory, stack included, and ran on QEMU's model of it
    assert report["memory"]["ram_bytes"] <= 16 * 1024 and report["memory"]["stack_bytes"] == rel["stack_bytes"]


@needs_mcu
@pytest.mark.slow
def test_cortex_m4_preset_runs_bit_exact_in_its_budget_without_a_fully_connected_kernel(tmp_path_factory):
    import json

    folder, result = quick_target_pipeline(tmp_path_factory.mktemp("cortex-m4"), "cortex-m4")
    assert result["target"] == "cortex-m4" and result["mcu"]["ok"] and result["mcu"]["release"]["fits"]
    state = json.loads((folder / "pipeline.json").read_text())
    assert state["stages"]["train"]["result"]["params"] == 16_282  # the cortex-m4 preset
    report = json.loads((folder / "mcu" / "mcu.json").read_text())
    assert report["bit_exact"]["tflite_micro_host"] and report["firmware_mismatches"] == 0
    assert "FULLY_CONNECTED" not in {op["op"] for op in report["instructions"]["per_op"]}
    rel = report["release"]
    assert rel["verdict"] == "PASS" and rel["mismatches"] == 0 and rel["digits"] == 20
    assert rel["flash_without_test_digits_bytes"] <= 64 * 1024 and rel["ram_bytes"] <= 24 * 1024
    # the classifier is a convolution, so the release build links no FULLY_CONNECTED kernel at all
    nm = release_symbols(rel)
    assert "arm_convolve" in nm and "arm_fully_connected" not in nm and "vec_mat_mult" not in nm


@pytest.fixture(scope="module")
def stm32_run(tmp_path_factory):
    return quick_target_pipeline(tmp_path_factory.mktemp("stm32"), "stm32vldiscovery")


@needs_mcu
@pytest.mark.slow
def test_stm32vldiscovery_target_runs_bit_exact_in_its_8_kb_with_the_arena_its_core_measured(stm32_run):
    import json

    folder, result = stm32_run
    target = get_target("stm32vldiscovery")
    assert result["target"] == target.name and result["mcu"]["ok"] and result["mcu"]["release"]["fits"]
    # the arena was measured on the Cortex-M3 by the checking build and stated to 16 bytes, below what
    # the 64-bit host's TFLite Micro would need for the same model
    manifest = json.loads((folder / "firmware" / "firmware_manifest.json").read_text())
    arena = manifest["arena"]
    assert arena["measured_on"] == "cortex-m3 (cmsis_nn kernels, QEMU mps2-an385)"
    assert arena["stated"] % 16 == 0 and 0 <= arena["stated"] - arena["minimum"] < 16
    assert arena["stated"] < micro_arena_on_host(folder)
    settings = (folder / "firmware" / "mnist_model_settings.h").read_text()
    assert f"constexpr int kTensorArenaSize = {arena['stated']};" in settings and "cortex-m3" in settings
    assert not list((folder).glob(".firmware.arena-*"))  # the measuring folder is gone
    report = json.loads((folder / "mcu" / "mcu.json").read_text())
    assert report["ok"] and report["board"] == "mps2-an385"  # the checking build: the same core, more RAM
    assert report["memory"]["arena_used_bytes"] == arena["minimum"]
    rel = report["release"]
    assert rel["verdict"] == "PASS" and rel["mismatches"] == 0 and rel["digits"] == 20
    assert rel["budget"]["fits"] and rel["ram_bytes"] <= 8 * 1024 and rel["arena_bytes"] == arena["stated"]
    assert 0 < rel["stack_used_bytes"] <= rel["stack_bytes"] == target.stack_bytes
    assert rel["arena_used_bytes"] == arena["minimum"]  # the release build on the board: the same arena


def micro_arena_on_host(folder: Path) -> int:
    """The arena the host's TFLite Micro needs for the run's firmware model (bisection)."""
    from edgemnist.micro.arena import measure_arena

    return measure_arena(folder / "tflite" / "model_int8_per_tensor.tflite", margin=0.0).minimum


def test_an_arena_measured_on_the_core_needs_the_build_tools_and_says_so(tmp_path, monkeypatch):
    """firmware --target stm32vldiscovery without a TFLite Micro tree: a clear error naming what is
    missing, and nothing written (the preset's model, untrained: only its size matters here)."""
    from edgemnist.export import convert
    from edgemnist.training.model import ModelConfig, build_ds_cnn

    monkeypatch.delenv(mcu.TFLM_ENV, raising=False)
    keras_path = tmp_path / "stm32.keras"
    build_ds_cnn(ModelConfig(**get_target("stm32vldiscovery").preset)).save(keras_path)
    model = tmp_path / "stm32_int8.tflite"
    model.write_bytes(convert.convert_variant(keras_path, "int8_per_tensor",
                                              convert.ExportConfig(representative_size=20)).tflite)
    out = tmp_path / "fw"
    with pytest.raises(mcu.MissingToolError, match="no TFLite Micro tree|not found; install"):
        firmware.generate(model, out, firmware.FirmwareConfig(target="stm32vldiscovery", digits_per_class=1))
    assert not out.exists() and not list(tmp_path.glob(".fw.arena-*"))


def test_c_runtime_targets_are_not_offered_to_tflite_micro():
    from edgemnist.targets import C_TARGETS, MICRO_TARGETS

    assert "uno" in C_TARGETS and "uno" not in MICRO_TARGETS
    with pytest.raises(ValueError, match="generated C"):
        get_micro_target("uno")
    uno = get_target("uno")
    assert uno.kernels is None and uno.ram_bytes == 2048 and uno.flash_bytes == 32256


def test_a_c_preset_is_used_only_with_the_c_runtime():
    t = get_target("stm32vldiscovery")
    assert t.preset_for("tflm") == t.preset
    assert t.preset_for("c") != t.preset and t.preset_for("c") == get_target("cortex-m4").preset
    assert get_target("microbit").preset_for("c") == get_target("microbit").preset
