"""Tests for edgemnist/data/folders.py: class folders of real photos, prepared as predict does, cached per file."""
from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgemnist import data
from edgemnist.data import download, folders
from edgemnist.runtime.prepare import NO_DIGIT, prepare

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _helpers import run_cli  # noqa: E402


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """Each test prepares into its own cache (the children of run_cli inherit it)."""
    monkeypatch.setenv("EDGEMNIST_CACHE", str(tmp_path / "cache"))


def mnist_photo(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A real MNIST digit as a phone photo shows handwriting: dark ink on lit paper, off-centre, noisy."""
    ink = np.asarray(Image.fromarray(digit).resize((84, 84), Image.Resampling.BILINEAR), np.float32) / 255.0
    page = np.zeros((120, 160), np.float32)
    top, left = int(rng.integers(5, 30)), int(rng.integers(10, 65))
    page[top:top + 84, left:left + 84] = ink
    paper = 215.0 - 40.0 * np.linspace(0.0, 1.0, 160)[None, :]  # light falling off to the right
    pixels = paper * (1 - page) + 35.0 * page + rng.normal(0.0, 4.0, page.shape)
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))


def write_photo_folder(root: Path, mnist: data.Split, per_class: dict) -> Path:
    """train/ and test/ class folders of MNIST digits as JPEG photos, `per_class[split]` of each class,
    the test digits taken after the train ones; plus a blank page (no digit) in test/3/."""
    rng = np.random.default_rng(0)
    start = 0
    for split in ("train", "test"):
        for label in range(10):
            members = np.flatnonzero(mnist.labels == label)[start:start + per_class[split]]
            for i in members:
                target = root / split / str(label) / f"{i:05d}.jpg"
                target.parent.mkdir(parents=True, exist_ok=True)
                mnist_photo(mnist.images[i], rng).save(target, quality=85)
        start += per_class[split]
    Image.new("L", (160, 120), 200).save(root / "test" / "3" / "blank.png")
    return root


@pytest.fixture
def photos(tmp_path, mnist_test):
    return write_photo_folder(tmp_path / "photos", mnist_test, {"train": 5, "test": 10})


def test_photo_folders_are_prepared_as_predict_prepares(photos):
    test = data.load_split("test", photos)
    assert test.prepared and len(test) == 100 and len(test.files) == 100
    assert test.no_digit == ((str(photos / "test" / "3" / "blank.png"), NO_DIGIT),)
    for i in (0, 37, 99):  # the very pixels prepare() gives predict for the same file
        np.testing.assert_array_equal(test.images[i], prepare(test.files[i]).image)
        assert test.labels[i] == int(Path(test.files[i]).parent.name)
    assert len(data.load_split("train", photos)) == 50


def test_second_read_comes_from_the_cache(photos, tmp_path):
    first = folders.read_class_folder(photos / "test")
    assert (first.cache_hits, first.cache_misses) == (0, 101)
    second = folders.read_class_folder(photos / "test")
    assert (second.cache_hits, second.cache_misses) == (101, 0)
    np.testing.assert_array_equal(first.images, second.images)
    assert second.no_digit == first.no_digit
    # a torn entry is not trusted: prepared again, the same pixels
    entry = next(p for p in (tmp_path / "cache" / "prepared").rglob("*.bin"))
    entry.write_bytes(entry.read_bytes()[:100])
    third = folders.read_class_folder(photos / "test")
    assert (third.cache_hits, third.cache_misses) == (100, 1)
    np.testing.assert_array_equal(first.images, third.images)
    # other settings are another cache
    other = folders.read_class_folder(photos / "test", config=folders.PrepareConfig(work_size=80))
    assert other.cache_misses == 101


def test_mnist_shaped_folders_are_read_as_they_are(tmp_path, mnist_test):
    for i in range(30):
        target = tmp_path / "d" / str(int(mnist_test.labels[i])) / f"{i:03d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mnist_test.images[i]).save(target)
    auto = folders.read_class_folder(tmp_path / "d")
    assert not auto.prepared and auto.cache_misses == 0 and not (tmp_path / "cache").exists()
    order = np.argsort([Path(f).name for f in auto.files], kind="stable")
    np.testing.assert_array_equal(auto.images[order], mnist_test.images[:30])
    forced = folders.read_class_folder(tmp_path / "d", prepare=True)
    assert forced.prepared and forced.cache_misses == 30
    # one photo among them: the folder is prepared, every image of it
    Image.new("L", (50, 40), 255).save(tmp_path / "d" / "0" / "photo.png")
    assert folders.read_class_folder(tmp_path / "d").prepared
    plain = folders.read_class_folder(tmp_path / "d", prepare=False)
    assert not plain.prepared and len(plain.files) == 31  # resized to 28x28, as predict --no-prepare does


def test_data_check_lists_no_digit_and_every_bad_file(photos, tmp_path):
    (photos / "train" / "2" / "notes.jpg").write_text("not an image")
    (photos / "test" / "7" / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    report = download.verify_data_dir(photos, sheet=tmp_path / "sheet.png")
    assert (report["train"], report["test"], report["prepared"]) == (50, 100, True)
    assert report["no_digit"] == [{"file": str(photos / "test" / "3" / "blank.png"), "reason": NO_DIGIT}]
    assert [item["file"] for item in report["bad_files"]] == [str(photos / "test" / "7" / "cut.png"),
                                                              str(photos / "train" / "2" / "notes.jpg")]
    assert all(item["error"].startswith(item["file"] + ": ") for item in report["bad_files"])
    sheet = Image.open(tmp_path / "sheet.png")
    assert sheet.height == 10 * (28 * download.SHEET_ZOOM + 2)
    assert np.asarray(sheet).max() == 255  # digits drawn, not an empty frame
    # the command: the same listing, exit status 2; training refuses the folder, naming a file
    result = run_cli("data", "check", "--data-dir", str(photos), "--sheet", str(tmp_path / "s2.png"))
    assert result.returncode == 2, result.stderr
    assert "notes.jpg" in result.stdout and "cut.png" in result.stdout and "blank.png: no digit found" in result.stdout
    with pytest.raises(data.DataError, match=r"notes\.jpg: .*"):
        data.load_split("train", photos)


def test_progress_reports_an_eta():
    out, now = io.StringIO(), [0.0]
    progress = folders.Progress("photos", 1000, out, after_s=2.0, every_s=2.0, clock=lambda: now[0])
    progress.update(10, 0)  # too early to say anything
    now[0] = 4.0
    progress.update(200, 30)  # 50 images/s: 800 left, 16 s
    now[0] = 5.0
    progress.update(250, 30)  # within the interval: quiet
    progress.finish(1000)
    lines = out.getvalue().splitlines()
    assert lines[0] == "preparing photos: 200/1000 images (30 from the cache), 50 images/s, about 16 s left"
    assert lines[1] == "preparing photos: 1000 images in 5 s" and len(lines) == 2


def test_eval_agrees_with_predict_image_by_image(photos, tflite_variants):
    from edgemnist.measure.eval import EvalConfig, evaluate
    from edgemnist.runtime.classify import Model

    path = tflite_variants["float32"]
    report = evaluate(path, EvalConfig(data_dir=str(photos)))
    split = data.load_split("test", photos)
    model = Model(path, gate=None)
    read = [model.predict(f).digit for f in split.files]
    assert report["n"] == 100
    assert read == [int(p) for p in report["predictions"]]


def test_finetune_reads_a_photo_folder(photos, tmp_path):
    from edgemnist.training import finetune as finetune_lib
    from edgemnist.training.model import ModelConfig, build_model

    source = tmp_path / "tiny.keras"
    tiny = ModelConfig(stem_channels=8, block_channels=(16, 24), dilation_rates=(2, 1), pool_after=(1,))
    build_model("ds_cnn", tiny).save(source)
    config = finetune_lib.FinetuneConfig(head_epochs=1, epochs=1, batch_size=16, replay_mnist=40)
    result = finetune_lib.finetune(source, photos, tmp_path / "ft", config, verbose=0)
    assert (result["train_n"], result["test_n"], result["prepared"], result["replay_mnist"]) == (50, 100, True, 40)
    assert result["no_digit"] == [[str(photos / "test" / "3" / "blank.png"), NO_DIGIT]]
    assert (tmp_path / "ft" / "model.keras").is_file()
