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
    from edgemnist.targets import get_micro_target
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


# --------------------------------------------------------------------------- the kernels' arithmetic

_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1


def _wrap32(v: int) -> int:
    return (v + (1 << 31)) % (1 << 32) - (1 << 31)


def _reference_requant(x: int, m: int, shift: int, away: int) -> int:
    """ruy's (away=0) or TFLite's MultiplyByQuantizedMultiplier (away=1), from their definitions."""
    if shift > 0:
        x = _wrap32(x << shift)
    if away:
        if x == m == _INT32_MIN:
            q = _INT32_MAX
        else:
            v = x * m
            v += (1 << 30) if v >= 0 else 1 - (1 << 30)
            q = abs(v) >> 31 if v >= 0 else -(abs(v) >> 31)  # division truncating toward zero
    else:
        q = _wrap32((x * m + (1 << 30)) >> 31)
    if shift >= 0:
        return q
    k = -shift
    if away:  # RoundingDivideByPOT
        mask = (1 << k) - 1
        return (q >> k) + int((q & mask) > (mask >> 1) + int(q < 0))
    return (q + (1 << (k - 1))) >> k


def _arithmetic_cases(seed: int = 1):
    """Requantizations (x, m, shift, away): edges and random values; dot products over a weight table."""
    rng = np.random.default_rng(seed)
    edges = [0, 1, -1, 2, -2, 3, -3, 127, -128, 255, 256, -256, 0x7FFF, -0x8000, 0xFFFF, 0x10000, 1 << 30,
             -(1 << 30), (1 << 30) + 1, -(1 << 30) - 1, (1 << 30) - 1, _INT32_MAX, _INT32_MIN, _INT32_MIN + 1,
             0x00FF00FF, -0x00FF00FF, 0x12345678, -0x12345678]
    mults = [0, 1, -1, 1 << 30, (1 << 30) + 1, _INT32_MAX, _INT32_MIN, -(1 << 30), 1768933787, 0x40000001]
    requant = []
    for x in edges:
        for m in mults:
            requant.append((x, m, int(rng.integers(-31, 3)), int(rng.integers(0, 2))))
    for _ in range(500):
        x = int(rng.integers(_INT32_MIN, _INT32_MAX, endpoint=True)) >> int(rng.integers(0, 31))
        m = int(rng.integers(_INT32_MIN, _INT32_MAX, endpoint=True)) if rng.random() < 0.3 else \
            int(rng.integers(1 << 30, _INT32_MAX, endpoint=True))
        requant.append((x, m, int(rng.integers(-31, 6)), int(rng.integers(0, 2))))
    for k in range(1, 32):  # ties of the final shift, both signs: x * 2^30 rounds to q = x / 2
        for q in (1 << (k - 1), 3 << (k - 1), -(1 << (k - 1)), -(3 << (k - 1))):
            if _INT32_MIN <= 2 * q <= _INT32_MAX:
                requant += [(2 * q, 1 << 30, -k, 0), (2 * q, 1 << 30, -k, 1)]
    weights = rng.integers(-128, 128, 640).astype(np.int8)
    weights[:4] = [-128, -128, 127, -128]
    inputs = rng.integers(-128, 128, 640).astype(np.int8)
    inputs[:4] = [-128, 127, -128, -128]
    # (acc, w offset, x offset, rows, n, wskip, xskip): runs, strided taps, one input for every weight, n > 255
    dots = [(0, 0, 0, 1, 4, 0, 0), (5, 0, 0, 0, 9, 0, 0), (-7, 3, 5, 4, 0, 2, 2),
            (_INT32_MAX - 16384, 0, 0, 1, 1, 0, 0), (_INT32_MIN + 16256, 0, 1, 1, 1, 0, 0),
            (123, 10, 20, 1, 300, 0, 0), (-1, 0, 0, 5, 5, 0, 23), (0, 7, 1, 3, 3, 9, 11), (2, 4, 600, 40, 1, 0, -1),
            (0, 1, 2, 12, 1, 23, 5), (-99, 0, 0, 2, 320, 0, -320)]
    for _ in range(40):
        rows, n = int(rng.integers(0, 6)), int(rng.integers(0, 40))
        wskip, xskip = int(rng.integers(0, 20)), int(rng.integers(-n, 20))
        span_w, span_x = rows * (n + wskip), rows * max(n + xskip, 0) + n
        dots.append((int(rng.integers(-(1 << 24), 1 << 24)), int(rng.integers(0, 640 - span_w)),
                     int(rng.integers(n, 640 - span_x)) if n + xskip < 0 else int(rng.integers(0, 640 - span_x)),
                     rows, n, wskip, xskip))
    return requant, weights, inputs, dots


