"""Generated C for a full-integer .tflite: no interpreter, no op resolver, no malloc.

Usage: edgemnist codegen runs/stm32/tflite/model_int8_per_tensor.tflite --out runs/stm32/c [--name mnist] [--json]

Writes `<name>.c` and `<name>.h` (C99, depending on nothing but <stdint.h>, <string.h> and
<math.h>), `<name>_plan.json` (the memory plan) and `codegen_manifest.json`. The model is read
with the project's own TensorFlow-free reader, lowered to a chain of layers, fused where that
saves memory, and given a static memory plan at generation time:

- weights, folded biases, per-channel multipliers and shifts are `const` arrays (PROGMEM on
  AVR, so they stay in flash);
- every activation lives in one arena whose offsets are fixed here. A layer may write its
  output over its own input where the order in which the kernel reads and writes allows it:
  `safe_shift` simulates that order pixel by pixel, so an in-place overlap is proven, not assumed;
- a CONV_2D or DEPTHWISE_CONV_2D followed by a MAX_POOL_2D becomes one layer (the convolution's
  full-size map never exists), and a 1x1 CONV_2D whose output a FULLY_CONNECTED reads becomes
  one layer (the classifier accumulates as each pixel's channels are computed).

The arithmetic is TFLite's (kernels in templates/codegen/kernels.c): LiteRT's builtin kernels
give the same scores on every input, which tests/micro/test_codegen.py checks by compiling the
C for the host. An op, type or shape outside what is covered raises `CodegenError` naming the
op and its index, and nothing is written.
"""
from __future__ import annotations

import copy
import ctypes
import ctypes.util
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from edgemnist.artifacts import atomic_write_folder, sha256_bytes
from edgemnist.output import Output
from edgemnist.runtime.tflite_reader import TFLiteModel, read_model

TEMPLATES = Path(__file__).parent / "templates" / "codegen"
KERNELS_C = TEMPLATES / "kernels.c"
PLAN_NAME = "plan.json"
MANIFEST_NAME = "codegen_manifest.json"
SUPPORTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D", "FULLY_CONNECTED",
                 "RESHAPE", "TRANSPOSE", "MEAN", "SOFTMAX")
_ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}
_SAME, _VALID = 0, 1


class CodegenError(ValueError):
    """The model holds something the generator does not cover; the message names the op and its index."""


# ---------------------------------------------------------------------------------------------
# TFLite's integer arithmetic, done once at generation time


def quantize_multiplier(real: float) -> tuple:
    """TFLite's QuantizeMultiplier: real = m * 2^(shift - 31) with m a Q31 int32, rounded half away from zero."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = math.floor(abs(q) * (1 << 31) + 0.5) * (1 if q > 0 else -1)
    if abs(q_fixed) == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:
        raise CodegenError(f"multiplier {real} is too large for int8 requantization")
    return int(q_fixed), int(shift)


def _round_away(x: float) -> int:
    """std::round: half away from zero."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def activation_range(code: int, scale: float, zero_point: int, where: str) -> tuple:
    """TFLite's CalculateActivationRangeQuantized for int8 (the float32 division, then std::round)."""
    lo, hi = -128, 127

    def q(f):
        return zero_point + _round_away(float(np.float32(f) / np.float32(scale)))

    if code == 0:
        return lo, hi
    if code == 1:
        return max(lo, q(0.0)), hi
    if code == 3:
        return max(lo, q(0.0)), min(hi, q(6.0))
    if code == 2:
        return max(lo, q(-1.0)), min(hi, q(1.0))
    raise CodegenError(f"{where}: fused activation {code} is not covered (only NONE, RELU, RELU6, RELU_N1_TO_1)")


def _expf_table(input_scale: float, beta: float) -> np.ndarray:
    """LiteRT's softmax table: table[255 - v] = expf(-input_scale * beta * v), float32, with the C library's expf."""
    libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
    libm.expf.restype = ctypes.c_float
    libm.expf.argtypes = [ctypes.c_float]
    scale = np.float32(-np.float32(input_scale) * np.float32(beta))
    table = np.zeros(256, np.float32)
    for v in range(256):
        table[255 - v] = libm.expf(float(np.float32(scale * np.float32(v))))
    return table


# ---------------------------------------------------------------------------------------------
# Lowering: the .tflite's operators -> a chain of layers


