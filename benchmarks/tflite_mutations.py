"""Hostile variants of a real .tflite, and what edgemnist's runtime API does with one.

Usage: from tflite_mutations import mutate, run_model   (benchmarks/ on sys.path)

Shared by benchmarks/bench_fuzz.py (the campaign whose counts benchmarks/README.md quotes)
and tests/test_reliability.py (a bounded, derandomized campaign in CI). A mutation is
either a raw byte edit (anywhere in the file) or a structural edit made through the TFLite
schema's object API, so that the file still parses and reaches the native interpreter:
wrong shapes, wrong tensor wiring, wrong op codes, options and quantization parameters.
"""
from __future__ import annotations

import random
import struct
from pathlib import Path

import numpy as np

BYTE_KINDS = ("set_byte", "flip_bit", "set_word", "truncate", "insert", "delete")
EDIT_KINDS = ("tensor_shape", "op_input", "op_output", "graph_input", "graph_output", "opcode",
              "options_field", "quantization", "tensor_type", "buffer_index")
INTERESTING_WORDS = (0, 1, 2, 3, 4, 7, 8, 28, 127, 128, 255, 256, 0xFFFF, 0x10000, 0x7FFFFFFF,
                     0x80000000, 0xFFFFFFFF, 0xFFFFFFFE)
INTERESTING_INTS = (-(1 << 31), -1000, -2, -1, 0, 1, 2, 3, 5, 10, 28, 64, 1000, 65536, (1 << 31) - 1)
INTERESTING_FLOATS = (0.0, -0.0, -1.0, 1e-38, 1e-6, 1.0, 1e6, 3.4e38, float("inf"), float("nan"))


def mutate_bytes(data: bytes, rng: random.Random, count: int) -> bytes:
    """Applies `count` random byte-level edits anywhere in the file."""
    b = bytearray(data)
    for _ in range(count):
        if not b:
            break
        kind, pos = rng.choice(BYTE_KINDS), rng.randrange(len(b))
        if kind == "set_byte":
            b[pos] = rng.randrange(256)
        elif kind == "flip_bit":
            b[pos] ^= 1 << rng.randrange(8)
        elif kind == "set_word":
            pos &= ~3
            b[pos:pos + 4] = struct.pack("<I", rng.choice(INTERESTING_WORDS))
        elif kind == "truncate":
            del b[pos:]
        elif kind == "insert":
            b[pos:pos] = bytes([rng.randrange(256)]) * rng.randint(1, 8)
        else:
            del b[pos:pos + rng.randint(1, 8)]
    return bytes(b)


def _edit(model, rng: random.Random, kind: str) -> None:
    graph = model.subgraphs[0]
    tensors, ops = graph.tensors, graph.operators
    tensor = rng.randrange(len(tensors))
    op = ops[rng.randrange(len(ops))]
    if kind == "tensor_shape":
        t = tensors[tensor]
        shape = [int(d) for d in (t.shape if t.shape is not None else [])] or [1]
        if rng.random() < 0.3:
            shape = [rng.choice((1, 2, 3, 28)) for _ in range(rng.randint(0, 6))]
        else:
            shape[rng.randrange(len(shape))] = rng.choice((0, 1, 2, 3, 5, 28, 64, 1000, -1, -5))
        t.shape = shape
    elif kind in ("op_input", "op_output"):
        wires = [int(i) for i in (op.inputs if kind == "op_input" else op.outputs)]
        if wires:
            wires[rng.randrange(len(wires))] = rng.choice([-1, tensor])
        setattr(op, "inputs" if kind == "op_input" else "outputs", wires)
    elif kind == "graph_input":
        graph.inputs = [tensor]
    elif kind == "graph_output":
        graph.outputs = [tensor]
    elif kind == "opcode":
        code = model.operatorCodes[rng.randrange(len(model.operatorCodes))]
        if rng.random() < 0.7:
            code.builtinCode = rng.choice((0, 3, 4, 9, 17, 22, 25, 32, 37, 38, 40, 53, 114, 200))
            code.deprecatedBuiltinCode = min(code.builtinCode, 127)
        else:
            code.version = rng.choice((0, 2, 7, 99, -1))
    elif kind == "options_field":
        options = op.builtinOptions
        fields = [k for k, v in vars(options).items() if isinstance(v, (int, float))] if options is not None else []
        if fields:
            name = rng.choice(fields)
            value = getattr(options, name)
            setattr(options, name, rng.choice(INTERESTING_FLOATS) if isinstance(value, float)
                    else rng.choice(INTERESTING_INTS))
        else:
            op.builtinOptionsType = rng.randrange(1, 130)
    elif kind == "quantization":
        q = tensors[tensor].quantization
        if q is not None and q.scale is not None and len(q.scale):
            which = rng.random()
            if which < 0.4:
                q.scale = [rng.choice(INTERESTING_FLOATS[:-2]) for _ in q.scale]  # finite: NaN is rejected
            elif which < 0.7:
                q.zeroPoint = [rng.choice(INTERESTING_INTS) for _ in (q.zeroPoint if q.zeroPoint is not None else [0])]
            elif which < 0.85:
                q.quantizedDimension = rng.choice((0, 1, 2, 3, 5, -1))
            else:
                q.scale, q.zeroPoint = q.scale[:1], (q.zeroPoint[:1] if q.zeroPoint is not None else None)
    elif kind == "tensor_type":
        tensors[tensor].type = rng.choice((0, 1, 2, 3, 4, 6, 7, 9, 10, 17))
    elif kind == "buffer_index":
        tensors[tensor].buffer = rng.randrange(len(model.buffers))


def mutate_structure(data: bytes, rng: random.Random, count: int) -> bytes:
    """Applies `count` schema-level edits (the file stays a parseable flatbuffer)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    for _ in range(count):
        _edit(model, rng, rng.choice(EDIT_KINDS))
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def mutate(data: bytes, seed: int) -> tuple[bytes, str]:
    """One hostile variant of `data`, reproducible from `seed`: (bytes, "bytes" or "structure")."""
    rng = random.Random(seed)
    count = rng.choice((1, 1, 1, 2, 3, 5))
    if rng.random() < 0.5:
        return mutate_bytes(data, rng, count), "bytes"
    try:
        return mutate_structure(data, rng, count), "structure"
    except Exception:  # the object API could not pack this edit (e.g. a value out of its type's range)
        return mutate_bytes(data, rng, count), "bytes"


# Outcomes of `run_model`, in the order tables list them.
OUTCOMES = ("rejected_by_validation", "rejected_by_runtime", "interpreter_crash_caught", "ran")


def run_model(path: Path, images: np.ndarray) -> str:
    """Loads a hostile model with `Runner` (preflight included) and predicts `images`.

    Returns one of OUTCOMES. Anything but a ValueError (TFLiteFormatError included) escapes:
    that is the failure this helper exists to find. A native crash not caught by the
    preflight takes the calling process down, which no caller can miss.
    """
    from edgemnist.runtime import Runner
    from edgemnist.runtime.tflite_info import TFLiteFormatError

    try:
        runner = Runner(path)
    except TFLiteFormatError:
        return "rejected_by_validation"
    except ValueError as exc:
        message = str(exc)
        assert message.startswith(str(path)), message  # every load error names the file
        return "interpreter_crash_caught" if ("crashed" in message or "hung" in message) else "rejected_by_runtime"
    try:
        runner.predict_one(images[0])
        runner.predict(images, batch_size=4)
    except ValueError:  # e.g. the mutated input shape is not (28, 28, 1)
        return "rejected_by_runtime"
    return "ran"
