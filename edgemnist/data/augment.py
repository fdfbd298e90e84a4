"""Training-time input: random geometric augmentation and the tf.data pipeline that applies it.

Usage: from edgemnist import augment; ds = augment.make_dataset(split, 128, shuffle=True, augment=True, seed=0)

Every augmentation (rotation, shift and Simard et al.'s elastic distortion) is one bilinear
warp per image, vectorised over the batch, with one stateless seed per batch and epoch: the
same seed gives the same batches. Imports TensorFlow, lazily; the device side never loads
this module (it reads data with `edgemnist.data` alone).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgemnist.data import IMAGE_SIZE, NUM_CLASSES, Split, to_model_input


@dataclass(frozen=True)
class Augmentation:
    """Random geometry applied to each training image: rotation, shift and elastic distortion.

    The elastic distortion is Simard et al.'s (2003): a random displacement field, uniform in
    [-1, 1] per pixel and axis, smoothed by a Gaussian of `elastic_sigma` pixels and scaled by
    `elastic` (their MNIST setting: 34 and 4, about 1.4 pixels of displacement RMS).
    """

    rotation: float = 8.0  # degrees, either way
    shift: float = 2.0  # pixels, each axis, either way
    elastic: float = 20.0  # scale alpha of the smoothed displacement field (0 = none): ~0.8 px RMS
    elastic_sigma: float = 4.0  # smoothness of that field: Gaussian standard deviation, pixels

    def __post_init__(self):
        if not 0 <= self.rotation <= 45:
            raise ValueError(f"rotation must be in [0, 45] degrees, got {self.rotation}")
        if not 0 <= self.shift <= 8:
            raise ValueError(f"shift must be in [0, 8] pixels, got {self.shift}")
        if not 0 <= self.elastic <= 100:
            raise ValueError(f"elastic must be in [0, 100], got {self.elastic}")
        if not 0.5 <= self.elastic_sigma <= 10:
            raise ValueError(f"elastic_sigma must be in [0.5, 10] pixels, got {self.elastic_sigma}")


def _smoothing_matrix(size: int, sigma: float) -> np.ndarray:
    """(size, size) matrix M: M @ v is v convolved with a normalised Gaussian, zeros outside."""
    radius = int(np.ceil(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    offsets = np.arange(size)[None, :] - np.arange(size)[:, None]
    return np.where(np.abs(offsets) <= radius, taps[np.clip(offsets + radius, 0, 2 * radius)], 0).astype(np.float32)


def bilinear_warp(images, dy, dx):
    """out[n, r, c] = images[n, r + dy[n, r, c], c + dx[n, r, c]], bilinear; pixels from outside are 0.

    Args:
        images: (N, H, W, 1) float tensor with static H and W.
        dy: (N, H, W) row offsets in pixels.
        dx: (N, H, W) column offsets in pixels.

    Returns:
        The warped (N, H, W, 1) tensor.
    """
    from edgemnist._tensorflow import import_tensorflow

    return _bilinear_warp(import_tensorflow(), images, dy, dx)


def _bilinear_warp(tf, images, dy, dx):
    n, h, w = tf.shape(images)[0], images.shape[1], images.shape[2]
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    # source coordinates in the image padded by one zero pixel on each side
    y = tf.clip_by_value(rows + 1.0 + dy, 0.0, h + 1.0)
    x = tf.clip_by_value(cols + 1.0 + dx, 0.0, w + 1.0)
    y0 = tf.minimum(tf.floor(y), h)
    x0 = tf.minimum(tf.floor(x), w)
    wy, wx = (y - y0)[..., None], (x - x0)[..., None]
    y0, x0 = tf.cast(y0, tf.int32), tf.cast(x0, tf.int32)
    padded = tf.reshape(tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]]), [-1, 1])
    corner = tf.reshape(tf.range(n) * (h + 2) * (w + 2), [-1, 1, 1]) + y0 * (w + 2) + x0

    def at(offset):
        return tf.gather(padded, corner + offset)

    top = at(0) * (1 - wx) + at(1) * wx
    bottom = at(w + 2) * (1 - wx) + at(w + 3) * wx
    return top * (1 - wy) + bottom * wy


def geometric_transform(images, angle, shift_y, shift_x, field_y=None, field_x=None):
    """Rotates and shifts each image about its centre, then displaces each pixel by a field.

    One bilinear resampling for all of it; what comes from outside the image is 0.

    Args:
        images: (N, H, W, 1) float tensor with static H and W.
        angle: (N,) rotation of each image, radians.
        shift_y: (N,) shift of each image down, pixels.
        shift_x: (N,) shift of each image right, pixels.
        field_y: (N, H, W) extra row displacement per pixel, or None.
        field_x: (N, H, W) extra column displacement per pixel (with field_y), or None.

    Returns:
        The transformed (N, H, W, 1) tensor.
    """
    from edgemnist._tensorflow import import_tensorflow

    return _geometric_transform(import_tensorflow(), images, angle, shift_y, shift_x, field_y, field_x)


def _geometric_transform(tf, images, angle, shift_y, shift_x, field_y=None, field_x=None):
    h, w = images.shape[1], images.shape[2]
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float32) - (h - 1) / 2,
                             np.arange(w, dtype=np.float32) - (w - 1) / 2, indexing="ij")
    # output pixel p (relative to the centre) shows the input at R(angle) p - shift
    cos, sin = (tf.reshape(f(angle), [-1, 1, 1]) for f in (tf.cos, tf.sin))
    src_y = cos * rows - sin * cols - tf.reshape(shift_y, [-1, 1, 1])
    src_x = sin * rows + cos * cols - tf.reshape(shift_x, [-1, 1, 1])
    dy, dx = src_y - rows, src_x - cols
    if field_y is not None:
        dy, dx = dy + field_y, dx + field_x
    return _bilinear_warp(tf, images, dy, dx)


def augmenter(settings: Augmentation):
    """The random geometry of `settings` as a function for tf.data, one warp per image.

    The elastic field is uniform noise in [-1, 1] smoothed by a Gaussian (two matrix
    products) and scaled.

    Args:
        settings: the ranges of the random rotation, shift and elastic distortion.

    Returns:
        A function (images, seed) -> images of (N, 28, 28, 1) batches; `seed` is a
        stateless-RNG seed (shape [2]): the same seed gives the same batch.
    """
    from edgemnist._tensorflow import import_tensorflow

    tf = import_tensorflow()
    rotation = float(np.deg2rad(settings.rotation))
    shift, alpha = float(settings.shift), float(settings.elastic)
    smooth = _smoothing_matrix(IMAGE_SIZE, float(settings.elastic_sigma))

    def augment(images, seed):
        n = tf.shape(images)[0]
        # Five streams, one per random quantity; stream 1 drew a zoom factor, an augmentation since
        # removed. It stays reserved so that a seed keeps giving the same rotations, shifts and fields.
        seeds = tf.random.experimental.stateless_split(seed, num=5)

        def uniform(i, shape, bound):
            return tf.random.stateless_uniform(shape, seed=seeds[i], minval=-bound, maxval=bound)

        angle = uniform(0, [n], rotation)
        shift_y, shift_x = uniform(2, [n], shift), uniform(3, [n], shift)
        field_y = field_x = None
        if alpha:
            noise = uniform(4, tf.stack([n, 2, images.shape[1], images.shape[2]]), 1.0)
            field = alpha * tf.matmul(tf.matmul(smooth, noise), smooth, transpose_b=True)
            field_y, field_x = field[:, 0], field[:, 1]
        return _geometric_transform(tf, images, angle, shift_y, shift_x, field_y, field_x)

    return augment


def make_dataset(split: Split, batch_size: int, *, shuffle: bool, augment, seed: int, one_hot: bool = False):
    """A tf.data pipeline of (image in [0, 1], label) batches.

    Args:
        split: the images and labels.
        batch_size: images per batch (the last batch may be smaller).
        shuffle: reshuffle every epoch (seeded by `seed`).
        augment: False, True (the default `Augmentation`) or an `Augmentation`. It runs on
            whole batches, vectorised (one bilinear warp per image for all of its geometry), so
            it does not starve the model on a 2-core machine.
        seed: seeds the shuffle and the augmentation: the same seed gives the same batches.
        one_hot: labels as one-hot float vectors (for categorical losses) instead of integers.

    Returns:
        A prefetching tf.data.Dataset.
    """
    from edgemnist._tensorflow import import_tensorflow

    tf = import_tensorflow()
    ds = tf.data.Dataset.from_tensor_slices((to_model_input(split.images), split.labels.astype(np.int32)))
    if shuffle:
        ds = ds.shuffle(min(len(split), 60000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if augment is True:
        augment = Augmentation()
    if augment and (augment.rotation or augment.shift or augment.elastic):
        # one stateless seed per batch, drawn afresh each epoch: deterministic for a given seed
        seeds = tf.data.Dataset.random(seed=seed + 3, rerandomize_each_iteration=True).batch(2)
        warp = augmenter(augment)
        ds = tf.data.Dataset.zip((ds, seeds)).map(lambda batch, s: (warp(batch[0], s), batch[1]),
                                                  num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    if one_hot:
        ds = ds.map(lambda x, y: (x, tf.one_hot(y, NUM_CLASSES)))
    return ds
