"""Build a firmware folder for a Cortex-M core, run it under QEMU, and check it bit for bit.

Usage: edgemnist mcu runs/default/firmware --tflm path/to/tflm_tree --cpu cortex-m4 --kernels cmsis_nn [--json]
       edgemnist mcu runs/microbit/firmware --target microbit
       edgemnist mcu runs/microbit/firmware-c --runtime c --target microbit

Takes a folder written by `edgemnist firmware` and a TensorFlow Lite Micro source tree (the
output of TFLM's own `create_tflm_tree.py`), cross-compiles the folder's `Makefile` with
arm-none-eabi-gcc for the chosen core and kernel set (only the framework and the model's
ops), runs the ELF under `qemu-system-arm` with semihosting, and reports: the prediction and
the int8 scores of every embedded digit, whether every score equals the host's (TFLite Micro
reference kernels, and LiteRT's builtin kernels), flash and RAM from the ELF (arena and stack
named), the arena actually used, and instructions per inference and per op. It then builds
the folder's release build (what a product ships: no printf, no error strings, int8-only
kernels, LTO) and runs it too: its flash and RAM are the headline numbers, and it reports one
PASS/FAIL word for its own bit-exact check, its stack's high-water mark and its arena.
A folder written by `edgemnist firmware --runtime c` (the model as generated C, `micro.c_firmware`)
is built, run and reported the same way on the same boards, without a TFLite Micro tree: its
expected scores are LiteRT's builtin kernels', its arena is the static plan's, and its per-op
instruction counts are per generated layer.
With `--target NAME` (`edgemnist targets`) the core, board and kernel set come from the
target, a folder whose model or arena cannot fit is refused before anything is built, the
release build is linked against the target's RAM budget, and both numbers are reported next
to the budget.

The steps are modules of their own: `micro.build` (tools, TFLite Micro tree, make),
`micro.elf` (flash and RAM), `micro.qemu` (the run, with the command line the folder's
Makefile gives); the folder is checked against its manifest by `verify`. QEMU does not model
cycles: the counts are instructions, not timings.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from edgemnist._tensorflow import MissingExtraError
from edgemnist.artifacts import CACHE_ENV, sha256_bytes  # noqa: F401 - CACHE_ENV: tests set it
from edgemnist.micro import build as firmware_build
from edgemnist.micro import elf, qemu
from edgemnist.micro.build import (  # noqa: F401
    INSTALL_HINT,
    TFLM_ENV,
    TREE_HINT,
    FirmwareRunError,
    MissingToolError,
    find_tools,
    resolve_tflm,
)
from edgemnist.micro.check import litert_raw_outputs
from edgemnist.micro.kernels import KERNEL_SETS
from edgemnist.micro.sources import RUNTIMES, runtime_of
from edgemnist.micro.sources import c_array as _c_array
from edgemnist.targets import MICRO_TARGETS, Target, as_micro_target, fit_problems, get_micro_target
from edgemnist.output import Output
from edgemnist.runtime.machine import usable_cores
from edgemnist.verify import check_firmware_folder

# The cores the firmware Makefile builds for (its CPU=); the Makefile picks each one's flags
# and usual QEMU board (its BOARD= picks another).
CPUS = ("cortex-m0", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m55")
ESTIMATE_MHZ = 80  # the clock of the "at 1 instruction per cycle" estimate


@dataclass(frozen=True)
class McuConfig:
    """Settings of `edgemnist mcu`."""

    cpu: str = "cortex-m4"  # one of CPUS
    kernels: str = "cmsis_nn"  # "reference" or "cmsis_nn": TFLite Micro's kernel set
    tflm: Optional[str] = None  # a create_tflm_tree.py tree, or a folder holding tree_<kernels>/ (default $EDGEMNIST_TFLM)
    timeout_s: Optional[float] = None  # QEMU wall-clock limit (None: QEMU_TIMEOUT of the folder's Makefile)
    jobs: int = max(1, usable_cores() or 1)  # parallel compiler processes
    build_dir: Optional[str] = None  # default: <folder>/build/<cpu>-<kernels>
    cache_dir: Optional[str] = None  # compiled TFLite Micro objects, shared by folders (default artifacts.cache_dir())
    board: Optional[str] = None  # the Makefile's BOARD (None: the core's usual board)
    # A micro target of `edgemnist targets` (a Target, or its name, looked up once here): its budget is
    # checked and reported
    target: Optional[Target] = None
    release: bool = True  # also build and run the release build
    # The runtime the folder must hold: "tflm" or "c" (None: whichever the folder's manifest records).
    # A C-runtime folder needs no TFLite Micro tree; tflm and kernels do not apply to it.
    runtime: Optional[str] = None

    def __post_init__(self):
        if self.runtime is not None and self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")
        if self.target is not None:
            target = as_micro_target(self.target)
            object.__setattr__(self, "target", target)
            if (self.cpu, self.kernels) != (target.cpu, target.kernels) or self.board is not None:
                raise ValueError(f"target {target.name} means cpu {target.cpu}, kernels {target.kernels} and its "
                                 f"boards; got cpu {self.cpu}, kernels {self.kernels}, board {self.board}")
        if self.cpu not in CPUS:
            raise ValueError(f"cpu must be one of {', '.join(CPUS)}, got {self.cpu!r}")
        if self.kernels not in KERNEL_SETS:
            raise ValueError(f"kernels must be one of {', '.join(KERNEL_SETS)}, got {self.kernels!r}")
        if self.timeout_s is not None and not 0 < float(self.timeout_s) <= 24 * 3600:
            raise ValueError(f"timeout_s must be in (0, 86400], got {self.timeout_s}")
        if int(self.jobs) < 1:
            raise ValueError(f"jobs must be >= 1, got {self.jobs}")


# --------------------------------------------------------------------------- inputs


def verify_folder(folder: Path) -> dict:
    """The folder's manifest, after `verify` checked every listed file against it.

    Raises:
        FileNotFoundError: not a firmware folder. ValueError: a file differs from the manifest, or
        the folder has no Cortex-M build.
    """
    manifest = check_firmware_folder(folder)
    if "Makefile" not in manifest.get("files", {}):
        raise ValueError(f"{folder}: written by an older edgemnist without the Cortex-M build; "
                         "regenerate it with `edgemnist firmware`")
    return manifest


def embedded_data(folder: Path, manifest: dict) -> tuple:
    """(model bytes, int8 digits (N, H, W, C), expected int8 scores (N, classes)) from the folder's sources."""
    stem = manifest["stem"]
    model = bytes(_c_array((folder / f"{stem}_model_data.cc").read_text(), f"g_{stem}_model_data"))
    if sha256_bytes(model) != manifest["model"]["sha256"]:
        raise ValueError(f"{folder}: the model array does not match the manifest's sha256")
    digits_cc = (folder / f"{stem}_test_digits.cc").read_text()
    n = int(manifest["test_digits"]["count"])
    shape = [n] + list(manifest["input"]["shape"][1:])
    digits = np.array(_c_array(digits_cc, f"g_{stem}_test_digits"), np.int8).reshape(shape)
    expected = np.array(_c_array(digits_cc, f"g_{stem}_expected_scores"), np.int8).reshape(n, -1)
    return model, digits, expected


