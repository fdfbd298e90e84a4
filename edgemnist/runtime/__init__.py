"""TensorFlow-free runtime: load and run .tflite models with LiteRT, tflite-runtime or tf.lite.

Usage: from edgemnist.runtime import Runner; scores = Runner("m.tflite").predict(images)

Needs only numpy and an interpreter package (ai-edge-litert, else tflite-runtime, else
TensorFlow's tf.lite as the last resort). The modules: `backend` finds the interpreter
package; `tflite_schema` (op and type tables), `tflite_reader` (the bounds-checked reader
and validation) and `tflite_info` (the description) read .tflite files; `preflight` (with
its child program `preflight_child`) runs an untrusted file once in a child process;
`quantize` holds the one input quantization rule; `interpreter` holds `Runner`, whose
single-image path is `fast_path`.
"""
from edgemnist.runtime.backend import BACKENDS, Backend, BackendNotFoundError, load_backend  # noqa: F401
from edgemnist.runtime.interpreter import Runner, TensorSpec  # noqa: F401
from edgemnist.runtime.tflite_reader import check_tflite_file  # noqa: F401
