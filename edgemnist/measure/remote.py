"""Benchmark a .tflite on another machine over SSH: copy it there, run `edgemnist bench`, tag the device.

Usage: edgemnist bench --remote pi@raspberrypi.local MODEL.tflite --json

The device needs Python 3 with numpy and a TFLite interpreter (ai-edge-litert or
tflite-runtime). First the source of edgemnist/runtime/machine.py goes to the device's Python on
stdin: it describes the device and makes a working folder there. Then edgemnist itself is
copied over (a zip of its TensorFlow-free part, `_device_file`, plus the MNIST test split) unless the
device's own edgemnist is exactly this code (the same sha256 over its .py files), so every
device measures with the same benchmark code. Everything runs through the `ssh` and `scp`
programs in batch mode (keys only, never a password prompt), each with a time limit, and
the temporary folder on the device is removed afterwards. Tables of several devices'
results are `compare`'s (measure/devices.py).

Failures are one line: a host that cannot be reached, a refused key or a missing Python
raise `RemoteSetupError` (a ValueError: the CLI exits 2, the destination or its options
need fixing); a benchmark that fails on the device raises `RemoteRunError` (exit 1).
"""
from __future__ import annotations

import inspect
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from edgemnist.runtime import machine

# Options of the local `bench` command that do not travel to the device: they are about
# where the result goes here, or about the SSH connection itself.
_LOCAL_ONLY_DESTS = {"json", "out", "output", "json_out", "data_dir", "help", "func", "command"}
_REMOTE_DESTS = {
    "remote", "remote_python", "ssh_options", "identity", "port",
    "connect_timeout", "remote_timeout", "_remote_parser",
}
_STEP_TIMEOUT_S = 120.0  # probe, copy and clean-up; the benchmark has its own limit
_SSH_UNREACHABLE = re.compile(
    r"could not resolve|connection refused|connection timed out|no route to host|"
    r"network is unreachable|operation timed out|connection closed|connection reset|"
    r"banner exchange", re.IGNORECASE)
_SSH_AUTH = re.compile(r"permission denied|too many authentication failures|"
                       r"no more authentication methods", re.IGNORECASE)

class RemoteSetupError(ValueError):
    """The device cannot be used as given (unreachable, key refused, no Python or interpreter)."""


class RemoteRunError(RuntimeError):
    """The benchmark started on the device but failed there."""


@dataclass(frozen=True)
class RemoteConfig:
    """How to reach the device and how long to wait for it."""

    destination: str  # [user@]host, as ssh takes it
    python: str = "python3"  # the Python on the device
    port: Optional[int] = None  # SSH port (ssh's default, 22, when None)
    identity: Optional[str] = None  # private key file; only this key is offered when set
    ssh_options: tuple[str, ...] = ()  # extra `-o KEY=VALUE` options; they win over the defaults
    connect_timeout: float = 10.0  # seconds to open the SSH connection
    timeout: float = 600.0  # seconds for the benchmark on the device

    def __post_init__(self):
        if not self.destination or self.destination.startswith("-") or any(c.isspace() for c in self.destination):
            raise ValueError(f"--remote must be [user@]host, got {self.destination!r}")
        if not self.python or any(c in self.python for c in "\n\r\x00"):
            raise ValueError(f"--remote-python must be a program name or path, got {self.python!r}")
        if self.port is not None and not 1 <= self.port <= 65535:
            raise ValueError(f"--port must be in 1..65535, got {self.port}")
        if self.identity is not None and not Path(self.identity).is_file():
            raise FileNotFoundError(f"{self.identity}: no such identity (private key) file")
        for option in self.ssh_options:
            key, sep, value = option.partition("=")
            if not sep or not key.strip() or not value.strip() or "\n" in option:
                raise ValueError(f"--ssh-option must be KEY=VALUE, got {option!r}")
        if not self.connect_timeout > 0:
            raise ValueError(f"--connect-timeout must be positive, got {self.connect_timeout}")
        if not self.timeout > 0:
            raise ValueError(f"--remote-timeout must be positive, got {self.timeout}")

    def options(self) -> list[str]:
        """`-o` options shared by ssh and scp. The user's come first: ssh keeps the first value."""
        opts = []
        for option in self.ssh_options:
            opts += ["-o", option]
        defaults = [
            "BatchMode=yes",  # never prompt for a password or a host key
            f"ConnectTimeout={max(1, round(self.connect_timeout))}",
            "StrictHostKeyChecking=accept-new",  # trust a new host, refuse a changed key
            "ServerAliveInterval=5",
            "ServerAliveCountMax=3",
            "LogLevel=ERROR",
        ]
        if self.identity:
            defaults += [f"IdentityFile={self.identity}", "IdentitiesOnly=yes"]
        for option in defaults:
            opts += ["-o", option]
        return opts

    def ssh_command(self, remote_command: str) -> list[str]:
        """The ssh argv that runs one shell command line on the device."""
        port = ["-p", str(self.port)] if self.port else []
        return ["ssh", *self.options(), *port, "-T", self.destination, "--", remote_command]

    def scp_command(self, sources: Sequence[str], remote_dir: str) -> list[str]:
        """The scp argv that copies local files into a folder on the device."""
        port = ["-P", str(self.port)] if self.port else []
        return ["scp", "-q", *self.options(), *port, *sources, f"{self.destination}:{remote_dir}/"]


