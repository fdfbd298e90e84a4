"""Tests for edgemnist/training/finetune.py: the head phase trains only the head, real transfer to Fashion-MNIST."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgemnist.training import finetune as finetune_lib
from edgemnist.data import packaged_data_dir
from edgemnist.training.model import ModelConfig

FASHION = Path("/usr/share/datasets/fashion-mnist")
TINY = ModelConfig(stem_channels=8, block_channels=(16, 24), dilation_rates=(2, 1), pool_after=(1,))


def test_head_phase_trains_only_the_head(tmp_path):
    from edgemnist.training.model import build_model, load_keras_model

    source = tmp_path / "tiny.keras"
    build_model("ds_cnn", TINY).save(source)
    config = finetune_lib.FinetuneConfig(head_epochs=1, epochs=0, limit=300, batch_size=32)
    result = finetune_lib.finetune(source, packaged_data_dir(), tmp_path / "ft", config, verbose=0)
    assert result["train_n"] == 300 and result["test_n"] == 10000
    assert set(result) == {"model", "data_dir", "train_n", "test_n", "replay_mnist", "prepared", "no_digit", "before", "after_head",
                           "after"}
    assert result["after"] == result["after_head"]  # no second phase
    assert json.loads((tmp_path / "ft" / "finetune.json").read_text()) == result
    before, after = load_keras_model(source), load_keras_model(tmp_path / "ft" / "model.keras")
    for layer in before.layers:
        pairs = zip(layer.get_weights(), after.get_layer(layer.name).get_weights())
        changed = [not np.array_equal(a, b) for a, b in pairs]
        # frozen layers, BatchNorm statistics included, keep every weight; the head's all move
        assert all(changed) if layer.name == "classifier" else not any(changed), layer.name


@pytest.mark.parametrize("settings, message", [
    ({"head_epochs": 0, "epochs": 0}, "need at least one epoch"),
    ({"learning_rate": 2.0}, "got 2.0"),
    ({"limit": 0}, "limit must be >= 1 image, got 0"),
    ({"head_layers": ()}, "head_layers must name at least one layer"),
    ({"replay_mnist": -1}, "replay_mnist must be an integer in 0..60000, got -1"),
])
def test_config_validation_names_the_value(settings, message):
    with pytest.raises(ValueError, match=message):
        finetune_lib.FinetuneConfig(**settings)


def test_replay_mixes_mnist_training_digits_in():
    from edgemnist import data

    new = data.load_split("test", limit=30)
    mixed = finetune_lib.with_replay(new, 50, seed=0)
    assert len(mixed) == 80 and mixed.prepared == new.prepared
    np.testing.assert_array_equal(mixed.images[:30], new.images)
    train = data.load_split("train")
    # the replayed digits are MNIST training digits, a seeded sample: the same seed, the same digits
    again = finetune_lib.with_replay(new, 50, seed=0)
    np.testing.assert_array_equal(mixed.images, again.images)
    assert not np.array_equal(finetune_lib.with_replay(new, 50, seed=1).images[30:], mixed.images[30:])
    hashes = {image.tobytes() for image in train.images}
    assert all(image.tobytes() in hashes for image in mixed.images[30:])


def test_unknown_head_layer_is_named(tmp_path):
    from edgemnist.training.model import build_model

    source = tmp_path / "tiny.keras"
    build_model("ds_cnn", TINY).save(source)
    with pytest.raises(ValueError, match="no layer named 'head'"):
        finetune_lib.finetune(source, packaged_data_dir(), tmp_path / "ft",
                              finetune_lib.FinetuneConfig(head_layers=("head",)), verbose=0)


def test_finetune_help(capsys):
    from edgemnist import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["finetune", "--help"])
    help_text = capsys.readouterr().out
    assert exit_info.value.code == 0 and "--from" in help_text and "--seed" in help_text


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.is_dir(), reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_finetune_on_fashion_mnist_improves(tmp_path, trained_model_path):
    config = finetune_lib.FinetuneConfig(head_epochs=1, epochs=1, limit=3000)
    result = finetune_lib.finetune(trained_model_path, FASHION, tmp_path, config, verbose=0)
    assert result["test_n"] == 10000 and result["train_n"] == 3000
    assert result["before"] < 0.3  # a digits model on clothes: near chance
    assert result["after_head"] > result["before"] + 0.2  # a new head on frozen features learns the classes
    assert result["after"] > result["after_head"]  # unfreezing the backbone helps further
    assert json.loads((tmp_path / "finetune.json").read_text()) == result
    assert (tmp_path / "model.keras").is_file()
