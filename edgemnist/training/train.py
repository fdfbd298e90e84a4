"""Train the model from scratch, resumably, on MNIST or another 10-class 28x28 data set.

Usage: edgemnist train --out runs/default

A run folder holds:
  model.keras          the weights of the epoch with the lowest validation loss (written at the end)
  checkpoints/         epoch_NNN.keras, the full state (optimizer too) of the last completed epoch
  train_state.json     the commit point: completed epochs, best epoch, log rows, settings
  train_log.csv        one row per completed epoch
  summary.json         test accuracy, parameters, MACs, wall time (written at the end)

Every file is written atomically; train_state.json is written last each epoch, so a run
killed at any moment (even SIGKILL mid-write) resumes from its last completed epoch when
the same command is run again.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Optional

import numpy as np

from edgemnist import data as data_lib
from edgemnist.artifacts import atomic_write_json, atomic_write_text, atomic_write_with, remove_stale_temps
from edgemnist.data.augment import Augmentation, make_dataset
from edgemnist.output import Output
from edgemnist.training.model import MODELS, STEMS, ModelConfig, check_model_config

STATE_FILE = "train_state.json"
# What a run writes beside its checkpoints, each file through edgemnist.artifacts.
RUN_FILES = ("model.keras", STATE_FILE, "train_log.csv", "summary.json")
# A temporary file of a checkpoint is named ".<checkpoint name>.<writer>...".
_CHECKPOINT_TEMP = re.compile(r"\.((?:best_)?epoch_\d+\.(?:keras|weights\.npz))\.")
STRATEGIES = ("default", "mirrored", "multiworker")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run. Together they decide whether a run folder can be resumed."""

    model: str = "ds_cnn"  # a key of edgemnist.training.model.MODELS
    model_config: ModelConfig = field(default_factory=ModelConfig)  # ds_cnn shape
    epochs: int = 50  # upper bound; early stopping may end sooner
    batch_size: int = 128  # global batch size (split across replicas)
    learning_rate: float = 4e-3  # peak, reached after warm-up, then cosine decay
    warmup_epochs: int = 1  # linear warm-up from learning_rate / 10
    min_learning_rate: float = 2e-5  # floor of the cosine decay
    label_smoothing: float = 0.05  # softens targets: better calibrated, slightly more accurate
    augment: bool = True  # random rotations, shifts and elastic distortion (below)
    rotation: float = Augmentation.rotation  # degrees, either way
    shift: float = Augmentation.shift  # pixels, either way
    elastic: float = Augmentation.elastic  # elastic distortion: scale of the smoothed displacement field (0 = none)
    elastic_sigma: float = Augmentation.elastic_sigma  # elastic distortion: smoothness of the field, pixels
    val_fraction: float = 0.05  # held out from training for early stopping and model selection
    patience: int = 10  # epochs without validation improvement before stopping (counted from mid-schedule)
    seed: int = 0  # same seed, same data order and same weights (on CPU)
    limit: Optional[int] = None  # use only the first N training images (tests, smoke runs)
    strategy: str = "default"  # default | mirrored (several GPUs) | multiworker (TF_CONFIG)
    data_dir: Optional[str] = None  # None: $EDGEMNIST_DATA or the shipped MNIST

    def __post_init__(self):
        check_model_config(self.model, self.model_config)
        for name in ("epochs", "batch_size", "patience"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.learning_rate < 1:
            raise ValueError(f"learning_rate must be in (0, 1), got {self.learning_rate}")
        if not 0 <= self.min_learning_rate <= self.learning_rate:
            raise ValueError(f"min_learning_rate must be in [0, learning_rate], got {self.min_learning_rate}")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        settings, default = self.augmentation_settings(), Augmentation()  # checks their ranges
        if not self.augment and settings != default:
            # without augmentation they would be ignored without a word
            changed = [f"{f.name}={getattr(settings, f.name)}" for f in fields(Augmentation)
                       if getattr(settings, f.name) != getattr(default, f.name)]
            raise ValueError(f"augmentation is off, yet its settings {', '.join(changed)} are given")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.limit is not None and self.limit < 20:
            raise ValueError(f"limit must be >= 20 images, got {self.limit}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")

    def augmentation(self):
        """The augment.Augmentation of this run, or None without augmentation."""
        return self.augmentation_settings() if self.augment else None

    def augmentation_settings(self):
        """The augment.Augmentation these settings describe, whether or not the run augments."""
        return Augmentation(rotation=self.rotation, shift=self.shift, elastic=self.elastic,
                                    elastic_sigma=self.elastic_sigma)

    def identity(self) -> dict:
        """The settings a resumed run must share with the run it continues (epochs may grow)."""
        d = asdict(self)
        d.pop("epochs")
        d.pop("patience")
        d["model_config"] = {k: list(v) if isinstance(v, tuple) else v for k, v in d["model_config"].items()
                             if _LATER_SHAPE_SETTINGS.get(k, _NOT_SET) != v}
        return json.loads(json.dumps(d))


# ModelConfig settings added after run folders were first written, at the values that build the
# model those folders hold: left out of the identity, so such a run still resumes (and a pipeline
# still skips its finished train stage).
_NOT_SET = object()
_LATER_SHAPE_SETTINGS = {"global_pool": "mean", "classifier": "dense", "pool_before_pointwise": ()}


# Settings of retired experiments (docs/experiments.md) at the values that turned them off. Run
# folders written before their removal record them; such a run is the run these settings describe.
_RETIRED_SETTINGS = {"ema": 0.0, "weight_decay": 0.0, "zoom": 0.0, "clean_epochs": 0}


def _recorded_identity(state: dict):
    """The settings a run folder's state records, less the retired settings it had turned off."""
    recorded = state.get("config")
    if not isinstance(recorded, dict):
        return recorded
    return {key: value for key, value in recorded.items()
            if key not in _RETIRED_SETTINGS or value != _RETIRED_SETTINGS[key]}


def learning_rate_at(epoch: int, config: TrainConfig) -> float:
    """Learning rate of 0-based `epoch`: linear warm-up from peak / 10, then cosine decay to the floor."""
    peak, floor = config.learning_rate, config.min_learning_rate
    if epoch < config.warmup_epochs:
        return peak * (0.1 + 0.9 * epoch / config.warmup_epochs)
    span = max(1, config.epochs - config.warmup_epochs)
    progress = min(1.0, (epoch - config.warmup_epochs) / span)
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * progress))


