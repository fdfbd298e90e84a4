"""edgemnist gate (training/gate.py): one epoch on a small subset writes the gate and its JSON; a bad folder fails."""
from __future__ import annotations

import gzip
import hashlib
import json
import struct

import numpy as np
import pytest

from edgemnist import cli
from edgemnist.data import synthetic
from edgemnist.runtime.gate import Gate, metadata_path
from edgemnist.training.gate import DIGIT_SOURCES, OTHER_SOURCES, choose_threshold


def write_idx_images(path, images: np.ndarray) -> None:
    """uint8 (N, 28, 28) as a gzip IDX file, the format Fashion-MNIST ships in."""
    header = struct.pack(">HBB", 0, 0x08, 3) + struct.pack(">3I", *images.shape)
    path.write_bytes(gzip.compress(header + images.astype(np.uint8).tobytes()))


@pytest.fixture(scope="module")
def clothes_folder(tmp_path_factory):
    """A stand-in for Fashion-MNIST's training split: 28x28 shapes scenes, white on black, as an IDX file."""
    folder = tmp_path_factory.mktemp("fashion")
    rng = np.random.default_rng(0)
    scenes = np.stack([(synthetic.shapes_scene(rng, 28) * 255).astype(np.uint8) for _ in range(120)])
    write_idx_images(folder / "train-images-idx3-ubyte.gz", scenes)
    return folder


@pytest.mark.slow
def test_one_epoch_writes_the_gate_and_its_json(clothes_folder, tmp_path, capsys):
    out = tmp_path / "gate" / "tiny_gate.tflite"
    status = cli.main(["gate", "--out", str(out), "--negatives", str(clothes_folder), "--mnist", "300",
                       "--fashion", "100", "--synthetic", "30", "--epochs", "1", "--json"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    result = json.loads(captured.out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny_gate.json", "tiny_gate.tflite"]  # no temp files
    assert json.loads(metadata_path(out).read_text()) == result
    assert result["tflite_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert set(result["validation"]) == set(DIGIT_SOURCES + OTHER_SOURCES)
    assert result["trained_on"]["mnist"] > 200 and result["trained_on"]["fashion_mnist"] > 0
    assert "epoch 1/1" in captured.err and "fashion_mnist:" in captured.err
    gate = Gate(out, trusted=True)
    assert gate.threshold == pytest.approx(result["threshold"]) and 0.0 <= gate.threshold <= 1.0
    assert gate.runner.input.dtype == np.int8  # full-integer
    assert gate.is_digit(np.zeros((3, 28, 28), np.uint8)).shape == (3,)


def test_a_bad_negatives_folder_is_one_clear_error(tmp_path, capsys):
    status = cli.main(["gate", "--out", str(tmp_path / "g.tflite"), "--negatives", str(tmp_path / "nothing")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1
    assert "nothing: no Fashion-MNIST training images" in err[0] and "edgemnist data download fashion-mnist" in err[0]
    assert not (tmp_path / "g.tflite").exists()


def test_the_threshold_rejects_at_most_the_share_asked_of_each_digit_source():
    rng = np.random.default_rng(0)
    scores = {s: rng.uniform(0.5, 1.0, 1000) for s in DIGIT_SOURCES}
    scores["mnist"][:3] = [0.01, 0.02, 0.03]  # three bad digits among 1000
    threshold = choose_threshold(scores, 0.005)
    for source in DIGIT_SOURCES:
        assert np.mean(scores[source] < threshold) <= 0.005
    assert threshold > 0.03  # the three bad ones may fall under it (0.3 %), the rest may not
    assert choose_threshold(scores, 0.0) == pytest.approx(0.01)
