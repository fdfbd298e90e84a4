"""TFLite Micro firmware assets: the model as a C array, its settings, real test digits, an example main.

Usage: edgemnist firmware runs/default/model_int8.tflite --out firmware_assets [--json]

Writes `<stem>_model_data.{cc,h}` (TFLite Micro naming, 16-byte aligned),
`<stem>_model_settings.h` (input shape, quantization, labels, the op resolver with the
right N, the tensor arena size measured on TFLite Micro plus a stated margin),
`<stem>_test_digits.{cc,h}` (real MNIST test digits, already quantized),
`main_functions.{h,cc}` + `main.cc` (an example that runs the digits), the Cortex-M build
(`Makefile`, `model_ops.mk`, `cortex_m/`), a README and `firmware_manifest.json` (sha256
of every file). The same .tflite gives byte-identical files. The folder is built beside
the target and swapped in whole (`artifacts.atomic_write_folder`), so a crash leaves the
old folder or the new one, never a mix.

This module decides what goes into the folder and renders it from the templates in
`edgemnist/micro/templates/`; the arena is measured by `micro_arena` and TFLite Micro
is checked against LiteRT by `micro_check`.
"""
from __future__ import annotations

import json
import keyword
import os
import re
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Optional

import numpy as np

from edgemnist.artifacts import FIRMWARE_MANIFEST_NAME, atomic_write_folder, sha256_bytes
from edgemnist.micro.arena import ArenaSize, measure_arena, micro_version
from edgemnist.micro.check import compare_with_litert, micro_predict, quantize_images, require_agreement
from edgemnist.runtime import tflite_info

MANIFEST_NAME = FIRMWARE_MANIFEST_NAME
CLASS_LABELS = tuple(str(d) for d in range(10))

# Builtin ops TFLite Micro has kernels for -> the MicroMutableOpResolver method adding each.
MICRO_OP_RESOLVER_METHODS = {
    "ABS": "AddAbs", "ADD": "AddAdd", "ADD_N": "AddAddN", "ARG_MAX": "AddArgMax",
    "ARG_MIN": "AddArgMin", "ASSIGN_VARIABLE": "AddAssignVariable",
    "AVERAGE_POOL_2D": "AddAveragePool2D", "BATCH_MATMUL": "AddBatchMatMul",
    "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd", "BROADCAST_ARGS": "AddBroadcastArgs",
    "BROADCAST_TO": "AddBroadcastTo", "CALL_ONCE": "AddCallOnce", "CAST": "AddCast",
    "CEIL": "AddCeil", "CONCATENATION": "AddConcatenation", "CONV_2D": "AddConv2D",
    "COS": "AddCos", "CUMSUM": "AddCumSum", "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "DEQUANTIZE": "AddDequantize", "DIV": "AddDiv",
    "DYNAMIC_UPDATE_SLICE": "AddDynamicUpdateSlice", "ELU": "AddElu",
    "EMBEDDING_LOOKUP": "AddEmbeddingLookup", "EQUAL": "AddEqual", "EXP": "AddExp",
    "EXPAND_DIMS": "AddExpandDims", "FILL": "AddFill", "FLOOR": "AddFloor",
    "FLOOR_DIV": "AddFloorDiv", "FLOOR_MOD": "AddFloorMod", "FULLY_CONNECTED": "AddFullyConnected",
    "GATHER": "AddGather", "GATHER_ND": "AddGatherNd", "GREATER": "AddGreater",
    "GREATER_EQUAL": "AddGreaterEqual", "HARD_SWISH": "AddHardSwish", "IF": "AddIf",
    "L2_NORMALIZATION": "AddL2Normalization", "L2_POOL_2D": "AddL2Pool2D",
    "LEAKY_RELU": "AddLeakyRelu", "LESS": "AddLess", "LESS_EQUAL": "AddLessEqual", "LOG": "AddLog",
    "LOG_SOFTMAX": "AddLogSoftmax", "LOGICAL_AND": "AddLogicalAnd", "LOGICAL_NOT": "AddLogicalNot",
    "LOGICAL_OR": "AddLogicalOr", "LOGISTIC": "AddLogistic", "MAX_POOL_2D": "AddMaxPool2D",
    "MAXIMUM": "AddMaximum", "MEAN": "AddMean", "MINIMUM": "AddMinimum", "MIRROR_PAD": "AddMirrorPad",
    "MUL": "AddMul", "NEG": "AddNeg", "NOT_EQUAL": "AddNotEqual", "PACK": "AddPack", "PAD": "AddPad",
    "PADV2": "AddPadV2", "PRELU": "AddPrelu", "QUANTIZE": "AddQuantize",
    "READ_VARIABLE": "AddReadVariable", "REDUCE_MAX": "AddReduceMax", "REDUCE_MIN": "AddReduceMin",
    "RELU": "AddRelu", "RELU6": "AddRelu6", "RESHAPE": "AddReshape",
    "RESIZE_BILINEAR": "AddResizeBilinear", "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor",
    "REVERSE_V2": "AddReverseV2", "ROUND": "AddRound", "RSQRT": "AddRsqrt", "SELECT_V2": "AddSelectV2",
    "SHAPE": "AddShape", "SIN": "AddSin", "SLICE": "AddSlice", "SOFTMAX": "AddSoftmax",
    "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd", "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit", "SPLIT_V": "AddSplitV", "SQRT": "AddSqrt", "SQUARE": "AddSquare",
    "SQUARED_DIFFERENCE": "AddSquaredDifference", "SQUEEZE": "AddSqueeze",
    "STRIDED_SLICE": "AddStridedSlice", "SUB": "AddSub", "SUM": "AddSum", "SVDF": "AddSvdf",
    "TANH": "AddTanh", "TRANSPOSE": "AddTranspose", "TRANSPOSE_CONV": "AddTransposeConv",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM", "UNPACK": "AddUnpack",
    "VAR_HANDLE": "AddVarHandle", "WHILE": "AddWhile", "ZEROS_LIKE": "AddZerosLike",
}

