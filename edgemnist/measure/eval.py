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
from edgemnist.runtime import BACKENDS, Runner


@dataclass(frozen=True)
class EvalConfig:
    """Settings of one evaluation."""

    limit: Optional[int] = None  # the first N test images; None: all of them
    data_dir: Optional[str] = None  # None: $EDGEMNIST_DATA or the shipped MNIST
    batch_size: int = 256  # images per invoke
    threads: int = 1  # interpreter threads
    backend: Optional[str] = None  # force one of runtime.BACKENDS

    def __post_init__(self):
        check_run_settings(self, at_least_one=("batch_size", "threads"))


def check_run_settings(config, at_least_one: tuple = (), at_least_zero: tuple = ()) -> None:
    """Validates the settings eval, bench and compare share, in the order given.

    Args:
        config: a settings dataclass; its `limit` (when it has one and it is set) must be >= 1
            and its `backend` None or one of runtime.BACKENDS.
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
    if config.backend is not None and config.backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {config.backend!r}")


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
        "dataset" ({"source", "split", "n"}); and "predictions" (uint8 array, not JSON:
        pop it before printing).

    Raises:
        FileNotFoundError, ValueError, data.DataError: missing or malformed model or data.
    """
    runner = runner or Runner(model_path, num_threads=config.threads, backend=config.backend)
    check_digit_classifier(runner)
    if split is None:
        split = data.load_split("test", config.data_dir, config.limit)
    else:
        split = split.head(config.limit)
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
        dataset={"source": split.source, "split": "test", "n": len(split)},
        predictions=predictions,
    )
    return report


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
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI


def add_runtime_arguments(parser, thread_sweep: bool = False, threads: int = EvalConfig.threads) -> None:
    """--threads and --backend, shared by eval, bench and compare (bench also takes a list: 1,2,4);
    `threads` is the command's config default."""
    if thread_sweep:
        # kept as text: parsed by the handler, and forwarded as given by `bench --remote`
        parser.add_argument("--threads", default=str(threads),
                            help="interpreter threads (default %(default)s); a comma-separated list such as 1,2,4 "
                            "sweeps them")
    else:
        parser.add_argument("--threads", type=int, default=threads, help="interpreter threads (default %(default)s)")
    parser.add_argument("--backend", choices=BACKENDS, help="force an interpreter package "
                        "(default: the first installed of " + ", ".join(BACKENDS) + ")")


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
    p.add_argument("--data-dir", help="data folder (default: $EDGEMNIST_DATA or the shipped MNIST)")
    p.add_argument("--batch-size", type=int, default=EvalConfig.batch_size,
                   help="images per invoke (default %(default)s)")
    add_runtime_arguments(p)
    p.set_defaults(func=_run_eval)


def _run_eval(args):
    from edgemnist.cli import Output

    config = EvalConfig(limit=args.limit, data_dir=args.data_dir, batch_size=args.batch_size, threads=args.threads,
                        backend=args.backend)
    report = evaluate(args.model, config)
    report.pop("predictions")
    return Output(report, format_report(report))
