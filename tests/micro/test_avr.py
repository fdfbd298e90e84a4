"""Tests for edgemnist.micro.avr: generated C on an ATmega328P (Arduino Uno) under simavr and QEMU, and the
Arduino library built with arduino-mk.

These need avr-gcc, avr-libc, simavr with libsimavr-dev, qemu-system-avr, arduino-mk and the Arduino
core (tools/install_test_deps.sh). Without them they skip, saying what is missing (they fail instead
where EDGEMNIST_REQUIRE_GROUPS names avr). The models are exported here, untrained: what is checked is
that the chip computes LiteRT's scores for whatever weights, and what fits; the trained model's
numbers come from running `avr.selfcheck` on it.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import skip_or_fail

from edgemnist.artifacts import CACHE_ENV
from edgemnist.micro import avr
from edgemnist.micro.build import FirmwareRunError, MissingToolError
from edgemnist.runtime.models import shipped_path
from edgemnist.runtime.quantize import quantize_pixels


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """The compiled simavr runner: EDGEMNIST_CACHE where CI keeps it between runs, else a temporary folder."""
    return os.environ.get(CACHE_ENV) or str(tmp_path_factory.mktemp("avr_cache"))


@pytest.fixture(scope="module")
def avr_tools(cache_dir):
    """Skips (or fails where CI requires the group) without the AVR toolchain, simavr, QEMU or arduino-mk."""
    try:
        return avr.find_tools(arduino=True, cache_dir=cache_dir)
    except MissingToolError as exc:
        skip_or_fail("avr", str(exc))


@pytest.fixture(scope="module")
def models(tmp_path_factory, avr_tools):
    """Untrained int8 exports (one weight scale per tensor) of the stm32vldiscovery preset's shape:
    "stm32" the size the Uno gets (its flash is nearly all weights), "small" half as wide, which leaves
    the Arduino core room in flash. The small one's classifier weights are scaled up so that different
    digits get different classes."""
    import tensorflow as tf

    from edgemnist.export.convert import ExportConfig, export_variant
    from edgemnist.micro.targets import get_micro_target
    from edgemnist.training.model import ModelConfig, build_model

    folder = tmp_path_factory.mktemp("avr_models")
    preset = get_micro_target("stm32vldiscovery").preset
    paths = {}
    for key, extra in (("stm32", {}), ("small", {"width_multiplier": 0.5})):
        tf.keras.utils.set_random_seed(0)
        model = build_model("ds_cnn", ModelConfig(**dict(preset, **extra)), batch_size=1)
        if key == "small":
            layer = model.get_layer("classifier")
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel * 30, bias])
        paths[key] = folder / f"{key}.tflite"
        export_variant(model, "int8_per_tensor", paths[key], ExportConfig(representative_size=50, temperature_size=0))
    return paths


@pytest.fixture(scope="module")
def stm32_report(models, tmp_path_factory, cache_dir):
    return avr.selfcheck(models["stm32"], tmp_path_factory.mktemp("avr_stm32"), digits=3, cache_dir=cache_dir)


@pytest.fixture(scope="module")
def small_digits(models):
    return avr.golden_digits(models["small"], 10)


# --------------------------------------------------------------------------- no tools needed


def test_run_length_coding_of_real_digits_round_trips_and_shrinks_them(mnist_test):
    q = quantize_pixels(mnist_test.images[:20], 1 / 255, -128, np.int8).reshape(20, -1)
    for digit in q:
        coded = avr.rle_encode(digit, -128)
        assert len(coded) < len(digit) // 2
        assert np.array_equal(avr.rle_decode(coded, digit.size, -128), digit)
    runs = np.full(784, 5, np.int8)  # runs and literal blocks longer than one count byte
    assert np.array_equal(avr.rle_decode(avr.rle_encode(runs, -128), 784, -128), runs)
    assert np.array_equal(avr.rle_decode(avr.rle_encode(-runs - 123, -128), 784, -128), -runs - 123)


def test_missing_tools_name_their_debian_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingToolError, match=r"^avr-gcc not found; install it with: apt-get install gcc-avr$"):
        avr.build_release({"files": {}, "name": "mnist"}, tmp_path / "release")
    with pytest.raises(MissingToolError, match=r"qemu-system-avr not found; .*apt-get install qemu-system-misc"):
        avr.run_qemu(tmp_path / "firmware.elf")
    monkeypatch.setenv("ARDUINO_DIR", str(tmp_path))
    with pytest.raises(MissingToolError, match=r"arduino-mk not found .*apt-get install arduino-mk"):
        avr._arduino_dir()


def test_parse_refuses_output_without_a_result_line():
    with pytest.raises(FirmwareRunError, match="no result line: EDGEMNIST AVR digit=0"):
        avr.parse_selfcheck("EDGEMNIST AVR digit=0 label=7 predicted=7 cycles=10 match=1\n")


# --------------------------------------------------------------------------- on the emulated chip


def test_self_check_passes_bit_exact_under_simavr_and_qemu_within_the_uno_budget(stm32_report, models):
    r = stm32_report
    golden = avr.golden_digits(models["stm32"], 3)
    assert r["pass"]
    for emulator in ("simavr", "qemu"):
        run = r[emulator]
        assert run["pass"] and run["digits"] == run["matches"] == 3
        assert [d["predicted"] for d in run["per_digit"]] == golden["golden"].argmax(1).tolist()
        assert [d["label"] for d in run["per_digit"]] == golden["labels"].tolist()
        assert 0 < run["stack_high_water"] and run["ram"] == r["check"]["static_ram_bytes"] + run["stack_high_water"]
        assert run["ram"] <= avr.UNO_RAM_BYTES and run["flash"] == r["check"]["flash_bytes"] <= avr.CHIP_FLASH_BYTES
    sim = r["simavr"]
    assert sim["cycles_per_inference"] > 1_000_000  # a convolutional network on an 8-bit core: millions of cycles
    assert sim["ms_at_16mhz"] == round(sim["cycles_per_inference"] / 16_000, 2)
    assert r["qemu"]["cycles_per_inference"] is None and r["qemu"]["timer_counts"] > 0
    # the release firmware (model + serial port): within the Uno's flash and RAM, and it answers right
    rel = r["release"]
    assert rel["pass"] and rel["predicted"] == rel["expected"]
    assert 0 < rel["flash"] <= avr.UNO_FLASH_BYTES and rel["flash"] < r["check"]["flash_bytes"]
    assert 0 < rel["stack_high_water"] and rel["ram"] == rel["static_ram_bytes"] + rel["stack_high_water"] <= 2048
    assert rel["static_ram_bytes"] >= avr.model_sources(models["stm32"])["arena_bytes"]
    assert "PASS 3/3" in avr.format_report(r)


def test_a_wrong_golden_score_makes_the_self_check_fail(models, small_digits, tmp_path, cache_dir):
    golden = small_digits["golden"][:2].copy()
    golden[1, 3] = golden[1, 3] + 1 if golden[1, 3] < 127 else 126
    sources = avr.model_sources(models["small"])
    built = avr.build_selfcheck(sources, tmp_path / "check", small_digits["inputs"][:2], small_digits["labels"][:2],
                                golden)
    for run in (avr.run_selfcheck_simavr(built, cache_dir=cache_dir), avr.run_selfcheck_qemu(built)):
        assert not run["pass"] and run["matches"] == 1
        assert [d["match"] for d in run["per_digit"]] == [True, False]
        assert run["output"].splitlines()[-2].endswith(" FAIL")
    # the kernels call no libgcc multiply QEMU would hang on: the plain ELF is safe for QEMU too
    assert not avr.qemu_hazards(built["elf"]) and not avr.qemu_hazards(built["qemu_elf"])
    # a firmware that does not finish: a clear error after the cycle limit, and after QEMU's time limit
    with pytest.raises(FirmwareRunError, match=r"still running after 100,000 cycles under simavr"):
        avr.run_simavr(built["elf"], max_cycles=100_000, cache_dir=cache_dir)
    with pytest.raises(FirmwareRunError, match=r"no 'the end' under qemu-system-avr within 1 s: .*EDGEMNIST AVR end"):
        avr.run_qemu(built["qemu_elf"], marker="the end", timeout_s=1)


def test_an_elf_qemu_would_hang_on_is_refused_and_the_replacement_multiply_is_not(tmp_path, avr_tools):
    """A 16x16->32 product calls libgcc's __mulhisi3 (a skip over RET): run_qemu refuses that ELF instead of
    timing out; linked with templates/avr/qemu_mulhisi3.S it is accepted."""
    import subprocess

    (tmp_path / "product.c").write_text("#include <stdint.h>\nvolatile int16_t a = -3, b = 5;\nvolatile int32_t r;\n"
                                        "int main(void)\n{\n    r = (int32_t)a * b;\n    for (;;) {\n    }\n}\n")
    flags = [avr_tools["avr-gcc"], f"-mmcu={avr.MCU}", *avr.AVR_CFLAGS]
    plain, patched = tmp_path / "plain.elf", tmp_path / "patched.elf"
    subprocess.run(flags + [str(tmp_path / "product.c"), "-o", str(plain)], check=True)
    subprocess.run(flags + [str(tmp_path / "product.c"), str(avr.TEMPLATES / "qemu_mulhisi3.S"), "-o", str(patched)],
                   check=True)
    assert avr.qemu_hazards(plain) and not avr.qemu_hazards(patched)
    with pytest.raises(FirmwareRunError, match="skip over RET"):
        avr.run_qemu(plain)


def test_a_model_too_big_for_the_uno_is_refused_with_the_excess(tmp_path, avr_tools):
    sources = avr.model_sources(shipped_path("int8"))  # the shipped default model: 7 KB of activations
    assert sources["arena_bytes"] > avr.UNO_RAM_BYTES
    with pytest.raises(avr.BudgetError, match=r"static RAM over the atmega328p's 2,048 B by [\d,]+ B"):
        avr.build_release(sources, tmp_path / "release")
    sizes = {"flash_bytes": 32300, "static_ram_bytes": 1000}
    with pytest.raises(avr.BudgetError, match=r"fw.elf: flash 32,300 B is over the Uno's budget \(32,256 B\) by 44 B"):
        avr.check_budget(sizes, "fw.elf")
    with pytest.raises(avr.BudgetError, match=r"RAM \(data \+ bss \+ stack 1,100 B\) 2,100 B is over .* by 52 B"):
        avr.check_budget(dict(sizes, flash_bytes=100), "fw.elf", stack_high_water=1100)


def test_a_failed_build_names_the_file_and_the_compiler_error(tmp_path, avr_tools):
    sources = {"files": {"mnist.c": b"int broken = ;\n", "mnist.h": b""}, "name": "mnist"}
    with pytest.raises(FirmwareRunError, match=r"compiling \S+/mnist.c for the atmega328p failed: .*mnist.c:1:\d+: "
                                               r"error: expected expression .*\(full log: \S+build.log\)"):
        avr.build_release(sources, tmp_path / "release")


def test_arduino_library_builds_with_arduino_mk_and_classifies_digits_typed_into_simavr(models, small_digits,
                                                                                      tmp_path, cache_dir):
    lib = avr.write_arduino_library(models["small"], tmp_path / "libraries" / "EdgeMnist")
    assert lib["files"] == ["examples/mnist_serial/mnist_serial.ino", "library.properties", "src/mnist.c",
                            "src/mnist.h", "src/mnist_pixels.h"]
    props = dict(line.split("=", 1) for line in (lib["library"] / "library.properties").read_text().splitlines())
    assert props["name"] == "EdgeMnist" and props["architectures"] == "avr" and "mnist.h" in props["includes"]
    # the pixel table is edgemnist's one quantization rule, value for value
    sources = avr.model_sources(models["small"])
    table = quantize_pixels(np.arange(256), sources["input_scale"], sources["input_zero_point"], np.int8)
    text = (lib["library"] / "src" / "mnist_pixels.h").read_text()
    body = text[text.index("PROGMEM = {") + 11:text.index("};")]
    assert [int(v) for v in body.replace("\n", " ").split(",")] == table.tolist()
    built = avr.build_arduino_example(lib["library"], tmp_path / "build")
    assert 0 < built["sizes"]["flash_bytes"] <= avr.UNO_FLASH_BYTES
    # two digits the host puts in different classes: the sketch prints the host's class and score for each
    predictions = small_digits["golden"].argmax(1)
    picks = [0, int(np.flatnonzero(predictions != predictions[0])[0])]
    for k in picks:
        run = avr.run_arduino_example(built["elf"], small_digits["pixels"][k], cache_dir=cache_dir)
        assert (run["digit"], run["score"]) == (predictions[k], small_digits["golden"][k].max()), run["output"]
        assert built["sizes"]["static_ram_bytes"] + run["stack_high_water"] <= avr.UNO_RAM_BYTES