def _reference_dot(weights, inputs, case) -> int:
    acc, wo, xo, rows, n, wskip, xskip = case
    for _ in range(rows):
        acc += int(np.dot(weights[wo:wo + n].astype(np.int64), inputs[xo:xo + n].astype(np.int64)))
        wo += n + wskip
        xo += n + xskip
    return acc


def _arithmetic_harness(requant, weights, inputs, dots) -> str:
    """C that includes a generated model's mnist.c and prints em_requant's and em_dot's results, one a line."""
    def c_list(values):
        return ", ".join(f"{v}" if v != _INT32_MIN else "(-2147483647 - 1)" for v in values)
    rq = ", ".join(f"{{{c_list(case[:2])}, {case[2]}, {case[3]}}}" for case in requant)
    dt = ", ".join(f"{{{c_list(case[:1])}, {', '.join(map(str, case[1:]))}}}" for case in dots)
    return f"""#include <stdio.h>
#define EM_TRACE(k, d, n) ((void)0)
#include "mnist.c"
#ifdef __AVR__
#include <avr/interrupt.h>
#include <avr/sleep.h>
#include "em_uart.h"
static int em_put(char c, FILE *f) {{ (void)f; em_putc(c); return 0; }}
static FILE em_out = FDEV_SETUP_STREAM(em_put, NULL, _FDEV_SETUP_WRITE);
#endif
struct rq {{ int32_t x, m; int8_t shift, away; }};
struct dt {{ int32_t acc; int16_t wo, xo, rows, n, wskip, xskip; }};
static const struct rq EM_FLASH rqs[{len(requant)}] = {{ {rq} }};
static const struct dt EM_FLASH dts[{len(dots)}] = {{ {dt} }};
static const int8_t EM_FLASH tw[{len(weights)}] = {{ {c_list(weights.tolist())} }};
static const int8_t tx[{len(inputs)}] = {{ {c_list(inputs.tolist())} }};
int main(void)
{{
    unsigned i;
    struct rq r;
    struct dt d;
#ifdef __AVR__
    em_uart_init();
    stdout = &em_out;
#endif
    for (i = 0; i < {len(requant)}u; ++i) {{
        EM_RCOPY(&r, rqs + i, sizeof r);
        printf("%ld\\n", (long)em_requant(r.x, r.m, r.shift, (uint8_t)r.away));
    }}
    for (i = 0; i < {len(dots)}u; ++i) {{
        EM_RCOPY(&d, dts + i, sizeof d);
        printf("%ld\\n", (long)em_dot(d.acc, tw + d.wo, tx + d.xo, (uint16_t)d.rows, (uint16_t)d.n, d.wskip, d.xskip));
    }}
    {{ /* em_dotv: a tap of 40 channels, then the padding's (every input the zero point) */
        int32_t acc[40];
        for (i = 0; i < 40; ++i) acc[i] = (int32_t)i * 100003 - 2000000;
        em_dotv(acc, tw + 3, tx + 7, 40, 1);
        em_dotv(acc, tw + 50, tx + 2, 40, 0);
        for (i = 0; i < 40; ++i) printf("%ld\\n", (long)acc[i]);
    }}
    printf("end\\n");
#ifdef __AVR__
    loop_until_bit_is_set(UCSR0A, UDRE0);
    cli();
    sleep_enable();
    for (;;) sleep_cpu();
#endif
    return 0;
}}
"""


