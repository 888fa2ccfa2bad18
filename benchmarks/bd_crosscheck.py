"""Our BD-rate / BD-PSNR (evaluate/bd.py) against the `bjontegaard` package, cubic and pchip, on the
published curves of ../shared/anchors: every curve against CompressAI's BPG 4:4:4 and VTM.

    python benchmarks/bd_crosscheck.py            # prints the largest differences and a table

Which interpolation our tables use: cubic (Bjontegaard's polynomial fit); the table shows how far
pchip moves each number.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from inrcompress.errors import InrError
from inrcompress.evaluate import bd, curves

ANCHORS = Path(__file__).resolve().parents[2] / "shared" / "anchors"
REFERENCES = ("compressai_bpg_444_x265_ycbcr_kodak", "compressai_vtm_kodak")


def main() -> int:
    import bjontegaard

    files = curves.expand_paths([str(ANCHORS)])
    largest = {"rate": 0.0, "psnr": 0.0}
    rows, skipped = [], 0
    for reference in REFERENCES:
        anchor = curves.load_curve(ANCHORS / f"{reference}.json")
        for path in files:
            test = curves.load_curve(path)
            if test.extra.get("dataset") not in (None, "kodak") or path.stem == reference:
                continue
            row = {"test": path.stem, "anchor": reference}
            for method in bd.INTERPOLATIONS:
                try:
                    ours_rate = bd.bd_rate(anchor.bpp, anchor.psnr, test.bpp, test.psnr, method)
                    ours_psnr = bd.bd_psnr(anchor.bpp, anchor.psnr, test.bpp, test.psnr, method)
                except InrError:
                    row[method] = None
                    continue
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    theirs_rate = bjontegaard.bd_rate(anchor.bpp, anchor.psnr, test.bpp, test.psnr, method=method,
                                                      require_matching_points=False, min_overlap=0)
                    theirs_psnr = bjontegaard.bd_psnr(anchor.bpp, anchor.psnr, test.bpp, test.psnr, method=method,
                                                      require_matching_points=False, min_overlap=0)
                largest["rate"] = max(largest["rate"], abs(ours_rate - theirs_rate))
                largest["psnr"] = max(largest["psnr"], abs(ours_psnr - theirs_psnr))
                row[method] = (ours_rate, ours_psnr)
            if row.get("cubic") and row.get("pchip"):
                rows.append(row)
            else:
                skipped += 1
    print(f"{len(rows)} pairs compared with both methods ({skipped} without an overlap or with a non-monotonic curve); "
          f"largest |ours - bjontegaard|: BD-rate {largest['rate']:.2e} percentage points, BD-PSNR "
          f"{largest['psnr']:.2e} dB")
    print("\n| test curve | anchor | BD-rate cubic | BD-rate pchip | pchip - cubic |")
    print("|---|---|---|---|---|")
    for row in sorted(rows, key=lambda r: abs(r["pchip"][0] - r["cubic"][0]), reverse=True)[:12]:
        print(f"| {row['test']} | {row['anchor'].replace('compressai_', 'CAI ')} | {row['cubic'][0]:+.1f} % | "
              f"{row['pchip'][0]:+.1f} % | {row['pchip'][0] - row['cubic'][0]:+.1f} |")
    diffs = sorted(abs(r["pchip"][0] - r["cubic"][0]) for r in rows)
    print(f"\n|pchip - cubic| over the {len(diffs)} pairs: median {diffs[len(diffs) // 2]:.2f}, "
          f"90th percentile {diffs[int(0.9 * len(diffs))]:.2f}, max {diffs[-1]:.2f} percentage points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