def add_remote_arguments(parser) -> None:
    """Adds --remote and its SSH options to the `bench` parser.

    Args:
        parser: the argparse parser of `edgemnist bench`.
    """
    group = parser.add_argument_group(
        "remote device (SSH)",
        "Run the same benchmark on another machine, e.g. a Raspberry Pi, and print its result "
        "here, tagged with the device. Needs key-based SSH login and, on the device, Python 3 "
        "with numpy and ai-edge-litert (or tflite-runtime).",
    )
    group.add_argument("--remote", metavar="USER@HOST", help="benchmark on this SSH destination instead of here")
    group.add_argument("--remote-python", default=RemoteConfig.python, metavar="PATH",
                       help="the Python on the device (default: %(default)s)")
    group.add_argument("--identity", "-i", metavar="KEY", help="SSH private key file (only this key is offered)")
    group.add_argument("--port", type=int, metavar="P", help="SSH port (default: ssh's, 22)")
    group.add_argument("--ssh-option", dest="ssh_options", action="append", default=[], metavar="KEY=VALUE",
                       help="extra ssh/scp -o option, repeatable; overrides edgemnist's defaults "
                            "(BatchMode=yes, ConnectTimeout, StrictHostKeyChecking=accept-new)")
    group.add_argument("--connect-timeout", type=float, default=RemoteConfig.connect_timeout, metavar="S",
                       help="seconds to wait for the SSH connection (default: %(default)s)")
    group.add_argument("--remote-timeout", type=float, default=RemoteConfig.timeout, metavar="S",
                       help="seconds the benchmark may run on the device (default: %(default)s)")
    parser.set_defaults(_remote_parser=parser)


def config_from_args(args) -> RemoteConfig:
    """Builds the RemoteConfig from parsed `bench --remote` arguments."""
    return RemoteConfig(
        destination=args.remote,
        python=args.remote_python,
        port=args.port,
        identity=args.identity,
        ssh_options=tuple(args.ssh_options or ()),
        connect_timeout=args.connect_timeout,
        timeout=args.remote_timeout,
    )


def run_remote(args) -> dict:
    """Runs `edgemnist bench` on the `--remote` device with the same options as given here.

    Args:
        args: the parsed `edgemnist bench` arguments (parser extended by add_remote_arguments);
            `args.model` is the local .tflite file.

    Returns:
        The device's bench JSON (the same keys as a local run, measured there) plus "remote":
        {"host", "device" (on a Pi /proc/device-tree/model, else the CPU model), "emulated",
        "cpu", "machine", "cores", "os", "python", "python_executable", "numpy", "backend"
        {"name", "version"}, "edgemnist" and "edgemnist_digest" (what is installed there, or
        None), "runtime_source" ("installed": the device's own edgemnist, identical to this
        one, ran; "copied": this machine's edgemnist was copied over and ran)}.

    Raises:
        FileNotFoundError: the model or identity file does not exist.
        RemoteSetupError: the device cannot be reached or lacks Python, numpy or an interpreter.
        RemoteRunError: the benchmark failed on the device.
    """
    if getattr(args, "data_dir", None):
        raise ValueError("--data-dir names a folder here; with --remote the device benchmarks on its "
                         "shipped MNIST test digits (drop --data-dir)")
    config = config_from_args(args)
    bench_args = forwarded_bench_args(getattr(args, "_remote_parser", None), args)
    return bench_remote(config, args.model, bench_args)


def forwarded_bench_args(parser, args) -> list[str]:
    """The optional `bench` arguments that differ from their defaults, as device-side argv.

    The model positional, --json and the SSH options stay here; everything else (runs,
    warm-up, threads, ...) travels so the device measures exactly what was asked.
    """
    if parser is None:
        return []
    argv: list[str] = []
    for action in parser._actions:  # argparse has no public list of a parser's options
        dest = action.dest
        if not action.option_strings or dest in _LOCAL_ONLY_DESTS or dest in _REMOTE_DESTS:
            continue
        value = getattr(args, dest, action.default)
        if value == action.default or value is None:
            continue
        flag = next((s for s in action.option_strings if s.startswith("--")), action.option_strings[0])
        if action.nargs == 0:  # store_true / store_false / store_const / count
            if isinstance(value, int) and not isinstance(value, bool) and action.const is None:
                argv += [flag] * int(value)
            else:
                argv.append(flag)
        elif isinstance(value, (list, tuple)):
            if action.nargs in (None, "?"):  # an "append" option: the flag once per item
                for item in value:
                    argv += [flag, str(item)]
            else:
                argv += [flag, *(str(v) for v in value)]
        else:
            argv += [flag, str(value)]
    return argv


