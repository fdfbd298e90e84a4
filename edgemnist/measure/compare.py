"""Compare .tflite variants side by side: one table, PNG plots, report.md and report.json.

Usage: edgemnist compare runs/default/tflite/*.tflite --out runs/default/report [--reference model_float32.tflite]

Every variant is evaluated on the same test images and timed in the same run (latency
rounds interleaved across variants, so a busy machine slows them all alike). "agreement"
is the fraction of test images on which a variant predicts the same class as the float
reference. report.json keys (stable; documented in the README); each variant's "path" is
relative to the folder holding report.json, so the run folder can move:

    {"variants": [{"name", "path", "bytes", "gzip_bytes", "accuracy", "agreement",
                   "latency_us": {"p50", "p90", "p99", "mean", "std"}, "backend", "threads"}],
     "model": {"params", "macs"}, "dataset": {"source", "split", "n"}, "machine": {...}}

Table rows are plain dicts with the keys of one "variants" entry, so rows can also come
from `edgemnist bench --json` results (`row_from_bench`), e.g. of other machines.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from edgemnist import data
from edgemnist.artifacts import atomic_write_json, atomic_write_text, gzip_size, manifest_path
from edgemnist.data.folders import add_prepare_arguments
from edgemnist.measure.bench import latency_percentiles, timed_invokes
from edgemnist.measure.eval import check_digit_classifier, check_run_settings, runtime_settings
from edgemnist.measure.plots import PLOT_FILES, write_plots
from edgemnist.output import Output
from edgemnist.runtime import Runner
from edgemnist.runtime.accelerator import AcceleratorUnavailableError, GpuRunner, RuntimeSettings
from edgemnist.runtime.machine import machine_info

log = logging.getLogger(__name__)

LATENCY_KEYS = ("p50", "p90", "p99", "mean", "std")
VARIANT_KEYS = ("name", "path", "bytes", "gzip_bytes", "accuracy", "agreement", "latency_us", "backend", "threads")
_LATENCY_ROUNDS = 10  # timed runs are split into rounds that cycle through the variants


@dataclass(frozen=True)
class CompareConfig:
    """Settings of one comparison."""

    reference: Optional[str] = None  # the float reference .tflite; None: the first float-input variant
    limit: Optional[int] = None  # the first N test images; None: all 10,000
    data_dir: Optional[str] = None  # None: $EDGEMNIST_DATA or the shipped MNIST
    prepare: Optional[bool] = None  # class folders: None prepares folders of real images (not 28x28), True all, False none
    batch_size: int = 256  # images per invoke when evaluating
    warmup: int = 50  # untimed invokes per variant before latency runs
    runs: int = 1000  # timed single-image invokes per variant
    keras: Optional[str] = None  # the Keras model the variants came from: params and MACs (needs TensorFlow)
    plots: bool = True  # write PNG plots (needs matplotlib; skipped with a note when missing)
    # threads and backend for accuracy and latency; accelerator "gpu": every variant also on LiteRT's GPU
    # accelerator, beside the CPU
    runtime: RuntimeSettings = RuntimeSettings()

    def __post_init__(self):
        check_run_settings(self, at_least_one=("batch_size", "runs"), at_least_zero=("warmup",))


# --------------------------------------------------------------------------- variants


def read_manifest(tflite_path) -> Optional[dict]:
    """The manifest `edgemnist export` wrote beside a .tflite (`<file>.tflite.json`), or None."""
    path = manifest_path(tflite_path)
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable manifest, using the file name instead (%s)", path, exc)
        return None
    return manifest if isinstance(manifest, dict) else None


def variant_name(tflite_path, manifest: Optional[dict] = None) -> str:
    """The variant's name: the manifest's "variant" when there is one, else the file stem."""
    manifest = read_manifest(tflite_path) if manifest is None else manifest
    name = manifest.get("variant") if manifest else None
    return str(name) if name else Path(tflite_path).stem


def _unique_names(paths: Sequence[Path], names: list) -> list:
    """Names made unique by prefixing the parent folder where two variants share one."""
    if len(set(names)) == len(names):
        return names
    return [f"{p.parent.name}/{n}" if names.count(n) > 1 else n for p, n in zip(paths, names)]


def _pick_reference(paths: list, runners: list, reference: Optional[str]) -> int:
    if reference is not None:
        wanted = Path(reference).resolve()
        for i, p in enumerate(paths):
            if p.resolve() == wanted:
                return i
        raise ValueError(f"--reference {reference} is not one of the compared files")
    for i, runner in enumerate(runners):
        if not runner.input.quantized and np.issubdtype(runner.input.dtype, np.floating):
            return i
    log.warning("no float-input variant among the compared files: %s is the reference", paths[0])
    return 0


def _pick_int8(runners: list, manifests: list, ref: int) -> Optional[int]:
    """The int8 variant shown beside the float reference: manifest variant "int8", else an int8 input."""
    for i, m in enumerate(manifests):
        if i != ref and m and m.get("variant") == "int8":
            return i
    for i, runner in enumerate(runners):
        if i != ref and np.dtype(runner.input.dtype) == np.int8:
            return i
    return None


def interleaved_latency(runners: list, inputs: list, config: CompareConfig) -> list:
    """Per-runner latency percentiles; timed runs alternate between runners in rounds."""
    for runner, quantized in zip(runners, inputs):
        timed_invokes(runner, quantized, config.warmup)
    rounds = min(_LATENCY_ROUNDS, config.runs)
    per_round = [config.runs // rounds + (1 if r < config.runs % rounds else 0) for r in range(rounds)]
    samples = [[] for _ in runners]
    for count in per_round:
        for i, (runner, quantized) in enumerate(zip(runners, inputs)):
            samples[i].append(timed_invokes(runner, quantized, count))
    return [{k: v for k, v in latency_percentiles(np.concatenate(s)).items() if k in LATENCY_KEYS}
            for s in samples]


def _model_info(config: CompareConfig, manifests: list) -> dict:
    """{"params", "macs"} from --keras (needs TensorFlow) or a manifest; None where unknown."""
    if config.keras:
        from edgemnist._tensorflow import MissingExtraError

        try:
            from edgemnist.training.model import load_keras_model, model_summary

            summary = model_summary(load_keras_model(config.keras))
            return {"params": summary["params"], "macs": summary["macs"]}
        except MissingExtraError as exc:
            log.warning("params and MACs left empty: %s", exc)
    for m in manifests:
        if m and (m.get("params") is not None or m.get("macs") is not None):
            return {"params": m.get("params"), "macs": m.get("macs")}
    return {"params": None, "macs": None}


def compare(paths: Sequence, out_dir, config: CompareConfig = CompareConfig()) -> dict:
    """Evaluates and times .tflite variants side by side and writes the report.

    Args:
        paths: the .tflite files (at least one).
        out_dir: folder for report.json, report.md and the PNG plots.
        config: comparison settings.

    Returns:
        The report.json content (see the module docstring).

    Raises:
        FileNotFoundError, ValueError, data.DataError: missing or malformed models or data.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("compare needs at least one .tflite file")
    if config.reference is not None and Path(config.reference).resolve() not in {p.resolve() for p in paths}:
        paths.insert(0, Path(config.reference))
    # the CPU interpreter for every variant, whatever the accelerator: the GPU runs beside it (compare_on_gpu)
    runners = [Runner(p, num_threads=config.runtime.threads, backend=config.runtime.backend) for p in paths]
    for runner in runners:
        check_digit_classifier(runner)
    manifests = [read_manifest(p) for p in paths]
    names = _unique_names(paths, [variant_name(p, m or {}) for p, m in zip(paths, manifests)])
    split = data.load_split("test", config.data_dir, config.limit, prepare=config.prepare)
    images = data.to_model_input(split.images)

    scores = [r.predict(images, batch_size=config.batch_size) for r in runners]
    predictions = [s.argmax(axis=1) for s in scores]
    ref = _pick_reference(paths, runners, config.reference)
    timing_images = images[: min(256, len(images))]
    latencies = interleaved_latency(
        runners, [[np.ascontiguousarray(r.quantize_input(img[np.newaxis])) for img in timing_images] for r in runners],
        config)

    variants = []
    for path, runner, name, pred, latency in zip(paths, runners, names, predictions, latencies):
        content = path.read_bytes()
        variants.append({
            "name": name,
            "path": Path(os.path.relpath(path.resolve(), Path(out_dir).resolve())).as_posix(),
            "bytes": len(content),
            "gzip_bytes": gzip_size(content),
            "accuracy": float(np.mean(pred == split.labels)),
            "agreement": float(np.mean(pred == predictions[ref])),
            "latency_us": latency,
            "backend": runner.backend.describe(),
            "threads": runner.num_threads,
        })
    report = {
        "variants": variants,
        "model": _model_info(config, manifests),
        "dataset": {"source": split.source, "split": "test", "n": len(split)},
        "machine": machine_info(),
    }
    if config.runtime.accelerator == "gpu":
        report["accelerators"] = {"gpu": compare_on_gpu(paths, variants, images, split.labels, scores, ref, config)}

    out_dir = Path(out_dir)
    int8 = _pick_int8(runners, manifests, ref)
    plots = {}
    if config.plots:
        plots = write_plots(out_dir, report, split, predictions, ref, int8, gpu_status_line(report))
    atomic_write_json(out_dir / "report.json", report)
    atomic_write_text(out_dir / "report.md", markdown_report(report, plots, variants[ref]["name"]))
    return report


