"""Reliability under hostile input and failure: malformed models and data, kills, read-only and full disks.

Every command that reads a model or data must answer a bad one with one line on stderr
and status 2: never a traceback, a segfault or a hang. A killed command, rerun, must
finish correctly, and no artifact may ever be left truncated or changed by a failure.
"""
from __future__ import annotations

import collections
import gzip
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from _tflite_mutations import OUTCOMES, mutate, run_model
from _tflite_variants import exported_variants
from edgemnist import cli, data
from edgemnist.artifacts import sha256_file
from edgemnist.runtime import Runner, tflite_info
from edgemnist.verify import verify

REPO = Path(__file__).resolve().parents[1]
# Mutated models per exported variant in the CI fuzz run (benchmarks/bench_fuzz.py runs more).
FUZZ_PER_VARIANT = 100


@pytest.fixture(scope="module")
def variants(tmp_path_factory, trained_model_path):
    return exported_variants(tmp_path_factory, trained_model_path)


@pytest.fixture(scope="module")
def images(mnist_test):
    return data.to_model_input(mnist_test.images[:8])


def _repack(buf: bytes, edit) -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(buf), 0)
    edit(model)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _constant_as_input(model) -> None:
    """The graph input becomes a 4-D weight tensor: valid structure, and LiteRT 2.3 segfaults
    when the runtime writes the input (the weights are read-only)."""
    graph = model.subgraphs[0]
    graph.inputs = [next(i for i, t in enumerate(graph.tensors)
                         if t.buffer and model.buffers[t.buffer].data is not None and len(t.shape) == 4)]


def _absurd_shape(model) -> None:
    model.subgraphs[0].tensors[0].shape = [1 << 30, 1 << 30, 64]


