"""Cortex-M firmware whose runtime is the project's own generated C instead of TensorFlow Lite Micro.

Usage: edgemnist firmware runs/stm32/tflite/model_int8_per_tensor.tflite --runtime c --out runs/stm32/firmware-c
       edgemnist mcu runs/stm32/firmware-c --runtime c --target stm32vldiscovery

Writes `<stem>.c`/`<stem>.h` (`micro.codegen`: C99, weights in flash, one static arena),
`<stem>_test_digits.{c,h}` (the real test digits TFLite Micro's firmware embeds, chosen and
quantized by the same rules, with the int8 scores LiteRT's builtin kernels give for them: the
generated C is bit-exact with those), the Cortex-M build (`Makefile`, `cortex_m/` with the
TFLite Micro firmware's own start-up code, platform layer and linker script, a plain C main
that counts instructions per inference and per layer, `release/main_release.c`), a README and
`firmware_manifest.json` (sha256 of every file, "runtime": "c"). The same .tflite gives
byte-identical files, written atomically as `edgemnist firmware` writes its folder.

`edgemnist mcu` builds and runs such a folder exactly as a TFLite Micro one (`micro.build`,
`micro.qemu`, `micro.elf`, the same boards and output lines), without a TFLite Micro tree.
This module owns what differs: the folder's contents and reading its test digits back.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from edgemnist.artifacts import atomic_write_folder, sha256_bytes
from edgemnist.micro import codegen, sources
from edgemnist.micro.check import litert_raw_outputs, quantize_images
from edgemnist.runtime import tflite_info

RUNTIME = "c"  # the manifest's "runtime" of a folder written here (one of sources.RUNTIMES)
TEMPLATE_DIR = "c_runtime"  # templates/c_runtime/: this runtime's Makefile, mains and test digit sources
# What the C build shares with the TFLite Micro build, copied from templates/cortex_m/: the same
# start-up code, platform layer and linker script, so both runtimes run on the same boards.
SHARED_CORTEX_M = ("cortex_m.ld", "platform.c", "platform.h", "startup.c")
# The TFLite Micro Makefile's section that says what each core and board means (compiler flags,
# memory map, QEMU machine): the C runtime's Makefile gets it verbatim, so the two cannot drift.
BOARDS_BEGIN = "ifeq ($(CPU),cortex-m0)"
BOARDS_END = "RAM_SIZE ?= $(word 3,$(BOARD_MEMORY))"


def boards_section() -> str:
    """The cores-and-boards section of the TFLite Micro firmware's Makefile template.

    Raises:
        ValueError: the template no longer has the section's first or last line.
    """
    path = sources.TEMPLATES / sources.CORTEX_M_DIR / "Makefile"
    text = path.read_text(encoding="utf-8")
    start, end = text.find(BOARDS_BEGIN), text.find(BOARDS_END)
    if start < 0 or end < start:
        raise ValueError(f"{path}: no cores-and-boards section from {BOARDS_BEGIN!r} to {BOARDS_END!r}")
    return text[start:end + len(BOARDS_END)]


def _template(name: str, **values) -> str:
    return sources.template(f"{TEMPLATE_DIR}/{name}", **values)


def render_makefile(stem: str) -> str:
    """The folder's Makefile: the C runtime's, with the TFLite Micro build's cores and boards."""
    text = (sources.TEMPLATES / TEMPLATE_DIR / "Makefile").read_text(encoding="utf-8")
    for marker, value in (("@BOARDS@", boards_section()), ("@STEM@", stem)):
        if text.count(marker) != 1:
            raise ValueError(f"{TEMPLATE_DIR}/Makefile: expected one {marker} marker")
        text = text.replace(marker, value)
    return text


def layer_tag(what: str) -> str:
    """A layer's name as the profile's `tag=` field carries it (no spaces): "CONV_2D + MAX_POOL_2D" -> "CONV_2D+MAX_POOL_2D"."""
    return re.sub(r"\s*\+\s*", "+", what).replace(" ", "_")


