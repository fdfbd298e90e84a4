"""TFLite Micro firmware assets: the model as a C array, its settings, real test digits, an example main.

Usage: edgemnist firmware runs/default/model_int8.tflite --out firmware_assets [--json]

Writes `<stem>_model_data.{cc,h}` (TFLite Micro naming, 16-byte aligned),
`<stem>_model_settings.h` (input shape, quantization, labels, the op resolver with the
right N, the tensor arena size measured on TFLite Micro plus a stated margin),
`<stem>_test_digits.{cc,h}` (real MNIST test digits, already quantized),
`main_functions.{h,cc}` + `main.cc` (an example that runs the digits), a README and
`firmware_manifest.json` (sha256 of every file). The same .tflite gives byte-identical
files. The folder is built beside the target and swapped in whole, so a crash leaves the
old folder or the new one, never a mix.

The arena is measured with the `tflite-micro` package (TFLite Micro built for the
host) by bisection; each probe runs in a child process because TFLite Micro can crash
the process, not just fail, when the arena is far too small.
"""
from __future__ import annotations

import json
import keyword
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from edgemnist.artifacts import OutputError, sha256_bytes
from edgemnist.runtime import tflite_info

MANIFEST_NAME = "firmware_manifest.json"
ARENA_ALIGNMENT = 16  # TFLite Micro aligns arena allocations to 16 bytes
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
    "SPACE_TO_BATCH_ND": "TFLite Micro's int8 SPACE_TO_BATCH_ND/BATCH_TO_SPACE_ND path disagreed with LiteRT on "
    "~88 % of MNIST test digits; it comes from a dilated convolution exported without a static batch size: "
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


MIN_LITERT_AGREEMENT = 0.9  # argmax agreement on the embedded test digits below which generation fails

_MICRO_HINT = "this command needs TFLite Micro for the host: pip install 'edgemnist[micro]' (tflite-micro)"

# One arena probe, run in a child process: TFLite Micro may crash (not raise) on a tiny arena.
_ARENA_PROBE = r"""
import sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime
interpreter = runtime.Interpreter.from_file(sys.argv[1], arena_size=int(sys.argv[2]))
details = interpreter.get_input_details(0)
interpreter.set_input(np.full(details["shape"], details["quantization_parameters"]["zero_points"][0], details["dtype"]), 0)
interpreter.invoke()
interpreter.get_output(0)
sys.stdout.flush()
if len(sys.argv) > 3:
    interpreter.print_allocations()
print("EDGEMNIST_ARENA_OK", flush=True)
"""


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


@dataclass(frozen=True)
class ArenaSize:
    """Tensor arena of a model on TFLite Micro (host build)."""

    minimum: int  # smallest arena (multiple of 16) that allocated and invoked
    stated: int  # what <stem>_model_settings.h declares: minimum plus the margin
    margin: float
    recorded: Optional[int]  # what TFLite Micro's RecordingMicroAllocator reported using
    probes: int  # child processes the bisection ran

    def to_json(self) -> dict:
        return {"minimum": self.minimum, "stated": self.stated, "margin": self.margin,
                "recorded": self.recorded, "probes": self.probes}


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


def _import_micro():
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError as exc:
        from edgemnist._tensorflow import MissingExtraError

        raise MissingExtraError(f"{_MICRO_HINT} ({exc})") from None
    return runtime


def micro_version() -> str:
    """The installed tflite-micro package version."""
    from importlib import metadata

    try:
        return metadata.version("tflite-micro")
    except metadata.PackageNotFoundError:
        return "unknown"


def _probe(path: str, size: int, record: bool = False) -> tuple:
    """(works, output) of one arena probe in a child process."""
    cmd = [sys.executable, "-c", _ARENA_PROBE, path, str(int(size))] + (["record"] if record else [])
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return False, "timed out"
    output = result.stdout + result.stderr
    return result.returncode == 0 and "EDGEMNIST_ARENA_OK" in result.stdout, output


