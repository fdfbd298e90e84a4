"""Describe the machine a measurement runs on: CPU, usable cores, OS, Python, interpreter packages.

Usage: python -m edgemnist.runtime.machine [--mkdtemp]      (prints one JSON object, `describe_device`'s)

`bench` and `compare` tag their results with `machine_info()`; `bench --remote` runs this
same file on the device to learn what it is (`describe_device`), so local and remote
results name CPUs and count cores alike. On the device edgemnist may not be installed:
remote.py sends this file's source to the device's `python3 -` over SSH. That is why this
module imports nothing from edgemnist and only the standard library, and keeps to the
syntax of Python 3.6 (the oldest Python a board may bring).
"""
import hashlib
import importlib
import importlib.util
import json
import os
import platform
import sys
import tempfile

# Interpreter packages as edgemnist.runtime names them, in the order it tries them; this
# module cannot import the runtime (it runs where edgemnist may be absent).
_BACKEND_DISTRIBUTIONS = (("ai_edge_litert", "ai-edge-litert"), ("tflite_runtime", "tflite-runtime"))
# /proc/cpuinfo keys that name the CPU (x86 "model name"; a Raspberry Pi's "Model"; other
# Arm boards' "Hardware"), most telling first.
_CPU_KEYS = ("model name", "Model", "Hardware", "Processor", "cpu model")


def read_text(path):
    """The text of a small system file, stripped of NULs and blanks; None when unreadable or empty."""
    try:
        with open(path, "rb") as fh:
            return fh.read().decode("utf-8", "replace").strip("\x00 \n") or None
    except OSError:
        return None


def cpu_model():
    """The CPU's name as the OS gives it (/proc/cpuinfo), else platform.processor() or the machine."""
    fields = {}
    for line in (read_text("/proc/cpuinfo") or "").splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    for key in _CPU_KEYS:
        if fields.get(key):
            return fields[key]
    return platform.processor() or platform.machine()


def usable_cores():
    """The cores this process may run on (its CPU affinity where the OS has one, else all)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


def _distribution_version(distribution):
    try:
        from importlib import metadata
        return metadata.version(distribution)
    except Exception:  # noqa: BLE001 - Python < 3.8 has no importlib.metadata; or not installed
        return None


def interpreter_backend():
    """{"name", "version"} of the first TFLite interpreter package installed, or None.

    tf.lite counts when TensorFlow is installed; it is found, not imported (far too slow here).
    """
    for name, distribution in _BACKEND_DISTRIBUTIONS:
        try:
            importlib.import_module(name + ".interpreter")
        except Exception:  # noqa: BLE001 - any failure to import means this backend is unusable
            continue
        return {"name": name, "version": _distribution_version(distribution)}
    if importlib.util.find_spec("tensorflow") is not None:
        return {"name": "tf.lite", "version": _distribution_version("tensorflow")}
    return None


def package_version(name):
    """The version of an importable package ("unknown" when it has none), or None when absent."""
    try:
        module = __import__(name)
    except Exception:  # noqa: BLE001 - absent or broken: either way not usable
        return None
    return getattr(module, "__version__", None) or _distribution_version(name) or "unknown"


def source_digest(name):
    """sha256 over a pure-Python package's .py files (relative path and bytes, sorted), or None.

    Equal digests here and on a device mean the device would run exactly the code this
    machine runs.
    """
    try:
        root = os.path.dirname(__import__(name).__file__)
    except Exception:  # noqa: BLE001 - absent or broken package: no digest
        return None
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        files += [os.path.join(folder, n) for n in names if n.endswith(".py")]
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: os.path.relpath(p, root).replace(os.sep, "/")):
        digest.update(os.path.relpath(path, root).replace(os.sep, "/").encode() + b"\0")
        with open(path, "rb") as fh:
            digest.update(fh.read() + b"\0")
    return digest.hexdigest()


def x86_host_under_arm():
    """Whether this Arm Python is emulated by qemu-user on an x86 host.

    qemu-user passes the host's /proc/cpuinfo through: an Arm Python reading an x86 CPU
    description is being emulated, and its timings say nothing about a board.
    """
    text = read_text("/proc/cpuinfo") or ""
    arch = platform.machine().lower()
    arm = arch in ("aarch64", "arm64") or arch.startswith("arm")
    return arm and ("GenuineIntel" in text or "AuthenticAMD" in text or "\nflags" in text)


def describe_device(make_workdir=False):
    """This machine as `bench --remote` tags a device.

    Args:
        make_workdir: also make a temporary working folder (for the remote benchmark).

    Returns:
        {"device" (on a Raspberry Pi /proc/device-tree/model, else the CPU model; "emulated
        ..." under qemu-user), "cpu", "machine", "emulated", "cores", "os", "python",
        "python_executable", "numpy", "backend" ({"name", "version"} or None), "edgemnist"
        (version or None), "edgemnist_digest" (sha256 of its .py files or None), "workdir"
        (the folder made, or None)}.
    """
    emulated = x86_host_under_arm()
    name = read_text("/proc/device-tree/model") or cpu_model()
    if emulated:
        name = "emulated %s (qemu-user on %s)" % (platform.machine(), cpu_model())
    return {
        "device": name,
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "emulated": emulated,
        "cores": usable_cores(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "numpy": package_version("numpy"),
        "backend": interpreter_backend(),
        "edgemnist": package_version("edgemnist"),
        "edgemnist_digest": source_digest("edgemnist"),
        "workdir": tempfile.mkdtemp(prefix="edgemnist-remote-") if make_workdir else None,
    }


def machine_info():
    """The machine a measurement ran on, as bench and compare results carry it.

    Returns:
        {"cpu", "cores", "machine", "system", "python", "numpy", "hostname"}.
    """
    return {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "machine": platform.machine(),
        "system": platform.platform(),
        "python": platform.python_version(),
        "numpy": package_version("numpy"),
        "hostname": platform.node(),
    }


def main(argv=None):
    """Prints `describe_device` as one JSON line; `--mkdtemp` also makes the working folder."""
    argv = sys.argv[1:] if argv is None else argv
    print(json.dumps(describe_device(make_workdir="--mkdtemp" in argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
