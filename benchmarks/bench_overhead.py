"""Where the single-image call's time goes, beside invoke alone, on one .tflite.

Usage: python benchmarks/bench_overhead.py runs/bench-export/tflite/model_int8.tflite [--json benchmarks/results/overhead.json]

In one process, best of `--rounds` rounds of `--calls` calls each (microseconds per call):
  invoke          interpreter.invoke() alone, the input left as it is
  bare            set_tensor / invoke / get_tensor with an already-quantized input
                  (the loop bench_runtime.py compares the runtime with)
  predict_floats  Runner.predict_one on a float32 image in [0, 1]
  predict_pixels  Runner.predict_one on uint8 pixels
  quantize        the four numpy calls that range-check and quantize a float image
                  (multiply, max-reduce, add, cast into an int8 buffer), without invoke
  quantize_invoke the same four calls, then invoke
For an int8 model, quantize_invoke - quantize - invoke is what the invoke loses when it
follows the numpy calls. Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def per_call_us(fn, calls: int, rounds: int, n: int) -> float:
    """Best-of-rounds mean microseconds of fn(i % n)."""
    best = float("inf")
    clock = time.perf_counter_ns
    for _ in range(rounds):
        start = clock()
        for i in range(calls):
            fn(i % n)
        best = min(best, (clock() - start) / calls / 1000.0)
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a .tflite file (an int8 one shows the quantization cost)")
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    from edgemnist import data
    from edgemnist.runtime.machine import machine_info
    from edgemnist.runtime import Runner, load_backend

    runner = Runner(args.model, num_threads=1)
    interpreter, spec = runner.interpreter, runner.input
    in_index, out_index = spec.index, runner.output.index
    pixels = data.load_split("test", limit=50).images
    floats = [np.ascontiguousarray(x) for x in data.to_model_input(pixels)]
    uint8 = [np.ascontiguousarray(p[..., np.newaxis]) for p in pixels]
    quantized = [np.ascontiguousarray(runner.quantize_input(x[np.newaxis])) for x in floats]
    invoke, set_tensor, get_tensor = interpreter.invoke, interpreter.set_tensor, interpreter.get_tensor
    n = len(floats)

    def bare(i):
        set_tensor(in_index, quantized[i])
        invoke()
        get_tensor(out_index)

    timings = {
        "invoke": lambda i: invoke(),
        "bare": bare,
        "predict_floats": lambda i: runner.predict_one(floats[i]),
        "predict_pixels": lambda i: runner.predict_one(uint8[i]),
    }
    if spec.quantized:
        # The arithmetic of the runtime's float path, on scratch buffers of the image's shape.
        scale_inv, offset = runner._single.scale_inv, runner._single.offset  # the runtime's own constants
        limit = scale_inv.view(np.uint32)
        buffer = np.empty(floats[0].shape, np.float32)
        unsigned, bits = buffer.view(np.uint32).reshape(-1), buffer.view(np.int32)
        target = np.empty(floats[0].shape, np.dtype(spec.dtype))
        multiply, add, reduce_max, copyto = np.multiply, np.add, np.maximum.reduce, np.copyto

        def quantize(i):
            multiply(floats[i], scale_inv, buffer)
            if reduce_max(unsigned, None) > limit:
                raise ValueError("out of range")
            add(buffer, offset, buffer)
            copyto(target, bits, "unsafe")

        def quantize_invoke(i):
            quantize(i)
            invoke()

        timings.update(quantize=quantize, quantize_invoke=quantize_invoke)
    rows = {name: round(per_call_us(fn, args.calls, args.rounds, n), 2) for name, fn in timings.items()}
    for name, us in rows.items():
        print(f"{name:<16}{us:>9.2f} us", flush=True)
    if "quantize" in rows:
        lost = rows["quantize_invoke"] - rows["quantize"] - rows["invoke"]
        print(f"invoke after the numpy calls is slower by {lost:.2f} us")
    result = {"model": args.model, "us_per_call": rows, "calls": args.calls, "rounds": args.rounds,
              "input": spec.to_json(),
              "backend": load_backend().describe(), "threads": 1, "machine": machine_info()}
    if args.json:
        from edgemnist.artifacts import atomic_write_json

        atomic_write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
