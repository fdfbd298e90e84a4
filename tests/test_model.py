"""The model family's shapes: the space-to-depth stem is an exact pixel rearrangement."""
import numpy as np
import pytest

from edgemnist.model import ModelConfig, build_ds_cnn, model_summary


def test_space_to_depth_stem_puts_each_2x2_block_in_4_channels():
    from edgemnist._tensorflow import keras

    model = build_ds_cnn(ModelConfig(stem="space_to_depth", stem_kernel=2))
    blocks = keras().Model(model.input, model.get_layer("stem_space_to_depth").output)
    image = np.arange(28 * 28, dtype=np.float32).reshape(1, 28, 28, 1)
    out = blocks(image).numpy()
    assert out.shape == (1, 14, 14, 4)
    for i, j in ((0, 0), (3, 5), (13, 13)):
        assert out[0, i, j].tolist() == [image[0, 2 * i, 2 * j, 0], image[0, 2 * i, 2 * j + 1, 0],
                                         image[0, 2 * i + 1, 2 * j, 0], image[0, 2 * i + 1, 2 * j + 1, 0]]
    stem = model.get_layer("stem")
    assert stem.strides == (1, 1) and stem.output_shape[1:3] == (14, 14)
    assert model_summary(model)["macs"] > 0


def test_unknown_stem_is_named():
    with pytest.raises(ValueError, match="'pixels'"):
        ModelConfig(stem="pixels")
