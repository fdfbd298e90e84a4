"""Train the default model on all of MNIST and report accuracy, size and wall time.

Usage: python benchmarks/bench_train.py [--out runs/bench-train] [--json benchmarks/results/train.json]

Target (issue 2): >= 99.5 % float test accuracy, <= 20,000 parameters, <= 15 minutes of
training on a 2-core CPU. Rerunning with the same --out resumes or reports the finished run;
pass --restart to measure again from scratch.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

from edgemnist.artifacts import atomic_write_json
from edgemnist.training.train import TrainConfig, train

TARGETS = {"test_accuracy_min": 0.995, "params_max": 20000, "wall_s_max": 15 * 60}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench-train", help="run folder (default %(default)s)")
    parser.add_argument("--json", default="benchmarks/results/train.json", help="where to write the results")
    parser.add_argument("--epochs", type=int, default=TrainConfig().epochs,
                        help="maximum epochs (default %(default)s)")
    parser.add_argument("--seed", type=int, default=TrainConfig().seed,
                        help="random seed: data order, augmentation and initial weights (default %(default)s, the published run)")
    parser.add_argument("--restart", action="store_true", help="train from scratch even if --out holds a run")
    args = parser.parse_args()

    started = time.monotonic()
    summary = train(TrainConfig(epochs=args.epochs, seed=args.seed), args.out, restart=args.restart, verbose=2)
    result = {
        "summary": summary,
        "targets": TARGETS,
        "meets": {
            "test_accuracy": summary["test_accuracy"] >= TARGETS["test_accuracy_min"],
            "params": summary["params"] <= TARGETS["params_max"],
            "wall_s": summary["wall_s"] <= TARGETS["wall_s_max"],
        },
        "process_wall_s": round(time.monotonic() - started, 1),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]},
        "command": "python benchmarks/bench_train.py " + " ".join(sys.argv[1:]),
    }
    rows = [
        ("test accuracy", f"{summary['test_accuracy'] * 100:.2f} %", ">= 99.50 %", result["meets"]["test_accuracy"]),
        ("parameters", f"{summary['params']:,}", "<= 20,000", result["meets"]["params"]),
        ("MACs per image", f"{summary['macs']:,}", "", None),
        ("training wall time", f"{summary['wall_s']:.0f} s ({summary['epochs_run']} epochs)", "<= 900 s",
         result["meets"]["wall_s"]),
    ]
    print(f"{'metric':<20}{'value':<26}{'target':<14}ok")
    for name, value, target, ok in rows:
        print(f"{name:<20}{value:<26}{target:<14}{'' if ok is None else ('yes' if ok else 'NO')}")
    atomic_write_json(args.json, result)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
