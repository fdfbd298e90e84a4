"""edgemnist.micro.check: TFLite Micro (host build) against LiteRT on the same int8 inputs."""
from __future__ import annotations

import numpy as np
import pytest

from edgemnist.micro import check as micro_check
from edgemnist.runtime import tflite_info


@pytest.fixture(scope="module")
def int8_path(micro_firmware):
    return micro_firmware["model"]


@pytest.fixture(scope="module")
def model_input(int8_path, mnist_test):
    scale, zero_point = tflite_info.input_quantization(tflite_info.read_model(int8_path))
    return micro_check.quantize_images(mnist_test.images, scale, zero_point)


@pytest.fixture(scope="module")
def arena_size(micro_firmware):
    return micro_firmware["manifest"]["arena"]["stated"]


def test_quantize_images_uses_the_models_parameters():
    images = np.array([[[0, 51, 255]]], np.uint8)  # pixel / 255 = 0, 0.2, 1
    np.testing.assert_array_equal(micro_check.quantize_images(images, 1 / 255, -128)[..., 0], [[[-128, -77, 127]]])
    assert micro_check.quantize_images(images, 1 / 510, -128).max() == 127  # clamped to int8


@pytest.mark.slow
def test_micro_agrees_with_litert_on_500_digits(int8_path, model_input, arena_size, mnist_test):
    check = micro_check.compare_with_litert(int8_path, model_input, arena_size)
    print(f"TFLite Micro vs LiteRT on {check['digits']} digits: {check}")
    assert check["digits"] == 500
    # LiteRT's builtin int8 kernels and TFLite Micro's come from the same reference code.
    assert check["builtin"]["argmax_agreement"] >= 0.999
    assert check["builtin"]["max_abs_diff"] <= 1
    # XNNPACK (LiteRT's default on CPUs) rounds differently: up to a few levels after softmax,
    # so digits the model is unsure of can flip; the weakly trained test model has many.
    assert check["xnnpack"]["argmax_agreement"] >= 0.98
    micro = micro_check.micro_predict(int8_path, model_input, arena_size)
    assert np.mean(micro.argmax(1) == mnist_test.labels) > 0.5  # a real classifier, not one constant class
    again = micro_check.compare_with_litert(int8_path, model_input, arena_size, micro=micro)
    assert again == check  # given TFLite Micro's outputs, the same comparison


def test_litert_takes_the_model_as_a_path_or_its_bytes(int8_path, model_input):
    by_path = micro_check.litert_raw_outputs(int8_path, model_input[:20])
    assert by_path.shape == (20, 10) and by_path.dtype == np.int8
    np.testing.assert_array_equal(micro_check.litert_raw_outputs(int8_path.read_bytes(), model_input[:20]), by_path)


def test_too_little_agreement_refuses_the_model():
    check = {"digits": 20, "builtin": {"argmax_agreement": 0.85, "max_abs_diff": 9}}
    with pytest.raises(ValueError, match=r"m.tflite: TFLite Micro and LiteRT agree on only 85% of the 20 test digits"):
        micro_check.require_agreement(check, "m.tflite")
    micro_check.require_agreement({**check, "builtin": {"argmax_agreement": 0.95, "max_abs_diff": 1}}, "m.tflite")
