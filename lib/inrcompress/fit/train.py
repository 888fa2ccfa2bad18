"""Fitting one coordinate signal (image pixels or SDF samples): coordinates -> values.

loss = MSE(prediction, values) + l1_reg * sum |theta - theta_ref|   (theta_ref = 0, or a MAML init)
Adam; the schedule, early stop, best state, checkpoints and resume are the fit engine's
(fit/engine.py); the step is steps.ChunkedAutogradStep (encoding computed once, forward+backward in
row chunks, optionally compiled).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from inrcompress.config import TrainConfig
from inrcompress.fit.engine import FitResult, RunFiles, run_fit
from inrcompress.fit.losses import ParameterTerm, loss_for
from inrcompress.fit.steps import ChunkedAutogradStep


def fit(
    model: nn.Module,
    coords: torch.Tensor,
    values: torch.Tensor,
    cfg: TrainConfig,
    run_dir: Path | None = None,
    *,
    reference_params: dict[str, torch.Tensor] | None = None,
    loss_name: str = "data_loss",
    on_summary: Callable[[object, int, nn.Module], None] | None = None,
    progress_desc: str | None = None,
    chunk_rows: int | None = -1,
    step_hook: Callable[[int], None] | None = None,
    show_progress: bool = True,
    terms: Sequence[ParameterTerm] = (),
) -> FitResult:
    """Fit `model` (an INR: .encode(coords), .head(features)) to values at coords, in place.

    coords: (N, d) in [-1, 1]; values: (N, C). Both on the model's device.
    run_dir: where checkpoints/ and summaries/ go (None: nothing is written, nothing resumed).
    reference_params: theta_ref of the L1 term (a MAML init); None means the L1 acts on theta.
    on_summary(writer, step, model): called every cfg.steps_til_summary steps (images, metrics).
    chunk_rows: rows per forward/backward chunk; -1 picks (CPU: 8192, CUDA: all), None = all.
    step_hook(step): called after each optimizer step (tests use it to interrupt a run).
    terms: more parameter terms of the loss (fit/losses.py loss_for's extra_terms).
    On return the model holds the best state. A non-finite loss restores the best state and returns
    with diverged=True.
    """
    loss = loss_for(cfg.l1_reg, [reference_params] if reference_params is not None else None, loss_name, terms)
    step = ChunkedAutogradStep(model, coords, values, cfg, loss, chunk_rows)
    return run_fit(step, cfg, [RunFiles(run_dir) if run_dir is not None else None], names=[progress_desc or "fit"],
                   on_summary=[on_summary], progress_desc=progress_desc, step_hook=step_hook,
                   show_progress=show_progress)[0]