# Ops TFLite Micro has but that gave wrong int8 results here (tflite-micro 0.dev20261023):
# refused with the reason rather than turned into firmware that misclassifies.
MICRO_OP_PROBLEMS = {
    "SPACE_TO_BATCH_ND": "TFLite Micro's int8 SPACE_TO_BATCH_ND/BATCH_TO_SPACE_ND path disagrees with LiteRT on "
    "most MNIST test digits; it comes from a dilated convolution exported without a static batch size: "
    "export with batch size 1 so the convolution stays one native op",
}


@dataclass(frozen=True)
class KernelLimit:
    """What one TFLite Micro kernel accepts, read from its Prepare/Eval at the pinned TFLM commit."""

    dtypes: tuple = ("int8", "int16", "float32")  # of the op's first input
    max_rank: Optional[int] = None  # of the op's first input
    why: str = ""  # what happens outside the limit


_CONV_LIKE = KernelLimit(max_rank=4, why="the kernel takes 4-D NHWC tensors only")
_REFERENCE_LIMITS = {
    "CONV_2D": _CONV_LIKE, "DEPTHWISE_CONV_2D": _CONV_LIKE, "MAX_POOL_2D": _CONV_LIKE,
    "AVERAGE_POOL_2D": _CONV_LIKE, "FULLY_CONNECTED": KernelLimit(), "SOFTMAX": KernelLimit(),
    "TRANSPOSE": KernelLimit(max_rank=5, why="Prepare refuses more than 5 dimensions"),
}
# The kernel sets `edgemnist mcu` builds. CMSIS-NN replaces some reference kernels and keeps
# the others, so its table is the reference one with its own kernels' limits on top.
KERNEL_LIMITS = {
    "reference": _REFERENCE_LIMITS,
    "cmsis_nn": {
        **_REFERENCE_LIMITS,
        "TRANSPOSE": KernelLimit(
            max_rank=4,
            why="CMSIS-NN's int8 TRANSPOSE takes at most 4 dimensions; with more it logs "
            "'size <= 4 was not true' and Invoke() still returns kTfLiteOk with a stale output"),
    },
}
KERNEL_SETS = tuple(KERNEL_LIMITS)