# --------------------------------------------------------------------------- the command


def run_mcu(folder, config: McuConfig = McuConfig()) -> dict:
    """Builds, runs and checks a firmware folder on one core and kernel set.

    Returns:
        The report (see the README's `edgemnist mcu --json` contract); "ok" is True only when
        every digit's scores are bit-exact with the host.

    Raises:
        MissingToolError: toolchain, QEMU or TFLM tree missing. FileNotFoundError/ValueError: not
        a (trustworthy) firmware folder. FirmwareRunError: the build failed, or the firmware hung
        or faulted.
    """
    folder = Path(folder)
    manifest = verify_folder(folder)
    runtime = runtime_of(manifest)
    if config.runtime is not None and config.runtime != runtime:
        raise ValueError(f"{folder}: holds firmware for the {runtime} runtime, not {config.runtime}; write one with "
                         f"`edgemnist firmware MODEL --runtime {config.runtime} --out DIR`")
    is_c = runtime == "c"
    target = config.target
    if target is not None:
        # the C runtime's flash is its constants (no .tflite is embedded), its arena the static plan's
        flash_needed = int(manifest["flash_bytes"] if is_c else manifest["model"]["bytes"])
        problems = fit_problems(target, flash_needed, int(manifest["arena"]["stated"]))
        if problems:
            raise ValueError(f"{folder}: cannot fit {target.name}: {'; '.join(problems)}")
    tools = find_tools()
    if is_c:
        from edgemnist.micro import c_firmware

        # no TFLite Micro: "c" stands where the kernel set would, in build folders and the report
        tree, kernels = None, c_firmware.RUNTIME
        digits, expected = c_firmware.embedded_data(folder, manifest)
        model = None
    else:
        tree, kernels = resolve_tflm(config.tflm, config.kernels), config.kernels
        model, digits, expected = embedded_data(folder, manifest)
    check_board = config.board if target is None else (target.check_board or target.board)
    check_vars = {"BOARD": check_board} if check_board else {}
    if target is not None and check_board == target.board:  # the board's own RAM: the product's stack
        check_vars["STACK_SIZE"] = target.stack_bytes
    built = firmware_build.build(folder, tree, config.cpu, kernels, tools, jobs=config.jobs,
                                 build_dir=config.build_dir, cache_dir=config.cache_dir, make_vars=check_vars)
    sizes = elf.elf_sizes(built["elf"], manifest["stem"], tools)
    qemu_argv = qemu.command(folder, config.cpu, built["build_dir"], tools, config.timeout_s, check_board)
    ran = qemu.run_firmware(qemu_argv)
    (built["build_dir"] / "qemu.log").write_text(ran["output"], encoding="utf-8")
    parsed = qemu.parse_output(ran["output"])
    n = len(expected)
    if ran["returncode"] == 2 or parsed["result"] is None or len(parsed["digits"]) != n:
        raise FirmwareRunError(f"{built['elf']}: the firmware stopped before reporting all {n} digits "
                               f"(exit status {ran['returncode']}): {qemu.output_tail(ran['output'])}")
    scores = np.array([parsed["digits"][i]["scores"] for i in range(n)], np.int8)
    if is_c:  # the folder's expected scores are LiteRT's builtin kernels' (c_firmware.generate)
        litert = expected
    else:
        try:
            litert = litert_raw_outputs(model, digits).astype(np.int8)
        except MissingExtraError:  # no ai-edge-litert here: reported as not checked
            litert = None
    labels = manifest["test_digits"]["labels"]
    predicted = scores.argmax(axis=1)
    instructions = np.array([parsed["invokes"][i] for i in sorted(parsed["invokes"])], np.int64)
    per_inference = float(instructions.mean()) if len(instructions) else None
    per_op = [{"index": i, "op": v["op"], "instructions_per_inference": round(v["instructions"] / max(v["calls"], 1))}
              for i, v in sorted(parsed["ops"].items())]
    by_type = {}
    for row in per_op:
        entry = by_type.setdefault(row["op"], {"op": row["op"], "count": 0, "instructions_per_inference": 0})
        entry["count"] += 1
        entry["instructions_per_inference"] += row["instructions_per_inference"]
    per_op_type = sorted(by_type.values(), key=lambda r: -r["instructions_per_inference"])
    bit_exact_micro = bool(np.array_equal(scores, expected))
    report = {
        "folder": str(folder),
        "model": manifest["model"],
        "runtime": runtime,
        "cpu": config.cpu,
        "kernels": kernels,
        "board": qemu.board(qemu_argv),
        "tflm_tree": None if tree is None else str(tree),
        "digits": n,
        "correct": int(np.sum(predicted == np.array(labels))),
        "predictions": [int(v) for v in predicted],
        "bit_exact": {
            # what the folder's expected scores are: TFLite Micro's reference kernels on the host, or
            # for the C runtime LiteRT's builtin kernels (then tflite_micro_host is None: not compared)
            "expected": manifest.get("expected_scores"),
            "tflite_micro_host": None if is_c else bit_exact_micro,
            # LiteRT's builtin kernels are TFLite Micro's ancestors but not the same code: a
            # score may differ by a level (reported, not failed: the device must match the host
            # TFLite Micro it was generated and checked with).
            "litert_builtin": None if litert is None else {
                "bit_exact_fraction": float(np.mean(np.all(scores == litert, axis=1))),
                "max_abs_diff": int(np.abs(scores.astype(np.int32) - litert.astype(np.int32)).max()),
                "same_class_fraction": float(np.mean(scores.argmax(1) == litert.argmax(1)))},
            "digits_differing": int(np.sum(np.any(scores != expected, axis=1))),
            "max_abs_diff": int(np.abs(scores.astype(np.int32) - expected.astype(np.int32)).max()),
        },
        "firmware_mismatches": parsed["result"]["mismatches"],
        "memory": {**sizes, "arena_used_bytes": parsed["arena_used"]},
        "instructions": {
            "per_inference_mean": None if per_inference is None else round(per_inference),
            "per_inference_min": int(instructions.min()) if len(instructions) else None,
            "per_inference_max": int(instructions.max()) if len(instructions) else None,
            "calibration_instructions_per_tick": parsed["calibration"],
            "estimate_ms_at_80mhz": None if per_inference is None else round(per_inference / (ESTIMATE_MHZ * 1e3), 3),
            "per_op": per_op,
            "per_op_type": per_op_type,
        },
        "build_seconds": built["seconds"],
        "run_seconds": ran["seconds"],
        "qemu_command": ran["command"],
        "build_dir": str(built["build_dir"]),
    }
    report["ok"] = bool(bit_exact_micro and report["firmware_mismatches"] == 0 and ran["returncode"] == 0)
    if config.release:
        report["release"] = run_release(folder, manifest, tree, tools, config, target, kernels)
        report["ok"] = report["ok"] and report["release"]["ok"]
    report["target"] = None if target is None else target.to_json()
    return report


