"""Build a firmware folder for a Cortex-M core, run it under QEMU, and check it bit for bit.

Usage: edgemnist mcu runs/default/firmware --tflm path/to/tflm_tree --cpu cortex-m4 --kernels cmsis_nn [--json]

Takes a folder written by `edgemnist firmware` and a TensorFlow Lite Micro source tree (the
output of TFLM's own `create_tflm_tree.py`), cross-compiles the folder's `Makefile` with
arm-none-eabi-gcc for the chosen core and kernel set (only the framework and the model's
ops), runs the ELF under `qemu-system-arm` with semihosting, and reports: the prediction and
the int8 scores of every embedded digit, whether every score equals the host's (TFLite Micro
reference kernels, and LiteRT's builtin kernels), flash and RAM from the ELF (arena and stack
named), the arena actually used, and instructions per inference and per op.

Instruction counts come from `-icount shift=0` (one guest instruction per nanosecond of
virtual time) and the SysTick timer, calibrated by the firmware itself against a loop of
known length. QEMU does not model cycles: these are instruction counts, not timings.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from edgemnist.micro import firmware
from edgemnist._tensorflow import MissingExtraError
from edgemnist.artifacts import CACHE_ENV, cache_dir, sha256_bytes  # noqa: F401 - CACHE_ENV: tests set it
from edgemnist.runtime.machine import usable_cores
from edgemnist.micro.check import litert_raw_outputs

# Core -> (QEMU machine, QEMU cpu). mps2-an386 is a Cortex-M4 board, mps2-an500 a Cortex-M7 one,
# mps3-an547 the Corstone-300 subsystem with a Cortex-M55.
BOARDS = {
    "cortex-m4": ("mps2-an386", "cortex-m4"),
    "cortex-m7": ("mps2-an500", "cortex-m7"),
    "cortex-m55": ("mps3-an547", "cortex-m55"),
}
KERNEL_SETS = firmware.KERNEL_SETS
TFLM_ENV = "EDGEMNIST_TFLM"  # default for --tflm
ESTIMATE_MHZ = 80  # the clock of the "at 1 instruction per cycle" estimate
RAM_START = 0x20000000  # cortex_m/cortex_m.ld: FLASH below, RAM from here

_INSTALL = ("apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib "
            "qemu-system-arm make")
_TREE_HINT = ("make one in a tflite-micro checkout with: python3 tensorflow/lite/micro/tools/project_generation/"
              "create_tflm_tree.py --makefile_options=\"TARGET=cortex_m_generic TARGET_ARCH=cortex-m4+fp "
              "[OPTIMIZED_KERNEL_DIR=cmsis_nn]\" OUT")


class MissingToolError(FileNotFoundError):
    """A tool or source tree the build needs is not there (exit status 2)."""


class FirmwareRunError(RuntimeError):
    """The build failed, or the firmware hung or faulted under QEMU (exit status 1)."""


@dataclass(frozen=True)
class McuConfig:
    """Settings of `edgemnist mcu`."""

    cpu: str = "cortex-m4"  # a key of BOARDS
    kernels: str = "cmsis_nn"  # "reference" or "cmsis_nn": TFLite Micro's kernel set
    tflm: Optional[str] = None  # a create_tflm_tree.py tree, or a folder holding tree_<kernels>/ (default $EDGEMNIST_TFLM)
    timeout_s: float = 300.0  # QEMU wall-clock limit; a firmware that runs longer counts as hung
    jobs: int = max(1, usable_cores() or 1)  # parallel compiler processes
    build_dir: Optional[str] = None  # default: <folder>/build/<cpu>-<kernels>
    cache_dir: Optional[str] = None  # compiled TFLite Micro objects, shared by folders (default artifacts.cache_dir())

    def __post_init__(self):
        if self.cpu not in BOARDS:
            raise ValueError(f"cpu must be one of {', '.join(BOARDS)}, got {self.cpu!r}")
        if self.kernels not in KERNEL_SETS:
            raise ValueError(f"kernels must be one of {', '.join(KERNEL_SETS)}, got {self.kernels!r}")
        if not 0 < float(self.timeout_s) <= 24 * 3600:
            raise ValueError(f"timeout_s must be in (0, 86400], got {self.timeout_s}")
        if int(self.jobs) < 1:
            raise ValueError(f"jobs must be >= 1, got {self.jobs}")


# --------------------------------------------------------------------------- inputs


def find_tools() -> dict:
    """Paths of the cross compiler, binutils, make and QEMU.

    Raises:
        MissingToolError: one is missing (the message says what to install).
    """
    names = {"make": "make", "gcc": "arm-none-eabi-gcc", "g++": "arm-none-eabi-g++",
             "size": "arm-none-eabi-size", "nm": "arm-none-eabi-nm", "qemu": "qemu-system-arm"}
    found = {key: shutil.which(name) for key, name in names.items()}
    missing = [names[key] for key, path in found.items() if path is None]
    if missing:
        raise MissingToolError(f"{', '.join(missing)} not found; install them with: {_INSTALL}")
    return found


def resolve_tflm(tflm: Optional[str], kernels: str) -> Path:
    """The TFLite Micro tree for a kernel set: `tflm` itself, or its `tree_<kernels>/` folder.

    Raises:
        MissingToolError: no tree given or found, or the tree lacks that kernel set.
    """
    given = tflm or os.environ.get(TFLM_ENV)
    if not given:
        raise MissingToolError(f"no TFLite Micro tree: pass --tflm DIR or set {TFLM_ENV}; {_TREE_HINT}")
    root = Path(given).expanduser()
    for tree in (root, root / f"tree_{kernels}"):
        if (tree / "tensorflow" / "lite" / "micro" / "micro_interpreter.h").is_file():
            break
    else:
        raise MissingToolError(f"{root}: not a TFLite Micro tree (no tensorflow/lite/micro/micro_interpreter.h, "
                               f"nor in tree_{kernels}/); {_TREE_HINT}")
    kernel_dir = tree / "tensorflow" / "lite" / "micro" / "kernels"
    has_cmsis = (kernel_dir / "cmsis_nn").is_dir()
    if kernels == "cmsis_nn" and not has_cmsis:
        raise MissingToolError(f"{tree}: this TFLite Micro tree has no CMSIS-NN kernels "
                               "(make it with OPTIMIZED_KERNEL_DIR=cmsis_nn)")
    if kernels == "reference" and has_cmsis:
        raise MissingToolError(f"{tree}: this TFLite Micro tree was made with OPTIMIZED_KERNEL_DIR=cmsis_nn; "
                               "reference kernels need a tree made without it")
    return tree


def verify_folder(folder: Path) -> dict:
    """The folder's manifest, after checking every listed file's sha256.

    Raises:
        FileNotFoundError: not a firmware folder. ValueError: a file differs from the manifest.
    """
    manifest_path = folder / firmware.MANIFEST_NAME
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{folder}: not a firmware folder (no {firmware.MANIFEST_NAME}); "
                                "write one with `edgemnist firmware MODEL --out DIR`")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = manifest["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{manifest_path}: not a readable firmware manifest ({exc})") from None
    if "Makefile" not in files:
        raise ValueError(f"{folder}: written by an older edgemnist without the Cortex-M build; "
                         "regenerate it with `edgemnist firmware`")
    for name, entry in sorted(files.items()):
        path = folder / name
        if not path.is_file():
            raise ValueError(f"{path}: missing (listed in {firmware.MANIFEST_NAME})")
        if sha256_bytes(path.read_bytes()) != entry["sha256"]:
            raise ValueError(f"{path}: differs from the sha256 in {firmware.MANIFEST_NAME}; "
                             "regenerate the folder with `edgemnist firmware`")
    return manifest


def _c_array(text: str, name: str) -> list:
    match = re.search(re.escape(name) + r"\[[^=]*=\s*\{(.*?)\n\};", text, re.S)
    if match is None:
        raise ValueError(f"no array {name} found")
    body = re.sub(r"//[^\n]*", "", match.group(1))
    return [int(v, 0) for v in re.findall(r"-?(?:0x[0-9a-fA-F]+|\d+)", body)]


def embedded_data(folder: Path, manifest: dict) -> tuple:
    """(model bytes, int8 digits (N, H, W, C), expected int8 scores (N, classes)) from the folder's sources."""
    stem = manifest["stem"]
    model = bytes(_c_array((folder / f"{stem}_model_data.cc").read_text(), f"g_{stem}_model_data"))
    if sha256_bytes(model) != manifest["model"]["sha256"]:
        raise ValueError(f"{folder}: the model array does not match the manifest's sha256")
    digits_cc = (folder / f"{stem}_test_digits.cc").read_text()
    n = int(manifest["test_digits"]["count"])
    shape = [n] + list(manifest["input"]["shape"][1:])
    digits = np.array(_c_array(digits_cc, f"g_{stem}_test_digits"), np.int8).reshape(shape)
    expected = np.array(_c_array(digits_cc, f"g_{stem}_expected_scores"), np.int8).reshape(n, -1)
    return model, digits, expected


