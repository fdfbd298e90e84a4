"""Runtime targets: full-test-set eval time, runtime overhead vs a bare invoke loop, latency vs the tutorial CNN.

Usage: python benchmarks/bench_runtime.py runs/default/tflite --tutorial runs/tutorial/model.keras --json runtime.json
       python benchmarks/bench_runtime.py --keras runs/default/model.keras --tutorial-epochs 1 --tutorial-limit 2000 \
           --eval-limit 1000 --runs 300   (a smoke run)

In one process and one run, on the TensorFlow-free runtime:
1. every variant evaluated on the whole test set (batched); target < 2 s per variant;
2. the runtime's single-image call (`Runner.predict_one`: check, quantize, invoke,
   dequantize) against a bare `set_tensor / invoke / get_tensor` loop on the same
   interpreter, in alternating blocks; target: at most 10 % slower. Timed twice: on
   float32 images in [0, 1] (`ratio`) and on uint8 pixels (`pixels_ratio`, the device
   path: no range check, one table look-up to quantize);
3. the p50 latency of every variant of the default model beside the tutorial CNN
   (Conv32-Pool-Conv64-Pool-Conv64-Dense64-Dense10) exported the same way (same converter,
   same variants, static batch 1), timed runs interleaved across all models; target: the
   default model's int8 at least 1.5x faster than the tutorial CNN's int8, at higher accuracy.

The tutorial CNN comes from --tutorial (a trained .keras) or is trained here
(--tutorial-epochs on --tutorial-limit training images). Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

EVAL_TARGET_S = 2.0
OVERHEAD_TARGET = 1.10
SPEEDUP_TARGET = 1.5


def _find_tflite(paths: list) -> list:
    found = []
    for p in map(Path, paths):
        found += sorted(p.glob("*.tflite")) if p.is_dir() else [p]
    return found


def _train_tutorial(epochs: int, limit, out: Path) -> Path:
    from edgemnist import data
    from edgemnist._tensorflow import keras
    from edgemnist.training.model import build_model

    k = keras()
    k.utils.set_random_seed(0)
    split = data.load_split("train", limit=limit)
    model = build_model("tutorial_cnn")
    model.compile(k.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(data.to_model_input(split.images), split.labels, batch_size=128, epochs=epochs, verbose=0)
    print(f"trained tutorial_cnn: {epochs} epoch(s) on {len(split)} images in {time.perf_counter() - start:.0f} s",
          file=sys.stderr)
    path = out / "tutorial_cnn.keras"
    model.save(path)
    return path


def _export(keras_path: Path, variants: list, out: Path, stem: str) -> list:
    from edgemnist.export.convert import ExportConfig, export_variant

    paths = []
    for variant in variants:
        path = out / f"{stem}_{variant}.tflite"
        export_variant(keras_path, variant, path, ExportConfig(stem=stem))
        paths.append(path)
    return paths


def overhead(runner, pixels: np.ndarray, blocks: int, block_size: int) -> dict:
    """Per-call microseconds of a bare invoke loop and of predict_one, in alternating blocks.

    predict_one is timed twice: on float32 images in [0, 1] (range check and quantization
    in numpy) and on the uint8 pixels themselves (one table look-up). Every call is timed on
    its own and medians are compared, so a call preempted by another process on a shared
    machine does not count against either side.
    """
    from edgemnist.measure.bench import timed_calls
    from edgemnist.data import to_model_input

    interpreter = runner.interpreter
    set_tensor, invoke, get_tensor = interpreter.set_tensor, interpreter.invoke, interpreter.get_tensor
    in_index, out_index = runner.input.index, runner.output.index
    floats = [np.ascontiguousarray(image) for image in to_model_input(pixels)]
    uint8 = [np.ascontiguousarray(image[..., np.newaxis]) for image in pixels]
    quantized = [np.ascontiguousarray(runner.quantize_input(image[np.newaxis])) for image in floats]
    n = len(floats)
    clock = time.perf_counter_ns

    def bare_block() -> np.ndarray:
        samples = np.empty(block_size)
        for i in range(block_size):
            x = quantized[i % n]
            start = clock()
            set_tensor(in_index, x)
            invoke()
            get_tensor(out_index)
            samples[i] = clock() - start
        return samples / 1000.0

    sides = {"bare": bare_block,
             "floats": lambda: timed_calls(runner, floats, block_size),
             "pixels": lambda: timed_calls(runner, uint8, block_size)}
    for block in sides.values():
        block()  # warm-up
    samples = {name: [] for name in sides}
    order = list(sides)
    for b in range(blocks):
        for name in order[b % len(order):] + order[:b % len(order)]:  # rotate who goes first
            samples[name].append(sides[name]())
    medians = {name: float(np.median(np.concatenate(blocks_))) for name, blocks_ in samples.items()}

    def ratio(name):
        # adjacent blocks see the same machine load: the median of their ratios is the steadier figure
        return round(float(np.median([np.median(o) / np.median(b) for o, b in zip(samples[name], samples["bare"])])), 4)

    return {"bare_us": round(medians["bare"], 2),
            "runtime_us": round(medians["floats"], 2), "overhead_us": round(medians["floats"] - medians["bare"], 2),
            "ratio": ratio("floats"),
            "pixels_us": round(medians["pixels"], 2), "pixels_overhead_us": round(medians["pixels"] - medians["bare"], 2),
            "pixels_ratio": ratio("pixels"),
            "blocks": blocks, "block_size": block_size}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="*", help=".tflite files or folders of the default model's variants")
    p.add_argument("--keras", help="the trained default model (.keras): export --variants from it here")
    p.add_argument("--variants", default="float32,int8", help="variants exported from --keras and for the tutorial CNN")
    p.add_argument("--tutorial", help="a trained tutorial CNN (.keras); default: train one here")
    p.add_argument("--tutorial-epochs", type=int, default=3)
    p.add_argument("--tutorial-limit", type=int, help="training images for the tutorial CNN (default: all)")
    p.add_argument("--eval-limit", type=int, help="test images evaluated (default: all 10,000)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--runs", type=int, default=2000, help="timed invokes per model for the latency table")
    p.add_argument("--blocks", type=int, default=40, help="alternating blocks for the overhead figure")
    p.add_argument("--block-size", type=int, default=200, help="calls per block")
    p.add_argument("--work-dir", help="where exports go (default: a temporary folder)")
    p.add_argument("--json", default="benchmarks/results/runtime.json", help="where to write the results")
    args = p.parse_args(argv)

    from edgemnist import data
    from edgemnist.runtime.machine import machine_info
    from edgemnist.measure.eval import EvalConfig, evaluate
    from edgemnist.measure.compare import CompareConfig, interleaved_latency, read_manifest, variant_name
    from edgemnist.runtime import Runner
    from edgemnist.runtime.accelerator import RuntimeSettings

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench_runtime_"))
    work.mkdir(parents=True, exist_ok=True)
    variants = [v for v in args.variants.split(",") if v]
    default_paths = _find_tflite(args.models)
    if args.keras:
        default_paths += _export(Path(args.keras), variants, work, "ds_cnn")
    if not default_paths:
        p.error("give the default model's .tflite files (or folders) or --keras MODEL.keras")
    tutorial_keras = Path(args.tutorial) if args.tutorial else _train_tutorial(
        args.tutorial_epochs, args.tutorial_limit, work)
    tutorial_paths = _export(tutorial_keras, variants, work, "tutorial_cnn")

    models = [("default", path) for path in default_paths] + [("tutorial_cnn", path) for path in tutorial_paths]
    settings = RuntimeSettings(threads=args.threads)
    runners = [Runner(path, num_threads=settings.threads) for _, path in models]
    split = data.load_split("test", limit=args.eval_limit)
    rows = []
    for (model, path), runner in zip(models, runners):
        start = time.perf_counter()
        result = evaluate(path, EvalConfig(batch_size=args.batch_size, runtime=settings), split=split)
        wall = time.perf_counter() - start
        rows.append({"model": model, "variant": variant_name(path, read_manifest(path) or {}), "path": str(path),
                     "bytes": path.stat().st_size, "accuracy": result["accuracy"], "n": result["n"],
                     "eval_seconds": result["seconds"], "eval_wall_seconds": round(wall, 3)})

    images = data.to_model_input(split.images[:256])
    quantized_inputs = [[np.ascontiguousarray(r.quantize_input(img[np.newaxis])) for img in images] for r in runners]
    latencies = interleaved_latency(runners, quantized_inputs,
                                    CompareConfig(warmup=args.warmup, runs=args.runs, runtime=settings))
    for row, latency in zip(rows, latencies):
        row["latency_us"] = latency
    overheads = []
    for (model, path), runner, row in zip(models, runners, rows):
        if model == "default":
            overheads.append({"variant": row["variant"],
                              **overhead(runner, split.images[:256], args.blocks, args.block_size)})

    def find(model, variant):
        return next((r for r in rows if r["model"] == model and r["variant"] == variant), None)

    ours, theirs = find("default", "int8"), find("tutorial_cnn", "int8")
    targets = {
        "eval_under_2s": all(r["eval_wall_seconds"] < EVAL_TARGET_S for r in rows) if not args.eval_limit else None,
        "overhead_within_10pct": all(o["ratio"] <= OVERHEAD_TARGET for o in overheads),
        "overhead_within_10pct_pixels": all(o["pixels_ratio"] <= OVERHEAD_TARGET for o in overheads),
    }
    if ours and theirs:
        speedup = theirs["latency_us"]["p50"] / ours["latency_us"]["p50"]
        targets.update(int8_speedup_vs_tutorial=round(speedup, 3),
                       int8_at_least_1_5x_faster=speedup >= SPEEDUP_TARGET,
                       int8_more_accurate=ours["accuracy"] > theirs["accuracy"])

    print(f"{'model':<13}{'variant':<18}{'bytes':>9}{'accuracy':>10}{'eval s':>8}{'p50 us':>9}{'p99 us':>9}")
    for r in rows:
        print(f"{r['model']:<13}{r['variant']:<18}{r['bytes']:>9,}{r['accuracy']:>10.2%}{r['eval_wall_seconds']:>8.2f}"
              f"{r['latency_us']['p50']:>9.1f}{r['latency_us']['p99']:>9.1f}")
    print(f"\n{'overhead':<18}{'bare us':>9}{'floats us':>10}{'ratio':>8}{'pixels us':>10}{'ratio':>8}")
    for o in overheads:
        print(f"{o['variant']:<18}{o['bare_us']:>9.2f}{o['runtime_us']:>10.2f}{o['ratio']:>8.3f}"
              f"{o['pixels_us']:>10.2f}{o['pixels_ratio']:>8.3f}")
    print("\ntargets: " + ", ".join(f"{k}={v}" for k, v in targets.items()))

    result = {
        "machine": machine_info(),
        "backend": runners[0].backend.describe(),
        "threads": args.threads,
        "settings": {k: v for k, v in vars(args).items() if k not in ("json",)},
        "variants": rows,
        "overhead": overheads,
        "targets": targets,
    }
    if args.json:
        from edgemnist.artifacts import atomic_write_json

        atomic_write_json(args.json, result)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
