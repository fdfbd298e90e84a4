"""Keep the console for edgemnist: native library output goes to a log file while work runs.

Usage: with console.native_output_to(Path("runs/x/logs/export.log")): convert.export_all(...)

TensorFlow, the TFLite converter, AI Edge Quantizer and LiteRT write straight to file
descriptors 1 and 2 from C++ (absl log lines, converter printf, "Created TensorFlow Lite
XNNPACK delegate"), which no Python-level redirect can catch. While `native_output_to` runs,
descriptors 1 and 2 point at a log file; Python's `sys.stdout`/`sys.stderr` are rebound to
copies of the original descriptors, so edgemnist's own lines, Keras progress bars and the
result tables still reach the terminal. Python warnings and log records of other packages
go to the log as well. When the block raises, the log's last lines are printed with its
path; `edgemnist --verbose` (EDGEMNIST_VERBOSE=1) turns the capture off.
"""
from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Iterator, Optional

VERBOSE_ENV = "EDGEMNIST_VERBOSE"
TAIL_LINES = 25  # lines of native output shown when a captured call fails


def verbose() -> bool:
    """True when native output should pass through (`edgemnist --verbose` or EDGEMNIST_VERBOSE=1)."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def first_line(exc: BaseException, default: Optional[str] = None) -> str:
    """The first line of an exception's message: what a one-line error report shows.

    Args:
        exc: any exception.
        default: what a blank message gives (None: the exception's type name).

    Returns:
        The message's first non-blank line, stripped, or `default`.
    """
    text = str(exc).strip()
    if text:
        return text.splitlines()[0].strip()
    return type(exc).__name__ if default is None else default


def _fileno(stream) -> Optional[int]:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # pytest's capture, StringIO, a closed stream
        return None


def _flush_all() -> None:
    """Flushes Python's streams and C stdio buffers, so nothing written before a swap lands after it."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(Exception):  # C code's buffered printf output (fflush(NULL) flushes every FILE)
        ctypes.CDLL(None).fflush(None)


class _OthersToLog(logging.Handler):
    """Root handler while capturing: edgemnist's records to the terminal, other packages' to the log."""

    def __init__(self, log_stream):
        super().__init__()
        self.log_stream = log_stream
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record):
        ours = record.name == "edgemnist" or record.name.startswith("edgemnist.")
        if ours and record.levelno < logging.WARNING:
            return  # the same threshold as Python's last-resort handler
        stream = sys.stderr if ours else self.log_stream
        try:
            prefix = "" if ours else f"{record.levelname}:{record.name}: "
            stream.write(prefix + self.format(record) + "\n")
            stream.flush()
        except Exception:  # never let logging break the work
            self.handleError(record)


def show_tail(log_path: Path, stream=None) -> None:
    """Prints the last lines of a native-output log and where the whole log is."""
    stream = stream or sys.stderr
    try:
        lines = Path(log_path).read_text(errors="replace").splitlines()
    except OSError:
        return
    lines = [line for line in lines if line.strip()]
    if not lines:
        return
    print(f"edgemnist: native output before the failure (last {min(len(lines), TAIL_LINES)} lines; "
          f"whole log: {log_path}):", file=stream)
    for line in lines[-TAIL_LINES:]:
        print(f"  {line[:400]}", file=stream)


@contextlib.contextmanager
def native_output_to(log_path: str | os.PathLike) -> Iterator[Optional[Path]]:
    """Sends file descriptors 1 and 2 (and other packages' Python warnings and logs) to `log_path`.

    Appends to the log. Nests: an inner block sends the output to its own log. Yields the
    log path, or None when capture is off (`verbose()`).

    Raises:
        Whatever the block raises; for a failure other than bad input (ValueError, OSError), after
        printing the log's last lines (once per exception).
    """
    if verbose():
        yield None
        return
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    _flush_all()
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    log_stream = io.TextIOWrapper(io.FileIO(os.dup(log_fd), "w"), encoding="utf-8", errors="replace",
                                  write_through=True)
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    rebound = {}  # name -> the original Python stream
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        fd = _fileno(stream)
        if fd in saved:  # a stream on fd 1 or 2 keeps going where it went, through a copy of the descriptor
            rebound[name] = stream
            copy = io.TextIOWrapper(io.FileIO(os.dup(saved[fd]), "w"), encoding=getattr(stream, "encoding", None),
                                    errors="replace", line_buffering=True, write_through=True)
            setattr(sys, name, copy)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    root = logging.getLogger()
    handler = None if root.handlers else _OthersToLog(log_stream)  # an application's own logging set-up wins
    if handler:
        root.addHandler(handler)
    previous_showwarning = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        log_stream.write(warnings.formatwarning(message, category, filename, lineno, line))

    warnings.showwarning = showwarning
    try:
        yield log_path
    except BaseException as exc:
        # Bad input (ValueError, OSError) carries its own one-line message; a real failure (a converter
        # or interpreter error) is explained by what the library printed just before it.
        if not isinstance(exc, (KeyboardInterrupt, SystemExit, ValueError, OSError)) \
                and not getattr(exc, "_edgemnist_log_shown", False):
            _flush_all()
            show_tail(log_path)
            with contextlib.suppress(Exception):
                exc._edgemnist_log_shown = True
        raise
    finally:
        _flush_all()
        warnings.showwarning = previous_showwarning
        if handler:
            root.removeHandler(handler)
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        for name, stream in rebound.items():
            current = getattr(sys, name)
            setattr(sys, name, stream)
            with contextlib.suppress(Exception):
                current.close()
        log_stream.close()
        os.close(log_fd)
