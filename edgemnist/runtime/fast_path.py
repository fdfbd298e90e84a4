"""The single-image fast path of `Runner`: one image in, scores out, in a few numpy calls.

Usage: from edgemnist.runtime.fast_path import SingleImagePath  (made by Runner; call runner.predict_one)

Beside a model this small, every numpy call's fixed cost shows (benchmarks/bench_overhead.py),
so the path does as few as it can, into buffers made once with the image's own shape,
written straight into the interpreter's own input tensor and read from its output tensor.
Quantization is the one rule of `quantize.quantize`, computed with a rounding trick
(multiply, add, integer cast); uint8 pixels take one table look-up. `Runner` checks the
path against its plain reference (`predict_one_reference`) at load time, and the tests
check it bit for bit.
"""
from __future__ import annotations

import numpy as np

from edgemnist.runtime.quantize import dequantize, pixels_to_unit, scale_inverse

# float32 bits of 1.0: a non-negative float32 in [0, 1] has its bits, read as uint32, at
# most this; negative values (sign bit), NaN and infinities all read larger.
ONE_BITS = np.float32(1.0).view(np.uint32)
# Adding 1.5 * 2**23 to a float32 of magnitude < 2**22 rounds it to an integer (half to
# even, like np.rint) held in the low mantissa bits, so quantization is one multiply, one
# add and an integer cast.
_ROUNDING_MAGIC = 12582912.0
FLOAT32, UINT8 = np.dtype(np.float32), np.dtype(np.uint8)  # native-order dtypes are singletons


