"""Export a Keras model to every TFLite variant a user deploys, each with a manifest beside it.

Usage: edgemnist export --from runs/default/model.keras --out runs/default/tflite [--variants float32,int8]

One table (`VARIANTS`) names each variant, the file it writes, what it needs (the float
model, a pruned or QAT model, or the float32 .tflite) and which quantizer makes it; one
small function per quantizer does the real work. Every .tflite is exported from a
static-batch-1 copy of the model, so dilated convolutions stay one native op (no
SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND, whose int8 form TFLite Micro runs wrongly).

Files: `<stem>_<variant>.tflite` and its manifest `<stem>_<variant>.tflite.json` (written
after the .tflite, both atomically). Exports are deterministic: the same source model
and settings give byte-identical .tflite files.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from edgemnist.artifacts import atomic_path, gzip_size, manifest_path, sha256_bytes, sha256_file

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
    batch_size: int = 1  # static batch of the exported model; 1 keeps dilated convolutions one native op
    strip: bool = True  # drop conversion metadata and shorten internal tensor names (outputs unchanged)
    stem: str = "model"  # file names: <stem>_<variant>.tflite

    def __post_init__(self):
        if not 1 <= int(self.representative_size) <= 60000:
            raise ValueError(f"representative_size must be in 1..60000, got {self.representative_size}")
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
        images = _sample_training_images(config.data_dir, int(config.representative_size), config.representative_seed)
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


@functools.lru_cache(maxsize=4)
def _sample_training_images(data_dir: Optional[str], size: int, seed: int) -> np.ndarray:
    """A seeded sample of training images, cached: exporting every variant loads the split once."""
    from edgemnist import data

    train = data.load_split("train", data_dir)
    index = np.sort(np.random.default_rng(seed).choice(len(train), min(size, len(train)), replace=False))
    images = train.images[index]
    images.setflags(write=False)
    return images


# --------------------------------------------------------------------------- TFLite converter


def _load_source(model_or_path):
    """(Keras model, sha256 of its source, description of the source)."""
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
    return _load_keras(Path(path))


def _load_keras(path: Path):
    """Loads plain, pruned-and-stripped or QAT Keras models (QAT needs tfmot's custom objects)."""
    from edgemnist.training import model as model_lib

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return model_lib.load_keras_model(path)
    except ValueError as plain_error:
        try:
            from edgemnist._tensorflow import import_tfmot

            with import_tfmot().quantization.keras.quantize_scope():
                return model_lib.load_keras_model(path)
        except ValueError:
            raise plain_error from None


def _keras_model_digest(model) -> str:
    """sha256 over a model's architecture JSON and weights: identifies an in-memory source."""
    digest = hashlib.sha256(model.to_json().encode("utf-8"))
    for w in model.get_weights():
        digest.update(np.ascontiguousarray(w).tobytes())
    return digest.hexdigest()


def _concrete_function(model, batch_size: int):
    """The model's inference function traced for a static [batch, 28, 28, 1] input named `image`.

    Tracing with a fixed batch works for plain and tfmot-wrapped (QAT) models alike, where
    rebuilding the Keras graph with a new input shape would need every custom object.
    """
    from edgemnist._tensorflow import import_tensorflow

    tf = import_tensorflow()
    spec = tf.TensorSpec([batch_size] + list(model.input_shape[1:]), tf.float32, name="image")

    @tf.function(input_signature=[spec])
    def serve(image):
        return {"probabilities": model(image, training=False)}

    return serve.get_concrete_function()


def _variables_holder(model):
    """A plain tf.Module owning the model's variables: what the converter saves beside the function.

    The converter writes its input as a SavedModel first. Handed the Keras model itself, that
    save serializes every layer's call functions, most of a conversion's time; the traced
    function only needs its variables tracked, and the converted bytes are the same.
    """
    from edgemnist._tensorflow import import_tensorflow

    holder = import_tensorflow().Module()
    holder.variables_of_model = list(model.variables)
    return holder


def _tflite_convert(model, recipe: str, config: ExportConfig, representative) -> bytes:
    """Runs the TFLite converter in one of its modes on a static-batch trace of `model`."""
    from edgemnist._tensorflow import import_tensorflow

    tf = import_tensorflow()
    concrete = _concrete_function(model, config.batch_size)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], _variables_holder(model))
    if recipe == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif recipe == "dynamic_range":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif recipe in ("full_integer", "full_integer_per_tensor"):
        images = representative_images(config, representative)

        def representative_dataset():
            for i in range(len(images)):
                yield [images[i : i + 1].repeat(config.batch_size, axis=0)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        # One weight scale per tensor instead of per output channel: each channel costs
        # 24 bytes of scales and int64 zero points (weights and bias); bench_export.py measures the sizes.
        converter._experimental_disable_per_channel = recipe == "full_integer_per_tensor"
    elif recipe != "float32":
        raise ValueError(f"unknown TFLite converter recipe {recipe!r}")
    try:
        return bytes(converter.convert())
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RuntimeError(f"TFLite converter failed for {model.name!r} ({recipe}): {first[:300]}") from None


# --------------------------------------------------------------------------- AI Edge Quantizer


def _ai_edge_quantize(float_tflite: bytes, recipe_name: str, config: ExportConfig, representative) -> bytes:
    """Quantizes a float32 .tflite with AI Edge Quantizer (no TensorFlow involved)."""
    try:
        from ai_edge_quantizer import quantizer, recipe
    except ImportError as exc:
        from edgemnist._tensorflow import MissingExtraError

        raise MissingExtraError(f"--quantizer ai-edge needs ai-edge-quantizer: pip install ai-edge-quantizer ({exc})")
    # The quantizer prints a size summary and a progress bar on stdout; keep our output clean.
    with tempfile.TemporaryDirectory(prefix="edgemnist-aie-") as tmp, _quiet():
        src = Path(tmp) / "float32.tflite"
        src.write_bytes(float_tflite)
        qt = quantizer.Quantizer(str(src))
        qt.load_quantization_recipe(getattr(recipe, recipe_name)())
        calibration = None
        if qt.need_calibration:
            images = representative_images(config, representative)
            signature, input_name = _signature_input(float_tflite)
            samples = [{input_name: images[i : i + 1].repeat(config.batch_size, axis=0)} for i in range(len(images))]
            calibration = qt.calibrate({signature: samples})
        result = qt.quantize(calibration) if calibration is not None else qt.quantize()
        out = Path(tmp) / "quantized.tflite"
        result.export_model(str(out), overwrite=True)
        return out.read_bytes()


@contextlib.contextmanager
def _quiet():
    """Silences stdout, tqdm bars and warnings of chatty third-party code."""
    previous = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        if previous is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = previous


def _signature_input(tflite: bytes) -> tuple[str, str]:
    """(signature key, input name) of a one-input model's first signature."""
    from ai_edge_litert.interpreter import Interpreter

    signatures = Interpreter(model_content=tflite).get_signature_list()
    if not signatures:
        raise ValueError("the float32 .tflite has no signature; AI Edge Quantizer calibration needs one")
    key = next(iter(signatures))
    return key, signatures[key]["inputs"][0]


# --------------------------------------------------------------------------- flatbuffer edits


def strip_model(tflite: bytes) -> bytes:
    """Drops what no interpreter reads: conversion metadata and internal tensor names.

    The names of the input and output tensors and the signature stay (runtimes look them
    up). Weights, quantization parameters and ops are untouched, so every output is
    bit-identical (tests/export/test_convert.py checks it with LiteRT); `--no-strip` shows what it
    saves. Bias quantization parameters look
    redundant too, but LiteRT's outputs change without them, so they stay.
    """
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytearray(tflite), 0))
    kept = []
    for meta in model.metadata or []:
        if meta.name == b"min_runtime_version":  # 16 bytes that tools print
            kept.append(meta)
        else:
            model.buffers[meta.buffer].data = None
    model.metadata = kept or None
    model.description = None
    for subgraph in model.subgraphs:
        io_tensors = set(subgraph.inputs) | set(subgraph.outputs)
        for index, tensor in enumerate(subgraph.tensors):
            if index not in io_tensors:
                tensor.name = None
    return _pack_model(model, schema)


