"""Rate-distortion beyond the paper on downscaled Kodak: the paper-faithful INR curve against each
rate-aware addition alone and all together, with BD-rates (pchip) and the classical codecs.

    OMP_NUM_THREADS=1 python benchmarks/rd_beyond.py --images kodim01 kodim05 kodim12 kodim19 kodim21 kodim23 \
        --widths 16 24 32 --epochs 1000 --out benchmarks/output/rd_beyond

Every image is fitted once per width and loss (the paper's: MSE + L1 1e-5; rate-aware: plus
--rate_lambda x the estimated bpp, codec/rate.py), the same --epochs for every curve, images of one
size fitted together (experiments.images.fit_images_batched). Each variant then quantizes those
fits at its bit widths (images of one size coded together, experiments.image_codec.
compress_image_models) and every number is measured on the written bytes decoded back:

  faithful      the paper's pipeline: 7 and 8 bits, per-tensor MSE steps, AdaRound + QAT (lr 1e-6)
  rd_steps      + per-tensor steps by the rate-distortion allocation (--rd_steps)
  qat           + QAT that moves weights: from AdaRound's soft levels at --qat_lr (--qat_from_soft)
  bits6         + 6-bit points (a bit width per rate instead of 7 and 8 only)
  rate_lambda   the rate-aware fits, quantized as faithful
  all           rate-aware fits, 6-8 bits, rd_steps and the QAT above

A variant's curve is the upper envelope of its (width, bits) points, each point the mean bpp and mean
PSNR over the images: with --front pareto (default) the points no other beats in both rate and PSNR;
with --front hull only those on the upper convex hull of (log bpp, PSNR), so that a point below the
line through its neighbours (a 6-bit point between an 8-bit and a 7-bit one) does not bend the
interpolated curve down: a curve with more points then never lies below one with a subset. BD-rates
(evaluate.bd, pchip) of every variant against faithful and of every curve against JPEG2000 (9/7,
mct: evaluate.codecs' fair setting), WebP and AVIF on the same images; an RD plot; the fit and
encode seconds per image beside each curve.
Fits and coded points are cached under --out (a rerun reuses them; --force recomputes). Runs over
disjoint image sets (one per core) combine with --merge: it fits and codes nothing, reads every point
of the given folders, averages them over the union of their images (which must be --images) and
writes the table, the BD-rates and the plot under --out:

    python benchmarks/rd_beyond.py --images kodim01 ... kodim12 --out benchmarks/output/rd_beyond24_A  # and _B
    python benchmarks/rd_beyond.py --images kodim01 ... kodim24 --merge benchmarks/output/rd_beyond24_A \
        benchmarks/output/rd_beyond24_B --out benchmarks/output/rd_beyond24
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from inrcompress.codec.compress import QuantConfig
from inrcompress.codec.rate import RateTerm
from inrcompress.codec.representations import representation_of
from inrcompress.config import ModelConfig, TrainConfig, write_json
from inrcompress.errors import InrError
from inrcompress.evaluate import bd, codecs, curves, plots
from inrcompress.experiments.image_codec import compress_image_models, measure_decoded
from inrcompress.experiments.images import ImageSignal, fit_images_batched
from inrcompress.nn import INR
from inrcompress.signals.grid import coordinate_grid
from inrcompress.signals.image import image_to_values

REPO = Path(__file__).resolve().parents[1]
DEFAULT_KODAK = REPO.parent / "shared" / "data" / "KODAK"
CODECS = ("jpeg2000", "webp", "avif")
INTERPOLATION = "pchip"


@dataclass(frozen=True)
class Variant:
    """One curve: which fits it quantizes ("paper" or "rate"), at which bit widths, with which
    QuantConfig fields beyond the paper's."""

    fits: str
    bitwidths: tuple[int, ...]
    quant: dict = field(default_factory=dict)


def variants(args) -> dict[str, Variant]:
    qat = {"qat_from_soft": True, "retrain_lr": args.qat_lr}
    return {"faithful": Variant("paper", (7, 8)),
            "rd_steps": Variant("paper", (7, 8), {"rd_steps": True}),
            "qat": Variant("paper", (7, 8), qat),
            "bits6": Variant("paper", (6, 7, 8)),
            "rate_lambda": Variant("rate", (7, 8)),
            "all": Variant("rate", (6, 7, 8), {"rd_steps": True, **qat})}


