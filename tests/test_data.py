"""Tests for edgemnist/data.py: IDX and PNG reading, errors that name the file, verified downloads."""
from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import shutil
import threading
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


def test_shipped_mnist_loads_and_verifies():
    report = data.verify_data_dir()
    assert report == {"data_dir": str(data.packaged_data_dir()), "train": 60000, "test": 10000, "digests": "verified"}
    test = data.load_split("test")
    assert test.images.shape == (10000, 28, 28) and test.images.dtype == np.uint8
    assert sorted(np.unique(test.labels)) == list(range(10))
    # The canonical MNIST test set has 1,135 ones and 892 fives.
    assert int((test.labels == 1).sum()) == 1135 and int((test.labels == 5).sum()) == 892


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


def test_digest_mismatch_is_reported(tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(data.packaged_data_dir(), folder)
    sums = folder / "SHA256SUMS.uncompressed"
    sums.write_text(sums.read_text().replace("0fa7898d", "00000000"))
    with pytest.raises(data.DataError, match="t10k-images-idx3-ubyte.gz: sha256 of the decompressed file"):
        data.verify_data_dir(folder)


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
    from PIL import Image

    _write_png_classes(tmp_path / "a", mnist_test.head(20))
    (tmp_path / "a" / "3" / "notes.png").write_text("not an image")
    with pytest.raises(data.DataError, match=r"notes\.png: not a readable image"):
        data.load_split("test", tmp_path / "a")

    _write_png_classes(tmp_path / "b", mnist_test.head(20))
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "b" / "1" / "big.png")
    with pytest.raises(data.DataError, match=r"big\.png: image is 32x32; expected 28x28"):
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


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def local_server(tmp_path):
    """Serves tmp_path/www on 127.0.0.1 for the duration of a test."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_download_verifies_and_caches(tmp_path, local_server):
    root, url = local_server
    for path in data.packaged_data_dir().glob("*.gz"):
        shutil.copy(path, root / path.name)
    lines = []
    folder = data.download_dataset("mnist", url=url, cache_dir=tmp_path / "cache", progress=lines.append)
    assert folder == tmp_path / "cache" / "mnist" and len(lines) == 4
    assert len(data.load_split("test", folder)) == 10000
    expected = data.remote_datasets()["mnist"].sha256_uncompressed["t10k-labels-idx1-ubyte"]
    assert hashlib.sha256(gzip.decompress((folder / "t10k-labels-idx1-ubyte.gz").read_bytes())).hexdigest() == expected
    # a second call finds valid files and fetches nothing
    lines.clear()
    data.download_dataset("mnist", url=url, cache_dir=tmp_path / "cache", progress=lines.append)
    assert lines == []


def test_download_rejects_bad_digest_and_keeps_cache_clean(tmp_path, local_server):
    root, url = local_server
    for path in data.packaged_data_dir().glob("*.gz"):
        shutil.copy(path, root / path.name)
    (root / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(np.zeros(10000, np.uint8))))
    with pytest.raises(data.DataError, match="t10k-labels-idx1-ubyte.gz: sha256 of the decompressed file"):
        data.download_dataset("mnist", url=url, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache" / "mnist" / "t10k-labels-idx1-ubyte.gz").exists()
    assert not list((tmp_path / "cache" / "mnist").glob(".*"))


def test_download_failure_is_one_clear_error(tmp_path, local_server):
    _, url = local_server  # serves an empty folder: every file is a 404
    with pytest.raises(data.DataError, match="download failed"):
        data.download_dataset("mnist", url=url, cache_dir=tmp_path / "cache", timeout=5)
    with pytest.raises(ValueError, match="unknown data set"):
        data.download_dataset("cifar")


def test_augmented_pipeline_is_deterministic(mnist_test):
    subset = mnist_test.head(64)

    def first_batch():
        from edgemnist._tensorflow import keras

        keras().utils.set_random_seed(1)
        ds = data.make_dataset(subset, 32, shuffle=True, augment=True, seed=1)
        x, y = next(iter(ds))
        return x.numpy(), y.numpy()

    (x1, y1), (x2, y2) = first_batch(), first_batch()
    assert x1.shape == (32, 28, 28, 1) and 0.0 <= x1.min() and x1.max() <= 1.0
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_allclose(x1, x2)
    # augmentation really changes the pixels
    originals = data.to_model_input(subset.images)
    assert not any(np.allclose(x1[0], o) for o in originals)


def test_augmentation_settings(mnist_test):
    subset = mnist_test.head(32)
    originals = data.to_model_input(subset.images)
    # no rotation, shift or elastic distortion: the pipeline hands the images through untouched
    none = data.Augmentation(rotation=0, shift=0, elastic=0)
    x, _ = next(iter(data.make_dataset(subset, 32, shuffle=False, augment=none, seed=0)))
    np.testing.assert_array_equal(x.numpy(), originals)
    # rotation alone changes the pixels but keeps the range
    turn = data.Augmentation(rotation=20, shift=0, elastic=0)
    x, _ = next(iter(data.make_dataset(subset, 32, shuffle=False, augment=turn, seed=0)))
    x = x.numpy()
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert sum(not np.allclose(a, b, atol=1e-3) for a, b in zip(x, originals)) >= 30
    for bad in ({"rotation": -1}, {"shift": 9}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            data.Augmentation(**bad)


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


def test_bilinear_warp_samples_the_source_pixel():
    from edgemnist._tensorflow import import_tensorflow

    tf = import_tensorflow()
    rng = np.random.default_rng(0)
    images = rng.random((3, 28, 28, 1)).astype(np.float32)
    zeros = np.zeros((3, 28, 28), np.float32)
    # one pixel down: row r takes row r + 1, the last row comes from outside (0)
    out = data.bilinear_warp(tf.constant(images), zeros + 1, zeros).numpy()
    np.testing.assert_allclose(out[:, :-1], images[:, 1:], atol=1e-6)
    np.testing.assert_array_equal(out[:, -1], 0)
    # half a pixel left: the mean of a pixel and its left neighbour
    out = data.bilinear_warp(tf.constant(images), zeros, zeros - 0.5).numpy()
    np.testing.assert_allclose(out[:, :, 1:], (images[:, :, 1:] + images[:, :, :-1]) / 2, atol=1e-6)
    np.testing.assert_allclose(out[:, :, 0], images[:, :, 0] / 2, atol=1e-6)
    # far outside: all 0
    assert data.bilinear_warp(tf.constant(images), zeros + 40, zeros).numpy().max() == 0


def test_geometric_transform_rotates_and_shifts_about_the_centre():
    from edgemnist._tensorflow import import_tensorflow

    tf = import_tensorflow()
    images = np.random.default_rng(1).random((2, 28, 28, 1)).astype(np.float32)
    zero = tf.zeros(2)
    same = data.geometric_transform(tf.constant(images), zero, zero, zero).numpy()
    np.testing.assert_allclose(same, images, atol=1e-6)
    # a quarter turn is np.rot90 (either way round: the angle's range is symmetric)
    turned = data.geometric_transform(tf.constant(images), zero + np.pi / 2, zero, zero).numpy()
    assert any(np.allclose(turned, np.rot90(images, k, axes=(1, 2)), atol=1e-4) for k in (1, 3))
    # a 3-pixel shift moves the content by 3 pixels; what comes in from outside is 0
    moved = data.geometric_transform(tf.constant(images), zero, zero + 3, zero).numpy()
    np.testing.assert_allclose(moved[:, 3:], images[:, :-3], atol=1e-5)
    np.testing.assert_array_equal(moved[:, :3], 0)
    # an added displacement field is one more offset per pixel
    field = tf.ones((2, 28, 28))
    np.testing.assert_allclose(data.geometric_transform(tf.constant(images), zero, zero, zero, field, 0 * field),
                               data.bilinear_warp(tf.constant(images), field, 0 * field), atol=1e-6)


def test_smoothing_matrix_is_a_gaussian_convolution():
    m = data._smoothing_matrix(28, 4.0)
    np.testing.assert_allclose(m, m.T)
    assert m[14].sum() == pytest.approx(1.0, abs=1e-5) and m[0].sum() < 0.6  # zeros outside the image
    assert m[14, 14] > m[14, 18] > m[14, 22] > 0 and m[14, 27] == 0  # 3 sigma = 12 pixels


def test_elastic_distortion(mnist_test):
    from edgemnist._tensorflow import import_tensorflow

    tf = import_tensorflow()
    subset = mnist_test.head(64)
    originals = tf.constant(data.to_model_input(subset.images))
    seed = tf.constant([3, 4], tf.int64)
    elastic = data.augmenter(data.Augmentation(rotation=0, shift=0, elastic=34))
    np.testing.assert_array_equal(data.augmenter(data.Augmentation(rotation=0, shift=0, elastic=0))(originals, seed).numpy(),
                                  originals.numpy())
    a = elastic(originals, seed).numpy()
    np.testing.assert_array_equal(a, elastic(originals, seed).numpy())
    assert not np.allclose(a, elastic(originals, seed + 1).numpy())
    assert 0.0 <= a.min() and a.max() <= 1.0
    assert sum(not np.allclose(x, o, atol=1e-3) for x, o in zip(a, originals.numpy())) == 64
    # a smooth warp moves ink around but keeps about as much of it
    ink_ratio = a.sum(axis=(1, 2, 3)) / originals.numpy().sum(axis=(1, 2, 3))
    assert 0.4 < ink_ratio.min() and ink_ratio.max() < 2.0 and 0.9 < ink_ratio.mean() < 1.1
    # Simard et al.'s alpha 34, sigma 4: about 1.4 pixels RMS of displacement away from the border
    noise = np.random.default_rng(0).uniform(-1, 1, (200, 28, 28))
    m = data._smoothing_matrix(28, 4.0)
    rms = np.sqrt(np.mean((34 * m @ noise @ m.T)[:, 8:20, 8:20] ** 2))
    assert 1.2 < rms < 1.6, rms
    # in the pipeline: a fresh field every epoch, the same ones for the same seed
    settings = data.Augmentation(rotation=0, shift=0, elastic=34)
    ds = data.make_dataset(subset, 32, shuffle=False, augment=settings, seed=0)
    first, second = [x.numpy() for x, _ in ds], [x.numpy() for x, _ in ds]
    again = [x.numpy() for x, _ in data.make_dataset(subset, 32, shuffle=False, augment=settings, seed=0)]
    assert not np.allclose(first[0], second[0])
    np.testing.assert_array_equal(first[0], again[0])
    for bad in ({"elastic": -1}, {"elastic_sigma": 0.1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            data.Augmentation(**bad)