# --------------------------------------------------------------------------- distribution


def make_strategy(name: str):
    """The tf.distribute strategy for `name` (see TrainConfig.strategy).

    Raises:
        ValueError: multiworker without TF_CONFIG naming a cluster.
    """
    from edgemnist._tensorflow import import_tensorflow

    if name == "multiworker":
        multiworker_cluster()
    tf = import_tensorflow()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.MultiWorkerMirroredStrategy()


def multiworker_cluster() -> dict:
    """The cluster TF_CONFIG describes, checked without TensorFlow (`train` checks it before importing
    TensorFlow, so a missing cluster is an error at once, not after seconds of imports).

    Raises:
        ValueError: TF_CONFIG missing, not JSON with a 'cluster' key, or an empty cluster.
    """
    tf_config = os.environ.get("TF_CONFIG")
    if not tf_config:
        raise ValueError("--strategy multiworker needs TF_CONFIG describing the cluster and this worker's task")
    try:
        cluster = json.loads(tf_config)["cluster"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"TF_CONFIG is not valid JSON with a 'cluster' key: {tf_config[:120]!r}") from None
    if not cluster:
        raise ValueError("TF_CONFIG names an empty cluster")
    return cluster


def _is_chief(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "cluster_spec", None) or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0
                                    and "chief" not in resolver.cluster_spec().as_dict())


# --------------------------------------------------------------------------- run folder


class RunFolder:
    """The files of one training run; only the chief writes them (other workers get a scratch copy)."""

    def __init__(self, out: Path, writable: bool = True):
        self.out = out if writable else Path(tempfile.mkdtemp(prefix="edgemnist-worker-"))
        self.ckpt_dir = self.out / "checkpoints"

    @property
    def state_path(self) -> Path:
        return self.out / STATE_FILE

    def read_state(self) -> Optional[dict]:
        if not self.state_path.is_file():
            return None
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{self.state_path}: unreadable training state ({exc}); use --restart") from None

    def write_epoch(self, model, state: dict) -> None:
        """Checkpoint, then log, then the state file that commits the epoch; then drop older checkpoints."""
        name = f"epoch_{state['epoch']:03d}.keras"
        atomic_write_with(self.ckpt_dir / name, lambda tmp: model.save(tmp), suffix=".keras")
        state["checkpoint"] = f"checkpoints/{name}"
        atomic_write_text(self.out / "train_log.csv", _log_csv(state["log"]))
        atomic_write_json(self.state_path, state)
        self.clean_orphans(state)

    def clean_orphans(self, state: Optional[dict]) -> None:
        """Removes what a killed run left beside the committed state: checkpoints of epochs it did
        not commit, and temporary files whose writer no longer runs (`remove_stale_temps` leaves
        those of a live writer alone)."""
        keep = {Path(state[key]).name for key in ("checkpoint", "best_weights") if state and state.get(key)}
        targets = {self.out / name for name in RUN_FILES}
        if self.ckpt_dir.is_dir():
            for path in self.ckpt_dir.iterdir():
                temp = _CHECKPOINT_TEMP.match(path.name)
                if temp:
                    targets.add(self.ckpt_dir / temp.group(1))
                elif path.name not in keep:
                    path.unlink(missing_ok=True)
        for target in sorted(targets):
            remove_stale_temps(target)


