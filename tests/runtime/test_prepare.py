"""edgemnist.runtime.prepare: real image files (drawn with Pillow) into MNIST's form; geometry, polarity, noise, bad files."""
from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont, ImageOps, features

from _images import (animated_gif, as_stored, digit_photo, font_path, jpeg_bytes, write_bilevel_png,
                     write_image)
from edgemnist.runtime import prepare as prep


def _centre_of_mass(image: np.ndarray) -> tuple:
    weights = image.astype(np.float64)
    ys, xs = np.indices(image.shape)
    return float((weights * ys).sum() / weights.sum()), float((weights * xs).sum() / weights.sum())


def _extent(image: np.ndarray, level: int = 30) -> tuple:
    """(height, width) of the pixels above `level`."""
    rows, cols = np.nonzero(image > level)
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64))[0, 1])


def _text_box(text: str, size, height: int, centre) -> tuple:
    """(top, left, bottom, right) of the ink digit_photo draws, from a clean render of it."""
    return _ink_box(np.asarray(digit_photo(text, size=size, height=height, centre=centre, dark_on_light=False)) > 128)


def _ink_box(mask: np.ndarray) -> tuple:
    rows, cols = np.nonzero(mask)
    return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1


# --------------------------------------------------------------------------- one digit


def test_dark_ink_off_centre_on_a_large_canvas_lands_as_mnist(tmp_path):
    size, centre = (600, 400), (0.25, 0.7)
    path = write_image(digit_photo("7", size=size, height=120, centre=centre), tmp_path / "seven.png")
    ready = prep.prepare(path)
    assert ready.reason is None and ready.inverted
    image = ready.image
    assert image.shape == (28, 28) and image.dtype == np.uint8
    cy, cx = _centre_of_mass(image)
    assert abs(cy - prep.CENTRE) <= 0.5 and abs(cx - prep.CENTRE) <= 0.5
    assert max(_extent(image, 0)) in (19, 20, 21)  # the long side fills the 20-pixel box
    assert image.max() == 255 and image[0].max() == 0 and image[:, 0].max() == 0  # white on black, margins empty
    # the box is where the glyph was drawn, in the file's pixels (the work image is 100 wide: 6 px a step)
    truth = _text_box("7", size, 120, centre)
    assert all(abs(a - b) <= 8 for a, b in zip(ready.box, truth)), (ready.box, truth)


def test_polarity_light_on_dark_and_dark_on_light_give_the_same_digit(tmp_path):
    dark = prep.prepare(write_image(digit_photo("4", dark_on_light=True), tmp_path / "dark.png"))
    light = prep.prepare(write_image(digit_photo("4", dark_on_light=False), tmp_path / "light.png"))
    assert dark.inverted and not light.inverted
    assert _correlation(dark.image, light.image) > 0.95


def test_noise_uneven_light_and_jpeg_leave_the_digit(tmp_path):
    clean = prep.prepare(digit_photo("5", centre=(0.6, 0.4)))
    path = tmp_path / "photo.jpg"
    path.write_bytes(jpeg_bytes(digit_photo("5", centre=(0.6, 0.4), noise=12, light=120, seed=3), quality=40))
    noisy = prep.prepare(path)
    assert noisy.reason is None and noisy.inverted
    assert _correlation(clean.image, noisy.image) > 0.85
    assert all(abs(a - b) <= 6 for a, b in zip(clean.box, noisy.box))
    # the light falls by 120 grey levels across the page, more than the ink's contrast at the far
    # corner: a global threshold would take the dark corner for ink
    assert _extent(noisy.image, 0)[0] >= 19


def test_an_mnist_digit_is_left_as_it_is(mnist_test, tmp_path):
    """MNIST's own digits are in MNIST's form already: preparing them must change little."""
    kept = []
    for i in range(20):
        original = mnist_test.images[i]
        ready = prep.prepare(write_image(Image.fromarray(original), tmp_path / f"{i}.png"))
        assert not ready.inverted
        kept.append(_correlation(original, ready.image))
    assert np.median(kept) > 0.9 and min(kept) > 0.6


