"""The manifest written beside every exported .tflite: what it is, where it came from, what it holds.

Usage: from edgemnist.export.manifest import build_manifest; build_manifest(converted, variant, settings)

The keys are documented in docs/outputs.md. Everything is read from the .tflite itself
with the one TFLite reader (runtime/tflite_reader.py), plus the converter's versions.
"""
from __future__ import annotations

import numpy as np

from edgemnist.artifacts import gzip_size, sha256_bytes


_WEIGHT_OPS = {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1}


def weight_sparsity(tflite: bytes) -> dict:
    """Fraction of exactly-zero weights in each conv/dense kernel of a .tflite, and overall.

    Read with the one TFLite reader (runtime/tflite_reader.py). Follows a DEQUANTIZE to its
    constant (float16 weights). int4 weights are unpacked.
    """
    from edgemnist.runtime.tflite_reader import read_model

    graph = read_model(tflite, name="exported model").main
    producer = {out: op for op in graph.operators for out in op.outputs}
    layers, zeros_total, count_total = {}, 0, 0
    for op in graph.operators:
        if op.op not in _WEIGHT_OPS or len(op.inputs) < 2:
            continue
        index = op.inputs[_WEIGHT_OPS[op.op]]
        if index in producer and producer[index].op == "DEQUANTIZE":
            index = producer[index].inputs[0]
        tensor = graph.tensors[index]
        if not tensor.data or tensor.dtype not in ("float32", "float16", "int8", "uint8", "int4"):
            continue
        count = int(np.prod(tensor.shape))
        if tensor.dtype == "int4":
            packed = np.frombuffer(tensor.data, dtype=np.uint8)
            values = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(-1)[:count]
        else:
            values = np.frombuffer(tensor.data, dtype=np.dtype(tensor.dtype).newbyteorder("<"))
        zeros = int(np.count_nonzero(values == 0))
        label = tensor.name.split(";")[0] if tensor.name else f"{op.op}#{len(layers)}"
        layers[label] = round(zeros / max(count, 1), 4)
        zeros_total += zeros
        count_total += count
    return {"overall": round(zeros_total / max(count_total, 1), 4), "layers": layers, "weights": count_total}


def build_manifest(converted, variant, settings: dict) -> dict:
    """The manifest of one exported .tflite, as a JSON-ready dict.

    Args:
        converted: a `convert.Converted` (the final bytes, the unstripped ones, the source).
        variant: the `convert.Variant` row it was made by.
        settings: the export settings that shaped it.

    Returns:
        The manifest (keys in docs/outputs.md).
    """
    from edgemnist.runtime.tflite_info import io_tensors
    from edgemnist.runtime.tflite_reader import read_model

    tflite = converted.tflite
    model = read_model(tflite, name="exported model")
    io = io_tensors(model)
    v = variant
    return {
        "variant": v.name,
        "description": v.description,
        "quantizer": v.quantizer,
        "recipe": v.recipe,
        "source": converted.source,
        "source_sha256": converted.source_sha256,
        "sha256": sha256_bytes(tflite),
        "bytes": len(tflite),
        "gzip_bytes": gzip_size(tflite),
        "inputs": io["inputs"],
        "outputs": io["outputs"],
        "ops": list(model.ops),
        "sparsity": weight_sparsity(converted.unstripped),  # same weights, tensor names intact
        "converter": _converter_versions(v.quantizer),
        "settings": settings,
    }


def _converter_versions(quantizer: str) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    packages = ("tensorflow",) if quantizer == "tflite" else ("ai-edge-quantizer", "ai-edge-litert")
    found = {}
    for package in packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    name = "TFLiteConverter" if quantizer == "tflite" else "ai_edge_quantizer.Quantizer"
    return {"name": name, "versions": found}