def kernel_set_problems(model: tflite_info.TFLiteModel) -> list:
    """Ops that a TFLite Micro kernel set would refuse or run wrongly.

    The table covers the kernels' documented type and rank limits; what it cannot see
    (a kernel that is wrong inside its limits) is what `edgemnist mcu`'s emulated,
    bit-exact run is for.

    Returns:
        [{"kernels", "op_index", "op", "input_dtype", "input_rank", "why"}], empty when every
        kernel set runs the model.
    """
    problems = []
    sub = model.main
    for op in sub.operators:
        if not op.inputs or op.inputs[0] < 0:
            continue
        tensor = sub.tensors[op.inputs[0]]
        for kernels, limits in KERNEL_LIMITS.items():
            limit = limits.get(op.op)
            if limit is None:
                continue
            rank = len(tensor.shape)
            if tensor.dtype not in limit.dtypes:
                why = f"input type {tensor.dtype} is not one of {', '.join(limit.dtypes)}"
            elif limit.max_rank is not None and rank > limit.max_rank:
                why = f"{rank}-D input: {limit.why}"
            else:
                continue
            problems.append({"kernels": kernels, "op_index": op.index, "op": op.op, "input_dtype": tensor.dtype,
                             "input_rank": rank, "why": why})
    return problems


@dataclass(frozen=True)
class FirmwareConfig:
    """Settings of `edgemnist firmware`."""

    digits_per_class: int = 2  # real MNIST test digits per class in <stem>_test_digits.cc
    arena_margin: float = 0.10  # stated arena = measured minimum * (1 + margin), rounded up to 1 KiB
    max_arena: int = 8 << 20  # the largest arena the measurement tries before giving up
    name: Optional[str] = None  # <stem> of the C names; default: derived from the file name
    data_dir: Optional[str] = None  # where the test digits come from (None: shipped MNIST)
    regenerate_command: Optional[str] = None  # shown in the README (e.g. the repo's exact command)

    def __post_init__(self):
        if not 1 <= int(self.digits_per_class) <= 100:
            raise ValueError(f"digits_per_class must be in 1..100, got {self.digits_per_class}")
        if not 0.0 <= float(self.arena_margin) <= 4.0:
            raise ValueError(f"arena_margin must be in [0, 4], got {self.arena_margin}")
        if int(self.max_arena) < 1024:
            raise ValueError(f"max_arena must be at least 1024 bytes, got {self.max_arena}")
        if self.name is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.name):
            raise ValueError(f"name must be a C identifier, got {self.name!r}")


def c_identifier(stem: str) -> str:
    """A C/C++ identifier from a file stem: lower case, other characters become '_'."""
    name = re.sub(r"[^0-9a-zA-Z_]", "_", stem).lower().strip("_") or "model"
    if name[0].isdigit():
        name = f"m_{name}"
    if keyword.iskeyword(name) or name in _CPP_KEYWORDS:
        name = f"{name}_model"
    return name


_CPP_KEYWORDS = {
    "auto", "bool", "break", "case", "char", "class", "const", "continue", "default", "delete",
    "do", "double", "else", "enum", "extern", "float", "for", "goto", "if", "int", "long",
    "namespace", "new", "operator", "private", "public", "register", "return", "short",
    "signed", "sizeof", "static", "struct", "switch", "template", "this", "typedef", "union",
    "unsigned", "using", "virtual", "void", "volatile", "while", "std", "tflite",
}


