"""edgemnist.runtime.quantize: the one input quantization rule, pinned at its rounding edges, and its users."""
from __future__ import annotations

import numpy as np
import pytest

from edgemnist.runtime import Runner
from edgemnist.runtime.quantize import dequantize, pixels_to_unit, quantize, quantize_pixels


def _q(x, scale, zero_point, dtype=np.int8):
    return quantize(np.array([x], np.float32), scale, zero_point, dtype)[0]


@pytest.mark.parametrize("x, zero_point, expected", [
    (0.125, 0, 0),  # 0.5 -> 0: half to even, not C's round (away from zero: 1)
    (0.375, 0, 2),  # 1.5 -> 2
    (0.625, 0, 2),  # 2.5 -> 2
    (0.125, 1, 2),  # 0.5 + 1 = 1.5 -> 2: the sum with the zero point is rounded, not rint(0.5) + 1 = 1
    (0.125, -128, -128),  # 0.5 - 128 = -127.5 -> -128 (even)
    (0.375, -128, -126),  # 1.5 - 128 = -126.5 -> -126 (even)
    (0.0, -128, -128),
])
def test_ties_round_half_to_even_after_adding_the_zero_point(x, zero_point, expected):
    assert _q(x, 0.25, zero_point) == expected  # 1 / 0.25 = 4 exactly: x * 4 is the exact tie


def test_the_rule_multiplies_by_the_float32_reciprocal_not_divides():
    # A real float32 input and the AI Edge int16 input scale: x * float32(1/scale) is 29605.5 in
    # float32 (a tie, to even: 29606), x / scale is 29605.498 (29605). The runtime multiplies.
    x = np.array([1063728420], np.uint32).view(np.float32)[0]
    scale = 3.050631312362384e-05
    assert np.rint(x / np.float32(scale)) == 29605
    assert _q(x, scale, 0, np.int16) == 29606


def test_clipped_to_the_integer_type_and_dequantized_exactly():
    assert _q(1.0, 1 / 255, -128) == 127 and _q(1.0, 1 / 300, -128) == 127  # 172 -> 127
    assert _q(1.0, 1 / 255, 0, np.uint8) == 255
    assert _q(1.0, 3.0e-05, 0, np.int16) == 32767  # 33333 -> 32767
    raw = np.array([-128, -1, 0, 127], np.int8)
    np.testing.assert_array_equal(dequantize(raw, 0.5, -128), np.array([0.0, 63.5, 64.0, 127.5], np.float32))
    assert dequantize(raw, 0.5, -128).dtype == np.float32


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="scale must be > 0"):
        quantize(np.zeros(2, np.float32), 0.0, 0, np.int8)
    with pytest.raises(ValueError, match="integer dtype"):
        quantize(np.zeros(2, np.float32), 0.1, 0, np.float32)


def test_pixels_are_pixel_over_255_then_the_rule():
    pixels = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(pixels_to_unit(pixels), pixels.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(quantize_pixels(pixels, 1 / 255, -128, np.int8), np.arange(-128, 128))


def test_runner_fast_quantization_equals_the_rule_at_ties_and_on_every_pixel(tflite_variants):
    runner = Runner(tflite_variants["int8"])
    spec = runner.input
    # float32 inputs whose product with the reciprocal is exactly k + 0.5: the ties
    inv = np.float32(1.0 / spec.scale)
    candidates = ((np.arange(255, dtype=np.float32) + np.float32(0.5)) / inv).astype(np.float32)
    ties = candidates[(candidates * inv) % 1 == 0.5]
    assert len(ties) > 10
    rng = np.random.default_rng(0)
    floats = np.concatenate([ties, pixels_to_unit(np.arange(256, dtype=np.uint8)), rng.random(20000, np.float32),
                             np.float32([0.0, 1.0])])
    floats = floats[: len(floats) // 784 * 784].reshape(-1, 28, 28, 1)
    np.testing.assert_array_equal(runner.quantize_input(floats), quantize(floats, spec.scale, spec.zero_point, spec.dtype))
    raw = np.arange(-128, 128, dtype=np.int8)
    np.testing.assert_array_equal(runner.dequantize_output(raw), dequantize(raw, runner.output.scale, runner.output.zero_point))


def test_the_firmware_test_digits_use_the_rule():
    from edgemnist.micro import check

    images = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    for scale, zero_point in ((1 / 255, -128), (0.25 / 255, 3), (0.003920001443475485, -128)):
        np.testing.assert_array_equal(check.quantize_images(images, scale, zero_point)[..., 0],
                                      quantize_pixels(images, scale, zero_point, np.int8))


def test_the_c_templates_name_the_owner_in_comments_that_never_reach_the_firmware():
    from pathlib import Path

    from edgemnist.micro import firmware

    for name in ("model_settings.h.tmpl", "README.md.tmpl"):
        notes = [line for line in (firmware.TEMPLATES / name).read_text().splitlines()
                 if line.startswith(firmware.TEMPLATE_COMMENT)]
        assert any("edgemnist/runtime/quantize.py" in line for line in notes), name
    assets = Path(__file__).resolve().parents[2] / "firmware_assets"
    for path in assets.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert "{#" not in text and "runtime/quantize.py" not in text, path
