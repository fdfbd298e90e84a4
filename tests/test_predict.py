"""`edgemnist predict` on real image files: folders with class folders, a bad file, stdin, --digits, --save-prepared, --watch."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _helpers import cli_command, run_cli
from _images import animated_gif, as_stored, digit_photo, jpeg_bytes, write_bilevel_png, write_image
import edgemnist
from edgemnist import cli
from edgemnist.runtime import Runner


@pytest.fixture(scope="module")
def digit_folder(mnist_test, tmp_path_factory):
    """Class folders 0/..9/ of MNIST test digits shown as photos (dark on light, 3x, off-centre, JPEG), a
    truncated PNG among them and a text file beside them; returns (folder, number of good images)."""
    folder = tmp_path_factory.mktemp("digits")
    rng = np.random.default_rng(0)
    n = 30
    for i in range(n):
        big = Image.fromarray(255 - mnist_test.images[i]).resize((84, 84), Image.Resampling.BILINEAR)
        page = Image.new("L", (160, 140), 255)
        page.paste(big, (int(rng.integers(0, 76)), int(rng.integers(0, 56))))
        write_image(page, folder / str(mnist_test.labels[i]) / f"{i:03d}.jpg", quality=85)
    good = (folder / str(mnist_test.labels[0]) / "000.jpg").read_bytes()
    (folder / "3" / "cut.png").parent.mkdir(exist_ok=True)
    (folder / "3" / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n" + good[:100])
    (folder / "notes.txt").write_text("not an image; not looked at\n")
    return folder, n


def _json_run(argv, capsys) -> tuple:
    status = cli.main(argv + ["--json"])
    captured = capsys.readouterr()
    return status, json.loads(captured.out), captured.err


def test_a_folder_with_class_folders_gives_accuracy_and_skips_the_bad_file(tflite_variants, digit_folder, capsys):
    folder, n = digit_folder
    status, result, err = _json_run(["predict", str(tflite_variants["int8"]), str(folder)], capsys)
    assert status == 2  # one file failed
    errors = [line for line in err.splitlines() if line.startswith("edgemnist: error")]
    assert len(errors) == 1 and "cut.png" in errors[0] and "Traceback" not in err
    assert [f["path"] for f in result["failed"]] == [str(folder / "3" / "cut.png")]
    records = result["predictions"]
    assert len(records) == n and not any("notes.txt" in r["path"] for r in records)
    summary = result["summary"]
    assert summary["images"] == n and summary["failed"] == 1 and summary["labelled"] == n
    assert summary["accuracy"] == pytest.approx(np.mean([r["digit"] == int(r["label"]) for r in records]))
    for record in records:
        assert {"path", "digit", "probability", "rejected", "runner_up", "top", "label", "right"} <= set(record)
        assert record["label"] == Path(record["path"]).parent.name


def test_every_variant_reads_the_folder(tflite_variants, digit_folder, capsys):
    folder, _ = digit_folder
    results = {}
    for variant, path in tflite_variants.items():
        status, result, _ = _json_run(["predict", str(path), str(folder / "7"), "--top", "3"], capsys)
        assert status == 0
        results[variant] = [r["digit"] for r in result["predictions"]]
        model = edgemnist.load(path)  # the command reads each file as the library does
        assert results[variant] == [model.predict(r["path"]).digit for r in result["predictions"]]
        assert all(len(r["top"]) == 3 for r in result["predictions"])
        assert all(r["top"][0]["probability"] >= r["top"][1]["probability"] >= r["top"][2]["probability"]
                   for r in result["predictions"])
    float_digits, int8_digits = results["float32"], results["int8"]
    assert len(float_digits) == len(int8_digits) >= 1
    # one model, two encodings: int8 may flip only the closest calls (at most one in ten, and one of a few)
    differing = int(np.sum(np.array(float_digits) != np.array(int8_digits)))
    assert differing <= max(1, len(float_digits) // 10), (float_digits, int8_digits)


def test_text_output_and_save_prepared(tflite_variants, tmp_path, capsys):
    photo = write_image(digit_photo("5", size=(300, 200), centre=(0.7, 0.4), light=80, noise=6), tmp_path / "five.jpg")
    blank = write_image(digit_photo("", light=80, noise=6), tmp_path / "blank.png")
    saved = tmp_path / "seen"
    status = cli.main(["predict", str(tflite_variants["int8"]), str(photo), str(blank), "--save-prepared", str(saved)])
    out = capsys.readouterr().out
    assert status == 0
    assert "five.jpg: " in out and "runner-up" in out and "blank.png: no digit found" in out
    assert sorted(p.name for p in saved.iterdir()) == ["five.png"]  # nothing to show for the blank page
    seen = np.asarray(Image.open(saved / "five.png"))
    assert seen.shape == (28, 28) and seen.dtype == np.uint8
    runner = Runner(tflite_variants["int8"])
    digit = int(runner.predict_one(seen).argmax())
    assert f"five.jpg: {digit}  p=" in out  # the saved image is what the model saw


def test_the_gate_rejects_a_letter_and_no_gate_turns_it_off(tflite_variants, tmp_path, capsys):
    from edgemnist.runtime.gate import DEFAULT_GATE

    letter = write_image(digit_photo("K", noise=4, light=40), tmp_path / "k.jpg", quality=85)
    status, result, _ = _json_run(["predict", str(tflite_variants["int8"]), str(letter)], capsys)
    assert status == 0 and result["gate"]["path"] == str(DEFAULT_GATE)
    record = result["predictions"][0]
    assert record["rejected"] and record["reason"] == "not a digit" and record["digit"] is not None
    status, result, _ = _json_run(["predict", str(tflite_variants["int8"]), str(letter), "--no-gate"], capsys)
    assert status == 0 and result["gate"] is None and result["predictions"][0]["reason"] != "not a digit"
    status = cli.main(["predict", str(tflite_variants["int8"]), str(letter), "--gate", str(tmp_path / "none.tflite")])
    assert status == 2 and "none.tflite" in capsys.readouterr().err


def test_no_prepare_feeds_mnist_shaped_files_as_they_are(tflite_variants, mnist_test, tmp_path, capsys):
    for i in range(5):
        write_image(Image.fromarray(mnist_test.images[i]), tmp_path / f"{i}.png")
    status, result, _ = _json_run(["predict", str(tflite_variants["float32"]), str(tmp_path), "--no-prepare"], capsys)
    assert status == 0 and result["prepare"] is False
    expected = Runner(tflite_variants["float32"]).predict(mnist_test.images[:5].astype(np.float32) / 255.0).argmax(1)
    assert [r["digit"] for r in result["predictions"]] == expected.tolist()


def test_digits_reads_a_number(tflite_variants, tmp_path, capsys):
    meter = write_image(digit_photo("407", size=(420, 160), height=100, light=50, noise=5), tmp_path / "meter.jpg")
    status, result, _ = _json_run(["predict", str(tflite_variants["int8"]), str(meter), "--digits"], capsys)
    assert status == 0
    record = result["predictions"][0]
    assert len(record["digits"]) == 3 and record["number"] == "".join(str(d["digit"]) for d in record["digits"])
    assert {"number", "probability", "rejected", "reason", "digits", "path"} <= set(record)
    # the shipped model (trained in full) reads the number itself, not only three digits of it
    status, result, _ = _json_run(["predict", str(meter), "--digits"], capsys)
    assert status == 0 and result["predictions"][0]["number"] == "407"


def test_stdin_and_bad_input_from_a_shell(tflite_variants, tmp_path):
    image = jpeg_bytes(digit_photo("2", light=40))
    done = run_cli("predict", tflite_variants["int8"], "-", "--json", input=image.decode("latin-1"), timeout=120,
                   encoding="latin-1")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)["predictions"][0]
    assert record["path"] == "<stdin>" and isinstance(record["digit"], int)
    notes = tmp_path / "notes.png"
    notes.write_text("hello")
    done = run_cli("predict", tflite_variants["int8"], notes, tmp_path / "missing.jpg", timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 2 and "notes.png" in errors[0] and "missing.jpg" in errors[1]
    corrupt = tmp_path / "notes.tflite"
    corrupt.write_text("hello")
    done = run_cli("predict", corrupt, notes, timeout=120)  # a corrupt model is refused
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "notes.tflite" in done.stderr


@pytest.mark.parametrize("argv_tail,message", [
    (["--digits", "--no-prepare", "x.png"], "--no-prepare"),
    (["--top", "11", "x.png"], "top"),
    (["--threads", "0", "x.png"], "threads must be >= 1, got 0"),
    ([], "no images"),
    (["x.png", "--watch", "."], "not both"),
    (["--watch", "no-such-folder"], "no-such-folder"),
])
def test_bad_options_exit_2_with_one_line(tflite_variants, capsys, argv_tail, message):
    status = cli.main(["predict", str(tflite_variants["int8"])] + argv_tail)
    err = capsys.readouterr().err
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1


def _read_until(stream_lines: list, predicate, process, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if process.poll() is not None:
            return predicate()
        time.sleep(0.1)
    return False


def test_watch_reads_new_images_skips_a_bad_one_and_exits_130_on_ctrl_c(tflite_variants, tmp_path):
    import threading

    watched = tmp_path / "camera"
    watched.mkdir()
    write_image(digit_photo("1"), watched / "old.png")  # there before the start: not new
    env = {k: v for k, v in os.environ.items() if k != "EDGEMNIST_VERBOSE"}
    # Ctrl-C as a terminal delivers it: a test run started in the background without job control
    # (nohup, `&` in a script, some CI runners) ignores SIGINT, and its children would inherit that.
    process = subprocess.Popen(cli_command("predict", tflite_variants["int8"], "--watch", watched, "--poll", "0.1",
                                           "--json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    out_lines, err_lines = [], []
    readers = [threading.Thread(target=lambda s=s, into=into: into.extend(iter(s.readline, "")), daemon=True)
               for s, into in ((process.stdout, out_lines), (process.stderr, err_lines))]
    for reader in readers:
        reader.start()
    try:
        assert _read_until(err_lines, lambda: any("watching" in line for line in err_lines), process), err_lines
        # a camera script's ways of writing: straight into the folder, and write-then-rename
        write_image(digit_photo("4", light=60, noise=5), watched / "shot1.jpg", quality=80)
        tmp = watched / ".shot2.tmp"
        write_image(digit_photo("8", noise=5), tmp, format="PNG")
        (watched / "sub").mkdir()
        tmp.rename(watched / "sub" / "shot2.png")
        (watched / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
        write_bilevel_png(watched / ".bomb.tmp", 20000, 20000).rename(watched / "bomb.png")  # 400 M pixels
        assert _read_until(out_lines, lambda: len(out_lines) >= 2 and all(any(name in e for e in err_lines)
                                                                          for name in ("broken.jpg", "bomb.png")),
                           process), (out_lines, err_lines)
        write_image(digit_photo("7", noise=5), watched / "after.png")  # still watching after the bomb
        assert _read_until(out_lines, lambda: len(out_lines) >= 3, process), (out_lines, err_lines)
        time.sleep(0.5)
        assert process.poll() is None  # the bad file did not stop it
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    for reader in readers:
        reader.join(timeout=5)
    assert process.returncode == 130
    records = [json.loads(line) for line in out_lines]
    assert sorted(Path(r["path"]).name for r in records) == ["after.png", "shot1.jpg", "shot2.png"]
    bomb_lines = [line for line in err_lines if "bomb.png" in line]
    assert len(bomb_lines) == 1 and "400,000,000 pixels" in bomb_lines[0] and "(skipped)" in bomb_lines[0]
    assert all(isinstance(r["digit"], int) for r in records)
    assert not any("old.png" in line for line in out_lines)
    assert "Traceback" not in "".join(err_lines)


def test_gpu_accelerator_reads_the_same_digits(tflite_variants, digit_folder, capsys):
    from _gpu import gpu_runner

    gpu_runner(tflite_variants["int8"])  # skips where no GPU accelerator can run
    folder, _ = digit_folder
    status, on_cpu, _ = _json_run(["predict", str(tflite_variants["int8"]), str(folder / "1")], capsys)
    assert status == 0
    status, on_gpu, _ = _json_run(["predict", str(tflite_variants["int8"]), str(folder / "1"), "--accelerator", "gpu"],
                                  capsys)
    assert status == 0 and on_gpu["accelerator"] == "gpu" and on_cpu["accelerator"] == "cpu"
    # the adapter that ran it, named as eval names it: software (SwiftShader) or hardware
    info = on_gpu["accelerator_info"]
    assert info["name"] == "gpu" and info["adapter"] and isinstance(info["software"], bool)
    assert {"vendor", "backend", "adapter_type", "precision", "fully_accelerated"} <= set(info)
    assert on_cpu["accelerator_info"] is None
    assert cli.main(["predict", str(tflite_variants["int8"]), str(folder / "1"), "--accelerator", "gpu"]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert f" on {info['adapter']} (" in summary  # the text names the adapter too
    assert ("software GPU" in summary) == info["software"]
    cpu_digits = [r["digit"] for r in on_cpu["predictions"]]
    gpu_digits = [r["digit"] for r in on_gpu["predictions"]]
    assert len(gpu_digits) == len(cpu_digits) >= 1
    assert np.mean(np.array(gpu_digits) == np.array(cpu_digits)) >= 0.9


# --------------------------------------------------------------------------- what phones, scanners and canvases send

HEIC = Path(__file__).resolve().parent / "files" / "digit3.heic"  # a real HEIC file (pillow-heif 1.9)


def test_phone_photos_stored_sideways_read_as_the_upright_ones(tflite_variants, mnist_test, tmp_path, capsys):
    n = 40
    for i in range(n):
        big = Image.fromarray(255 - mnist_test.images[i]).resize((84, 84), Image.Resampling.BILINEAR)
        page = Image.new("L", (160, 120), 235)
        page.paste(big, (30 + i % 40, 10 + i % 20))
        label = str(mnist_test.labels[i])
        write_image(page, tmp_path / "upright" / label / f"{i:03d}.jpg", quality=92)
        # as a phone held sideways stores it: the sensor's pixels, and the turn in the EXIF orientation
        stored, exif = as_stored(page, (6, 8, 3, 5)[i % 4])
        write_image(stored, tmp_path / "phone" / label / f"{i:03d}.jpg", quality=92, exif=exif)
    runs = {}
    for name in ("upright", "phone"):
        status, runs[name], _ = _json_run(["predict", str(tflite_variants["int8"]), str(tmp_path / name)], capsys)
        assert status == 0
    upright, phone = ([r["digit"] for r in runs[k]["predictions"]] for k in ("upright", "phone"))
    assert len(phone) == n and np.mean(np.array(phone) == np.array(upright)) >= 0.95
    assert runs["phone"]["summary"]["accuracy"] >= runs["upright"]["summary"]["accuracy"] - 0.05
    assert runs["phone"]["summary"]["accuracy"] >= 0.8


def test_bombs_animations_and_undecodable_formats_are_named_and_skipped(tflite_variants, tmp_path, capsys):
    folder = tmp_path / "inbox"
    folder.mkdir()
    write_image(digit_photo("3"), folder / "a-good.png")
    write_bilevel_png(folder / "bomb.png", 20000, 20000)
    animated_gif(folder / "anim.gif", frames=4)
    (folder / "digit3.heic").write_bytes(HEIC.read_bytes())
    write_image(digit_photo("5"), folder / "z-good.jpg")
    status, result, err = _json_run(["predict", str(tflite_variants["int8"]), str(folder)], capsys)
    assert status == 2 and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("edgemnist: error")]
    assert len(errors) == 3 and all(line.endswith("(skipped)") for line in errors)
    by_name = {Path(f["path"]).name: f["error"] for f in result["failed"]}
    assert set(by_name) == {"bomb.png", "anim.gif", "digit3.heic"}
    assert "400,000,000 pixels, over the limit" in by_name["bomb.png"]
    assert "(4 frames)" in by_name["anim.gif"]
    assert "HEIC image, which this Pillow cannot decode" in by_name["digit3.heic"]
    # the files after the bad ones are read: the bomb does not end the run
    assert [Path(r["path"]).name for r in result["predictions"]] == ["a-good.png", "z-good.jpg"]
    assert result["summary"]["failed"] == 3 and result["accelerator_info"] is None  # on the CPU


def test_a_single_heic_file_gets_one_line(tflite_variants):
    done = run_cli("predict", tflite_variants["int8"], HEIC, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "digit3.heic: a HEIC image, which this Pillow cannot decode" in lines[0]