def test_blank_pages_hold_no_digit(tmp_path):
    for i, page in enumerate([digit_photo("", light=100, noise=10, seed=1), digit_photo("", dark_on_light=False),
                              Image.new("L", (50, 80), 255)]):
        path = tmp_path / f"blank{i}.jpg"
        path.write_bytes(jpeg_bytes(page, quality=50))
        ready = prep.prepare(path)
        assert ready.image is None and ready.reason == prep.NO_DIGIT


def test_a_blob_is_not_a_digit(tmp_path):
    """A filled shape (a coin, a button) holds more ink than any MNIST digit."""
    page = Image.new("L", (240, 200), 220)
    ImageDraw.Draw(page).ellipse((60, 40, 170, 150), fill=50)
    ready = prep.prepare(write_image(page, tmp_path / "coin.png"))
    assert ready.reason == prep.TOO_MUCH_INK and ready.image.mean() > 0.35 * 255


def test_specks_far_from_the_digit_are_dropped(tmp_path):
    page = digit_photo("1", size=(300, 300), height=120, centre=(0.5, 0.5))
    draw = ImageDraw.Draw(page)
    for x, y in ((10, 10), (280, 30), (20, 270)):
        draw.rectangle((x, y, x + 3, y + 3), fill=40)
    ready = prep.prepare(page)
    truth = _text_box("1", (300, 300), 120, (0.5, 0.5))
    assert all(abs(a - b) <= 8 for a, b in zip(ready.box, truth)), (ready.box, truth)


def test_transparent_png_grey16_and_arrays(tmp_path):
    reference = prep.prepare(digit_photo("2")).image
    ink = np.asarray(digit_photo("2", dark_on_light=False), np.uint8)
    rgba = np.zeros(ink.shape + (4,), np.uint8)
    rgba[..., 3] = ink  # black ink on a transparent sheet
    transparent = prep.prepare(write_image(Image.fromarray(rgba, "RGBA"), tmp_path / "alpha.png"))
    assert transparent.inverted and _correlation(reference, transparent.image) > 0.95
    grey16 = Image.fromarray(np.asarray(digit_photo("2"), np.uint16) * 257)
    assert _correlation(reference, prep.prepare(write_image(grey16, tmp_path / "grey16.png")).image) > 0.99
    rgb = np.repeat(np.asarray(digit_photo("2"))[..., None], 3, axis=2)
    assert np.array_equal(prep.prepare(rgb).image, reference)
    assert np.array_equal(prep.prepare(rgb[..., 0].astype(np.float32) / 255.0).image, reference)
    for name in ("pic.bmp", "pic.pgm", "pic.ppm"):
        image = digit_photo("2") if name != "pic.ppm" else digit_photo("2").convert("RGB")
        assert np.array_equal(prep.prepare(write_image(image, tmp_path / name)).image, reference)


# --------------------------------------------------------------------------- bad input


