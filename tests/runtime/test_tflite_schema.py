"""edgemnist.runtime.tflite_schema: the hand-copied TFLite tables against the schema of every installed package.

The generated `schema_py_generated.py` of ai-edge-litert, TensorFlow and tflite-micro are read
as files (loading them imports only `flatbuffers`, not TensorFlow), so the check is cheap.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from edgemnist.runtime import tflite_info
from edgemnist.runtime.tflite_schema import BUILTIN_OPS, TENSOR_TYPES, op_name

# (package, where its generated schema lives inside it)
SCHEMA_MODULES = (
    ("ai_edge_litert", "schema_py_generated.py"),
    ("tensorflow", "lite/python/schema_py_generated.py"),
    ("tflite_micro", "tensorflow/lite/micro/python/schema_py_generated.py"),
)


def _installed_schemas() -> list:
    found = []
    for package, relative in SCHEMA_MODULES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        path = Path(list(spec.submodule_search_locations)[0]) / relative
        if path.is_file():
            found.append(pytest.param(path, id=package))
    return found


SCHEMAS = _installed_schemas()


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(f"_schema_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _enum(cls) -> dict:
    """value -> name of a generated flatbuffers enum class."""
    return {value: name for name, value in vars(cls).items() if not name.startswith("_") and isinstance(value, int)}


@pytest.mark.skipif(not SCHEMAS, reason="no installed package (ai-edge-litert, tensorflow, tflite-micro) ships "
                                        "a generated TFLite schema to compare with")
@pytest.mark.parametrize("path", SCHEMAS or [None])
def test_tables_match_the_installed_schema(path):
    schema = _load(path)
    ops = _enum(schema.BuiltinOperator)
    # every code edgemnist names is the schema's name for it (an older schema may lack the newest codes)
    for code, name in enumerate(BUILTIN_OPS):
        if code in ops:
            assert ops[code] == name, f"BUILTIN_OPS[{code}] is {name}, the schema in {path} says {ops[code]}"
    assert sorted(ops) == list(range(len(ops)))  # dense codes: a tuple indexed by code can hold them
    types = _enum(schema.TensorType)
    for code, (name, _) in enumerate(TENSOR_TYPES):
        if code in types:
            assert types[code].lower() == name, f"TENSOR_TYPES[{code}] is {name}, the schema says {types[code]}"


def test_newest_installed_schema_has_no_codes_edgemnist_lacks():
    """The newest installed schema (most codes) is fully covered; an older package may lag behind."""
    if not SCHEMAS:
        pytest.skip("no installed package ships a generated TFLite schema")
    newest = max((_enum(_load(p.values[0]).BuiltinOperator) for p in SCHEMAS), key=len)
    missing = {code: name for code, name in newest.items() if code >= len(BUILTIN_OPS)}
    assert not missing, f"BUILTIN_OPS lacks {missing}: append them in code order"


def test_unknown_op_code_gets_a_placeholder_name():
    assert op_name(4) == "DEPTHWISE_CONV_2D" == tflite_info.op_name(4)
    assert op_name(9) == "FULLY_CONNECTED"
    assert op_name(100000) == "BUILTIN_100000"