def run_release(folder: Path, manifest: dict, tree: Optional[Path], tools: dict, config: McuConfig, target=None,
                kernels: Optional[str] = None) -> dict:
    """Builds and runs the folder's release build; with a target, linked against its RAM budget and stack.
    `tree` is None and `kernels` "c" for a C-runtime folder (kernels None: config.kernels).

    Returns:
        {"flash_bytes", "flash_without_test_digits_bytes", "ram_bytes", "sections", "arena_bytes",
        "arena_used_bytes", "stack_bytes", "stack_used_bytes", "instructions_per_inference", "digits", "correct",
        "mismatches", "verdict", "ok", "budget" (None, or {"flash_bytes", "ram_bytes", "fits"}), "build_dir",
        "build_seconds", "run_seconds", "ram_used_bytes" (.data + .bss + heap + the stack's high-water mark: what
        the firmware held, where "ram_bytes" counts the whole stack region it was linked with)}.

    Raises:
        FirmwareRunError: the build failed (a firmware too big for the board or budget fails to link), or
        the firmware hung, faulted or printed no result line.
    """
    board = config.board if target is None else target.board
    make_vars = {"BOARD": board} if board else {}
    if target is not None:
        make_vars.update(RAM_SIZE=target.ram_bytes, STACK_SIZE=target.stack_bytes)
    build_dir = None if config.build_dir is None else f"{config.build_dir}-release"
    built = firmware_build.build(folder, tree, config.cpu, kernels or config.kernels, tools, jobs=config.jobs,
                                 build_dir=build_dir, cache_dir=config.cache_dir, build_type="release",
                                 make_vars=make_vars)
    sizes = elf.elf_sizes(built["elf"], manifest["stem"], tools)
    argv = qemu.command(folder, config.cpu, built["build_dir"], tools, config.timeout_s, board)
    ran = qemu.run_firmware(argv)
    (built["build_dir"] / "qemu.log").write_text(ran["output"], encoding="utf-8")
    line = qemu.parse_output(ran["output"])["release"]
    if line is None:
        raise FirmwareRunError(f"{built['elf']}: the release firmware printed no result line "
                               f"(exit status {ran['returncode']}): {qemu.output_tail(ran['output'])}")
    flash_net = sizes["flash_bytes"] - sizes["test_digit_bytes"]
    budget = None
    if target is not None:
        budget = {"flash_bytes": target.flash_bytes, "ram_bytes": target.ram_bytes,
                  "fits": bool(flash_net <= target.flash_bytes and sizes["ram_bytes"] <= target.ram_bytes)}
    return {
        "flash_bytes": sizes["flash_bytes"],
        "flash_without_test_digits_bytes": flash_net,
        "ram_bytes": sizes["ram_bytes"],
        "sections": sizes["sections"],
        "model_bytes": sizes["model_bytes"],
        "test_digit_bytes": sizes["test_digit_bytes"],
        "arena_bytes": sizes["arena_bytes"],
        "arena_used_bytes": line.get("arena_used"),
        "stack_bytes": sizes["stack_bytes"],
        "stack_used_bytes": line.get("stack_used"),
        "ram_used_bytes": None if line.get("stack_used") is None else
        sizes["ram_bytes"] - (sizes["stack_bytes"] or 0) + line["stack_used"],
        "instructions_per_inference": line.get("instructions"),
        "digits": line["digits"],
        "correct": line.get("correct"),
        "mismatches": line["mismatches"],
        "verdict": line["verdict"],
        "ok": bool(line["verdict"] == "PASS" and line["mismatches"] == 0 and ran["returncode"] == 0
                   and (budget is None or budget["fits"])),
        "budget": budget,
        "build_dir": str(built["build_dir"]),
        "build_seconds": built["seconds"],
        "run_seconds": ran["seconds"],
    }


