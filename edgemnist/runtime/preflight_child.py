"""The preflight's child process: load a .tflite as `Runner` does and run every path it has once.

Usage: python -m edgemnist.runtime.preflight_child MODEL.tflite THREADS BACKEND
       python -m edgemnist.runtime.preflight_child --ping      (only: can a child Python start?)

Prints `EDGEMNIST_PREFLIGHT_OK`, or `EDGEMNIST_PREFLIGHT_ERROR <exception type> <message>`
on one line; a model that crashes the interpreter kills this process instead, which is the
point: `edgemnist.runtime.preflight` runs it so that the crash happens here, not in the
caller.
"""
from __future__ import annotations

import sys
from typing import Optional

import numpy as np

from edgemnist.runtime.interpreter import Runner
from edgemnist.runtime.preflight import ERROR_MARKER, OK_MARKER


def exercise(path: str, num_threads: int, backend: str) -> None:
    """Loads the model as a caller's Runner would and runs a single image, another, and a batch."""
    runner = Runner(path, num_threads=num_threads, backend=backend, trusted=True)
    shape = runner.image_shape
    runner.predict_one(np.zeros(shape, np.float32))
    runner.predict_one(np.ones(shape, np.float32))
    runner.predict(np.random.default_rng(0).random((3,) + shape, dtype=np.float32), batch_size=2)


def main(argv: Optional[list] = None) -> int:
    """Runs the check on argv (MODEL THREADS BACKEND) and prints its one-line outcome."""
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--ping"]:
        print(OK_MARKER, flush=True)
        return 0
    if len(argv) != 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    path, threads, backend = argv
    try:
        exercise(path, int(threads), backend)
    except Exception as exc:  # noqa: BLE001 - every failure is reported to the parent, which decides
        print(ERROR_MARKER, type(exc).__name__, str(exc).replace("\n", " "), flush=True)
    else:
        print(OK_MARKER, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