def render_cortex_m(stem: str, model_name: str, sha: str, layers: list) -> dict:
    """`cortex_m/` (the shared start-up, platform layer and linker script; the per-layer profile
    hook; the checking build's main), `release/main_release.c` and the Makefile."""
    shared = sources.TEMPLATES / sources.CORTEX_M_DIR
    files = {f"{sources.CORTEX_M_DIR}/{name}": (shared / name).read_text(encoding="utf-8")
             for name in SHARED_CORTEX_M}
    files[f"{sources.CORTEX_M_DIR}/layer_profile.h"] = \
        (sources.TEMPLATES / TEMPLATE_DIR / "layer_profile.h").read_text(encoding="utf-8")
    note = sources.generated_note(model_name, sha)
    tags = "\n".join(f'    "{layer_tag(layer["what"])}",' for layer in layers)
    files[f"{sources.CORTEX_M_DIR}/main_cortex_m.c"] = _template(
        "main_cortex_m.c.tmpl", note=note, stem=stem, upper=stem.upper(), num_layers=len(layers), layer_tags=tags)
    files[f"{sources.RELEASE_DIR}/main_release.c"] = _template(
        "main_release.c.tmpl", note=note, stem=stem, upper=stem.upper())
    files["Makefile"] = render_makefile(stem)
    return files


def render_test_digits(stem: str, model_name: str, sha: str, digits: np.ndarray, labels: np.ndarray,
                       expected: np.ndarray, reference: str) -> dict:
    """`<stem>_test_digits.h` and `.c`: the TFLite Micro firmware's digit values in C (`reference`
    names where the expected scores come from)."""
    values = sources.digit_values(stem, model_name, sha, digits, labels, expected)
    values.update(upper=stem.upper(), reference=reference)
    return {f"{stem}_test_digits.h": _template("test_digits.h.tmpl", **values),
            f"{stem}_test_digits.c": _template("test_digits.c.tmpl", **values)}


def _codegen_summary(report: dict) -> dict:
    """The parts of codegen's report a firmware manifest keeps (not the model's path: the folder
    must not depend on where the .tflite was)."""
    keys = ("arena_bytes", "const_bytes", "scratch_bytes", "ping_pong_bytes", "unfused_arena_bytes", "fusions")
    layers = [{k: v for k, v in layer.items()} for layer in report["layers"]]
    return {**{k: report[k] for k in keys}, "layers": layers}


