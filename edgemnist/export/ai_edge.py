"""AI Edge Quantizer on a float32 .tflite: the quantizer that needs no TensorFlow.

Usage: from edgemnist.export.ai_edge import ai_edge_quantize; ai_edge_quantize(float_tflite, "static_wi8_ai8", images)

`edgemnist export --quantizer ai-edge` runs it for the `aie_*` variants of the export
table (export/convert.py); the recipe names are AI Edge Quantizer's own
(`ai_edge_quantizer.recipe.<name>()`).
"""
from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import numpy as np


def ai_edge_quantize(float_tflite: bytes, recipe_name: str, calibration_images: Callable[[], np.ndarray],
                     batch_size: int = 1) -> bytes:
    """Quantizes a float32 .tflite with AI Edge Quantizer.

    Args:
        float_tflite: the float32 model's bytes.
        recipe_name: an `ai_edge_quantizer.recipe` function name, e.g. "static_wi8_ai8".
        calibration_images: returns float32 (N, 28, 28, 1) images in [0, 1]; called only
            when the recipe needs calibration.
        batch_size: the model's static batch (each image is repeated to fill it).

    Returns:
        The quantized .tflite bytes.

    Raises:
        MissingExtraError: ai-edge-quantizer is not installed.
        ValueError: the float model has no signature (calibration needs one).
    """
    try:
        from ai_edge_quantizer import quantizer, recipe
    except ImportError as exc:
        from edgemnist._tensorflow import MissingExtraError

        raise MissingExtraError(f"--quantizer ai-edge needs ai-edge-quantizer: pip install ai-edge-quantizer ({exc})")
    # The quantizer prints a size summary and a progress bar on stdout; keep our output clean.
    with tempfile.TemporaryDirectory(prefix="edgemnist-aie-") as tmp, _quiet():
        src = Path(tmp) / "float32.tflite"
        src.write_bytes(float_tflite)
        qt = quantizer.Quantizer(str(src))
        qt.load_quantization_recipe(getattr(recipe, recipe_name)())
        calibration = None
        if qt.need_calibration:
            images = calibration_images()
            signature, input_name = _signature_input(float_tflite)
            samples = [{input_name: images[i : i + 1].repeat(batch_size, axis=0)} for i in range(len(images))]
            calibration = qt.calibrate({signature: samples})
        result = qt.quantize(calibration) if calibration is not None else qt.quantize()
        out = Path(tmp) / "quantized.tflite"
        result.export_model(str(out), overwrite=True)
        return out.read_bytes()


@contextlib.contextmanager
def _quiet():
    """Silences stdout, tqdm bars and warnings of chatty third-party code."""
    previous = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        if previous is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = previous


def _signature_input(tflite: bytes) -> tuple[str, str]:
    """(signature key, input name) of a one-input model's first signature."""
    from ai_edge_litert.interpreter import Interpreter

    signatures = Interpreter(model_content=tflite).get_signature_list()
    if not signatures:
        raise ValueError("the float32 .tflite has no signature; AI Edge Quantizer calibration needs one")
    key = next(iter(signatures))
    return key, signatures[key]["inputs"][0]