def micro_ops(model: tflite_info.TFLiteModel, path: str) -> list:
    """The distinct builtin ops of the model (sorted), each one TFLite Micro has.

    Raises:
        ValueError: a float model, an op TFLite Micro lacks, or one that a kernel set
            (`KERNEL_LIMITS`) would refuse or run wrongly (naming the file, the op and the kernels).
    """
    for kind, tensors in (("input", model.inputs), ("output", model.outputs)):
        for t in tensors:
            if t.dtype != "int8":
                raise ValueError(
                    f"{path}: {kind} {t.name!r} is {t.dtype}; TFLite Micro firmware needs a full-integer "
                    "model with int8 input and output (export the int8 variant)"
                )
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 4 or model.inputs[0].shape[0] != 1:
        shapes = [list(t.shape) for t in model.inputs]
        raise ValueError(f"{path}: needs one image input of shape [1, height, width, channels], has {shapes}")
    floats = [t.name for t in model.tensors if t.dtype in ("float32", "float16") and t.data]
    if floats:
        raise ValueError(f"{path}: has float weights ({floats[0]!r}); export the full-integer int8 variant")
    ops = sorted(set(model.ops))
    missing = [op for op in ops if op not in MICRO_OP_RESOLVER_METHODS]
    if missing:
        raise ValueError(f"{path}: op {missing[0]} has no TFLite Micro kernel (unsupported: {', '.join(missing)})")
    for op in ops:
        if op in MICRO_OP_PROBLEMS:
            raise ValueError(f"{path}: op {op}: {MICRO_OP_PROBLEMS[op]}")
    if len(model.subgraphs) > 1 and not {"IF", "WHILE", "CALL_ONCE"} & set(ops):
        raise ValueError(f"{path}: {len(model.subgraphs)} subgraphs but no control-flow op; not a micro model")
    problems = kernel_set_problems(model)
    if problems:
        p = problems[0]
        more = f" ({len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ValueError(f"{path}: op {p['op_index']} {p['op']} would run wrongly with TFLite Micro's {p['kernels']} "
                         f"kernels: {p['why']}{more}")
    return ops


def select_test_digits(per_class: int, data_dir: Optional[str] = None):
    """The first `per_class` test digits of each class, in class order: (images uint8, labels uint8)."""
    from edgemnist import data

    test = data.load_split("test", data_dir=data_dir)
    picks = []
    for digit in range(10):
        found = np.flatnonzero(test.labels == digit)[:per_class]
        if len(found) < per_class:
            raise ValueError(f"the test split has only {len(found)} digits of class {digit}, need {per_class}")
        picks.extend(found.tolist())
    picks = np.array(picks)
    return test.images[picks], test.labels[picks]


# --------------------------------------------------------------------------- rendering

TEMPLATES = Path(__file__).with_name("templates")
CORTEX_M_DIR = "cortex_m"  # the folder's Cortex-M start-up, platform layer and linker script

# TFLite Micro kernel source (tensorflow/lite/micro/kernels/<stem>.cc, or cmsis_nn/<stem>.cc)
# of each op whose file is not simply the op's name in lower case.
KERNEL_SOURCES = {
    "AVERAGE_POOL_2D": "pooling", "MAX_POOL_2D": "pooling", "L2_POOL_2D": "l2_pool_2d",
    "CONV_2D": "conv", "DEPTHWISE_CONV_2D": "depthwise_conv", "TRANSPOSE_CONV": "transpose_conv",
    "MEAN": "reduce", "SUM": "reduce", "REDUCE_MAX": "reduce", "REDUCE_MIN": "reduce",
    "RELU": "activations", "RELU6": "activations", "MAXIMUM": "maximum_minimum", "MINIMUM": "maximum_minimum",
    "PADV2": "pad", "ARG_MAX": "arg_min_max", "ARG_MIN": "arg_min_max", "SELECT_V2": "select",
    "EQUAL": "comparisons", "NOT_EQUAL": "comparisons", "GREATER": "comparisons", "GREATER_EQUAL": "comparisons",
    "LESS": "comparisons", "LESS_EQUAL": "comparisons", "LOGICAL_AND": "logical", "LOGICAL_OR": "logical",
    "ABS": "elementwise", "SIN": "elementwise", "COS": "elementwise", "LOG": "elementwise", "SQRT": "elementwise",
    "RSQRT": "elementwise", "SQUARE": "elementwise", "LOGICAL_NOT": "elementwise",
    "L2_NORMALIZATION": "l2norm", "REVERSE_V2": "reverse", "SPACE_TO_BATCH_ND": "space_to_batch_nd",
    "BATCH_TO_SPACE_ND": "batch_to_space_nd", "UNIDIRECTIONAL_SEQUENCE_LSTM": "unidirectional_sequence_lstm",
}


