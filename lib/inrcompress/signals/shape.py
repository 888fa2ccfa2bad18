"""3D shapes as coordinate signals: meshes, normalization, signed distances and SDF samples (spec 8).

A shape is fitted as f(x, y, z) = signed distance to its surface, negative inside, for points in
[-1, 1]^3; meshes are first normalized into the unit sphere (normalize_shapes.py).

Ground truth (CPU, libigl):
- A watertight, consistently wound mesh: igl.signed_distance with the pseudonormal sign (exact
  distance, exact sign). The mesh is first oriented outward (faces flipped when its volume is
  negative): the pseudonormal sign depends on the winding, and the armadillo the paper ships is
  wound inward (without the flip, 96 % of the cube would count as inside).
- Any other mesh (holes, open scans such as the Stanford bunny "zipper" file): the exact unsigned
  distance, signed by the generalized winding number (igl.fast_winding_number: inside where
  |w| > 1/2), which is robust to holes and to the winding of the faces.

Samples (the paper's MeshDataset, drawn once from a seed): N = samples_per_shape points of each of
rand (uniform in [-1, 1]^3), near, near (area-weighted surface points + N(0, 0.01^2) noise) and
trace, trace (exact area-weighted surface points, distance 0) = 5 N points. Evaluation data is drawn
from its own stream: 100k uniform points with the ground-truth occupancy (volumetric IoU) and 100k
surface points (Chamfer distance). All of it is cached per shape in <run>/sdf_samples.npz.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inrcompress.config import atomic_write_bytes
from inrcompress.errors import InrError

MESH_SUFFIXES = (".obj", ".ply", ".off")
NORMALIZED_TAG = "_normalized"
NEAR_SURFACE_STD = 0.01
# The sampling techniques of the paper's MeshDataset, in order; each contributes samples_per_shape points.
SAMPLE_MODES = ("rand", "near", "near", "trace", "trace")
EVAL_POINTS = 100_000
SAMPLES_FILE = "sdf_samples.npz"
SAMPLES_FORMAT = 1


@dataclass(frozen=True)
class Mesh:
    """A triangle mesh as read from its file: vertices (V, 3) float64, faces (F, 3) int64 (0-based)."""

    vertices: np.ndarray
    faces: np.ndarray
    path: str = ""


def _mesh_name(path: Path) -> str:
    """Name of a shape: its file name up to the first '.', without a trailing '_normalized'."""
    stem = path.name.split(".")[0]
    return stem[: -len(NORMALIZED_TAG)] if stem.endswith(NORMALIZED_TAG) and stem != NORMALIZED_TAG else stem


def load_mesh(path: str | Path) -> Mesh:
    """Read an .obj/.ply/.off triangle mesh (polygons are triangulated by trimesh) without altering it."""
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise InrError(f"mesh not found: {path}")
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise InrError(f"{path}: not a mesh file ({'/'.join(MESH_SUFFIXES)})")
    try:
        loaded = trimesh.load(str(path), force="mesh", process=False)
        vertices = np.asarray(getattr(loaded, "vertices", np.zeros((0, 3))), dtype=np.float64)
        faces = np.asarray(getattr(loaded, "faces", np.zeros((0, 3))), dtype=np.int64)
    except Exception as e:  # noqa: BLE001 - trimesh readers raise many kinds of errors on bad files
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InrError(f"cannot read mesh {path}: {message}") from None
    if faces.ndim != 2 or faces.shape[0] == 0 or vertices.ndim != 2 or vertices.shape[0] < 3:
        raise InrError(f"{path}: empty mesh (no triangles)")
    if faces.shape[1] != 3 or vertices.shape[1] != 3:
        raise InrError(f"{path}: not a 3D triangle mesh")
    if not np.all(np.isfinite(vertices)):
        raise InrError(f"{path}: vertex coordinates that are not finite numbers")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise InrError(f"{path}: faces refer to missing vertices")
    return Mesh(vertices, faces, str(path))


def normalize_vertices(vertices: np.ndarray) -> np.ndarray:
    """Center the bounding box at the origin and scale so that the farthest vertex is at radius 1."""
    center = (vertices.max(axis=0) + vertices.min(axis=0)) / 2
    centered = vertices - center
    radius = float(np.linalg.norm(centered, axis=1).max())
    if not radius > 0:
        raise InrError("degenerate mesh: all vertices coincide")
    return centered / radius


def mesh_bytes(vertices: np.ndarray, faces: np.ndarray, suffix: str) -> bytes:
    """A mesh file's content: .obj written here ('v %f %f %f', 'f i j k' 1-based, as the paper's
    normalize_shapes.py), .ply (binary) and .off through trimesh."""
    suffix = suffix.lower()
    if suffix == ".obj":
        buffer = io.StringIO()
        np.savetxt(buffer, vertices, fmt="v %f %f %f")
        np.savetxt(buffer, np.asarray(faces, dtype=np.int64) + 1, fmt="f %d %d %d")
        return buffer.getvalue().encode("ascii")
    if suffix in (".ply", ".off"):
        import trimesh

        return trimesh.Trimesh(vertices, faces, process=False).export(file_type=suffix[1:])
    raise InrError(f"cannot write a mesh as {suffix!r}: use .obj, .ply or .off")


def save_mesh(path: str | Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Write a mesh atomically; the format follows the suffix."""
    atomic_write_bytes(path, mesh_bytes(vertices, faces, Path(path).suffix))


