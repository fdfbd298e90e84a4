"""Test helper: the float32 and int8 exports of the session's trained model, made once per session.

Each test module that needs them defines a session fixture calling `exported_variants`; the
files are cached in pytest's session temp folder, so conversion runs once however many
modules ask.
"""
from __future__ import annotations

from pathlib import Path

VARIANTS = ("float32", "int8")


def exported_variants(tmp_path_factory, trained_model_path) -> dict:
    """{"float32": Path, "int8": Path}: .tflite files with their manifests beside them."""
    from edgemnist.convert import ExportConfig, export_variant

    folder = Path(tmp_path_factory.getbasetemp()) / "tflite_variants"
    paths = {v: folder / f"model_{v}.tflite" for v in VARIANTS}
    for variant, path in paths.items():
        if not path.is_file():
            export_variant(trained_model_path, variant, path, ExportConfig(representative_size=200))
    return paths
