"""TFLite Micro firmware assets: the model as a C array, its settings, real test digits, an example main.

Usage: edgemnist firmware runs/default/model_int8.tflite --out firmware_assets [--json]

Writes `<stem>_model_data.{cc,h}` (TFLite Micro naming, 16-byte aligned),
`<stem>_model_settings.h` (input shape, quantization, labels, the op resolver with the
right N, the tensor arena size measured on TFLite Micro plus a stated margin),
`<stem>_test_digits.{cc,h}` (real MNIST test digits, already quantized),
`main_functions.{h,cc}` + `main.cc` (an example that runs the digits), the Cortex-M build
(`Makefile`, `model_ops.mk`, `cortex_m/`), a README and `firmware_manifest.json` (sha256
of every file). The same .tflite gives byte-identical files. The folder is built beside
the target and swapped in whole (`artifacts.atomic_write_folder`), so a crash leaves the
old folder or the new one, never a mix.

This module decides what goes into the folder and renders it from the templates in
`edgemnist/micro/templates/`; which ops and kernels TFLite Micro has is `micro.kernels`,
the arena is measured by `micro.arena` and TFLite Micro is checked against LiteRT by
`micro.check`.
"""
from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np

from edgemnist.artifacts import atomic_write_folder, sha256_bytes
from edgemnist.micro.arena import (
    ARENA_ALIGNMENT,
    ArenaSize,
    measure_arena,
    micro_version,
    on_core,
)
from edgemnist.micro.check import compare_with_litert, micro_predict, quantize_images, require_agreement
from edgemnist.micro.kernels import (
    INT8_REGISTRATIONS,
    KERNEL_SETS,
    MICRO_OP_RESOLVER_METHODS,
    kernel_sources,
    micro_ops,
)
from edgemnist.micro.sources import (  # noqa: F401 - also this module's names, as callers know them
    CORTEX_M_DIR,
    DEFAULT_RUNTIME,
    MANIFEST_NAME,
    RELEASE_DIR,
    RUNTIMES,
    TEMPLATE_COMMENT,
    TEMPLATES,
    c_identifier,
    digit_values,
    runtime_of,
    select_test_digits,
)
from edgemnist.micro.sources import check_out_dir as _check_out_dir
from edgemnist.micro.sources import generated_note as _generated_note
from edgemnist.micro.sources import header_guard as _header_guard
from edgemnist.micro.sources import template as _template
from edgemnist.output import Output
from edgemnist.runtime import tflite_info
from edgemnist.targets import DEFAULT_MARGIN, Target, as_micro_target, check_margin, fit_problems

CLASS_LABELS = tuple(str(d) for d in range(10))
@dataclass(frozen=True)
class FirmwareConfig:
    """Settings of `edgemnist firmware`."""

    digits_per_class: int = 2  # real MNIST test digits per class in <stem>_test_digits.cc
    # stated arena = measured minimum * (1 + margin), rounded up to 1 KiB; None: the target's
    # margin (edgemnist targets), else arena.DEFAULT_MARGIN
    arena_margin: Optional[float] = None
    max_arena: int = 8 << 20  # the largest arena the measurement tries before giving up
    name: Optional[str] = None  # <stem> of the C names; default: derived from the file name
    data_dir: Optional[str] = None  # where the test digits come from (None: shipped MNIST)
    regenerate_command: Optional[str] = None  # shown in the README (e.g. the repo's exact command)
    # A micro target (edgemnist targets; a Target, or its name, looked up once here): a model that cannot
    # fit it is refused
    target: Optional[Target] = None
    # TFLite Micro tree for a target whose arena is measured on its core (None: $EDGEMNIST_TFLM)
    tflm: Optional[str] = None
    # "tflm": TensorFlow Lite Micro (the model array, its op resolver, a measured arena); "c": the
    # project's generated C (micro.c_firmware), built for the same cores and boards without TFLM
    runtime: str = DEFAULT_RUNTIME

    def __post_init__(self):
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")
        if self.target is not None:
            object.__setattr__(self, "target", as_micro_target(self.target))
        if self.runtime != DEFAULT_RUNTIME and self.arena_margin is not None:
            raise ValueError("arena_margin applies to the tflm runtime only: the generated C's arena is planned "
                             "exactly when the C is generated, not measured")
        if not 1 <= int(self.digits_per_class) <= 100:
            raise ValueError(f"digits_per_class must be in 1..100, got {self.digits_per_class}")
        if self.arena_margin is not None:
            check_margin(self.arena_margin)
        if int(self.max_arena) < 1024:
            raise ValueError(f"max_arena must be at least 1024 bytes, got {self.max_arena}")
        if self.name is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.name):
            raise ValueError(f"name must be a C identifier, got {self.name!r}")


