"""Generated C on an 8-bit Arduino Uno (ATmega328P): a self-check under simavr and QEMU, and an Arduino library.

Usage: from edgemnist.micro import avr
       report = avr.selfcheck("runs/stm32/tflite/model_int8_per_tensor.tflite", "runs/stm32/avr", digits=3)
       avr.write_arduino_library("runs/stm32/tflite/model_int8_per_tensor.tflite", "runs/stm32/EdgeMnist")

The model's C comes from `codegen` (weights in PROGMEM on AVR). Around it this module builds,
with avr-gcc and avr-libc and no Arduino core:

- the self-check firmware (templates/avr/selfcheck.c): K real MNIST test digits and their
  scores from LiteRT's builtin kernels, in flash; for each digit it fills the model's input
  buffer, times the inference with Timer1 and compares every score; then it prints PASS or
  FAIL, the cycles per inference and the stack's high-water mark over the USART;
- the release firmware (templates/avr/release.c): the model, a serial port and nothing else,
  whose flash and RAM are the ones a product pays and are checked against the Uno's budget.

The self-check runs under simavr (cycle-accurate: its cycle counts are the chip's, through a
small libsimavr runner compiled once into the cache, templates/avr/simavr_uart.c, which can also
type bytes into the serial port) and under QEMU's `-machine uno` (which has no cycle model: its
timer counts are not reported as cycles). Both must print PASS. QEMU 7.2 hangs on one instruction
pattern libgcc's __mulhisi3 holds (`qemu_hazards` finds it and `run_qemu` refuses such an ELF). The
generated kernels multiply in their own assembly and no longer call it, but the ELF QEMU runs still
links a replacement with the same arithmetic (templates/avr/qemu_mulhisi3.S) for any other code
that does; simavr runs the plain one, the one the release build is made of.

`write_arduino_library` writes a library for the Arduino IDE: the generated C in src/, a 256-entry
PROGMEM table that quantizes a pixel by edgemnist's one rule, and an example sketch that reads
784 pixels over Serial into the model's input buffer and prints the digit. `build_arduino_example`
compiles that sketch as the IDE would (Debian's arduino-mk, the Arduino core) and
`run_arduino_example` types a digit into it under simavr.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np

from edgemnist.artifacts import atomic_write_folder
from edgemnist.artifacts import cache_dir as default_cache_dir
from edgemnist.micro import codegen
from edgemnist.micro.build import FirmwareRunError, MissingToolError
from edgemnist.micro.qemu import output_tail

TEMPLATES = Path(__file__).parent / "templates" / "avr"
MCU = "atmega328p"
F_CPU = 16_000_000  # an Uno's crystal
UNO_FLASH_BYTES = 32256  # 32 KB less the 512 B Optiboot boot loader every Uno keeps
UNO_RAM_BYTES = 2048  # .data + .bss + the stack
CHIP_FLASH_BYTES = 32768  # what simavr and QEMU load: the whole flash, no boot loader
RAM_END = 0x800100 + UNO_RAM_BYTES  # avr-gcc's data addresses carry 0x800000; SRAM starts at 0x100
DEFAULT_DIGITS = 3
DEFAULT_TIMEOUT_S = 120.0  # wall clock for one emulator run
MAX_CYCLES_PER_DIGIT = 400_000_000  # simavr's limit per digit (25 s at 16 MHz): past it the firmware counts as hung
END_MARKER = "EDGEMNIST AVR end"
ARDUINO_DIR_ENV = "ARDUINO_DIR"  # arduino-mk's own variable: where the Arduino core is
ARDUINO_DIR = "/usr/share/arduino"  # Debian's arduino-core-avr and arduino-mk
# Compiler flags of both firmware builds. -Os and -mcall-prologues: flash is what an Uno runs out of
# first; sections and --gc-sections drop what nothing calls; -mrelax shortens calls the linker can reach.
AVR_CFLAGS = ("-Os", "-std=gnu99", "-Wall", "-Wextra", "-ffunction-sections", "-fdata-sections",
              "-mcall-prologues", "-mrelax", "-Wl,--gc-sections")
# Debian's Arduino core does not build with gcc-avr 5.4 without these (WString.cpp uses them in C++).
ARDUINO_CXXFLAGS = "-DDECIMAL_DIG=__DECIMAL_DIG__ -DFLT_DECIMAL_DIG=__FLT_DECIMAL_DIG__"

# Debian package of each tool, for the message when one is missing.
PACKAGES = {"avr-gcc": "gcc-avr", "avr-size": "binutils-avr", "avr-objdump": "binutils-avr", "avr-nm": "binutils-avr",
            "avr-libc": "avr-libc", "libsimavr": "libsimavr-dev", "qemu-system-avr": "qemu-system-misc",
            "make": "make", "cc": "gcc", "arduino-mk": "arduino-mk", "arduino-core": "arduino-core-avr"}


class BudgetError(ValueError):
    """A firmware does not fit the chip or the Uno's budget; the message names what and by how much."""


def _missing(tool: str, what: str = "not found") -> MissingToolError:
    return MissingToolError(f"{tool} {what}; install it with: apt-get install {PACKAGES[tool]}")