class _AlignedBuffer:
    """Packs a Buffer with its data 16-byte aligned, as the converter writes it (SIMD kernels read in place)."""

    def __init__(self, buffer, schema):
        self.buffer, self.schema = buffer, schema

    def Pack(self, builder):
        data = self.buffer.data
        offset = None
        if data is not None and len(data):
            payload = np.asarray(data, dtype=np.uint8).tobytes()
            builder.StartVector(1, len(payload), 16)
            builder.head -= len(payload)
            builder.Bytes[builder.head : builder.head + len(payload)] = payload
            builder.vectorNumElems = len(payload)
            offset = builder.EndVector()
        self.schema.BufferStart(builder)
        if offset is not None:
            self.schema.BufferAddData(builder, offset)
        return self.schema.BufferEnd(builder)


def _pack_model(model, schema) -> bytes:
    import flatbuffers

    model.buffers = [_AlignedBuffer(b, schema) for b in model.buffers]
    builder = flatbuffers.Builder(1 << 16)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


# --------------------------------------------------------------------------- manifest


_WEIGHT_OPS = {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1}


def weight_sparsity(tflite: bytes) -> dict:
    """Fraction of exactly-zero weights in each conv/dense kernel of a .tflite, and overall.

    Read with the one TFLite reader (runtime/tflite_info.py). Follows a DEQUANTIZE to its
    constant (float16 weights). int4 weights are unpacked.
    """
    from edgemnist.runtime import tflite_info

    graph = tflite_info.read_model(tflite, name="exported model").main
    producer = {out: op for op in graph.operators for out in op.outputs}
    layers, zeros_total, count_total = {}, 0, 0
    for op in graph.operators:
        if op.op not in _WEIGHT_OPS or len(op.inputs) < 2:
            continue
        index = op.inputs[_WEIGHT_OPS[op.op]]
        if index in producer and producer[index].op == "DEQUANTIZE":
            index = producer[index].inputs[0]
        tensor = graph.tensors[index]
        if not tensor.data or tensor.dtype not in ("float32", "float16", "int8", "uint8", "int4"):
            continue
        count = int(np.prod(tensor.shape))
        if tensor.dtype == "int4":
            packed = np.frombuffer(tensor.data, dtype=np.uint8)
            values = np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(-1)[:count]
        else:
            values = np.frombuffer(tensor.data, dtype=np.dtype(tensor.dtype).newbyteorder("<"))
        zeros = int(np.count_nonzero(values == 0))
        label = tensor.name.split(";")[0] if tensor.name else f"{op.op}#{len(layers)}"
        layers[label] = round(zeros / max(count, 1), 4)
        zeros_total += zeros
        count_total += count
    return {"overall": round(zeros_total / max(count_total, 1), 4), "layers": layers, "weights": count_total}


