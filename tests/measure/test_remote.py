"""edgemnist.measure.remote against a real OpenSSH server started on 127.0.0.1 for this module."""
from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _helpers import free_port, run_cli
from edgemnist import __version__
from edgemnist.measure import remote
from edgemnist.measure import devices as report_devices
from edgemnist.measure import plots
from edgemnist.measure.remote import RemoteConfig, RemoteSetupError

SSHD = "/usr/sbin/sshd"
FAILURE_BOUND_S = 60  # a failing remote command must give up well within this


def _ensure_sshd() -> None:
    if Path(SSHD).is_file() and shutil.which("ssh-keygen") and shutil.which("ssh"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("sshd is not installed and cannot be (needs root and apt-get: apt-get install openssh-server)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "-q", "openssh-server", "openssh-client"]
    if subprocess.run(install, env=env, capture_output=True, timeout=600).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            pytest.skip(f"apt-get install openssh-server failed: {done.stderr.strip().splitlines()[-1:]}")


def _keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, timeout=30)
    return path


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A throwaway sshd on 127.0.0.1 (own host key, own authorized_keys); yields its settings."""
    _ensure_sshd()
    tmp = tmp_path_factory.mktemp("sshd")
    host_key, user_key, other_key = _keygen(tmp / "host_key"), _keygen(tmp / "user_key"), _keygen(tmp / "other_key")
    (tmp / "authorized_keys").write_text(Path(f"{user_key}.pub").read_text())
    port = free_port()
    config = tmp / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {tmp / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {tmp / 'authorized_keys'}\nStrictModes no\nUsePAM no\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        "PermitRootLogin prohibit-password\nSubsystem sftp /usr/lib/openssh/sftp-server\nLogLevel ERROR\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation folder
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            pytest.skip(f"sshd did not start: {proc.stdout.read().decode(errors='replace').strip()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.skip("sshd did not listen within 20 s")
            time.sleep(0.1)
    options = (f"UserKnownHostsFile={tmp / 'known_hosts'}",)
    yield {
        "port": port, "user_key": str(user_key), "other_key": str(other_key), "options": options,
        "destination": f"{getpass.getuser()}@127.0.0.1",
    }
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _config(sshd, **overrides) -> RemoteConfig:
    settings = dict(destination=sshd["destination"], port=sshd["port"], identity=sshd["user_key"],
                    ssh_options=sshd["options"], python=sys.executable, connect_timeout=10, timeout=300)
    settings.update(overrides)
    return RemoteConfig(**settings)


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory):
    """An untrained batch-1 ds_cnn as float32 .tflite (the remote side only has to run it)."""
    from edgemnist._tensorflow import import_tensorflow
    from edgemnist.training.model import build_model

    tf = import_tensorflow()
    path = tmp_path_factory.mktemp("model") / "tiny_float32.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(build_model("ds_cnn", batch_size=1)).convert())
    return path


def test_probe_describes_the_device(sshd):
    device = remote.probe_device(_config(sshd))
    assert device["machine"] == os.uname().machine
    assert device["cores"] >= 1
    assert device["python"] == ".".join(map(str, sys.version_info[:3]))
    assert device["backend"]["name"] in ("ai_edge_litert", "tflite_runtime", "tf.lite")
    assert device["emulated"] is False
    assert device["edgemnist"] == __version__
    assert device["device"] and device["workdir"] is None


@pytest.mark.parametrize("case", ["closed_port", "wrong_key", "missing_python"])
def test_setup_failures_are_one_clear_error_in_bounded_time(sshd, tiny_tflite, case):
    if case == "closed_port":
        config, expected = _config(sshd, port=free_port()), "cannot connect"
    elif case == "wrong_key":
        config, expected = _config(sshd, identity=sshd["other_key"]), "SSH login refused"
    else:
        config, expected = _config(sshd, python="/nonexistent/python"), "Python not found on the device"
    start = time.monotonic()
    with pytest.raises(RemoteSetupError) as info:
        remote.bench_remote(config, tiny_tflite)
    assert time.monotonic() - start < FAILURE_BOUND_S
    message = str(info.value)
    assert expected in message and sshd["destination"] in message and "\n" not in message


def test_device_without_interpreter_names_what_is_missing(sshd, tiny_tflite, tmp_path):
    bare = tmp_path / "bare-python"  # the same Python, isolated from every installed package
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -I -S \"$@\"\n")
    bare.chmod(0o755)
    with pytest.raises(RemoteSetupError, match="lacks numpy and a TFLite interpreter"):
        remote.bench_remote(_config(sshd, python=str(bare)), tiny_tflite)


def test_bad_options_are_rejected_before_connecting(sshd):
    with pytest.raises(ValueError, match="--remote must be"):
        RemoteConfig(destination="-oProxyCommand=x")
    with pytest.raises(ValueError, match="--ssh-option must be KEY=VALUE"):
        _config(sshd, ssh_options=("BatchMode",))
    with pytest.raises(FileNotFoundError, match="identity"):
        _config(sshd, identity="/nonexistent/key")
    with pytest.raises(ValueError, match="--port"):
        _config(sshd, port=70000)


def _remote_argv(sshd, *extra: str) -> list[str]:
    argv = ["--remote", sshd["destination"], "--port", str(sshd["port"]), "--identity", sshd["user_key"]]
    for option in sshd["options"]:
        argv += ["--ssh-option", option]
    return argv + list(extra)


@pytest.mark.slow
def test_remote_bench_matches_local_keys_plus_device(sshd, tiny_tflite, tmp_path):
    quick = ("--runs", "100", "--warmup", "10", "--throughput-images", "256")
    local = run_cli("bench", str(tiny_tflite), "--json", *quick)
    assert local.returncode == 0, local.stderr
    local_result = json.loads(local.stdout)

    run = run_cli("bench", str(tiny_tflite), "--json", *quick,
                  *_remote_argv(sshd, "--remote-python", sys.executable))
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert set(result) == set(local_result) | {"remote"}
    assert result["machine"]["machine"] == local_result["machine"]["machine"]
    assert result["runs"] == 100 and result["warmup"] == 10  # the options travelled
    assert result["model"] != local_result["model"]  # measured on the device's copy
    device = result["remote"]
    assert device["host"] == sshd["destination"] and device["runtime_source"] == "installed"
    assert device["machine"] == os.uname().machine and device["cores"] >= 1 and device["backend"]["name"]

    # Both results in one device x variant table (and a plot).
    (tmp_path / "local.json").write_text(local.stdout)
    (tmp_path / "remote.json").write_text(run.stdout)
    table = report_devices.compare_devices([tmp_path / "local.json", tmp_path / "remote.json"])
    assert table["variants"] == [tiny_tflite.stem] and len(table["devices"]) == 2
    p50s = sorted(table["cells"][d][tiny_tflite.stem]["p50_us"] for d in table["devices"])
    assert p50s == sorted([local_result["latency_us"]["p50"], result["latency_us"]["p50"]])
    text = report_devices.format_device_tables(table)
    assert all(d in text for d in table["devices"]) and "p50 latency" in text
    assert plots.plot_devices(table, tmp_path / "devices.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_remote_bench_copies_edgemnist_when_the_device_lacks_it(sshd, tiny_tflite, tmp_path):
    old = tmp_path / "old" / "edgemnist"  # the device has another edgemnist version installed
    old.mkdir(parents=True)
    (old / "__init__.py").write_text('__version__ = "0.0.0-old"\n')
    device_python = tmp_path / "device-python"
    device_python.write_text(f"#!/bin/sh\nPYTHONPATH=${{PYTHONPATH:+$PYTHONPATH:}}{old.parent} exec {sys.executable} \"$@\"\n")
    device_python.chmod(0o755)
    assert remote.probe_device(_config(sshd, python=str(device_python)))["edgemnist"] == "0.0.0-old"

    result = remote.bench_remote(_config(sshd, python=str(device_python)), tiny_tflite, ["--runs", "20"])
    assert result["runs"] == 20 and result["latency_us"]["p50"] > 0
    assert result["remote"]["runtime_source"] == "copied"
    assert result["remote"]["edgemnist"] == "0.0.0-old"


@pytest.mark.slow
def test_cli_failure_is_one_line_and_exit_2(sshd, tiny_tflite):
    run = run_cli("bench", str(tiny_tflite), "--json",
                  *_remote_argv(sshd, "--remote-python", "/nonexistent/python"))
    assert run.returncode == 2
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Python not found on the device" in lines[0]


def test_package_zip_is_the_device_install(tmp_path):
    import zipfile

    names = set(zipfile.ZipFile(remote._package_zip(tmp_path / "p.zip")).namelist())
    assert "edgemnist/cli.py" in names and "edgemnist/measure/remote.py" in names and "edgemnist/runtime/interpreter.py" in names
    assert not any(n.startswith(("edgemnist/training/", "edgemnist/export/", "edgemnist/micro/")) for n in names)
    assert "edgemnist/data/augment.py" not in names and "edgemnist/data/download.py" not in names
    assert "edgemnist/data/mnist/t10k-images-idx3-ubyte.gz" in names
    assert not any(n.startswith("edgemnist/data/mnist/train-") for n in names)