class SingleImagePath:
    """Quantize, invoke and dequantize one image with pre-allocated buffers.

    Attributes:
        floats: float32 image (image_shape or (1,) + image_shape) in [0, 1] -> float32 scores.
        pixels: uint8 image of the same shapes -> float32 scores.
        scale_inv, offset: the float32 constants of the quantizing multiply and add (None for
            a float input).
    """

    def __init__(self, interpreter, input_spec, output_spec, image_shape: tuple, path):
        """Prepares the path for a Runner's batch-1 interpreter.

        Args:
            interpreter: the allocated batch-1 interpreter (never resized afterwards).
            input_spec, output_spec: the Runner's TensorSpecs.
            image_shape: the shape of one image.
            path: the model file, for messages.

        Raises:
            ValueError: an input quantization that does not map [0, 1] into its type, or an
                integer input without quantization parameters.
        """
        self._interpreter, self.input, self.output = interpreter, input_spec, output_spec
        self.image_shape = tuple(image_shape)
        spec = input_spec
        self.scale_inv = scale_inverse(spec.scale) if spec.quantized else None
        self.offset = np.float32(_ROUNDING_MAGIC + spec.zero_point) if spec.quantized else None
        self._clip = None  # set when 1.0 lands just past the integer range (AI Edge int16: 32780 > 32767)
        if spec.quantized:
            info = np.iinfo(spec.dtype)
            lo, hi = spec.zero_point, 1.0 / spec.scale + spec.zero_point
            if info.max + 0.5 < hi <= info.max + 0.01 * (info.max - info.min):
                self._clip = np.float32(info.max - spec.zero_point)
                hi = info.max
            if not (spec.scale > 0 and info.min <= lo and hi <= info.max + 0.5 and abs(hi) < 2 ** 22):
                raise ValueError(
                    f"{path}: input quantization (scale {spec.scale}, zero point {spec.zero_point}) "
                    f"does not map [0, 1] into {np.dtype(spec.dtype).name}"
                )
        elif not np.issubdtype(spec.dtype, np.floating):
            raise ValueError(
                f"{path}: input is {np.dtype(spec.dtype).name} without quantization parameters; "
                "expected float32 or a quantized integer input"
            )
        out = output_spec
        self._out_table = None  # 8-bit outputs dequantize by table look-up: one numpy call
        if out.quantized and np.dtype(out.dtype).itemsize == 1:
            info = np.iinfo(out.dtype)
            codes = np.arange(info.min, info.max + 1)
            self._out_table = np.empty(256, np.float32)
            # indexed by the raw codes read as uint8: negative int8 codes wrap to the upper half
            self._out_table[codes.astype(np.uint8)] = dequantize(codes, out.scale, out.zero_point)
        # uint8 pixel -> model input, computed as pixel / 255 (data.to_model_input) then quantized
        self._pixel_table = self.quantize(pixels_to_unit(np.arange(256, dtype=np.uint8))).astype(spec.dtype)
        self.floats, self.pixels = self._single_call(direct=True)
        public = self._single_call(direct=False)
        probe = np.linspace(0.0, 1.0, int(np.prod(self.image_shape)), dtype=np.float32).reshape(self.image_shape)
        try:
            agrees = np.array_equal(self.floats(probe), public[0](probe))
        except Exception:  # noqa: BLE001 - any trouble with the direct views: use the public API
            agrees = False
        if not agrees:
            self.floats, self.pixels = public

    # ------------------------------------------------------------------ arithmetic

    def quantize(self, images: np.ndarray, out=None) -> np.ndarray:
        """Checked float images in [0, 1] -> the model's input dtype: `quantize.quantize`, fast.

        Args:
            images: float32 (N,) + image_shape, already checked.
            out: optional array of the model's input dtype to write into.

        Returns:
            The model input (quantized, or the float images themselves for a float model).
        """
        if self.scale_inv is None:
            if out is None:
                return images
            np.copyto(out, images, casting="same_kind")
            return out
        scaled = np.multiply(images, self.scale_inv)
        if self._clip is not None:
            np.minimum(scaled, self._clip, out=scaled)
        np.add(scaled, self.offset, out=scaled)
        # the rounded integer sits in the low bits; the cast keeps them (two's complement)
        quantized = scaled.view(np.int32)
        if out is None:
            return quantized.astype(self.input.dtype)
        np.copyto(out, quantized, casting="unsafe")
        return out

    def dequantize(self, raw: np.ndarray) -> np.ndarray:
        """The model's raw output -> float32 scores (`quantize.dequantize`; 8-bit by table)."""
        if self._out_table is not None:
            return self._out_table[raw]
        if self.output.quantized:
            return dequantize(raw, self.output.scale, self.output.zero_point)
        return raw.astype(np.float32, copy=False)

    # ------------------------------------------------------------------ the calls

    def _single_call(self, direct: bool):
        """Two functions of one image (image_shape or (1,) + image_shape) -> float32 scores:
        one for float32 images in [0, 1], one for uint8 pixels.

        All into buffers made here with the image's own shape (broadcasting costs as much as
        the arithmetic at this size). With `direct`, the input is written straight into the
        interpreter's input buffer and the output read from its output buffer; otherwise
        through set_tensor / get_tensor.
        """
        interpreter, spec, out = self._interpreter, self.input, self.output
        invoke = interpreter.invoke
        views = tensor_views(interpreter, spec, out) if direct else None
        batch_shape, image_shape = spec.shape, self.image_shape
        ndim = len(batch_shape)
        in_batch = views[0] if views is not None else np.empty(batch_shape, spec.dtype)
        in_image = in_batch.reshape(image_shape)
        table = self._out_table  # indexed by the raw 8-bit codes read as uint8
        if views is not None:
            raw_row = views[1][0].view(np.uint8) if table is not None else views[1][0]

            def run():
                invoke()
                return raw_row
        else:
            in_index, out_index, set_tensor, get_tensor = spec.index, out.index, \
                interpreter.set_tensor, interpreter.get_tensor
            as_codes = table is not None

            def run():
                set_tensor(in_index, in_batch)
                invoke()
                row = get_tensor(out_index)[0]
                return row.view(np.uint8) if as_codes else row

        if table is not None:
            dequantize_raw = table.take
        elif out.quantized:  # 16-bit outputs: arithmetic, which makes a new array
            dequantize_raw = self.dequantize
        else:
            def dequantize_raw(raw):
                return raw.astype(np.float32)  # a copy: the buffer is overwritten by the next call

        lut = self._pixel_table

        def pixels(image):
            # every uint8 is a valid pixel: one table look-up quantizes it, no range check
            lut.take(image, None, in_batch if image.ndim == ndim else in_image, "clip")
            return dequantize_raw(run())

        reduce_max, copyto = np.maximum.reduce, np.copyto
        if self.scale_inv is None and np.dtype(spec.dtype) == FLOAT32:
            in_bits = in_batch.view(np.uint32).reshape(-1)

            def floats(image):
                copyto(in_batch if image.ndim == ndim else in_image, image)
                if reduce_max(in_bits, None) > ONE_BITS:  # checked in place: no view of the image needed
                    raise_out_of_range(image)
                return dequantize_raw(run())
            return floats, pixels
        if self.scale_inv is None:  # a float16 or float64 input
            def floats(image):
                if reduce_max(image.view(np.uint32), None) > ONE_BITS:
                    raise_out_of_range(image)
                copyto(in_batch if image.ndim == ndim else in_image, image, casting="same_kind")
                return dequantize_raw(run())
            return floats, pixels

        scale_inv, offset, clip = self.scale_inv, self.offset, self._clip
        # x * scale_inv for x in [0, 1] has bits (as uint32) at most those of scale_inv; a
        # negative x, NaN, infinity or x > 1 reads larger: the range check needs no extra view.
        limit = scale_inv.view(np.uint32)
        batch_buffer, image_buffer = np.empty(batch_shape, np.float32), np.empty(image_shape, np.float32)
        batch_bits, image_bits = batch_buffer.view(np.int32), image_buffer.view(np.int32)
        unsigned = batch_buffer.view(np.uint32).reshape(-1), image_buffer.view(np.uint32).reshape(-1)
        multiply, add, minimum = np.multiply, np.add, np.minimum

        def floats(image):
            if image.ndim == ndim:
                buffer, bits, unsigned_bits, target = batch_buffer, batch_bits, unsigned[0], in_batch
            else:
                buffer, bits, unsigned_bits, target = image_buffer, image_bits, unsigned[1], in_image
            multiply(image, scale_inv, buffer)
            if reduce_max(unsigned_bits, None) > limit:
                raise_out_of_range(image)
            if clip is not None:
                minimum(buffer, clip, out=buffer)
            add(buffer, offset, buffer)
            # the rounded integer sits in the low bits; the cast keeps them (two's complement)
            copyto(target, bits, "unsafe")
            return dequantize_raw(run())
        return floats, pixels


