"""Model builders: the depthwise-separable dilated CNN and the tutorial CNN reference.

Usage: edgemnist info runs/default/model.keras

Both builders return a plain Keras (tf-keras, Keras 2) model that starts with
`keras.Input` and takes 28x28x1 images in [0, 1]. Layer names are stable (`stem`,
`block1_conv_dw`, `block1_conv_pw`, ...) so pruning reports and quantization diagnostics
can name them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Optional

from edgemnist._tensorflow import keras
from edgemnist.console import first_line

INPUT_SHAPE = (28, 28, 1)
STEMS = ("conv", "space_to_depth")
# How the last feature map becomes one vector: "mean" (GlobalAveragePooling2D, a MEAN op) or
# "average_pool" (an AveragePooling2D over the whole map, then a Reshape): the same average, but
# AVERAGE_POOL_2D has a CMSIS-NN kernel while TFLite Micro's int8 MEAN is a generic loop; or
# "flatten": no pooling, the classifier sees every position of the last map. Its weights live in
# flash, and a per-tensor quantized FULLY_CONNECTED keeps no per-channel state in TFLite Micro's
# arena, so where RAM is scarcer than flash it buys accuracy that more channels would pay for in RAM.
GLOBAL_POOLS = ("mean", "average_pool", "flatten")
# What computes the 10 scores: "dense" (a Dense layer on the pooled or flattened map: TFLite's
# FULLY_CONNECTED) or "conv" (a convolution whose kernel covers the whole map it is given, valid
# padding: the same function as Flatten then Dense, with the weights in the same order, but in
# TFLite a CONV_2D). A firmware whose other layers are convolutions then links no
# FULLY_CONNECTED kernel at all, which on CMSIS-NN is a per-tensor and a per-channel matrix
# kernel, both linked whichever the model uses. "conv" needs a 4-D map: "average_pool" or
# "flatten" before it.
CLASSIFIERS = ("dense", "conv")
# Faster-moving BatchNorm statistics than Keras' 0.99: short fine-tunes and small runs
# (pruning, QAT, tests) otherwise evaluate with statistics that have not caught up.
BN_MOMENTUM = 0.9


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the depthwise-separable model.

    Chosen by measuring int8 latency on LiteRT: every op of an int8 graph has a fixed cost
    and full-resolution layers cost most, so the stem halves the resolution at once, one
    block works at 14x14, and the wider blocks run at 7x7 and 3x3. Dilation widens the
    receptive field of the 3x3 depthwise kernels without adding parameters. int8
    convolutions in XNNPACK pad the input channels of every kernel tap to a SIMD width, so a
    convolution of the 1-channel image costs as much as one of an 8-channel image, and
    channels at 14x14 are cheap up to that width: the stem rearranges the image into 2x2
    blocks first, and stem and first block are 32 and 48 wide. What each part costs on this
    machine: `python benchmarks/bench_layers.py MODEL` (per layer) and `--stems` (the stem
    candidates); the published numbers are in benchmarks/README.md.
    """

    stem_channels: int = 32  # 28x28 -> 14x14
    # "space_to_depth": the image's 2x2 pixel blocks become 4 channels (4-D Reshapes and
    # Permutes: plain Keras layers, so pruning, QAT, TFLite and every TFLite Micro kernel set take them),
    # then a stride-1 stem_kernel x stem_kernel convolution over 14x14x4; with stem_kernel 2
    # it sees 4x4 pixels at stride 2 without convolving the 1-channel image, the slow case
    # in int8 (above). "conv": a stem_kernel x stem_kernel convolution with stride 2 of the
    # image itself (3x3 was the default before; a 2x2 one sees too little and was less
    # accurate: benchmarks/README.md, Training).
    stem: str = "space_to_depth"
    stem_kernel: int = 2
    block_channels: tuple = (48, 48, 64, 96)  # pointwise output channels, one per block
    dilation_rates: tuple = (2, 1, 2, 1)  # dilation of each block's 3x3 depthwise conv
    pool_after: tuple = (1, 3)  # 2x2 max-pool after these blocks (1-based; 0: after the stem): 14 -> 7 -> 3
    width_multiplier: float = 1.0  # scales every channel count
    dropout: float = 0.1  # before the classifier
    global_pool: str = "mean"  # one of GLOBAL_POOLS
    classifier: str = "dense"  # one of CLASSIFIERS
    # 2x2 max-pool between these blocks' depthwise and pointwise convolutions (1-based): the
    # pointwise convolution then runs on a quarter of the positions. A 1x1 convolution over a
    # few input channels is the costliest op per multiply-accumulate on CMSIS-NN, so this removes
    # most of what a 14x14 block costs there, for the same parameters.
    pool_before_pointwise: tuple = ()

    def __post_init__(self):
        if len(self.block_channels) == 0:
            raise ValueError("block_channels must name at least one block")
        if any(int(c) < 1 for c in (self.stem_channels, *self.block_channels)):
            raise ValueError(
                f"channel counts must be >= 1, got stem {self.stem_channels}, blocks {self.block_channels}")
        if len(self.dilation_rates) != len(self.block_channels):
            raise ValueError(
                f"dilation_rates {self.dilation_rates} must have one rate per block "
                f"({len(self.block_channels)} blocks)"
            )
        if any(int(r) < 1 for r in self.dilation_rates):
            raise ValueError(f"dilation rates must be >= 1, got {self.dilation_rates}")
        if any(not 0 <= int(b) <= len(self.block_channels) for b in self.pool_after):
            raise ValueError(f"pool_after {self.pool_after} must name blocks 1..{len(self.block_channels)} "
                             "(or 0, the stem)")
        if any(not 1 <= int(b) <= len(self.block_channels) for b in self.pool_before_pointwise):
            raise ValueError(f"pool_before_pointwise {self.pool_before_pointwise} must name blocks "
                             f"1..{len(self.block_channels)}")
        if not 0.0 < self.width_multiplier <= 8.0:
            raise ValueError(f"width_multiplier must be in (0, 8], got {self.width_multiplier}")
        if not 1 <= int(self.stem_kernel) <= 7:
            raise ValueError(f"stem_kernel must be in 1..7, got {self.stem_kernel}")
        if self.stem not in STEMS:
            raise ValueError(f"stem must be one of {', '.join(STEMS)}, got {self.stem!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.global_pool not in GLOBAL_POOLS:
            raise ValueError(f"global_pool must be one of {', '.join(GLOBAL_POOLS)}, got {self.global_pool!r}")
        if self.classifier not in CLASSIFIERS:
            raise ValueError(f"classifier must be one of {', '.join(CLASSIFIERS)}, got {self.classifier!r}")
        if self.classifier == "conv" and self.global_pool == "mean":
            raise ValueError('classifier "conv" needs a 4-D map: global_pool "average_pool" or "flatten", '
                             'not "mean"')

    def channels(self, n: int) -> int:
        """Channel count scaled by the width multiplier, kept a multiple of 4 (SIMD friendly)."""
        return max(4, int(round(n * self.width_multiplier / 4)) * 4)


def _conv_dw_pw(x, out_channels: int, dilation: int, name: str, pool_before_pointwise: bool = False):
    """One depthwise-separable block: 3x3 depthwise (dilated) -> BN -> ReLU6 [-> 2x2 max-pool] -> 1x1
    pointwise -> BN -> ReLU6."""
    layers = keras().layers
    x = layers.DepthwiseConv2D(3, padding="same", dilation_rate=dilation, use_bias=False, name=f"{name}_conv_dw")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn_dw")(x)
    x = layers.ReLU(6.0, name=f"{name}_relu_dw")(x)
    if pool_before_pointwise:
        x = layers.MaxPooling2D(2, name=f"{name}_pool_dw")(x)
    x = layers.Conv2D(out_channels, 1, use_bias=False, name=f"{name}_conv_pw")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn_pw")(x)
    return layers.ReLU(6.0, name=f"{name}_relu_pw")(x)


def space_to_depth(x, prefix: str = "stem"):
    """(H, W, C) -> (H/2, W/2, 4C): each 2x2 pixel block becomes channels 2*row + column.

    Two 4-D Reshape/Permute pairs (`<prefix>_columns`, `<prefix>_transpose`, `<prefix>_blocks`,
    `<prefix>_space_to_depth`): pair the columns into channels, swap the spatial axes, pair
    the rows, swap back. Plain Keras layers, so tfmot pruning and QAT, TFLite and TFLite Micro
    all take them; every tensor stays 4-D because TFLite Micro's CMSIS-NN TRANSPOSE takes at
    most 4 dimensions (a 5-D one returns success with a stale output). Data movement only: the
    result is bit for bit the one-step 5-D rearrangement, so trained weights do not change.
    """
    layers = keras().layers
    h, w, c = x.shape[1:]
    x = layers.Reshape((h, w // 2, 2 * c), name=f"{prefix}_columns")(x)  # [row, j, (col%2, c)]
    x = layers.Permute((2, 1, 3), name=f"{prefix}_transpose")(x)  # [j, row, (col%2, c)]
    x = layers.Reshape((w // 2, h // 2, 4 * c), name=f"{prefix}_blocks")(x)  # [j, i, (row%2, col%2, c)]
    return layers.Permute((2, 1, 3), name=f"{prefix}_space_to_depth")(x)  # [i, j, (row%2, col%2, c)]


def build_ds_cnn(config: ModelConfig = ModelConfig(), batch_size: Optional[int] = None):
    """The depthwise-separable dilated CNN.

    Args:
        config: the model's shape.
        batch_size: a static batch size (1 for TFLite export, so dilated convolutions are
            lowered to one native op rather than SPACE_TO_BATCH_ND/BATCH_TO_SPACE_ND), or None.

    Returns:
        An uncompiled Keras model named "ds_cnn".
    """
    k = keras()
    layers = k.layers
    inputs = k.Input(INPUT_SHAPE, batch_size=batch_size, name="image")
    if config.stem == "space_to_depth":
        x = layers.Conv2D(config.channels(config.stem_channels), int(config.stem_kernel), padding="same",
                          use_bias=False, name="stem")(space_to_depth(inputs))
    else:
        x = layers.Conv2D(config.channels(config.stem_channels), int(config.stem_kernel), strides=2, padding="same",
                          use_bias=False, name="stem")(inputs)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)
    if 0 in config.pool_after:
        x = layers.MaxPooling2D(2, name="stem_pool")(x)
    for i, (channels, rate) in enumerate(zip(config.block_channels, config.dilation_rates), start=1):
        x = _conv_dw_pw(x, config.channels(channels), int(rate), name=f"block{i}",
                        pool_before_pointwise=i in config.pool_before_pointwise)
        if i in config.pool_after:
            x = layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
    conv_classifier = config.classifier == "conv"  # it reads the 4-D map, so no Flatten before it
    if config.global_pool == "average_pool":
        x = layers.AveragePooling2D(tuple(x.shape[1:3]), name="pool_avg")(x)
    if config.global_pool == "mean":
        x = layers.GlobalAveragePooling2D(name="pool")(x)
    elif not conv_classifier:
        x = layers.Flatten(name="pool")(x)
    if config.dropout:
        x = layers.Dropout(config.dropout, name="dropout")(x)
    if conv_classifier:
        x = layers.Conv2D(10, tuple(x.shape[1:3]), name="classifier")(x)
        x = layers.Flatten(name="logits")(x)
        outputs = layers.Softmax(name="softmax")(x)
    else:
        outputs = layers.Dense(10, activation="softmax", name="classifier")(x)
    return k.Model(inputs, outputs, name="ds_cnn")


def build_tutorial_cnn(batch_size: Optional[int] = None):
    """The standard tutorial CNN (Conv32-Pool-Conv64-Pool-Conv64-Dense64-Dense10, ~93k parameters).

    The reference every comparison shows beside the depthwise-separable model.
    """
    k = keras()
    layers = k.layers
    inputs = k.Input(INPUT_SHAPE, batch_size=batch_size, name="image")
    x = layers.Conv2D(32, 3, activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(64, 3, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Conv2D(64, 3, activation="relu", name="conv3")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(64, activation="relu", name="dense1")(x)
    outputs = layers.Dense(10, activation="softmax", name="classifier")(x)
    return k.Model(inputs, outputs, name="tutorial_cnn")


# Registered architectures: name -> builder(config, batch_size). Only ds_cnn has a shape to configure;
# the tutorial CNN is the fixed reference.
MODELS = {
    "ds_cnn": lambda config, batch_size: build_ds_cnn(config or ModelConfig(), batch_size),
    "tutorial_cnn": lambda config, batch_size: build_tutorial_cnn(batch_size),
}


def check_model_config(name: str, config: Optional[ModelConfig]) -> None:
    """Checks that `name` is registered and that `config` sets no shape the model would ignore.

    Raises:
        ValueError: unknown name, or ModelConfig settings other than the defaults for a
            fixed-shape model (they name the settings, e.g. width_multiplier=0.5).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    if name == "ds_cnn" or config is None:
        return
    default = ModelConfig()
    changed = [f"{f.name}={getattr(config, f.name)}" for f in fields(ModelConfig)
               if getattr(config, f.name) != getattr(default, f.name)]
    if changed:
        raise ValueError(f"model {name!r} has a fixed shape; the ds_cnn settings {', '.join(changed)} "
                         "do not apply to it")


def build_model(name: str = "ds_cnn", config: Optional[ModelConfig] = None, batch_size: Optional[int] = None):
    """Builds a registered model by name.

    Args:
        name: a key of MODELS.
        config: ds_cnn's shape (None: the default); other models take none.
        batch_size: a static batch size, or None (see build_ds_cnn).

    Raises:
        ValueError: unknown name, or a shape for a fixed-shape model (see check_model_config).
    """
    check_model_config(name, config)
    return MODELS[name](config, batch_size)


def load_keras_model(path: str | os.PathLike):
    """Loads any Keras model edgemnist saves (.keras or .h5), with a clear error: the one loader.

    Plain and pruned-and-stripped models load as they are; a quantization-aware trained
    model (`edgemnist optimize`'s qat.h5, pruned_qat.h5) needs tfmot's custom objects, so
    a model that fails to load plainly is tried once more inside tfmot's quantize scope.

    Args:
        path: the .keras or .h5 file.

    Returns:
        The uncompiled Keras model.

    Raises:
        FileNotFoundError: no such file. ValueError: not a loadable Keras model file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return _load_uncompiled(path)
    except ValueError as plain_error:
        from edgemnist._tensorflow import import_tfmot

        try:
            with import_tfmot().quantization.keras.quantize_scope():
                return _load_uncompiled(path)
        except ValueError:
            raise plain_error from None


def _load_uncompiled(path: str):
    """keras.models.load_model without compiling; any failure becomes one ValueError naming the file."""
    try:
        return keras().models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for a bad file; name the file instead.
        first = first_line(exc)
        raise ValueError(f"{path}: not a loadable Keras model ({first[:200]})") from None


# --------------------------------------------------------------------------- info


def layer_macs(layer) -> int:
    """Multiply-accumulates of one layer for a single image (0 for layers without weights)."""
    layers = keras().layers
    if isinstance(layer, layers.DepthwiseConv2D):
        _, h, w, c = layer.output_shape
        kh, kw = layer.kernel_size
        return int(h * w * c * kh * kw)
    if isinstance(layer, layers.Conv2D):
        _, h, w, c = layer.output_shape
        kh, kw = layer.kernel_size
        return int(h * w * c * kh * kw * layer.input_shape[-1])
    if isinstance(layer, layers.Dense):
        return int(layer.input_shape[-1] * layer.units)
    # tfmot wrappers (pruning / QAT) hold the real layer.
    inner = getattr(layer, "layer", None)
    return layer_macs(inner) if inner is not None and hasattr(inner, "output_shape") else 0


def _base_layer(layer):
    inner = getattr(layer, "layer", None)
    return inner if inner is not None else layer


def model_summary(model) -> dict:
    """Layers, parameters and MACs of a Keras model, as a JSON-ready dict.

    Returns:
        {"name", "params", "trainable_params", "macs", "input_shape",
         "layers": [{"name", "type", "output_shape", "params", "macs", "dilation"}]}
    """
    rows = []
    for layer in model.layers:
        base = _base_layer(layer)
        rows.append(
            {
                "name": layer.name,
                "type": type(base).__name__,
                "output_shape": list(layer.output_shape[1:]) if isinstance(layer.output_shape, tuple) else None,
                "params": int(layer.count_params()),
                "macs": layer_macs(layer),
                "dilation": list(base.dilation_rate) if getattr(base, "dilation_rate", (1, 1)) != (1, 1) else None,
            }
        )
    trainable = sum(int(w.shape.num_elements()) for w in model.trainable_weights)
    return {
        "name": model.name,
        "input_shape": list(model.input_shape[1:]),
        "params": int(model.count_params()),
        "trainable_params": trainable,
        "macs": sum(r["macs"] for r in rows),
        "layers": rows,
    }


def format_summary(summary: dict) -> str:
    """A human table of `model_summary`."""
    lines = [f"model {summary['name']}: input {tuple(summary['input_shape'])}"]
    lines.append(f"{'layer':<22}{'type':<24}{'output':<16}{'params':>9}{'MACs':>11}  dilation")
    for r in summary["layers"]:
        shape = "x".join(str(d) for d in r["output_shape"]) if r["output_shape"] else "-"
        dil = "x".join(str(d) for d in r["dilation"]) if r["dilation"] else ""
        lines.append(f"{r['name']:<22}{r['type']:<24}{shape:<16}{r['params']:>9,}{r['macs']:>11,}  {dil}")
    lines.append(
        f"total: {summary['params']:,} parameters ({summary['trainable_params']:,} trainable), "
        f"{summary['macs']:,} MACs per image"
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------- precise BatchNorm


def recalibrate_batchnorm(model, images, batch_size: int = 500, seed: int = 0) -> int:
    """Precise BatchNorm: sets every BatchNormalization layer's moving mean and variance to
    the average of its batch statistics over `images` (un-augmented training images).

    During training the moving statistics follow the last few augmented batches
    (momentum BN_MOMENTUM), a noisy estimate of another distribution; recomputing them once
    over the un-augmented training images is more accurate (the "precise BatchNorm" row of
    benchmarks/README.md, Training). Only the statistics change, never a weight (pruned
    zeros stay zero).

    Args:
        model: a Keras model; left with its layers' momentum as it found them.
        images: float32 (N, 28, 28, 1) in [0, 1].
        batch_size: images per forward pass; only whole batches are used (one, if N is smaller).

    Returns:
        The number of images the statistics were averaged over (0: no BatchNorm layer).
    """
    import numpy as np

    layers = keras().layers
    norms = [layer for layer in model.submodules if isinstance(layer, layers.BatchNormalization)]
    if not norms or len(images) == 0:
        return 0
    batch_size = min(int(batch_size), len(images))
    order = np.random.default_rng(seed).permutation(len(images))
    batches = len(images) // batch_size
    momenta = [layer.momentum for layer in norms]
    try:
        for k in range(batches):
            for layer in norms:
                layer.momentum = k / (k + 1.0)  # moving = running mean of the batch statistics
            model(images[np.sort(order[k * batch_size:(k + 1) * batch_size])], training=True)
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum
    return batches * batch_size