def format_report(r: dict) -> str:
    """A human table of one `run_mcu` report."""
    mem, ins, be = r["memory"], r["instructions"], r["bit_exact"]
    lb = be["litert_builtin"]
    litert = ("not checked (no ai-edge-litert)" if lb is None else
              f"{lb['bit_exact_fraction']:.0%} of digits bit-exact, max {lb['max_abs_diff']} levels, "
              f"{lb['same_class_fraction']:.0%} same class")
    is_c = r.get("runtime") == "c"
    if is_c:  # the expected scores are LiteRT's builtin kernels' themselves
        runtime = "generated C (no TensorFlow Lite Micro)"
        exact = (f"vs LiteRT builtin {'yes' if r['ok'] else 'NO'} ({be['digits_differing']} digits differ, "
                 f"max {be['max_abs_diff']} levels)")
        flash = f"  flash:               {mem['flash_bytes']:,} bytes (test digits {mem['test_digit_bytes']:,})"
    else:
        runtime = f"TFLite Micro {r['kernels']} kernels"
        exact = (f"vs TFLite Micro host {'yes' if be['tflite_micro_host'] else 'NO'} "
                 f"({be['digits_differing']} digits differ, max {be['max_abs_diff']} levels); vs LiteRT builtin {litert}")
        flash = (f"  flash:               {mem['flash_bytes']:,} bytes (model {mem['model_bytes'] or 0:,}, "
                 f"test digits {mem['test_digit_bytes']:,})")
    lines = [
        f"{r['model']['name']} on {r['cpu']} ({r['board']}, QEMU), {runtime}",
        f"  digits right:        {r['correct']} / {r['digits']}",
        f"  bit-exact:           {exact}",
        flash,
        f"  RAM:                 {mem['ram_bytes']:,} bytes (arena {mem['arena_bytes'] or 0:,}, "
        f"{mem['arena_used_bytes'] or 0:,} used; stack {mem['stack_bytes'] or 0:,})",
    ]
    if ins["per_inference_mean"] is not None:
        lines.append(f"  instructions:        {ins['per_inference_mean']:,} per inference "
                     f"(min {ins['per_inference_min']:,}, max {ins['per_inference_max']:,}); "
                     f"estimate at 1 instruction/cycle, {ESTIMATE_MHZ} MHz: {ins['estimate_ms_at_80mhz']} ms")
        total = sum(o["instructions_per_inference"] for o in ins["per_op"]) or 1
        lines.append(f"  {'#':>3} {'op':<20}{'instructions':>14}{'share':>8}")
        for o in ins["per_op"]:
            lines.append(f"  {o['index']:>3} {o['op']:<20}{o['instructions_per_inference']:>14,}"
                         f"{o['instructions_per_inference'] / total:>8.1%}")
    lines.append(f"  build {r['build_seconds']} s, QEMU run {r['run_seconds']} s; build folder {r['build_dir']}")
    rel = r.get("release")
    if rel:
        budget = rel["budget"]
        flash_budget = f" (budget {budget['flash_bytes']:,})" if budget else ""
        ram_budget = f" (budget {budget['ram_bytes']:,})" if budget else ""
        lines += [
            "release build (no per-layer profile):" if is_c else
            "release build (no printf, no error strings, int8-only kernels, LTO):",
            f"  verdict:             {rel['verdict']} ({rel['mismatches']} of {rel['digits']} digits differ; "
            f"{rel['correct']} right)",
            f"  flash:               {rel['flash_without_test_digits_bytes']:,} bytes without the test digits"
            f"{flash_budget}; {rel['flash_bytes']:,} with them",
            f"  RAM:                 {rel['ram_bytes']:,} bytes{ram_budget}: arena {rel['arena_bytes'] or 0:,} "
            f"({rel['arena_used_bytes'] or 0:,} used), stack {rel['stack_bytes'] or 0:,} "
            f"({rel['stack_used_bytes'] or 0:,} used); .data + .bss + stack used: {rel['ram_used_bytes'] or 0:,}",
            f"  instructions:        {rel['instructions_per_inference'] or 0:,} per inference",
        ]
        if budget:
            lines.append(f"  fits {r['target']['name']}: {'yes' if budget['fits'] else 'NO'}")
    lines.append("OK: every int8 score is bit-exact with the host" if r["ok"] else
                 "FAILED: the firmware's scores differ from the host's, or the release build failed or does not fit")
    return "\n".join(lines)


