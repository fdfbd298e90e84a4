"""What each target preset's generated C needs: the memory plan of every preset, against every board.

Usage: python benchmarks/bench_codegen_presets.py [--json benchmarks/results/codegen_presets.json]

The plan depends on the architecture only, so each preset of `edgemnist targets` is built with
untrained weights, exported as int8_per_tensor (100 calibration digits) and given to
`edgemnist codegen`: the arena (every activation, the input included), the fused classifier's
scratch and the constants (flash). Where a run folder of that preset's target exists
(runs/<target>/pipeline.json, made by `edgemnist pipeline --target NAME --seed 0`), its int8
accuracy is shown beside. For each microcontroller board, a preset "fits" when its arena plus
scratch plus the target's stack allowance is within the board's RAM and its constants within
its flash (code comes on top: the board's own run, `edgemnist pipeline --target`, is the proof).
This is the measurement behind the Uno's preset and the C-runtime preset of stm32vldiscovery.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def presets() -> dict:
    """preset label -> (ModelConfig settings, the targets that use it)."""
    from edgemnist.targets import TARGETS

    found = {}
    for t in TARGETS.values():
        if not t.is_micro:
            continue
        for runtime in ("tflm", "c"):
            preset = t.preset_for(runtime)
            key = json.dumps(preset, sort_keys=True)
            found.setdefault(key, (preset, set()))[1].add(t.name)
    return {", ".join(sorted(users)): preset for preset, users in found.values()}


def accuracy_of(users: str):
    """int8 accuracy of a seed-0 pipeline run of one of the preset's targets, where one exists here."""
    for name in users.split(", "):
        record = ROOT / "runs" / name / "pipeline.json"
        if record.is_file():
            result = json.loads(record.read_text()).get("result") or {}
            variant = next((v for v in result.get("variants") or [] if v.get("name") == "int8_per_tensor"), {})
            if "accuracy" in variant:
                return variant["accuracy"], f"runs/{name}"
    return None, None


def plan(preset: dict, calibration, folder: Path) -> dict:
    from edgemnist.export.convert import ExportConfig, export_variant
    from edgemnist.micro import codegen
    from edgemnist.training.model import ModelConfig, build_model

    model = build_model("ds_cnn", ModelConfig(**preset))
    path = folder / "model.tflite"
    export_variant(model, "int8_per_tensor", path, ExportConfig(representative_size=len(calibration)),
                   representative=calibration)
    report = codegen.write(path, folder / "c")
    return {"arena_bytes": report["arena_bytes"], "scratch_bytes": report["scratch_bytes"],
            "const_bytes": report["const_bytes"], "unfused_arena_bytes": report["unfused_arena_bytes"],
            "ping_pong_bytes": report["ping_pong_bytes"], "tflite_bytes": path.stat().st_size,
            "layers": [layer["what"] for layer in report["layers"]]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    from edgemnist.data import load_split
    from edgemnist.targets import TARGETS

    calibration = load_split("train", limit=100).images
    boards = [t for t in TARGETS.values() if t.is_micro and t.name not in ("cortex-m7", "cortex-m55")]
    rows = []
    for users, preset in presets().items():
        with tempfile.TemporaryDirectory() as tmp:
            row = {"preset_of": users, "preset": preset, **plan(preset, calibration, Path(tmp))}
        row["int8_accuracy"], row["accuracy_from"] = accuracy_of(users)
        row["fits"] = {t.name: row["arena_bytes"] + row["scratch_bytes"] + t.stack_bytes <= t.ram_bytes
                       and row["const_bytes"] <= t.flash_bytes for t in boards}
        rows.append(row)
        print(f"{users}: arena {row['arena_bytes']:,} B", flush=True)
    print(f"\n{'preset of':<50} {'arena B':>8} {'scratch':>7} {'const B':>8} {'int8 acc':>8}  fits (RAM: arena + scratch "
          "+ stack)")
    for r in rows:
        acc = f"{100 * r['int8_accuracy']:.2f} %" if r["int8_accuracy"] is not None else "-"
        fits = ", ".join(name for name, ok in r["fits"].items() if ok) or "-"
        print(f"{r['preset_of']:<50} {r['arena_bytes']:>8,} {r['scratch_bytes']:>7} {r['const_bytes']:>8,} {acc:>8}  "
              f"{fits}")
    result = {"boards": {t.name: {"ram_bytes": t.ram_bytes, "flash_bytes": t.flash_bytes, "stack_bytes": t.stack_bytes}
                         for t in boards}, "rows": rows, "command": "python benchmarks/bench_codegen_presets.py"}
    if args.json:
        from edgemnist.artifacts import atomic_write_json

        atomic_write_json(args.json, result)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