def kernel_sources(ops: list) -> list:
    """The TFLite Micro kernel file stems (sorted, distinct) that the model's ops need."""
    return sorted({KERNEL_SOURCES.get(op, op.lower()) for op in ops})


def _template(name: str, **values) -> str:
    """Template `name` of templates/ with its $placeholders filled (every one must be given)."""
    return Template((TEMPLATES / name).read_text(encoding="utf-8")).substitute(**values)


def _header_guard(stem: str, suffix: str) -> str:
    return f"EDGEMNIST_{stem.upper()}_{suffix}_H_"


def _generated_note(model_name: str, sha256: str) -> str:
    return f"// Generated by `edgemnist firmware` from {model_name} (sha256 {sha256}). Do not edit."


def _c_bytes(data: bytes, per_line: int = 12, indent: str = "    ") -> str:
    lines = []
    for i in range(0, len(data), per_line):
        lines.append(indent + ", ".join(f"0x{b:02x}" for b in data[i:i + per_line]) + ",")
    return "\n".join(lines)


def _c_float(value: float) -> str:
    text = format(float(np.float32(value)), ".9g")
    if "e" not in text and "." not in text:
        text += ".0"
    return text + "f"


def render_model_data(stem: str, model_name: str, data: bytes) -> dict:
    """`<stem>_model_data.h` and `.cc`: the model bytes as an aligned C array."""
    values = dict(note=_generated_note(model_name, sha256_bytes(data)), guard=_header_guard(stem, "MODEL_DATA"),
                  stem=stem, size=len(data), bytes=_c_bytes(data))
    return {f"{stem}_model_data.h": _template("model_data.h.tmpl", **values),
            f"{stem}_model_data.cc": _template("model_data.cc.tmpl", **values)}


def render_settings(stem: str, model_name: str, sha: str, model: tflite_info.TFLiteModel, ops: list,
                    arena: ArenaSize, version: str) -> str:
    """`<stem>_model_settings.h`: shapes, quantization, labels, op resolver and arena size."""
    inp, out = model.inputs[0], model.outputs[0]
    _, height, width, channels = inp.shape
    classes = int(np.prod(out.shape))
    return _template(
        "model_settings.h.tmpl", note=_generated_note(model_name, sha), guard=_header_guard(stem, "MODEL_SETTINGS"),
        stem=stem, height=height, width=width, channels=channels,
        input_scale=_c_float(inp.scale), input_zero_point=int(inp.zero_point),
        classes=classes, output_scale=_c_float(out.scale), output_zero_point=int(out.zero_point),
        labels=", ".join(f'"{label}"' for label in CLASS_LABELS[:classes]),
        version=version, margin=f"{arena.margin:.0%}", arena_minimum=arena.minimum, arena_stated=arena.stated,
        num_ops=len(ops), op_list=", ".join(ops),
        register_ops="\n".join(f"  if (resolver.{MICRO_OP_RESOLVER_METHODS[op]}() != kTfLiteOk) return kTfLiteError;"
                               for op in ops))


