"""Export a Keras model to every TFLite variant a user deploys, each with a manifest beside it.

Usage: edgemnist export --from runs/default/model.keras --out runs/default/tflite [--variants float32,int8]

One table (`VARIANTS`) names each variant, the file it writes, what it needs (the float
model, a pruned or QAT model, or the float32 .tflite) and which quantizer makes it; one
small function per quantizer does the real work, each in its own module beside this one:
`tflite_converter` (the TFLite converter on a static-batch-1 trace, so dilated
convolutions stay one native op), `ai_edge` (AI Edge Quantizer), then `strip` (drops
metadata and internal names) and `manifest` (the JSON written beside each file).

Each written .tflite is then run on held-out digits to fit its temperature (the one number
that calibrates its printed probability, runtime/temperature.py), which goes into its
manifest: the training run's own validation split when the Keras model sits in a run folder
(train_state.json beside it), else a seeded sample of the training split (`temperature_data`).

Files: `<stem>_<variant>.tflite` and its manifest `<stem>_<variant>.tflite.json` (written
after the .tflite, both atomically). Exports are deterministic: the same source model
and settings give byte-identical .tflite files.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from edgemnist.artifacts import atomic_path, manifest_path, sha256_bytes, sha256_file
from edgemnist.data.folders import add_prepare_arguments
from edgemnist.export.ai_edge import ai_edge_quantize
from edgemnist.export.manifest import build_manifest
from edgemnist.export.strip import strip_model
from edgemnist.export.tflite_converter import tflite_convert
from edgemnist.output import Output

log = logging.getLogger(__name__)

QUANTIZERS = ("tflite", "ai-edge")


@dataclass(frozen=True)
class Variant:
    """One row of the export table."""

    name: str
    needs: str  # "model", "pruned", "qat", "pruned_qat" (Keras models) or "float32" (the float .tflite)
    quantizer: str  # "tflite" (TFLite converter) or "ai-edge" (AI Edge Quantizer)
    recipe: str  # the converter mode or AI Edge Quantizer recipe that makes it
    description: str


VARIANTS = {
    v.name: v
    for v in (
        Variant("float32", "model", "tflite", "float32", "float weights and activations, the reference"),
        Variant("float16", "model", "tflite", "float16", "float16 weights, float32 activations (GPU delegates)"),
        Variant("dynamic", "model", "tflite", "dynamic_range", "int8 weights, float activations, no calibration"),
        Variant("int8", "model", "tflite", "full_integer", "full-integer PTQ, int8 input and output"),
        Variant("int8_per_tensor", "model", "tflite", "full_integer_per_tensor",
                "full-integer PTQ with one weight scale per tensor (smaller file)"),
        Variant("qat_int8", "qat", "tflite", "full_integer", "quantization-aware trained, int8 input and output"),
        # Per-tensor weight scales: per-channel ones (a float32 scale and an int64 zero point per
        # channel, for weights and bias) would cost more gzip bytes than the pruning saves.
        Variant("pruned_int8", "pruned", "tflite", "full_integer_per_tensor",
                "pruned model, full-integer PTQ, one weight scale per tensor (smallest gzip)"),
        Variant("pruned_qat_int8", "pruned_qat", "tflite", "full_integer", "pruned + sparsity-preserving QAT, int8"),
        Variant("aie_int8", "float32", "ai-edge", "static_wi8_ai8", "AI Edge Quantizer static int8"),
        Variant("aie_int16x8", "float32", "ai-edge", "static_wi8_ai16", "AI Edge Quantizer int16 activations, int8 weights"),
        Variant("aie_dynamic", "float32", "ai-edge", "dynamic_wi8_afp32", "AI Edge Quantizer int8 weights, float activations"),
        Variant("aie_int4w", "float32", "ai-edge", "weight_only_wi4_afp32", "AI Edge Quantizer int4 weights only"),
    )
}


def default_variants(quantizer: str = "tflite") -> list[str]:
    """The variants `edgemnist export` writes when none are named: float32 plus those of `quantizer`."""
    if quantizer not in QUANTIZERS + ("all",):
        raise ValueError(f"quantizer must be one of {', '.join(QUANTIZERS + ('all',))}, got {quantizer!r}")
    return [v.name for v in VARIANTS.values() if v.name == "float32" or quantizer in ("all", v.quantizer)]


@dataclass(frozen=True)
class ExportConfig:
    """Settings of every export."""

    representative_size: int = 500  # training images that calibrate int8 activation ranges
    representative_seed: int = 0  # picks which training images (a seeded sample, spread over the split)
    data_dir: Optional[str] = None  # training data for calibration (None: $EDGEMNIST_DATA or shipped MNIST)
    prepare: Optional[bool] = None  # class folders: None prepares folders of real images (not 28x28), True all, False none
    batch_size: int = 1  # static batch of the exported model; 1 keeps dilated convolutions one native op
    strip: bool = True  # drop conversion metadata and shorten internal tensor names (outputs unchanged)
    stem: str = "model"  # file names: <stem>_<variant>.tflite
    temperature_size: int = 3000  # held-out digits each variant's temperature is fitted on (0: none fitted)

    def __post_init__(self):
        if not 1 <= int(self.representative_size) <= 60000:
            raise ValueError(f"representative_size must be in 1..60000, got {self.representative_size}")
        if not 0 <= int(self.temperature_size) <= 60000:
            raise ValueError(f"temperature_size must be in 0..60000, got {self.temperature_size}")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.stem or "/" in self.stem or os.sep in self.stem:
            raise ValueError(f"stem must be a plain file name part, got {self.stem!r}")


def variant_filename(variant: str, config: ExportConfig = ExportConfig()) -> str:
    """`<stem>_<variant>.tflite`."""
    return f"{config.stem}_{_variant(variant).name}.tflite"


def _variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    return VARIANTS[name]


# --------------------------------------------------------------------------- calibration data


def representative_images(config: ExportConfig = ExportConfig(), representative=None) -> np.ndarray:
    """float32 (N, 28, 28, 1) calibration images in [0, 1].

    Args:
        config: representative_size/seed/data_dir pick a seeded sample of the training split.
        representative: instead, a data.Split, uint8 (N, 28, 28) images or float (N, 28, 28, 1).

    Raises:
        ValueError: images of the wrong shape.
    """
    from edgemnist import data

    if representative is None:
        images = _training_sample(config.data_dir, int(config.representative_size), config.representative_seed,
                                  config.prepare)[0]
    elif isinstance(representative, data.Split):
        images = representative.images[: config.representative_size]
    else:
        images = np.asarray(representative)[: config.representative_size]
    if images.dtype == np.uint8:
        images = data.to_model_input(images)
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.ndim != 4 or images.shape[1:] != (28, 28, 1) or len(images) == 0:
        raise ValueError(f"representative images must be (N, 28, 28[, 1]), got shape {images.shape}")
    return images


def temperature_data(source, config: ExportConfig = ExportConfig()) -> tuple:
    """(uint8 images, labels, description): the digits a variant's temperature is fitted on.

    The training run's validation split (rebuilt from its train_state.json: data, limit,
    val_fraction, seed) when `source` is a Keras model file inside a run folder: digits the
    model was never trained on. Otherwise (a pruned or QAT model, fine-tuned on the whole
    training split; an in-memory model) a seeded sample of the training split of
    `config.data_dir`, which the model has seen: the temperature fitted there is sharper
    than unseen digits warrant. Never the test split, which measures the result. Either is
    cut to `config.temperature_size` digits by a seeded sample.
    """
    from edgemnist.training.train import STATE_FILE

    size = int(config.temperature_size)
    state_path = Path(source).parent / STATE_FILE if isinstance(source, (str, os.PathLike)) else None
    if state_path is not None and state_path.is_file():
        try:
            run = json.loads(state_path.read_text())["config"]
            key = (run.get("data_dir"), run.get("limit"), float(run["val_fraction"]), int(run["seed"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{state_path}: unreadable training state ({exc.__class__.__name__}: {exc})") from None
        images, labels = _validation_split(*key, size)
        return images, labels, f"validation split of the training run in {state_path.parent} ({len(labels)} digits)"
    images, labels = _training_sample(config.data_dir, size, config.representative_seed, config.prepare)
    return images, labels, (f"sample of the training split ({len(labels)} digits; no training run beside the "
                            "model, so it may have seen them)")


@functools.lru_cache(maxsize=2)
def _validation_split(data_dir: Optional[str], limit: Optional[int], val_fraction: float, seed: int,
                      size: int) -> tuple:
    from edgemnist import data

    train = data.load_split("train", data_dir, limit=limit)
    held_out = data.train_val_split(train, val_fraction, seed)[1]
    return _cut(held_out.images, held_out.labels, size, seed)


@functools.lru_cache(maxsize=4)
def _training_sample(data_dir: Optional[str], size: int, seed: int, prepare: Optional[bool] = None) -> tuple:
    """(images, labels): a seeded sample of the training split, cached: the calibration images and the
    temperature's fallback digits of every variant load the split once."""
    from edgemnist import data

    train = data.load_split("train", data_dir, prepare=prepare)
    return _cut(train.images, train.labels, size, seed)


