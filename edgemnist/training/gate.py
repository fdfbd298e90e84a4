"""`edgemnist gate`: train the digit-or-not gate, a tiny int8 .tflite that says whether a prepared image holds a digit.

Usage: edgemnist gate --out edgemnist/runtime/gate/digit_gate_int8.tflite [--negatives DIR] [--json]

A digit classifier's softmax has no "none of these" answer: a letter or a shirt gets a
confident digit. The gate is a second, separate model that answers only that question, on
the same 28x28 image the digit model sees (after `edgemnist.runtime.prepare`), so it works
in front of every exported variant and leaves the digit model alone. `edgemnist predict`
and `edgemnist.load` use the copy shipped in the package (edgemnist/runtime/gate/).

Training images, each passed through `prepare` as `predict` would (what prepare rejects
outright, such as a blank page, never reaches the gate, and is left out):
- digits: MNIST's training images; the same at low resolution (shrunk to 7-14 pixels and
  blown up again, as a small or distant digit is) and with thick, soft strokes (a marker, a
  blurred scan); digits rendered from three quarters of the system's fonts (the other quarter,
  `synthetic.font_split`, is bench_predict.py's blind source; the JSON lists both)
  as photos (`edgemnist.data.synthetic`); and the digits cut out of rendered numbers, as
  `predict --digits` sees them;
- not digits: Fashion-MNIST's *training* split (`--negatives`, where `edgemnist data
  download fashion-mnist` puts it); letters no digit resembles, shapes scenes, scribbles
  and textures from `edgemnist.data.synthetic`, drawn from `--seed`, which differs from
  benchmarks/bench_predict.py's so the benchmark's images are never trained on.
Nothing of what bench_predict.py holds out is used: MNIST's and Fashion-MNIST's test
splits, scikit-learn's digits, the photo crops, and the held-out quarter of the fonts.

The threshold on the gate's output ("digit" probability) is the highest that rejects at
most `max_digit_rejection` of each digit source of the gate's own validation split, as the
int8 model scores it; it is written, with what was trained on and the measured rates, into
a JSON file beside the .tflite (same stem).
"""
from __future__ import annotations

import hashlib
import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from edgemnist.data import IDX_BASENAMES, find_idx
from edgemnist.output import Output
from edgemnist.runtime.gate import metadata_path

FASHION_FOLDER = "fashion-mnist"  # the cache sub-folder `edgemnist data download fashion-mnist` writes
GATE_SEED = 23  # the synthetic images' seed; bench_predict.py draws from 0 and 1
DIGIT_SOURCES = ("mnist", "mnist_low_res", "font_digits", "number_digits", "mnist_bold")
OTHER_SOURCES = ("fashion_mnist", "letters", "shapes", "scribbles", "textures")
PAGE = 200  # side of the synthetic photos: bench_predict.py's


