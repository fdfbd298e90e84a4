"""Describe a .tflite without TensorFlow: ops, inputs and outputs, tensors, quantization, where the bytes go.

Usage: edgemnist info model.tflite [--json]

The description (`describe`, `io_tensors`, `format_description`) of what the bounds-checked
reader (tflite_reader.py) finds, with op names from the schema tables (tflite_schema.py).
The reader's and the tables' names are importable from here too, as `tflite_info.read_model`
and so on, so callers need one module for a .tflite's facts.
"""
from __future__ import annotations

from collections import Counter
from typing import Optional

from edgemnist.runtime.tflite_reader import (  # noqa: F401 - re-exported: the one module for a .tflite's facts
    BREAKDOWN_KEYS, MAX_RANK, MAX_TABLES, MAX_TENSOR_BYTES, OperatorCode, OperatorInfo, Quantization,
    SignatureInfo, SubgraphInfo, TensorInfo, TFLiteFormatError, TFLiteModel, check_tflite_file, read_model,
    validate,
)
from edgemnist.runtime.tflite_schema import (  # noqa: F401 - re-exported
    BUILTIN_OPS, FILE_IDENTIFIER, SCHEMA_VERSION, TENSOR_TYPES, op_name,
)


def _quantization_pair(tensor: TensorInfo) -> Optional[tuple]:
    if tensor.scale is None or tensor.dtype not in ("int8", "uint8", "int16", "int32", "int4"):
        return None
    return (float(tensor.scale), int(tensor.zero_point))


def input_quantization(model: TFLiteModel, index: int = 0) -> Optional[tuple]:
    """(scale, zero_point) of the model's input `index` if it is quantized, else None."""
    return _quantization_pair(model.inputs[index])


def output_quantization(model: TFLiteModel, index: int = 0) -> Optional[tuple]:
    """(scale, zero_point) of the model's output `index` if it is quantized, else None."""
    return _quantization_pair(model.outputs[index])


def _tensor_dict(t: TensorInfo) -> dict:
    q = t.quantization
    return {
        "index": t.index,
        "name": t.name,
        "shape": list(t.shape),
        "dtype": t.dtype,
        "bytes": len(t.data),
        "constant": bool(len(t.data)),
        "scale": t.scale,
        "zero_point": t.zero_point,
        "channels": len(q.scales) if q else 0,
    }


def io_tensor(tensor: TensorInfo) -> dict:
    """A graph input or output as export manifests and `edgemnist info` describe it.

    Returns:
        {"name", "shape", "dtype", "scale", "zero_point"}; scale and zero point are None
        unless the tensor has exactly one of each (a float tensor has none, a per-channel
        one several), as an interpreter's quantization_parameters give them.
    """
    q = tensor.quantization
    per_tensor = q is not None and len(q.scales) == 1
    return {
        "name": tensor.name,
        "shape": [int(d) for d in tensor.shape],
        "dtype": tensor.dtype,
        "scale": float(q.scales[0]) if per_tensor else None,
        "zero_point": int(tensor.zero_point) if per_tensor else None,
    }


def io_tensors(path_or_model) -> dict:
    """{"inputs": [...], "outputs": [...]} of a model's main subgraph, each entry an `io_tensor`.

    Args:
        path_or_model: a path, the file's bytes, or a `TFLiteModel` already read.

    Raises:
        TFLiteFormatError: the file is not a well-formed TFLite model.
    """
    model = path_or_model if isinstance(path_or_model, TFLiteModel) else read_model(path_or_model)
    return {"inputs": [io_tensor(t) for t in model.inputs], "outputs": [io_tensor(t) for t in model.outputs]}


def describe(path_or_model, name: Optional[str] = None) -> dict:
    """A JSON-ready description of a .tflite: ops, inputs/outputs, tensors and where the bytes go.

    Args:
        path_or_model: a path, the file's bytes, or a `TFLiteModel` already read.

    Returns:
        {"path", "bytes", "sha256", "version", "description", "ops", "op_counts",
        "inputs", "outputs", "tensors", "subgraphs", "metadata", "signatures",
        "bytes_breakdown": {"weights", "quantization", "names", "metadata", "other"}}.

    Raises:
        TFLiteFormatError: the file is not a well-formed TFLite model.
    """
    model = path_or_model if isinstance(path_or_model, TFLiteModel) else validate(path_or_model, name)
    return {
        "path": model.name,
        "bytes": model.size,
        "sha256": model.sha256,
        "version": model.version,
        "description": model.description,
        "ops": model.ops,
        "op_counts": dict(sorted(Counter(model.ops).items())),
        **io_tensors(model),
        "tensors": [_tensor_dict(t) for t in model.tensors],
        "subgraphs": len(model.subgraphs),
        "metadata": {n: len(data) for n, _, data in model.metadata},
        "signatures": [s.key for s in model.signatures],
        "bytes_breakdown": dict(model.bytes_breakdown),
    }


def _fmt_q(entry: dict) -> str:
    if entry["scale"] is None:
        return ""
    return f"scale {entry['scale']:.6g}, zero point {entry['zero_point']}"


def format_description(info: dict) -> str:
    """Human-readable text for `describe`'s dict."""
    lines = [
        f"{info['path']}: {info['bytes']:,} bytes, schema v{info['version']}, sha256 {info['sha256'][:16]}",
    ]
    if info["description"]:
        lines.append(f"description: {info['description']}")
    for kind in ("inputs", "outputs"):
        for t in info[kind]:
            lines.append(f"{kind[:-1]:<7} {t['name']}: {t['dtype']} {t['shape']}  {_fmt_q(t)}".rstrip())
    lines.append(f"ops ({len(info['ops'])} in execution order): " + " -> ".join(info["ops"]))
    lines.append("op counts: " + ", ".join(f"{k} x{v}" for k, v in info["op_counts"].items()))
    lines.append("")
    lines.append(f"{'#':>4}  {'tensor':<48} {'dtype':<8} {'shape':<18} {'const bytes':>11}  quantization")
    for t in info["tensors"]:
        quant = _fmt_q(t)
        if t["channels"] > 1:
            quant = f"per-channel ({t['channels']} scales)"
        name = t["name"] if len(t["name"]) <= 48 else "..." + t["name"][-45:]
        lines.append(
            f"{t['index']:>4}  {name:<48} {t['dtype']:<8} {str(t['shape']):<18} "
            f"{t['bytes'] if t['constant'] else '':>11}  {quant}".rstrip()
        )
    lines.append("")
    total = info["bytes"] or 1
    lines.append("where the bytes go:")
    for key in BREAKDOWN_KEYS:
        n = info["bytes_breakdown"][key]
        lines.append(f"  {key:<13} {n:>10,}  {100.0 * n / total:5.1f} %")
    if info.get("metadata"):
        lines.append("metadata buffers: " + ", ".join(f"{k} ({v} B)" for k, v in info["metadata"].items()))
    return "\n".join(lines)
