"""Opening picture files safely as 8-bit RGB (Pillow and numpy only; :mod:`emoselect.tensors`
turns them into network input).

Every picture becomes 8-bit RGB the same way, whatever its file holds: grayscale is repeated over
three channels, palette images are expanded, 16-bit and float images are rescaled (not clipped) to
0-255, CMYK is converted, transparency is composited on white, EXIF orientation is applied.
Each conversion is reported so that a researcher knows what the network saw.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MIN_SIDE = 8  # pixels; smaller images are skipped as unusable
SMALL_SIDE = 64  # pixels; smaller images are kept but reported (heavily upsampled)

# torchvision's ImageNet preprocessing
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageProblem(Exception):
    """A picture that cannot be used; the message says why."""


@dataclass(frozen=True)
class Preprocessing:
    """How a picture becomes a network input: resize the short side to ``resize`` pixels
    (bilinear, antialiased), take the central ``crop`` x ``crop`` square, scale to [0, 1],
    optionally make it gray (ITU-R 601 luma repeated over three channels), then normalise."""

    resize: int = 256
    crop: int = 224
    grayscale: bool = False
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


TILE_ROWS = 256  # rows converted at a time: a huge 16-bit picture never exists as one array or in float64
ORIENTATION = 0x0112  # the EXIF orientation tag


def _wide(mode: str) -> bool:
    """16-bit, 32-bit integer and floating-point pictures (rescaled to 8 bits)."""
    return mode in ("I", "F") or mode.startswith("I;16")


def _bands(image: Image.Image) -> Iterator[tuple[int, np.ndarray]]:
    """The picture's pixels as arrays of ``TILE_ROWS`` rows, top to bottom (one band in memory at a time)."""
    width, height = image.size
    for start in range(0, height, TILE_ROWS):
        yield start, np.asarray(image.crop((0, start, width, min(start + TILE_ROWS, height))))


def _to_8bit(image: Image.Image) -> tuple[Image.Image, str]:
    """16-bit ('I;16*', 'I') and float ('F') images rescaled to 8 bits by their nominal range,
    read and converted a band of rows at a time (memory: the 8-bit result plus one band)."""
    if image.mode.startswith("I;16"):
        top, low = 65535.0, None
        note = "16-bit image rescaled to 8 bits"
    else:
        largest = max(band.max() for _, band in _bands(image))
        if image.mode == "I":
            top, low = (65535.0 if largest > 255 else 255.0), None
            note = "32-bit integer image rescaled to 8 bits"
        else:  # 'F'
            top, low = (1.0 if largest <= 1.0 else float(largest)), 0.0
            note = "floating-point image rescaled to 8 bits"
    out = np.empty((image.height, image.width), np.uint8)
    for start, band in _bands(image):
        band = np.clip(band, low, None) if low is not None else band.astype(np.float64)  # floats stay float32
        out[start : start + TILE_ROWS] = np.clip(np.round(band / top * 255.0), 0, 255)
    return Image.fromarray(out), note


MAX_PIXELS = 90_000_000  # default guard: larger pictures are skipped (about Pillow's own bomb limit)


def load_rgb(path: str | Path, max_pixels: int | None = MAX_PIXELS) -> tuple[Image.Image, list[str]]:
    """Open a picture as 8-bit RGB; returns (image, notes on conversions made).

    Raises :class:`ImageProblem` for a missing, unreadable, corrupt, truncated or tiny file, and
    for one with more than ``max_pixels`` pixels (checked from the header, before decoding; None:
    no check, for pictures that passed it already). Pillow's own decompression-bomb error (twice its
    ``MAX_IMAGE_PIXELS``, about 179 million pixels) still applies.
    """
    path = Path(path)
    notes: list[str] = []
    image, frames, fmt, mode = _decode(path, max_pixels, notes)
    if frames > 1:
        notes.insert(0, f"{fmt} with {frames} frames: first frame used")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        notes.append("palette image expanded to RGB")
    image = _on_white(image, notes)
    if image.mode == "CMYK":
        notes.append("CMYK image converted to RGB")
    elif image.mode in ("L", "1") and not _wide(mode):
        notes.append("grayscale image repeated over RGB channels")
    if image.mode != "RGB":
        image = image.convert("RGB")
    _check_size(image, notes)
    return image, notes


def _decode(path: Path, max_pixels: int | None, notes: list[str]) -> tuple[Image.Image, int, str | None, str]:
    """The picture file decoded: (its first frame with the EXIF orientation applied, 8-bit where the
    file's pixels are wider (a note added to ``notes``), else in the file's mode; the number of frames;
    the file format; the file's pixel mode). ``max_pixels``: the largest width x height in pixels
    (None: no limit). Every failure to open or decode raises :class:`ImageProblem`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # --max-pixels is the guard
            with Image.open(path) as opened:
                width, height = opened.size
                if max_pixels is not None and width * height > max_pixels:
                    raise ImageProblem(
                        f"{width}x{height} = {width * height / 1e6:.0f} million pixels, over "
                        f"--max-pixels {max_pixels} (raise it if the memory allows)"
                    )
                opened.load()
                frames = getattr(opened, "n_frames", 1)
                fmt, mode = opened.format, opened.mode
                if _wide(mode):  # converted to 8 bits here, so the wide picture is freed with the file
                    turned = opened.getexif().get(ORIENTATION, 1) != 1
                    image, note = _to_8bit(ImageOps.exif_transpose(opened) if turned else opened)
                    notes.append(note)
                else:
                    image = ImageOps.exif_transpose(opened) or opened  # a copy that outlives the file
            del opened  # closing keeps the decoded pixels while a name refers to them: free them before the RGB copy
    except FileNotFoundError as error:
        raise ImageProblem("file not found") from error
    except UnidentifiedImageError as error:
        raise ImageProblem("not an image file Pillow can read (corrupt or unknown format)") from error
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
        raise ImageProblem(f"cannot decode image ({error})") from error
    return image, frames, fmt, mode


def _on_white(image: Image.Image, notes: list[str]) -> Image.Image:
    """A picture with an alpha channel or a transparent colour as 8-bit RGBA of the same width x
    height (pixels), its transparent pixels composited on white (the share of them added to
    ``notes``); any other picture as it is."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode in ("RGB", "L") and "transparency" in image.info):
        rgba = image.convert("RGBA")
        alpha = np.asarray(rgba)[..., 3]
        if alpha.min() < 255:
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            rgba = Image.alpha_composite(background, rgba)
            notes.append(f"transparent pixels ({np.mean(alpha < 255):.1%}) composited on white")
        image = rgba
    return image


def _check_size(image: Image.Image, notes: list[str]) -> None:
    """Raise :class:`ImageProblem` for a picture under ``MIN_SIDE`` pixels on a side; note one under
    ``SMALL_SIDE`` pixels (it will be heavily upsampled)."""
    width, height = image.size
    if min(width, height) < MIN_SIDE:
        raise ImageProblem(f"image is only {width}x{height} pixels (under {MIN_SIDE}): unusable")
    if min(width, height) < SMALL_SIDE:
        notes.append(f"small image ({width}x{height}) upsampled to the network's input size")