# --------------------------------------------------------------------------- rendering

def _c_bytes(data: bytes, per_line: int = 12, indent: str = "    ") -> str:
    lines = []
    for i in range(0, len(data), per_line):
        lines.append(indent + ", ".join(f"0x{b:02x}" for b in data[i:i + per_line]) + ",")
    return "\n".join(lines)


def _c_float(value: float) -> str:
    text = format(float(np.float32(value)), ".9g")
    if "e" not in text and "." not in text:
        text += ".0"
    return text + "f"


def render_model_data(stem: str, model_name: str, data: bytes) -> dict:
    """`<stem>_model_data.h` and `.cc`: the model bytes as an aligned C array."""
    values = dict(note=_generated_note(model_name, sha256_bytes(data)), guard=_header_guard(stem, "MODEL_DATA"),
                  stem=stem, size=len(data), bytes=_c_bytes(data))
    return {f"{stem}_model_data.h": _template("model_data.h.tmpl", **values),
            f"{stem}_model_data.cc": _template("model_data.cc.tmpl", **values)}


def _arena_note(arena: ArenaSize, version: str, prefix: str = "") -> str:
    """Where the stated arena comes from, as lines starting with `prefix` (a C comment, or none)."""
    if arena.measured_on == "host":
        text = [f"Tensor arena: the smallest that allocated and ran on TFLite Micro (tflite-micro {version},",
                "64-bit host build; 32-bit targets need a little less) was kMeasuredArenaSize bytes.",
                f"kTensorArenaSize adds a {arena.margin:.0%} margin, rounded up to 1 KiB."]
    else:
        text = [f"Tensor arena: TFLite Micro used kMeasuredArenaSize bytes on {arena.measured_on},",
                "reported by this folder's checking build (the host's 64-bit build over-counts a 32-bit core).",
                f"kTensorArenaSize adds a {arena.margin:.0%} margin, rounded up to {arena.rounding:,} bytes."]
    return "\n".join(prefix + line for line in text)


def render_settings(stem: str, model_name: str, sha: str, model: tflite_info.TFLiteModel, ops: list,
                    arena: ArenaSize, version: str) -> str:
    """`<stem>_model_settings.h`: shapes, quantization, labels, op resolver and arena size."""
    inp, out = model.inputs[0], model.outputs[0]
    _, height, width, channels = inp.shape
    classes = int(np.prod(out.shape))
    return _template(
        "model_settings.h.tmpl", note=_generated_note(model_name, sha), guard=_header_guard(stem, "MODEL_SETTINGS"),
        stem=stem, height=height, width=width, channels=channels,
        input_scale=_c_float(inp.scale), input_zero_point=int(inp.zero_point),
        classes=classes, output_scale=_c_float(out.scale), output_zero_point=int(out.zero_point),
        labels=", ".join(f'"{label}"' for label in CLASS_LABELS[:classes]),
        arena_note=_arena_note(arena, version, "// "), arena_minimum=arena.minimum, arena_stated=arena.stated,
        num_ops=len(ops), op_list=", ".join(ops),
        register_ops="\n".join(f"  if (resolver.{MICRO_OP_RESOLVER_METHODS[op]}() != kTfLiteOk) return kTfLiteError;"
                               for op in ops),
        register_ops_int8="\n".join(
            f"  if (resolver.{MICRO_OP_RESOLVER_METHODS[op]}("
            f"{'tflite::' + INT8_REGISTRATIONS[op] + '()' if op in INT8_REGISTRATIONS else ''}) != kTfLiteOk) "
            "return kTfLiteError;" for op in ops))


