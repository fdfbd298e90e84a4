"""Synthetic photo-like images: digits and letters rendered from the system's fonts, shapes, scribbles.

Usage: from edgemnist.data import synthetic; fonts = synthetic.system_fonts(); rng = np.random.default_rng(0)
       photo = synthetic.as_photo(synthetic.render_text("7", fonts[0], 96, rng), (200, 200), rng, 0.5)

What a phone photo of a printed character looks like, made from a font: dark ink on paper,
off-centre, rotated a little, unevenly lit (a gradient and a vignette), out of focus, with
sensor noise (and JPEG, with `jpeg`). `sklearn_digits` gives scikit-learn's handwritten 8x8
digits (when scikit-learn is installed) as image files, upscaled or as photos. benchmarks/bench_predict.py measures `edgemnist
predict` on these images and `edgemnist gate` (edgemnist.training.gate) trains the
digit-or-not gate on them; each draws from its own seed, so the two never share an image, and
`font_split` holds a quarter of the fonts out of the gate's training for the benchmark alone.

Needs numpy and Pillow; `system_fonts` also looks in matplotlib's font folder when
matplotlib is installed. No TensorFlow.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

# Letters that no digit resembles closely in print (O, D, I, l, S, Z, B, G, q, T... are left out).
LETTERS = "ACEFHKMNPRUVWXYacefhkmnpruvwx"
# TeX's symbol fonts map the digit code points to other symbols (cmsy10 draws a prime for "0").
MATH_SYMBOL_FONTS = ("cmsy", "cmex", "STIXNonUni", "STIXSiz")


def system_fonts() -> list:
    """TrueType fonts that draw all ten digits distinctly: matplotlib's and the system's."""
    candidates = []
    try:
        import matplotlib

        candidates += sorted((Path(matplotlib.get_data_path()) / "fonts" / "ttf").glob("*.ttf"))
    except ImportError:
        pass
    candidates += sorted(Path("/usr/share/fonts").rglob("*.ttf"))
    fonts, seen = [], set()
    for path in candidates:
        if path.name in seen or "Display" in path.name or path.name.startswith(MATH_SYMBOL_FONTS):
            continue
        try:
            font = ImageFont.truetype(str(path), 48)
        except OSError:
            continue
        glyphs = []
        for d in "0123456789":
            image = Image.new("L", (64, 64), 0)
            ImageDraw.Draw(image).text((32, 32), d, font=font, fill=255, anchor="mm")
            glyphs.append(np.asarray(image) > 128)
        # a font without digits draws the same box (or nothing) for each of them
        if all(g.sum() > 20 for g in glyphs) and len({g.tobytes() for g in glyphs}) == 10:
            fonts.append(path)
            seen.add(path.name)
    return fonts


HELD_OUT_FONTS_EVERY = 4  # one font in four is held out of the gate's training (font_split)


def font_split(fonts: list) -> tuple:
    """(training, held_out): the fonts `edgemnist gate` trains on, and those it never sees, which
    benchmarks/bench_predict.py reads as its blind sources (no decision was made on them).

    A font is held out when the SHA-256 of its file name is 0 modulo HELD_OUT_FONTS_EVERY: the
    rule looks at the name alone, so a font falls on the same side on every machine, whatever
    other fonts are installed there.
    """
    def held_out(path: Path) -> bool:
        return int(hashlib.sha256(Path(path).name.encode()).hexdigest(), 16) % HELD_OUT_FONTS_EVERY == 0

    return [f for f in fonts if not held_out(f)], [f for f in fonts if held_out(f)]


def render_text(text: str, font_path: Path, height: int, rng: np.random.Generator, spacing=(0.0, 0.0)) -> np.ndarray:
    """Ink mask (float [0, 1]) of `text`, glyph by glyph, each glyph `spacing` (a range, times the height) apart;
    the whole rotated by up to 8 degrees and cropped to the ink."""
    font = ImageFont.truetype(str(font_path), height)
    width = int(height * (1.2 * len(text) + 1))
    canvas = Image.new("L", (width, 2 * height), 0)
    draw = ImageDraw.Draw(canvas)
    x = 0.5 * height
    for ch in text:
        draw.text((x, height), ch, font=font, fill=255, anchor="lm")
        x += draw.textlength(ch, font=font) + rng.uniform(*spacing) * height
    canvas = canvas.rotate(float(rng.uniform(-8, 8)), resample=Image.Resampling.BILINEAR, expand=True)
    mask = np.asarray(canvas, np.float32) / 255.0
    rows, cols = np.nonzero(mask > 0.05)
    if rows.size == 0:
        return mask[:1, :1]
    return mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


def as_photo(mask: np.ndarray, size: tuple, rng: np.random.Generator, fill: float) -> Image.Image:
    """Ink `mask` placed at random on paper `size` (w, h), its long side `fill` of the frame's fitting side,
    with uneven light, blur, noise; returns the greyscale image (JPEG comes later)."""
    width, height = size
    mh, mw = mask.shape
    scale = min(fill * height / mh, 0.9 * width / mw)
    new = (max(1, int(mw * scale)), max(1, int(mh * scale)))
    ink = np.asarray(Image.fromarray((mask * 255).astype(np.uint8)).resize(new, Image.Resampling.BILINEAR),
                     np.float32) / 255.0
    page = np.zeros((height, width), np.float32)
    top = int(rng.integers(0, max(1, height - new[1])))
    left = int(rng.integers(0, max(1, width - new[0])))
    page[top:top + new[1], left:left + new[0]] = ink[:height - top, :width - left]
    return photo_effects(page, rng)


def photo_effects(ink: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Ink level (float [0, 1], 1 = ink) -> a greyscale photo: paper and pen tones, a light gradient and a
    vignette, focus blur, sensor noise."""
    height, width = ink.shape
    paper, pen = rng.uniform(170, 245), rng.uniform(5, 90)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    yy, xx = yy / max(height - 1, 1) - 0.5, xx / max(width - 1, 1) - 0.5
    angle = rng.uniform(0, 2 * np.pi)
    gradient = (np.cos(angle) * xx + np.sin(angle) * yy + 0.5) * rng.uniform(30, 110)
    vignette = (xx ** 2 + yy ** 2) * 2 * rng.uniform(0, 50)
    light = np.clip(1.0 - (gradient + vignette) / 255.0, 0.3, 1.0)
    pixels = (paper * (1 - ink) + pen * ink) * light
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 1.2))))
    pixels = np.asarray(image, np.float32) + rng.normal(0, rng.uniform(2, 12), (height, width))
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))


