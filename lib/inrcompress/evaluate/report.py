"""An HTML report of a comparison: RD plots, BD-rates, a per-image table and decoded crops side by side.

`write_report(out, groups, ...)` writes <out>/index.html and the PNGs it shows (rd.png, the crops),
every file atomically and the page last, so a reader never sees a page whose pictures are missing.
The page needs nothing but its folder (no script, style or font from elsewhere); an inline script
says on the page whether every picture loaded (#load-status, data-loaded / data-broken).

What it shows, for curves grouped as in plots.plot_curves (ours, codec, anchor):
- the RD plots (PSNR and MS-SSIM vs bpp) of every curve;
- BD-rate / BD-PSNR (bd.bd_compare, cubic) of each of our curves against each codec and anchor;
- per image, the point of each of our curves and each codec nearest to a target bpp (bpp, PSNR);
- for the first few images, crops of the original, of each of our curves' decoded file and of each
  codec's decoded image at those points, shown enlarged without smoothing so artefacts can be seen.

Our curves must come from results_{code}_{cfg}.json files (directly or through `evaluate.py
aggregate`, whose curve lists them): the .inr file of an image is <experiment>/<image>/
compressed_{code}_{cfg}.inr beside the results file, decoded by the `decode_inr` callable the caller
passes (the decoder lives in codec/, which this layer does not import). Codec curves carry their
per-image numbers and options (codecs.codec_sweep), so a point is encoded again to show it.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inrcompress.errors import InrError
from inrcompress.evaluate import bd, codecs
from inrcompress.evaluate.curves import Curve, load_json
from inrcompress.evaluate.plots import plot_curves

PAGE = "index.html"
_RESULTS_TAG = re.compile(r"^results_(?P<tag>.+)\.json$")


@dataclass
class Point:
    """One method at one setting on one image: its rate and quality, and how to get its pixels."""

    method: str
    bpp: float
    psnr: float
    ms_ssim: float | None
    inr_file: Path | None = None  # our curves: the .inr file
    codec: str | None = None  # codec curves: the codec, its options and setting
    options: dict | None = None
    setting: float | None = None


def inr_points(curve: Curve) -> dict[str, list[Point]]:
    """{image: its points} of one of our curves, from the results files the curve was made of."""
    files = curve.extra.get("files") or []
    if not files:
        raise InrError(f"{curve.name} ({curve.source}): not made from results_*.json files; the report needs "
                       "them to find the .inr files")
    points: dict[str, list[Point]] = {}
    for name in files:
        path = Path(name)
        match = _RESULTS_TAG.match(path.name)
        if not match:
            raise InrError(f"{path}: not a results_{{code}}_{{cfg}}.json file")
        for image, row in load_json(path).get("per_image", {}).items():
            points.setdefault(image, []).append(Point(curve.name, float(row["bpp"]), float(row["psnr"]),
                                                      row.get("ms_ssim"),
                                                      inr_file=path.parent / image / f"compressed_{match['tag']}.inr"))
    return points


def codec_points(curve: Curve) -> dict[str, list[Point]]:
    """{image: its points} of a codec curve written by codecs.codec_sweep."""
    codec, per_image = curve.extra.get("codec"), curve.extra.get("per_image")
    if codec not in codecs.CODECS or not per_image:
        return {}
    setting = codecs.CODECS[codec].setting
    values = load_json(curve.source)["results"].get(setting) or []  # the Curve keeps bpp and quality only
    points = {}
    for image, row in per_image.items():
        ms = row.get("ms_ssim") or [None] * len(row["bpp"])
        points[image] = [Point(curve.name, b, p, m, codec=codec, options=curve.extra.get("options"), setting=s)
                         for b, p, m, s in zip(row["bpp"], row["psnr"], ms, values)]
    return points


def nearest(points: Sequence[Point], target_bpp: float) -> Point:
    """The point with the bpp nearest to the target in log-rate (0.1 and 0.2 are as far from 0.14)."""
    return min(points, key=lambda p: abs(np.log(p.bpp / target_bpp)))


def default_target(ours: Sequence[dict[str, list[Point]]]) -> float:
    """The middle point of the first of our curves, as its mean bpp over the images."""
    first = next((points for points in ours if points), None)
    if not first:
        raise InrError("no curve of ours to take the target rate from: give --target_bpp")
    per_point = np.array([sorted(p.bpp for p in pts) for pts in first.values()])
    return float(per_point.mean(axis=0)[len(per_point[0]) // 2])


def busiest_window(image: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the size x size window with the most detail (sum of absolute gradients),
    searched on a grid of size/4 steps: where compression artefacts show."""
    gray = image.astype(np.float64).mean(axis=2)
    h, w = gray.shape
    energy = np.zeros((h, w))
    energy[:-1, :-1] = np.abs(np.diff(gray, axis=0))[:, :-1] + np.abs(np.diff(gray, axis=1))[:-1, :]
    size = min(size, h, w)
    table = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    step = max(1, size // 4)
    best, corner = -1.0, (0, 0)
    for y in range(0, h - size + 1, step):
        for x in range(0, w - size + 1, step):
            total = table[y + size, x + size] - table[y, x + size] - table[y + size, x] + table[y, x]
            if total > best:
                best, corner = total, (y, x)
    return corner


def _png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(buffer, format="PNG")
    return buffer.getvalue()


def _cell(point: Point | None) -> str:
    if point is None:
        return "<td>-</td>"
    return f"<td>{point.bpp:.3f} bpp<br>{point.psnr:.2f} dB</td>"


def _bd_rows(groups) -> list[dict]:
    ours = dict(groups).get("ours", [])
    others = [c for kind, cs in groups if kind != "ours" for c in cs]
    rows = []
    for test in ours:
        for anchor in others:
            for metric in ("psnr", "ms-ssim-db"):
                try:
                    rows.append(bd.bd_compare(anchor, test, metric))
                except InrError:  # a curve without MS-SSIM
                    continue
    return rows


def _fmt(value, spec: str) -> str:
    return format(value, spec) if value is not None else "-"


def write_report(out: str | Path, groups: Sequence[tuple[str, Sequence[Curve]]], originals: Path,
                 downscaling_factor: int, decode_inr: Callable[[Path], np.ndarray], *,
                 target_bpp: float | None = None, crop_images: int = 3, crop_size: int = 160, title: str = "",
                 max_bpp: float | None = None) -> Path:
    """Write the report into the folder `out`; returns the page's path. Image files of `originals`
    are loaded at `downscaling_factor`, as the curves were measured."""
    from inrcompress.config import atomic_write_bytes, atomic_write_text

    by_kind = {kind: list(cs) for kind, cs in groups}
    ours, codec_curves = by_kind.get("ours", []), by_kind.get("codec", [])
    if not ours and not codec_curves:
        raise InrError("report: no curve of ours and no codec curve given")
    our_points = [inr_points(c) for c in ours]
    codec_point_sets = [codec_points(c) for c in codec_curves]
    target = float(target_bpp) if target_bpp else default_target(our_points)
    names = sorted(set().union(*[set(p) for p in our_points + codec_point_sets if p]))
    out = Path(out)
    notes: list[str] = []

    plot_curves(groups, out / "rd.png", metric="both", title=title, max_bpp=max_bpp)
    bd_rows = _bd_rows(groups)
    methods = [(c.name, pts) for c, pts in zip(ours, our_points)] + \
              [(c.name, pts) for c, pts in zip(codec_curves, codec_point_sets)]
    chosen = {name: {method: nearest(pts[name], target) if name in pts else None for method, pts in methods}
              for name in names}

    crops_html = []
    shown = names[:crop_images]
    images = dict(codecs.load_dataset_images(originals, downscaling_factor, shown)) if shown else {}
    for name in shown:
        original = images[name]
        y, x = busiest_window(original, crop_size)
        size = min(crop_size, original.shape[0], original.shape[1])
        tiles = [("original", None, original)]
        for method, point in chosen[name].items():
            if point is None:
                continue
            try:
                if point.inr_file is not None:
                    if not point.inr_file.is_file():
                        raise InrError(f"{point.inr_file} not found")
                    pixels = decode_inr(point.inr_file)
                else:
                    codec = codecs.CODECS[point.codec]
                    reason = codec.missing()
                    if reason:
                        raise InrError(reason)
                    pixels = codecs.measure_setting(codec, original, point.setting, point.options, with_ms_ssim=False,
                                                    keep_decoded=True)["decoded"]
            except InrError as e:
                notes.append(f"{name}, {method}: not shown ({e})")
                continue
            if pixels.shape != original.shape:
                notes.append(f"{name}, {method}: decoded {pixels.shape}, the original is {original.shape}: not shown")
                continue
            tiles.append((method, point, pixels))
        figures = []
        zoom = max(2, 256 // size)  # small crops are enlarged more, so that pixels can be told apart
        for k, (label, point, pixels) in enumerate(tiles):
            file = f"crop_{re.sub(r'[^A-Za-z0-9_-]', '_', name)}_{k}.png"
            atomic_write_bytes(out / file, _png_bytes(np.ascontiguousarray(pixels[y:y + size, x:x + size])))
            caption = html.escape(label) + (f"<br>{point.bpp:.3f} bpp, {point.psnr:.2f} dB" if point else
                                            f"<br>{original.shape[1]}x{original.shape[0]}, crop at ({x}, {y})")
            figures.append(f'<figure><img src="{file}" alt="{html.escape(label)}" width="{zoom * size}" '
                           f'height="{zoom * size}"><figcaption>{caption}</figcaption></figure>')
        crops_html.append(f"<h3>{html.escape(name)}</h3><div class=\"crops\">{''.join(figures)}</div>")

    def bd_table() -> str:
        missing = sorted({f"{r['test']} vs {r['anchor']}: {r['bd_rate_error']}" for r in bd_rows if r.get("bd_rate") is None})
        rows = [r for r in bd_rows if r.get("bd_rate") is not None]
        why = "".join(f"<li>{html.escape(m)}</li>" for m in missing)
        if not rows:
            return ("<p>No BD-rate: it needs one of our curves and a codec or anchor curve that overlap, with at least "
                    f"2 points each.</p><ul>{why}</ul>")
        lines = ["<table><tr><th>ours (test)</th><th>anchor</th><th>metric</th><th>BD-rate</th><th>BD-quality</th>"
                 "<th>over</th></tr>"]
        for r in rows:
            rate = f"{r['bd_rate']:+.1f} %"
            lo, hi = r["quality_overlap"]
            lines.append(f"<tr><td>{html.escape(r['test'])}</td><td>{html.escape(r['anchor'])}</td><td>{r['metric']}</td>"
                         f"<td>{rate}</td><td>{_fmt(r.get('bd_quality'), '+.3f')} dB</td><td>{lo:.2f}..{hi:.2f} dB</td></tr>")
        return "\n".join(lines) + "</table>" + (f"<p>Pairs without a BD-rate:</p><ul>{why}</ul>" if missing else "")

    def per_image_table() -> str:
        head = "".join(f"<th>{html.escape(method)}</th>" for method, _ in methods)
        rows = "".join(f"<tr><th>{html.escape(name)}</th>{''.join(_cell(chosen[name][m]) for m, _ in methods)}</tr>"
                       for name in names)
        return f"<table id=\"per-image\"><tr><th>image</th>{head}</tr>{rows}</table>"

    notes_html = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title or 'RD report')}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }}
