"""Generated C against LiteRT on every MNIST test image: bit-exact or not, and what its memory plan needs.

Usage: python benchmarks/bench_codegen.py [MODEL.tflite ...] [--limit N] [--json benchmarks/results/codegen.json]

For each full-integer .tflite (default: the shipped int8 model and every runs/*/tflite/*int8*.tflite
there is), `edgemnist codegen` writes the C, gcc compiles it for the host with guard bytes around
the arena (the harness fails if one changes), and all 10,000 test images go through it and through
LiteRT's builtin kernels. Every score of every image is compared, not only the class. Also the plan:
the arena with fusion and in-place layers, without fusion, and the plain ping-pong of two buffers.
Prints a table, writes JSON, and exits 1 if any score differs.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def default_models() -> list:
    from edgemnist.runtime.models import shipped_path

    found = sorted(p for p in (ROOT / "runs").glob("*/tflite/*int8*.tflite") if "aie_int16" not in p.name)
    return [shipped_path("int8")] + found


def measure(path: Path, images: np.ndarray, labels: np.ndarray, folder: Path) -> dict:
    from edgemnist.micro import codegen
    from edgemnist.micro.check import litert_raw_outputs, quantize_images
    from edgemnist.runtime.tflite_reader import read_model

    report = codegen.write(path, folder)
    exe = codegen.host_build(folder, guard=64)
    model = read_model(path)
    x = model.tensors[model.main.inputs[0]]
    q = quantize_images(images, x.scale, x.zero_point)
    start = time.perf_counter()
    ref = litert_raw_outputs(path, q)
    litert_s = time.perf_counter() - start
    start = time.perf_counter()
    got = codegen.host_predict(exe, q, ref.shape[1])
    c_s = time.perf_counter() - start
    differ = int((ref != got).any(axis=1).sum())
    return {"model": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path), "images": len(images),
            "images_differing": differ, "scores_differing": int((ref != got).sum()), "bit_exact": differ == 0,
            "accuracy": round(float((got.argmax(axis=1) == labels).mean()), 4),
            "layers": len(report["layers"]), "fusions": len(report["fusions"]), "arena_bytes": report["arena_bytes"],
            "unfused_arena_bytes": report["unfused_arena_bytes"], "ping_pong_bytes": report["ping_pong_bytes"],
            "scratch_bytes": report["scratch_bytes"], "const_bytes": report["const_bytes"],
            "litert_s": round(litert_s, 2), "c_host_s": round(c_s, 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path, help="full-integer .tflite files (default: see above)")
    parser.add_argument("--limit", type=int, default=None, help="first N test images (default: all 10,000)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    from edgemnist.data import load_split

    test = load_split("test", limit=args.limit)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, path in enumerate(args.models or default_models()):
            rows.append(measure(path.resolve(), test.images, test.labels, Path(tmp) / f"m{i}"))
            row = rows[-1]
            print(f"{row['model']}: {row['images_differing']} of {row['images']} images differ, "
                  f"arena {row['arena_bytes']:,} B", flush=True)
    print(f"\n{'model':<58} {'images':>6} {'differ':>6} {'acc %':>6} {'arena B':>8} {'unfused':>8} {'ping-pong':>9} "
          f"{'const B':>8}")
    for r in rows:
        print(f"{r['model']:<58} {r['images']:>6} {r['images_differing']:>6} {100 * r['accuracy']:>6.2f} "
              f"{r['arena_bytes']:>8,} {r['unfused_arena_bytes']:>8,} {r['ping_pong_bytes']:>9,} {r['const_bytes']:>8,}")
    import platform

    result = {"machine": platform.machine(), "python": sys.version.split()[0], "rows": rows,
              "command": "python benchmarks/bench_codegen.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    if args.json:
        from edgemnist.artifacts import atomic_write_json

        atomic_write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0 if all(r["bit_exact"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