def render_test_digits(stem: str, model_name: str, sha: str, digits: np.ndarray, labels: np.ndarray,
                       expected: np.ndarray) -> dict:
    """`<stem>_test_digits.h` and `.cc`: real test digits, quantized, one image row per line, with
    the int8 scores TFLite Micro's reference kernels gave for each (`expected`, shape (N, classes))."""
    size = int(np.prod(digits.shape[1:]))
    row = size // digits.shape[1] if digits.ndim >= 3 else size
    blocks = []
    for i, (digit, label) in enumerate(zip(digits, labels)):
        flat = digit.reshape(-1).astype(np.int64)
        rows = ["        " + ", ".join(f"{v:4d}" for v in flat[r:r + row]) + "," for r in range(0, size, row)]
        blocks.append(f"    {{  // digit {i}: a {int(label)}\n" + "\n".join(rows) + "\n    },")
    scores = "\n".join(f"    {{{', '.join(f'{int(v):4d}' for v in row)}}},  // digit {i}"
                       for i, row in enumerate(expected))
    values = dict(note=_generated_note(model_name, sha), guard=_header_guard(stem, "TEST_DIGITS"), stem=stem,
                  count=len(digits), size=size, classes=int(expected.shape[1]), digits="\n".join(blocks),
                  labels=", ".join(str(int(v)) for v in labels), scores=scores)
    return {f"{stem}_test_digits.h": _template("test_digits.h.tmpl", **values),
            f"{stem}_test_digits.cc": _template("test_digits.cc.tmpl", **values)}


def render_main(stem: str, model_name: str, sha: str, classes: int) -> dict:
    """An example for TFLite Micro: `main_functions.{h,cc}` (setup/RunTestDigits/loop) and `main.cc`.

    The example checks every TfLiteStatus and compares every output score with the expected one.
    """
    note = _generated_note(model_name, sha)
    score_args = ", ".join(f"static_cast<int>(output->data.int8[{c}])" for c in range(classes))
    return {name: _template(f"{name}.tmpl", note=note, stem=stem, score_format=" ".join(["%d"] * classes),
                            score_args=score_args)
            for name in ("main_functions.h", "main_functions.cc", "main.cc")}


def render_cortex_m(stem: str, model_name: str, sha: str, ops: list) -> dict:
    """The Cortex-M build: `Makefile`, `model_ops.mk` (the kernels to compile) and `cortex_m/`
    (start-up code, semihosting platform layer, linker script, the bare-metal main)."""
    files = {f"{CORTEX_M_DIR}/{path.name}": path.read_text(encoding="utf-8")
             for path in sorted((TEMPLATES / CORTEX_M_DIR).iterdir())
             if path.is_file() and path.name != "Makefile"}
    files["Makefile"] = (TEMPLATES / CORTEX_M_DIR / "Makefile").read_text(encoding="utf-8")
    files["model_ops.mk"] = _template("model_ops.mk.tmpl", model_name=model_name, sha256=sha, op_list=", ".join(ops),
                                      kernel_sources=" ".join(kernel_sources(ops)))
    return files


def render_readme(stem: str, model_name: str, model: tflite_info.TFLiteModel, ops: list, arena: ArenaSize,
                  n_digits: int, version: str, regenerate: Optional[str], check: dict) -> str:
    """README.md of the output folder."""
    inp, out = model.inputs[0], model.outputs[0]
    builtin, xnnpack = check["builtin"], check["xnnpack"]
    return _template(
        "README.md.tmpl", stem=stem, model_name=model_name, model_bytes=f"{model.size:,}",
        model_sha256=model.sha256, regenerate=regenerate or f"edgemnist firmware path/to/{model_name} --out <this folder>",
        arena_stated=f"{arena.stated:,}", arena_minimum=f"{arena.minimum:,}", margin=f"{arena.margin:.0%}",
        digit_bytes=f"{n_digits * int(np.prod(inp.shape)):,}", count=n_digits, version=version,
        input_shape=list(inp.shape), input_scale=f"{inp.scale:.9g}", input_zero_point=inp.zero_point,
        output_shape=list(out.shape), output_scale=f"{out.scale:.9g}", output_zero_point=out.zero_point,
        num_ops=len(ops), op_list=", ".join(ops), manifest_name=MANIFEST_NAME,
        check_digits=check["digits"], litert_version=check["litert_version"],
        builtin_agreement=f"{builtin['argmax_agreement']:.0%}", builtin_bit_exact=f"{builtin['bit_exact']:.0%}",
        builtin_max_diff=builtin["max_abs_diff"], xnnpack_agreement=f"{xnnpack['argmax_agreement']:.0%}",
        xnnpack_max_diff=xnnpack["max_abs_diff"])


