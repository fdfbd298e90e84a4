"""`edgemnist predict` on real input: speed end to end, accuracy on digits that are not MNIST, numbers, rejection.

Usage: python benchmarks/bench_predict.py runs/default/tflite/model_float32.tflite runs/default/tflite/model_int8.tflite \
           [--json benchmarks/results/predict.json]
       python benchmarks/bench_predict.py MODEL.tflite --per-class 10 --numbers 20 --non-digits 10 --timing-images 20
           (a smoke run)
       python benchmarks/bench_predict.py MODEL.tflite --no-gate   (the rejection rule without the digit-or-not gate)
       python benchmarks/bench_predict.py MODEL.tflite --temperature 1   (uncalibrated probabilities)
Each run writes benchmarks/results/predict[_SETTINGS].json, named by the settings that differ from the defaults.

In one process, 1 interpreter thread, for each model:
1. speed: images per second through `Model.predict(path)` (decode + prepare + infer) on
   `--timing-images` 200x200 JPEG files of photo-like digits, best of `--rounds`, and the
   share of each step, each timed alone the same way: decode (`read_grey`), prepare (the
   rest of `prepare`), infer (`predict_one` on the prepared 28x28), gate (the digit-or-not
   gate on the same, `Gate.score_one`). Target (issue 23):
   >= 500 images/s with int8;
2. accuracy with and without the preparation step (without: greyscale and a plain resize to
   28x28) on digit images that are not MNIST, generated with `--seed` by `edgemnist.data.synthetic`
   (the generators `edgemnist gate` trains on, drawn there from another seed). The fonts are
   split by `synthetic.font_split`: the gate trains on three quarters of them (the in-distribution
   sources below); `fonts_photo_held_out` and `letters_held_out` are drawn from the quarter it
   never saw, and no decision (gate variants, thresholds, `prepare`'s settings) was made on them:
   they are the benchmark's blind sources.
   - `fonts_photo`: digits rendered from every system font found, as a phone photo would show
     them: dark ink on paper, off-centre, 25-60 % of the frame high, rotated up to 8 degrees,
     uneven light (a gradient and a vignette), focus blur, sensor noise, JPEG 35-90;
     200x200. Target: >= 97 % prepared, while a plain resize scores near chance;
   - `sklearn_digits`: scikit-learn's `load_digits` (1,797 handwritten 8x8 digits, white on
     black), upscaled to 64x64 (skipped when scikit-learn is not installed);
   - `mnist_test`: the first `--mnist` MNIST test digits as PNG files (the model's own kind,
     to show what the preparation costs on input that needs none);
3. numbers (`--numbers` images of 2-6 digits, the same fonts and photo effects, the digits
   spaced from touching to well apart), read by `Model.predict_number`: share read whole.
   Target: >= 90 %;
4. rejection (the rule of docs/outputs.md, with the gate shipped in the package): share of
   non-digit images flagged (blank pages, letters, shapes, crops of real photos, and
   Fashion-MNIST's test split when /usr/share/datasets/fashion-mnist is there), and
   what the flag costs on digits (accuracy counting rejected digits as wrong, minus accuracy
   without the flag). Target: >= 90 % caught at <= 1 pp cost.
Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from edgemnist.data.synthetic import (as_photo, character_photo, font_split, jpeg, photo_effects, png, random_letter,
                                     render_text, shapes_scene, system_fonts)
from edgemnist.data.synthetic import sklearn_digits as synthetic_sklearn_digits
from edgemnist.runtime.gate import DEFAULT_GATE, metadata_path

SIDE = 200  # the timing and accuracy images are 200x200, as the speed target
FASHION = Path("/usr/share/datasets/fashion-mnist")


# --------------------------------------------------------------------------- the image sets


def digit_photos(fonts: list, per_class: int, rng) -> tuple:
    """(JPEG bytes, labels): `per_class` photo-like renders of each digit, fonts taken in turn."""
    images, labels = [], []
    for d in range(10):
        for i in range(per_class):
            images.append(character_photo(str(d), fonts[(d + i) % len(fonts)], SIDE, rng))
            labels.append(str(d))
    return images, labels


def number_photos(fonts: list, count: int, rng) -> tuple:
    """(JPEG bytes, numbers): `count` numbers of 2-6 digits, spaced from touching to apart."""
    images, labels = [], []
    for i in range(count):
        text = "".join(str(d) for d in rng.integers(0, 10, int(rng.integers(2, 7))))
        mask = render_text(text, fonts[i % len(fonts)], 96, rng, spacing=(-0.04, 0.3))
        size = (int(SIDE * max(1.0, 0.45 * len(text))), SIDE)
        images.append(jpeg(as_photo(mask, size, rng, rng.uniform(0.25, 0.5)), rng))
        labels.append(text)
    return images, labels


def sklearn_digits() -> tuple:
    """(PNG bytes 64x64, labels) of scikit-learn's 1,797 8x8 digits, or None without scikit-learn."""
    return synthetic_sklearn_digits("upscaled", side=64)