def test_bad_files_raise_one_clear_error(tmp_path):
    good = write_image(digit_photo("3"), tmp_path / "good.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(good[: len(good) // 3])
    (tmp_path / "notes.png").write_text("not an image\n")
    (tmp_path / "empty.jpg").write_bytes(b"")
    for name in ("truncated.png", "notes.png", "empty.jpg"):
        with pytest.raises(ValueError, match=name):
            prep.prepare(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        prep.prepare(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="image bytes"):
        prep.prepare(good[:100])
    with pytest.raises(ValueError, match="shape"):
        prep.prepare(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        prep.prepare(np.full((30, 30), 2.0, np.float32))


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="work_size"):
        prep.PrepareConfig(work_size=10)
    with pytest.raises(ValueError, match="ink_fraction"):
        prep.PrepareConfig(ink_fraction=0.0)
    with pytest.raises(ValueError, match="noise_factor"):
        prep.PrepareConfig(noise_factor=-1.0)


def test_plain_resizes_only(mnist_test):
    original = mnist_test.images[0]
    assert np.array_equal(prep.plain(original), original)
    big = np.asarray(Image.fromarray(original).resize((112, 112), Image.Resampling.NEAREST))
    assert prep.plain(big).shape == (28, 28) and _correlation(prep.plain(big), original) > 0.95


# --------------------------------------------------------------------------- several digits


def _number(text: str, overlap: float = -15.0, noise: float = 0.0, light: float = 0.0):
    """A page with `text` written glyph by glyph (each `overlap` pixels into the next; negative: a gap),
    dark on light, and each glyph's ink box."""
    size = (110 + 80 * len(text), 160)
    font = ImageFont.truetype(str(font_path()), 100)
    ink = Image.new("L", size, 0)
    draw = ImageDraw.Draw(ink)
    boxes, x = [], 50.0
    for ch in text:
        glyph = Image.new("L", size, 0)
        ImageDraw.Draw(glyph).text((x, 80), ch, fill=255, font=font, anchor="lm")
        boxes.append(_ink_box(np.asarray(glyph) > 128))
        draw.text((x, 80), ch, fill=255, font=font, anchor="lm")
        x += draw.textlength(ch, font=font) - overlap
    level = np.asarray(ink, np.float32) / 255.0
    yy, xx = np.mgrid[0:size[1], 0:size[0]]
    paper = 225.0 - light * (yy / size[1] + xx / size[0]) / 2
    pixels = paper + (30.0 - paper) * level + np.random.default_rng(0).normal(0, noise or 1e-9, level.shape)
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8)), boxes


def test_a_number_is_cut_into_its_digits_left_to_right(tmp_path):
    page, truth = _number("2024", noise=6, light=60)
    path = tmp_path / "meter.jpg"
    path.write_bytes(jpeg_bytes(page, quality=70))
    digits, reason, inverted = prep.prepare_digits(path)
    assert reason is None and inverted and len(digits) == 4
    for got, want in zip(digits, truth):
        assert all(abs(a - b) <= 4 for a, b in zip(got.box, want)), (got.box, want)
        cy, cx = _centre_of_mass(got.image)
        assert abs(cy - prep.CENTRE) <= 0.5 and abs(cx - prep.CENTRE) <= 0.5
    # the two 2s look alike after preparation, and unlike the 0
    assert _correlation(digits[0].image, digits[2].image) > 0.9 > _correlation(digits[0].image, digits[1].image)


def test_touching_digits_are_cut_near_where_they_meet():
    page, truth = _number("5381", overlap=12)
    digits, reason, _ = prep.prepare_digits(page)
    assert reason is None and len(digits) == 4
    for got, want in zip(digits, truth):
        centre = (got.box[1] + got.box[3]) / 2
        assert want[1] <= centre <= want[3], (got.box, want)  # each piece is centred on its own glyph
        assert abs(got.box[1] - want[1]) <= 14 and abs(got.box[3] - want[3]) <= 14, (got.box, want)


def test_a_decimal_point_and_specks_are_not_digits():
    page = digit_photo("12", size=(300, 150), height=90)
    ImageDraw.Draw(page).ellipse((146, 112, 154, 120), fill=40)  # between and below the digits
    digits, reason, _ = prep.prepare_digits(page)
    assert reason is None and len(digits) == 2
    blank_digits, blank_reason, _ = prep.prepare_digits(digit_photo("", light=80, noise=8))
    assert blank_digits == [] and blank_reason == prep.NO_DIGIT


# --------------------------------------------------------------------------- connected components