def arena_works(path: str | os.PathLike, size: int) -> bool:
    """Whether the model allocates and invokes on TFLite Micro with an arena of `size` bytes."""
    _import_micro()
    return _probe(os.fspath(path), size)[0]


def _last_error(output: str) -> str:
    lines = [ln.strip() for ln in output.splitlines() if ln.strip() and "EDGEMNIST_ARENA_OK" not in ln]
    return lines[-1] if lines else "no message (the process crashed)"


def measure_arena(path: str | os.PathLike, margin: float = 0.10, max_arena: int = 8 << 20) -> ArenaSize:
    """Finds the smallest tensor arena the model runs with on TFLite Micro, by bisection.

    Args:
        path: an int8 .tflite file.
        margin: stated size = minimum * (1 + margin), rounded up to a multiple of 1 KiB.
        max_arena: give up above this many bytes.

    Returns:
        The `ArenaSize`.

    Raises:
        ValueError: the model does not run on TFLite Micro at all (TFLite Micro's message).
        MissingExtraError: tflite-micro is not installed.
    """
    _import_micro()
    path = os.fspath(path)
    probes = 0
    hi = 16 << 10
    while True:
        probes += 1
        works, output = _probe(path, hi)
        if works:
            break
        if hi >= max_arena:
            raise ValueError(f"{path}: does not run on TFLite Micro with a {max_arena}-byte arena: {_last_error(output)}")
        hi = min(hi * 4, max_arena)
    lo = 0  # an empty arena never works
    while hi - lo > ARENA_ALIGNMENT:
        mid = (lo + hi) // 2 // ARENA_ALIGNMENT * ARENA_ALIGNMENT
        if mid <= lo:
            break
        probes += 1
        if _probe(path, mid)[0]:
            hi = mid
        else:
            lo = mid
    stated = int(math.ceil(hi * (1.0 + margin) / 1024.0)) * 1024
    probes += 1
    works, output = _probe(path, stated, record=True)
    if not works:
        raise RuntimeError(f"{path}: the stated arena of {stated} bytes failed on TFLite Micro: {_last_error(output)}")
    match = re.search(r"Arena allocation total (\d+) bytes", output)
    return ArenaSize(hi, stated, float(margin), int(match.group(1)) if match else None, probes)


