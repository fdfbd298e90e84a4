"""The PNG plots of `edgemnist compare`: accuracy against size, latency, confusion, disagreements, devices.

Usage: from edgemnist.measure.plots import write_plots; write_plots(out_dir, report, split, predictions, ref, int8)

matplotlib is optional (the plots extra); each figure is written atomically by `save_png`.
compare.py (reports of .tflite variants) and devices.py (tables of several machines) both
draw through here, so neither imports the other for plotting.
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from edgemnist.artifacts import atomic_write_with
from edgemnist.measure.eval import confusion_matrix

log = logging.getLogger(__name__)

PLOT_FILES = {
    "accuracy_vs_size": "accuracy_vs_size.png",
    "latency": "latency.png",
    "confusion": "confusion_float_vs_int8.png",
    "disagreements": "disagreements.png",
}
_MAX_DISAGREEMENTS_SHOWN = 40


def save_png(fig, path) -> None:
    """Writes a matplotlib figure to `path` as PNG, atomically (every plot of compare's reports and devices.png)."""
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"), suffix=".png")


def accuracy_vs_size_figure(variants: Sequence[dict], n: int):
    """Accuracy against file size, one marker per variant, named in a legend beside the axes.

    Variants often sit on top of each other (same size, accuracies 0.01 pp apart), so the
    names are not written at the points, where they would overlap: each variant gets its
    own colour and marker, and the legend lists it with its size and accuracy.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    colors = plt.get_cmap("tab20").colors
    markers = "osD^vP*Xh<>p"
    for i, v in enumerate(variants):
        kib, acc = v["bytes"] / 1024, v["accuracy"] * 100
        ax.scatter(kib, acc, s=46, color=colors[i % len(colors)], marker=markers[i % len(markers)],
                   edgecolors="black", linewidths=0.4, label=f"{v['name']} ({kib:.1f} KiB, {acc:.2f} %)")
    ax.set_xlabel("file size (KiB)")
    ax.set_ylabel(f"test accuracy (%), n={n:,}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)
    return fig


def latency_figure(variants: Sequence[dict], gpu_line: Optional[str] = None):
    """p50 bars with p90 whiskers per variant, on a log axis, CPU and (when measured) GPU side by side.

    A log axis keeps every bar readable when one variant is many times slower than the rest,
    and each value is written just past its whisker, never inside a bar that may be a sliver.
    p90, not p99: on a shared machine one preempted run makes p99 dwarf every bar (p99 is in the table).
    `gpu_line` (compare.gpu_status_line) names the GPU under the axis when a GPU series is shown.
    """
    import matplotlib.pyplot as plt

    series = [("CPU", "#4C72B0", [v["latency_us"] for v in variants])]
    if any((v.get("gpu") or {}).get("latency_us") for v in variants):
        series.append(("GPU", "#DD8452", [(v.get("gpu") or {}).get("latency_us") for v in variants]))
    height = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(7.5, (0.3 + 0.25 * len(series)) * len(variants) + 1.4))
    largest = 0.0
    for k, (label, color, latencies) in enumerate(series):
        y = np.arange(len(variants)) + (k - (len(series) - 1) / 2) * height
        shown = [(yi, lat["p50"], max(lat["p90"], lat["p50"])) for yi, lat in zip(y, latencies) if lat]
        if not shown:
            continue
        ys, p50, p90 = (np.array(column) for column in zip(*shown))
        ax.barh(ys, p50, height * 0.9, color=color, label=label)
        ax.errorbar(p50, ys, xerr=[np.zeros_like(p50), p90 - p50], fmt="none", ecolor="black", capsize=2, lw=0.8)
        for yi, value, end in zip(ys, p50, p90):
            ax.text(end * 1.08, yi, f"{value:,.0f}" if value >= 10 else f"{value:.1f}", va="center", ha="left",
                    fontsize=7)
        largest = max(largest, float(p90.max()))
    if len(series) > 1:
        for i, v in enumerate(variants):
            if (v.get("gpu") or {}).get("error"):
                ax.text(0.01, i + height / 2, "GPU: failed (see report.json)", transform=ax.get_yaxis_transform(),
                        va="center", ha="left", fontsize=7, color="#DD8452")
    ax.set_xscale("log")
    ax.set_xlim(right=largest * 3)  # room for the labels past the longest whisker
    ax.set_yticks(np.arange(len(variants)), [v["name"] for v in variants], fontsize=8)
    ax.invert_yaxis()
    cpu = f"CPU: {variants[0]['backend']}, {variants[0]['threads']} thread(s)"
    gpu_line = gpu_line if len(series) > 1 else None
    ax.set_xlabel(f"single-image latency (us, log scale), p50 bar, p90 whisker\n{cpu}"
                  + (f"\n{gpu_line}" if gpu_line else ""), fontsize=8)
    if len(series) > 1:
        ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", which="both", alpha=0.3)
    return fig


def write_plots(out_dir: Path, report: dict, split, predictions: list, ref: int,
                int8: Optional[int], gpu_line: Optional[str] = None) -> dict:
    """Writes compare's PNG plots; returns {plot key: file name} of those written (empty without matplotlib).

    Args:
        out_dir: the report folder.
        report: compare's report (its "variants" and "dataset").
        split: the test digits (a data.Split) the predictions are of.
        predictions: predicted classes per variant.
        ref, int8: indices of the reference and the int8 variant (None: no confusion or
            disagreement plots).
        gpu_line: the GPU's description for the latency plot (compare.gpu_status_line).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: skipping the plots (pip install 'edgemnist[plots]')")
        return {}
    written = {}
    variants = report["variants"]
    names = [v["name"] for v in variants]

    fig = accuracy_vs_size_figure(variants, report["dataset"]["n"])
    save_png(fig, out_dir / PLOT_FILES["accuracy_vs_size"])
    plt.close(fig)
    written["accuracy_vs_size"] = PLOT_FILES["accuracy_vs_size"]

    fig = latency_figure(variants, gpu_line)
    save_png(fig, out_dir / PLOT_FILES["latency"])
    plt.close(fig)
    written["latency"] = PLOT_FILES["latency"]

    if int8 is None:
        log.info("no int8 variant besides the reference: no confusion or disagreement plots")
        return written
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
    for ax, i in zip(axes, (ref, int8)):
        cm = confusion_matrix(split.labels, predictions[i])
        shown = np.log1p(cm)  # the diagonal dwarfs the errors otherwise
        ax.imshow(shown, cmap="Blues")
        for (r, c), count in np.ndenumerate(cm):
            if count:
                ax.text(c, r, str(count), ha="center", va="center", fontsize=6,
                        color="white" if shown[r, c] > shown.max() * 0.6 else "black")
        ax.set_title(f"{names[i]}: {variants[i]['accuracy']:.2%}", fontsize=10)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_xticks(range(10))
        ax.set_yticks(range(10))
    save_png(fig, out_dir / PLOT_FILES["confusion"])
    plt.close(fig)
    written["confusion"] = PLOT_FILES["confusion"]

    differ = np.flatnonzero(predictions[ref] != predictions[int8])
    shown = differ[:_MAX_DISAGREEMENTS_SHOWN]
    cols = 10
    rows = max(1, math.ceil(len(shown) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.35 + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, idx in zip(axes.flat, shown):
        ax.imshow(split.images[idx], cmap="gray_r")
        ax.set_title(f"#{idx} y={split.labels[idx]}\n{predictions[ref][idx]} vs {predictions[int8][idx]}", fontsize=7)
    fig.suptitle(f"{len(differ)} of {len(split):,} test digits where {names[ref]} and {names[int8]} disagree"
                 + (f" (first {len(shown)} shown)" if len(differ) > len(shown) else "")
                 + "; caption: index, label, float vs int8", fontsize=9)
    save_png(fig, out_dir / PLOT_FILES["disagreements"])
    plt.close(fig)
    written["disagreements"] = PLOT_FILES["disagreements"]
    return written


def plot_devices(table: dict, out_png: str | os.PathLike) -> Path:
    """Writes a grouped bar chart of p50 latency per variant and device (log scale) as PNG.

    Raises:
        ImportError: matplotlib is not installed (pip install 'edgemnist[plots]').
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = table["variants"]
    devices = [d for d in table["devices"] if any(c.get("p50_us") for c in table["cells"][d].values())]
    width = 0.8 / max(len(devices), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(variants) + 2), 4))
    for i, device in enumerate(devices):
        row = table["cells"][device]
        values = [row.get(v, {}).get("p50_us") or 0 for v in variants]
        emulated = any(c.get("emulated") for c in row.values())
        ax.bar([x + i * width for x in range(len(variants))], values, width,
               label=device + (" (emulated)" if emulated and "emulated" not in device else ""),
               hatch="//" if emulated else None)
    ax.set_xticks([x + width * (len(devices) - 1) / 2 for x in range(len(variants))], variants)
    ax.set_yscale("log")
    ax.set_ylabel("p50 latency per image (us, log)")
    ax.set_title("edgemnist bench: variants x devices")
    ax.legend(fontsize=7)
    save_png(fig, out_png)
    plt.close(fig)
    return Path(out_png)
