"""Images as coordinate signals: loading, the coordinate grid, and conversion back to pixels.

Coordinates: (row, column) in [-1, 1] inclusive, row-major (spec 3.1). Pixel values: [-1, 1]
(8-bit value v -> v / 255 * 2 - 1). An (H, W) image with C channels is H*W coordinates -> C values.

What an input file becomes (`open_image`, the one place every image is read through; README,
"Inputs and limits"). The codec works in 8 bits per sample, gray (C = 1) or RGB (C = 3):

- EXIF orientation is applied first, as every viewer does (PIL.ImageOps.exif_transpose): a phone
  photo stored sideways with Orientation 6 is fitted upright.
- 16-bit samples (gray, RGB, RGBA PNGs) are scaled to 8 bits by rounding x / 257 to the nearest
  integer (x = 257 v maps back to v exactly; 65535 -> 255). Pillow keeps only the high byte of
  16-bit RGB, so those files are decoded a second time for the low byte.
- 1-bit images become gray 0 / 255; palette images become RGB (RGBA with a transparent entry);
  CMYK, YCbCr, LAB and HSV become RGB by Pillow's conversion (no colour management: an embedded
  ICC profile is not applied).
- Alpha (LA, RGBA, palette transparency): an alpha channel that is opaque everywhere carries
  nothing and is dropped; any transparent pixel makes the image be composited onto white (what a
  browser shows on a white page), with a warning, because the codec does not code alpha.
- Floating-point samples (mode F) and 32-bit integers outside 0..65535 are refused.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from inrcompress.errors import InrError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Decompression-bomb guard on an input image (checked from its header, before its pixels are read).
MAX_PIXELS = 1 << 28
# Alpha is composited onto this background (8-bit value of every channel).
ALPHA_BACKGROUND = 255

# Pillow modes of at most 8 bits per sample -> the mode they are read in (gray or RGB, with alpha
# when they have it); palette images ("P") go to RGBA when an entry is transparent, else RGB.
_EIGHT_BIT_MODES = {"1": "L", "L": "L", "LA": "LA", "La": "LA", "RGB": "RGB", "RGBA": "RGBA", "RGBa": "RGBA",
                    "PA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB"}
# Integer gray modes, read as 16-bit samples ("I": 32-bit, accepted when within 0..65535).
_WIDE_GRAY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def list_images(folder: str | Path) -> list[Path]:
    """The png/jpg files of a dataset folder, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InrError(f"data folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InrError(f"no .png/.jpg images in {folder}")
    return files


def sixteen_to_eight(samples: np.ndarray) -> np.ndarray:
    """16-bit samples (0..65535) as 8-bit: x / 257 rounded to nearest ((x + 128) // 257 is exact:
    x / 257 is never halfway between two integers)."""
    return ((samples.astype(np.uint32) + 128) // 257).astype(np.uint8)


# 16-bit PNGs Pillow reduces to 8 bits (rawmode -> the rawmode of a second decoding that yields the
# low bytes). Each pair reads the same bits per pixel, so PNG's row filters are undone alike.
_PNG16_SECOND_DECODING = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L", "LA;16B": "RGBA"}


def _png16_samples(path: Path, rawmode: str) -> np.ndarray:
    """The 16-bit samples (H, W, C), oriented, of a 16-bit RGB (C 3), RGBA (4) or gray+alpha (2) PNG."""
    def decode(raw: str) -> np.ndarray:
        with Image.open(path) as again:
            again.tile = [again.tile[0]._replace(args=raw)]
            return np.asarray(ImageOps.exif_transpose(again)).astype(np.uint32)

    if rawmode == "LA;16B":  # decoded as 8-bit RGBA: the bytes (L high, L low, A high, A low)
        b = decode("RGBA")
        return np.stack([b[:, :, 0] * 256 + b[:, :, 1], b[:, :, 2] * 256 + b[:, :, 3]], axis=-1)
    return decode(rawmode) * 256 + decode(_PNG16_SECOND_DECODING[rawmode])


def _wide_png_rawmode(img: Image.Image) -> str | None:
    tile = img.tile
    if img.format == "PNG" and len(tile) == 1 and isinstance(tile[0].args, str) \
            and tile[0].args in _PNG16_SECOND_DECODING:
        return tile[0].args
    return None


def _samples(img: Image.Image, path: Path) -> np.ndarray:
    """An oriented PIL image as 8-bit samples (H, W, C): C 1 (gray) or 3 (RGB), plus one for alpha."""
    mode = img.mode
    if mode in _WIDE_GRAY_MODES:
        wide = np.asarray(img).astype(np.int64)
        if wide.size and (wide.min() < 0 or wide.max() > 65535):
            raise InrError(f"{path}: 32-bit integer samples outside 0..65535 are not supported "
                           "(save it as an 8- or 16-bit PNG)")
        return sixteen_to_eight(wide)[:, :, None]
    if mode == "F":
        raise InrError(f"{path}: floating-point samples are not supported (save it as an 8- or 16-bit PNG)")
    target = ("RGBA" if "transparency" in img.info else "RGB") if mode == "P" else _EIGHT_BIT_MODES.get(mode)
    if target is None:
        raise InrError(f"{path}: image mode {mode} is not supported (gray, RGB, palette, CMYK, with or "
                       "without alpha, 8 or 16 bits)")
    array = np.asarray(img.convert(target) if target != mode else img)
    return array[:, :, None] if array.ndim == 2 else array


def _without_alpha(samples: np.ndarray, path: Path) -> np.ndarray:
    """(H, W, C) 8-bit samples without their alpha (C 2 or 4: the last channel): dropped when opaque
    everywhere, else the colour composited onto ALPHA_BACKGROUND (rounded to nearest), with a warning."""
    if samples.shape[2] not in (2, 4):
        return samples
    color, alpha = samples[:, :, :-1], samples[:, :, -1]
    if bool(np.all(alpha == 255)):
        return color
    transparent = int(np.count_nonzero(alpha < 255))
    warnings.warn(f"{path}: {transparent} of {alpha.size} pixels are (partly) transparent and the codec codes "
                  "no alpha: the image is composited onto white", stacklevel=3)
    a = alpha.astype(np.float64)[:, :, None] / 255.0
    return np.rint(color * a + ALPHA_BACKGROUND * (1.0 - a)).astype(np.uint8)


def open_image(path: str | Path) -> Image.Image:
    """The image file at `path` as an 8-bit PIL image in mode L or RGB, by the rules of the module
    docstring (orientation, 16 bits, palette, CMYK, alpha). Any unreadable or unsupported file is an
    InrError with a one-line message."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_PIXELS:
                raise InrError(f"{path}: {img.width}x{img.height} is larger than the supported {MAX_PIXELS} pixels")
            wide = _wide_png_rawmode(img)
            if wide is not None:
                samples = sixteen_to_eight(_png16_samples(path, wide))
            else:
                samples = _samples(ImageOps.exif_transpose(img), path)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise InrError(f"cannot read image {path}: {e}") from None
    pixels = np.ascontiguousarray(_without_alpha(samples, path))
    return Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)


def load_image(path: str | Path, downscaling_factor: int = 1) -> np.ndarray:
    """An image as uint8 (H, W, C), C = 1 for grayscale, else 3 (read by `open_image`); downscaled to
    (H//f, W//f) with PIL's antialiased bilinear filter (what the paper's torchvision Resize did)."""
    path = Path(path)
    if downscaling_factor < 1:
        raise InrError(f"downscaling_factor must be >= 1, got {downscaling_factor}")
    img = open_image(path)
    height, width = img.height // downscaling_factor, img.width // downscaling_factor
    if height < 2 or width < 2:
        raise InrError(f"{path}: {img.width}x{img.height} downscaled by {downscaling_factor} is too small")
    if downscaling_factor > 1:
        img = img.resize((width, height), Image.BILINEAR)
    array = np.asarray(img, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return np.ascontiguousarray(array)


def image_to_values(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, C) -> (H*W, C) float32 in [-1, 1]."""
    return torch.from_numpy(image.astype(np.float32)).reshape(-1, image.shape[2]) / 127.5 - 1.0


def values_to_unit(values: torch.Tensor, height: int, width: int) -> np.ndarray:
    """(H*W, C) network output in [-1, 1] -> float (H, W, C) in [0, 1], clipped (for float metrics)."""
    out = (values.detach().float().cpu() / 2 + 0.5).clamp(0, 1)
    return out.reshape(height, width, -1).numpy()


def values_to_uint8(values: torch.Tensor, height: int, width: int) -> np.ndarray:
    """(H*W, C) network output in [-1, 1] -> uint8 (H, W, C), rounded to nearest."""
    unit = values_to_unit(values, height, width)
    return np.clip(np.rint(unit * 255.0), 0, 255).astype(np.uint8)


def save_png(path: str | Path, image: np.ndarray) -> None:
    """Write uint8 (H, W, C) as PNG, atomically."""
    import io

    from inrcompress.config import atomic_write_bytes

    buffer = io.BytesIO()
    Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def to_landscape(image: np.ndarray) -> tuple[np.ndarray, bool]:
    """The orientation policy for meta-learned models (whose init is trained on landscape images):
    a portrait image (H > W) is turned 90 degrees counter-clockwise (as PIL's rotate(90, expand=True)).
    Returns the image and whether it was turned; `from_landscape` undoes it."""
    if image.shape[0] > image.shape[1]:
        return np.ascontiguousarray(np.rot90(image, k=1)), True
    return image, False


def from_landscape(image: np.ndarray, rotated: bool) -> np.ndarray:
    """Undo `to_landscape`: metrics and decoded images are in the original orientation."""
    return np.ascontiguousarray(np.rot90(image, k=-1)) if rotated else image
