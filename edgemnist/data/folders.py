"""Read class folders 0/..9/ of digit images: as they are (MNIST-shaped) or through predict's preparation.

Usage: from edgemnist.data.folders import read_class_folder; found = read_class_folder("photos/train")

A class folder may hold MNIST-shaped images (28x28, white digit on black) or real images of
any size and format `edgemnist predict` reads (phone photos, scans). Which way a folder is
read (`prepare`):

- None (auto, the default): a folder whose every image is 28x28 is read as it is, as before
  (no preparation, no cache: MNIST-shaped folders keep their behaviour and speed); a folder
  holding any image of another size is prepared, every image of it, so that one folder
  never mixes the two ways;
- True (`--prepare`): every image is prepared, 28x28 ones too;
- False (`--no-prepare`): every image is read as it is, greyscale and resized to 28x28 when
  it is not (`edgemnist.runtime.prepare.plain`, predict's `--no-prepare`).

Preparation is `edgemnist.runtime.prepare.prepare`, the code predict runs, so a model learns
from and is measured on what predict will show it. Its result is cached per file under
`<cache>/prepared/` (the cache rule: `edgemnist.artifacts.cache_dir`), keyed by the sha256
of the file's bytes, the PrepareConfig and the preparation code itself, so a second epoch,
a second command or a renamed copy does not prepare again, and a change of either
settings or code never reads a stale entry. An image in which preparation finds no digit
is dropped and listed (not an error); an image that cannot be read is an error naming it.

Needs numpy and Pillow; no TensorFlow (eval reads these folders on a board).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from edgemnist.runtime import prepare as prepare_module
from edgemnist.data import NUM_CLASSES
from edgemnist.runtime.prepare import CLUTTER, FIELD, NO_DIGIT, TOO_MUCH_INK, Prepared, PrepareConfig

# One byte per cached Prepared.reason; appending keeps old entries' codes valid.
_REASONS = (None, NO_DIGIT, CLUTTER, TOO_MUCH_INK)
_MAGIC = b"EMP1"  # a cache entry: magic, reason code, inverted flag, then 28x28 uint8 (zeros without a digit)
_ENTRY_BYTES = len(_MAGIC) + 2 + FIELD * FIELD
PROGRESS_AFTER_S = 2.0  # a folder that prepares longer than this reports progress (and an ETA) on stderr
PROGRESS_EVERY_S = 2.0  # ... one line this often


@dataclass(frozen=True)
class FolderRead:
    """What reading one class folder gave.

    Attributes:
        images: uint8 (N, 28, 28), the images kept (a digit found, or read as they are).
        labels: uint8 (N,).
        files: the N files, in the order of `images`.
        prepared: whether the folder went through the preparation.
        no_digit: (file, reason) of each image in which preparation found no digit (dropped).
        errors: (file, message) of each file that could not be read (dropped; callers that
            learn from the folder refuse it, `data check` lists them).
        cache_hits: prepared images taken from the cache; cache_misses: prepared now.
    """

    images: np.ndarray
    labels: np.ndarray
    files: tuple
    prepared: bool
    no_digit: tuple = ()
    errors: tuple = ()
    cache_hits: int = 0
    cache_misses: int = 0


def class_dirs(folder: Path) -> dict:
    """{label: folder} of the class folders 0/..9/ in `folder`.

    Raises:
        ValueError: a subfolder with another name, or none at all (the message names `folder`).
    """
    entries = [p for p in sorted(folder.iterdir()) if not p.name.startswith(".")]
    dirs = [p for p in entries if p.is_dir()]
    bad = [p.name for p in dirs if p.name not in {str(i) for i in range(NUM_CLASSES)}]
    if bad:
        raise ValueError(f"{folder}: class folders must be named 0..9, found {bad[:5]}")
    if not dirs:
        raise ValueError(f"{folder}: no class folders 0/..9/ found")
    return {int(p.name): p for p in dirs}


def list_images(folder: Path) -> list:
    """[(file, label)] of the class folders' files, sorted by label then name; hidden files are left out.

    Every visible file counts (not only image suffixes): a stray file in a class folder is
    reported as unreadable rather than silently ignored.
    """
    found = []
    for label, class_dir in class_dirs(folder).items():
        for path in sorted(class_dir.iterdir()):
            if path.name.startswith(".") or not path.is_file():
                continue
            found.append((path, label))
    return found


# --------------------------------------------------------------------------- the cache


def _config_key(config: PrepareConfig) -> str:
    """Digest of the settings and of the preparation code, so that neither can change under a cached entry."""
    code = Path(prepare_module.__file__).read_bytes()
    settings = json.dumps(dataclasses.asdict(config), sort_keys=True, default=str).encode()
    return hashlib.sha256(hashlib.sha256(code).digest() + settings).hexdigest()[:16]


def cache_folder(config: PrepareConfig = PrepareConfig()) -> Path:
    """Where prepared images of `config` (and of this version of the preparation code) are cached."""
    from edgemnist.artifacts import cache_dir

    return cache_dir() / "prepared" / _config_key(config)


def _encode(ready: Prepared) -> bytes:
    image = np.zeros((FIELD, FIELD), np.uint8) if ready.image is None else np.asarray(ready.image, np.uint8)
    return _MAGIC + bytes([_REASONS.index(ready.reason), int(ready.inverted)]) + image.tobytes()


def _decode(blob: bytes) -> Optional[Prepared]:
    """A cached entry, or None when it is not one (torn or foreign: prepared again)."""
    if len(blob) != _ENTRY_BYTES or not blob.startswith(_MAGIC) or blob[4] >= len(_REASONS):
        return None
    reason = _REASONS[blob[4]]
    image = None if reason == NO_DIGIT else np.frombuffer(blob, np.uint8, offset=6).reshape(FIELD, FIELD).copy()
    return Prepared(image, reason, bool(blob[5]))


class PreparedCache:
    """Prepared images on disk, one small file per source file's sha256."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.writable = True

    def _path(self, digest: str) -> Path:
        return self.folder / digest[:2] / f"{digest}.bin"

    def get(self, digest: str) -> Optional[Prepared]:
        try:
            return _decode(self._path(digest).read_bytes())
        except OSError:
            return None

    def put(self, digest: str, ready: Prepared) -> None:
        """Stores an entry: written beside and renamed into place (a reader sees all of it or none).

        Not fsynced, unlike the artifacts: an entry torn by a crash fails its length check and
        is prepared again, and syncing each of 10,000 small files would cost more than preparing.
        A cache that cannot be written is said once and then skipped: preparing still works.
        """
        if not self.writable:
            return
        path = self._path(digest)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{digest[:16]}.", suffix=".tmp", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(_encode(ready))
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        except OSError as exc:
            self.writable = False
            print(f"edgemnist: note: cannot write the preparation cache {self.folder} ({exc.strerror or exc}); "
                  "images will be prepared again next time", file=sys.stderr)


