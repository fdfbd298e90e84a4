"""Find a TFLite interpreter package: LiteRT (ai-edge-litert), then tflite-runtime, then tf.lite.

Usage: from edgemnist.runtime.backend import load_backend; load_backend().describe()

`tf.lite` is the last resort, tried only when neither ai-edge-litert nor tflite-runtime
is installed; when none is, one ImportError names all three.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any, Optional

# Interpreter packages in the order they are tried.
BACKENDS = ("ai_edge_litert", "tflite_runtime", "tf.lite")
_INSTALL_HINT = (
    "pip install ai-edge-litert (LiteRT, recommended), or tflite-runtime, or tensorflow (tf.lite)"
)


class BackendNotFoundError(ImportError):
    """No TFLite interpreter package is installed (or not the one asked for)."""


@dataclass(frozen=True)
class Backend:
    """An importable interpreter package."""

    name: str  # one of BACKENDS
    version: str
    interpreter_class: Any  # the package's Interpreter class

    def describe(self) -> str:
        """`name version`, as shown in tables."""
        return f"{self.name} {self.version}"


def _package_version(distribution: str, module: Any) -> str:
    version = getattr(module, "__version__", None)
    if version:
        return str(version)
    try:
        from importlib.metadata import PackageNotFoundError, version as dist_version

        return dist_version(distribution)
    except (ImportError, PackageNotFoundError):
        return "unknown"


def _import_backend(name: str) -> Backend:
    if name == "ai_edge_litert":
        module = importlib.import_module("ai_edge_litert.interpreter")
        package = importlib.import_module("ai_edge_litert")
        return Backend(name, _package_version("ai-edge-litert", package), module.Interpreter)
    if name == "tflite_runtime":
        module = importlib.import_module("tflite_runtime.interpreter")
        package = importlib.import_module("tflite_runtime")
        return Backend(name, _package_version("tflite-runtime", package), module.Interpreter)
    # The last resort: the full TensorFlow package (its tf.lite is scheduled for deletion).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tf = importlib.import_module("tensorflow")
    return Backend(name, _package_version("tensorflow", tf), tf.lite.Interpreter)


def load_backend(name: Optional[str] = None) -> Backend:
    """Imports a TFLite interpreter package.

    Args:
        name: one of BACKENDS to force it; None tries them in order.

    Returns:
        The first backend that imports.

    Raises:
        ValueError: `name` is not one of BACKENDS.
        BackendNotFoundError: none of them (or not the one asked for) is installed.
    """
    if name is not None and name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    tried = []
    for candidate in (name,) if name else BACKENDS:
        try:
            return _import_backend(candidate)
        except ImportError as exc:
            tried.append(f"{candidate} ({exc})")
    wanted = f"backend {name}" if name else f"a TFLite interpreter ({', '.join(BACKENDS)})"
    raise BackendNotFoundError(f"no {wanted} is installed: {_INSTALL_HINT}; tried " + "; ".join(tried))