def bench_remote(config: RemoteConfig, model_path: str | os.PathLike, bench_args: Sequence[str] = ()) -> dict:
    """Copies a model to the device, runs `edgemnist bench --json` there and tags the result.

    Args:
        config: the destination and its SSH settings.
        model_path: the local .tflite file.
        bench_args: further `edgemnist bench` options for the device (e.g. ["--runs", "200"]).

    Returns:
        The device's bench JSON plus a "remote" dict (see run_remote).

    Raises:
        FileNotFoundError, RemoteSetupError, RemoteRunError: see run_remote.
    """
    model_path = Path(model_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"{model_path}: no such model file")
    for program in ("ssh", "scp"):
        if shutil.which(program) is None:
            raise RuntimeError(f"`{program}` not found on this machine; install OpenSSH's client (apt-get install openssh-client)")

    device = probe_device(config, make_workdir=True)
    workdir = device.pop("workdir")
    try:
        # The device's own edgemnist runs only when it is exactly this code; else ours travels.
        same_code = device.get("edgemnist_digest") == machine.source_digest("edgemnist")
        runtime_source = "installed" if same_code else "copied"
        with tempfile.TemporaryDirectory(prefix="edgemnist-remote-") as staging:
            sources = [str(model_path)]
            if not same_code:
                sources.append(str(_package_zip(Path(staging) / "edgemnist.zip")))
            _run(config.scp_command(sources, workdir), config, _STEP_TIMEOUT_S, f"copy {model_path.name}")

        q = shlex.quote
        remote_model = f"{workdir}/{model_path.name}"
        bench = " ".join(q(a) for a in [config.python, "-m", "edgemnist", "bench", remote_model, "--json", *bench_args])
        if same_code:
            command = f"cd {q(workdir)} && {bench}"
        else:
            command = (f"cd {q(workdir)} && {q(config.python)} -m zipfile -e edgemnist.zip pkg "
                       f"&& PYTHONPATH={q(workdir + '/pkg')}${{PYTHONPATH:+:$PYTHONPATH}} {bench}")
        completed = _run(config.ssh_command(command), config, config.timeout, "benchmark", check=False)
        if completed.returncode != 0:
            raise RemoteRunError(
                f"{config.destination}: edgemnist bench failed on the device (exit {completed.returncode}): "
                f"{_last_line(completed.stderr) or 'no message'}"
            )
        result = _parse_json(completed.stdout, config.destination)
    finally:
        _cleanup(config, workdir)

    result["remote"] = {"host": config.destination, **device, "runtime_source": runtime_source}
    print(describe_result_device(result), file=sys.stderr)
    return result


def describe_result_device(result: dict) -> str:
    """One line naming where a remote result was measured, with a warning when emulated."""
    device = result.get("remote") or {}
    backend = device.get("backend") or {}
    line = (f"measured on {device.get('host')}: {device.get('device')} ({device.get('machine')}, "
            f"{device.get('cores')} cores, Python {device.get('python')}, "
            f"{backend.get('name')} {backend.get('version')}, {device.get('runtime_source')} edgemnist)")
    if device.get("emulated"):
        line += " -- EMULATED: these timings are the emulator's, not a board's"
    return line


def probe_device(config: RemoteConfig, make_workdir: bool = False) -> dict:
    """Describes the device as `machine.describe_device` does, with "workdir" made there when asked.

    The device runs edgemnist/runtime/machine.py itself: its source goes to the device's Python on
    stdin, so the probe needs no edgemnist installed there.

    Raises:
        RemoteSetupError: unreachable, key refused, Python missing, or no numpy/interpreter.
    """
    argv = config.ssh_command(" ".join(shlex.quote(a) for a in [config.python, "-", *(["--mkdtemp"] if make_workdir else [])]))
    completed = _run(argv, config, _STEP_TIMEOUT_S, "probe", stdin=inspect.getsource(machine), check=False)
    if completed.returncode in (126, 127):
        raise RemoteSetupError(
            f"{config.destination}: Python not found on the device: {config.python!r} "
            f"({_last_line(completed.stderr) or 'command not found'}); set --remote-python"
        )
    if completed.returncode != 0:
        raise RemoteSetupError(
            f"{config.destination}: {config.python} failed to run the device probe (exit "
            f"{completed.returncode}): {_last_line(completed.stderr) or 'no message'}"
        )
    device = _parse_json(completed.stdout, config.destination)
    missing = []
    if not device.get("numpy"):
        missing.append("numpy")
    if not device.get("backend"):
        missing.append("a TFLite interpreter (ai-edge-litert or tflite-runtime)")
    if missing:
        if device.get("workdir"):
            _cleanup(config, device["workdir"])
        raise RemoteSetupError(
            f"{config.destination}: {config.python} (Python {device.get('python')}) lacks "
            f"{' and '.join(missing)}; on the device: {config.python} -m pip install numpy ai-edge-litert"
        )
    return device