def _manifest(files: dict, model_name: str, model: tflite_info.TFLiteModel, ops: list, arena: ArenaSize,
              stem: str, labels: np.ndarray, version: str) -> dict:
    inp, out = model.inputs[0], model.outputs[0]
    return {
        "model": {"name": model_name, "bytes": model.size, "sha256": model.sha256},
        "stem": stem,
        "files": {name: {"bytes": len(text.encode()), "sha256": sha256_bytes(text.encode())}
                  for name, text in sorted(files.items())},
        "flash_bytes": model.size,
        "arena": arena.to_json(),
        "ops": ops,
        "resolver_size": len(ops),
        "kernel_sources": kernel_sources(ops),
        "kernel_sets_checked": list(KERNEL_SETS),
        "expected_scores": f"TFLite Micro reference kernels (tflite-micro {version}, host build)",
        "input": {"shape": list(inp.shape), "dtype": inp.dtype, "scale": inp.scale, "zero_point": inp.zero_point},
        "output": {"shape": list(out.shape), "dtype": out.dtype, "scale": out.scale, "zero_point": out.zero_point},
        "test_digits": {"count": int(len(labels)), "labels": [int(v) for v in labels]},
        "tflite_micro_version": version,
    }


def _is_firmware_folder(path: Path) -> bool:
    return path.is_dir() and (not any(path.iterdir()) or (path / MANIFEST_NAME).is_file())


def _check_out_dir(out: Path) -> None:
    if out.exists() and not _is_firmware_folder(out):
        raise ValueError(f"{out} exists and is not an edgemnist firmware folder (no {MANIFEST_NAME}); "
                         "choose a new or empty folder")


def generate(model_path: str | os.PathLike, out_dir: str | os.PathLike,
             config: FirmwareConfig = FirmwareConfig()) -> dict:
    """Writes the TFLite Micro assets of an int8 .tflite into `out_dir`.

    Args:
        model_path: a full-integer (int8 input and output) .tflite file.
        out_dir: the folder to write (replaced whole if it holds earlier assets).
        config: firmware settings.

    Returns:
        The manifest (also written as `firmware_manifest.json`), with "out" added.

    Raises:
        FileNotFoundError: no such model file.
        ValueError: a malformed, float or non-micro model (naming the file and the op).
        MissingExtraError: tflite-micro is not installed.
    """
    model_path, out = Path(model_path), Path(out_dir)
    if not model_path.is_file():
        raise FileNotFoundError(f"no such model file: {model_path}")
    _check_out_dir(out)
    data = model_path.read_bytes()
    model = tflite_info.validate(data, name=str(model_path))
    ops = micro_ops(model, str(model_path))
    stem = config.name or c_identifier(model_path.stem)
    model_name = model_path.name
    arena = measure_arena(model_path, config.arena_margin, config.max_arena)
    version = micro_version()
    inp = model.inputs[0]
    images, labels = select_test_digits(config.digits_per_class, config.data_dir)
    digits = quantize_images(images, inp.scale, inp.zero_point).reshape((len(images),) + tuple(inp.shape[1:]))
    expected = micro_predict(model_path, digits, arena.stated)
    check = compare_with_litert(model_path, digits, arena.stated, micro=expected)
    require_agreement(check, model_path)
    files = {}
    files.update(render_model_data(stem, model_name, data))
    files[f"{stem}_model_settings.h"] = render_settings(stem, model_name, model.sha256, model, ops, arena, version)
    files.update(render_test_digits(stem, model_name, model.sha256, digits, labels, expected))
    files.update(render_main(stem, model_name, model.sha256, int(expected.shape[1])))
    files.update(render_cortex_m(stem, model_name, model.sha256, ops))
    files["README.md"] = render_readme(stem, model_name, model, ops, arena, len(labels), version,
                                       config.regenerate_command, check)
    manifest = _manifest(files, model_name, model, ops, arena, stem, labels, version)
    manifest["litert_check"] = check
    _check_out_dir(out)
    atomic_write_folder(out, {**files, MANIFEST_NAME: json.dumps(manifest, indent=2, sort_keys=True) + "\n"})
    return {**manifest, "out": str(out)}


