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