def normalized_path(path: str | Path) -> Path:
    """<file name up to its first '.'>_normalized.obj, next to the input (the paper's naming; dots in
    folder names are left alone)."""
    path = Path(path)
    return path.parent / f"{path.name.split('.')[0]}{NORMALIZED_TAG}.obj"


def shapes_to_normalize(pattern: str) -> list[tuple[Path, Path]]:
    """normalize_shapes.py's work list: (mesh, its <name>_normalized.obj) for every mesh matching the
    glob; files already named *_normalized are left out. Nothing is read yet."""
    matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
    meshes = [p for p in matches if p.is_file() and p.suffix.lower() in MESH_SUFFIXES
              and not p.name.split(".")[0].endswith(NORMALIZED_TAG)]
    if not meshes:
        raise InrError(f"no mesh ({'/'.join(MESH_SUFFIXES)}, not already *{NORMALIZED_TAG}) matches {pattern!r}")
    return [(path, normalized_path(path)) for path in meshes]


def normalize_shape(source: Path, target: Path) -> None:
    """Write `source`'s mesh normalized into the unit sphere to `target`."""
    mesh = load_mesh(source)
    save_mesh(target, normalize_vertices(mesh.vertices), mesh.faces)


# ----------------------------------------------------------------------------------------------
# Datasets


def list_shapes(data_root: str | Path, dataset: str) -> list[tuple[str, Path]]:
    """(name, mesh path) of every shape of a dataset folder, sorted by name.

    armadillo: data_root/armadillo/armadillo_normalized.obj; stanford: data_root/stanford/*_normalized.obj;
    ShapeNet50: data_root/ShapeNet50/<category>/<model>/*/model_normalized.obj (named <category>_<model>);
    any other folder: every .obj/.ply/.off in it, where x_normalized.obj replaces x.ply/x.obj/x.off.
    """
    folder = Path(data_root) / dataset
    if not folder.is_dir():
        raise InrError(f"data folder not found: {folder}")
    if dataset == "armadillo":
        paths = [folder / "armadillo_normalized.obj"]
        if not paths[0].is_file():
            raise InrError(f"missing {paths[0]} (normalize the mesh with shape_compression/normalize_shapes.py)")
    elif dataset == "stanford":
        paths = sorted(folder.glob(f"*{NORMALIZED_TAG}.obj"))
    elif dataset == "ShapeNet50":
        paths = sorted(folder.glob(f"*/*/*/model{NORMALIZED_TAG}.obj"))
    else:
        candidates = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in MESH_SUFFIXES)
        normalized = {_mesh_name(p) for p in candidates if p.name.split(".")[0].endswith(NORMALIZED_TAG)}
        paths = [p for p in candidates
                 if p.name.split(".")[0].endswith(NORMALIZED_TAG) or _mesh_name(p) not in normalized]
    if not paths:
        raise InrError(f"no mesh in {folder}")
    if dataset == "ShapeNet50":
        named = [(f"{p.parts[-4]}_{p.parts[-3]}", p) for p in paths]
    else:
        named = [(_mesh_name(p), p) for p in paths]
    names = [n for n, _ in named]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise InrError(f"several meshes in {folder} share the name(s) {clashes}; their experiment folders would "
                       "collide")
    return sorted(named)


