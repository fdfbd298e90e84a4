"""Flash and RAM of int8 models on TFLite Micro: model bytes and the measured tensor arena.

Usage: python benchmarks/bench_firmware.py runs/default [more .tflite files or run folders] [--json out.json]

For each int8 .tflite given (or found in a run folder): flash = the model's bytes (what
`<stem>_model_data.cc` puts in flash), RAM = the smallest tensor arena it runs with on
TFLite Micro (host build, bisection in child processes) and the stated arena
(minimum + margin), plus what dominates each: the largest weight tensors and the bytes
breakdown of the file. Optionally (--digits N) TFLite Micro's predictions against LiteRT
on the first N test digits. Target for the default model: <= 32 KB model, <= 48 KB arena.
Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgemnist.targets import DEFAULT_MARGIN

FLASH_TARGET = 32 * 1024
ARENA_TARGET = 48 * 1024


def find_models(paths: list) -> list:
    """.tflite files named, or inside the named folders, whose input is int8."""
    from edgemnist.runtime import tflite_info

    found = []
    for p in map(Path, paths):
        candidates = sorted(p.glob("*.tflite")) if p.is_dir() else [p]
        for c in candidates:
            try:
                model = tflite_info.read_model(c)
            except (tflite_info.TFLiteFormatError, OSError) as exc:
                print(f"skipping {c}: {exc}", file=sys.stderr)
                continue
            if model.inputs and model.inputs[0].dtype == "int8":
                found.append(c)
    return found


def measure(path: Path, margin: float, digits: int) -> dict:
    from edgemnist import data
    from edgemnist.micro import firmware
    from edgemnist.micro import arena as micro_arena
    from edgemnist.micro import check as micro_check
    from edgemnist.runtime import tflite_info

    model = tflite_info.validate(path)
    row = {"model": str(path), "flash_bytes": model.size, "bytes_breakdown": dict(model.bytes_breakdown)}
    largest = sorted((t for t in model.tensors if t.data), key=lambda t: len(t.data), reverse=True)[:3]
    row["largest_weights"] = [{"name": t.name, "shape": list(t.shape), "bytes": len(t.data)} for t in largest]
    activations = sorted((t for t in model.tensors if not t.data), key=lambda t: _nbytes(t), reverse=True)[:2]
    row["largest_activations"] = [{"name": t.name, "shape": list(t.shape), "bytes": _nbytes(t)} for t in activations]
    try:
        ops = firmware.micro_ops(model, str(path))
    except ValueError as exc:
        row["error"] = str(exc)
        return row
    arena = micro_arena.measure_arena(path, margin)
    row.update({"ops": ops, "arena": arena.to_json(), "flash_ok": model.size <= FLASH_TARGET,
                "arena_ok": arena.stated <= ARENA_TARGET})
    if digits:
        test = data.load_split("test", limit=digits)
        scale, zero_point = tflite_info.input_quantization(model)
        model_input = micro_check.quantize_images(test.images, scale, zero_point)
        check = micro_check.compare_with_litert(path, model_input, arena.stated)
        micro = micro_check.micro_predict(path, model_input, arena.stated)
        check["micro_accuracy"] = float((micro.argmax(1) == test.labels).mean())
        row["litert_check"] = check
    return row


def _nbytes(t) -> int:
    n = 1
    for d in t.shape:
        n *= max(int(d), 1)
    return n * {"int8": 1, "uint8": 1, "int16": 2, "float16": 2}.get(t.dtype, 4)


def format_table(rows: list) -> str:
    lines = [f"{'model':<44} {'flash':>9} {'arena min':>10} {'arena stated':>13} {'targets':>8}  largest activation"]
    for r in rows:
        name = Path(r["model"]).name
        if "error" in r:
            lines.append(f"{name:<44} {r['flash_bytes']:>9,}  not for TFLite Micro: {r['error']}")
            continue
        act = r["largest_activations"][0] if r["largest_activations"] else {"shape": [], "bytes": 0}
        ok = "ok" if r["flash_ok"] and r["arena_ok"] else "MISSED"
        lines.append(f"{name:<44} {r['flash_bytes']:>9,} {r['arena']['minimum']:>10,} {r['arena']['stated']:>13,} "
                     f"{ok:>8}  {act['shape']} = {act['bytes']:,} B")
        if "litert_check" in r:
            c = r["litert_check"]
            lines.append(f"{'':<44} TFLite Micro vs LiteRT on {c['digits']} digits: builtin kernels "
                         f"{c['builtin']['argmax_agreement']:.2%} (bit-exact {c['builtin']['bit_exact']:.1%}), "
                         f"XNNPACK {c['xnnpack']['argmax_agreement']:.2%}; micro accuracy {c['micro_accuracy']:.2%}")
        b = r["bytes_breakdown"]
        lines.append(f"{'':<44} flash: weights {b['weights']:,}, quantization {b['quantization']:,}, "
                     f"names {b['names']:,}, metadata {b['metadata']:,}, other {b['other']:,}")
    lines.append(f"targets: model <= {FLASH_TARGET:,} B, stated arena <= {ARENA_TARGET:,} B")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help=".tflite files or run folders")
    parser.add_argument("--margin", type=float, default=DEFAULT_MARGIN, help="arena margin (default %(default)s)")
    parser.add_argument("--digits", type=int, default=0, help="also compare with LiteRT on N test digits")
    parser.add_argument("--json", default="benchmarks/results/firmware.json", help="where to write the JSON")
    args = parser.parse_args(argv)
    from edgemnist.artifacts import atomic_write_json
    from edgemnist.runtime.machine import machine_info
    from edgemnist.micro.arena import micro_version

    models = find_models(args.paths)
    if not models:
        print("no int8 .tflite found in " + ", ".join(args.paths), file=sys.stderr)
        return 2
    rows = [measure(m, args.margin, args.digits) for m in models]
    print(format_table(rows))
    result = {"models": rows, "tflite_micro_version": micro_version(), "machine": machine_info(),
              "targets": {"flash": FLASH_TARGET, "arena": ARENA_TARGET}}
    atomic_write_json(args.json, result)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