def _run(argv, config: RemoteConfig, timeout: float, step: str, stdin: Optional[str] = None,
         check: bool = True) -> subprocess.CompletedProcess:
    """Runs ssh/scp with a time limit; connection and key failures become RemoteSetupError."""
    try:
        completed = subprocess.run(argv, input=stdin if stdin is not None else "", capture_output=True,
                                   text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        if step == "benchmark":
            raise RemoteRunError(f"{config.destination}: the benchmark did not finish within {timeout:g} s "
                                 "(raise --remote-timeout)") from None
        raise RemoteSetupError(f"{config.destination}: {step} did not finish within {timeout:g} s") from None
    if completed.returncode == 255:  # ssh's own failure, before or outside the remote command
        message = _last_line(completed.stderr) or "ssh exited with status 255"
        if _SSH_AUTH.search(completed.stderr):
            reason = "SSH login refused (wrong key or user?)"
        elif "host key verification failed" in completed.stderr.lower():
            reason = "host key verification failed (the device's key changed or is unknown)"
        elif _SSH_UNREACHABLE.search(completed.stderr):
            reason = "cannot connect"
        else:
            reason = f"{step} over SSH failed"
        raise RemoteSetupError(f"{config.destination}: {reason}: {message}")
    if check and completed.returncode != 0:
        raise RemoteSetupError(
            f"{config.destination}: {step} failed (exit {completed.returncode}): "
            f"{_last_line(completed.stderr) or 'no message'}"
        )
    return completed


def _cleanup(config: RemoteConfig, workdir: Optional[str]) -> None:
    """Removes the device's working folder; best effort, bounded in time."""
    if not workdir or "edgemnist-remote-" not in workdir:
        return
    try:
        subprocess.run(config.ssh_command(f"rm -rf {shlex.quote(workdir)}"), input="", capture_output=True,
                       timeout=_STEP_TIMEOUT_S)
    except (subprocess.TimeoutExpired, OSError):
        pass


def _parse_json(stdout: str, destination: str) -> dict:
    start = stdout.find("{")
    try:
        if start < 0:
            raise ValueError("no JSON object")
        value = json.loads(stdout[start:])
    except ValueError as exc:
        raise RemoteRunError(f"{destination}: the device printed no JSON result ({exc}): {_last_line(stdout)!r}") from None
    if not isinstance(value, dict):
        raise RemoteRunError(f"{destination}: the device printed {type(value).__name__}, not a JSON object")
    return value


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


# What a device runs: the TensorFlow-free part of edgemnist (the top-level modules, the data
# readers, runtime/ and measure/) and the shipped MNIST test split. Training, export and
# firmware code stays home; cli lists only the commands whose modules are present.
DEVICE_PACKAGES = ("runtime", "measure")
# the data readers: MNIST's files and class folders (folders.py prepares real images with runtime/prepare)
DEVICE_DATA_MODULES = ("data/__init__.py", "data/folders.py")


def _device_file(rel: Path) -> bool:
    """Whether `rel` (a path inside the edgemnist package) belongs to the device install."""
    parts = rel.parts
    if len(parts) == 1:
        return rel.suffix == ".py"
    if parts[0] in DEVICE_PACKAGES:
        return rel.suffix == ".py"
    if rel.as_posix() in DEVICE_DATA_MODULES:
        return True
    return parts[:2] == ("data", "mnist") and (rel.name.startswith("t10k-") or rel.name.startswith("SHA256SUMS"))


def _package_zip(path: Path) -> Path:
    """Zips the device part of edgemnist (`_device_file`) with the MNIST test split."""
    package = Path(__file__).resolve().parent.parent
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(package.rglob("*")):
            if "__pycache__" in file.parts or not file.is_file():
                continue
            if _device_file(file.relative_to(package)):
                zf.write(file, file.relative_to(package.parent).as_posix())
    path.write_bytes(buffer.getvalue())
    return path