def _cut(images: np.ndarray, labels: np.ndarray, size: int, seed: int) -> tuple:
    """At most `size` of the images and labels, a seeded sample in their order; read-only (cached)."""
    if len(labels) > size:
        index = np.sort(np.random.default_rng(seed).choice(len(labels), size, replace=False))
        images, labels = images[index], labels[index]
    for array in (images, labels):
        array.setflags(write=False)
    return images, labels


def fit_variant_temperature(tflite_path, source, config: ExportConfig = ExportConfig()) -> dict:
    """The manifest keys of a written .tflite's temperature, fitted by running the file itself.

    Returns:
        {"temperature": T or None, "temperature_fit": {"data", "images", "floor", "accuracy", "nll",
        "nll_calibrated"} or None}; None for both with temperature_size 0 or a model that does
        not give 10 probabilities.
    """
    from edgemnist.runtime import Runner
    from edgemnist.runtime.temperature import fit_on

    if int(config.temperature_size) == 0:
        return {"temperature": None, "temperature_fit": None}
    runner = Runner(tflite_path, trusted=True)  # the file was just written by the converter
    if int(np.prod(runner.output.shape[1:])) != 10:
        return {"temperature": None, "temperature_fit": None}
    images, labels, description = temperature_data(source, config)
    fitted = fit_on(runner, images, labels)
    return {"temperature": fitted.pop("temperature"), "temperature_fit": {"data": description, **fitted}}