def mnist_pngs(n: int) -> tuple:
    from edgemnist import data

    split = data.load_split("test", limit=n)
    return [png(Image.fromarray(image)) for image in split.images], [str(int(t)) for t in split.labels]


def non_digit_sets(fonts: list, held_out_fonts: list, n: int, rng) -> dict:
    """{source: [encoded images]} of images that hold no digit (`letters_held_out`: from the fonts the
    gate never trained on, when there are any)."""
    import matplotlib

    sets = {"blank": [], "letters": [], "letters_held_out": [], "shapes": [], "photo_crops": []}
    for _ in range(n):
        sets["blank"].append(jpeg(photo_effects(np.zeros((SIDE, SIDE), np.float32), rng), rng))
    for i in range(n):
        sets["letters"].append(character_photo(random_letter(rng), fonts[i % len(fonts)], SIDE, rng))
    for i in range(n if held_out_fonts else 0):
        sets["letters_held_out"].append(character_photo(random_letter(rng), held_out_fonts[i % len(held_out_fonts)],
                                                        SIDE, rng))
    if not sets["letters_held_out"]:
        del sets["letters_held_out"]
    for _ in range(n):
        sets["shapes"].append(jpeg(photo_effects(shapes_scene(rng, SIDE), rng), rng))
    samples = Path(matplotlib.get_data_path()) / "sample_data"
    photos = [Image.open(samples / name).convert("L") for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png",
                                                                   "logo2.png") if (samples / name).is_file()]
    for i in range(n if photos else 0):
        photo = photos[i % len(photos)]
        side = int(rng.integers(min(photo.size) // 4, min(photo.size)))
        x, y = int(rng.integers(0, photo.width - side + 1)), int(rng.integers(0, photo.height - side + 1))
        crop = photo.crop((x, y, x + side, y + side)).resize((SIDE, SIDE), Image.Resampling.BILINEAR)
        sets["photo_crops"].append(jpeg(crop, rng))
    if not sets["photo_crops"]:
        del sets["photo_crops"]
    if (FASHION / "t10k-images-idx3-ubyte.gz").is_file():
        from edgemnist.data import read_idx

        clothes = read_idx(FASHION / "t10k-images-idx3-ubyte.gz")[:n]
        sets["fashion_mnist"] = [png(Image.fromarray(image)) for image in clothes]
    return sets


# --------------------------------------------------------------------------- measuring


def held_out_fonts_seen(held_out_fonts: list) -> list:
    """The held-out fonts that the shipped gate's JSON says it trained on (should be none: a gate made
    before the split, or by another rule, would make the held-out sources in distribution)."""
    recorded = json.loads(metadata_path(DEFAULT_GATE).read_text(encoding="utf-8")).get("fonts")
    if recorded is None:
        return ["(the shipped gate records no fonts: made before the split)"]
    seen = sorted(set(recorded["trained_on"]) & {f.name for f in held_out_fonts})
    if seen:
        print(f"the shipped gate trained on fonts this run holds out: {', '.join(seen)}", file=sys.stderr)
    return seen


def gate_entry(gate) -> dict:
    """The gate as the JSON records it: the shipped one by name, not by this machine's path."""
    entry = gate.describe()
    if Path(gate.path).resolve() == DEFAULT_GATE:
        entry["path"] = "shipped: " + DEFAULT_GATE.name
    return entry


def seconds_per_image(fn, items: list) -> float:
    start = time.perf_counter()
    for item in items:
        fn(item)
    return (time.perf_counter() - start) / len(items)


def timing(model, paths: list, rounds: int) -> dict:
    """Images per second end to end and the share of each step: every round times the whole path
    and each step in turn (interleaved, so a slow spell of the machine hits them alike); the best
    round of each counts."""
    from edgemnist.runtime.prepare import prepare, read_grey

    config = model.config
    prepared = [prepare(p, config).image for p in paths]
    prepared = [p for p in prepared if p is not None]
    runner = model.runner
    for p in paths[:10]:
        model.predict(p)  # warm-up
    timed = {"total": (model.predict, paths),
             "decode": (lambda p: read_grey(p, config.work_size), paths),
             "prepare": (lambda p: prepare(p, config), paths),
             "infer": (runner.predict_one, prepared)}
    if model.gate is not None:
        timed["gate"] = (model.gate.score_one, prepared)
    best = {name: float("inf") for name in timed}
    for _ in range(rounds):
        for name, (fn, items) in timed.items():
            best[name] = min(best[name], seconds_per_image(fn, items))
    total, decode, prep, infer = best["total"], best["decode"], best["prepare"], best["infer"]
    steps = {"decode": decode, "prepare": max(prep - decode, 0.0), "infer": infer}
    if "gate" in best:
        steps["gate"] = best["gate"]
    steps["other"] = max(total - sum(steps.values()), 0.0)
    return {
        "images": len(paths),
        "images_per_second": round(1.0 / total, 1),
        "ms_per_image": round(total * 1e3, 4),
        "step_ms": {k: round(v * 1e3, 4) for k, v in steps.items()},
        "step_share": {k: round(v / total, 4) for k, v in steps.items()},
    }


def calibration_error(confidences: list, correct: list, bins: int = 10) -> float:
    """Expected calibration error: over equal-width confidence bins, the image-weighted mean of
    |accuracy - mean confidence| (0 = the probability printed is the chance of being right)."""
    confidences, correct = np.asarray(confidences, float), np.asarray(correct, float)
    which = np.minimum((confidences * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.sum() * abs(correct[inside].mean() - confidences[inside].mean())
    return total / len(confidences)


def read_all(model, images: list, labels: list, number: bool = False) -> dict:
    """Accuracy without the rejection flag, with it (rejected = wrong), the share rejected, and for
    single digits how well the printed probability is calibrated (ECE over the answered images)."""
    right = accepted_right = rejected = 0
    confidences, correct = [], []
    for image, label in zip(images, labels):
        result = model.predict_number(image) if number else model.predict(image)
        answer = result.number if number else (None if result.digit is None else str(result.digit))
        right += answer == label
        accepted_right += answer == label and not result.rejected
        rejected += bool(result.rejected)
        if not number and result.probability is not None:
            confidences.append(float(result.probability))
            correct.append(answer == label)
    n = len(labels)
    row = {"n": n, "accuracy": round(right / n, 4), "accuracy_with_rejection": round(accepted_right / n, 4),
           "rejection_cost_pp": round(100.0 * (right - accepted_right) / n, 2), "rejected": round(rejected / n, 4)}
    if confidences:
        row["mean_probability"] = round(float(np.mean(confidences)), 4)
        row["ece"] = round(calibration_error(confidences, correct), 4)
    return row


def rejection(model, sets: dict) -> dict:
    """Per source of non-digit images: the share flagged and why."""
    result = {}
    for source, images in sets.items():
        reasons: dict = {}
        for image in images:
            reason = model.predict(image).reason or "accepted"
            reasons[reason] = reasons.get(reason, 0) + 1
        result[source] = {"n": len(images), "caught": round(1.0 - reasons.get("accepted", 0) / len(images), 4),
                          "reasons": reasons}
    total = sum(r["n"] for r in result.values())
    caught = sum(r["caught"] * r["n"] for r in result.values())
    result["all"] = {"n": total, "caught": round(caught / total, 4)}
    return result


RESULTS = Path(__file__).resolve().parent / "results"


def results_name(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """predict.json for the default settings, else predict_<setting><value>_...json: a run with other settings
    never overwrites another's results (e.g. --no-gate -> predict_no-gate.json, --temperature 1 ->
    predict_temperature1.json, a smoke run -> predict_per-class10_....json)."""
    parts = []
    for action in parser._actions:
        if action.dest in ("help", "models", "json"):
            continue
        value = getattr(args, action.dest)
        if value == action.default:
            continue
        flag = action.option_strings[0].lstrip("-")
        if action.nargs == 0:  # a switch: its name says it
            parts.append(flag)
        else:
            parts.append(f"{flag}{value:g}" if isinstance(value, float) else f"{flag}{value}")
    return "_".join(["predict", *parts]) + ".json"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help=".tflite files (float32 and int8)")
    parser.add_argument("--per-class", type=int, default=100, help="photo-like font digits per class (100)")
    parser.add_argument("--numbers", type=int, default=300, help="numbers of 2-6 digits (300)")
    parser.add_argument("--non-digits", type=int, default=200, help="images per non-digit source (200)")
    parser.add_argument("--mnist", type=int, default=2000, help="MNIST test digits as PNG (2000)")
    parser.add_argument("--timing-images", type=int, default=200, help="200x200 JPEG files timed end to end (200)")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds; the best counts (5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated images (0)")
    parser.add_argument("--no-gate", dest="gate", action="store_const", const=None, default="default",
                        help="without the digit-or-not gate (what the rest of the rule does alone)")
    parser.add_argument("--temperature", type=float, default=None,
                        help="calibrate with this T instead of each model's manifest's (1: the raw softmax)")
    parser.add_argument("--json", default=None,
                        help="where to write the results (default: benchmarks/results/predict.json, the name "
                             "carrying every setting that differs from its default, e.g. predict_no-gate.json)")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.json is None:
        args.json = str(RESULTS / results_name(parser, args))

    import edgemnist
    from edgemnist.artifacts import atomic_write_json
    from edgemnist.runtime.machine import machine_info

    rng = np.random.default_rng(args.seed)
    fonts = system_fonts()
    if not fonts:
        print("no TrueType font with digits found (matplotlib's DejaVu fonts are expected)", file=sys.stderr)
        return 2
    seen_fonts, held_out_fonts = font_split(fonts)  # the gate trained on the first, never on the second
    photos, photo_labels = digit_photos(seen_fonts, args.per_class, rng)
    sources = {"fonts_photo": (photos, photo_labels)}
    if held_out_fonts:
        sources["fonts_photo_held_out"] = digit_photos(held_out_fonts, args.per_class, rng)
    else:
        print("no font of this machine is held out of the gate's training: fonts_photo_held_out skipped",
              file=sys.stderr)
    numbers, number_labels = number_photos(seen_fonts, args.numbers, rng)
    non_digits = non_digit_sets(seen_fonts, held_out_fonts, args.non_digits, rng)
    sources["mnist_test"] = mnist_pngs(args.mnist)
    sk = sklearn_digits()
    if sk is not None:
        sources["sklearn_digits"] = sk
    else:
        print("scikit-learn is not installed: sklearn_digits skipped (pip install scikit-learn)", file=sys.stderr)

    results = {"models": {}, "fonts": [p.name for p in fonts], "fonts_held_out": [p.name for p in held_out_fonts],
               "held_out_fonts_the_gate_saw": held_out_fonts_seen(held_out_fonts) if args.gate else [],
               "seed": args.seed, "machine": machine_info(),
               "threads": 1, "settings": vars(args)}
    with tempfile.TemporaryDirectory() as folder:
        timing_rng = np.random.default_rng(args.seed + 1)
        paths = []
        for i in range(args.timing_images):
            mask = render_text(str(i % 10), fonts[i % len(fonts)], 96, timing_rng)
            path = Path(folder) / f"{i:04d}.jpg"
            path.write_bytes(jpeg(as_photo(mask, (SIDE, SIDE), timing_rng, timing_rng.uniform(0.25, 0.6)), timing_rng))
            paths.append(path)
        for model_path in args.models:
            model = edgemnist.load(model_path, threads=1, trusted=True, gate=args.gate, temperature=args.temperature)
            plain = edgemnist.load(model_path, threads=1, trusted=True, prepare=False, gate=args.gate,
                                   temperature=args.temperature)
            entry = {"backend": f"{model.runner.backend.name} {model.runner.backend.version}",
                     "input": str(np.dtype(model.runner.input.dtype)), "min_probability": model.min_probability,
                     "temperature": model.temperature, "gate": None if model.gate is None else gate_entry(model.gate),
                     "timing": timing(model, paths, args.rounds), "accuracy": {}}
            for source, (images, labels) in sources.items():
                entry["accuracy"][source] = {"prepared": read_all(model, images, labels),
                                             "plain_resize": read_all(plain, images, labels)}
            entry["numbers"] = read_all(model, numbers, number_labels, number=True)
            entry["rejection"] = rejection(model, non_digits)
            results["models"][Path(model_path).name] = entry

    print(format_table(results))
    atomic_write_json(args.json, results)
    print(f"wrote {args.json}")
    return 0


def format_table(results: dict) -> str:
    lines = [f"fonts: {len(results['fonts'])}; machine: {results['machine'].get('cpu')}; 1 thread", ""]
    for name, entry in results["models"].items():
        t = entry["timing"]
        share = ", ".join(f"{k} {v:.0%}" for k, v in t["step_share"].items())
        lines.append(f"{name} ({entry['input']} input, {entry['backend']}): {t['images_per_second']:.0f} images/s "
                     f"end to end on {t['images']} 200x200 JPEGs ({t['ms_per_image']:.3f} ms: {share})")
        lines.append(f"  {'source':<16}{'n':>6}{'prepared':>10}{'+reject':>9}{'cost pp':>9}{'plain':>8}"
                     f"{'mean prob':>11}{'ECE':>7}")
        for source, acc in entry["accuracy"].items():
            p, r = acc["prepared"], acc["plain_resize"]
            lines.append(f"  {source:<16}{p['n']:>6}{p['accuracy']:>10.2%}{p['accuracy_with_rejection']:>9.2%}"
                         f"{p['rejection_cost_pp']:>9.2f}{r['accuracy']:>8.2%}"
                         f"{p.get('mean_probability', float('nan')):>11.2%}{p.get('ece', float('nan')):>7.3f}")
        n = entry["numbers"]
        lines.append(f"  {'numbers (whole)':<16}{n['n']:>6}{n['accuracy']:>10.2%}{n['accuracy_with_rejection']:>9.2%}"
                     f"{n['rejection_cost_pp']:>9.2f}")
        caught = ", ".join(f"{k} {v['caught']:.0%}" for k, v in entry["rejection"].items() if k != "all")
        lines.append(f"  non-digit images caught: {entry['rejection']['all']['caught']:.1%} of "
                     f"{entry['rejection']['all']['n']} ({caught})")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
