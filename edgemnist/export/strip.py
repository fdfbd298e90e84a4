"""Strip a .tflite of what no interpreter reads (conversion metadata, internal tensor names).

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
    return _pack_model(model, schema)


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
