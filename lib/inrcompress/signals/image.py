"""Images as coordinate signals: loading, the coordinate grid, and conversion back to pixels.

Coordinates: (row, column) in [-1, 1] inclusive, row-major (spec 3.1). Pixel values: [-1, 1]
(8-bit value v -> v / 255 * 2 - 1). An (H, W) image with C channels is H*W coordinates -> C values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from inrcompress.errors import InrError
from inrcompress.signals.grid import coordinate_grid  # noqa: F401  (images' pixel grid)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Decompression-bomb guard and the decoder's limit: 256 megapixels.
MAX_PIXELS = 1 << 28


def list_images(folder: str | Path) -> list[Path]:
    """The png/jpg files of a dataset folder, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InrError(f"data folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InrError(f"no .png/.jpg images in {folder}")
    return files


def load_image(path: str | Path, downscaling_factor: int = 1) -> np.ndarray:
    """An image as uint8 (H, W, C), C = 1 for grayscale, else 3; downscaled to (H//f, W//f) with
    PIL's antialiased bilinear filter (what the paper's torchvision Resize did)."""
    path = Path(path)
    if downscaling_factor < 1:
        raise InrError(f"downscaling_factor must be >= 1, got {downscaling_factor}")
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_PIXELS:
                raise InrError(f"{path}: {img.width}x{img.height} is larger than the supported {MAX_PIXELS} pixels")
            img = img.convert("L" if img.mode in ("L", "I;16", "I", "1") else "RGB")
            height, width = img.height // downscaling_factor, img.width // downscaling_factor
            if height < 2 or width < 2:
                raise InrError(f"{path}: {img.width}x{img.height} downscaled by {downscaling_factor} is too small")
            if downscaling_factor > 1:
                img = img.resize((width, height), Image.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise InrError(f"cannot read image {path}: {e}") from None
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
