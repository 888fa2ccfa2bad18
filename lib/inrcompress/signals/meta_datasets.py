"""Meta-training image sets (spec section 5.2): DIV2K, CelebA or a plain folder, every image of a
split prepared to one (H, W, C) and turned to landscape, as everything a meta-learned model sees
(signals.image.to_landscape)."""

from __future__ import annotations

import csv
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from inrcompress.errors import InrError
from inrcompress.signals.image import IMAGE_SUFFIXES, image_to_values, list_images, open_image, to_landscape

# Decoded, resized meta-training images kept in memory (bytes); beyond it images are re-read.
CACHE_BYTES = 2 << 30
DIV2K_SIZE = (512, 768)  # (H, W) before downscaling
CELEBA_SIZE = (218, 178)  # (H, W) before downscaling (turned to landscape afterwards)
FOLDER_VAL_FRACTION = 0.1

@dataclass
class MetaImages:
    """One split of a meta-dataset: every image prepared to the same (H, W, C), uint8, read lazily and
    cached in memory up to CACHE_BYTES."""

    name: str
    paths: list[Path]
    prepare: Callable[[Path], np.ndarray]
    shape: tuple[int, int, int]
    cache: dict = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, i: int) -> np.ndarray:
        if i in self.cache:
            return self.cache[i]
        array = self.prepare(self.paths[i])
        if array.shape != self.shape:
            raise InrError(f"{self.paths[i]}: prepared to {array.shape}, expected {self.shape}")
        if (len(self.cache) + 1) * array.nbytes <= CACHE_BYTES:
            self.cache[i] = array
        return array

    def targets(self, indices, device) -> torch.Tensor:
        """(B, H*W, C) pixel values in [-1, 1]."""
        return torch.stack([image_to_values(self.image(int(i))) for i in indices]).to(device)


def _open_rgb_or_gray(path: Path, mode: str | None = None) -> Image.Image:
    """The image read by the one loader's rules (signals.image.open_image: orientation, 16 bits,
    palette, alpha), in `mode` ("L" or "RGB"; None: as read)."""
    img = open_image(path)
    return img if mode is None or img.mode == mode else img.convert(mode)


def _landscape(img: Image.Image) -> Image.Image:
    # PIL's rotate(90, expand=True) turns counter-clockwise, like data.to_landscape.
    return img.rotate(90, expand=True) if img.height > img.width else img


def _as_array(img: Image.Image) -> np.ndarray:
    array = np.asarray(img, dtype=np.uint8)
    return np.ascontiguousarray(array[:, :, None] if array.ndim == 2 else array)


def _check_size(height: int, width: int, what: str) -> None:
    if height < 2 or width < 2:
        raise InrError(f"{what}: {height}x{width} after downscaling is too small")


def _div2k_prepare(factor: int) -> Callable[[Path], np.ndarray]:
    height, width = DIV2K_SIZE[0] // factor, DIV2K_SIZE[1] // factor

    def prepare(path: Path) -> np.ndarray:
        img = _landscape(_open_rgb_or_gray(path, "RGB"))
        img.thumbnail((DIV2K_SIZE[1], DIV2K_SIZE[0]), Image.LANCZOS)
        return _as_array(img.resize((width, height), Image.BILINEAR))
    return prepare


def _celeba_prepare(factor: int) -> Callable[[Path], np.ndarray]:
    height, width = CELEBA_SIZE[0] // factor, CELEBA_SIZE[1] // factor

    def prepare(path: Path) -> np.ndarray:
        img = _open_rgb_or_gray(path, "RGB").resize((width, height), Image.BILINEAR)
        return to_landscape(_as_array(img))[0]
    return prepare