def find_tool(tool: str) -> str:
    """The path of a program (a key of PACKAGES that is a program).

    Raises:
        MissingToolError: not on PATH (the message names the Debian package).
    """
    path = shutil.which(tool)
    if path is None:
        raise _missing(tool)
    return path


def find_tools(arduino: bool = False, cache_dir=None) -> dict:
    """Every program and library the self-check needs; with `arduino`, also arduino-mk, make and the Arduino core.

    Returns:
        {tool: path}; "simavr_uart" is the runner (compiled into the cache on first use).

    Raises:
        MissingToolError: the first one missing (the message names its Debian package).
    """
    tools = {tool: find_tool(tool) for tool in ("avr-gcc", "avr-size", "avr-nm", "avr-objdump", "qemu-system-avr",
                                                "cc")}
    _check_avr_libc(tools["avr-gcc"])
    tools["simavr_uart"] = str(simavr_runner(cache_dir))
    if arduino:
        tools["make"] = find_tool("make")
        tools["arduino"] = str(_arduino_dir())
    return tools


def _compiler_error(text: str) -> str:
    """The compiler's or linker's error lines (the last three), else the output's tail."""
    errors = [ln for ln in text.splitlines() if re.search(r"\berror\b|undefined reference", ln, re.I)
              and not ln.startswith("make")]
    return output_tail("\n".join(errors) if errors else text)


# --------------------------------------------------------------------------- the model and its test data


def model_sources(source, name: str = "mnist") -> dict:
    """The generated C of a model: from a .tflite (generated here, nothing written) or a codegen folder.

    Returns:
        {"files": {"<name>.c": bytes, "<name>.h": bytes}, "name", "input_scale", "input_zero_point",
        "arena_bytes"}.

    Raises:
        FileNotFoundError: not a .tflite, nor a folder with <name>.c, <name>.h and plan.json.
        codegen.CodegenError: the model holds something codegen does not cover.
    """
    path = Path(source)
    if path.is_file():
        result = codegen.generate(path, codegen.CodegenConfig(name=name))
        files, report = result["files"], result["report"]
    else:
        wanted = (f"{name}.c", f"{name}.h", codegen.PLAN_NAME)
        missing = [f for f in wanted if not (path / f).is_file()]
        if missing:
            raise FileNotFoundError(f"{path}: not a .tflite nor a codegen folder for --name {name} "
                                    f"(no {', '.join(missing)})")
        files = {f: (path / f).read_bytes() for f in wanted}
        report = json.loads(files[codegen.PLAN_NAME])
    return {"files": {f"{name}.c": files[f"{name}.c"], f"{name}.h": files[f"{name}.h"]}, "name": name,
            "input_scale": float(report["input"]["scale"]), "input_zero_point": int(report["input"]["zero_point"]),
            "arena_bytes": int(report["arena_bytes"])}


def golden_digits(model_path, count: int = DEFAULT_DIGITS) -> dict:
    """The first `count` MNIST test digits, quantized as the model's input, and LiteRT's scores for them.

    Returns:
        {"pixels": uint8 (N, 28, 28), "inputs": int8 (N, 784), "labels": (N,), "golden": int8 (N, classes)}.
    """
    from edgemnist.data import load_split
    from edgemnist.micro.check import litert_raw_outputs, quantize_images
    from edgemnist.runtime.tflite_reader import read_model

    model = read_model(Path(model_path).read_bytes(), name=str(model_path))
    x = model.tensors[model.main.inputs[0]]
    test = load_split("test", limit=int(count))
    inputs = quantize_images(test.images, x.scale, x.zero_point)
    golden = litert_raw_outputs(model_path, inputs).astype(np.int8)
    return {"pixels": test.images, "inputs": inputs.reshape(len(inputs), -1), "labels": test.labels.astype(int),
            "golden": golden}


def pixel_table(scale: float, zero_point: int) -> np.ndarray:
    """int8 model input for each of the 256 pixel values, by edgemnist's one rule (runtime.quantize)."""
    from edgemnist.runtime.quantize import quantize_pixels

    return quantize_pixels(np.arange(256, dtype=np.uint8), scale, zero_point, np.int8)


def rle_encode(values: np.ndarray, background: int) -> bytes:
    """Records of (background run, literal count, literals), each count at most 255 (templates/avr/selfcheck.c
    decodes them)."""
    flat = [int(v) & 0xFF for v in np.asarray(values, np.int8).reshape(-1)]
    bg, out, i = background & 0xFF, bytearray(), 0
    while i < len(flat):
        run = 0
        while i + run < len(flat) and flat[i + run] == bg and run < 255:
            run += 1
        i += run
        literals = 0
        while i + literals < len(flat) and flat[i + literals] != bg and literals < 255:
            literals += 1
        out += bytes([run, literals]) + bytes(flat[i:i + literals])
        i += literals
    return bytes(out)


def rle_decode(data: bytes, size: int, background: int) -> np.ndarray:
    """The inverse of rle_encode (what the firmware does), for tests."""
    out, p = [], 0
    while len(out) < size:
        run, literals = data[p], data[p + 1]
        out += [background & 0xFF] * run + list(data[p + 2:p + 2 + literals])
        p += 2 + literals
    return np.array(out, np.uint8).view(np.int8)


def _c_bytes(values) -> str:
    items = [str(int(v)) for v in values]
    return ",\n".join("    " + ", ".join(items[i:i + 16]) for i in range(0, len(items), 16))


