"""Shared fixtures: small real MNIST subsets and one tiny trained model per test session."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from edgemnist import data  # noqa: E402

TRAIN_SUBSET = 3000
TEST_SUBSET = 500


@pytest.fixture(scope="session")
def mnist_train():
    """The first 3,000 real MNIST training digits."""
    return data.load_split("train", limit=TRAIN_SUBSET)


@pytest.fixture(scope="session")
def mnist_test():
    """The first 500 real MNIST test digits."""
    return data.load_split("test", limit=TEST_SUBSET)


@pytest.fixture(scope="session")
def trained_model_path(tmp_path_factory):
    """The default ds_cnn trained with `edgemnist.training.train` for 2 epochs on 3,000 digits (batch 32,
    so BatchNorm statistics settle); a .keras file, float, batch dimension unknown. ~90 % accurate."""
    from edgemnist.training.train import TrainConfig, train

    out = tmp_path_factory.mktemp("trained")
    config = TrainConfig(epochs=2, warmup_epochs=0, limit=TRAIN_SUBSET, batch_size=32, augment=False)
    train(config, out, verbose=0)
    return out / "model.keras"


@pytest.fixture(scope="session")
def calibrated_model_path(trained_model_path, mnist_train, tmp_path_factory):
    """The session's trained model with BatchNorm statistics set from 2,000 training digits.

    Two short epochs leave the moving averages far from the data and the model predicts one
    class for everything; agreement between interpreters would then prove nothing.
    """
    from edgemnist._tensorflow import keras
    from edgemnist.training.model import load_keras_model

    model = load_keras_model(trained_model_path)
    norms = [layer for layer in model.layers if isinstance(layer, keras().layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0
    model(data.to_model_input(mnist_train.images[:2000]), training=True)
    for layer in norms:
        layer.momentum = 0.99
    path = tmp_path_factory.mktemp("firmware_model") / "calibrated.keras"
    model.save(path)
    return path


@pytest.fixture(scope="session")
def quick_pipeline(tmp_path_factory):
    """One `python -m edgemnist pipeline --out run --quick --json` (every quantizer) per session.

    Returns (folder it ran in, CompletedProcess). `--out` is relative, as a user types it, so a
    copy of the folder is a run folder of its own. Tests that change the run work on a copy.
    """
    base = tmp_path_factory.mktemp("quick_pipeline")
    env = {k: v for k, v in os.environ.items() if k != "EDGEMNIST_VERBOSE"}
    result = subprocess.run([sys.executable, "-m", "edgemnist", "pipeline", "--out", "run", "--quick", "--json"],
                            cwd=base, capture_output=True, text=True, timeout=1200, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return Path(base), result


@pytest.fixture(scope="session")
def tflite_variants(tmp_path_factory, trained_model_path):
    """{"float32": Path, "int8": Path}: exports of the session's trained model, manifests beside them."""
    from edgemnist.export.convert import ExportConfig, export_variant

    folder = tmp_path_factory.mktemp("tflite_variants")
    paths = {v: folder / f"model_{v}.tflite" for v in ("float32", "int8")}
    for variant, path in paths.items():
        export_variant(trained_model_path, variant, path, ExportConfig(representative_size=200))
    return paths


@pytest.fixture(scope="session")
def calibrated_int8_path(tmp_path_factory, calibrated_model_path):
    """The int8 export of the calibrated model (a real classifier), 100 calibration images.

    Its odd file name ("Digits-Net v1.tflite") exercises the C names derived from it.
    """
    from edgemnist.export.convert import ExportConfig, export_variant

    path = tmp_path_factory.mktemp("calibrated_int8") / "Digits-Net v1.tflite"
    export_variant(calibrated_model_path, "int8", path, ExportConfig(representative_size=100))
    return path
