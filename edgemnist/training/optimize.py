"""Prune and quantization-aware train a Keras model with tensorflow-model-optimization.

Usage: edgemnist optimize --from runs/default/model.keras --out runs/default/optimized --prune --qat

`prune` fine-tunes with `prune_low_magnitude` (PolynomialDecay from 0 to the target
sparsity), then `strip_pruning`; the sparsity reported is measured on the stripped
weights, per layer. tfmot's pruning registry never prunes DepthwiseConv2D kernels (and of
a SeparableConv2D only the pointwise kernel), so the depthwise layers stay dense and the
sparsity lives in the stem, pointwise and dense layers: the per-layer report shows it.

`qat` wraps the model with `quantize_model` (or, for a pruned model, with
`Default8BitPrunePreserveQuantizeScheme`, which keeps the zeros) and fine-tunes briefly.
The QAT export is traced with a static batch of 1 (see convert.py), so its dilated
convolutions stay native ops as in the other variants.
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Optional

import numpy as np

from edgemnist.console import first_line
from edgemnist.output import Output

# How the target sparsity is spread over the prunable kernels (PruneConfig.allocation).
ALLOCATIONS = ("uniform", "erk")
# Kernel attributes holding prunable weights, per Keras layer type name.
_KERNEL_ATTRS = ("kernel", "depthwise_kernel", "pointwise_kernel")


@dataclass(frozen=True)
class PruneConfig:
    """Magnitude pruning during a short fine-tune."""

    target_sparsity: float = 0.75  # fraction of zeros in the prunable kernels at the end
    # The defaults below (16 epochs, cosine rate, no augmentation, ERK, distillation 0.7) lost the
    # least accuracy of the recipes tried: the pruned int8 model's cost against the float one
    # is measured by `python benchmarks/bench_export.py` (benchmarks/README.md, "Pruning").
    epochs: int = 16  # fine-tuning epochs
    batch_size: int = 128
    learning_rate: float = 1e-3  # fine-tuning, lower than training's peak
    ramp_fraction: float = 0.5  # sparsity reaches the target after this fraction of the steps; the rest recovers
    augment: bool = False  # the training augmentation (rotations, shifts, elastic distortion) during the fine-tune
    cosine: bool = True  # learning rate decays from learning_rate to 0 (cosine) instead of staying constant
    # "uniform": every pruned kernel reaches target_sparsity. "erk": the same number of zeros
    # in all, spread by Erdos-Renyi-Kernel (Evci et al. 2020, RigL): a kernel keeps a share of
    # its weights proportional to (sum of its dimensions) / (their product), so the small,
    # sensitive kernels (the 1-channel stem, the classifier) stay denser and the big
    # pointwise kernels sparser.
    allocation: str = "erk"
    # Distillation from the dense model: the fine-tune's targets are
    # (1 - distill) * one-hot label + distill * the dense model's probabilities.
    distill: float = 0.7
    seed: int = 0

    def __post_init__(self):
        if not 0.0 < self.target_sparsity < 1.0:
            raise ValueError(f"target_sparsity must be in (0, 1), got {self.target_sparsity}")
        _check_finetune(self.epochs, self.batch_size, self.learning_rate)
        if not 0.0 < self.ramp_fraction <= 1.0:
            raise ValueError(f"ramp_fraction must be in (0, 1], got {self.ramp_fraction}")
        if self.allocation not in ALLOCATIONS:
            raise ValueError(f"allocation must be one of {', '.join(ALLOCATIONS)}, got {self.allocation!r}")
        if not 0.0 <= self.distill <= 1.0:
            raise ValueError(f"distill must be in [0, 1], got {self.distill}")


@dataclass(frozen=True)
class QATConfig:
    """Quantization-aware fine-tuning."""

    epochs: int = 1
    batch_size: int = 128
    learning_rate: float = 1e-4  # QAT only nudges weights toward the int8 grid
    seed: int = 0

    def __post_init__(self):
        _check_finetune(self.epochs, self.batch_size, self.learning_rate)


@dataclass(frozen=True)
class OptimizeConfig:
    """What `optimize` makes, with which fine-tuning settings, from which data."""

    prune: bool = True  # pruned.keras (and, with qat, pruned_qat.h5)
    qat: bool = True  # qat.h5 (and, with prune, pruned_qat.h5)
    prune_config: PruneConfig = field(default_factory=PruneConfig)  # pruning's fine-tune; only with prune
    qat_config: QATConfig = field(default_factory=QATConfig)  # QAT's fine-tune; only with qat
    data_dir: Optional[str] = None  # None: $EDGEMNIST_DATA or the shipped MNIST
    limit: Optional[int] = None  # fine-tune on the first N training images only
    test_limit: Optional[int] = None  # measure accuracy on the first N test images only

    def __post_init__(self):
        if not (self.prune or self.qat):
            raise ValueError("nothing to do: pass --prune, --qat or both")
        # Settings of a step that does not run would be ignored without a word.
        if not self.prune and self.prune_config != PruneConfig():
            raise ValueError(f"prune_config is set but pruning is off: {self.prune_config}")
        if not self.qat and self.qat_config != QATConfig():
            raise ValueError(f"qat_config is set but QAT is off: {self.qat_config}")
        for name in ("limit", "test_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 image, got {value}")


def _check_finetune(epochs: int, batch_size: int, learning_rate: float) -> None:
    if int(epochs) < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 0.0 < float(learning_rate) < 1.0:
        raise ValueError(f"learning_rate must be in (0, 1), got {learning_rate}")


# --------------------------------------------------------------------------- sparsity


def _kernels(layer):
    """(attribute name, variable) of a layer's kernels, also inside tfmot wrappers.

    Found by variable name: a QAT wrapper replaces the `kernel` attribute with its
    fake-quantized tensor, but the variable keeps its name.
    """
    found = []
    for var in layer.weights:
        leaf = var.name.split("/")[-1].split(":")[0]
        if leaf in _KERNEL_ATTRS:
            found.append((leaf, var))
    return found


def sparsity_report(model, pruned_layers: Optional[set] = None) -> dict:
    """Fraction of exactly-zero kernel weights, per layer and overall, measured on the weights.

    Args:
        model: a Keras model (plain, stripped, or QAT-wrapped).
        pruned_layers: names of the layers tfmot pruned; `prunable_sparsity` covers only
            those (None: every layer with a kernel except DepthwiseConv2D).

    Returns:
        {"overall", "prunable_sparsity", "weights", "layers": [{"name", "type", "kernel",
        "weights", "zeros", "sparsity", "pruned"}]}
    """
    rows = []
    for layer in model.layers:
        base = getattr(layer, "layer", layer)
        for attr, var in _kernels(layer):
            values = np.asarray(var.numpy())
            zeros = int(np.count_nonzero(values == 0))
            is_pruned = (
                base.name in pruned_layers if pruned_layers is not None
                else type(base).__name__ != "DepthwiseConv2D" and attr != "depthwise_kernel"
            )
            rows.append({
                "name": base.name, "type": type(base).__name__, "kernel": attr, "weights": int(values.size),
                "zeros": zeros, "sparsity": round(zeros / max(values.size, 1), 4), "pruned": bool(is_pruned),
            })
    total = sum(r["weights"] for r in rows)
    pruned_total = sum(r["weights"] for r in rows if r["pruned"])
    return {
        "overall": round(sum(r["zeros"] for r in rows) / max(total, 1), 4),
        "prunable_sparsity": round(sum(r["zeros"] for r in rows if r["pruned"]) / max(pruned_total, 1), 4),
        "weights": total,
        "layers": rows,
    }


def format_sparsity(report: dict) -> str:
    """A human table of `sparsity_report`."""
    lines = [f"{'layer':<22}{'type':<18}{'kernel':<18}{'weights':>9}{'sparsity':>10}  pruned"]
    for r in report["layers"]:
        lines.append(f"{r['name']:<22}{r['type']:<18}{r['kernel']:<18}{r['weights']:>9,}{r['sparsity']:>10.1%}  "
                     f"{'yes' if r['pruned'] else 'no (tfmot does not prune it)'}")
    lines.append(f"overall {report['overall']:.1%} of {report['weights']:,} kernel weights; "
                 f"pruned layers {report['prunable_sparsity']:.1%}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- pruning


class PruneResult(NamedTuple):
    """What `prune` returns."""

    model: Any  # the stripped pruned Keras model: plain layers, zeros in the kernels
    sparsity: dict  # `sparsity_report` of `model`, measured on its weights
    wrapped: Any  # the model still inside tfmot's pruning wrappers (for checks; export `model`)


def _check_prunable(model, tfmot) -> None:
    """Raises ValueError naming the first layer tfmot's pruning cannot wrap."""
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import PruneRegistry

    for layer in model.layers:
        if type(layer).__name__ == "InputLayer" or PruneRegistry.supports(layer):
            continue
        if isinstance(layer, tfmot.sparsity.keras.PrunableLayer) or hasattr(layer, "get_prunable_weights"):
            continue
        raise ValueError(
            f"layer {layer.name!r} ({type(layer).__name__}) cannot be pruned by tfmot: it is not in the "
            "pruning registry and does not implement tfmot.sparsity.keras.PrunableLayer"
        )