# ----------------------------------------------------------------------------------------------
# Signed distance and sampling


class SignedDistance:
    """Exact signed distance to a mesh (negative inside), computed by libigl on the CPU."""

    def __init__(self, mesh: Mesh):
        import trimesh

        # Merge duplicated vertices (OBJ seams) and drop degenerate faces: vertex pseudonormals need
        # the connectivity, and watertightness is judged on it.
        tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=True, validate=True)
        if len(tm.faces) == 0:
            raise InrError(f"{mesh.path}: every triangle is degenerate")
        faces = np.asarray(tm.faces, dtype=np.int64)
        self.watertight = bool(tm.is_watertight and tm.is_winding_consistent)
        if self.watertight and tm.volume < 0:
            faces = faces[:, ::-1]
        self.vertices = np.ascontiguousarray(tm.vertices, dtype=np.float64)
        self.faces = np.ascontiguousarray(faces)
        self.sign_method = "pseudonormal" if self.watertight else "winding_number"

    def __call__(self, points: np.ndarray) -> np.ndarray:
        import igl

        p = np.ascontiguousarray(points, dtype=np.float64)
        if len(p) == 0:
            return np.zeros(0)
        if self.watertight:
            return igl.signed_distance(p, self.vertices, self.faces, igl.SIGNED_DISTANCE_TYPE_PSEUDONORMAL)[0]
        distance = igl.signed_distance(p, self.vertices, self.faces, igl.SIGNED_DISTANCE_TYPE_UNSIGNED)[0]
        winding = igl.fast_winding_number(self.vertices, self.faces, p)
        return np.where(np.abs(winding) > 0.5, -np.abs(distance), np.abs(distance))


