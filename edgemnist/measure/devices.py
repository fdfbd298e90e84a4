"""Device x variant tables and a latency plot from result JSON of several machines.

Usage: edgemnist compare pi.json laptop.json mcu.json --out runs/devices      (devices.json, devices.png)

`compare` given result files instead of .tflite models gathers `bench --json` (local or
`--remote`), `eval --json` and `mcu --json` results into one table per measure: a row per
device, a column per variant.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Sequence

from edgemnist.artifacts import atomic_write_json

log = logging.getLogger(__name__)


def device_label(result: dict) -> str:
    """The device a bench/eval result was measured on: the GPU adapter (`--accelerator gpu`), else the
    remote device name, else CPU [arch]."""
    gpu = result.get("accelerator")
    if isinstance(gpu, dict) and gpu.get("adapter"):
        kind = "software GPU" if gpu.get("software") else "GPU"
        return f"{gpu['adapter']} ({kind}, LiteRT {gpu.get('precision', '?')})"
    if isinstance(result.get("remote"), dict) and result["remote"].get("device"):
        return str(result["remote"]["device"])
    machine = result.get("machine") or {}
    if isinstance(machine, dict) and machine.get("cpu"):
        return f"{machine['cpu']} [{machine.get('machine', '?')}]"
    return "unknown device"


def _load_results(path: Path) -> list[dict]:
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such result file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: not a JSON result file ({exc})") from None
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(item, dict) and "model" in item for item in items):
        raise ValueError(f"{path}: expected `edgemnist bench --json` or `eval --json` output (objects with a 'model' key)")
    return items


def compare_devices(paths: Sequence[str | os.PathLike]) -> dict:
    """Gathers bench and eval JSON results from several machines into device x variant tables.

    A variant is the model file's stem (e.g. model_int8); a device is `device_label`. Bench
    results give p50 latency and throughput, eval results accuracy (an eval result without a
    machine tag counts for every device that benchmarked that variant: the x86 and aarch64
    runs were checked to agree).

    Args:
        paths: JSON files written by `edgemnist bench --json` / `eval --json` / `mcu --json`
            (one object or a list). An mcu result is the device "<cpu> <kernels> (QEMU)".

    Returns:
        {"devices": [...], "variants": [...], "cells": {device: {variant: {"p50_us",
        "throughput_ips", "accuracy", "threads", "backend", "emulated"} or, for mcu results,
        {"instructions", "bit_exact", "flash_bytes", "ram_bytes", "emulated"}}}, "sources": [...]}.

    Raises:
        FileNotFoundError: a file is missing. ValueError: a file is not a result.
    """
    cells: dict[str, dict[str, dict]] = {}
    accuracy_any: dict[str, float] = {}
    for path in map(Path, paths):
        for result in _load_results(path):
            if "instructions" in result and "kernels" in result:  # `edgemnist mcu --json`
                variant = Path(str(result["model"]["name"])).stem
                cell = cells.setdefault(f"{result['cpu']} {result['kernels']} (QEMU)", {}).setdefault(variant, {})
                cell.update(instructions=result["instructions"]["per_inference_mean"], emulated=True,
                            bit_exact=result["ok"], flash_bytes=result["memory"]["flash_bytes"],
                            ram_bytes=result["memory"]["ram_bytes"])
                continue
            variant = Path(str(result["model"])).stem
            if "latency_us" in result:
                cell = cells.setdefault(device_label(result), {}).setdefault(variant, {})
                cell.update(
                    p50_us=result["latency_us"].get("p50"),
                    throughput_ips=(result.get("throughput") or {}).get("images_per_second"),
                    threads=result.get("threads"),
                    backend=f"{result.get('backend')} {result.get('backend_version')}",
                    # a software GPU (SwiftShader) is a CPU emulating one: flagged like an emulated board
                    emulated=bool((result.get("remote") or {}).get("emulated"))
                    or bool((result.get("accelerator") or {}).get("software")),
                )
            elif "accuracy" in result:
                if result.get("remote") or result.get("machine") or result.get("accelerator"):
                    cells.setdefault(device_label(result), {}).setdefault(variant, {})["accuracy"] = result["accuracy"]
                else:
                    accuracy_any[variant] = result["accuracy"]
            else:
                raise ValueError(f"{path}: result for {result['model']} has neither latency_us nor accuracy")
    for row in cells.values():
        for variant, cell in row.items():
            if "accuracy" not in cell and variant in accuracy_any:
                cell["accuracy"] = accuracy_any[variant]
    variants = sorted({v for row in cells.values() for v in row} | set(accuracy_any))
    return {"devices": sorted(cells), "variants": variants, "cells": cells, "sources": [str(p) for p in paths]}


def write_device_tables(paths: Sequence[str | os.PathLike], out: Path, plot: bool = True) -> dict:
    """`compare_devices(paths)` written to out/devices.json, and its latency plot to out/devices.png (without
    matplotlib: a warning, no plot). Returns the table."""
    table = compare_devices(paths)
    atomic_write_json(out / "devices.json", table)
    if plot:
        try:
            from edgemnist.measure.plots import plot_devices

            plot_devices(table, out / "devices.png")
        except ImportError:
            log.warning("matplotlib is not installed: no devices.png (pip install 'edgemnist[plots]')")
    return table


def format_device_tables(table: dict) -> str:
    """Markdown tables (accuracy, p50 latency, throughput), one row per device, one column per variant."""
    def fmt(value, kind):
        if value is None:
            return "-"
        if kind == "bit_exact":
            return "yes" if value else "NO"
        return {"accuracy": f"{100 * value:.2f} %", "p50_us": f"{value:,.1f}", "throughput_ips": f"{value:,.0f}",
                "instructions": f"{value:,}"}[kind]

    blocks = []
    kinds = [("accuracy", "accuracy"), ("p50_us", "p50 latency (us, 1 image)"),
             ("throughput_ips", "throughput (images/s, batched)")]
    if any("instructions" in cell for row in table["cells"].values() for cell in row.values()):
        kinds += [("instructions", "instructions per inference (Cortex-M under QEMU: counts, not timings)"),
                  ("bit_exact", "every int8 score bit-exact with the host (Cortex-M under QEMU)")]
    for kind, title in kinds:
        lines = [f"{title}", "", "| device | " + " | ".join(table["variants"]) + " |",
                 "|---|" + "---|" * len(table["variants"])]
        for device in table["devices"]:
            row = table["cells"][device]
            if not any(kind in cell for cell in row.values()) and kind != "accuracy":
                continue
            emulated = any(c.get("emulated") for c in row.values())
            name = device + (" (EMULATED: not the real device's speed)" if emulated and kind != "accuracy" else "")
            lines.append(f"| {name} | " + " | ".join(fmt(row.get(v, {}).get(kind), kind) for v in table["variants"]) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
