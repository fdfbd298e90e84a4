"""edgemnist.runtime.machine: one description of the machine, here and (as a program on stdin) on a device."""
from __future__ import annotations

import ast
import inspect
import json
import os
import platform
import shutil
import subprocess
import sys

from edgemnist import __version__
from edgemnist.runtime import machine

_STDLIB = set(getattr(sys, "stdlib_module_names", ())) or {
    "hashlib", "importlib", "json", "os", "platform", "sys", "tempfile"}


def test_machine_info_names_the_cpu_and_counts_usable_cores():
    info = machine.machine_info()
    assert set(info) == {"cpu", "cores", "machine", "system", "python", "numpy", "hostname"}
    assert info["cpu"] == machine.cpu_model() and info["machine"] == platform.machine()
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert info["cores"] == machine.usable_cores() == expected >= 1


def test_bench_and_a_remote_device_describe_this_machine_alike():
    device, info = machine.describe_device(), machine.machine_info()
    assert (device["cpu"], device["cores"], device["machine"]) == (info["cpu"], info["cores"], info["machine"])
    assert device["edgemnist"] == __version__ and device["workdir"] is None
    assert device["edgemnist_digest"] == machine.source_digest("edgemnist")


def test_module_runs_as_a_program():
    run = subprocess.run([sys.executable, "-m", "edgemnist.runtime.machine", "--mkdtemp"], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    device = json.loads(run.stdout)
    try:
        assert os.path.isdir(device["workdir"]) and "edgemnist-remote-" in device["workdir"]
        assert device["backend"]["name"] in ("ai_edge_litert", "tflite_runtime", "tf.lite")
    finally:
        shutil.rmtree(device["workdir"], ignore_errors=True)


def test_source_runs_on_stdin_with_nothing_but_the_standard_library():
    """What `bench --remote` does on a device: the file's source, piped into `python -`."""
    run = subprocess.run([sys.executable, "-I", "-S", "-"], input=inspect.getsource(machine),
                         capture_output=True, text=True, timeout=120, cwd="/")
    assert run.returncode == 0, run.stderr
    device = json.loads(run.stdout)
    assert device["edgemnist"] is None and device["numpy"] is None and device["backend"] is None
    assert device["cores"] == machine.usable_cores() and device["workdir"] is None


def test_source_is_python_3_6_and_imports_only_the_standard_library():
    tree = ast.parse(inspect.getsource(machine), feature_version=(3, 6))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported and imported <= _STDLIB, imported - _STDLIB
    assert "__future__" not in imported  # `annotations` needs 3.7
