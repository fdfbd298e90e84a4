"""Tests for edgemnist.runtime.tflite_reader: agrees with LiteRT on real models, rejects malformed ones."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _helpers import repack
from edgemnist.runtime import tflite_info, tflite_reader
from edgemnist.runtime.tflite_reader import TFLiteFormatError


@pytest.fixture(scope="module")
def int8_bytes(tflite_variants):
    return tflite_variants["int8"].read_bytes()


@pytest.mark.parametrize("variant", ["int8", "float32"])
def test_reader_agrees_with_litert(tflite_variants, variant):
    from ai_edge_litert.interpreter import Interpreter

    path = str(tflite_variants[variant])
    model = tflite_reader.validate(path)
    interpreter = Interpreter(model_path=path)
    assert model.ops == [op["op_name"] for op in interpreter._get_ops_details()]
    details = interpreter.get_tensor_details()
    assert len(details) == len(model.tensors)
    for d, t in zip(details, model.tensors):
        assert (t.index, t.name, list(t.shape)) == (d["index"], d["name"], list(d["shape"]))
        assert t.dtype == np.dtype(d["dtype"]).name
        q = d["quantization_parameters"]
        assert list(t.quantization.scales if t.quantization else ()) == [float(s) for s in q["scales"]]
        if len(q["scales"]):
            assert list(t.quantization.zero_points) == [int(z) for z in q["zero_points"]]
            assert t.quantization.quantized_dimension == q["quantized_dimension"]
        if t.data:
            np.testing.assert_array_equal(t.numpy(), interpreter.get_tensor(d["index"]))
    assert [t.name for t in model.inputs] == [d["name"] for d in interpreter.get_input_details()]
    assert [t.name for t in model.outputs] == [d["name"] for d in interpreter.get_output_details()]
    assert "SPACE_TO_BATCH_ND" not in model.ops  # batch-1 export keeps dilation native


def test_check_tflite_file_names_what_is_wrong(tflite_variants, tmp_path):
    assert tflite_reader.check_tflite_file(tflite_variants["int8"]) == tflite_variants["int8"]
    with pytest.raises(FileNotFoundError, match="no such file"):
        tflite_reader.check_tflite_file(tmp_path / "absent.tflite")
    with pytest.raises(ValueError, match="not a file"):
        tflite_reader.check_tflite_file(tmp_path)
    (tmp_path / "fake.tflite").write_bytes(b"not a flatbuffer" * 8)
    with pytest.raises(TFLiteFormatError, match="fake.tflite"):
        tflite_reader.check_tflite_file(tmp_path / "fake.tflite")


def test_bytes_and_path_give_the_same_model(tflite_variants, int8_bytes):
    from_path = tflite_reader.read_model(tflite_variants["int8"])
    from_bytes = tflite_reader.read_model(int8_bytes, name="x.tflite")
    assert from_bytes.ops == from_path.ops and from_bytes.sha256 == from_path.sha256
    assert from_bytes.tensors == from_path.tensors


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b[:0], "truncated or empty"),
        (lambda b: b[:6], "truncated or empty"),
        (lambda b: b[:4] + b"TFL2" + b[8:], "file identifier"),
        (lambda b: (len(b) + 100).to_bytes(4, "little") + b[4:], "outside the file"),
        (lambda b: b[: len(b) // 2], "outside the file"),
        (lambda b: bytes(range(256)) * 4, "file identifier"),
    ],
    ids=["empty", "tiny", "identifier", "root-offset", "half", "random"],
)
def test_malformed_bytes_are_named(int8_bytes, mutate, message):
    with pytest.raises(TFLiteFormatError, match=message) as err:
        tflite_reader.validate(mutate(int8_bytes), name="hostile.tflite")
    assert "hostile.tflite" in str(err.value)


def _set_opcode_index(model):
    model.subgraphs[0].operators[3].opcodeIndex = 250


def _set_buffer_index(model):
    model.subgraphs[0].tensors[5].buffer = 10_000


def _set_absurd_shape(model):
    model.subgraphs[0].tensors[0].shape = [1 << 30, 1 << 30, 64]


def _set_tensor_index(model):
    model.subgraphs[0].operators[0].inputs = [0, 9999]


def _set_weight_shape(model):
    tensor = next(t for t in model.subgraphs[0].tensors if t.buffer and model.buffers[t.buffer].data is not None)
    tensor.shape = [int(d) * 2 for d in tensor.shape]


@pytest.mark.parametrize(
    "edit, message",
    [
        (_set_opcode_index, "opcode index 250"),
        (_set_buffer_index, "buffer 10000"),
        (_set_absurd_shape, "absurd size"),
        (_set_tensor_index, "index 9999"),
        (_set_weight_shape, "buffer .* holds"),
    ],
    ids=["opcode-index", "buffer-index", "absurd-shape", "tensor-index", "weights-vs-shape"],
)
def test_structural_faults_are_named(int8_bytes, edit, message):
    repacked_ok = repack(int8_bytes, lambda m: None)
    assert tflite_reader.validate(repacked_ok).ops == tflite_reader.read_model(int8_bytes).ops
    with pytest.raises(TFLiteFormatError, match=message):
        tflite_reader.validate(repack(int8_bytes, edit), name="edited.tflite")


def _shared_table_bomb(n: int) -> bytes:
    """A hand-built model: n subgraph entries all naming one subgraph, whose n tensor entries all
    name one empty tensor table -- n*n tables to visit from about 8*n bytes."""
    import struct

    out = bytearray(struct.pack("<I4s", 24, b"TFL3"))
    out += struct.pack("<7H2x", 14, 12, 0, 0, 4, 0, 8)  # model vtable at 8: subgraphs, buffers
    out += struct.pack("<iII", 24 - 8, 52 - 28, 36 - 32)  # model table at 24
    out += struct.pack("<II", 1, 44 - 40)  # buffers vector at 36: one empty buffer
    out += struct.pack("<i2H", -4, 4, 4)  # empty table at 44, its vtable at 48
    subgraph = 56 + 4 * n
    out += struct.pack("<I", n) + b"".join(struct.pack("<I", subgraph - (56 + 4 * i)) for i in range(n))
    out += struct.pack("<iI", -8, 12)  # subgraph table; tensors vector at +16
    out += struct.pack("<3H2x", 6, 8, 4)  # its vtable at +8: slot 0 (tensors)
    tensor = subgraph + 20 + 4 * n
    out += struct.pack("<I", n) + b"".join(struct.pack("<I", tensor - (subgraph + 20 + 4 * i)) for i in range(n))
    out += struct.pack("<i2H", -4, 4, 4)  # empty tensor table and its vtable
    return bytes(out)


def test_shared_references_cannot_blow_up_the_work():
    """Work is bounded by the file size, however often the same table is referenced."""
    small = tflite_reader.read_model(_shared_table_bomb(3))
    assert [len(sg.tensors) for sg in small.subgraphs] == [3, 3, 3]
    with pytest.raises(TFLiteFormatError, match="bomb.tflite: too many tables"):  # not 4 million visits
        tflite_reader.read_model(_shared_table_bomb(2000), name="bomb.tflite")


@st.composite
def _mutations(draw):
    kind = draw(st.sampled_from(["flip", "word", "truncate", "insert", "delete"]))
    pos = draw(st.integers(0, 1 << 20))
    value = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]) | st.integers(0, 2**32 - 1))
    count = draw(st.integers(1, 8))
    return kind, pos, value, count


def _apply(buf: bytes, mutations) -> bytes:
    b = bytearray(buf)
    for kind, pos, value, count in mutations:
        if not b:
            break
        pos %= len(b)
        if kind == "flip":
            b[pos] ^= 1 << (value % 8)
        elif kind == "word":
            pos &= ~3
            b[pos:pos + 4] = value.to_bytes(4, "little")
        elif kind == "truncate":
            del b[pos:]
        elif kind == "insert":
            b[pos:pos] = bytes([value & 0xFF]) * count
        else:
            del b[pos:pos + count]
    return bytes(b)


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(mutations=st.lists(_mutations(), min_size=1, max_size=4))
def test_mutated_models_raise_only_format_errors(int8_bytes, mutations):
    hostile = _apply(int8_bytes, mutations)
    try:
        model = tflite_reader.validate(hostile, name="fuzzed.tflite")
    except TFLiteFormatError as exc:
        assert str(exc).startswith("fuzzed.tflite: ")
        return
    info = tflite_info.describe(model)
    assert sum(info["bytes_breakdown"].values()) == len(hostile)
    tflite_info.format_description(info)
