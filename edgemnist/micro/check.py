"""Run int8 inputs through TFLite Micro (host build) and through LiteRT, and compare the raw scores.

Usage: from edgemnist.micro.check import compare_with_litert; compare_with_litert(path, digits, arena_size)

`edgemnist firmware` records TFLite Micro's scores as the expected ones and refuses a model
on which it and LiteRT's builtin kernels (the ones TFLite Micro derives from) disagree;
`edgemnist mcu` compares a Cortex-M run with LiteRT through `litert_raw_outputs`.
"""
from __future__ import annotations

import os
from typing import Optional

import numpy as np

from edgemnist.micro.arena import import_micro
from edgemnist.runtime.quantize import quantize_pixels

MIN_LITERT_AGREEMENT = 0.9  # argmax agreement on the embedded test digits below which generation fails


def quantize_images(images: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """uint8 images (N, 28, 28) -> int8 model input (N, 28, 28, 1) with the model's own parameters.

    The one rule of edgemnist.runtime.quantize, as `Runner` quantizes: the firmware's test
    digits are the inputs LiteRT was given on the host.
    """
    return quantize_pixels(images, scale, zero_point, np.int8)[..., None]


def micro_predict(path: str | os.PathLike, model_input: np.ndarray, arena_size: int) -> np.ndarray:
    """Raw int8 outputs (N, classes) of TFLite Micro for already-quantized inputs (N, 28, 28, 1).

    Run it only with an arena known to work (`micro_arena.measure_arena`): too small an arena can crash.
    """
    runtime = import_micro()
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
        model_input: int8 inputs, one model input per row.
        xnnpack: False runs LiteRT's builtin kernels (the ones TFLite Micro derives from,
            bit-exact with it here); True the default XNNPACK delegate, which rounds
            differently and is what `Runner` uses on a Pi.

    Raises:
        MissingExtraError: ai-edge-litert is not installed.
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
        path: the int8 .tflite file.
        model_input: int8 inputs (N, 28, 28, 1).
        arena_size: a tensor arena known to work (`micro_arena.measure_arena`).
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


def require_agreement(check: dict, path: str | os.PathLike) -> None:
    """Refuses a model on which TFLite Micro and LiteRT's builtin kernels disagree too often.

    Args:
        check: what `compare_with_litert` returned.
        path: the model, for the message.

    Raises:
        ValueError: argmax agreement below MIN_LITERT_AGREEMENT.
    """
    if check["builtin"]["argmax_agreement"] < MIN_LITERT_AGREEMENT:
        raise ValueError(
            f"{path}: TFLite Micro and LiteRT agree on only {check['builtin']['argmax_agreement']:.0%} "
            f"of the {check['digits']} test digits (max difference {check['builtin']['max_abs_diff']} levels); "
            "this model would misclassify on a microcontroller"
        )