def compare_on_gpu(paths: list, variants: list, images: np.ndarray, labels: np.ndarray, cpu_scores: list, ref: int,
                   config: CompareConfig) -> dict:
    """Runs every variant on LiteRT's GPU accelerator too and adds a "gpu" entry to each of `variants`.

    Each entry: {"accuracy", "agreement" (with the float reference on the CPU), "cpu_agreement"
    and "max_score_diff" (with the same file on the CPU), "latency_us" (timed runs interleaved
    across the GPU variants, reading the scores back), "startup_ms", "fully_accelerated",
    "gpu_ops", "cpu_ops", "fallback_ops"}, or {"error"} for a variant the accelerator cannot run.

    Returns:
        {"available": True, the device and precision (GpuRunner.accelerator_info's device keys)},
        or {"available": False, "reason"} where no GPU accelerator can run here: the report says
        so instead of failing.
    """
    runners, kept = [], []
    for i, path in enumerate(paths):
        try:
            runner = GpuRunner(path, precision=config.runtime.gpu_precision, num_threads=config.runtime.threads,
                               backend=config.runtime.backend)
        except AcceleratorUnavailableError as exc:
            log.info("gpu: not available (%s)", exc.reason)
            return {"available": False, "reason": exc.reason}
        except ValueError as exc:
            variants[i]["gpu"] = {"error": str(exc)}
            continue
        runners.append(runner)
        kept.append(i)
    if not runners:
        return {"available": True, "precision": config.runtime.gpu_precision}
    timing_images = images[: min(256, len(images))]
    latencies = interleaved_latency(
        runners, [[np.ascontiguousarray(r.quantize_input(img[np.newaxis])) for img in timing_images] for r in runners],
        config)
    for i, runner, latency in zip(kept, runners, latencies):
        gpu_scores = runner.predict(images, batch_size=config.batch_size)
        predicted = gpu_scores.argmax(axis=1)
        info = runner.accelerator_info()
        variants[i]["gpu"] = {
            "accuracy": float(np.mean(predicted == labels)),
            "agreement": float(np.mean(predicted == cpu_scores[ref].argmax(axis=1))),
            "cpu_agreement": float(np.mean(predicted == cpu_scores[i].argmax(axis=1))),
            "max_score_diff": float(np.abs(gpu_scores - cpu_scores[i]).max()),
            "latency_us": latency,
            "startup_ms": info["startup_ms"],
            "fully_accelerated": info["fully_accelerated"],
            "gpu_ops": info["gpu_ops"],
            "cpu_ops": info["cpu_ops"],
            "fallback_ops": info["fallback_ops"],
        }
    device = {k: v for k, v in runners[0].accelerator_info().items()
              if k in ("adapter", "vendor", "backend", "adapter_type", "software", "vulkan_icd", "precision", "max_batch")}
    return {"available": True, **device}