def render_test_digits(stem: str, model_name: str, sha: str, digits: np.ndarray, labels: np.ndarray,
                       expected: np.ndarray) -> dict:
    """`<stem>_test_digits.h` and `.cc`: real test digits, quantized, one image row per line, with
    the int8 scores TFLite Micro's reference kernels gave for each (`expected`, shape (N, classes))."""
    values = digit_values(stem, model_name, sha, digits, labels, expected)
    return {f"{stem}_test_digits.h": _template("test_digits.h.tmpl", **values),
            f"{stem}_test_digits.cc": _template("test_digits.cc.tmpl", **values)}


def render_main(stem: str, model_name: str, sha: str, classes: int) -> dict:
    """An example for TFLite Micro: `main_functions.{h,cc}` (setup/RunTestDigits/loop) and `main.cc`.

    The example checks every TfLiteStatus and compares every output score with the expected one.
    """
    note = _generated_note(model_name, sha)
    score_args = ", ".join(f"static_cast<int>(output->data.int8[{c}])" for c in range(classes))
    return {name: _template(f"{name}.tmpl", note=note, stem=stem, score_format=" ".join(["%d"] * classes),
                            score_args=score_args)
            for name in ("main_functions.h", "main_functions.cc", "main.cc")}




def render_cortex_m(stem: str, model_name: str, sha: str, ops: list) -> dict:
    """The Cortex-M build: `Makefile`, `model_ops.mk` (the kernels to compile), `cortex_m/`
    (start-up code, semihosting platform layer, linker script, the bare-metal main) and
    `release/main_release.cc` (the release build's main)."""
    files = {f"{CORTEX_M_DIR}/{path.name}": path.read_text(encoding="utf-8")
             for path in sorted((TEMPLATES / CORTEX_M_DIR).iterdir())
             if path.is_file() and path.name != "Makefile"}
    files["Makefile"] = (TEMPLATES / CORTEX_M_DIR / "Makefile").read_text(encoding="utf-8")
    files["model_ops.mk"] = _template("model_ops.mk.tmpl", model_name=model_name, sha256=sha, op_list=", ".join(ops),
                                      kernel_sources=" ".join(kernel_sources(ops)))
    files[f"{RELEASE_DIR}/main_release.cc"] = _template("main_release.cc.tmpl", note=_generated_note(model_name, sha),
                                                        stem=stem)
    return files


def _arena_origin(arena: ArenaSize, version: str) -> str:
    """The README's paragraph on where the stated arena comes from."""
    if arena.measured_on == "host":
        return (f"The arena minimum was found by bisection on TFLite Micro built for the host\n"
                f"(tflite-micro {version}, 64-bit): the smallest multiple of 16 bytes with which the\n"
                f"model allocated its tensors and ran. The stated size adds {arena.margin:.0%} and rounds up\n"
                "to 1 KiB. A 32-bit microcontroller needs slightly less (smaller pointers in the\n"
                "interpreter's bookkeeping); kernels optimized for a target (CMSIS-NN) may need some\n"
                "scratch memory of their own, which the margin is there for.")
    return (f"The arena was measured on the target's core: this folder's checking build, run under\n"
            f"QEMU on {arena.measured_on}, reported how many bytes TFLite Micro used\n"
            "(its own state, the planned tensors with their alignment, and the scratch buffers of this\n"
            "core's kernels). The host's TFLite Micro is a 64-bit build whose tensors and nodes are\n"
            "larger, and its reference kernels' scratch memory is not CMSIS-NN's, which can be\n"
            f"kilobytes more. The stated size adds {arena.margin:.0%} and rounds up to 16 bytes;\n"
            "the release build run on the board's own memory map proves it.")


