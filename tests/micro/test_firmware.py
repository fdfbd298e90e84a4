"""Tests for edgemnist.micro.firmware: the C array is the model, the settings register its ops, the repo's
firmware_assets/ is what the templates render today (conftest's micro_firmware renders it again)."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from _helpers import run_cli
from conftest import skip_or_fail
from edgemnist.micro import firmware
from edgemnist.micro.check import quantize_images
from edgemnist.runtime import tflite_info

needs_cxx = pytest.mark.skipif(shutil.which("g++") is None, reason="no system C++ compiler (g++)")


@pytest.fixture(scope="module")
def int8_path(micro_firmware):
    return micro_firmware["model"]


@pytest.fixture(scope="module")
def assets(micro_firmware):
    return micro_firmware["folder"], micro_firmware["manifest"]


def test_c_identifier():
    assert firmware.c_identifier("Digits-Net v1") == "digits_net_v1"
    assert firmware.c_identifier("8bit") == "m_8bit"
    assert firmware.c_identifier("int") == "int_model"
    assert firmware.c_identifier("---") == "model"


def test_writes_the_expected_files(assets, int8_path):
    out, manifest = assets
    stem = manifest["stem"]
    cortex_m = {f"cortex_m/{p.name}" for p in (firmware.TEMPLATES / "cortex_m").iterdir() if p.name != "Makefile"}
    expected = {f"{stem}_model_data.cc", f"{stem}_model_data.h", f"{stem}_model_settings.h",
                f"{stem}_test_digits.cc", f"{stem}_test_digits.h", "main_functions.cc", "main_functions.h",
                "main.cc", "README.md", "Makefile", "model_ops.mk", "release/main_release.cc"} | cortex_m
    assert {"cortex_m/startup.c", "cortex_m/cortex_m.ld", "cortex_m/main_cortex_m.cc"} <= cortex_m
    assert set(manifest["files"]) == expected
    assert {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} == expected | {firmware.MANIFEST_NAME}
    from edgemnist.artifacts import sha256_file

    for name, entry in manifest["files"].items():
        assert sha256_file(out / name) == entry["sha256"]
    assert manifest["model"]["sha256"] == sha256_file(int8_path)
    assert manifest["flash_bytes"] == int8_path.stat().st_size
    assert manifest["ops"] == sorted(set(tflite_info.read_model(int8_path).ops))
    header = (out / f"{stem}_model_data.h").read_text()
    assert f"constexpr unsigned int g_{stem}_model_data_size = {manifest['flash_bytes']};" in header
    assert f"alignas(16) const unsigned char g_{stem}_model_data[]" in (out / f"{stem}_model_data.cc").read_text()
    assert manifest["litert_check"]["builtin"]["argmax_agreement"] == 1.0


def _compile_and_run(tmp_path, sources, harness: str, args=()):
    (tmp_path / "harness.cc").write_text(harness)
    exe = tmp_path / "harness"
    build = subprocess.run(
        ["g++", "-std=c++17", "-Wall", "-Werror", "-O1", "-o", str(exe), *map(str, sources), str(tmp_path / "harness.cc")],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


@needs_cxx
@pytest.mark.slow
def test_c_array_compiles_back_to_the_model_and_digits(assets, int8_path, tmp_path):
    out, manifest = assets
    stem = manifest["stem"]
    harness = f"""
