"""Strip a .tflite of what no interpreter reads (conversion metadata, internal tensor names)
and of a RESHAPE that only flattens the input of a FULLY_CONNECTED.

Usage: from edgemnist.export.strip import strip_model; small = strip_model(open("m.tflite", "rb").read())

`edgemnist export` strips every variant unless `--no-strip`; `edgemnist diagnose` strips
its selective model. The model is unpacked and repacked with LiteRT's generated flatbuffer
schema, keeping the converter's 16-byte alignment of weight buffers.
"""
from __future__ import annotations

import numpy as np


def strip_model(tflite: bytes) -> bytes:
    """Drops what no interpreter reads: conversion metadata and internal tensor names.

    The names of the input and output tensors and the signature stay (runtimes look them
    up). Weights, quantization parameters and ops are untouched, so every output is
    bit-identical (tests/export/test_convert.py checks it with LiteRT); `--no-strip` shows what it
    saves. Bias quantization parameters look
    redundant too, but LiteRT's outputs change without them, so they stay.
    """
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytearray(tflite), 0))
    kept = []
    for meta in model.metadata or []:
        if meta.name == b"min_runtime_version":  # 16 bytes that tools print
            kept.append(meta)
        else:
            model.buffers[meta.buffer].data = None
    model.metadata = kept or None
    model.description = None
    for subgraph in model.subgraphs:
        io_tensors = set(subgraph.inputs) | set(subgraph.outputs)
        for index, tensor in enumerate(subgraph.tensors):
            if index not in io_tensors:
                tensor.name = None
    fold_flatten(model, schema)
    return _pack_model(model, schema)


def _same_quantization(a, b) -> bool:
    qa, qb = a.quantization, b.quantization
    if qa is None or qb is None:
        return qa is None and qb is None
    return all(np.array_equal(np.asarray(getattr(qa, k) if getattr(qa, k) is not None else []),
                              np.asarray(getattr(qb, k) if getattr(qb, k) is not None else [])) for k in ("scale", "zeroPoint"))


def fold_flatten(model, schema) -> int:
    """Removes every RESHAPE whose only reader is a FULLY_CONNECTED (keep_num_dims off) and which
    only flattens (batch kept, one row of the filter's width, same type and quantization), feeding
    its input to the FULLY_CONNECTED directly; returns how many. The converter keeps such a RESHAPE
    after Keras' Flatten of a map wider than 1x1, yet FULLY_CONNECTED reads its input as rows of
    the filter's width whatever its shape, so the outputs are the same; on TFLite Micro the
    RESHAPE copies the whole map, which needs the map twice in the arena at once.
    """
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    op = schema.BuiltinOperator
    folded = 0
    for sg_index, sg in enumerate(model.subgraphs):
        before = folded
        for reshape in list(sg.operators):
            if codes[reshape.opcodeIndex] != op.RESHAPE:
                continue
            source, flat = reshape.inputs[0], reshape.outputs[0]
            readers = [o for o in sg.operators if flat in list(o.inputs)]
            if flat in list(sg.outputs) or len(readers) != 1:
                continue
            fc = readers[0]
            options = fc.builtinOptions
            if codes[fc.opcodeIndex] != op.FULLY_CONNECTED or list(fc.inputs).index(flat) != 0 or \
                    (options is not None and options.keepNumDims):
                continue
            src, dst, weights = sg.tensors[source], sg.tensors[flat], sg.tensors[fc.inputs[1]]
            src_shape, dst_shape = list(src.shape), list(dst.shape)
            if (len(dst_shape) != 2 or not src_shape or src_shape[0] != dst_shape[0]
                    or int(np.prod(src_shape)) != int(np.prod(dst_shape)) or dst_shape[1] != list(weights.shape)[-1]
                    or src.type != dst.type or not _same_quantization(src, dst)):
                continue
            inputs = list(fc.inputs)
            inputs[0] = source
            fc.inputs = inputs
            sg.operators.remove(reshape)
            folded += 1
        if folded > before:
            _drop_unused_tensors(model, sg_index)
    used = sorted({o.opcodeIndex for sg in model.subgraphs for o in sg.operators})
    if folded and len(used) < len(model.operatorCodes):
        remap = {old: new for new, old in enumerate(used)}
        model.operatorCodes = [model.operatorCodes[i] for i in used]
        for sg in model.subgraphs:
            for o in sg.operators:
                o.opcodeIndex = remap[o.opcodeIndex]
    return folded


def _drop_unused_tensors(model, sg_index: int) -> None:
    """Removes the tensors of subgraph `sg_index` that no op, subgraph input or output refers to
    (renumbering the rest); their constant data, if any, is emptied (buffers stay, as other tensors
    refer to them by index)."""
    sg = model.subgraphs[sg_index]
    used = set(sg.inputs) | set(sg.outputs)
    for o in sg.operators:
        for field in (o.inputs, o.outputs, o.intermediates):
            used.update(int(i) for i in (field if field is not None else []) if i >= 0)
    if len(used) == len(sg.tensors):
        return
    remap = {old: new for new, old in enumerate(sorted(used))}
    for index, tensor in enumerate(sg.tensors):
        if index not in used and tensor.buffer:
            model.buffers[tensor.buffer].data = None
    sg.tensors = [sg.tensors[i] for i in sorted(used)]

    def renumber(values):
        return None if values is None else [remap[int(i)] if i >= 0 else int(i) for i in values]

    for o in sg.operators:
        o.inputs, o.outputs, o.intermediates = renumber(o.inputs), renumber(o.outputs), renumber(o.intermediates)
    sg.inputs, sg.outputs = renumber(sg.inputs), renumber(sg.outputs)
    for sig in model.signatureDefs or []:
        if sig.subgraphIndex != sg_index:
            continue
        for t in (sig.inputs or []) + (sig.outputs or []):
            t.tensorIndex = remap[t.tensorIndex]


class _AlignedBuffer:
    """Packs a Buffer with its data 16-byte aligned, as the converter writes it (SIMD kernels read in place)."""

    def __init__(self, buffer, schema):
        self.buffer, self.schema = buffer, schema

    def Pack(self, builder):
        data = self.buffer.data
        offset = None
        if data is not None and len(data):
            payload = np.asarray(data, dtype=np.uint8).tobytes()
            builder.StartVector(1, len(payload), 16)
            builder.head -= len(payload)
            builder.Bytes[builder.head : builder.head + len(payload)] = payload
            builder.vectorNumElems = len(payload)
            offset = builder.EndVector()
        self.schema.BufferStart(builder)
        if offset is not None:
            self.schema.BufferAddData(builder, offset)
        return self.schema.BufferEnd(builder)


def _pack_model(model, schema) -> bytes:
    import flatbuffers

    model.buffers = [_AlignedBuffer(b, schema) for b in model.buffers]
    builder = flatbuffers.Builder(1 << 16)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
