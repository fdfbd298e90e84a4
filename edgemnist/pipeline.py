"""The whole job in one command: train -> optimize -> export every variant -> compare -> firmware.

Usage: edgemnist pipeline --out runs/default        (edgemnist pipeline --out runs/quick --quick)
       edgemnist pipeline --target cortex-m4 --out runs/cortex-m4   (edgemnist targets lists the targets)

Each stage writes into its own sub-folder of --out:

  train/       model.keras, train_log.csv, summary.json        (edgemnist train)
  optimize/    pruned.keras, qat.h5, pruned_qat.h5, optimize.json (edgemnist optimize)
  tflite/      model_<variant>.tflite + .json manifests         (edgemnist export)
  report/      report.md, report.json, PNG plots                (edgemnist compare)
  firmware/    TFLite Micro C sources of the per-tensor int8 model (edgemnist firmware)
  mcu/         mcu.json: the firmware built and run under QEMU for the board (--target only)
  c/           generated C of the int8 model, with its memory plan (edgemnist codegen; C-runtime targets)
  avr/         avr.json: the Uno firmware built and run under simavr and QEMU (--target uno)
  pipeline.json  what each stage did, its fingerprint and its outputs' sha256

With `--target NAME` of a microcontroller (`edgemnist targets`) the model is the target's
preset, there is no optimize stage (the firmware embeds the post-training int8 model), export
writes float32 and int8_per_tensor only, the firmware is refused if it cannot fit the target,
and a last stage builds and runs it with `edgemnist mcu --target NAME` (skipped, with the reason,
where the Arm toolchain, QEMU or a TFLite Micro tree is missing).

A rerun skips every stage whose fingerprint (its settings plus the sha256 of its inputs)
is unchanged and whose outputs are intact; a killed run picks up where it stopped (the
train stage resumes from its last completed epoch).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Callable, Optional

from edgemnist.artifacts import PIPELINE_STAGE_FOLDERS, PIPELINE_STATE_FILE, atomic_write_json, sha256_file
from edgemnist.output import Output
from edgemnist.runtime.accelerator import ACCELERATORS, RuntimeSettings

try:  # the export table owns the quantizer names; a device install (bench --remote) has no export/
    from edgemnist.export.convert import QUANTIZERS
except ModuleNotFoundError:
    QUANTIZERS = ()
QUANTIZER_CHOICES = QUANTIZERS + ("all",)

STATE_FILE = PIPELINE_STATE_FILE
STAGES = ("train", "optimize", "export", "compare", "firmware")
MICRO_STAGES = ("train", "export", "compare", "firmware", "mcu")  # with --target of a microcontroller
C_STAGES = ("train", "export", "compare", "codegen", "avr")  # with --target of a generated-C target (uno)
MICRO_VARIANTS = ("float32", "int8_per_tensor")  # what a microcontroller target exports (and compares)
STAGE_FOLDERS = PIPELINE_STAGE_FOLDERS


@dataclass(frozen=True)
class PipelineConfig:
    """Settings of a pipeline run; `quick` shrinks every stage to a smoke run of a few minutes."""

    quick: bool = False  # data subset and one epoch per stage (CI smoke run)
    epochs: Optional[int] = None  # training epochs (None: edgemnist train's default; 1 with --quick)
    patience: Optional[int] = None  # early-stopping patience in epochs (None: edgemnist train's default)
    data_dir: Optional[str] = None  # None: $EDGEMNIST_DATA or the shipped MNIST
    seed: int = 0
    quantizer: str = "all"  # export variants of "tflite", "ai-edge" or "all" quantizers
    firmware: bool = True  # generate TFLite Micro assets of the int8 model (int8_per_tensor: smallest flash)
    # compare's RuntimeSettings (made in _compare), kept flat: they are the run's flags and its recorded settings
    threads: int = RuntimeSettings.threads  # interpreter threads when comparing
    accelerator: str = RuntimeSettings.accelerator  # "gpu": compare also runs every variant on LiteRT's GPU accelerator
    target: str = "default"  # a target of `edgemnist targets`: its model preset, firmware and mcu check
    # What runs the model on a microcontroller target: None (the target's own), "tflm" or "c" (the
    # generated C, with the target's C-runtime preset where it has one).
    runtime: Optional[str] = None

    def __post_init__(self):
        from edgemnist.targets import RUNTIMES, get_target

        target = get_target(self.target)  # ValueError naming the targets
        if self.runtime is not None:
            if self.runtime not in RUNTIMES:
                raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")
            if not target.is_micro:
                raise ValueError(f"--runtime applies to a microcontroller target; {self.target!r} is not one")
            if target.runtime == "c" and self.runtime != "c":
                raise ValueError(f"target {self.target!r} runs generated C only (TensorFlow Lite Micro does not run there)")
        for name in ("epochs", "patience"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.quantizer not in QUANTIZER_CHOICES:
            raise ValueError(f"quantizer must be one of {', '.join(QUANTIZER_CHOICES)}, got {self.quantizer!r}")
        RuntimeSettings(threads=self.threads, accelerator=self.accelerator)  # compare's checks, its messages


# Quick mode: enough data and steps that BatchNorm statistics settle, still a few minutes here.
_QUICK_TRAIN_IMAGES = 4000
_QUICK_TEST_IMAGES = 1000


def _settings(config, *left_out: str) -> dict:
    """A stage config's fingerprinted settings: its fields but `left_out` (where things are, not what is
    made), a target by its name and a RuntimeSettings spread into the top level: the dict the config gave
    when it held the target's name and accelerator, gpu_precision, threads and backend itself, so a stage
    fingerprinted then still matches (and skips)."""
    from edgemnist.targets import Target

    settings = {}
    for f in fields(config):
        if f.name in left_out:
            continue
        value = getattr(config, f.name)
        if isinstance(value, RuntimeSettings):
            settings.update(asdict(value))
        else:
            settings[f.name] = value.name if isinstance(value, Target) else value
    return settings


def _fingerprint(settings: dict, inputs: list) -> str:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for path in sorted(str(p) for p in inputs):  # order-free: records come back from JSON key-sorted
        digest.update(f"{path}={sha256_file(path)}".encode())
    return digest.hexdigest()


class _Stages:
    """Runs stages, skipping those whose fingerprint and outputs are unchanged since the last run."""

    def __init__(self, out: Path, log: Callable[[str], None], stages: tuple = STAGES):
        self.out, self.log, self.stages = out, log, stages
        self.started = time.monotonic()
        self.path = out / STATE_FILE
        try:
            self.state = json.loads(self.path.read_text()) if self.path.is_file() else {}
        except ValueError:
            self.state = {}  # a damaged record only costs re-running stages
        self.state.setdefault("stages", {})

    def _intact(self, record: dict) -> bool:
        return all(Path(p).is_file() and sha256_file(p) == digest for p, digest in record["outputs"].items())

    def _where(self, name: str) -> str:
        """`stage 3 of 5, 47 s into the pipeline`."""
        return (f"stage {self.stages.index(name) + 1} of {len(self.stages)}, "
                f"{time.monotonic() - self.started:.0f} s into the pipeline")

    def progress(self, name: str) -> Callable[[str], None]:
        """A line printer for the stage's own progress (export: each variant as it is written)."""
        return lambda line: self.log(f"[{name}] {line.strip()}")

    def run(self, name: str, settings: dict, inputs: list, work: Callable[[], tuple]) -> dict:
        """`work()` returns (result dict, list of output files); both are recorded.

        Native output of the libraries the stage calls goes to logs/<name>.log in the run folder.
        """
        from edgemnist import console

        fingerprint = _fingerprint(settings, inputs)
        record = self.state["stages"].get(name)
        if record and record["fingerprint"] == fingerprint and self._intact(record):
            self.log(f"[{name}] unchanged since the last run, skipped ({self._where(name)})")
            return record["result"]
        self.log(f"[{name}] running ({self._where(name)})")
        started = time.monotonic()
        with console.native_output_to(self.out / "logs" / f"{name}.log"):
            result, outputs = work()
        self.state["stages"][name] = {
            "fingerprint": fingerprint,
            "seconds": round(time.monotonic() - started, 1),
            "result": result,
            "outputs": {str(p): sha256_file(p) for p in outputs},
        }
        atomic_write_json(self.path, self.state)  # the stage is committed only now
        self.log(f"[{name}] done in {self.state['stages'][name]['seconds']:.0f} s ({self._where(name)})")
        return result


