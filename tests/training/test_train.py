"""Tests for edgemnist/training/train.py: real training on MNIST subsets, determinism, resume after SIGKILL,
multi-worker training on loopback."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from _helpers import cli_command, free_port, run_cli
from edgemnist.training import train as train_lib
from edgemnist.training.model import ModelConfig

TINY = ModelConfig(stem_channels=8, block_channels=(16, 24), dilation_rates=(2, 1), pool_after=(1,))


def test_one_epoch_beats_chance_by_far(tmp_path):
    config = train_lib.TrainConfig(epochs=1, warmup_epochs=0, limit=3000, batch_size=32, augment=False)
    started = time.monotonic()
    summary = train_lib.train(config, tmp_path / "run", verbose=0)
    elapsed = time.monotonic() - started
    assert summary["test_accuracy"] > 0.6, summary  # chance is 0.1
    # the reported training time is the whole call (imports, set-up, checkpoints, test evaluation, the saved
    # model), not just the epochs: all but the two small JSON files written after it (rounded to 0.1 s)
    assert elapsed - 1.0 <= summary["wall_s"] <= elapsed + 0.1, (summary["wall_s"], elapsed)
    assert summary["test_n"] == 10000 and summary["epochs_run"] == 1
    assert summary["params"] < 20000
    for name in ("model.keras", "summary.json", "train_log.csv", "train_state.json"):
        assert (tmp_path / "run" / name).is_file()
    assert not list((tmp_path / "run").glob(".*.tmp*"))
    assert len((tmp_path / "run" / "train_log.csv").read_text().splitlines()) == 2


def test_same_seed_same_weights(tmp_path):
    from edgemnist.training.model import load_keras_model

    config = train_lib.TrainConfig(model_config=TINY, epochs=1, limit=600, warmup_epochs=0)
    weights = []
    for name in ("a", "b"):
        train_lib.train(config, tmp_path / name, verbose=0)
        weights.append(load_keras_model(tmp_path / name / "model.keras").get_weights())
    for w1, w2 in zip(*weights):
        np.testing.assert_array_equal(w1, w2)


def test_validation_sees_batchnorm_statistics_recomputed_on_clean_images(tmp_path):
    from edgemnist import data
    from edgemnist.training.model import load_keras_model, recalibrate_batchnorm

    config = train_lib.TrainConfig(model_config=TINY, epochs=1, limit=600, warmup_epochs=0, elastic=20)
    train_lib.train(config, tmp_path, verbose=0)
    # the epoch's checkpoint is written after validation: it holds the statistics validation used
    validated = load_keras_model(tmp_path / "checkpoints" / "epoch_001.keras")
    fit_split, val_split = data.train_val_split(data.load_split("train", limit=600), config.val_fraction, config.seed)
    recomputed = load_keras_model(tmp_path / "checkpoints" / "epoch_001.keras")
    recomputed.get_layer("stem_bn").moving_mean.assign(np.zeros(8, np.float32))
    recalibrate_batchnorm(recomputed, train_lib.batchnorm_sample(fit_split, config.seed), seed=config.seed)
    for layer in validated.layers:
        if "_bn" in layer.name:
            np.testing.assert_allclose(layer.moving_mean.numpy(), recomputed.get_layer(layer.name).moving_mean.numpy(),
                                       rtol=1e-4, atol=1e-6)
    row = json.loads((tmp_path / "train_state.json").read_text())["log"][0]
    predicted = validated.predict(data.to_model_input(val_split.images), verbose=0).argmax(axis=1)
    assert float(row["val_accuracy"]) == pytest.approx(float((predicted == val_split.labels).mean()), abs=1e-6)


def test_rerun_of_finished_run_does_nothing_and_other_settings_are_refused(tmp_path):
    config = train_lib.TrainConfig(model_config=TINY, epochs=1, limit=300, warmup_epochs=0)
    first = train_lib.train(config, tmp_path, verbose=0)
    mtime = (tmp_path / "model.keras").stat().st_mtime_ns
    assert train_lib.train(config, tmp_path, verbose=0) == first
    assert (tmp_path / "model.keras").stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="holds a run with other settings"):
        train_lib.train(train_lib.TrainConfig(model_config=TINY, epochs=1, limit=400), tmp_path, verbose=0)


def test_run_folder_from_before_the_retired_settings_is_the_same_run(tmp_path):
    # train_state.json of a run from before --ema, --weight-decay, --zoom and --clean-epochs were
    # retired records them at their off values: rerunning its command still finds the finished run.
    config = train_lib.TrainConfig(model_config=TINY, epochs=1, limit=300, warmup_epochs=0)
    first = train_lib.train(config, tmp_path, verbose=0)
    state_path = tmp_path / "train_state.json"
    state = json.loads(state_path.read_text())
    state["config"].update(ema=0.0, weight_decay=0.0, zoom=0.0, clean_epochs=0)
    state_path.write_text(json.dumps(state))
    assert train_lib.train(config, tmp_path, verbose=0) == first
    state["config"]["ema"] = 0.999  # a run that averaged its weights is another run
    state_path.write_text(json.dumps(state))
    with pytest.raises(ValueError, match="holds a run with other settings"):
        train_lib.train(config, tmp_path, verbose=0)


def test_orphan_cleanup_spares_temporary_files_of_live_writers(tmp_path):
    from edgemnist.artifacts import atomic_path

    folder = train_lib.RunFolder(tmp_path)
    folder.ckpt_dir.mkdir(parents=True)
    (folder.ckpt_dir / "epoch_001.keras").write_text("the committed checkpoint")
    (folder.ckpt_dir / "epoch_002.keras").write_text("an epoch that was never committed")
    # temporary files of writers killed mid-write: os._exit skips every clean-up, as SIGKILL does
    code = ("import os, sys; from edgemnist.artifacts import atomic_path; "
            "writers = [atomic_path(p, suffix='.tmp' + os.path.splitext(p)[1]) for p in sys.argv[1:]]; "
            "print(*[w.__enter__() for w in writers]); sys.stdout.flush(); os._exit(0)")
    targets = [tmp_path / "model.keras", folder.ckpt_dir / "epoch_002.keras",
               folder.ckpt_dir / "best_epoch_002.weights.npz"]
    killed = subprocess.run([sys.executable, "-c", code, *map(str, targets)], capture_output=True, text=True,
                            check=True, timeout=60).stdout.split()
    assert len(killed) == 3 and all(Path(path).is_file() for path in killed)
    with atomic_path(tmp_path / "summary.json") as live, \
            atomic_path(folder.ckpt_dir / "epoch_003.keras", suffix=".tmp.keras") as live_checkpoint:
        folder.clean_orphans({"epoch": 1, "checkpoint": "checkpoints/epoch_001.keras"})
        assert not any(Path(path).exists() for path in killed)
        assert live.is_file() and live_checkpoint.is_file()  # their writers still run
    assert sorted(p.name for p in folder.ckpt_dir.iterdir()) == ["epoch_001.keras", "epoch_003.keras"]


def test_learning_rate_schedule():
    config = train_lib.TrainConfig(epochs=10, warmup_epochs=2, learning_rate=1e-2, min_learning_rate=1e-4)
    rates = [train_lib.learning_rate_at(e, config) for e in range(10)]
    assert rates[0] == pytest.approx(1e-3) and rates[2] == pytest.approx(1e-2)
    assert all(a > b for a, b in zip(rates[2:], rates[3:]))
    assert rates[-1] >= 1e-4


@pytest.mark.parametrize("field, value", [("epochs", 0), ("learning_rate", 2.0), ("strategy", "tpu"),
                                          ("val_fraction", 1.0), ("model", "resnet"), ("rotation", 90),
                                          ("elastic", 150.0), ("elastic_sigma", 0.1)])
def test_config_validation_names_the_value(field, value):
    with pytest.raises(ValueError, match=str(value).replace(".", r"\.")):
        train_lib.TrainConfig(**{field: value})


def test_augmentation_settings_without_augmentation_are_refused():
    with pytest.raises(ValueError, match=r"augmentation is off, yet its settings rotation=10\.0, elastic=0\.0 "
                                         r"are given"):
        train_lib.TrainConfig(augment=False, rotation=10.0, elastic=0.0)
    assert train_lib.TrainConfig(augment=False).augmentation() is None  # the defaults are no conflict


def test_cli_shape_settings_are_checked_and_retired_flags_are_gone(tmp_path, capsys):
    from edgemnist import cli

    out = str(tmp_path / "run")
    assert cli.main(["train", "--out", out, "--channels", "48,64"]) == 2
    assert "must have one rate per block (2 blocks)" in capsys.readouterr().err
    assert cli.main(["train", "--out", out, "--stem-channels", "0"]) == 2
    assert "channel counts must be >= 1, got stem 0" in capsys.readouterr().err
    assert cli.main(["train", "--out", out, "--model", "tutorial_cnn", "--width", "0.5"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "edgemnist: error: model 'tutorial_cnn' has a fixed shape; the ds_cnn settings width_multiplier=0.5 "
        "do not apply to it")
    for retired in ("--ema", "--weight-decay", "--zoom", "--clean-epochs"):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["train", "--out", out, retired, "1"])
        assert exit_info.value.code == 2 and f"unrecognized arguments: {retired} 1" in capsys.readouterr().err
    assert not (tmp_path / "run" / "train_state.json").exists()


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--limit", "4000", "--epochs", "3", "--batch-size", "32", "--no-augment",
            "--quiet"]
    proc = subprocess.Popen(cli_command(*args), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    state_path = out / "train_state.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if state_path.is_file() and json.loads(state_path.read_text())["epoch"] >= 1:
            break
        time.sleep(0.05)
    time.sleep(0.5)  # well into epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_state = json.loads(state_path.read_text())
    killed_at = killed_state["epoch"]
    assert 1 <= killed_at < 3, "the run should have been killed mid-way"
    assert not (out / "model.keras").exists()

    result = run_cli(*args[:-1], "--json", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"resuming after epoch {killed_at}" in result.stderr
    if killed_at == 1:  # one line per epoch (stderr is not a terminal) with the time left
        assert "epoch 2/3 done: " in result.stderr and "left" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["epochs_run"] == 3 and summary["test_accuracy"] > 0.8
    assert summary["wall_s"] > killed_state["wall_s"] > 0  # the killed run's committed time counts too
    log_rows = (out / "train_log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log_rows[1:]] == ["1", "2", "3"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == sorted(
        {"epoch_003.keras", Path(json.loads(state_path.read_text())["best_weights"]).name})


@pytest.mark.slow
def test_multiworker_training_on_two_local_workers(tmp_path):
    ports = [free_port(), free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
               "CUDA_VISIBLE_DEVICES": ""}
        procs.append(subprocess.Popen(
            cli_command("train", "--out", tmp_path / f"w{index}", "--strategy", "multiworker", "--limit", "1200",
                        "--epochs", "1", "--no-augment", "--quiet", "--json"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    outputs = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        assert proc.returncode == 0, err[-3000:]
        outputs.append(json.loads(out))
    assert outputs[0]["strategy"] == "multiworker"
    assert (tmp_path / "w0" / "model.keras").is_file()  # the chief writes the run
    assert not (tmp_path / "w1" / "model.keras").exists()  # the other worker writes to scratch only
    assert outputs[0]["test_accuracy"] == pytest.approx(outputs[1]["test_accuracy"], abs=1e-6)


def test_multiworker_without_tf_config_is_a_clear_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    result = run_cli("train", "--out", tmp_path, "--strategy", "multiworker", "--limit", "100", env=env, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "edgemnist: error: --strategy multiworker needs TF_CONFIG describing the cluster and this worker's task")


def test_command_needing_tensorflow_without_it_says_which_extra(tmp_path):
    blocker = tmp_path / "block" / "tensorflow"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('No module named tensorflow')\n")
    result = run_cli("train", "--out", tmp_path / "r", env={**os.environ, "PYTHONPATH": str(blocker.parent)},
                     timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "edgemnist: error: this command needs TensorFlow: pip install 'edgemnist[train]' "
        "(No module named tensorflow)")


def test_train_help_documents_resume_and_the_config_defaults(capsys):
    from edgemnist import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines at the terminal width
    assert exit_info.value.code == 0 and "resume" in help_text
    assert "--strategy" in help_text and "--out" in help_text
    d = train_lib.TrainConfig()
    assert f"maximum epochs (default {d.epochs})" in help_text  # the default shown is the config's
    assert f"per block (default {','.join(map(str, d.model_config.block_channels))};" in help_text


def test_early_stopping_waits_for_the_second_half_of_the_schedule():
    config = train_lib.TrainConfig(epochs=50, patience=10)
    assert not train_lib._should_stop({"epoch": 28, "best_epoch": 18}, config)  # high learning rate still
    assert not train_lib._should_stop({"epoch": 34, "best_epoch": 18}, config)
    assert train_lib._should_stop({"epoch": 35, "best_epoch": 18}, config)
    assert train_lib._should_stop({"epoch": 40, "best_epoch": 30}, config)
    assert not train_lib._should_stop({"epoch": 39, "best_epoch": 30}, config)
    assert not train_lib._should_stop({"epoch": 20, "best_epoch": 0}, config)  # nothing validated yet
