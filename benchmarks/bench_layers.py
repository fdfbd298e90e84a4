"""Where a model's single-image latency goes, layer by layer, in int8 and float32 on LiteRT.

Usage: python benchmarks/bench_layers.py runs/bench-train/model.keras [--json benchmarks/results/layers.json]
       python benchmarks/bench_layers.py --stems            (the stem candidates alone)

The model is cut after each block (and after the stem, the pools and the classifier); every
prefix is converted like the real export (static batch 1; full-integer int8 calibrated on
real training images, or float32) and its p50 invoke latency measured with LiteRT, 1 thread.
The difference between consecutive prefixes is what that part costs. This is how the
default model's shape was chosen: on x86 LiteRT (XNNPACK) a 1-channel int8 convolution is
far slower than its float twin, so the stem's kernel matters more than its MACs.

`--stems` times one-layer models: the stem candidates (3x3 / 2x2 / 4x4 stride-2
convolutions of the 1-channel image, and space-to-depth followed by a 1x1 or 2x2
convolution) in int8 and float32.

Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def p50_us(tflite: bytes, image: np.ndarray, runs: int, warmup: int, work: Path) -> float:
    """Median invoke time in microseconds of a .tflite on one image (input set untimed)."""
    from edgemnist.runtime import Runner

    path = work / "prefix.tflite"
    path.write_bytes(tflite)
    runner = Runner(path, trusted=True)
    interpreter, index = runner.interpreter, runner.input.index
    model_input = np.ascontiguousarray(runner.quantize_input(image[np.newaxis]))
    samples = np.empty(runs)
    for i in range(warmup + runs):
        interpreter.set_tensor(index, model_input)
        start = time.perf_counter_ns()
        interpreter.invoke()
        if i >= warmup:
            samples[i - warmup] = time.perf_counter_ns() - start
    return float(np.median(samples)) / 1000.0


def cut_points(model) -> list:
    """Layer names after which the model is cut: the stem, each block, pools, the classifier."""
    names = [layer.name for layer in model.layers]
    points = [n for n in names if n in ("stem_relu", "pool") or n.endswith(("_relu_pw", "_pool"))]
    return points + [names[-1]]


def stem_models():
    """One-layer models: stems of the 1-channel image down to 14x14x24, with ReLU6 fused.

    Stride-2 convolutions (3x3 / 2x2 / 4x4), and the space-to-depth stems of ModelConfig
    (2x2 pixel blocks into 4 channels, then a 1x1 or 2x2 convolution at stride 1).
    """
    from edgemnist._tensorflow import keras
    from edgemnist.training.model import space_to_depth

    k = keras()
    layers = k.layers
    out = {}
    for kernel in (3, 2, 4):
        inputs = k.Input((28, 28, 1), name="image")
        x = layers.Conv2D(24, kernel, strides=2, padding="same", name="stem")(inputs)
        out[f"stem {kernel}x{kernel} stride 2"] = k.Model(inputs, layers.ReLU(6.0)(x))
    for kernel in (1, 2):
        inputs = k.Input((28, 28, 1), name="image")
        x = layers.Conv2D(24, kernel, padding="same", name="stem")(space_to_depth(inputs))
        out[f"space-to-depth + {kernel}x{kernel}"] = k.Model(inputs, layers.ReLU(6.0)(x))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help="a trained .keras model")
    parser.add_argument("--stems", action="store_true", help="time the stem candidates alone")
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    if not args.model and not args.stems:
        parser.error("give a .keras model, or --stems")

    from edgemnist import data
    from edgemnist.export.tflite_converter import tflite_convert
    from edgemnist.runtime.machine import machine_info
    from edgemnist.runtime import load_backend, tflite_info
    from edgemnist.training.model import load_keras_model

    representative = data.to_model_input(data.load_split("train", limit=200).images)
    image = data.to_model_input(data.load_split("test", limit=1).images)[0]
    if args.stems:
        models = stem_models()
    else:
        from edgemnist._tensorflow import keras

        full = load_keras_model(args.model)
        models = {name: keras().Model(full.input, full.get_layer(name).output) for name in cut_points(full)}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_layers_") as tmp:
        for name, model in models.items():
            row = {"up_to": name}
            for recipe, key in (("full_integer", "int8_us"), ("float32", "float32_us")):
                tflite = tflite_convert(model, recipe, 1, representative)
                row[key] = round(p50_us(tflite, image, args.runs, args.warmup, Path(tmp)), 2)
                if key == "int8_us":
                    row["ops"] = list(tflite_info.read_model(tflite, name="prefix model").ops)
            rows.append(row)
            print(f"{name:<26} int8 {row['int8_us']:>7.2f} us  float32 {row['float32_us']:>7.2f} us  "
                  f"{len(row['ops'])} ops", flush=True)
    previous = {"int8_us": 0.0, "float32_us": 0.0}
    if not args.stems:  # what each part adds: the difference between consecutive prefixes
        print(f"\n{'up to':<26}{'int8 us':>9}{'+int8':>8}{'float us':>10}{'+float':>8}")
        for row in rows:
            row["int8_added_us"] = round(row["int8_us"] - previous["int8_us"], 2)
            row["float32_added_us"] = round(row["float32_us"] - previous["float32_us"], 2)
            previous = row
            print(f"{row['up_to']:<26}{row['int8_us']:>9.2f}{row['int8_added_us']:>8.2f}"
                  f"{row['float32_us']:>10.2f}{row['float32_added_us']:>8.2f}")
    result = {"model": args.model, "mode": "stems" if args.stems else "prefixes", "rows": rows,
              "backend": load_backend().describe(), "threads": 1, "runs": args.runs, "machine": machine_info()}
    if args.json:
        from edgemnist.artifacts import atomic_write_json

        atomic_write_json(args.json, result)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