# --------------------------------------------------------------------------- sources


def load_source(model_or_path):
    """(Keras model, sha256 of its source, description of the source), loading a path once per file version.

    Raises:
        ValueError: a .tflite or not a Keras model. FileNotFoundError: no such file.
    """
    if isinstance(model_or_path, (str, os.PathLike)):
        path = Path(model_or_path)
        if path.suffix == ".tflite":
            raise ValueError(f"{path}: this variant needs a Keras model (.keras/.h5), not a .tflite")
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        stat = path.stat()
        model = _load_keras_cached(str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        return model, sha256_file(path), str(path)
    return model_or_path, _keras_model_digest(model_or_path), f"in-memory Keras model {model_or_path.name!r}"


@functools.lru_cache(maxsize=4)
def _load_keras_cached(path: str, mtime_ns: int, size: int):
    """Loads once per file version: exporting every variant reuses the model (conversion never changes it)."""
    from edgemnist.training.model import load_keras_model

    return load_keras_model(path)


def _keras_model_digest(model) -> str:
    """sha256 over a model's architecture JSON and weights: identifies an in-memory source."""
    digest = hashlib.sha256(model.to_json().encode("utf-8"))
    for w in model.get_weights():
        digest.update(np.ascontiguousarray(w).tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------- export


@dataclass(frozen=True)
class Converted:
    """One conversion's result before it is written."""

    tflite: bytes  # the final file (stripped when the config says so)
    unstripped: bytes  # the converter's own output, tensor names intact
    source_sha256: str
    source: str  # the path it came from, or a description of an in-memory model


def convert_variant(model_or_path, variant: str, config: ExportConfig = ExportConfig(),
                    representative=None) -> Converted:
    """Converts one variant without writing anything.

    `model_or_path` is a Keras model or .keras/.h5 path; for AI Edge Quantizer variants it
    may also be the float32 .tflite (path or bytes).
    """
    v = _variant(variant)
    if v.quantizer == "ai-edge":
        if isinstance(model_or_path, bytes):
            float_tflite, digest, source = model_or_path, sha256_bytes(model_or_path), "float32 .tflite bytes"
        elif isinstance(model_or_path, (str, os.PathLike)) and str(model_or_path).endswith(".tflite"):
            path = Path(model_or_path)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no such file")
            float_tflite, digest, source = path.read_bytes(), sha256_file(path), str(path)
        else:
            model, digest, source = load_source(model_or_path)
            float_tflite = tflite_convert(model, "float32", config.batch_size)
        raw = ai_edge_quantize(float_tflite, v.recipe, lambda: representative_images(config, representative),
                               config.batch_size)
    else:
        model, digest, source = load_source(model_or_path)
        images = representative_images(config, representative) if _is_calibrated(v) else None
        raw = tflite_convert(model, v.recipe, config.batch_size, images)
    return Converted(strip_model(raw) if config.strip else raw, raw, digest, source)


def _is_calibrated(variant: Variant) -> bool:
    return variant.recipe.startswith(("full_integer", "static"))


def export_variant(model_or_path, variant: str, out_path, config: ExportConfig = ExportConfig(),
                   representative=None) -> dict:
    """Converts one variant, writes the .tflite and then its manifest (both atomically).

    Args:
        model_or_path: a Keras model or a .keras/.h5 path (the float, pruned or QAT model
            the variant needs); AI Edge Quantizer variants also take the float32 .tflite.
        variant: a name from `VARIANTS`.
        out_path: the .tflite to write; the manifest goes to `manifest_path(out_path)`.
        config: export settings.
        representative: calibration images instead of a sample of the training split.

    Returns:
        The manifest dict (also written as JSON), with "path" and "manifest_path" added; its
        "temperature" is fitted by running the written file (`fit_variant_temperature`).

    Raises:
        ValueError: unknown variant or a source of the wrong kind. FileNotFoundError: no source.
        RuntimeError: the converter failed.
    """
    v = _variant(variant)
    converted = convert_variant(model_or_path, v.name, config, representative)
    settings = {k: val for k, val in asdict(config).items() if k != "stem"}
    if not _is_calibrated(v):
        settings = {k: val for k, val in settings.items() if not k.startswith("representative") and k not in ("data_dir", "prepare")}
    elif representative is not None:
        settings["representative_size"] = len(representative_images(config, representative))
        settings["representative_seed"] = settings["data_dir"] = settings["prepare"] = None  # the caller's own images
    manifest = build_manifest(converted, v, settings)
    out_path = Path(out_path)
    # Both files are written and fsynced first, then renamed back to back (.tflite first), so a
    # kill or a full disk never leaves a new .tflite beside an old manifest for long.
    with atomic_path(manifest_path(out_path)) as tmp_manifest, atomic_path(out_path) as tmp_tflite:
        tmp_tflite.write_bytes(converted.tflite)
        manifest.update(fit_variant_temperature(tmp_tflite, model_or_path, config))
        tmp_manifest.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return {**manifest, "path": str(out_path), "manifest_path": str(manifest_path(out_path))}


# --------------------------------------------------------------------------- export all + CLI


# Which Keras model each `needs` value comes from, as `export_all` arguments and CLI options.
SOURCE_OPTIONS = {"model": "--from", "pruned": "--pruned", "qat": "--qat", "pruned_qat": "--pruned-qat"}


def export_all(sources: dict, out, variants: Optional[list] = None, config: ExportConfig = ExportConfig(),
               quantizer: str = "tflite", representative=None,
               progress: Optional[Callable[[str], None]] = None) -> dict:
    """Exports many variants into `out`, skipping (and reporting) those whose source is missing.

    Args:
        sources: {"model": path, "pruned": path, "qat": path, "pruned_qat": path}; only
            "model" is required. AI Edge Quantizer variants start from the float model.
        out: output folder.
        variants: names to export; None means `default_variants(quantizer)` plus the
            pruned/QAT variants whose source was given. Variants named explicitly whose
            source is missing are an error.
        config: export settings.
        quantizer: picks the default variants ("tflite", "ai-edge" or "all").
        representative: calibration images instead of a sample of the training split.
        progress: called with one line as each variant is written (count, seconds, ETA).

    Returns:
        {"out", "variants": {name: manifest + "path", "manifest_path", "seconds"},
        "skipped": {name: reason}, "seconds"}; "seconds" is the wall time to convert and write
        (not stored in the manifests, which depend only on their inputs).

    Raises:
        ValueError: an unknown variant, or a named variant without its source.
        FileNotFoundError: a given source file does not exist.
    """
    sources = {k: v for k, v in sources.items() if v is not None}
    if "model" not in sources:
        raise ValueError("export needs the float model (--from MODEL.keras)")
    for key, path in sources.items():
        if key not in SOURCE_OPTIONS:
            raise ValueError(f"unknown source {key!r}; expected one of {', '.join(SOURCE_OPTIONS)}")
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such file ({SOURCE_OPTIONS[key]})")
    explicit = variants is not None
    if not explicit:
        variants = default_variants(quantizer) + [v.name for v in VARIANTS.values()
                                                  if v.needs in ("pruned", "qat", "pruned_qat")]
    names = list(dict.fromkeys(_variant(n).name for n in variants))  # each variant once, in the order given
    out = Path(out)
    result = {"out": str(out), "variants": {}, "skipped": {}}
    plan = []  # checked whole before anything is converted, so a bad request writes nothing
    for name in names:
        needs = "model" if VARIANTS[name].needs == "float32" else VARIANTS[name].needs
        if needs in sources:
            plan.append((name, sources[needs]))
            continue
        reason = f"needs the {needs.replace('_', '-')} model ({SOURCE_OPTIONS[needs]} PATH)"
        if explicit:
            raise ValueError(f"variant {name}: {reason}")
        log.warning("skipping %s: %s", name, reason)
        result["skipped"][name] = reason
    started = time.monotonic()
    for done, (name, source) in enumerate(plan, start=1):
        t0 = time.monotonic()
        manifest = export_variant(source, name, out / variant_filename(name, config), config, representative)
        manifest["seconds"] = round(time.monotonic() - t0, 2)
        result["variants"][name] = manifest
        if progress:
            elapsed = time.monotonic() - started
            eta = elapsed / done * (len(plan) - done)
            progress(f"  {done}/{len(plan)} {name:<16} {manifest['seconds']:5.1f} s  "
                     f"(elapsed {elapsed:.0f} s{f', about {eta:.0f} s left' if done < len(plan) else ''})")
    result["seconds"] = round(time.monotonic() - started, 2)
    return result


def format_export(result: dict) -> str:
    """A human table of `export_all`'s result."""
    base = result["variants"].get("float32", {}).get("bytes")
    lines = [f"{'variant':<17}{'bytes':>9}{'gzip':>9}{'x float32':>11}  {'input':<7}{'ops':>4}{'s':>6}  file"]
    for name, m in result["variants"].items():
        ratio = f"{m['bytes'] / base:.3f}" if base else "-"
        seconds = f"{m['seconds']:.1f}" if "seconds" in m else "-"
        lines.append(f"{name:<17}{m['bytes']:>9,}{m['gzip_bytes']:>9,}{ratio:>11}  {m['inputs'][0]['dtype']:<7}"
                     f"{len(m['ops']):>4}{seconds:>6}  {m['path']}")
    for name, reason in result["skipped"].items():
        lines.append(f"{name:<17} skipped: {reason}")
    return "\n".join(lines)


def add_commands(subparsers) -> None:
    """Registers `edgemnist export`."""
    rows = "; ".join(f"{v.name} ({v.description})" for v in VARIANTS.values())
    p = subparsers.add_parser(
        "export",
        help="export TFLite variants (float32, float16, dynamic, int8, QAT, pruned, AI Edge Quantizer)",
        description="Convert Keras models to TFLite variants, each written with a manifest "
        f"(<file>.tflite.json: sha256, bytes, gzip bytes, I/O quantization, ops, sparsity). Variants: {rows}.",
    )
    p.add_argument("--from", dest="model", required=True, help="the trained float model (.keras)")
    p.add_argument("--pruned", help="the stripped pruned model from `edgemnist optimize` (pruned.keras)")
    p.add_argument("--qat", help="the QAT model from `edgemnist optimize` (qat.h5)")
    p.add_argument("--pruned-qat", help="the pruning-preserving QAT model (pruned_qat.h5)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--variants", help="comma-separated variant names (default: float32 and those of --quantizer, "
                   "plus pruned/QAT variants whose model is given)")
    p.add_argument("--quantizer", choices=QUANTIZERS + ("all",), default="tflite",
                   help="which quantizer's variants to export by default: the TFLite converter, "
                   "AI Edge Quantizer, or both (default %(default)s)")
    p.add_argument("--representative-size", type=int, default=ExportConfig.representative_size,
                   help="training images that calibrate int8 ranges (default %(default)s)")
    p.add_argument("--data-dir", help="data folder for calibration and the temperature fit: IDX files or class "
                   "folders of 28x28 images or of real photos, prepared as predict does (default: $EDGEMNIST_DATA "
                   "or the shipped MNIST)")
    add_prepare_arguments(p)
    p.add_argument("--seed", type=int, default=ExportConfig.representative_seed,
                   help="picks the calibration images from the training split (default %(default)s)")
    p.add_argument("--temperature-size", type=int, default=ExportConfig.temperature_size, metavar="N",
                   help="held-out digits each variant's temperature is fitted on: the training run's validation "
                   "split when train_state.json is beside --from, else a training sample; 0 fits none "
                   "(default %(default)s)")
    p.add_argument("--no-strip", action="store_true", help="keep conversion metadata and internal tensor names")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=_run_export)


def _run_export(args):
    config = ExportConfig(representative_size=args.representative_size, representative_seed=args.seed,
                          data_dir=args.data_dir, prepare=args.prepare, strip=not args.no_strip,
                          temperature_size=args.temperature_size)
    variants = [n.strip() for n in args.variants.split(",") if n.strip()] if args.variants else None
    sources = {"model": args.model, "pruned": args.pruned, "qat": args.qat, "pruned_qat": args.pruned_qat}
    progress = None if args.quiet else (lambda line: print(f"[export] {line.strip()}", file=sys.stderr, flush=True))
    result = export_all(sources, args.out, variants, config, args.quantizer, progress=progress)
    return Output(result, format_export(result))
