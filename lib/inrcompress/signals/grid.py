"""The coordinate grid shared by every modality: pixels of an image, voxels of a shape's SDF volume."""

from __future__ import annotations

import torch


def coordinate_grid(shape: tuple[int, ...]) -> torch.Tensor:
    """(prod(shape), len(shape)) coordinates in [-1, 1]; entry k of a point is 2 i_k / (n_k - 1) - 1."""
    axes = [torch.linspace(-1.0, 1.0, n) for n in shape]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack(mesh, dim=-1).reshape(-1, len(shape))


def coordinate_chunks(shape: tuple[int, ...], points: int):
    """coordinate_grid(shape) in consecutive pieces of at most `points` rows, as (first row, piece):
    the same values, without ever holding the whole grid (a decoder renders a large image this way)."""
    import math

    axes = [torch.linspace(-1.0, 1.0, n) for n in shape]
    total = math.prod(shape)
    for start in range(0, total, points):
        index = torch.arange(start, min(start + points, total))
        columns = []
        for axis, n in zip(reversed(axes), reversed(shape)):  # row-major: the last axis varies fastest
            columns.append(axis[index % n])
            index = index // n
        yield start, torch.stack(columns[::-1], dim=-1)