def _log_csv(rows: list) -> str:
    if not rows:
        return ""
    buf = io.StringIO()
    # state.json stores rows with sorted keys; the CSV leads with epoch and learning rate
    fields = ["epoch", "learning_rate"] + sorted(k for k in rows[0] if k not in ("epoch", "learning_rate"))
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


# --------------------------------------------------------------------------- training


def _compile(model, config: TrainConfig, learning_rate: float):
    from edgemnist._tensorflow import keras

    k = keras()
    loss = k.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
    model.compile(k.optimizers.Adam(learning_rate), loss, metrics=["accuracy"])


def train(config: TrainConfig, out: str | os.PathLike, restart: bool = False, verbose: int = 1) -> dict:
    """Trains (or resumes) a run in `out` and returns its summary.

    Args:
        config: the run's settings.
        out: the run folder; an existing run there with the same settings is resumed.
        restart: discard an existing run in `out` and start over.
        verbose: Keras progress output (0 silent, 1 progress bar, 2 one line per epoch).

    Returns:
        The summary dict also written to `out/summary.json`: test accuracy, params, MACs,
        epochs run, wall time, best epoch.

    Raises:
        ValueError: `out` holds a run with other settings (and restart is False).
    """
    started = time.monotonic()  # the whole call, TensorFlow's import included: what a user waits for
    if config.strategy == "multiworker":
        multiworker_cluster()
    from edgemnist._tensorflow import import_tensorflow, keras
    from edgemnist.training.model import build_model, model_summary, recalibrate_batchnorm

    tf = import_tensorflow()
    k = keras()
    out = Path(out)
    strategy = make_strategy(config.strategy)
    folder = RunFolder(out, writable=_is_chief(strategy))
    folder.out.mkdir(parents=True, exist_ok=True)

    state = None if restart else folder.read_state()
    if state is not None and _recorded_identity(state) != config.identity():
        raise ValueError(
            f"{folder.state_path}: this folder holds a run with other settings; "
            "use another --out, or --restart to discard it"
        )
    if state is not None:
        state["config"] = config.identity()  # what a resumed run records drops the retired settings
    finished = state is not None and state.get("finished") and state["epoch"] >= config.epochs
    if finished and (out / "summary.json").is_file():
        log_progress(verbose, f"{out}: already trained ({state['epoch']} epochs); nothing to do")
        return json.loads((out / "summary.json").read_text())
    folder.clean_orphans(state)
    # Training time as a user waits for it: set-up, epochs, checkpoints, the BatchNorm pass and
    # the test evaluation, summed over the runs that resumed this one.
    earlier_s = state["wall_s"] if state is not None else 0.0

    def clock() -> float:
        return earlier_s + time.monotonic() - started

    k.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    train_split = data_lib.load_split("train", config.data_dir, limit=config.limit)
    test_split = data_lib.load_split("test", config.data_dir)
    fit_split, val_split = data_lib.train_val_split(train_split, config.val_fraction, config.seed)
    train_ds = make_dataset(fit_split, config.batch_size, shuffle=True, augment=config.augmentation(),
                            seed=config.seed, one_hot=True)
    val_ds = make_dataset(val_split, 512, shuffle=False, augment=False, seed=config.seed, one_hot=True)

    with strategy.scope():
        if state is None:
            model = build_model(config.model, config.model_config)
            _compile(model, config, learning_rate_at(0, config))
            state = {"epoch": 0, "best_epoch": 0, "best_val_accuracy": -1.0, "log": [], "wall_s": 0.0,
                     "config": config.identity(), "finished": False}
        else:
            model = k.models.load_model(out / state["checkpoint"], compile=True)
            log_progress(verbose, f"{out}: resuming after epoch {state['epoch']} "
                                  f"(best epoch {state['best_epoch']}: val accuracy {state['best_val_accuracy']:.4f})")

    callback = _epoch_commit(folder, state, config, clock, batchnorm_sample(fit_split, config.seed))
    schedule = k.callbacks.LearningRateScheduler(lambda e: learning_rate_at(e, config))
    if state["epoch"] < config.epochs and not _should_stop(state, config):
        callbacks = [schedule, callback] + ([_EpochEta(state["epoch"], config.epochs)] if verbose == 2 else [])
        model.fit(train_ds, validation_data=val_ds, initial_epoch=state["epoch"], epochs=config.epochs,
                  callbacks=callbacks, verbose=verbose)
    if state.get("best_weights"):
        with np.load(folder.out / state["best_weights"], allow_pickle=False) as saved:
            model.set_weights([saved[f"w{i}"] for i in range(len(saved.files))])
    log_progress(verbose, f"recomputing BatchNorm statistics over the {len(fit_split)} training images")
    bn_images = recalibrate_batchnorm(model, data_lib.to_model_input(fit_split.images), seed=config.seed)
    test_loss, test_acc = model.evaluate(
        make_dataset(test_split, 512, shuffle=False, augment=False, seed=0, one_hot=True), verbose=0
    )
    info = model_summary(model)
    # the model is saved before the clock is read, so the time reported holds everything but the two JSON writes
    atomic_write_with(folder.out / "model.keras", lambda tmp: model.save(tmp), suffix=".keras")
    state["finished"] = True
    summary = {
        "test_accuracy": float(test_acc),
        "test_n": len(test_split),
        "params": info["params"],
        "macs": info["macs"],
        "model": config.model,
        "epochs_run": state["epoch"],
        "best_epoch": state["best_epoch"],
        "best_val_accuracy": state["best_val_accuracy"],
        "best_val_loss": state.get("best_val_loss"),
        "wall_s": round(clock(), 1),  # everything in train(), resumed runs included
        "batchnorm_images": bn_images,
        "train_images": len(fit_split),
        "strategy": config.strategy,
        "replicas": int(strategy.num_replicas_in_sync),
        "data": train_split.source,
    }
    atomic_write_json(folder.out / STATE_FILE, state)
    atomic_write_json(folder.out / "summary.json", summary)
    return summary