def fit_images(images, cfg: ModelConfig, epochs: int, rate_lambda: float, folder: Path, force: bool = False
               ) -> tuple[dict, float]:
    """({image: state_dict}, fit seconds per image) of networks of `cfg` fitted to the images with the
    paper's loss (plus rate_lambda x the estimated bpp), the images of one size fitted together, or
    read from `folder` where a finished fit left them."""
    done = folder / "fit.json"
    if done.is_file() and not force:
        return ({name: torch.load(folder / f"{name}.pth") for name, _ in images},
                json.loads(done.read_text())["fit_seconds_per_image"])
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    states = {}
    for shape in sorted({im.shape for _, im in images}):
        group = [(name, im) for name, im in images if im.shape == shape]
        coords = coordinate_grid(shape[:2])
        signals = [ImageSignal(name, im, coords, image_to_values(im)) for name, im in group]
        models = []
        for _ in group:
            torch.manual_seed(0)
            models.append(INR(cfg))
        names = [spec.name for spec in representation_of(models[0]).tensor_specs()]
        terms = [RateTerm(rate_lambda, shape[0] * shape[1], names, 8)] if rate_lambda else []
        train = TrainConfig(epochs=epochs, lr=5e-4, l1_reg=1e-5, seed=0)
        fit_images_batched(signals, cfg, train, [None] * len(group), torch.device("cpu"), models=models,
                           show_progress=False, terms=terms)
        for (name, _), model in zip(group, models):
            states[name] = model.state_dict()
            torch.save(states[name], folder / f"{name}.pth")
    per_image = (time.perf_counter() - started) / len(images)
    write_json(done, {"fit_seconds_per_image": per_image, "rate_lambda": rate_lambda, "epochs": epochs})
    return states, per_image


def fit_all(images, widths, args, out: Path) -> tuple[dict, dict]:
    """{(fits, width): {image: state_dict}} and {(fits, width): fit seconds per image} (fit_images)."""
    fitted, seconds = {}, {}
    for fits, rate_lambda in (("paper", 0.0), ("rate", args.rate_lambda)):
        for width in widths:
            cfg = ModelConfig(hidden_dims=width, hidden_layers=args.hidden_layers, ff_dims=args.ff_dims)
            fitted[fits, width], seconds[fits, width] = fit_images(
                images, cfg, args.epochs, rate_lambda, out / "fits" / fit_folder(fits, width, args), args.force)
            print(f"fits {fits} width {width}: {seconds[fits, width]:.1f} s per image", flush=True)
    return fitted, seconds


def mean_point(per_image: dict) -> dict:
    """{bpp, psnr, ms_ssim, encode_seconds}: the means over the images of per_image ({image: those
    numbers}), with per_image kept."""
    point = {key: float(np.mean([r[key] for r in per_image.values()]))
             for key in ("bpp", "psnr", "ms_ssim", "encode_seconds")}
    point["per_image"] = per_image
    return point


def code_point(images, states, cfg: ModelConfig, qcfg: QuantConfig, path: Path, force: bool = False) -> dict:
    """Mean bpp / PSNR / encode seconds over the images of one fitted architecture at qcfg (cached in
    path; per image under "per_image")."""
    if path.is_file() and not force:
        return json.loads(path.read_text())
    per_image = {}
    for shape in sorted({im.shape for _, im in images}):
        group = [(name, im) for name, im in images if im.shape == shape]
        models = []
        for name, _ in group:
            model = INR(cfg)
            model.load_state_dict(states[name])
            models.append(model)
        coded = compress_image_models(models, [im for _, im in group], qcfg, rotated=[False] * len(group))
        for (name, im), (data, info) in zip(group, coded):
            measured = measure_decoded(data, im)
            per_image[name] = {"bpp": measured["bpp"], "psnr": measured["psnr"], "ms_ssim": measured["ms_ssim"],
                               "encode_seconds": info["encode_seconds"]}
    point = mean_point(per_image)
    point.update(width=cfg.hidden_dims, bitwidth=qcfg.bitwidth, tag=qcfg.tag)
    write_json(path, point)
    return point


def architecture_key(width: int, args) -> str:
    """w<width>, and the depth and ff_dims where they are not the paper's 3 and 16 (cache names)."""
    paper = (args.hidden_layers, args.ff_dims) == (3, 16)
    return f"w{width}" + ("" if paper else f"_h{args.hidden_layers}_ff{args.ff_dims}")