def _steps(n: int, batch_size: int, epochs: int) -> int:
    return math.ceil(n / batch_size) * epochs


def _fit(model, train_split, epochs, batch_size, seed, callbacks=(), verbose=1, augment=False,
         teacher=None, distill: float = 0.0):
    """Fine-tunes on integer labels, or with `teacher` on soft targets (see PruneConfig.distill)."""
    from edgemnist.data.augment import make_dataset

    ds = make_dataset(train_split, batch_size, shuffle=True, augment=augment, seed=seed)
    if teacher is not None:
        from edgemnist._tensorflow import import_tensorflow

        tf = import_tensorflow()
        classes = int(teacher.output_shape[-1])

        def soft_targets(x, y):
            hard = tf.one_hot(y, classes)
            return x, (1.0 - distill) * hard + distill * teacher(x, training=False)

        ds = ds.map(soft_targets)
    model.fit(ds, epochs=epochs, callbacks=list(callbacks), verbose=verbose)


def _compile(model, learning_rate: float, decay_steps: int = 0, soft_targets: bool = False) -> None:
    """Adam at `learning_rate`; with `decay_steps`, cosine-decayed to 0 over that many steps."""
    from edgemnist._tensorflow import keras

    k = keras()
    rate = k.optimizers.schedules.CosineDecay(learning_rate, decay_steps) if decay_steps else learning_rate
    loss = "categorical_crossentropy" if soft_targets else "sparse_categorical_crossentropy"
    model.compile(k.optimizers.Adam(rate), loss, metrics=["accuracy"])


