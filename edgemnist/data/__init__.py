"""Read 10-class 28x28 digit data: IDX files (.gz or raw) and class folders of images (28x28 or real photos).

Usage: from edgemnist import data; test = data.load_split("test", data_dir=None, limit=500)

The module needs only numpy (image folders also need Pillow), so on-device `eval` and `bench`
read the shipped MNIST test set on a board without TensorFlow. Class folders of real images
(photos, scans, any size) are put into MNIST's form by predict's own preparation, cached per
file: `edgemnist.data.folders` (which also says when a folder is read as it is). Training's side of the data
lives elsewhere: augmentation and the tf.data pipeline in `edgemnist.data.augment`, verified
downloads and digest checks in `edgemnist.data.download`.

Input convention, everywhere: the model takes a 28x28x1 float32 image scaled to [0, 1]
(pixel / 255). Any further normalization lives inside the model.
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

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
    files: Optional[tuple] = None  # the image file of each example (class folders); None for IDX files
    no_digit: tuple = ()  # (file, reason) of the prepared images with no digit found: left out, listed
    prepared: bool = False  # the images went through predict's preparation (edgemnist.data.folders)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def head(self, n: Optional[int]) -> "Split":
        """The first n examples (all of them when n is None)."""
        if n is None or n >= len(self):
            return self
        if n <= 0:
            raise ValueError(f"limit must be positive, got {n}")
        return self.take(np.arange(n))

    def take(self, index: np.ndarray, source: Optional[str] = None) -> "Split":
        """The examples at `index` (their files with them), under `source` (default: this split's)."""
        files = None if self.files is None else tuple(self.files[int(i)] for i in index)
        return Split(self.images[index], self.labels[index], self.source if source is None else source, files,
                     self.no_digit, self.prepared)


# --------------------------------------------------------------------------- IDX


def read_decompressed(path: Path) -> bytes:
    """A file's bytes, gunzipped when they are gzip data (told by their first bytes, not the name).

    Raises:
        FileNotFoundError: no such file. DataError: unreadable, or corrupt gzip data.
    """
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
    """Reads an IDX file, gzip-compressed or raw (detected from its bytes, not its name).

    Raises:
        FileNotFoundError: no such file. DataError: unreadable or malformed, with the file named.
    """
    path = Path(path)
    return parse_idx(read_decompressed(path), str(path))


def find_idx(data_dir: Path, basename: str) -> Optional[Path]:
    """The IDX file `basename` in `data_dir`, raw or as `basename.gz`; None if neither exists."""
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
    """Loads one split ("train" or "test") from the IDX files in `data_dir`.

    Raises:
        FileNotFoundError: an IDX file of the split is missing. DataError: malformed files, or
            images and labels that do not pair up, with the file named.
    """
    img_base, lbl_base = IDX_BASENAMES[split]
    img_path, lbl_path = find_idx(data_dir, img_base), find_idx(data_dir, lbl_base)
    if img_path is None or lbl_path is None:
        missing = img_base if img_path is None else lbl_base
        raise FileNotFoundError(f"{data_dir}: no {missing}[.gz] (needed for the {split} split)")
    images, labels = read_idx(img_path), read_idx(lbl_path)
    _check_pair(images, labels, img_path, lbl_path)
    return Split(images, labels, f"{data_dir} ({split}, IDX)")


# --------------------------------------------------------------------------- PNG folders


def load_png_folder(folder: str | os.PathLike, prepare: Optional[bool] = None) -> Split:
    """Loads a folder with class subfolders 0/..9/ of images (PNG, JPEG or any format predict reads).

    A folder of 28x28 images (white digit on black, as MNIST) is read as it is; a folder of
    real images (any size, dark ink on paper or not) goes through predict's preparation,
    cached per file; `prepare` forces one way (the rule: `edgemnist.data.folders`). Images
    in which preparation finds no digit are left out and listed in `Split.no_digit`. Files
    are read in sorted order.

    Args:
        folder: the folder holding 0/..9/.
        prepare: None (auto), True (prepare every image) or False (read them as they are).

    Raises:
        DataError: a class folder with another name, no images, or a file that is not a
            readable image; the message names the (first) file. Learning from less than the
            folder holds is refused: `edgemnist data check` lists every bad file.
    """
    from edgemnist.data.folders import read_class_folder

    folder = Path(folder)
    try:
        found = read_class_folder(folder, prepare)
    except ImportError as exc:
        raise DataError(f"{folder}: reading image folders needs Pillow: pip install pillow ({exc})") from None
    except ValueError as exc:
        raise DataError(str(exc)) from None
    if found.errors:
        more = len(found.errors) - 1
        raise DataError(found.errors[0][1] + (f" (and {more} more bad file(s): `edgemnist data check` lists them)"
                                              if more else ""))
    if not len(found.labels):
        raise DataError(f"{folder}: the class folders hold no images" +
                        (f" with a digit found in them ({len(found.no_digit)} without)" if found.no_digit else ""))
    kind = "images prepared as predict does" if found.prepared else "PNG"
    return Split(found.images, found.labels, f"{folder} ({kind})", found.files, found.no_digit, found.prepared)


def split_class_folder(full: Split, split: str) -> Split:
    """One split of a single class folder: within each class, every 5th image is a test image (deterministic)."""
    idx_test, idx_train = [], []
    for label in range(NUM_CLASSES):
        members = np.flatnonzero(full.labels == label)
        idx_test.extend(members[::_PNG_TEST_EVERY])
        idx_train.extend(np.setdiff1d(members, members[::_PNG_TEST_EVERY]))
    idx = np.sort(np.asarray(idx_test if split == "test" else idx_train, dtype=np.int64))
    # the images with no digit found are the folder's, listed with both splits (no position to split them by)
    return full.take(idx, f"{full.source} ({split}, every 5th per class is test)")


# --------------------------------------------------------------------------- resolution


def packaged_data_dir() -> Path:
    """The MNIST copy shipped inside the package."""
    return Path(__file__).resolve().parent / "mnist"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data folder to read: `data_dir` if given, else $EDGEMNIST_DATA, else the shipped MNIST.

    Raises:
        FileNotFoundError: the folder does not exist. DataError: it is not a folder.
    """
    chosen = data_dir or os.environ.get("EDGEMNIST_DATA") or packaged_data_dir()
    path = Path(chosen).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: data folder does not exist")
    if not path.is_dir():
        raise DataError(f"{path}: expected a folder of IDX files or of class folders 0/..9/")
    return path


def load_split(split: str, data_dir: str | os.PathLike | None = None, limit: Optional[int] = None,
               prepare: Optional[bool] = None) -> Split:
    """Loads the train or test split of the data set in `data_dir`.

    A data folder is one of: the four IDX files (MNIST naming, .gz or raw); `train/` and
    `test/` folders each with class folders 0/..9/; or class folders 0/..9/ directly, in
    which case every 5th image of each class is the test split. Class folders may hold
    28x28 images or real ones of any size (prepared as predict does: `load_png_folder`).

    Args:
        split: "train" or "test".
        data_dir: the folder; None means $EDGEMNIST_DATA or the shipped MNIST.
        limit: keep only the first `limit` examples.
        prepare: for class folders: None (auto: prepare unless every image is 28x28), True
            (prepare every image) or False (read them as they are). IDX files are MNIST-shaped
            by their format and always read as they are.

    Raises:
        ValueError: unknown split. FileNotFoundError: missing folder or file.
        DataError: malformed data, with the file named.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    folder = resolve_data_dir(data_dir)
    kind = layout(folder, split)
    if kind == IDX_FILES:
        result = load_idx_split(folder, split)
    elif kind == SPLIT_FOLDERS:
        result = load_png_folder(folder / split, prepare)
    else:
        result = split_class_folder(load_png_folder(folder, prepare), split)
    return result.head(limit)


IDX_FILES, SPLIT_FOLDERS, CLASS_FOLDERS = "IDX files", "train/ and test/ class folders", "class folders"


def layout(folder: Path, split: str = "test") -> str:
    """Which kind of data folder `folder` is (for `split`): IDX_FILES, SPLIT_FOLDERS or CLASS_FOLDERS.

    Raises:
        DataError: none of them.
    """
    img_base, _ = IDX_BASENAMES[split]
    if find_idx(folder, img_base) is not None or find_idx(folder, IDX_BASENAMES["train"][0]) is not None:
        return IDX_FILES
    if (folder / split).is_dir():
        return SPLIT_FOLDERS
    if any((folder / str(i)).is_dir() for i in range(NUM_CLASSES)):
        return CLASS_FOLDERS
    raise DataError(
        f"{folder}: no data found: expected IDX files ({img_base}[.gz], ...), "
        "train/ and test/ folders, or class folders 0/..9/"
    )


def to_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 28, 28, 1) in [0, 1], the one input convention."""
    return (np.asarray(images, dtype=np.float32) / 255.0)[..., np.newaxis]


def train_val_split(split: Split, val_fraction: float, seed: int) -> tuple[Split, Split]:
    """Shuffles with `seed` and holds out `val_fraction` of `split` for validation.

    Returns:
        (training part, validation part), each in the original order of `split`.

    Raises:
        ValueError: val_fraction outside [0, 1).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    order = np.random.default_rng(seed).permutation(len(split))
    n_val = int(round(len(split) * val_fraction))
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    return split.take(train_idx), split.take(val_idx, split.source + " (validation)")