def jpeg(image: Image.Image, rng: np.random.Generator) -> bytes:
    """The image as JPEG bytes, quality drawn from 35-90."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=int(rng.integers(35, 91)))
    return buffer.getvalue()


def png(image: Image.Image) -> bytes:
    """The image as PNG bytes."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def character_photo(text: str, font_path: Path, side: int, rng: np.random.Generator) -> bytes:
    """JPEG bytes of one character (or a few) photographed on a `side` x `side` page, 25-60 % of the frame high."""
    mask = render_text(text, font_path, 96, rng)
    return jpeg(as_photo(mask, (side, side), rng, rng.uniform(0.25, 0.6)), rng)


def random_letter(rng: np.random.Generator) -> str:
    """One of LETTERS, drawn uniformly."""
    return LETTERS[int(rng.integers(0, len(LETTERS)))]


def shapes_scene(rng: np.random.Generator, side: int = 200) -> np.ndarray:
    """Ink level (side x side) of 1-4 shapes: filled or outlined rectangles, triangles, stars, crosses, filled discs.
    No outlined circle or bar: those are a 0 and a 1."""
    canvas = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(canvas)
    k = side / 200.0  # the shapes' positions and sizes were chosen on a 200-pixel page
    for _ in range(int(rng.integers(1, 5))):
        cx, cy, r = k * rng.uniform(40, 160), k * rng.uniform(40, 160), k * rng.uniform(15, 60)
        kind = int(rng.integers(0, 5))
        width = max(1, int(k * rng.integers(3, 10)))
        if kind == 0:
            box = (cx - r, cy - r * rng.uniform(0.5, 1.0), cx + r, cy + r * rng.uniform(0.5, 1.0))
            draw.rectangle(box, fill=255) if rng.random() < 0.5 else draw.rectangle(box, outline=255, width=width)
        elif kind == 1:
            points = [(cx + r * np.cos(a), cy + r * np.sin(a)) for a in rng.uniform(0, 2 * np.pi) + np.arange(3) * 2.09]
            draw.polygon(points, fill=255) if rng.random() < 0.5 else draw.polygon(points, outline=255, width=width)
        elif kind == 2:
            angles = rng.uniform(0, 2 * np.pi) + np.arange(10) * np.pi / 5
            radii = [r if i % 2 == 0 else r / 2.5 for i in range(len(angles))]
            points = [(cx + q * np.cos(a), cy + q * np.sin(a)) for q, a in zip(radii, angles)]
            draw.polygon(points, fill=255)
        elif kind == 3:
            draw.line((cx - r, cy, cx + r, cy), fill=255, width=width)
            draw.line((cx, cy - r, cx, cy + r), fill=255, width=width)
        else:
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    return np.asarray(canvas, np.float32) / 255.0


