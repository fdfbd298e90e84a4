"""Re-check a run folder (or a copy of one on a device) against the sha256 its manifests recorded.

Usage: edgemnist verify runs/default [--json]

What is checked, wherever it appears under the folder:
  <file>.tflite.json       export manifest (edgemnist export): the .tflite beside it, sha256 and bytes
  pipeline.json            every stage's outputs (edgemnist pipeline), found relative to the folder
  firmware_manifest.json   every generated source file (edgemnist firmware), sha256 and bytes
and every .tflite must pass the structural check `edgemnist info` uses, every .json must
parse, every .keras must be an intact zip and every .h5 must start with the HDF5 signature. Hidden files (a killed write's `.name.XXXX.tmp`) are ignored. Nothing is loaded into
a native interpreter, so a hostile file cannot crash the check.

Exit status: 0 everything matches; 1 a file changed, is missing or is malformed (each one
named); 2 bad input (no such folder, or no .tflite, .json, .keras or .h5 file in it).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Optional

from edgemnist.artifacts import FIRMWARE_MANIFEST_NAME as FIRMWARE_MANIFEST
from edgemnist.artifacts import PIPELINE_STAGE_FOLDERS as STAGE_FOLDERS
from edgemnist.artifacts import PIPELINE_STATE_FILE as PIPELINE_FILE
from edgemnist.artifacts import manifest_path, sha256_file
from edgemnist.console import first_line
from edgemnist.output import Output


@dataclass
class _Check:
    """Accumulates what was checked and what was wrong."""

    folder: Path
    expected: dict = field(default_factory=dict)  # Path -> list of (sha256, bytes or None, record)
    problems: list = field(default_factory=list)
    records: list = field(default_factory=list)

    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.folder))
        except ValueError:
            return str(path)

    def expect(self, path: Path, sha256, size, record: Path) -> None:
        self.expected.setdefault(path, []).append((sha256, size, self.rel(record)))

    def problem(self, path: Path, kind: str, detail: str) -> None:
        self.problems.append({"path": self.rel(path), "problem": kind, "detail": detail})


def _visible_files(folder: Path) -> list:
    """Every regular file under `folder` whose path has no hidden component, sorted."""
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files.extend(Path(root) / n for n in sorted(names) if not n.startswith("."))
    return [f for f in files if f.is_file()]


def _load_json(check: _Check, path: Path) -> Optional[object]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        check.problem(path, "malformed", f"not readable JSON ({first_line(exc)})")
        return None


def _exported_model(path: Path) -> Optional[Path]:
    """The .tflite whose export manifest `path` is (artifacts.manifest_path's rule), or None."""
    model = path.with_suffix("")
    return model if model.suffix == ".tflite" and manifest_path(model) == path else None


def _export_manifest(check: _Check, path: Path, model: Path, manifest) -> None:
    if not isinstance(manifest, dict) or not isinstance(manifest.get("sha256"), str):
        check.problem(path, "malformed", "export manifest without a sha256")
        return
    check.records.append(check.rel(path))
    check.expect(model, manifest["sha256"], manifest.get("bytes"), path)


def _pipeline_root(state: dict, recorded: list) -> str:
    """The run folder as pipeline.json wrote its paths (absolute, or relative to where it ran)."""
    out = (state.get("result") or {}).get("out") or state.get("out")
    if isinstance(out, str) and out:
        return out
    if not recorded:
        return ""
    common = PurePath(os.path.commonpath(recorded))
    # Stage sub-folders tell the run folder when pipeline.json of an unfinished run does not record it.
    while common.name in STAGE_FOLDERS.values() or (len(recorded) == 1 and common == PurePath(recorded[0])):
        common = common.parent
    return str(common)


def _recorded(check: _Check, path: Path, record, key: str, fault: str) -> Optional[dict]:
    """record[key] of a manifest when it is a dict (the file then counts as a manifest used), else None
    with `fault` noted as the file's problem."""
    value = record.get(key) if isinstance(record, dict) else None
    if not isinstance(value, dict):
        check.problem(path, "malformed", fault)
        return None
    check.records.append(check.rel(path))
    return value


def _pipeline_record(check: _Check, path: Path, state) -> None:
    stages = _recorded(check, path, state, "stages", "pipeline record without stages")
    if stages is None:
        return
    outputs = [(name, p, digest) for name, stage in sorted(stages.items()) if isinstance(stage, dict)
               for p, digest in sorted((stage.get("outputs") or {}).items())]
    root = _pipeline_root(state, [p for _, p, _ in outputs])
    for name, recorded, digest in outputs:
        try:
            relative = PurePath(recorded).relative_to(root) if root else PurePath(recorded)
        except ValueError:
            relative = PurePath(recorded)
        local = path.parent / relative if not relative.is_absolute() else Path(relative)
        check.expect(local, digest, None, path)


def _firmware_manifest(check: _Check, path: Path, manifest) -> None:
    files = _recorded(check, path, manifest, "files", "firmware manifest without files")
    if files is None:
        return
    for name, entry in sorted(files.items()):
        if not isinstance(entry, dict) or PurePath(name).is_absolute() or ".." in PurePath(name).parts:
            check.problem(path, "malformed", f"bad entry for {name!r}")
            continue
        check.expect(path.parent / name, entry.get("sha256"), entry.get("bytes"), path)


def _keras_fault(path: Path) -> Optional[str]:
    """Why a saved Keras model is damaged (a .keras zip that fails its CRCs, a .h5 without its
    signature), or None."""
    import zipfile

    try:
        if path.suffix == ".h5":
            with open(path, "rb") as fh:
                return None if fh.read(8) == b"\x89HDF\r\n\x1a\n" else "not an HDF5 file"
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
        return None if bad is None else f"damaged zip member {bad}"
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as exc:
        return f"not a readable .keras zip ({str(exc) or type(exc).__name__})"


def _compare(check: _Check) -> int:
    """Checks every expected file against its records; returns how many files were checked."""
    for path, wanted in sorted(check.expected.items()):
        records = ", ".join(sorted({record for _, _, record in wanted}))
        if not path.is_file():
            check.problem(path, "missing", f"recorded in {records}")
            continue
        size, actual = path.stat().st_size, sha256_file(path)
        wrong = [(digest, expected_size, record) for digest, expected_size, record in wanted if actual != digest]
        if wrong:
            digest, expected_size = wrong[0][:2]
            extra = f"; {size} bytes, recorded {expected_size}" if expected_size not in (None, size) else ""
            check.problem(path, "changed", f"sha256 {actual[:12]}... is not the {str(digest)[:12]}... recorded in "
                                           f"{', '.join(sorted({r for _, _, r in wrong}))}{extra}")
    return len(check.expected)


def verify(folder: str | os.PathLike) -> dict:
    """Checks every file a run folder's manifests record, and every .tflite and .json in it.

    Args:
        folder: a pipeline run folder, an export folder, a firmware folder, or a copy of one.

    Returns:
        {"folder", "ok", "records" (manifests used), "files_checked", "tflite_checked",
        "json_checked", "keras_checked", "unrecorded" (.tflite files no manifest covers), "problems": [{"path",
        "problem" ("missing", "changed" or "malformed"), "detail"}]}; paths relative to folder.

    Raises:
        FileNotFoundError: no such folder.
        ValueError: not a folder, or it holds no manifest and no .tflite file.
    """
    from edgemnist.runtime.tflite_info import TFLiteFormatError, validate

    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder (verify takes a run, export or firmware folder)")
    check = _Check(folder)
    files = _visible_files(folder)
    json_checked = 0
    for path in files:
        if path.suffix != ".json":
            continue
        json_checked += 1
        content = _load_json(check, path)
        if content is None:
            continue
        model = _exported_model(path)
        if model is not None:
            _export_manifest(check, path, model, content)
        elif path.name == PIPELINE_FILE:
            _pipeline_record(check, path, content)
        elif path.name == FIRMWARE_MANIFEST:
            _firmware_manifest(check, path, content)
    tflites = [p for p in files if p.suffix == ".tflite"]
    if not any(p.suffix in (".tflite", ".json", ".keras", ".h5") for p in files):
        raise ValueError(f"{folder}: nothing to verify (no .tflite, .json, .keras or .h5 file in it)")
    files_checked = _compare(check)
    for path in tflites:
        try:
            validate(path)
        except TFLiteFormatError as exc:
            fault = str(exc).split(": ", 1)[-1]
            check.problem(path, "malformed", f"not a valid .tflite ({fault})")
        except OSError as exc:
            check.problem(path, "malformed", f"unreadable ({exc.strerror or exc})")
    for path in files:
        if path.suffix in (".keras", ".h5"):
            fault = _keras_fault(path)
            if fault:
                check.problem(path, "malformed", fault)
    # one entry per file: the first problem found (missing/changed before malformed)
    seen, problems = set(), []
    rank = {"missing": 0, "changed": 1, "malformed": 2}
    for entry in sorted(check.problems, key=lambda e: (e["path"], rank[e["problem"]])):
        if entry["path"] not in seen:
            seen.add(entry["path"])
            problems.append(entry)
    return {
        "folder": str(folder),
        "ok": not problems,
        "records": sorted(check.records),
        "files_checked": files_checked,
        "tflite_checked": len(tflites),
        "json_checked": json_checked,
        "keras_checked": sum(p.suffix in (".keras", ".h5") for p in files),
        "unrecorded": sorted(check.rel(p) for p in tflites if p not in check.expected),
        "problems": problems,
    }


def check_firmware_folder(folder: str | os.PathLike) -> dict:
    """The manifest of a firmware folder, after checking every file it lists as `verify` does.

    Args:
        folder: a folder written by `edgemnist firmware`.

    Returns:
        The parsed firmware_manifest.json.

    Raises:
        FileNotFoundError: no firmware_manifest.json in the folder.
        ValueError: the manifest is malformed, or a listed file is missing or differs (the first named).
    """
    folder = Path(folder)
    path = folder / FIRMWARE_MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: not a firmware folder (no {FIRMWARE_MANIFEST}); "
                                "write one with `edgemnist firmware MODEL --out DIR`")
    check = _Check(folder)
    manifest = _load_json(check, path)
    if manifest is not None:
        _firmware_manifest(check, path, manifest)
        _compare(check)
    if check.problems:
        first = check.problems[0]
        raise ValueError(f"{folder / first['path']}: {first['problem']} ({first['detail']}); "
                         "regenerate the folder with `edgemnist firmware`")
    return manifest


