"""Wall time of `edgemnist pipeline`, end to end and per stage, run as a user runs it.

Usage: python benchmarks/bench_pipeline.py --quick          (the smoke run; target <= 180 s on 2 cores)
       python benchmarks/bench_pipeline.py --out runs/full  (the whole job on defaults)

Runs `python -m edgemnist pipeline --out OUT [--quick]` in a fresh folder (a temporary one
unless --out is given; an existing --out is refused, so no stage is skipped), then reads the
stage seconds from OUT/pipeline.json. Also counts the stderr lines that are not edgemnist's
own (native library output that escaped the capture: should be 0). Prints a table and writes
JSON (--json, default benchmarks/results/pipeline_quick.json or pipeline.json).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUICK_TARGET_S = 180  # issue 16: --quick end to end, every stage, on 2 cores


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the smoke run (edgemnist pipeline --quick)")
    parser.add_argument("--out", help="run folder (must not exist; default: a temporary folder)")
    parser.add_argument("--json", help="where to write the results (default benchmarks/results/pipeline[_quick].json)")
    args = parser.parse_args(argv)

    from edgemnist import pipeline
    from edgemnist.runtime import machine
    from edgemnist.artifacts import atomic_write_json

    json_path = args.json or f"benchmarks/results/pipeline{'_quick' if args.quick else ''}.json"
    tmp = tempfile.TemporaryDirectory(prefix="bench-pipeline-") if args.out is None else None
    out = Path(args.out) if args.out else Path(tmp.name) / "run"
    if out.exists():
        print(f"{out}: exists; give a new folder so that no stage is skipped", file=sys.stderr)
        return 2
    command = [sys.executable, "-m", "edgemnist", "pipeline", "--out", str(out)] + (["--quick"] if args.quick else [])
    env = {k: v for k, v in os.environ.items() if k != "EDGEMNIST_VERBOSE"}
    started = time.monotonic()
    run = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.monotonic() - started
    if run.returncode != 0:
        print(run.stderr[-3000:], file=sys.stderr)
        return 1
    state = json.loads((out / pipeline.STATE_FILE).read_text())
    stages = {name: state["stages"][name]["seconds"] for name in pipeline.STAGES if name in state["stages"]}
    prefixes = tuple(f"[{name}] " for name in pipeline.STAGES)
    foreign = [line for line in run.stderr.splitlines() if not line.startswith(prefixes)]
    exported = state["stages"]["export"]["result"]
    result = {
        "command": " ".join(["edgemnist", "pipeline", "--out", "OUT"] + (["--quick"] if args.quick else [])),
        "wall_seconds": round(wall, 1), "stage_seconds": stages,
        "export_variant_seconds": {n: v["seconds"] for n, v in exported["variants"].items()},
        "foreign_stderr_lines": len(foreign), "foreign_stderr_sample": foreign[:5],
        "train_test_accuracy": state["result"]["train"]["test_accuracy"],
        "machine": machine.machine_info(),
    }
    if args.quick:
        result["targets"] = {f"quick_at_most_{QUICK_TARGET_S}s": wall <= QUICK_TARGET_S,
                             "no_foreign_stderr_lines": not foreign}
    print(f"{'stage':<10}{'seconds':>9}")
    for name, seconds in stages.items():
        print(f"{name:<10}{seconds:>9.1f}")
    print(f"{'total':<10}{wall:>9.1f}  (wall, process start to exit)")
    print(f"stderr lines not from edgemnist: {len(foreign)}")
    for name, ok in result.get("targets", {}).items():
        print(f"target {name}: {'met' if ok else 'NOT met'}")
    atomic_write_json(json_path, result)
    print(f"wrote {json_path}", file=sys.stderr)
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