def digits_header(inputs: np.ndarray, labels, golden: np.ndarray) -> str:
    """templates/avr/selfcheck.c's test_digits.h: the digits run-length coded, their labels and scores, in flash."""
    inputs = np.asarray(inputs, np.int8).reshape(len(inputs), -1)
    background = int(np.bincount(inputs.reshape(-1).view(np.uint8)).argmax())  # the commonest value
    background = background - 256 if background > 127 else background
    coded = [rle_encode(digit, background) for digit in inputs]
    starts = np.cumsum([0] + [len(c) for c in coded[:-1]])
    golden = np.asarray(golden, np.int8).reshape(len(inputs), -1)
    rows = ",\n".join("    {" + ", ".join(str(int(v)) for v in row) + "}" for row in golden)
    return (f"/* {len(inputs)} MNIST test digits for the self-check, written by edgemnist.micro.avr. */\n"
            f"#define EM_DIGITS {len(inputs)}\n#define EM_BACKGROUND {background}\n"
            f"static const uint8_t em_rle[] PROGMEM = {{\n{_c_bytes(b''.join(coded))}\n}};\n"
            f"static const uint16_t em_rle_start[EM_DIGITS] PROGMEM = {{ {', '.join(map(str, starts))} }};\n"
            f"static const uint8_t em_labels[EM_DIGITS] PROGMEM = {{ {', '.join(str(int(v)) for v in labels)} }};\n"
            f"static const int8_t em_golden[EM_DIGITS][{golden.shape[1]}] PROGMEM = {{\n{rows}\n}};\n")


# --------------------------------------------------------------------------- building


def _check_avr_libc(gcc: str) -> None:
    found = subprocess.run([gcc, f"-mmcu={MCU}", "-print-file-name=libc.a"], capture_output=True, text=True)
    if not os.path.isabs(found.stdout.strip()):
        raise _missing("avr-libc", f"has no C library for {MCU} (no libc.a)")


def _overflow(log: str, elf) -> Optional[BudgetError]:
    """The linker's refusal of a firmware too big for the chip, as one line with the excess."""
    m = re.search(r"region [`']?text'? overflowed by (\d+) bytes", log)
    if m:
        return BudgetError(f"{elf}: flash over the {MCU}'s {CHIP_FLASH_BYTES:,} B by {int(m.group(1)):,} B "
                           "(the linker refused it)")
    m = re.search(r"address 0x([0-9a-f]+) of \S+ section [`']\.(?:bss|data|noinit)' is not within region", log)
    if m:
        return BudgetError(f"{elf}: static RAM over the {MCU}'s {UNO_RAM_BYTES:,} B by "
                           f"{int(m.group(1), 16) - RAM_END:,} B (the linker refused it)")
    return None


def _compile(cmd: list, log: Path, what: str, elf: Path) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(" ".join(cmd) + "\n" + result.stdout + result.stderr)
    if result.returncode != 0:
        raise _overflow(result.stderr, elf) or FirmwareRunError(
            f"{what} for the {MCU} failed: {_compiler_error(result.stderr)} (full log: {log})")


def build_firmware(sources: dict, main: str, build_dir, extra: Optional[dict] = None, qemu: bool = False) -> dict:
    """Compiles the model's C with one of templates/avr's programs for the ATmega328P.

    Args:
        sources: `model_sources`.
        main: "selfcheck.c" or "release.c".
        build_dir: a folder of its own (written afresh): the sources, objects and firmware.elf.
        extra: more files for the folder (the self-check's test_digits.h).
        qemu: also link firmware_qemu.elf, the same objects with templates/avr/qemu_mulhisi3.S (see there).

    Returns:
        {"elf", "qemu_elf" (or None), "sizes" (`elf_sizes` of firmware.elf), "seconds"}.

    Raises:
        MissingToolError: avr-gcc, avr-libc or avr-size missing. BudgetError: the linker found it too
        big for the chip. FirmwareRunError: the compiler failed (its message's tail).
    """
    gcc = find_tool("avr-gcc")
    _check_avr_libc(gcc)
    out = Path(build_dir)
    files = dict(sources["files"])
    templates = ("em_uart.h", main) + (("qemu_mulhisi3.S",) if qemu else ())
    files.update({f: (TEMPLATES / f).read_bytes() for f in templates})
    files.update(extra or {})
    atomic_write_folder(out, files)
    name, upper = sources["name"], sources["name"].upper()
    flags = [gcc, f"-mmcu={MCU}", f"-DF_CPU={F_CPU}UL", *AVR_CFLAGS, f"-DEM_NAME={name}", f'-DEM_HEADER="{name}.h"',
             f"-DEM_INPUT_BYTES={upper}_INPUT_BYTES", f"-DEM_CLASSES={upper}_CLASSES", f"-I{out}"]
    log, elf = out / "build.log", out / "firmware.elf"
    start = time.perf_counter()
    objects = []
    for source in (f"{name}.c", main) + (("qemu_mulhisi3.S",) if qemu else ()):
        objects.append(out / (source.rsplit(".", 1)[0] + ".o"))
        _compile(flags + ["-c", str(out / source), "-o", str(objects[-1])], log, f"compiling {out / source}", elf)
    _compile(flags + [str(o) for o in objects[:2]] + ["-o", str(elf)], log, f"linking {elf}", elf)
    qemu_elf = out / "firmware_qemu.elf" if qemu else None
    if qemu:
        _compile(flags + [str(o) for o in objects] + ["-o", str(qemu_elf)], log, f"linking {qemu_elf}", qemu_elf)
    return {"elf": elf, "qemu_elf": qemu_elf, "sizes": elf_sizes(elf), "seconds": round(time.perf_counter() - start, 2)}