def _folder_prepare(mode: str, height: int, width: int) -> Callable[[Path], np.ndarray]:
    def prepare(path: Path) -> np.ndarray:
        img = _landscape(_open_rgb_or_gray(path, mode))
        if (img.height, img.width) != (height, width):
            img = img.resize((width, height), Image.BILINEAR)
        return _as_array(img)
    return prepare


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _div2k(root: Path, factor: int) -> tuple[MetaImages, MetaImages]:
    height, width = DIV2K_SIZE[0] // factor, DIV2K_SIZE[1] // factor
    _check_size(height, width, "DIV2K")
    splits = []
    for split, sub in (("train", "DIV2K_train_HR"), ("val", "DIV2K_valid_HR")):
        folder = root / sub
        if not folder.is_dir():
            raise InrError(f"DIV2K folder not found: {folder} (python data/download_div2k.py fetches it)")
        paths = _images_in(folder)
        if not paths:
            raise InrError(f"no images in {folder}")
        splits.append(MetaImages(f"DIV2K/{split}", paths, _div2k_prepare(factor), (height, width, 3)))
    return splits[0], splits[1]


def _celeba(root: Path, factor: int) -> tuple[MetaImages, MetaImages]:
    """CelebA (spec 5.2): train = partition 0 of list_eval_partition.csv, val = the first 100 of
    partition 1, each resized to (218 // f, 178 // f) and then turned to landscape (178 // f, 218 // f).
    The turn departs from the paper, which meta-trained on upright faces: overfitMetaSiren and
    quantize_and_test turn every portrait image to landscape, so the init must be learned that way too."""
    height, width = CELEBA_SIZE[0] // factor, CELEBA_SIZE[1] // factor
    _check_size(height, width, "CelebA")
    folder, table = root / "img_align_celeba_png", root / "list_eval_partition.csv"
    for needed in (folder, table):
        if not needed.exists():
            raise InrError(f"CelebA needs {needed} (see data/README)")
    partitions: dict[int, list[Path]] = {0: [], 1: []}
    with open(table, newline="") as f:
        for row in csv.reader(f):
            if len(row) < 2 or not row[1].strip().isdigit():
                continue  # header or blank line
            part = int(row[1])
            if part in partitions:
                partitions[part].append(folder / (Path(row[0].strip()).stem + ".png"))
    train, val = partitions[0], partitions[1][:100]
    if not train or not val:
        raise InrError(f"{table} lists no training (0) or validation (1) images")
    missing = next((p for p in train + val if not p.is_file()), None)
    if missing is not None:
        raise InrError(f"CelebA image missing: {missing}")
    shape = (min(height, width), max(height, width), 3)  # turned to landscape
    prepare = _celeba_prepare(factor)
    return MetaImages("CelebA/train", train, prepare, shape), MetaImages("CelebA/val", val, prepare, shape)


def _plain_folder(folder: Path, factor: int) -> tuple[MetaImages, MetaImages]:
    """A folder of images: train/ and val/ subfolders when both exist, else the last 10% by sorted
    name (at least one image) are the validation images. Every image is turned to landscape and resized
    to the first (training) image's landscape size // factor; the mode (RGB or gray) is the first's."""
    if (folder / "train").is_dir() and (folder / "val").is_dir():
        train, val = list_images(folder / "train"), list_images(folder / "val")
    else:
        paths = list_images(folder)
        if len(paths) < 2:
            raise InrError(f"{folder} needs at least 2 images (training and validation)")
        n_val = max(1, round(FOLDER_VAL_FRACTION * len(paths)))
        train, val = paths[:-n_val], paths[-n_val:]
    first = _landscape(_open_rgb_or_gray(train[0]))
    height, width = first.height // factor, first.width // factor
    _check_size(height, width, str(train[0]))
    channels = 1 if first.mode == "L" else 3
    prepare = _folder_prepare(first.mode, height, width)
    name = folder.name
    return (MetaImages(f"{name}/train", train, prepare, (height, width, channels)),
            MetaImages(f"{name}/val", val, prepare, (height, width, channels)))


def meta_datasets(data_root: Path, name: str, factor: int) -> tuple[MetaImages, MetaImages]:
    """(train, val) of a meta-dataset (spec 5.2): DIV2K, CelebA, or any folder under data_root."""
    if factor < 1:
        raise InrError(f"downscaling_factor must be >= 1, got {factor}")
    root = Path(data_root) / name
    if not root.is_dir():
        raise InrError(f"meta-training data not found: {root}")
    if name == "DIV2K":
        return _div2k(root, factor)
    if name == "CelebA":
        return _celeba(root, factor)
    return _plain_folder(root, factor)

