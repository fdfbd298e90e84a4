"""Accuracy of a .tflite model on the test split: overall, per class, confusion matrix.

Usage: edgemnist eval runs/default/tflite/model_int8.tflite [--test-limit 1000] [--json]

Runs on the TensorFlow-free runtime (numpy + LiteRT), batched, so it works on a Raspberry
Pi with only `pip install edgemnist`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from edgemnist import data
from edgemnist.data.folders import add_prepare_arguments
from edgemnist.output import Output
from edgemnist.runtime import BACKENDS, Runner
from edgemnist.runtime.accelerator import (
    ACCELERATORS,
    GPU_PRECISIONS,
    RuntimeSettings,
    describe_device,
    explicit_accelerator,
)


@dataclass(frozen=True)
class EvalConfig:
    """Settings of one evaluation."""

    limit: Optional[int] = None  # the first N test images; None: all of them
    data_dir: Optional[str] = None  # None: $EDGEMNIST_DATA or the shipped MNIST
    prepare: Optional[bool] = None  # class folders: None prepares folders of real images (not 28x28), True all, False none
    batch_size: int = 256  # images per invoke
    runtime: RuntimeSettings = RuntimeSettings()  # accelerator, threads, backend, GPU precision (checked there)

    def __post_init__(self):
        check_run_settings(self, at_least_one=("batch_size",))


def check_run_settings(config, at_least_one: tuple = (), at_least_zero: tuple = ()) -> None:
    """Validates the counts eval, bench and compare share, in the order given (their `runtime`, a
    RuntimeSettings, checked itself when it was made).

    Args:
        config: a settings dataclass; its `limit` (when it has one and it is set) must be >= 1.
        at_least_one: names of fields that must be >= 1.
        at_least_zero: names of fields that must be >= 0.

    Raises:
        ValueError: naming the first bad field and its value.
    """
    limit = getattr(config, "limit", None)
    if limit is not None and int(limit) < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    for name in at_least_one:
        if int(getattr(config, name)) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}")
    for name in at_least_zero:
        if int(getattr(config, name)) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(config, name)}")


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int = data.NUM_CLASSES) -> np.ndarray:
    """int64 (C, C) counts: row = true class, column = predicted class."""
    flat = np.asarray(labels, np.int64) * num_classes + np.asarray(predictions, np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def accuracy_report(labels: np.ndarray, predictions: np.ndarray) -> dict:
    """Accuracy, per-class accuracy and confusion matrix of predicted classes, JSON-ready.

    Returns:
        {"n", "correct", "accuracy", "per_class_accuracy" (None for a class with no
        examples), "per_class_count", "confusion_matrix" (rows true, columns predicted)}.
    """
    cm = confusion_matrix(labels, predictions)
    counts = cm.sum(axis=1)
    n, correct = int(counts.sum()), int(np.trace(cm))
    return {
        "n": n,
        "correct": correct,
        "accuracy": correct / n if n else None,
        "per_class_accuracy": [float(cm[c, c] / counts[c]) if counts[c] else None for c in range(len(counts))],
        "per_class_count": [int(c) for c in counts],
        "confusion_matrix": cm.tolist(),
    }


def check_digit_classifier(runner: Runner) -> None:
    """Raises ValueError naming the file unless the model gives one score per digit class."""
    classes = int(np.prod(runner.output.shape[1:]))
    if classes != data.NUM_CLASSES:
        raise ValueError(f"{runner.path}: the model gives {classes} scores per image (output shape "
                         f"{tuple(runner.output.shape)}); expected {data.NUM_CLASSES}, one per digit")


def predict_classes(runner: Runner, split: data.Split, batch_size: int = 256) -> tuple[np.ndarray, float]:
    """Predicted class of every image in `split`, and the seconds inference took."""
    images = data.to_model_input(split.images)
    start = time.perf_counter()
    scores = runner.predict(images, batch_size=batch_size)
    return scores.argmax(axis=1).astype(np.uint8), time.perf_counter() - start


def evaluate(model_path, config: EvalConfig = EvalConfig(), split: Optional[data.Split] = None,
             runner: Optional[Runner] = None) -> dict:
    """Evaluates a .tflite model on the test split.

    Args:
        model_path: the .tflite file.
        config: evaluation settings.
        split: evaluate on these images instead of loading the test split (config.limit
            still applies).
        runner: an already loaded Runner of `model_path` to reuse.

    Returns:
        accuracy_report's keys plus "model" (path), "backend", "backend_version",
        "threads", "batch_size", "seconds" (inference only), "images_per_second",
        "dataset" ({"source", "split", "n", "prepared", "no_digit": images left out, no digit found in
        them}); and "predictions" (uint8 array, not JSON:
        pop it before printing). On the GPU also "accelerator": GpuRunner.accelerator_info
        plus "vs_cpu" {"agreement", "max_score_diff"} (the same file on the CPU interpreter).

    Raises:
        FileNotFoundError, ValueError, data.DataError: missing or malformed model or data.
        AcceleratorUnavailableError: config.runtime.accelerator cannot run here.
    """
    runner = runner or config.runtime.open(model_path)
    check_digit_classifier(runner)
    if split is None:
        split = data.load_split("test", config.data_dir, config.limit, prepare=config.prepare)
    else:
        split = split.head(config.limit)
    on_gpu = getattr(runner, "accelerator", "cpu") == "gpu"
    if on_gpu:
        predictions, seconds, vs_cpu = _predict_against_cpu(runner, split, config)
    else:
        predictions, seconds = predict_classes(runner, split, config.batch_size)
    report = accuracy_report(split.labels, predictions)
    report.update(
        model=str(runner.path),
        backend=runner.backend.name,
        backend_version=runner.backend.version,
        threads=runner.num_threads,
        batch_size=int(config.batch_size),
        seconds=round(seconds, 4),
        images_per_second=round(len(split) / seconds, 1) if seconds > 0 else None,
        dataset={"source": split.source, "split": "test", "n": len(split), "prepared": split.prepared,
                 "no_digit": len(split.no_digit)},
        predictions=predictions,
    )
    if on_gpu:
        report["accelerator"] = dict(runner.accelerator_info(), vs_cpu=vs_cpu)
    return report


def _predict_against_cpu(runner, split: data.Split, config: EvalConfig) -> tuple[np.ndarray, float, dict]:
    """A GpuRunner's predicted classes and seconds, and how its scores compare with the same file's on the CPU."""
    images = data.to_model_input(split.images)
    start = time.perf_counter()
    scores = runner.predict(images, batch_size=config.batch_size)
    seconds = time.perf_counter() - start
    cpu = Runner(runner.path, num_threads=config.runtime.threads, backend=config.runtime.backend).predict(
        images, config.batch_size)
    predictions = scores.argmax(axis=1).astype(np.uint8)
    vs_cpu = {"agreement": float(np.mean(predictions == cpu.argmax(axis=1))),
              "max_score_diff": float(np.abs(scores - cpu).max()) if len(scores) else None}
    return predictions, seconds, vs_cpu


def format_report(report: dict) -> str:
    """A human summary: accuracy, per-class accuracy and the confusion matrix."""
    lines = [
        f"{report['model']}: accuracy {report['accuracy']:.2%} ({report['correct']}/{report['n']}) "
        f"in {report['seconds']:.2f} s ({report['backend']} {report['backend_version']}, "
        f"{report['threads']} thread(s), batch {report['batch_size']})",
        "per class: " + "  ".join(
            f"{c}:{'-' if acc is None else f'{acc:.1%}'}" for c, acc in enumerate(report["per_class_accuracy"])),
        "confusion matrix (rows true, columns predicted):",
        "      " + "".join(f"{c:>6}" for c in range(len(report["confusion_matrix"]))),
    ]
    for c, row in enumerate(report["confusion_matrix"]):
        lines.append(f"{c:>6}" + "".join(f"{v:>6}" for v in row))
    dataset = report.get("dataset", {})
    if dataset.get("no_digit"):
        lines.insert(1, f"{dataset['source']}: {dataset['no_digit']} image(s) with no digit found in them left out "
                        "(listed by `edgemnist data check`)")
    gpu = report.get("accelerator")
    if gpu:
        lines.insert(1, f"on LiteRT's GPU accelerator: {describe_device(gpu)}; the same file on the CPU: agreement "
                        f"{gpu['vs_cpu']['agreement']:.2%}, largest score difference {gpu['vs_cpu']['max_score_diff']:.2g}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI


def add_runtime_arguments(parser, thread_sweep: bool = False, accelerator_help: Optional[str] = None) -> None:
    """--threads, --backend, --accelerator and --gpu-precision, shared by eval, bench, compare, predict and serve
    (bench also takes a list of threads: 1,2,4), their defaults RuntimeSettings'; `accelerator_help` is a
    command's own words for --accelerator. `runtime_settings(args)` makes the RuntimeSettings of what they parsed."""
    if thread_sweep:
        # kept as text: parsed by the handler, and forwarded as given by `bench --remote`
        parser.add_argument("--threads", default=str(RuntimeSettings.threads),
                            help="interpreter threads (default %(default)s); a comma-separated list such as 1,2,4 "
                            "sweeps them")
    else:
        parser.add_argument("--threads", type=int, default=RuntimeSettings.threads,
                            help="interpreter threads (default %(default)s)")
    parser.add_argument("--backend", choices=BACKENDS, help="force an interpreter package "
                        "(default: the first installed of " + ", ".join(BACKENDS) + ")")
    parser.add_argument("--accelerator", choices=ACCELERATORS, default=RuntimeSettings.accelerator,
                        help=accelerator_help or "where the .tflite runs: cpu (the interpreter) or gpu (LiteRT's GPU "
                        "accelerator through Vulkan; needs ai-edge-litert >= 2 and a Vulkan driver) (default %(default)s)")
    parser.add_argument("--gpu-precision", choices=GPU_PRECISIONS, default=RuntimeSettings.gpu_precision,
                        help="with --accelerator gpu: fp16 lets the GPU compute in half precision (LiteRT's default), "
                        "fp32 enforces float32 (default %(default)s)")


