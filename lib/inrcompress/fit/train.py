"""ONE fitting loop for any coordinate signal (image pixels or SDF samples): coordinates -> values.

loss = MSE(prediction, values) + l1_reg * sum |theta - theta_ref|   (theta_ref = 0, or a MAML init)
Adam; ReduceLROnPlateau(factor 0.5, patience, threshold 1e-4 rel) stepped every step on the total
loss, after an optional linear warm-up; early stop; the best state (lowest epoch loss) is restored at
the end; checkpoints are written atomically and an interrupted run resumes from the last one.

Speed (benchmarks/fit_speed.py): the encoding of a fixed set of coordinates is computed once, and a
step runs forward+backward over row chunks (gradients accumulate), which keeps the activations in the
CPU cache; torch.compile fuses each chunk's sine layers. Both are exact up to float summation order.
"""

from __future__ import annotations

import copy
import io
import math
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from inrcompress.config import TrainConfig, atomic_write_bytes, atomic_write_text
from inrcompress.nn import mlp_forward

CHECKPOINT_DIR = "checkpoints"
RESUME_FILE = "model_current_.pth"
FINAL_FILE = "model_final.pth"
BEST_FILE = "model_best_.pth"
DEFAULT_CPU_CHUNK_ROWS = 8192
# Below this many points a step is too cheap for compilation (seconds, once) to pay off.
COMPILE_MIN_POINTS = 65536


@dataclass
class FitResult:
    """What happened during a fit. losses: total loss per epoch (data + L1)."""

    best_loss: float
    best_epoch: int
    epochs_run: int
    diverged: bool = False
    stopped_early: bool = False
    resumed_from: int | None = None
    losses: list[float] = field(default_factory=list)


def torch_save_atomic(obj, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, map_location="cpu"):
    return torch.load(path, map_location=map_location, weights_only=False)


def plateau_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig):
    """The paper's schedule: halve the learning rate after `patience` steps without a 1e-4 relative gain."""
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=0.5, patience=cfg.patience, threshold=1e-4, threshold_mode="rel",
        cooldown=0, min_lr=0, eps=1e-8)


def write_final_checkpoints(ckpt_dir: Path, best_state: dict, losses: list[float], resume_file: str) -> None:
    """model_best_.pth, the loss history, then model_final.pth (the "finished" marker, written last);
    the resume point is removed."""
    torch_save_atomic(best_state, ckpt_dir / BEST_FILE)
    atomic_write_text(ckpt_dir / "train_losses_final.txt", "\n".join(f"{v:.10e}" for v in losses) + "\n")
    torch_save_atomic(best_state, ckpt_dir / FINAL_FILE)
    (ckpt_dir / resume_file).unlink(missing_ok=True)


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _compiler_available() -> bool:
    return shutil.which("gcc") is not None or shutil.which("cc") is not None or shutil.which("clang") is not None


_compiled_mlp = None


def compiled_mlp_forward():
    """One compiled mlp_forward for the process, shared by every model. The first shape is compiled
    static; a second row count (another image size, a last partial chunk) recompiles once with a
    dynamic row count. (dynamic=False compiled every new shape and, after torch's limit of 8,
    silently ran the rest eagerly: 2x slower.)"""
    global _compiled_mlp
    if _compiled_mlp is None:
        _compiled_mlp = torch.compile(mlp_forward, dynamic=None)
    return _compiled_mlp


