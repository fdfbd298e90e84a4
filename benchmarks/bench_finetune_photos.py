"""Fine-tuning on a user's own digits: predict's accuracy on held-out digits that are not MNIST, before and after.

Usage: python benchmarks/bench_finetune_photos.py --model runs/default/train/model.keras \
           [--json benchmarks/results/finetune_photos.json]
       python benchmarks/bench_finetune_photos.py --model MODEL.keras --per-class 20 --mnist 500 --epochs 1 \
           --replay-mnist 500
           (a smoke run)

The user's digits are scikit-learn's 1,797 handwritten 8x8 digits (`edgemnist.data.synthetic.
sklearn_digits`; needs scikit-learn), written as image files in class folders: `--style
upscaled` (white on black, 64x64: the `sklearn_digits` set of bench_predict.py) or `photo`
(dark ink on a lit, noisy 200x200 page, JPEG). A seeded stratified split puts `--test-fraction`
of each class into test/ and the rest into train/. Then, as a user would:

1. `edgemnist export` (`--variant`, int8 by default: what predict ships) of `--model`, and
   predict's accuracy (`edgemnist.load(...).predict(file)`, the digit-or-not gate on) on the
   held-out test/ files, and `edgemnist eval`'s on the first `--mnist` MNIST test digits;
2. `edgemnist finetune --data-dir FOLDER --replay-mnist N` (train/ prepared as predict
   prepares, cached), then the same export of the fine-tuned model and the same two accuracies.

Also the preparation cache: train/ read twice (`edgemnist.data.load_split`) into a fresh cache
in the work folder, the first time preparing every image, the second from the cache.

Targets (issue 33): >= 98.5 % of the held-out digits read right after, MNIST test accuracy
within 0.3 pp of before. Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_folders(images: list, labels: list, root: Path, test_fraction: float, seed: int) -> dict:
    """Class folders train/<d>/ and test/<d>/ of the encoded images; a seeded stratified split."""
    rng = np.random.default_rng(seed)
    counts = {"train": 0, "test": 0}
    labels_arr = np.asarray(labels)
    suffix = ".png" if images[0][:4] == b"\x89PNG" else ".jpg"
    for label in sorted(set(labels)):
        members = rng.permutation(np.flatnonzero(labels_arr == label))
        n_test = int(round(len(members) * test_fraction))
        for rank, index in enumerate(members):
            split = "test" if rank < n_test else "train"
            target = root / split / label / f"{index:04d}{suffix}"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(images[index])
            counts[split] += 1
    return counts


def predict_accuracy(tflite: Path, folder: Path) -> dict:
    """predict's reading of every file in the class folders: accuracy, and with rejected ones counted wrong."""
    import edgemnist

    model = edgemnist.load(tflite, trusted=True)
    right = accepted_right = rejected = n = 0
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        result = model.predict(path)
        label = int(path.parent.name)
        n += 1
        right += result.digit == label
        accepted_right += result.digit == label and not result.rejected
        rejected += bool(result.rejected)
    return {"n": n, "accuracy": round(right / n, 4), "accuracy_with_rejection": round(accepted_right / n, 4),
            "rejected": round(rejected / n, 4)}


def measure(keras_path: Path, out: Path, photos: Path, variant: str, mnist_limit: int) -> dict:
    """Export `variant` of the model into `out`, then predict's accuracy on photos/test and eval's on MNIST."""
    from edgemnist.export.convert import ExportConfig, export_variant
    from edgemnist.measure.eval import EvalConfig, evaluate

    tflite = out / f"model_{variant}.tflite"
    export_variant(keras_path, variant, tflite, ExportConfig())
    mnist = evaluate(tflite, EvalConfig(limit=mnist_limit))
    return {"tflite": str(tflite), "predict": predict_accuracy(tflite, photos / "test"),
            "mnist_test": {"n": mnist["n"], "accuracy": round(mnist["accuracy"], 4)}}


def cache_timing(photos: Path) -> dict:
    """Seconds to read train/ with every image prepared, then again from the cache."""
    from edgemnist import data

    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        n = len(data.load_split("train", photos))
        times.append(time.perf_counter() - t0)
    return {"images": n, "prepare_s": round(times[0], 3), "cached_s": round(times[1], 3),
            "prepare_images_per_s": round(n / times[0], 1), "cached_images_per_s": round(n / times[1], 1)}


