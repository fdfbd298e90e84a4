"""The shipped digit-or-not gate (edgemnist/runtime/gate/): takes digits, refuses clothes and letters; its JSON."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgemnist import data
from edgemnist.artifacts import cache_dir, sha256_file
from edgemnist.data import synthetic
from edgemnist.runtime.gate import DEFAULT_GATE, Gate, metadata_path
from edgemnist.runtime.prepare import prepare

FASHION_FOLDERS = (Path("/usr/share/datasets/fashion-mnist"), cache_dir() / "fashion-mnist")


def _prepared(sources) -> np.ndarray:
    ready = [prepare(s) for s in sources]
    return np.stack([r.image for r in ready if r.image is not None and r.reason is None])


@pytest.fixture(scope="module")
def gate():
    return Gate()


def test_the_shipped_gate_is_the_file_its_json_describes(gate):
    meta = json.loads(metadata_path(DEFAULT_GATE).read_text())
    assert sha256_file(DEFAULT_GATE) == meta["tflite_sha256"]
    assert DEFAULT_GATE.stat().st_size == meta["tflite_bytes"] and DEFAULT_GATE.name == meta["tflite"]
    assert gate.threshold == meta["threshold"] and gate.runner.input.dtype == np.int8


def test_the_gate_takes_mnist_test_digits(gate):
    # measured here, on digits the gate never trained on (it trains on MNIST's training split only): the
    # threshold was chosen on its validation split, so this is the rate a user's MNIST-like digits see
    test = data.load_split("test", limit=2000)
    images = _prepared(test.images)
    assert len(images) >= 1990
    assert (~gate.is_digit(images)).mean() <= 0.01


def test_the_gate_refuses_fashion_mnist_test_images(gate):
    folder = next((f for f in FASHION_FOLDERS if data.find_idx(f, "t10k-images-idx3-ubyte")), None)
    if folder is None:
        pytest.skip("Fashion-MNIST is not installed (edgemnist data download fashion-mnist)")
    clothes = data.read_idx(data.find_idx(folder, "t10k-images-idx3-ubyte"))[:300]
    images = _prepared(clothes)  # those prepare lets through: the ones the gate must judge
    assert len(images) >= 50
    assert (~gate.is_digit(images)).mean() >= 0.8


@pytest.mark.parametrize("part", ["trained_on", "held_out"])
def test_the_gate_refuses_letters_and_takes_font_digits(gate, part):
    # the fonts the gate trained on, and those held out of its training (synthetic.font_split): it must
    # generalize to fonts it never saw
    trained_on, held_out = synthetic.font_split(synthetic.system_fonts())
    fonts = trained_on if part == "trained_on" else held_out
    if not fonts:
        pytest.skip(f"no font of this machine falls in {part}")
    rng = np.random.default_rng(4242)  # neither the benchmark's seeds nor the gate's training seed
    letters = _prepared(synthetic.character_photo(synthetic.random_letter(rng), fonts[i % len(fonts)], 200, rng)
                        for i in range(200))
    digits = _prepared(synthetic.character_photo(str(i % 10), fonts[i % len(fonts)], 200, rng) for i in range(200))
    assert (~gate.is_digit(letters)).mean() >= 0.8
    assert gate.is_digit(digits).mean() >= 0.97


def test_the_gates_json_records_the_font_split_and_no_held_out_font_was_trained_on():
    meta = json.loads(metadata_path(DEFAULT_GATE).read_text())
    fonts = meta["fonts"]
    assert fonts["trained_on"] and fonts["held_out"] and not set(fonts["trained_on"]) & set(fonts["held_out"])
    # the rule, applied to the names the JSON lists, puts each on the side it was recorded on
    recorded = [Path(name) for name in fonts["trained_on"] + fonts["held_out"]]
    trained_on, held_out = synthetic.font_split(recorded)
    assert [p.name for p in trained_on] == fonts["trained_on"] and [p.name for p in held_out] == fonts["held_out"]


def test_a_gate_without_its_json_is_refused(tmp_path):
    lone = tmp_path / "lone.tflite"
    shutil.copy(DEFAULT_GATE, lone)
    with pytest.raises(FileNotFoundError, match="lone.json"):
        Gate(lone, trusted=True)
    metadata_path(lone).write_text(json.dumps({"threshold": 3}))
    with pytest.raises(ValueError, match="threshold"):
        Gate(lone, trusted=True)
    with pytest.raises(FileNotFoundError):
        Gate(tmp_path / "missing.tflite")
