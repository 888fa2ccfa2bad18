"""Fitting N images of one size and architecture at once, as one batched computation
(steps.BatchedImagesStep), with everything `train.fit` does kept per image by the fit engine: its
own Adam state and learning rate, ReduceLROnPlateau, early stop, best state, NaN handling,
checkpoints (the one resume format: a group resumes from points written one by one and the reverse),
TensorBoard log and results. For equal seeds the result equals fitting the images one by one with
`train.fit`, up to float rounding (tests/test_batched.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Callable

import torch

from inrcompress.config import TrainConfig
from inrcompress.fit.engine import FitResult, RunFiles, run_fit
from inrcompress.fit.losses import ParameterTerm, loss_for
from inrcompress.fit.steps import BatchedImagesStep
from inrcompress.nn import INR


def fit_many(
    models: list[INR],
    coords: torch.Tensor,
    values: list[torch.Tensor],
    cfg: TrainConfig,
    run_dirs: list[Path | None],
    *,
    reference_params: list[dict[str, torch.Tensor]] | None = None,
    loss_name: str = "data_loss",
    on_summary: list[Callable] | None = None,
    progress_desc: str | None = None,
    chunk_rows: int | None = -1,
    step_hook: Callable[[int], None] | None = None,
    show_progress: bool = True,
    grid_shape: tuple[int, int] | None = None,
    terms: Sequence[ParameterTerm] = (),
) -> list[FitResult]:
    """Fit models[n] to values[n] (all at coords), in place; the batched twin of train.fit.

    models: INRs of one architecture on one device. coords: (P, d) in [-1, 1]; values[n]: (P, C).
    grid_shape: (h, w) when coords is a row-major h x w grid (an image's pixels); with an encoding
    whose features each depend on one coordinate, the first layer then runs per grid row and
    column instead of per point (nn.separable_grid_features; the same sums, rounded differently).
    run_dirs[n]: image n's folder (checkpoints/, summaries/) or None. reference_params[n]: theta_0
    of image n's L1 term. terms: more parameter terms of the loss (loss_for's extra_terms). Returns
    one FitResult per image; each model ends with its best state.
    """
    if not models:
        return []
    step = BatchedImagesStep(models, coords, values, cfg, loss_for(cfg.l1_reg, reference_params, loss_name, terms),
                             chunk_rows, grid_shape)
    return run_fit(step, cfg, [RunFiles(d) if d is not None else None for d in run_dirs],
                   names=[f"image {n}" for n in range(len(models))], on_summary=on_summary,
                   progress_desc=progress_desc, step_hook=step_hook, show_progress=show_progress)
