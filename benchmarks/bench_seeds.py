"""What a target's recipe reaches over several seeds: each variant's test accuracy per seed, mean and range.

Usage: python benchmarks/bench_seeds.py --target cortex-m4 --seeds 0-4
       python benchmarks/bench_seeds.py --target default --seeds 0-4
       python benchmarks/bench_seeds.py --target cortex-m4 --seeds 0-1 --env TF_ENABLE_ONEDNN_OPTS=0
           (TensorFlow's own CPU kernels instead of oneDNN's: the arithmetic of another machine)
       python benchmarks/bench_seeds.py --target cortex-m4 --seeds 0 --epochs 100 --patience 100
           (the schedule twice as long, every epoch trained: no early stopping)
       python benchmarks/bench_seeds.py --target microbit --seeds 0-1 --quick   (a smoke run)

A published accuracy is one training, seed 0 (the pipeline's default); what a user's run elsewhere should
expect is the spread over seeds. For each seed this runs the main job as a user runs it,
`python -m edgemnist pipeline --target NAME --seed S --out OUT/NAME-seedS[_SETTINGS] --json` (`--quick`,
`--epochs` and `--patience` passed on, `--env` set; the folder named by them, so studies with other settings
never share a run), and reads every variant's accuracy on the 10,000 MNIST test images from its result. A
seed whose run folder already holds a finished pipeline is read, not trained again (the pipeline resumes),
so an interrupted study continues where it stopped.

Writes JSON (default benchmarks/results/seeds_NAME[_SETTINGS].json, named by every setting that differs
from the defaults, so a smoke run or another --env never overwrites a study) and prints a table: per seed
and variant the accuracy, then mean, min and max.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def parse_seeds(text: str) -> list:
    """"0-4" -> [0, 1, 2, 3, 4]; "0,2,5" -> [0, 2, 5]; "3" -> [3]."""
    seeds = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = (int(x) for x in part.split("-", 1))
            if hi < lo:
                raise argparse.ArgumentTypeError(f"seed range {part!r} runs backwards")
            seeds.extend(range(lo, hi + 1))
        elif part:
            seeds.append(int(part))
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"--seeds {text!r}: give distinct seeds >= 0, e.g. 0-4 or 0,2,5")
    return seeds


def summarize(per_seed: dict) -> dict:
    """{seed: {variant: accuracy}} -> {variant: {"mean", "min", "max", "n", "seed0"}} over the seeds that have it."""
    variants = sorted({v for accuracies in per_seed.values() for v in accuracies})
    out = {}
    for variant in variants:
        values = {seed: acc[variant] for seed, acc in per_seed.items() if variant in acc}
        out[variant] = {"n": len(values), "mean": round(statistics.fmean(values.values()), 6),
                        "min": min(values.values()), "max": max(values.values()),
                        "seed0": values.get(0)}
    return out


DEFAULT_SEEDS = "0-4"
# Pipeline flags with a value that a study passes on to every seed's run (and names its folder and results by).
PASSED_ON = ("epochs", "patience")


def training_settings(args: argparse.Namespace) -> list:
    """The settings that change what a seed trains, as name parts: [] for the defaults."""
    parts = ["quick"] if args.quick else []
    parts += [f"{flag}{getattr(args, flag)}" for flag in PASSED_ON if getattr(args, flag) is not None]
    return parts + [e.replace("=", "-") for e in args.env]


def results_name(args: argparse.Namespace) -> str:
    parts = [f"seeds_{args.target}"]
    if list(args.seeds) != parse_seeds(DEFAULT_SEEDS):  # fewer or other seeds: a study of its own
        parts.append("seeds" + "-".join(map(str, args.seeds)))
    return "_".join(parts + training_settings(args)) + ".json"


def run_folder(args: argparse.Namespace, seed: int) -> Path:
    """OUT/NAME-seedS, plus the settings that change the training: a study with another --env (which the
    pipeline's fingerprints cannot see), --quick, --epochs or --patience never reads or overwrites the default
    study's runs."""
    return Path(args.out) / "_".join([f"{args.target}-seed{seed}"] + training_settings(args))


def run_seed(args: argparse.Namespace, seed: int) -> dict:
    """One pipeline run for `seed` (resumed if its folder has one); its variants' accuracies and wall time."""
    out = run_folder(args, seed)
    cmd = [sys.executable, "-m", "edgemnist", "pipeline", "--target", args.target, "--seed", str(seed),
           "--out", str(out), "--json"]
    if args.quick:
        cmd.append("--quick")
    for flag in PASSED_ON:
        if getattr(args, flag) is not None:
            cmd += [f"--{flag}", str(getattr(args, flag))]
    env = dict(os.environ, **dict(e.split("=", 1) for e in args.env))
    print(f"[seed {seed}] {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    run = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)  # stderr: the pipeline's progress
    if run.returncode != 0:
        raise RuntimeError(f"seed {seed}: the pipeline failed (exit {run.returncode}); its folder {out} keeps "
                           "what finished, and a rerun of this command resumes it")
    result = json.loads(run.stdout)
    return {"folder": str(out), "seconds": round(time.perf_counter() - start, 1),
            "train_test_accuracy": result["train"]["test_accuracy"],
            "accuracy": {v["name"]: v["accuracy"] for v in result["variants"] if v.get("accuracy") is not None}}


def format_table(study: dict) -> str:
    variants = list(study["summary"])
    lines = [f"target {study['target']}, seeds {', '.join(map(str, study['seeds']))}"
             + (f", env {' '.join(study['env'])}" if study["env"] else "") + (" (quick)" if study["quick"] else ""),
             "", "| seed | " + " | ".join(variants) + " |", "|---" * (len(variants) + 1) + "|"]
    for seed, run in study["runs"].items():
        cells = [f"{run['accuracy'][v]:.2%}" if v in run["accuracy"] else "-" for v in variants]
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    for stat in ("mean", "min", "max"):
        lines.append(f"| {stat} | " + " | ".join(f"{study['summary'][v][stat]:.2%}" for v in variants) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="default", help="a target of `edgemnist targets` (default: default)")
    parser.add_argument("--seeds", type=parse_seeds, default=parse_seeds(DEFAULT_SEEDS),
                        help=f"e.g. 0-4 or 0,2,5 (default {DEFAULT_SEEDS})")
    parser.add_argument("--quick", action="store_true", help="pipeline --quick: a smoke run of the study")
    parser.add_argument("--epochs", type=int, default=None, help="pipeline --epochs (default: the recipe's)")
    parser.add_argument("--patience", type=int, default=None,
                        help="pipeline --patience, early stopping's (default: the recipe's)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for every run, e.g. TF_ENABLE_ONEDNN_OPTS=0 (repeatable)")
    parser.add_argument("--out", default="runs/seeds", help="where the runs go, one folder per target and seed")
    parser.add_argument("--json", default=None, help="where to write the results (default: benchmarks/results/"
                        "seeds_TARGET[_seedsS-...][_quick][_epochsN][_patienceN][_NAME-VALUE].json)")
    args = parser.parse_args(argv)
    for e in args.env:
        if "=" not in e or not e.split("=", 1)[0]:
            parser.error(f"--env {e!r}: give NAME=VALUE")
    from edgemnist.targets import get_target

    try:
        get_target(args.target)
    except ValueError as exc:
        parser.error(str(exc))
    from edgemnist.artifacts import atomic_write_json
    from edgemnist.runtime.machine import machine_info

    runs = {}
    try:
        for seed in args.seeds:
            runs[seed] = run_seed(args, seed)
    except RuntimeError as exc:
        print(f"bench_seeds: {exc}", file=sys.stderr)
        return 1
    study = {"target": args.target, "seeds": args.seeds, "quick": args.quick, "epochs": args.epochs,
             "patience": args.patience,
             "env": args.env, "runs": runs, "summary": summarize({s: r["accuracy"] for s, r in runs.items()}),
             "machine": machine_info(),
             "command": " ".join(["python benchmarks/bench_seeds.py", *(argv if argv is not None else sys.argv[1:])])}
    print(format_table(study))
    path = Path(args.json) if args.json else RESULTS / results_name(args)
    atomic_write_json(path, study)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