def gpu_status_line(report: dict) -> Optional[str]:
    """"gpu: not available (reason)" or "gpu: <adapter> ...", for reports asked to include the GPU; else None."""
    gpu = (report.get("accelerators") or {}).get("gpu")
    if gpu is None:
        return None
    if not gpu.get("available"):
        return f"gpu: not available ({gpu.get('reason')})"
    if not gpu.get("adapter"):
        return "gpu: no variant ran on the GPU accelerator (see each variant's error)"
    kind = "software: a CPU emulating a GPU, its latency is not a GPU's" if gpu.get("software") else gpu.get(
        "adapter_type")
    return f"gpu: {gpu['adapter']} ({kind}), {gpu.get('backend')} through LiteRT's WebGPU accelerator, {gpu['precision']}"


# --------------------------------------------------------------------------- tables


def row_from_bench(result: dict) -> dict:
    """A table row (the keys of one report.json variant) from an `edgemnist bench --json` result.

    Accuracy, agreement and gzip size are None: bench does not measure them.
    """
    backend = result.get("backend")
    if backend and result.get("backend_version"):
        backend = f"{backend} {result['backend_version']}"
    latency = result.get("latency_us") or {}
    device = result.get("device")
    name = result.get("name") or Path(str(result.get("model", "?"))).stem
    return {
        "name": f"{name} @ {device['name']}" if isinstance(device, dict) and device.get("name") else name,
        "path": result.get("model"),
        "bytes": result.get("bytes"),
        "gzip_bytes": result.get("gzip_bytes"),
        "accuracy": result.get("accuracy"),
        "agreement": result.get("agreement"),
        "latency_us": {k: latency.get(k) for k in LATENCY_KEYS},
        "backend": backend,
        "threads": result.get("threads"),
    }


