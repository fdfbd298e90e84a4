"""`edgemnist predict`: read the digit (or, with --digits, the number) in real images with a .tflite model.

Usage: edgemnist predict photo.jpg scans/ - [--digits] [--top 3] [--json]     (the shipped int8 model)
       edgemnist predict runs/default/tflite/model_int8.tflite photo.jpg       (your own export)

The model is the first argument when it names a .tflite file (or a shipped model: `int8`,
`float32`; also `--model`); without one, the int8 model shipped in the package reads the images.

Images are files (PNG, JPEG, PGM/PPM, BMP, ...), folders (searched recursively; images
in class folders 0/ .. 9/ give the accuracy) or `-` (one image on stdin). Each is put
into MNIST's form (`edgemnist.runtime.prepare`; `--no-prepare` skips that for
MNIST-shaped input) and read by `edgemnist.runtime.classify.Model`. `--watch DIR` reads
each image that appears in DIR, one line each, until Ctrl-C (exit 130).

A file that cannot be read (corrupt, a decompression bomb, an animation, a format this
Pillow cannot decode such as HEIC) gets one line on stderr naming it, and the others go on;
the exit status is then 2. Photos stored sideways are read upright (EXIF orientation).
Needs numpy, Pillow and a TFLite interpreter; no TensorFlow.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from edgemnist.console import first_line
from edgemnist.data import NUM_CLASSES
from edgemnist.measure.eval import add_runtime_arguments, runtime_settings
from edgemnist.output import Output
from edgemnist.runtime.accelerator import DEFAULT_ACCELERATOR, RuntimeSettings, describe_device
from edgemnist.runtime.classify import DEFAULT, MIN_PROBABILITY, Model, NumberPrediction
from edgemnist.runtime.models import DEFAULT_MODEL, SHIPPED, is_model_argument
from edgemnist.runtime.prepare import IMAGE_SUFFIXES, is_image_file
from edgemnist.runtime.temperature import check_temperature

STDIN = "-"


@dataclass(frozen=True)
class PredictConfig:
    """Settings of one `edgemnist predict` run."""

    top: int = 2  # most probable digits given per image
    digits: bool = False  # read a number: cut the image into digits
    prepare: bool = True  # put images into MNIST's form first (False: they already are)
    min_probability: float = MIN_PROBABILITY  # below this a digit is flagged low confidence (rejected)
    save_prepared: Optional[str] = None  # folder for the 28x28 images the model saw
    gate: Optional[str] = DEFAULT  # digit-or-not gate: "default" (shipped), a .tflite path, or None (none)
    runtime: RuntimeSettings = RuntimeSettings()  # accelerator, threads, backend, GPU precision (checked there)
    poll: float = 0.5  # --watch: seconds between looks at the folder
    temperature: Optional[float] = None  # calibrates the probabilities; None: the model's manifest's, else 1.0

    def __post_init__(self):
        if isinstance(self.top, bool) or not isinstance(self.top, int) or not 1 <= self.top <= NUM_CLASSES:
            raise ValueError(f"top must be an integer from 1 to {NUM_CLASSES}, got {self.top!r}")
        if not 0.0 <= self.min_probability <= 1.0:
            raise ValueError(f"min_probability must be in [0, 1], got {self.min_probability!r}")
        if not self.poll > 0:
            raise ValueError(f"poll must be > 0 seconds, got {self.poll!r}")
        if self.temperature is not None:
            check_temperature(self.temperature)
        if self.digits and not self.prepare:
            raise ValueError("--digits cuts the image into digits in the preparation step; drop --no-prepare")


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Item:
    """One image to read: where it is, its name in the output, and its label (from a class folder)."""

    source: object  # a Path, or STDIN
    name: str
    label: Optional[str] = None


def collect(inputs: list) -> list:
    """The images named by files, folders (recursive, image suffixes only) and `-`, in order.

    Raises:
        ValueError: `-` given twice, or a folder with no image in it.
    """
    items, stdin_seen = [], False
    for entry in inputs:
        if entry == STDIN:
            if stdin_seen:
                raise ValueError("'-' (stdin) can be given once")
            stdin_seen = True
            items.append(Item(STDIN, "<stdin>"))
            continue
        path = Path(entry)
        if not path.is_dir():
            items.append(Item(path, str(path)))  # a missing or bad file is reported at its turn
            continue
        found = sorted(f for f in path.rglob("*") if f.is_file() and is_image_file(f)
                       and not any(part.startswith(".") for part in f.relative_to(path).parts))
        if not found:
            raise ValueError(f"{path}: no image files in it (looked for {', '.join(IMAGE_SUFFIXES)})")
        for f in found:
            parts = f.relative_to(path).parts
            label = parts[-2] if len(parts) >= 2 and parts[-2].isdigit() and parts[-2].isascii() else None
            items.append(Item(f, str(f), label))
    return items


# --------------------------------------------------------------------------- reading one image


class _Saver:
    """Writes the 28x28 images the model saw as PNG files into one folder, names kept unique."""

    def __init__(self, folder: Optional[str]):
        self.folder = Path(folder) if folder else None
        self.used: set = set()

    def _name(self, stem: str) -> str:
        name, n = stem, 1
        while name in self.used:
            n += 1
            name = f"{stem}-{n}"
        self.used.add(name)
        return name

    def save(self, item: Item, images: list) -> list:
        if self.folder is None or not images:
            return []
        from PIL import Image

        from edgemnist.artifacts import atomic_write_with

        stem = self._name("stdin" if item.source == STDIN else Path(item.name).stem)
        paths = []
        for i, image in enumerate(images):
            path = self.folder / (f"{stem}.png" if len(images) == 1 else f"{stem}-d{i}.png")
            atomic_write_with(path, lambda tmp, image=image: Image.fromarray(image, "L").save(tmp, "PNG"), ".png")
            paths.append(str(path))
        return paths


def image_record(model: Model, source, name: str, top: int, digits: bool = False,
                 label: Optional[str] = None) -> tuple:
    """Reads one image and builds its JSON record, the one predict --json and `edgemnist serve` give.

    Args:
        model: the Model that reads it.
        source: what `Model.predict` takes (a path, encoded bytes, ...).
        name: the record's `path`.
        top: how many of the most probable digits the record lists.
        digits: read a number (`Model.predict_number`) instead of one digit.
        label: the expected answer (a class folder's name), or None.

    Returns:
        (record, images): the record with `prepared` None (the caller fills it in) and the
        uint8 28x28 images the model saw (one per digit; none when no digit was found).

    Raises:
        FileNotFoundError, ValueError, OSError: the image cannot be read.
    """
    if digits:
        result = model.predict_number(source)
        images = [d.image for d in result.digits]
    else:
        result = model.predict(source)
        images = [] if result.image is None else [result.image]
    record = {"path": name, "label": label, **result.to_json(top)}
    record["right"] = None if label is None else _answer(result) == label
    record["prepared"] = None
    return record, images


def read_item(model: Model, item: Item, config: PredictConfig, saver: _Saver) -> dict:
    """One image's JSON record (keys: docs/outputs.md).

    Raises:
        FileNotFoundError, ValueError, OSError: the image cannot be read.
    """
    source = sys.stdin.buffer.read() if item.source == STDIN else item.source
    record, images = image_record(model, source, item.name, config.top, config.digits, item.label)
    record["prepared"] = saver.save(item, images) if config.save_prepared else None
    return record


def _answer(result) -> Optional[str]:
    if isinstance(result, NumberPrediction):
        return result.number
    return None if result.digit is None else str(result.digit)


def format_record(record: dict, top: int = 2) -> str:
    """One line for a person: the digit (or number), its probability, the runner-up or top K, the verdict."""
    name = record["path"]
    if "number" in record:
        if record["number"] is None:
            line = f"{name}: {record['reason']}"
        else:
            per_digit = ", ".join(f"{d['digit']} {d['probability']:.2f}" for d in record["digits"])
            line = f"{name}: {record['number']}  p={record['probability']:.3f}  ({per_digit})"
            if record["rejected"]:
                line += f"  rejected: {record['reason']}"
    elif record["digit"] is None:
        line = f"{name}: {record['reason']}"
    else:
        line = f"{name}: {record['digit']}  p={record['probability']:.3f}"
        if top == 2:
            line += f"  (runner-up {record['runner_up']} p={record['runner_up_probability']:.3f})"
        else:
            line += "  (top " + ", ".join(f"{t['digit']} {t['probability']:.3f}" for t in record["top"]) + ")"
        if record["rejected"]:
            line += f"  rejected: {record['reason']}"
    if record.get("label") is not None:
        line += f"  [label {record['label']}: {'right' if record['right'] else 'WRONG'}]"
    return line


def _report_failure(name: str, exc: BaseException) -> dict:
    message = first_line(exc)
    if name not in message:
        message = f"{name}: {message}"
    print(f"edgemnist: error: {message} (skipped)", file=sys.stderr, flush=True)
    return {"path": name, "error": message}


# Per-image failures that are the image's fault: reported, skipped, exit 2 at the end.
_IMAGE_ERRORS = (ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def summarize(records: list, failed: list) -> dict:
    """Counts over the images read: images, rejected, failed, labelled, right, accuracy (None without labels)."""
    labelled = [r for r in records if r["label"] is not None]
    right = sum(bool(r["right"]) for r in labelled)
    return {
        "images": len(records),
        "rejected": sum(bool(r["rejected"]) for r in records),
        "failed": len(failed),
        "labelled": len(labelled),
        "right": right,
        "accuracy": right / len(labelled) if labelled else None,
    }


def accelerator_info(model: Model) -> Optional[dict]:
    """What ran the model on the GPU accelerator, as `eval --json`'s "accelerator" object (the adapter Dawn
    selected, software or hardware, precision, fallback); None on the CPU interpreter."""
    info = getattr(model.runner, "accelerator_info", None)
    return info() if callable(info) else None


def format_summary(summary: dict, model: Model) -> str:
    gpu = accelerator_info(model)
    where = f" on {describe_device(gpu)}" if gpu else ""
    text = (f"{summary['images']} image(s) read by {model.path}{where}: {summary['rejected']} rejected, "
            f"{summary['failed']} failed")
    if summary["accuracy"] is not None:
        text += f"; accuracy {summary['accuracy']:.2%} ({summary['right']}/{summary['labelled']} in class folders)"
    return text


# --------------------------------------------------------------------------- watching a folder


def watch(folder: str, on_new: Callable[[Path], None], poll: float, skip: Optional[Path] = None,
          ticks: Optional[int] = None) -> None:
    """Calls `on_new(path)` for each image file that appears in `folder` (recursively) after the start.

    A file is taken once its size and modification time stay the same over one poll (a
    camera script may still be writing it); a file rewritten later is read again.
    Runs until interrupted (KeyboardInterrupt), or for `ticks` polls.

    Raises:
        FileNotFoundError: no such folder.
        NotADirectoryError: it is a file.
    """
    root = Path(folder)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such folder to watch")
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a folder (--watch takes a folder)")
    skip = skip.resolve() if skip else None

    def snapshot() -> dict:
        seen = {}
        for f in root.rglob("*"):
            if skip is not None and (skip == f.resolve().parent or skip in f.resolve().parents):
                continue
            if any(part.startswith(".") for part in f.relative_to(root).parts) or not is_image_file(f):
                continue
            try:
                stat = f.stat()
            except OSError:  # removed between the listing and the stat
                continue
            if stat.st_mtime_ns and f.is_file():
                seen[f] = (stat.st_size, stat.st_mtime_ns)
        return seen

    done = snapshot()  # what was there before the start is not new
    pending: dict = {}
    print(f"watching {root} for new images (Ctrl-C stops)", file=sys.stderr, flush=True)
    count = 0
    while ticks is None or count < ticks:
        count += 1
        time.sleep(poll)
        for path, signature in sorted(snapshot().items()):
            if done.get(path) == signature:
                continue
            if pending.get(path) != signature:
                pending[path] = signature  # wait one more poll: the writer may not be done
                continue
            del pending[path]
            done[path] = signature
            on_new(path)


# --------------------------------------------------------------------------- the command


def split_model_argument(model: Optional[str], positionals: list) -> tuple:
    """(the model, the images) from `predict [MODEL] IMAGE...`: with --model given every positional is an
    image; else the first one is the model when it ends in .tflite or is a shipped model's name that is no
    file here; else there is none (None: the shipped default)."""
    if model is not None or not positionals:
        return model, list(positionals)
    first = str(positionals[0])
    if is_model_argument(first):
        return first, list(positionals[1:])
    return None, list(positionals)


def load_model(model_path: Optional[str], config: PredictConfig, trusted: Optional[bool] = None) -> Model:
    """The Model for a run (`trusted` as for Model: True skips the child-process check of a file already checked);
    an accelerator that cannot run here is the user's set-up: ValueError (exit 2)."""
    from edgemnist.runtime.accelerator import explicit_accelerator

    with explicit_accelerator():
        runtime = config.runtime
        return Model(model_path, threads=runtime.threads, backend=runtime.backend, prepare=config.prepare,
                     min_probability=config.min_probability, gate=config.gate, accelerator=runtime.accelerator,
                     gpu_precision=runtime.gpu_precision, temperature=config.temperature, trusted=trusted)


