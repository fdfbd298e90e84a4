"""Latency, throughput and memory of a .tflite model, in the spirit of TFLite's benchmark_model.

Usage: edgemnist bench runs/default/tflite/model_int8.tflite [--threads 1] [--runs 1000] [--json]
       edgemnist bench --keras runs/default/model.keras --device cpu|gpu

A .tflite runs on the TensorFlow-free runtime: warm-up invokes, then timed single-image
invokes on real test digits (the input is set before each timed invoke, as
benchmark_model does), then the runtime's whole `predict_one` call, then batched
throughput. `--keras` measures the float Keras model on the desktop CPU or GPU with
TensorFlow (imported only there); without a GPU, `--device gpu` says so and skips.
"""
from __future__ import annotations

import os
import resource
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np

from edgemnist import data
from edgemnist.measure.eval import check_run_settings, runtime_settings
from edgemnist.output import Output
from edgemnist.runtime import Runner
from edgemnist.runtime.accelerator import DEFAULT_ACCELERATOR, RuntimeSettings, describe_device, explicit_accelerator
from edgemnist.runtime.machine import cpu_model, machine_info

_BENCH_IMAGES = 256  # distinct test digits cycled through the timed runs


@dataclass(frozen=True)
class BenchConfig:
    """Settings of one benchmark."""

    warmup: int = 50  # untimed invokes first
    runs: int = 1000  # timed single-image invokes
    batch_size: int = 256  # images per invoke for the throughput figure
    throughput_images: int = 2048  # images pushed through for the throughput figure
    data_dir: Optional[str] = None  # test digits used as inputs (None: shipped MNIST)
    runtime: RuntimeSettings = RuntimeSettings()  # accelerator, threads, backend, GPU precision (checked there)

    def __post_init__(self):
        check_run_settings(self, at_least_one=("runs", "batch_size", "throughput_images"), at_least_zero=("warmup",))


