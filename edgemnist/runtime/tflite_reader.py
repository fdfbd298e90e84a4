"""A bounds-checked reader of .tflite flatbuffers, without TensorFlow or the flatbuffers package.

Usage: from edgemnist.runtime.tflite_reader import read_model; model = read_model("m.tflite"); model.ops

numpy and the standard library only. Every offset, length and index is checked against
the file before it is followed, the work done is bounded by the file size, and anything
malformed raises `TFLiteFormatError` naming the file and the fault. The runtime calls
`validate` (through `check_tflite_file`) before it hands a file to a native interpreter,
because interpreters can crash on hostile flatbuffers. Op and type names come from
tflite_schema.py; the JSON description of a model is tflite_info.py's.
"""
from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Union

import numpy as np

from edgemnist.runtime.tflite_schema import FILE_IDENTIFIER, SCHEMA_VERSION, TENSOR_TYPES, op_name

MAX_RANK = 16  # the widest tensor any TFLite kernel handles is far below this
MAX_TENSOR_BYTES = 1 << 32  # 4 GiB: larger than any single tensor a TFLite model holds
MAX_TABLES = 2_000_000  # also bounded by the file size (a table takes at least 4 bytes)

BREAKDOWN_KEYS = ("weights", "quantization", "names", "metadata", "other")


class TFLiteFormatError(ValueError):
    """The bytes are not a well-formed TFLite model; the message names the file and the fault."""


@dataclass(frozen=True)
class Quantization:
    """A tensor's quantization parameters (per-tensor: one scale; per-channel: one per channel)."""

    scales: tuple = ()
    zero_points: tuple = ()
    quantized_dimension: int = 0
    min: tuple = ()
    max: tuple = ()


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a subgraph; `data` holds the constant bytes (empty for activations)."""

    index: int
    name: str
    shape: tuple
    dtype: str
    buffer: int
    data: bytes
    quantization: Optional[Quantization]
    shape_signature: Optional[tuple] = None
    is_variable: bool = False
    sparse: bool = False

    @property
    def scale(self) -> Optional[float]:
        """The first (per-tensor) scale, or None when not quantized."""
        return self.quantization.scales[0] if self.quantization and self.quantization.scales else None

    @property
    def zero_point(self) -> Optional[int]:
        """The first (per-tensor) zero point, or None when not quantized."""
        q = self.quantization
        if not q or not q.scales:
            return None
        return q.zero_points[0] if q.zero_points else 0

    def numpy(self) -> np.ndarray:
        """The constant data as an array of the tensor's shape (fixed-size, byte-aligned dtypes)."""
        if self.dtype in ("string", "resource", "variant", "int4", "uint4", "int2") or self.dtype.startswith("float8"):
            raise ValueError(f"tensor {self.name!r} of type {self.dtype} has no numpy form here")
        dtype = np.dtype("<u2" if self.dtype == "bfloat16" else np.dtype(self.dtype).newbyteorder("<"))
        return np.frombuffer(self.data, dtype=dtype).reshape(self.shape)


@dataclass(frozen=True)
class OperatorInfo:
    """One operator in execution order."""

    index: int
    op: str  # builtin name, e.g. "DEPTHWISE_CONV_2D", or the custom code for CUSTOM ops
    opcode_index: int
    version: int
    inputs: tuple  # tensor indices, -1 for an omitted optional input
    outputs: tuple
    # The builtin options this reader knows (OPTION_FIELDS), by schema field name; empty otherwise.
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SubgraphInfo:
    """One subgraph: its tensors, graph inputs/outputs and operators."""

    name: str
    tensors: tuple
    inputs: tuple
    outputs: tuple
    operators: tuple


@dataclass(frozen=True)
class OperatorCode:
    """An entry of the model's operator-code table."""

    builtin_code: int
    name: str
    version: int
    custom_code: Optional[str] = None


@dataclass(frozen=True)
class SignatureInfo:
    """A signature def: named inputs and outputs mapped to tensor indices of one subgraph."""

    key: str
    subgraph_index: int
    inputs: tuple  # ((name, tensor_index), ...)
    outputs: tuple


