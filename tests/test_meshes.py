"""Draco (evaluate/meshes.py): a decoded mesh measured by the same ground truth as our shape files."""

from __future__ import annotations

import numpy as np
import pytest

from inrcompress.errors import InrError
from inrcompress.evaluate.meshes import MESH_CODECS, evaluate_mesh, mesh_codec_sweep
from inrcompress.signals.shape import Mesh, ShapeSamples, SignedDistance, surface_points

POINTS = 5000  # sample_shape draws 100k; fewer keep the test fast, the code path is the same


@pytest.fixture(scope="module")
def sphere():
    trimesh = pytest.importorskip("trimesh")
    pytest.importorskip("igl")
    ico = trimesh.creation.icosphere(subdivisions=3, radius=0.6)
    mesh = Mesh(np.asarray(ico.vertices, dtype=np.float64), np.asarray(ico.faces, dtype=np.int64), "")
    rng = np.random.default_rng(0)
    eval_points = rng.uniform(-1, 1, (POINTS, 3))
    samples = ShapeSamples(np.zeros((0, 3), np.float32), np.zeros(0, np.float32), eval_points.astype(np.float32),
                           SignedDistance(mesh)(eval_points) < 0,
                           surface_points(mesh.vertices, mesh.faces, POINTS, rng).astype(np.float32), {})
    return mesh, samples


def test_the_mesh_itself_scores_perfect_iou_and_sampling_level_chamfer(sphere):
    mesh, samples = sphere
    metrics = evaluate_mesh(mesh.vertices, mesh.faces, samples)
    assert metrics["vol_iou"] == 100.0
    # two independent samplings of the same surface: mean squared nearest distance ~ spacing^2
    assert 0 < metrics["chamfer"] < 1e-3
    # a sphere 10 % too large is measurably worse on both
    worse = evaluate_mesh(mesh.vertices * 1.1, mesh.faces, samples)
    assert worse["vol_iou"] < 80 and worse["chamfer"] > 10 * metrics["chamfer"]


def test_draco_more_bits_more_bytes_closer_surface(sphere):
    mesh, samples = sphere
    if MESH_CODECS["draco"].missing():
        pytest.skip(MESH_CODECS["draco"].missing())
    coarse, fine = mesh_codec_sweep("draco", mesh, samples, [4, 12])
    assert coarse["bytes"] < fine["bytes"]
    assert coarse["chamfer"] > fine["chamfer"] and coarse["vol_iou"] < fine["vol_iou"]
    assert fine["decoded_faces"] == len(mesh.faces)
    assert fine["bits_per_vertex"] == pytest.approx(8 * fine["bytes"] / len(mesh.vertices))
    with pytest.raises(InrError, match="1..30"):
        mesh_codec_sweep("draco", mesh, samples, [31])
    with pytest.raises(InrError, match="unknown mesh codec"):
        mesh_codec_sweep("nope", mesh, samples)
