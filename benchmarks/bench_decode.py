"""Peak memory of decoding one large image for `predict`: how much above the decoded file the reading costs.

Usage: python benchmarks/bench_decode.py [--side 12000] [--json benchmarks/results/decode.json]

For each kind of file a scanner or a canvas export produces (greyscale, RGB, 1-bit and RGBA
PNG, and a JPEG), a `--side` x `--side` image of a thick stroke is written once; then, in a
fresh Python process each, `edgemnist.runtime.prepare.prepare(path)` reads it (decode at
`PrepareConfig.work_size`, then the preparation) and the process's peak resident memory is
taken (`ru_maxrss`), minus that of the same process before reading (numpy, Pillow and
edgemnist imported). Also the decoded file's own size (Pillow's bytes per pixel for its mode),
the floor for every format but JPEG, which decodes reduced (draft). Prints a table and writes
JSON.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# (name, Pillow mode, file suffix, Pillow's bytes per decoded pixel: RGB is stored as 4)
KINDS = (("grey PNG", "L", ".png", 1), ("RGB PNG", "RGB", ".png", 4), ("1-bit PNG", "1", ".png", 1),
         ("RGBA PNG", "RGBA", ".png", 4), ("RGB JPEG", "RGB", ".jpg", 4))

_CHILD = """
import resource, sys
from edgemnist.runtime.prepare import prepare
def peak(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
before = peak()
ready = prepare(sys.argv[1])
print(before, peak(), ready.reason is None)
"""


def write_image(path: Path, mode: str, side: int) -> None:
    """A thick dark stroke on light paper (RGBA: on a transparent sheet)."""
    paper = (0, 0, 0, 0) if mode == "RGBA" else "white"
    ink = (0, 0, 0, 255) if mode == "RGBA" else "black"
    image = Image.new(mode, (side, side), paper)
    ImageDraw.Draw(image).line([(side // 4, side // 6), (3 * side // 4, side // 6), (side // 2, 5 * side // 6)],
                               fill=ink, width=max(1, side // 13))
    image.save(path, quality=90) if path.suffix == ".jpg" else image.save(path)


def measure(path: Path) -> dict:
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", _CHILD, str(path)], capture_output=True, text=True,
                          check=True)
    before, after, found = done.stdout.split()
    return {"peak_mb": round(int(after) / 2**20, 1), "reading_mb": round((int(after) - int(before)) / 2**20, 1),
            "digit_found": found == "True"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=12000, help="image side in pixels (default %(default)s)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--write", nargs=3, metavar=("PATH", "MODE", "SIDE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.write:
        write_image(Path(args.write[0]), args.write[1], int(args.write[2]))
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, mode, suffix, depth in KINDS:
            path = Path(folder) / f"{mode}{suffix}"
            # written by a child too: Linux carries a parent's peak resident memory into the children it starts
            subprocess.run([sys.executable, __file__, "--write", str(path), mode, str(args.side)], check=True)
            rows.append({"kind": name, "side": args.side, "file_kb": round(path.stat().st_size / 1024, 1),
                         "decoded_mb": round(args.side * args.side * depth / 2**20, 1), **measure(path)})
    print(f"{'kind':<10} {'side':>6} {'file KB':>8} {'decoded MB':>10} {'reading MB':>10} {'peak MB':>8}")
    for row in rows:
        print(f"{row['kind']:<10} {row['side']:>6} {row['file_kb']:>8} {row['decoded_mb']:>10} {row['reading_mb']:>10} "
              f"{row['peak_mb']:>8}")
    result = {"numpy": np.__version__, "pillow": Image.__version__, "python": sys.version.split()[0], "rows": rows}
    if args.json:
        from edgemnist.artifacts import atomic_write_json

        atomic_write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0 if all(row["digit_found"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
