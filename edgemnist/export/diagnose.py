"""Per-layer quantization error of the int8 model against float, and selective quantization.

Usage: edgemnist diagnose --from runs/default/model.keras --out runs/default/diagnose [--keep-float 2]

Runs TensorFlow's `tf.lite.experimental.QuantizationDebugger` on the model (traced with a
static batch of 1, as convert.py exports it) over real training images. For every
quantized tensor it reports the RMSE between the int8 result and the float result,
divided by the tensor's quantization scale: 0.29 (1/sqrt(12)) is the rounding error alone;
much more means the layer loses information. `--keep-float K` exports a selectively
quantized model that keeps the K worst layers in float (the debugger's `denylisted_nodes`)
and measures what that buys on test digits. Selective models have float input and output.
"""
from __future__ import annotations

import csv
import io
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from edgemnist.output import Output

ROUNDING_ONLY = 1 / math.sqrt(12)  # RMSE/scale of uniform rounding error


@dataclass(frozen=True)
class DiagnoseConfig:
    """Settings of `edgemnist diagnose`."""

    samples: int = 200  # training images the debugger runs (calibration and statistics)
    keep_float: int = 0  # worst layers kept in float in the selectively quantized export (0: none)
    eval_size: int = 1000  # test digits that measure int8 and selective accuracy (0: skip)
    top: int = 5  # worst layers printed
    seed: int = 0
    data_dir: Optional[str] = None  # (None: $EDGEMNIST_DATA or the shipped MNIST)

    def __post_init__(self):
        if not 1 <= int(self.samples) <= 60000:
            raise ValueError(f"samples must be in 1..60000, got {self.samples}")
        if int(self.keep_float) < 0:
            raise ValueError(f"keep_float must be >= 0, got {self.keep_float}")
        if not 0 <= int(self.eval_size) <= 10000:
            raise ValueError(f"eval_size must be in 0..10000, got {self.eval_size}")
        if int(self.top) < 1:
            raise ValueError(f"top must be >= 1, got {self.top}")


def _debugger(model, images: np.ndarray, denylisted_nodes: Optional[list] = None):
    from edgemnist._tensorflow import import_tensorflow
    from edgemnist.export.tflite_converter import tflite_converter

    tf = import_tensorflow()
    converter = tflite_converter(model, batch_size=1)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]

    def dataset():
        for i in range(len(images)):
            yield [images[i : i + 1]]

    converter.representative_dataset = dataset
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=denylisted_nodes)
    return tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=dataset,
                                                     debug_options=options)


def layer_errors(debugger) -> list:
    """Rows of per-tensor error statistics, worst RMSE/scale first."""
    debugger.run()
    buf = io.StringIO()
    debugger.layer_statistics_dump(buf)
    rows = []
    for row in csv.DictReader(io.StringIO(buf.getvalue())):
        scale = float(row["scale"])
        mse = float(row["mean_squared_error"])
        rows.append({
            "tensor": row["tensor_name"],
            "layer": row["tensor_name"].split(";")[0],  # the converter joins fused ops' names with ';'
            "op": row["op_name"],
            "tensor_index": int(row["tensor_idx"]),
            "scale": scale,
            "zero_point": int(row["zero_point"]),
            "rmse": math.sqrt(mse),
            "rmse_over_scale": math.sqrt(mse) / scale if scale else float("nan"),
            "max_abs_error": float(row.get("max_abs_error", "nan")),
            "mean_error": float(row.get("mean_error", "nan")),
        })
    rows.sort(key=lambda r: -np.nan_to_num(r["rmse_over_scale"], nan=-1.0))
    return rows


def _accuracy(tflite: bytes, split) -> float:
    from ai_edge_litert.interpreter import Interpreter

    from edgemnist import data
    from edgemnist.runtime.quantize import quantize

    interpreter = Interpreter(model_content=tflite)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    correct = 0
    for image, label in zip(split.images, split.labels):
        x = data.to_model_input(image[np.newaxis])
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            x = quantize(x, scale, zero, inp["dtype"])
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        correct += int(np.argmax(interpreter.get_tensor(out["index"])) == label)
    return correct / max(len(split), 1)


