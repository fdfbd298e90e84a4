"""What TFLite Micro's kernels are: op -> resolver method, kernel source files, type and rank limits.

Usage: from edgemnist.micro.kernels import micro_ops; micro_ops(tflite_info.read_model(path), path)

Facts read from a TFLite Micro tree (`micro_mutable_op_resolver.h`, `kernels/*.cc`,
`kernels/cmsis_nn/*.cc`), kept here so `edgemnist firmware` can refuse a model before it
reaches a device and render only the kernels a model needs. `tests/micro/test_kernels.py`
compares every table with the tree named by $EDGEMNIST_TFLM.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from edgemnist.runtime import tflite_info

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
    "READ_VARIABLE": "AddReadVariable", "REDUCE_ALL": "AddReduceAll", "REDUCE_MAX": "AddReduceMax", "REDUCE_MIN": "AddReduceMin",
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


# TFLite Micro kernel source (tensorflow/lite/micro/kernels/<stem>.cc, or cmsis_nn/<stem>.cc)
# of each op whose file is not simply the op's name in lower case.
KERNEL_SOURCES = {
    "AVERAGE_POOL_2D": "pooling", "MAX_POOL_2D": "pooling", "L2_POOL_2D": "l2_pool_2d",
    "CONV_2D": "conv", "DEPTHWISE_CONV_2D": "depthwise_conv", "TRANSPOSE_CONV": "transpose_conv",
    "MEAN": "reduce", "SUM": "reduce", "REDUCE_ALL": "reduce", "REDUCE_MAX": "reduce", "REDUCE_MIN": "reduce",
    "RELU": "activations", "RELU6": "activations", "MAXIMUM": "maximum_minimum", "MINIMUM": "maximum_minimum",
    "PADV2": "pad", "ARG_MAX": "arg_min_max", "ARG_MIN": "arg_min_max", "SELECT_V2": "select",
    "EQUAL": "comparisons", "NOT_EQUAL": "comparisons", "GREATER": "comparisons", "GREATER_EQUAL": "comparisons",
    "LESS": "comparisons", "LESS_EQUAL": "comparisons", "LOGICAL_AND": "logical", "LOGICAL_OR": "logical",
    "ABS": "elementwise", "SIN": "elementwise", "COS": "elementwise", "LOG": "elementwise", "SQRT": "elementwise",
    "RSQRT": "elementwise", "SQUARE": "elementwise", "LOGICAL_NOT": "elementwise",
    "L2_NORMALIZATION": "l2norm", "REVERSE_V2": "reverse", "SPACE_TO_BATCH_ND": "space_to_batch_nd",
    "BATCH_TO_SPACE_ND": "batch_to_space_nd", "UNIDIRECTIONAL_SEQUENCE_LSTM": "unidirectional_sequence_lstm",
}

# Ops with an int8-only registration (`tflite::Register_<OP>_INT8()`, declared in the kernel's
# header, which micro_mutable_op_resolver.h includes): the release build registers these, so
# the float and int16 code of the kernel is not linked. In a tree without an int8-only
# variant of its own the function returns the general registration. Other ops keep theirs.
# Only ops whose header micro_mutable_op_resolver.h includes: PAD's and TRANSPOSE's int8-only
# registrations live in pad.h and transpose.h, which it does not include, so naming them would
# break every build of a model with those ops (tests/micro/test_kernels.py checks the headers).
INT8_REGISTRATIONS = {
    op: f"Register_{op}_INT8" for op in (
        "ADD", "AVERAGE_POOL_2D", "BATCH_MATMUL", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED",
        "MAX_POOL_2D", "MAXIMUM", "MINIMUM", "MUL", "SOFTMAX", "SVDF", "TRANSPOSE_CONV",
        "UNIDIRECTIONAL_SEQUENCE_LSTM")
}


def kernel_sources(ops: list) -> list:
    """The TFLite Micro kernel file stems (sorted, distinct) that the model's ops need."""
    return sorted({KERNEL_SOURCES.get(op, op.lower()) for op in ops})


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