# --------------------------------------------------------------------------- build


def _cache_root(config: McuConfig) -> Path:
    return Path(config.cache_dir) if config.cache_dir else cache_dir()


def object_cache(config: McuConfig, tree: Path, makefile: bytes) -> Path:
    """The folder for TFLite Micro objects: one per tree, core, kernel set and Makefile (its flags)."""
    key = hashlib.sha256("\0".join([str(tree.resolve()), config.cpu, config.kernels]).encode() + makefile)
    return _cache_root(config) / "tflm-objects" / f"{config.cpu}-{config.kernels}-{key.hexdigest()[:16]}"


def build(folder: Path, tree: Path, config: McuConfig, tools: dict) -> dict:
    """Runs the folder's Makefile; returns {"elf", "build_dir", "seconds", "log"}.

    Raises:
        FirmwareRunError: the compiler or linker failed (the log's tail in the message).
    """
    build_dir = Path(config.build_dir) if config.build_dir else folder / "build" / f"{config.cpu}-{config.kernels}"
    cache = object_cache(config, tree, (folder / "Makefile").read_bytes())
    build_dir.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    log = build_dir / "build.log"
    cmd = [tools["make"], "-C", str(folder), f"-j{int(config.jobs)}", f"TFLM={tree.resolve()}", f"CPU={config.cpu}",
           f"KERNELS={config.kernels}", f"BUILD={build_dir.resolve()}", f"OBJ_CACHE={cache}", "all"]
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as fh:
        fh.write(" ".join(cmd) + "\n")
        fh.flush()
        result = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    elf = build_dir / "firmware.elf"
    if result.returncode != 0 or not elf.is_file():
        tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()][-3:]
        raise FirmwareRunError(f"building {folder} for {config.cpu} ({config.kernels}) failed: "
                               f"{' | '.join(tail)[-600:]} (full log: {log})")
    return {"elf": elf, "build_dir": build_dir, "seconds": round(seconds, 2), "log": str(log)}


