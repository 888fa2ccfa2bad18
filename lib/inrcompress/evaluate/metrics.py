"""Image quality metrics on images in [0, 1] of shape (H, W, C).

PSNR is computed directly in numpy (10 log10(1 / MSE)); SSIM is scikit-image's (Gaussian-free,
7x7 window, data_range 1, as the paper's code); MS-SSIM is pytorch-msssim's. MS-SSIM's five scales
need a short side above 160 px; smaller images use as many scales as fit (weights renormalised) and
the number used is reported as ms_ssim_scales. An image too small for a metric (SSIM: a side under
7 px; MS-SSIM: a side of 10 px or less) gets None for it, written as null in JSON and shown as n/a,
and image_metrics says why under "note" (never NaN, which would poison every mean it enters).
"""

from __future__ import annotations

import math

import numpy as np
import torch

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MS_SSIM_WINDOW = 11
SSIM_WINDOW = 7  # scikit-image's default win_size, the paper's


def mse(pred: np.ndarray, target: np.ndarray) -> float:
    diff = pred.astype(np.float64) - target.astype(np.float64)
    return float(np.mean(diff * diff))


def psnr_from_mse(value: float) -> float:
    return 10.0 * math.log10(1.0 / value) if value > 0 else float("inf")


def psnr(pred: np.ndarray, target: np.ndarray) -> float:
    return psnr_from_mse(mse(pred, target))


def ssim(pred: np.ndarray, target: np.ndarray) -> float | None:
    """SSIM in [-1, 1]; None for an image with a side under SSIM_WINDOW pixels."""
    from skimage.metrics import structural_similarity

    if min(pred.shape[:2]) < SSIM_WINDOW:
        return None
    return float(structural_similarity(pred.astype(np.float64), target.astype(np.float64),
                                       channel_axis=2, data_range=1.0))


def ms_ssim_scales(height: int, width: int) -> int:
    """How many MS-SSIM scales an image supports (5 is the standard; 0: none)."""
    side = min(height, width)
    scales = 0
    for s in range(1, len(MS_SSIM_WEIGHTS) + 1):
        if side > (MS_SSIM_WINDOW - 1) * 2 ** (s - 1):
            scales = s
    return scales


def ms_ssim(pred: np.ndarray, target: np.ndarray) -> tuple[float | None, int]:
    """(MS-SSIM, number of scales used); (None, 0) when the image is too small for even one scale."""
    from pytorch_msssim import ms_ssim as _ms_ssim
    from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

    scales = ms_ssim_scales(*pred.shape[:2])
    if scales == 0:
        return None, 0
    # float32: 7x faster than float64 on a Kodak image, and far more precise than the 4 digits reported.
    a = torch.from_numpy(np.ascontiguousarray(pred, dtype=np.float32)).permute(2, 0, 1)[None]
    b = torch.from_numpy(np.ascontiguousarray(target, dtype=np.float32)).permute(2, 0, 1)[None]
    with torch.no_grad():
        if scales == len(MS_SSIM_WEIGHTS):
            return float(_ms_ssim(a, b, data_range=1.0, win_size=MS_SSIM_WINDOW)), scales
        # pytorch-msssim refuses fewer than five scales; the same computation with fewer levels.
        weights = torch.tensor(MS_SSIM_WEIGHTS[:scales], dtype=torch.float32)
        weights = weights / weights.sum()
        win = _fspecial_gauss_1d(MS_SSIM_WINDOW, 1.5).repeat([a.shape[1], 1, 1, 1])
        factors = []
        for level in range(scales):
            ssim_per_channel, cs = _ssim(a, b, win=win, data_range=1.0, size_average=False,
                                         K=(0.01, 0.03))
            if level < scales - 1:
                factors.append(torch.relu(cs))
                padding = [s % 2 for s in a.shape[2:]]
                a = torch.nn.functional.avg_pool2d(a, kernel_size=2, padding=padding)
                b = torch.nn.functional.avg_pool2d(b, kernel_size=2, padding=padding)
        stacked = torch.stack(factors + [torch.relu(ssim_per_channel)], dim=0)
        value = torch.prod(stacked ** weights.view(-1, 1, 1), dim=0).mean()
    return float(value), scales


def too_small_note(height: int, width: int) -> str | None:
    """Why SSIM or MS-SSIM is None for an image of this size (None when both are defined)."""
    missing = [name for name, defined in (("SSIM", min(height, width) >= SSIM_WINDOW),
                                          ("MS-SSIM", ms_ssim_scales(height, width) > 0)) if not defined]
    if not missing:
        return None
    return (f"{' and '.join(missing)} not defined for a {width}x{height} image (SSIM needs a side of at least "
            f"{SSIM_WINDOW} px, MS-SSIM more than {MS_SSIM_WINDOW - 1} px): null")


def image_metrics(pred: np.ndarray, target: np.ndarray) -> dict[str, float | int | str | None]:
    """mse, psnr, ssim, ms_ssim and ms_ssim_scales of pred against target, both in [0, 1]; a metric
    the image is too small for is None, and "note" (only then) says so."""
    m = mse(pred, target)
    msssim, scales = ms_ssim(pred, target)
    result = {"mse": m, "psnr": psnr_from_mse(m), "ssim": ssim(pred, target), "ms_ssim": msssim,
              "ms_ssim_scales": scales}
    note = too_small_note(*pred.shape[:2])
    return {**result, "note": note} if note else result