@dataclass(frozen=True)
class GateConfig:
    """Settings of one `edgemnist gate` run."""

    out: str  # the .tflite to write; its JSON goes beside it (same stem, .json)
    negatives: Optional[str] = None  # Fashion-MNIST folder (IDX); None: the download cache
    mnist: int = 30000  # MNIST training digits (and a third as many at low resolution)
    fashion: int = 30000  # Fashion-MNIST training images
    synthetic: int = 5000  # images per synthetic source (font digits, numbers, letters, shapes, ...)
    epochs: int = 12  # passes over the training images
    batch_size: int = 128  # images per training step
    validation: float = 0.1  # share of each source kept out of training, to set the threshold on
    max_digit_rejection: float = 0.005  # the threshold rejects at most this share of each digit source
    filters: tuple = (8, 16, 16)  # channels of the three stride-2 3x3 convolutions
    seed: int = GATE_SEED  # synthetic images, the split and the weights

    def __post_init__(self):
        for name in ("mnist", "fashion", "synthetic", "epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not 0.0 < self.validation < 0.5:
            raise ValueError(f"validation must be in (0, 0.5), got {self.validation!r}")
        if not 0.0 <= self.max_digit_rejection < 0.5:
            raise ValueError(f"max_digit_rejection must be in [0, 0.5), got {self.max_digit_rejection!r}")
        if len(self.filters) != 3 or any(int(f) < 1 for f in self.filters):
            raise ValueError(f"filters must be three positive channel counts, got {self.filters!r}")
        if not str(self.out).endswith(".tflite"):
            raise ValueError(f"--out must name a .tflite file, got {self.out!r}")


def fashion_folder(negatives: Optional[str]) -> Path:
    """The folder holding Fashion-MNIST's training images.

    Raises:
        FileNotFoundError: the folder, or its train-images-idx3-ubyte[.gz], is missing.
    """
    from edgemnist.artifacts import cache_dir

    folder = Path(negatives) if negatives else cache_dir() / FASHION_FOLDER
    images = IDX_BASENAMES["train"][0]
    if not folder.is_dir() or find_idx(folder, images) is None:
        raise FileNotFoundError(f"{folder}: no Fashion-MNIST training images ({images}[.gz]); run `edgemnist data "
                                "download fashion-mnist` or give --negatives DIR")
    return folder


# --------------------------------------------------------------------------- the training images


def _prepared(sources) -> np.ndarray:
    """uint8 (N, 28, 28): each source through `prepare`; images it rejects outright are dropped."""
    from edgemnist.runtime.prepare import prepare

    images = []
    for source in sources:
        ready = prepare(source)
        if ready.image is not None and ready.reason is None:
            images.append(ready.image)
    return np.stack(images) if images else np.zeros((0, 28, 28), np.uint8)


def _low_res(images: np.ndarray, rng: np.random.Generator):
    """Each digit shrunk to 7-14 pixels and blown up to 64x64 again (a small or distant digit)."""
    from PIL import Image

    for image in images:
        side = int(rng.integers(7, 15))
        small = Image.fromarray(image).resize((side, side), Image.Resampling.BOX)
        yield np.asarray(small.resize((64, 64), Image.Resampling.BILINEAR))


def _bold(images: np.ndarray, rng: np.random.Generator):
    """Each digit's strokes thickened by 1-2 pixels a side and softened (a marker, a blurred scan)."""
    from PIL import Image, ImageFilter

    for image in images:
        bold = Image.fromarray(image).filter(ImageFilter.MaxFilter(int(rng.choice((3, 5)))))
        yield np.asarray(bold.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.0, 1.0)))))


def _number_digits(fonts: list, count: int, rng: np.random.Generator) -> np.ndarray:
    """The digits `prepare_digits` cuts out of `count` rendered numbers (2-5 digits, touching to apart)."""
    from edgemnist.data import synthetic
    from edgemnist.runtime.prepare import prepare_digits

    images = []
    while len(images) < count:
        text = "".join(str(d) for d in rng.integers(0, 10, int(rng.integers(2, 6))))
        mask = synthetic.render_text(text, fonts[len(images) % len(fonts)], 96, rng, spacing=(-0.04, 0.3))
        size = (int(PAGE * max(1.0, 0.45 * len(text))), PAGE)
        photo = synthetic.jpeg(synthetic.as_photo(mask, size, rng, rng.uniform(0.25, 0.5)), rng)
        digits, _, _ = prepare_digits(photo)
        images += [d.image for d in digits if d.reason is None]
    return np.stack(images[:count])