def predict_items(model: Model, items: list, config: PredictConfig,
                  on_record: Optional[Callable[[dict], None]] = None) -> dict:
    """Reads every item; a bad one is reported on stderr and skipped.

    Returns:
        {"model", "backend", "backend_version", "accelerator", "accelerator_info", "threads", "prepare",
        "min_probability", "gate", "temperature", "predictions" (records), "failed" [{"path", "error"}],
        "summary"}.
    """
    saver = _Saver(config.save_prepared)
    records, failed = [], []
    for item in items:
        try:
            record = read_item(model, item, config, saver)
        except _IMAGE_ERRORS as exc:
            failed.append(_report_failure(item.name, exc))
            continue
        records.append(record)
        if on_record:
            on_record(record)
    return {
        "model": str(model.path),
        "backend": model.runner.backend.name,
        "backend_version": model.runner.backend.version,
        "accelerator": getattr(model.runner, "accelerator", DEFAULT_ACCELERATOR),
        "accelerator_info": accelerator_info(model),
        "threads": model.runner.num_threads,
        "prepare": model.prepare,
        "min_probability": model.min_probability,
        "gate": None if model.gate is None else model.gate.describe(),
        "temperature": model.temperature,
        "predictions": records,
        "failed": failed,
        "summary": summarize(records, failed),
    }