def add_commands(subparsers) -> None:
    """Registers `edgemnist mcu`."""
    p = subparsers.add_parser(
        "mcu",
        help="build a firmware folder for Cortex-M, run it under QEMU, check it bit-exactly, measure it",
        description="Cross-compile a folder written by `edgemnist firmware` for a Cortex-M core with "
        "arm-none-eabi-gcc and TFLite Micro's reference or CMSIS-NN kernels (a folder of `edgemnist firmware "
        "--runtime c`: the generated C alone, no TFLite Micro), run it under qemu-system-arm, "
        "and report predictions, bit-exactness of every int8 score against the host, flash and RAM, and "
        "instructions per inference and per op. Exit status: 0 bit-exact, 1 mismatch, hang, fault or "
        "failed build, 2 missing toolchain, QEMU or TFLite Micro tree, or bad input.",
        epilog=f"Needs: {INSTALL_HINT}; a TFLite Micro tree ({TREE_HINT}).",
    )
    p.add_argument("folder", help="a firmware folder written by `edgemnist firmware`")
    p.add_argument("--tflm", default=None,
                   help=f"TFLite Micro tree (create_tflm_tree.py output), or a folder holding tree_reference/ and "
                   f"tree_cmsis_nn/ (default ${TFLM_ENV})")
    p.add_argument("--target", choices=list(MICRO_TARGETS), default=None,
                   help="a named target (edgemnist targets): picks core, boards and kernels, refuses a folder that "
                   "cannot fit, and reports the release build against the budget")
    p.add_argument("--cpu", choices=list(CPUS), default=None, help=f"core (default {McuConfig.cpu})")
    p.add_argument("--kernels", choices=list(KERNEL_SETS), default=None,
                   help=f"TFLite Micro kernel set (default {McuConfig.kernels})")
    p.add_argument("--board", default=None,
                   help="the Makefile's BOARD: memory map and QEMU machine (default: the core's usual board)")
    p.add_argument("--runtime", choices=list(RUNTIMES), default=None,
                   help="the runtime the folder must hold: tflm (TensorFlow Lite Micro) or c (the generated C of "
                   "`edgemnist firmware --runtime c`, built without a TFLite Micro tree; --tflm and --kernels do not "
                   "apply); default: whichever the folder's manifest records")
    p.add_argument("--no-release", action="store_true", help="only the checking build, not the release build")
    p.add_argument("--timeout", type=float, default=McuConfig.timeout_s,
                   help="seconds QEMU may run before the firmware counts as hung (default: QEMU_TIMEOUT in the "
                   "folder's Makefile)")
    p.add_argument("--jobs", type=int, default=McuConfig.jobs, help="parallel compiles (default: all cores)")
    p.add_argument("--build-dir", default=None, help="build folder (default <folder>/build/<cpu>-<kernels>)")
    p.set_defaults(func=_run_mcu)


def _run_mcu(args):
    target = get_micro_target(args.target) if args.target else None
    config = McuConfig(cpu=args.cpu or (target.cpu if target else McuConfig.cpu),
                       kernels=args.kernels or (target.kernels if target else McuConfig.kernels),
                       tflm=args.tflm, timeout_s=args.timeout, jobs=args.jobs, build_dir=args.build_dir,
                       board=args.board, target=target, release=not args.no_release, runtime=args.runtime)
    what = "the generated C" if args.runtime == "c" else f"{config.kernels} kernels"
    print(f"building {args.folder} for {config.cpu} with {what}, then running it under QEMU ...", file=sys.stderr)
    try:
        report = run_mcu(args.folder, config)
    except FirmwareRunError as exc:  # a failed check, as a mismatch is: a result with status 1
        failed = {"folder": str(args.folder), "cpu": config.cpu, "kernels": config.kernels, "ok": False,
                  "error": str(exc), "runtime": args.runtime}
        return Output(failed, f"FAILED: {exc}", status=1)
    return Output(report, format_report(report), status=0 if report["ok"] else 1)