def _flood_fill_components(mask: np.ndarray) -> list:
    """Sets of pixels, one per 8-connected component: the textbook breadth-first search."""
    seen = np.zeros(mask.shape, bool)
    components = []
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        seen[start] = True
        queue, pixels = deque([start]), set()
        while queue:
            y, x = queue.popleft()
            pixels.add((int(y), int(x)))
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = y + dy, x + dx
                    if 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1] and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        queue.append((ny, nx))
        components.append(frozenset(pixels))
    return components


@pytest.mark.parametrize("density,seed", [(0.2, 0), (0.45, 1), (0.6, 2), (0.05, 3)])
def test_connected_components_equal_a_flood_fill(density, seed):
    mask = np.random.default_rng(seed).random((37, 53)) < density
    found = prep.connected_components(mask)
    groups = [frozenset(map(tuple, np.argwhere(found.labels == k + 1).tolist())) for k in range(len(found))]
    assert set(groups) == set(_flood_fill_components(mask))
    for k, pixels in enumerate(groups):
        rows, cols = zip(*pixels)
        assert found.areas[k] == len(pixels)
        assert tuple(found.boxes[k]) == (min(rows), min(cols), max(rows) + 1, max(cols) + 1)
    assert len(prep.connected_components(np.zeros((5, 5), bool))) == 0


# --------------------------------------------------------------------------- what phones, scanners and canvases send

HEIC = Path(__file__).resolve().parent.parent / "files" / "digit3.heic"  # a real HEIC (pillow-heif 1.9), 96x96


def _max_difference(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int64) - b.astype(np.int64)).max())


def _ink_level(text: str) -> np.ndarray:
    """digit_photo's ink coverage in [0, 1] (0 exactly off the glyph), 200x200."""
    light = np.asarray(digit_photo(text, dark_on_light=False), np.float32)
    return np.clip((light - 10.0) / 230.0, 0.0, 1.0)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_honoured_as_pillow_reads_it(tmp_path, orientation):
    upright = digit_photo("7", size=(300, 200), height=120, centre=(0.4, 0.45))
    stored, exif = as_stored(upright, orientation)
    png = write_image(stored, tmp_path / "photo.png", exif=exif)
    # the table is Pillow's: the full-size grey image is what ImageOps.exif_transpose gives
    grey, scale = prep.read_grey(png)
    assert np.array_equal(grey, np.asarray(ImageOps.exif_transpose(Image.open(png)).convert("L")))
    assert np.array_equal(grey, np.asarray(upright)) and scale == 1.0
    # the same digit, the same prepared image and box as the upright file (lossless: exactly)
    reference = prep.prepare(write_image(upright, tmp_path / "upright.png"))
    turned = prep.prepare(png)
    assert np.array_equal(turned.image, reference.image) and turned.box == reference.box
    assert prep.prepare(Image.open(png)).box == reference.box  # a PIL image of the file too


@pytest.mark.parametrize("orientation", (3, 6, 8))
def test_exif_orientation_of_a_large_jpeg_decoded_by_draft(tmp_path, orientation):
    upright = digit_photo("7", size=(3000, 2000), height=1200, centre=(0.4, 0.45), noise=4)
    stored, exif = as_stored(upright, orientation)
    stored.save(tmp_path / "phone.jpg", quality=85, exif=exif)
    upright.save(tmp_path / "upright.jpg", quality=85)
    with Image.open(tmp_path / "phone.jpg") as image:
        assert image.size == stored.size != upright.size or orientation == 3  # stored sideways on disk
    grey, scale = prep.read_grey(tmp_path / "phone.jpg", 100)
    assert grey.shape == (67, 100) and scale == 30.0  # upright, and reduced
    reference, turned = prep.prepare(tmp_path / "upright.jpg"), prep.prepare(tmp_path / "phone.jpg")
    assert _correlation(turned.image, reference.image) > 0.97
    assert all(abs(a - b) <= 60 for a, b in zip(turned.box, reference.box)), (turned.box, reference.box)