def fit_folder(fits: str, width: int, args) -> str:
    """The cache folder name of one width's fits under out/fits."""
    rate_lambda = args.rate_lambda if fits == "rate" else 0.0
    return f"{fits}_{architecture_key(width, args)}_e{args.epochs}" + (f"_l{rate_lambda}" if rate_lambda else "")


def merged_point(folders: list[Path], relative: str, names: list[str]) -> dict:
    """One point averaged over the images of several runs: each image's numbers from the run that
    coded it; every one of `names` must be there, once."""
    per_image = {}
    for folder in folders:
        path = folder / relative
        if not path.is_file():
            raise InrError(f"{path} is missing: run that folder's benchmark first (same --widths, --epochs, "
                           "--rate_lambda, --qat_lr)")
        for name, values in json.loads(path.read_text())["per_image"].items():
            if name in per_image:
                raise InrError(f"{name} is coded in more than one of the merged folders ({relative})")
            per_image[name] = values
    if sorted(per_image) != sorted(names):
        raise InrError(f"the merged folders hold images {sorted(per_image)} for {relative}, not --images")
    return mean_point(per_image)


def merged_fit_seconds(folders: list[Path], fits_folder: str) -> float:
    """Fit seconds per image over several runs, weighted by their image counts."""
    total = count = 0.0
    for folder in folders:
        path = folder / "fits" / fits_folder / "fit.json"
        if not path.is_file():
            raise InrError(f"{path} is missing: run that folder's benchmark first")
        saved = json.loads(path.read_text())
        n = len(list((folder / "fits" / fits_folder).glob("*.pth")))
        total += saved["fit_seconds_per_image"] * n
        count += n
    return total / count


def convex_front(points: list[dict]) -> list[dict]:
    """The Pareto points on the upper convex hull of (log bpp, PSNR), by bpp."""
    hull = []
    for point in pareto(points):
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = [(np.log(q["bpp"]), q["psnr"]) for q in hull[-2:]]
            x3, y3 = np.log(point["bpp"]), point["psnr"]
            if (x2 - x1) * (y3 - y1) - (y2 - y1) * (x3 - x1) >= 0:  # hull[-1] on or below the chord
                hull.pop()
            else:
                break
        hull.append(point)
    return hull


