"""The TFLite converter on a static-batch trace of a Keras model: the one converter factory.

Usage: from edgemnist.export.tflite_converter import tflite_converter; tflite_converter(model).convert()

Every .tflite edgemnist makes with TensorFlow starts here: `edgemnist export`
(`tflite_convert`), `edgemnist diagnose` (its QuantizationDebugger wraps a converter from
`tflite_converter`) and the benchmarks. The model is traced with a fixed batch, so
dilated convolutions stay one native op (no SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND,
whose int8 form TFLite Micro runs wrongly).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from edgemnist.console import first_line

# The TFLite converter modes `tflite_convert` runs; the full-integer ones need calibration images.
RECIPES = ("float32", "float16", "dynamic_range", "full_integer", "full_integer_per_tensor")
CALIBRATED_RECIPES = ("full_integer", "full_integer_per_tensor")


def concrete_function(model, batch_size: int = 1):
    """The model's inference function traced for a static [batch, 28, 28, 1] input named `image`.

    Tracing with a fixed batch works for plain and tfmot-wrapped (QAT) models alike, where
    rebuilding the Keras graph with a new input shape would need every custom object.

    Args:
        model: a Keras model.
        batch_size: the static batch of the trace.

    Returns:
        A tf ConcreteFunction returning {"probabilities": ...}.
    """
    from edgemnist._tensorflow import import_tensorflow

    tf = import_tensorflow()
    spec = tf.TensorSpec([batch_size] + list(model.input_shape[1:]), tf.float32, name="image")

    @tf.function(input_signature=[spec])
    def serve(image):
        return {"probabilities": model(image, training=False)}

    return serve.get_concrete_function()


def variables_holder(model):
    """A plain tf.Module owning the model's variables: what the converter saves beside the function.

    The converter writes its input as a SavedModel first. Handed the Keras model itself, that
    save serializes every layer's call functions, most of a conversion's time; the traced
    function only needs its variables tracked, and the converted bytes are the same.
    """
    from edgemnist._tensorflow import import_tensorflow

    holder = import_tensorflow().Module()
    holder.variables_of_model = list(model.variables)
    return holder


def tflite_converter(model, batch_size: int = 1):
    """A `tf.lite.TFLiteConverter` for a static-batch trace of `model`, not yet configured.

    Args:
        model: a Keras model (plain, pruned or tfmot QAT).
        batch_size: the static batch of the exported model; 1 keeps dilated convolutions native.

    Returns:
        The converter; set optimizations and the representative dataset, then `convert()`.
    """
    from edgemnist._tensorflow import import_tensorflow

    tf = import_tensorflow()
    return tf.lite.TFLiteConverter.from_concrete_functions([concrete_function(model, batch_size)],
                                                           variables_holder(model))


def tflite_convert(model, recipe: str, batch_size: int = 1, images: Optional[np.ndarray] = None) -> bytes:
    """Runs the TFLite converter in one of its modes (`RECIPES`) on a static-batch trace of `model`.

    Args:
        model: a Keras model.
        recipe: a name from RECIPES.
        batch_size: the static batch of the exported model.
        images: float32 (N, 28, 28, 1) calibration images in [0, 1]; needed by the
            full-integer recipes, ignored by the others.

    Returns:
        The .tflite bytes as the converter wrote them.

    Raises:
        ValueError: an unknown recipe, or a full-integer recipe without images.
        RuntimeError: the converter failed.
    """
    from edgemnist._tensorflow import import_tensorflow

    if recipe not in RECIPES:
        raise ValueError(f"unknown TFLite converter recipe {recipe!r}; choose from {', '.join(RECIPES)}")
    if recipe in CALIBRATED_RECIPES and (images is None or len(images) == 0):
        raise ValueError(f"the {recipe} recipe needs calibration images")
    tf = import_tensorflow()
    converter = tflite_converter(model, batch_size)
    if recipe == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif recipe == "dynamic_range":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif recipe in CALIBRATED_RECIPES:
        def representative_dataset():
            for i in range(len(images)):
                yield [images[i : i + 1].repeat(batch_size, axis=0)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        # One weight scale per tensor instead of per output channel: each channel costs
        # 24 bytes of scales and int64 zero points (weights and bias); bench_export.py measures the sizes.
        converter._experimental_disable_per_channel = recipe == "full_integer_per_tensor"
    try:
        return bytes(converter.convert())
    except Exception as exc:
        first = first_line(exc)
        raise RuntimeError(f"TFLite converter failed for {model.name!r} ({recipe}): {first[:300]}") from None
