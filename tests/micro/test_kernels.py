"""edgemnist.micro.kernels: the op tables, kernel sources and kernel limits, and their drift from a TFLite Micro tree.

The drift tests read the tree named by EDGEMNIST_TFLM (a folder holding tree_reference/ and
tree_cmsis_nn/, as .ci/run unpacks; or one create_tflm_tree.py tree) and skip without it.
"""
from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edgemnist.micro import build, kernels
from edgemnist.runtime import tflite_info


def _tree(kernel_set: str) -> Path:
    """tensorflow/lite of the $EDGEMNIST_TFLM tree for a kernel set, or a skip saying why not."""
    if not os.environ.get(build.TFLM_ENV):
        pytest.skip(f"{build.TFLM_ENV} is not set: no TFLite Micro tree to compare the tables with")
    try:
        return build.resolve_tflm(None, kernel_set) / "tensorflow" / "lite"
    except build.MissingToolError as exc:
        pytest.skip(f"no {kernel_set} TFLite Micro tree: {exc}")


def _registrations(folder: Path) -> dict:
    """Op -> stems of the kernel files in `folder` that define its `TFLMRegistration Register_<OP>()`."""
    defined = {}
    for path in sorted(folder.glob("*.cc")):
        for op in re.findall(r"^TFLMRegistration Register_(\w+)\(\)\s*\{", path.read_text(errors="replace"), re.M):
            defined.setdefault(op, set()).add(path.stem)
    return defined


def test_resolver_methods_are_tflm_micro_mutable_op_resolvers():
    header = (_tree("reference") / "micro" / "micro_mutable_op_resolver.h").read_text()
    methods = dict((op, method) for method, op in re.findall(
        r"TfLiteStatus (Add\w+)\([^{]*\{\s*return AddBuiltin\(\s*BuiltinOperator_(\w+)", header, re.S))
    assert len(methods) > 50  # the pattern still reads the header
    assert kernels.MICRO_OP_RESOLVER_METHODS == methods


@pytest.mark.parametrize("kernel_set", ["reference", "cmsis_nn"])
def test_kernel_sources_define_every_ops_registration(kernel_set):
    kernel_dir = _tree(kernel_set) / "micro" / "kernels"
    defined = _registrations(kernel_dir)
    optimized = _registrations(kernel_dir / "cmsis_nn") if kernel_set == "cmsis_nn" else {}
    for op in kernels.MICRO_OP_RESOLVER_METHODS:
        (stem,) = kernels.kernel_sources([op])
        # As the Makefile picks it: cmsis_nn/<stem>.cc where the kernel set has one, else <stem>.cc.
        if (kernel_dir / "cmsis_nn" / f"{stem}.cc").is_file():
            where, found = f"cmsis_nn/{stem}.cc", optimized.get(op, set())
        else:
            where, found = f"{stem}.cc", defined.get(op, set())
        assert stem in found, f"{op}: {where} does not define Register_{op}() (found in {sorted(defined.get(op, []))})"


# Where each tree states a rank limit of KERNEL_LIMITS: (kernel set, op) -> (file under
# tensorflow/lite, a pattern whose group is the limit).
_INPUT_RANK = r"input_shape\.DimensionsCount\(\), (\d+)\)"
RANK_LIMITS_STATED = {
    ("reference", "CONV_2D"): ("kernels/internal/reference/integer_ops/conv.h", _INPUT_RANK),
    ("reference", "DEPTHWISE_CONV_2D"): ("kernels/internal/reference/integer_ops/depthwise_conv.h", _INPUT_RANK),
    ("reference", "MAX_POOL_2D"): ("kernels/internal/reference/integer_ops/pooling.h", _INPUT_RANK),
    ("reference", "AVERAGE_POOL_2D"): ("kernels/internal/reference/integer_ops/pooling.h", _INPUT_RANK),
    ("reference", "TRANSPOSE"): ("micro/kernels/transpose_common.cc", r"NumDimensions\(op_context\.input\) <= (\d+)"),
    ("cmsis_nn", "CONV_2D"): ("micro/kernels/cmsis_nn/conv.cc", r"input->dims->size, (\d+)\)"),
    ("cmsis_nn", "DEPTHWISE_CONV_2D"): ("micro/kernels/cmsis_nn/depthwise_conv.cc", _INPUT_RANK),
    ("cmsis_nn", "MAX_POOL_2D"): ("micro/kernels/cmsis_nn/pooling.cc", _INPUT_RANK),
    ("cmsis_nn", "AVERAGE_POOL_2D"): ("micro/kernels/cmsis_nn/pooling.cc", _INPUT_RANK),
    ("cmsis_nn", "TRANSPOSE"): ("micro/kernels/cmsis_nn/transpose.cc", r"size <= (\d+)\)"),
}
_TFLITE_TYPES = {"int8": "kTfLiteInt8", "int16": "kTfLiteInt16", "float32": "kTfLiteFloat32"}


