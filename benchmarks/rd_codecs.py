"""Rate-distortion sweep of the classical codecs (evaluate/codecs.py: JPEG, JPEG2000, WebP, AVIF,
HEVC 4:4:4 / 4:2:0, JPEG XL) on Kodak, with a plot and BD-rates; our INR curves join with --ours;
on full-size Kodak (--factor 1) each codec with a published curve is checked against it.

    python benchmarks/rd_codecs.py                                   # Kodak / 4, all 24 images
    python benchmarks/rd_codecs.py --factor 1 --codecs hevc444 jpeg  # the anchor check (BPG444, JPEG)
    python benchmarks/rd_codecs.py --ours 'exp/rd/*/results_arithmetic_bw8_*.json' \
        --anchors ../shared/anchors/strumpler2022_basic_8bit_kodak.json

The images are downscaled exactly as the fitting tools do (data.load_image: PIL bilinear, H//f x W//f),
so the curves are comparable with `overfitINR.py --downscaling_factor f` runs on the same folder. Each
codec's curve is written to <out>/codecs/<codec>_KODAK_<f>x.json (reused on the next run with the same
settings unless --force); --ours takes results_{code}_{cfg}.json files (quoted globs are fine), one
curve per {code}_{cfg}, or aggregated curve files (evaluate.py aggregate). Prints PSNR at fixed rates,
BD-rates of each codec against JPEG, and of each of our curves against each codec; writes
<out>/summary.json and <out>/rd_codecs_kodak<f>x.png. A codec whose library is missing is skipped
with a note. The anchor check prints BD-rate and BD-PSNR with both interpolations (cubic, what the
tables use, and pchip), for HEVC also counting only the coded picture (bpp_picture: the HEIF file
without its boxes and parameter sets, closer to what a BPG file holds).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from inrcompress.config import write_json
from inrcompress.errors import InrError
from inrcompress.evaluate import bd, codecs, curves, plots

REPO = Path(__file__).resolve().parents[1]
DEFAULT_KODAK = next((p for p in (REPO.parent / "shared" / "data" / "KODAK", REPO / "data" / "KODAK") if p.is_dir()),
                     REPO / "data" / "KODAK")
ANCHORS = REPO.parent / "shared" / "anchors"
# Published curves on full-size Kodak made with the same codec (CompressAI's runs).
PUBLISHED = {"jpeg": "compressai_jpeg_kodak.json", "jpeg2000": "compressai_jpeg2000_kodak.json",
             "webp": "compressai_webp_kodak.json", "hevc444": "compressai_bpg_444_x265_ycbcr_kodak.json"}
RATES = (0.25, 0.5, 1.0, 2.0)


def sweep_of(codec: str, factor: int) -> list:
    """The codec's default sweep; downscaled images reach lower rates, so JPEG's quality 1..4 are added."""
    defaults = list(codecs.CODECS[codec].defaults)
    return [1, 2, 3, 4] + defaults if codec == "jpeg" and factor > 1 else defaults


def psnr_at(curve: curves.Curve, bpp: float) -> float | None:
    """PSNR at a rate by linear interpolation between neighbouring points (None outside the curve)."""
    if not curve.bpp[0] <= bpp <= curve.bpp[-1]:
        return None
    return float(np.interp(bpp, curve.bpp, curve.psnr))


def sweep(codec: str, images, out: Path, dataset: str, factor: int, with_ms_ssim: bool,
          force: bool) -> tuple[curves.Curve, float | None]:
    """A codec's curve, reused from its JSON when it was made with the same settings."""
    settings = sweep_of(codec, factor)
    path = out / "codecs" / f"{codec}_{dataset.split()[0]}.json"
    if len(images) != 24:  # a subset: its own file
        path = path.with_name(f"{codec}_{dataset.split()[0]}_{len(images)}img.json")
    names = [name for name, _ in images]
    if path.is_file() and not force:
        data = json.loads(path.read_text())
        key = codecs.CODECS[codec].setting
        if (sorted(data["results"].get(key, [])) == sorted(map(float, settings)) and data.get("images") == names
                and data.get("dataset") == dataset and data.get("version") == codecs.CODECS[codec].version()
                and (data["results"].get("ms-ssim-rgb") is not None or not with_ms_ssim)):
            return curves.curve_from_dict(data, str(path)), None
    started = time.perf_counter()
    data = codecs.codec_sweep(codec, images, settings, with_ms_ssim=with_ms_ssim, dataset=dataset, progress=True)
    seconds = time.perf_counter() - started
    data["sweep_seconds"] = seconds
    write_json(path, data)
    return curves.curve_from_dict(data, str(path)), seconds