def training_images(config: GateConfig, progress: Callable[[str], None] = lambda line: None) -> dict:
    """{source: uint8 (N, 28, 28) prepared images}, for DIGIT_SOURCES and OTHER_SOURCES.

    Raises:
        FileNotFoundError: no Fashion-MNIST training images (`fashion_folder`).
        RuntimeError: no font with digits found.
    """
    from edgemnist import data
    from edgemnist.data import synthetic

    folder = fashion_folder(config.negatives)
    fonts, _ = synthetic.font_split(synthetic.system_fonts())  # the held-out fonts are bench_predict's alone
    if not fonts:
        raise RuntimeError("no TrueType font with digits found (matplotlib's DejaVu fonts are expected)")
    rng = np.random.default_rng(config.seed)
    n = config.synthetic
    mnist = data.load_split("train").images
    mnist = mnist[rng.permutation(len(mnist))[:config.mnist]]
    clothes = data.read_idx(find_idx(folder, IDX_BASENAMES["train"][0]))
    clothes = clothes[rng.permutation(len(clothes))[:config.fashion]]
    makers = {
        "mnist": lambda: _prepared(mnist),
        "mnist_low_res": lambda: _prepared(_low_res(mnist[:max(1, len(mnist) // 3)], rng)),
        "font_digits": lambda: _prepared(synthetic.character_photo(str(i % 10), fonts[i % len(fonts)], PAGE, rng)
                                         for i in range(n)),
        "number_digits": lambda: _number_digits(fonts, n, rng),
        "mnist_bold": lambda: _prepared(_bold(mnist[-max(1, len(mnist) // 3):], rng)),
        "fashion_mnist": lambda: _prepared(clothes),
        "letters": lambda: _prepared(synthetic.character_photo(synthetic.random_letter(rng), fonts[i % len(fonts)],
                                                               PAGE, rng) for i in range(n)),
        "shapes": lambda: _prepared(synthetic.jpeg(synthetic.photo_effects(synthetic.shapes_scene(rng, PAGE), rng),
                                                   rng) for _ in range(n)),
        "scribbles": lambda: _prepared(synthetic.jpeg(synthetic.photo_effects(synthetic.scribble(rng, PAGE), rng),
                                                      rng) for _ in range(n)),
        "textures": lambda: _prepared(synthetic.jpeg(synthetic.photo_effects(synthetic.texture(rng, PAGE), rng), rng)
                                      for _ in range(n)),
    }
    sets = {}
    for source, make in makers.items():
        start = time.perf_counter()
        sets[source] = make()
        progress(f"{source}: {len(sets[source])} prepared images ({time.perf_counter() - start:.0f} s)")
    return sets


def split_sources(sets: dict, validation: float, rng: np.random.Generator) -> tuple:
    """({source: training images}, {source: validation images}): `validation` of each source held out."""
    train, held = {}, {}
    for source, images in sets.items():
        order = rng.permutation(len(images))
        cut = int(round(len(images) * validation))
        held[source], train[source] = images[order[:cut]], images[order[cut:]]
    return train, held


# --------------------------------------------------------------------------- the model


def build_gate(filters: tuple = GateConfig.filters):
    """The gate: three stride-2 3x3 convolutions (28 -> 14 -> 7 -> 4), then one sigmoid unit: P(digit)."""
    from edgemnist._tensorflow import keras

    k = keras()
    inputs = k.Input((28, 28, 1), name="image")
    x = inputs
    for i, channels in enumerate(filters):
        x = k.layers.Conv2D(int(channels), 3, strides=2, padding="same", activation="relu", name=f"conv{i}")(x)
    x = k.layers.Flatten(name="flatten")(x)
    outputs = k.layers.Dense(1, activation="sigmoid", name="digit")(x)
    return k.Model(inputs, outputs, name="digit_gate")


def _stack(sets: dict) -> tuple:
    from edgemnist import data

    images = np.concatenate([sets[s] for s in DIGIT_SOURCES + OTHER_SOURCES])
    labels = np.concatenate([np.full(len(sets[s]), s in DIGIT_SOURCES, np.float32)
                             for s in DIGIT_SOURCES + OTHER_SOURCES])
    return data.to_model_input(images), labels


def choose_threshold(scores: dict, max_digit_rejection: float) -> float:
    """The highest threshold (reject when P(digit) < threshold) rejecting at most `max_digit_rejection` of
    each digit source's validation images."""
    limits = []
    for source in DIGIT_SOURCES:
        values = np.sort(scores[source])
        allowed = int(np.floor(max_digit_rejection * len(values)))  # images that may fall under it
        limits.append(float(values[allowed]) if len(values) else 1.0)
    return min(limits)


def rates(scores: dict, threshold: float) -> dict:
    """{source: {n, rejected}} on the validation split at `threshold`."""
    return {s: {"n": int(len(v)), "rejected": round(float(np.mean(v < threshold)) if len(v) else 0.0, 4)}
            for s, v in scores.items()}


def train_gate(config: GateConfig, progress: Callable[[str], None] = lambda line: None,
               command: Optional[str] = None, sets: Optional[dict] = None) -> dict:
    """Builds the training images, trains the gate, exports it as full-integer int8 and writes it and its JSON.

    Args:
        config: the run's settings.
        progress: called with one line per step.
        command: the command line to record (default: this process's).
        sets: the training images, as `training_images` makes them (default: made here).

    Returns:
        The JSON written beside the .tflite (keys: docs/outputs.md).

    Raises:
        FileNotFoundError: no Fashion-MNIST training images.
        RuntimeError: no font found, or the converter failed.
    """
    from edgemnist._tensorflow import import_tensorflow, keras
    from edgemnist.artifacts import atomic_path
    from edgemnist.export.tflite_converter import tflite_convert
    from edgemnist.runtime import Runner

    started = time.perf_counter()
    sets = training_images(config, progress) if sets is None else sets
    rng = np.random.default_rng(config.seed + 1)
    train, held = split_sources(sets, config.validation, rng)
    x, y = _stack(train)
    order = rng.permutation(len(y))
    x, y = x[order], y[order]
    tf = import_tensorflow()
    tf.keras.utils.set_random_seed(config.seed)
    model = build_gate(config.filters)
    # digits and non-digits weigh the same in the loss, whatever their counts
    positive = float(y.mean())
    weights = {0: 0.5 / (1.0 - positive), 1: 0.5 / positive}
    model.compile(optimizer=keras().optimizers.Adam(3e-3), loss="binary_crossentropy", metrics=["accuracy"])
    progress(f"training on {len(y)} images ({int(y.sum())} digits), {model.count_params()} parameters, "
             f"{config.epochs} epoch(s)")
    for epoch in range(config.epochs):
        if epoch == config.epochs - 1 and config.epochs > 2:
            model.optimizer.learning_rate.assign(3e-4)  # a last, gentler pass settles the weights
        history = model.fit(x, y, batch_size=config.batch_size, epochs=1, class_weight=weights, verbose=0,
                            shuffle=True)
        progress(f"epoch {epoch + 1}/{config.epochs}: loss {history.history['loss'][0]:.4f}, "
                 f"accuracy {history.history['accuracy'][0]:.4f}")
    calibration = x[rng.permutation(len(x))[:500]]
    tflite = tflite_convert(model, "full_integer", images=calibration)
    out = Path(config.out)
    # The JSON's temporary file is opened first and renamed last (export's rule for a .tflite and its
    # manifest): a failure anywhere leaves the previous pair, never a new gate beside an old threshold.
    with atomic_path(metadata_path(out)) as tmp_json, atomic_path(out) as tmp_tflite:
        tmp_tflite.write_bytes(tflite)
        runner = Runner(tmp_tflite, trusted=True)
        scores = {s: runner.predict(v, batch_size=256).reshape(-1) if len(v) else np.zeros(0, np.float32)
                  for s, v in held.items()}
        metadata = _metadata(config, model, train, scores, tflite, out.name, command, started)
        tmp_json.write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    progress(f"wrote {out} ({len(tflite)} bytes) and {metadata_path(out).name}: threshold {metadata['threshold']:.4f}")
    return metadata


def _metadata(config: GateConfig, model, train: dict, scores: dict, tflite: bytes, name: str,
              command: Optional[str], started: float) -> dict:
    """The gate's JSON: the threshold chosen on the validation scores, the rates, what was trained on."""
    from edgemnist import __version__

    threshold = choose_threshold(scores, config.max_digit_rejection)
    measured = rates(scores, threshold)
    others = [measured[s] for s in OTHER_SOURCES]
    caught = sum(r["rejected"] * r["n"] for r in others) / max(1, sum(r["n"] for r in others))
    return {
        "threshold": round(threshold, 6),
        "rule": "reject when the gate's output (P(digit)) is below threshold",
        "input": "the prepared 28x28 image (edgemnist.runtime.prepare), pixel / 255",
        "tflite": name,
        "tflite_sha256": hashlib.sha256(tflite).hexdigest(),
        "tflite_bytes": len(tflite),
        "parameters": int(model.count_params()),
        "trained_on": {s: int(len(v)) for s, v in train.items()},
        "validation": measured,
        "validation_digits_rejected_max": max(measured[s]["rejected"] for s in DIGIT_SOURCES),
        "validation_non_digits_caught": round(caught, 4),
        "held_out_from_training": ["MNIST test", "Fashion-MNIST test", "scikit-learn digits",
                                   "matplotlib sample photos (bench_predict photo_crops)",
                                   "bench_predict.py's seeds 0 and 1",
                                   "the fonts in fonts.held_out (edgemnist.data.synthetic.font_split)"],
        "fonts": _font_record(),
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()},
        "command": command if command is not None else shlex.join(["edgemnist"] + sys.argv[1:]),
        "edgemnist_version": __version__,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _font_record() -> dict:
    """Which of this machine's fonts the gate trained on and which it held out (by file name)."""
    from edgemnist.data import synthetic

    training, held_out = synthetic.font_split(synthetic.system_fonts())
    return {"trained_on": [f.name for f in training], "held_out": [f.name for f in held_out],
            "rule": f"held out: SHA-256 of the file name = 0 mod {synthetic.HELD_OUT_FONTS_EVERY}"}


def format_result(result: dict) -> str:
    """The human summary of a gate run: the threshold and the validation rates per source."""
    lines = [f"gate {result['tflite']}: {result['parameters']} parameters, {result['tflite_bytes']} bytes, "
             f"threshold {result['threshold']:.4f}",
             f"  {'validation source':<18}{'n':>7}{'rejected':>10}"]
    for source, row in result["validation"].items():
        lines.append(f"  {source:<18}{row['n']:>7}{row['rejected']:>10.2%}")
    lines.append(f"  digits rejected at most {result['validation_digits_rejected_max']:.2%} per source; "
                 f"non-digits caught {result['validation_non_digits_caught']:.2%}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI


def add_commands(subparsers) -> None:
    """Registers `edgemnist gate`."""
    p = subparsers.add_parser(
        "gate",
        help="train the digit-or-not gate that predict uses to reject images holding no digit",
        description="Train the gate: a tiny int8 .tflite that says whether a prepared 28x28 image holds a digit, "
        "used by `edgemnist predict` and edgemnist.load in front of any digit model (the package ships one: "
        "edgemnist/runtime/gate/digit_gate_int8.tflite). Trained on MNIST's training digits, digits rendered "
        "from the system fonts as photos, Fashion-MNIST's training split and synthetic letters, shapes, "
        "scribbles and textures, each passed through predict's preparation step. Writes the .tflite and, "
        "beside it, a JSON with the threshold (chosen on a validation split so that few digits are rejected), "
        "what was trained on and the measured rates. Needs the train extra (TensorFlow).",
    )
    p.add_argument("--out", required=True, metavar="FILE", help="the .tflite to write (its .json goes beside it)")
    p.add_argument("--negatives", metavar="DIR",
                   help="Fashion-MNIST folder (IDX files) for the clothes negatives (default: where `edgemnist data "
                   "download fashion-mnist` puts them)")
    p.add_argument("--mnist", type=int, default=GateConfig.mnist, metavar="N",
                   help="MNIST training digits used (default %(default)s)")
    p.add_argument("--fashion", type=int, default=GateConfig.fashion, metavar="N",
                   help="Fashion-MNIST training images used (default %(default)s)")
    p.add_argument("--synthetic", type=int, default=GateConfig.synthetic, metavar="N",
                   help="images per synthetic source (default %(default)s)")
    p.add_argument("--epochs", type=int, default=GateConfig.epochs, help="training epochs (default %(default)s)")
    p.add_argument("--max-digit-rejection", type=float, default=GateConfig.max_digit_rejection, metavar="R",
                   help="the threshold rejects at most this share of each digit source of the validation split "
                   "(default %(default)s)")
    p.add_argument("--seed", type=int, default=GateConfig.seed,
                   help="seed of the synthetic images, the split and the weights (default %(default)s; "
                   "bench_predict.py uses 0 and 1)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=_run_gate)


def _run_gate(args):
    config = GateConfig(out=args.out, negatives=args.negatives, mnist=args.mnist, fashion=args.fashion,
                        synthetic=args.synthetic, epochs=args.epochs, max_digit_rejection=args.max_digit_rejection,
                        seed=args.seed)
    fashion_folder(config.negatives)  # a missing folder fails before TensorFlow loads

    def progress(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    result = train_gate(config, progress)
    return Output(result, format_result(result))

