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
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from _helpers import cli_command, repack
from edgemnist import cli, data
from edgemnist.artifacts import sha256_file
from edgemnist.runtime import Runner, tflite_info
from edgemnist.verify import verify

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from tflite_mutations import OUTCOMES, mutate, run_model  # noqa: E402  (shared with benchmarks/bench_fuzz.py)

REPO = Path(__file__).resolve().parents[1]
# Mutated models per exported variant in the CI fuzz run (benchmarks/bench_fuzz.py runs more).
FUZZ_PER_VARIANT = 100


@pytest.fixture(scope="module")
def images(mnist_test):
    return data.to_model_input(mnist_test.images[:8])


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
    "absurd-tensor-size": lambda f32, i8: repack(i8, _absurd_shape),
    "crashes-litert": lambda f32, i8: repack(f32, _constant_as_input),
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, tflite_variants):
    folder = tmp_path_factory.mktemp("hostile")
    f32, i8 = tflite_variants["float32"].read_bytes(), tflite_variants["int8"].read_bytes()
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
def test_hostile_model_exits_2_with_one_line(hostile, tflite_variants, tmp_path, capsys, command, name):
    path = str(hostile[name])
    argv = {
        "eval": ["eval", path, "--test-limit", "20"],
        "bench": ["bench", path, "--runs", "5", "--warmup", "1", "--throughput-images", "16"],
        "info": ["info", path],
        "compare": ["compare", str(tflite_variants["float32"]), path, "--out", str(tmp_path / "cmp"), "--test-limit", "20",
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
    same_bytes = hostile["crashes-litert"].with_name("renamed.tflite")
    shutil.copy(hostile["crashes-litert"], same_bytes)
    with pytest.raises(ValueError, match=r"^\S*renamed.tflite: the interpreter crashed"):  # names this file
        Runner(same_bytes)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_fuzzed_models_never_crash_or_escape(tflite_variants, images, tmp_path, capsys, variant):
    """Seeded mutations of a real export (raw bytes, or schema-level edits that still parse): the
    API raises only ValueError, and eval/info/bench/compare exit 0 or 2 with one line."""
    original = tflite_variants[variant].read_bytes()
    outcomes, kinds = collections.Counter(), collections.Counter()
    for seed in range(FUZZ_PER_VARIANT):
        hostile, kind = mutate(original, seed)
        path = tmp_path / f"{variant}_{seed}.tflite"
        path.write_bytes(hostile)
        outcome = run_model(path, images)  # anything but ValueError fails the test here
        outcomes[outcome] += 1
        kinds[kind] += 1
        commands = [["info", str(path)], ["eval", str(path), "--test-limit", "16"]]
        if outcome == "ran" and seed % 4 == 0:
            commands.append(["bench", str(path), "--runs", "5", "--warmup", "1", "--throughput-images", "8"])
        if seed % 10 == 0:
            commands.append(["compare", str(tflite_variants["float32"]), str(path), "--out", str(tmp_path / "cmp"),
                             "--test-limit", "16", "--runs", "3", "--warmup", "0", "--no-plots"])
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


# --------------------------------------------------------------------------- malformed data, at the CLI


def _copy_test_idx(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(data.packaged_data_dir() / name, folder / name)
    return folder


def _bad_magic(folder):
    path = folder / "t10k-labels-idx1-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x07" + raw[4:]))
    return path


def _truncated_images(folder):
    path = folder / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:100_000]))
    return path


def _count_mismatch(folder):
    path = folder / "t10k-labels-idx1-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:4] + (9999).to_bytes(4, "big") + raw[8:-1]))
    return path