_NOT_LOADED = (".debug", ".comment", ".ARM.attributes", ".stab", ".note")


def elf_sizes(elf: Path, stem: str, tools: dict) -> dict:
    """Flash (everything loaded from flash, .data's initial values included) and RAM (.data,
    .bss, heap and stack) of the ELF, with the arena, stack, model and test digits named."""
    out = subprocess.run([tools["size"], "-A", str(elf)], capture_output=True, text=True, check=True).stdout
    sections = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit() \
                and not parts[0].startswith(_NOT_LOADED):
            sections[parts[0]] = (int(parts[1]), int(parts[2]))
    flash = sum(size for size, addr in sections.values() if addr < RAM_START)
    ram = sum(size for size, addr in sections.values() if addr >= RAM_START)
    flash += sections.get(".data", (0, 0))[0]  # initial values live in flash
    symbols = {}
    nm = subprocess.run([tools["nm"], "-S", "-C", str(elf)], capture_output=True, text=True, check=True).stdout
    for line in nm.splitlines():
        parts = line.split()
        if len(parts) >= 4:
            symbols[" ".join(parts[3:])] = int(parts[1], 16)
    arena = next((size for name, size in symbols.items() if name.endswith("tensor_arena")), None)
    return {
        "flash_bytes": flash,
        "ram_bytes": ram,
        "sections": {name: size for name, (size, _) in sorted(sections.items()) if size},
        "arena_bytes": arena,
        "stack_bytes": sections.get(".stack", (None, 0))[0],
        "model_bytes": symbols.get(f"g_{stem}_model_data"),
        "test_digit_bytes": sum(v for k, v in symbols.items()
                                if k in (f"g_{stem}_test_digits", f"g_{stem}_test_labels", f"g_{stem}_expected_scores")),
    }


# --------------------------------------------------------------------------- run


