"""edgemnist.runtime.backend: LiteRT first, then tflite-runtime, then tf.lite; one error naming all three."""
from __future__ import annotations

import sys

import pytest

from edgemnist.runtime.backend import BACKENDS, BackendNotFoundError, load_backend


def test_default_backend_is_litert_with_version():
    backend = load_backend()
    assert backend.name == "ai_edge_litert"
    assert backend.version[0].isdigit()
    assert backend.describe() == f"ai_edge_litert {backend.version}"


def test_unknown_backend_is_a_value_error():
    with pytest.raises(ValueError, match="unknown backend 'litert'"):
        load_backend("litert")


def test_no_backend_installed_names_all_three(monkeypatch):
    # A None entry in sys.modules makes `import` raise ImportError, as on a machine without them.
    for module in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime",
                   "tflite_runtime.interpreter", "tensorflow"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(BackendNotFoundError) as info:
        load_backend()
    message = str(info.value)
    assert all(name in message for name in BACKENDS)
    assert isinstance(info.value, ImportError)


def test_forced_backend_that_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "tflite_runtime", None)
    with pytest.raises(BackendNotFoundError, match="tflite_runtime"):
        load_backend("tflite_runtime")
