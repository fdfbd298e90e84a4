"""TensorFlow Lite Micro against the project's generated C on the same .tflite, the same Cortex-M core and QEMU board.

Usage: python benchmarks/bench_runtimes.py stm32vldiscovery=runs/stm32 [microbit=runs/stm32]
           [cortex-m4=runs/default/tflite/model_int8_per_tensor.tflite] [--tflm-kernels reference,cmsis_nn]
           [--digits-per-class 2] [--work-dir runs/bench-runtimes] [--results-dir benchmarks/results]

Each argument is TARGET=PATH: a micro target of `edgemnist targets` and either a run folder of
`edgemnist pipeline --target ... --out RUN` (its firmware model, tflite/model_int8_per_tensor.tflite)
or a .tflite. For each one, the model goes into two firmware folders with the same real test
digits: `edgemnist firmware --target TARGET` (TFLite Micro; the run's own folder when it was made
for this target from this model) and `edgemnist firmware --runtime c --target TARGET` (the
generated C). Both are built and run by `edgemnist mcu --target TARGET`: the checking build on the
target's checking board, the release build linked against the board's real memory map and run on
QEMU's model of it. TFLite Micro runs with the target's kernel set and, for every other set named
by --tflm-kernels, as a release build on the same board (no checking build: the table's numbers
are the release build's).

Per runtime, from the release build: bit-exact (PASS: every score equals the folder's expected
one; TFLite Micro's are its reference kernels' on the host, the C runtime's LiteRT's builtin
kernels'), flash without the test digits, RAM = .data + .bss + the stack's high-water mark
(what the firmware held; the RAM it was linked with, its whole stack region included, is
reported too), instructions per inference (QEMU -icount, not cycles), and the C runtime's ratio
to each TFLite Micro kernel set. The issue's goals for the C runtime: RAM and flash at most half
of TFLite Micro's (its target kernel set, as deployed), and on the Cortex-M0 and M3 no more
instructions than TFLite Micro's reference kernels; on a core where CMSIS-NN has DSP or Helium
paths it may stay faster, and the table says by how much.

Prints a table and writes one JSON file per target under --results-dir:
runtimes_<target>_<model label>[_<settings>].json, the settings part naming every option that
differs from its default, so no other settings overwrite it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_DIGITS_PER_CLASS = 2  # edgemnist firmware's default: the pipeline's folders are comparable
DEFAULT_TFLM_KERNELS = "reference,cmsis_nn"
RUN_MODEL = "model_int8_per_tensor.tflite"  # the pipeline's firmware model in RUN/tflite/
# The goals for the generated C (the issue): ratios to TFLite Micro as the target deploys it.
RAM_GOAL = 0.5
FLASH_GOAL = 0.5
INSTRUCTIONS_GOAL_CPUS = ("cortex-m0", "cortex-m3")  # no DSP extension: CMSIS-NN has no fast path to beat
# What makes one runtime's row an error instead of ending the benchmark: a model that cannot fit
# or that a runtime does not cover (ValueError), a missing tool or tree (OSError), a failed build,
# hang or fault, or a missing optional package (RuntimeError).
ROW_ERRORS = (ValueError, OSError, RuntimeError)


def model_and_label(path: Path) -> tuple:
    """(the .tflite, a label for file names, the run folder or None) of a TARGET=PATH argument."""
    if path.is_dir():
        model = path / "tflite" / RUN_MODEL
        if not model.is_file():
            raise FileNotFoundError(f"{model}: not found; {path} is not a finished `edgemnist pipeline` run")
        return model, path.resolve().name, path
    if path.suffix != ".tflite" or not path.is_file():
        raise FileNotFoundError(f"{path}: neither a run folder nor a .tflite file")
    parent = path.resolve().parent
    label = f"{parent.parent.name}-{path.stem}" if parent.name == "tflite" else path.stem
    return path, label, None


def results_name(target: str, label: str, digits_per_class: int, tflm_kernels: str) -> str:
    """runtimes_<target>_<label>[_<settings>].json: every option off its default is in the name."""
    settings = []
    if digits_per_class != DEFAULT_DIGITS_PER_CLASS:
        settings.append(f"dpc{digits_per_class}")
    if tflm_kernels != DEFAULT_TFLM_KERNELS:
        settings.append("tflm-" + "-".join(tflm_kernels.split(",")))
    return "_".join(["runtimes", target, label] + settings) + ".json"


def tflm_folder(model: Path, run, target, work: Path, digits_per_class: int, tflm) -> Path:
    """The run's own TFLite Micro folder when it was written for this target from this model with these
    digits; else one written here."""
    from edgemnist.artifacts import sha256_file
    from edgemnist.micro import firmware

    if run is not None and (run / "firmware" / firmware.MANIFEST_NAME).is_file():
        manifest = json.loads((run / "firmware" / firmware.MANIFEST_NAME).read_text())
        state = json.loads((run / "pipeline.json").read_text()) if (run / "pipeline.json").is_file() else {}
        if (state.get("result", {}).get("target") == target.name and firmware.runtime_of(manifest) == "tflm"
                and manifest["model"]["sha256"] == sha256_file(model)
                and manifest["test_digits"]["count"] == 10 * digits_per_class):
            return run / "firmware"
    folder = work / "firmware-tflm"
    firmware.generate(model, folder, firmware.FirmwareConfig(name="mnist", target=target, tflm=tflm,
                                                             digits_per_class=digits_per_class))
    return folder


def row_from_release(runtime: str, kernels: str, rel: dict, checked=None) -> dict:
    """A table row from a release report of `edgemnist mcu` (and the checking build's report, if run)."""
    row = {"runtime": runtime, "kernels": kernels, "verdict": rel["verdict"],
           "bit_exact": bool(rel["verdict"] == "PASS" and rel["mismatches"] == 0),
           "correct": rel["correct"], "digits": rel["digits"],
           "flash_bytes": rel["flash_without_test_digits_bytes"], "flash_with_test_digits_bytes": rel["flash_bytes"],
           "ram_bytes": rel["ram_used_bytes"], "ram_linked_bytes": rel["ram_bytes"], "sections": rel["sections"],
           "arena_bytes": rel["arena_bytes"], "arena_used_bytes": rel["arena_used_bytes"],
           "stack_bytes": rel["stack_bytes"], "stack_used_bytes": rel["stack_used_bytes"],
           "instructions_per_inference": rel["instructions_per_inference"],
           "fits": None if rel["budget"] is None else rel["budget"]["fits"], "build_dir": rel["build_dir"]}
    if checked is not None:
        row["checking_build"] = {"ok": checked["ok"], "board": checked["board"],
                                 "instructions_per_inference": checked["instructions"]["per_inference_mean"],
                                 "per_op": checked["instructions"]["per_op"],
                                 "litert_builtin": checked["bit_exact"]["litert_builtin"]}
    return row


def run_target(name: str, path: Path, args) -> dict:
    """Both runtimes on one target: {"target", "model", "rows", "ratios", "goals", ...}."""
    from edgemnist.artifacts import sha256_file
    from edgemnist.micro import firmware, mcu
    from edgemnist.targets import get_micro_target

    target = get_micro_target(name)
    model, label, run = model_and_label(path)
    work = Path(args.work_dir) / f"{name}_{label}"
    result = {"target": target.to_json(), "model": {"path": str(model), "sha256": sha256_file(model),
                                                     "bytes": model.stat().st_size}, "label": label, "rows": []}
    rows = result["rows"]
    print(f"{name}: the generated C ...", file=sys.stderr, flush=True)
    try:
        c_folder = work / "firmware-c"
        firmware.generate(model, c_folder, firmware.FirmwareConfig(runtime="c", name="mnist", target=target,
                                                                   digits_per_class=args.digits_per_class))
        report = mcu.run_mcu(c_folder, mcu.McuConfig(cpu=target.cpu, kernels=target.kernels, target=target, runtime="c",
                                                     timeout_s=args.timeout, build_dir=str(work / "build" / "c")))
        rows.append(row_from_release("c", "c", report["release"], report))
        result["codegen"] = {k: v for k, v in json.loads((c_folder / firmware.MANIFEST_NAME).read_text())[
            "codegen"].items() if k != "layers"}
    except ROW_ERRORS as exc:
        rows.append({"runtime": "c", "kernels": "c", "error": str(exc)})
    print(f"{name}: TensorFlow Lite Micro ...", file=sys.stderr, flush=True)
    kernel_sets = [target.kernels] + [k for k in args.tflm_kernels.split(",") if k and k != target.kernels]
    try:
        folder = tflm_folder(model, run, target, work, args.digits_per_class, args.tflm)
    except ROW_ERRORS as exc:
        rows += [{"runtime": "tflm", "kernels": k, "error": str(exc)} for k in kernel_sets]
        folder = None
    if folder is not None:
        result["tflm_folder"] = str(folder)
        for kernels in kernel_sets:
            print(f"{name}: TensorFlow Lite Micro, {kernels} kernels ...", file=sys.stderr, flush=True)
            build_dir = work / "build" / f"tflm-{kernels}"
            try:
                if kernels == target.kernels:  # as deployed: `edgemnist mcu --target`, both builds
                    report = mcu.run_mcu(folder, mcu.McuConfig(cpu=target.cpu, kernels=kernels, target=target,
                                                               tflm=args.tflm, timeout_s=args.timeout,
                                                               build_dir=str(build_dir)))
                    rows.append(row_from_release("tflm", kernels, report["release"], report))
                else:  # another kernel set: its release build, on the target's board and budget
                    manifest = mcu.verify_folder(folder)
                    config = mcu.McuConfig(cpu=target.cpu, kernels=kernels, tflm=args.tflm, timeout_s=args.timeout,
                                           build_dir=str(build_dir))
                    rel = mcu.run_release(folder, manifest, mcu.resolve_tflm(args.tflm, kernels), mcu.find_tools(),
                                          config, target)
                    rows.append(row_from_release("tflm", kernels, rel))
            except ROW_ERRORS as exc:
                rows.append({"runtime": "tflm", "kernels": kernels, "error": str(exc)})
    result["ratios"], result["goals"] = ratios_and_goals(rows, target)
    return result


def _ratio(a, b):
    return None if a is None or not b else round(a / b, 4)


def ratios_and_goals(rows: list, target) -> tuple:
    """The C runtime's flash, RAM and instructions over each TFLite Micro kernel set's, and the goals."""
    c = next((r for r in rows if r["runtime"] == "c" and "error" not in r), None)
    tflm = {r["kernels"]: r for r in rows if r["runtime"] == "tflm" and "error" not in r}
    if c is None:
        return {}, {}
    ratios = {k: {m: _ratio(c[m], r[m]) for m in ("flash_bytes", "ram_bytes", "instructions_per_inference")}
              for k, r in tflm.items()}
    goals = {}
    deployed = ratios.get(target.kernels)
    if deployed is not None:
        goals["ram_at_most_half"] = {"ratio": deployed["ram_bytes"], "goal": RAM_GOAL,
                                     "met": deployed["ram_bytes"] <= RAM_GOAL, "versus": f"tflm {target.kernels}"}
        goals["flash_at_most_half"] = {"ratio": deployed["flash_bytes"], "goal": FLASH_GOAL,
                                       "met": deployed["flash_bytes"] <= FLASH_GOAL, "versus": f"tflm {target.kernels}"}
    if target.cpu in INSTRUCTIONS_GOAL_CPUS and "reference" in ratios:
        ratio = ratios["reference"]["instructions_per_inference"]
        goals["instructions_no_worse_than_reference"] = {"ratio": ratio, "goal": 1.0, "met": ratio <= 1.0,
                                                         "versus": "tflm reference"}
    elif "cmsis_nn" in ratios:  # where CMSIS-NN may stay faster: by how much (reported, no goal)
        goals["instructions_versus_cmsis_nn"] = {"ratio": ratios["cmsis_nn"]["instructions_per_inference"],
                                                 "goal": None, "met": None, "versus": "tflm cmsis_nn"}
    goals["bit_exact"] = {"met": bool(c["bit_exact"] and all(r["bit_exact"] for r in tflm.values()))}
    return ratios, goals


def format_table(result: dict) -> str:
    t = result["target"]
    lines = [f"{t['name']} ({t['cpu']}, QEMU {t['qemu_machine']}; budget {t['flash_bytes']:,} B flash, "
             f"{t['ram_bytes']:,} B RAM), {result['label']}:",
             f"  {'runtime':<20}{'exact':>7}{'flash':>10}{'RAM used':>10}{'linked':>9}{'arena':>8}{'stack':>7}"
             f"{'instr/inf':>13}  fits"]
    for r in result["rows"]:
        name = "generated C" if r["runtime"] == "c" else f"TFLM {r['kernels']}"
        if "error" in r:
            lines.append(f"  {name:<20}  {r['error'][:200]}")
            continue
        lines.append(f"  {name:<20}{'yes' if r['bit_exact'] else 'NO':>7}{r['flash_bytes']:>10,}{r['ram_bytes']:>10,}"
                     f"{r['ram_linked_bytes']:>9,}{r['arena_bytes'] or 0:>8,}{r['stack_used_bytes']:>7,}"
                     f"{r['instructions_per_inference']:>13,}  {'yes' if r['fits'] else 'NO'}")
    for kernels, ratio in result["ratios"].items():
        lines.append(f"  C / TFLM {kernels:<10} flash {ratio['flash_bytes']:.2f}, RAM {ratio['ram_bytes']:.2f}, "
                     f"instructions {ratio['instructions_per_inference']:.2f}")
    for name, goal in result["goals"].items():
        if "ratio" in goal:
            verdict = "reported" if goal["met"] is None else ("met" if goal["met"] else "MISSED")
            lines.append(f"  {name}: {goal['ratio']:.2f} vs {goal['versus']} ({verdict})")
        else:
            lines.append(f"  {name}: {'met' if goal['met'] else 'MISSED'}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("items", nargs="+", metavar="TARGET=PATH",
                        help="a micro target and a pipeline run folder or a .tflite (repeatable)")
    parser.add_argument("--tflm", default=None, help="folder holding tree_reference/ and tree_cmsis_nn/ "
                        "(create_tflm_tree.py outputs; default $EDGEMNIST_TFLM)")
    parser.add_argument("--tflm-kernels", default=DEFAULT_TFLM_KERNELS,
                        help="TFLite Micro kernel sets to run besides the target's own (default %(default)s)")
    parser.add_argument("--digits-per-class", type=int, default=DEFAULT_DIGITS_PER_CLASS,
                        help="embedded test digits per class (default %(default)s)")
    parser.add_argument("--work-dir", default="runs/bench-runtimes", help="firmware folders and builds (default %(default)s)")
    parser.add_argument("--results-dir", default="benchmarks/results", help="where the JSON files go (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=1800, help="QEMU seconds per run (default %(default)s)")
    args = parser.parse_args(argv)

    from edgemnist.artifacts import atomic_write_json
    from edgemnist.targets import get_micro_target
    from edgemnist.runtime.machine import machine_info

    items = []
    for item in args.items:
        name, sep, path = item.partition("=")
        if not sep or not path:
            print(f"{item!r}: expected TARGET=PATH (a run folder or a .tflite)", file=sys.stderr)
            return 2
        try:
            get_micro_target(name)
            model_and_label(Path(path))
        except (ValueError, FileNotFoundError) as exc:
            print(f"{item}: {exc}", file=sys.stderr)
            return 2
        items.append((name, Path(path)))
    status = 0
    for name, path in items:
        result = run_target(name, path, args)
        result.update(digits_per_class=args.digits_per_class, tflm_kernels=args.tflm_kernels, machine=machine_info(),
                      command="python benchmarks/bench_runtimes.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                      note="instruction counts under qemu-system-arm -icount shift=0, not cycles; RAM = .data + .bss + "
                           "the release build's stack high-water mark; flash without the test digits")
        print(format_table(result))
        out = Path(args.results_dir) / results_name(name, result["label"], args.digits_per_class, args.tflm_kernels)
        atomic_write_json(out, result)
        print(f"wrote {out}")
        # a runtime that cannot fit the target is a result; a failed build, a mismatch or no C row is not
        c_row = next(r for r in result["rows"] if r["runtime"] == "c")
        if "error" in c_row or not all(r["bit_exact"] for r in result["rows"] if "error" not in r):
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