@dataclass(frozen=True)
class TFLiteModel:
    """What `read_model` found in a .tflite file."""

    name: str  # the path, or the name given for in-memory bytes
    size: int
    sha256: str
    version: int
    description: str
    opcodes: tuple
    subgraphs: tuple
    buffer_sizes: tuple  # bytes of each buffer's data (inline or, for large models, external)
    metadata: tuple  # ((name, buffer_index, data bytes), ...)
    signatures: tuple
    bytes_breakdown: dict = field(default_factory=dict)

    @property
    def main(self) -> SubgraphInfo:
        """Subgraph 0, the one an interpreter runs."""
        return self.subgraphs[0]

    @property
    def ops(self) -> list:
        """Op names of the main subgraph in execution order."""
        return [op.op for op in self.main.operators]

    @property
    def tensors(self) -> tuple:
        """Tensors of the main subgraph."""
        return self.main.tensors

    @property
    def inputs(self) -> list:
        """Input tensors of the main subgraph."""
        return [self.main.tensors[i] for i in self.main.inputs]

    @property
    def outputs(self) -> list:
        """Output tensors of the main subgraph."""
        return [self.main.tensors[i] for i in self.main.outputs]


class _Table:
    __slots__ = ("pos", "vtable", "vsize", "tsize")

    def __init__(self, pos, vtable, vsize, tsize):
        self.pos, self.vtable, self.vsize, self.tsize = pos, vtable, vsize, tsize


