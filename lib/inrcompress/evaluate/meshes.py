"""Classical mesh codecs (Draco), measured as our shape files are: volumetric IoU and Chamfer distance.

A decoded mesh is judged against the same ground truth as a decoded network (signals.shape_eval):
- volumetric IoU (percent) on the shape's 100k uniform evaluation points, the occupancy of the
  decoded mesh signed exactly as the ground truth was (signals.shape.SignedDistance: pseudonormals
  for a watertight mesh, winding numbers otherwise);
- Chamfer distance (pytorch3d's convention, CHAMFER_CONVENTION) between as many points drawn on the
  decoded surface (same generator seed as evaluate_shape) and the shape's ground-truth surface points.
bits_per_vertex = 8 x bytes / vertices of the original mesh, as for our files.

A new mesh codec is one class: subclass MeshCodec and decorate it with @register_mesh_codec.
"""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from inrcompress.errors import InrError
from inrcompress.signals.shape import Mesh, ShapeSamples, SignedDistance, surface_points
from inrcompress.signals.shape_eval import chamfer_distance, volumetric_iou


class MeshCodec:
    """A mesh codec: encode (vertices, faces) at one setting, decode the bytes."""

    name: ClassVar[str]
    label: ClassVar[str]
    setting: ClassVar[str]
    defaults: ClassVar[tuple]

    def missing(self) -> str | None:
        """Why the codec cannot run here (one line), or None when it can."""
        return None

    def version(self) -> str:
        raise NotImplementedError

    def encode(self, vertices: np.ndarray, faces: np.ndarray, setting: int) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


MESH_CODECS: dict[str, MeshCodec] = {}


def register_mesh_codec(cls: type[MeshCodec]) -> type[MeshCodec]:
    if cls.name in MESH_CODECS:
        raise InrError(f"a mesh codec named {cls.name!r} is already registered")
    MESH_CODECS[cls.name] = cls()
    return cls


@register_mesh_codec
class Draco(MeshCodec):
    """Google's Draco through DracoPy: positions quantized to `quantization_bits` per axis over the
    mesh's bounding cube, connectivity by Edgebreaker at compression level 10 (the smallest files;
    draco_encoder's default is 7)."""

    name, label, setting = "draco", "Draco", "quantization_bits"
    defaults = (4, 5, 6, 7, 8, 9, 10, 11, 12, 14)
    compression_level = 10

    def missing(self):
        try:
            import DracoPy  # noqa: F401
        except ImportError:
            return "Draco needs DracoPy (pip install 'inrcompress[codecs]')"
        return None

    def version(self):
        return f"DracoPy {importlib.metadata.version('DracoPy')}, compression level {self.compression_level}"

    def encode(self, vertices, faces, setting):
        import DracoPy

        if not 1 <= int(setting) <= 30:
            raise InrError(f"Draco quantization bits must be in 1..30, got {setting}")
        return bytes(DracoPy.encode(np.ascontiguousarray(vertices, dtype=np.float32),
                                    np.ascontiguousarray(faces, dtype=np.uint32), quantization_bits=int(setting),
                                    compression_level=self.compression_level))

    def decode(self, data):
        import DracoPy

        decoded = DracoPy.decode(data)
        return (np.asarray(decoded.points, dtype=np.float64).reshape(-1, 3),
                np.asarray(decoded.faces, dtype=np.int64).reshape(-1, 3))


def evaluate_mesh(vertices: np.ndarray, faces: np.ndarray, samples: ShapeSamples, seed: int = 0) -> dict:
    """vol_iou (percent) and chamfer of a triangle mesh against a shape's ground truth (see the
    module docstring); chamfer is inf and vol_iou 0 for a mesh without area."""
    faces = np.asarray(faces, dtype=np.int64)
    vertices = np.asarray(vertices, dtype=np.float64)
    try:
        inside = SignedDistance(Mesh(vertices, faces, "decoded"))(samples.eval_points) < 0
        points = surface_points(vertices, faces, len(samples.surface), np.random.default_rng([seed, 2]))
    except InrError:  # every triangle degenerate: no surface left
        return {"vol_iou": 0.0, "chamfer": float("inf"), "surface_found": False}
    return {"vol_iou": float(volumetric_iou(inside, samples.eval_inside)),
            "chamfer": chamfer_distance(points, samples.surface.astype(np.float64)), "surface_found": True}


def mesh_codec_sweep(codec: str | MeshCodec, mesh: Mesh, samples: ShapeSamples,
                     settings: Sequence[int] | None = None, seed: int = 0) -> list[dict]:
    """One mesh codec over a sweep of settings: per setting the bytes, bits per vertex, IoU,
    Chamfer (measured on the decoded mesh) and encode / decode seconds."""
    if isinstance(codec, str):
        if codec not in MESH_CODECS:
            raise InrError(f"unknown mesh codec {codec!r} ({', '.join(MESH_CODECS)})")
        codec = MESH_CODECS[codec]
    reason = codec.missing()
    if reason:
        raise InrError(reason)
    rows = []
    for setting in settings or codec.defaults:
        started = time.perf_counter()
        data = codec.encode(mesh.vertices, mesh.faces, setting)
        encoded = time.perf_counter()
        vertices, faces = codec.decode(data)
        decode_seconds = time.perf_counter() - encoded
        rows.append({"codec": codec.name, codec.setting: int(setting), "bytes": len(data),
                     "bits_per_vertex": 8 * len(data) / len(mesh.vertices), "decoded_vertices": len(vertices),
                     "decoded_faces": len(faces), **evaluate_mesh(vertices, faces, samples, seed),
                     "encode_seconds": encoded - started, "decode_seconds": decode_seconds})
    return rows
