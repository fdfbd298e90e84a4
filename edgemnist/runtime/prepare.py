"""Prepare a real image of a digit the way MNIST's digits were prepared, so the model can read it.

Usage: from edgemnist.runtime.prepare import prepare; pixels = prepare("photo.jpg").image  # uint8 28x28

A photo or scan of a digit is dark ink on light paper, anywhere in the frame, any size,
unevenly lit and often JPEG; MNIST's digits are white on black, their bounding box scaled
to fit 20x20 (aspect kept, anti-aliased) and placed in a 28x28 field with their centre of
mass at its centre. `prepare` turns the first into the second:

1. decode to greyscale, upright by its EXIF orientation (PNG, JPEG, PGM/PPM, BMP, TIFF, ...;
   alpha and colour-key transparency composited onto paper), reduced so that its long side
   is at most `PrepareConfig.work_size` (JPEG decodes at that scale, other formats are
   reduced strip by strip); a decompression bomb, an animation and a format this Pillow
   cannot decode are refused in one line (`read_grey`);
2. fit the paper: a quadratic surface fitted robustly to block means, starting from the
   frame's edge (level, then plane, then quadratic, outlying blocks dropped each time),
   which follows uneven light, vignetting and shading; the residual is the ink;
3. polarity: whichever sign of the residual carries more mass beyond the noise is the ink
   (dark-on-light input is inverted);
4. noise: the residual is smoothed 3x3 and thresholded at the larger of `noise_factor`
   robust standard deviations of the bare paper and `ink_fraction` of the strongest ink,
   which drops paper grain, JPEG ringing and shading edges;
5. connected components of the thresholded ink (8-connected, numpy only): specks far
   from the digit are dropped; the rest gives the bounding box;
6. the ink inside the box is scaled to fit 20x20 and placed by its centre of mass.

Along the way it tells what is not a digit (`Prepared.reason`): nothing out of the paper
(NO_DIGIT), ink reaching all four sides or in many pieces (CLUTTER), more ink than MNIST's
digits hold (TOO_MUCH_INK). The rule and what it catches: docs/outputs.md.

`prepare_digits` does steps 1-5 once and cuts the image into digits, left to right:
components that overlap horizontally are one digit (a broken stroke), components much
smaller than the digits are dropped (a decimal point, a speck), and a component as wide
as several digits (touching digits) is cut at the columns with least ink near the
expected digit boundaries. Each digit then goes through step 6.

Needs numpy and Pillow (imported when an image is decoded); no TensorFlow.
"""
from __future__ import annotations

import functools
import io
import os
import re
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from edgemnist.console import first_line

FIELD = 28  # MNIST's image side
BOX = 20  # the side of the box a digit's bounding box is scaled to fit (MNIST)
CENTRE = 14.0  # where MNIST's digits have their centre of mass (the training set's mean), in pixel indices
# The suffixes that name an image file: predict takes them from a folder, and one whose format this Pillow
# cannot decode (readable_suffixes: HEIC without its plugin, WebP or AVIF without their codec) is named as
# such and counted as failed, never silently left out. Files with other suffixes in a folder are skipped.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".pgm", ".ppm", ".pnm", ".pbm", ".bmp", ".gif",
                  ".tif", ".tiff", ".webp", ".avif", ".heic", ".heif", ".jxl")
NO_DIGIT = "no digit found"
TOO_MUCH_INK = "too much ink for a digit"
CLUTTER = "ink all over the frame"

ImageSource = Union[str, os.PathLike, bytes, np.ndarray, Any]  # a path, encoded bytes, an array or a PIL image


@dataclass(frozen=True)
class PrepareConfig:
    """How a real image is turned into MNIST's form."""

    work_size: int = 100  # long side the image is reduced to before looking for ink (speed; small digits need more)
    number_work_size: int = 256  # the same for prepare_digits: a number's digits are a fraction of the frame
    min_contrast: float = 0.08  # ink must differ from the paper by this share of full scale, else no digit
    noise_factor: float = 4.0  # ink threshold: this many robust standard deviations of the paper's noise ...
    ink_fraction: float = 0.3  # ... or this share of the strongest ink, whichever is higher
    max_ink: float = 0.35  # a prepared image brighter than this on average is not a digit (nearly no MNIST digit is)
    speck_fraction: float = 0.05  # components smaller than this share of the largest are dropped ...
    speck_distance: float = 0.25  # ... unless within this share of the digit's size from it
    max_pieces: int = 5  # more separate pieces of ink than this is clutter, not a digit

    def __post_init__(self):
        for name in ("work_size", "number_work_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < FIELD:
                raise ValueError(f"{name} must be an integer >= {FIELD}, got {value!r}")
        for name in ("min_contrast", "ink_fraction", "max_ink", "speck_fraction"):
            value = getattr(self, name)
            if not 0.0 < float(value) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {value!r}")
        if isinstance(self.max_pieces, bool) or not isinstance(self.max_pieces, (int, np.integer)) \
                or self.max_pieces < 1:
            raise ValueError(f"max_pieces must be an integer >= 1, got {self.max_pieces!r}")
        for name in ("noise_factor", "speck_distance"):
            if not float(getattr(self, name)) >= 0.0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class Prepared:
    """One digit in MNIST's form, or why there is none.

    Attributes:
        image: uint8 (28, 28), white digit on black; None when no digit was found.
        reason: None, or why this is not taken for a digit: NO_DIGIT (no image), or, with
            the image given: TOO_MUCH_INK (a blob, a filled shape), CLUTTER (ink touching all
            four sides of the frame, or in more than `max_pieces` pieces: a texture, a scene).
        inverted: the input was dark ink on light paper (and was inverted).
        box: (top, left, bottom, right) of the digit in the input's pixels, bottom and right
            exclusive; None without a digit.
    """

    image: Optional[np.ndarray]
    reason: Optional[str] = None
    inverted: bool = False
    box: Optional[tuple] = None


# --------------------------------------------------------------------------- decoding


def _pil():
    try:
        from PIL import Image, ImageFile  # noqa: F401
    except ImportError:
        raise ImportError("reading image files needs Pillow: pip install pillow") from None
    return Image


def _describe(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray)):
        return "<image bytes>"
    return f"<{type(source).__name__}>"


