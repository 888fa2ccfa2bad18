"""evaluate.py: rate-distortion curves, classical codecs, BD-rate, plots and an HTML report.

    # (a) one curve from several experiments (one point each), sorted by bpp
    python image_compression/evaluate.py aggregate --out exp/basic_kodak/curve_bw8.json \\
        'exp/basic_kodak/*/results_arithmetic_bw8_*.json'
    # (b) classical codecs on the same images: one curve JSON per codec (JPEG, JPEG2000, WebP, AVIF,
    #     HEVC 4:4:4 and 4:2:0, JPEG XL; a codec whose library is missing is skipped with a note)
    python image_compression/evaluate.py codecs --data_root data --dataset KODAK --out_dir exp/codecs
    # (c) BD-rate / BD-PSNR of test curves against anchors
    python image_compression/evaluate.py bd --anchor exp/codecs/jpeg_KODAK.json exp/basic_kodak/curve_bw8.json
    # (d) RD plot of our curves beside codecs and published anchors
    python image_compression/evaluate.py plot exp/basic_kodak/curve_bw8.json --codecs exp/codecs \\
        --anchors ../shared/anchors/compressai_jpeg_kodak.json --out rd.png
    # (e) an HTML page: RD plots, BD-rates, a per-image table, decoded crops side by side
    python image_compression/evaluate.py report exp/basic_kodak/curve_bw8.json --codecs exp/codecs \\
        --data_root data --dataset KODAK --out report/

Curve files: CompressAI's layout {"name", "results": {"bpp", "psnr-rgb", "ms-ssim-rgb"}}, the anchor
layout {"name", "bpp", "psnr", "ms_ssim"}, or our per-experiment results_{code}_{cfg}.json files, which
are grouped by {code}_{cfg} into one curve each. Paths may be globs (quoted) or folders; a flag that
takes files (--anchor, --codecs, --anchors) is repeated for more. `evaluate.py COMMAND --help` lists
the flags of a command.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from absl import flags

from inrcompress.config import write_json
from inrcompress.errors import InrError
from inrcompress.evaluate import bd, codecs, curves, plots
from inrcompress.tools import flags as inr_flags

PROG = "evaluate.py"
METRICS = ["psnr", "ms-ssim-db"]


@dataclass(frozen=True)
class Command:
    summary: str
    positional: tuple[str, ...]  # names for the usage line; the last may end in "..." (one or more)
    define: Callable[[flags.FlagValues], None]
    run: Callable[[flags.FlagValues, list[str]], None]


def _define_curve_files(fv: flags.FlagValues, name: str, what: str, required: bool = False) -> None:
    flags.DEFINE_multi_string(name, None, f"{what}: a file, a quoted glob or a folder", flag_values=fv,
                              required=required)


def _load_curves(patterns) -> list[curves.Curve]:
    return curves.curves_from_files(curves.expand_paths(patterns, what="curve file")) if patterns else []


# ------------------------------------------------------------------------------------------------
# aggregate


def _define_aggregate(fv):
    flags.DEFINE_string("out", None, "Curve JSON to write.", flag_values=fv, required=True)
    flags.DEFINE_string("name", None, "Curve name (default: from the file names).", flag_values=fv)
    flags.DEFINE_bool("allow_different_images", False, "Aggregate experiments compressed on different image sets.",
                      flag_values=fv)


def _aggregate(fv, patterns):
    paths = curves.expand_paths(patterns, folder_glob="*/results_*.json", what="results file")
    curve = curves.aggregate_results(paths, fv.name, fv.allow_different_images)
    write_json(fv.out, curve)
    r = curve["results"]
    print(f"{fv.out}: {len(paths)} points, {curve['name']}")
    for bpp, psnr, msssim, exp in zip(r["bpp"], r["psnr-rgb"], r["ms-ssim-rgb"], curve["experiments"]):
        ms = f"{msssim:.4f}" if msssim is not None else "n/a"
        print(f"  {bpp:8.4f} bpp  {psnr:6.2f} dB  MS-SSIM {ms}  {exp}")


# ------------------------------------------------------------------------------------------------
# codecs


def _sweep_flag(codec: codecs.ImageCodec) -> str:
    return f"{codec.name}_{codec.sweep_flag}"


def _define_codecs(fv):
    inr_flags.define_images(fv)
    flags.DEFINE_list("images", [], "Only these images (file stems, comma-separated).", flag_values=fv)
    flags.DEFINE_list("codecs", list(codecs.CODECS), f"Codecs to sweep: {', '.join(codecs.CODECS)}.", flag_values=fv)
    flags.DEFINE_string("out_dir", None, "Writes <codec>_<dataset>[_<f>x].json here.", flag_values=fv, required=True)
    flags.DEFINE_bool("ms_ssim", True, "Measure MS-SSIM (--noms_ssim: faster).", flag_values=fv)
    flags.DEFINE_bool("quiet", False, "No progress bars.", flag_values=fv)
    for codec in codecs.CODECS.values():
        flags.DEFINE_list(_sweep_flag(codec), None, f"{codec.label} {codec.setting} sweep, comma-separated "
                          f"(default: {','.join(map(str, codec.defaults))}).", flag_values=fv)
        for option in codec.options:
            help_text = f"{codec.label}: {option.help}."
            name = f"{codec.name}_{option.name}"
            if isinstance(option.default, int) and option.choices:
                flags.DEFINE_integer(name, option.default, help_text, lower_bound=min(option.choices),
                                     upper_bound=max(option.choices), flag_values=fv)
            elif option.choices:
                flags.DEFINE_enum(name, option.default, list(option.choices), help_text, flag_values=fv)
            else:
                flags.DEFINE_string(name, str(option.default), help_text, flag_values=fv)


def _settings(fv, codec: codecs.ImageCodec) -> list | None:
    given = fv[_sweep_flag(codec)].value
    if not given:
        return None
    try:
        return [codec.setting_type(v) for v in given]
    except ValueError:
        raise InrError(f"--{_sweep_flag(codec)}: not a list of numbers: {','.join(given)}") from None


def _codecs(fv, _):
    unknown = [name for name in fv.codecs if name not in codecs.CODECS]
    if unknown:
        raise InrError(f"--codecs: unknown {', '.join(unknown)} (known: {', '.join(codecs.CODECS)})")
    selected = [codecs.CODECS[name] for name in fv.codecs]
    settings = {codec.name: _settings(fv, codec) for codec in selected}  # bad values fail before any work
    images = codecs.load_dataset_images(Path(fv.data_root) / fv.dataset, fv.downscaling_factor, fv.images)
    factor = fv.downscaling_factor
    suffix = f"_{factor}x" if factor > 1 else ""
    label = fv.dataset + (f" ({factor}x downscaled)" if suffix else "")
    done = 0
    for codec in selected:
        reason = codec.missing()
        if reason:
            print(f"skipped {codec.name}: {reason}", file=sys.stderr)
            continue
        options = {o.name: fv[f"{codec.name}_{o.name}"].value for o in codec.options}
        curve = codecs.codec_sweep(codec, images, settings[codec.name], options, with_ms_ssim=fv.ms_ssim,
                                   dataset=label, progress=not fv.quiet)
        out = write_json(Path(fv.out_dir) / f"{codec.name}_{fv.dataset}{suffix}.json", curve)
        r = curve["results"]
        print(f"{out}: {len(r['bpp'])} points, {r['bpp'][0]:.3f}..{r['bpp'][-1]:.3f} bpp, "
              f"{min(r['psnr-rgb']):.2f}..{max(r['psnr-rgb']):.2f} dB")
        done += 1
    if not done:
        raise InrError("none of the codecs could run here (see the notes above)")


# ------------------------------------------------------------------------------------------------
# bd


def _define_bd(fv):
    _define_curve_files(fv, "anchor", "Anchor curve(s)", required=True)
    flags.DEFINE_enum("metric", "psnr", METRICS, "Quality axis.", flag_values=fv)
    flags.DEFINE_enum("interpolation", bd.DEFAULT_INTERPOLATION, list(bd.INTERPOLATIONS),
                      "cubic: Bjontegaard's polynomial fit (what our tables use); pchip: piecewise cubic Hermite.",
                      flag_values=fv)
    flags.DEFINE_string("out", None, "Also write the table as JSON.", flag_values=fv)


def _bd(fv, tests):
    anchors, tests = _load_curves(fv.anchor), _load_curves(tests)
    rows = [bd.bd_compare(a, t, fv.metric, fv.interpolation) for t in tests for a in anchors]
    for row in rows:
        print(bd.format_bd(row))
    if fv.out:
        write_json(fv.out, {"metric": fv.metric, "method": bd.describe(fv.interpolation), "rows": rows})
    if rows and all(r.get("bd_rate") is None for r in rows):
        raise InrError("no BD-rate could be computed for any pair of curves (see above)")


# ------------------------------------------------------------------------------------------------
# plot


def _define_plot_inputs(fv):
    _define_curve_files(fv, "codecs", "Codec curves (evaluate.py codecs)")
    _define_curve_files(fv, "anchors", "Published curves (e.g. ../shared/anchors/...)")
    flags.DEFINE_float("max_bpp", None, "Right end of the bpp axis.", lower_bound=0.0, flag_values=fv)
    flags.DEFINE_string("title", "", "Plot title.", flag_values=fv)


def _define_plot(fv):
    _define_plot_inputs(fv)
    flags.DEFINE_string("out", None, "PNG to write.", flag_values=fv, required=True)
    flags.DEFINE_enum("metric", "psnr", METRICS + ["both"], "Quality axis.", flag_values=fv)


def _curve_groups(fv, ours) -> list[tuple[str, list[curves.Curve]]]:
    groups = [("ours", _load_curves(ours)), ("codec", _load_curves(fv.codecs)), ("anchor", _load_curves(fv.anchors))]
    if len(groups[2][1]) > 15:
        print(f"warning: {len(groups[2][1])} anchor curves make a crowded plot", file=sys.stderr)
    return groups


def _plot(fv, ours):
    groups = _curve_groups(fv, ours)
    out = plots.plot_curves(groups, fv.out, metric=fv.metric, title=fv.title, max_bpp=fv.max_bpp)
    print(f"{out}: {sum(len(c) for _, c in groups)} curves")


# ------------------------------------------------------------------------------------------------
# report


def _define_report(fv):
    _define_plot_inputs(fv)
    inr_flags.define_images(fv)
    flags.DEFINE_string("out", None, "Folder of the report: index.html and its PNGs.", flag_values=fv, required=True)
    flags.DEFINE_float("target_bpp", None, "Show each method at its point nearest this rate (default: the middle "
                       "point of the first of our curves).", lower_bound=0.0, flag_values=fv)
    flags.DEFINE_integer("crop_images", 3, "Images shown side by side.", lower_bound=0, flag_values=fv)
    flags.DEFINE_integer("crop_size", 160, "Side of the crops in pixels (of the image as evaluated).", lower_bound=8,
                         flag_values=fv)


def _decode_inr_file(path: Path):
    """The 8-bit image an .inr file of an experiment decodes to (with the experiment's init, if any)."""
    from inrcompress.codec.compress import decode_image
    from inrcompress.errors import CorruptFileError
    from inrcompress.experiments.image_codec import load_reference

    try:
        return decode_image(path.read_bytes(), load_reference(path.parent.parent))[1]
    except CorruptFileError as e:
        raise CorruptFileError(f"{path}: {e}") from None


def _report(fv, ours):
    from inrcompress.evaluate import report

    groups = _curve_groups(fv, ours)
    page = report.write_report(fv.out, groups, Path(fv.data_root) / fv.dataset, fv.downscaling_factor,
                               _decode_inr_file, target_bpp=fv.target_bpp, crop_images=fv.crop_images,
                               crop_size=fv.crop_size, title=fv.title, max_bpp=fv.max_bpp)
    print(f"{page}: the report (open it in a browser)")


COMMANDS = {
    "aggregate": Command("results_*.json of several experiments -> one curve JSON", ("RESULTS_JSON...",),
                         _define_aggregate, _aggregate),
    "codecs": Command("classical codecs over a setting sweep -> one curve JSON per codec", (), _define_codecs, _codecs),
    "bd": Command("BD-rate and BD-PSNR of test curves against anchor curves", ("TEST_CURVE...",), _define_bd, _bd),
    "plot": Command("RD plot (PNG) of our curves, codecs and anchors", ("CURVE...",), _define_plot, _plot),
    "report": Command("HTML report: RD plots, BD-rates, per-image table, decoded crops side by side",
                      ("CURVE...",), _define_report, _report),
}


def command_line(argv: list[str], prog: str = PROG) -> tuple[Command, flags.FlagValues, list[str]]:
    """Parse `COMMAND [--flag=value ...] ARGS` (without the program name): the command, its parsed
    flags and its positional arguments. Raises HelpShown after printing a --help, InrError otherwise."""
    names = "{" + ",".join(COMMANDS) + "}"
    if not argv or argv[0] in ("-h", "--help", "--helpfull", "--helpshort"):
        listing = "\n".join(f"  {name:10s} {c.summary}" for name, c in COMMANDS.items())
        text = f"usage: {prog} {names} [--flag=value ...] [ARGS ...]\n\n{__doc__.splitlines()[0]}\n\n{listing}"
        if not argv:
            raise InrError(f"usage: {prog} {names} [--flag=value ...] [ARGS ...] (no command given)")
        print(text + "\n\n" + textwrap.dedent("\n".join(__doc__.splitlines()[1:])).strip("\n"))
        raise inr_flags.HelpShown()
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        raise InrError(f"unknown command {name!r}: usage: {prog} {names} ...")
    command = COMMANDS[name]
    fv = flags.FlagValues()
    command.define(fv)
    positional = inr_flags.parse(fv, rest, f"{prog} {name}", command.positional)
    return command, fv, positional


def main(argv: list[str] | None = None) -> int:
    def body(args):
        prog = PROG
        if args is None:
            args, prog = sys.argv[1:], Path(sys.argv[0]).name or PROG
        command, fv, positional = command_line(list(args), prog)
        command.run(fv, positional)
    return inr_flags.run_tool(body, argv)


if __name__ == "__main__":  # python -m inrcompress.tools.evaluate
    sys.exit(main())
