"""Generated C on an Arduino Uno (ATmega328P, 16 MHz): cycles per digit under simavr, flash and RAM.

Usage: python benchmarks/bench_avr.py MODEL.tflite [...] [--digits 3] [--no-arduino]
                                      [--json benchmarks/results/avr.json]

For each full-integer .tflite, `edgemnist.micro.avr.selfcheck` builds the release firmware (the
model and a serial port: the flash and RAM a product pays; RAM = .data + .bss + the stack's
high-water mark) and the self-check firmware, which runs the first N MNIST test digits under
simavr (cycle-accurate), times each inference with Timer1 and compares every score with LiteRT's.
Unless --no-arduino, the Arduino library's example sketch (Arduino core, HardwareSerial) is built
with arduino-mk too: its flash against the Uno's 32,256 B. Prints a table, writes JSON, exits 1
if a self-check fails.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def arduino_example(model: Path, folder: Path) -> dict:
    from edgemnist.micro import avr

    lib = avr.write_arduino_library(model, folder / "libraries" / "EdgeMnist")
    try:
        built = avr.build_arduino_example(lib["library"], folder / "build")
    except avr.BudgetError as exc:
        return {"fits": False, "error": str(exc).split(": ", 1)[-1]}
    return {"fits": True, "flash": built["sizes"]["flash_bytes"], "static_ram": built["sizes"]["static_ram_bytes"]}


def measure(model: Path, digits: int, arduino: bool, folder: Path) -> dict:
    from edgemnist.micro import avr

    report = avr.selfcheck(model, folder / "fw", digits=digits, emulators=("simavr",))
    sim, rel = report["simavr"], report["release"]
    row = {"model": str(model.relative_to(ROOT) if model.is_relative_to(ROOT) else model), "digits": digits,
           "pass": report["pass"], "cycles_per_digit": sim["cycles_per_inference"], "ms_at_16mhz": sim["ms_at_16mhz"],
           "cycles_min_max": [min(d["cycles"] for d in sim["per_digit"]), max(d["cycles"] for d in sim["per_digit"])],
           "release_flash": rel["flash"], "release_ram": rel["ram"], "release_static_ram": rel["static_ram_bytes"],
           "release_stack": rel["stack_high_water"], "selfcheck_flash": sim["flash"]}
    if arduino:
        row["arduino_example"] = arduino_example(model, folder / "arduino")
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path, help="full-integer .tflite files")
    parser.add_argument("--digits", type=int, default=3, help="test digits the self-check runs (default 3)")
    parser.add_argument("--no-arduino", action="store_true", help="skip the Arduino example build (arduino-mk)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    from edgemnist.micro import avr

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, path in enumerate(args.models):
            rows.append(measure(path.resolve(), args.digits, not args.no_arduino, Path(tmp) / f"m{i}"))
    print(f"{'model':<58} {'check':>5} {'cycles/digit':>12} {'ms':>7} {'flash B':>7} {'RAM B':>6} "
          f"{'Arduino example':>22}")
    for r in rows:
        example = r.get("arduino_example")
        shown = "-" if example is None else (f"{example['flash']:,} B" if example["fits"] else "does not fit")
        print(f"{r['model']:<58} {'PASS' if r['pass'] else 'FAIL':>5} {r['cycles_per_digit']:>12,} "
              f"{r['ms_at_16mhz']:>7} {r['release_flash']:>7,} {r['release_ram']:>6,} {shown:>22}")
    import platform
    import shutil
    import subprocess

    gcc = subprocess.run([shutil.which("avr-gcc") or "avr-gcc", "--version"], capture_output=True, text=True).stdout
    result = {"machine": platform.machine(), "avr_gcc": gcc.splitlines()[0] if gcc else None, "mcu": avr.MCU,
              "f_cpu": avr.F_CPU, "budget": {"flash": avr.UNO_FLASH_BYTES, "ram": avr.UNO_RAM_BYTES}, "rows": rows,
              "command": "python benchmarks/bench_avr.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    if args.json:
        from edgemnist.artifacts import atomic_write_json

        atomic_write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0 if all(r["pass"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