def _open(source, name: str):
    """A PIL image from a path, bytes or a PIL image, not yet decoded; ValueError naming `name` if it is not
    one, is a format this Pillow cannot decode, is over Pillow's decompression-bomb limit, or holds several
    frames (a file or bytes: the caller's own PIL image is read at the frame it is at)."""
    Image = _pil()
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file")
        if path.is_dir():
            raise IsADirectoryError(f"{path}: is a folder, not an image")
        stream = path
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if not len(source):
            raise ValueError(f"{name}: empty input, not an image")
        stream = io.BytesIO(bytes(source))
    else:
        raise ValueError(f"{name}: expected an image path, bytes, a PIL image or a numpy array")
    try:
        with warnings.catch_warnings():
            # the warning tier of the bomb check (over MAX_IMAGE_PIXELS, under twice that: a 12000x12000
            # scan) is decoded and reduced strip by strip (read_grey), so its warning says nothing useful;
            # the error tier (over twice MAX_IMAGE_PIXELS) is refused
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(stream)
    except Image.UnidentifiedImageError:
        raise ValueError(_unreadable(stream, name)) from None
    except Image.DecompressionBombError as exc:
        raise _bomb(exc, name) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError) as exc:  # a damaged header
        raise ValueError(f"{name}: cannot read the image ({first_line(exc)})") from None
    try:
        frames = int(getattr(image, "n_frames", 1))
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError) as exc:
        raise ValueError(f"{name}: cannot read the image ({first_line(exc)})") from None
    # one file is one image: reading frame 1 of an animation or of a multi-page scan would answer for
    # a picture the user may not have meant. A phone's MPO JPEG (the photo plus a preview or depth
    # map) is a photo: its first frame is the picture.
    if frames > 1 and image.format != "MPO":
        raise ValueError(f"{name}: an animated or multi-page {image.format} image ({frames} frames); one image "
                         "per file is read: save the frame you mean on its own (as PNG)")
    return image


# Formats recognised by their first bytes, to name them when Pillow (without their plugin or codec) cannot.
_CONTAINER_BRANDS = {b"avif": "AVIF", b"avis": "AVIF", b"heic": "HEIC", b"heix": "HEIC", b"hevc": "HEIC",
                     b"heim": "HEIC", b"heis": "HEIC", b"mif1": "HEIF", b"msf1": "HEIF"}


def _unreadable(stream, name: str) -> str:
    """Why Pillow identified no image: a format named by its first bytes or the file's suffix that this
    Pillow cannot decode, or not an image at all."""
    if isinstance(stream, io.BytesIO):
        head = stream.getvalue()[:16]
    else:
        with open(stream, "rb") as file:
            head = file.read(16)
    fmt = None
    if head[4:8] == b"ftyp":
        fmt = _CONTAINER_BRANDS.get(head[8:12])
    elif head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        fmt = "WebP"
    elif head[:2] == b"\xff\x0a" or head[:12] == b"\x00\x00\x00\x0cJXL \r\n\x87\n":
        fmt = "JPEG XL"
    elif isinstance(stream, Path) and stream.suffix.lower() in IMAGE_SUFFIXES \
            and stream.suffix.lower() not in readable_suffixes():
        fmt = stream.suffix.lower()
    if fmt is None:
        return f"{name}: not an image Pillow can read"
    hint = " (or pip install pillow-heif and register its opener)" if fmt in ("HEIC", "HEIF") else ""
    return f"{name}: a {fmt} image, which this Pillow cannot decode: convert it to JPEG or PNG{hint}"


def _bomb(exc: Exception, name: str) -> ValueError:
    """Pillow's decompression-bomb refusal as one line naming the file, its size and the limit."""
    found = re.search(r"\((\d+) pixels\) exceeds limit of (\d+) pixels", str(exc))
    size = (f"{int(found[1]):,} pixels, over the limit of {int(found[2]):,}" if found
            else f"too many pixels ({first_line(exc)})")
    return ValueError(f"{name}: {size} (Pillow's guard against decompression bombs, PIL.Image.MAX_IMAGE_PIXELS); "
                      "not read")