@dataclass(frozen=True)
class _Run:
    """What every stage of one run reads, resolved once: the run folder, the settings, the target
    (looked up once, here), the runtime on it, and the stage bookkeeping."""

    out: Path
    config: PipelineConfig
    target: object  # edgemnist.targets.Target
    runtime: str  # what runs the model on the target: the setting, else the target's own
    stages: _Stages

    @property
    def train_limit(self) -> Optional[int]:
        return _QUICK_TRAIN_IMAGES if self.config.quick else None

    @property
    def test_limit(self) -> Optional[int]:
        return _QUICK_TEST_IMAGES if self.config.quick else None

    @property
    def verbose(self) -> int:
        return 0 if self.config.quick else 2

    def folder(self, stage: str) -> Path:
        return self.out / STAGE_FOLDERS[stage]


def run_pipeline(out: str | os.PathLike, config: PipelineConfig = PipelineConfig(),
                 log: Callable[[str], None] = lambda line: print(line, file=sys.stderr)) -> dict:
    """Runs (or resumes) the whole pipeline in `out` and returns pipeline.json's content."""
    from edgemnist.targets import get_target

    target = get_target(config.target)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runtime = config.runtime or target.runtime
    c_runtime = target.is_micro and runtime == "c"
    stage_names = C_STAGES if c_runtime else MICRO_STAGES if target.is_micro else STAGES
    device_stage = "codegen" if c_runtime else "firmware"  # the first stage --no-firmware leaves out
    run = _Run(out, config, target, runtime,
               _Stages(out, log, stage_names if config.firmware else stage_names[:stage_names.index(device_stage)]))

    summary, model_path = _train(run)
    optimized = {"models": {}} if target.is_micro else _optimize(run, model_path)  # micro: nothing to prune
    sources = {"model": str(model_path), **{name: info["path"] for name, info in optimized["models"].items()}}
    exported = _export(run, sources)
    tflite_paths = [Path(m["path"]) for m in exported["variants"].values()]
    compared = _compare(run, model_path, tflite_paths)
    # The microcontroller gets the per-tensor int8 model: per-channel quantization parameters
    # (24 bytes per channel) make the file about half again as large (bench_firmware.py measures both).
    int8_path = next((Path(exported["variants"][v]["path"]) for v in ("int8_per_tensor", "int8")
                      if v in exported["variants"]), None)
    device = firmware_result = mcu_result = None
    if config.firmware and int8_path is not None:
        if c_runtime:
            device = _c_runtime_stages(run, int8_path)
        else:
            firmware_result = _firmware(run, int8_path)
            if target.is_micro and firmware_result is not None:  # built for the board and run under QEMU
                mcu_result = _mcu_stage(run)

    result = {
        "out": str(out),
        "quick": config.quick,
        "train": summary,
        "optimize": {name: {"accuracy": m["accuracy"], "path": m["path"]} for name, m in optimized["models"].items()},
        "report": str(run.folder("compare") / "report.md"),
        "variants": compared["variants"],
        **({"accelerators": compared["accelerators"]} if compared.get("accelerators") else {}),
        "firmware": None if firmware_result is None else {
            "out": str(run.folder("firmware")), "flash_bytes": firmware_result.get("flash_bytes"),
            "arena": firmware_result.get("arena")},
    }
    if target.is_micro:
        result["target"] = target.name
        result["runtime"] = target.runtime
        if c_runtime:
            result.update(device or {"codegen": None, "avr": None})
        else:
            result["mcu"] = mcu_result
    run.stages.state["result"] = result
    atomic_write_json(run.stages.path, run.stages.state)
    return result