def _cells(row: dict) -> list:
    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    lat = row.get("latency_us") or {}
    return [
        str(row.get("name", "?")),
        num(row.get("bytes"), ","),
        num(row.get("gzip_bytes"), ","),
        "-" if row.get("accuracy") is None else f"{row['accuracy']:.2%}",
        "-" if row.get("agreement") is None else f"{row['agreement']:.2%}",
        num(lat.get("p50"), ".1f"),
        num(lat.get("p99"), ".1f"),
    ]


TABLE_HEADER = ["variant", "bytes", "gzip bytes", "accuracy", "agreement", "p50 us", "p99 us"]
# Columns added when the variants also ran on the GPU accelerator (CPU and GPU side by side).
GPU_HEADER = ["GPU accuracy", "GPU = CPU", "GPU max diff", "GPU p50 us", "GPU start ms", "GPU ops"]


def _gpu_cells(row: dict) -> list:
    gpu = row.get("gpu")
    if not gpu:
        return ["-"] * len(GPU_HEADER)
    if gpu.get("error"):
        return ["failed"] + ["-"] * (len(GPU_HEADER) - 1)
    if gpu["fully_accelerated"]:
        ops = "all on GPU"
    elif gpu.get("cpu_ops") is not None and gpu.get("gpu_ops") is not None:
        ops = f"{gpu['cpu_ops']}/{gpu['cpu_ops'] + gpu['gpu_ops']} on CPU"
    else:
        ops = "some on CPU"
    return [f"{gpu['accuracy']:.2%}", f"{gpu['cpu_agreement']:.2%}", f"{gpu['max_score_diff']:.2g}",
            f"{gpu['latency_us']['p50']:.1f}", f"{gpu['startup_ms']:.0f}", ops]


def _header_and_cells(rows: Sequence[dict]) -> tuple[list, list]:
    if any("gpu" in r for r in rows):
        return TABLE_HEADER + GPU_HEADER, [_cells(r) + _gpu_cells(r) for r in rows]
    return TABLE_HEADER, [_cells(r) for r in rows]


