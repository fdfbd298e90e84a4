"""Real image files for the predict tests, drawn with Pillow: digits rendered from a font as a photo or scan would show them.

Usage: from _images import digit_photo, write_image
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def font_path(bold: bool = True) -> Path:
    """DejaVu Sans from matplotlib's own data (matplotlib comes with the train extra, so CI has it)."""
    import matplotlib

    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name


def digit_photo(text: str, size=(200, 200), height: int = 90, centre=(0.5, 0.5), dark_on_light: bool = True,
                noise: float = 0.0, light: float = 0.0, seed: int = 0, stroke: int = 0) -> Image.Image:
    """`text` drawn in DejaVu Sans Bold, as a greyscale photo of ink on paper.

    Args:
        text: the characters to draw.
        size: (width, height) of the canvas.
        height: the glyphs' pixel size.
        centre: where the text's centre goes, as fractions of the canvas.
        dark_on_light: dark ink on light paper (a photo) or light on dark (MNIST's way).
        noise: standard deviation of Gaussian pixel noise, in grey levels.
        light: uneven lighting: the paper's brightness falls by this many grey levels from
            the top-left corner to the bottom-right one.
        seed: for the noise.
        stroke: extra stroke width in pixels (bolder ink).
    """
    width, canvas_height = size
    ink = Image.new("L", size, 0)
    draw = ImageDraw.Draw(ink)
    font = ImageFont.truetype(str(font_path()), height)
    x, y = centre[0] * width, centre[1] * canvas_height
    draw.text((x, y), text, fill=255, font=font, anchor="mm", stroke_width=stroke, stroke_fill=255)
    ink_level = np.asarray(ink, np.float32) / 255.0
    yy, xx = np.mgrid[0:canvas_height, 0:width].astype(np.float32)
    ramp = (yy / max(canvas_height - 1, 1) + xx / max(width - 1, 1)) / 2.0
    if dark_on_light:
        paper, pen = 225.0 - light * ramp, 40.0
    else:
        paper, pen = 10.0 + light * ramp, 240.0
    pixels = paper + (pen - paper) * ink_level
    if noise:
        pixels = pixels + np.random.default_rng(seed).normal(0.0, noise, pixels.shape)
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8), "L")


def write_image(image: Image.Image, path: Path, **save_options) -> Path:
    """Saves through Pillow (the format from the suffix) and returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **save_options)
    return path


def jpeg_bytes(image: Image.Image, quality: int = 60) -> bytes:
    """The image encoded as JPEG."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


# EXIF orientation -> the transpose that turns an upright image into the one a camera stores with that tag
# (the inverse of what ImageOps.exif_transpose applies).
_STORED = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_90",
           7: "TRANSVERSE", 8: "ROTATE_270"}


def as_stored(image: Image.Image, orientation: int) -> tuple:
    """(the pixels a camera stores for the upright `image` with this EXIF orientation, the EXIF bytes to
    save with them): `image.save(path, exif=exif)`."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = image if orientation == 1 else image.transpose(Image.Transpose[_STORED[orientation]])
    return stored, exif.tobytes()


def write_bilevel_png(path: Path, width: int, height: int) -> Path:
    """A blank white 1-bit PNG of any size, written a row block at a time (a 20000x20000 one is about 90 KB on
    disk and never held in memory)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + b"\xff" * ((width + 7) // 8)  # filter type 0, then white pixels
    compressor = zlib.compressobj(9)
    block = row * 1000
    data = b"".join(compressor.compress(block) for _ in range(height // 1000))
    data += compressor.compress(row * (height % 1000)) + compressor.flush()
    path = Path(path)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def animated_gif(path: Path, frames: int = 3) -> Path:
    """An animated GIF: the digits 1, 2, ... one a frame."""
    images = [digit_photo(str(i + 1)).convert("P") for i in range(frames)]
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0)
    return Path(path)