def test_the_kernels_arithmetic_on_the_avr_and_the_host_is_tflites_on_edge_cases(models, tmp_path, cache_dir):
    """em_requant (the AVR's assembly high multiply; both roundings, every shift, INT32_MIN, ties), em_dot (runs,
    skips, one input for many weights, runs over 255) and em_dotv, on the chip under simavr and on the host,
    against TFLite's definitions computed here: the self-check's digits never reach most of these values."""
    import subprocess

    requant, weights, inputs, dots = _arithmetic_cases()
    want = [_reference_requant(*case) for case in requant] + [_reference_dot(weights, inputs, c) for c in dots]
    acc = [i * 100003 - 2000000 for i in range(40)]
    for i in range(40):
        acc[i] += int(weights[3 + i]) * int(inputs[7 + i]) + int(weights[50 + i]) * int(inputs[2])
    want += acc
    sources = avr.model_sources(models["small"])  # a model whose C holds every kernel tested here
    for name, data in sources["files"].items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "em_uart.h").write_bytes((avr.TEMPLATES / "em_uart.h").read_bytes())
    (tmp_path / "harness.c").write_text(_arithmetic_harness(requant, weights, inputs, dots))
    host = subprocess.run(["cc", "-std=gnu99", "-O2", "-Wall", "-I", str(tmp_path), str(tmp_path / "harness.c"), "-lm",
                           "-o", str(tmp_path / "host")], capture_output=True, text=True)
    assert host.returncode == 0, host.stderr
    got_host = subprocess.run([str(tmp_path / "host")], capture_output=True, text=True, check=True).stdout.split()
    elf = tmp_path / "harness.elf"
    build = subprocess.run([avr.find_tool("avr-gcc"), f"-mmcu={avr.MCU}", f"-DF_CPU={avr.F_CPU}UL", *avr.AVR_CFLAGS,
                            "-I", str(tmp_path), str(tmp_path / "harness.c"), "-o", str(elf)], capture_output=True,
                           text=True)
    assert build.returncode == 0, build.stderr
    got_avr = avr.run_simavr(elf, max_cycles=200_000_000, cache_dir=cache_dir)["output"].split()
    assert got_host[-1] == got_avr[-1] == "end" and len(got_host) == len(want) + 1
    for where, got in (("host", got_host), ("avr", got_avr)):
        wrong = [i for i, (g, w) in enumerate(zip(got[:-1], want)) if int(g) != w]
        cases = requant + dots + [f"em_dotv channel {i}" for i in range(40)]
        assert not wrong, f"{where}: {len(wrong)} wrong, first {cases[wrong[0]]}: {got[wrong[0]]} != {want[wrong[0]]}"


@pytest.fixture(scope="module")
def codegen_models(tmp_path_factory, mnist_train, avr_tools):
    """test_codegen's random-weight models that reach every path of the kernels (int8, per-channel weights)."""
    from test_codegen import _keras_models

    from edgemnist.export.convert import ExportConfig, export_variant

    folder = tmp_path_factory.mktemp("avr_codegen_models")
    paths = {}
    for name, model in _keras_models().items():
        if name in ("ops", "edges"):
            paths[name] = folder / f"{name}.tflite"
            export_variant(model, "int8", paths[name], ExportConfig(representative_size=100),
                           representative=mnist_train.images[:100])
    return paths


@pytest.mark.parametrize("name", ["ops", "edges"])
def test_every_kernel_path_is_bit_exact_on_an_avr_with_more_memory(codegen_models, name, tmp_path, monkeypatch,
                                                                   cache_dir):
    """The models that cover every kernel path (dilated, strided and 1x1 convolutions, a depth multiplier, windows
    wholly in the padding, max and average pooling fused and not, FULLY_CONNECTED) need more than the Uno's 2 KB
    of RAM. The ATmega1284P has the same AVR core (and avr-gcc the same 16-bit int) with 16 KB: there, under
    simavr, every score of 5 digits is LiteRT's, with and without fusion."""
    for constant, value in (("MCU", "atmega1284p"), ("UNO_RAM_BYTES", 16384), ("RAM_END", 0x800100 + 16384),
                            ("CHIP_FLASH_BYTES", 131072)):
        monkeypatch.setattr(avr, constant, value)
    from edgemnist.micro import codegen

    data = avr.golden_digits(codegen_models[name], 5)
    for fuse in (True, False):
        files = codegen.generate(codegen_models[name], codegen.CodegenConfig(fuse=fuse))["files"]
        sources = {"files": {f: files[f] for f in ("mnist.c", "mnist.h")}, "name": "mnist"}
        built = avr.build_selfcheck(sources, tmp_path / f"check_{fuse}", data["inputs"], data["labels"],
                                    data["golden"])
        run = avr.run_selfcheck_simavr(built, cache_dir=cache_dir)
        assert run["pass"] and run["matches"] == 5, run["output"]
    assert len(np.unique(data["golden"])) > 20


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