def qemu_command(elf: Path, cpu: str, qemu: str = "qemu-system-arm") -> list:
    """The QEMU argv that runs `elf` on the board of `cpu` with semihosting and exact instruction counting.

    Args:
        elf: the firmware.
        cpu: a key of BOARDS.
        qemu: the qemu-system-arm program.
    """
    machine, qemu_cpu = BOARDS[cpu]
    return [qemu, "-M", machine, "-cpu", qemu_cpu, "-nographic", "-monitor", "none", "-serial", "none",
            "-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-kernel", str(elf)]


_DIGIT = re.compile(r"digit (\d+): label (\S+), predicted (\S+), scores ([-\d ]+) \((bit-exact|MISMATCH)\)")
_KEYS = re.compile(r"(\w+)=(\S+)")


def parse_output(text: str) -> dict:
    """The firmware's digit lines and `EDGEMNIST ...` lines as data."""
    digits, invokes, ops, calibration, result, arena_used = {}, {}, {}, None, None, None
    for line in text.splitlines():
        line = line.strip()
        m = _DIGIT.search(line)
        if m:
            digits[int(m.group(1))] = {"label": m.group(2), "predicted": m.group(3),
                                       "scores": [int(v) for v in m.group(4).split()]}
            continue
        m = re.search(r"arena \d+ bytes \((\d+) used\)", line)
        if m:
            arena_used = int(m.group(1))
        if not line.startswith("EDGEMNIST "):
            continue
        kind = line.split()[1]
        fields = dict(_KEYS.findall(line))
        if kind == "invoke" and "digit" in fields:
            invokes[int(fields["digit"])] = int(fields["instructions"])
        elif kind == "op":
            ops[int(fields["index"])] = {"op": fields["tag"], "calls": int(fields["calls"]),
                                         "instructions": int(fields["instructions"])}
        elif kind == "calibration":
            calibration = fields.get("instructions_per_tick")
        elif kind == "result":
            result = {"mismatches": int(fields["mismatches"])}
    return {"digits": digits, "invokes": invokes, "ops": ops, "calibration": calibration, "result": result,
            "arena_used": arena_used}


def _tail(text: str, lines: int = 3) -> str:
    kept = [ln.strip() for ln in text.splitlines() if ln.strip()][-lines:]
    return " | ".join(kept)[-400:] or "no output"


def run_firmware(elf: Path, config: McuConfig, tools: dict) -> dict:
    """Runs the ELF under QEMU; returns {"returncode", "output", "seconds", "command"}.

    Raises:
        FirmwareRunError: QEMU did not finish within the timeout, or the firmware faulted.
    """
    cmd = qemu_command(elf, config.cpu, tools["qemu"])
    start = time.perf_counter()
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=config.timeout_s,
                                stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"") + (exc.stderr or b"")
        text = out.decode(errors="replace") if isinstance(out, bytes) else out
        raise FirmwareRunError(f"{elf}: the firmware did not finish within {config.timeout_s:g} s under "
                               f"{' '.join(cmd[:5])}: {_tail(text)}") from None
    output = result.stdout + result.stderr
    if result.returncode == 3 or "EDGEMNIST FAULT" in output:
        raise FirmwareRunError(f"{elf}: the firmware faulted under {' '.join(cmd[:5])}: {_tail(output)}")
    if result.returncode not in (0, 1, 2):
        raise FirmwareRunError(f"{elf}: QEMU exited with status {result.returncode}: {_tail(output)}")
    return {"returncode": result.returncode, "output": output, "seconds": round(time.perf_counter() - start, 2),
            "command": " ".join(cmd)}


# --------------------------------------------------------------------------- the command


