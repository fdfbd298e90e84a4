"""The GPU accelerator for tests: a GpuRunner or a clean skip saying what is missing.

Usage: from _gpu import gpu_runner; runner = gpu_runner(path)

The runtime finds the Vulkan driver itself (VK_ICD_FILENAMES, EDGEMNIST_VULKAN_ICD, the
system's drivers, then SwiftShader at /usr/lib/chromium/vk_swiftshader_icd.json, which
tools/install_test_deps.sh installs); where none gives an adapter, the test skips with the
runtime's own reason.
"""
from __future__ import annotations

from conftest import skip_or_fail

# Largest difference allowed between a score on the GPU accelerator and the same file's on the CPU.
# The GPU may compute in half precision (LiteRT's default, fp16: an 11-bit mantissa, about 1e-3
# relative error per op, accumulated over a dozen ops), and a quantized model's GPU kernels may
# round an activation one step differently from the CPU's, which moves an int8 output score by a
# few steps of 1/256. Scores are probabilities in [0, 1].
SCORE_TOLERANCE = 0.02


def gpu_runner(path, **kwargs):
    """GpuRunner(path, **kwargs), or a skip with the reason no GPU accelerator can run here (a failure where
    EDGEMNIST_REQUIRE_GROUPS names gpu)."""
    from edgemnist.runtime.accelerator import AcceleratorUnavailableError, GpuRunner

    try:
        return GpuRunner(path, **kwargs)
    except AcceleratorUnavailableError as exc:
        skip_or_fail("gpu", f"no GPU accelerator here: {exc}")


def confident(scores, margin: float = 2 * SCORE_TOLERANCE):
    """Boolean mask of images whose top two scores differ by more than `margin`: there the class
    cannot flip within the tolerance, so GPU and CPU must predict the same one."""
    import numpy as np

    top = np.sort(scores, axis=1)
    return top[:, -1] - top[:, -2] > margin
