"""Every .tflite variant on the CPU interpreter and on LiteRT's GPU accelerator: accuracy, agreement, speed.

Usage: python benchmarks/bench_gpu.py runs/default/tflite --json benchmarks/results/gpu.json
       python benchmarks/bench_gpu.py runs/quick/tflite --test-limit 500 --runs 100 --json /tmp/gpu.json  (a smoke run)

For each variant x {cpu, gpu}, in one process: accuracy on the test images, agreement
with the float32 reference on the CPU, start-up (CPU: interpreter creation; GPU: model load,
shader compilation and the first run), single-image latency p50/p90/p99 after warm-up
(GPU: the run plus reading the scores back, which waits for the device), and batched
throughput (the GPU accelerator takes the batch in the file, 1, so its figure is one image
per run). For the GPU also: agreement with the same file on the CPU, the largest score
difference from it, whether LiteRT reports the model fully accelerated, and the ops it left
to the CPU.

Where no GPU is present the accelerator runs on SwiftShader, a software Vulkan device: a CPU
emulating a GPU. Its latency is a CPU's, not a GPU's; the table says which adapter ran. Each
GPU variant is cross-checked with LiteRT's own `python -m
ai_edge_litert.tools.benchmark_litert_model --use_gpu` (its median of `run` calls with random
inputs, no read-back), in a child process.

Targets (issue 21): on the GPU every variant's accuracy within 0.05 pp of the same file on the
CPU and agreement with it >= 99.9 %; float32 and float16 fully accelerated.
Exit status: 0 every variant ran on the GPU and met them, 1 one did not, 2 no GPU accelerator.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ACCURACY_TARGET_PP = 0.05
AGREEMENT_TARGET = 0.999
FULLY_ACCELERATED_VARIANTS = ("float32", "float16")


def _find_tflite(paths: list) -> list:
    found = []
    for p in map(Path, paths):
        found += sorted(p.glob("*.tflite")) if p.is_dir() else [p]
    return found


def _timing(runner, images: np.ndarray, args) -> dict:
    from edgemnist.measure.bench import latency_percentiles, throughput, timed_invokes

    quantized = [np.ascontiguousarray(runner.quantize_input(image[np.newaxis])) for image in images[:256]]
    timed_invokes(runner, quantized, args.warmup)
    latency = latency_percentiles(timed_invokes(runner, quantized, args.runs))
    batched = throughput(runner, images[: args.throughput_images], args.batch_size, repeats=2)
    return {"latency_us": {k: latency[k] for k in ("p50", "p90", "p99", "mean")}, "throughput": batched}


def _litert_benchmark(path: Path, runs: int) -> dict:
    """LiteRT's own benchmark tool with --use_gpu in a child process: its median and whether fully accelerated."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model", f"--model={path}", "--use_gpu",
                   f"--num_runs={runs}", "--warmup_runs=20", f"--result_json={out}"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if done.returncode != 0 or not out.is_file():
            errors = [line for line in done.stderr.splitlines() if "Error" in line and not line.startswith("INFO")]
            return {"error": f"exit {done.returncode}: {(errors or ['no error line'])[-1].strip()[:200]}"}
        result = json.loads(out.read_text())
    latency = result.get("latency", {})
    return {"median_us": round(latency.get("median_ms", 0) * 1000, 1), "init_ms": latency.get("init_ms"),
            "fully_accelerated": result.get("fully_accelerated"), "accelerators": result.get("accelerators")}