def render_readme(stem: str, model_name: str, model: tflite_info.TFLiteModel, ops: list, arena: ArenaSize,
                  n_digits: int, version: str, regenerate: Optional[str], check: dict) -> str:
    """README.md of the output folder."""
    inp, out = model.inputs[0], model.outputs[0]
    builtin, xnnpack = check["builtin"], check["xnnpack"]
    return _template(
        "README.md.tmpl", stem=stem, model_name=model_name, model_bytes=f"{model.size:,}",
        model_sha256=model.sha256, regenerate=regenerate or f"edgemnist firmware path/to/{model_name} --out <this folder>",
        arena_stated=f"{arena.stated:,}", arena_minimum=f"{arena.minimum:,}", arena_origin=_arena_origin(arena, version),
        digit_bytes=f"{n_digits * int(np.prod(inp.shape)):,}", count=n_digits, version=version,
        input_shape=list(inp.shape), input_scale=f"{inp.scale:.9g}", input_zero_point=inp.zero_point,
        output_shape=list(out.shape), output_scale=f"{out.scale:.9g}", output_zero_point=out.zero_point,
        num_ops=len(ops), op_list=", ".join(ops), manifest_name=MANIFEST_NAME,
        check_digits=check["digits"], litert_version=check["litert_version"],
        builtin_agreement=f"{builtin['argmax_agreement']:.0%}", builtin_bit_exact=f"{builtin['bit_exact']:.0%}",
        builtin_max_diff=builtin["max_abs_diff"], xnnpack_agreement=f"{xnnpack['argmax_agreement']:.0%}",
        xnnpack_max_diff=xnnpack["max_abs_diff"])


def _manifest(files: dict, model_name: str, model: tflite_info.TFLiteModel, ops: list, arena: ArenaSize,
              stem: str, labels: np.ndarray, version: str) -> dict:
    inp, out = model.inputs[0], model.outputs[0]
    return {
        "model": {"name": model_name, "bytes": model.size, "sha256": model.sha256},
        "stem": stem,
        "files": {name: {"bytes": len(text.encode()), "sha256": sha256_bytes(text.encode())}
                  for name, text in sorted(files.items())},
        "flash_bytes": model.size,
        "arena": arena.to_json(),
        "ops": ops,
        "resolver_size": len(ops),
        "kernel_sources": kernel_sources(ops),
        "kernel_sets_checked": list(KERNEL_SETS),
        "expected_scores": f"TFLite Micro reference kernels (tflite-micro {version}, host build)",
        "input": {"shape": list(inp.shape), "dtype": inp.dtype, "scale": inp.scale, "zero_point": inp.zero_point},
        "output": {"shape": list(out.shape), "dtype": out.dtype, "scale": out.scale, "zero_point": out.zero_point},
        "test_digits": {"count": int(len(labels)), "labels": [int(v) for v in labels]},
        "tflite_micro_version": version,
    }


def generate(model_path: str | os.PathLike, out_dir: str | os.PathLike,
             config: FirmwareConfig = FirmwareConfig()) -> dict:
    """Writes the TFLite Micro assets of an int8 .tflite into `out_dir`.

    Args:
        model_path: a full-integer (int8 input and output) .tflite file.
        out_dir: the folder to write (replaced whole if it holds earlier assets).
        config: firmware settings.

    Returns:
        The manifest (also written as `firmware_manifest.json`), with "out" added.

    Raises:
        FileNotFoundError: no such model file.
        ValueError: a malformed, float or non-micro model (naming the file and the op).
        MissingExtraError: tflite-micro is not installed.
    """
    if config.runtime != DEFAULT_RUNTIME:  # the generated C: its own folder (micro.c_firmware)
        from edgemnist.micro import c_firmware

        return c_firmware.generate(model_path, out_dir, config)
    model_path, out = Path(model_path), Path(out_dir)
    if not model_path.is_file():
        raise FileNotFoundError(f"no such model file: {model_path}")
    _check_out_dir(out)
    data = model_path.read_bytes()
    model = tflite_info.validate(data, name=str(model_path))
    ops = micro_ops(model, str(model_path))
    stem = config.name or c_identifier(model_path.stem)
    model_name = model_path.name
    target = config.target
    margin = config.arena_margin
    if margin is None:
        margin = target.arena_margin if target is not None else DEFAULT_MARGIN
    measure_on_core = target is not None and target.arena_on_core
    arena = measure_arena(model_path, margin, config.max_arena)  # the host's, for the host's checks below
    if target is not None:
        # A target whose arena is measured on its core is checked here against a bound that
        # cannot over-count (a 32-bit core's arena is at least half the 64-bit host's: the same
        # tensors, structures of at most half the size), and exactly once the core reported it.
        bound = arena.minimum // 2 if measure_on_core else arena.stated
        problems = fit_problems(target, model.size, bound)
        if problems:
            where = f" (at least half the {arena.minimum:,} B measured on this 64-bit host)" if measure_on_core else ""
            raise ValueError(f"{model_path}: cannot fit {target.name}: {'; '.join(problems)}{where}")
    version = micro_version()
    inp = model.inputs[0]
    images, labels = select_test_digits(config.digits_per_class, config.data_dir)
    digits = quantize_images(images, inp.scale, inp.zero_point).reshape((len(images),) + tuple(inp.shape[1:]))
    expected = micro_predict(model_path, digits, arena.stated)
    check = compare_with_litert(model_path, digits, arena.stated, micro=expected)
    require_agreement(check, model_path)

    def render(arena: ArenaSize) -> tuple:
        files = {}
        files.update(render_model_data(stem, model_name, data))
        files[f"{stem}_model_settings.h"] = render_settings(stem, model_name, model.sha256, model, ops, arena,
                                                            version)
        files.update(render_test_digits(stem, model_name, model.sha256, digits, labels, expected))
        files.update(render_main(stem, model_name, model.sha256, int(expected.shape[1])))
        files.update(render_cortex_m(stem, model_name, model.sha256, ops))
        files["README.md"] = render_readme(stem, model_name, model, ops, arena, len(labels), version,
                                           config.regenerate_command, check)
        manifest = _manifest(files, model_name, model, ops, arena, stem, labels, version)
        manifest["litert_check"] = check
        return files, manifest

    if measure_on_core:
        arena = _arena_on_core(render, arena, out, target, margin, config.tflm)
        problems = fit_problems(target, model.size, arena.stated)
        if problems:
            raise ValueError(f"{model_path}: cannot fit {target.name}: {'; '.join(problems)} (the arena "
                             f"measured on {arena.measured_on})")
    files, manifest = render(arena)
    _check_out_dir(out)
    atomic_write_folder(out, _folder_contents(files, manifest))
    return {**manifest, "out": str(out)}


