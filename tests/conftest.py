"""Shared fixtures: small real photographs (crops of images bundled with scikit-image)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# Test inputs are tiny: one thread is faster than two there, and immune to a busy machine.
torch.set_num_threads(1)


def photo_crop(name: str = "astronaut", height: int = 32, width: int = 48) -> np.ndarray:
    """A downscaled real photograph, uint8 (height, width, 3)."""
    from skimage import data as skdata

    picture = getattr(skdata, name)()
    return np.asarray(Image.fromarray(picture).resize((width, height), Image.LANCZOS))


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """data_root with a folder TINY of two small photographs (a png and a jpg); returns data_root."""
    folder = tmp_path / "data" / "TINY"
    folder.mkdir(parents=True)
    Image.fromarray(photo_crop("astronaut", 32, 48)).save(folder / "astronaut.png")
    Image.fromarray(photo_crop("chelsea", 30, 40)).save(folder / "chelsea.jpg", quality=95)
    return tmp_path / "data"