# --------------------------------------------------------------------------- progress


class Progress:
    """One stderr line every few seconds, with an ETA, once preparing a folder takes longer than a moment."""

    def __init__(self, name: str, total: int, stream=None, after_s: float = PROGRESS_AFTER_S,
                 every_s: float = PROGRESS_EVERY_S, clock: Callable[[], float] = time.monotonic):
        self.name, self.total, self.stream = name, total, stream
        self.after_s, self.every_s, self.clock = after_s, every_s, clock
        self.start = clock()
        self.last: Optional[float] = None

    def update(self, done: int, cached: int) -> None:
        now = self.clock()
        elapsed = now - self.start
        if elapsed < self.after_s or (self.last is not None and now - self.last < self.every_s):
            return
        self.last = now
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        print(f"preparing {self.name}: {done}/{self.total} images ({cached} from the cache), "
              f"{rate:.0f} images/s, about {eta:.0f} s left", file=self.stream or sys.stderr, flush=True)

    def finish(self, done: int) -> None:
        if self.last is not None:
            print(f"preparing {self.name}: {done} images in {self.clock() - self.start:.0f} s",
                  file=self.stream or sys.stderr, flush=True)


# --------------------------------------------------------------------------- reading


def _error_message(path: Path, exc: BaseException) -> str:
    from edgemnist.console import first_line

    message = first_line(exc).replace("<image bytes>", str(path))  # prepared from the bytes read for the digest
    return message if str(path) in message else f"{path}: {message}"