#include <cstdint>
#include <cstdio>
#include "{out}/{stem}_model_data.h"
#include "{out}/{stem}_test_digits.h"
int main(int argc, char** argv) {{
  if (reinterpret_cast<uintptr_t>(g_{stem}_model_data) % 16 != 0) return 3;
  FILE* f = std::fopen(argv[1], "wb");
  std::fwrite(g_{stem}_model_data, 1, g_{stem}_model_data_size, f);
  std::fclose(f);
  f = std::fopen(argv[2], "wb");
  std::fwrite(g_{stem}_test_digits, 1, sizeof(g_{stem}_test_digits), f);
  std::fwrite(g_{stem}_test_labels, 1, sizeof(g_{stem}_test_labels), f);
  std::fclose(f);
  return 0;
}}
"""
    _compile_and_run(tmp_path, [out / f"{stem}_model_data.cc", out / f"{stem}_test_digits.cc"], harness,
                     [tmp_path / "model.bin", tmp_path / "digits.bin"])
    assert (tmp_path / "model.bin").read_bytes() == int8_path.read_bytes()
    raw = np.frombuffer((tmp_path / "digits.bin").read_bytes(), dtype=np.uint8)
    n = manifest["test_digits"]["count"]
    digits, labels = raw[: n * 784].view(np.int8).reshape(n, 28, 28, 1), raw[n * 784:]
    assert labels.tolist() == manifest["test_digits"]["labels"] == sorted(list(range(10)) * 2)
    images, _ = firmware.select_test_digits(2)
    scale, zero_point = tflite_info.input_quantization(tflite_info.read_model(int8_path))
    np.testing.assert_array_equal(digits, quantize_images(images, scale, zero_point))


def _resolver_stub() -> str:
    """Just enough of TFLite Micro's MicroMutableOpResolver to compile the settings header:
    each Add method records its op (or the int8-only registration it is given) and fails once N
    ops are registered, as the real one does."""
    from edgemnist.micro.kernels import INT8_REGISTRATIONS

    adds = "\n".join(f'  TfLiteStatus {method}(TFLMRegistration r = {{nullptr}}) {{ return Add(r.name ? r.name : "{op}"); }}'
                     for op, method in firmware.MICRO_OP_RESOLVER_METHODS.items())
    int8 = "\n".join(f'inline TFLMRegistration {function}() {{ return {{"{op}_INT8"}}; }}'
                      for op, function in INT8_REGISTRATIONS.items())
    return f"""#pragma once
enum TfLiteStatus {{ kTfLiteOk = 0, kTfLiteError = 1 }};
namespace tflite {{
struct TFLMRegistration {{ const char* name; }};
{int8}
template <unsigned int N>
class MicroMutableOpResolver {{
 public:
  const char* ops[N + 1] = {{}};
  unsigned int count = 0;
  TfLiteStatus Add(const char* op) {{
    if (count >= N) return kTfLiteError;
    ops[count++] = op;
    return kTfLiteOk;
  }}
{adds}
}};
}}  // namespace tflite
"""


@needs_cxx
@pytest.mark.slow
def test_settings_header_registers_exactly_the_models_ops(assets, tmp_path):
    out, manifest = assets
    stem = manifest["stem"]
    stub = tmp_path / "tensorflow" / "lite" / "micro" / "micro_mutable_op_resolver.h"
    stub.parent.mkdir(parents=True)
    stub.write_text(_resolver_stub())
    harness = f"""