def _save_arrays(path: Path, arrays: list) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, **{f"w{i}": a for i, a in enumerate(arrays)})


def _should_stop(state: dict, config: TrainConfig) -> bool:
    """Early stopping: `patience` epochs have passed since the best (lowest) validation loss,
    counted from the middle of the schedule at the earliest.

    In the first half the learning rate is high and the validation loss wanders: counting
    from the start stopped the default run on that noise, well before its best epochs
    (benchmarks/README.md, Training).
    """
    start = max(state["best_epoch"], config.epochs // 2)
    return state["best_epoch"] > 0 and state["epoch"] - start >= config.patience


# Training images the BatchNorm statistics are recomputed over before each validation.
VALIDATION_BATCHNORM_IMAGES = 2000


def batchnorm_sample(fit_split, seed: int) -> np.ndarray:
    """The un-augmented training images (a seeded sample) each epoch's validation recomputes BatchNorm over."""
    pick = np.random.default_rng(seed).permutation(len(fit_split))[:VALIDATION_BATCHNORM_IMAGES]
    return data_lib.to_model_input(fit_split.images[np.sort(pick)])


def _epoch_commit(folder: RunFolder, state: dict, config: TrainConfig, clock, bn_images):
    """A Keras callback that, after each epoch, keeps the best weights, commits the epoch and early-stops.

    `clock()` gives the run's training seconds so far. Validation sees the model as the run
    would keep it: BatchNorm statistics recomputed over `bn_images` (un-augmented training
    images) first, as the final model's are over all of them.
    """
    from edgemnist._tensorflow import keras
    from edgemnist.training.model import recalibrate_batchnorm

    class EpochCommit(keras().callbacks.Callback):
        epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_test_begin(self, logs=None):
            # Keras validates with the moving statistics of the last augmented batches; those
            # misjudge a model whose augmentation moves the statistics (with elastic distortion
            # the validation loss stalled and early stopping kept an epoch worse than the last;
            # benchmarks/README.md, Training). Training reads only batch statistics, so
            # overwriting the moving ones changes nothing else.
            recalibrate_batchnorm(self.model, bn_images, seed=config.seed + self.epoch)

        def on_epoch_end(self, epoch, logs=None):
            logs = dict(logs or {})
            val_acc = float(logs.get("val_accuracy", 0.0))
            val_loss = float(logs.get("val_loss", math.inf))
            state["epoch"] = epoch + 1
            state["wall_s"] = clock()
            row = {"epoch": epoch + 1, "learning_rate": f"{learning_rate_at(epoch, config):.6g}"}
            row.update({key: f"{float(value):.6g}" for key, value in sorted(logs.items()) if key != "lr"})
            state["log"].append(row)
            # The best epoch is the one of lowest validation loss. Validation accuracy on a few
            # thousand images moves in coarse steps and jumps between epochs, so picking its
            # maximum picked a lucky mid-schedule epoch; the loss falls smoothly to the end of
            # the cosine schedule.
            best_loss = state.get("best_val_loss")
            if math.isfinite(val_loss) and (best_loss is None or val_loss < best_loss):
                state["best_val_loss"], state["best_val_accuracy"], state["best_epoch"] = val_loss, val_acc, epoch + 1
                best = f"checkpoints/best_epoch_{epoch + 1:03d}.weights.npz"
                # Plain arrays, not a Keras .h5: loading .h5 into a multi-worker model fails in TF 2.21.
                weights = self.model.get_weights()
                atomic_write_with(folder.out / best, lambda tmp: _save_arrays(tmp, weights), suffix=".npz")
                state["best_weights"] = best
            folder.write_epoch(self.model, state)
            if _should_stop(state, config):
                print(f"early stopping: validation loss not improved for {config.patience} epochs", file=sys.stderr)
                self.model.stop_training = True

    return EpochCommit()


def _EpochEta(first_epoch: int, epochs: int):
    """A Keras callback printing, after each epoch, the time left at the mean epoch time so far.

    Only with one-line-per-epoch output (verbose 2: logs, pipelines); the progress bar has its own.
    """
    from edgemnist._tensorflow import keras

    k = keras()

    class EpochEta(k.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.started = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            done = epoch + 1 - first_epoch
            per_epoch = (time.monotonic() - self.started) / done
            left = (epochs - epoch - 1) * per_epoch
            if left > 0:
                remaining = f"{left:.0f} s" if left < 120 else f"{left / 60:.0f} min"
                log_progress(2, f"epoch {epoch + 1}/{epochs} done: {per_epoch:.0f} s per epoch, at most "
                                f"{remaining} left (early stopping may end sooner)")

    return EpochEta()


def log_progress(verbose: int, message: str) -> None:
    """Prints a progress line on stderr when `verbose` (stdout carries only a command's result)."""
    if verbose:
        print(message, file=sys.stderr)


# --------------------------------------------------------------------------- CLI


def _int_tuple(text: str) -> tuple:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"expected comma-separated integers, got {text!r}") from None


def _int_text(values: tuple) -> str:
    """(1, 2, 1, 2) -> '1,2,1,2': how _int_tuple reads it."""
    return ",".join(str(v) for v in values)


def add_commands(subparsers) -> None:
    """Registers `edgemnist train`."""
    d = TrainConfig()
    p = subparsers.add_parser(
        "train",
        help="train a model from scratch; rerun the same command to resume",
        description="Train the depthwise-separable model (or the tutorial CNN) on MNIST or another "
        "10-class 28x28 data set. Checkpoints every epoch; rerunning the same command in the same "
        "--out folder resumes from the last completed epoch. Writes model.keras, train_log.csv, "
        "summary.json.",
    )
    p.add_argument("--out", required=True, help="run folder (created; resumed if it holds a run)")
    p.add_argument("--model", default=d.model, choices=list(MODELS), help="architecture (default %(default)s)")
    p.add_argument("--epochs", type=int, default=d.epochs, help="maximum epochs (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch size (default %(default)s)")
    p.add_argument("--lr", type=float, default=d.learning_rate, help="peak learning rate (default %(default)s)")
    p.add_argument("--patience", type=int, default=d.patience,
                   help="early stopping patience in epochs (default %(default)s)")
    p.add_argument("--no-augment", action="store_true",
                   help="train without random rotations/shifts/elastic distortion")
    p.add_argument("--rotation", type=float, default=d.rotation,
                   help="augmentation: random rotation, degrees either way (default %(default)s)")
    p.add_argument("--shift", type=float, default=d.shift,
                   help="augmentation: random shift, pixels either way (default %(default)s)")
    p.add_argument("--elastic", type=float, default=d.elastic,
                   help="augmentation: elastic distortion, scale of the smoothed random displacement field "
                        "(default %(default)s: about 0.8 px RMS; Simard et al. 2003 use 34; 0 = off)")
    p.add_argument("--elastic-sigma", type=float, default=d.elastic_sigma,
                   help="augmentation: smoothness of the elastic field, pixels (default %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (default %(default)s)")
    p.add_argument("--limit", type=int, help="use only the first N training images")
    p.add_argument("--data-dir", help="data folder (default: $EDGEMNIST_DATA or the shipped MNIST)")
    p.add_argument("--width", type=float, default=d.model_config.width_multiplier,
                   help="ds_cnn width multiplier (default %(default)s)")
    # Tuple defaults as text: argparse parses a text default with `type`, and --help shows it as typed.
    p.add_argument("--dilations", type=_int_tuple, default=_int_text(d.model_config.dilation_rates),
                   help="ds_cnn dilation rate per block (default %(default)s)")
    p.add_argument("--channels", type=_int_tuple, default=_int_text(d.model_config.block_channels),
                   help="ds_cnn pointwise channels per block (default %(default)s; one dilation rate each)")
    p.add_argument("--stem-channels", type=int, default=d.model_config.stem_channels,
                   help="ds_cnn stem output channels (default %(default)s)")
    p.add_argument("--stem-kernel", type=int, default=d.model_config.stem_kernel,
                   help="ds_cnn stem kernel size (default %(default)s)")
    p.add_argument("--stem", default=d.model_config.stem, choices=STEMS,
                   help="ds_cnn stem: a stride-2 convolution, or 2x2 space-to-depth then a stride-1 "
                        "convolution (faster in int8; default %(default)s)")
    p.add_argument("--target", default=None,
                   help="a named deployment target (edgemnist targets): its model preset is the shape; shape flags "
                   "given as well change the preset")
    p.add_argument("--strategy", default=d.strategy, choices=STRATEGIES,
                   help="tf.distribute strategy: mirrored for several GPUs, multiworker reads TF_CONFIG "
                        "(default %(default)s)")
    p.add_argument("--restart", action="store_true", help="discard an existing run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_train)


def target_shape(name: str) -> ModelConfig:
    """The model preset of a named target (`edgemnist targets`) as a ModelConfig.

    Raises:
        ValueError: no such target.
    """
    from edgemnist.targets import get_target

    return ModelConfig(**get_target(name).preset)


def shape_from_args(args) -> ModelConfig:
    """ds_cnn's shape from train's flags: the target's preset (or the default shape), with every shape
    flag that differs from its default on top (each one named on stderr when it changes a preset)."""
    d = ModelConfig()
    base = target_shape(args.target) if getattr(args, "target", None) else d
    given = {"width_multiplier": args.width, "dilation_rates": tuple(args.dilations),
             "block_channels": tuple(args.channels), "stem_kernel": args.stem_kernel, "stem": args.stem,
             "stem_channels": args.stem_channels}
    changed = {k: v for k, v in given.items() if v != getattr(d, k)}
    if base is not d and changed:
        print(f"target {args.target}: its preset changed by {', '.join(f'{k}={v}' for k, v in changed.items())}",
              file=sys.stderr)
    if "block_channels" in changed and "dilation_rates" not in changed and base is not d:
        changed["dilation_rates"] = (1,) * len(changed["block_channels"])  # the presets keep dilation 1
    return replace(base, **changed)


def _run_train(args):
    config = TrainConfig(
        model=args.model,
        model_config=shape_from_args(args),
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr, patience=args.patience,
        augment=not args.no_augment, rotation=args.rotation, shift=args.shift,
        elastic=args.elastic, elastic_sigma=args.elastic_sigma,
        seed=args.seed, limit=args.limit, strategy=args.strategy,
        data_dir=args.data_dir,
    )
    verbose = 0 if args.quiet else (1 if sys.stderr.isatty() else 2)
    summary = train(config, args.out, restart=args.restart, verbose=verbose)
    return Output(summary, f"test accuracy {summary['test_accuracy']:.4f} on {summary['test_n']} images; "
                  f"{summary['params']:,} parameters, {summary['macs']:,} MACs; {summary['epochs_run']} epochs "
                  f"in {summary['wall_s']:.0f} s; model: {Path(args.out) / 'model.keras'}")
