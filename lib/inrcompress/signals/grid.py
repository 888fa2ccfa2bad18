"""The coordinate grid shared by every modality: pixels of an image, voxels of a shape's SDF volume."""

from __future__ import annotations

import torch


def coordinate_grid(shape: tuple[int, ...]) -> torch.Tensor:
    """(prod(shape), len(shape)) coordinates in [-1, 1]; entry k of a point is 2 i_k / (n_k - 1) - 1."""
    axes = [torch.linspace(-1.0, 1.0, n) for n in shape]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack(mesh, dim=-1).reshape(-1, len(shape))
