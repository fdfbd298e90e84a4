"""Fine-tune a trained model on new data: the classifier head first, then every layer.

Usage: edgemnist finetune --from runs/default/model.keras --data-dir DIR --out runs/ft

The output folder holds model.keras (the fine-tuned model) and finetune.json (test accuracy
on the new data before, after the head and after every layer).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from edgemnist import data as data_lib
from edgemnist.artifacts import atomic_write_json, atomic_write_with
from edgemnist.data.augment import make_dataset
from edgemnist.data.folders import add_prepare_arguments
from edgemnist.output import Output
from edgemnist.training.train import log_progress


@dataclass(frozen=True)
class FinetuneConfig:
    """Two-phase transfer: train the head with the backbone frozen, then everything at a lower rate."""

    head_epochs: int = 3  # phase 1: only the classifier trains
    epochs: int = 3  # phase 2: all layers train
    learning_rate: float = 1e-2  # phase 1 rate (only a linear head trains: it can take a high rate)
    unfrozen_lr_factor: float = 0.1  # phase 2 rate = learning_rate * this
    batch_size: int = 128  # both phases
    augment: bool = False  # the training augmentation (edgemnist.data.augment's defaults) in both phases
    seed: int = 0  # data order, augmentation and dropout: same seed, same model (on CPU)
    limit: Optional[int] = None  # first N training images of the new data
    prepare: Optional[bool] = None  # class folders: None prepares folders of real images (not 28x28), True all, False none
    head_layers: tuple = ("classifier",)  # layers trained in phase 1
    # MNIST training digits (a seeded sample of $EDGEMNIST_DATA or the shipped MNIST) mixed into the new
    # training data: rehearsal, so that learning the new digits does not unlearn MNIST's
    replay_mnist: int = 0

    def __post_init__(self):
        if self.head_epochs < 0 or self.epochs < 0 or self.head_epochs + self.epochs == 0:
            raise ValueError(f"need at least one epoch (head_epochs={self.head_epochs}, epochs={self.epochs})")
        if not 0 < self.learning_rate < 1:
            raise ValueError(f"learning_rate must be in (0, 1), got {self.learning_rate}")
        if not 0 < self.unfrozen_lr_factor <= 1:
            raise ValueError(f"unfrozen_lr_factor must be in (0, 1], got {self.unfrozen_lr_factor}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1 image, got {self.limit}")
        if isinstance(self.replay_mnist, bool) or not isinstance(self.replay_mnist, int) \
                or not 0 <= self.replay_mnist <= 60000:
            raise ValueError(f"replay_mnist must be an integer in 0..60000, got {self.replay_mnist!r}")
        if not self.head_layers:
            raise ValueError(f"head_layers must name at least one layer, got {self.head_layers!r}")


def finetune(model_path: str | os.PathLike, data_dir: str | os.PathLike, out: str | os.PathLike,
             config: FinetuneConfig = FinetuneConfig(), verbose: int = 1) -> dict:
    """Fine-tunes a trained model on another data set's train split; reports test accuracy before and after.

    Args:
        model_path: a trained Keras model (.keras or .h5) with the layers `config.head_layers`.
        data_dir: the new data: IDX files or class folders of 28x28 images or of real photos, which are
            prepared as predict prepares them (see `edgemnist.data.load_split`).
        out: folder for model.keras and finetune.json (created).
        config: the two phases' settings.
        verbose: Keras progress output (0 silent, 1 progress bar, 2 one line per epoch).

    Returns:
        {"before": acc, "after_head": acc, "after": acc, "test_n", "train_n" (the new data's), "replay_mnist",
        "data_dir", "model", "prepared",
        "no_digit": [[file, reason], ...] (prepared images with no digit found, left out)};
        also written to `out/finetune.json`, with the model in `out/model.keras`.

    Raises:
        FileNotFoundError: no such model or data folder. ValueError: not a Keras model, or no
            layer of a head_layers name. DataError: malformed data, with the file named.
    """
    from edgemnist._tensorflow import keras
    from edgemnist.training.model import load_keras_model, recalibrate_batchnorm

    k = keras()
    k.utils.set_random_seed(config.seed)
    model = load_keras_model(model_path)
    missing = [name for name in config.head_layers if name not in {layer.name for layer in model.layers}]
    if missing:
        raise ValueError(f"{model_path}: no layer named {missing[0]!r} to use as the head")
    train_split = data_lib.load_split("train", data_dir, limit=config.limit, prepare=config.prepare)
    test_split = data_lib.load_split("test", data_dir, prepare=config.prepare)
    new_n = len(train_split)
    if config.replay_mnist:
        train_split = with_replay(train_split, config.replay_mnist, config.seed)
    train_ds = make_dataset(train_split, config.batch_size, shuffle=True, augment=config.augment,
                            seed=config.seed, one_hot=True)
    test_ds = make_dataset(test_split, 512, shuffle=False, augment=False, seed=0, one_hot=True)

    def accuracy() -> float:
        model.compile(k.optimizers.Adam(), "categorical_crossentropy", metrics=["accuracy"])
        return float(model.evaluate(test_ds, verbose=0)[1])

    result = {"model": str(model_path), "data_dir": str(data_lib.resolve_data_dir(data_dir)),
              "train_n": new_n, "replay_mnist": config.replay_mnist, "test_n": len(test_split), "prepared": train_split.prepared or test_split.prepared,
              "no_digit": [[path, reason] for path, reason in sorted(set(train_split.no_digit) | set(test_split.no_digit))], "before": accuracy()}
    for path, reason in result["no_digit"]:
        log_progress(verbose, f"left out {path}: {reason}")
    log_progress(verbose, f"test accuracy before fine-tuning: {result['before']:.4f} ({len(test_split)} images)")
    if config.head_epochs:
        for layer in model.layers:
            # A frozen BatchNormalization also runs in inference mode in Keras 2, keeping its statistics.
            layer.trainable = layer.name in config.head_layers
        model.compile(k.optimizers.Adam(config.learning_rate), "categorical_crossentropy", metrics=["accuracy"])
        log_progress(verbose, f"phase 1: head only ({', '.join(config.head_layers)}), {config.head_epochs} epochs")
        model.fit(train_ds, epochs=config.head_epochs, verbose=verbose)
        result["after_head"] = accuracy()
        log_progress(verbose, f"test accuracy after training the head: {result['after_head']:.4f}")
    if config.epochs:
        for layer in model.layers:
            layer.trainable = True
        model.compile(k.optimizers.Adam(config.learning_rate * config.unfrozen_lr_factor),
                      "categorical_crossentropy", metrics=["accuracy"])
        log_progress(verbose, f"phase 2: all layers, {config.epochs} epochs at lr "
                              f"{config.learning_rate * config.unfrozen_lr_factor:g}")
        model.fit(train_ds, epochs=config.epochs, verbose=verbose)
        recalibrate_batchnorm(model, data_lib.to_model_input(train_split.images), seed=config.seed)
    result["after"] = accuracy()
    log_progress(verbose, f"test accuracy after fine-tuning: {result['after']:.4f}")
    out = Path(out)
    atomic_write_with(out / "model.keras", lambda tmp: model.save(tmp), suffix=".keras")
    atomic_write_json(out / "finetune.json", result)
    return result


def with_replay(split: data_lib.Split, n: int, seed: int) -> data_lib.Split:
    """`split` followed by a seeded sample of `n` MNIST training digits (the training batches are shuffled)."""
    import numpy as np

    mnist = data_lib.load_split("train")
    pick = np.sort(np.random.default_rng(seed).choice(len(mnist), size=min(n, len(mnist)), replace=False))
    return data_lib.Split(np.concatenate([split.images, mnist.images[pick]]),
                          np.concatenate([split.labels, mnist.labels[pick]]),
                          f"{split.source} + {len(pick)} MNIST training digits", None, split.no_digit, split.prepared)


# --------------------------------------------------------------------------- CLI


def add_commands(subparsers) -> None:
    """Registers `edgemnist finetune`."""
    f = FinetuneConfig()
    p = subparsers.add_parser(
        "finetune",
        help="fine-tune a trained model on new data (head first, then all layers)",
        description="Load a trained model, freeze the backbone and train the classifier head, then unfreeze "
        "all layers at a lower learning rate. Prints test accuracy on the new data before and after.",
    )
    p.add_argument("--from", dest="source", required=True, help="trained model (.keras)")
    p.add_argument("--data-dir", required=True, help="the new data: IDX files or class folders 0/..9/ (optionally "
                   "under train/ and test/) of 28x28 images or of real photos, prepared as predict does")
    add_prepare_arguments(p)
    p.add_argument("--out", required=True, help="output folder for model.keras and finetune.json")
    p.add_argument("--head-epochs", type=int, default=f.head_epochs, help="head-only epochs (default %(default)s)")
    p.add_argument("--epochs", type=int, default=f.epochs, help="all-layer epochs (default %(default)s)")
    p.add_argument("--lr", type=float, default=f.learning_rate, help="head learning rate (default %(default)s)")
    p.add_argument("--augment", action="store_true",
                   help="the training augmentation (rotations, shifts, elastic distortion) while fine-tuning")
    p.add_argument("--limit", type=int, help="use only the first N training images of the new data")
    p.add_argument("--seed", type=int, default=f.seed, help="random seed (default %(default)s)")
    p.add_argument("--replay-mnist", type=int, default=f.replay_mnist, metavar="N",
                   help="mix N MNIST training digits into the new training data, so the model keeps reading "
                   "MNIST's (default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_finetune)


def _run_finetune(args):
    config = FinetuneConfig(head_epochs=args.head_epochs, epochs=args.epochs, learning_rate=args.lr,
                            augment=args.augment, limit=args.limit, seed=args.seed, prepare=args.prepare,
                            replay_mnist=args.replay_mnist)
    result = finetune(args.source, args.data_dir, args.out, config, verbose=0 if args.quiet else 2)
    return Output(result, f"test accuracy on {result['test_n']} new images: before {result['before']:.4f}, "
                          f"after {result['after']:.4f}; model: {Path(args.out) / 'model.keras'}")