def quantize_images(images: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """uint8 images (N, 28, 28) -> int8 model input (N, 28, 28, 1) with the model's own parameters."""
    x = images.astype(np.float32)[..., None] / np.float32(255.0)
    return np.clip(np.rint(x / np.float32(scale)) + zero_point, -128, 127).astype(np.int8)


def micro_predict(path: str | os.PathLike, model_input: np.ndarray, arena_size: int) -> np.ndarray:
    """Raw int8 outputs (N, classes) of TFLite Micro for already-quantized inputs (N, 28, 28, 1).

    Run it only with an arena known to work (`measure_arena`): too small an arena can crash.
    """
    runtime = _import_micro()
    interpreter = runtime.Interpreter.from_file(os.fspath(path), arena_size=int(arena_size))
    outputs = []
    for x in model_input:
        interpreter.set_input(x[None], 0)
        interpreter.invoke()
        outputs.append(np.array(interpreter.get_output(0)).reshape(-1))
    return np.stack(outputs)


def litert_raw_outputs(model, model_input: np.ndarray, xnnpack: bool = False) -> np.ndarray:
    """Raw int8 outputs (N, classes) of LiteRT for already-quantized inputs.

    Args:
        model: a .tflite path, or the model's bytes.
        xnnpack: False runs LiteRT's builtin kernels (the ones TFLite Micro derives from,
            bit-exact with it here); True the default XNNPACK delegate, which rounds
            differently and is what `Runner` uses on a Pi.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError as exc:
        from edgemnist._tensorflow import MissingExtraError

        raise MissingExtraError(f"comparing with LiteRT needs ai-edge-litert: pip install ai-edge-litert ({exc})") from None
    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    source = {"model_content": model} if isinstance(model, bytes) else {"model_path": os.fspath(model)}
    interpreter = Interpreter(**source, experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    in_index = interpreter.get_input_details()[0]["index"]
    out_index = interpreter.get_output_details()[0]["index"]
    outputs = []
    for x in model_input:
        interpreter.set_tensor(in_index, x[None])
        interpreter.invoke()
        outputs.append(np.array(interpreter.get_tensor(out_index)).reshape(-1))
    return np.stack(outputs)


def compare_with_litert(path: str | os.PathLike, model_input: np.ndarray, arena_size: int,
                        micro: Optional[np.ndarray] = None) -> dict:
    """TFLite Micro against LiteRT (builtin kernels, and the default XNNPACK delegate) on the same int8 inputs.

    Args:
        micro: TFLite Micro's outputs for `model_input` when the caller already has them
            (`micro_predict`); run here otherwise.

    Returns:
        {"digits", "litert_version", "builtin": {...}, "xnnpack": {...}}, each comparison with
        "argmax_agreement", "max_abs_diff" (int8 levels) and "bit_exact" (fraction of digits).
    """
    from importlib import metadata

    micro = (micro_predict(path, model_input, arena_size) if micro is None else micro).astype(np.int32)
    result = {"digits": int(len(model_input)), "litert_version": metadata.version("ai-edge-litert")}
    for key, xnnpack in (("builtin", False), ("xnnpack", True)):
        reference = litert_raw_outputs(path, model_input, xnnpack).astype(np.int32)
        result[key] = {
            "argmax_agreement": float(np.mean(micro.argmax(1) == reference.argmax(1))),
            "max_abs_diff": int(np.abs(micro - reference).max()),
            "bit_exact": float(np.mean(np.all(micro == reference, axis=1))),
        }
    return result


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
    sha = sha256_bytes(data)
    guard = _header_guard(stem, "MODEL_DATA")
    header = f"""{_generated_note(model_name, sha)}
#ifndef {guard}
#define {guard}

// The .tflite model, byte for byte. TFLite Micro reads it in place from flash;
// tflite::GetModel() needs it 16-byte aligned.
extern const unsigned char g_{stem}_model_data[];
constexpr unsigned int g_{stem}_model_data_size = {len(data)};

#endif  // {guard}
"""
    source = f"""{_generated_note(model_name, sha)}
#include "{stem}_model_data.h"

alignas(16) const unsigned char g_{stem}_model_data[] = {{
{_c_bytes(data)}
}};

static_assert(sizeof(g_{stem}_model_data) == g_{stem}_model_data_size, "model size mismatch");
"""
    return {f"{stem}_model_data.h": header, f"{stem}_model_data.cc": source}


def render_settings(stem: str, model_name: str, sha: str, model: tflite_info.TFLiteModel, ops: list,
                    arena: ArenaSize, version: str) -> str:
    """`<stem>_model_settings.h`: shapes, quantization, labels, op resolver and arena size."""
    guard = _header_guard(stem, "MODEL_SETTINGS")
    inp, out = model.inputs[0], model.outputs[0]
    _, height, width, channels = inp.shape
    classes = int(np.prod(out.shape))
    labels = ", ".join(f'"{label}"' for label in CLASS_LABELS[:classes])
    adds = "\n".join(f"  if (resolver.{MICRO_OP_RESOLVER_METHODS[op]}() != kTfLiteOk) return kTfLiteError;" for op in ops)
    return f"""{_generated_note(model_name, sha)}
#ifndef {guard}
#define {guard}

#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"

namespace {stem} {{

// Input: one {height}x{width}x{channels} image, int8. A pixel p in 0..255 becomes
//   q = round(p / 255 / kInputScale) + kInputZeroPoint, clamped to [-128, 127].
constexpr int kInputHeight = {height};
constexpr int kInputWidth = {width};
constexpr int kInputChannels = {channels};
constexpr int kInputSize = kInputHeight * kInputWidth * kInputChannels;
constexpr float kInputScale = {_c_float(inp.scale)};
constexpr int kInputZeroPoint = {int(inp.zero_point)};

// Output: {classes} int8 class scores; probability = (q - kOutputZeroPoint) * kOutputScale.
constexpr int kNumClasses = {classes};
constexpr float kOutputScale = {_c_float(out.scale)};
constexpr int kOutputZeroPoint = {int(out.zero_point)};
constexpr const char* kClassLabels[kNumClasses] = {{{labels}}};

// Tensor arena: the smallest that allocated and ran on TFLite Micro (tflite-micro {version},
// 64-bit host build; 32-bit targets need a little less) was kMeasuredArenaSize bytes.
// kTensorArenaSize adds a {arena.margin:.0%} margin, rounded up to 1 KiB.
constexpr int kMeasuredArenaSize = {arena.minimum};
constexpr int kTensorArenaSize = {arena.stated};

// The {len(ops)} builtin ops this model uses: {", ".join(ops)}.
constexpr int kNumOps = {len(ops)};
using OpResolver = tflite::MicroMutableOpResolver<kNumOps>;

inline TfLiteStatus RegisterOps(OpResolver& resolver) {{
{adds}
  return kTfLiteOk;
}}

}}  // namespace {stem}

#endif  // {guard}
"""


def render_test_digits(stem: str, model_name: str, sha: str, digits: np.ndarray, labels: np.ndarray,
                       expected: np.ndarray) -> dict:
    """`<stem>_test_digits.h` and `.cc`: real test digits, quantized, one image row per line, with
    the int8 scores TFLite Micro's reference kernels gave for each (`expected`, shape (N, classes))."""
    guard = _header_guard(stem, "TEST_DIGITS")
    n, size = len(digits), int(np.prod(digits.shape[1:]))
    classes = int(expected.shape[1])
    header = f"""{_generated_note(model_name, sha)}
#ifndef {guard}
#define {guard}

#include <cstdint>

// {n} real MNIST test digits, already quantized with the model's input scale and
// zero point (see {stem}_model_settings.h), and their true labels.
constexpr int g_{stem}_num_test_digits = {n};
constexpr int g_{stem}_test_digit_size = {size};
extern const int8_t g_{stem}_test_digits[g_{stem}_num_test_digits][g_{stem}_test_digit_size];
extern const uint8_t g_{stem}_test_labels[g_{stem}_num_test_digits];
// The int8 output scores of each digit on TFLite Micro's reference kernels (host build, when
// these files were generated): any other kernel set or target must reproduce them exactly.
extern const int8_t g_{stem}_expected_scores[g_{stem}_num_test_digits][{classes}];

#endif  // {guard}
"""
    row = size // digits.shape[1] if digits.ndim >= 3 else size
    blocks = []
    for i, (digit, label) in enumerate(zip(digits, labels)):
        flat = digit.reshape(-1).astype(np.int64)
        rows = [
            "        " + ", ".join(f"{v:4d}" for v in flat[r:r + row]) + ","
            for r in range(0, size, row)
        ]
        blocks.append(f"    {{  // digit {i}: a {int(label)}\n" + "\n".join(rows) + "\n    },")
    label_list = ", ".join(str(int(v)) for v in labels)
    scores = "\n".join(f"    {{{', '.join(f'{int(v):4d}' for v in row)}}},  // digit {i}"
                        for i, row in enumerate(expected))
    source = f"""{_generated_note(model_name, sha)}
#include "{stem}_test_digits.h"

const int8_t g_{stem}_test_digits[g_{stem}_num_test_digits][g_{stem}_test_digit_size] = {{
{chr(10).join(blocks)}
}};

const uint8_t g_{stem}_test_labels[g_{stem}_num_test_digits] = {{{label_list}}};

const int8_t g_{stem}_expected_scores[g_{stem}_num_test_digits][{classes}] = {{
{scores}
}};
"""
    return {f"{stem}_test_digits.h": header, f"{stem}_test_digits.cc": source}


TEMPLATES = Path(__file__).with_name("firmware_templates")
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
    from string import Template

    return Template((TEMPLATES / name).read_text(encoding="utf-8")).substitute(**values)


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
    files["model_ops.mk"] = (
        f"# Generated by `edgemnist firmware` from {model_name} (sha256 {sha}). Do not edit.\n"
        f"# TFLite Micro kernel sources for the model's ops ({', '.join(ops)}).\n"
        f"MODEL_KERNELS := {' '.join(kernel_sources(ops))}\n"
    )
    return files


def render_readme(stem: str, model_name: str, model: tflite_info.TFLiteModel, ops: list, arena: ArenaSize,
                  n_digits: int, version: str, regenerate: Optional[str], check: dict) -> str:
    """README.md of the output folder."""
    inp, out = model.inputs[0], model.outputs[0]
    regenerate = regenerate or f"edgemnist firmware path/to/{model_name} --out <this folder>"
    return f"""# TFLite Micro assets for `{model_name}`

Generated by `edgemnist firmware` from `{model_name}` ({model.size:,} bytes, sha256
`{model.sha256}`). Do not edit; regenerate:

    {regenerate}

## Memory

| | bytes |
|---|---|
| flash: model (`g_{stem}_model_data`) | {model.size:,} |
| RAM: tensor arena, stated (`{stem}::kTensorArenaSize`) | {arena.stated:,} |
| RAM: tensor arena, measured minimum | {arena.minimum:,} |
| flash: test digits (optional) | {n_digits * int(np.prod(inp.shape)):,} |

The arena minimum was found by bisection on TFLite Micro built for the host
(tflite-micro {version}, 64-bit): the smallest multiple of 16 bytes with which the
model allocated its tensors and ran. The stated size adds {arena.margin:.0%} and rounds up
to 1 KiB. A 32-bit microcontroller needs slightly less (smaller pointers in the
interpreter's bookkeeping); kernels optimized for a target (CMSIS-NN) may need some
scratch memory of their own, which the margin is there for.

## Files

- `{stem}_model_data.cc/.h`: the .tflite as `alignas(16) const unsigned char
  g_{stem}_model_data[]` and `constexpr unsigned int g_{stem}_model_data_size`.
- `{stem}_model_settings.h` (namespace `{stem}`): input {list(inp.shape)} int8 with
  scale {inp.scale:.9g} and zero point {inp.zero_point}; output {list(out.shape)} int8 with
  scale {out.scale:.9g} and zero point {out.zero_point}; class labels; the tensor arena
  size; `{stem}::OpResolver` (a `MicroMutableOpResolver<{len(ops)}>`) and
  `{stem}::RegisterOps(resolver)` adding the {len(ops)} ops the model uses:
  {", ".join(ops)}.
- `{stem}_test_digits.cc/.h`: {n_digits} real MNIST test digits (the first of each class in
  the test split), already quantized, with their labels.
- `main_functions.cc/.h`, `main.cc`: an example that loads the model, runs the test
  digits, prints the predictions with `MicroPrintf` and compares every int8 score with the
  expected one (`g_{stem}_expected_scores`, from TFLite Micro's reference kernels on the
  host); `main()` exits non-zero on any mismatch or failed TfLiteStatus.
- `Makefile`, `model_ops.mk`, `cortex_m/`: a bare-metal build for Cortex-M4/M7/M55 with
  arm-none-eabi-gcc (start-up code, semihosting output and exit, a linker script for
  512 KiB flash / 256 KiB RAM, a main that counts instructions per inference and per op).
- `{MANIFEST_NAME}`: sha256 and size of every file here.

## Build and run on a Cortex-M

    make TFLM=path/to/tflm_tree CPU=cortex-m4 KERNELS=cmsis_nn          # build/cortex-m4-cmsis_nn/firmware.elf
    make TFLM=path/to/tflm_tree CPU=cortex-m4 KERNELS=cmsis_nn run      # under qemu-system-arm
    edgemnist mcu . --tflm path/to/tflm_tree --cpu cortex-m4 --kernels cmsis_nn   # build, run, check, measure

`path/to/tflm_tree` is the output of TFLite Micro's `create_tflm_tree.py` (with
`OPTIMIZED_KERNEL_DIR=cmsis_nn` for the CMSIS-NN kernels). `edgemnist mcu` also checks every
score against the host bit for bit and reports flash, RAM and instructions per inference.
`cortex_m/platform.c` prints and exits through semihosting (QEMU, or a board under a
debugger); on a board without one, send `edgemnist_write` to a UART and replace
`edgemnist_exit`. Instruction counts are exact under QEMU's `-icount shift=0` only.

## Use

Copy the files into a TFLite Micro project (the `tflite-micro` repository's examples,
an Arduino library built from it, or a vendor SDK), add them to the build next to the
TFLite Micro library, and call `setup()` and `loop()` (Arduino) or build `main.cc`.
Pixels from a camera or touch screen go in as `q = round(p / 255 / kInputScale) +
kInputZeroPoint`; the prediction is the index of the largest output score.

## Verified

When these files were generated, TFLite Micro (host build) ran the {check['digits']} test digits
with the stated arena: the same class as LiteRT {check['litert_version']}'s builtin kernels for
{check['builtin']['argmax_agreement']:.0%} of them ({check['builtin']['bit_exact']:.0%} bit-exact, max
difference {check['builtin']['max_abs_diff']} int8 levels), and as LiteRT's default XNNPACK delegate
for {check['xnnpack']['argmax_agreement']:.0%} (max difference {check['xnnpack']['max_abs_diff']} levels:
XNNPACK rounds differently). edgemnist's tests also check that:

- the generated `.cc` compiled with the system C++ compiler gives back the .tflite
  byte for byte.
- on TFLite Micro the model's predictions agree with LiteRT's int8 predictions on real
  MNIST test digits; the stated arena works and 10 % less than the measured minimum
  does not.
"""


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


def _write_folder(out: Path, files: dict, manifest: dict) -> None:
    """Builds the folder beside `out`, then swaps it in; an old folder is removed only after."""
    _check_out_dir(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    old = None
    try:
        for name, text in sorted(files.items()):
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(text, encoding="utf-8", newline="\n")
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        for name in list(files) + [MANIFEST_NAME]:
            with open(tmp / name, "rb+") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o755)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / out.name)
        os.replace(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not out.exists():
            os.replace(old / out.name, out)
        if old is not None and out.exists():  # the earlier assets are back in place
            shutil.rmtree(old, ignore_errors=True)
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


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
    if check["builtin"]["argmax_agreement"] < MIN_LITERT_AGREEMENT:
        raise ValueError(
            f"{model_path}: TFLite Micro and LiteRT agree on only {check['builtin']['argmax_agreement']:.0%} "
            f"of the {check['digits']} test digits (max difference {check['builtin']['max_abs_diff']} levels); "
            "this model would misclassify on a microcontroller"
        )
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
    _write_folder(out, files, manifest)
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
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(func=_run_firmware)


def _run_firmware(args) -> int:
    from edgemnist.cli import print_json

    config = FirmwareConfig(
        digits_per_class=args.digits_per_class,
        arena_margin=args.arena_margin,
        name=args.name,
        data_dir=args.data_dir,
        regenerate_command=args.regenerate_command,
    )
    manifest = generate(args.model, args.out, config)
    print_json(manifest) if args.json else print(format_manifest(manifest))
    return 0