def pareto(points: list[dict]) -> list[dict]:
    """The points no other point beats in both rate and PSNR, by bpp."""
    front = []
    for point in sorted(points, key=lambda p: (p["bpp"], -p["psnr"])):
        if not front or point["psnr"] > front[-1]["psnr"]:
            front.append(point)
    return front


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kodak", default=str(DEFAULT_KODAK))
    parser.add_argument("--images", nargs="+", default=["kodim01", "kodim05", "kodim12", "kodim19", "kodim21",
                                                         "kodim23"])
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 24, 32])
    parser.add_argument("--hidden_layers", type=int, default=3)
    parser.add_argument("--ff_dims", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--rate_lambda", type=float, default=0.01)
    parser.add_argument("--qat_lr", type=float, default=1e-5)
    parser.add_argument("--adaround_iterations", type=int, default=1000, help="the paper's 1000 (less: quick runs)")
    parser.add_argument("--retrain_epochs", type=int, default=300, help="the paper's 300 (less: quick runs)")
    parser.add_argument("--variants", nargs="+", help="only these curves (default: all)")
    parser.add_argument("--codecs", nargs="*", default=list(CODECS))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "output" / "rd_beyond"))
    parser.add_argument("--force", action="store_true", help="recompute cached fits and points")
    parser.add_argument("--front", choices=("pareto", "hull"), default="pareto",
                        help="which points make a curve (see above)")
    parser.add_argument("--merge", nargs="+", metavar="DIR",
                        help="fit and code nothing: combine these runs over disjoint image sets (see above)")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except InrError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def run(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = codecs.load_dataset_images(Path(args.kodak), args.factor, args.images)
    chosen = variants(args)
    if args.variants:
        unknown = sorted(set(args.variants) - set(chosen))
        if unknown:
            raise InrError(f"unknown variants {unknown}; there are {', '.join(chosen)}")
        chosen = {name: v for name, v in chosen.items() if name in args.variants or name == "faithful"}
    started = time.perf_counter()
    merged = [Path(folder) for folder in args.merge or []]
    if merged:
        missing = [str(f) for f in merged if not (f / "points").is_dir()]
        if missing:
            raise InrError(f"nothing to merge in {', '.join(missing)} (no points/ folder)")
        fitted = {}
        fit_seconds = {(v.fits, w): merged_fit_seconds(merged, fit_folder(v.fits, w, args))
                       for v in chosen.values() for w in args.widths}
    else:
        fitted, fit_seconds = fit_all(images, args.widths, args, out)
    ours, rows = [], {}
    for name, variant in chosen.items():
        points = []
        for width in args.widths:
            for bits in variant.bitwidths:
                qcfg = QuantConfig(bitwidth=bits, adaround_iterations=args.adaround_iterations,
                                   retrain_epochs=args.retrain_epochs, **variant.quant)
                relative = f"points/{variant.fits}_{architecture_key(width, args)}_e{args.epochs}_{qcfg.tag}.json"
                if merged:
                    point = merged_point(merged, relative, [n for n, _ in images])
                    point.update(width=width, bitwidth=bits, tag=qcfg.tag)
                else:
                    cfg = ModelConfig(hidden_dims=width, hidden_layers=args.hidden_layers, ff_dims=args.ff_dims)
                    point = code_point(images, fitted[variant.fits, width], cfg, qcfg, out / relative, args.force)
                point["fit_seconds"] = fit_seconds[variant.fits, width]
                points.append(point)
                print(f"{name:<12} w{width:<3} {bits}b: {point['bpp']:.4f} bpp, PSNR {point['psnr']:.2f} dB, "
                      f"fit {point['fit_seconds']:.1f} s + encode {point['encode_seconds']:.1f} s per image", flush=True)
        front = convex_front(points) if args.front == "hull" else pareto(points)
        ours.append(curves.Curve(name, [p["bpp"] for p in front], [p["psnr"] for p in front],
                                 [p["ms_ssim"] for p in front], source=str(out)))
        rows[name] = {"points": points, "front": front,
                      "seconds_per_image": float(np.mean([p["fit_seconds"] + p["encode_seconds"] for p in front]))}
    dataset = f"KODAK_{args.factor}x ({len(images)} images)"
    anchors = []
    for codec in args.codecs:
        if codecs.CODECS[codec].missing():
            print(f"{codec}: {codecs.CODECS[codec].missing()} (skipped)")
            continue
        data = codecs.codec_sweep(codec, images, with_ms_ssim=False, dataset=dataset)
        anchors.append(curves.curve_from_dict(data, codec))
    faithful = ours[0]
    table = []
    for curve in ours:
        entry = {"curve": curve.name, "seconds_per_image": rows[curve.name]["seconds_per_image"]}
        for anchor in [faithful] + anchors:
            if anchor is curve:
                continue
            result = bd.bd_compare(anchor, curve, "psnr", INTERPOLATION)
            entry[f"vs_{anchor.name}"] = result["bd_rate"]
            entry[f"vs_{anchor.name}_error"] = result.get("bd_rate_error")
        table.append(entry)
    columns = ["faithful"] + [a.name for a in anchors]
    print("\nBD-rate (%, PSNR, " + INTERPOLATION + "; negative: less rate than the anchor)")
    print("| curve | " + " | ".join(f"vs {c}" for c in columns) + " | fit + encode s/image |")
    print("|---|" + "---|" * (len(columns) + 1))
    for entry in table:
        cells = [entry.get(f"vs_{c}") for c in columns]
        print(f"| {entry['curve']} | " + " | ".join("-" if v is None else f"{v:+.1f}" for v in cells)
              + f" | {entry['seconds_per_image']:.0f} |")
    plot = plots.plot_curves([("ours", ours), ("codec", anchors)], out / "rd_beyond.png", metric="psnr",
                             title=f"INR beyond the paper, {dataset}, {args.epochs} fitting steps", max_bpp=2.0)
    write_json(out / "summary.json", {
        "date": datetime.now(timezone.utc).isoformat(timespec="minutes"), "images": [n for n, _ in images],
        "arguments": vars(args), "curves": rows, "bd_rate": table, "plot": str(plot),
        "wall_seconds": time.perf_counter() - started, "threads": torch.get_num_threads()})
    print(f"plot: {plot}; summary: {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
