"""edgemnist.runtime.preflight and its child program: a model that crashes, exits or hangs the
interpreter becomes a ValueError here, whatever the child process did."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgemnist.runtime import Runner, preflight

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def fresh_results():
    """No remembered outcomes before or after: a test's verdicts must not leak into other tests."""
    preflight.forget_results()
    yield
    preflight.forget_results()


def _child(*argv: str) -> subprocess.CompletedProcess:
    command, env = preflight.module_command(preflight.CHILD_MODULE, *argv)
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, cwd="/")


def test_child_program_reports_one_line(tflite_variants, tmp_path):
    ok = _child(str(tflite_variants["int8"]), "1", "ai_edge_litert")
    assert ok.returncode == 0 and ok.stdout.strip() == preflight.OK_MARKER
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"not a model" * 10)
    failed = _child(str(garbage), "1", "ai_edge_litert")
    assert failed.returncode == 0
    marker, kind, message = failed.stdout.strip().split(" ", 2)
    assert marker == preflight.ERROR_MARKER and kind == "TFLiteFormatError" and str(garbage) in message
    assert _child("--ping").stdout.strip() == preflight.OK_MARKER
    assert _child().returncode == 2


def test_module_command_makes_this_edgemnist_importable():
    command, env = preflight.module_command("edgemnist.runtime.machine", "--mkdtemp")
    assert command == [sys.executable, "-m", "edgemnist.runtime.machine", "--mkdtemp"]
    assert env["PYTHONPATH"].split(":")[0] == str(REPO_ROOT)


@pytest.mark.parametrize("behaviour, message", [
    ("kill -SEGV $$", "the interpreter crashed loading or running it (SIGSEGV)"),
    ("exit 3", "the interpreter exited with status 3"),
    ("exec sleep 60", "the interpreter hung loading or running it (no result in 2 s)"),
])
def test_a_child_that_crashes_exits_or_hangs_is_a_value_error(tflite_variants, tmp_path, monkeypatch, fresh_results,
                                                              behaviour, message):
    # A stand-in for the child Python: it answers the start-up check, then misbehaves as a bad model makes it.
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\ncase "$*" in *--ping*) exec {sys.executable} "$@" ;; esac\n{behaviour}\n')
    python.chmod(0o755)
    monkeypatch.setenv(preflight.PYTHON_ENV, str(python))
    with pytest.raises(ValueError) as info:
        preflight.preflight(tflite_variants["int8"], num_threads=7, timeout=2)
    assert str(info.value).startswith(f"{tflite_variants['int8']}: {message}")
    with pytest.raises(ValueError, match="interpreter"):  # remembered: no second child process
        monkeypatch.delenv(preflight.PYTHON_ENV)
        preflight.preflight(tflite_variants["int8"], num_threads=7, timeout=2)


def test_trusted_models_skip_the_preflight(tflite_variants, monkeypatch):
    path = tflite_variants["int8"]
    fresh = path.parent / "trusted_copy.tflite"
    fresh.write_bytes(path.read_bytes() + b"")  # same content: only the first untrusted load pays
    first = Runner(fresh, num_threads=2)
    assert Runner(fresh, num_threads=2).preflight_seconds is None  # cached by content
    assert Runner(fresh, trusted=True).preflight_seconds is None
    monkeypatch.setenv(preflight.TRUST_ENV, "1")
    assert Runner(fresh, num_threads=3).preflight_seconds is None
    monkeypatch.delenv(preflight.TRUST_ENV)
    assert Runner(fresh, num_threads=3).preflight_seconds > 0
    assert first.preflight_seconds is None or first.preflight_seconds > 0
