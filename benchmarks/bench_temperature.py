"""How well each exported model's temperature calibrates it, on the MNIST test split it was not fitted on.

Usage: python benchmarks/bench_temperature.py runs/default/tflite [--json benchmarks/results/temperature.json]
       python benchmarks/bench_temperature.py MODEL.tflite --limit 500   (a smoke run)

For every .tflite given (or found in a folder given) whose manifest holds a `temperature`
(fitted by `edgemnist export` on the training run's validation split, or on a training sample
for models without a run folder: the manifest's `temperature_fit.data`), 1 interpreter thread:
its accuracy on the test split, and at T = 1 (the raw softmax output) and at the manifest's T
the mean printed probability, the negative log-likelihood and the expected calibration error
(bench_predict.py's: 10 equal-width bins). For reference, the T the test split itself would
give (never stored: the test split measures, it does not fit). Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_predict import calibration_error  # noqa: E402  (the one ECE of the benchmarks)


def measure(path: Path, images: np.ndarray, labels: np.ndarray) -> dict:
    """The row of one model: its manifest's temperature, and the test split's view of it."""
    from edgemnist.artifacts import manifest_path
    from edgemnist.runtime import Runner
    from edgemnist.runtime.temperature import (calibrated, fit_temperature, negative_log_likelihood,
                                               probability_floor)

    manifest = json.loads(manifest_path(path).read_text())
    runner = Runner(path, trusted=True)
    scores = runner.predict(images)
    floor = probability_floor(runner.output)
    right = scores.argmax(axis=1) == labels
    row = {"variant": manifest.get("variant", path.stem), "temperature": manifest["temperature"],
           "fitted_on": manifest["temperature_fit"]["data"], "test_n": int(len(labels)),
           "accuracy": round(float(right.mean()), 4), "test_split_temperature": fit_temperature(scores, labels, floor)}
    for name, t in (("raw", 1.0), ("calibrated", manifest["temperature"])):
        p = calibrated(scores, t, floor)
        row[name] = {"mean_probability": round(float(p.max(axis=1).mean()), 4),
                     "nll": round(negative_log_likelihood(scores, labels, t, floor), 4),
                     "ece": round(calibration_error(p.max(axis=1), right), 4)}
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help=".tflite files or folders of them (with their manifests)")
    parser.add_argument("--limit", type=int, help="only the first N test digits (default: all 10,000)")
    parser.add_argument("--json", default="benchmarks/results/temperature.json", help="where to write the results")
    args = parser.parse_args(argv)

    from edgemnist import data
    from edgemnist.artifacts import atomic_write_json, manifest_path

    paths = []
    for given in map(Path, args.models):
        paths += sorted(given.glob("*.tflite")) if given.is_dir() else [given]
    paths = [p for p in paths if manifest_path(p).is_file()
             and json.loads(manifest_path(p).read_text()).get("temperature") is not None]
    if not paths:
        print("no .tflite with a temperature in its manifest (export it again with edgemnist export)", file=sys.stderr)
        return 2
    test = data.load_split("test", limit=args.limit)
    images = data.to_model_input(test.images)
    results = {"test_n": len(test), "threads": 1, "settings": vars(args),
               "models": [measure(p, images, test.labels) for p in paths]}
    print(format_table(results))
    atomic_write_json(args.json, results)
    print(f"wrote {args.json}")
    return 0


def format_table(results: dict) -> str:
    lines = [f"MNIST test split, {results['test_n']} digits; probability = mean printed, vs accuracy", "",
             f"{'variant':<17}{'T':>7}{'test T':>8}{'accuracy':>10}{'prob T=1':>10}{'prob T':>9}"
             f"{'NLL T=1':>9}{'NLL T':>8}{'ECE T=1':>9}{'ECE T':>8}  fitted on"]
    for r in results["models"]:
        raw, cal = r["raw"], r["calibrated"]
        lines.append(f"{r['variant']:<17}{r['temperature']:>7.4g}{r['test_split_temperature']:>8.4g}"
                     f"{r['accuracy']:>10.2%}{raw['mean_probability']:>10.2%}{cal['mean_probability']:>9.2%}"
                     f"{raw['nll']:>9.4f}{cal['nll']:>8.4f}{raw['ece']:>9.4f}{cal['ece']:>8.4f}  "
                     f"{r['fitted_on'].split(' (')[0]}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