def generate(model_path: str | os.PathLike, out_dir: str | os.PathLike,
             config) -> dict:
    """Writes the C-runtime firmware folder of a full-integer .tflite into `out_dir`.

    Args:
        model_path: a full-integer (int8 input and output) .tflite file.
        out_dir: the folder to write (replaced whole if it holds an earlier firmware folder).
        config: `edgemnist firmware`'s settings (a `firmware.FirmwareConfig`, whose `generate` calls
            this one for runtime "c"); name, digits_per_class, data_dir, regenerate_command and
            target apply (the arena is planned, not measured: no margin).

    Returns:
        The manifest (also written as `firmware_manifest.json`), with "out" added.

    Raises:
        FileNotFoundError: no such model file.
        CodegenError (a ValueError): an op, type or shape the generated C does not cover.
        ValueError: a malformed .tflite, or one that cannot fit the target.
        MissingExtraError: ai-edge-litert (the expected scores) is not installed.
    """
    model_path, out = Path(model_path), Path(out_dir)
    if not model_path.is_file():
        raise FileNotFoundError(f"no such model file: {model_path}")
    sources.check_out_dir(out)
    data = model_path.read_bytes()
    model = tflite_info.validate(data, name=str(model_path))
    stem = config.name or sources.c_identifier(model_path.stem)
    model_name = model_path.name
    inp, outp = model.inputs[0], model.outputs[0]
    if inp.dtype != "int8" or outp.dtype != "int8":
        raise ValueError(f"{model_path}: the C runtime takes a full-integer model (int8 input and output); "
                         f"this one has {inp.dtype} input and {outp.dtype} output")
    try:
        generated = codegen.generate(model_path, codegen.CodegenConfig(name=stem))
    except codegen.CodegenError as exc:
        raise codegen.CodegenError(f"{model_path}: {exc}") from None
    report = generated["report"]
    target = config.target  # a Target: FirmwareConfig looked its name up
    if target is not None:
        from edgemnist.targets import fit_problems

        problems = fit_problems(target, report["const_bytes"], report["arena_bytes"])
        if problems:
            raise ValueError(f"{model_path}: cannot fit {target.name} with the generated C: {'; '.join(problems)}")
    images, labels = sources.select_test_digits(config.digits_per_class, config.data_dir)
    digits = quantize_images(images, inp.scale, inp.zero_point).reshape((len(images),) + tuple(inp.shape[1:]))
    expected = litert_raw_outputs(model_path, digits).astype(np.int8)
    from importlib import metadata

    litert_version = metadata.version("ai-edge-litert")
    reference = f"LiteRT {litert_version}'s builtin kernels"

    files = {name: content.decode("utf-8") for name, content in generated["files"].items()
             if name in (f"{stem}.c", f"{stem}.h")}
    files.update(render_test_digits(stem, model_name, model.sha256, digits, labels, expected, reference))
    files.update(render_cortex_m(stem, model_name, model.sha256, report["layers"]))
    summary = _codegen_summary(report)
    files["README.md"] = _template(
        "README.md.tmpl", stem=stem, upper=stem.upper(), model_name=model_name, model_bytes=f"{model.size:,}",
        model_sha256=model.sha256,
        regenerate=config.regenerate_command or f"edgemnist firmware path/to/{model_name} --runtime c --out <this folder>",
        const_bytes=f"{report['const_bytes']:,}", arena_bytes=f"{report['arena_bytes']:,}",
        digit_bytes=f"{len(labels) * int(np.prod(inp.shape)):,}", num_layers=len(report["layers"]),
        layers=", ".join(layer["what"] for layer in report["layers"]), input_shape=list(inp.shape),
        input_scale=f"{inp.scale:.9g}", input_zero_point=inp.zero_point, classes=int(expected.shape[1]),
        output_scale=f"{outp.scale:.9g}", output_zero_point=outp.zero_point, count=len(labels),
        litert_version=litert_version, manifest_name=sources.MANIFEST_NAME)
    manifest = {
        "runtime": RUNTIME,
        "model": {"name": model_name, "bytes": model.size, "sha256": model.sha256},
        "stem": stem,
        "files": {name: {"bytes": len(text.encode()), "sha256": sha256_bytes(text.encode())}
                  for name, text in sorted(files.items())},
        # flash the model itself needs (weights, folded biases, multipliers, shifts, geometry), and
        # its RAM: the arena of the static memory plan, fixed here (nothing is measured or added)
        "flash_bytes": report["const_bytes"],
        "arena": {"stated": report["arena_bytes"], "minimum": report["arena_bytes"],
                  "measured_on": "the static memory plan of edgemnist codegen"},
        "codegen": summary,
        "expected_scores": reference,
        "litert_version": litert_version,
        "input": {"shape": list(inp.shape), "dtype": inp.dtype, "scale": inp.scale, "zero_point": inp.zero_point},
        "output": {"shape": list(outp.shape), "dtype": outp.dtype, "scale": outp.scale,
                   "zero_point": outp.zero_point},
        "test_digits": {"count": int(len(labels)), "labels": [int(v) for v in labels]},
    }
    sources.check_out_dir(out)
    atomic_write_folder(out, {**files, sources.MANIFEST_NAME: json.dumps(manifest, indent=2, sort_keys=True) + "\n"})
    return {**manifest, "out": str(out)}


def embedded_data(folder: Path, manifest: dict) -> tuple:
    """(int8 digits (N, H, W, C), expected int8 scores (N, classes)) from the folder's `<stem>_test_digits.c`."""
    stem = manifest["stem"]
    text = (Path(folder) / f"{stem}_test_digits.c").read_text(encoding="utf-8")
    n = int(manifest["test_digits"]["count"])
    shape = [n] + list(manifest["input"]["shape"][1:])
    digits = np.array(sources.c_array(text, f"g_{stem}_test_digits"), np.int8).reshape(shape)
    expected = np.array(sources.c_array(text, f"g_{stem}_expected_scores"), np.int8).reshape(n, -1)
    return digits, expected


def format_manifest(manifest: dict) -> str:
    """Human summary of what `generate` wrote."""
    cg = manifest["codegen"]
    lines = [f"wrote {manifest['out']}/ for {manifest['model']['name']} (runtime: generated C, no TensorFlow Lite Micro):"]
    for name, entry in manifest["files"].items():
        lines.append(f"  {name:<36} {entry['bytes']:>9,} bytes")
    lines.append(f"flash (model constants): {cg['const_bytes']:,} bytes")
    lines.append(f"RAM (static arena): {cg['arena_bytes']:,} bytes (ping-pong without in-place layers: "
                 f"{cg['ping_pong_bytes']:,}; without fusion: {cg['unfused_arena_bytes']:,}); "
                 f"scratch on the stack: {cg['scratch_bytes']} bytes")
    lines.append(f"layers ({len(cg['layers'])}): {', '.join(layer['what'] for layer in cg['layers'])}")
    lines.append(f"expected scores: {manifest['expected_scores']} on the {manifest['test_digits']['count']} test digits")
    return "\n".join(lines)