def _prunable_weights(layer) -> list:
    """The weights of `layer` that tfmot would prune (none for layers it cannot prune)."""
    getter = getattr(layer, "get_prunable_weights", None)
    if getter is not None:
        return getter()
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import PruneRegistry

    return PruneRegistry.make_prunable(layer).get_prunable_weights() if PruneRegistry.supports(layer) else []


def _prunable_kernel_shapes(model) -> dict:
    """{layer name: shapes of the weights tfmot would prune} for every prunable layer."""
    shapes = {}
    for layer in model.layers:
        weights = _prunable_weights(layer)
        if weights:
            shapes[layer.name] = [tuple(int(d) for d in w.shape) for w in weights]
    return shapes


def layer_sparsities(model, target: float, allocation: str = "uniform") -> dict:
    """The final sparsity of each prunable layer of `model` for an overall `target`.

    "erk" keeps, of each kernel, a density proportional to sum(shape) / prod(shape)
    (capped at dense), scaled so that the zeros add up to `target` of all prunable weights.

    Args:
        model: a Keras model.
        target: fraction of zeros over all prunable weights.
        allocation: "uniform" (every layer at `target`) or "erk".

    Returns:
        {layer name: sparsity}; 0.0 for a layer that stays dense.
    """
    shapes = _prunable_kernel_shapes(model)
    if allocation == "uniform":
        return {name: target for name in shapes}
    sizes = {name: sum(math.prod(shape) for shape in kernel) for name, kernel in shapes.items()}
    scores = {name: sum(sum(shape) for shape in kernel) / max(sizes[name], 1) for name, kernel in shapes.items()}
    keep_total = (1.0 - target) * sum(sizes.values())
    dense: set = set()
    while True:  # layers whose density would pass 1 stay dense; spread the rest again
        budget = keep_total - sum(sizes[name] for name in dense)
        rest = [name for name in shapes if name not in dense]
        scale = budget / max(sum(sizes[name] * scores[name] for name in rest), 1e-12)
        over = {name for name in rest if scale * scores[name] >= 1.0}
        if not over:
            break
        dense |= over
    return {name: 0.0 if name in dense else round(1.0 - scale * scores[name], 4) for name in shapes}