def _train(run: _Run) -> tuple:
    """The train stage: (train's summary, the trained model's path)."""
    from edgemnist.training import train
    from edgemnist.training.model import ModelConfig

    config = run.config
    train_config = train.TrainConfig(seed=config.seed, data_dir=config.data_dir, limit=run.train_limit)
    if config.quick:
        train_config = replace(train_config, epochs=config.epochs or 1, warmup_epochs=0, batch_size=32, augment=False)
    elif config.epochs:
        train_config = replace(train_config, epochs=config.epochs)
    if config.patience is not None:
        train_config = replace(train_config, patience=config.patience)
    if run.target.is_micro:
        train_config = replace(train_config, model_config=ModelConfig(**run.target.preset_for(run.runtime)))
    folder = run.folder("train")
    model_path = folder / "model.keras"

    def work():
        summary = train.train(train_config, folder, verbose=run.verbose)
        return summary, [model_path, folder / "summary.json"]

    settings = {"config": train_config.identity(), "epochs": train_config.epochs}
    if config.patience is not None:  # recorded only when given: runs made before --patience existed still match
        settings["patience"] = train_config.patience
    summary = run.stages.run("train", settings, [], work)
    return summary, model_path


def _optimize(run: _Run, model_path: Path) -> dict:
    """The optimize stage (pruning, QAT, pruning-preserving QAT): optimize's result, {"models": {name: {"path", ...}}}."""
    from edgemnist.training import optimize

    config = run.config
    prune_config, qat_config = optimize.PruneConfig(seed=config.seed), optimize.QATConfig(seed=config.seed)
    if config.quick:
        prune_config = replace(prune_config, epochs=1, batch_size=32)
        qat_config = replace(qat_config, epochs=1, batch_size=32)
    folder = run.folder("optimize")

    def work():
        result = optimize.optimize(model_path, folder,
                                   optimize.OptimizeConfig(prune_config=prune_config, qat_config=qat_config,
                                                           data_dir=config.data_dir, limit=run.train_limit,
                                                           test_limit=run.test_limit),
                                   verbose=run.verbose)
        return result, [Path(m["path"]) for m in result["models"].values()] + [folder / "optimize.json"]

    settings = {"prune": asdict(prune_config), "qat": asdict(qat_config), "limit": run.train_limit,
                "test_limit": run.test_limit}
    return run.stages.run("optimize", settings, [model_path], work)