def build_manifest(converted: "Converted", variant: str, settings: dict) -> dict:
    """The manifest of one exported .tflite, as a JSON-ready dict."""
    from edgemnist.runtime import tflite_info

    tflite = converted.tflite
    model = tflite_info.read_model(tflite, name="exported model")
    io = tflite_info.io_tensors(model)
    v = _variant(variant)
    return {
        "variant": v.name,
        "description": v.description,
        "quantizer": v.quantizer,
        "recipe": v.recipe,
        "source": converted.source,
        "source_sha256": converted.source_sha256,
        "sha256": sha256_bytes(tflite),
        "bytes": len(tflite),
        "gzip_bytes": gzip_size(tflite),
        "inputs": io["inputs"],
        "outputs": io["outputs"],
        "ops": list(model.ops),
        "sparsity": weight_sparsity(converted.unstripped),  # same weights, tensor names intact
        "converter": _converter_versions(v.quantizer),
        "settings": settings,
    }


def _converter_versions(quantizer: str) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    packages = ("tensorflow",) if quantizer == "tflite" else ("ai-edge-quantizer", "ai-edge-litert")
    found = {}
    for package in packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    name = "TFLiteConverter" if quantizer == "tflite" else "ai_edge_quantizer.Quantizer"
    return {"name": name, "versions": found}


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
            model, digest, source = _load_source(model_or_path)
            float_tflite = _tflite_convert(model, "float32", config, None)
        raw = _ai_edge_quantize(float_tflite, v.recipe, config, representative)
    else:
        model, digest, source = _load_source(model_or_path)
        raw = _tflite_convert(model, v.recipe, config, representative)
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
        The manifest dict (also written as JSON), with "path" and "manifest_path" added.

    Raises:
        ValueError: unknown variant or a source of the wrong kind. FileNotFoundError: no source.
        RuntimeError: the converter failed.
    """
    v = _variant(variant)
    converted = convert_variant(model_or_path, v.name, config, representative)
    settings = {k: val for k, val in asdict(config).items() if k != "stem"}
    if not _is_calibrated(v):
        settings = {k: val for k, val in settings.items() if not k.startswith("representative") and k != "data_dir"}
    elif representative is not None:
        settings["representative_size"] = len(representative_images(config, representative))
        settings["representative_seed"] = settings["data_dir"] = None  # the caller's own images
    manifest = build_manifest(converted, v.name, settings)
    out_path = Path(out_path)
    # Both files are written and fsynced first, then renamed back to back (.tflite first), so a
    # kill or a full disk never leaves a new .tflite beside an old manifest for long.
    with atomic_path(manifest_path(out_path)) as tmp_manifest, atomic_path(out_path) as tmp_tflite:
        tmp_tflite.write_bytes(converted.tflite)
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
                   "AI Edge Quantizer, or both (default tflite)")
    p.add_argument("--representative-size", type=int, default=ExportConfig.representative_size,
                   help="training images that calibrate int8 ranges (default 500)")
    p.add_argument("--data-dir", help="data folder for calibration (default: $EDGEMNIST_DATA or the shipped MNIST)")
    p.add_argument("--seed", type=int, default=ExportConfig.representative_seed,
                   help="picks the calibration images from the training split (default 0)")
    p.add_argument("--no-strip", action="store_true", help="keep conversion metadata and internal tensor names")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=_run_export)


def _run_export(args):
    from edgemnist.cli import Output

    config = ExportConfig(representative_size=args.representative_size, representative_seed=args.seed,
                          data_dir=args.data_dir, strip=not args.no_strip)
    variants = [n.strip() for n in args.variants.split(",") if n.strip()] if args.variants else None
    sources = {"model": args.model, "pruned": args.pruned, "qat": args.qat, "pruned_qat": args.pruned_qat}
    progress = None if args.quiet else (lambda line: print(f"[export] {line.strip()}", file=sys.stderr, flush=True))
    result = export_all(sources, args.out, variants, config, args.quantizer, progress=progress)
    return Output(result, format_export(result))
