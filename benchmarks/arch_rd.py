"""Architecture per rate: which SIREN width, depth and ff_dims gives the best rate-distortion at which
rate, every network fitted and coded with the paper's pipeline on downscaled Kodak.

    OMP_NUM_THREADS=1 python benchmarks/arch_rd.py --images kodim01 kodim05 kodim12 kodim23 \\
        --widths 16 24 32 --hidden_layers 2 3 4 --ff_dims 8 16 --epochs 2000 --out benchmarks/output/arch_rd

Every (width, hidden layers, ff_dims) of the grid is fitted once per image (MSE + L1 1e-5, lr 5e-4,
--epochs steps, the images of one size together: rd_beyond.fit_images) and coded at each of --bits
with the paper's AdaRound + QAT and arithmetic coding; every number is measured on the written bytes
decoded back (rd_beyond.code_point), as the mean over the images. Reported:

- one curve per shape (hidden layers, ff_dims): the Pareto front of its widths x bits, and its
  BD-rate (bjontegaard, pchip) against the paper's shape (3 layers, ff_dims 16);
- the front over every architecture: which network is best at which rate;
- an RD plot of the shapes' curves, and summary.json.

Fits and points are cached under --out (a rerun reuses them; --force recomputes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rd_beyond import DEFAULT_KODAK, INTERPOLATION, code_point, fit_images, pareto  # noqa: E402

from inrcompress.codec.compress import QuantConfig  # noqa: E402
from inrcompress.config import ModelConfig, write_json  # noqa: E402
from inrcompress.errors import InrError  # noqa: E402
from inrcompress.evaluate import bd, codecs, curves, plots  # noqa: E402
from inrcompress.nn import INR, count_parameters  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PAPER_SHAPE = (3, 16)  # hidden layers, ff_dims


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kodak", default=str(DEFAULT_KODAK))
    parser.add_argument("--images", nargs="+", default=["kodim01", "kodim05", "kodim12", "kodim23"])
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 24, 32])
    parser.add_argument("--hidden_layers", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--ff_dims", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--bits", type=int, nargs="+", default=[7, 8])
    parser.add_argument("--epochs", type=int, default=2000)
    parser.add_argument("--adaround_iterations", type=int, default=1000, help="the paper's 1000 (less: quick runs)")
    parser.add_argument("--retrain_epochs", type=int, default=300, help="the paper's 300 (less: quick runs)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "output" / "arch_rd"))
    parser.add_argument("--force", action="store_true", help="recompute cached fits and points")
    args = parser.parse_args(argv)
    try:
        if min(args.widths + args.hidden_layers + args.ff_dims + args.bits + [args.epochs]) < 1:
            raise InrError("widths, hidden layers, ff_dims, bits and epochs must be >= 1")
        return run(args)
    except InrError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def run(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = codecs.load_dataset_images(Path(args.kodak), args.factor, args.images)
    started = time.perf_counter()
    shapes = [(layers, ff) for layers in args.hidden_layers for ff in args.ff_dims]
    points = []
    for layers, ff in shapes:
        for width in args.widths:
            cfg = ModelConfig(hidden_dims=width, hidden_layers=layers, ff_dims=ff)
            key = f"w{width}_h{layers}_ff{ff}_e{args.epochs}"
            states, fit_seconds = fit_images(images, cfg, args.epochs, 0.0, out / "fits" / key, args.force)
            parameters = count_parameters(INR(cfg))
            for bits in args.bits:
                qcfg = QuantConfig(bitwidth=bits, adaround_iterations=args.adaround_iterations,
                                   retrain_epochs=args.retrain_epochs)
                point = code_point(images, states, cfg, qcfg, out / "points" / f"{key}_{qcfg.tag}.json", args.force)
                point.update(hidden_layers=layers, ff_dims=ff, parameters=parameters, fit_seconds=fit_seconds)
                points.append(point)
                print(f"w{width:<3} layers {layers} ff_dims {ff:<3} ({parameters} parameters) {bits}b: "
                      f"{point['bpp']:.4f} bpp, PSNR {point['psnr']:.2f} dB, fit {fit_seconds:.1f} s + "
                      f"encode {point['encode_seconds']:.1f} s per image", flush=True)

    def label(layers: int, ff: int) -> str:
        return f"{layers} layers, ff_dims {ff}" + (" (paper)" if (layers, ff) == PAPER_SHAPE else "")

    shape_curves = {}
    for layers, ff in shapes:
        front = pareto([p for p in points if (p["hidden_layers"], p["ff_dims"]) == (layers, ff)])
        shape_curves[layers, ff] = curves.Curve(label(layers, ff), [p["bpp"] for p in front],
                                                [p["psnr"] for p in front], [p["ms_ssim"] for p in front],
                                                source=str(out))
    table = []
    paper = shape_curves.get(PAPER_SHAPE)
    print(f"\nBD-rate against the paper's shape (%, PSNR, {INTERPOLATION}; negative: less rate)")
    for (layers, ff), curve in shape_curves.items():
        row = {"hidden_layers": layers, "ff_dims": ff, "curve": curve.name}
        if paper is not None and (layers, ff) != PAPER_SHAPE:
            result = bd.bd_compare(paper, curve, "psnr", INTERPOLATION)
            row["vs_paper"], row["vs_paper_error"] = result["bd_rate"], result.get("bd_rate_error")
        table.append(row)
        value = row.get("vs_paper")
        print(f"  {curve.name:<28} " + ("-" if value is None else f"{value:+.1f} %")
              + (f" ({row['vs_paper_error']})" if row.get("vs_paper_error") else ""))
    overall = pareto(points)
    print("\nThe front over every architecture (best network by rate):")
    for p in overall:
        print(f"  {p['bpp']:.4f} bpp, {p['psnr']:.2f} dB: width {p['width']}, {p['hidden_layers']} layers, "
              f"ff_dims {p['ff_dims']}, {p['bitwidth']} bits ({p['parameters']} parameters)")
    dataset = f"KODAK_{args.factor}x ({len(images)} images)"
    plot = plots.plot_curves([("ours", list(shape_curves.values()))], out / "arch_rd.png", metric="psnr",
                             title=f"SIREN architectures, {dataset}, {args.epochs} fitting steps")
    write_json(out / "summary.json", {
        "date": datetime.now(timezone.utc).isoformat(timespec="minutes"), "images": [n for n, _ in images],
        "arguments": vars(args), "points": points, "bd_rate_vs_paper_shape": table, "front": overall,
        "plot": str(plot), "wall_seconds": time.perf_counter() - started, "threads": torch.get_num_threads()})
    print(f"plot: {plot}; summary: {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