class _Reader:
    """Bounds-checked access to a flatbuffer; records which byte ranges hold what."""

    def __init__(self, buf: bytes, name: str):
        self.buf = buf
        self.n = len(buf)
        self.name = name
        self.tables_left = min(MAX_TABLES, self.n // 4 + 16)
        self.regions = []  # (start, end, category) for the bytes breakdown

    def fail(self, what: str):
        raise TFLiteFormatError(f"{self.name}: {what}")

    def _check(self, pos: int, size: int, what: str) -> None:
        if pos < 0 or size < 0 or pos + size > self.n:
            self.fail(f"{what} at offset {pos} (+{size} bytes) lies outside the file ({self.n} bytes); "
                      "the file is truncated or corrupt")

    def scalar(self, fmt: str, pos: int, what: str):
        size = struct.calcsize(fmt)
        self._check(pos, size, what)
        return struct.unpack_from(fmt, self.buf, pos)[0]

    def table_at(self, pos: int, what: str) -> _Table:
        self.tables_left -= 1
        if self.tables_left < 0:
            self.fail("too many tables for the file's size (shared or cyclic references); refusing to go on")
        if pos % 4:
            self.fail(f"{what} at offset {pos} is not 4-byte aligned")
        vtable = pos - self.scalar("<i", pos, what)
        if vtable % 2:
            self.fail(f"{what}: vtable offset {vtable} is misaligned")
        vsize = self.scalar("<H", vtable, f"vtable of {what}")
        tsize = self.scalar("<H", vtable + 2, f"vtable of {what}")
        if vsize < 4 or vsize % 2:
            self.fail(f"{what}: vtable at offset {vtable} has a bad size {vsize}")
        self._check(vtable, vsize, f"vtable of {what}")
        if tsize < 4:
            self.fail(f"{what}: table at offset {pos} has a bad size {tsize}")
        self._check(pos, tsize, what)
        return _Table(pos, vtable, vsize, tsize)

    def field_pos(self, t: _Table, slot: int, size: int, what: str) -> Optional[int]:
        entry = 4 + 2 * slot
        if entry + 2 > t.vsize:
            return None
        voff = struct.unpack_from("<H", self.buf, t.vtable + entry)[0]
        if voff == 0:
            return None
        if voff < 4 or voff + size > t.tsize:
            self.fail(f"{what}: field {slot} at table offset {voff} overruns its table ({t.tsize} bytes)")
        return t.pos + voff

    def get(self, t: _Table, slot: int, fmt: str, default, what: str):
        pos = self.field_pos(t, slot, struct.calcsize(fmt), what)
        return default if pos is None else struct.unpack_from(fmt, self.buf, pos)[0]

    def follow(self, t: _Table, slot: int, what: str) -> Optional[int]:
        pos = self.field_pos(t, slot, 4, what)
        if pos is None:
            return None
        target = pos + struct.unpack_from("<I", self.buf, pos)[0]
        if target >= self.n:
            self.fail(f"{what} points to offset {target}, outside the file ({self.n} bytes)")
        return target

    def table(self, t: _Table, slot: int, what: str) -> Optional[_Table]:
        target = self.follow(t, slot, what)
        return None if target is None else self.table_at(target, what)

    def vector(self, t: _Table, slot: int, elem_size: int, what: str) -> Optional[tuple]:
        """(start of the elements, count) of a vector field, or None when absent."""
        target = self.follow(t, slot, what)
        if target is None:
            return None
        if target % 4:
            self.fail(f"{what}: vector at offset {target} is not 4-byte aligned")
        count = self.scalar("<I", target, what)
        start = target + 4
        if count > (self.n - start) // elem_size:
            self.fail(f"{what}: vector of {count} elements at offset {target} runs past the end of the file")
        if elem_size == 8 and start % 8:
            self.fail(f"{what}: 8-byte vector at offset {start} is misaligned")
        return start, count

    def array(self, t: _Table, slot: int, dtype: str, what: str, category: Optional[str] = None) -> np.ndarray:
        dt = np.dtype(dtype)
        vec = self.vector(t, slot, dt.itemsize, what)
        if vec is None:
            return np.zeros(0, dt)
        start, count = vec
        if category and count:
            self.regions.append((start, start + count * dt.itemsize, category))
        return np.frombuffer(self.buf, dtype=dt, count=count, offset=start)

    def string(self, t: _Table, slot: int, what: str, category: str = "names") -> Optional[str]:
        vec = self.vector(t, slot, 1, what)
        if vec is None:
            return None
        start, count = vec
        if start + count >= self.n or self.buf[start + count] != 0:
            self.fail(f"{what}: string at offset {start - 4} is not zero-terminated")
        self.regions.append((start, start + count + 1, category))
        return bytes(self.buf[start:start + count]).decode("utf-8", errors="replace")

    def tables(self, t: _Table, slot: int, what: str) -> list:
        vec = self.vector(t, slot, 4, what)
        if vec is None:
            return []
        start, count = vec
        if count > self.tables_left:
            self.fail(f"too many tables: {what} adds {count} entries, more than a file of {self.n} bytes "
                      "can hold (shared or cyclic references); refusing to go on")
        offsets = np.frombuffer(self.buf, dtype="<u4", count=count, offset=start).astype(np.int64)
        positions = offsets + start + 4 * np.arange(count, dtype=np.int64)
        return [self.table_at(int(p), f"{what}[{i}]") for i, p in enumerate(positions)]


def _check_index(r: _Reader, values, limit: int, what: str, allow_minus_one: bool = False) -> tuple:
    values = tuple(int(v) for v in values)
    low = -1 if allow_minus_one else 0
    for v in values:
        if not low <= v < limit:
            r.fail(f"{what} refers to index {v}, outside 0..{limit - 1}")
    return values


def _read_quantization(r: _Reader, t: _Table, what: str) -> Optional[Quantization]:
    q = r.table(t, 4, f"{what} quantization")
    if q is None:
        return None
    mins = r.array(q, 0, "<f4", f"{what} quantization min", "quantization")
    maxs = r.array(q, 1, "<f4", f"{what} quantization max", "quantization")
    scales = r.array(q, 2, "<f4", f"{what} quantization scale", "quantization")
    zeros = r.array(q, 3, "<i8", f"{what} quantization zero_point", "quantization")
    if len(zeros) and len(zeros) != len(scales):
        r.fail(f"{what}: {len(scales)} quantization scales but {len(zeros)} zero points")
    if len(scales) and not np.all(np.isfinite(scales)):
        r.fail(f"{what}: a quantization scale is not finite")
    dim = r.get(q, 6, "<i", 0, f"{what} quantization")
    # The details union (slots 4/5) is custom quantization; only its table is checked.
    if r.get(q, 4, "<B", 0, what):
        r.table(q, 5, f"{what} quantization details")
    return Quantization(
        scales=tuple(float(s) for s in scales),
        zero_points=tuple(int(z) for z in zeros),
        quantized_dimension=int(dim),
        min=tuple(float(v) for v in mins),
        max=tuple(float(v) for v in maxs),
    )


def _read_tensor(r: _Reader, t: _Table, index: int, buffers: list, sub: str) -> TensorInfo:
    what = f"{sub} tensor {index}"
    name = r.string(t, 3, f"{what} name") or ""
    what = f"{sub} tensor {index} ({name!r})" if name else what
    shape = tuple(int(d) for d in r.array(t, 0, "<i4", f"{what} shape"))
    signature = r.array(t, 7, "<i4", f"{what} shape_signature")
    if len(shape) > MAX_RANK or len(signature) > MAX_RANK:
        r.fail(f"{what} has rank {max(len(shape), len(signature))}, more than {MAX_RANK}")
    if any(d < -1 for d in shape) or any(int(d) < -1 for d in signature):
        r.fail(f"{what} has a negative dimension in shape {list(shape)}")
    type_code = r.get(t, 1, "<b", 0, what)
    if not 0 <= type_code < len(TENSOR_TYPES):
        r.fail(f"{what} has unknown tensor type {type_code}")
    dtype, bits = TENSOR_TYPES[type_code]
    count = 1
    for d in shape:
        count *= max(d, 1)
    if count * max(bits, 8) // 8 > MAX_TENSOR_BYTES:
        r.fail(f"{what} has an absurd size: shape {list(shape)} of {dtype} is over {MAX_TENSOR_BYTES} bytes")
    buffer = r.get(t, 2, "<I", 0, what)
    if buffer >= len(buffers):
        r.fail(f"{what} refers to buffer {buffer}, but the model has {len(buffers)} buffers")
    sparsity = r.table(t, 6, f"{what} sparsity")
    data = buffers[buffer]
    if len(data) and bits and sparsity is None and -1 not in shape:
        expected = {(count * bits + 7) // 8, count * max(bits, 8) // 8}  # sub-byte types: packed or not
        if len(data) not in expected:
            r.fail(f"{what}: shape {list(shape)} of {dtype} needs {max(expected)} bytes "
                   f"but its buffer {buffer} holds {len(data)}")
    return TensorInfo(
        index=index,
        name=name,
        shape=shape,
        dtype=dtype,
        buffer=int(buffer),
        data=data,
        quantization=_read_quantization(r, t, what),
        shape_signature=tuple(int(d) for d in signature) if len(signature) else None,
        is_variable=bool(r.get(t, 5, "<B", 0, what)),
        sparse=sparsity is not None,
    )


# The builtin options read into OperatorInfo.options: union type -> (table name, fields), each field
# (name, slot, struct format, schema default). The union types and slots are the TFLite schema's
# (schema.fbs: BuiltinOptions, Conv2DOptions, ...); padding 0 is SAME, 1 VALID; activation 0 NONE,
# 1 RELU, 2 RELU_N1_TO_1, 3 RELU6.
OPTION_FIELDS = {
    1: ("Conv2DOptions", (("padding", 0, "<b", 0), ("stride_w", 1, "<i", 0), ("stride_h", 2, "<i", 0),
                          ("fused_activation_function", 3, "<b", 0), ("dilation_w_factor", 4, "<i", 1),
                          ("dilation_h_factor", 5, "<i", 1))),
    2: ("DepthwiseConv2DOptions", (("padding", 0, "<b", 0), ("stride_w", 1, "<i", 0), ("stride_h", 2, "<i", 0),
                                   ("depth_multiplier", 3, "<i", 0), ("fused_activation_function", 4, "<b", 0),
                                   ("dilation_w_factor", 5, "<i", 1), ("dilation_h_factor", 6, "<i", 1))),
    5: ("Pool2DOptions", (("padding", 0, "<b", 0), ("stride_w", 1, "<i", 0), ("stride_h", 2, "<i", 0),
                          ("filter_width", 3, "<i", 0), ("filter_height", 4, "<i", 0),
                          ("fused_activation_function", 5, "<b", 0))),
    8: ("FullyConnectedOptions", (("fused_activation_function", 0, "<b", 0), ("weights_format", 1, "<b", 0),
                                  ("keep_num_dims", 2, "<?", False), ("asymmetric_quantize_inputs", 3, "<?", False))),
    9: ("SoftmaxOptions", (("beta", 0, "<f", 0.0),)),
    27: ("ReducerOptions", (("keep_dims", 0, "<?", False),)),
}


def _read_options(r: _Reader, t: _Table, what: str) -> dict:
    kind = r.get(t, 3, "<B", 0, what)
    if kind not in OPTION_FIELDS:
        return {}
    table_name, fields = OPTION_FIELDS[kind]
    options = r.table(t, 4, f"{what} {table_name}")
    if options is None:
        return {name: default for name, _, _, default in fields}
    return {name: r.get(options, slot, fmt, default, f"{what} {table_name}.{name}")
            for name, slot, fmt, default in fields}


def _read_operator(r: _Reader, t: _Table, index: int, opcodes: tuple, n_tensors: int, sub: str) -> OperatorInfo:
    what = f"{sub} operator {index}"
    opcode_index = r.get(t, 0, "<I", 0, what)
    if opcode_index >= len(opcodes):
        r.fail(f"{what} has opcode index {opcode_index}, but the model has {len(opcodes)} operator codes")
    code = opcodes[opcode_index]
    inputs = _check_index(r, r.array(t, 1, "<i4", f"{what} inputs"), n_tensors, f"{what} inputs", True)
    outputs = _check_index(r, r.array(t, 2, "<i4", f"{what} outputs"), n_tensors, f"{what} outputs", True)
    r.array(t, 8, "<i4", f"{what} intermediates")
    r.array(t, 5, "<u1", f"{what} custom options", "other")
    r.array(t, 7, "<u1", f"{what} mutating_variable_inputs")
    for type_slot, value_slot in ((3, 4), (11, 12)):  # builtin_options, builtin_options_2
        if r.get(t, type_slot, "<B", 0, what):
            r.table(t, value_slot, f"{what} ({code.name}) options")
    large_offset = r.get(t, 9, "<Q", 0, what)
    large_size = r.get(t, 10, "<Q", 0, what)
    if large_offset and (large_offset > r.n or large_size > r.n - large_offset):
        r.fail(f"{what}: custom options at offset {large_offset} (+{large_size}) lie outside the file")
    name = code.custom_code if code.name == "CUSTOM" and code.custom_code else code.name
    return OperatorInfo(index, name, int(opcode_index), code.version, inputs, outputs, _read_options(r, t, what))


def _read_subgraph(r: _Reader, t: _Table, index: int, opcodes: tuple, buffers: list) -> SubgraphInfo:
    sub = f"subgraph {index}"
    tensors = tuple(
        _read_tensor(r, tt, i, buffers, sub) for i, tt in enumerate(r.tables(t, 0, f"{sub} tensors"))
    )
    n = len(tensors)
    inputs = _check_index(r, r.array(t, 1, "<i4", f"{sub} inputs"), n, f"{sub} inputs")
    outputs = _check_index(r, r.array(t, 2, "<i4", f"{sub} outputs"), n, f"{sub} outputs")
    operators = tuple(
        _read_operator(r, ot, i, opcodes, n, sub) for i, ot in enumerate(r.tables(t, 3, f"{sub} operators"))
    )
    name = r.string(t, 4, f"{sub} name") or ""
    return SubgraphInfo(name, tensors, inputs, outputs, operators)


def _read_opcodes(r: _Reader, model: _Table) -> tuple:
    codes = []
    for i, t in enumerate(r.tables(model, 1, "operator_codes")):
        what = f"operator code {i}"
        deprecated = r.get(t, 0, "<b", 0, what)
        builtin = r.get(t, 3, "<i", 0, what)
        code = max(int(deprecated), int(builtin))  # old files fill only the int8 field
        if code < 0:
            r.fail(f"{what} has a negative builtin code {code}")
        custom = r.string(t, 1, f"{what} custom_code")
        version = r.get(t, 2, "<i", 1, what)
        codes.append(OperatorCode(code, op_name(code), int(version), custom))
    return tuple(codes)


def _read_buffers(r: _Reader, model: _Table) -> list:
    """Each buffer's data as a zero-copy view (inline vector, or offset/size for >2 GB models)."""
    out = []
    for i, t in enumerate(r.tables(model, 4, "buffers")):
        what = f"buffer {i}"
        vec = r.vector(t, 0, 1, f"{what} data")
        offset = r.get(t, 1, "<Q", 0, what)
        size = r.get(t, 2, "<Q", 0, what)
        if vec is not None and vec[1]:
            start, count = vec
        elif offset > 1:
            if offset > r.n or size > r.n - offset:
                r.fail(f"{what}: data at offset {offset} (+{size} bytes) lies outside the file ({r.n} bytes)")
            start, count = int(offset), int(size)
        else:
            start, count = 0, 0
        out.append((memoryview(r.buf)[start:start + count], start))
    return out


def _breakdown(r: _Reader, total: int) -> dict:
    """Bytes per category; where ranges overlap (hostile files) the first recorded wins."""
    counts = dict.fromkeys(BREAKDOWN_KEYS, 0)
    covered_to = 0
    for start, end, category in sorted(r.regions, key=lambda x: (x[0], -x[1])):
        start = max(start, covered_to)
        if end > start:
            counts[category] += end - start
            covered_to = end
    counts["other"] += total - sum(counts.values())
    return counts


def read_model(path_or_bytes: Union[str, os.PathLike, bytes, bytearray, memoryview], name: Optional[str] = None) -> TFLiteModel:
    """Parses a .tflite file (or its bytes), checking every offset, length and index.

    Args:
        path_or_bytes: a path to a .tflite file, or the file's bytes.
        name: what error messages call the model (defaults to the path, or "<bytes>").

    Returns:
        The parsed `TFLiteModel`.

    Raises:
        TFLiteFormatError: the bytes are not a well-formed TFLite flatbuffer.
        FileNotFoundError: the path does not exist.
    """
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        buf = bytes(path_or_bytes)
        name = name or "<bytes>"
    else:
        buf = Path(path_or_bytes).read_bytes()
        name = name or str(path_or_bytes)
    r = _Reader(buf, name)
    if len(buf) < 8:
        r.fail(f"only {len(buf)} bytes; a TFLite model is far larger (truncated or empty file)")
    if buf[4:8] != FILE_IDENTIFIER:
        r.fail(f"wrong file identifier {buf[4:8]!r} (bytes 4..8 must be {FILE_IDENTIFIER!r}); not a TFLite model")
    model = r.table_at(struct.unpack_from("<I", buf, 0)[0], "root table")
    version = r.get(model, 0, "<I", 0, "model")
    opcodes = _read_opcodes(r, model)
    raw_buffers = _read_buffers(r, model)
    buffers = [view for view, _ in raw_buffers]
    subgraph_tables = r.tables(model, 2, "subgraphs")
    if not subgraph_tables:
        r.fail("the model has no subgraphs")
    subgraphs = tuple(_read_subgraph(r, t, i, opcodes, buffers) for i, t in enumerate(subgraph_tables))
    description = r.string(model, 3, "description", "metadata") or ""
    metadata_buffers = set(
        _check_index(r, r.array(model, 5, "<i4", "metadata_buffer"), len(buffers), "metadata_buffer")
    )
    metadata = []
    for i, t in enumerate(r.tables(model, 6, "metadata")):
        meta_name = r.string(t, 0, f"metadata {i} name", "metadata") or ""
        index = r.get(t, 1, "<I", 0, f"metadata {i}")
        if index >= len(buffers):
            r.fail(f"metadata {meta_name!r} refers to buffer {index}, but the model has {len(buffers)} buffers")
        metadata_buffers.add(int(index))
        metadata.append((meta_name, int(index), bytes(buffers[index])))
    signatures = []
    for i, t in enumerate(r.tables(model, 7, "signature_defs")):
        what = f"signature_def {i}"
        key = r.string(t, 2, f"{what} key", "metadata") or ""
        sub_index = r.get(t, 4, "<I", 0, what)
        if sub_index >= len(subgraphs):
            r.fail(f"{what} ({key!r}) refers to subgraph {sub_index}, but the model has {len(subgraphs)}")
        n_tensors = len(subgraphs[sub_index].tensors)
        maps = []
        for slot, kind in ((0, "inputs"), (1, "outputs")):
            entries = []
            for j, mt in enumerate(r.tables(t, slot, f"{what} {kind}")):
                entry_name = r.string(mt, 0, f"{what} {kind}[{j}] name", "metadata") or ""
                tensor_index = r.get(mt, 1, "<I", 0, f"{what} {kind}[{j}]")
                _check_index(r, [tensor_index], n_tensors, f"{what} {kind}[{j}] ({entry_name!r})")
                entries.append((entry_name, int(tensor_index)))
            maps.append(tuple(entries))
        signatures.append(SignatureInfo(key, int(sub_index), maps[0], maps[1]))
    weight_buffers = {t.buffer for sg in subgraphs for t in sg.tensors}
    for i, (view, start) in enumerate(raw_buffers):
        if len(view):
            category = "metadata" if i in metadata_buffers else "weights" if i in weight_buffers else "other"
            r.regions.append((start, start + len(view), category))
    return TFLiteModel(
        name=name,
        size=len(buf),
        sha256=hashlib.sha256(buf).hexdigest(),
        version=int(version),
        description=description,
        opcodes=opcodes,
        subgraphs=tuple(
            SubgraphInfo(
                sg.name,
                tuple(_with_bytes(t) for t in sg.tensors),
                sg.inputs,
                sg.outputs,
                sg.operators,
            )
            for sg in subgraphs
        ),
        buffer_sizes=tuple(len(view) for view in buffers),
        metadata=tuple(metadata),
        signatures=tuple(signatures),
        bytes_breakdown=_breakdown(r, len(buf)),
    )


def _with_bytes(t: TensorInfo) -> TensorInfo:
    """Replaces the memoryview of the parse with plain bytes (picklable, hashable)."""
    return replace(t, data=bytes(t.data))


def validate(path_or_bytes, name: Optional[str] = None) -> TFLiteModel:
    """Reads a model and checks what an interpreter relies on before it is handed one.

    Beyond `read_model`'s structural checks: the schema version is 3, the main subgraph
    has inputs, outputs and operators, and no two graph inputs share a tensor.

    Raises:
        TFLiteFormatError: naming the file and the fault.
    """
    model = read_model(path_or_bytes, name)

    def fail(what: str):
        raise TFLiteFormatError(f"{model.name}: {what}")

    if model.version != SCHEMA_VERSION:
        fail(f"schema version {model.version}, expected {SCHEMA_VERSION}")
    main = model.main
    if not main.inputs or not main.outputs:
        fail("the main subgraph has no inputs or no outputs")
    if not main.operators:
        fail("the main subgraph has no operators")
    if len(set(main.inputs)) != len(main.inputs):
        fail(f"the main subgraph lists an input tensor twice: {list(main.inputs)}")
    for sig in model.signatures:
        if sig.subgraph_index >= len(model.subgraphs):
            fail(f"signature {sig.key!r} refers to a missing subgraph")
    return model


def check_tflite_file(path: str | os.PathLike) -> Path:
    """Checks that `path` is a readable, well-formed .tflite before a native interpreter sees it.

    Returns:
        The path.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a file; TFLiteFormatError (a ValueError): not a well-formed .tflite.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path}: not a file (expected a .tflite model)")
    validate(path)
    return path