def prune(model, train_split, config: PruneConfig = PruneConfig(), verbose: int = 1):
    """Prunes `model` to the target sparsity while fine-tuning, then strips the wrappers.

    Args:
        model: a trained float Keras model (left unchanged; a copy is pruned).
        train_split: a data.Split to fine-tune on.
        config: target sparsity and fine-tuning settings.
        verbose: Keras progress output (0 silent, 1 progress bar, 2 one line per epoch).

    Returns:
        PruneResult(stripped model, sparsity report measured on its weights, wrapped model).

    Raises:
        ValueError: a layer tfmot cannot prune (named).
    """
    from edgemnist import data
    from edgemnist._tensorflow import import_tfmot, keras
    from edgemnist.training.model import recalibrate_batchnorm

    tfmot = import_tfmot()
    k = keras()
    _check_prunable(model, tfmot)
    k.utils.set_random_seed(config.seed)
    total = _steps(len(train_split), config.batch_size, config.epochs)
    # Masks update every `frequency` steps; end_step must land on one so the target is applied.
    ramp = max(1, int(total * config.ramp_fraction))
    frequency = max(1, min(100, ramp // 10))
    end_step = max(frequency, ramp // frequency * frequency)

    def schedule(final_sparsity):
        return tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=0.0, final_sparsity=final_sparsity, begin_step=0, end_step=end_step,
            frequency=frequency,
        )

    clone = k.models.clone_model(model)
    clone.set_weights(model.get_weights())
    if config.allocation == "uniform":
        wrapped = tfmot.sparsity.keras.prune_low_magnitude(clone, pruning_schedule=schedule(config.target_sparsity))
    else:
        targets = layer_sparsities(clone, config.target_sparsity, config.allocation)

        def wrap(layer):
            if targets.get(layer.name, 0.0) <= 0.0:
                return layer
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule(targets[layer.name]))

        wrapped = k.models.clone_model(clone, clone_function=wrap)  # wraps clone's own layers: weights kept
    pruned_layers = {layer.layer.name for layer in wrapped.layers
                     if hasattr(layer, "pruning_vars") and layer.pruning_vars}
    if not pruned_layers:
        pruned_layers = {layer.layer.name for layer in wrapped.layers
                         if getattr(layer, "layer", None) is not None and _prunable_weights(layer.layer)}
    _compile(wrapped, config.learning_rate, total if config.cosine else 0, soft_targets=config.distill > 0)
    _fit(wrapped, train_split, config.epochs, config.batch_size, config.seed,
         [tfmot.sparsity.keras.UpdatePruningStep()], verbose, augment=config.augment,
         teacher=model if config.distill > 0 else None, distill=config.distill)
    stripped = tfmot.sparsity.keras.strip_pruning(wrapped)
    # Precise BatchNorm statistics for the pruned weights (as after training; weights untouched).
    recalibrate_batchnorm(stripped, data.to_model_input(train_split.images), seed=config.seed)
    return PruneResult(stripped, sparsity_report(stripped, pruned_layers), wrapped)


# --------------------------------------------------------------------------- QAT


def qat(model, train_split, config: QATConfig = QATConfig(), preserve_sparsity: bool = False, verbose: int = 1):
    """Quantization-aware fine-tuning with tfmot.

    Args:
        model: a trained float Keras model, or a stripped pruned one.
        train_split: a data.Split to fine-tune on.
        config: fine-tuning settings.
        preserve_sparsity: use `Default8BitPrunePreserveQuantizeScheme`, so a pruned
            model's zeros survive QAT (the caller checks `sparsity_report` afterwards).
        verbose: Keras progress output.

    Returns:
        The QAT Keras model (tfmot QuantizeWrapper layers; export it with convert.py's
        `qat_int8` or `pruned_qat_int8` variant).

    Raises:
        ValueError: a layer tfmot cannot quantize (named).
    """
    from edgemnist._tensorflow import import_tfmot, keras

    tfmot = import_tfmot()
    k = keras()
    k.utils.set_random_seed(config.seed)
    clone = k.models.clone_model(model)
    clone.set_weights(model.get_weights())
    quantization = tfmot.quantization.keras
    _check_quantizable(model)
    try:
        if preserve_sparsity:
            annotated = quantization.quantize_annotate_model(clone)
            quantized = quantization.quantize_apply(
                annotated, tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
            )
        else:
            quantized = quantization.quantize_model(clone)
    except (RuntimeError, ValueError) as exc:
        first = first_line(exc)
        raise ValueError(f"tfmot cannot quantize model {model.name!r}: {first}") from None
    _compile(quantized, config.learning_rate)
    _fit(quantized, train_split, config.epochs, config.batch_size, config.seed, verbose=verbose)
    return quantized


def _check_quantizable(model) -> None:
    """Raises ValueError naming the first custom layer tfmot's 8-bit scheme cannot quantize.

    Built-in layers outside the registry (BatchNormalization) are folded by tfmot's graph
    transforms, so only layers from outside Keras are checked here; tfmot's own error
    (which names the layer for built-in ones) covers the rest.
    """
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry,
    )

    registry = default_8bit_quantize_registry.Default8BitQuantizeRegistry()
    for layer in model.layers:
        builtin = type(layer).__module__.startswith(("tf_keras.", "keras."))
        if not builtin and not registry.supports(layer):
            raise ValueError(
                f"layer {layer.name!r} ({type(layer).__name__}) cannot be quantized by tfmot: it is not a "
                "built-in Keras layer; annotate it with a tfmot QuantizeConfig or replace it"
            )