def _png_not_an_image(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for digit in range(10):
        (folder / str(digit)).mkdir()
    from PIL import Image

    for digit in range(10):
        Image.fromarray(np.zeros((28, 28), np.uint8)).save(folder / str(digit) / "a.png")
    bad = folder / "3" / "b.png"
    bad.write_bytes(b"not a png at all")
    return bad


def _png_bad_class_folder(folder):
    _png_not_an_image(folder)
    (folder / "3" / "b.png").unlink()
    (folder / "ten").mkdir()
    return folder


DATA_FAULTS = {"idx-wrong-magic": _bad_magic, "idx-truncated": _truncated_images,
               "idx-count-mismatch": _count_mismatch, "png-not-an-image": _png_not_an_image,
               "png-class-folder": _png_bad_class_folder}


@pytest.mark.parametrize("fault", list(DATA_FAULTS))
@pytest.mark.parametrize("command", ["eval", "bench", "compare"])
def test_bad_data_dir_exits_2_naming_the_file(tflite_variants, tmp_path, capsys, command, fault):
    folder = tmp_path / "data"
    if fault.startswith("idx"):
        _copy_test_idx(folder)
    named = DATA_FAULTS[fault](folder)
    model = str(tflite_variants["int8"])
    argv = {"eval": ["eval", model],
            "bench": ["bench", model, "--runs", "5", "--warmup", "0", "--throughput-images", "8"],
            "compare": ["compare", model, "--out", str(tmp_path / "cmp"), "--runs", "3", "--no-plots"]}[command]
    status = cli.main(argv + ["--data-dir", str(folder)])
    _one_line_status_2(status, capsys.readouterr().err, str(named))


# --------------------------------------------------------------------------- interruptions


def _env() -> dict:
    return dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))


def _run(cmd, timeout=900, preexec_fn=None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=REPO, timeout=timeout,
                          preexec_fn=preexec_fn)


def _kill_at(cmd, delay: float) -> bool:
    """Starts `cmd`, SIGKILLs it (and the processes it started) after `delay` s; True if it was still running."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), cwd=REPO,
                            start_new_session=True)
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


def _assert_nothing_damaged(folder: Path) -> None:
    """Every artifact is whole: .tflite validate, .json parse, .keras zips pass their CRCs,
    and every sha256 a manifest records matches (what `edgemnist verify` checks)."""
    if not folder.exists():
        return
    try:
        result = verify(folder)
    except ValueError:  # killed before anything was written
        return
    # a stage killed mid-way leaves files no manifest records yet; never a damaged one
    assert result["problems"] == [], result["problems"]
    for path in folder.rglob("*.keras"):
        if not any(part.startswith(".") for part in path.relative_to(folder).parts):
            with zipfile.ZipFile(path) as archive:
                assert archive.testzip() is None


def _kill_during(cmd, marker: str, delay: float) -> str:
    """Starts `cmd`; once `marker` shows on its stderr, waits `delay` s and SIGKILLs it (and its
    children). Returns "killed", or "finished" / "no marker" when it ended first."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace",
                            env=_env(), cwd=REPO, start_new_session=True)
    seen = threading.Event()

    def drain():
        for line in proc.stderr:
            if marker in line:
                seen.set()
        seen.set()  # EOF: the process ended

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    seen.wait(600)
    if proc.poll() is not None:
        reader.join()
        return "finished" if proc.returncode == 0 else f"no marker (exit {proc.returncode})"
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    if proc.poll() is not None:
        reader.join()
        return "finished"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    reader.join()
    return "killed"


# Each stage of a quick pipeline is killed at a seeded moment inside it (after the pipeline logs
# "[stage] running"), and the same command is run again: train (resumes from its last epoch),
# optimize, export (the code of `edgemnist train`, `optimize` and `export`), compare, firmware.
KILL_WINDOWS = {"train": (1.0, 8.0), "optimize": (2.0, 20.0), "export": (1.0, 8.0), "compare": (0.5, 3.0),
                "firmware": (0.2, 2.0)}