def test_a_decompression_bomb_is_one_line_naming_the_file_and_the_limit(tmp_path):
    bomb = write_bilevel_png(tmp_path / "bomb.png", 20000, 20000)
    assert bomb.stat().st_size < 200_000  # small on disk, 400 M pixels decoded
    with pytest.raises(ValueError, match=r"bomb\.png: 400,000,000 pixels, over the limit of [\d,]+ .*MAX_IMAGE_PIXELS"):
        prep.prepare(bomb)
    with pytest.raises(ValueError, match="<image bytes>: 400,000,000 pixels"):
        prep.prepare(bomb.read_bytes())


def test_big_images_are_reduced_to_what_the_same_image_gives_at_a_smaller_size(tmp_path):
    small = digit_photo("5", size=(300, 240), height=150, noise=3)
    ink = np.asarray(digit_photo("5", size=(300, 240), height=150, dark_on_light=False))
    for name, image in (("grey", small), ("rgb", small.convert("RGB")), ("bilevel", small.point(lambda v: 255 if v > 128 else 0).convert("1")),
                        ("rgba", Image.fromarray(np.dstack([np.zeros_like(ink)] * 3 + [ink]), "RGBA"))):
        # 8 times the pixels each way, each one a block of 8x8: reduced by whole blocks, the same image
        # (within Pillow's fixed-point rounding of a box average: one grey level)
        big = image.resize((image.width * 8, image.height * 8), Image.Resampling.NEAREST)
        small_file = write_image(image, tmp_path / f"{name}-small.png")
        big_file = write_image(big, tmp_path / f"{name}-big.png")
        assert _max_difference(prep.read_grey(big_file, 100)[0], prep.read_grey(small_file, 100)[0]) <= 1, name
        expected, got = prep.prepare(small_file), prep.prepare(big_file)
        assert expected.reason is None and _correlation(got.image, expected.image) > 0.99, name
        assert got.box == tuple(8 * v for v in expected.box), name


def test_a_canvas_rgba_array_is_composited_as_the_same_png(tmp_path):
    canvas = np.zeros((200, 200, 4), np.uint8)  # a canvas's ImageData: black strokes on transparent pixels
    canvas[..., 3] = _ink_level("2") * 255.0 + 0.5
    from_png = prep.prepare(write_image(Image.fromarray(canvas, "RGBA"), tmp_path / "canvas.png"))
    from_array = prep.prepare(canvas)
    assert from_array.reason is None and from_array.inverted
    # the file is reduced before it is composited, the array after: the same within rounding
    assert _max_difference(prep.read_grey(canvas, 100)[0], prep.read_grey(tmp_path / "canvas.png", 100)[0]) <= 1
    assert _correlation(from_array.image, from_png.image) > 0.98
    assert _correlation(from_array.image, prep.prepare(digit_photo("2")).image) > 0.95
    as_floats = prep.prepare(canvas.astype(np.float32) / 255.0)  # the same in [0, 1]
    assert _max_difference(as_floats.image, from_array.image) <= 1
    white_ink = canvas.copy()
    white_ink[..., :3] = 255  # white strokes on a transparent sheet go onto black paper
    light = prep.prepare(white_ink)
    assert not light.inverted and _correlation(light.image, from_array.image) > 0.98


def test_float_images_in_0_1_read_at_their_brightness(tmp_path):
    photo = digit_photo("4")
    reference = prep.prepare(photo).image
    unit = np.asarray(photo, np.float32) / 255.0
    mode_f = Image.fromarray(unit, "F")  # reduced in floats, not in bytes: within a grey level
    assert _max_difference(prep.prepare(mode_f).image, reference) <= 1
    tiff = write_image(mode_f, tmp_path / "scan.tif")  # a 32-bit float TIFF
    assert Image.open(tiff).mode == "F"
    assert _max_difference(prep.prepare(tiff).image, reference) <= 1
    assert prep.read_grey(tiff)[0].mean() > 150  # paper at 225/255, not near black
    rgb = np.repeat(unit[..., None], 3, axis=2)
    assert np.array_equal(prep.prepare(rgb).image, reference)
    assert np.array_equal(prep.prepare((unit * 65535).round().astype(np.uint16)).image, reference)