class _IntermixedParser(argparse.ArgumentParser):
    """Takes flags before, between and after IMAGE...

    argparse matches IMAGE... (nargs="*") as empty as soon as a flag follows the model, so
    `predict MODEL --top 3 photo.jpg` would fail; intermixed parsing (possible here: this
    parser has no sub-commands) takes the flags first, then the positionals. It calls
    parse_known_args itself, hence the guard.
    """

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):
        if self._intermixing:
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def add_commands(subparsers) -> None:
    """Registers `edgemnist predict`."""
    p = subparsers.add_parser(
        "predict",
        help="read the digit (or number) in real images: files, folders, stdin, a watched folder (no TensorFlow)",
        description="Read digits in real images (photos, scans; PNG, JPEG, PGM/PPM, BMP; any size) with the "
        f"{DEFAULT_MODEL} model shipped with edgemnist, or a .tflite model you name: each image is put into MNIST's form (greyscale, polarity, paper and noise removed, "
        "the digit's box scaled to 20x20 and centred by its centre of mass in 28x28), then classified. "
        "Prints the digit, its probability and the runner-up per image; images with no digit, images the "
        "digit-or-not gate (--gate) takes for something else (a letter, a garment), or a digit "
        "under --min-probability, are flagged rejected. A folder is searched recursively; images in class "
        "folders 0/..9/ give the accuracy. A file that cannot be read is reported and skipped (exit 2).",
    )
    p.add_argument("inputs", nargs="*", metavar="[MODEL] IMAGE",
                   help="the model first when it is a .tflite file (any exported variant) or a shipped model "
                   f"({', '.join(SHIPPED)}); then image files, folders, or - for one image on stdin. Without a "
                   f"model, the {DEFAULT_MODEL} model shipped with edgemnist reads them")
    p.add_argument("--model", metavar="MODEL",
                   help=f"the model: a .tflite file or a shipped model's name ({', '.join(SHIPPED)}) (default: "
                   f"the shipped {DEFAULT_MODEL} model, or a .tflite given first among the arguments)")
    p.add_argument("--top", type=int, default=PredictConfig.top, metavar="K",
                   help="give the K most probable digits (default %(default)s: the digit and the runner-up)")
    p.add_argument("--digits", action="store_true",
                   help="the image holds a number: cut it into digits (left to right) and read each")
    p.add_argument("--no-prepare", dest="prepare", action="store_false",
                   help="the images are MNIST-shaped already (white digit on black, centred): only greyscale and "
                   "resize to 28x28")
    p.add_argument("--gate", default=PredictConfig.gate, metavar="PATH",
                   help="the digit-or-not gate run on each prepared image, whose 'no' rejects it as not a digit: "
                   "a gate's .tflite (its JSON beside it; edgemnist gate trains one) (default: the gate shipped "
                   "with edgemnist)")
    p.add_argument("--no-gate", dest="gate", action="store_const", const=None,
                   help="no gate: only the other rejection rules apply")
    p.add_argument("--min-probability", type=float, default=PredictConfig.min_probability, metavar="P",
                   help="flag a digit under this probability as rejected, low confidence (default %(default)s)")
    p.add_argument("--temperature", type=float, metavar="T",
                   help="calibrate the probabilities as softmax(log p / T) (default: the temperature in the "
                   "model's manifest, fitted by edgemnist export; 1 without one: the raw output)")
    p.add_argument("--save-prepared", metavar="DIR",
                   help="write the 28x28 images the model saw into DIR as PNG (one per digit)")
    p.add_argument("--watch", metavar="DIR",
                   help="read each new image that appears in DIR (recursively), one line each, until Ctrl-C")
    p.add_argument("--poll", type=float, default=PredictConfig.poll, metavar="S",
                   help="with --watch: seconds between looks at the folder (default %(default)s)")
    add_runtime_arguments(p)
    p.set_defaults(func=_run_predict)
    p.__class__ = _IntermixedParser