#include <cstdio>
#include "{out}/{stem}_model_settings.h"
int main() {{
  static {stem}::OpResolver resolver;
  if ({stem}::RegisterOps(resolver) != kTfLiteOk) return 2;
  if (resolver.Add("ONE_MORE") != kTfLiteError) return 3;  // N is exact
  for (unsigned int i = 0; i < resolver.count; ++i) std::printf("%s\\n", resolver.ops[i]);
  static {stem}::OpResolver int8_resolver;
  if ({stem}::RegisterOpsInt8(int8_resolver) != kTfLiteOk) return 4;
  for (unsigned int i = 0; i < int8_resolver.count; ++i) std::printf("%s\\n", int8_resolver.ops[i]);
  std::printf("arena %d %d\\n", {stem}::kTensorArenaSize, {stem}::kMeasuredArenaSize);
  std::printf("input %.9g %d\\n", {stem}::kInputScale, {stem}::kInputZeroPoint);
  std::printf("size %d labels %s %s\\n", {stem}::kInputSize, {stem}::kClassLabels[0], {stem}::kClassLabels[9]);
  return 0;
}}
"""
    lines = _compile_and_run(tmp_path, ["-I", tmp_path], harness).splitlines()
    n = len(manifest["ops"])
    assert lines[:n] == manifest["ops"]
    # the release build's resolver: the same ops, int8-only kernels where TFLite Micro has them
    from edgemnist.micro.kernels import INT8_REGISTRATIONS

    assert lines[n:2 * n] == [op + "_INT8" if op in INT8_REGISTRATIONS else op for op in manifest["ops"]]
    assert "CONV_2D_INT8" in lines[n:2 * n] and "RESHAPE" in lines[n:2 * n]
    assert lines[-3] == f"arena {manifest['arena']['stated']} {manifest['arena']['minimum']}"
    scale, zero_point = lines[-2].split()[1:]
    assert float(scale) == pytest.approx(manifest["input"]["scale"], rel=1e-7)
    assert int(zero_point) == manifest["input"]["zero_point"]
    assert lines[-1] == "size 784 labels 0 9"


def _versions_recorded(manifest: dict) -> dict:
    """{package: (version recorded in the manifest, version installed)} of what the files embed."""
    from importlib import metadata

    from edgemnist.micro.arena import micro_version

    return {"tflite-micro": (manifest["tflite_micro_version"], micro_version()),
            "ai-edge-litert": (manifest["litert_check"]["litert_version"], metadata.version("ai-edge-litert"))}


def test_firmware_assets_are_what_the_templates_render(micro_firmware):
    """firmware_assets/ rendered again from the .tflite it embeds gives the committed bytes: a template,
    the rendering or a kernel table changed without regenerating it (its README has the command)."""
    source = micro_firmware["source"]
    recorded = json.loads((source / firmware.MANIFEST_NAME).read_text())
    moved = {name: pair for name, pair in _versions_recorded(recorded).items() if pair[0] != pair[1]}
    if moved:
        # pyproject pins both, so a fresh install of the dev extra compares; another install skips, not CI
        skip_or_fail("cortex-m", f"firmware_assets/ embeds results of other versions: {moved} (recorded, installed)")
    out = micro_firmware["folder"]
    committed = sorted(str(p.relative_to(source)) for p in source.rglob("*") if p.is_file())
    assert committed == sorted([*micro_firmware["manifest"]["files"], firmware.MANIFEST_NAME])
    differing = [name for name in committed if (out / name).read_bytes() != (source / name).read_bytes()]
    assert differing == [], f"regenerate firmware_assets/ (see its README.md): {differing} differ"


def test_refuses_to_replace_a_folder_it_did_not_write(int8_path, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an edgemnist firmware folder"):
        firmware.generate(int8_path, tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_float_model_is_refused(tflite_variants, tmp_path):
    float_path = tmp_path / "float.tflite"
    shutil.copy(tflite_variants["float32"], float_path)
    with pytest.raises(ValueError, match=r"float\.tflite.*float32.*int8"):
        firmware.generate(float_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_every_template_is_package_data():
    """An installed edgemnist (not this checkout) must carry every template it renders."""
    from fnmatch import fnmatch

    tomllib = pytest.importorskip("tomllib")
    pyproject = tomllib.loads((Path(firmware.__file__).parents[2] / "pyproject.toml").read_text())
    patterns = [pattern.split("/") for pattern in pyproject["tool"]["setuptools"]["package-data"]["edgemnist.micro"]]
    templates = [p.relative_to(firmware.TEMPLATES.parent).parts for p in firmware.TEMPLATES.rglob("*") if p.is_file()]
    assert len(templates) > 10
    for parts in templates:
        assert any(len(parts) == len(pattern) and all(map(fnmatch, parts, pattern)) for pattern in patterns), parts


def test_config_validation():
    with pytest.raises(ValueError, match="digits_per_class"):
        firmware.FirmwareConfig(digits_per_class=0)
    with pytest.raises(ValueError, match="arena_margin"):
        firmware.FirmwareConfig(arena_margin=-0.1)
    with pytest.raises(ValueError, match="C identifier"):
        firmware.FirmwareConfig(name="9 lives")


@pytest.mark.slow
def test_cli_json_replaces_a_firmware_folder_whole_and_bad_input(int8_path, assets, tmp_path):
    out, first = assets
    shutil.copytree(out, tmp_path / "fw")
    (tmp_path / "fw" / "extra.txt").write_text("left by a user")
    result = run_cli("firmware", int8_path, "--out", tmp_path / "fw", "--digits-per-class", "1", "--name", "other",
                     "--json", timeout=600)
    assert result.returncode == 0, result.stderr
    manifest = json.loads(result.stdout)
    assert manifest["stem"] == "other" and manifest["test_digits"]["count"] == 10
    assert set(manifest) >= {"files", "arena", "ops", "flash_bytes", "model", "litert_check"}
    assert manifest["arena"] == first["arena"]  # the same model measures the same arena
    # the folder was replaced whole: only the new files, no temp folders beside it
    assert {str(p.relative_to(tmp_path / "fw")) for p in (tmp_path / "fw").rglob("*") if p.is_file()} == \
        {*manifest["files"], firmware.MANIFEST_NAME}
    assert [p.name for p in tmp_path.iterdir()] == ["fw"]
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(int8_path.read_bytes()[:1000])
    result = run_cli("firmware", bad, "--out", tmp_path / "fw2", timeout=600)
    assert result.returncode == 2
    assert "bad.tflite" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "fw2").exists()
