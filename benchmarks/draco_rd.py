"""Draco against our neural SDF files on the same meshes: bytes vs Chamfer distance and volumetric IoU.

    python benchmarks/draco_rd.py --mesh ../shared/data/meshes/armadillo_normalized.obj \
        --ours benchmarks/output/shape_rd/ours_armadillo_normalized.json

For each mesh: Draco (DracoPy, evaluate/meshes.py) at several position quantization bits, each file
decoded and measured by the same ground truth as our shape files (the 100k uniform evaluation points
and 100k surface points that sample_shape draws with seed 0, whatever samples_per_shape: they come
from their own random stream). --ours takes the JSON that benchmarks/shape_rd.py --json wrote for the
same mesh file (its quantized rows). A mesh that is not normalized (farthest vertex not at radius 1)
is normalized in memory as normalize_shapes.py does, so that it matches what the shape tools fit.
Prints a markdown table per mesh and writes <out>/draco_rd.json and <out>/draco_rd.png.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from inrcompress.errors import InrError
from inrcompress.config import write_json
from inrcompress.evaluate.meshes import MESH_CODECS, evaluate_mesh, mesh_codec_sweep
from inrcompress.signals.shape import Mesh, load_mesh, normalize_vertices, sample_shape

REPO = Path(__file__).resolve().parents[1]


def normalized(mesh: Mesh) -> Mesh:
    radius = float(np.linalg.norm(mesh.vertices - (mesh.vertices.max(0) + mesh.vertices.min(0)) / 2, axis=1).max())
    if abs(radius - 1.0) < 1e-3:
        return mesh
    print(f"{mesh.path}: farthest vertex at radius {radius:.4g}: normalized in memory")
    return Mesh(normalize_vertices(mesh.vertices), mesh.faces, mesh.path)


def our_rows(path: Path | None) -> list[dict]:
    if path is None:
        return []
    rows = json.loads(path.read_text())["rows"]
    return [{**r, "codec": f"ours w{r['width']}"} for r in rows if r["bits"] != 32]


def plot(results: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from inrcompress.evaluate.plots import save_figure

    figure, axes = plt.subplots(2, len(results), figsize=(6.5 * len(results), 9), squeeze=False)
    for column, (name, entry) in enumerate(results.items()):
        draco = [r for r in entry["draco"] if r["codec"] == "draco"]
        floor = next((r for r in entry["draco"] if r["codec"] == "original"), None)
        for row, (key, label) in enumerate((("chamfer", "Chamfer distance (lower is better)"),
                                            ("vol_iou", "volumetric IoU [%]"))):
            axis = axes[row][column]
            axis.plot([r["bytes"] for r in draco], [r[key] for r in draco], "s--", label="Draco (bits shown)")
            for r in draco:
                axis.annotate(str(r["quantization_bits"]), (r["bytes"], r[key]), fontsize=7)
            if floor:
                axis.axhline(floor[key], color="gray", linewidth=0.8, linestyle=":",
                             label="the mesh itself (floor of the measure)")
            for bits, marker in ((7, "o-"), (8, "^-")):
                ours = sorted((r for r in entry["ours"] if r["bits"] == bits), key=lambda r: r["bytes"])
                if ours:
                    axis.plot([r["bytes"] for r in ours], [r[key] for r in ours], marker,
                              label=f"ours (neural SDF), {bits} bit, widths {'/'.join(str(r['width']) for r in ours)}")
            axis.set_xscale("log")
            axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # no crowded minor labels
            if key == "chamfer":
                axis.set_yscale("log")
            axis.set_xlabel("bytes of the file")
            axis.set_ylabel(label)
            axis.set_title(f"{name} ({entry['vertices']} vertices)")
            axis.grid(True, which="both", alpha=0.3)
            axis.legend(fontsize=7)
    figure.tight_layout()
    return save_figure(figure, out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mesh", type=Path, action="append", required=True, help="a mesh (repeat for more)")
    p.add_argument("--ours", type=Path, action="append", default=[],
                   help="shape_rd.py --json output for the mesh of the same position (repeat)")
    p.add_argument("--bits", type=int, nargs="+", default=list(MESH_CODECS["draco"].defaults))
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "output" / "draco_rd")
    p.add_argument("--force_draco", action="store_true", help="redo the Draco sweep even if the JSON has it")
    args = p.parse_args(argv)
    cached = args.out / "draco_rd.json"
    previous = json.loads(cached.read_text()) if cached.is_file() and not args.force_draco else {}
    try:
        results = {}
        for k, path in enumerate(args.mesh):
            mesh = normalized(load_mesh(path))
            name = path.name.split(".")[0]
            old = previous.get(name, {})
            done = {r["codec"] + str(r["quantization_bits"]): r for r in old.get("draco", [])}
            if not (old.get("mesh") == str(path) and old.get("draco_version") == MESH_CODECS["draco"].version()):
                done = {}
            samples = None
            if not all(f"draco{b}" in done for b in args.bits) or "originalNone" not in done:
                samples = sample_shape(mesh, 1, seed=0)  # only the evaluation points matter here
            # the same sweep of the same file is reused (--force_draco to redo)
            draco = [done.get(f"draco{b}") or mesh_codec_sweep("draco", mesh, samples, [b])[0] for b in args.bits]
            # the floor of the measures: the mesh itself (Chamfer: two 100k samplings of one surface)
            floor = done.get("originalNone") or {
                "codec": "original", "quantization_bits": None, "bytes": path.stat().st_size,
                "bits_per_vertex": 8 * path.stat().st_size / len(mesh.vertices),
                **evaluate_mesh(mesh.vertices, mesh.faces, samples)}
            draco = [floor] + draco
            results[name] = {"mesh": str(path), "vertices": len(mesh.vertices), "faces": len(mesh.faces),
                             "draco_version": MESH_CODECS["draco"].version(), "draco": draco,
                             "ours": our_rows(args.ours[k] if k < len(args.ours) else None)}
    except InrError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for name, entry in results.items():
        print(f"\n{name}: {entry['vertices']} vertices, {entry['faces']} faces; {entry['draco_version']}\n")
        print("| method | setting | bytes | bits/vertex | IoU % | Chamfer |")
        print("|---|---|---|---|---|---|")
        rows = [("Draco", f"{r['quantization_bits']} bits", r) if r["codec"] == "draco" else
                ("original mesh file", "-", r) for r in entry["draco"]] + \
               [(f"ours, width {r['width']}", f"{r['bits']} bit", r) for r in entry["ours"]]
        for method, setting, r in sorted(rows, key=lambda item: item[2]["bytes"]):
            print(f"| {method} | {setting} | {r['bytes']} | {r['bits_per_vertex']:.2f} | {r['vol_iou']:.2f} | "
                  f"{r['chamfer']:.3e} |")
    write_json(args.out / "draco_rd.json", results)
    print(f"\n{plot(results, args.out / 'draco_rd.png')}\n{args.out / 'draco_rd.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
