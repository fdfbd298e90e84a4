"""Compile the TFLite Micro libraries the Cortex-M tests link into the shared object cache, ahead of the tests.

Usage: python3 tools/prebuild_tflm.py [--cpus cortex-m4,cortex-m0,cortex-m3] [--tflm DIR] [--jobs N]

Every firmware build of a core, kernel set and build type links the same TFLite Micro framework, CMSIS-NN
and kernel objects; `edgemnist mcu` compiles them once into $EDGEMNIST_CACHE (see edgemnist.micro.build) and
the next build only links. This fills that cache for the given cores, both build types, with the kernels of
firmware_assets/ (the default model; a preset model's own missing kernels are compiled when it is built).
CI (.ci/run) starts it in the background right after the system packages, so the compiles run while pip
installs; a test build that needs a library still being compiled waits for it (the cache's lock).

Needs only the Python standard library, the Arm toolchain and make: no virtual environment.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgemnist.micro import build  # noqa: E402  (standard library only)

DEFAULT_CPUS = "cortex-m4,cortex-m0,cortex-m3"  # the cores the tests build for, the first needed first
KERNELS = "cmsis_nn"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpus", default=DEFAULT_CPUS, help=f"comma-separated cores (default {DEFAULT_CPUS})")
    parser.add_argument("--tflm", default=None, help=f"TFLite Micro tree (default ${build.TFLM_ENV})")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel compiles (default: all cores)")
    args = parser.parse_args(argv)
    try:
        tools = build.find_tools()
        tree = build.resolve_tflm(args.tflm, KERNELS)
    except build.MissingToolError as e:
        print(f"prebuild_tflm: {e}", file=sys.stderr)
        return 2
    folder = REPO / "firmware_assets"
    with tempfile.TemporaryDirectory(prefix="prebuild_tflm-") as scratch:
        for cpu in [c.strip() for c in args.cpus.split(",") if c.strip()]:
            for build_type in build.BUILD_TYPES:
                start = time.perf_counter()
                try:
                    built = build.build(folder, tree, cpu, KERNELS, tools, jobs=args.jobs, build_type=build_type,
                                        build_dir=str(Path(scratch) / f"{cpu}-{build_type}"), goal="tflm")
                except build.FirmwareRunError as e:
                    print(f"prebuild_tflm: {e}", file=sys.stderr)
                    return 1
                print(f"{cpu} {build_type}: {built['object_cache']} ({time.perf_counter() - start:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
