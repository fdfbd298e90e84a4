"""Load 10-class 28x28 digit data: IDX files (.gz or raw), PNG class folders, verified downloads.

Usage: edgemnist data check [--data-dir DIR]      (edgemnist data download fashion-mnist)

The module needs only numpy (PNG folders also need Pillow), so on-device `eval` can read
the shipped MNIST test set on a board without TensorFlow. The tf.data pipelines used for
training import TensorFlow lazily.

Input convention, everywhere: the model takes a 28x28x1 float32 image scaled to [0, 1]
(pixel / 255). Any further normalization lives inside the model.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

IMAGE_SIZE = 28
NUM_CLASSES = 10
SPLITS = ("train", "test")
# Basenames of the four IDX files (without .gz), the names MNIST and Fashion-MNIST use.
IDX_BASENAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_UBYTE = 0x08
_PNG_TEST_EVERY = 5  # a single PNG class folder: every 5th image (per class) is the test split


class DataError(ValueError):
    """Data that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Split:
    """One split of a data set: uint8 images (N, 28, 28) and uint8 labels (N,)."""

    images: np.ndarray
    labels: np.ndarray
    source: str  # where it came from, for reports

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def head(self, n: Optional[int]) -> "Split":
        """The first n examples (all of them when n is None)."""
        if n is None or n >= len(self):
            return self
        if n <= 0:
            raise ValueError(f"limit must be positive, got {n}")
        return Split(self.images[:n], self.labels[:n], self.source)


# --------------------------------------------------------------------------- IDX


