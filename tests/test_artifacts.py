"""edgemnist.artifacts: files and folders appear whole or not at all; hashes and gzip sizes are deterministic."""
from __future__ import annotations

import hashlib
import json
import os
import stat

import pytest

from edgemnist import artifacts
from edgemnist.artifacts import OutputError, atomic_write_folder


def _leftovers(folder) -> list:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_file_writers_and_hashes(tmp_path):
    path = artifacts.atomic_write_json(tmp_path / "sub" / "a.json", {"b": 1, "a": [1, 2]})
    assert path.read_text() == json.dumps({"a": [1, 2], "b": 1}, indent=2, sort_keys=True) + "\n"
    assert artifacts.sha256_file(path) == artifacts.sha256_bytes(path.read_bytes()) == \
        hashlib.sha256(path.read_bytes()).hexdigest()
    assert artifacts.gzip_size(b"x" * 10_000) == artifacts.gzip_size(b"x" * 10_000) < 100
    assert _leftovers(tmp_path / "sub") == []


def test_folder_is_written_whole_and_replaces_the_old_one(tmp_path):
    out = tmp_path / "fw"
    atomic_write_folder(out, {"a.txt": "one\n", "nested/b.bin": b"\x00\x01", "old_only.txt": "gone soon"})
    assert (out / "a.txt").read_bytes() == b"one\n" and (out / "nested" / "b.bin").read_bytes() == b"\x00\x01"
    assert stat.S_IMODE(out.stat().st_mode) == 0o755

    assert atomic_write_folder(out, {"a.txt": "two\r\n"}) == out
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["a.txt"]
    assert (out / "a.txt").read_bytes() == b"two\r\n"  # text as given, no newline translation
    assert _leftovers(tmp_path) == []


def test_a_failed_swap_keeps_the_old_folder(tmp_path, monkeypatch):
    out = tmp_path / "fw"
    atomic_write_folder(out, {"a.txt": "old"})
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(src).startswith(str(tmp_path / ".fw.")) and not str(src).startswith(str(tmp_path / ".fw.old.")) \
                and dst == out:
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(artifacts.os, "replace", failing_replace)
    with pytest.raises(OutputError, match=r"cannot write .*fw: No space left on device"):
        atomic_write_folder(out, {"a.txt": "new"})
    assert (out / "a.txt").read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_an_unwritable_location_is_an_output_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OutputError, match="cannot write"):
        atomic_write_folder(tmp_path / "file" / "fw", {"a.txt": "x"})


def test_one_cache_folder_rule_for_downloads_and_mcu_objects(tmp_path, monkeypatch):
    from edgemnist.micro import build

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("EDGEMNIST_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert artifacts.cache_dir() == tmp_path / "home" / ".cache" / "edgemnist"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert artifacts.cache_dir() == tmp_path / "xdg" / "edgemnist"
    monkeypatch.setenv("EDGEMNIST_CACHE", "")  # empty counts as unset
    assert artifacts.cache_dir() == tmp_path / "xdg" / "edgemnist"
    monkeypatch.setenv("EDGEMNIST_CACHE", str(tmp_path / "mine"))
    assert artifacts.cache_dir() == tmp_path / "mine"
    # mcu's compiled TFLite Micro objects follow the same rule, unless --cache-dir names a folder
    monkeypatch.delenv("EDGEMNIST_CACHE")

    def objects_root(cache_dir):
        return build.object_cache(cache_dir, tmp_path, "cortex-m4", "reference", b"all:").parents[1]

    assert objects_root(None) == tmp_path / "xdg" / "edgemnist"
    assert objects_root(str(tmp_path / "given")) == tmp_path / "given"