def read_class_folder(folder: str | os.PathLike, prepare: Optional[bool] = None,
                      config: PrepareConfig = PrepareConfig(), use_cache: bool = True,
                      progress_stream=None) -> FolderRead:
    """Reads class folders 0/..9/ of images, prepared or as they are (the rule: the module docstring).

    Unreadable files do not stop the reading: each is recorded in `errors` (callers decide:
    `edgemnist.data.load_png_folder` refuses the folder, `data check` lists them all).

    Args:
        folder: the folder holding 0/..9/.
        prepare: None (auto), True (prepare every image) or False (read them as they are).
        config: the preparation settings (predict's default).
        use_cache: read and write the per-file cache of prepared images.
        progress_stream: where progress lines go (default stderr).

    Returns:
        FolderRead.

    Raises:
        ValueError: a class folder with another name, or none.
    """
    folder = Path(folder)
    files = list_images(folder)
    if prepare is not True:
        as_is = _read_as_they_are(files, stop_at_other_size=prepare is None)
        if as_is is not None:
            return as_is
    return _read_prepared(folder, files, config, use_cache, progress_stream)


def _read_as_they_are(files: list, stop_at_other_size: bool) -> Optional[FolderRead]:
    """The images as they are, resized to 28x28 when they are not; None at the first one that is not 28x28
    when `stop_at_other_size` (the auto rule: that folder is prepared instead). One decode per file."""
    from edgemnist.runtime.prepare import plain, read_grey

    images, labels, kept, errors = [], [], [], []
    for path, label in files:
        try:
            image, _ = read_grey(path)
            if image.shape != (FIELD, FIELD):
                if stop_at_other_size:
                    return None
                image = plain(image)  # resized from the pixels already decoded
        except (ValueError, OSError) as exc:
            errors.append((str(path), _error_message(path, exc)))
            continue
        images.append(image)
        labels.append(label)
        kept.append(str(path))
    stacked = np.stack(images) if images else np.zeros((0, FIELD, FIELD), np.uint8)
    return FolderRead(stacked, np.asarray(labels, np.uint8), tuple(kept), False, (), tuple(errors))


def _read_prepared(folder: Path, files: list, config: PrepareConfig, use_cache: bool,
                   progress_stream) -> FolderRead:
    """Every image through `prepare`, from the cache when it holds the file's bytes' entry."""
    from edgemnist.runtime.prepare import prepare as prepare_image

    cache = PreparedCache(cache_folder(config)) if use_cache else None
    progress = Progress(str(folder), len(files), progress_stream)
    images, labels, kept, no_digit, errors = [], [], [], [], []
    hits = misses = 0
    for done, (path, label) in enumerate(files, 1):
        try:
            blob = path.read_bytes()
            digest = hashlib.sha256(blob).hexdigest()
            ready = cache.get(digest) if cache else None
            if ready is None:
                ready = prepare_image(blob, config)
                misses += 1
                if cache:
                    cache.put(digest, ready)
            else:
                hits += 1
        except (ValueError, OSError) as exc:  # not an image, truncated, unreadable: named, not raised
            errors.append((str(path), _error_message(path, exc)))
            continue
        finally:
            progress.update(done, hits)
        if ready.image is None:
            no_digit.append((str(path), ready.reason))
            continue
        images.append(ready.image)
        labels.append(label)
        kept.append(str(path))
    progress.finish(len(files))
    stacked = np.stack(images) if images else np.zeros((0, FIELD, FIELD), np.uint8)
    return FolderRead(stacked, np.asarray(labels, np.uint8), tuple(kept), True, tuple(no_digit), tuple(errors),
                      hits, misses)


# --------------------------------------------------------------------------- CLI


def add_prepare_arguments(parser) -> None:
    """--prepare / --no-prepare: how class folders of images are read (every command that takes --data-dir)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--prepare", dest="prepare", action="store_const", const=True, default=None,
                       help="put every image of class folders into MNIST's form as predict does (default: only "
                       "folders holding images that are not 28x28)")
    group.add_argument("--no-prepare", dest="prepare", action="store_const", const=False,
                       help="read class folders' images as they are (MNIST-shaped: white digit on black), "
                       "resized to 28x28 when they are not")