def run(paths: list, args) -> dict:
    from edgemnist import data
    from edgemnist.measure.compare import read_manifest, variant_name
    from edgemnist.runtime import Runner
    from edgemnist.runtime.accelerator import AcceleratorUnavailableError, GpuRunner
    from edgemnist.runtime.machine import machine_info

    split = data.load_split("test", None, args.test_limit)
    images = data.to_model_input(split.images)
    names = [variant_name(p, read_manifest(p) or {}) for p in paths]
    reference = names.index("float32") if "float32" in names else 0
    rows, cpu_scores, device, unavailable = [], {}, None, None
    for path, name in zip(paths, names):
        print(f"[{name}] cpu", file=sys.stderr, flush=True)
        cpu = Runner(path)
        scores = cpu.predict(images, batch_size=args.batch_size)
        cpu_scores[name] = scores
        rows.append({"name": name, "bytes": path.stat().st_size, "cpu": {
            "accuracy": float(np.mean(scores.argmax(1) == split.labels)), "startup_ms": round(cpu.init_seconds * 1e3, 2),
            **_timing(cpu, images, args)}})
    ref_classes = cpu_scores[names[reference]].argmax(1)
    for row in rows:
        row["cpu"]["agreement"] = float(np.mean(cpu_scores[row["name"]].argmax(1) == ref_classes))
    for row, path in zip(rows, paths):
        if unavailable:
            break
        print(f"[{row['name']}] gpu", file=sys.stderr, flush=True)
        try:
            gpu = GpuRunner(path, precision=args.precision)
        except AcceleratorUnavailableError as exc:
            unavailable = exc.reason
            break
        except ValueError as exc:
            row["gpu"] = {"error": str(exc)}
            continue
        start = time.perf_counter()
        scores = gpu.predict(images, batch_size=args.batch_size)
        seconds = time.perf_counter() - start
        info = gpu.accelerator_info()
        device = {k: info[k] for k in ("adapter", "vendor", "backend", "adapter_type", "software", "vulkan_icd")}
        classes, same_file = scores.argmax(1), cpu_scores[row["name"]]
        row["gpu"] = {
            "accuracy": float(np.mean(classes == split.labels)),
            "agreement": float(np.mean(classes == ref_classes)),
            "cpu_agreement": float(np.mean(classes == same_file.argmax(1))),
            "max_score_diff": float(np.abs(scores - same_file).max()),
            "startup_ms": info["startup_ms"],
            "eval_seconds": round(seconds, 2),
            **_timing(gpu, images, args),
            "fully_accelerated": info["fully_accelerated"],
            "gpu_ops": info["gpu_ops"], "cpu_ops": info["cpu_ops"], "fallback_ops": info["fallback_ops"],
        }
        if not args.no_litert_benchmark:
            row["gpu"]["litert_benchmark"] = _litert_benchmark(path, args.litert_runs)
        del gpu
    for row in rows:
        gpu = row.get("gpu")
        if gpu and "accuracy" in gpu:
            gap_pp = abs(gpu["accuracy"] - row["cpu"]["accuracy"]) * 100
            checks = {"accuracy_within_pp": gap_pp <= ACCURACY_TARGET_PP + 1e-9,
                      "agreement": gpu["cpu_agreement"] >= AGREEMENT_TARGET}
            if row["name"] in FULLY_ACCELERATED_VARIANTS:
                checks["fully_accelerated"] = bool(gpu["fully_accelerated"])
            gpu["targets"] = checks
    return {
        "rows": rows,
        "gpu": {"available": unavailable is None, "reason": unavailable, "precision": args.precision, **(device or {})},
        "note": ("SwiftShader is a software Vulkan device: a CPU emulating a GPU; its latency and throughput are "
                 "this CPU's, not a GPU's") if device and device.get("software") else None,
        "targets": {"accuracy_within_pp": ACCURACY_TARGET_PP, "agreement": AGREEMENT_TARGET,
                    "fully_accelerated": list(FULLY_ACCELERATED_VARIANTS)},
        "dataset": {"source": split.source, "split": "test", "n": len(split)},
        "settings": {"warmup": args.warmup, "runs": args.runs, "batch_size": args.batch_size,
                     "throughput_images": args.throughput_images, "threads": 1},
        "versions": {"ai_edge_litert": Runner(paths[0], trusted=True).backend.version},
        "machine": machine_info(),
    }