def main(argv=None) -> int:
    from edgemnist.training.finetune import FinetuneConfig

    defaults = FinetuneConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the trained Keras model (runs/default/train/model.keras)")
    parser.add_argument("--style", choices=("upscaled", "photo"), default="upscaled",
                        help="how the 8x8 digits become image files (default %(default)s)")
    parser.add_argument("--test-fraction", type=float, default=0.4, help="held out per class (default %(default)s)")
    parser.add_argument("--per-class", type=int, help="use only this many digits of each class (a smoke run)")
    parser.add_argument("--variant", default="int8", help="the exported variant predict runs (default %(default)s)")
    parser.add_argument("--mnist", type=int, default=10000, help="MNIST test digits measured (default %(default)s)")
    parser.add_argument("--head-epochs", type=int, default=defaults.head_epochs, help="(default %(default)s)")
    parser.add_argument("--epochs", type=int, default=8, help="all-layer epochs (default %(default)s)")
    parser.add_argument("--lr", type=float, default=defaults.learning_rate, help="head learning rate (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="fine-tuning batch (default %(default)s)")
    parser.add_argument("--replay-mnist", type=int, default=5000,
                        help="MNIST training digits mixed in while fine-tuning (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="split, photo effects and fine-tuning (default %(default)s)")
    parser.add_argument("--work", help="folder for the image folders and models (default: a temporary one)")
    parser.add_argument("--json", default="benchmarks/results/finetune_photos.json", help="where to write the results")
    args = parser.parse_args(argv)

    from edgemnist.artifacts import atomic_write_json
    from edgemnist.data.synthetic import sklearn_digits
    from edgemnist.runtime.machine import machine_info
    from edgemnist.training.finetune import finetune

    found = sklearn_digits(args.style, seed=args.seed, side=64 if args.style == "upscaled" else 200)
    if found is None:
        print("scikit-learn is not installed (pip install scikit-learn): it provides the digits", file=sys.stderr)
        return 2
    images, labels = found
    if args.per_class:
        keep = [i for d in sorted(set(labels)) for i in [j for j, t in enumerate(labels) if t == d][:args.per_class]]
        images, labels = [images[i] for i in keep], [labels[i] for i in keep]
    config = FinetuneConfig(head_epochs=args.head_epochs, epochs=args.epochs, learning_rate=args.lr,
                            batch_size=args.batch_size, seed=args.seed, replay_mnist=args.replay_mnist)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work or scratch)
        photos = work / "digits"
        counts = write_folders(images, labels, photos, args.test_fraction, args.seed)
        os.environ["EDGEMNIST_CACHE"] = str(work / "cache")  # a fresh cache: the first read prepares everything
        cache = cache_timing(photos)
        started = time.monotonic()
        before = measure(Path(args.model), work / "before", photos, args.variant, args.mnist)
        tuned = finetune(args.model, photos, work / "finetuned", config, verbose=0)
        after = measure(work / "finetuned" / "model.keras", work / "after", photos, args.variant, args.mnist)
        seconds = time.monotonic() - started
    results = {
        "model": args.model, "variant": args.variant, "style": args.style, "split": counts,
        "finetune": {"config": {k: getattr(config, k) for k in ("head_epochs", "epochs", "learning_rate",
                                                              "batch_size", "seed", "replay_mnist")},
                     "keras_test_accuracy": {k: tuned.get(k) for k in ("before", "after_head", "after")},
                     "no_digit": tuned["no_digit"]},
        "before": before, "after": after, "seconds": round(seconds, 1), "cache": cache,
        "targets": {"predict_after": 0.985, "mnist_drop_pp": 0.3},
        "machine": machine_info(), "settings": vars(args),
    }
    results["met"] = {"predict_after": after["predict"]["accuracy"] >= 0.985,
                      "mnist_drop": round(100 * (before["mnist_test"]["accuracy"] - after["mnist_test"]["accuracy"]),
                                          2) <= 0.3}  # in pp as printed: 0.9961 - 0.9931 is not <= 0.003 in floats
    print(format_table(results))
    atomic_write_json(args.json, results)
    print(f"wrote {args.json}")
    return 0


def format_table(results: dict) -> str:
    split = results["split"]
    lines = [f"scikit-learn digits ({results['style']}): {split['train']} to fine-tune on, {split['test']} held out; "
             f"{results['variant']} model read by predict; {results['seconds']:.0f} s",
             f"{'':<8}{'predict':>10}{'+reject':>10}{'rejected':>10}{'MNIST test':>12}"]
    for name in ("before", "after"):
        r = results[name]
        p = r["predict"]
        lines.append(f"{name:<8}{p['accuracy']:>10.2%}{p['accuracy_with_rejection']:>10.2%}{p['rejected']:>10.2%}"
                     f"{r['mnist_test']['accuracy']:>12.2%}")
    drop = 100 * (results["before"]["mnist_test"]["accuracy"] - results["after"]["mnist_test"]["accuracy"])
    lines.append(f"targets: predict after >= 98.5 % ({'met' if results['met']['predict_after'] else 'NOT met'}), "
                 f"MNIST drop {drop:.2f} pp <= 0.3 ({'met' if results['met']['mnist_drop'] else 'NOT met'})")
    c = results["cache"]
    lines.append(f"reading train/ ({c['images']} images): {c['prepare_s']:.2f} s preparing "
                 f"({c['prepare_images_per_s']:.0f}/s), {c['cached_s']:.2f} s from the cache "
                 f"({c['cached_images_per_s']:.0f}/s)")
    if results["finetune"]["no_digit"]:
        lines.append(f"{len(results['finetune']['no_digit'])} image(s) with no digit found, left out")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