def _config(args) -> PredictConfig:
    return PredictConfig(top=args.top, digits=args.digits, prepare=args.prepare,
                         min_probability=args.min_probability, save_prepared=args.save_prepared, gate=args.gate,
                         runtime=runtime_settings(args), poll=args.poll, temperature=args.temperature)


def _run_predict(args):
    config = _config(args)
    args.model, args.inputs = split_model_argument(args.model, args.inputs)
    if args.watch and args.inputs:
        raise ValueError("give images or --watch DIR, not both")
    if not args.watch and not args.inputs:
        raise ValueError("no images given: name image files, folders, - for stdin, or --watch DIR")
    items = None if args.watch else collect(args.inputs)
    model = load_model(args.model, config)
    if args.watch:
        # the per-image lines are the result: they go where the result goes (cli sends a
        # handler's own prints to stderr)
        _watch(model, args.watch, config, as_json=args.json, out=getattr(args, "result_stream", sys.stdout))
    result = predict_items(model, items, config)
    lines = [format_record(r, config.top) for r in result["predictions"]]
    lines.append(format_summary(result["summary"], model))
    return Output(result, "\n".join(lines), status=2 if result["failed"] else 0)


def _watch(model: Model, folder: str, config: PredictConfig, as_json: bool, out) -> None:
    """--watch: one line (or, with --json, one JSON object) per new image on `out`, until Ctrl-C."""
    saver = _Saver(config.save_prepared)
    records, failed = [], []

    def on_new(path: Path) -> None:
        item = Item(path, str(path))
        try:
            record = read_item(model, item, config, saver)
        except _IMAGE_ERRORS as exc:
            failed.append(_report_failure(item.name, exc))
            return
        records.append(record)
        print(json.dumps(record, sort_keys=True) if as_json else format_record(record, config.top), file=out,
              flush=True)

    try:
        watch(folder, on_new, config.poll, skip=Path(config.save_prepared) if config.save_prepared else None)
    except KeyboardInterrupt:
        print(format_summary(summarize(records, failed), model), file=sys.stderr, flush=True)
        raise

