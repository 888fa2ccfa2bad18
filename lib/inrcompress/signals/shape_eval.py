"""Evaluating a shape network: its surface, volumetric IoU, Chamfer distance, and a preview picture.

- Volumetric IoU (percent): occupancy (SDF < 0) of the network and of the mesh on the 100k uniform
  evaluation points in [-1, 1]^3; 100 |A and B| / |A or B|.
- Surface: marching cubes (skimage.measure.marching_cubes) of the network's SDF sampled on a regular
  R^3 grid over [-1, 1]^3 (default R = 128, spacing 2/127 = 0.0157). The paper sphere-traced random
  rays instead; marching cubes is preferred here because it is deterministic, evaluates the network
  in large batches (fast on a CPU), does not depend on the network being a true distance function
  (sphere tracing steps by the predicted value and overshoots or stalls where a fitted SDF has a
  gradient norm far from 1), and yields the mesh that is exported and previewed anyway.
- Chamfer distance: 100k points drawn uniformly (by area) on that surface vs. the 100k ground-truth
  surface points; nearest neighbours with scipy.spatial.cKDTree; the convention of pytorch3d's
  chamfer_distance that the paper used: the mean of the SQUARED nearest-neighbour distances in each
  direction, the two directions summed (units: squared radii of the normalized shape).
- mse: mean squared SDF error on the training samples.
"""

from __future__ import annotations

import numpy as np
import torch

from inrcompress.nn import predict
from inrcompress.signals.grid import coordinate_chunks
from inrcompress.signals.shape import ShapeSamples, surface_points

CHAMFER_CONVENTION = ("mean squared nearest-neighbour distance, both directions summed (pytorch3d chamfer_distance); "
                      "100k points on the marching-cubes surface vs 100k ground-truth surface points")
DEFAULT_RESOLUTION = 128
# Grid points evaluated at once by sdf_grid: a multiple of predict's 65536-row chunks, so the rows
# meet the network in the same blocks as in one pass over the whole grid (identical values).
SDF_CHUNK_POINTS = 4 * 65536
PREVIEW_SIZE = 384
# Views of the preview (azimuth about the vertical y axis, elevation), in degrees.
PREVIEW_VIEWS = ((30.0, 20.0), (210.0, 20.0))


def network_sdf(model: torch.nn.Module, points: np.ndarray) -> np.ndarray:
    """The network's SDF at points (N, 3), float64 (N,)."""
    device = next(model.parameters()).device
    values = predict(model, torch.as_tensor(np.asarray(points, dtype=np.float32), device=device))
    return values[:, 0].double().cpu().numpy()


def sdf_grid(model: torch.nn.Module, resolution: int) -> np.ndarray:
    """The network's SDF on the resolution^3 grid over [-1, 1]^3 (axis k = coordinate k), float32.

    The grid's coordinates are made and evaluated SDF_CHUNK_POINTS at a time, so memory beyond the
    result (4 bytes a grid point) stays flat at any resolution; the values are those of one pass."""
    device = next(model.parameters()).device
    shape = (resolution,) * 3
    values = np.empty(resolution ** 3, dtype=np.float32)
    with torch.no_grad():
        for start, coords in coordinate_chunks(shape, SDF_CHUNK_POINTS):
            piece = predict(model, coords.to(device))[:, 0]
            values[start:start + piece.shape[0]] = piece.float().cpu().numpy()
    return values.reshape(shape)