def diagnose(model_or_path, out=None, config: DiagnoseConfig = DiagnoseConfig()) -> dict:
    """Per-layer int8 error; with `keep_float`, also a selectively quantized export.

    Args:
        model_or_path: a float Keras model or .keras path.
        out: folder for diagnose.json (and selective_int8.tflite); None writes nothing.
        config: settings.

    Returns:
        {"source", "samples", "layers": [{"tensor", "op", "rmse", "rmse_over_scale", ...}],
         "worst": [tensor names], "accuracy": {"float", "int8", "selective"} or None,
         "selective": {"path", "bytes", "float_layers"} or None, "config"}.
    """
    from edgemnist import data
    from edgemnist.artifacts import atomic_write_bytes, atomic_write_json
    from edgemnist.export import convert
    from edgemnist.export.strip import strip_model

    model, _, source = convert.load_source(model_or_path)
    images = convert.representative_images(
        convert.ExportConfig(representative_size=config.samples, representative_seed=config.seed,
                             data_dir=config.data_dir))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the debugger runs tf.lite.Interpreter, which warns it is deprecated
        debugger = _debugger(model, images)
        rows = layer_errors(debugger)
    result = {"source": source, "samples": len(images), "layers": rows,
              "worst": [r["tensor"] for r in rows[: config.top]], "accuracy": None, "selective": None,
              "config": asdict(config)}
    selective = None
    if config.keep_float:
        float_layers = [r["tensor"] for r in rows[: config.keep_float]]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            selective = strip_model(_debugger(model, images, float_layers).get_nondebug_quantized_model())
        result["selective"] = {"bytes": len(selective), "float_layers": float_layers, "path": None}
    if config.eval_size:
        test = data.load_split("test", config.data_dir, config.eval_size)
        float_tflite = convert.convert_variant(model, "float32").tflite
        result["accuracy"] = {
            "test_examples": len(test),
            "float": _accuracy(float_tflite, test),
            "int8": _accuracy(debugger.get_nondebug_quantized_model(), test),
            "selective": _accuracy(selective, test) if selective is not None else None,
        }
    if out is not None:
        out = Path(out)
        if selective is not None:
            path = atomic_write_bytes(out / "selective_int8.tflite", selective)
            result["selective"]["path"] = str(path)
        atomic_write_json(out / "diagnose.json", result)
    return result


def format_diagnosis(result: dict, top: int = 5) -> str:
    """The worst layers as a human table."""
    lines = [f"{result['source']}: int8 vs float over {result['samples']} training images "
             f"(RMSE/scale {ROUNDING_ONLY:.2f} is rounding alone)",
             f"{'rmse/scale':>10}{'rmse':>10}{'scale':>10}  {'op':<18} tensor"]
    for r in result["layers"][:top]:
        lines.append(f"{r['rmse_over_scale']:>10.3f}{r['rmse']:>10.4f}{r['scale']:>10.4f}  {r['op']:<18} {r['layer']}")
    acc = result.get("accuracy")
    if acc:
        line = f"test accuracy on {acc['test_examples']:,} digits: float {acc['float']:.2%}, int8 {acc['int8']:.2%}"
        if acc["selective"] is not None:
            line += f", selective {acc['selective']:.2%}"
        lines.append(line)
    if result.get("selective"):
        sel = result["selective"]
        lines.append(f"selective model ({len(sel['float_layers'])} layers in float, float I/O): "
                     f"{sel['bytes']:,} bytes -> {sel['path'] or '(not written)'}")
    return "\n".join(lines)


def add_commands(subparsers) -> None:
    """Registers `edgemnist diagnose`."""
    p = subparsers.add_parser(
        "diagnose",
        help="per-layer int8 quantization error (TFLite QuantizationDebugger), selective quantization",
        description="Compare every int8 tensor with its float counterpart (RMSE divided by the quantization "
        "scale) and print the layers that lose most; --keep-float K exports selective_int8.tflite keeping "
        "the K worst layers in float. Writes diagnose.json.",
    )
    p.add_argument("--from", dest="model", metavar="MODEL", required=True, help="the trained float model (.keras)")
    p.add_argument("--out", help="output folder for diagnose.json and selective_int8.tflite")
    p.add_argument("--keep-float", type=int, default=DiagnoseConfig.keep_float,
                   help="keep the K worst layers in float (default %(default)s)")
    p.add_argument("--samples", type=int, default=DiagnoseConfig.samples,
                   help="training images to run (default %(default)s)")
    p.add_argument("--eval-size", type=int, default=DiagnoseConfig.eval_size,
                   help="test digits for the accuracy comparison (default %(default)s, 0 skips)")
    p.add_argument("--top", type=int, default=DiagnoseConfig.top, help="worst layers to print (default %(default)s)")
    p.add_argument("--data-dir", help="data folder (default: $EDGEMNIST_DATA or the shipped MNIST)")
    p.set_defaults(func=_run_diagnose)


def _run_diagnose(args):
    config = DiagnoseConfig(samples=args.samples, keep_float=args.keep_float, eval_size=args.eval_size,
                            top=args.top, data_dir=args.data_dir)
    result = diagnose(args.model, args.out, config)
    return Output(result, format_diagnosis(result, config.top))