def latency_percentiles(samples_us) -> dict:
    """{"p50", "p90", "p99", "mean", "std", "min", "max"} of latencies in microseconds."""
    a = np.asarray(samples_us, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no latency samples")
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {
        "p50": round(float(p50), 2), "p90": round(float(p90), 2), "p99": round(float(p99), 2),
        "mean": round(float(a.mean()), 2), "std": round(float(a.std()), 2),
        "min": round(float(a.min()), 2), "max": round(float(a.max()), 2),
    }


def _current_rss_bytes() -> Optional[int]:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_bytes() -> int:
    """The process's peak resident memory so far."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB elsewhere


def _delta(after: Optional[int], before: Optional[int]) -> Optional[int]:
    return None if after is None or before is None else after - before


def timed_invokes(runner: Runner, inputs: list, count: int) -> np.ndarray:
    """Microseconds of `count` invokes, the input set (untimed) before each."""
    interpreter, index = runner.interpreter, runner.input.index
    set_tensor, invoke, clock = interpreter.set_tensor, interpreter.invoke, time.perf_counter_ns
    samples = np.empty(count, np.float64)
    n = len(inputs)
    for i in range(count):
        set_tensor(index, inputs[i % n])
        start = clock()
        invoke()
        samples[i] = clock() - start
    return samples / 1000.0


def timed_calls(runner: Runner, images: list, count: int) -> np.ndarray:
    """Microseconds of `count` whole predict_one calls (quantize, invoke, dequantize)."""
    predict_one, clock = runner.predict_one, time.perf_counter_ns
    samples = np.empty(count, np.float64)
    n = len(images)
    for i in range(count):
        image = images[i % n]
        start = clock()
        predict_one(image)
        samples[i] = clock() - start
    return samples / 1000.0


def throughput(runner: Runner, images: np.ndarray, batch_size: int, repeats: int = 3) -> dict:
    """Batched images per second (best of `repeats` passes over `images`); "batch_size" is the batch that ran
    (1 on an accelerator that takes no batch, see GpuRunner.max_batch)."""
    runner.predict(images[:batch_size], batch_size=batch_size)  # builds and warms the batch interpreter
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        runner.predict(images, batch_size=batch_size)
        best = min(best, time.perf_counter() - start)
    batch_size = min(batch_size, getattr(runner, "max_batch", batch_size))
    return {"batch_size": int(batch_size), "images": int(len(images)),
            "images_per_second": round(len(images) / best, 1)}


def benchmark(model_path, config: BenchConfig = BenchConfig()) -> dict:
    """Benchmarks a .tflite model on this machine.

    Args:
        model_path: the .tflite file.
        config: benchmark settings.

    Returns:
        {"model", "name", "bytes", "backend", "backend_version", "threads", "warmup", "runs",
         "init_ms", "latency_us" {p50, p90, p99, mean, std, min, max} (invoke only),
         "call_latency_us" (same keys, the runtime's whole predict_one call on a float image),
         "pixel_call_latency_us" (the same on uint8 pixels, the device path),
         "throughput" {"batch_size", "images", "images_per_second"},
         "memory" {"peak_rss_bytes", "init_rss_delta_bytes", "overall_rss_delta_bytes"},
         "input" {"name", "shape", "dtype", "scale", "zero_point"}, "machine" (machine_info)};
        on the GPU also "accelerator" (GpuRunner.accelerator_info), "init_ms" is its start-up
        (model load, shader compilation, first run) and a latency includes reading the scores back.

    Raises:
        FileNotFoundError, ValueError: missing or malformed model.
        AcceleratorUnavailableError: config.runtime.accelerator cannot run here.
    """
    rss_start = _current_rss_bytes()
    runner = config.runtime.open(model_path)
    rss_init = _current_rss_bytes()
    split = data.load_split("test", config.data_dir, max(config.throughput_images, _BENCH_IMAGES))
    images = data.to_model_input(split.images)
    singles = [np.ascontiguousarray(images[i]) for i in range(min(_BENCH_IMAGES, len(images)))]
    quantized = [np.ascontiguousarray(runner.quantize_input(image[np.newaxis])) for image in singles]

    timed_invokes(runner, quantized, config.warmup)
    latency = latency_percentiles(timed_invokes(runner, quantized, config.runs))
    timed_calls(runner, singles, min(config.warmup, 50))
    call_latency = latency_percentiles(timed_calls(runner, singles, config.runs))
    pixels = [np.ascontiguousarray(split.images[i][..., np.newaxis]) for i in range(len(singles))]
    timed_calls(runner, pixels, min(config.warmup, 50))
    pixel_call_latency = latency_percentiles(timed_calls(runner, pixels, config.runs))
    rss_single = _current_rss_bytes()
    batched = throughput(runner, images[: config.throughput_images], config.batch_size)
    return {
        "model": str(runner.path),
        "name": Path(runner.path).stem,
        "bytes": Path(runner.path).stat().st_size,
        "backend": runner.backend.name,
        "backend_version": runner.backend.version,
        "threads": runner.num_threads,
        "warmup": int(config.warmup),
        "runs": int(config.runs),
        "init_ms": round(runner.init_seconds * 1000.0, 3),
        "latency_us": latency,
        "call_latency_us": call_latency,
        "pixel_call_latency_us": pixel_call_latency,
        "throughput": batched,
        "memory": {
            "peak_rss_bytes": peak_rss_bytes(),
            "init_rss_delta_bytes": _delta(rss_init, rss_start),
            "overall_rss_delta_bytes": _delta(max(filter(None, (rss_single, _current_rss_bytes())), default=None),
                                              rss_start),
        },
        "input": runner.input.to_json(),
        "machine": machine_info(),
        **({"accelerator": runner.accelerator_info()}
           if getattr(runner, "accelerator", DEFAULT_ACCELERATOR) == "gpu" else {}),
    }


def format_benchmark(result: dict) -> str:
    """A human summary of `benchmark` or `benchmark_keras`."""
    lat = result.get("latency_us")
    lines = [f"{result['model']} on {result['machine']['cpu']} ({result['machine']['cores']} cores): "
             f"{result['backend']} {result['backend_version']}, {result['threads']} thread(s)"]
    if result.get("accelerator"):
        lines.append(f"on LiteRT's GPU accelerator: {describe_device(result['accelerator'])}")
    if result.get("init_ms") is not None:
        lines.append(f"{'start-up (load, shader compilation, first run)' if result.get('accelerator') else 'init'} "
                     f"{result['init_ms']:.1f} ms")
    if lat:
        lines.append(
            f"single image, {result['runs']} runs after {result['warmup']} warm-up: "
            f"p50 {lat['p50']:.1f} us  p90 {lat['p90']:.1f} us  p99 {lat['p99']:.1f} us  "
            f"mean {lat['mean']:.1f} +- {lat['std']:.1f} us"
        )
    call = result.get("call_latency_us")
    if call:
        lines.append(f"whole runtime call (quantize + invoke + dequantize): p50 {call['p50']:.1f} us  "
                     f"mean {call['mean']:.1f} us")
    pixel_call = result.get("pixel_call_latency_us")
    if pixel_call:
        lines.append(f"whole runtime call on uint8 pixels: p50 {pixel_call['p50']:.1f} us  "
                     f"mean {pixel_call['mean']:.1f} us")
    tp = result.get("throughput")
    if tp:
        lines.append(f"batched: {tp['images_per_second']:,.0f} images/s (batch {tp['batch_size']}, {tp['images']} images)")
    mem = result.get("memory")
    if mem:
        mib = 1 << 20
        init = mem.get("init_rss_delta_bytes")
        lines.append(f"memory: peak RSS {mem['peak_rss_bytes'] / mib:.1f} MiB"
                     + (f", model init +{init / mib:.1f} MiB" if init is not None else ""))
    return "\n".join(lines)


# --------------------------------------------------------------------------- Keras (desktop)


def benchmark_keras(model_path, device: str = "cpu", config: BenchConfig = BenchConfig()) -> Optional[dict]:
    """Benchmarks the float Keras model with TensorFlow on the desktop CPU or GPU.

    Args:
        model_path: a .keras or .h5 file.
        device: "cpu" or "gpu".
        config: runs, warmup, batch_size and throughput_images apply; runtime.threads sets
            TensorFlow's intra-op threads.

    Returns:
        The same keys as `benchmark` (backend "tensorflow", no "call_latency_us") plus
        "device"; None when `device` is "gpu" and TensorFlow sees no GPU.

    Raises:
        ValueError: unknown device or not a Keras model. FileNotFoundError: no such file.
        MissingExtraError: TensorFlow is not installed.
    """
    if device not in ("cpu", "gpu"):
        raise ValueError(f"device must be cpu or gpu, got {device!r}")
    from edgemnist._tensorflow import import_tensorflow
    from edgemnist.training.model import load_keras_model

    if not Path(model_path).is_file():
        raise FileNotFoundError(f"{model_path}: no such file")
    tf = import_tensorflow()
    gpus = tf.config.list_physical_devices("GPU")
    if device == "gpu" and not gpus:
        return None
    if device == "cpu":
        try:
            tf.config.threading.set_intra_op_parallelism_threads(int(config.runtime.threads))
        except RuntimeError:  # already initialised in this process
            pass
    rss_start = _current_rss_bytes()
    start = time.perf_counter()
    with tf.device("/GPU:0" if device == "gpu" else "/CPU:0"):
        model = load_keras_model(model_path)
        call = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        split = data.load_split("test", config.data_dir, max(config.throughput_images, _BENCH_IMAGES))
        images = data.to_model_input(split.images)
        singles = [tf.constant(images[i:i + 1]) for i in range(min(_BENCH_IMAGES, len(images)))]
        call(singles[0]).numpy()
        init_s = time.perf_counter() - start
        rss_init = _current_rss_bytes()
        samples = np.empty(config.runs, np.float64)
        for i in range(config.warmup + config.runs):
            begin = time.perf_counter_ns()
            call(singles[i % len(singles)]).numpy()  # .numpy() waits for the device
            if i >= config.warmup:
                samples[i - config.warmup] = (time.perf_counter_ns() - begin) / 1000.0
        batch = tf.constant(images[: config.batch_size])
        call(batch).numpy()
        best = float("inf")
        pushed = images[: config.throughput_images]
        for _ in range(3):
            begin = time.perf_counter()
            for s in range(0, len(pushed), config.batch_size):
                call(tf.constant(pushed[s:s + config.batch_size])).numpy()
            best = min(best, time.perf_counter() - begin)
    return {
        "model": str(model_path),
        "name": Path(model_path).stem,
        "bytes": Path(model_path).stat().st_size,
        "backend": "tensorflow",
        "backend_version": tf.__version__,
        "device": device,
        "device_name": gpus[0].name if device == "gpu" else cpu_model(),
        "threads": int(config.runtime.threads) if device == "cpu" else None,
        "warmup": int(config.warmup),
        "runs": int(config.runs),
        "init_ms": round(init_s * 1000.0, 3),
        "latency_us": latency_percentiles(samples),
        "throughput": {"batch_size": int(config.batch_size), "images": int(len(pushed)),
                       "images_per_second": round(len(pushed) / best, 1)},
        "memory": {"peak_rss_bytes": peak_rss_bytes(), "init_rss_delta_bytes": _delta(rss_init, rss_start),
                   "overall_rss_delta_bytes": _delta(_current_rss_bytes(), rss_start)},
        "machine": machine_info(),
    }


# --------------------------------------------------------------------------- CLI


def add_commands(subparsers) -> None:
    """Registers `edgemnist bench`."""
    from edgemnist.measure.eval import add_runtime_arguments

    p = subparsers.add_parser(
        "bench",
        help="latency, throughput and memory of a .tflite (or of the Keras model with --keras)",
        description="Benchmark a .tflite on this machine with the TensorFlow-free runtime: warm-up, then "
        "timed single-image invokes (p50/p90/p99/mean/std in microseconds), initialisation time, peak "
        "memory, batched throughput; with the backend, its version, the CPU and the thread count. "
        "With --keras, the float Keras model on the desktop CPU or GPU instead (needs TensorFlow).",
    )
    p.add_argument("model", nargs="?", help="a .tflite file")
    p.add_argument("--warmup", type=int, default=BenchConfig.warmup, help="untimed invokes first (default %(default)s)")
    p.add_argument("--runs", type=int, default=BenchConfig.runs,
                   help="timed single-image invokes (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=BenchConfig.batch_size,
                   help="images per invoke for the throughput figure (default %(default)s)")
    p.add_argument("--throughput-images", type=int, default=BenchConfig.throughput_images,
                   help="test images pushed through for the throughput figure (default %(default)s)")
    p.add_argument("--data-dir", help="test digits used as inputs (default: $EDGEMNIST_DATA or the shipped MNIST)")
    add_runtime_arguments(p, thread_sweep=True)
    p.add_argument("--keras", metavar="MODEL", help="benchmark this float Keras model (.keras/.h5) with TensorFlow")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                   help="with --keras: where it runs (default %(default)s)")
    try:
        from edgemnist.measure import remote
    except ImportError:
        remote = None
    if remote is not None:
        remote.add_remote_arguments(p)
    p.set_defaults(func=_run_bench)


def thread_counts(text) -> list:
    """'1,2,4' -> [1, 2, 4]; raises ValueError naming the bad value."""
    try:
        counts = [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--threads expects a number or a comma-separated list such as 1,2,4, got {text!r}") from None
    if not counts or any(c < 1 for c in counts):
        raise ValueError(f"--threads must be >= 1, got {text!r}")
    return counts


def format_sweep(results: list) -> str:
    """One row per thread count: latency percentiles and batched throughput."""
    lines = [f"{results[0].get('name', results[0].get('model'))}: thread sweep",
             f"{'threads':>7}{'p50 us':>10}{'p90 us':>10}{'p99 us':>10}{'images/s':>12}"]
    for r in results:
        lat = r["latency_us"]
        lines.append(f"{r['threads']:>7}{lat['p50']:>10.1f}{lat['p90']:>10.1f}{lat['p99']:>10.1f}"
                     f"{r['throughput']['images_per_second']:>12,.0f}")
    return "\n".join(lines)


def _run_bench(args):
    import copy

    counts = thread_counts(args.threads)
    settings = runtime_settings(args, threads=counts[0])
    results = []
    for threads in counts:
        one = copy.copy(args)
        one.threads = str(threads)  # as the flag gives it: `--remote` forwards it to the device
        results.append(_bench_once(one, replace(settings, threads=threads)))
        if results[-1] is None:  # a skipped GPU benchmark
            print(f"no GPU visible to TensorFlow on this machine: skipping the GPU benchmark of {args.keras}",
                  file=sys.stderr)
            return Output({"model": str(args.keras), "device": "gpu", "skipped": "no GPU"}, "skipped: no GPU")
    if len(results) == 1:
        return Output(results[0], format_benchmark(results[0]))
    return Output(results, format_sweep(results))


def _bench_once(args, runtime: RuntimeSettings) -> Optional[dict]:
    """One benchmark of the parsed `args` with `runtime` (one thread count of the sweep)."""
    config = BenchConfig(warmup=args.warmup, runs=args.runs, batch_size=args.batch_size,
                         throughput_images=args.throughput_images, data_dir=args.data_dir, runtime=runtime)
    if getattr(args, "remote", None):
        if args.keras or not args.model:
            raise ValueError("--remote benchmarks a .tflite: give MODEL.tflite and no --keras")
        from edgemnist.measure import remote

        return remote.run_remote(args)
    if args.keras:
        if args.model:
            raise ValueError("give either MODEL.tflite or --keras MODEL, not both")
        if runtime.accelerator != "cpu":
            raise ValueError("--accelerator applies to a .tflite; the Keras model takes --device cpu|gpu")
        return benchmark_keras(args.keras, args.device, config)
    if not args.model:
        raise ValueError("give a MODEL.tflite to benchmark (or --keras MODEL.keras)")
    if args.device != "cpu":
        raise ValueError("--device applies to --keras only; a .tflite takes --accelerator cpu|gpu")
    with explicit_accelerator():
        return benchmark(args.model, config)
