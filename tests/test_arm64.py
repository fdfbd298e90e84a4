"""edgemnist's device install on emulated aarch64 (qemu-user) gives the x86 results.

The sandbox is built by tools/arm64_sandbox.sh (cached in .cache/arm64, or
$EDGEMNIST_ARM64_DIR). Timings under emulation are the emulator's, never a board's: these
tests check correctness only.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# The check is "an x86-64 host and emulated aarch64 give the same results": on any other host
# (an aarch64 CI machine runs the whole suite natively) there is nothing to emulate.
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(platform.machine() != "x86_64",
                                 reason="compares this x86-64 host with emulated aarch64")]

REPO = Path(__file__).resolve().parents[1]
SANDBOX_SCRIPT = REPO / "tools" / "arm64_sandbox.sh"
N_DIGITS = 1000  # 99.9 % agreement then allows at most one differing prediction
VARIANTS = ("float32", "int8")

# Runs on both machines: scores of the first N test digits for each model given.
PREDICT = r"""
import json, platform, sys
import numpy as np
from edgemnist import data
from edgemnist.runtime import Runner
n, paths = int(sys.argv[1]), sys.argv[2:]
test = data.load_split("test", limit=n)
images = data.to_model_input(test.images)
out = {"machine": platform.machine(), "labels": test.labels.tolist(), "models": {}}
for path in paths:
    runner = Runner(path, trusted=True)  # the emulated child-process check runs once, in the eval command below
    out["backend"] = runner.backend.describe()
    out["models"][path] = runner.predict(images).tolist()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def arm64_python():
    """The emulated aarch64 Python launcher, built (or refreshed) by tools/arm64_sandbox.sh."""
    if not shutil.which("dpkg") or not shutil.which("apt-get"):
        pytest.skip("the aarch64 sandbox needs a Debian-like system (dpkg, apt-get)")
    if not shutil.which("qemu-aarch64-static") and os.geteuid() != 0:
        pytest.skip("qemu-aarch64-static is missing and cannot be installed without root")
    sandbox = Path(os.environ.get("EDGEMNIST_ARM64_DIR", REPO / ".cache" / "arm64"))
    built = subprocess.run(["bash", str(SANDBOX_SCRIPT), str(sandbox)], capture_output=True, text=True,
                           timeout=900, env=dict(os.environ, PYTHON=sys.executable))
    assert built.returncode == 0, f"arm64_sandbox.sh failed:\n{built.stderr[-3000:]}"
    return sandbox / "bin" / "python3"


@pytest.fixture(scope="module")
def tflite_models(tflite_variants):
    """float32 and int8 (full integer, calibrated) exports of the session's trained ds_cnn."""
    return {v: tflite_variants[v] for v in VARIANTS}


def _predict(python, models: dict) -> dict:
    paths = [str(models[v]) for v in VARIANTS]
    run = subprocess.run([str(python), "-c", PREDICT, str(N_DIGITS), *paths], capture_output=True, text=True,
                         timeout=600, cwd="/")  # cwd: import edgemnist from the sandbox, not the checkout
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout)
    result["models"] = {v: np.asarray(result["models"][str(models[v])], np.float32) for v in VARIANTS}
    return result


@pytest.fixture(scope="module")
def predictions(arm64_python, tflite_models):
    """Scores of the same digits on this x86 machine and on emulated aarch64."""
    return {"x86": _predict(sys.executable, tflite_models), "arm64": _predict(arm64_python, tflite_models)}


def test_sandbox_python_is_aarch64_and_labelled_emulated(arm64_python):
    code = "import json; from edgemnist.runtime import machine; print(json.dumps(machine.describe_device()))"
    run = subprocess.run([str(arm64_python), "-c", code], capture_output=True, text=True, timeout=300, cwd="/")
    assert run.returncode == 0, run.stderr[-3000:]
    device = json.loads(run.stdout)
    assert device["machine"] == "aarch64"
    assert device["emulated"] is True and device["device"].startswith("emulated aarch64")
    assert device["backend"]["name"] == "ai_edge_litert"


def test_models_run_on_aarch64(predictions):
    assert predictions["x86"]["machine"] == "x86_64"
    assert predictions["arm64"]["machine"] == "aarch64"
    assert "ai_edge_litert" in predictions["arm64"]["backend"]
    for variant in VARIANTS:
        assert predictions["arm64"]["models"][variant].shape == (N_DIGITS, 10)


@pytest.mark.parametrize("variant", VARIANTS)
def test_aarch64_accuracy_equals_x86(predictions, variant):
    labels = np.asarray(predictions["x86"]["labels"])
    accuracy = {m: float(np.mean(predictions[m]["models"][variant].argmax(1) == labels)) for m in ("x86", "arm64")}
    assert accuracy["x86"] > 0.5, f"the test model did not learn ({accuracy})"
    assert accuracy["arm64"] == accuracy["x86"]


def test_int8_predictions_agree_with_x86(predictions):
    x86, arm = predictions["x86"]["models"]["int8"], predictions["arm64"]["models"]["int8"]
    agreement = float(np.mean(x86.argmax(1) == arm.argmax(1)))
    assert agreement >= 0.999, f"int8 argmax agreement {agreement:.4%} on {N_DIGITS} digits"


def test_float32_scores_match_x86(predictions):
    x86, arm = predictions["x86"]["models"]["float32"], predictions["arm64"]["models"]["float32"]
    np.testing.assert_allclose(arm, x86, atol=1e-4)


def _cli_json(python, *argv: str, env=None) -> dict:
    run = subprocess.run([str(python), "-m", "edgemnist.cli", *argv, "--json"], capture_output=True, text=True,
                         timeout=600, cwd="/", env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


def test_cli_eval_and_bench_run_under_emulation(arm64_python, tflite_models):
    # each emulated command costs seconds of start-up (Python, numpy, the model's child-process check):
    # eval reads the int8 model as a user runs it (the check included), bench the float32 one with the
    # check skipped (EDGEMNIST_TRUST_MODELS: it ran for eval; the predictions above compare both variants)
    model = str(tflite_models["int8"])
    on_x86 = _cli_json(sys.executable, "eval", model, "--test-limit", "300")
    on_arm = _cli_json(arm64_python, "eval", model, "--test-limit", "300")
    assert on_arm["n"] == on_x86["n"] == 300
    assert on_arm["accuracy"] == on_x86["accuracy"]

    bench = _cli_json(arm64_python, "bench", str(tflite_models["float32"]), "--runs", "30", "--warmup", "5",
                      "--throughput-images", "256", env={**os.environ, "EDGEMNIST_TRUST_MODELS": "1"})
    # Emulated timings: only their presence is checked, never their size.
    assert bench["machine"]["machine"] == "aarch64" and bench["model"].endswith("model_float32.tflite")
    assert bench["backend"] == "ai_edge_litert" and bench["backend_version"] == "1.4.0"
    assert bench["runs"] == 30 and bench["latency_us"]["p50"] > 0
