"""edgemnist.load / runtime.classify: the Python API on real image files, against Runner; the README example."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import edgemnist
from _images import animated_gif, as_stored, digit_photo, jpeg_bytes, write_bilevel_png, write_image
from edgemnist.runtime import Runner
from edgemnist.runtime.classify import LOW_CONFIDENCE, NOT_A_DIGIT, Model, NumberPrediction, Prediction
from edgemnist.runtime.prepare import NO_DIGIT
from edgemnist.runtime.temperature import calibrated, probability_floor

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mnist_files(mnist_test, tmp_path_factory):
    """The first 100 MNIST test digits as PNG files, as they are (white on black, 28x28)."""
    folder = tmp_path_factory.mktemp("mnist_png")
    return [write_image(Image.fromarray(image), folder / f"{i:03d}.png") for i, image in enumerate(mnist_test.images[:100])]


def as_photo(image: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """An MNIST digit as a photo would show it: dark ink on lighter, unevenly lit paper, 3x larger, off-centre."""
    big = np.asarray(Image.fromarray(image).resize((84, 84), Image.Resampling.BILINEAR), np.float32) / 255.0
    page = np.zeros((180, 240), np.float32)
    top, left = int(rng.integers(0, 180 - 84)), int(rng.integers(0, 240 - 84))
    page[top:top + 84, left:left + 84] = big
    paper = 230.0 - 50.0 * np.linspace(0, 1, 240)[None, :]
    pixels = paper + (35.0 - paper) * page + rng.normal(0, 5, page.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_predict_is_the_runner_on_the_prepared_image(tflite_variants, mnist_files, variant):
    model = edgemnist.load(tflite_variants[variant])
    runner = Runner(tflite_variants[variant])
    for path in mnist_files[:20]:
        result = model.predict(path)
        assert isinstance(result, Prediction) and result.image.shape == (28, 28)
        scores = calibrated(runner.predict_one(result.image), model.temperature, probability_floor(runner.output))
        assert result.probabilities == tuple(float(s) for s in scores)
        assert result.digit == int(np.argmax(scores)) and result.probability == float(scores.max())
        assert result.runner_up != result.digit and result.runner_up_probability <= result.probability
        assert [d for d, _ in result.top(10)] == list(np.argsort(-scores, kind="stable"))


def test_without_preparation_the_file_goes_to_the_model_as_it_is(tflite_variants, mnist_files, mnist_test):
    model = edgemnist.load(tflite_variants["int8"], prepare=False, temperature=1.0)
    runner = Runner(tflite_variants["int8"])
    for i, path in enumerate(mnist_files[:10]):
        expected = runner.predict_one(mnist_test.images[i])
        assert model.predict(path).probabilities == tuple(float(s) for s in expected)


def test_preparation_carries_the_accuracy_over_to_photos(tflite_variants, mnist_test):
    """MNIST digits shown as photos: prepared, the model reads them about as well as MNIST itself; a plain resize
    of the same photos does not come close."""
    rng = np.random.default_rng(0)
    n = 100
    photos = [jpeg_bytes(as_photo(image, rng), quality=75) for image in mnist_test.images[:n]]
    labels = mnist_test.labels[:n]
    runner = Runner(tflite_variants["int8"])
    on_mnist = float(np.mean(runner.predict(mnist_test.images[:n].astype(np.float32) / 255.0).argmax(1) == labels))
    prepared = float(np.mean([p.digit == l for p, l in zip(edgemnist.load(tflite_variants["int8"]).predict_batch(photos),
                                                              labels)]))
    plain = float(np.mean([p.digit == l for p, l in zip(
        edgemnist.load(tflite_variants["int8"], prepare=False).predict_batch(photos), labels)]))
    assert prepared >= on_mnist - 0.08, (prepared, on_mnist)
    assert plain <= on_mnist - 0.3, (plain, on_mnist)


def test_predict_batch_equals_predict_on_any_kind_of_source(tflite_variants, mnist_files, mnist_test):
    model = edgemnist.load(tflite_variants["int8"])
    blank = digit_photo("", light=60, noise=6)
    sources = [mnist_files[0], str(mnist_files[1]), mnist_files[2].read_bytes(), mnist_test.images[3],
               Image.open(mnist_files[4]), mnist_test.images[5].astype(np.float32) / 255.0, blank]
    batch = model.predict_batch(sources, batch_size=3)
    assert len(batch) == len(sources)
    for one, source in zip(batch[:-1], sources[:-1]):
        single = model.predict(source)
        assert one.digit == single.digit
        np.testing.assert_allclose(one.probabilities, single.probabilities, atol=1e-6)
    assert batch[-1].rejected and batch[-1].reason == NO_DIGIT and batch[-1].digit is None
    assert batch[-1].probabilities is None and batch[-1].top() == []


def test_the_rejection_flag_follows_min_probability(tflite_variants, mnist_files):
    strict = edgemnist.load(tflite_variants["float32"], min_probability=1.0)
    lenient = edgemnist.load(tflite_variants["float32"], min_probability=0.0)
    below_one = 0
    for path in mnist_files[:10]:
        a, b = strict.predict(path), lenient.predict(path)
        assert a.digit == b.digit and a.probabilities == b.probabilities
        assert a.rejected == (a.probability < 1.0) and a.reason == (LOW_CONFIDENCE if a.rejected else None)
        below_one += a.probability < 1.0
        assert not b.rejected and b.reason is None
    assert below_one >= 5  # the rule was exercised: a small model is rarely certain
    nothing = lenient.predict(jpeg_bytes(digit_photo("", noise=8, light=90)))
    assert nothing.rejected and nothing.reason == NO_DIGIT and nothing.digit is None
    with pytest.raises(ValueError, match="min_probability"):
        edgemnist.load(tflite_variants["float32"], min_probability=1.5)


def test_a_number_of_mnist_digits_is_read_digit_by_digit(tflite_variants, mnist_test):
    model = edgemnist.load(tflite_variants["int8"])
    confident = [i for i in range(100)
                 if (p := model.predict(mnist_test.images[i])).digit == mnist_test.labels[i] and p.probability > 0.9]
    picks = confident[:4]
    strip = np.hstack([mnist_test.images[i] for i in picks])  # 28 x 112, white on black
    page = Image.fromarray(255 - strip).resize((strip.shape[1] * 3, 84), Image.Resampling.BILINEAR)
    result = model.predict_number(jpeg_bytes(page, quality=85))
    assert isinstance(result, NumberPrediction) and len(result.digits) == 4
    assert result.number == "".join(str(mnist_test.labels[i]) for i in picks)
    assert result.probability == pytest.approx(float(np.prod([d.probability for d in result.digits])))
    boxes = [d.box for d in result.digits]
    assert [b[1] for b in boxes] == sorted(b[1] for b in boxes)
    assert model.predict_number(digit_photo("")).reason == NO_DIGIT
    with pytest.raises(ValueError, match="prepare"):
        edgemnist.load(tflite_variants["int8"], prepare=False).predict_number(page)


def test_json_of_a_prediction(tflite_variants, mnist_files):
    record = edgemnist.load(tflite_variants["int8"]).predict(mnist_files[0]).to_json(top=3)
    assert set(record) == {"digit", "probability", "runner_up", "runner_up_probability", "top", "probabilities",
                           "rejected", "reason", "box", "inverted"}
    assert len(record["top"]) == 3 and record["top"][0]["digit"] == record["digit"]
    assert len(record["probabilities"]) == 10 and abs(sum(record["probabilities"]) - 1.0) < 0.02


def test_bad_input_names_the_file(tflite_variants, tmp_path):
    model = edgemnist.load(tflite_variants["int8"])
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(jpeg_bytes(digit_photo("3"))[:200])
    with pytest.raises(ValueError, match="cut.jpg"):
        model.predict(truncated)
    with pytest.raises(FileNotFoundError):
        edgemnist.load(tmp_path / "missing.tflite")
    with pytest.raises(FileNotFoundError, match="nope.png"):
        model.predict(tmp_path / "nope.png")
    with pytest.raises(ValueError, match=r"bomb\.png: 400,000,000 pixels"):
        model.predict(write_bilevel_png(tmp_path / "bomb.png", 20000, 20000))
    with pytest.raises(ValueError, match=r"anim\.gif: .*\(3 frames\)"):
        model.predict_batch([digit_photo("1"), animated_gif(tmp_path / "anim.gif")])
    with pytest.raises(ValueError, match="HEIC image"):
        model.predict((Path(__file__).resolve().parent.parent / "files" / "digit3.heic").read_bytes())


def test_what_phones_and_canvases_send_reads_as_the_plain_files(tflite_variants, mnist_test, tmp_path):
    model = edgemnist.load(tflite_variants["int8"])
    rng = np.random.default_rng(3)
    for i in range(12):
        photo = as_photo(mnist_test.images[i], rng)
        upright = model.predict(write_image(photo, tmp_path / f"{i}-upright.png"))
        # stored sideways (or mirrored) with its EXIF orientation: the very same prepared image and scores
        stored, exif = as_stored(photo, i % 8 + 1)
        turned = model.predict(write_image(stored, tmp_path / f"{i}-turned.png", exif=exif))
        assert turned.digit == upright.digit and np.array_equal(turned.image, upright.image)
        np.testing.assert_array_equal(turned.probabilities, upright.probabilities)
        # a canvas's ImageData: the ink as the alpha of black pixels, the rest transparent
        ink = np.clip((230.0 - np.asarray(photo, np.float32)) / 195.0, 0.0, 1.0)
        canvas = np.zeros(ink.shape + (4,), np.uint8)
        canvas[..., 3] = np.clip(ink * 255.0 + 0.5, 0, 255)
        assert model.predict(canvas).digit == model.predict(Image.fromarray(canvas, "RGBA")).digit


def test_the_api_needs_neither_tensorflow_nor_pillow_to_import(tflite_variants, mnist_files):
    script = textwrap.dedent(f"""
        import sys
        import edgemnist
        from edgemnist.runtime import classify, prepare
        assert "PIL" not in sys.modules, "Pillow is imported before an image is read"
        model = edgemnist.load({str(tflite_variants["int8"])!r})
        print("DIGIT", model.predict({str(mnist_files[0])!r}).digit)
        print("LEAKED", sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tf_keras", "keras")))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "LEAKED []" in done.stdout and "DIGIT " in done.stdout
    assert isinstance(edgemnist.load(tflite_variants["int8"]), Model) and "load" in dir(edgemnist)


def readme_example() -> str:
    """The Python block under the README's "Python API" heading."""
    text = (REPO_ROOT / "README.md").read_text()
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs(tmp_path):
    code = readme_example()
    assert len(code.strip().splitlines()) <= 12
    # the files the example names, made real in its folder (the model is the shipped one)
    write_image(digit_photo("7", size=(320, 240), centre=(0.3, 0.6), noise=6, light=60), tmp_path / "photo.jpg",
                quality=80)
    write_image(digit_photo("", size=(320, 240), noise=6), tmp_path / "blank.png")
    write_image(digit_photo("2024", size=(480, 160), height=90, noise=4), tmp_path / "meter.png")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    # the shipped model reads the photo's 7, finds no digit on the blank page, and reads the meter's number
    assert lines[0].split()[0] == "7", lines
    assert lines[-3].split()[0] == "7" and lines[-2] == "None no digit found", lines
    assert lines[-1] == "2024", lines


def test_the_gate_rejects_what_is_not_a_digit_and_gate_none_turns_it_off(tflite_variants, mnist_files):
    gated = edgemnist.load(tflite_variants["int8"])
    ungated = edgemnist.load(tflite_variants["int8"], gate=None)
    assert gated.gate is not None and ungated.gate is None
    letters = [jpeg_bytes(digit_photo(ch, noise=4, light=40)) for ch in "AHKMNRWX"]
    by_gate = [p.reason for p in gated.predict_batch(letters)]
    assert by_gate.count(NOT_A_DIGIT) >= 6, by_gate
    assert [gated.predict(image).reason for image in letters] == by_gate  # batched and one by one agree
    for image in letters:
        without = ungated.predict(image)
        assert without.reason != NOT_A_DIGIT and without.digit is not None
    rejected = gated.predict(letters[by_gate.index(NOT_A_DIGIT)])
    assert rejected.rejected and rejected.digit is not None and rejected.probabilities is not None  # the best guess
    digits = gated.predict_batch(mnist_files[:50])
    assert sum(p.reason == NOT_A_DIGIT for p in digits) <= 2
    # letters the gate refuses on their own page, cut from between two digits: most are refused there too
    # (cut from a number, a letter is framed differently), and a number holding one is refused
    refused = 0
    for letter in [ch for ch, reason in zip("AHKMNRWX", by_gate) if reason == NOT_A_DIGIT]:
        number = gated.predict_number(digit_photo(f"4{letter}7", size=(360, 160), height=90, noise=4))
        if [d.reason == NOT_A_DIGIT for d in number.digits] == [False, True, False]:
            refused += 1
            assert number.rejected and number.reason == NOT_A_DIGIT and number.digits[0].digit is not None
    assert refused >= 5, refused


def test_a_gate_given_by_path_is_used(tflite_variants, tmp_path):
    from edgemnist.runtime.gate import DEFAULT_GATE, metadata_path

    copy = tmp_path / "my_gate.tflite"
    copy.write_bytes(DEFAULT_GATE.read_bytes())
    meta = json.loads(metadata_path(DEFAULT_GATE).read_text())
    metadata_path(copy).write_text(json.dumps({**meta, "threshold": 1.0}))  # nothing scores above 1: all refused
    model = edgemnist.load(tflite_variants["int8"], gate=copy, trusted=True)
    assert Path(model.gate.path).name == copy.name and model.predict(digit_photo("5")).reason == NOT_A_DIGIT
    with pytest.raises(FileNotFoundError, match="missing.tflite"):
        edgemnist.load(tflite_variants["int8"], gate=tmp_path / "missing.tflite")