def extract_surface(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The zero level set of an SDF grid over [-1, 1]^3 as a triangle mesh (vertices in world
    coordinates, faces wound outward), or None when the grid has no sign change."""
    from skimage.measure import marching_cubes

    if not (np.nanmin(grid) < 0 < np.nanmax(grid)) or not np.all(np.isfinite(grid)):
        return None
    spacing = 2.0 / (grid.shape[0] - 1)
    vertices, faces, _, _ = marching_cubes(grid, level=0.0, spacing=(spacing,) * 3, gradient_direction="descent")
    return vertices.astype(np.float64) - 1.0, faces.astype(np.int64)


def chamfer_distance(a: np.ndarray, b: np.ndarray) -> float:
    """mean_a min_b |a-b|^2 + mean_b min_a |a-b|^2 (see CHAMFER_CONVENTION)."""
    from scipy.spatial import cKDTree

    d_ab = cKDTree(b).query(a, workers=-1)[0]
    d_ba = cKDTree(a).query(b, workers=-1)[0]
    return float(np.mean(d_ab ** 2) + np.mean(d_ba ** 2))


def volumetric_iou(pred_inside: np.ndarray, true_inside: np.ndarray) -> float:
    union = np.count_nonzero(pred_inside | true_inside)
    return 100.0 * np.count_nonzero(pred_inside & true_inside) / union if union else 100.0


def evaluate_shape(model: torch.nn.Module, samples: ShapeSamples, resolution: int = DEFAULT_RESOLUTION,
                   seed: int = 0, with_mse: bool = True) -> tuple[dict, tuple[np.ndarray, np.ndarray] | None]:
    """Metrics of a network against a shape's samples, and its marching-cubes surface (or None).
    chamfer is inf when the network has no surface in [-1, 1]^3."""
    metrics = {"vol_iou": volumetric_iou(network_sdf(model, samples.eval_points) < 0, samples.eval_inside)}
    surface = extract_surface(sdf_grid(model, resolution))
    if surface is None:
        metrics["chamfer"] = float("inf")
    else:
        points = surface_points(*surface, len(samples.surface), np.random.default_rng([seed, 2]))
        metrics["chamfer"] = chamfer_distance(points, samples.surface.astype(np.float64))
    if with_mse:
        metrics["mse"] = float(np.mean((network_sdf(model, samples.points) - samples.sdf) ** 2))
    metrics.update(surface_found=surface is not None, mc_resolution=int(resolution),
                   surface_vertices=0 if surface is None else len(surface[0]),
                   surface_faces=0 if surface is None else len(surface[1]))
    return metrics, surface


# ----------------------------------------------------------------------------------------------
# Preview: an orthographic z-buffer rendering with Lambert shading, two views side by side


def _rotation(azimuth: float, elevation: float) -> np.ndarray:
    """World -> camera: turn about the vertical y axis by azimuth, then tilt by elevation; the camera
    looks along -z (nearer points have larger z), image right = x, image up = y."""
    a, e = np.radians(azimuth), np.radians(elevation)
    turn = np.array([[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]])
    tilt = np.array([[1, 0, 0], [0, np.cos(e), -np.sin(e)], [0, np.sin(e), np.cos(e)]])
    return tilt @ turn


def _rasterize(vertices: np.ndarray, faces: np.ndarray, size: int, extent: float) -> tuple[np.ndarray, np.ndarray]:
    """Z-buffer of camera-space triangles: (face index per pixel or -1, size x size)."""
    pixel = (vertices[:, :2] + extent) / (2 * extent) * size - 0.5
    pixel[:, 1] = size - 1 - pixel[:, 1]
    best_depth = np.full(size * size, -np.inf)
    best_face = np.full(size * size, -1, dtype=np.int64)
    for start in range(0, len(faces), 20000):
        tri = faces[start:start + 20000]
        p = pixel[tri]  # (T, 3, 2)
        z = vertices[tri][:, :, 2]
        lo = np.clip(np.ceil(p.min(axis=1)), 0, size - 1).astype(np.int64)
        hi = np.clip(np.floor(p.max(axis=1)), 0, size - 1).astype(np.int64)
        width = np.maximum(hi[:, 0] - lo[:, 0] + 1, 0)
        counts = width * np.maximum(hi[:, 1] - lo[:, 1] + 1, 0)
        counts[(p.max(axis=1) < 0).any(axis=1) | (p.min(axis=1) > size - 1).any(axis=1)] = 0
        if counts.sum() == 0:
            continue
        owner = np.repeat(np.arange(len(tri)), counts)
        local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        px = lo[owner, 0] + local % width[owner]
        py = lo[owner, 1] + local // width[owner]
        a, b, c = p[owner, 0], p[owner, 1], p[owner, 2]
        area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
        w1 = ((px - a[:, 0]) * (c[:, 1] - a[:, 1]) - (py - a[:, 1]) * (c[:, 0] - a[:, 0]))
        w2 = ((b[:, 0] - a[:, 0]) * (py - a[:, 1]) - (b[:, 1] - a[:, 1]) * (px - a[:, 0]))
        with np.errstate(divide="ignore", invalid="ignore"):
            l1, l2 = w1 / area, w2 / area
        inside = (np.abs(area) > 1e-12) & (l1 >= -1e-9) & (l2 >= -1e-9) & (l1 + l2 <= 1 + 1e-9)
        zt = z[owner]
        depth = (1 - l1 - l2) * zt[:, 0] + l1 * zt[:, 1] + l2 * zt[:, 2]
        pid, depth, face = (py * size + px)[inside], depth[inside], (owner + start)[inside]
        order = np.lexsort((-depth, pid))
        pid, depth, face = pid[order], depth[order], face[order]
        first = np.unique(pid, return_index=True)[1]
        pid, depth, face = pid[first], depth[first], face[first]
        nearer = depth > best_depth[pid]
        best_depth[pid[nearer]] = depth[nearer]
        best_face[pid[nearer]] = face[nearer]
    return best_face.reshape(size, size), best_depth.reshape(size, size)


def render_view(vertices: np.ndarray, faces: np.ndarray, azimuth: float, elevation: float,
                size: int = PREVIEW_SIZE, extent: float = 1.1) -> np.ndarray:
    """uint8 (size, size, 3): the mesh seen orthographically, flat Lambert shading (two-sided),
    light from the upper left of the camera, white background. The frame is [-extent, extent]^2."""
    cam = vertices @ _rotation(azimuth, elevation).T
    face_of_pixel, _ = _rasterize(cam, faces, size, extent)
    a, b, c = (cam[faces[:, k]] for k in range(3))
    normals = np.cross(b - a, c - a)
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-20)
    normals[normals[:, 2] < 0] *= -1  # two-sided: the side that faces the camera
    light = np.array([-0.4, 0.5, 1.0])
    light /= np.linalg.norm(light)
    shade = 0.2 + 0.8 * np.clip(normals @ light, 0, 1)
    base = np.array([0.62, 0.74, 0.92])
    image = np.ones((size, size, 3))
    hit = face_of_pixel >= 0
    image[hit] = shade[face_of_pixel[hit], None] * base
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)


def render_preview(vertices: np.ndarray, faces: np.ndarray, size: int = PREVIEW_SIZE) -> np.ndarray:
    """The preview picture: PREVIEW_VIEWS side by side, uint8 (size, 2 size, 3)."""
    views = [render_view(vertices, faces, az, el, size) for az, el in PREVIEW_VIEWS]
    return np.concatenate(views, axis=1)


def empty_preview(size: int = PREVIEW_SIZE) -> np.ndarray:
    """The preview of a network without a surface: light gray."""
    return np.full((size, size * len(PREVIEW_VIEWS), 3), 200, dtype=np.uint8)