def _export(run: _Run, sources: dict) -> dict:
    """The export stage, every variant of every source model: export's result, {"variants": {name: {"path", ...}}}."""
    from edgemnist.export import convert

    config = run.config
    export_config = convert.ExportConfig(data_dir=config.data_dir, representative_seed=config.seed)
    variants = list(MICRO_VARIANTS) if run.target.is_micro else None

    def work():
        result = convert.export_all(sources, run.folder("export"), variants=variants, config=export_config,
                                    quantizer=config.quantizer, progress=run.stages.progress("export"))
        files = [Path(m["path"]) for m in result["variants"].values()]
        return result, files + [Path(m["manifest_path"]) for m in result["variants"].values()]

    settings = {"config": asdict(export_config), "quantizer": config.quantizer}
    if variants:
        settings["variants"] = variants
    return run.stages.run("export", settings, [Path(p) for p in sources.values()], work)


def _compare(run: _Run, model_path: Path, tflite_paths: list) -> dict:
    """The compare stage: every exported variant (and the Keras model) side by side; compare's result."""
    from edgemnist.measure import compare as report

    config = run.config
    runtime = RuntimeSettings(threads=config.threads, accelerator=config.accelerator)
    compare_config = report.CompareConfig(limit=run.test_limit, data_dir=config.data_dir, keras=str(model_path),
                                          runs=200 if config.quick else 1000, runtime=runtime)
    settings = _settings(compare_config)
    if config.accelerator == "cpu":  # the fingerprint runs made before the GPU settings existed have: they still skip
        settings = {k: v for k, v in settings.items() if k not in ("accelerator", "gpu_precision")}
    folder = run.folder("compare")

    def work():
        result = report.compare(tflite_paths, folder, compare_config)
        return result, [folder / "report.json", folder / "report.md"]

    return run.stages.run("compare", settings, tflite_paths, work)