def elf_sizes(elf) -> dict:
    """Flash (.text + .data's initial values) and static RAM (.data + .bss + .noinit) of an AVR ELF (avr-size -A)."""
    out = subprocess.run([find_tool("avr-size"), "-A", str(elf)], capture_output=True, text=True, check=True).stdout
    sections = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit():
            sections[parts[0]] = int(parts[1])
    text, data = sections.get(".text", 0), sections.get(".data", 0)
    bss = sections.get(".bss", 0) + sections.get(".noinit", 0)
    return {"flash_bytes": text + data, "static_ram_bytes": data + bss, "text": text, "data": data, "bss": bss}


def check_budget(sizes: dict, elf, flash_limit: int = UNO_FLASH_BYTES, what: str = "the Uno's budget",
                 stack_high_water: Optional[int] = None) -> None:
    """Refuses a firmware whose flash, or static RAM (plus the stack's high-water mark when known), is over the limits.

    Raises:
        BudgetError: one line naming the ELF, what is over and by how much.
    """
    if sizes["flash_bytes"] > flash_limit:
        raise BudgetError(f"{elf}: flash {sizes['flash_bytes']:,} B is over {what} ({flash_limit:,} B) "
                          f"by {sizes['flash_bytes'] - flash_limit:,} B")
    ram = sizes["static_ram_bytes"] + (stack_high_water or 0)
    if ram > UNO_RAM_BYTES:
        stack = f" + stack {stack_high_water:,} B" if stack_high_water is not None else ""
        raise BudgetError(f"{elf}: RAM (data + bss{stack}) {ram:,} B is over the {MCU}'s {UNO_RAM_BYTES:,} B "
                          f"by {ram - UNO_RAM_BYTES:,} B")


def build_selfcheck(sources: dict, build_dir, inputs: np.ndarray, labels, golden: np.ndarray) -> dict:
    """`build_firmware` of templates/avr/selfcheck.c with these digits and expected scores; it must fit the chip.

    Raises:
        BudgetError: over the chip's flash (simavr and QEMU load the whole flash: no boot loader) or RAM.
    """
    built = build_firmware(sources, "selfcheck.c", build_dir,
                           {"test_digits.h": digits_header(inputs, labels, golden)}, qemu=True)
    check_budget(built["sizes"], built["elf"], CHIP_FLASH_BYTES, f"the {MCU}'s flash")
    return dict(built, digits=len(inputs))


def build_release(sources: dict, build_dir) -> dict:
    """`build_firmware` of templates/avr/release.c: the model's own flash and RAM, refused over the Uno's budget."""
    built = build_firmware(sources, "release.c", build_dir)
    check_budget(built["sizes"], built["elf"])
    return built


# --------------------------------------------------------------------------- simavr and QEMU