def runtime_settings(args, threads: Optional[int] = None) -> RuntimeSettings:
    """The RuntimeSettings of the flags add_runtime_arguments parsed (ValueError naming a bad one).

    Args:
        args: the parsed arguments: accelerator, gpu_precision, threads, backend.
        threads: instead of args.threads (bench's --threads is a list kept as text, parsed by its handler,
            which makes one settings object per count with dataclasses.replace).
    """
    return RuntimeSettings(accelerator=args.accelerator, gpu_precision=args.gpu_precision,
                           threads=args.threads if threads is None else threads, backend=args.backend)


def add_commands(subparsers) -> None:
    """Registers `edgemnist eval`."""
    p = subparsers.add_parser(
        "eval",
        help="accuracy of a .tflite on the test set (no TensorFlow needed)",
        description="Accuracy, per-class accuracy and confusion matrix of a .tflite model on the "
        "10,000 test images (or the first N), run batched on the TensorFlow-free runtime.",
    )
    p.add_argument("model", help="a .tflite file")
    p.add_argument("--test-limit", dest="limit", metavar="N", type=int, help="evaluate the first N test images only")
    p.add_argument("--data-dir", help="data folder: IDX files or class folders 0/..9/ of 28x28 images or of real "
                   "photos, prepared as predict does (default: $EDGEMNIST_DATA or the shipped MNIST)")
    add_prepare_arguments(p)
    p.add_argument("--batch-size", type=int, default=EvalConfig.batch_size,
                   help="images per invoke (default %(default)s)")
    add_runtime_arguments(p)
    p.set_defaults(func=_run_eval)


def _run_eval(args):
    config = EvalConfig(limit=args.limit, data_dir=args.data_dir, prepare=args.prepare, batch_size=args.batch_size,
                        runtime=runtime_settings(args))
    with explicit_accelerator():
        report = evaluate(args.model, config)
    report.pop("predictions")
    return Output(report, format_report(report))