@pytest.mark.slow
def test_pipeline_killed_in_every_stage_then_rerun(tmp_path):
    out = tmp_path / "run"
    cmd = cli_command("pipeline", "--out", out, "--quick", "--quantizer", "tflite")
    rng = random.Random(7)  # seeded: the same moments in every CI run
    outcomes = {}
    for stage, (lo, hi) in KILL_WINDOWS.items():
        delay = rng.uniform(lo, hi)
        outcomes[stage] = (_kill_during(cmd, f"[{stage}] running", delay), round(delay, 1))
        _assert_nothing_damaged(out)  # after every kill: no truncated artifact, every record true
    rerun = _run(cmd)
    assert rerun.returncode == 0, f"{outcomes}; rerun: {rerun.stderr[-2000:]}"
    state = json.loads((out / "pipeline.json").read_text())
    assert set(state["stages"]) == {"train", "optimize", "export", "compare", "firmware"} and state["result"]
    result = verify(out)
    assert result["ok"] and result["problems"] == [], result["problems"]
    assert state["result"]["train"]["epochs_run"] == 1
    assert sum(outcome == "killed" for outcome, _ in outcomes.values()) >= 3, outcomes  # not all finished first


@pytest.mark.slow
def test_export_killed_then_rerun(trained_model_path, tmp_path):
    """The standalone `edgemnist export` command: killed while converting, run again."""
    out = tmp_path / "export"
    cmd = cli_command("export", "--from", trained_model_path, "--out", out, "--variants", "float32,int8",
                      "--representative-size", 50)
    killed = _kill_at(cmd, random.Random(11).uniform(4.0, 12.0))
    _assert_nothing_damaged(out)
    rerun = _run(cmd)
    assert rerun.returncode == 0, f"killed={killed}; {rerun.stderr[-2000:]}"
    result = verify(out)
    assert result["ok"] and result["records"] == ["model_float32.tflite.json", "model_int8.tflite.json"]


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    from edgemnist.artifacts import _writer_tag, atomic_write_bytes

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # its pid is now free: a writer that was SIGKILLed
    host = _writer_tag().rsplit("-", 1)[0]
    target = tmp_path / "model_int8.tflite"
    stale = tmp_path / f".model_int8.tflite.{host}-{child.pid}.abc123.tmp"
    running = tmp_path / f".model_int8.tflite.{_writer_tag()}.def456.tmp"  # this process: still writing
    elsewhere = tmp_path / f".model_int8.tflite.otherhost-{child.pid}.ghi789.tmp"  # another machine's
    other_file = tmp_path / f".model_float32.tflite.{host}-{child.pid}.jkl012.tmp"  # another target
    for path in (stale, running, elsewhere, other_file):
        path.write_bytes(b"half a model")
    atomic_write_bytes(target, b"a whole model")
    assert target.read_bytes() == b"a whole model"
    assert not stale.exists()
    assert running.exists() and elsewhere.exists() and other_file.exists()


# --------------------------------------------------------------------------- read-only and full disks


def _snapshot(folder: Path) -> dict:
    """sha256 of every file under `folder` ("dir" for folders), except the commands' own logs/
    (cli.LOG_IN_OUT: a command logs its native output there even when it fails)."""
    return {str(p.relative_to(folder)): sha256_file(p) if p.is_file() else "dir" for p in sorted(folder.rglob("*"))
            if "logs" not in p.relative_to(folder).parts[1:2]}


def _fsize_limit(limit: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # Python ignores SIGXFSZ: writes fail with EFBIG
    return apply


def _can_bind_read_only() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount --bind / /mnt 2>/dev/null && echo ok"],
                           capture_output=True, text=True)
    return probe.stdout.strip() == "ok"


def _read_only_command(folder: Path, cmd: list) -> list:
    """`cmd` in a private mount namespace where `folder` is a read-only bind mount (root here ignores
    chmod 0555); as an ordinary user, chmod 0555 does the same and this is not needed."""
    script = 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" && shift && exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, "sh", str(folder), *cmd]


