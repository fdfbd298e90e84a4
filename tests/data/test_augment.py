"""Tests for edgemnist/data/augment.py: the warp against exact references, elastic distortion, the seeded pipeline."""
from __future__ import annotations

import numpy as np
import pytest

from edgemnist import data
from edgemnist.data import augment


def test_augmented_pipeline_is_deterministic(mnist_test):
    subset = mnist_test.head(64)

    def first_batch():
        from edgemnist._tensorflow import keras

        keras().utils.set_random_seed(1)
        ds = augment.make_dataset(subset, 32, shuffle=True, augment=True, seed=1)
        x, y = next(iter(ds))
        return x.numpy(), y.numpy()

    (x1, y1), (x2, y2) = first_batch(), first_batch()
    assert x1.shape == (32, 28, 28, 1) and 0.0 <= x1.min() and x1.max() <= 1.0
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_allclose(x1, x2)
    # augmentation really changes the pixels
    originals = data.to_model_input(subset.images)
    assert not any(np.allclose(x1[0], o) for o in originals)


def test_augmentation_settings(mnist_test):
    subset = mnist_test.head(32)
    originals = data.to_model_input(subset.images)
    # no rotation, shift or elastic distortion: the pipeline hands the images through untouched
    none = augment.Augmentation(rotation=0, shift=0, elastic=0)
    x, _ = next(iter(augment.make_dataset(subset, 32, shuffle=False, augment=none, seed=0)))
    np.testing.assert_array_equal(x.numpy(), originals)
    # rotation alone changes the pixels but keeps the range
    turn = augment.Augmentation(rotation=20, shift=0, elastic=0)
    x, _ = next(iter(augment.make_dataset(subset, 32, shuffle=False, augment=turn, seed=0)))
    x = x.numpy()
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert sum(not np.allclose(a, b, atol=1e-3) for a, b in zip(x, originals)) >= 30
    for bad in ({"rotation": -1}, {"shift": 9}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            augment.Augmentation(**bad)


def test_bilinear_warp_samples_the_source_pixel():
    from edgemnist._tensorflow import import_tensorflow

    tf = import_tensorflow()
    rng = np.random.default_rng(0)
    images = rng.random((3, 28, 28, 1)).astype(np.float32)
    zeros = np.zeros((3, 28, 28), np.float32)
    # one pixel down: row r takes row r + 1, the last row comes from outside (0)
    out = augment.bilinear_warp(tf.constant(images), zeros + 1, zeros).numpy()
    np.testing.assert_allclose(out[:, :-1], images[:, 1:], atol=1e-6)
    np.testing.assert_array_equal(out[:, -1], 0)
    # half a pixel left: the mean of a pixel and its left neighbour
    out = augment.bilinear_warp(tf.constant(images), zeros, zeros - 0.5).numpy()
    np.testing.assert_allclose(out[:, :, 1:], (images[:, :, 1:] + images[:, :, :-1]) / 2, atol=1e-6)
    np.testing.assert_allclose(out[:, :, 0], images[:, :, 0] / 2, atol=1e-6)
    # far outside: all 0
    assert augment.bilinear_warp(tf.constant(images), zeros + 40, zeros).numpy().max() == 0


def test_geometric_transform_rotates_and_shifts_about_the_centre():
    from edgemnist._tensorflow import import_tensorflow

    tf = import_tensorflow()
    images = np.random.default_rng(1).random((2, 28, 28, 1)).astype(np.float32)
    zero = tf.zeros(2)
    same = augment.geometric_transform(tf.constant(images), zero, zero, zero).numpy()
    np.testing.assert_allclose(same, images, atol=1e-6)
    # a quarter turn is np.rot90 (either way round: the angle's range is symmetric)
    turned = augment.geometric_transform(tf.constant(images), zero + np.pi / 2, zero, zero).numpy()
    assert any(np.allclose(turned, np.rot90(images, k, axes=(1, 2)), atol=1e-4) for k in (1, 3))
    # a 3-pixel shift moves the content by 3 pixels; what comes in from outside is 0
    moved = augment.geometric_transform(tf.constant(images), zero, zero + 3, zero).numpy()
    np.testing.assert_allclose(moved[:, 3:], images[:, :-3], atol=1e-5)
    np.testing.assert_array_equal(moved[:, :3], 0)
    # an added displacement field is one more offset per pixel
    field = tf.ones((2, 28, 28))
    np.testing.assert_allclose(augment.geometric_transform(tf.constant(images), zero, zero, zero, field, 0 * field),
                               augment.bilinear_warp(tf.constant(images), field, 0 * field), atol=1e-6)


def test_smoothing_matrix_is_a_gaussian_convolution():
    m = augment._smoothing_matrix(28, 4.0)
    np.testing.assert_allclose(m, m.T)
    assert m[14].sum() == pytest.approx(1.0, abs=1e-5) and m[0].sum() < 0.6  # zeros outside the image
    assert m[14, 14] > m[14, 18] > m[14, 22] > 0 and m[14, 27] == 0  # 3 sigma = 12 pixels


def test_elastic_distortion(mnist_test):
    from edgemnist._tensorflow import import_tensorflow

    tf = import_tensorflow()
    subset = mnist_test.head(64)
    originals = tf.constant(data.to_model_input(subset.images))
    seed = tf.constant([3, 4], tf.int64)
    elastic = augment.augmenter(augment.Augmentation(rotation=0, shift=0, elastic=34))
    identity = augment.augmenter(augment.Augmentation(rotation=0, shift=0, elastic=0))
    np.testing.assert_array_equal(identity(originals, seed).numpy(), originals.numpy())
    a = elastic(originals, seed).numpy()
    np.testing.assert_array_equal(a, elastic(originals, seed).numpy())
    assert not np.allclose(a, elastic(originals, seed + 1).numpy())
    assert 0.0 <= a.min() and a.max() <= 1.0
    assert sum(not np.allclose(x, o, atol=1e-3) for x, o in zip(a, originals.numpy())) == 64
    # a smooth warp moves ink around but keeps about as much of it
    ink_ratio = a.sum(axis=(1, 2, 3)) / originals.numpy().sum(axis=(1, 2, 3))
    assert 0.4 < ink_ratio.min() and ink_ratio.max() < 2.0 and 0.9 < ink_ratio.mean() < 1.1
    # Simard et al.'s alpha 34, sigma 4: about 1.4 pixels RMS of displacement away from the border
    noise = np.random.default_rng(0).uniform(-1, 1, (200, 28, 28))
    m = augment._smoothing_matrix(28, 4.0)
    rms = np.sqrt(np.mean((34 * m @ noise @ m.T)[:, 8:20, 8:20] ** 2))
    assert 1.2 < rms < 1.6, rms
    # in the pipeline: a fresh field every epoch, the same ones for the same seed
    settings = augment.Augmentation(rotation=0, shift=0, elastic=34)
    ds = augment.make_dataset(subset, 32, shuffle=False, augment=settings, seed=0)
    first, second = [x.numpy() for x, _ in ds], [x.numpy() for x, _ in ds]
    again = [x.numpy() for x, _ in augment.make_dataset(subset, 32, shuffle=False, augment=settings, seed=0)]
    assert not np.allclose(first[0], second[0])
    np.testing.assert_array_equal(first[0], again[0])
    for bad in ({"elastic": -1}, {"elastic_sigma": 0.1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            augment.Augmentation(**bad)


def test_one_hot_labels_are_the_integer_labels(mnist_test):
    subset = mnist_test.head(40)
    plain = [y.numpy() for _, y in augment.make_dataset(subset, 16, shuffle=True, augment=False, seed=2)]
    hot = [y.numpy() for _, y in augment.make_dataset(subset, 16, shuffle=True, augment=False, seed=2, one_hot=True)]
    assert hot[0].shape == (16, data.NUM_CLASSES) and hot[0].dtype == np.float32
    np.testing.assert_array_equal(np.concatenate(hot).argmax(axis=1), np.concatenate(plain))
    assert sorted(np.concatenate(plain)) == sorted(subset.labels)
