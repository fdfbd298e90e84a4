"""Write artifacts atomically (temp file in the same folder, fsync, rename) and hash them.

Usage: from edgemnist.artifacts import atomic_write_bytes, atomic_write_json, sha256_file

Every file edgemnist produces goes through here, so a crash or a kill never leaves a
half-written model, checkpoint or manifest behind: readers see the old file or the new one.
"""
from __future__ import annotations

import contextlib
import glob
import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Union


_UMASK = os.umask(0)
os.umask(_UMASK)


class OutputError(OSError):
    """The output location cannot be written (read-only, full, not a folder)."""


def _describe_os_error(path: Path, exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    return f"cannot write {path}: {reason}"


def _writer_tag() -> str:
    """host-pid of this process, as it appears in the names of its temporary files."""
    host = "".join(c if c.isalnum() else "_" for c in socket.gethostname()) or "host"
    return f"{host}-{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temps(path: str | os.PathLike) -> list:
    """Removes temporary files that a killed writer of `path` left beside it.

    Temporary names carry the writer's host and process id (`.NAME.HOST-PID.XXXX.tmp`); one
    whose process no longer runs on this host is a leftover (a SIGKILL gives no chance to
    clean up). Files of running writers and of other hosts are left alone.

    Returns:
        The paths removed.
    """
    path = Path(path)
    host = _writer_tag().rsplit("-", 1)[0]
    removed = []
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.*"):
        tag = candidate.name[len(path.name) + 2:].split(".", 1)[0]
        owner, _, pid = tag.rpartition("-")
        if owner != host or not pid.isdigit() or _pid_alive(int(pid)):
            continue
        try:
            candidate.unlink()
        except OSError:
            continue
        removed.append(candidate)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yields a temporary path beside `path`; on success it is fsynced and renamed onto `path`.

    On any exception the temporary file is removed and `path` is left untouched; temporary
    files of earlier writers of `path` that were killed are removed first.

    Raises:
        OutputError: the folder is read-only, full or missing.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{path.name}.{_writer_tag()}.", suffix=suffix if suffix is not None else ".tmp", dir=path.parent
        )
        os.close(fd)
    except OSError as exc:
        raise OutputError(_describe_os_error(path, exc)) from None
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; artifacts are ordinary files
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(_describe_os_error(path, exc)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Writes `data` to `path` atomically and returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Writes UTF-8 `text` to `path` atomically and returns the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Writes `obj` as indented, key-sorted JSON to `path` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_write_with(path: str | os.PathLike, writer: Callable[[Path], None], suffix: str = "") -> Path:
    """Calls `writer(tmp_path)` (e.g. a Keras save) and renames the result onto `path`.

    `suffix` keeps the extension a writer may insist on (Keras wants `.keras`).
    """
    with atomic_path(path, suffix=f".tmp{suffix}") as tmp:
        writer(tmp)
    return Path(path)


def atomic_write_folder(path: str | os.PathLike, files: Mapping[str, Union[str, bytes]]) -> Path:
    """Writes a whole folder: `files` ({relative name: UTF-8 text or bytes}) become the folder `path`.

    The folder is built beside `path` under a hidden temporary name, every file fsynced, then
    renamed onto `path`. A folder already at `path` is first moved aside and removed only once
    the new one is in place, so a crash leaves the old folder or the new one, never a mix.
    Text is written as given: no newline translation, so the bytes match on every OS.

    Returns:
        The path.

    Raises:
        OutputError: the folder cannot be written (read-only, full, not a folder); the old
            folder, if any, is back in place.
    """
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise OutputError(_describe_os_error(out, exc)) from None
    old = None
    try:
        for name, content in sorted(files.items()):
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str):
                (tmp / name).write_text(content, encoding="utf-8", newline="\n")
            else:
                (tmp / name).write_bytes(content)
        for name in files:
            with open(tmp / name, "rb+") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; others may read a generated folder
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / out.name)
        os.replace(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not out.exists():
            os.replace(old / out.name, out)
        if old is not None and out.exists():  # the earlier folder is back in place
            shutil.rmtree(old, ignore_errors=True)
        raise OutputError(_describe_os_error(out, exc)) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out


def sha256_file(path: str | os.PathLike) -> str:
    """Returns the hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Returns the hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def gzip_size(data: bytes) -> int:
    """Bytes after gzip level 9 with mtime 0 (deterministic): what a download or a compressed flash image costs."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0, filename="") as fh:
        fh.write(data)
    return len(buf.getvalue())


# File names other stages and devices look for. They live here, with no stage imports, so
# `verify` and `compare` run on a device that has only the TensorFlow-free part, and `verify`
# (which `mcu` calls) needs no import of `pipeline` (which runs `mcu`).
FIRMWARE_MANIFEST_NAME = "firmware_manifest.json"  # the firmware folder's manifest
PIPELINE_STATE_FILE = "pipeline.json"  # a pipeline run's record of its stages
PIPELINE_STAGE_FOLDERS = {"train": "train", "optimize": "optimize", "export": "tflite", "compare": "report",
                          "firmware": "firmware", "mcu": "mcu", "codegen": "c", "avr": "avr"}  # each stage's sub-folder of --out


def manifest_path(tflite_path: Union[str, os.PathLike]) -> Path:
    """Where the manifest of a .tflite lives: the same path with `.json` appended."""
    return Path(f"{os.fspath(tflite_path)}.json")


CACHE_ENV = "EDGEMNIST_CACHE"  # overrides where downloads and compiled TFLite Micro objects are kept


def cache_dir() -> Path:
    """The one cache folder rule: $EDGEMNIST_CACHE, else $XDG_CACHE_HOME/edgemnist, else ~/.cache/edgemnist.

    Empty variables count as unset (the XDG Base Directory rule), so `EDGEMNIST_CACHE=` falls back.
    """
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "edgemnist"