def tensor_views(interpreter, input_spec, output_spec):
    """Writable numpy views of a batch-1 interpreter's input and output buffers, or None.

    `Interpreter.tensor()` makes such views too, but with the interpreter's internal
    wrapper as their base, and `invoke()` refuses to run while one is alive (it guards
    calls that may reallocate, like `allocate_tensors`). A Runner's batch-1 interpreter is
    allocated once and never resized, so its buffers stay put; the views are checked
    against `get_tensor` here and against the public path in `SingleImagePath`.
    """
    wrapper = getattr(interpreter, "_interpreter", None)
    if wrapper is None or not hasattr(wrapper, "tensor"):
        return None
    specs = (input_spec, output_spec)
    try:
        views = [wrapper.tensor(interpreter, spec.index) for spec in specs]
    except Exception:  # noqa: BLE001 - another wrapper signature: no direct views
        return None
    for view, spec in zip(views, specs):
        if (not isinstance(view, np.ndarray) or view.shape != spec.shape or view.dtype != spec.dtype
                or not view.flags.c_contiguous):
            return None
    in_view = views[0]
    if not in_view.flags.writeable:
        return None
    probe = (np.arange(in_view.size) % 7).astype(in_view.dtype).reshape(in_view.shape)
    in_view[...] = probe
    if not np.array_equal(interpreter.get_tensor(input_spec.index), probe):
        return None
    return views


def raise_out_of_range(images: np.ndarray) -> None:
    """Raises ValueError describing NaN or values outside [0, 1] (-0.0 passes)."""
    if np.isnan(images).any():
        raise ValueError(f"expected images in [0, 1], got {int(np.isnan(images).sum())} NaN values")
    lo, hi = float(images.min()), float(images.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"expected images in [0, 1] (pixel / 255), got values from {lo:g} to {hi:g}"
        )