def _firmware(run: _Run, int8_path: Path) -> Optional[dict]:
    """The firmware stage (TFLite Micro sources of the int8 model): firmware's result, or None where a target
    whose arena is measured on its core lacks the tools (`_firmware_stage`)."""
    from edgemnist.micro import firmware

    target, config = run.target, run.config
    fw_config = firmware.FirmwareConfig(name="mnist", data_dir=config.data_dir,
                                        target=target if target.is_micro else None,
                                        regenerate_command=f"edgemnist pipeline --out {run.out}"
                                        + (" --quick" if config.quick else "")
                                        + (f" --target {target.name}" if target.is_micro else "")
                                        + (" --runtime c" if run.runtime == "c" else ""),
                                        **({"runtime": "c"} if run.runtime == "c" else {}))
    folder = run.folder("firmware")

    def work():
        result = firmware.generate(int8_path, folder, fw_config)
        return result, [folder / "firmware_manifest.json"]

    settings = _settings(fw_config, "tflm")
    return _firmware_stage(run, settings, int8_path, work)


def _c_runtime_stages(run: _Run, int8_path: Path) -> dict:
    """codegen (the int8 model as generated C, with its memory plan) and, for the Uno, avr: the
    firmware built and run under simavr and QEMU. Returns {"codegen": summary, "avr": summary}."""
    from edgemnist.micro import codegen

    folder = run.folder("codegen")
    config = codegen.CodegenConfig(name="mnist")

    def do_codegen():
        report = codegen.write(int8_path, folder, config)
        summary = {key: report[key] for key in ("arena_bytes", "scratch_bytes", "const_bytes", "ping_pong_bytes",
                                                "unfused_arena_bytes", "fusions")}
        summary["out"] = str(folder)
        return summary, [folder / codegen.MANIFEST_NAME]

    generated = run.stages.run("codegen", asdict(config), [int8_path], do_codegen)
    if run.target.name != "uno":
        return {"codegen": generated, "avr": None}
    return {"codegen": generated, "avr": _avr_stage(run, int8_path)}


def _avr_stage(run: _Run, int8_path: Path) -> dict:
    """Runs `edgemnist avr` on the run's generated C (release and self-check firmware, simavr and
    QEMU) and writes avr/avr.json and the Arduino library (avr/arduino/); skipped with the reason
    without the AVR toolchain or the emulators."""
    from edgemnist.micro import avr
    from edgemnist.micro.build import MissingToolError

    folder = run.folder("avr")
    report_path = folder / "avr.json"
    c_folder = run.folder("codegen")
    settings = {"digits": avr.DEFAULT_DIGITS, "emulators": ["simavr", "qemu"]}

    def do_avr():
        report = avr.selfcheck(int8_path, folder / "build", digits=settings["digits"])
        report["library"] = {k: str(v) for k, v in avr.write_arduino_library(c_folder, folder / "arduino").items()}
        atomic_write_json(report_path, report)
        rel, sim = report["release"], report["simavr"]
        summary = {"pass": report["pass"], "bit_exact": all(report[e]["matches"] == report[e]["digits"]
                                                            for e in settings["emulators"]),
                   "flash_bytes": rel["flash"], "ram_bytes": rel["ram"], "cycles_per_inference": sim["cycles_per_inference"],
                   "ms_at_16mhz": sim["ms_at_16mhz"], "report": str(report_path)}
        return summary, [report_path]

    try:
        avr.find_tools()
    except MissingToolError as exc:
        run.stages.log(f"[avr] skipped: {exc}")
        return {"skipped": str(exc)}
    return run.stages.run("avr", settings, [c_folder / "codegen_manifest.json", int8_path], do_avr)


def _firmware_stage(run: _Run, settings: dict, int8_path: Path, work) -> Optional[dict]:
    """Runs the firmware stage; a target whose arena is measured on its core needs the toolchain,
    QEMU and a TFLite Micro tree for it, and without them the stage is skipped with the reason
    (None), as the mcu stage is."""
    target = run.target
    if target.is_micro and target.arena_on_core and run.runtime == "tflm":  # the C runtime's arena is planned
        missing = _missing_micro_tools(target)
        if missing:
            run.stages.log(f"[firmware] skipped: {target.name}'s arena is measured on its core, which needs: {missing}")
            return None
    return run.stages.run("firmware", settings, [int8_path], work)


def _missing_micro_tools(target, runtime: str = "tflm") -> Optional[str]:
    """Why the target's firmware cannot be built and run here (no Arm toolchain, QEMU or TFLite
    Micro tree for its kernel set), or None."""
    from edgemnist.micro import mcu

    try:
        mcu.find_tools()
        if runtime == "tflm":  # the generated C needs no TFLite Micro tree
            mcu.resolve_tflm(None, target.kernels)
    except mcu.MissingToolError as exc:
        return str(exc)
    return None