def format_table(result: dict) -> str:
    gpu = result["gpu"]
    if gpu["available"]:
        kind = "SOFTWARE GPU (a CPU emulating a GPU: not a GPU's speed)" if gpu.get("software") else gpu["adapter_type"]
        title = f"GPU: {gpu['adapter']} [{kind}], {gpu['backend']}, {gpu['precision']}"
    else:
        title = f"gpu: not available ({gpu['reason']})"
    header = ["variant", "cpu acc", "gpu acc", "gpu=cpu", "gpu=ref", "max diff", "cpu start ms", "gpu start ms",
              "cpu p50", "cpu p99", "gpu p50", "gpu p99", "cpu img/s", "gpu img/s", "LiteRT tool p50", "gpu ops", "targets"]
    lines = [title, "", "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for row in result["rows"]:
        c, g = row["cpu"], row.get("gpu") or {}
        if "accuracy" not in g:
            reason = g.get("error", "not run").split("cannot run it (", 1)[-1].rstrip(")")
            cells = [f"{c['accuracy']:.2%}", "-", "-", "-", "-", f"{c['startup_ms']:.1f}", "-",
                     f"{c['latency_us']['p50']:.1f}", f"{c['latency_us']['p99']:.1f}", "-", "-",
                     f"{c['throughput']['images_per_second']:,.0f}", "-", "-", f"failed: {reason[-90:]}",
                     "MISSED: does not run"]
        else:
            tool = g.get("litert_benchmark") or {}
            ops = "all on GPU" if g["fully_accelerated"] else (
                f"{g['cpu_ops']}/{g['cpu_ops'] + g['gpu_ops']} on CPU" if g["cpu_ops"] is not None else "some on CPU")
            cells = [f"{c['accuracy']:.2%}", f"{g['accuracy']:.2%}", f"{g['cpu_agreement']:.2%}",
                     f"{g['agreement']:.2%}", f"{g['max_score_diff']:.2g}", f"{c['startup_ms']:.1f}",
                     f"{g['startup_ms']:.0f}", f"{c['latency_us']['p50']:.1f}", f"{c['latency_us']['p99']:.1f}",
                     f"{g['latency_us']['p50']:.0f}", f"{g['latency_us']['p99']:.0f}",
                     f"{c['throughput']['images_per_second']:,.0f}", f"{g['throughput']['images_per_second']:,.0f}",
                     f"{tool['median_us']:.0f}" if "median_us" in tool else "failed (see JSON)", ops,
                     "ok" if all(g["targets"].values()) else "MISSED: " + ",".join(k for k, v in g["targets"].items() if not v)]
        lines.append("| " + " | ".join([row["name"]] + cells) + " |")
    lines.append("")
    lines.append(f"{result['dataset']['n']:,} test images; latency in us, 1 image, p50/p99 of {result['settings']['runs']} "
                 f"runs after {result['settings']['warmup']} warm-up; gpu=cpu: agreement with the same file on the CPU; "
                 "gpu=ref: with float32 on the CPU; max diff: largest score difference from the CPU.")
    if result["note"]:
        lines.append(result["note"] + ".")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help=".tflite files or folders holding them")
    parser.add_argument("--test-limit", type=int, default=None, help="first N test images (default: all 10,000)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--runs", type=int, default=300, help="timed single-image runs per variant and accelerator")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--throughput-images", type=int, default=1024)
    parser.add_argument("--precision", choices=("fp16", "fp32"), default="fp16")
    parser.add_argument("--litert-runs", type=int, default=200, help="runs of LiteRT's own benchmark tool")
    parser.add_argument("--no-litert-benchmark", action="store_true", help="skip the cross-check with LiteRT's tool")
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args()
    paths = _find_tflite(args.paths)
    if not paths:
        parser.error("no .tflite files found")
    from edgemnist import console

    with console.native_output_to(Path(tempfile.gettempdir()) / "bench_gpu.log"):
        result = run(paths, args)
    print(format_table(result))
    if args.json:
        from edgemnist.artifacts import atomic_write_json

        atomic_write_json(args.json, result)
        print(f"wrote {args.json}", file=sys.stderr)
    return exit_status(result)


def exit_status(result: dict) -> int:
    """0: every variant ran on the GPU accelerator and met its targets; 1: one failed there or missed a target;
    2: no GPU accelerator here (as `--accelerator gpu` everywhere in edgemnist)."""
    if not result["gpu"]["available"]:
        return 2
    ran = [row.get("gpu") or {} for row in result["rows"]]
    return 0 if all("targets" in g and all(g["targets"].values()) for g in ran) else 1


if __name__ == "__main__":
    sys.exit(main())
