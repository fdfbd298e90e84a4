"""edgemnist verify: every recorded sha256 re-checked, each changed, missing or malformed file named."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgemnist import cli
from edgemnist.artifacts import atomic_write_json, sha256_file
from edgemnist.verify import check_firmware_folder, verify


@pytest.fixture(scope="module")
def firmware_folder(micro_firmware):
    return micro_firmware["folder"]


@pytest.fixture()
def run_folder(tmp_path, tflite_variants, firmware_folder):
    """A pipeline-like run folder: tflite/ with manifests, firmware/, and pipeline.json whose paths
    are relative to the folder it ran from (as `edgemnist pipeline --out runs/x` writes them)."""
    run = tmp_path / "device_copy"
    (run / "tflite").mkdir(parents=True)
    for path in tflite_variants.values():
        shutil.copy2(path, run / "tflite" / path.name)
        shutil.copy2(f"{path}.json", run / "tflite" / f"{path.name}.json")
    shutil.copytree(firmware_folder, run / "firmware")
    outputs = {f"runs/x/tflite/{p.name}": sha256_file(p) for p in sorted((run / "tflite").iterdir())}
    state = {"stages": {
        "export": {"fingerprint": "f", "outputs": outputs, "result": {}, "seconds": 1.0},
        "firmware": {"fingerprint": "g", "result": {}, "seconds": 1.0, "outputs": {
            "runs/x/firmware/firmware_manifest.json": sha256_file(run / "firmware" / "firmware_manifest.json")}},
    }}
    atomic_write_json(run / "pipeline.json", state)
    return run


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x01
    path.write_bytes(bytes(data))


def test_an_intact_run_folder_verifies(run_folder):
    result = verify(run_folder)
    assert result["ok"], result["problems"]
    assert result["problems"] == [] and result["unrecorded"] == []
    assert result["records"] == ["firmware/firmware_manifest.json", "pipeline.json",
                                 "tflite/model_float32.tflite.json", "tflite/model_int8.tflite.json"]
    # 4 files of tflite/ + the firmware manifest (pipeline.json) + every generated source (firmware manifest)
    n_sources = len(json.loads((run_folder / "firmware" / "firmware_manifest.json").read_text())["files"])
    assert result["files_checked"] == 4 + 1 + n_sources
    assert result["tflite_checked"] == 2


def test_one_flipped_byte_in_a_tflite_is_named(run_folder, capsys):
    target = run_folder / "tflite" / "model_int8.tflite"
    _flip_byte(target, 1000)  # inside the weights: the file still parses, only the hash tells
    status = cli.main(["verify", str(run_folder), "--json"])
    result = json.loads(capsys.readouterr().out)
    assert status == 1 and not result["ok"]
    assert [(p["path"], p["problem"]) for p in result["problems"]] == [("tflite/model_int8.tflite", "changed")]
    detail = result["problems"][0]["detail"]
    assert "pipeline.json" in detail and "tflite/model_int8.tflite.json" in detail


def test_changed_missing_and_malformed_files_are_each_named(run_folder, capsys):
    (run_folder / "tflite" / "model_float32.tflite").unlink()
    with open(run_folder / "firmware" / "main.cc", "a") as fh:
        fh.write("// edited\n")
    manifest = run_folder / "tflite" / "model_int8.tflite.json"
    manifest.write_bytes(manifest.read_bytes()[:40])  # a truncated manifest
    (run_folder / "tflite" / "extra.tflite").write_bytes(b"\x18\x00\x00\x00TFL3" + b"\xff" * 64)
    assert cli.main(["verify", str(run_folder)]) == 1
    out = capsys.readouterr().out.splitlines()
    problems = {line.split()[1]: line.split()[0] for line in out[1:]}
    assert problems == {
        "tflite/model_float32.tflite:": "MISSING",
        "firmware/main.cc:": "CHANGED",
        "tflite/model_int8.tflite.json:": "CHANGED",  # pipeline.json recorded it; it is also unreadable
        "tflite/extra.tflite:": "MALFORMED",
    }
    assert "4 problem(s)" in out[0] and "not in any manifest: tflite/extra.tflite" in out[0]


def test_a_malformed_tflite_that_no_manifest_covers_is_named(tflite_variants, tmp_path):
    shutil.copy2(tflite_variants["int8"], tmp_path / "model.tflite")
    data = (tmp_path / "model.tflite").read_bytes()
    (tmp_path / "model.tflite").write_bytes(data[: len(data) // 2])
    result = verify(tmp_path)
    assert result["unrecorded"] == ["model.tflite"]
    assert [(p["path"], p["problem"]) for p in result["problems"]] == [("model.tflite", "malformed")]
    assert "not a valid .tflite" in result["problems"][0]["detail"]


def test_an_unfinished_pipeline_record_and_hidden_temp_files(run_folder):
    """No "out" recorded (killed before the end): paths are found from the stage folders;
    a temp file a killed write left behind is not an artifact."""
    (run_folder / "tflite" / ".model_int8.tflite.x1y2.tmp").write_bytes(b"half a model")
    state = json.loads((run_folder / "pipeline.json").read_text())
    del state["stages"]["firmware"]
    atomic_write_json(run_folder / "pipeline.json", state)
    assert verify(run_folder)["ok"]
    (run_folder / "tflite" / "model_int8.tflite.json").unlink()
    (run_folder / "tflite" / "model_float32.tflite.json").unlink()
    _flip_byte(run_folder / "tflite" / "model_float32.tflite", 2000)
    result = verify(run_folder)
    # pipeline.json still records both manifests and the .tflite files
    assert sorted((p["path"], p["problem"]) for p in result["problems"]) == [
        ("tflite/model_float32.tflite", "changed"),
        ("tflite/model_float32.tflite.json", "missing"),
        ("tflite/model_int8.tflite.json", "missing"),
    ]


def test_finished_pipeline_record_with_absolute_paths(run_folder, tmp_path):
    """A finished run records "out"; its absolute paths are mapped onto wherever the copy lives."""
    state = json.loads((run_folder / "pipeline.json").read_text())
    origin = "/srv/elsewhere/runs/x"
    for stage in state["stages"].values():
        stage["outputs"] = {p.replace("runs/x", origin, 1): d for p, d in stage["outputs"].items()}
    state["result"] = {"out": origin}
    atomic_write_json(run_folder / "pipeline.json", state)
    assert verify(run_folder)["ok"]
    (run_folder / "firmware" / "firmware_manifest.json").unlink()
    result = verify(run_folder)
    assert [(p["path"], p["problem"]) for p in result["problems"]] == [("firmware/firmware_manifest.json", "missing")]


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "absent", "no such folder"),
    (lambda tmp: (tmp / "file.txt").write_text("x") and tmp / "file.txt", "not a folder"),
    (lambda tmp: tmp, "nothing to verify"),
], ids=["missing", "a-file", "empty"])
def test_bad_folder_exits_2_with_one_line(tmp_path, capsys, make, message):
    assert cli.main(["verify", str(make(tmp_path))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_check_firmware_folder_names_the_first_bad_file(firmware_folder, tmp_path):
    """The check `edgemnist mcu` runs before building: verify's rule, raised as one clear error."""
    folder = tmp_path / "fw"
    shutil.copytree(firmware_folder, folder)
    manifest = check_firmware_folder(folder)
    assert manifest["stem"] and "Makefile" in manifest["files"]
    with open(folder / "main.cc", "a") as fh:
        fh.write("// edited\n")
    (folder / "Makefile").unlink()
    with pytest.raises(ValueError, match=r"fw/Makefile: missing \(recorded in firmware_manifest.json\)"):
        check_firmware_folder(folder)
    shutil.copy2(firmware_folder / "Makefile", folder / "Makefile")
    with pytest.raises(ValueError, match=r"fw/main.cc: changed \(sha256 .* recorded in firmware_manifest.json"):
        check_firmware_folder(folder)
    recorded = json.loads((folder / "firmware_manifest.json").read_text())
    recorded["files"]["../outside.cc"] = recorded["files"].pop("main.cc")
    (folder / "firmware_manifest.json").write_text(json.dumps(recorded))
    with pytest.raises(ValueError, match=r"firmware_manifest.json: malformed \(bad entry for '../outside.cc'\)"):
        check_firmware_folder(folder)
    (folder / "firmware_manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match="not a firmware folder"):
        check_firmware_folder(folder)