@functools.lru_cache(maxsize=1)
def readable_suffixes() -> tuple:
    """The IMAGE_SUFFIXES whose format this Pillow decodes: registered by a plugin, and its codec built in
    (WebP, AVIF, JPEG and PNG are optional in Pillow's build: PIL.features)."""
    Image = _pil()
    from PIL import features

    Image.init()
    registered = Image.registered_extensions()
    needs = {".webp": "webp", ".avif": "avif", ".jpg": "jpg", ".jpeg": "jpg", ".png": "zlib"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an older Pillow warns about a feature it does not know
        return tuple(s for s in IMAGE_SUFFIXES if s in registered and (s not in needs or features.check(needs[s])))


# EXIF orientation (tag 0x0112) -> the transpose that makes the image upright: the table of Pillow's
# ImageOps.exif_transpose (a test compares the two), applied here to the decoded image as it is, after a
# JPEG's draft reduced it, where exif_transpose would also copy and rewrite the EXIF data.
EXIF_ORIENTATION = 0x0112
_UPRIGHT = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_270",
            7: "TRANSVERSE", 8: "ROTATE_90"}


def _orientation(image) -> int:
    """The EXIF orientation (1-8; 1: upright), 1 when there is none or the EXIF data is unreadable."""
    if image.format in ("JPEG", "MPO", "PNG", "WEBP") and "exif" not in image.info:
        return 1  # these keep their EXIF block there: without one, none is built on every decode
    try:
        value = int(image.getexif().get(EXIF_ORIENTATION, 1))
    except (OSError, SyntaxError, ValueError, TypeError, KeyError, struct.error):
        return 1  # a damaged EXIF block does not make the pixels unreadable
    return value if value in _UPRIGHT else 1