@pytest.fixture()
def existing_outputs(tmp_path, tflite_variants):
    """Folders already holding earlier artifacts: an export, a compare report, firmware assets."""
    export = tmp_path / "export"
    export.mkdir()
    for path in tflite_variants.values():
        shutil.copy2(path, export / path.name)
        shutil.copy2(f"{path}.json", export / f"{path.name}.json")
    report_dir = tmp_path / "report"
    assert cli.main(["compare", str(tflite_variants["float32"]), "--out", str(report_dir), "--test-limit", "50",
                     "--runs", "5", "--warmup", "0", "--no-plots"]) == 0
    fw = tmp_path / "fw"
    assert cli.main(["firmware", str(tflite_variants["int8"]), "--out", str(fw)]) == 0
    return {"export": export, "compare": report_dir, "firmware": fw}


def _writing_commands(outputs: dict, model: Path, tflite_variants: dict) -> dict:
    return {
        "export": cli_command("export", "--from", model, "--out", outputs["export"], "--variants", "float32,int8",
                              "--representative-size", 50),
        "compare": cli_command("compare", tflite_variants["float32"], tflite_variants["int8"],
                               "--out", outputs["compare"], "--test-limit", 50, "--runs", 5, "--warmup", 0),
        "firmware": cli_command("firmware", tflite_variants["int8"], "--out", outputs["firmware"]),
    }


@pytest.mark.slow
@pytest.mark.parametrize("how", ["full", "read-only"])
@pytest.mark.parametrize("name", ["export", "compare", "firmware"])
def test_unwritable_output_is_one_clear_error_and_keeps_earlier_artifacts(
        existing_outputs, trained_model_path, tflite_variants, name, how):
    folder = existing_outputs[name]
    before = _snapshot(folder.parent)  # the folder and its siblings: no stray temp files either
    cmd = _writing_commands(existing_outputs, trained_model_path, tflite_variants)[name]
    if how == "full":  # a file-size limit: every write past 1 KiB fails with EFBIG, as on a full disk
        result = _run(cmd, preexec_fn=_fsize_limit(1024))
    elif os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            result = _run(cmd)
        finally:
            folder.chmod(0o755)
    elif _can_bind_read_only():
        result = _run(_read_only_command(folder, cmd))
    else:
        pytest.skip("running as root without mount namespaces: no way to make a folder read-only")
    errors = [line for line in result.stderr.splitlines() if line.startswith("edgemnist: error:")]
    assert result.returncode in (1, 2), result.stderr[-2000:]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert str(folder) in errors[0]
    reasons = ("too large",) if how == "full" else ("read-only", "permission denied", "busy")  # busy: a mount point
    assert any(reason in errors[0].lower() for reason in reasons), errors[0]
    assert _snapshot(folder.parent) == before  # byte-identical, and no half-written or temporary file left


# --------------------------------------------------------------------------- inference API (beyond tests/runtime/test_interpreter.py)


@pytest.mark.parametrize("bad, fragment", [
    (None, "dtype object"),
    (np.zeros((28, 28, 1), np.complex64), "dtype complex64"),
    (np.zeros((28, 28, 1), bool), "dtype bool"),
    (np.float32(0.5), "shape"),
    (np.zeros((0, 28, 1), np.float32), "shape"),
    (np.full((28, 28, 1), -np.inf, np.float32), "-inf"),
    (np.full((28, 28, 1), 1.0000001, np.float32), "values from"),
    (np.zeros((28, 28, 1), np.float64) + 2.0, "values from"),
    ([[0.0] * 28] * 27, "shape"),
], ids=["none", "complex", "bool", "scalar", "empty-image", "minus-inf", "just-above-one", "float64-above", "list"])
def test_more_wrong_inputs_raise_value_error(tflite_variants, bad, fragment):
    runner = Runner(tflite_variants["int8"])
    for call in (runner.predict_one, lambda x: runner.predict(x if np.ndim(x) != 3 else np.asarray(x)[None])):
        with pytest.raises(ValueError, match="expected") as info:
            call(bad)
        assert fragment in str(info.value)
