"""The model family's shapes: the space-to-depth stem is an exact pixel rearrangement."""
import numpy as np
import pytest

from edgemnist.training.model import ModelConfig, build_ds_cnn, build_model, model_summary


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


def test_space_to_depth_stem_keeps_every_tensor_4d():
    # TFLite Micro's CMSIS-NN TRANSPOSE takes at most 4 dimensions (a 5-D one returned success
    # with a stale output on Cortex-M), so no layer of the stem may produce a 5-D tensor.
    model = build_ds_cnn(ModelConfig(stem="space_to_depth", stem_kernel=2))
    stem_layers = [layer for layer in model.layers if layer.name.startswith("stem")]
    assert [type(layer).__name__ for layer in stem_layers[:4]] == ["Reshape", "Permute", "Reshape", "Permute"]
    assert all(len(layer.output_shape) <= 4 for layer in model.layers)


def test_unknown_stem_is_named():
    with pytest.raises(ValueError, match="'pixels'"):
        ModelConfig(stem="pixels")


def test_pool_before_pointwise_runs_the_pointwise_convolution_on_the_pooled_map():
    shape = dict(stem="conv", stem_kernel=3, stem_channels=8, block_channels=(16, 16), dilation_rates=(1, 1),
                 global_pool="average_pool")
    pooled = build_ds_cnn(ModelConfig(pool_after=(2,), pool_before_pointwise=(1,), **shape))
    after = build_ds_cnn(ModelConfig(pool_after=(1, 2), **shape))
    assert pooled.get_layer("block1_conv_dw").output_shape[1:3] == (14, 14)
    assert pooled.get_layer("block1_pool_dw").output_shape[1:3] == (7, 7)
    assert pooled.get_layer("block1_conv_pw").output_shape[1:3] == (7, 7)
    assert after.get_layer("block1_conv_pw").output_shape[1:3] == (14, 14)
    # the same weights, a quarter of the pointwise convolution's work
    assert pooled.count_params() == after.count_params()
    assert model_summary(pooled)["macs"] < model_summary(after)["macs"]
    with pytest.raises(ValueError, match=r"pool_before_pointwise \(3,\) must name blocks 1\.\.2"):
        ModelConfig(pool_after=(2,), pool_before_pointwise=(3,), **shape)


def test_conv_classifier_is_the_dense_classifier_as_a_convolution():
    """The same weights in a Conv2D over the whole map give the Flatten + Dense model's scores."""
    shape = dict(stem="conv", stem_kernel=3, stem_channels=8, block_channels=(8,), dilation_rates=(1,),
                 pool_after=(0,), global_pool="flatten")
    dense = build_ds_cnn(ModelConfig(**shape))
    conv = build_ds_cnn(ModelConfig(classifier="conv", **shape))
    assert conv.get_layer("classifier").kernel_size == (7, 7) and conv.output_shape == (None, 10)
    assert conv.count_params() == dense.count_params()
    for layer in dense.layers:
        weights = layer.get_weights()
        if layer.name == "classifier":
            weights = [weights[0].reshape(conv.get_layer("classifier").kernel.shape), weights[1]]
        if weights:
            conv.get_layer(layer.name).set_weights(weights)
    images = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    np.testing.assert_allclose(conv(images).numpy(), dense(images).numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match='classifier "conv" needs a 4-D map'):
        ModelConfig(classifier="conv")  # the default global_pool, "mean", leaves a vector
    with pytest.raises(ValueError, match="classifier must be one of dense, conv, got 'svm'"):
        ModelConfig(classifier="svm")


def test_a_shape_for_the_fixed_shape_model_is_an_error():
    with pytest.raises(ValueError, match=r"'tutorial_cnn' has a fixed shape; the ds_cnn settings stem_channels=16, "
                                         r"width_multiplier=0\.5 do not apply"):
        build_model("tutorial_cnn", ModelConfig(stem_channels=16, width_multiplier=0.5))
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        build_model("resnet")
    assert build_model("tutorial_cnn", ModelConfig()).name == "tutorial_cnn"  # the defaults are no conflict


def test_precise_batchnorm_sets_the_moving_statistics_to_the_data_and_keeps_the_weights(mnist_train):
    from edgemnist._tensorflow import keras
    from edgemnist.data import to_model_input
    from edgemnist.training.model import recalibrate_batchnorm

    model = build_ds_cnn(ModelConfig(stem_channels=8, block_channels=(16, 24), dilation_rates=(2, 1),
                                     pool_after=(1,)))
    images = to_model_input(mnist_train.images[:300])
    bn = model.get_layer("stem_bn")
    weights = [w.copy() for w in model.get_weights()]
    bn.moving_mean.assign(np.full(8, 5.0, np.float32))  # stale statistics
    assert recalibrate_batchnorm(model, images, batch_size=100) == 300
    stem_out = keras().Model(model.input, model.get_layer("stem").output)(images).numpy()
    np.testing.assert_allclose(bn.moving_mean.numpy(), stem_out.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5)
    assert bn.momentum == pytest.approx(0.9)  # restored
    changed = [i for i, (a, b) in enumerate(zip(weights, model.get_weights())) if not np.array_equal(a, b)]
    moving = {id(v) for layer in model.layers if "bn" in layer.name for v in (layer.moving_mean, layer.moving_variance)}
    all_vars = model.weights
    assert changed and all(id(all_vars[i]) in moving for i in changed)  # only moving statistics moved


def test_one_loader_reads_plain_and_qat_models_and_names_a_bad_file(tmp_path):
    from edgemnist._tensorflow import import_tfmot, keras
    from edgemnist.training.model import load_keras_model
    from edgemnist.training.optimize import save_model

    k = keras()
    plain = k.Sequential([k.Input((28, 28, 1)), k.layers.Conv2D(2, 3), k.layers.Flatten(), k.layers.Dense(10)])
    qat = import_tfmot().quantization.keras.quantize_model(plain)
    save_model(plain, tmp_path / "plain.keras")
    save_model(qat, tmp_path / "qat.h5")
    image = np.random.default_rng(0).random((1, 28, 28, 1), np.float32)
    for model, name in ((plain, "plain.keras"), (qat, "qat.h5")):
        loaded = load_keras_model(tmp_path / name)
        np.testing.assert_array_equal(loaded(image).numpy(), model(image).numpy())
    assert any("quant" in layer.name for layer in load_keras_model(tmp_path / "qat.h5").layers)
    (tmp_path / "bad.keras").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="bad.keras: not a loadable Keras model"):
        load_keras_model(tmp_path / "bad.keras")
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        load_keras_model(tmp_path / "missing.h5")