class _ChunkedStep:
    """Computes sum of squared errors over a batch in row chunks, backpropagating each chunk."""

    def __init__(self, model: nn.Module, chunk_rows: int | None, use_compile: bool, amp: bool):
        self.model = model
        self.chunk_rows = chunk_rows
        self.amp = amp
        if use_compile:
            forward = compiled_mlp_forward()
            activation = model.cfg.activation
            self.head = lambda x: forward(x, [layer.weight for layer in model.layers],
                                          [layer.bias for layer in model.layers], activation)
        else:
            self.head = model.head

    def __call__(self, features: torch.Tensor, targets: torch.Tensor, denominator: int, scaler) -> torch.Tensor:
        n = features.shape[0]
        chunk = n if not self.chunk_rows else self.chunk_rows
        total = torch.zeros((), device=features.device)
        for start in range(0, n, chunk):
            x = features[start:start + chunk]
            with torch.autocast("cuda", dtype=torch.float16, enabled=self.amp):
                pred = self.head(x)
            part = ((pred.float() - targets[start:start + chunk]) ** 2).sum() / denominator
            (scaler.scale(part) if scaler is not None else part).backward()
            total += part.detach()
        return total


def _l1_term(model: nn.Module, reference: dict[str, torch.Tensor] | None) -> torch.Tensor:
    terms = []
    for name, p in model.named_parameters():
        terms.append((p - reference[name]).abs().sum() if reference is not None else p.abs().sum())
    return torch.stack(terms).sum()


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
) -> FitResult:
    """Fit `model` (an INR: .encode(coords), .head(features)) to values at coords, in place.

    coords: (N, d) in [-1, 1]; values: (N, C). Both on the model's device.
    run_dir: where checkpoints/ and summaries/ go (None: nothing is written, nothing resumed).
    reference_params: theta_ref of the L1 term (a MAML init); None means the L1 acts on theta.
    on_summary(writer, step, model): called every cfg.steps_til_summary steps (images, metrics).
    chunk_rows: rows per forward/backward chunk; -1 picks (CPU: 8192, CUDA: all), None = all.
    step_hook(step): called after each optimizer step (tests use it to interrupt a run).
    On return the model holds the best state. A non-finite loss restores the best state and returns
    with diverged=True.
    """
    device = next(model.parameters()).device
    if chunk_rows == -1:
        chunk_rows = DEFAULT_CPU_CHUNK_ROWS if device.type == "cpu" else None
    use_compile = cfg.compile
    if use_compile and device.type == "cpu" and not _compiler_available():
        warnings.warn("no C compiler found: torch.compile is off, the fit runs eagerly")
        use_compile = False
    amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if amp else None
    runner = _ChunkedStep(model, chunk_rows, use_compile, amp)

    with torch.no_grad():
        features = model.encode(coords)
    n_points, n_channels = values.shape
    batch_size = cfg.batch_size if cfg.batch_size and cfg.batch_size < n_points else n_points
    steps_per_epoch = math.ceil(n_points / batch_size)

    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scheduler = plateau_scheduler(optimizer, cfg)

    state = {"epoch": 0, "step": 0, "best_loss": math.inf, "best_epoch": -1, "losses": [],
             "best_state": copy.deepcopy(model.state_dict())}
    ckpt_dir = run_dir / CHECKPOINT_DIR if run_dir is not None else None
    resumed_from = None
    if ckpt_dir is not None and (ckpt_dir / RESUME_FILE).is_file():
        saved = load_checkpoint(ckpt_dir / RESUME_FILE, map_location=device)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        if scaler is not None and saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
        state = saved["state"]
        resumed_from = state["epoch"]

    def save_resume_point():
        if ckpt_dir is None:
            return
        torch_save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                           "scheduler": scheduler.state_dict(),
                           "scaler": scaler.state_dict() if scaler is not None else None,
                           "state": state}, ckpt_dir / RESUME_FILE)

    writer = None
    if run_dir is not None:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(run_dir / "summaries"), purge_step=state["step"] or None)

    progress = None
    if show_progress:
        from tqdm.auto import tqdm
        progress = tqdm(total=cfg.epochs, initial=state["epoch"], desc=progress_desc, unit="epoch",
                        dynamic_ncols=True, leave=False, mininterval=0.5)

    shuffle = torch.Generator(device="cpu")
    diverged = stopped_early = False
    try:
        while state["epoch"] < cfg.epochs:
            epoch = state["epoch"]
            if steps_per_epoch > 1:
                order = torch.randperm(n_points, generator=shuffle.manual_seed(cfg.seed * 100003 + epoch))
                order = order.to(device)
            epoch_loss = 0.0
            for b in range(steps_per_epoch):
                state["step"] += 1
                step = state["step"]
                if cfg.warmup and step <= cfg.warmup:
                    for group in optimizer.param_groups:
                        group["lr"] = step * cfg.lr / cfg.warmup
                if steps_per_epoch > 1:
                    idx = order[b * batch_size:(b + 1) * batch_size]
                    x, y = features[idx], values[idx]
                else:
                    x, y = features, values
                optimizer.zero_grad(set_to_none=True)
                data_loss = runner(x, y, x.shape[0] * n_channels, scaler)
                l1 = None
                if cfg.l1_reg > 0:
                    l1 = cfg.l1_reg * _l1_term(model, reference_params)
                    (scaler.scale(l1) if scaler is not None else l1).backward()
                total = data_loss + (l1.detach() if l1 is not None else 0.0)
                total_value = float(total)
                if not math.isfinite(total_value):
                    diverged = True
                    break
                if steps_per_epoch == 1 and total_value < state["best_loss"]:
                    # The loss belongs to the parameters before this update: keep those.
                    snapshot = {k: v.detach().clone() for k, v in model.state_dict().items()}
                if scaler is not None:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                if not (cfg.warmup and step <= cfg.warmup):
                    scheduler.step(total_value)
                epoch_loss += total_value
                if writer is not None:
                    writer.add_scalar(loss_name, float(data_loss), step)
                    if l1 is not None:
                        writer.add_scalar("l1_loss", float(l1.detach()), step)
                    writer.add_scalar("total_train_loss", total_value, step)
                if on_summary is not None and writer is not None and step % cfg.steps_til_summary == 0:
                    on_summary(writer, step, model)
                if progress is not None and (step % 25 == 0 or step == 1):
                    mse01 = float(data_loss) / 4.0  # values in [-1, 1] -> MSE on a [0, 1] scale
                    psnr = 10 * math.log10(1.0 / mse01) if mse01 > 0 else float("inf")
                    progress.set_postfix(loss=f"{total_value:.3g}", psnr=f"{psnr:.2f}",
                                         lr=f"{optimizer.param_groups[0]['lr']:.2g}", refresh=False)
                if step_hook is not None:
                    step_hook(step)
            if diverged:
                break
            state["losses"].append(epoch_loss)
            if epoch_loss < state["best_loss"]:
                state["best_loss"] = epoch_loss
                state["best_epoch"] = epoch
                # Several steps per epoch: the loss spans the epoch; keep its final parameters.
                state["best_state"] = snapshot if steps_per_epoch == 1 else {
                    k: v.detach().clone() for k, v in model.state_dict().items()}
            state["epoch"] = epoch + 1
            if progress is not None:
                progress.update(1)
            if ckpt_dir is not None and state["epoch"] % cfg.epochs_til_ckpt == 0 and state["epoch"] < cfg.epochs:
                torch_save_atomic(model.state_dict(), ckpt_dir / f"model_epoch_{state['epoch']:04d}.pth")
                save_resume_point()
            if epoch - state["best_epoch"] > cfg.early_stop_epochs:
                stopped_early = True
                break
    finally:
        if progress is not None:
            progress.close()
        if writer is not None:
            writer.close()

    if diverged:
        warnings.warn(f"non-finite loss at step {state['step']}: restored the best state "
                      f"(epoch {state['best_epoch']}) and stopped")
    model.load_state_dict(state["best_state"])
    if ckpt_dir is not None:
        write_final_checkpoints(ckpt_dir, model.state_dict(), state["losses"], RESUME_FILE)
    return FitResult(best_loss=float(state["best_loss"]), best_epoch=int(state["best_epoch"]),
                     epochs_run=int(state["epoch"]), diverged=diverged, stopped_early=stopped_early,
                     resumed_from=resumed_from, losses=list(np.asarray(state["losses"], dtype=float)))