def format_table(rows: Sequence[dict]) -> str:
    """A plain-text table of variant rows (report.json variants or `row_from_bench` rows); GPU columns
    beside the CPU's when the rows carry "gpu" entries."""
    header, body = _header_and_cells(rows)
    cells = [header] + body
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    lines = ["  ".join(c[i].ljust(widths[i]) if i == 0 else c[i].rjust(widths[i]) for i in range(len(c)))
             for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: Sequence[dict]) -> str:
    """The same table in Markdown."""
    header, body = _header_and_cells(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def markdown_report(report: dict, plots: dict, reference_name: str) -> str:
    """report.md: the table, where it ran, and the plots."""
    ds, m, model = report["dataset"], report["machine"], report["model"]
    backends = sorted({v["backend"] for v in report["variants"]})
    threads = sorted({v["threads"] for v in report["variants"]})
    lines = [
        "# edgemnist: variants compared",
        "",
        markdown_table(report["variants"]),
        "",
        f"- **Test set:** {ds['n']:,} images from {ds['source']}.",
        f"- **Agreement:** share of test images on which a variant predicts the same class as "
        f"the reference `{reference_name}`.",
        f"- **Latency:** single-image invoke, microseconds, {', '.join(backends)}, "
        f"{'/'.join(map(str, threads))} thread(s); timed runs interleaved across variants.",
        f"- **Machine:** {m['cpu']} ({m['cores']} cores, {m['machine']}), {m['system']}, Python {m['python']}.",
    ]
    gpu_line = gpu_status_line(report)
    if gpu_line:
        lines.append(f"- **GPU:** {gpu_line.removeprefix('gpu: ')}. GPU columns: accuracy, agreement with the "
                     "same file on the CPU, largest score difference from it, p50 latency (scores read back), "
                     "start-up (load, shader compilation, first run), ops left to the CPU.")
    if model.get("params") is not None or model.get("macs") is not None:
        params = "?" if model.get("params") is None else f"{model['params']:,}"
        macs = "?" if model.get("macs") is None else f"{model['macs']:,}"
        lines.append(f"- **Model:** {params} parameters, {macs} multiply-accumulates per image.")
    titles = {
        "accuracy_vs_size": "Accuracy against file size",
        "latency": "Latency per variant (p50 bar, p90 whisker, log scale)",
        "confusion": "Confusion matrices: float reference and int8",
        "disagreements": "Test digits where float and int8 disagree",
    }
    for key, file in plots.items():
        lines += ["", f"## {titles[key]}", "", f"![{titles[key]}]({file})"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- CLI


def add_commands(subparsers) -> None:
    """Registers `edgemnist compare`."""
    from edgemnist.measure.eval import add_runtime_arguments

    p = subparsers.add_parser(
        "compare",
        help="compare .tflite variants: table, plots, report.md, report.json",
        description="Evaluate and time several .tflite variants on the same test images in one run and "
        "write report.json, report.md and PNG plots (accuracy vs size, latency, float vs int8 confusion "
        "matrices, the digits where they disagree) to --out.",
    )
    p.add_argument("models", nargs="+",
                   help=".tflite files (a manifest <file>.tflite.json beside one names its variant); or result JSON "
                   "files of `bench --json` / `eval --json` from several machines, for device x variant tables")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--reference", help="the float reference for 'agreement' (default: the first float-input model)")
    p.add_argument("--test-limit", dest="limit", metavar="N", type=int, help="use the first N test images only")
    p.add_argument("--data-dir", help="data folder: IDX files or class folders 0/..9/ of 28x28 images or of real "
                   "photos, prepared as predict does (default: $EDGEMNIST_DATA or the shipped MNIST)")
    add_prepare_arguments(p)
    p.add_argument("--batch-size", type=int, default=CompareConfig.batch_size,
                   help="images per invoke (default %(default)s)")
    p.add_argument("--warmup", type=int, default=CompareConfig.warmup,
                   help="untimed invokes per variant (default %(default)s)")
    p.add_argument("--runs", type=int, default=CompareConfig.runs,
                   help="timed invokes per variant (default %(default)s)")
    p.add_argument("--from", dest="keras", metavar="MODEL",
                   help="the Keras model the variants were exported from: report its parameters and MACs")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    add_runtime_arguments(p, accelerator_help=(
        "cpu: the interpreter; gpu: every variant also on LiteRT's GPU accelerator, beside the CPU in one table and "
        "plot (without a usable GPU the report says 'gpu: not available (reason)') (default %(default)s)"))
    p.set_defaults(func=_run_compare)


def _run_compare(args):

    results = [m for m in args.models if str(m).endswith(".json")]
    if results:
        if len(results) != len(args.models):
            raise ValueError("give either .tflite models or result .json files, not both")
        return _run_compare_devices(args)
    for model in args.models:
        if not str(model).endswith(".tflite"):
            raise ValueError(f"{model}: not a .tflite file (or a result .json)")
    config = CompareConfig(reference=args.reference, limit=args.limit, data_dir=args.data_dir, prepare=args.prepare,
                           batch_size=args.batch_size, warmup=args.warmup, runs=args.runs, keras=args.keras,
                           plots=not args.no_plots, runtime=runtime_settings(args))
    report = compare(args.models, args.out, config)
    gpu_line = gpu_status_line(report)
    return Output(report, f"{format_table(report['variants'])}\n" + (f"{gpu_line}\n" if gpu_line else "")
                  + f"wrote {Path(args.out) / 'report.md'} and report.json")


def _run_compare_devices(args):
    """Device x variant tables from bench/eval result JSON of several machines (devices.json, devices.png)."""
    from edgemnist.measure import devices

    table = devices.write_device_tables(args.models, Path(args.out), plot=not args.no_plots)
    return Output(table, f"{devices.format_device_tables(table)}\nwrote {Path(args.out) / 'devices.json'}")