def format_manifest(manifest: dict) -> str:
    """Human summary of what `generate` wrote."""
    arena = manifest["arena"]
    lines = [f"wrote {manifest['out']}/ for {manifest['model']['name']}:"]
    for name, entry in manifest["files"].items():
        lines.append(f"  {name:<36} {entry['bytes']:>9,} bytes")
    lines.append(f"flash (model): {manifest['flash_bytes']:,} bytes")
    lines.append(f"RAM (tensor arena): stated {arena['stated']:,} bytes = measured minimum {arena['minimum']:,} "
                 f"+ {arena['margin']:.0%}, rounded up to 1 KiB (TFLite Micro recorded {arena['recorded']})")
    lines.append(f"ops ({manifest['resolver_size']}): {', '.join(manifest['ops'])}")
    check = manifest["litert_check"]
    for key, what in (("builtin", "builtin kernels"), ("xnnpack", "XNNPACK")):
        c = check[key]
        lines.append(f"TFLite Micro vs LiteRT {check['litert_version']} ({what}) on the {check['digits']} test digits: "
                     f"{c['argmax_agreement']:.1%} same class, {c['bit_exact']:.1%} bit-exact, "
                     f"max difference {c['max_abs_diff']} int8 levels")
    return "\n".join(lines)


def add_commands(subparsers) -> None:
    """Registers `edgemnist firmware`."""
    p = subparsers.add_parser(
        "firmware",
        help="TFLite Micro sources from an int8 .tflite: C array, settings, test digits, example main",
        description="Write TFLite Micro firmware assets for a full-integer .tflite: <stem>_model_data.cc/.h, "
        "<stem>_model_settings.h (quantization, op resolver, tensor arena measured on TFLite Micro), "
        "<stem>_test_digits.cc/.h, main_functions.cc, main.cc, README.md and firmware_manifest.json.",
    )
    p.add_argument("model", help="an int8 .tflite file")
    p.add_argument("--out", required=True, help="output folder (replaced whole if it holds earlier assets)")
    p.add_argument("--name", default=None, help="the <stem> of file and C names (default: from the file name)")
    p.add_argument("--digits-per-class", type=int, default=FirmwareConfig.digits_per_class,
                   help="real test digits per class in <stem>_test_digits.cc (default %(default)s)")
    p.add_argument("--arena-margin", type=float, default=FirmwareConfig.arena_margin,
                   help="margin over the measured arena minimum (default %(default)s)")
    p.add_argument("--data-dir", default=None, help="MNIST IDX folder for the test digits (default: shipped)")
    p.add_argument("--regenerate-command", default=None, help="the command shown in the README to regenerate")
    p.set_defaults(func=_run_firmware)


def _run_firmware(args):
    from edgemnist.cli import Output

    config = FirmwareConfig(
        digits_per_class=args.digits_per_class,
        arena_margin=args.arena_margin,
        name=args.name,
        data_dir=args.data_dir,
        regenerate_command=args.regenerate_command,
    )
    manifest = generate(args.model, args.out, config)
    return Output(manifest, format_manifest(manifest))
