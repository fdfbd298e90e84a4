"""Make the models that ship inside the package: run the main job, then copy its int8 and float32 exports.

Usage: python tools/ship_models.py [--run runs/default] [--seed 0]

Runs `edgemnist pipeline --out RUN --seed SEED` (a rerun skips every finished stage, so on a
finished run this only checks it), takes RUN/tflite/model_int8.tflite and model_float32.tflite,
measures each on all 10,000 MNIST test images with the TensorFlow-free runtime, and writes
them into edgemnist/runtime/models/ as mnist_<variant>.tflite with their export manifest plus a
`shipped` entry (accuracy, the commands, the seed, the training summary). The files are
written atomically, the manifest after its .tflite. Refuses to ship more than SIZE_BUDGET
bytes in all: the models travel in every install, a Raspberry Pi's included.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgemnist.artifacts import atomic_write_bytes, atomic_write_json, manifest_path, sha256_file  # noqa: E402
from edgemnist.runtime.models import SHIPPED, SHIPPED_DIR  # noqa: E402

SIZE_BUDGET = 200 * 1024  # bytes, every shipped .tflite together (issue 31)
SOURCE_VARIANT = {"int8": "int8", "float32": "float32"}  # shipped name -> the pipeline's export variant


def run_pipeline(run: Path, seed: int) -> list:
    """Runs (or checks) the main job; returns its command line."""
    command = [sys.executable, "-m", "edgemnist", "pipeline", "--out", str(run), "--seed", str(seed), "--json"]
    print(f"running: edgemnist pipeline --out {run} --seed {seed} (finished stages are skipped)",
          file=sys.stderr, flush=True)
    result = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise SystemExit(f"ship_models: edgemnist pipeline failed (exit {result.returncode}); nothing shipped")
    return ["edgemnist", "pipeline", "--out", str(run), "--seed", str(seed)]


def measure(path: Path) -> dict:
    """Accuracy of a .tflite on all 10,000 MNIST test images (the runtime's eval, no TensorFlow)."""
    from edgemnist.measure.eval import EvalConfig, evaluate

    report = evaluate(path, EvalConfig())
    return {"test_accuracy": round(float(report["accuracy"]), 6), "test_images": int(report["dataset"]["n"]),
            "test_correct": int(report["correct"]), "backend": report["backend"],
            "backend_version": report["backend_version"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/default", help="the pipeline's run folder (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="the pipeline's seed (default %(default)s)")
    args = parser.parse_args()

    run = Path(args.run)
    pipeline_command = run_pipeline(run, args.seed)
    run = run if run.is_absolute() else ROOT / run
    sources = {name: run / "tflite" / f"model_{variant}.tflite" for name, variant in SOURCE_VARIANT.items()}
    total = sum(path.stat().st_size for path in sources.values())
    if total > SIZE_BUDGET:
        raise SystemExit(f"ship_models: the models total {total:,} B, over the {SIZE_BUDGET:,} B budget; "
                         "nothing shipped")
    summary = json.loads((run / "train" / "summary.json").read_text(encoding="utf-8"))
    rows = []
    for name, source in sources.items():
        manifest = json.loads(manifest_path(source).read_text(encoding="utf-8"))
        if manifest.get("sha256") != sha256_file(source):
            raise SystemExit(f"ship_models: {source}: its manifest is of another file; rerun the pipeline")
        measured = measure(source)
        manifest["shipped"] = {
            "name": name,
            "file": SHIPPED[name],
            "source_variant": SOURCE_VARIANT[name],
            "command": f"python tools/ship_models.py --run {args.run} --seed {args.seed}",
            "pipeline_command": " ".join(pipeline_command),
            "seed": args.seed,
            "training": {key: summary.get(key) for key in ("model", "params", "macs", "epochs_run", "best_epoch",
                                                             "test_accuracy", "train_images")},
            **measured,
        }
        target = SHIPPED_DIR / SHIPPED[name]
        atomic_write_bytes(target, source.read_bytes())
        atomic_write_json(manifest_path(target), manifest)
        rows.append((name, target.stat().st_size, measured["test_accuracy"], manifest.get("temperature")))
    print(f"{'model':<8} {'bytes':>8} {'test accuracy':>14} {'temperature':>12}")
    for name, size, accuracy, temperature in rows:
        print(f"{name:<8} {size:>8,} {accuracy:>13.2%} {temperature!s:>12}")
    print(f"shipped into {SHIPPED_DIR} ({total:,} B of {SIZE_BUDGET:,})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
