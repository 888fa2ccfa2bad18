"""RD plots (PNG) of curves grouped by kind: ours (solid), codecs (dashed), published anchors (dotted)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from inrcompress.errors import InrError
from inrcompress.evaluate.curves import Curve

STYLES = {"ours": {"linestyle": "-", "marker": "o", "linewidth": 2.0, "markersize": 5},
          "codec": {"linestyle": "--", "marker": "s", "linewidth": 1.4, "markersize": 3},
          "anchor": {"linestyle": ":", "marker": "^", "linewidth": 1.4, "markersize": 3}}


def plot_curves(groups: Sequence[tuple[str, Sequence[Curve]]], out: str | Path, *, metric: str = "psnr",
                title: str = "", max_bpp: float | None = None) -> Path:
    """RD plot (PNG) of curves grouped by kind (ours, codec, anchor); metric psnr, ms-ssim-db or both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ["psnr", "ms-ssim-db"] if metric == "both" else [metric]
    figure, axes = plt.subplots(1, len(metrics), figsize=(7.5 * len(metrics), 5.5), squeeze=False)
    labels = {"psnr": "PSNR (RGB) [dB]", "ms-ssim-db": "MS-SSIM [dB] = -10 log10(1 - MS-SSIM)",
              "ms-ssim": "MS-SSIM"}
    for axis, name in zip(axes[0], metrics):
        for kind, curves in groups:
            for curve in curves:
                try:
                    values = curve.metric(name)
                except InrError:
                    continue
                bpp = np.asarray(curve.bpp)
                keep = np.isfinite(values) & ((bpp <= max_bpp) if max_bpp else True)
                if not keep.any():
                    continue
                axis.plot(bpp[keep], values[keep], label=curve.name, **STYLES.get(kind, STYLES["anchor"]))
        axis.set_xlabel("bits per pixel")
        axis.set_ylabel(labels[name])
        axis.grid(True, alpha=0.3)
        if max_bpp:
            axis.set_xlim(0, max_bpp)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7, loc="lower right")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return save_figure(figure, out)


def save_figure(figure, out: str | Path, dpi: int = 120) -> Path:
    """Write a matplotlib figure as PNG, atomically, and close it."""
    import io

    import matplotlib.pyplot as plt

    from inrcompress.config import atomic_write_bytes

    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=dpi, format="png")
    plt.close(figure)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, buffer.getvalue())
    return out

