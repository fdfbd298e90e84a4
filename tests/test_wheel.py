"""A Raspberry Pi gets edgemnist as a wheel: built with `python -m build`, installed into a fresh virtual
environment without the source tree and without TensorFlow, it reads a photo with the shipped model and
serves one request, so a package-data file missing from the wheel fails here.

Needs the package registry (pip installs numpy, Pillow and ai-edge-litert into the fresh environment), as
`pip install .` on a Pi does.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from _helpers import free_port, serving
from edgemnist import data

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _clean_env() -> dict:
    """The environment of a user's shell: nothing that points Python at the source tree."""
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "EDGEMNIST_DATA")
    return {k: v for k, v in os.environ.items() if k not in drop}


@pytest.fixture(scope="module")
def device_install(tmp_path_factory):
    """(the fresh venv's bin folder, the wheel): edgemnist's wheel installed as a Pi would install it."""
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    built = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
                           capture_output=True, text=True, timeout=600, env=_clean_env())
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    wheel = next(dist.glob("edgemnist-*.whl"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    installed = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                                "--disable-pip-version-check", str(wheel)],
                               capture_output=True, text=True, timeout=900, env=_clean_env(), cwd=base)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return venv / "bin", wheel


def test_the_wheel_carries_the_shipped_models_page_and_data(device_install):
    _, wheel = device_install
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ("edgemnist/runtime/models/mnist_int8.tflite", "edgemnist/runtime/models/mnist_int8.tflite.json",
                     "edgemnist/runtime/models/mnist_float32.tflite",
                     "edgemnist/runtime/models/mnist_float32.tflite.json",
                     "edgemnist/runtime/gate/digit_gate_int8.tflite", "edgemnist/static/index.html",
                     "edgemnist/data/mnist/t10k-images-idx3-ubyte.gz"):
        assert expected in names, expected
    assert not any(name.startswith(("tests/", "benchmarks/", "tools/")) for name in names)


def test_the_device_install_has_no_tensorflow_and_reads_a_photo(device_install, tmp_path):
    bin_dir, _ = device_install
    python = str(bin_dir / "python")
    probe = subprocess.run([python, "-c", "import importlib.util as u; print(u.find_spec('tensorflow') is None, "
                            "u.find_spec('edgemnist').origin)"],
                           capture_output=True, text=True, cwd=tmp_path, env=_clean_env(), timeout=120)
    no_tf, origin = probe.stdout.split()
    assert no_tf == "True" and str(bin_dir.parent) in origin  # the installed copy, not the checkout
    split = data.load_split("test", limit=3)
    for index in range(3):
        photo = tmp_path / f"digit{index}.jpg"
        Image.fromarray(255 - split.images[index], "L").resize((200, 200)).convert("RGB").save(photo, quality=85)
    result = subprocess.run([str(bin_dir / "edgemnist"), "predict", *sorted(p.name for p in tmp_path.glob("*.jpg")),
                             "--json"], capture_output=True, text=True, cwd=tmp_path, env=_clean_env(), timeout=300)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert str(bin_dir.parent) in out["model"] and out["model"].endswith("mnist_int8.tflite")
    assert [p["digit"] for p in out["predictions"]] == [int(label) for label in split.labels]
    info = json.loads(subprocess.run([str(bin_dir / "edgemnist"), "info", "--json"], capture_output=True, text=True,
                                     cwd=tmp_path, env=_clean_env(), timeout=120).stdout)
    assert all("error" not in row and row["test_accuracy"] >= 0.99 for row in info["shipped_models"])


def test_the_device_install_serves_a_request(device_install, tmp_path):
    bin_dir, _ = device_install
    split = data.load_split("test", limit=1)
    photo = tmp_path / "digit.jpg"
    Image.fromarray(255 - split.images[0], "L").resize((200, 200)).convert("RGB").save(photo, quality=85)
    port = free_port()
    command = [str(bin_dir / "edgemnist"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    with serving(command, port, tmp_path / "serve.log", cwd=tmp_path, env=_clean_env()) as base:
        request = urllib.request.Request(f"{base}predict", data=photo.read_bytes(), method="POST",
                                         headers={"Content-Type": "image/jpeg"})
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        assert answer["digit"] == int(split.labels[0])
        with urllib.request.urlopen(base, timeout=30) as response:
            assert b"<canvas" in response.read()
