"""Fuzz campaign: thousands of hostile variants of real exports through edgemnist's runtime; and what the preflight costs.

Usage: python benchmarks/bench_fuzz.py runs/default/tflite --mutations 2000 --json benchmarks/results/fuzz.json
       python benchmarks/bench_fuzz.py runs/quick/tflite --mutations 200           (a smoke run)

1. Campaign: each mutation (seeded, reproducible: tests/_tflite_mutations.py) is a raw
   byte edit anywhere in the file or a schema-level edit that still parses (shapes,
   tensor wiring, op codes, op options, quantization parameters, types). Each mutated
   file goes through `Runner` (structural check, then the child-process preflight) and,
   if it loads, `predict_one` and a batched `predict` on real test digits. Counted:
   rejected by the structural check, rejected by the runtime with a ValueError, native
   interpreter crashes or hangs caught by the preflight, models that ran; and the two
   things that must stay zero: any other exception escaping, and a crash of the
   edgemnist process itself. Mutations run in worker processes that report each result
   as it finishes, so a worker that dies is counted and the campaign goes on after it.
2. Preflight cost, per model: the child-process check against the interpreter's own
   load time, and `edgemnist eval` on the whole test set with and without it
   (EDGEMNIST_TRUST_MODELS=1), median of --repeats runs each.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgemnist.console import first_line
from tflite_mutations import OUTCOMES, mutate, run_model  # beside this script (python puts its folder on sys.path)

REPO = Path(__file__).resolve().parents[1]

DEFAULT_VARIANTS = ("float32", "int8")


def _models(paths: list, variants: tuple) -> dict:
    """{name: Path} of the .tflite files to mutate (a folder gives its model_<variant>.tflite)."""
    found = {}
    for p in map(Path, paths):
        if p.is_dir():
            for v in variants:
                candidates = sorted(p.glob(f"*_{v}.tflite"), key=lambda c: (len(c.name), c.name))  # not aie_int8
                if candidates:
                    found[v] = candidates[0]
        else:
            found[p.stem] = p
    if not found:
        sys.exit(f"bench_fuzz: no .tflite of variants {', '.join(variants)} in {', '.join(map(str, paths))}")
    return found


def worker(model: Path, first: int, last: int, workdir: Path) -> None:
    """Runs mutations first..last-1 of `model`, one JSON line per finished mutation."""
    from edgemnist import data

    images = data.to_model_input(data.load_split("test", limit=8).images)
    original = model.read_bytes()
    for seed in range(first, last):
        hostile, kind = mutate(original, seed)
        path = workdir / f"{model.stem}_{seed}.tflite"
        path.write_bytes(hostile)
        try:
            outcome, detail = run_model(path, images), None
        except Exception as exc:  # noqa: BLE001 -- exactly what the campaign counts
            outcome, detail = "unexpected_error", f"{type(exc).__name__}: {first_line(exc, default='')}"
        path.unlink()
        print(json.dumps({"seed": seed, "kind": kind, "outcome": outcome, "detail": detail}), flush=True)


def campaign(model: Path, count: int, workdir: Path) -> dict:
    """Runs `count` mutations of `model` in worker processes; returns the counts."""
    outcomes, kinds, unexpected, process_crashes = collections.Counter(), collections.Counter(), [], []
    caught = []  # seeds whose model crashed or hung the interpreter in the preflight's child
    next_seed = 0
    while next_seed < count:
        cmd = [sys.executable, __file__, "--worker", str(model), str(next_seed), str(count), str(workdir)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO)
        for line in proc.stdout:
            if not line.startswith("{"):
                continue
            entry = json.loads(line)
            next_seed = entry["seed"] + 1
            outcomes[entry["outcome"]] += 1
            kinds[entry["kind"]] += 1
            if entry["outcome"] == "interpreter_crash_caught":
                caught.append({"seed": entry["seed"], "kind": entry["kind"]})
            if entry["outcome"] == "unexpected_error":
                unexpected.append({"seed": entry["seed"], "error": entry["detail"]})
        status = proc.wait()
        if status != 0 and next_seed < count:  # the worker died on mutation `next_seed`
            name = signal.Signals(-status).name if status < 0 else f"exit {status}"
            process_crashes.append({"seed": next_seed, "status": name})
            outcomes["process_crash"] += 1
            next_seed += 1
        print(f"  {model.name}: {next_seed}/{count}", file=sys.stderr)
    return {
        "tried": count,
        "outcomes": {key: outcomes[key] for key in (*OUTCOMES, "unexpected_error", "process_crash")},
        "kinds": dict(sorted(kinds.items())),
        "interpreter_crashes_caught": caught,
        "unexpected_errors": unexpected,
        "process_crashes": process_crashes,
    }


def preflight_cost(model: Path, repeats: int) -> dict:
    """The preflight's seconds beside the interpreter's own load, and full-test-set eval with and without it."""
    from edgemnist.runtime import Runner, preflight

    checks, loads = [], []
    for _ in range(repeats):
        preflight.forget_results()  # measure a first load every time
        start = time.perf_counter()
        runner = Runner(model)
        checks.append(runner.preflight_seconds)
        loads.append(time.perf_counter() - start - runner.preflight_seconds)
    evals = {}
    for label, trust in (("eval_untrusted_s", "0"), ("eval_trusted_s", "1")):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "edgemnist.cli", "eval", str(model), "--json"], check=True,
                           capture_output=True, env=dict(os.environ, EDGEMNIST_TRUST_MODELS=trust))
            times.append(time.perf_counter() - start)
        evals[label] = round(statistics.median(times), 3)
    return {
        "preflight_s": round(statistics.median(checks), 3),
        "load_without_preflight_s": round(statistics.median(loads), 4),
        **evals,
        "eval_overhead_s": round(evals["eval_untrusted_s"] - evals["eval_trusted_s"], 3),
    }


def format_table(result: dict) -> str:
    header = ["model", "tried", *OUTCOMES, "unexpected", "process crash"]
    rows = [header]
    for name, c in result["campaigns"].items():
        o = c["outcomes"]
        rows.append([name, c["tried"], *(o[k] for k in OUTCOMES), o["unexpected_error"], o["process_crash"]])
    t = result["total"]
    rows.append(["total", t["tried"], *(t["outcomes"][k] for k in OUTCOMES), t["outcomes"]["unexpected_error"],
                 t["outcomes"]["process_crash"]])
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    lines = ["  ".join(str(v).rjust(w) for v, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append("preflight cost (median): model  check s  load s  eval 10k untrusted s  trusted s  overhead s")
    for name, p in result["preflight"].items():
        lines.append(f"  {name}: {p['preflight_s']:.3f}  {p['load_without_preflight_s']:.4f}  "
                     f"{p['eval_untrusted_s']:.2f}  {p['eval_trusted_s']:.2f}  {p['eval_overhead_s']:+.2f}")
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5]))
        return 0
    from edgemnist.runtime.machine import machine_info

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help=".tflite files, or export folders (their float32 and int8)")
    parser.add_argument("--mutations", type=int, default=2000, help="mutated models in all (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per preflight-cost figure (default %(default)s)")
    parser.add_argument("--json", default="benchmarks/results/fuzz.json", help="where to write the result")
    args = parser.parse_args()
    models = _models(args.models, DEFAULT_VARIANTS)
    per_model = max(1, args.mutations // len(models))
    from importlib.metadata import version

    start = time.perf_counter()
    campaigns = {}
    with tempfile.TemporaryDirectory(prefix="edgemnist_fuzz_") as workdir:
        for name, path in models.items():
            campaigns[name] = campaign(path, per_model, Path(workdir))
    seconds = time.perf_counter() - start
    total = collections.Counter()
    for c in campaigns.values():
        total.update(c["outcomes"])
    result = {
        "command": "python benchmarks/bench_fuzz.py " + " ".join(sys.argv[1:]),
        "models": {name: {"path": str(p), "bytes": p.stat().st_size} for name, p in models.items()},
        "campaigns": campaigns,
        "total": {"tried": sum(c["tried"] for c in campaigns.values()), "outcomes": dict(total)},
        "campaign_seconds": round(seconds, 1),
        "preflight": {name: preflight_cost(p, args.repeats) for name, p in models.items()},
        "litert_version": version("ai-edge-litert"),
        "machine": machine_info(),
    }
    print(format_table(result))
    if args.json:
        from edgemnist.artifacts import atomic_write_json

        atomic_write_json(args.json, result)
        print(f"wrote {args.json}")
    bad = total["unexpected_error"] + total["process_crash"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