@pytest.mark.parametrize("kernel_set", ["reference", "cmsis_nn"])
def test_kernel_limits_are_what_the_kernels_state(kernel_set):
    lite = _tree(kernel_set)
    kernel_dir = lite / "micro" / "kernels"
    for op, limit in kernels.KERNEL_LIMITS[kernel_set].items():
        if limit.max_rank is not None:
            where, pattern = RANK_LIMITS_STATED[(kernel_set, op)]
            stated = {int(v) for v in re.findall(pattern, (lite / where).read_text())}
            assert stated == {limit.max_rank}, f"{kernel_set} {op}: {where} states rank {sorted(stated)}"
        # Each accepted input type is handled by the sources the Makefile compiles for the op.
        (stem,) = kernels.kernel_sources([op])
        main = kernel_dir / "cmsis_nn" / f"{stem}.cc"
        if kernel_set != "cmsis_nn" or not main.is_file():
            main = kernel_dir / f"{stem}.cc"
        text = "".join(p.read_text() for p in (main, kernel_dir / f"{stem}_common.cc") if p.is_file())
        for dtype in limit.dtypes:
            assert _TFLITE_TYPES[dtype] in text, f"{kernel_set} {op}: {main.name} never handles {dtype}"


def test_kernel_sources_name_tflm_files():
    assert kernels.kernel_sources(["CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "MEAN", "RESHAPE", "TRANSPOSE"]) == [
        "conv", "depthwise_conv", "pooling", "reduce", "reshape", "transpose"]


def test_ops_micro_lacks_or_mishandles_are_named(micro_firmware):
    model = tflite_info.read_model(micro_firmware["model"])
    assert kernels.micro_ops(model, "m.tflite") == sorted(set(model.ops)) == micro_firmware["manifest"]["ops"]
    for op, message in (("RFFT2D", "op RFFT2D has no TFLite Micro kernel"),
                        ("SPACE_TO_BATCH_ND", "op SPACE_TO_BATCH_ND: .*batch size 1")):
        operators = (replace(model.main.operators[0], op=op),) + model.main.operators[1:]
        broken = replace(model, subgraphs=(replace(model.main, operators=operators),))
        with pytest.raises(ValueError, match=f"m.tflite: {message}"):
            kernels.micro_ops(broken, "m.tflite")


def test_a_5d_transpose_is_refused_for_cmsis_nn(tmp_path, mnist_train):
    """The stem as it was (Reshape to 5-D, Permute, Reshape): CMSIS-NN would run it wrongly."""
    from edgemnist.export import convert
    from edgemnist._tensorflow import keras

    k = keras()
    inputs = k.Input((28, 28, 1), batch_size=1)
    x = k.layers.Reshape((14, 2, 14, 2))(inputs)
    x = k.layers.Permute((1, 3, 2, 4))(x)
    x = k.layers.Reshape((14, 14, 4))(x)
    x = k.layers.Conv2D(8, 2, padding="same")(x)
    x = k.layers.GlobalAveragePooling2D()(x)
    model = k.Model(inputs, k.layers.Dense(10, activation="softmax")(x))
    images = mnist_train.images[:50].astype(np.float32)[..., None] / 255.0
    path = tmp_path / "five_d.tflite"
    path.write_bytes(convert.convert_variant(model, "int8_per_tensor", convert.ExportConfig(), representative=images).tflite)
    info = tflite_info.read_model(path)
    problems = kernels.kernel_set_problems(info)
    assert [(p["kernels"], p["op"], p["input_rank"]) for p in problems] == [("cmsis_nn", "TRANSPOSE", 5)]
    with pytest.raises(ValueError, match=r"TRANSPOSE would run wrongly with TFLite Micro's cmsis_nn kernels: 5-D input"):
        kernels.micro_ops(info, str(path))


@pytest.mark.parametrize("kernel_set", ["reference", "cmsis_nn"])
def test_int8_registrations_are_declared_where_the_resolver_header_sees_them(kernel_set):
    # the firmware's settings header calls them after including only micro_mutable_op_resolver.h
    micro = _tree(kernel_set) / "micro"
    included = re.findall(r'#include "tensorflow/lite/micro/kernels/(\w+\.h)"',
                          (micro / "micro_mutable_op_resolver.h").read_text())
    declared = "".join((micro / "kernels" / h).read_text() for h in included)
    for op, function in kernels.INT8_REGISTRATIONS.items():
        assert re.search(rf"TFLMRegistration {function}\(\)", declared), f"{op}: {function} not in {included}"