def scribble(rng: np.random.Generator, side: int = 200) -> np.ndarray:
    """Ink level (side x side) of a random pen scribble: 2-8 strokes of 2-6 joined random points."""
    canvas = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(canvas)
    centre, spread = rng.uniform(0.3, 0.7, 2) * side, rng.uniform(0.1, 0.35) * side
    width = max(1, int(side * rng.uniform(0.015, 0.05)))
    for _ in range(int(rng.integers(2, 9))):
        points = [tuple(float(v) for v in centre + rng.normal(0, spread, 2)) for _ in range(int(rng.integers(2, 7)))]
        draw.line(points, fill=255, width=width, joint="curve")
    return np.asarray(canvas, np.float32) / 255.0


def texture(rng: np.random.Generator, side: int = 200) -> np.ndarray:
    """Ink level (side x side) of a texture: stripes, a grid, dots or smoothed noise, over part or all of the page."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    kind = int(rng.integers(0, 4))
    period = rng.uniform(0.04, 0.2)
    angle = rng.uniform(0, np.pi)
    u = np.cos(angle) * xx + np.sin(angle) * yy
    v = -np.sin(angle) * xx + np.cos(angle) * yy
    if kind == 0:
        ink = (np.sin(2 * np.pi * u / period) > rng.uniform(-0.3, 0.6)).astype(np.float32)
    elif kind == 1:
        ink = ((np.abs(np.sin(np.pi * u / period)) < 0.25) | (np.abs(np.sin(np.pi * v / period)) < 0.25))
        ink = ink.astype(np.float32)
    elif kind == 2:
        ink = ((np.sin(np.pi * u / period) * np.sin(np.pi * v / period)) > rng.uniform(0.4, 0.8)).astype(np.float32)
    else:
        noise = Image.fromarray((rng.random((side // 8, side // 8)) * 255).astype(np.uint8))
        smooth = np.asarray(noise.resize((side, side), Image.Resampling.BICUBIC), np.float32) / 255.0
        ink = (smooth > rng.uniform(0.45, 0.65)).astype(np.float32)
    if rng.random() < 0.5:  # a patch of texture on the page, not the whole frame
        top, left = rng.uniform(0, 0.5, 2)
        h, w = rng.uniform(0.3, 0.7, 2)
        window = (yy >= top) & (yy < top + h) & (xx >= left) & (xx < left + w)
        ink = ink * window
    return ink


def sklearn_digits(style: str = "upscaled", seed: int = 0, side: int = 64) -> tuple | None:
    """scikit-learn's 1,797 handwritten 8x8 digits as image files, or None without scikit-learn.

    Args:
        style: "upscaled": white on black, bilinearly upscaled to `side` x `side` (PNG);
            "photo": the 8x8 ink as a phone photo shows it (`as_photo` on a `side` x `side`
            page, 35-70 % of the frame high, JPEG), drawn with `seed`.
        seed: for the photo effects.
        side: the images' side in pixels.

    Returns:
        (list of encoded image bytes, list of labels "0".."9"), in scikit-learn's order.

    Raises:
        ValueError: unknown style.
    """
    if style not in ("upscaled", "photo"):
        raise ValueError(f"style must be 'upscaled' or 'photo', got {style!r}")
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        return None
    digits = load_digits()
    rng = np.random.default_rng(seed)
    images = []
    for image in digits.images:
        if style == "upscaled":
            pixels = (image / 16.0 * 255.0).astype(np.uint8)
            images.append(png(Image.fromarray(pixels).resize((side, side), Image.Resampling.BILINEAR)))
        else:
            images.append(jpeg(as_photo(image / 16.0, (side, side), rng, rng.uniform(0.35, 0.7)), rng))
    return images, [str(int(t)) for t in digits.target]