def _mcu_stage(run: _Run) -> dict:
    """Runs `edgemnist mcu --target` on the run's firmware folder and writes mcu/mcu.json.

    Returns:
        A summary: {"ok", "bit_exact", "instructions_per_inference", "release": {"verdict", "flash_bytes" (without
        the test digits), "ram_bytes", "fits"}, "report"}, or {"skipped": reason} without the Arm toolchain,
        QEMU or a TFLite Micro tree.
    """
    from edgemnist.micro import mcu

    target, runtime = run.target, run.runtime
    folder = run.folder("firmware")
    report_path = run.folder("mcu") / "mcu.json"
    mcu_config = mcu.McuConfig(cpu=target.cpu, kernels=target.kernels, target=target,
                               build_dir=str(run.folder("mcu") / "build"),
                               **({"runtime": "c"} if runtime == "c" else {}))

    def do_mcu():
        report = mcu.run_mcu(folder, mcu_config)
        atomic_write_json(report_path, report)
        rel = report.get("release") or {}
        exact = report["bit_exact"]
        # TFLite Micro is checked against its host build; the generated C against LiteRT's builtin kernels
        bit_exact = (exact["tflite_micro_host"] if report.get("runtime", "tflm") == "tflm"
                     else (exact["litert_builtin"] or {}).get("bit_exact_fraction") == 1.0)
        summary = {"ok": report["ok"], "bit_exact": bit_exact,
                   "instructions_per_inference": report["instructions"]["per_inference_mean"],
                   "release": {"verdict": rel.get("verdict"), "flash_bytes": rel.get("flash_without_test_digits_bytes"),
                               "ram_bytes": rel.get("ram_bytes"), "fits": (rel.get("budget") or {}).get("fits")},
                   "report": str(report_path)}
        return summary, [report_path]

    settings = _settings(mcu_config, "jobs", "tflm", "cache_dir")
    missing = _missing_micro_tools(target, runtime)
    if missing:  # the rest of the run stands; the check needs the tools
        run.stages.log(f"[mcu] skipped: {missing}")
        return {"skipped": missing}
    return run.stages.run("mcu", settings, [folder / "firmware_manifest.json"], do_mcu)


def format_result(result: dict) -> str:
    """The closing table of a pipeline run."""
    from edgemnist.measure.compare import format_table, gpu_status_line

    lines = [f"trained model: test accuracy {result['train']['test_accuracy']:.2%}, "
             f"{result['train']['params']:,} parameters, {result['train']['macs']:,} MACs"]
    lines.append(format_table(result["variants"]))
    gpu_line = gpu_status_line(result)
    if gpu_line:
        lines.append(gpu_line)
    if result["firmware"]:
        arena = result["firmware"]["arena"] or {}
        lines.append(f"firmware: {result['firmware']['out']} (model {result['firmware']['flash_bytes']:,} bytes, "
                     f"arena {arena.get('stated', 0):,} bytes)")
    mcu_result = result.get("mcu")
    if mcu_result and "skipped" in mcu_result:
        lines.append(f"mcu ({result['target']}): skipped: {mcu_result['skipped']}")
    elif mcu_result:
        rel = mcu_result["release"]
        lines.append(f"mcu ({result['target']}): {'bit-exact' if mcu_result['bit_exact'] else 'NOT bit-exact'}, "
                     f"{mcu_result['instructions_per_inference'] or 0:,} instructions per inference; release build "
                     f"{rel['verdict']}, flash {rel['flash_bytes'] or 0:,} B, RAM {rel['ram_bytes'] or 0:,} B, "
                     f"{'fits' if rel['fits'] else 'does NOT fit'} ({mcu_result['report']})")
    if result.get("codegen"):
        c = result["codegen"]
        lines.append(f"generated C: {c['out']} (arena {c['arena_bytes']:,} B, constants {c['const_bytes']:,} B)")
    avr_result = result.get("avr")
    if avr_result and "skipped" in avr_result:
        lines.append(f"avr ({result['target']}): skipped: {avr_result['skipped']}")
    elif avr_result:
        lines.append(f"avr ({result['target']}): {'PASS' if avr_result['pass'] else 'FAIL'} under simavr and QEMU, "
                     f"{'bit-exact' if avr_result['bit_exact'] else 'NOT bit-exact'}, "
                     f"{avr_result['cycles_per_inference'] or 0:,} cycles = {avr_result['ms_at_16mhz']} ms per digit at "
                     f"16 MHz; release flash {avr_result['flash_bytes']:,} B, RAM {avr_result['ram_bytes']:,} B "
                     f"({avr_result['report']})")
    lines.append(f"report: {result['report']}")
    return "\n".join(lines)