td, th {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
.crops {{ display: flex; flex-wrap: wrap; gap: 0.8em; }}
figure {{ margin: 0; font-size: 0.8em; text-align: center; }}
figure img {{ image-rendering: pixelated; border: 1px solid #888; display: block; }}
</style></head><body>
<h1>{html.escape(title or 'Rate-distortion report')}</h1>
<p>bpp = 8 x bytes of the file / pixels; PSNR (RGB) and MS-SSIM on the decoded 8-bit images, averaged per image.
Each method is shown at its point nearest to <b>{target:.3f} bpp</b> (in log-rate).</p>
<h2>Rate-distortion</h2>
<img id="rd" src="rd.png" alt="RD plots" style="max-width: 100%">
<h2>BD-rate (cubic Bjontegaard; negative: ours needs less rate)</h2>
{bd_table()}
<h2>Per image, nearest to {target:.3f} bpp</h2>
{per_image_table()}
<h2>Decoded crops (enlarged without smoothing)</h2>
{''.join(crops_html) or '<p>No image shown (crop_images 0).</p>'}
{f'<h2>Notes</h2><ul>{notes_html}</ul>' if notes else ''}
<p id="load-status"></p>
<script>
// Says on the page whether every picture loaded (a browser test reads data-loaded / data-broken).
window.addEventListener("load", function () {{
  var ok = 0, bad = 0;
  for (var i = 0; i < document.images.length; i++) {{
    if (document.images[i].complete && document.images[i].naturalWidth > 0) ok++; else bad++;
  }}
  var status = document.getElementById("load-status");
  status.dataset.loaded = ok;
  status.dataset.broken = bad;
  status.textContent = bad ? bad + " picture(s) did not load" : "";
}});
</script>
</body></html>
"""
    path = out / PAGE
    atomic_write_text(path, page)
    return path