def run_mcu(folder, config: McuConfig = McuConfig()) -> dict:
    """Builds, runs and checks a firmware folder on one core and kernel set.

    Returns:
        The report (see the README's `edgemnist mcu --json` contract); "ok" is True only when
        every digit's scores are bit-exact with the host.

    Raises:
        MissingToolError: toolchain, QEMU or TFLM tree missing. FileNotFoundError/ValueError: not
        a (trustworthy) firmware folder. FirmwareRunError: the build failed, or the firmware hung
        or faulted.
    """
    folder = Path(folder)
    manifest = verify_folder(folder)
    tools = find_tools()
    tree = resolve_tflm(config.tflm, config.kernels)
    model, digits, expected = embedded_data(folder, manifest)
    built = build(folder, tree, config, tools)
    sizes = elf_sizes(built["elf"], manifest["stem"], tools)
    ran = run_firmware(built["elf"], config, tools)
    (built["build_dir"] / "qemu.log").write_text(ran["output"], encoding="utf-8")
    parsed = parse_output(ran["output"])
    n = len(expected)
    if ran["returncode"] == 2 or parsed["result"] is None or len(parsed["digits"]) != n:
        raise FirmwareRunError(f"{built['elf']}: the firmware stopped before reporting all {n} digits "
                               f"(exit status {ran['returncode']}): {_tail(ran['output'])}")
    scores = np.array([parsed["digits"][i]["scores"] for i in range(n)], np.int8)
    try:
        litert = litert_raw_outputs(model, digits).astype(np.int8)
    except MissingExtraError:  # no ai-edge-litert here: reported as not checked
        litert = None
    labels = manifest["test_digits"]["labels"]
    predicted = scores.argmax(axis=1)
    instructions = np.array([parsed["invokes"][i] for i in sorted(parsed["invokes"])], np.int64)
    per_inference = float(instructions.mean()) if len(instructions) else None
    per_op = [{"index": i, "op": v["op"], "instructions_per_inference": round(v["instructions"] / max(v["calls"], 1))}
              for i, v in sorted(parsed["ops"].items())]
    by_type = {}
    for row in per_op:
        entry = by_type.setdefault(row["op"], {"op": row["op"], "count": 0, "instructions_per_inference": 0})
        entry["count"] += 1
        entry["instructions_per_inference"] += row["instructions_per_inference"]
    per_op_type = sorted(by_type.values(), key=lambda r: -r["instructions_per_inference"])
    bit_exact_micro = bool(np.array_equal(scores, expected))
    report = {
        "folder": str(folder),
        "model": manifest["model"],
        "cpu": config.cpu,
        "kernels": config.kernels,
        "board": BOARDS[config.cpu][0],
        "tflm_tree": str(tree),
        "digits": n,
        "correct": int(np.sum(predicted == np.array(labels))),
        "predictions": [int(v) for v in predicted],
        "bit_exact": {
            "tflite_micro_host": bit_exact_micro,
            # LiteRT's builtin kernels are TFLite Micro's ancestors but not the same code: a
            # score may differ by a level (reported, not failed: the device must match the host
            # TFLite Micro it was generated and checked with).
            "litert_builtin": None if litert is None else {
                "bit_exact_fraction": float(np.mean(np.all(scores == litert, axis=1))),
                "max_abs_diff": int(np.abs(scores.astype(np.int32) - litert.astype(np.int32)).max()),
                "same_class_fraction": float(np.mean(scores.argmax(1) == litert.argmax(1)))},
            "digits_differing": int(np.sum(np.any(scores != expected, axis=1))),
            "max_abs_diff": int(np.abs(scores.astype(np.int32) - expected.astype(np.int32)).max()),
        },
        "firmware_mismatches": parsed["result"]["mismatches"],
        "memory": {**sizes, "arena_used_bytes": parsed["arena_used"]},
        "instructions": {
            "per_inference_mean": None if per_inference is None else round(per_inference),
            "per_inference_min": int(instructions.min()) if len(instructions) else None,
            "per_inference_max": int(instructions.max()) if len(instructions) else None,
            "calibration_instructions_per_tick": parsed["calibration"],
            "estimate_ms_at_80mhz": None if per_inference is None else round(per_inference / (ESTIMATE_MHZ * 1e3), 3),
            "per_op": per_op,
            "per_op_type": per_op_type,
        },
        "build_seconds": built["seconds"],
        "run_seconds": ran["seconds"],
        "qemu_command": ran["command"],
        "build_dir": str(built["build_dir"]),
    }
    report["ok"] = bool(bit_exact_micro and report["firmware_mismatches"] == 0 and ran["returncode"] == 0)
    return report