def save_model(model, path: str | os.PathLike) -> Path:
    """Saves a Keras model atomically, without optimizer state.

    QAT models go to .h5: tf-keras' .keras format saves tfmot's `quantize_layer` with 3
    of its 5 variables and then refuses to load it; .h5 round-trips exactly.

    Args:
        model: the Keras model.
        path: the file; its suffix (.keras or .h5) picks the format.

    Returns:
        `path`.
    """
    import warnings

    from edgemnist.artifacts import atomic_write_with

    path = Path(path)

    def write(tmp):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "HDF5 is a legacy format"
            if path.suffix == ".h5":
                model.save(tmp, include_optimizer=False)
            else:
                model.save(tmp)  # .keras takes no include_optimizer; the models are saved uncompiled anyway

    return atomic_write_with(path, write, suffix=path.suffix)


def accuracy(model, split, batch_size: int = 256) -> float:
    """Top-1 accuracy of a Keras model on a data.Split."""
    from edgemnist import data

    probabilities = model.predict(data.to_model_input(split.images), batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(probabilities, axis=1) == split.labels))


# --------------------------------------------------------------------------- pipeline + CLI


def optimize(model_path: str | os.PathLike, out: str | os.PathLike, config: OptimizeConfig = OptimizeConfig(),
             verbose: int = 1) -> dict:
    """Writes pruned.keras, qat.h5 and pruned_qat.h5 (as `config` asks) and optimize.json into `out`.

    Args:
        model_path: the trained float Keras model.
        out: the output folder (created).
        config: which steps run, their fine-tuning settings and the data.
        verbose: Keras progress output (0 silent, 1 progress bar, 2 one line per epoch).

    Returns:
        The report: {"source", "source_sha256", "train_examples", "test_examples", "float_accuracy",
        "float_sparsity", "models": {name: {"path", "accuracy", "sparsity"}}, "prune_config",
        "qat_config"}.

    Raises:
        FileNotFoundError: no such model or data. ValueError: a layer tfmot cannot prune or
            quantize (named).
    """
    from edgemnist import data
    from edgemnist.artifacts import atomic_write_json, sha256_file
    from edgemnist.training.model import load_keras_model

    do_prune, do_qat, prune_config, qat_config = config.prune, config.qat, config.prune_config, config.qat_config
    out = Path(out)
    model = load_keras_model(model_path)
    train_split = data.load_split("train", config.data_dir, config.limit)
    test_split = data.load_split("test", config.data_dir, config.test_limit)
    report = {
        "source": str(model_path),
        "source_sha256": sha256_file(model_path),
        "train_examples": len(train_split),
        "test_examples": len(test_split),
        "float_accuracy": accuracy(model, test_split),
        "float_sparsity": sparsity_report(model, set())["overall"],
        "prune_config": asdict(prune_config) if do_prune else None,
        "qat_config": asdict(qat_config) if do_qat else None,
        "models": {},
    }

    def record(name, trained, sparsity, suffix=".keras"):
        path = save_model(trained, out / f"{name}{suffix}")
        report["models"][name] = {"path": str(path), "accuracy": accuracy(trained, test_split), "sparsity": sparsity}

    pruned = None
    if do_prune:
        pruned, sparsity, _ = prune(model, train_split, prune_config, verbose)
        record("pruned", pruned, sparsity)
    if do_qat:
        record("qat", qat(model, train_split, qat_config, verbose=verbose), None, ".h5")
    if pruned is not None and do_qat:
        pruned_layers = {r["name"] for r in report["models"]["pruned"]["sparsity"]["layers"] if r["pruned"]}
        pqat = qat(pruned, train_split, qat_config, preserve_sparsity=True, verbose=verbose)
        record("pruned_qat", pqat, sparsity_report(pqat, pruned_layers), ".h5")
    atomic_write_json(out / "optimize.json", report)
    return report


