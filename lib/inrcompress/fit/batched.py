"""Fitting N images of one size and architecture at once, as one batched computation.

The N networks are independent and tiny; stacked into (N, out, in) weights they run as batched
matmuls, which keeps a GPU busy and amortises per-step overheads. The step backpropagates by hand
(nn.stacked_mlp_sse_grads: no autograd graph; compiled, forward and backward are one graph) and, on
a pixel grid, runs the first layer per row and column (nn.separable_grid_features). Everything that `train.fit`
does per image is kept per image: its own Adam state and learning rate (the Adam update is written
out with a per-image step size; it is torch.optim.Adam's formula), its own ReduceLROnPlateau, early
stop, best state (the parameters that produced its lowest loss), NaN handling, checkpoints,
TensorBoard log and results. For equal seeds the result equals fitting the images one by one with
`train.fit`, up to float rounding (tests/test_batched.py).

Images are fitted with the whole signal in every step (as `train.fit` does for images); a group
resumes from per-image checkpoints written by this module (model_current_batched.pth).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Callable

import torch

from inrcompress.config import TrainConfig
from inrcompress.nn import INR, separable_grid_features, stacked_mlp_sse_grads
from inrcompress.fit.train import (
    CHECKPOINT_DIR,
    DEFAULT_CPU_CHUNK_ROWS,
    FitResult,
    _compiler_available,
    load_checkpoint,
    plateau_scheduler,
    torch_save_atomic,
    write_final_checkpoints,
)

BATCH_RESUME_FILE = "model_current_batched.pth"
BATCHED_CPU_CHUNK_ROWS = 1024
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8

_compiled_sse_grads = None


def _sse_grads(use_compile: bool):
    """The compiled step: static for its first shape, one dynamic recompile for the next (as
    train.compiled_mlp_forward; chunk and group sizes vary)."""
    global _compiled_sse_grads
    if not use_compile:
        return stacked_mlp_sse_grads
    if _compiled_sse_grads is None:
        _compiled_sse_grads = torch.compile(stacked_mlp_sse_grads, dynamic=None)
    return _compiled_sse_grads


def gradient_block_rows(n_rows: int, target: int = 8192) -> int:
    """The divisor of n_rows nearest to `target` within [target/4, 4*target], or 0 if there is none
    (then the weight gradients are single GEMMs). 393,216 Kodak pixels -> 8192."""
    candidates = [d for d in range(target // 4, 4 * target + 1) if n_rows % d == 0 and d < n_rows]
    return min(candidates, key=lambda d: (abs(d - target), d)) if candidates else 0


class _PerImageSchedule:
    """ReduceLROnPlateau for one image, driven through a one-parameter stand-in optimizer so its
    behaviour is torch's own."""

    def __init__(self, cfg: TrainConfig):
        self.optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
        self.scheduler = plateau_scheduler(self.optimizer, cfg)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        self.optimizer.param_groups[0]["lr"] = value

    def step(self, loss: float) -> None:
        self.scheduler.step(loss)

    def state_dict(self) -> dict:
        return {"lr": self.lr, "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.lr = state["lr"]
        self.scheduler.load_state_dict(state["scheduler"])


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
) -> list[FitResult]:
    """Fit models[n] to values[n] (all at coords), in place; the batched twin of train.fit.

    models: INRs of one architecture on one device. coords: (P, d) in [-1, 1]; values[n]: (P, C).
    grid_shape: (h, w) when coords is a row-major h x w grid (an image's pixels); with an encoding
    whose features each depend on one coordinate, the first layer then runs per grid row and
    column instead of per point (nn.separable_grid_features; the same sums, rounded differently).
    run_dirs[n]: image n's folder (checkpoints/, summaries/) or None. reference_params[n]: theta_0
    of image n's L1 term. Returns one FitResult per image; each model ends with its best state.
    """
    n_models = len(models)
    if n_models == 0:
        return []
    if cfg.batch_size:
        raise ValueError("fit_many fits whole signals; use train.fit for minibatches of points")
    if any(m.cfg != models[0].cfg for m in models):
        raise ValueError("fit_many needs models of one architecture")
    device = next(models[0].parameters()).device
    use_compile = cfg.compile and (device.type != "cpu" or _compiler_available())
    if chunk_rows == -1:  # the fastest sizes measured on the CPU (RESULTS.md, section 2)
        if device.type != "cpu":
            chunk_rows = None
        elif use_compile:
            chunk_rows = BATCHED_CPU_CHUNK_ROWS
        else:  # eager elementwise passes want the activations of all images in cache: 8192 rows in all
            chunk_rows = max(256, DEFAULT_CPU_CHUNK_ROWS // n_models)
    # On a GPU the whole signal goes in one chunk and each weight gradient is summed over row blocks
    # (see stacked_mlp_sse_grads); a CPU reduces over a chunk's few hundred rows in one GEMM.
    split_rows = 0 if device.type == "cpu" else gradient_block_rows(chunk_rows or len(coords))
    sse_grads = _sse_grads(use_compile)
    activation = models[0].cfg.activation
    n_layers = len(models[0].layers)

    with torch.no_grad():
        features = models[0].encode(coords)
    targets = torch.stack(values)  # (N, P, C)
    n_points, n_channels = targets.shape[1], targets.shape[2]
    grid = None
    if grid_shape is not None and grid_shape[0] * grid_shape[1] == n_points:
        grid = separable_grid_features(features, grid_shape)
    params = []  # W0, b0, W1, b1, ... each (N, ...)
    for k in range(n_layers):
        params.append(torch.stack([m.layers[k].weight.detach() for m in models]).clone())
        params.append(torch.stack([m.layers[k].bias.detach() for m in models]).clone())
    names = [f"layers.{k}.{kind}" for k in range(n_layers) for kind in ("weight", "bias")]
    refs = None
    if reference_params is not None:
        refs = [torch.stack([r[name].to(device) for r in reference_params]) for name in names]
    exp_avg = [torch.zeros_like(p) for p in params]
    exp_avg_sq = [torch.zeros_like(p) for p in params]
    schedules = [_PerImageSchedule(cfg) for _ in range(n_models)]
    per_image = [{"best_loss": math.inf, "best_epoch": -1, "losses": [], "done": False, "diverged": False,
                  "stopped_early": False} for _ in range(n_models)]
    best = [p.detach().clone() for p in params]
    epoch = step = 0
    resumed_from = None

    ckpt_dirs = [d / CHECKPOINT_DIR if d is not None else None for d in run_dirs]
    saved = [load_checkpoint(c / BATCH_RESUME_FILE, map_location=device)
             if c is not None and (c / BATCH_RESUME_FILE).is_file() else None for c in ckpt_dirs]
    if any(s is not None for s in saved):
        epochs = {s["epoch"] for s in saved if s is not None}
        if None in saved or len(epochs) != 1:
            raise ValueError("a batched group resumes only when every member saved the same epoch")
        epoch = step = resumed_from = epochs.pop()
        with torch.no_grad():
            for n, s in enumerate(saved):
                for k in range(len(params)):
                    params[k][n] = s["params"][k]
                    exp_avg[k][n] = s["exp_avg"][k]
                    exp_avg_sq[k][n] = s["exp_avg_sq"][k]
                    best[k][n] = s["best"][k]
                schedules[n].load_state_dict(s["schedule"])
                per_image[n] = s["state"]

    def save_resume_points():
        for n, c in enumerate(ckpt_dirs):
            if c is None:
                continue
            torch_save_atomic({"epoch": epoch, "params": [p[n].detach() for p in params],
                               "exp_avg": [a[n] for a in exp_avg], "exp_avg_sq": [a[n] for a in exp_avg_sq],
                               "best": [b[n] for b in best], "schedule": schedules[n].state_dict(),
                               "state": per_image[n]}, c / BATCH_RESUME_FILE)

    def model_of(n: int, source: list[torch.Tensor]) -> INR:
        model = models[n]
        with torch.no_grad():
            for k, layer in enumerate(model.layers):
                layer.weight.copy_(source[2 * k][n])
                layer.bias.copy_(source[2 * k + 1][n])
        return model

    writers = [None] * n_models
    from torch.utils.tensorboard import SummaryWriter
    for n, d in enumerate(run_dirs):
        if d is not None:
            writers[n] = SummaryWriter(str(d / "summaries"), purge_step=step or None)
    progress = None
    if show_progress:
        from tqdm.auto import tqdm
        progress = tqdm(total=cfg.epochs, initial=epoch, desc=progress_desc, unit="epoch", dynamic_ncols=True,
                        leave=False, mininterval=0.5)

    beta1, beta2 = ADAM_BETAS
    chunk = chunk_rows or n_points
    if grid is not None:  # chunks of whole grid rows
        grid_w = grid_shape[1]
        chunk = max(1, chunk // grid_w) * grid_w
    chunks = [(start, min(start + chunk, n_points)) for start in range(0, n_points, chunk)]
    try:
        while epoch < cfg.epochs and not all(s["done"] for s in per_image):
            step += 1
            if cfg.warmup and step <= cfg.warmup:
                for s in schedules:
                    s.lr = step * cfg.lr / cfg.warmup
            grads = [torch.zeros_like(p) for p in params]
            data_loss = torch.zeros(n_models, device=device)
            weights, biases = params[0::2], params[1::2]
            if grid is not None:  # the first layer's column terms, shared by every chunk of this step
                column_part = torch.matmul(grid[1], weights[0].transpose(1, 2))
                column_sums = torch.zeros_like(column_part)
            for start, stop in chunks:
                inputs = ((grid[0][start // grid_w:stop // grid_w], column_part) if grid is not None
                          else features[start:stop])
                part, weight_grads, bias_grads, chunk_column_sums = sse_grads(
                    inputs, weights, biases, activation, targets[:, start:stop], 1.0 / (n_points * n_channels),
                    split_rows)
                for k in range(n_layers):
                    grads[2 * k].add_(weight_grads[k])
                    grads[2 * k + 1].add_(bias_grads[k])
                if grid is not None:
                    column_sums += chunk_column_sums
                data_loss += part
            if grid is not None:
                grads[0] += torch.matmul(column_sums.transpose(1, 2), grid[1])
            l1 = None
            if cfg.l1_reg > 0:
                l1 = torch.zeros(n_models, device=device)
                for k, p in enumerate(params):
                    offset = p - refs[k] if refs is not None else p
                    l1 += cfg.l1_reg * offset.abs().sum(dim=tuple(range(1, p.dim())))
                    grads[k].add_(torch.sign(offset), alpha=cfg.l1_reg)  # what autograd gives for |x|
            total = data_loss + (l1 if l1 is not None else 0.0)
            totals = total.tolist()  # one transfer for every per-image number of this step
            data_values = data_loss.tolist()
            l1_values = l1.tolist() if l1 is not None else None

            active = []
            for n, value in enumerate(totals):
                s = per_image[n]
                if s["done"]:
                    active.append(False)
                    continue
                if not math.isfinite(value):
                    s["done"] = s["diverged"] = True
                    warnings.warn(f"image {n}: non-finite loss at step {step}: restored its best state "
                                  f"(epoch {s['best_epoch']}) and stopped it")
                    active.append(False)
                    continue
                active.append(True)
                if value < s["best_loss"]:
                    with torch.no_grad():
                        for k, p in enumerate(params):
                            best[k][n] = p[n]
            # Adam, with each image's own step size; finished images stand still.
            lrs = torch.tensor([schedules[n].lr if active[n] else 0.0 for n in range(n_models)],
                               device=device, dtype=torch.float32)
            mask = torch.tensor(active, device=device)
            bias1 = 1 - beta1 ** step
            bias2_sqrt = math.sqrt(1 - beta2 ** step)
            with torch.no_grad():
                for p, g, m, v in zip(params, grads, exp_avg, exp_avg_sq):
                    shape = (-1,) + (1,) * (p.dim() - 1)
                    grad = torch.where(mask.view(shape), g, torch.zeros_like(g))
                    m.lerp_(grad, 1 - beta1)
                    v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                    denom = (v.sqrt() / bias2_sqrt).add_(ADAM_EPS)
                    p.sub_((lrs / bias1).view(shape) * m / denom)
            for n, value in enumerate(totals):
                if not active[n]:
                    continue
                s = per_image[n]
                if not (cfg.warmup and step <= cfg.warmup):
                    schedules[n].step(value)
                s["losses"].append(value)
                if value < s["best_loss"]:
                    s["best_loss"], s["best_epoch"] = value, epoch
                if writers[n] is not None:
                    writers[n].add_scalar(loss_name, data_values[n], step)
                    if l1_values is not None:
                        writers[n].add_scalar("l1_loss", l1_values[n], step)
                    writers[n].add_scalar("total_train_loss", value, step)
                if epoch - s["best_epoch"] > cfg.early_stop_epochs:
                    s["done"] = s["stopped_early"] = True
            if on_summary is not None and step % cfg.steps_til_summary == 0:
                for n in range(n_models):
                    if writers[n] is not None and not per_image[n]["done"]:
                        on_summary[n](writers[n], step, model_of(n, params))
            if progress is not None and (step % 25 == 0 or step == 1):
                mean_mse01 = float(data_loss.mean()) / 4.0
                progress.set_postfix(images=n_models, mean_psnr=f"{10 * math.log10(1 / mean_mse01):.2f}"
                                     if mean_mse01 > 0 else "inf", refresh=False)
            if step_hook is not None:
                step_hook(step)
            epoch += 1
            if progress is not None:
                progress.update(1)
            if epoch % cfg.epochs_til_ckpt == 0 and epoch < cfg.epochs:
                for n, c in enumerate(ckpt_dirs):
                    if c is not None:
                        torch_save_atomic(model_of(n, params).state_dict(), c / f"model_epoch_{epoch:04d}.pth")
                save_resume_points()
    finally:
        if progress is not None:
            progress.close()
        for w in writers:
            if w is not None:
                w.close()

    results = []
    for n in range(n_models):
        s = per_image[n]
        model = model_of(n, best)
        if ckpt_dirs[n] is not None:
            write_final_checkpoints(ckpt_dirs[n], model.state_dict(), s["losses"], BATCH_RESUME_FILE)
        results.append(FitResult(best_loss=float(s["best_loss"]), best_epoch=int(s["best_epoch"]),
                                 epochs_run=len(s["losses"]), diverged=s["diverged"],
                                 stopped_early=s["stopped_early"], resumed_from=resumed_from,
                                 losses=list(s["losses"])))
    return results