def format_report(r: dict) -> str:
    """A human table of one `run_mcu` report."""
    mem, ins, be = r["memory"], r["instructions"], r["bit_exact"]
    lb = be["litert_builtin"]
    litert = ("not checked (no ai-edge-litert)" if lb is None else
              f"{lb['bit_exact_fraction']:.0%} of digits bit-exact, max {lb['max_abs_diff']} levels, "
              f"{lb['same_class_fraction']:.0%} same class")
    lines = [
        f"{r['model']['name']} on {r['cpu']} ({r['board']}, QEMU), TFLite Micro {r['kernels']} kernels",
        f"  digits right:        {r['correct']} / {r['digits']}",
        f"  bit-exact:           vs TFLite Micro host {'yes' if be['tflite_micro_host'] else 'NO'} "
        f"({be['digits_differing']} digits differ, max {be['max_abs_diff']} levels); vs LiteRT builtin {litert}",
        f"  flash:               {mem['flash_bytes']:,} bytes (model {mem['model_bytes'] or 0:,}, "
        f"test digits {mem['test_digit_bytes']:,})",
        f"  RAM:                 {mem['ram_bytes']:,} bytes (arena {mem['arena_bytes'] or 0:,}, "
        f"{mem['arena_used_bytes'] or 0:,} used; stack {mem['stack_bytes'] or 0:,})",
    ]
    if ins["per_inference_mean"] is not None:
        lines.append(f"  instructions:        {ins['per_inference_mean']:,} per inference "
                     f"(min {ins['per_inference_min']:,}, max {ins['per_inference_max']:,}); "
                     f"estimate at 1 instruction/cycle, {ESTIMATE_MHZ} MHz: {ins['estimate_ms_at_80mhz']} ms")
        total = sum(o["instructions_per_inference"] for o in ins["per_op"]) or 1
        lines.append(f"  {'#':>3} {'op':<20}{'instructions':>14}{'share':>8}")
        for o in ins["per_op"]:
            lines.append(f"  {o['index']:>3} {o['op']:<20}{o['instructions_per_inference']:>14,}"
                         f"{o['instructions_per_inference'] / total:>8.1%}")
    lines.append(f"  build {r['build_seconds']} s, QEMU run {r['run_seconds']} s; build folder {r['build_dir']}")
    lines.append("OK: every int8 score is bit-exact with the host" if r["ok"] else
                 "FAILED: the firmware's scores differ from the host's")
    return "\n".join(lines)


def add_commands(subparsers) -> None:
    """Registers `edgemnist mcu`."""
    p = subparsers.add_parser(
        "mcu",
        help="build a firmware folder for Cortex-M, run it under QEMU, check it bit-exactly, measure it",
        description="Cross-compile a folder written by `edgemnist firmware` for a Cortex-M core with "
        "arm-none-eabi-gcc and TFLite Micro's reference or CMSIS-NN kernels, run it under qemu-system-arm, "
        "and report predictions, bit-exactness of every int8 score against the host, flash and RAM, and "
        "instructions per inference and per op. Exit status: 0 bit-exact, 1 mismatch, hang, fault or "
        "failed build, 2 missing toolchain, QEMU or TFLite Micro tree, or bad input.",
        epilog=f"Needs: {_INSTALL}; a TFLite Micro tree ({_TREE_HINT}).",
    )
    p.add_argument("folder", help="a firmware folder written by `edgemnist firmware`")
    p.add_argument("--tflm", default=None,
                   help=f"TFLite Micro tree (create_tflm_tree.py output), or a folder holding tree_reference/ and "
                   f"tree_cmsis_nn/ (default ${TFLM_ENV})")
    p.add_argument("--cpu", choices=list(BOARDS), default=McuConfig.cpu, help="core (default %(default)s)")
    p.add_argument("--kernels", choices=list(KERNEL_SETS), default=McuConfig.kernels,
                   help="TFLite Micro kernel set (default %(default)s)")
    p.add_argument("--timeout", type=float, default=McuConfig.timeout_s,
                   help="seconds QEMU may run before the firmware counts as hung (default %(default)s)")
    p.add_argument("--jobs", type=int, default=McuConfig.jobs, help="parallel compiles (default: all cores)")
    p.add_argument("--build-dir", default=None, help="build folder (default <folder>/build/<cpu>-<kernels>)")
    p.set_defaults(func=_run_mcu)


def _run_mcu(args):
    from edgemnist.cli import Output

    config = McuConfig(cpu=args.cpu, kernels=args.kernels, tflm=args.tflm, timeout_s=args.timeout, jobs=args.jobs,
                       build_dir=args.build_dir)
    print(f"building {args.folder} for {args.cpu} with {args.kernels} kernels, then running it under QEMU ...",
          file=sys.stderr)
    try:
        report = run_mcu(args.folder, config)
    except FirmwareRunError as exc:
        print(f"edgemnist: error: {exc}", file=sys.stderr)
        return 1
    return Output(report, format_report(report), status=0 if report["ok"] else 1)
