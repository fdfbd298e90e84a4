"""Shared fixtures: small real MNIST subsets and one tiny trained model per test session."""
from __future__ import annotations

import os

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
def trained_model_path(tmp_path_factory, mnist_train):
    """The default ds_cnn trained for 2 epochs on 3,000 digits, saved as .keras (float, batch dim unknown)."""
    from edgemnist._tensorflow import keras
    from edgemnist.model import build_model

    k = keras()
    k.utils.set_random_seed(0)
    model = build_model("ds_cnn")
    model.compile(k.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(data.to_model_input(mnist_train.images), mnist_train.labels, batch_size=64, epochs=2, verbose=0)
    path = tmp_path_factory.mktemp("model") / "model.keras"
    model.save(path)
    return path