@pytest.mark.parametrize("mode", ("L", "RGB"))
def test_a_colour_key_png_is_composited(tmp_path, mode):
    pixels = np.clip(40.0 * _ink_level("6") + 0.5, 0, 255).astype(np.uint8)  # dark ink (40) on black (0) ...
    image = Image.fromarray(pixels, "L").convert(mode)
    key = 0 if mode == "L" else (0, 0, 0)
    path = write_image(image, tmp_path / "keyed.png", transparency=key)  # ... where black is transparent
    assert "transparency" in Image.open(path).info
    keyed = prep.prepare(path)
    # composited onto white paper: dark ink on light paper, read as the photo of the same digit
    assert keyed.inverted and keyed.reason is None
    assert _correlation(keyed.image, prep.prepare(digit_photo("6")).image) > 0.9


def test_animations_and_multi_page_files_are_refused_naming_the_frames(tmp_path):
    gif = animated_gif(tmp_path / "anim.gif", frames=3)
    with pytest.raises(ValueError, match=r"anim\.gif: an animated or multi-page GIF image \(3 frames\)"):
        prep.prepare(gif)
    pages = [digit_photo(d) for d in "12"]
    pages[0].save(tmp_path / "pages.tif", save_all=True, append_images=pages[1:])
    with pytest.raises(ValueError, match=r"pages\.tif: .*TIFF image \(2 frames\)"):
        prep.prepare(tmp_path / "pages.tif")
    pages[0].save(tmp_path / "anim.png", save_all=True, append_images=pages[1:])  # APNG
    with pytest.raises(ValueError, match=r"\(2 frames\)"):
        prep.prepare((tmp_path / "anim.png").read_bytes())
    # a phone's MPO JPEG (the photo and a second picture) is a photo: its first frame is read
    pages[0].save(tmp_path / "phone.jpg", "MPO", save_all=True, append_images=pages[1:], quality=90)
    assert Image.open(tmp_path / "phone.jpg").format == "MPO"
    pages[0].save(tmp_path / "plain.jpg", quality=90)
    assert np.array_equal(prep.prepare(tmp_path / "phone.jpg").image, prep.prepare(tmp_path / "plain.jpg").image)
    # one frame is one image: a still GIF (a palette image) reads as the PNG does
    write_image(digit_photo("1").convert("P"), tmp_path / "still.gif")
    assert np.array_equal(prep.prepare(tmp_path / "still.gif").image, prep.prepare(digit_photo("1")).image)


def test_formats_this_pillow_cannot_decode_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"digit3\.heic: a HEIC image, which this Pillow cannot decode"):
        prep.prepare(HEIC)
    with pytest.raises(ValueError, match="<image bytes>: a HEIC image"):
        prep.prepare(HEIC.read_bytes())
    (tmp_path / "broken.heic").write_bytes(b"not really")
    with pytest.raises(ValueError, match=r"broken\.heic: a \.heic image, which this Pillow cannot decode"):
        prep.prepare(tmp_path / "broken.heic")
    assert prep.is_image_file(HEIC) and ".heic" not in prep.readable_suffixes()
    # the suffixes follow this Pillow's build
    assert (".webp" in prep.readable_suffixes()) == features.check("webp")
    assert (".avif" in prep.readable_suffixes()) == features.check("avif")
    assert {".png", ".jpg", ".gif", ".tif", ".bmp"} <= set(prep.readable_suffixes())
    if features.check("webp"):  # a WebP it can read is read
        webp = write_image(digit_photo("8"), tmp_path / "photo.webp", lossless=True)
        assert np.array_equal(prep.prepare(webp).image, prep.prepare(digit_photo("8")).image)