def add_commands(subparsers) -> None:
    """Registers `edgemnist pipeline` (not on a device install, which has no export stage)."""
    if not QUANTIZERS:
        return
    from edgemnist.targets import TARGETS

    p = subparsers.add_parser(
        "pipeline",
        help="the whole job: train, optimize, export every variant, compare, firmware",
        description="Train the default model, prune and quantization-aware train it, export every TFLite "
        "variant, compare them side by side (report.md, report.json, plots) and generate TFLite Micro "
        "assets of the int8 model. A rerun skips stages whose inputs did not change; a killed run resumes.",
    )
    p.add_argument("--out", default="runs/default", help="run folder (default %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: {_QUICK_TRAIN_IMAGES} training images, one epoch per stage, "
                        f"{_QUICK_TEST_IMAGES} test images")
    p.add_argument("--epochs", type=int, help="training epochs (default: edgemnist train's)")
    p.add_argument("--patience", type=int,
                   help="early stopping: epochs without a better validation loss (counted from mid-schedule) "
                   "before training stops (default: edgemnist train's; --patience N with --epochs N trains every "
                   "epoch)")
    p.add_argument("--data-dir", help="data folder (default: $EDGEMNIST_DATA or the shipped MNIST)")
    p.add_argument("--quantizer", default=PipelineConfig.quantizer, choices=QUANTIZER_CHOICES,
                   help="which quantizers' variants to export (default %(default)s)")
    p.add_argument("--no-firmware", action="store_true", help="skip the TFLite Micro assets")
    p.add_argument("--threads", type=int, default=PipelineConfig.threads,
                   help="interpreter threads when comparing (default %(default)s)")
    p.add_argument("--accelerator", choices=ACCELERATORS, default=PipelineConfig.accelerator,
                   help="gpu: the compare stage also runs every variant on LiteRT's GPU accelerator, beside the CPU; "
                   "without a usable GPU the report says 'gpu: not available (reason)' (default %(default)s)")
    p.add_argument("--seed", type=int, default=PipelineConfig.seed,
                   help="random seed of every stage: training, pruning and QAT fine-tuning, calibration images "
                   "(default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress lines (stage starts, each exported variant)")
    p.add_argument("--target", default=PipelineConfig.target, choices=list(TARGETS),
                   help="a named device (edgemnist targets): train its model preset, export float32 and "
                   "int8_per_tensor, generate firmware that must fit it and run it under QEMU on its board "
                   "with edgemnist mcu (default: the default model and every variant)")
    p.add_argument("--runtime", choices=("tflm", "c"), default=None,
                   help="with --target of a Cortex-M board: tflm (TensorFlow Lite Micro, the default) or c (edgemnist "
                   "codegen's generated C, with the target's C-runtime preset where it has one: a larger model in "
                   "the same RAM); the uno runs c only")
    p.set_defaults(func=_run_pipeline)


def _run_pipeline(args):
    config = PipelineConfig(quick=args.quick, epochs=args.epochs, patience=args.patience, data_dir=args.data_dir,
                            seed=args.seed, quantizer=args.quantizer, firmware=not args.no_firmware,
                            threads=args.threads, accelerator=args.accelerator, target=args.target,
                            runtime=args.runtime)
    result = run_pipeline(args.out, config, log=(lambda line: None) if args.quiet else
                          (lambda line: print(line, file=sys.stderr, flush=True)))
    # a firmware that ran but was not bit-exact, or does not fit its target, is a failed check (as mcu's)
    failed = (result.get("mcu") or {}).get("ok") is False or (result.get("avr") or {}).get("pass") is False
    return Output(result, format_result(result), status=1 if failed else 0)
