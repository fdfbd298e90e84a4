"""Tests for edgemnist/data/__init__.py: IDX and PNG reading, errors that name the file, no TensorFlow on the device side."""
from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgemnist import data

FASHION = Path("/usr/share/datasets/fashion-mnist")


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_idx_dir(folder: Path, split: data.Split, which: str = "test", gz: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    img_name, lbl_name = data.IDX_BASENAMES[which]
    for name, array in ((img_name, split.images), (lbl_name, split.labels)):
        raw = _idx_bytes(array)
        (folder / (name + ".gz" if gz else name)).write_bytes(gzip.compress(raw) if gz else raw)
    return folder


def test_shipped_mnist_loads():
    test = data.load_split("test")
    assert test.images.shape == (10000, 28, 28) and test.images.dtype == np.uint8
    assert sorted(np.unique(test.labels)) == list(range(10))
    # The canonical MNIST test set has 1,135 ones and 892 fives.
    assert int((test.labels == 1).sum()) == 1135 and int((test.labels == 5).sum()) == 892
    assert len(data.load_split("train")) == 60000


def test_model_input_convention(mnist_test):
    x = data.to_model_input(mnist_test.images[:5])
    assert x.shape == (5, 28, 28, 1) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() == 1.0


def test_raw_and_gzip_idx_agree(tmp_path, mnist_test):
    subset = mnist_test.head(50)
    raw = data.load_split("test", _write_idx_dir(tmp_path / "raw", subset, gz=False))
    gz = data.load_split("test", _write_idx_dir(tmp_path / "gz", subset, gz=True))
    np.testing.assert_array_equal(raw.images, gz.images)
    np.testing.assert_array_equal(raw.labels, subset.labels)


def test_env_var_points_at_another_folder(tmp_path, monkeypatch, mnist_test):
    folder = _write_idx_dir(tmp_path / "d", mnist_test.head(30))
    monkeypatch.setenv("EDGEMNIST_DATA", str(folder))
    assert len(data.load_split("test")) == 30


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b"\x08\x03" + b[2:], "wrong magic number"),
        (lambda b: b[:-100], "truncated"),
        (lambda b: b + b"\x00" * 7, "unexpected bytes"),
        (lambda b: b[:2] + b"\x0d" + b[3:], "not unsigned byte"),
        (lambda b: b[:1], "too short"),
    ],
)
def test_bad_idx_names_the_file(tmp_path, mnist_test, mutate, message):
    folder = _write_idx_dir(tmp_path / "bad", mnist_test.head(20), gz=False)
    target = folder / "t10k-images-idx3-ubyte"
    target.write_bytes(mutate(target.read_bytes()))
    with pytest.raises(data.DataError, match=message) as err:
        data.load_split("test", folder)
    assert str(target) in str(err.value)


def test_count_mismatch_and_wrong_size(tmp_path, mnist_test):
    folder = _write_idx_dir(tmp_path / "m", mnist_test.head(20))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(mnist_test.labels[:19])))
    with pytest.raises(data.DataError, match="has 20 images but .* has 19 labels"):
        data.load_split("test", folder)
    small = data.Split(mnist_test.images[:20, :27, :27], mnist_test.labels[:20], "x")
    folder = _write_idx_dir(tmp_path / "s", small)
    with pytest.raises(data.DataError, match="27x27; expected 28x28"):
        data.load_split("test", folder)


def test_truncated_gzip_names_the_file(tmp_path, mnist_test):
    folder = _write_idx_dir(tmp_path / "g", mnist_test.head(20))
    target = folder / "t10k-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[:-30])
    with pytest.raises(data.DataError, match="corrupt or truncated gzip") as err:
        data.load_split("test", folder)
    assert str(target) in str(err.value)


def _write_png_classes(folder: Path, split: data.Split) -> None:
    from PIL import Image

    for i, (image, label) in enumerate(zip(split.images, split.labels)):
        target = folder / str(int(label))
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(target / f"{i:04d}.png")


def test_png_folder_single_split_is_stratified(tmp_path, mnist_test):
    subset = mnist_test.head(100)
    _write_png_classes(tmp_path / "digits", subset)
    train = data.load_split("train", tmp_path / "digits")
    test = data.load_split("test", tmp_path / "digits")
    assert len(train) + len(test) == 100
    assert set(np.unique(test.labels)) == set(np.unique(subset.labels))
    # pixels survive the PNG round trip exactly
    all_images = np.concatenate([train.images, test.images])
    assert sorted(map(bytes, all_images)) == sorted(map(bytes, subset.images))


def test_png_train_test_folders(tmp_path, mnist_test):
    _write_png_classes(tmp_path / "d" / "train", mnist_test.head(40))
    _write_png_classes(tmp_path / "d" / "test", mnist_test.head(60).head(60))
    assert len(data.load_split("train", tmp_path / "d")) == 40
    assert len(data.load_split("test", tmp_path / "d")) == 60


def test_png_folder_errors_name_the_file(tmp_path, mnist_test):
    _write_png_classes(tmp_path / "a", mnist_test.head(20))
    (tmp_path / "a" / "3" / "notes.png").write_text("not an image")
    with pytest.raises(data.DataError, match=r"notes\.png: not an image Pillow can read"):
        data.load_split("test", tmp_path / "a")

    _write_png_classes(tmp_path / "b", mnist_test.head(20))
    (tmp_path / "b" / "1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    (tmp_path / "b" / "4" / "empty.jpg").write_bytes(b"")
    with pytest.raises(data.DataError, match=r"broken\.png: .*\(and 1 more bad file"):
        data.load_split("test", tmp_path / "b")

    _write_png_classes(tmp_path / "c", mnist_test.head(20))
    (tmp_path / "c" / "seven").mkdir()
    with pytest.raises(data.DataError, match="class folders must be named 0..9"):
        data.load_split("test", tmp_path / "c")


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load_split("test", tmp_path / "nope")
    with pytest.raises(data.DataError, match="no data found"):
        data.load_split("test", tmp_path)
    with pytest.raises(ValueError, match="split must be one of"):
        data.load_split("validation")


@pytest.mark.skipif(not FASHION.is_dir(), reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_fashion_mnist_reads_the_same_way():
    test = data.load_split("test", FASHION)
    assert test.images.shape == (10000, 28, 28) and sorted(np.unique(test.labels)) == list(range(10))


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_idx_parser_fuzz_only_raises_data_error(blob):
    try:
        array = data.parse_idx(blob, "fuzz")
    except data.DataError as exc:
        assert str(exc).startswith("fuzz: ")
    else:
        assert array.dtype == np.uint8


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.integers(0, 1000), st.integers(0, 255))
def test_idx_parser_fuzz_mutated_real_header(position, value):
    real = _idx_bytes(np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28) % 251)
    mutated = bytearray(real)
    mutated[position % len(real)] = value
    try:
        array = data.parse_idx(bytes(mutated), "m")
    except data.DataError:
        return
    assert array.size + 4 + 4 * array.ndim == len(mutated)  # parsed data accounts for every byte


def test_device_side_modules_load_no_training_code():
    # eval and bench run on boards with only numpy and a TFLite interpreter: reading data must not
    # pull in the augmentation, the downloads, training or TensorFlow.
    code = ("import sys; import edgemnist.data, edgemnist.measure.eval, edgemnist.measure.bench, edgemnist.runtime; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow' or m in "
            "{'edgemnist.data.augment', 'edgemnist.data.download', 'edgemnist.training.train', 'edgemnist.training.finetune', "
            "'edgemnist.training.model', 'edgemnist.training.optimize', 'edgemnist._tensorflow'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