def simavr_runner(cache_dir=None) -> Path:
    """templates/avr/simavr_uart.c compiled against libsimavr, once per source text, in the cache.

    Raises:
        MissingToolError: no C compiler, or no libsimavr headers and library (libsimavr-dev).
        FirmwareRunError: it did not compile for another reason.
    """
    source = TEMPLATES / "simavr_uart.c"
    key = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    exe = Path(cache_dir or default_cache_dir()) / "avr" / f"simavr_uart-{key}"
    if exe.is_file():
        return exe
    cc = find_tool("cc")
    exe.parent.mkdir(parents=True, exist_ok=True)
    tmp = exe.with_name(f"{exe.name}.{os.getpid()}.tmp")
    result = subprocess.run([cc, "-O2", "-std=gnu99", str(source), "-lsimavr", "-o", str(tmp)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        if "sim_avr.h" in result.stderr or "-lsimavr" in result.stderr:
            raise _missing("libsimavr", "(headers and library) not found")
        raise FirmwareRunError(f"compiling {source} failed: {output_tail(result.stderr)}")
    os.replace(tmp, exe)  # atomic: a runner compiled at the same time elsewhere is the same program
    return exe


def free_ram_start(elf) -> Optional[int]:
    """The linker's `_end` (the first data address above .data, .bss and .noinit) of an AVR ELF, or None."""
    out = subprocess.run([find_tool("avr-nm"), str(elf)], capture_output=True, text=True, check=True).stdout
    m = re.search(r"^([0-9a-f]+) \w _end$", out, re.M)
    return int(m.group(1), 16) if m else None


def run_simavr(elf, input_bytes: bytes = b"", marker: Optional[str] = None, max_cycles: int = MAX_CYCLES_PER_DIGIT,
               timeout_s: float = DEFAULT_TIMEOUT_S, cache_dir=None) -> dict:
    """Runs an ELF on a simulated ATmega328P at 16 MHz until it sleeps with interrupts off or prints `marker`.

    Args:
        input_bytes: typed into USART0's receiver once the firmware turns it on.
        marker: stop once the firmware prints this after all of `input_bytes` went in.
        max_cycles: simulated cycles after which the firmware counts as hung.

    Returns:
        {"output" (what the firmware sent), "cycles" (since reset), "stack_high_water" (bytes, from
        the free RAM the runner painted; None without an `_end` symbol), "seconds"}.

    Raises:
        MissingToolError: simavr's library or a C compiler missing. FirmwareRunError: hung (past
        max_cycles or timeout_s), crashed, or simavr could not load it.
    """
    runner = simavr_runner(cache_dir)
    free_ram = free_ram_start(elf)
    argv = [str(runner)] + (["-s", hex(free_ram)] if free_ram else []) + [MCU, str(F_CPU), str(int(max_cycles)),
                                                                          str(elf)]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgemnist-simavr-") as tmp:
        if input_bytes or marker is not None:
            feed = Path(tmp) / "uart_in"
            feed.write_bytes(bytes(input_bytes))
            argv += [str(feed) if input_bytes else "-"] + ([marker] if marker is not None else [])
        try:
            result = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise FirmwareRunError(f"{elf}: no end under simavr within {timeout_s:g} s: "
                                   f"{output_tail((exc.stdout or b'').decode(errors='replace'))}") from None
    output, log = result.stdout.decode(errors="replace"), result.stderr.decode(errors="replace")
    if result.returncode == 124:
        raise FirmwareRunError(f"{elf}: still running after {max_cycles:,} cycles under simavr: {output_tail(output)}")
    if result.returncode != 0:
        raise FirmwareRunError(f"{elf}: simavr stopped it with status {result.returncode}: "
                               f"{output_tail(output + log)}")
    found = {key: int(value) for key, value in re.findall(r"^(cycles|stack_high_water) (\d+)$", log, re.M)}
    return {"output": output, "cycles": found.get("cycles"), "stack_high_water": found.get("stack_high_water"),
            "seconds": round(time.perf_counter() - start, 2)}


_SKIP = re.compile(r"^\s*([0-9a-f]+):\s+(?:[0-9a-f]{2} )+\s*\t(sbrs|sbrc|sbis|sbic|cpse)\b")
_RET = re.compile(r"^\s*[0-9a-f]+:\s+(?:[0-9a-f]{2} )+\s*\t(ret|reti)\b")


def qemu_hazards(elf) -> list:
    """Addresses (hex) of the skip instructions whose skipped instruction is a RET or RETI: QEMU 7.2's
    AVR translator loops forever on those when the skip is taken (templates/avr/qemu_mulhisi3.S)."""
    dump = subprocess.run([find_tool("avr-objdump"), "-d", str(elf)], capture_output=True, text=True,
                          check=True).stdout.splitlines()
    found, skip = [], None
    for line in dump:
        if skip is not None and _RET.match(line):
            found.append(skip)
        m = _SKIP.match(line)
        skip = m.group(1) if m else (None if re.match(r"^\s*[0-9a-f]+:", line) else skip)
    return found


def run_qemu(elf, marker: str = END_MARKER, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict:
    """Runs an ELF on QEMU's Arduino Uno until it prints `marker` (QEMU never stops by itself), then stops QEMU.

    Returns:
        {"output", "seconds"}.

    Raises:
        MissingToolError: qemu-system-avr missing. FirmwareRunError: the ELF holds code QEMU would hang
        on (`qemu_hazards`), no marker within timeout_s, or QEMU failed.
    """
    qemu = find_tool("qemu-system-avr")
    hazards = qemu_hazards(elf)
    if hazards:
        raise FirmwareRunError(f"{elf}: a skip over RET at 0x{', 0x'.join(hazards)}, on which qemu-system-avr "
                               "hangs; link templates/avr/qemu_mulhisi3.S (build_firmware(..., qemu=True))")
    argv = [qemu, "-machine", "uno", "-bios", str(elf), "-nographic",
            "-serial", "stdio", "-monitor", "none"]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = b""
    try:
        while marker.encode() not in output:
            left = timeout_s - (time.perf_counter() - start)
            if left <= 0:
                raise FirmwareRunError(f"{elf}: no {marker!r} under qemu-system-avr within {timeout_s:g} s: "
                                       f"{output_tail(output.decode(errors='replace'))}")
            ready, _, _ = select.select([proc.stdout], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    raise FirmwareRunError(f"{elf}: qemu-system-avr exited with status {proc.wait()} before "
                                           f"{marker!r}: {output_tail(output.decode(errors='replace'))}")
                output += chunk
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    return {"output": output.decode(errors="replace"), "seconds": round(time.perf_counter() - start, 2)}


_FIELDS = re.compile(r"(\w+)=(\d+)")


def parse_selfcheck(text: str) -> dict:
    """The self-check's lines as data.

    Returns:
        {"digits", "matches", "pass", "cycles_per_inference", "ms_at_16mhz", "stack_high_water",
        "per_digit": [{"digit", "label", "predicted", "cycles", "match"}]}.

    Raises:
        FirmwareRunError: no result line (the firmware stopped early or printed something else).
    """
    per_digit, result = [], None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("EDGEMNIST AVR digit="):
            fields = {k: int(v) for k, v in _FIELDS.findall(line)}
            fields["match"] = bool(fields["match"])
            per_digit.append(fields)
        elif line.startswith("EDGEMNIST AVR result ") and line.split()[-1] in ("PASS", "FAIL"):
            result = {k: int(v) for k, v in _FIELDS.findall(line)}
            result["pass"] = line.split()[-1] == "PASS"
    if result is None:
        raise FirmwareRunError(f"the self-check printed no result line: {output_tail(text)}")
    cycles = result["cycles_per_inference"]
    return {"digits": result["digits"], "matches": result["matches"], "pass": result["pass"],
            "cycles_per_inference": cycles, "ms_at_16mhz": round(cycles / F_CPU * 1000, 2),
            "stack_high_water": result["stack_high_water"], "per_digit": per_digit}


def _with_sizes(parsed: dict, sizes: dict) -> dict:
    parsed = dict(parsed)
    parsed["flash"] = sizes["flash_bytes"]
    parsed["ram"] = sizes["static_ram_bytes"] + parsed["stack_high_water"]
    return parsed


def run_selfcheck_simavr(built: dict, timeout_s: float = DEFAULT_TIMEOUT_S, cache_dir=None) -> dict:
    """`run_simavr` of a `build_selfcheck`, parsed; "ram" is data + bss + the stack's high-water mark."""
    run = run_simavr(built["elf"], max_cycles=MAX_CYCLES_PER_DIGIT * (built["digits"] + 1), timeout_s=timeout_s,
                     cache_dir=cache_dir)
    return dict(_with_sizes(parse_selfcheck(run["output"]), built["sizes"]), seconds=run["seconds"],
                output=run["output"])


def run_selfcheck_qemu(built: dict, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict:
    """`run_qemu` of a `build_selfcheck` (its firmware_qemu.elf), parsed. QEMU has no cycle model: Timer1
    there follows the host's clock, so "cycles_per_inference" and "ms_at_16mhz" are None and the raw
    counts are "timer_counts" (also per digit)."""
    run = run_qemu(built["qemu_elf"], END_MARKER, timeout_s)
    parsed = _with_sizes(parse_selfcheck(run["output"]), built["sizes"])
    parsed["timer_counts"] = parsed["cycles_per_inference"]
    parsed["cycles_per_inference"] = parsed["ms_at_16mhz"] = None
    for digit in parsed["per_digit"]:
        digit["timer_counts"] = digit.pop("cycles")
    return dict(parsed, seconds=run["seconds"], output=run["output"])


def run_release(built: dict, model_input: np.ndarray, expected: int, timeout_s: float = DEFAULT_TIMEOUT_S,
                cache_dir=None) -> dict:
    """Types one quantized digit into the release firmware under simavr; checks its answer and its RAM.

    Returns:
        {"predicted", "expected", "pass", "stack_high_water", "ram" (data + bss + stack), "flash"}.

    Raises:
        BudgetError: data + bss + the stack's high-water mark is over the Uno's RAM.
        FirmwareRunError: no answer (as `run_simavr`).
    """
    run = run_simavr(built["elf"], np.asarray(model_input, np.int8).tobytes(), marker="\n", timeout_s=timeout_s,
                     cache_dir=cache_dir)
    answer = run["output"].strip()
    if not answer.isdigit():
        raise FirmwareRunError(f"{built['elf']}: the release firmware answered {answer[-80:]!r}, not a class")
    check_budget(built["sizes"], built["elf"], stack_high_water=run["stack_high_water"])
    return {"predicted": int(answer), "expected": int(expected), "pass": int(answer) == int(expected),
            "stack_high_water": run["stack_high_water"], "flash": built["sizes"]["flash_bytes"],
            "ram": built["sizes"]["static_ram_bytes"] + (run["stack_high_water"] or 0)}


def selfcheck(model_path, out_dir, digits: int = DEFAULT_DIGITS, name: str = "mnist",
              emulators: tuple = ("simavr", "qemu"), timeout_s: float = DEFAULT_TIMEOUT_S, cache_dir=None) -> dict:
    """Builds the release and self-check firmware of a full-integer .tflite, runs the release on one
    digit under simavr and the self-check on each emulator.

    Returns:
        {"model", "name", "digits", "pass" (the release answered right and every emulator said PASS),
        "budget", "release": `run_release` with its sizes, "check": the self-check's sizes,
        <emulator>: `parse_selfcheck` with "flash" and "ram" (data + bss + stack high-water)}.

    Raises:
        MissingToolError, BudgetError, FirmwareRunError: as the steps do.
    """
    out = Path(out_dir)
    sources = model_sources(model_path, name)
    data = golden_digits(model_path, digits)
    release = build_release(sources, out / "release")
    check = build_selfcheck(sources, out / "check", data["inputs"], data["labels"], data["golden"])
    report = {"model": str(model_path), "name": name, "digits": int(digits),
              "budget": {"flash_bytes": UNO_FLASH_BYTES, "ram_bytes": UNO_RAM_BYTES},
              "release": dict(release["sizes"], **run_release(release, data["inputs"][0],
                                                              int(data["golden"][0].argmax()), timeout_s, cache_dir)),
              "check": check["sizes"]}
    runs = {"simavr": lambda: run_selfcheck_simavr(check, timeout_s, cache_dir),
            "qemu": lambda: run_selfcheck_qemu(check, timeout_s)}
    for emulator in emulators:
        report[emulator] = runs[emulator]()
    report["pass"] = report["release"]["pass"] and all(report[e]["pass"] for e in emulators)
    return report


def format_report(report: dict) -> str:
    """The self-check's report as a few lines of text."""
    rel, budget = report["release"], report["budget"]
    lines = [f"{report['model']} on an ATmega328P (Arduino Uno), {report['digits']} test digits",
             f"release: flash {rel['flash']:,} / {budget['flash_bytes']:,} B, RAM {rel['ram']:,} / "
             f"{budget['ram_bytes']:,} B (static {rel['static_ram_bytes']:,} + stack {rel['stack_high_water']} B), "
             f"answer {rel['predicted']} (host {rel['expected']})"]
    for emulator in ("simavr", "qemu"):
        if emulator in report:
            run = report[emulator]
            timing = (f"{run['cycles_per_inference']:,} cycles = {run['ms_at_16mhz']} ms at 16 MHz"
                      if run["cycles_per_inference"] is not None else "no cycle model")
            lines.append(f"{emulator}: {'PASS' if run['pass'] else 'FAIL'} {run['matches']}/{run['digits']} digits "
                         f"bit-exact, {timing}, stack {run['stack_high_water']} B, flash {run['flash']:,} B")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the Arduino library


def _library_properties(library: str, name: str) -> str:
    from edgemnist import __version__

    return (f"name={library}\nversion={__version__}\nauthor=edgemnist\nmaintainer=edgemnist\n"
            f"sentence=An int8 MNIST digit classifier as plain C: {name}_invoke() on a 28x28 image.\n"
            f"paragraph=Generated by edgemnist codegen: weights in flash (PROGMEM), one static arena, "
            f"no allocation. Send 784 pixel bytes over Serial to the example sketch.\n"
            f"category=Data Processing\nurl=\narchitectures=avr\nincludes={name}.h,{name}_pixels.h\n")


def _pixels_header(name: str, table: np.ndarray, scale: float, zero_point: int) -> str:
    upper = name.upper()
    return f"""/* {name}_pixels.h: a pixel (0-255, white digit on black, as MNIST) -> {name}'s int8 input.
 * Written by edgemnist.micro.avr from the model's input scale {scale!r} and zero point {zero_point},
 * by edgemnist's one rule: q = clip(rint(float32(pixel / 255 * float32(1 / scale)) + zero_point)).
 * A table, so the Uno does no float arithmetic per pixel and every value is the host's exactly. */
#ifndef {upper}_PIXELS_H
#define {upper}_PIXELS_H

#include <stdint.h>
#include <avr/pgmspace.h>

static const int8_t {name}_pixel_table[256] PROGMEM = {{
{_c_bytes(table)}
}};

static inline int8_t {name}_quantize_pixel(uint8_t pixel)
{{
    return (int8_t)pgm_read_byte({name}_pixel_table + pixel);
}}

#endif /* {upper}_PIXELS_H */
"""


def _example_sketch(name: str, example: str) -> str:
    upper = name.upper()
    return (TEMPLATES / "arduino_example.ino").read_text().replace("@NAME@", name).replace(
        "@UPPER@", upper).replace("@EXAMPLE@", example)


def write_arduino_library(source, out_dir, name: str = "mnist", example: Optional[str] = None) -> dict:
    """Writes an Arduino library folder (atomically): library.properties, src/ and one example sketch.

    Args:
        source: a full-integer .tflite, or a codegen folder of it.
        out_dir: the library folder; its name is the library's (put it in the sketchbook's libraries/).
        name: the C prefix (<name>_invoke, <name>.h).
        example: the example's name (default <name>_serial).

    Returns:
        {"library", "example", "ino", "files"}.
    """
    sources = model_sources(source, name)
    out = Path(out_dir)
    example = example or f"{name}_serial"
    table = pixel_table(sources["input_scale"], sources["input_zero_point"])
    files = {f"src/{f}": data for f, data in sources["files"].items()}
    files[f"src/{name}_pixels.h"] = _pixels_header(name, table, sources["input_scale"], sources["input_zero_point"])
    files[f"examples/{example}/{example}.ino"] = _example_sketch(name, example)
    files["library.properties"] = _library_properties(out.name, name)
    atomic_write_folder(out, files)
    return {"library": out, "example": example, "ino": out / "examples" / example / f"{example}.ino",
            "files": sorted(files)}


def _arduino_dir() -> Path:
    root = Path(os.environ.get(ARDUINO_DIR_ENV) or ARDUINO_DIR)
    if not (root / "Arduino.mk").is_file():
        raise _missing("arduino-mk", f"not found ({root}/Arduino.mk)")
    if not (root / "hardware" / "arduino" / "avr" / "cores" / "arduino" / "Arduino.h").is_file():
        raise _missing("arduino-core", f"not found ({root}/hardware/arduino/avr)")
    return root


def build_arduino_example(library_dir, build_dir, example: Optional[str] = None, jobs: int = 2) -> dict:
    """Compiles the library's example for an Uno as the IDE would (Arduino core + library), with arduino-mk.

    The sketch is copied into `build_dir` with a Makefile naming the library; the library is not touched.

    Returns:
        {"elf", "sizes", "seconds"}.

    Raises:
        MissingToolError: make, avr-gcc, arduino-mk or the Arduino core missing. BudgetError: over the Uno's
        flash or static RAM. FirmwareRunError: the build failed.
    """
    make = find_tool("make")
    find_tool("avr-gcc")
    arduino = _arduino_dir()
    lib = Path(library_dir).resolve()
    examples = [p for p in sorted((lib / "examples").glob("*/*.ino")) if example in (None, p.parent.name)]
    if not examples:
        raise FileNotFoundError(f"{lib}/examples: no {example or 'example'} sketch (<name>/<name>.ino)")
    ino = examples[0]
    out = Path(build_dir).resolve()
    makefile = (f"ARDUINO_DIR = {arduino}\nARDMK_DIR = {arduino}\nBOARD_TAG = uno\nUSER_LIB_PATH = {lib.parent}\n"
                f"ARDUINO_LIBS = {lib.name}\nOBJDIR = {out}/obj\nCXXFLAGS += {ARDUINO_CXXFLAGS}\n"
                f"include {arduino}/Arduino.mk\n")
    atomic_write_folder(out, {ino.name: ino.read_bytes(), "Makefile": makefile})
    start = time.perf_counter()
    result = subprocess.run([make, "-C", str(out), f"-j{int(jobs)}"], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL)
    (out / "build.log").write_text(result.stdout + result.stderr)
    elves = sorted((out / "obj").glob("*.elf"))
    if result.returncode != 0 or not elves:
        raise _overflow(result.stderr, ino) or FirmwareRunError(
            f"building {ino} with arduino-mk failed: {_compiler_error(result.stderr + result.stdout)} "
            f"(full log: {out / 'build.log'})")
    sizes = elf_sizes(elves[0])
    check_budget(sizes, elves[0])
    return {"elf": elves[0], "sizes": sizes, "seconds": round(time.perf_counter() - start, 2)}


_PREDICTION = re.compile(r"digit (\d+) score (-?\d+)")


def run_arduino_example(elf, pixels: np.ndarray, timeout_s: float = DEFAULT_TIMEOUT_S, cache_dir=None) -> dict:
    """Types one 28x28 uint8 image into the example sketch under simavr and reads its answer.

    Returns:
        {"digit", "score", "output", "cycles" (since reset, the serial transfer included), "stack_high_water"}.

    Raises:
        FirmwareRunError: no answer line (as `run_simavr`).
    """
    data = np.asarray(pixels, np.uint8).reshape(-1).tobytes()
    run = run_simavr(elf, data, marker="\n", timeout_s=timeout_s, cache_dir=cache_dir)
    m = _PREDICTION.search(run["output"])
    if m is None:
        raise FirmwareRunError(f"{elf}: the sketch printed no 'digit N score S' line: {output_tail(run['output'])}")
    return {"digit": int(m.group(1)), "score": int(m.group(2)), "output": run["output"], "cycles": run["cycles"],
            "stack_high_water": run["stack_high_water"]}


# --------------------------------------------------------------------------- the command


def add_commands(subparsers) -> None:
    """Registers `edgemnist avr`."""
    p = subparsers.add_parser(
        "avr",
        help="build a full-integer .tflite as generated C for an Arduino Uno (ATmega328P) and run its self-check "
        "under simavr and QEMU",
        description="Generate the model's C (edgemnist codegen), build the release firmware (the model and a serial "
        "port: its flash and RAM are checked against the Uno's 32,256 B and 2,048 B) and a self-check firmware "
        "holding real test digits and LiteRT's scores for them, then run the self-check under simavr "
        "(cycle-accurate: cycles and ms per digit at 16 MHz) and QEMU's uno board. Both must say PASS "
        "(every score bit-exact). Needs gcc-avr, avr-libc, libsimavr-dev and qemu-system-misc (Debian).",
    )
    p.add_argument("model", help="a full-integer .tflite (its C is generated as `edgemnist codegen` does)")
    p.add_argument("--out", required=True, help="folder for the builds and avr.json")
    p.add_argument("--digits", type=int, default=DEFAULT_DIGITS,
                   help="test digits in the self-check (default %(default)s; they share the flash with the weights)")
    p.add_argument("--emulator", choices=("both", "simavr", "qemu"), default="both", help="where to run it (default both)")
    p.add_argument("--library", metavar="DIR", help="also write the Arduino library (src/, examples/) to DIR")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per emulator run (default %(default)s)")
    p.set_defaults(func=_run_avr)


def _run_avr(args):
    from edgemnist.artifacts import atomic_write_json
    from edgemnist.output import Output

    from edgemnist.runtime.tflite_reader import check_tflite_file

    check_tflite_file(args.model)
    if args.digits < 1:
        raise ValueError(f"--digits must be >= 1, got {args.digits}")
    emulators = ("simavr", "qemu") if args.emulator == "both" else (args.emulator,)
    report = selfcheck(args.model, Path(args.out) / "build", digits=args.digits, emulators=emulators,
                       timeout_s=args.timeout)
    if args.library:
        report["library"] = {k: str(v) for k, v in write_arduino_library(args.model, args.library).items()}
    atomic_write_json(Path(args.out) / "avr.json", report)
    text = format_report(report)
    if args.library:
        text += f"\nArduino library: {args.library}"
    return Output(report, text, status=0 if report["pass"] else 1)
