"""Rate-distortion of 3D shape compression: for a few network widths, fit a mesh's SDF, then quantize
and code it at a few bit widths; reports volumetric IoU, Chamfer distance and bytes of the .inr file
(measured on the network decoded from the file), bits per vertex of the original mesh, and the time
per training step. It runs the real tools (overfitINR3D.py, quantize_and_test3D.py) in-process.

    python benchmarks/shape_rd.py --mesh ../shared/data/meshes/armadillo_normalized.obj \
        --widths 16 32 --bitwidths 7 8 --samples_per_shape 20000 --epochs 20

The paper's budget is --samples_per_shape 100000 --epochs 250 --retrain_epochs 1000
--adaround_iterations 2000 (hours on a CPU); the defaults here are a reduced budget.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
import yaml
from inrcompress.codec.entropy import METHODS
from inrcompress.tools.overfit_inr3d import main as overfit_main
from inrcompress.tools.quantize_and_test3d import main as quantize_main

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MESH = REPO.parent / "shared" / "data" / "meshes" / "armadillo_normalized.obj"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mesh", type=Path, default=DEFAULT_MESH, help="a normalized mesh (.obj/.ply/.off)")
    p.add_argument("--widths", type=int, nargs="+", default=[16, 32], help="hidden_dims to fit")
    p.add_argument("--bitwidths", type=int, nargs="+", default=[7, 8])
    p.add_argument("--samples_per_shape", type=int, default=20000)
    p.add_argument("--batch_size", type=int, default=10000)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--adaround_iterations", type=int, default=200)
    p.add_argument("--retrain_epochs", type=int, default=20)
    p.add_argument("--code", choices=list(METHODS), default="brotli")
    p.add_argument("--mc_resolution", type=int, default=128)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steadier on a shared machine)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--work", type=Path, default=None, help="working folder (kept; finished fits are reused)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    return p.parse_args(argv)


def _num(value) -> str:
    """A Chamfer distance; 'no surface' when the network has no surface (null in JSON, inf in YAML)."""
    return f"{value:.3e}" if isinstance(value, float) and value != float("inf") else "no surface"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.mesh.is_file():
        print(f"error: mesh not found: {args.mesh}")
        return 2
    torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="shape_rd_"))
    dataset = args.mesh.name.split(".")[0]
    folder = work / "data" / dataset
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / args.mesh.name
    if not link.exists():
        link.symlink_to(args.mesh.resolve())
    exp_root = work / "exp"
    common = [f"--data_root={work / 'data'}", f"--dataset={dataset}", f"--exp_root={exp_root}",
              f"--mc_resolution={args.mc_resolution}", f"--device={args.device}"]
    rows = []
    for width in args.widths:
        started = time.perf_counter()
        if overfit_main([*common, f"--hidden_dims={width}", f"--samples_per_shape={args.samples_per_shape}",
                         f"--batch_size={args.batch_size}", f"--epochs={args.epochs}", f"--lr={args.lr}",
                         "--steps_til_summary=1000000"]) != 0:
            return 1
        fit_seconds = time.perf_counter() - started
        exp_dir = next(exp_root.glob(f"{dataset}_epochs{args.epochs}_*_hdims{width}_*"))
        run = next(p for p in exp_dir.iterdir() if (p / "result.json").is_file())
        fitted = json.loads((run / "result.json").read_text())
        rows.append({"width": width, "bits": 32, "bytes": 4 * fitted["parameters"], "vol_iou": fitted["vol_iou"],
                     "chamfer": fitted["chamfer"], "parameters": fitted["parameters"],
                     "ms_per_step": 1000 * fitted["seconds_per_step"], "seconds": fit_seconds})
        for bits in args.bitwidths:
            started = time.perf_counter()
            if quantize_main([*common, f"--exp_glob={exp_dir.name}", f"--bitwidth={bits}", f"--code={args.code}",
                              f"--adaround_iterations={args.adaround_iterations}",
                              f"--retrain_epochs={args.retrain_epochs}"]) != 0:
                return 1
            metrics = yaml.safe_load(next(run.glob(f"metrics_{args.code}_bw{bits}_*.yml")).read_text())
            rows.append({"width": width, "bits": bits, "bytes": metrics["bytes"], "vol_iou": metrics["vol_iou"],
                         "chamfer": metrics["chamfer"], "bits_per_vertex": metrics["bits_per_vertex"],
                         "parameters": fitted["parameters"], "seconds": time.perf_counter() - started})
    print(f"\n{args.mesh.name}: samples_per_shape {args.samples_per_shape} (x5), batch {args.batch_size}, "
          f"epochs {args.epochs}, lr {args.lr}, AdaRound {args.adaround_iterations} it/layer, QAT "
          f"{args.retrain_epochs} epochs, {args.code}, marching cubes {args.mc_resolution}^3, "
          f"{args.threads} thread(s), "
          f"{platform.processor() or platform.machine()}\n")
    print("| width | params | weights | bytes | bits/vertex | IoU % | Chamfer | ms/step | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        weights = "float32" if r["bits"] == 32 else f"{r['bits']} bit"
        bpv = f"{r['bits_per_vertex']:.2f}" if "bits_per_vertex" in r else "-"
        step = f"{r['ms_per_step']:.1f}" if "ms_per_step" in r else "-"
        print(f"| {r['width']} | {r['parameters']} | {weights} | {r['bytes']} | {bpv} | {r['vol_iou']:.2f} | "
              f"{_num(r['chamfer'])} | {step} | {r['seconds']:.0f} |")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2))
    print(f"\nwork folder: {work}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