def _read_maybe_gzip(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (EOFError, OSError, gzip.BadGzipFile) as exc:
            raise DataError(f"{path}: corrupt or truncated gzip data ({exc})") from None
    return raw


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parses IDX bytes (unsigned-byte data) into an array of their stated shape.

    Args:
        data: the decompressed IDX file.
        name: the file name used in error messages.

    Raises:
        DataError: bad magic number, unsupported type, truncated or oversized data.
    """
    if len(data) < 4:
        raise DataError(f"{name}: too short for an IDX header ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0:
        raise DataError(
            f"{name}: wrong magic number 0x{data[:4].hex()} (an IDX file starts with 0x0000, "
            "a type byte and the number of dimensions)"
        )
    if data[2] != _IDX_UBYTE:
        raise DataError(f"{name}: IDX type 0x{data[2]:02x} is not unsigned byte (0x08)")
    ndim = data[3]
    if ndim not in (1, 3):
        raise DataError(f"{name}: IDX file has {ndim} dimensions; expected 1 (labels) or 3 (images)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: truncated IDX header")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) < expected:
        raise DataError(f"{name}: truncated: header says {dims} ({expected} bytes) but file has {len(data)}")
    if len(data) > expected:
        raise DataError(f"{name}: {len(data) - expected} unexpected bytes after the {dims} data")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads an IDX file, gzip-compressed or raw (detected from its bytes, not its name)."""
    path = Path(path)
    return parse_idx(_read_maybe_gzip(path), str(path))


def _find_idx(data_dir: Path, basename: str) -> Optional[Path]:
    for candidate in (data_dir / basename, data_dir / f"{basename}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _check_pair(images: np.ndarray, labels: np.ndarray, img_path: Path, lbl_path: Path) -> None:
    if images.ndim != 3:
        raise DataError(f"{img_path}: images must have 3 dimensions, got shape {images.shape}")
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{img_path}: images are {images.shape[1]}x{images.shape[2]}; expected 28x28")
    if labels.ndim != 1:
        raise DataError(f"{lbl_path}: labels must have 1 dimension, got shape {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{img_path} has {images.shape[0]} images but {lbl_path} has {labels.shape[0]} labels"
        )
    if labels.size and int(labels.max()) >= NUM_CLASSES:
        raise DataError(f"{lbl_path}: label {int(labels.max())} is outside 0..9")


def load_idx_split(data_dir: Path, split: str) -> Split:
    """Loads one split from the IDX files in `data_dir`."""
    img_base, lbl_base = IDX_BASENAMES[split]
    img_path, lbl_path = _find_idx(data_dir, img_base), _find_idx(data_dir, lbl_base)
    if img_path is None or lbl_path is None:
        missing = img_base if img_path is None else lbl_base
        raise FileNotFoundError(f"{data_dir}: no {missing}[.gz] (needed for the {split} split)")
    images, labels = read_idx(img_path), read_idx(lbl_path)
    _check_pair(images, labels, img_path, lbl_path)
    return Split(images, labels, f"{data_dir} ({split}, IDX)")


# --------------------------------------------------------------------------- PNG folders


def _class_dirs(folder: Path) -> dict[int, Path]:
    entries = [p for p in sorted(folder.iterdir()) if not p.name.startswith(".")]
    dirs = [p for p in entries if p.is_dir()]
    bad = [p.name for p in dirs if p.name not in {str(i) for i in range(NUM_CLASSES)}]
    if bad:
        raise DataError(f"{folder}: class folders must be named 0..9, found {bad[:5]}")
    if not dirs:
        raise DataError(f"{folder}: no class folders 0/..9/ found")
    return {int(p.name): p for p in dirs}


def _load_png(path: Path) -> np.ndarray:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise DataError(f"{path}: reading PNG folders needs Pillow: pip install pillow") from None
    try:
        with Image.open(path) as img:
            img.load()
            gray = img.convert("L")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None
    if gray.size != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{path}: image is {gray.size[0]}x{gray.size[1]}; expected 28x28")
    return np.asarray(gray, dtype=np.uint8)


def load_png_folder(folder: str | os.PathLike) -> Split:
    """Loads a folder with class subfolders 0/..9/ of 28x28 images (PNG or any Pillow format).

    Digits are expected white on black, as in MNIST; files are read in sorted order.

    Raises:
        DataError: a class folder with another name, a file that is not an image, or an
            image that is not 28x28. The message names the file.
    """
    folder = Path(folder)
    images, labels = [], []
    for label, class_dir in _class_dirs(folder).items():
        for path in sorted(class_dir.iterdir()):
            if path.name.startswith(".") or not path.is_file():
                continue
            images.append(_load_png(path))
            labels.append(label)
    if not images:
        raise DataError(f"{folder}: the class folders hold no images")
    return Split(np.stack(images), np.asarray(labels, dtype=np.uint8), f"{folder} (PNG)")


def _split_png(full: Split, split: str) -> Split:
    # Deterministic stratified split: within each class, every 5th image is a test image.
    idx_test, idx_train = [], []
    for label in range(NUM_CLASSES):
        members = np.flatnonzero(full.labels == label)
        idx_test.extend(members[::_PNG_TEST_EVERY])
        idx_train.extend(np.setdiff1d(members, members[::_PNG_TEST_EVERY]))
    idx = np.sort(np.asarray(idx_test if split == "test" else idx_train, dtype=np.int64))
    return Split(full.images[idx], full.labels[idx], f"{full.source} ({split}, every 5th per class is test)")


# --------------------------------------------------------------------------- resolution


def packaged_data_dir() -> Path:
    """The MNIST copy shipped inside the package."""
    return Path(__file__).resolve().parent / "datasets" / "mnist"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """`data_dir` if given, else $EDGEMNIST_DATA, else the shipped MNIST."""
    chosen = data_dir or os.environ.get("EDGEMNIST_DATA") or packaged_data_dir()
    path = Path(chosen).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: data folder does not exist")
    if not path.is_dir():
        raise DataError(f"{path}: expected a folder of IDX files or of class folders 0/..9/")
    return path


def load_split(split: str, data_dir: str | os.PathLike | None = None, limit: Optional[int] = None) -> Split:
    """Loads the train or test split of the data set in `data_dir`.

    A data folder is one of: the four IDX files (MNIST naming, .gz or raw); `train/` and
    `test/` folders each with class folders 0/..9/; or class folders 0/..9/ directly, in
    which case every 5th image of each class is the test split.

    Args:
        split: "train" or "test".
        data_dir: the folder; None means $EDGEMNIST_DATA or the shipped MNIST.
        limit: keep only the first `limit` examples.

    Raises:
        ValueError: unknown split. FileNotFoundError: missing folder or file.
        DataError: malformed data, with the file named.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    folder = resolve_data_dir(data_dir)
    img_base, _ = IDX_BASENAMES[split]
    if _find_idx(folder, img_base) is not None or _find_idx(folder, IDX_BASENAMES["train"][0]) is not None:
        result = load_idx_split(folder, split)
    elif (folder / split).is_dir():
        result = load_png_folder(folder / split)
    elif any((folder / str(i)).is_dir() for i in range(NUM_CLASSES)):
        result = _split_png(load_png_folder(folder), split)
    else:
        raise DataError(
            f"{folder}: no data found: expected IDX files ({img_base}[.gz], ...), "
            "train/ and test/ folders, or class folders 0/..9/"
        )
    return result.head(limit)


def to_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 28, 28, 1) in [0, 1], the one input convention."""
    return (np.asarray(images, dtype=np.float32) / 255.0)[..., np.newaxis]


def train_val_split(split: Split, val_fraction: float, seed: int) -> tuple[Split, Split]:
    """Shuffles with `seed` and holds out `val_fraction` of `split` for validation."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    order = np.random.default_rng(seed).permutation(len(split))
    n_val = int(round(len(split) * val_fraction))
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    return (
        Split(split.images[train_idx], split.labels[train_idx], split.source),
        Split(split.images[val_idx], split.labels[val_idx], split.source + " (validation)"),
    )


# --------------------------------------------------------------------------- tf.data


@dataclass(frozen=True)
class Augmentation:
    """Random geometry applied to each training image: rotation, shift and elastic distortion.

    The elastic distortion is Simard et al.'s (2003): a random displacement field, uniform in
    [-1, 1] per pixel and axis, smoothed by a Gaussian of `elastic_sigma` pixels and scaled by
    `elastic` (their MNIST setting: 34 and 4, about 1.4 pixels of displacement RMS).
    """

    rotation: float = 8.0  # degrees, either way
    shift: float = 2.0  # pixels, each axis, either way
    elastic: float = 20.0  # scale alpha of the smoothed displacement field (0 = none): ~0.8 px RMS
    elastic_sigma: float = 4.0  # smoothness of that field: Gaussian standard deviation, pixels

    def __post_init__(self):
        if not 0 <= self.rotation <= 45:
            raise ValueError(f"rotation must be in [0, 45] degrees, got {self.rotation}")
        if not 0 <= self.shift <= 8:
            raise ValueError(f"shift must be in [0, 8] pixels, got {self.shift}")
        if not 0 <= self.elastic <= 100:
            raise ValueError(f"elastic must be in [0, 100], got {self.elastic}")
        if not 0.5 <= self.elastic_sigma <= 10:
            raise ValueError(f"elastic_sigma must be in [0.5, 10] pixels, got {self.elastic_sigma}")


def _smoothing_matrix(size: int, sigma: float) -> np.ndarray:
    """(size, size) matrix M: M @ v is v convolved with a normalised Gaussian, zeros outside."""
    radius = int(np.ceil(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    offsets = np.arange(size)[None, :] - np.arange(size)[:, None]
    return np.where(np.abs(offsets) <= radius, taps[np.clip(offsets + radius, 0, 2 * radius)], 0).astype(np.float32)


def bilinear_warp(images, dy, dx):
    """out[n, r, c] = images[n, r + dy[n, r, c], c + dx[n, r, c]], bilinear; pixels from outside are 0.

    `images` is (N, H, W, 1) with static H and W; `dy` and `dx` are (N, H, W) offsets in pixels.
    """
    from edgemnist._tensorflow import import_tensorflow

    return _bilinear_warp(import_tensorflow(), images, dy, dx)


def _bilinear_warp(tf, images, dy, dx):
    n, h, w = tf.shape(images)[0], images.shape[1], images.shape[2]
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    # source coordinates in the image padded by one zero pixel on each side
    y = tf.clip_by_value(rows + 1.0 + dy, 0.0, h + 1.0)
    x = tf.clip_by_value(cols + 1.0 + dx, 0.0, w + 1.0)
    y0 = tf.minimum(tf.floor(y), h)
    x0 = tf.minimum(tf.floor(x), w)
    wy, wx = (y - y0)[..., None], (x - x0)[..., None]
    y0, x0 = tf.cast(y0, tf.int32), tf.cast(x0, tf.int32)
    padded = tf.reshape(tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]]), [-1, 1])
    corner = tf.reshape(tf.range(n) * (h + 2) * (w + 2), [-1, 1, 1]) + y0 * (w + 2) + x0

    def at(offset):
        return tf.gather(padded, corner + offset)

    top = at(0) * (1 - wx) + at(1) * wx
    bottom = at(w + 2) * (1 - wx) + at(w + 3) * wx
    return top * (1 - wy) + bottom * wy


def geometric_transform(images, angle, shift_y, shift_x, field_y=None, field_x=None):
    """Rotate by `angle` (radians) and shift (pixels) each image about its centre,
    then displace each pixel by (field_y, field_x): one bilinear resampling, zeros from outside.

    The per-image parameters are (N,) tensors, the fields (N, H, W) or None.
    """
    from edgemnist._tensorflow import import_tensorflow

    return _geometric_transform(import_tensorflow(), images, angle, shift_y, shift_x, field_y, field_x)


def _geometric_transform(tf, images, angle, shift_y, shift_x, field_y=None, field_x=None):
    h, w = images.shape[1], images.shape[2]
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float32) - (h - 1) / 2,
                             np.arange(w, dtype=np.float32) - (w - 1) / 2, indexing="ij")
    # output pixel p (relative to the centre) shows the input at R(angle) p - shift
    cos, sin = (tf.reshape(f(angle), [-1, 1, 1]) for f in (tf.cos, tf.sin))
    src_y = cos * rows - sin * cols - tf.reshape(shift_y, [-1, 1, 1])
    src_x = sin * rows + cos * cols - tf.reshape(shift_x, [-1, 1, 1])
    dy, dx = src_y - rows, src_x - cols
    if field_y is not None:
        dy, dx = dy + field_y, dx + field_x
    return _bilinear_warp(tf, images, dy, dx)


def augmenter(settings: "Augmentation"):
    """A function (images, seed) -> images for tf.data: `settings`' random geometry, one warp per image.

    `seed` is a stateless-RNG seed (shape [2]): the same seed gives the same batch. The elastic
    field is uniform noise in [-1, 1] smoothed by a Gaussian (two matrix products) and scaled.
    """
    from edgemnist._tensorflow import import_tensorflow

    tf = import_tensorflow()
    rotation = float(np.deg2rad(settings.rotation))
    shift, alpha = float(settings.shift), float(settings.elastic)
    smooth = _smoothing_matrix(IMAGE_SIZE, float(settings.elastic_sigma))

    def augment(images, seed):
        n = tf.shape(images)[0]
        # Five streams, one per random quantity; stream 1 drew a zoom factor, an augmentation since
        # removed. It stays reserved so that a seed keeps giving the same rotations, shifts and fields.
        seeds = tf.random.experimental.stateless_split(seed, num=5)

        def uniform(i, shape, bound):
            return tf.random.stateless_uniform(shape, seed=seeds[i], minval=-bound, maxval=bound)

        angle = uniform(0, [n], rotation)
        shift_y, shift_x = uniform(2, [n], shift), uniform(3, [n], shift)
        field_y = field_x = None
        if alpha:
            noise = uniform(4, tf.stack([n, 2, images.shape[1], images.shape[2]]), 1.0)
            field = alpha * tf.matmul(tf.matmul(smooth, noise), smooth, transpose_b=True)
            field_y, field_x = field[:, 0], field[:, 1]
        return _geometric_transform(tf, images, angle, shift_y, shift_x, field_y, field_x)

    return augment


def make_dataset(split: Split, batch_size: int, *, shuffle: bool, augment, seed: int):
    """A tf.data pipeline of (image in [0, 1], label) batches.

    `augment` is False, True (the default `Augmentation`) or an `Augmentation`. It runs on
    whole batches, vectorised (one bilinear warp per image for all of its geometry), so it
    does not starve the model on a 2-core machine.
    """
    from edgemnist._tensorflow import import_tensorflow

    tf = import_tensorflow()
    ds = tf.data.Dataset.from_tensor_slices((to_model_input(split.images), split.labels.astype(np.int32)))
    if shuffle:
        ds = ds.shuffle(min(len(split), 60000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if augment is True:
        augment = Augmentation()
    if augment and (augment.rotation or augment.shift or augment.elastic):
        # one stateless seed per batch, drawn afresh each epoch: deterministic for a given seed
        seeds = tf.data.Dataset.random(seed=seed + 3, rerandomize_each_iteration=True).batch(2)
        warp = augmenter(augment)
        ds = tf.data.Dataset.zip((ds, seeds)).map(lambda batch, s: (warp(batch[0], s), batch[1]),
                                                  num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


# --------------------------------------------------------------------------- downloads


@dataclass(frozen=True)
class RemoteDataset:
    """A data set edgemnist can download: where from and the digests of its decompressed files."""

    name: str
    base_url: str
    sha256_uncompressed: dict  # basename -> hex digest of the decompressed IDX file


def _read_sums(path: Path) -> dict:
    sums = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, name = line.split()
            sums[name.lstrip("*")] = digest
    return sums


def remote_datasets() -> dict[str, RemoteDataset]:
    """The data sets `edgemnist data download` knows, by name."""
    return {
        "mnist": RemoteDataset(
            "mnist",
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            _read_sums(packaged_data_dir() / "SHA256SUMS.uncompressed"),
        ),
        "fashion-mnist": RemoteDataset(
            "fashion-mnist",
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            {
                "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            },
        ),
    }


def default_cache_dir() -> Path:
    """$EDGEMNIST_CACHE, else $XDG_CACHE_HOME/edgemnist, else ~/.cache/edgemnist."""
    if os.environ.get("EDGEMNIST_CACHE"):
        return Path(os.environ["EDGEMNIST_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edgemnist"


def download_dataset(
    name: str,
    url: Optional[str] = None,
    cache_dir: str | os.PathLike | None = None,
    timeout: float = 60.0,
    progress: Optional[Callable[[str], None]] = None,
) -> Path:
    """Downloads a data set's four IDX .gz files into the cache and verifies them.

    Each file is fetched to a temporary name, its decompressed sha256 is checked against the
    known digest, and only then renamed into place, so the cache never holds a bad file.
    Files already present and valid are not fetched again.

    Args:
        name: a key of `remote_datasets()`.
        url: base URL overriding the data set's default (e.g. a mirror or a local server).
        cache_dir: where data sets live; default `default_cache_dir()`.
        timeout: seconds per request.
        progress: called with one line per file.

    Returns:
        The folder holding the verified files, usable as `--data-dir`.

    Raises:
        ValueError: unknown name. DataError: a download failed or a digest did not match.
    """
    datasets = remote_datasets()
    if name not in datasets:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(sorted(datasets))}")
    spec = datasets[name]
    base = (url or spec.base_url).rstrip("/") + "/"
    dest = Path(cache_dir or default_cache_dir()) / name
    dest.mkdir(parents=True, exist_ok=True)
    for basename, digest in sorted(spec.sha256_uncompressed.items()):
        target = dest / f"{basename}.gz"
        if target.is_file() and _uncompressed_sha256(target) == digest:
            continue
        source = base + f"{basename}.gz"
        if progress:
            progress(f"downloading {source}")
        fd, tmp_name = tempfile.mkstemp(prefix=f".{basename}.", suffix=".part", dir=dest)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(source, timeout=timeout) as resp:
                shutil.copyfileobj(resp, out)
            got = _uncompressed_sha256(tmp, shown_as=source)
            if got != digest:
                raise DataError(f"{source}: sha256 of the decompressed file is {got}, expected {digest}")
            os.replace(tmp, target)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise DataError(f"{source}: download failed ({reason})") from None
        finally:
            tmp.unlink(missing_ok=True)
    return dest


def _uncompressed_sha256(path: Path, shown_as: Optional[str] = None) -> str:
    data = _read_maybe_gzip(path) if shown_as is None else _decompress_named(path, shown_as)
    return hashlib.sha256(data).hexdigest()


def _decompress_named(path: Path, shown_as: str) -> bytes:
    try:
        return _read_maybe_gzip(path)
    except DataError as exc:
        raise DataError(str(exc).replace(str(path), shown_as)) from None


def verify_data_dir(data_dir: str | os.PathLike | None = None) -> dict:
    """Loads both splits and checks IDX files against a SHA256SUMS.uncompressed beside them.

    Returns:
        {"data_dir", "train", "test", "digests": "verified"|"no SHA256SUMS.uncompressed"}.
    """
    folder = resolve_data_dir(data_dir)
    report = {"data_dir": str(folder)}
    for split in SPLITS:
        report[split] = len(load_split(split, folder))
    sums_file = folder / "SHA256SUMS.uncompressed"
    if sums_file.is_file():
        for basename, digest in _read_sums(sums_file).items():
            found = _find_idx(folder, basename)
            if found is None:
                raise FileNotFoundError(f"{folder}: {basename} is listed in {sums_file.name} but missing")
            got = _uncompressed_sha256(found)
            if got != digest:
                raise DataError(f"{found}: sha256 of the decompressed file is {got}, expected {digest}")
        report["digests"] = "verified"
    else:
        report["digests"] = "no SHA256SUMS.uncompressed"
    return report


# --------------------------------------------------------------------------- CLI


def add_commands(subparsers) -> None:
    """Registers `edgemnist data check` and `edgemnist data download`."""
    p = subparsers.add_parser("data", help="check a data folder or download a data set into the cache")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    check = sub.add_parser(
        "check",
        help="load both splits and verify digests",
        description="Load the train and test splits of a data folder (IDX files or PNG class folders) and "
        "check IDX files against a SHA256SUMS.uncompressed beside them.",
    )
    check.add_argument("--data-dir", help="data folder (default: $EDGEMNIST_DATA or the shipped MNIST)")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.set_defaults(func=_run_check)
    dl = sub.add_parser(
        "download",
        help="download a data set into the cache, verifying digests",
        description="Download a data set's IDX files into the cache ($EDGEMNIST_CACHE, else "
        "~/.cache/edgemnist) and verify the sha256 of each decompressed file. Prints the folder "
        "to pass as --data-dir.",
    )
    dl.add_argument("name", choices=sorted(remote_datasets()), help="which data set")
    dl.add_argument("--url", help="base URL to fetch the .gz files from (a mirror or a local server)")
    dl.add_argument("--cache-dir", help="cache folder (default: $EDGEMNIST_CACHE or ~/.cache/edgemnist)")
    dl.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")
    dl.add_argument("--json", action="store_true", help="print one JSON object")
    dl.set_defaults(func=_run_download)


def _run_check(args) -> int:
    from edgemnist.cli import print_json

    report = verify_data_dir(args.data_dir)
    if args.json:
        print_json(report)
    else:
        print(f"{report['data_dir']}: {report['train']} train, {report['test']} test images; "
              f"digests: {report['digests']}")
    return 0


def _run_download(args) -> int:
    import sys

    from edgemnist.cli import print_json

    folder = download_dataset(args.name, args.url, args.cache_dir, args.timeout,
                              progress=lambda line: print(line, file=sys.stderr))
    if args.json:
        print_json({"name": args.name, "data_dir": str(folder)})
    else:
        print(folder)
    return 0
