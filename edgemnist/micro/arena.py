"""Measure the tensor arena a .tflite needs on TFLite Micro (the tflite-micro package, built for the host).

Usage: from edgemnist.micro.arena import measure_arena; measure_arena("model_int8.tflite").stated
       python -m edgemnist.micro.arena MODEL.tflite ARENA_BYTES [--record]      (one probe)

The smallest arena is found by bisection. Each probe runs in a child process, this module
run as a program, because TFLite Micro can crash the process, not just fail, when the
arena is far too small. A probe prints `EDGEMNIST_ARENA_OK` once the model allocated,
ran and gave its output; with `--record`, TFLite Micro's allocation report before that.
"""
from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Optional

import numpy as np

from edgemnist.runtime.preflight import module_command
from edgemnist.targets import DEFAULT_MARGIN, check_margin

ARENA_ALIGNMENT = 16  # TFLite Micro aligns arena allocations to 16 bytes
PROBE_TIMEOUT_S = 120  # a probe that has not finished by then counts as failed
OK_MARKER = "EDGEMNIST_ARENA_OK"
_MICRO_HINT = "this command needs TFLite Micro for the host: pip install 'edgemnist[micro]' (tflite-micro)"


@dataclass(frozen=True)
class ArenaSize:
    """Tensor arena of a model on TFLite Micro (host build)."""

    minimum: int  # smallest arena (multiple of 16) that allocated and invoked
    stated: int  # what <stem>_model_settings.h declares: minimum plus the margin
    margin: float
    recorded: Optional[int]  # what TFLite Micro's RecordingMicroAllocator reported using
    probes: int  # child processes the bisection ran
    # Where the minimum was measured: "host" (this machine's TFLite Micro, bisection), or the core,
    # kernel set and QEMU board whose run reported it (`on_core`).
    measured_on: str = "host"

    def to_json(self) -> dict:
        """A JSON-ready dict of the fields."""
        return {"minimum": self.minimum, "stated": self.stated, "margin": self.margin,
                "recorded": self.recorded, "probes": self.probes, "measured_on": self.measured_on}

    @property
    def rounding(self) -> int:
        """What the stated size is rounded up to a multiple of: 1 KiB over a host measurement
        (room for scratch buffers that differ between kernel sets), the arena's alignment over
        one made on the core itself."""
        return _rounding(self.measured_on)


def _rounding(measured_on: str) -> int:
    return 1024 if measured_on == "host" else ARENA_ALIGNMENT


def _stated(minimum: int, margin: float, measured_on: str) -> int:
    """The arena a firmware states: the minimum plus the margin, rounded up (ArenaSize.rounding)."""
    rounding = _rounding(measured_on)
    return int(math.ceil(minimum * (1.0 + margin) / rounding)) * rounding


def on_core(used: int, margin: float, where: str) -> ArenaSize:
    """The arena a firmware run on the core reported using (TFLite Micro's `arena_used_bytes`:
    its persistent and planned buffers with their alignment), stated with `margin`.

    The host's TFLite Micro is a 64-bit build whose tensors, nodes and pointers are larger than
    a 32-bit core's, so on a board whose RAM is tight the host's figure can refuse a model that
    fits; the core's own figure is exact for that core and kernel set.
    """
    used = int(used)
    if used <= 0:
        raise ValueError(f"the firmware run on {where} reported {used} bytes of arena used")
    margin = check_margin(margin)
    return ArenaSize(used, _stated(used, margin, where), margin, used, 0, where)


def import_micro():
    """The tflite-micro package's runtime module.

    Raises:
        MissingExtraError: tflite-micro is not installed.
    """
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError as exc:
        from edgemnist._tensorflow import MissingExtraError

        raise MissingExtraError(f"{_MICRO_HINT} ({exc})") from None
    return runtime


def micro_version() -> str:
    """The installed tflite-micro package version ("unknown" when it has none)."""
    from importlib import metadata

    try:
        return metadata.version("tflite-micro")
    except metadata.PackageNotFoundError:
        return "unknown"


def _probe(path: str, size: int, record: bool = False) -> tuple:
    """(works, output) of one arena probe in a child process."""
    cmd, env = module_command("edgemnist.micro.arena", path, str(int(size)), *(["--record"] if record else []))
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return False, "timed out"
    output = result.stdout + result.stderr
    return result.returncode == 0 and OK_MARKER in result.stdout, output


def arena_works(path: str | os.PathLike, size: int) -> bool:
    """Whether the model allocates and invokes on TFLite Micro with an arena of `size` bytes."""
    import_micro()
    return _probe(os.fspath(path), size)[0]


def _last_error(output: str) -> str:
    lines = [ln.strip() for ln in output.splitlines() if ln.strip() and OK_MARKER not in ln]
    return lines[-1] if lines else "no message (the process crashed)"


def measure_arena(path: str | os.PathLike, margin: float = DEFAULT_MARGIN, max_arena: int = 8 << 20) -> ArenaSize:
    """Finds the smallest tensor arena the model runs with on TFLite Micro, by bisection.

    Args:
        path: an int8 .tflite file.
        margin: stated size = minimum * (1 + margin), rounded up to a multiple of 1 KiB.
        max_arena: give up above this many bytes.

    Returns:
        The `ArenaSize`.

    Raises:
        ValueError: the model does not run on TFLite Micro at all (TFLite Micro's message).
        MissingExtraError: tflite-micro is not installed.
    """
    import_micro()
    path = os.fspath(path)
    probes = 0
    hi = 16 << 10
    while True:
        probes += 1
        works, output = _probe(path, hi)
        if works:
            break
        if hi >= max_arena:
            raise ValueError(f"{path}: does not run on TFLite Micro with a {max_arena}-byte arena: {_last_error(output)}")
        hi = min(hi * 4, max_arena)
    lo = 0  # an empty arena never works
    while hi - lo > ARENA_ALIGNMENT:
        mid = (lo + hi) // 2 // ARENA_ALIGNMENT * ARENA_ALIGNMENT
        if mid <= lo:
            break
        probes += 1
        if _probe(path, mid)[0]:
            hi = mid
        else:
            lo = mid
    stated = _stated(hi, margin, "host")
    probes += 1
    works, output = _probe(path, stated, record=True)
    if not works:
        raise RuntimeError(f"{path}: the stated arena of {stated} bytes failed on TFLite Micro: {_last_error(output)}")
    match = re.search(r"Arena allocation total (\d+) bytes", output)
    return ArenaSize(hi, stated, float(margin), int(match.group(1)) if match else None, probes)


def probe(path: str, size: int, record: bool = False) -> None:
    """One probe, in this process: allocate, set an input of zero points, invoke, read the output.

    Too small an arena may crash the process instead of raising; run it through `_probe`.
    """
    interpreter = import_micro().Interpreter.from_file(path, arena_size=int(size))
    details = interpreter.get_input_details(0)
    zero_point = details["quantization_parameters"]["zero_points"][0]
    interpreter.set_input(np.full(details["shape"], zero_point, details["dtype"]), 0)
    interpreter.invoke()
    interpreter.get_output(0)
    sys.stdout.flush()  # TFLite Micro's report below is written by C++, past Python's buffer
    if record:
        interpreter.print_allocations()
    print(OK_MARKER, flush=True)


def main(argv: Optional[list] = None) -> int:
    """Runs one probe on argv (MODEL ARENA_BYTES [--record]); an exception exits non-zero."""
    argv = sys.argv[1:] if argv is None else argv
    record = "--record" in argv
    args = [a for a in argv if a != "--record"]
    if len(args) != 2 or not args[1].isdigit():
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    probe(args[0], int(args[1]), record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
