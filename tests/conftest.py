"""Shared fixtures: small real MNIST subsets, one tiny trained model and one firmware folder per test session."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from edgemnist import data  # noqa: E402

TRAIN_SUBSET = 3000
TEST_SUBSET = 500

# Comma-separated groups of tests that must run here (CI sets it: .ci/run): a test of a named group that
# cannot run (its browser, GPU or toolchain missing) fails instead of skipping, so a broken set-up is not
# a green run. Groups: browser (tests/test_serve_page.py); gpu, cortex-m, avr as their tests adopt it.
REQUIRE_GROUPS = "EDGEMNIST_REQUIRE_GROUPS"


def required_groups() -> frozenset:
    """The groups EDGEMNIST_REQUIRE_GROUPS names (empty when it is unset)."""
    return frozenset(g.strip() for g in os.environ.get(REQUIRE_GROUPS, "").split(",") if g.strip())


def skip_or_fail(group: str, reason: str) -> None:
    """Skips the running test (or fixture) with `reason`, or fails it when EDGEMNIST_REQUIRE_GROUPS names `group`.

    Usage: from conftest import skip_or_fail; skip_or_fail("browser", "no chromium: apt-get install chromium")
    """
    if group in required_groups():
        pytest.fail(f"{reason} ({REQUIRE_GROUPS} names {group!r}: these tests must run here)", pytrace=False)
    pytest.skip(f"{group}: {reason}")


@pytest.fixture
def cortex_m_tools():
    """Skips a test that builds firmware for a Cortex-M core where the Arm toolchain, QEMU or a TFLite Micro tree is
    missing (fails instead where EDGEMNIST_REQUIRE_GROUPS names cortex-m). Usage: @pytest.mark.usefixtures."""
    from _helpers import cortex_m_missing

    missing = cortex_m_missing()
    if missing:
        skip_or_fail("cortex-m", f"Cortex-M build unavailable: {missing}")


def made_once(tmp_path_factory, name: str, make):
    """What `make(folder)` returns, made once per test run even when pytest-xdist runs it in several workers.

    A session fixture is made once per worker process; the costly ones (a trained model, the firmware's arena
    bisection) go through here instead: the first worker to ask makes it in a folder all workers share (the
    run's base temp folder) under a file lock and records the result as JSON; the others wait and read it.
    `make` must return something JSON can hold (paths as str). Without xdist it is simply make(a new folder).
    """
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return make(tmp_path_factory.mktemp(name))
    import fcntl

    root = tmp_path_factory.getbasetemp().parent  # pytest-of-USER/pytest-N/: shared by this run's workers
    with open(root / f"{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        folder, record = root / name, root / f"{name}.json"
        if record.is_file():
            return json.loads(record.read_text(encoding="utf-8"))
        shutil.rmtree(folder, ignore_errors=True)  # a worker that failed making it left a part
        folder.mkdir()
        made = make(folder)
        tmp = record.with_suffix(".tmp")
        tmp.write_text(json.dumps(made), encoding="utf-8")
        tmp.replace(record)
        return made


def pytest_collection_modifyitems(config, items):
    """Test files with slow tests run first (a stable sort: within each part, the usual order).

    Under pytest-xdist (`--dist loadfile`, as the README's test command runs) a file goes whole to one worker, and
    xdist hands the files out by their number of tests, most first (its default `--loadscope-reorder`): this order
    only breaks ties there (docs/design.md, "The test run")."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


@pytest.fixture(scope="session")
def mnist_train():
    """The first 3,000 real MNIST training digits."""
    return data.load_split("train", limit=TRAIN_SUBSET)


@pytest.fixture(scope="session")
def mnist_test():
    """The first 500 real MNIST test digits."""
    return data.load_split("test", limit=TEST_SUBSET)


@pytest.fixture(scope="session")
def trained_model_path(tmp_path_factory):
    """The default ds_cnn trained with `edgemnist.training.train` for 2 epochs on 3,000 digits (batch 32,
    so BatchNorm statistics settle); a .keras file, float, batch dimension unknown. ~90 % accurate."""
    def make(out: Path) -> str:
        from edgemnist.training.train import TrainConfig, train

        config = TrainConfig(epochs=2, warmup_epochs=0, limit=TRAIN_SUBSET, batch_size=32, augment=False)
        train(config, out, verbose=0)
        return str(out / "model.keras")

    return Path(made_once(tmp_path_factory, "trained", make))


@pytest.fixture(scope="session")
def quick_pipeline(tmp_path_factory):
    """One `python -m edgemnist pipeline --out run --quick --json` (every quantizer) per session.

    Returns (folder it ran in, CompletedProcess). `--out` is relative, as a user types it, so a
    copy of the folder is a run folder of its own. Tests that change the run work on a copy.
    """
    base = tmp_path_factory.mktemp("quick_pipeline")
    env = {k: v for k, v in os.environ.items() if k != "EDGEMNIST_VERBOSE"}
    result = subprocess.run([sys.executable, "-m", "edgemnist", "pipeline", "--out", "run", "--quick", "--json"],
                            cwd=base, capture_output=True, text=True, timeout=1200, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return Path(base), result


@pytest.fixture(scope="session")
def tflite_variants(tmp_path_factory, trained_model_path):
    """{"float32": Path, "int8": Path}: exports of the session's trained model, manifests beside them."""
    def make(folder: Path) -> dict:
        from edgemnist.export.convert import ExportConfig, export_variant

        paths = {v: folder / f"model_{v}.tflite" for v in ("float32", "int8")}
        for variant, path in paths.items():
            export_variant(trained_model_path, variant, path, ExportConfig(representative_size=200))
        return {v: str(p) for v, p in paths.items()}

    return {v: Path(p) for v, p in made_once(tmp_path_factory, "tflite_variants", make).items()}


FIRMWARE_ASSETS = Path(__file__).resolve().parents[1] / "firmware_assets"


def render_firmware_assets(assets: Path, out: Path) -> dict:
    """Renders a firmware folder again from the .tflite its C array embeds, with the settings its
    manifest and README record (stem, digits per class, arena margin, regenerate command).

    Returns:
        {"source": assets, "folder": out, "model": the .tflite (named as the manifest names it),
        "manifest": the new one}.
    """
    import json
    import re

    from edgemnist.micro import firmware, mcu

    recorded = json.loads((assets / firmware.MANIFEST_NAME).read_text(encoding="utf-8"))
    model_bytes, _, _ = mcu.embedded_data(assets, recorded)
    model = out.parent / "model" / recorded["model"]["name"]
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_bytes(model_bytes)
    readme = (assets / "README.md").read_text(encoding="utf-8")
    command = re.search(r"regenerate:\n\n    (.+)\n", readme).group(1)
    config = firmware.FirmwareConfig(
        digits_per_class=recorded["test_digits"]["count"] // 10, arena_margin=recorded["arena"]["margin"],
        name=recorded["stem"], regenerate_command=command)
    return {"source": assets, "folder": out, "model": model, "manifest": firmware.generate(model, out, config)}


@pytest.fixture(scope="session")
def micro_firmware(tmp_path_factory):
    """The repo's firmware_assets/ rendered again from the default model it embeds (int8, one
    weight scale per tensor: the pipeline's firmware model): the session's one arena bisection.

    {"source", "folder", "model", "manifest"}; tests that change or build the folder work on a copy or
    build elsewhere, so the byte-for-byte drift check (tests/micro/test_firmware.py) sees it as made.
    """
    def make(folder: Path) -> dict:
        made = render_firmware_assets(FIRMWARE_ASSETS, folder / "firmware")
        return {k: v if k == "manifest" else str(v) for k, v in made.items()}

    made = made_once(tmp_path_factory, "firmware_assets", make)
    return {k: v if k == "manifest" else Path(v) for k, v in made.items()}
