"""`edgemnist info`: the shipped models, or what a model file holds.

Usage: edgemnist info            (the models shipped with edgemnist, and which is the default)
       edgemnist info model.tflite | int8 | model.keras

A .tflite (or a shipped model's name) is described without TensorFlow; a .keras/.h5 file needs the
train extra.
"""
from __future__ import annotations

from edgemnist.output import Output


def add_commands(subparsers) -> None:
    """Registers `edgemnist info`."""
    p = subparsers.add_parser(
        "info",
        help="the models shipped with edgemnist (which is the default), or describe a model file",
        description="Without a model: the models shipped with edgemnist (predict, serve and "
        "edgemnist.load() read the default one when no model is named), each with its size, sha256, "
        "accuracy on the 10,000 MNIST test images and the command that made it. With a model: a "
        ".keras/.h5 file (needs the train extra): layers, parameters and MACs per image; a .tflite file "
        "or a shipped model's name (no TensorFlow needed): ops, tensors, quantization parameters and "
        "where the bytes go.",
    )
    p.add_argument("model", nargs="?", help="a .keras, .h5 or .tflite file, or a shipped model's name "
                   "(int8, float32); none: list the shipped models")
    p.set_defaults(func=_run_info)


def _run_info(args):
    from edgemnist.runtime import models

    if args.model is None:
        shipped = models.describe_shipped()
        return Output({"shipped_models": shipped, "default": models.DEFAULT_MODEL},
                      models.format_shipped(shipped))
    if models.is_model_argument(args.model):
        from edgemnist.runtime import tflite_info

        info = tflite_info.describe(models.resolve_model(args.model))
        return Output(info, tflite_info.format_description(info))
    from edgemnist.training import model as model_lib

    summary = model_lib.model_summary(model_lib.load_keras_model(args.model))
    return Output(summary, model_lib.format_summary(summary))
