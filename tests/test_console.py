"""edgemnist/console.py: native output (C stdio, raw fd writes) goes to the log, edgemnist's lines stay."""
from __future__ import annotations

import ctypes
import logging
import os
import subprocess
import sys
import warnings

import pytest

from edgemnist import console

LIBC = ctypes.CDLL(None)


def _native(text: str) -> None:
    """What C++ libraries do: buffered stdio on stdout, an unbuffered write on fd 2."""
    LIBC.printf((text + " on stdout\n").encode())
    os.write(2, (text + " on stderr\n").encode())


def test_native_output_goes_to_the_log_and_python_output_to_the_terminal(tmp_path, capfd, monkeypatch):
    monkeypatch.delenv(console.VERBOSE_ENV, raising=False)
    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # as in the CLI: no logging set-up (pytest has one)
    log = tmp_path / "logs" / "stage.log"
    with console.native_output_to(log) as path:
        assert path == log
        _native("converter")
        print("edgemnist table")
        print("[export] 1/2 int8", file=sys.stderr)
        warnings.warn("a third-party deprecation")
        logging.getLogger("tensorflow.lite").warning("a third-party log record")
        logging.getLogger("edgemnist.export.convert").warning("skipping qat_int8")
    out, err = capfd.readouterr()
    assert out == "edgemnist table\n"
    assert err == "[export] 1/2 int8\nskipping qat_int8\n"
    text = log.read_text()
    for line in ("converter on stdout", "converter on stderr", "a third-party deprecation",
                 "a third-party log record"):
        assert line in text
    # Afterwards the descriptors are the terminal's again.
    _native("after")
    out, err = capfd.readouterr()
    assert "after on stdout" in out and "after on stderr" in err and "after" not in log.read_text()


def test_nested_blocks_write_to_their_own_logs(tmp_path, capfd, monkeypatch):
    monkeypatch.delenv(console.VERBOSE_ENV, raising=False)
    outer, inner = tmp_path / "outer.log", tmp_path / "inner.log"
    with console.native_output_to(outer):
        _native("first")
        with console.native_output_to(inner):
            _native("second")
            print("[train] running", file=sys.stderr)
        _native("third")
    assert capfd.readouterr().err == "[train] running\n"
    assert "first" in outer.read_text() and "third" in outer.read_text() and "second" not in outer.read_text()
    assert "second on stdout" in inner.read_text() and "first" not in inner.read_text()


def test_a_failure_shows_the_log_tail_once(tmp_path, capfd, monkeypatch):
    monkeypatch.delenv(console.VERBOSE_ENV, raising=False)
    log = tmp_path / "export.log"
    with pytest.raises(RuntimeError, match="converter failed"):
        with console.native_output_to(tmp_path / "outer.log"):
            with console.native_output_to(log):
                _native("error: op not supported")
                raise RuntimeError("converter failed")
    err = capfd.readouterr().err
    assert err.count("native output before the failure") == 1
    assert f"whole log: {log}" in err and "error: op not supported on stderr" in err


def test_verbose_lets_native_output_through(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv(console.VERBOSE_ENV, "1")
    with console.native_output_to(tmp_path / "x.log") as path:
        _native("visible")
    assert path is None and not (tmp_path / "x.log").exists()
    assert "visible on stderr" in capfd.readouterr().err


def test_cli_keeps_a_failed_commands_log_and_names_it(tmp_path):
    """Bad input to a real command: one error line; TensorFlow's native start-up lines kept in --out/logs."""
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip file")
    out = tmp_path / "tflite"
    result = subprocess.run([sys.executable, "-m", "edgemnist", "export", "--from", str(bad), "--out", str(out),
                             "--variants", "float32"], capture_output=True, text=True, timeout=300,
                            env={**os.environ, console.VERBOSE_ENV: ""})
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("edgemnist: error: ") and str(bad) in lines[-1], result.stderr
    assert len(lines) == 1, result.stderr  # bad input: its own message, not TensorFlow's start-up lines
    assert "cuda" in (out / "logs" / "export.log").read_text().lower()  # TensorFlow's lines were kept there


def test_first_line_is_the_one_line_an_error_report_shows():
    assert console.first_line(ValueError("model.tflite: truncated\n  at offset 12")) == "model.tflite: truncated"
    assert console.first_line(RuntimeError("\n  converter failed  \nstack")) == "converter failed"
    assert console.first_line(KeyError()) == "KeyError"  # a blank message names the exception's type
    assert console.first_line(OSError(""), default="") == ""