def read_grey(source: ImageSource, max_side: Optional[int] = None) -> tuple[np.ndarray, float]:
    """Decodes an image to greyscale, upright.

    Args:
        source: a file path, encoded image bytes, a PIL image, or a numpy array (H, W),
            (H, W, 1), (H, W, 3) or (H, W, 4), uint8, uint16 or float in [0, 1]; an alpha
            channel is composited onto paper that contrasts with the ink.
        max_side: reduce the image (area average; JPEG decodes at reduced scale, other formats
            are reduced strip by strip after decoding) so that its long side is at most this;
            None keeps the full size.

    Returns:
        (uint8 array (H, W), scale): scale = the original's size / the returned size (>= 1).
        A file's EXIF orientation is applied: H, W and the scale are the upright image's.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an image, a format this Pillow cannot decode, one over Pillow's
            decompression-bomb limit, an animation or multi-page file, a truncated or corrupt
            one, or an array of the wrong shape, dtype or range; the message names the source.
    """
    name = _describe(source)
    if isinstance(source, np.ndarray):
        grey = _array_to_grey(source, name)
        return _reduce_array(grey, max_side)
    image = _open(source, name)
    Image = _pil()
    try:
        width, height = image.size
        if image.format in ("JPEG", "MPO"):  # MPO: a phone's JPEG with a second picture
            # the decoder gives greyscale directly, and scales by 1/2, 1/4 or 1/8 while decoding
            # (never below the size asked for): far cheaper than decoding colour in full
            side = max_side if max_side and max(width, height) > max_side else max(width, height)
            image.draft("L", (max(1, width * side // max(width, height)), max(1, height * side // max(width, height))))
        image.load()
        orientation = _orientation(image)
        if orientation != 1:
            # turned before reducing, so that the reduction's blocks fall as they do on the upright image
            # (a JPEG is turned at its draft's reduced size)
            image = image.transpose(Image.Transpose[_UPRIGHT[orientation]])
            if orientation >= 5:  # a quarter turn: the upright image is the stored one's height wide
                width, height = height, width
        factor = max(image.size) // max_side if max_side else 1
        grey = _pil_to_grey(_reduce(image, factor))
    except Image.DecompressionBombError as exc:
        raise _bomb(exc, name) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError) as exc:  # truncated or corrupt data
        raise ValueError(f"{name}: cannot decode the image ({first_line(exc)})") from None
    if grey.width == 0 or grey.height == 0:
        raise ValueError(f"{name}: the image is empty ({width}x{height})")
    grey = _fit(grey, max_side)
    return np.asarray(grey, dtype=np.uint8), float(width / grey.width)


def _working_mode(image) -> str:
    """The mode `Image.reduce` takes that keeps what the grey image needs: alpha, colour key, 16 bits, floats."""
    if image.mode in ("I", "F"):
        return image.mode
    if image.mode.startswith("I;16"):
        return "I"
    if image.mode in ("LA", "La", "PA", "RGBA", "RGBa") or "transparency" in image.info:
        return "RGBA" if image.mode not in ("LA", "La") else "LA"
    return "L" if image.mode in ("1", "L") else "RGB"


def _reduce(image, factor: int):
    """The image shrunk `factor` times (box average) in a mode `_pil_to_grey` reads, converted and reduced a
    strip at a time: only the decoded image is ever full size, never a converted or composited copy of it."""
    if factor < 2:
        return image
    Image = _pil()
    mode = _working_mode(image)
    width, height = image.size
    reduced = Image.new(mode, (-(-width // factor), -(-height // factor)))
    rows = factor * max(1, (1 << 22) // (width * factor))  # about 4 M pixels a strip, whole blocks of rows
    for top in range(0, height, rows):
        strip = image.crop((0, top, width, min(height, top + rows)))
        if strip.mode != mode:
            strip = strip.convert(mode)
        reduced.paste(strip.reduce(factor), (0, top // factor))
    return reduced


def _composite(grey: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 grey levels of `grey` (float, 0-255) over paper by `alpha` (0-1): ink drawn on a transparent sheet
    (a canvas, a sticker, a scan's cut-out) goes onto paper that contrasts with it: dark ink onto white
    paper, light ink onto black."""
    opaque = alpha > 0.5
    paper = 255.0 if (not opaque.any() or grey[opaque].mean() < 128) else 0.0
    return np.clip(grey * alpha + paper * (1.0 - alpha) + 0.5, 0, 255).astype(np.uint8)


def _pil_to_grey(image):
    """A PIL image in mode L; transparency (alpha or a colour key) is composited onto contrasting paper."""
    Image = _pil()
    if "transparency" in image.info and image.mode in ("1", "L", "P", "RGB"):
        image = image.convert("RGBA")  # the colour key (PNG tRNS, GIF) becomes alpha
    if image.mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        rgba = image.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
        grey = np.asarray(rgba.convert("L"), dtype=np.float32)
        return Image.fromarray(_composite(grey, alpha), "L")
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        top = float(values.max()) if values.size else 0.0
        if image.mode == "F" and top <= 1.0 and values.min() >= 0.0:
            full = 1.0  # a float image (a float TIFF, a mode "F" array) in [0, 1]
        else:
            full = 65535.0 if top > 255 else 255.0
        return Image.fromarray(np.clip(values / full * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    return image if image.mode == "L" else image.convert("L")


_ITU_601 = np.array([0.299, 0.587, 0.114], np.float32)  # RGB -> grey as Pillow's "L"


def _array_to_grey(array: np.ndarray, name: str) -> np.ndarray:
    """uint8 (H, W) from an image array: grey, RGB or RGBA (alpha composited as a PIL RGBA image's is);
    uint8, uint16 or floats in [0, 1]."""
    arr = array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array
    channels = arr.shape[-1] if arr.ndim == 3 else 1
    if arr.ndim not in (2, 3) or channels not in (1, 3, 4) or min(arr.shape[:2]) < 1:
        raise ValueError(f"{name}: expected an image array (H, W) or (H, W, 1|3|4), got shape {array.shape}")
    if arr.dtype == np.uint8:
        if arr.ndim == 2:
            return arr
        full = 255.0
    elif arr.dtype == np.uint16:
        full = 65535.0
    elif np.issubdtype(arr.dtype, np.floating):
        arr = np.asarray(arr, dtype=np.float32)
        if not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0:
            raise ValueError(f"{name}: expected float pixels in [0, 1] (pixel / 255)")
        full = 1.0
    else:
        raise ValueError(f"{name}: expected uint8 or uint16 pixels or floats in [0, 1], got dtype {array.dtype}")
    values = arr.astype(np.float32) * np.float32(255.0 / full)
    grey = values[..., :3] @ _ITU_601 if channels >= 3 else values
    if channels == 4:
        return _composite(grey, values[..., 3] * np.float32(1.0 / 255.0))
    return np.clip(grey + 0.5, 0, 255).astype(np.uint8)


def _reduce_array(grey: np.ndarray, max_side: Optional[int]) -> tuple[np.ndarray, float]:
    height, width = grey.shape
    if not max_side or max(height, width) <= max_side:
        return grey, 1.0
    reduced = _fit(_reduce(_pil().fromarray(grey, "L"), max(height, width) // max_side), max_side)
    return np.asarray(reduced, dtype=np.uint8), width / reduced.width


def _fit(grey, max_side: Optional[int]):
    """A mode L image resized (area average) so that its long side is at most `max_side`."""
    if not max_side or max(grey.size) <= max_side:
        return grey
    factor = max_side / max(grey.size)
    size = (max(1, round(grey.width * factor)), max(1, round(grey.height * factor)))
    return grey.resize(size, _pil().Resampling.BOX)


# --------------------------------------------------------------------------- finding the ink


@dataclass(frozen=True)
class _Components:
    """8-connected components of a mask: per component area and box (top, left, bottom, right, exclusive)."""

    labels: np.ndarray  # int32 (H, W), 0 = background, k + 1 = component k
    areas: np.ndarray  # int64 (n,)
    boxes: np.ndarray  # int64 (n, 4)

    def __len__(self) -> int:
        return int(self.areas.shape[0])


def connected_components(mask: np.ndarray) -> _Components:
    """8-connected components of a boolean mask, numpy only.

    Works on runs of set pixels per row: runs in neighbouring rows that touch (diagonals
    included) are joined, by repeated minimum-label propagation with pointer jumping, so
    the Python-level work grows with the number of runs, not of pixels.
    """
    mask = np.asarray(mask, dtype=bool)
    height, width = mask.shape
    stride = width + 2
    # each row framed by a zero on either side, so that in the flattened array no run crosses rows
    padded = np.zeros((height, stride), np.int8)
    padded[:, 1:-1] = mask
    edges = np.diff(padded.reshape(-1))
    start_keys = np.flatnonzero(edges == 1)  # key = row * stride + column of the run's first pixel
    end_keys = np.flatnonzero(edges == -1)  # ... of the pixel just after the run
    n = start_keys.shape[0]
    labels = np.zeros((height, width), np.int32)
    if n == 0:
        return _Components(labels, np.zeros(0, np.int64), np.zeros((0, 4), np.int64))
    rows = start_keys // stride
    starts, ends = start_keys - rows * stride, end_keys - rows * stride
    # runs of the row above that touch run b (diagonals included): their end >= b's start and
    # their start <= b's end
    lo = np.searchsorted(end_keys, start_keys - stride, "left")
    hi = np.searchsorted(start_keys, end_keys - stride, "right")
    counts = np.maximum(hi - lo, 0)
    b = np.repeat(np.arange(n), counts)
    a = np.repeat(lo, counts) + (np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts))
    parent = np.arange(n)
    if a.size:
        while True:
            low = np.minimum(parent[a], parent[b])
            before = parent.copy()
            np.minimum.at(parent, a, low)
            np.minimum.at(parent, b, low)
            parent = parent[parent]
            parent = parent[parent]
            if np.array_equal(parent, before):
                break
    roots, run_label = np.unique(parent, return_inverse=True)
    lengths = ends - starts
    areas = np.bincount(run_label, weights=lengths, minlength=roots.shape[0]).astype(np.int64)
    k = roots.shape[0]
    boxes = np.empty((k, 4), np.int64)
    boxes[:, 0] = np.full(k, height)
    boxes[:, 1] = np.full(k, width)
    boxes[:, 2:] = 0
    np.minimum.at(boxes[:, 0], run_label, rows)
    np.minimum.at(boxes[:, 1], run_label, starts)
    np.maximum.at(boxes[:, 2], run_label, rows + 1)
    np.maximum.at(boxes[:, 3], run_label, ends)
    # paint the label image run by run: the flat index of every set pixel, then its run's label
    offsets = np.repeat(rows * width + starts - np.cumsum(lengths) + lengths, lengths) + np.arange(int(lengths.sum()))
    labels.reshape(-1)[offsets] = np.repeat(run_label + 1, lengths)
    return _Components(labels, areas, boxes)


def _least_squares(design: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Coefficients of the least-squares fit (normal equations: six unknowns, cheaper than an SVD)."""
    try:
        return np.linalg.solve(design.T @ design, design.T @ values)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(design, values, rcond=None)[0]


@functools.lru_cache(maxsize=32)
def _quadratic_design(height: int, width: int) -> tuple:
    """(block rows, block columns, design matrix of the block centres, y and x of every pixel) for one image size.

    Coordinates run over [-1, 1] across the image, so the fit does not depend on its size.
    """
    by, bx = max(1, height // 16), max(1, width // 16)
    ys = (np.arange(height // by) + 0.5) * (2.0 * by / height) - 1.0
    xs = (np.arange(width // bx) + 0.5) * (2.0 * bx / width) - 1.0
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    design = np.stack([np.ones_like(yy), yy, xx, yy * yy, xx * xx, yy * xx], axis=-1).reshape(-1, 6)
    y = ((np.arange(height) + 0.5) * (2.0 / height) - 1.0).astype(np.float32)
    x = ((np.arange(width) + 0.5) * (2.0 / width) - 1.0).astype(np.float32)
    return by, bx, design, y, x


@functools.lru_cache(maxsize=32)
def _edge_blocks(rows: int, cols: int) -> np.ndarray:
    """Flat mask of the outermost ring of a rows x cols grid of blocks."""
    ring = np.ones((rows, cols), bool)
    ring[1:-1, 1:-1] = False
    return ring.reshape(-1)


def _paper(grey: np.ndarray) -> tuple:
    """The paper's brightness everywhere, a quadratic surface fitted to block means with outliers (ink)
    dropped, and the mask of the pixels in the blocks it was fitted to (bare paper).

    A quadratic follows a light gradient, vignetting and a gentle shadow; a sharp shadow edge
    it cannot follow stays in the residual, where the ink threshold has to reject it.
    """
    height, width = grey.shape
    by, bx, design, y, x = _quadratic_design(height, width)
    gh, gw = height // by, width // bx
    blocks = grey[:gh * by, :gw * bx].reshape(gh, by, gw, bx).sum(axis=(1, 3)) * (1.0 / (by * bx))
    values = blocks.reshape(-1).astype(np.float64)
    # From the frame's edge inwards: the level of the outermost blocks (a digit seldom touches
    # the edge, even when it fills most of the frame, as scikit-learn's 8x8 digits do), then a
    # plane, then the quadratic, each fitted to the blocks the previous one explained. Started
    # from a least-squares quadratic of all blocks instead, a digit that fills much of the frame
    # pulls the surface onto itself.
    edge = _edge_blocks(gh, gw)
    fitted = np.full(values.shape, float(np.median(values[edge])))
    keep = edge
    coef = np.zeros(6)
    coef[0] = fitted[0]
    for terms in (0, 3, 6, 6):
        residual = np.abs(values - fitted)
        kept = residual[keep]
        spread = max(1.4826 * float(np.partition(kept, kept.size // 2)[kept.size // 2]), 1.0 / 255.0)
        keep = residual <= 2.5 * spread
        if terms == 0 or keep.sum() < 2 * terms:
            continue
        coef = np.zeros(6)
        coef[:terms] = _least_squares(design[keep, :terms], values[keep])
        fitted = design @ coef
    c = coef.astype(np.float32)
    surface = np.multiply.outer(c[5] * y, x)
    surface += (c[0] + c[1] * y + c[3] * y * y)[:, None]
    surface += c[2] * x + c[4] * x * x
    paper = np.zeros((height, width), bool)  # the pixels of the blocks the surface explains
    paper[:gh * by, :gw * bx] = np.repeat(np.repeat(keep.reshape(gh, gw), by, axis=0), bx, axis=1)
    return surface, paper


def _box3(image: np.ndarray) -> np.ndarray:
    """3x3 mean with edges replicated."""
    height, width = image.shape
    p = np.empty((height + 2, width + 2), np.float32)  # np.pad costs more than the sums at this size
    p[1:-1, 1:-1] = image
    p[0, 1:-1], p[-1, 1:-1] = image[0], image[-1]
    p[:, 0], p[:, -1] = p[:, 1], p[:, -2]
    rows = p[:-2] + p[1:-1] + p[2:]
    return (rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]) * np.float32(1.0 / 9.0)


def _robust_sigma(values: np.ndarray, paper: np.ndarray) -> float:
    """The paper's noise: a robust standard deviation over the bare-paper pixels (over all when they are
    few), so that ink covering half the frame does not count as noise."""
    if paper.sum() >= 0.1 * paper.size:
        values = values[paper]
    sample = values[::4] if values.size > 4096 else values.reshape(-1)
    centre = np.median(sample)
    return 1.4826 * float(np.median(np.abs(sample - centre)))


@dataclass(frozen=True)
class _Ink:
    """What steps 1-5 found in one image."""

    ink: np.ndarray  # float32 (H, W): ink strength (0 on paper), unsmoothed
    mask: np.ndarray  # bool (H, W): pixels taken as ink
    components: _Components
    inverted: bool
    scale: float  # original pixels per working pixel
    threshold: float
    reason: Optional[str]  # NO_DIGIT when nothing stands out of the paper


def find_ink(source: ImageSource, config: PrepareConfig = PrepareConfig(), work_size: Optional[int] = None) -> _Ink:
    """Steps 1-5: decode, fit the paper, decide polarity, threshold and label the ink."""
    grey8, scale = read_grey(source, work_size or config.work_size)
    grey = grey8.astype(np.float32) * np.float32(1.0 / 255.0)
    surface, paper = _paper(grey)
    residual = grey - surface
    smooth = _box3(residual) if min(grey.shape) >= 3 else residual
    sigma = _robust_sigma(smooth, paper)
    floor = config.noise_factor * sigma
    dark = float(np.clip(-smooth - floor, 0.0, None).sum())
    light = float(np.clip(smooth - floor, 0.0, None).sum())
    inverted = dark > light
    if inverted:
        residual, smooth = -residual, -smooth
    ink = np.clip(residual, 0.0, None)
    peak = float(smooth.max())
    empty = np.zeros(grey.shape, bool)
    if peak < max(config.min_contrast, floor) or peak <= 0.0:
        return _Ink(ink, empty, connected_components(empty), inverted, scale, peak, NO_DIGIT)
    threshold = max(floor, config.ink_fraction * peak)
    mask = smooth > threshold
    return _Ink(ink, mask, connected_components(mask), inverted, scale, threshold, None)


# --------------------------------------------------------------------------- into MNIST's form


def _select(components: _Components, config: PrepareConfig) -> np.ndarray:
    """Indices of the components that make up the digit: the largest and what is big or close enough."""
    areas, boxes = components.areas, components.boxes
    main = int(np.argmax(areas))
    t, l, b, r = boxes[main]
    reach = config.speck_distance * max(b - t, r - l)
    # gap between each box and the main box (0 when they overlap)
    gap_y = np.maximum(0, np.maximum(boxes[:, 0] - b, t - boxes[:, 2]))
    gap_x = np.maximum(0, np.maximum(boxes[:, 1] - r, l - boxes[:, 3]))
    big = areas >= config.speck_fraction * areas[main]
    close = (np.maximum(gap_y, gap_x) <= reach) & (areas >= max(2, 0.01 * areas[main]))
    return np.nonzero(big | close)[0]


def _dilate(mask: np.ndarray) -> np.ndarray:
    """3x3 dilation of a boolean mask."""
    p = np.zeros((mask.shape[0] + 2, mask.shape[1] + 2), bool)
    p[1:-1, 1:-1] = mask
    rows = p[:-2] | p[1:-1] | p[2:]
    return rows[:, :-2] | rows[:, 1:-1] | rows[:, 2:]


def to_mnist(ink: np.ndarray) -> np.ndarray:
    """Ink (float, 0 = paper) cropped to the digit -> uint8 (28, 28) as MNIST: scaled to fit 20x20
    keeping its aspect, anti-aliased, placed by its centre of mass at the field's centre.

    Args:
        ink: float array (H, W) >= 0, the digit's ink with nothing else in it.

    Returns:
        uint8 (28, 28), white digit on black.
    """
    Image = _pil()
    ink = np.asarray(ink, dtype=np.float32)
    height, width = ink.shape
    strong = ink[ink > 0]
    # strokes' centres saturate, as MNIST's do: scale by a high percentile of the ink, not its maximum
    top = float(np.percentile(strong, 90)) if strong.size else 1.0
    unit = np.clip(ink * np.float32(1.0 / max(top, 1e-6)), 0.0, 1.0)
    long_side = max(height, width)
    size = (max(1, round(width * BOX / long_side)), max(1, round(height * BOX / long_side)))
    if size != (width, height):
        small = np.asarray(Image.fromarray(unit, "F").resize(size, Image.Resampling.BILINEAR), np.float32)
    else:
        small = unit
    small = np.clip(small, 0.0, 1.0)
    mass = float(small.sum())
    field = np.zeros((FIELD, FIELD), np.float32)
    if mass <= 0.0:
        return field.astype(np.uint8)
    h, w = small.shape
    cy = float((small.sum(axis=1) * np.arange(h)).sum() / mass)
    cx = float((small.sum(axis=0) * np.arange(w)).sum() / mass)
    top_row, left_col = int(round(CENTRE - cy)), int(round(CENTRE - cx))
    # the part of the patch that lands inside the field
    y0, x0 = max(0, -top_row), max(0, -left_col)
    y1, x1 = min(h, FIELD - top_row), min(w, FIELD - left_col)
    if y1 > y0 and x1 > x0:
        field[top_row + y0:top_row + y1, left_col + x0:left_col + x1] = small[y0:y1, x0:x1]
    return np.clip(field * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _digit_ink(found: _Ink, keep_mask: np.ndarray, box: tuple) -> np.ndarray:
    t, l, b, r = box
    near = _dilate(keep_mask[t:b, l:r])  # the anti-aliased rim of the strokes lies just under the threshold
    values = found.ink[t:b, l:r] - np.float32(0.5 * found.threshold)
    return np.where(near, np.clip(values, 0.0, None), np.float32(0.0))


def _original_box(box, scale: float) -> tuple:
    return tuple(int(round(v * scale)) for v in box)


def prepare(source: ImageSource, config: PrepareConfig = PrepareConfig()) -> Prepared:
    """A real image of one digit -> MNIST's form (uint8 28x28, white on black, centred).

    Args:
        source: a file path, encoded image bytes, a PIL image, or a numpy array (as
            `read_grey` takes).
        config: preparation settings.

    Returns:
        Prepared: the 28x28 image, or None with reason NO_DIGIT when nothing stands out of
        the paper; reason CLUTTER when the ink reaches all four sides of the frame or lies
        in more than `max_pieces` pieces, TOO_MUCH_INK when the prepared image holds more
        ink than MNIST's digits do (`max_ink`).

    Raises:
        FileNotFoundError, ValueError: as `read_grey`.
    """
    found = find_ink(source, config)
    if found.reason is not None or not len(found.components):
        return Prepared(None, NO_DIGIT, found.inverted)
    keep = _select(found.components, config)
    keep_mask = np.isin(found.components.labels, keep + 1)
    boxes = found.components.boxes[keep]
    box = (int(boxes[:, 0].min()), int(boxes[:, 1].min()), int(boxes[:, 2].max()), int(boxes[:, 3].max()))
    height, width = found.mask.shape
    # a digit photographed or scanned has paper around it; ink reaching all four sides, or
    # scattered in many pieces, is a texture or a scene
    clutter = len(keep) > config.max_pieces or box == (0, 0, height, width)
    return _prepared(to_mnist(_digit_ink(found, keep_mask, box)), found, box, config, CLUTTER if clutter else None)


def _prepared(image: np.ndarray, found: _Ink, box: tuple, config: PrepareConfig,
              reason: Optional[str] = None) -> Prepared:
    if reason is None and float(image.mean()) > config.max_ink * 255.0:
        reason = TOO_MUCH_INK
    return Prepared(image, reason, found.inverted, _original_box(box, found.scale))


def prepare_digits(source: ImageSource, config: PrepareConfig = PrepareConfig()) -> tuple[list, Optional[str], bool]:
    """A real image of a number -> its digits in MNIST's form, left to right.

    Args:
        source: as for `prepare`.
        config: preparation settings.

    Returns:
        (digits, reason, inverted): a list of Prepared (one per digit, each with its box
        and its own reason), or an empty list and NO_DIGIT.

    Raises:
        FileNotFoundError, ValueError: as `read_grey`.
    """
    found = find_ink(source, config, config.number_work_size)
    comps = found.components
    if found.reason is not None or not len(comps):
        return [], NO_DIGIT, found.inverted
    digits = []
    for members, (left, right) in split_into_digits(comps, found.ink.shape[0]):
        keep_mask = np.isin(comps.labels[:, left:right], members + 1)
        rows = np.nonzero(keep_mask.any(axis=1))[0]
        cols = np.nonzero(keep_mask.any(axis=0))[0]
        if rows.size == 0:
            continue
        box = (int(rows[0]), left + int(cols[0]), int(rows[-1]) + 1, left + int(cols[-1]) + 1)
        full = np.zeros(comps.labels.shape, bool)
        full[:, left:right] = keep_mask
        digits.append(_prepared(to_mnist(_digit_ink(found, full, box)), found, box, config))
    if not digits:
        return [], NO_DIGIT, found.inverted
    return digits, None, found.inverted


def split_into_digits(components: _Components, image_height: int) -> list:
    """Groups components into digits, left to right: [(component indices, (left, right) columns)].

    Components are a digit's pieces when they overlap horizontally by half the narrower
    one's width; pieces far lower than the tallest digit (under 40 % of its height: a
    decimal point, a dash, a speck) are dropped. A group much wider than a digit (touching
    digits) is cut into as many digits as its width holds, at the columns with least ink
    near the even cuts.
    """
    areas, boxes = components.areas, components.boxes
    heights = boxes[:, 2] - boxes[:, 0]
    tallest = int(heights.max())
    keep = (heights >= 0.4 * tallest) & (areas >= 0.02 * areas.max())
    order = [int(i) for i in np.argsort((boxes[:, 1] + boxes[:, 3]) / 2.0) if keep[i]]
    groups: list[list] = []  # [members, left, right, top, bottom]
    for i in order:
        t, l, b, r = (int(v) for v in boxes[i])
        if groups:
            g = groups[-1]
            overlap = min(r, g[2]) - max(l, g[1])
            if overlap >= 0.5 * min(r - l, g[2] - g[1]):
                g[0].append(i)
                g[1], g[2], g[3], g[4] = min(g[1], l), max(g[2], r), min(g[3], t), max(g[4], b)
                continue
        groups.append([[i], l, r, t, b])
    # a digit is at most ~0.8 of its height wide (MNIST's widest are 0's and 2's); the width a
    # single digit has here, from the groups that look single, tells how many a wide group holds
    single = [g[2] - g[1] for g in groups if (g[2] - g[1]) <= 0.9 * (g[4] - g[3])]
    digit_width = float(np.median(single)) if single else None
    result = []
    for members, left, right, top, bottom in groups:
        width, height = right - left, bottom - top
        expected = digit_width if digit_width else 0.6 * height
        count = int(round(width / max(expected, 1.0))) if width > 1.05 * height else 1
        members = np.array(members)
        if count < 2:
            result.append((members, (left, right)))
            continue
        ink = np.isin(components.labels[top:bottom, left:right], members + 1).sum(axis=0)
        cuts = [0]
        for k in range(1, count):
            centre = k * width / count
            lo, hi = int(max(cuts[-1] + 1, centre - 0.3 * width / count)), int(min(width - 1, centre + 0.3 * width / count))
            if hi <= lo:
                continue
            cuts.append(lo + int(np.argmin(ink[lo:hi + 1])))
        cuts.append(width)
        for a, b in zip(cuts[:-1], cuts[1:]):
            if b - a >= 1:
                result.append((members, (left + a, left + b)))
    return result


def plain(source: ImageSource) -> np.ndarray:
    """The `--no-prepare` path: greyscale, resized to 28x28 if it is not; nothing else.

    For input that is MNIST-shaped already (white digit on black, centred). A photo fed
    this way shows what the preparation is for.

    Args:
        source: as for `prepare`.

    Returns:
        uint8 (28, 28).

    Raises:
        FileNotFoundError, ValueError: as `read_grey`.
    """
    grey, _ = read_grey(source)
    if grey.shape == (FIELD, FIELD):
        return grey
    Image = _pil()
    return np.asarray(Image.fromarray(grey, "L").resize((FIELD, FIELD), Image.Resampling.BILINEAR), np.uint8)


def is_image_file(path: Path) -> bool:
    """True for a file whose suffix names a type predict reads (case-insensitive); hidden files are not."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