@dataclass
class Layer:
    """One step of the generated predict function."""

    kind: str  # conv, dwconv, pool, fc, pwfc, mean, softmax, transpose
    ops: tuple  # indices of the .tflite operators it computes
    in_shape: tuple  # (h, w, c) or (n,)
    out_shape: tuple
    geo: tuple = ()  # int16 geometry passed to the kernel
    arrays: dict = field(default_factory=dict)  # name -> numpy array (const, in flash)
    scalars: dict = field(default_factory=dict)  # name -> C literal
    pool: Optional[dict] = None  # the fused max-pool of a conv/dwconv
    # Input pixels read per output pixel in processing order: (n_in_pixels, in_pixel_bytes,
    # last_read[i] = last output-pixel step that reads input pixel i, n_out_steps, out_step_bytes)
    access: Optional[tuple] = None
    scratch: dict = field(default_factory=dict)  # name -> (C type, count): in the predict function's scratch

    @property
    def in_bytes(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def out_bytes(self) -> int:
        return int(np.prod(self.out_shape))

    def describe(self) -> str:
        names = {"conv": "CONV_2D", "dwconv": "DEPTHWISE_CONV_2D", "pool": "POOL_2D", "fc": "FULLY_CONNECTED",
                 "pwfc": "CONV_2D 1x1 + FULLY_CONNECTED", "mean": "MEAN", "softmax": "SOFTMAX",
                 "transpose": "TRANSPOSE"}
        text = names[self.kind]
        if self.pool:
            text += " + MAX_POOL_2D"
        return text


def _tensor(model: TFLiteModel, index: int):
    return model.tensors[index]


def _int8_activation(model, index: int, where: str):
    t = _tensor(model, index)
    if t.dtype != "int8":
        raise CodegenError(f"{where}: tensor {t.name!r} is {t.dtype}; only int8 activations are covered "
                           "(export the int8 or int8_per_tensor variant)")
    if t.quantization is None or not t.quantization.scales:
        raise CodegenError(f"{where}: tensor {t.name!r} is not quantized")
    if len(t.quantization.scales) != 1:
        raise CodegenError(f"{where}: activation {t.name!r} has per-channel quantization")
    return t


def _hwc(shape: tuple, where: str) -> tuple:
    if len(shape) != 4 or shape[0] != 1:
        raise CodegenError(f"{where}: expected a (1, H, W, C) tensor, got shape {shape}")
    return tuple(int(v) for v in shape[1:])


def _padding(padding: int, size: int, out: int, stride: int, kernel: int, dilation: int, where: str) -> int:
    """TFLite's ComputePaddingHeightWidth: the leading pad of SAME (the odd pixel goes after), 0 for VALID."""
    effective = (kernel - 1) * dilation + 1
    if padding == _VALID:
        expect = (size - effective + stride) // stride
        pad = 0
    elif padding == _SAME:
        expect = (size + stride - 1) // stride
        pad = max(((out - 1) * stride + effective - size) // 2, 0)
    else:
        raise CodegenError(f"{where}: padding {padding} is not covered")
    if expect != out:
        raise CodegenError(f"{where}: output size {out} does not follow from input {size}, kernel {kernel}, "
                           f"stride {stride}, dilation {dilation}")
    return pad


def _filter_scales(t, channels: int, where: str) -> np.ndarray:
    q = t.quantization
    if q is None or not q.scales:
        raise CodegenError(f"{where}: weights {t.name!r} are not quantized")
    if any(z != 0 for z in q.zero_points):
        raise CodegenError(f"{where}: weights {t.name!r} have a non-zero zero point")
    scales = np.asarray(q.scales, np.float64)
    if len(scales) == 1:
        return np.repeat(scales, channels)
    if len(scales) != channels:
        raise CodegenError(f"{where}: weights {t.name!r} have {len(scales)} scales for {channels} channels")
    return scales


def _requant_arrays(in_scale: float, filter_scales: np.ndarray, out_scale: float):
    """Per-output-channel (multiplier, shift), as TFLite's Prepare computes them: the scales'
    product and quotient in double precision, per-tensor FULLY_CONNECTED included (the int8_per_tensor
    variants' scores are LiteRT's with this rule: benchmarks/bench_codegen.py)."""
    mult, shift = [], []
    for fs in filter_scales:
        real = float(in_scale) * float(fs) / float(out_scale)
        m, s = quantize_multiplier(real)
        mult.append(m)
        shift.append(s)
    return np.array(mult, np.int32), np.array(shift, np.int8)


def _compact_requant(mult: np.ndarray, shift: np.ndarray) -> tuple:
    """(mult, shift, mstep): one (multiplier, shift) read with a stride of 0 where every channel has the
    same (per-tensor weights), else the per-channel arrays with a stride of 1. Saves flash, not time."""
    if len(mult) > 1 and (mult == mult[0]).all() and (shift == shift[0]).all():
        return mult[:1].copy(), shift[:1].copy(), 0
    return mult, shift, 1


def _folded_bias(model, op, weights: np.ndarray, per_out_axis: int, channels: int, in_zp: int, where: str):
    """bias - input_zero_point * sum(weights) per output channel, as int32 (weights grouped by output)."""
    bias = np.zeros(channels, np.int64)
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        b = _tensor(model, op.inputs[2])
        if b.dtype != "int32" or not b.data:
            raise CodegenError(f"{where}: bias {b.name!r} is {b.dtype}{'' if b.data else ' (not constant)'}; "
                               "only constant int32 biases are covered")
        bias = b.numpy().astype(np.int64).reshape(-1)
        if bias.size != channels:
            raise CodegenError(f"{where}: bias has {bias.size} values for {channels} channels")
    w = np.moveaxis(weights.astype(np.int64), per_out_axis, 0).reshape(channels, -1)
    folded = bias - in_zp * w.sum(axis=1)
    if folded.min() < -(1 << 31) or folded.max() >= 1 << 31:
        raise CodegenError(f"{where}: a folded bias overflows int32")
    return folded.astype(np.int32)


def _const(model, index: int, dtype: str, where: str) -> np.ndarray:
    t = _tensor(model, index)
    if t.dtype != dtype or not t.data:
        raise CodegenError(f"{where}: tensor {t.name!r} must be a constant {dtype} (is {t.dtype}"
                           f"{'' if t.data else ', not constant'})")
    return t.numpy()


def _conv_access(ih, iw, coh, cow, kh, kw, sh, sw, dh, dw, ph, pw, pool) -> np.ndarray:
    """last_read[input pixel] for a (pooled) convolution processed in raster order of its output."""
    poh, pow_, pkh, pkw, psh, psw, pph, ppw = pool
    last = np.full(ih * iw, -1, np.int64)
    for py in range(poh):
        for px in range(pow_):
            step = py * pow_ + px
            for wy in range(pkh):
                cy = py * psh - pph + wy
                if not 0 <= cy < coh:
                    continue
                for wx in range(pkw):
                    cx = px * psw - ppw + wx
                    if not 0 <= cx < cow:
                        continue
                    for ky in range(kh):
                        iy = cy * sh - ph + ky * dh
                        if not 0 <= iy < ih:
                            continue
                        for kx in range(kw):
                            ix = cx * sw - pw + kx * dw
                            if 0 <= ix < iw:
                                last[iy * iw + ix] = step
    return last


def _lower_conv(model, op, kind: str) -> Layer:
    where = f"operator {op.index} ({op.op})"
    x = _int8_activation(model, op.inputs[0], where)
    y = _int8_activation(model, op.outputs[0], where)
    ih, iw, ic = _hwc(x.shape, where)
    oh, ow, oc = _hwc(y.shape, where)
    w = _const(model, op.inputs[1], "int8", where)
    o = op.options
    if kind == "conv":
        if w.ndim != 4 or w.shape[3] != ic or w.shape[0] != oc:
            raise CodegenError(f"{where}: filter shape {w.shape} does not match input channels {ic} / output {oc}")
        kh, kw = int(w.shape[1]), int(w.shape[2])
        scales = _filter_scales(_tensor(model, op.inputs[1]), oc, where)
        bias = _folded_bias(model, op, w, 0, oc, x.zero_point, where)
    else:
        if w.ndim != 4 or w.shape[0] != 1 or w.shape[3] != oc or oc % ic:
            raise CodegenError(f"{where}: filter shape {w.shape} does not match input channels {ic} / output {oc}")
        if o.get("depth_multiplier", 1) not in (0, oc // ic):
            raise CodegenError(f"{where}: depth_multiplier {o.get('depth_multiplier')} != {oc // ic}")
        kh, kw = int(w.shape[1]), int(w.shape[2])
        scales = _filter_scales(_tensor(model, op.inputs[1]), oc, where)
        bias = _folded_bias(model, op, w, 3, oc, x.zero_point, where)
    sh, sw = o.get("stride_h", 1), o.get("stride_w", 1)
    dh, dw = o.get("dilation_h_factor", 1), o.get("dilation_w_factor", 1)
    if min(sh, sw, dh, dw) < 1:
        raise CodegenError(f"{where}: stride {sh}x{sw} / dilation {dh}x{dw} must be >= 1")
    ph = _padding(o.get("padding", 0), ih, oh, sh, kh, dh, where)
    pw = _padding(o.get("padding", 0), iw, ow, sw, kw, dw, where)
    mult, shift, mstep = _compact_requant(*_requant_arrays(x.scale, scales, y.scale))
    lo, hi = activation_range(o.get("fused_activation_function", 0), y.scale, y.zero_point, where)
    return Layer(kind, (op.index,), (ih, iw, ic), (oh, ow, oc),
                 geo=(ih, iw, ic, oc, kh, kw, sh, sw, dh, dw, ph, pw, oh, ow),
                 arrays={"w": w.astype(np.int8), "bias": bias, "mult": mult, "shift": shift},
                 scalars={"in_zp": x.zero_point, "out_zp": y.zero_point, "act_min": lo, "act_max": hi,
                          "mstep": mstep})


def _pool_params(model, op) -> dict:
    where = f"operator {op.index} ({op.op})"
    x = _int8_activation(model, op.inputs[0], where)
    y = _int8_activation(model, op.outputs[0], where)
    ih, iw, c = _hwc(x.shape, where)
    oh, ow, oc = _hwc(y.shape, where)
    if oc != c:
        raise CodegenError(f"{where}: {c} channels in, {oc} out")
    if x.scale != y.scale or x.zero_point != y.zero_point:
        raise CodegenError(f"{where}: input and output quantization differ")
    o = op.options
    kh, kw, sh, sw = o.get("filter_height", 0), o.get("filter_width", 0), o.get("stride_h", 0), o.get("stride_w", 0)
    if min(kh, kw, sh, sw) < 1:
        raise CodegenError(f"{where}: filter {kh}x{kw}, stride {sh}x{sw} must be >= 1")
    ph = _padding(o.get("padding", 0), ih, oh, sh, kh, 1, where)
    pw = _padding(o.get("padding", 0), iw, ow, sw, kw, 1, where)
    lo, hi = activation_range(o.get("fused_activation_function", 0), y.scale, y.zero_point, where)
    return dict(ih=ih, iw=iw, c=c, oh=oh, ow=ow, kh=kh, kw=kw, sh=sh, sw=sw, ph=ph, pw=pw, lo=lo, hi=hi)


def _lower_pool(model, op) -> Layer:
    p = _pool_params(model, op)
    average = op.op == "AVERAGE_POOL_2D"
    return Layer("pool", (op.index,), (p["ih"], p["iw"], p["c"]), (p["oh"], p["ow"], p["c"]),
                 geo=(p["ih"], p["iw"], p["c"], p["oh"], p["ow"], p["kh"], p["kw"], p["sh"], p["sw"], p["ph"], p["pw"]),
                 scalars={"average": int(average), "act_min": p["lo"], "act_max": p["hi"]})


def _lower_fc(model, op) -> Layer:
    where = f"operator {op.index} (FULLY_CONNECTED)"
    x = _int8_activation(model, op.inputs[0], where)
    y = _int8_activation(model, op.outputs[0], where)
    w = _const(model, op.inputs[1], "int8", where)
    o = op.options
    if o.get("weights_format", 0) != 0:
        raise CodegenError(f"{where}: shuffled weights are not covered")
    if w.ndim != 2:
        raise CodegenError(f"{where}: weights of shape {w.shape} (expected [out, in])")
    classes, n = (int(v) for v in w.shape)
    if int(np.prod(x.shape)) != n or int(np.prod(y.shape)) != classes:
        raise CodegenError(f"{where}: input {x.shape} / output {y.shape} do not match weights {w.shape} "
                           "(only a batch of one is covered)")
    wt = _tensor(model, op.inputs[1])
    scales = _filter_scales(wt, classes, where)
    mult, shift, mstep = _compact_requant(*_requant_arrays(x.scale, scales, y.scale))
    bias = _folded_bias(model, op, w, 0, classes, x.zero_point, where)
    lo, hi = activation_range(o.get("fused_activation_function", 0), y.scale, y.zero_point, where)
    return Layer("fc", (op.index,), (n,), (classes,),
                 arrays={"w": w.astype(np.int8), "bias": bias, "mult": mult, "shift": shift},
                 scalars={"in_zp": x.zero_point, "out_zp": y.zero_point, "act_min": lo, "act_max": hi,
                          "mstep": mstep})


def _lower_mean(model, op) -> Layer:
    where = f"operator {op.index} (MEAN)"
    x = _int8_activation(model, op.inputs[0], where)
    y = _int8_activation(model, op.outputs[0], where)
    h, w, c = _hwc(x.shape, where)
    axes = sorted(int(a) % 4 for a in _const(model, op.inputs[1], "int32", where).reshape(-1))
    if axes != [1, 2]:
        raise CodegenError(f"{where}: only the mean over height and width is covered (axes {axes})")
    if op.options.get("keep_dims"):
        raise CodegenError(f"{where}: keep_dims is not covered (LiteRT takes another kernel for it)")
    if x.scale == y.scale and x.zero_point == y.zero_point:
        raise CodegenError(f"{where}: a mean with equal input and output quantization is not covered")
    # TFLite's QuantizedMeanOrSum: the pixel count folded into the multiplier
    mult, shift = quantize_multiplier(float(x.scale) / float(y.scale))
    n = h * w
    k = min(n.bit_length() - 1, 32, 31 + shift)
    mult, shift = (mult << k) // n, shift - k
    return Layer("mean", (op.index,), (h, w, c), (c,),
                 scalars={"pixels": n, "ch": c, "zp_sum": x.zero_point * n, "mult": mult, "shift": shift,
                          "out_zp": y.zero_point})


def _lower_softmax(model, op) -> Layer:
    where = f"operator {op.index} (SOFTMAX)"
    x = _int8_activation(model, op.inputs[0], where)
    y = _int8_activation(model, op.outputs[0], where)
    n = int(x.shape[-1])
    if int(np.prod(x.shape)) != n:
        raise CodegenError(f"{where}: only a batch of one vector is covered (shape {x.shape})")
    beta = op.options.get("beta", 1.0)
    return Layer("softmax", (op.index,), (n,), (n,), arrays={"table": _expf_table(x.scale, beta)},
                 scalars={"n": n, "out_scale": _c_float(np.float32(y.scale)), "out_zp": y.zero_point})


def _lower_transpose(model, op) -> Optional[Layer]:
    where = f"operator {op.index} (TRANSPOSE)"
    x = _int8_activation(model, op.inputs[0], where)
    _int8_activation(model, op.outputs[0], where)
    perm = [int(p) for p in _const(model, op.inputs[1], "int32", where).reshape(-1)]
    shape = list(x.shape)
    if len(shape) > 4 or sorted(perm) != list(range(len(shape))):
        raise CodegenError(f"{where}: permutation {perm} of shape {tuple(shape)} is not covered (rank <= 4)")
    pad = 4 - len(shape)
    shape = [1] * pad + shape
    perm = list(range(pad)) + [p + pad for p in perm]
    strides = [int(np.prod(shape[i + 1:])) for i in range(4)]
    out = [shape[p] for p in perm]
    moved = [p for p in perm if shape[p] != 1]
    if moved == sorted(moved):  # only size-1 axes move: the bytes stay where they are
        return None
    return Layer("transpose", (op.index,), tuple(shape), tuple(out),
                 geo=tuple(out) + tuple(strides[p] for p in perm))


def _c_float(v) -> str:
    return f"{float(np.float32(v))!r}f".replace("inf", "INFINITY")


def lower(model: TFLiteModel) -> list:
    """The model's operators as a chain of layers (RESHAPEs and pure re-labelling TRANSPOSEs vanish).

    Raises:
        CodegenError: an op, type or shape that is not covered, or a graph that is not a chain.
    """
    sub = model.main
    if len(model.subgraphs) != 1 if hasattr(model, "subgraphs") else False:
        raise CodegenError("only single-subgraph models are covered")
    if len(sub.inputs) != 1 or len(sub.outputs) != 1:
        raise CodegenError(f"the model has {len(sub.inputs)} inputs and {len(sub.outputs)} outputs; one of each "
                           "is covered")
    _int8_activation(model, sub.inputs[0], "the model's input")
    _int8_activation(model, sub.outputs[0], "the model's output")
    current = sub.inputs[0]
    layers = []
    for op in sub.operators:
        where = f"operator {op.index} ({op.op})"
        if op.op not in SUPPORTED_OPS:
            raise CodegenError(f"{where} is not covered by edgemnist codegen (covered: {', '.join(SUPPORTED_OPS)})")
        if not op.inputs or op.inputs[0] != current or len(op.outputs) != 1:
            raise CodegenError(f"{where} does not continue a single chain of layers from the model's input "
                               "(branches and multi-output ops are not covered)")
        if op.op == "RESHAPE":
            x = _int8_activation(model, op.inputs[0], where)
            y = _int8_activation(model, op.outputs[0], where)
            if x.scale != y.scale or x.zero_point != y.zero_point:
                raise CodegenError(f"{where}: input and output quantization differ")
            layer = None
        elif op.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            layer = _lower_conv(model, op, "conv" if op.op == "CONV_2D" else "dwconv")
        elif op.op in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            layer = _lower_pool(model, op)
        elif op.op == "FULLY_CONNECTED":
            layer = _lower_fc(model, op)
        elif op.op == "MEAN":
            layer = _lower_mean(model, op)
        elif op.op == "SOFTMAX":
            layer = _lower_softmax(model, op)
        else:
            layer = _lower_transpose(model, op)
            if layer is None:
                x = _int8_activation(model, op.inputs[0], where)
                y = _int8_activation(model, op.outputs[0], where)
                if x.scale != y.scale or x.zero_point != y.zero_point:
                    raise CodegenError(f"{where}: input and output quantization differ")
        if layer is not None:
            layers.append(layer)
        current = op.outputs[0]
    if current != sub.outputs[0]:
        raise CodegenError("the chain of operators does not end at the model's output")
    if not layers:
        raise CodegenError("the model computes nothing")
    return layers


# ---------------------------------------------------------------------------------------------
# Fusion


def fuse(layers: list) -> tuple:
    """Conv/depthwise + max-pool, and 1x1 conv + fully connected, merged into one layer each.

    Returns:
        (layers, fusions): the new chain and one line per fusion.
    """
    out, notes = [], []
    i = 0
    while i < len(layers):
        a = layers[i]
        b = layers[i + 1] if i + 1 < len(layers) else None
        if (a.kind in ("conv", "dwconv") and a.pool is None and b is not None and b.kind == "pool"
                and not b.scalars["average"]):
            ih, iw, c, oh, ow, kh, kw, sh, sw, ph, pw = b.geo
            a.pool = dict(zip(("poh", "pow", "pkh", "pkw", "psh", "psw", "pph", "ppw"),
                              (oh, ow, kh, kw, sh, sw, ph, pw)))
            a.scalars["act_min"] = max(a.scalars["act_min"], b.scalars["act_min"])
            a.scalars["act_max"] = min(a.scalars["act_max"], b.scalars["act_max"])
            notes.append(f"operators {a.ops[0]}+{b.ops[0]}: {a.describe()} without its "
                         f"{a.out_bytes:,} B map")
            a.ops = a.ops + b.ops
            a.out_shape = b.out_shape
            out.append(a)
            i += 2
            continue
        if (a.kind == "conv" and a.pool is None and b is not None and b.kind == "fc"
                and a.geo[4:6] == (1, 1) and a.geo[6:8] == (1, 1) and a.geo[10:12] == (0, 0)
                and b.in_bytes == a.out_bytes):
            ih, iw, ic, oc = a.geo[:4]
            notes.append(f"operators {a.ops[0]}+{b.ops[0]}: CONV_2D 1x1 + FULLY_CONNECTED without the "
                         f"{a.out_bytes:,} B map")
            arrays = {f"pw_{k}": v for k, v in a.arrays.items()}
            arrays.update({f"fc_{k}": v for k, v in b.arrays.items()})
            scalars = {"pw_zp": a.scalars["out_zp"], "pw_min": a.scalars["act_min"], "pw_max": a.scalars["act_max"],
                       "fc_zp": b.scalars["out_zp"], "fc_min": b.scalars["act_min"], "fc_max": b.scalars["act_max"]}
            out.append(Layer("pwfc", a.ops + b.ops, a.in_shape, b.out_shape,
                             geo=(ih * iw, ic, oc, b.out_bytes, a.scalars["mstep"], b.scalars["mstep"]),
                             arrays=arrays, scalars=scalars,
                             scratch={"t": ("int8_t", oc), "acc": ("int32_t", b.out_bytes)}))
            i += 2
            continue
        out.append(a)
        i += 1
    return out, notes


def _finish(layer: Layer) -> Layer:
    """Geometry and access pattern of a layer once fusion is decided."""
    if layer.kind in ("conv", "dwconv"):
        ih, iw, ic, oc, kh, kw, sh, sw, dh, dw, ph, pw, coh, cow = layer.geo[:14]
        p = layer.pool or dict(poh=coh, pow=cow, pkh=1, pkw=1, psh=1, psw=1, pph=0, ppw=0)
        pool = tuple(p[k] for k in ("poh", "pow", "pkh", "pkw", "psh", "psw", "pph", "ppw"))
        layer.geo = layer.geo[:14] + pool + (int(layer.kind == "dwconv"), layer.scalars["mstep"])
        last = _conv_access(ih, iw, coh, cow, kh, kw, sh, sw, dh, dw, ph, pw, pool)
        layer.access = (ih * iw, ic, last, pool[0] * pool[1], oc)
        if pool[2] * pool[3] > 1:  # each channel's largest accumulator over the pool window so far
            layer.scratch["best"] = ("int32_t", oc)
        if layer.kind == "dwconv" and oc == ic:  # every channel's accumulator, the window tap by tap
            layer.scratch["acc"] = ("int32_t", oc)
    elif layer.kind == "pool":
        ih, iw, c, oh, ow, kh, kw, sh, sw, ph, pw = layer.geo
        last = _conv_access(ih, iw, oh, ow, kh, kw, sh, sw, 1, 1, ph, pw, (oh, ow, 1, 1, 1, 1, 0, 0))
        layer.access = (ih * iw, c, last, oh * ow, c)
    elif layer.kind == "pwfc":
        pixels, ic = layer.geo[:2]
        # every output is written after the last pixel is read: step `pixels` writes them all
        layer.access = (pixels, ic, np.arange(pixels, dtype=np.int64), pixels + 1, 0)
    else:  # fc, mean, softmax, transpose: every output may need every input
        layer.access = (1, layer.in_bytes, np.zeros(1, np.int64), 1, layer.out_bytes)
    return layer


# ---------------------------------------------------------------------------------------------
# Memory plan


def safe_shift(layer: Layer) -> Optional[int]:
    """The least r such that the output may start r bytes below the input's start (r may be negative:
    above) while the kernel runs in its own order: no output byte is written before the last read of
    the input bytes under it. Reads and writes of the same step count as simultaneous. None: any
    overlap is safe (every output is written after the last read).
    """
    n_in, in_px, last, steps, out_px = layer.access
    if layer.kind == "pwfc":
        return None
    # need[p]: the first input pixel still read at step p or later
    need = np.full(steps + 1, n_in, np.int64)
    for i in range(n_in - 1, -1, -1):
        if last[i] >= 0:
            need[: last[i] + 1] = np.minimum(need[: last[i] + 1], i)
    r = None
    for p in range(steps):
        if need[p] >= n_in:
            continue
        bound = (p + 1) * out_px - need[p] * in_px
        r = bound if r is None else max(r, bound)
    return int(r) if r is not None else -(layer.out_bytes + layer.in_bytes)


@dataclass
class Plan:
    """Where every tensor of the chain lives in the arena."""

    arena_bytes: int
    offsets: list  # offsets[k]: tensor k (0: the model's input; k: layer k-1's output)
    sizes: list
    shifts: list  # safe_shift per layer (None: any overlap)
    no_overlap_bytes: int  # the arena if no layer could write over its input (ping-pong)


def _reachable(lo_hi: list, size: int, arena: int) -> list:
    return [(a, min(b, arena - size)) for a, b in lo_hi if a <= min(b, arena - size)]


def plan_memory(layers: list, input_bytes: int) -> Plan:
    """The smallest arena (bisected) in which the chain's tensors can be placed, each layer's output
    either clear of its input or overlapping it no further than safe_shift allows.
    """
    sizes = [input_bytes] + [layer.out_bytes for layer in layers]
    shifts = [safe_shift(layer) for layer in layers]

    def place(arena: int) -> Optional[list]:
        sets = [_reachable([(0, arena)], sizes[0], arena)]
        for k, layer in enumerate(layers):
            prev = sets[-1]
            if not prev:
                return None
            lo, hi = min(a for a, _ in prev), max(b for _, b in prev)
            nxt = []
            r = shifts[k]
            if r is None:
                nxt.append((0, arena))
            else:
                if hi - r >= 0:
                    nxt.append((0, hi - r))  # below (or over) the input, far enough down
                nxt.append((lo + sizes[k], arena))  # above the input
            sets.append(_reachable(nxt, sizes[k + 1], arena))
        if not sets[-1]:
            return None
        # walk back: choose each offset compatible with the next
        offsets = [None] * len(sizes)
        offsets[-1] = sets[-1][0][0]
        for k in range(len(layers) - 1, -1, -1):
            nxt = offsets[k + 1]
            r = shifts[k]
            best = None
            for a, b in sets[k]:
                cands = []
                if r is None:
                    cands.append(a)
                else:
                    if max(a, nxt + r) <= b:
                        cands.append(max(a, nxt + r))  # input at least r above the output
                    if a <= min(b, nxt - sizes[k]):
                        cands.append(min(b, nxt - sizes[k]))  # input wholly below the output
                if cands:
                    best = cands[0]
                    break
            if best is None:
                return None
            offsets[k] = best
        return [int(o) for o in offsets]

    lower_bound = max(sizes)
    no_overlap = max(sizes[k] + sizes[k + 1] for k in range(len(layers)))
    lo, hi = lower_bound, no_overlap
    offsets = place(hi)
    if offsets is None:
        raise CodegenError("no memory plan found")  # cannot happen: ping-pong always fits
    while lo < hi:
        mid = (lo + hi) // 2
        got = place(mid)
        if got is None:
            lo = mid + 1
        else:
            hi, offsets = mid, got
    _check_plan(layers, offsets, sizes, shifts, hi)
    return Plan(hi, offsets, sizes, shifts, no_overlap)


def _check_plan(layers, offsets, sizes, shifts, arena) -> None:
    """Every tensor inside the arena; every layer's input and output clear of each other or overlapping safely."""
    for k, (o, s) in enumerate(zip(offsets, sizes)):
        if o < 0 or o + s > arena:
            raise CodegenError(f"memory plan: tensor {k} at {o} (+{s}) leaves the {arena} B arena")
    for k in range(len(layers)):
        i_o, o_o = offsets[k], offsets[k + 1]
        disjoint = o_o >= i_o + sizes[k] or o_o + sizes[k + 1] <= i_o
        if not disjoint and shifts[k] is not None and i_o - o_o < shifts[k]:
            raise CodegenError(f"memory plan: layer {k} would overwrite input it still reads")


# ---------------------------------------------------------------------------------------------
# Emission


def _kernel_blocks() -> dict:
    text = KERNELS_C.read_text()
    blocks = dict(re.findall(r"/\* @kernel (\w+) \*/\n(.*?)/\* @end \*/", text, re.S))
    header = text.split("/* @kernel", 1)[0]
    return {"_header": header, **blocks}


_C_TYPES = {np.dtype(np.int8): "int8_t", np.dtype(np.int32): "int32_t", np.dtype(np.int16): "int16_t",
            np.dtype(np.float32): "float"}


def _c_array(name: str, values: np.ndarray) -> str:
    values = np.asarray(values).reshape(-1)
    ctype = _C_TYPES[values.dtype]
    if values.dtype == np.float32:
        items = [_c_float(v) for v in values]
    elif values.dtype == np.int32:
        items = [("(-2147483647 - 1)" if int(v) == -(1 << 31) else str(int(v))) for v in values]
    else:
        items = [str(int(v)) for v in values]
    lines = []
    per = 16 if values.dtype == np.int8 else 8
    for i in range(0, len(items), per):
        lines.append("    " + ", ".join(items[i:i + per]) + ",")
    return f"static const {ctype} EM_FLASH {name}[{len(items)}] = {{\n" + "\n".join(lines) + "\n};\n"


def _ident(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,40}", name):
        raise ValueError(f"--name {name!r} must be a C identifier (letters, digits, _; at most 41 characters)")
    return name


def render(layers: list, plan: Plan, name: str, meta: dict) -> tuple:
    """(C source, header) of the model."""
    blocks = _kernel_blocks()
    kinds = sorted({layer.kind for layer in layers})
    needs_requant = any(k in ("conv", "dwconv", "fc", "pwfc", "mean") for k in kinds)
    needs_dot = any(k in ("conv", "dwconv", "fc", "pwfc") for k in kinds)
    kernel_of = {"conv": "conv", "dwconv": "conv", "pool": "pool", "fc": "fc", "pwfc": "pwfc",
                 "mean": "mean", "softmax": "softmax", "transpose": "transpose"}
    used = (["requant"] if needs_requant else []) + (["dot"] if needs_dot else []) + \
        sorted({kernel_of[k] for k in kinds})
    upper = name.upper()
    data, calls = [], []
    scratch_bytes = max([_scratch_bytes(layer) for layer in layers] + [0])
    for k, layer in enumerate(layers):
        p = f"l{k}_"
        for key, arr in layer.arrays.items():
            data.append(_c_array(p + key, arr))
        if layer.geo:
            data.append(_c_array(p + "geo", np.array(layer.geo, np.int16)))
        src = f"em_arena + {plan.offsets[k]}"
        dst = f"em_arena + {plan.offsets[k + 1]}"
        s = layer.scalars
        comment = f"    /* layer {k}: {layer.describe()} (operators {', '.join(map(str, layer.ops))}): " \
                  f"{'x'.join(map(str, layer.in_shape))} -> {'x'.join(map(str, layer.out_shape))} */"
        sv = _scratch_vars(layer)
        if layer.kind in ("conv", "dwconv"):
            call = (f"em_conv({src}, {dst}, {p}w, {p}bias, {p}mult, {p}shift, {p}geo, {s['in_zp']}, "
                    f"{s['out_zp']}, {s['act_min']}, {s['act_max']}, {sv.get('best', '0')}, {sv.get('acc', '0')});")
        elif layer.kind == "pool":
            call = f"em_pool({src}, {dst}, {p}geo, {s['average']}, {s['act_min']}, {s['act_max']});"
        elif layer.kind == "fc":
            call = (f"em_fc({src}, {dst}, {p}w, {p}bias, {p}mult, {p}shift, {s['mstep']}, {layer.in_bytes}, "
                    f"{layer.out_bytes}, {s['out_zp']}, {s['act_min']}, {s['act_max']});")
        elif layer.kind == "pwfc":
            call = (f"em_pwfc({src}, {dst}, {p}geo, {p}pw_w, {p}pw_bias, {p}pw_mult, {p}pw_shift, {s['pw_zp']}, "
                    f"{s['pw_min']}, {s['pw_max']}, {p}fc_w, {p}fc_bias, {p}fc_mult, {p}fc_shift, {s['fc_zp']}, "
                    f"{s['fc_min']}, {s['fc_max']}, {sv['t']}, {sv['acc']});")
        elif layer.kind == "mean":
            call = (f"em_mean({src}, {dst}, {s['pixels']}, {s['ch']}, {s['zp_sum']}, {s['mult']}, {s['shift']}, "
                    f"{s['out_zp']});")
        elif layer.kind == "softmax":
            call = f"em_softmax({src}, {dst}, {s['n']}, {p}table, {s['out_scale']}, {s['out_zp']});"
        else:
            call = f"em_transpose({src}, {dst}, {p}geo);"
        calls.append(comment + "\n    " + call + f"\n    EM_TRACE({k}, {dst}, {layer.out_bytes});")
    # one scratch buffer, shared by the layers (one runs at a time): the largest any needs
    locals_ = f"    int32_t em_scratch[{(scratch_bytes + 3) // 4}];\n" if scratch_bytes else ""
    out_off, out_n = plan.offsets[-1], plan.sizes[-1]
    in_off, in_n = plan.offsets[0], plan.sizes[0]
    generated = (f"Generated by edgemnist codegen {meta['version']} from {meta['model']} "
                 f"(sha256 {meta['sha256'][:16]}...). Do not edit by hand.")
    source = f"""/* {name}.c: {generated}
 * {len(layers)} layers; arena {plan.arena_bytes} B (static memory plan, no allocation at run time).
 */
#include <stdint.h>
#include <string.h>
#include <math.h>
#include "{name}.h"

#if defined(__AVR__)
#include <avr/pgmspace.h>
#define EM_FLASH PROGMEM
#define EM_R8(p) ((int8_t)pgm_read_byte(p))
#define EM_R16(p) ((int16_t)pgm_read_word(p))
#define EM_R32(p) ((int32_t)pgm_read_dword(p))
#define EM_RF(p) pgm_read_float(p)
#define EM_RCOPY(dst, src, n) memcpy_P(dst, src, n)
#define EM_SYM(s) "{name}_" s /* the assembly routines' symbols */
#define EM_NOINLINE __attribute__((noinline, noclone)) /* one copy of a routine, not one per caller: less flash */
#else
#define EM_FLASH
#define EM_R8(p) (*(p))
#define EM_R16(p) (*(p))
#define EM_R32(p) (*(p))
#define EM_RF(p) (*(p))
#define EM_RCOPY(dst, src, n) memcpy(dst, src, n)
#define EM_NOINLINE
#endif

/* Build with -DEM_TRACE(layer, data, bytes)=... to see every layer's output (tests compare them with LiteRT's). */
#ifndef EM_TRACE
#define EM_TRACE(layer, data, bytes) ((void)0)
#endif

/* The arena. Build with -DEM_ARENA_GUARD=N to surround it with N guard bytes a test can check. */
#ifdef EM_ARENA_GUARD
int8_t {name}_arena_guarded[EM_ARENA_GUARD + {upper}_ARENA_BYTES + EM_ARENA_GUARD];
#define em_arena ({name}_arena_guarded + EM_ARENA_GUARD)
#else
static int8_t em_arena[{upper}_ARENA_BYTES];
#endif

{blocks['_header'].strip()}
{''.join(blocks[b] for b in used)}
{''.join(data)}
int8_t *{name}_input(void)
{{
    return em_arena + {in_off};
}}

void {name}_invoke(int8_t *scores)
{{
{locals_}{chr(10).join(calls)}
    memcpy(scores, em_arena + {out_off}, {out_n});
}}

int {name}_predict(const int8_t *image, int8_t *scores)
{{
    int i, best = 0;
    if (image != em_arena + {in_off}) memcpy(em_arena + {in_off}, image, {in_n});
    {name}_invoke(scores);
    for (i = 1; i < {out_n}; ++i) if (scores[i] > scores[best]) best = i;
    return best;
}}
"""
    guard = f"{upper}_H"
    header = f"""/* {name}.h: {generated} */
#ifndef {guard}
#define {guard}

#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

#define {upper}_INPUT_BYTES {in_n}      /* int8 input, {'x'.join(map(str, meta['input_shape']))} */
#define {upper}_INPUT_SCALE {meta['input_scale']!r}f
#define {upper}_INPUT_ZERO_POINT {meta['input_zero_point']}
#define {upper}_CLASSES {out_n}
#define {upper}_OUTPUT_SCALE {meta['output_scale']!r}f
#define {upper}_OUTPUT_ZERO_POINT {meta['output_zero_point']}
/* RAM the memory plan needs: one arena, every activation inside it (the input included). The
 * predict function's own locals (stack) come on top: {scratch_bytes} B of scratch. */
#define {upper}_ARENA_BYTES {plan.arena_bytes}

/* Where to put the quantized input (int8, {upper}_INPUT_BYTES) before {name}_invoke: inside the arena. */
int8_t *{name}_input(void);
/* Run the model on the input already in {name}_input(); write {upper}_CLASSES int8 scores. */
void {name}_invoke(int8_t *scores);
/* Copy image into the arena, run, write the scores; returns the class with the highest score. */
int {name}_predict(const int8_t *image, int8_t *scores);

#ifdef __cplusplus
}}
#endif

#endif /* {guard} */
"""
    return source, header


def _stack_bytes(ctype: str, count: int) -> int:
    return count * (4 if ctype == "int32_t" else 1)


def _scratch_layout(layer: Layer) -> dict:
    """var -> (C type, byte offset) in the shared scratch buffer: int32 arrays first, aligned."""
    order = sorted(layer.scratch.items(), key=lambda item: item[1][0] != "int32_t")
    layout, offset = {}, 0
    for var, (ctype, count) in order:
        layout[var] = (ctype, offset)
        offset += _stack_bytes(ctype, count)
    return layout


def _scratch_bytes(layer: Layer) -> int:
    return sum(_stack_bytes(t, c) for t, c in layer.scratch.values())


def _scratch_vars(layer: Layer) -> dict:
    """var -> the C expression of its place in em_scratch."""
    return {var: (f"em_scratch + {offset // 4}" if ctype == "int32_t" else f"(int8_t *)em_scratch + {offset}")
            for var, (ctype, offset) in _scratch_layout(layer).items()}


# ---------------------------------------------------------------------------------------------
# The command


@dataclass(frozen=True)
class CodegenConfig:
    """Settings of `edgemnist codegen`."""

    name: str = "mnist"  # C prefix: <name>_predict, <name>.c, <name>.h
    fuse: bool = True  # merge conv+pool and 1x1 conv+classifier


def generate(model_path, config: CodegenConfig = CodegenConfig()) -> dict:
    """Everything `codegen` writes, as {file name: bytes}, plus the report.

    Raises:
        CodegenError: the model holds an op, type or shape that is not covered.
        TFLiteFormatError: the file is not a well-formed .tflite.
    """
    from edgemnist import __version__

    _ident(config.name)
    path = Path(model_path)
    raw = path.read_bytes()
    model = read_model(raw, name=str(path))
    layers = lower(model)
    x = model.tensors[model.main.inputs[0]]
    y = model.tensors[model.main.outputs[0]]
    input_bytes = int(np.prod(x.shape))
    # fuse() merges layers in place: the unfused plan (reported for comparison) gets its own copies
    plain_plan = plan_memory([_finish(layer) for layer in copy.deepcopy(layers)], input_bytes)
    fusions = []
    if config.fuse:
        layers, fusions = fuse(layers)
    layers = [_finish(layer) for layer in layers]
    plan = plan_memory(layers, input_bytes)
    meta = {"version": __version__, "model": path.name, "sha256": sha256_bytes(raw),
            "input_shape": tuple(int(v) for v in x.shape), "input_scale": float(x.scale),
            "input_zero_point": int(x.zero_point), "output_scale": float(y.scale),
            "output_zero_point": int(y.zero_point)}
    source, header = render(layers, plan, config.name, meta)
    const_bytes = sum(int(a.nbytes) for layer in layers for a in layer.arrays.values()) + \
        sum(2 * len(layer.geo) for layer in layers)
    scratch = max([_scratch_bytes(layer) for layer in layers] + [0])
    report = {
        "model": str(path), "model_sha256": meta["sha256"], "name": config.name,
        "layers": [{"layer": k, "ops": list(layer.ops), "what": layer.describe(),
                    "in_shape": list(layer.in_shape), "out_shape": list(layer.out_shape),
                    "input_offset": plan.offsets[k], "output_offset": plan.offsets[k + 1],
                    "output_bytes": layer.out_bytes, "safe_shift": plan.shifts[k]}
                   for k, layer in enumerate(layers)],
        "arena_bytes": plan.arena_bytes, "scratch_bytes": scratch,
        "ping_pong_bytes": plan.no_overlap_bytes,
        "unfused_arena_bytes": plain_plan.arena_bytes,
        "fusions": fusions, "const_bytes": const_bytes,
        "input": {"shape": list(meta["input_shape"]), "scale": meta["input_scale"],
                  "zero_point": meta["input_zero_point"], "offset": plan.offsets[0]},
        "output": {"classes": plan.sizes[-1], "scale": meta["output_scale"],
                   "zero_point": meta["output_zero_point"], "offset": plan.offsets[-1]},
    }
    files = {f"{config.name}.c": source.encode(), f"{config.name}.h": header.encode(),
             PLAN_NAME: (json.dumps(report, indent=2) + "\n").encode()}
    manifest = {"model": path.name, "model_sha256": meta["sha256"], "edgemnist": __version__,
                "files": {n: sha256_bytes(b) for n, b in sorted(files.items())}}
    files[MANIFEST_NAME] = (json.dumps(manifest, indent=2) + "\n").encode()
    return {"files": files, "report": report}


def write(model_path, out_dir, config: CodegenConfig = CodegenConfig()) -> dict:
    """Generate and write the folder atomically (a failure leaves the old folder or none)."""
    result = generate(model_path, config)
    out = Path(out_dir)
    atomic_write_folder(out, result["files"])
    report = dict(result["report"])
    report["out"] = str(out)
    report["files"] = sorted(result["files"])
    return report


def format_report(report: dict) -> str:
    lines = [f"{report['model']} -> {report['out']}/{report['name']}.c, {report['name']}.h",
             f"{'layer':<6}{'what':<36}{'in':>12}{'out':>12}{'in at':>8}{'out at':>8}{'shift':>8}"]
    for entry in report["layers"]:
        shift = "any" if entry["safe_shift"] is None else str(entry["safe_shift"])
        lines.append(f"{entry['layer']:<6}{entry['what']:<36}{'x'.join(map(str, entry['in_shape'])):>12}"
                     f"{'x'.join(map(str, entry['out_shape'])):>12}{entry['input_offset']:>8}"
                     f"{entry['output_offset']:>8}{shift:>8}")
    lines.append(f"arena: {report['arena_bytes']:,} B (ping-pong without in-place layers: "
                 f"{report['ping_pong_bytes']:,} B; without fusion: {report['unfused_arena_bytes']:,} B); "
                 f"scratch on the stack: {report['scratch_bytes']} B; constants in flash: {report['const_bytes']:,} B")
    for note in report["fusions"]:
        lines.append(f"fused {note}")
    return "\n".join(lines)


def add_commands(subparsers) -> None:
    """Registers `edgemnist codegen`."""
    p = subparsers.add_parser(
        "codegen",
        help="generate dependency-free C99 for a full-integer .tflite (no interpreter; static memory plan)",
        description="Turn a full-integer .tflite into plain C99: const weight arrays (PROGMEM on AVR), a memory "
        "plan fixed at generation time (layers write over their own input where their order allows; conv+max-pool "
        "and 1x1 conv+classifier fused), and one function <name>_predict(const int8_t *image, int8_t *scores). "
        "The scores are LiteRT's builtin kernels' bit for bit. An op it does not cover is refused with its "
        "index (exit 2) and nothing is written.",
    )
    p.add_argument("model", help="a full-integer .tflite (int8 input and output)")
    p.add_argument("--out", required=True, help="folder to write <name>.c, <name>.h, plan.json into")
    p.add_argument("--name", default=CodegenConfig.name, help="C prefix of the files and functions (default %(default)s)")
    p.add_argument("--no-fuse", action="store_true", help="keep every layer separate (for comparison)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_run_codegen)


def _run_codegen(args):
    from edgemnist.runtime.tflite_reader import check_tflite_file

    path = check_tflite_file(args.model)
    try:
        _ident(args.name)
        report = write(path, args.out, CodegenConfig(name=args.name, fuse=not args.no_fuse))
    except CodegenError as e:
        raise CodegenError(f"{path}: {e}") from None
    return Output(report, format_report(report))


def host_build(folder, name: str = "mnist", guard: int = 0, cc: str = "gcc", trace: bool = False) -> Path:
    """Compile the generated C with the host harness (tests, benchmarks): reads int8 inputs on
    stdin, writes int8 scores on stdout; exits 3 if a guard byte around the arena changed."""
    import subprocess

    folder = Path(folder)
    exe = folder / f"{name}_host{'_guard' if guard else ''}{'_trace' if trace else ''}"
    harness = TEMPLATES / "host_main.c"
    upper = name.upper()
    cmd = [cc, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off", f"-DEM_NAME={name}",
           f'-DEM_HEADER="{name}.h"', f"-DEM_INPUT_BYTES={upper}_INPUT_BYTES", f"-DEM_CLASSES={upper}_CLASSES",
           f"-DEM_ARENA_BYTES={upper}_ARENA_BYTES", f"-I{folder}", str(folder / f"{name}.c"), str(harness), "-lm",
           "-o", str(exe)]
    if guard:
        cmd.insert(1, f"-DEM_ARENA_GUARD={guard}")
    if trace:  # every layer's output to stderr: layer number, byte count, the bytes
        cmd.insert(1, "-DEM_TRACE(k,d,n)=(fprintf(stderr,\"%d %d\\n\",k,n),fwrite(d,1,n,stderr))")
        cmd.insert(1, "-include")
        cmd.insert(2, "stdio.h")
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode:
        raise RuntimeError(f"compiling {folder / (name + '.c')} failed:\n{run.stderr}")
    return exe


def host_predict(exe, inputs: np.ndarray, classes: int) -> np.ndarray:
    """int8 scores (N, classes) of a host build for int8 inputs (N, ...)."""
    import subprocess

    data = np.ascontiguousarray(inputs, np.int8).tobytes()
    run = subprocess.run([os.fspath(exe)], input=data, capture_output=True)
    if run.returncode:
        raise RuntimeError(f"{exe} exited {run.returncode}: {run.stderr.decode(errors='replace')}")
    return np.frombuffer(run.stdout, np.int8).reshape(len(inputs), classes)


def host_trace(exe, model_input: np.ndarray) -> list:
    """Every layer's output (int8 bytes) for one input, from a host build made with trace=True."""
    import subprocess

    run = subprocess.run([os.fspath(exe)], input=np.ascontiguousarray(model_input, np.int8).tobytes(),
                         capture_output=True)
    if run.returncode:
        raise RuntimeError(f"{exe} exited {run.returncode}")
    data, pos, outputs = run.stderr, 0, []
    while pos < len(data):
        end = data.index(b"\n", pos)
        k, n = (int(v) for v in data[pos:end].split())
        outputs.append(np.frombuffer(data[end + 1:end + 1 + n], np.int8).copy())
        pos = end + 1 + n
    return outputs