def format_report(report: dict) -> str:
    """A human summary of `optimize`'s report."""
    lines = [f"float model {report['source']}: test accuracy {report['float_accuracy']:.2%} "
             f"on {report['test_examples']:,} test digits"]
    for name, row in report["models"].items():
        delta = (row["accuracy"] - report["float_accuracy"]) * 100
        line = f"{name:<11} {row['accuracy']:.2%} ({delta:+.2f} pp)  {row['path']}"
        if row["sparsity"]:
            line += f"  sparsity {row['sparsity']['overall']:.1%} overall, {row['sparsity']['prunable_sparsity']:.1%} pruned layers"
        lines.append(line)
    for name in ("pruned", "pruned_qat"):
        if name in report["models"]:
            lines.append(f"\n{name} sparsity per layer:\n" + format_sparsity(report["models"][name]["sparsity"]))
    return "\n".join(lines)


def add_commands(subparsers) -> None:
    """Registers `edgemnist optimize`."""
    p = subparsers.add_parser(
        "optimize",
        help="prune and/or quantization-aware train a model (tfmot)",
        description="Fine-tune a trained model with magnitude pruning (PolynomialDecay to --sparsity, then "
        "strip_pruning) and/or quantization-aware training, and pruning-preserving QAT when both are asked. "
        "Writes pruned.keras, qat.h5, pruned_qat.h5 and optimize.json (accuracy on the test split and "
        "sparsity per layer, measured on the weights).",
    )
    p.add_argument("--from", dest="model", required=True, help="the trained float model (.keras)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--prune", action="store_true", help="magnitude pruning")
    p.add_argument("--qat", action="store_true", help="quantization-aware training")
    # Pruning-only options default to None so that giving one without --prune can be refused.
    p.add_argument("--sparsity", type=float,
                   help=f"with --prune: target sparsity (default {PruneConfig.target_sparsity})")
    p.add_argument("--allocation", choices=ALLOCATIONS,
                   help="with --prune: how the sparsity is spread over the kernels: uniform (each kernel reaches "
                   "--sparsity) or erk (the same zeros in all, small kernels denser, Erdos-Renyi-Kernel; default "
                   f"{PruneConfig.allocation})")
    p.add_argument("--distill", type=float,
                   help="with --prune: weight of the dense model's probabilities in the pruning fine-tune's "
                   f"targets, 0 to 1 (default {PruneConfig.distill})")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"fine-tuning epochs of each step (default: prune {PruneConfig.epochs}, "
                   f"QAT {QATConfig.epochs})")
    p.add_argument("--batch-size", type=int, default=PruneConfig.batch_size,
                   help="fine-tuning batch size of each step (default %(default)s)")
    p.add_argument("--seed", type=int, default=PruneConfig.seed,
                   help="random seed of each step's fine-tune (default %(default)s)")
    p.add_argument("--data-dir", help="data folder (default: $EDGEMNIST_DATA or the shipped MNIST)")
    p.add_argument("--limit", type=int, help="fine-tune on the first N training examples only")
    p.add_argument("--test-limit", type=int, help="measure accuracy on the first N test examples only")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_optimize)


def _run_optimize(args):
    prune_only = {"--sparsity": ("target_sparsity", args.sparsity), "--allocation": ("allocation", args.allocation),
                  "--distill": ("distill", args.distill)}
    given = {flag: setting for flag, setting in prune_only.items() if setting[1] is not None}
    if given and not args.prune:
        raise ValueError(f"pruning options without --prune: {', '.join(given)} (add --prune, or leave them out)")
    shared = {"batch_size": args.batch_size, "seed": args.seed,
              **({"epochs": args.epochs} if args.epochs is not None else {})}
    config = OptimizeConfig(
        prune=args.prune, qat=args.qat,
        prune_config=PruneConfig(**shared, **dict(given.values())) if args.prune else PruneConfig(),
        qat_config=QATConfig(**shared) if args.qat else QATConfig(),
        data_dir=args.data_dir, limit=args.limit, test_limit=args.test_limit,
    )
    report = optimize(args.model, args.out, config, verbose=0 if args.quiet else (1 if sys.stderr.isatty() else 2))
    return Output(report, format_report(report))