def _folder_contents(files: dict, manifest: dict) -> dict:
    """What a firmware folder holds: the rendered files and the manifest that lists them."""
    return {**files, MANIFEST_NAME: json.dumps(manifest, indent=2, sort_keys=True) + "\n"}


def _arena_on_core(render, host: ArenaSize, out: Path, target, margin: float, tflm: Optional[str]) -> ArenaSize:
    """The arena the target's core uses: the folder (`render(arena)` gives its files and manifest),
    written to a scratch folder beside `out` with an arena of the host's size or the target's whole
    RAM, whichever is larger (the target's kernels may need scratch memory the host's do not), is
    built as the checking build for the target's core and kernel set and run under QEMU on its
    checking board; the run reports TFLite Micro's arena use, trusted only when every score was
    bit-exact with the host. The folder's own release run on the board then proves the size.

    Raises:
        MissingToolError: no toolchain, QEMU or TFLite Micro tree. FirmwareRunError: the build
        failed, or the firmware hung or faulted. ValueError: the run was not bit-exact.
    """
    from edgemnist.micro import mcu

    board = target.check_board or target.board
    where = f"{target.cpu} ({target.kernels} kernels, QEMU {board})"
    roomy = replace(host, stated=max(host.stated, target.ram_bytes // ARENA_ALIGNMENT * ARENA_ALIGNMENT))
    files, manifest = render(roomy)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.arena-", dir=out.parent) as tmp:
        folder = Path(tmp) / "firmware"
        atomic_write_folder(folder, _folder_contents(files, manifest))
        report = mcu.run_mcu(folder, mcu.McuConfig(cpu=target.cpu, kernels=target.kernels, board=board, tflm=tflm,
                                                   release=False))
    if not report["ok"]:
        raise ValueError(f"{manifest['model']['name']}: measuring the arena on {where}: the firmware's scores "
                         f"were not bit-exact with the host ({report['bit_exact']['digits_differing']} digits "
                         "differ), so its arena is not trusted")
    return on_core(report["memory"]["arena_used_bytes"], margin, where)


def format_manifest(manifest: dict) -> str:
    """Human summary of what `generate` wrote."""
    arena = manifest["arena"]
    lines = [f"wrote {manifest['out']}/ for {manifest['model']['name']}:"]
    for name, entry in manifest["files"].items():
        lines.append(f"  {name:<36} {entry['bytes']:>9,} bytes")
    lines.append(f"flash (model): {manifest['flash_bytes']:,} bytes")
    size = ArenaSize(**arena)
    where = "this host" if size.measured_on == "host" else size.measured_on
    lines.append(f"RAM (tensor arena): stated {size.stated:,} bytes = minimum {size.minimum:,} measured on "
                 f"{where} + {size.margin:.0%}, rounded up to {size.rounding:,} bytes (TFLite Micro recorded "
                 f"{size.recorded})")
    lines.append(f"ops ({manifest['resolver_size']}): {', '.join(manifest['ops'])}")
    check = manifest["litert_check"]
    for key, what in (("builtin", "builtin kernels"), ("xnnpack", "XNNPACK")):
        c = check[key]
        lines.append(f"TFLite Micro vs LiteRT {check['litert_version']} ({what}) on the {check['digits']} test digits: "
                     f"{c['argmax_agreement']:.1%} same class, {c['bit_exact']:.1%} bit-exact, "
                     f"max difference {c['max_abs_diff']} int8 levels")
    return "\n".join(lines)


def add_commands(subparsers) -> None:
    """Registers `edgemnist firmware`."""
    p = subparsers.add_parser(
        "firmware",
        help="TFLite Micro sources from an int8 .tflite: C array, settings, test digits, example main",
        description="Write TFLite Micro firmware assets for a full-integer .tflite: <stem>_model_data.cc/.h, "
        "<stem>_model_settings.h (quantization, op resolver, tensor arena measured on TFLite Micro), "
        "<stem>_test_digits.cc/.h, main_functions.cc, main.cc, README.md and firmware_manifest.json.",
    )
    p.add_argument("model", help="an int8 .tflite file")
    p.add_argument("--out", required=True, help="output folder (replaced whole if it holds earlier assets)")
    p.add_argument("--name", default=None, help="the <stem> of file and C names (default: from the file name)")
    p.add_argument("--digits-per-class", type=int, default=FirmwareConfig.digits_per_class,
                   help="real test digits per class in <stem>_test_digits.cc (default %(default)s)")
    p.add_argument("--arena-margin", type=float, default=None,
                   help=f"margin over the arena minimum measured on this host (default {DEFAULT_MARGIN}, "
                        "or the --target's: edgemnist targets)")
    p.add_argument("--data-dir", default=None, help="MNIST IDX folder for the test digits (default: shipped)")
    p.add_argument("--regenerate-command", default=None, help="the command shown in the README to regenerate")
    p.add_argument("--target", default=None,
                   help="a micro target (edgemnist targets): refuse a model whose size or arena cannot fit it; "
                   "for a target whose arena is measured on its core (arena_on_core in edgemnist targets --json), "
                   "build and run the checking build under QEMU to measure it")
    p.add_argument("--tflm", default=None,
                   help="TFLite Micro tree for measuring the arena on a target's core (as edgemnist mcu's --tflm; "
                   "default $EDGEMNIST_TFLM)")
    p.add_argument("--runtime", choices=list(RUNTIMES), default=FirmwareConfig.runtime,
                   help="tflm (default): TensorFlow Lite Micro's model array, op resolver and measured arena; "
                   "c: the model as generated C (edgemnist codegen) with the same test digits, expected scores "
                   "from LiteRT's builtin kernels, and a Makefile for the same cores and boards that needs no "
                   "TensorFlow Lite Micro")
    p.set_defaults(func=_run_firmware)


def _run_firmware(args):
    config = FirmwareConfig(
        digits_per_class=args.digits_per_class,
        arena_margin=args.arena_margin,
        name=args.name,
        data_dir=args.data_dir,
        regenerate_command=args.regenerate_command,
        target=args.target,
        tflm=args.tflm,
        runtime=args.runtime,
    )
    if config.runtime == "c":
        from edgemnist.micro import c_firmware

        manifest = generate(args.model, args.out, config)
        return Output(manifest, c_firmware.format_manifest(manifest))
    target = config.target
    if target is not None:
        if target.arena_on_core:
            print(f"{target.name}: the arena is measured on its core: building the checking build for {target.cpu} "
                  f"and running it under QEMU {target.check_board or target.board} ...", file=sys.stderr)
    manifest = generate(args.model, args.out, config)
    return Output(manifest, format_manifest(manifest))