def surface_points(vertices: np.ndarray, faces: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` points uniformly distributed over the surface (faces drawn by area, then uniform
    barycentric coordinates with the square-root trick), float64 (count, 3)."""
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    areas = 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)
    total = areas.sum()
    if not total > 0:
        raise InrError("the mesh has no surface area")
    chosen = np.searchsorted(np.cumsum(areas) / total, rng.random(count), side="right")
    chosen = np.minimum(chosen, len(faces) - 1)
    u = np.sqrt(rng.random((count, 1)))
    v = rng.random((count, 1))
    return (1 - u) * a[chosen] + u * (1 - v) * b[chosen] + u * v * c[chosen]


@dataclass
class ShapeSamples:
    """The training samples and the ground truth of the evaluation of one shape.

    points (5N, 3), sdf (5N,): training coordinates and signed distances, float32.
    eval_points (M, 3), eval_inside (M,): uniform points in [-1, 1]^3 and their occupancy (SDF < 0).
    surface (M, 3): points on the ground-truth surface (Chamfer distance).
    meta: mesh path and sha256, vertex count, samples_per_shape, seed, sign method.
    """

    points: np.ndarray
    sdf: np.ndarray
    eval_points: np.ndarray
    eval_inside: np.ndarray
    surface: np.ndarray
    meta: dict


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def sample_shape(mesh: Mesh, samples_per_shape: int, seed: int) -> ShapeSamples:
    """Draw the training and evaluation samples of a mesh (spec 8), reproducibly from `seed`."""
    if samples_per_shape < 1:
        raise InrError(f"samples_per_shape must be >= 1, got {samples_per_shape}")
    sdf = SignedDistance(mesh)
    vertices, faces = sdf.vertices, sdf.faces
    radius = float(np.linalg.norm(vertices, axis=1).max())
    if radius > 1.0 + 1e-4 or radius < 0.5:
        warnings.warn(f"{mesh.path}: the farthest vertex is at radius {radius:.3g}, not 1; fitting happens in "
                      "[-1, 1]^3: normalize the mesh first (shape_compression/normalize_shapes.py)")
    rng = np.random.default_rng([seed, 0])
    n = samples_per_shape
    parts = []
    for mode in SAMPLE_MODES:
        if mode == "rand":
            p = rng.uniform(-1.0, 1.0, (n, 3))
        else:
            p = surface_points(vertices, faces, n, rng)
            if mode == "near":
                p = p + rng.normal(0.0, NEAR_SURFACE_STD, (n, 3))
        parts.append(p)
    eval_rng = np.random.default_rng([seed, 1])
    eval_points = eval_rng.uniform(-1.0, 1.0, (EVAL_POINTS, 3))
    surface = surface_points(vertices, faces, EVAL_POINTS, eval_rng)
    # One call for every point off the surface (libigl builds its search tree per call); points on
    # the surface ("trace") have distance 0.
    off_surface = [i for i, mode in enumerate(SAMPLE_MODES) if mode != "trace"]
    computed = np.split(sdf(np.concatenate([parts[i] for i in off_surface] + [eval_points])),
                        np.cumsum([n] * len(off_surface)))
    distances = [np.zeros(n)] * len(SAMPLE_MODES)
    for k, i in enumerate(off_surface):
        distances[i] = computed[k]
    meta = {"format": SAMPLES_FORMAT, "mesh": str(mesh.path), "mesh_sha256": file_sha256(mesh.path) if mesh.path
            else "", "mesh_vertices": len(mesh.vertices), "mesh_faces": len(mesh.faces),
            "samples_per_shape": int(n), "seed": int(seed), "sign_method": sdf.sign_method}
    return ShapeSamples(np.concatenate(parts).astype(np.float32), np.concatenate(distances).astype(np.float32),
                        eval_points.astype(np.float32), computed[-1] < 0, surface.astype(np.float32), meta)


def save_samples(path: str | Path, samples: ShapeSamples) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, points=samples.points, sdf=samples.sdf, eval_points=samples.eval_points,
             eval_inside=samples.eval_inside, surface=samples.surface, meta=np.array(json.dumps(samples.meta)))
    atomic_write_bytes(path, buffer.getvalue())


def load_samples(path: str | Path) -> ShapeSamples | None:
    """The cached samples, or None when the file is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in ("points", "sdf", "eval_points", "eval_inside", "surface")}
            meta = json.loads(str(f["meta"]))
    except Exception:  # noqa: BLE001 - a damaged cache is recomputed, never trusted
        warnings.warn(f"ignoring the unreadable sample cache {path}")
        return None
    return ShapeSamples(meta=meta, **arrays)


def cached_samples(run_dir: Path, mesh_path: Path | None, samples_per_shape: int, seed: int) -> ShapeSamples:
    """The samples of a shape from <run_dir>/sdf_samples.npz when they were drawn with the same
    samples_per_shape and seed (and, when mesh_path is given, from a file with the same content);
    otherwise drawn from the mesh and cached."""
    cache = run_dir / SAMPLES_FILE
    samples = load_samples(cache)
    if samples is not None:
        meta = samples.meta
        same = (meta.get("format") == SAMPLES_FORMAT and meta.get("samples_per_shape") == samples_per_shape
                and meta.get("seed") == seed
                and (mesh_path is None or meta.get("mesh_sha256") == file_sha256(mesh_path)))
        if same:
            return samples
        print(f"{run_dir.name}: the cached samples were drawn with other settings or from another mesh: redrawn")
    if mesh_path is None:
        raise InrError(f"{run_dir} has no usable {SAMPLES_FILE} and the mesh is not known")
    samples = sample_shape(load_mesh(mesh_path), samples_per_shape, seed)
    save_samples(cache, samples)
    return samples