HOSTILE = {
    "truncated": lambda f32, i8: i8[: len(i8) // 3],
    "random-bytes": lambda f32, i8: np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    "empty": lambda f32, i8: b"",
    "wrong-identifier": lambda f32, i8: i8[:4] + b"TFL2" + i8[8:],
    "offset-outside": lambda f32, i8: (len(i8) + 64).to_bytes(4, "little") + i8[4:],
    "absurd-tensor-size": lambda f32, i8: _repack(i8, _absurd_shape),
    "crashes-litert": lambda f32, i8: _repack(f32, _constant_as_input),
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, variants):
    folder = tmp_path_factory.mktemp("hostile")
    f32, i8 = variants["float32"].read_bytes(), variants["int8"].read_bytes()
    paths = {}
    for name, make in HOSTILE.items():
        paths[name] = folder / f"{name}.tflite"
        paths[name].write_bytes(make(f32, i8))
    return paths


def _one_line_status_2(status: int, err: str, *fragments) -> None:
    lines = err.strip().splitlines()
    assert status == 2, err
    assert len(lines) == 1 and lines[0].startswith("edgemnist: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# --------------------------------------------------------------------------- malformed models


def test_the_crashing_model_really_crashes_a_bare_interpreter(hostile, tmp_path):
    """The premise of the preflight: this file passes the structural check, yet kills LiteRT."""
    path = hostile["crashes-litert"]
    tflite_info.validate(path)  # structurally fine
    script = ("import sys, numpy as np\nfrom ai_edge_litert.interpreter import Interpreter\n"
              "it = Interpreter(model_path=sys.argv[1]); it.allocate_tensors()\n"
              "d = it.get_input_details()[0]; it.set_tensor(d['index'], np.zeros(d['shape'], d['dtype']))\n")
    result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, timeout=120)
    assert result.returncode == -signal.SIGSEGV


@pytest.mark.parametrize("name", list(HOSTILE))
@pytest.mark.parametrize("command", ["eval", "bench", "info", "compare", "firmware"])
def test_hostile_model_exits_2_with_one_line(hostile, variants, tmp_path, capsys, command, name):
    path = str(hostile[name])
    argv = {
        "eval": ["eval", path, "--limit", "20"],
        "bench": ["bench", path, "--runs", "5", "--warmup", "1", "--throughput-images", "16"],
        "info": ["info", path],
        "compare": ["compare", str(variants["float32"]), path, "--out", str(tmp_path / "cmp"), "--limit", "20",
                    "--runs", "5", "--warmup", "1", "--no-plots"],
        "firmware": ["firmware", path, "--out", str(tmp_path / "fw")],
    }[command]
    status = cli.main(argv)
    if command == "info" and name == "crashes-litert":  # info reads the file, it never runs it
        assert status == 0 and "FULLY_CONNECTED" in capsys.readouterr().out
        return
    _one_line_status_2(status, capsys.readouterr().err, path)
    assert not (tmp_path / "fw").exists() and not (tmp_path / "cmp" / "report.json").exists()


def test_preflight_turns_the_native_crash_into_a_value_error(hostile):
    with pytest.raises(ValueError, match=r"crashes-litert.tflite: the interpreter crashed .*SIGSEGV"):
        Runner(hostile["crashes-litert"])
    with pytest.raises(ValueError, match="crashed"):  # remembered: no second child process
        Runner(hostile["crashes-litert"])


def test_trusted_models_skip_the_preflight(variants, monkeypatch):
    path = variants["int8"]
    fresh = path.parent / "trusted_copy.tflite"
    fresh.write_bytes(path.read_bytes() + b"")  # same content: only the first untrusted load pays
    first = Runner(fresh, num_threads=2)
    assert Runner(fresh, num_threads=2).preflight_seconds is None  # cached by content
    assert Runner(fresh, trusted=True).preflight_seconds is None
    monkeypatch.setenv("EDGEMNIST_TRUST_MODELS", "1")
    assert Runner(fresh, num_threads=3).preflight_seconds is None
    monkeypatch.delenv("EDGEMNIST_TRUST_MODELS")
    assert Runner(fresh, num_threads=3).preflight_seconds > 0
    assert first.preflight_seconds is None or first.preflight_seconds > 0


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_fuzzed_models_never_crash_or_escape(variants, images, tmp_path, capsys, variant):
    """Seeded mutations of a real export (raw bytes, or schema-level edits that still parse): the
    API raises only ValueError, and eval/info/bench/compare exit 0 or 2 with one line."""
    original = variants[variant].read_bytes()
    outcomes, kinds = collections.Counter(), collections.Counter()
    for seed in range(FUZZ_PER_VARIANT):
        hostile, kind = mutate(original, seed)
        path = tmp_path / f"{variant}_{seed}.tflite"
        path.write_bytes(hostile)
        outcome = run_model(path, images)  # anything but ValueError fails the test here
        outcomes[outcome] += 1
        kinds[kind] += 1
        commands = [["info", str(path)], ["eval", str(path), "--limit", "16"]]
        if outcome == "ran" and seed % 4 == 0:
            commands.append(["bench", str(path), "--runs", "5", "--warmup", "1", "--throughput-images", "8"])
        if seed % 10 == 0:
            commands.append(["compare", str(variants["float32"]), str(path), "--out", str(tmp_path / "cmp"),
                             "--limit", "16", "--runs", "3", "--warmup", "0", "--no-plots"])
        for argv in commands:
            status = cli.main(argv)
            err = capsys.readouterr().err
            assert status in (0, 2), (seed, argv, err)
            if status == 2:
                _one_line_status_2(status, err, str(path))
        path.unlink()
    summary = {"variant": variant, "tried": FUZZ_PER_VARIANT, "kinds": dict(kinds), **{o: outcomes[o] for o in OUTCOMES}}
    with capsys.disabled():
        print(f"\nfuzz {json.dumps(summary)}")
    assert sum(outcomes.values()) == FUZZ_PER_VARIANT
    # the mutations reach the interpreter, not only the structural check
    assert outcomes["rejected_by_validation"] < FUZZ_PER_VARIANT * 0.8 and outcomes["ran"] > 0
