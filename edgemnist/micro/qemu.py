"""Run a built firmware under qemu-system-arm and read what it printed.

Usage: from edgemnist.micro import qemu; qemu.run_firmware(qemu.command(folder, "cortex-m4", build_dir, tools))

The folder's Makefile owns the QEMU command line (board per core, semihosting, instruction
counting, the time limit): `command` asks it with `make -s run-cmd` and this module runs
what it prints, so `make run` and `edgemnist mcu` run the same thing. The firmware prints one
line per digit and `EDGEMNIST ...` lines (instruction counts per invoke and per op, its own
bit-exact check); `parse_output` turns them into data.

QEMU does not model cycles: the counts are instructions (`-icount shift=0` with SysTick,
calibrated by the firmware against a loop of known length), not timings.
"""
from __future__ import annotations

import re
import shlex
import subprocess
import time
from pathlib import Path
from typing import Optional

from edgemnist.micro.build import FirmwareRunError

TIMED_OUT = 124  # the exit status of `timeout` when the firmware ran past the limit


def command(folder: Path, cpu: str, build_dir: Path, tools: dict, timeout_s: Optional[float] = None,
            board: Optional[str] = None) -> list:
    """The argv the folder's Makefile runs for `make run` (its `run-cmd` target): `timeout`, then QEMU.

    Args:
        folder: the firmware folder.
        cpu: the core (the Makefile's CPU).
        build_dir: the build folder holding firmware.elf.
        tools: {"make", "qemu"} -> program (`build.find_tools()`).
        timeout_s: seconds before the firmware counts as hung; None keeps the Makefile's QEMU_TIMEOUT.
        board: the Makefile's BOARD (its QEMU machine); None: the core's usual board.

    Raises:
        FirmwareRunError: make refused (the Makefile's own message).
        ValueError: the Makefile's command has no time limit (a folder from an older edgemnist).
    """
    cmd = [tools["make"], "-s", "-C", str(folder), f"CPU={cpu}", f"BUILD={Path(build_dir).resolve()}",
           f"QEMU={tools['qemu']}"]
    if timeout_s is not None:
        cmd.append(f"QEMU_TIMEOUT={float(timeout_s):g}")
    if board is not None:
        cmd.append(f"BOARD={board}")
    result = subprocess.run(cmd + ["run-cmd"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise FirmwareRunError(f"{folder}/Makefile: `make run-cmd` failed: {output_tail(result.stderr + result.stdout)}")
    argv = shlex.split(result.stdout.strip())
    if len(argv) < 3 or Path(argv[0]).name != "timeout":
        raise ValueError(f"{folder}/Makefile: its run-cmd has no time limit (written by an older edgemnist); "
                         "regenerate the folder with `edgemnist firmware`")
    return argv


def board(argv: list) -> str:
    """The QEMU machine (`-M`) of a `command` argv."""
    return argv[argv.index("-M") + 1]


def _qemu_part(argv: list) -> str:
    """`qemu -M machine -cpu core`: the part of the argv an error message names."""
    return " ".join(argv[2:7])


_DIGIT = re.compile(r"digit (\d+): label (\S+), predicted (\S+), scores ([-\d ]+) \((bit-exact|MISMATCH)\)")
_KEYS = re.compile(r"(\w+)=(\S+)")


def parse_output(text: str) -> dict:
    """The firmware's digit lines and `EDGEMNIST ...` lines as data.

    Returns:
        {"digits": {index: {"label", "predicted", "scores"}}, "invokes": {digit: instructions},
        "ops": {index: {"op", "calls", "instructions"}}, "calibration", "result": {"mismatches"} or None,
        "arena_used", "release": the release build's one line ({"digits", "correct", "mismatches",
        "instructions", "arena_used", "stack_used", "verdict": "PASS" or "FAIL"}) or None}.
    """
    digits, invokes, ops, calibration, result, arena_used, release = {}, {}, {}, None, None, None, None
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
        elif kind == "release" and line.split()[-1] in ("PASS", "FAIL") and "mismatches" in fields:
            release = {key: int(value) for key, value in fields.items()}
            release["verdict"] = line.split()[-1]
    return {"digits": digits, "invokes": invokes, "ops": ops, "calibration": calibration, "result": result,
            "arena_used": arena_used, "release": release}


def output_tail(text: str, lines: int = 3) -> str:
    """The last non-empty lines of a program's output, joined on one line (for an error message)."""
    kept = [ln.strip() for ln in text.splitlines() if ln.strip()][-lines:]
    return " | ".join(kept)[-400:] or "no output"


def run_firmware(argv: list) -> dict:
    """Runs a `command` argv (QEMU under `timeout`).

    Returns:
        {"returncode" (the firmware's: 0 bit-exact, 1 mismatch, 2 error), "output", "seconds", "command"}.

    Raises:
        FirmwareRunError: the firmware ran past the time limit, faulted, or QEMU failed.
    """
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, errors="replace", stdin=subprocess.DEVNULL)
    output = result.stdout + result.stderr
    elf = argv[-1]
    if result.returncode == TIMED_OUT:
        raise FirmwareRunError(f"{elf}: the firmware did not finish within {argv[1]} s under "
                               f"{_qemu_part(argv)}: {output_tail(output)}")
    if result.returncode == 3 or "EDGEMNIST FAULT" in output:
        raise FirmwareRunError(f"{elf}: the firmware faulted under {_qemu_part(argv)}: {output_tail(output)}")
    if result.returncode not in (0, 1, 2):
        raise FirmwareRunError(f"{elf}: QEMU exited with status {result.returncode}: {output_tail(output)}")
    return {"returncode": result.returncode, "output": output, "seconds": round(time.perf_counter() - start, 2),
            "command": " ".join(argv)}
