"""evaluate.py: rate-distortion curves, classical codecs, BD-rate and plots.

    # (a) one curve from several experiments (one point each), sorted by bpp
    python image_compression/evaluate.py aggregate --out exp/basic_kodak/curve_bw8.json \\
        'exp/basic_kodak/*/results_arithmetic_bw8_*.json'
    # (b) JPEG, JPEG2000, WebP, AVIF (Pillow) on the same images: one curve JSON per codec
    python image_compression/evaluate.py codecs --data_root data --dataset KODAK --out_dir exp/codecs
    # (c) BD-rate / BD-PSNR of test curves against anchors
    python image_compression/evaluate.py bd --anchor exp/codecs/jpeg_KODAK.json --test exp/basic_kodak/curve_bw8.json
    # (d) RD plot of our curves beside codecs and published anchors
    python image_compression/evaluate.py plot exp/basic_kodak/curve_bw8.json --codecs exp/codecs \\
        --anchors ../shared/anchors/compressai_jpeg_kodak.json --out rd.png

Curve files: CompressAI's layout {"name", "results": {"bpp", "psnr-rgb", "ms-ssim-rgb"}}, the anchor
layout {"name", "bpp", "psnr", "ms_ssim"}, or our per-experiment results_{code}_{cfg}.json files, which
`bd` and `plot` group by {code}_{cfg} into one curve each. Paths may be globs (quoted) or folders.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from inrcompress.evaluate import rd as ev
from inrcompress.errors import InrError
from inrcompress.tools.flags import run_tool


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evaluate.py", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    sub = parser.add_subparsers(dest="command", metavar="{aggregate,codecs,bd,plot}")
    sub.required = True

    agg = sub.add_parser("aggregate", help="results_*.json of several experiments -> one curve JSON")
    agg.add_argument("results", nargs="*", help="results_{code}_{cfg}.json files or quoted globs")
    agg.add_argument("--results", dest="more_results", action="append", default=[], metavar="GLOB",
                     help="more files/globs (repeatable)")
    agg.add_argument("--out", required=True, help="curve JSON to write")
    agg.add_argument("--name", help="curve name (default: from the file names)")
    agg.add_argument("--allow_different_images", action="store_true",
                     help="aggregate experiments compressed on different image sets")

    cod = sub.add_parser("codecs", help="classical codecs over a quality sweep -> one curve JSON per codec")
    cod.add_argument("--data_root", default="data", help="root of the datasets (default: %(default)s)")
    cod.add_argument("--dataset", default="KODAK", help="image folder under data_root (default: %(default)s)")
    cod.add_argument("--downscaling_factor", type=int, default=1,
                     help="downscale as the fitting tools do (default: %(default)s)")
    cod.add_argument("--images", nargs="+", metavar="NAME", help="only these images (file stems)")
    cod.add_argument("--codecs", nargs="+", choices=list(ev.CODECS), default=list(ev.CODECS),
                     help="default: all four")
    cod.add_argument("--out_dir", required=True, help="writes <codec>_<dataset>[_<f>x].json here")
    for name, spec in ev.CODECS.items():
        kind = float if spec.setting == "target_bpp" else int
        cod.add_argument(f"--{name}_{'bpps' if kind is float else 'qualities'}", dest=f"{name}_settings",
                         type=kind, nargs="+", metavar="V",
                         help=f"{spec.label} {spec.setting} sweep (default: {' '.join(map(str, spec.defaults))})")
    cod.add_argument("--jpeg_subsampling", choices=list(ev.SUBSAMPLING), default="4:2:0")
    cod.add_argument("--webp_method", type=int, choices=range(7), default=6, help="0 fast .. 6 best (default 6)")
    cod.add_argument("--avif_speed", type=int, choices=range(11), default=6, help="0 slow/best .. 10 fast")
    cod.add_argument("--avif_subsampling", choices=list(ev.SUBSAMPLING), default="4:2:0")
    cod.add_argument("--no_ms_ssim", action="store_true", help="skip MS-SSIM (faster)")
    cod.add_argument("--quiet", action="store_true", help="no progress bars")

    bd = sub.add_parser("bd", help="BD-rate and BD-PSNR of curves against anchor curves")
    bd.add_argument("--anchor", nargs="+", required=True, help="anchor curve file(s), globs or folders")
    bd.add_argument("--test", nargs="+", required=True, help="test curve file(s), globs or folders")
    bd.add_argument("--metric", choices=["psnr", "ms-ssim-db"], default="psnr")
    bd.add_argument("--out", help="also write the table as JSON")

    plot = sub.add_parser("plot", help="RD plot (PNG)")
    plot.add_argument("curves", nargs="*", help="our curves: curve JSONs or results_*.json files/globs")
    plot.add_argument("--codecs", nargs="+", default=[], help="codec curves (files, globs, folders)")
    plot.add_argument("--anchors", nargs="+", default=[], help="published curves (files, globs, folders)")
    plot.add_argument("--out", required=True, help="PNG to write")
    plot.add_argument("--metric", choices=["psnr", "ms-ssim-db", "both"], default="psnr")
    plot.add_argument("--max_bpp", type=float, help="right end of the bpp axis")
    plot.add_argument("--title", default="")
    return parser


def _aggregate(opts) -> None:
    patterns = list(opts.results) + list(opts.more_results)
    if not patterns:
        raise InrError("aggregate: give results_*.json files or globs")
    paths = ev.expand_paths(patterns, folder_glob="*/results_*.json", what="results file")
    curve = ev.aggregate_results(paths, opts.name, opts.allow_different_images)
    ev.write_json(opts.out, curve)
    r = curve["results"]
    print(f"{opts.out}: {len(paths)} points, {curve['name']}")
    for bpp, psnr, msssim, exp in zip(r["bpp"], r["psnr-rgb"], r["ms-ssim-rgb"], curve["experiments"]):
        ms = f"{msssim:.4f}" if msssim is not None else "n/a"
        print(f"  {bpp:8.4f} bpp  {psnr:6.2f} dB  MS-SSIM {ms}  {exp}")


def _codecs(opts) -> None:
    if opts.downscaling_factor < 1:
        raise InrError("--downscaling_factor must be >= 1")
    folder = Path(opts.data_root) / opts.dataset
    images = ev.load_dataset_images(folder, opts.downscaling_factor, opts.images)
    options = ev.CodecOptions(jpeg_subsampling=opts.jpeg_subsampling, webp_method=opts.webp_method,
                              avif_speed=opts.avif_speed, avif_subsampling=opts.avif_subsampling)
    suffix = f"_{opts.downscaling_factor}x" if opts.downscaling_factor > 1 else ""
    label = opts.dataset + (f" ({opts.downscaling_factor}x downscaled)" if suffix else "")
    for codec in opts.codecs:
        curve = ev.codec_sweep(codec, images, getattr(opts, f"{codec}_settings"), options,
                               with_ms_ssim=not opts.no_ms_ssim, dataset=label, progress=not opts.quiet)
        out = ev.write_json(Path(opts.out_dir) / f"{codec}_{opts.dataset}{suffix}.json", curve)
        r = curve["results"]
        print(f"{out}: {len(r['bpp'])} points, {r['bpp'][0]:.3f}..{r['bpp'][-1]:.3f} bpp, "
              f"{min(r['psnr-rgb']):.2f}..{max(r['psnr-rgb']):.2f} dB")


def _load_curves(patterns) -> list[ev.Curve]:
    return ev.curves_from_files(ev.expand_paths(patterns, what="curve file")) if patterns else []


def _bd(opts) -> None:
    anchors, tests = _load_curves(opts.anchor), _load_curves(opts.test)
    rows = [ev.bd_compare(a, t, opts.metric) for t in tests for a in anchors]
    for row in rows:
        print(ev.format_bd(row))
    if opts.out:
        ev.write_json(opts.out, {"metric": opts.metric, "method": "Bjontegaard, cubic fit (degree min(3, n-1)) "
                                 "of log10(bpp) vs quality over the common quality range", "rows": rows})
    if rows and all(r.get("bd_rate") is None for r in rows):
        raise InrError("no BD-rate could be computed for any pair of curves (see above)")


def _plot(opts) -> None:
    groups = [("ours", _load_curves(opts.curves)), ("codec", _load_curves(opts.codecs)),
              ("anchor", _load_curves(opts.anchors))]
    if not any(curves for _, curves in groups):
        raise InrError("plot: no curves given")
    if len(groups[2][1]) > 15:
        print(f"warning: {len(groups[2][1])} anchor curves make a crowded plot", file=sys.stderr)
    out = ev.plot_curves(groups, opts.out, metric=opts.metric, title=opts.title, max_bpp=opts.max_bpp)
    print(f"{out}: {sum(len(c) for _, c in groups)} curves")


def main(argv: list[str] | None = None) -> int:
    def body(args):
        try:
            opts = _parser().parse_args(args)
        except SystemExit as e:  # argparse printed its usage line (or the help)
            return 2 if e.code else 0
        {"aggregate": _aggregate, "codecs": _codecs, "bd": _bd, "plot": _plot}[opts.command](opts)
        return 0
    return run_tool(body, argv)


if __name__ == "__main__":  # python -m inrcompress.tools.evaluate
    sys.exit(main())