def format_result(result: dict) -> str:
    """One summary line, then one line per problem."""
    status = "OK" if result["ok"] else f"{len(result['problems'])} problem(s)"
    lines = [f"{result['folder']}: {status}: {result['files_checked']} recorded file(s) checked against "
             f"{len(result['records'])} manifest(s); {result['tflite_checked']} .tflite and "
             f"{result['json_checked']} .json, {result['keras_checked']} Keras file(s) checked for form"
             + (f"; not in any manifest: {', '.join(result['unrecorded'])}" if result["unrecorded"] else "")]
    for p in result["problems"]:
        lines.append(f"  {p['problem'].upper():<9} {p['path']}: {p['detail']}")
    return "\n".join(lines)


def add_commands(subparsers) -> None:
    """Registers `edgemnist verify`."""
    p = subparsers.add_parser(
        "verify",
        help="re-check a run folder (or a device copy) against the sha256 in its manifests",
        description="Check every file recorded in the folder's export manifests (<file>.tflite.json), "
        "pipeline.json and firmware_manifest.json against its recorded sha256, and that every .tflite "
        "and .json in it is well-formed. Exit 0 all good, 1 a file changed, is missing or malformed "
        "(each named), 2 no such folder or nothing to verify.",
    )
    p.add_argument("folder", help="a pipeline run folder, export folder, firmware folder or a copy of one")
    p.set_defaults(func=_run_verify)


def _run_verify(args):
    result = verify(args.folder)
    return Output(result, format_result(result), status=0 if result["ok"] else 1)
