"""Bjontegaard metrics: BD-rate and BD-PSNR between two rate-distortion curves.

For each curve, log10(bpp) is interpolated as a function of quality (BD-rate), or quality as a
function of log10(bpp) (BD-PSNR); the difference of the two integrals over the range both curves
cover, divided by its width, is the mean log-rate (or quality) difference. BD-rate = 10^difference
- 1, in percent: negative means the test curve needs less rate than the anchor for the same quality.

Two interpolations (INTERPOLATIONS):
- "cubic" (the default, what every table of this project uses): Bjontegaard's classic method
  (VCEG-M33), one least-squares polynomial of degree min(3, points - 1) per curve.
- "pchip": a piecewise cubic Hermite interpolant through the points (VCEG-AL22 / JVET's CTC
  spreadsheets), which follows curves with many points or a bend more closely. It needs the
  interpolated variable strictly increasing along the curve.
Both equal the `bjontegaard` package's methods of the same names (tests/test_evaluate.py checks
it where that package is installed).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from inrcompress.errors import InrError
from inrcompress.evaluate.curves import Curve

INTERPOLATIONS = ("cubic", "pchip")
DEFAULT_INTERPOLATION = "cubic"


def _clean(rate: Sequence[float], quality: Sequence[float], what: str) -> tuple[np.ndarray, np.ndarray]:
    rate = np.asarray(rate, dtype=float)
    quality = np.asarray(quality, dtype=float)
    keep = np.isfinite(rate) & np.isfinite(quality) & (rate > 0)
    rate, quality = rate[keep], quality[keep]
    if len(rate) < 2 or len(np.unique(quality)) < 2 or len(np.unique(rate)) < 2:
        raise InrError(f"{what}: a BD metric needs at least 2 distinct points, got {len(rate)}")
    return rate, quality


def _integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float, interpolation: str, what: str) -> float:
    """Integral over [lo, hi] of y(x) interpolated through the points."""
    if interpolation == "cubic":
        degree = min(3, len(np.unique(x)) - 1)
        integral = np.polyint(np.polyfit(x, y, degree))
        return float(np.polyval(integral, hi) - np.polyval(integral, lo))
    if interpolation == "pchip":
        from scipy.interpolate import PchipInterpolator

        order = np.argsort(x, kind="stable")
        x, y = x[order], y[order]
        if np.any(np.diff(x) <= 0):
            raise InrError(f"{what}: pchip needs a strictly monotonic curve (equal or reversed points); use cubic")
        return float(PchipInterpolator(x, y).integrate(lo, hi))
    raise InrError(f"unknown BD interpolation {interpolation!r} ({', '.join(INTERPOLATIONS)})")


def bd_rate(anchor_rate: Sequence[float], anchor_quality: Sequence[float], test_rate: Sequence[float],
            test_quality: Sequence[float], interpolation: str = DEFAULT_INTERPOLATION) -> float:
    """Bjontegaard delta rate of test against anchor in percent (negative: test needs less rate)."""
    ar, aq = _clean(anchor_rate, anchor_quality, "anchor")
    tr, tq = _clean(test_rate, test_quality, "test")
    lo, hi = max(aq.min(), tq.min()), min(aq.max(), tq.max())
    if hi <= lo:
        raise InrError(f"the curves do not overlap in quality (anchor {aq.min():.2f}..{aq.max():.2f}, "
                       f"test {tq.min():.2f}..{tq.max():.2f})")
    diff = (_integral(tq, np.log10(tr), lo, hi, interpolation, "test")
            - _integral(aq, np.log10(ar), lo, hi, interpolation, "anchor")) / (hi - lo)
    return float((10.0 ** diff - 1.0) * 100.0)


def bd_psnr(anchor_rate: Sequence[float], anchor_quality: Sequence[float], test_rate: Sequence[float],
            test_quality: Sequence[float], interpolation: str = DEFAULT_INTERPOLATION) -> float:
    """Bjontegaard delta quality (dB for PSNR) of test against anchor (positive: test is better)."""
    ar, aq = _clean(anchor_rate, anchor_quality, "anchor")
    tr, tq = _clean(test_rate, test_quality, "test")
    la, lt = np.log10(ar), np.log10(tr)
    lo, hi = max(la.min(), lt.min()), min(la.max(), lt.max())
    if hi <= lo:
        raise InrError(f"the curves do not overlap in rate (anchor {ar.min():.3f}..{ar.max():.3f} bpp, "
                       f"test {tr.min():.3f}..{tr.max():.3f} bpp)")
    return float((_integral(lt, tq, lo, hi, interpolation, "test")
                  - _integral(la, aq, lo, hi, interpolation, "anchor")) / (hi - lo))


def bd_compare(anchor: Curve, test: Curve, metric: str = "psnr", interpolation: str = DEFAULT_INTERPOLATION) -> dict:
    """BD-rate and BD-quality of test vs anchor, with the overlapping ranges; a pair that has no
    BD value keeps the reason in bd_rate_error / bd_quality_error."""
    aq, tq = anchor.metric(metric), test.metric(metric)
    out = {"anchor": anchor.name, "test": test.name, "metric": metric, "interpolation": interpolation}
    for key, function in (("bd_rate", bd_rate), ("bd_quality", bd_psnr)):
        try:
            out[key] = function(anchor.bpp, aq, test.bpp, tq, interpolation)
        except InrError as e:
            out[key], out[f"{key}_error"] = None, str(e)
    finite_a, finite_t = np.isfinite(aq), np.isfinite(tq)
    out["quality_overlap"] = [float(max(aq[finite_a].min(), tq[finite_t].min())),
                              float(min(aq[finite_a].max(), tq[finite_t].max()))]
    out["bpp_overlap"] = [float(max(min(anchor.bpp), min(test.bpp))), float(min(max(anchor.bpp), max(test.bpp)))]
    return out


def describe(interpolation: str = DEFAULT_INTERPOLATION) -> str:
    """One line saying how the BD values were computed (goes into the JSON of a BD table)."""
    how = {"cubic": "cubic least-squares fit (degree min(3, n-1))",
           "pchip": "piecewise cubic Hermite interpolation (pchip)"}[interpolation]
    return f"Bjontegaard, {how} of log10(bpp) vs quality over the common quality range"


def format_bd(row: dict) -> str:
    """One line of a BD table: 'test vs anchor: BD-rate +x%, BD-psnr +y dB (over lo..hi dB)'."""
    unit = "dB" if row["metric"] in ("psnr", "ms-ssim-db") else ""
    head = f"{row['test']} vs {row['anchor']}: "
    if row.get("bd_rate") is None:
        return head + f"no BD-rate ({row.get('bd_rate_error', 'no overlap')})"
    quality = f"{row['bd_quality']:+.3f} {unit}".rstrip() if row.get("bd_quality") is not None else "n/a"
    lo, hi = row["quality_overlap"]
    return (head + f"BD-rate {row['bd_rate']:+.1f}%, BD-{row['metric']} {quality} "
            f"(over {lo:.2f}..{hi:.2f} {unit or row['metric']})")