def anchor_check(codec: str, curve: curves.Curve) -> list[dict]:
    """BD of our sweep of a codec against its published curve on full-size Kodak, cubic and pchip;
    for a curve with bpp_picture (HEVC in HEIF) also with the coded picture alone."""
    path = ANCHORS / PUBLISHED[codec]
    if not path.is_file():
        print(f"  (no {path}: anchor check skipped)")
        return []
    anchor = curves.load_curve(path)
    variants = [("file bytes", curve)]
    picture = json.loads(Path(curve.source).read_text())["results"].get("bpp_picture")  # not kept by Curve
    if picture:
        variants.append(("coded picture only", curves.Curve(curve.name + " [picture]", picture, curve.psnr,
                                                            curve.ms_ssim, curve.source)))
    rows = []
    for what, test in variants:
        for metric in ("psnr", "ms-ssim-db"):
            for interpolation in bd.INTERPOLATIONS:
                try:
                    row = bd.bd_compare(anchor, test, metric, interpolation)
                except InrError as e:
                    print(f"  {what}, {metric}, {interpolation}: {e}")
                    continue
                row.update(counted=what, anchor_file=str(path))
                rows.append(row)
                print(f"  [{what}, {interpolation}] " + bd.format_bd(row))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kodak", default=str(DEFAULT_KODAK), help="folder of the Kodak PNGs (default: %(default)s)")
    parser.add_argument("--factor", type=int, default=4, help="downscaling factor (default: %(default)s)")
    parser.add_argument("--images", nargs="+", metavar="NAME",
                        help="only these images (e.g. those of --ours: kodim01 kodim04 kodim23); default: all")
    parser.add_argument("--codecs", nargs="+", choices=list(codecs.CODECS), default=list(codecs.CODECS))
    parser.add_argument("--ours", nargs="+", default=[], metavar="JSON",
                        help="our results_*.json files/globs or aggregated curve files")
    parser.add_argument("--anchors", nargs="+", default=[], help="published curves to add to the plot")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "output" / "rd_codecs"))
    parser.add_argument("--no_ms_ssim", action="store_true", help="skip MS-SSIM (much faster)")
    parser.add_argument("--force", action="store_true", help="recompute codec curves that exist")
    parser.add_argument("--max_bpp", type=float, default=3.0, help="right end of the plot's bpp axis")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except InrError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def run(args) -> int:
    import PIL
    import torch

    out = Path(args.out)
    images = codecs.load_dataset_images(Path(args.kodak), args.factor, args.images)
    dataset = f"KODAK_{args.factor}x ({len(images)} images, {args.factor}x downscaled)"
    shapes = sorted({f"{im.shape[1]}x{im.shape[0]}" for _, im in images})
    print(f"{len(images)} images from {args.kodak}, downscaled {args.factor}x: {', '.join(shapes)}")
    swept, timings, checks = [], {}, []
    for codec in args.codecs:
        reason = codecs.CODECS[codec].missing()
        if reason:
            print(f"skipped {codec}: {reason}", file=sys.stderr)
            continue
        curve, seconds = sweep(codec, images, out, dataset, args.factor, not args.no_ms_ssim, args.force)
        swept.append(curve)
        timings[codec] = seconds
        print(f"{curve.name:20s} {len(curve):3d} points, {curve.bpp[0]:.3f}..{curve.bpp[-1]:.3f} bpp"
              + (f", swept in {seconds:.0f} s" if seconds is not None else ", reused"))
        if args.factor == 1 and len(images) == 24 and codec in PUBLISHED:
            checks += anchor_check(codec, curve)
    ours = curves.curves_from_files(curves.expand_paths(args.ours, what="results file")) if args.ours else []
    anchors = curves.curves_from_files(curves.expand_paths(args.anchors, what="curve file")) if args.anchors else []
    names = sorted(name for name, _ in images)
    for curve in ours:
        theirs = curve.extra.get("images")
        if theirs and sorted(theirs) != names:
            print(f"warning: {curve.name} averages {len(theirs)} images ({' '.join(sorted(theirs)[:6])}"
                  f"{' ...' if len(theirs) > 6 else ''}), the codecs {len(names)}: for a like-for-like BD-rate run "
                  f"with --images {' '.join(sorted(theirs))}", file=sys.stderr)

    print("\nPSNR (RGB, dB, averaged per image) at fixed rates, linear interpolation; '-' = outside the curve")
    header = "| curve | " + " | ".join(f"{r} bpp" for r in RATES) + " | bpp range | PSNR range |"
    print(header + "\n|" + "---|" * (len(RATES) + 3))
    for curve in ours + swept:
        cells = [f"{v:.2f}" if (v := psnr_at(curve, r)) is not None else "-" for r in RATES]
        print(f"| {curve.name} | " + " | ".join(cells) + f" | {curve.bpp[0]:.3f}-{curve.bpp[-1]:.3f} | "
              f"{min(curve.psnr):.2f}-{max(curve.psnr):.2f} |")

    rows = []
    jpeg = next((c for c in swept if c.extra.get("codec") == "jpeg"), None)
    pairs = [(jpeg, c) for c in swept if jpeg is not None and c is not jpeg] + [(c, o) for o in ours for c in swept]
    if pairs:
        print("\nBD-rate (classic Bjontegaard, cubic in log-rate over the common PSNR range; negative = test needs "
              "less rate)")
    for anchor, test in pairs:
        for metric in ("psnr", "ms-ssim-db"):
            try:
                row = bd.bd_compare(anchor, test, metric)
            except InrError:  # a curve without MS-SSIM
                continue
            rows.append(row)
            print("  " + bd.format_bd(row))

    png = plots.plot_curves([("ours", ours), ("codec", swept), ("anchor", anchors)],
                         out / f"rd_codecs_kodak{args.factor}x.png", metric="both", max_bpp=args.max_bpp,
                         title=f"Kodak, {args.factor}x downscaled ({len(images)} images): classical codecs"
                               + (" and ours" if ours else ""))
    summary = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, Python {platform.python_version()}, "
                   f"Pillow {PIL.__version__}",
        "images": [name for name, _ in images], "factor": args.factor,
        "curves": {c.name: {"bpp": c.bpp, "psnr": c.psnr, "ms_ssim": c.ms_ssim, "source": c.source} for c in ours + swept},
        "psnr_at": {c.name: {str(r): psnr_at(c, r) for r in RATES} for c in ours + swept},
        "bd": rows, "sweep_seconds": timings, "plot": str(png),
    }
    write_json(out / "summary.json", summary)
    print(f"\n{png}\n{out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
