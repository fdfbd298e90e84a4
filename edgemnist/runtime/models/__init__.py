"""The trained digit models that ship with edgemnist, so a device reads digits without training first.

Usage: from edgemnist.runtime.models import resolve_model; path = resolve_model(None)  # the shipped int8 model

This folder holds the default model (`edgemnist pipeline --out runs/default`, seed 0) as
`mnist_int8.tflite` and `mnist_float32.tflite`, each with its export manifest beside it
(`<file>.json`: sha256, temperature, and a `shipped` entry with the accuracy on the 10,000
MNIST test images and the exact command that made it). They are written by
`tools/ship_models.py`, never by hand. `edgemnist predict`, `edgemnist serve` and
`edgemnist.load()` read `mnist_int8.tflite` when no model is named.

Needs only the standard library (and edgemnist.artifacts, which names a manifest); no TensorFlow.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Union

from edgemnist.artifacts import manifest_path

SHIPPED_DIR = Path(__file__).resolve().parent
# name -> file in this folder; the names are what `--model NAME` and `edgemnist.load(NAME)` take
SHIPPED = {"int8": "mnist_int8.tflite", "float32": "mnist_float32.tflite"}
DEFAULT_MODEL = "int8"  # what predict, serve and load() read when no model is named


def shipped_path(name: str = DEFAULT_MODEL) -> Path:
    """The shipped model called `name` ("int8" or "float32").

    Raises:
        ValueError: not a shipped model's name.
        FileNotFoundError: the file is missing from this install (a broken install or wheel).
    """
    if name not in SHIPPED:
        raise ValueError(f"{name!r} is not a shipped model; the shipped models are {', '.join(SHIPPED)}")
    path = SHIPPED_DIR / SHIPPED[name]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the shipped {name} model is missing from this install of edgemnist "
                                "(reinstall it; a source checkout makes it with tools/ship_models.py)")
    return path


def is_shipped(path: Union[str, os.PathLike]) -> bool:
    """Whether `path` is one of the shipped model files (which are trusted: they come with the package)."""
    try:
        resolved = Path(path).resolve()
    except OSError:
        return False
    return any(resolved == SHIPPED_DIR / file for file in SHIPPED.values())


def names_shipped(model) -> bool:
    """Whether a model argument names a shipped model: one of its names, and no file here has that name."""
    return isinstance(model, str) and model in SHIPPED and not Path(model).exists()


def is_model_argument(argument) -> bool:
    """Whether a command-line argument names a .tflite model (by its suffix) or a shipped one, rather than an
    image or a Keras file: the rule predict's first argument and info's argument follow."""
    return str(argument).lower().endswith(".tflite") or names_shipped(argument)


def resolve_model(model: Union[str, os.PathLike, None]) -> Path:
    """What a model argument names: None -> the default shipped model; a shipped model's name ("int8",
    "float32") that is not also a file here -> that shipped model; anything else -> that path.

    Raises:
        FileNotFoundError: a shipped model is missing from this install.
        ValueError: an unknown shipped name (never: other names are paths, checked by their reader).
    """
    if model is None:
        return shipped_path(DEFAULT_MODEL)
    if names_shipped(model):
        return shipped_path(model)
    return Path(model)


def read_manifest(name: str = DEFAULT_MODEL) -> dict:
    """The manifest of a shipped model (its export manifest plus the `shipped` entry).

    Raises:
        FileNotFoundError: the model or its manifest is missing from this install.
        ValueError: the manifest is not JSON.
    """
    manifest = manifest_path(shipped_path(name))
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: the shipped {name} model's manifest is missing from this install")
    try:
        return json.loads(manifest.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{manifest}: not JSON ({exc})") from None


def describe_shipped() -> list:
    """One dict per shipped model: name, path, default, bytes, sha256, test_accuracy, command (None where missing)."""
    rows = []
    for name in SHIPPED:
        row: dict = {"name": name, "path": str(SHIPPED_DIR / SHIPPED[name]), "default": name == DEFAULT_MODEL}
        try:
            manifest: Optional[dict] = read_manifest(name)
        except (FileNotFoundError, ValueError) as exc:
            row["error"] = str(exc)
            manifest = None
        shipped = (manifest or {}).get("shipped", {})
        row.update(bytes=(manifest or {}).get("bytes"), sha256=(manifest or {}).get("sha256"),
                   test_accuracy=shipped.get("test_accuracy"), command=shipped.get("command"))
        rows.append(row)
    return rows


def format_shipped(rows: list) -> str:
    """describe_shipped's rows as a table for a person."""
    lines = [f"{'model':<8} {'bytes':>8} {'test accuracy':>14}  file", ]
    for row in rows:
        accuracy = "-" if row.get("test_accuracy") is None else f"{row['test_accuracy']:.2%}"
        size = "-" if row.get("bytes") is None else f"{row['bytes']:,}"
        mark = "  (default)" if row["default"] else ""
        lines.append(f"{row['name']:<8} {size:>8} {accuracy:>14}  {row['path']}{mark}")
        if row.get("error"):
            lines.append(f"         {row['error']}")
    made_by = next((row["command"] for row in rows if row.get("command")), None)
    if made_by:
        lines.append(f"made by: {made_by}")
    lines.append("predict, serve and edgemnist.load() use the default model when none is named; name another "
                 "with a .tflite path or a shipped name (edgemnist predict --model float32 photo.jpg)")
    return "\n".join(lines)
