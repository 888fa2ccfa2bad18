"""The quantization pipeline of quant.py for N signals of one architecture at once (N >= 1).

quant.quantize_model is this pipeline with N = 1; quantize_models runs the networks of N signals
(same representation, same number of data rows) as one stacked computation: every declared tensor
becomes an (N, ...) stack, the layers are batched matrix products, and everything that is per signal
stays per signal:

- step sizes: choose_step_size on each signal's own residuals (a per-tensor search, as before);
- AdaRound: per-signal rounding variables V (N, out, in), per-signal rows drawn by a torch.Generator
  seeded with that signal's seed (signals with equal seeds and row counts draw the same rows, so
  one draw serves them), Adam elementwise on the stack (the same numbers as one Adam per signal);
- QAT: per-signal residuals, Adam state, quantized MSE, and best state (the lowest MSE of each).

Per signal the result equals quantizing it alone up to float rounding (tests/test_quant_batched.py):
a batched matrix product sums in another order than a single one, and where that moves a value
across a rounding boundary an AdaRound decision or a QAT best state can differ.

Speed (benchmarks/encode_speed.py): AdaRound's gradient is written out (autograd only through the
layer's activation: one small graph instead of the rectified sigmoid, the clamps, the regulariser and
the loss), which cuts its elementwise passes over the rows about threefold; its rows are gathered
with index_select. QAT runs the layer chain on the stack; on a pixel grid whose encoded coordinates
split into a row part and a column part (nn.separable_grid_features: nerf, positional, identity) the
first layer is computed per grid row and column instead of per pixel (the same sums, rounded
differently), which removes the largest matrix product of a step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Callable

import numpy as np
import torch
from torch import nn

from inrcompress.codec.quant import (
    ADAROUND_BATCH_ROWS,
    ADAROUND_LR,
    ADAROUND_MAX_CACHED_ROWS,
    CHUNK_ROWS,
    GAMMA,
    ZETA,
    QuantizedTensors,
    Step,
    _check_bitwidth,
    _declared,
    _flatten_rows,
    _inverse_rectified_sigmoid,
    _nearest,
    _pack,
    _parameter_tensors,
    _progress,
    _reference_tensors,
    _RowSampler,
    beta_schedule,
    rectified_sigmoid,
    integer_range,
    rd_step_sizes,
    scaled_steps,
    step_values,
)
from inrcompress.codec.representations.base import LinearLayer, Representation
from inrcompress.errors import InrError
from inrcompress.nn import separable_grid_features


QAT_CPU_CHUNK_ROWS = 8192
# Noise draws per tensor when measuring its sensitivity for the rate-distortion step allocation.
SENSITIVITY_DRAWS = 2
# At most this many data rows of all signals quantized together (AdaRound caches a few activations of
# every row: 2^21 rows at width 64 are 0.5 GB each); more signals are coded in groups of that size.
MAX_STACKED_ROWS = 1 << 21


def _steps_tensor(steps: Sequence[Step], like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The per-signal steps of one tensor (float32-exact values; ChannelSteps: one per row) shaped
    (N, 1, ...), or (N, rows, 1, ...), to broadcast against the stack `like` (N, ...)."""
    values = np.stack([step_values(s) for s in steps]).astype(np.float32)
    tensor = torch.from_numpy(values).to(like.device).to(dtype)
    return tensor.view(tuple(values.shape) + (1,) * (like.dim() - values.ndim))


def quantize_stacked(x: torch.Tensor, steps: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    """quant.quantize of every signal's slice of x (N, ...) at its step (steps64: (N, 1, ...) float64)."""
    return torch.round(x.detach().to(torch.float64) / steps).clamp_(qmin, qmax).to(torch.int32)


def dequantize_stacked(q: torch.Tensor, steps32: torch.Tensor) -> torch.Tensor:
    """quant.dequantize per signal: q.float() * float32(step), elementwise the same numbers."""
    return q.to(torch.float32) * steps32


def _stacked_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x (N, P, in) or shared (P, in), w (N, out, in), b (N, out) -> x W^T + b, (N, P, out)."""
    if x.dim() == 2:
        x = x.expand(w.shape[0], -1, -1)
    return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))


@torch.no_grad()
def _chunked_stacked_layer(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor,
                           activation: Callable | None) -> torch.Tensor:
    """activation(x W^T + b) over row chunks (bounds the temporaries), (N, P, out)."""
    rows = x.shape[-2]
    out = torch.empty(w.shape[0], rows, w.shape[1], dtype=torch.float32, device=w.device)
    for start in range(0, rows, CHUNK_ROWS):
        part = x[..., start:start + CHUNK_ROWS, :]
        z = _stacked_linear(part, w, b)
        out[:, start:start + CHUNK_ROWS] = z if activation is None else activation(z)
    return out


# --------------------------------------------------------------------------------------------------
# AdaRound


class _Rows:
    """The rows AdaRound draws for N signals, each from its own generator: signals that share a
    generator (equal seeds; the rows are equal in number) draw the same permutations, so one
    _RowSampler serves them. `draw()` returns None (all rows), a shared index (B,) or per-signal
    indices (N, B)."""

    def __init__(self, generators: list[torch.Generator], rows: int, batch: int, device: torch.device):
        distinct = list({id(g): g for g in generators}.values())
        self.samplers = [_RowSampler(rows, batch, g, device) for g in distinct]
        self.index_of = [[id(d) for d in distinct].index(id(g)) for g in generators]

    def draw(self) -> torch.Tensor | None:
        drawn = [s.next() for s in self.samplers]
        if drawn[0] is None:
            return None
        if len(drawn) == 1:
            return drawn[0]
        return torch.stack([drawn[k] for k in self.index_of])


def _gather(x: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
    """Rows idx of x: x (N, P, c) or shared (P, c); idx None (all), (B,) shared or (N, B)."""
    if idx is None:
        return x
    if idx.dim() == 1:
        return torch.index_select(x, x.dim() - 2, idx)
    if x.dim() == 2:
        return x[idx]
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class RowInputs:
    """A layer's cached input rows, (N, P, in) or shared by every signal (P, in)."""

    def __init__(self, x: torch.Tensor):
        self.x = x

    def linear(self, idx: torch.Tensor | None, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """x[idx] W^T + b, (N, B, out); keeps the gathered rows for weight_grad."""
        self.picked = _gather(self.x, idx)
        return _stacked_linear(self.picked, w, b)

    def weight_grad(self, idx: torch.Tensor | None, dz: torch.Tensor) -> torch.Tensor:
        """sum over the rows of the last linear() of dz^T x, (N, out, in)."""
        return torch.matmul(dz.transpose(1, 2), self.picked)


class GridInputs:
    """Shared input rows of a row-major (h, w) pixel grid whose features split exactly as
    rows[i] + cols[j] (nn.separable_grid_features): x W^T is rows W^T [i] + cols W^T [j], two small
    products instead of one per pixel, and the weight gradient sums dz per grid row and column."""

    def __init__(self, rows: torch.Tensor, cols: torch.Tensor):
        self.grid_rows, self.grid_cols = rows, cols
        self.width = cols.shape[0]

    @classmethod
    def of(cls, x: torch.Tensor, grid_shape: tuple[int, int] | None) -> GridInputs | None:
        """The split of shared features x (P, in) on a grid of grid_shape, or None where there is none."""
        if grid_shape is None or x.dim() != 2 or grid_shape[0] * grid_shape[1] != x.shape[0]:
            return None
        split = separable_grid_features(x, tuple(grid_shape))
        return None if split is None else cls(*split)

    def linear_rows(self, first: int, last: int, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """x W^T + b for the pixels of grid rows first..last-1, (N, (last - first) * w, out)."""
        wt = w.transpose(1, 2)
        by_row = torch.matmul(self.grid_rows[first:last], wt)
        by_col = torch.matmul(self.grid_cols, wt)
        return (by_row.unsqueeze(2) + by_col.unsqueeze(1) + b[:, None, None, :]).flatten(1, 2)

    def _split(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.div(idx, self.width, rounding_mode="floor"), torch.remainder(idx, self.width)

    def linear(self, idx: torch.Tensor | None, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if idx is None:
            return self.linear_rows(0, self.grid_rows.shape[0], w, b)
        wt = w.transpose(1, 2)
        i, j = self._split(idx)
        by_row = _gather(torch.matmul(self.grid_rows, wt), i)
        return by_row.add_(_gather(torch.matmul(self.grid_cols, wt), j)).add_(b.unsqueeze(1))

    def weight_grad(self, idx: torch.Tensor | None, dz: torch.Tensor) -> torch.Tensor:
        n_signals, _, n_out = dz.shape
        h = self.grid_rows.shape[0]
        if idx is None:
            per_pixel = dz.view(n_signals, h, self.width, n_out)
            per_row, per_col = per_pixel.sum(dim=2), per_pixel.sum(dim=1)
        else:
            i, j = self._split(idx)
            per_row = _scatter_sum(dz, i, h)
            per_col = _scatter_sum(dz, j, self.width)
        return (torch.matmul(per_row.transpose(1, 2), self.grid_rows)
                + torch.matmul(per_col.transpose(1, 2), self.grid_cols))


def _scatter_sum(values: torch.Tensor, idx: torch.Tensor, size: int) -> torch.Tensor:
    """out[n, k] = sum of values[n, p] over the p with idx[p] (or idx[n, p]) == k; (N, size, c)."""
    out = values.new_zeros(values.shape[0], size, values.shape[2])
    if idx.dim() == 1:
        return out.index_add_(1, idx, values)
    return out.scatter_add_(1, idx.unsqueeze(-1).expand(-1, -1, values.shape[2]), values)


def adaround_stacked(residual: torch.Tensor, base: torch.Tensor, bias: torch.Tensor, steps: Sequence[Step],
                     bitwidth: int, inputs: RowInputs | GridInputs, target: torch.Tensor,
                     activation: Callable[[torch.Tensor], torch.Tensor] | None, rows: _Rows, *,
                     iterations: int = 1000, reg: float = 1e-4,
                     soft_levels: dict | None = None) -> torch.Tensor:
    """quant.adaround_weight for N signals: residual, base (N, out, in), bias (N, out), steps one per
    signal, inputs the layer's input rows (RowInputs of (N, P, in) or (P, in), or GridInputs),
    target (N, P, out), rows: the rows each iteration uses; returns the integers (N, out, in) int32.
    The gradient of each signal's loss is written out (adaround_gradient); Adam on the stack of V is
    elementwise, so it is each signal's own Adam. soft_levels: a dict that receives, under "levels",
    the soft levels clamp(floor + h(V), qmin, qmax) of the last iteration (float32, (N, out, in))."""
    qmin, qmax = integer_range(bitwidth)
    steps64 = _steps_tensor(steps, residual, torch.float64)
    scaled = residual.detach().to(torch.float64) / steps64
    floor64 = torch.floor(scaled)
    frac = (scaled - floor64).to(torch.float32)
    floor = floor64.to(torch.float32)
    if iterations <= 0:
        up = (frac >= 0.5).to(torch.float32)  # h(V_init) = frac: the hard rounding of the start point
        return torch.clamp(floor + up, qmin, qmax).to(torch.int32)
    steps32 = _steps_tensor(steps, residual, torch.float32)
    base, bias = base.detach(), bias.detach()
    v = _inverse_rectified_sigmoid(frac)
    optimizer = torch.optim.Adam([v], lr=ADAROUND_LR)
    for t in range(iterations):
        idx = rows.draw()
        v.grad = adaround_gradient(v, floor, base, bias, steps32, qmin, qmax, inputs, idx, target,
                                   activation, beta_schedule(t, iterations), reg)
        optimizer.step()
    if soft_levels is not None:
        soft_levels["levels"] = torch.clamp(floor + rectified_sigmoid(v.detach()), qmin, qmax)
    up = (v >= 0).to(torch.float32)
    return torch.clamp(floor + up, qmin, qmax).to(torch.int32)


def adaround_gradient(v: torch.Tensor, floor: torch.Tensor, base: torch.Tensor, bias: torch.Tensor,
                      steps32: torch.Tensor, qmin: int, qmax: int, inputs: RowInputs | GridInputs,
                      idx: torch.Tensor | None, target: torch.Tensor,
                      activation: Callable[[torch.Tensor], torch.Tensor] | None, beta: float | None,
                      reg: float) -> torch.Tensor:
    """The gradient with respect to V (N, out, in) of each signal's AdaRound loss on the rows idx of
    the inputs and of target (N, P, out): mean((activation(x W^T + bias) - target)^2)
    + reg * sum(1 - |2h - 1|^beta) (no regulariser when beta is None), W = base + clamp(floor + h(V),
    qmin, qmax) * step, h the rectified sigmoid. What autograd gives for that loss, up to float
    rounding (tests/test_quant_batched.py)."""
    sig = torch.sigmoid(v)
    span = ZETA - GAMMA
    pre_h = sig * span + GAMMA
    h = pre_h.clamp(0.0, 1.0)
    level = floor + h
    w = base + level.clamp(qmin, qmax) * steps32
    z = inputs.linear(idx, w, bias)
    wanted = _gather(target, idx)
    if activation is None:
        dz = z.sub_(wanted)
    else:
        z.requires_grad_(True)
        with torch.enable_grad():
            out = activation(z)
        (dz,) = torch.autograd.grad(out, z, grad_outputs=out.detach() - wanted)
    grad_w = inputs.weight_grad(idx, dz)
    # d mean((out - t)^2) / dW = 2 / (B * out) * dz^T x, per signal
    grad_h = grad_w.mul_(2.0 / (dz.shape[1] * dz.shape[2])).mul_(steps32)
    grad_h.mul_(((level >= qmin) & (level <= qmax)).to(torch.float32))
    if beta is not None and reg > 0:
        centred = 2.0 * h - 1.0
        # d/dh reg * (1 - |2h - 1|^beta) = -2 reg beta |2h - 1|^(beta - 1) sign(2h - 1)
        grad_h.add_(centred.abs().pow(beta - 1.0).mul_(torch.sign(centred)), alpha=-2.0 * reg * beta)
    inside = ((pre_h >= 0.0) & (pre_h <= 1.0)).to(torch.float32)
    return grad_h.mul_(sig * (1.0 - sig) * span).mul_(inside)


def _adaround_layers(layers: list[LinearLayer], thetas: list[torch.Tensor], refs: list[torch.Tensor],
                     residuals: list[torch.Tensor], ints: list[torch.Tensor], steps: list[list[Step]],
                     bitwidth: int, x: torch.Tensor, grid: GridInputs | None, generators: list[torch.Generator],
                     iterations: int, reg: float, progress: bool, soft: dict[int, torch.Tensor] | None = None) -> None:
    """AdaRound layer by layer on the stacks (in place on ints): the target is the float network's
    layer output on the float network's input, the input the quantized prefix's output. grid: the
    split of the shared features x, used by the first layer when every row is cached. soft: a dict
    that receives, per weight tensor index, its soft levels of AdaRound's last iteration."""
    rows = x.shape[-2]
    if rows > ADAROUND_MAX_CACHED_ROWS:  # a seeded random subset of the rows per signal
        distinct = {id(g): g for g in generators}
        kept = {key: torch.randperm(rows, generator=g)[:ADAROUND_MAX_CACHED_ROWS].to(x.device)
                for key, g in distinct.items()}
        index = [kept[id(g)] for g in generators]
        x_float = _gather(x, index[0] if len(kept) == 1 else torch.stack(index))
        rows = ADAROUND_MAX_CACHED_ROWS
        grid = None
    else:
        x_float = x
    x_quant = x_float

    def deq(k: int) -> torch.Tensor:
        return refs[k] + dequantize_stacked(ints[k], _steps_tensor([s[k] for s in steps], ints[k], torch.float32))

    for i in _progress(range(len(layers)), progress, desc="AdaRound", leave=False):
        w_i, b_i, act = layers[i].weight, layers[i].bias, layers[i].activation
        target = _chunked_stacked_layer(x_float, thetas[w_i], thetas[b_i], act)
        bias_q = deq(b_i)
        sampler = _Rows(generators, rows, ADAROUND_BATCH_ROWS, x.device)
        inputs = grid if i == 0 and grid is not None else RowInputs(x_quant)
        levels: dict | None = {} if soft is not None else None
        ints[w_i] = adaround_stacked(residuals[w_i], refs[w_i], bias_q, [s[w_i] for s in steps], bitwidth,
                                     inputs, target, act, sampler, iterations=iterations, reg=reg,
                                     soft_levels=levels)
        if soft is not None:
            soft[w_i] = levels["levels"]
        if i < len(layers) - 1:
            x_quant = _chunked_stacked_layer(x_quant, deq(w_i), bias_q, act)
            x_float = target
        del target


# --------------------------------------------------------------------------------------------------
# Quantization-aware retraining


class _ChainForward:
    """The stacked network output of a chain representation (linear_layers), per chunk of rows; on a
    separable pixel grid (GridInputs) the first layer runs per grid row and column, in chunks of
    whole grid rows."""

    def __init__(self, layers: list[LinearLayer], x: torch.Tensor, grid: GridInputs | None, chunk_rows: int):
        self.layers, self.x, self.grid = layers, x, grid
        if grid is not None:
            per = max(1, chunk_rows // grid.width)
            height = grid.grid_rows.shape[0]
            self.chunks = [(r * grid.width, min(r + per, height) * grid.width) for r in range(0, height, per)]
        else:
            self.chunks = [(s, min(s + chunk_rows, x.shape[-2])) for s in range(0, x.shape[-2], chunk_rows)]

    def __call__(self, theta: list[torch.Tensor], start: int, stop: int) -> torch.Tensor:
        first = self.layers[0]
        w0, b0 = theta[first.weight], theta[first.bias]
        if self.grid is not None:
            z = self.grid.linear_rows(start // self.grid.width, stop // self.grid.width, w0, b0)
        else:
            z = _stacked_linear(self.x[..., start:stop, :], w0, b0)
        h = z if first.activation is None else first.activation(z)
        for layer in self.layers[1:]:
            z = _stacked_linear(h, theta[layer.weight], theta[layer.bias])
            h = z if layer.activation is None else layer.activation(z)
        return h


class _ApplyForward:
    """The network output of any representation, signal by signal through its apply()."""

    def __init__(self, rep: Representation, x: torch.Tensor):
        self.rep, self.x = rep, x
        self.chunks = [(s, min(s + CHUNK_ROWS, x.shape[-2])) for s in range(0, x.shape[-2], CHUNK_ROWS)]

    def __call__(self, theta: list[torch.Tensor], start: int, stop: int) -> torch.Tensor:
        n_signals = theta[0].shape[0]
        xs = self.x[..., start:stop, :]
        return torch.stack([self.rep.apply([t[n] for t in theta], xs if xs.dim() == 2 else xs[n])
                            for n in range(n_signals)])


def qat_chunk_rows(device: torch.device, n_signals: int) -> int:
    """Rows per signal in one chunk of a retraining step. On a CPU the elementwise passes (the sines
    and their derivatives) dominate a step and run fastest while a chunk's activations of all signals
    stay in the cache: about QAT_CPU_CHUNK_ROWS rows in all (measured, benchmarks/encode_speed.py); a
    GPU takes CHUNK_ROWS."""
    if device.type != "cpu":
        return CHUNK_ROWS
    return max(256, QAT_CPU_CHUNK_ROWS // n_signals)


def _retrain_stacked(forward, ints: list[torch.Tensor], steps: list[list[Step]], refs: list[torch.Tensor],
                     bitwidth: int, y: torch.Tensor, epochs: int, lr: float, progress: bool,
                     start_levels: dict[int, torch.Tensor] | None = None
                     ) -> tuple[list[torch.Tensor], list[list[float]]]:
    """QAT with frozen step sizes on the stacks: Adam at `lr` over float residuals initialised at the
    dequantized values (tensor k at start_levels[k] * step instead where given: AdaRound's soft
    levels, which leave its undecided weights on a rounding boundary for QAT to decide), `epochs`
    full-signal MSE steps; every state (the initial one included) is evaluated and each signal keeps
    the integers of its lowest quantized MSE. Returns them and each signal's MSE history."""
    qmin, qmax = integer_range(bitwidth)
    n_signals = y.shape[0]
    steps64 = [_steps_tensor([s[k] for s in steps], q, torch.float64) for k, q in enumerate(ints)]
    steps32 = [_steps_tensor([s[k] for s in steps], q, torch.float32) for k, q in enumerate(ints)]
    params = [dequantize_stacked(q, s).detach().clone() for q, s in zip(ints, steps32)]
    for k, levels in (start_levels or {}).items():
        params[k] = (levels.to(torch.float32) * steps32[k]).detach().clone()
    optimizer = torch.optim.Adam(params, lr=lr)
    n_values = y[0].numel()
    best_mse = torch.full((n_signals,), math.inf, dtype=torch.float64)
    best_ints = [q.clone() for q in ints]
    history: list[list[float]] = [[] for _ in range(n_signals)]
    bar = _progress(None, progress, total=epochs, desc="QAT", leave=False)  # counts the training steps
    for t in range(epochs + 1):
        train = t < epochs
        # The state's integers and dequantized tensors, once per step for all of its chunks; the
        # straight-through gradient with respect to a residual is that with respect to its tensor.
        current = [quantize_stacked(p, s64, qmin, qmax) for p, s64 in zip(params, steps64)]
        theta = [(r + dequantize_stacked(q, s32)).requires_grad_(train) for r, q, s32 in zip(refs, current, steps32)]
        total = torch.zeros(n_signals, dtype=torch.float64, device=y.device)
        for start, stop in forward.chunks:
            with torch.set_grad_enabled(train):
                pred = forward(theta, start, stop)
                sse = torch.sum((pred - y[:, start:stop]) ** 2, dim=(1, 2))
                if train:
                    (sse.sum() / n_values).backward()
            total += sse.detach()
        mse = total.cpu() / n_values
        for n in range(n_signals):
            history[n].append(float(mse[n]))
        improved = mse < best_mse
        if bool(improved.any()):
            best_mse = torch.where(improved, mse, best_mse)
            mask = improved.to(params[0].device)
            for k, q in enumerate(current):
                best_ints[k] = torch.where(mask.view((-1,) + (1,) * (q.dim() - 1)), q, best_ints[k])
        if progress:
            bar.set_postfix(mse=f"{float(mse.mean()):.3e}", best=f"{float(best_mse.mean()):.3e}")
        if train:
            for p, th in zip(params, theta):
                p.grad = th.grad
            optimizer.step()
            if progress:
                bar.update(1)
    if progress:
        bar.close()
    return best_ints, history


# --------------------------------------------------------------------------------------------------
# Rate-distortion step allocation


def _signal_mse(forward, theta: list[torch.Tensor], y: torch.Tensor) -> torch.Tensor:
    """Each signal's MSE of the network with parameters theta (stacks), float64 (N,)."""
    total = torch.zeros(y.shape[0], dtype=torch.float64, device=y.device)
    for start, stop in forward.chunks:
        total += torch.sum((forward(theta, start, stop) - y[:, start:stop]) ** 2, dim=(1, 2)).to(torch.float64)
    return total / y[0].numel()


@torch.no_grad()
def tensor_sensitivities(forward, thetas: list[torch.Tensor], y: torch.Tensor, steps: list[list[Step]],
                         seeds: list[int]) -> np.ndarray:
    """g[n, k]: how much signal n's MSE grows per unit of noise variance per value of tensor k,
    measured by adding uniform noise of +-step/2 (its rounding noise) to that tensor alone, over
    every data row. Each draw is an antithetic pair (+noise and -noise, averaged), which cancels the
    gradient's first-order term (a fitted network is not exactly at a minimum, and that term's
    random sign would swamp the curvature); SENSITIVITY_DRAWS pairs, seeded per signal. (N, T)
    float64, >= 0."""
    base = _signal_mse(forward, thetas, y)
    generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
    g = np.zeros((y.shape[0], len(thetas)))
    for k, theta_k in enumerate(thetas):
        step32 = _steps_tensor([s[k] for s in steps], theta_k, torch.float32)
        grown = torch.zeros_like(base)
        for _ in range(SENSITIVITY_DRAWS):
            noise = torch.stack([torch.rand(theta_k.shape[1:], generator=gen) for gen in generators]).to(theta_k.device)
            offset = (noise - 0.5) * step32
            for sign in (1.0, -1.0):
                perturbed = list(thetas)
                perturbed[k] = theta_k + sign * offset
                grown += (_signal_mse(forward, perturbed, y) - base) / 2.0
        variance = (step32.to(torch.float64).flatten(1) ** 2 / 12.0).mean(1).cpu()  # mean over a tensor's rows
        per_value = grown.cpu() / SENSITIVITY_DRAWS / (theta_k[0].numel() * variance)
        g[:, k] = per_value.clamp_min(0.0).numpy()
    return g


# --------------------------------------------------------------------------------------------------
# The entry point


def _per_signal(value, n: int, what: str) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise InrError(f"{len(value)} {what} for {n} models")
        return list(value)
    return [value] * n


def quantize_models(models: Sequence[nn.Module], features, targets: Sequence[torch.Tensor], bitwidth: int, *,
                    adaround: bool = True, adaround_iterations: int = 1000, adaround_reg: float = 1e-4,
                    retrain: bool = True, retrain_epochs: int = 300, retrain_lr: float = 1e-6,
                    references=None, seeds=0, grid_shape: tuple[int, int] | None = None,
                    step_scale: float = 1.0, rd_steps: bool = False, qat_from_soft: bool = False,
                    per_channel_steps: bool = False, progress: bool = False) -> list[QuantizedTensors]:
    """quant.quantize_model for N models of one representation as one stacked computation; returns
    one QuantizedTensors per model (the models are not modified).

    features: the representation's inputs, one tensor shared by every model (signals on one grid)
    or one per model; targets: one per model. Every signal must have the same number of rows.
    references: None, or one theta_0 (or None) per model; seeds: one int, or one per model (seeds
    AdaRound's rows, as quantize_model's seed); signals beyond MAX_STACKED_ROWS rows in all are
    coded in several groups (the same results). grid_shape: (h, w) when the rows are a row-major
    h x w pixel grid; with shared features that split into row and column parts the first layer of
    retraining then runs per grid row and column. step_scale: every step times this (1: the paper's
    steps; > 1 coarser, fewer bits). rd_steps: per-tensor steps by the rate-distortion allocation
    (quant.rd_step_sizes on sensitivities measured on the signal, tensor_sensitivities) instead of
    each tensor's MSE-optimal step at the bit width. qat_from_soft: retraining starts from
    AdaRound's soft levels (floor + h(V)) instead of its hard integers (what AIMET's QAT does; at
    the paper's lr 1e-6 hard starts barely move, benchmarks/RESULTS.md AIMET cross-check).
    per_channel_steps: every tensor of two or more dimensions (a weight) gets one step per output
    row (quant.choose_channel_steps, then scaled / allocated as above) instead of one for the
    tensor; biases keep one step. Other arguments as quantize_model.
    """
    b = _check_bitwidth(bitwidth)
    if not models:
        return []
    if int(adaround_iterations) < 0 or int(retrain_epochs) < 0:
        raise InrError("adaround_iterations and retrain_epochs must be >= 0")
    if not adaround_reg >= 0 or not retrain_lr >= 0:
        raise InrError("adaround_reg and retrain_lr must be >= 0")
    n_models = len(models)
    rows_each = max(1, torch.as_tensor(targets[0]).numel() // max(1, torch.as_tensor(targets[0]).shape[-1]))
    per_group = max(1, MAX_STACKED_ROWS // rows_each)
    if n_models > per_group:  # the signals are independent: code them in groups that fit in memory
        slices = [slice(k, k + per_group) for k in range(0, n_models, per_group)]
        pick = lambda value, part: value[part] if isinstance(value, (list, tuple)) else value  # noqa: E731
        return [qt for part in slices for qt in quantize_models(
            models[part], pick(features, part), targets[part], bitwidth, adaround=adaround,
            adaround_iterations=adaround_iterations, adaround_reg=adaround_reg, retrain=retrain,
            retrain_epochs=retrain_epochs, retrain_lr=retrain_lr, references=pick(references, part),
            seeds=pick(seeds, part), grid_shape=grid_shape, step_scale=step_scale, rd_steps=rd_steps,
            qat_from_soft=qat_from_soft, per_channel_steps=per_channel_steps, progress=progress)]
    declared = [_declared(m) for m in models]
    rep = declared[0][0]
    if any(r != rep for r, _ in declared):
        raise InrError("models quantized together must share one architecture")
    device = declared[0][1][0].device
    if any(t[0].device != device for _, t in declared):
        raise InrError("models quantized together must be on one device")
    layers = rep.linear_layers()
    use_adaround = adaround and int(adaround_iterations) > 0
    if use_adaround and not layers:
        raise InrError(f"the {rep.name} representation has no linear layers for AdaRound: quantize it "
                       "without AdaRound")
    if len(targets) != n_models:
        raise InrError(f"{len(targets)} targets for {n_models} models")
    shared = not isinstance(features, (list, tuple))
    feature_list = _per_signal(features, n_models, "feature tensors")
    rows_xy = [_flatten_rows(f, t, rep.inputs_width(), rep.out_features, device)
               for f, t in zip(feature_list, targets)]
    if len({x.shape[0] for x, _ in rows_xy}) != 1:
        raise InrError("signals quantized together must have the same number of rows")
    x = rows_xy[0][0] if shared else torch.stack([x for x, _ in rows_xy])
    y = torch.stack([y for _, y in rows_xy])
    references = _per_signal(references, n_models, "references")
    seeds = _per_signal(seeds, n_models, "seeds")

    thetas, refs, ints, steps = [], [], [], []
    for (_, tensors), reference in zip(declared, references):
        theta = _parameter_tensors(tensors)
        ref = _reference_tensors(rep, tensors, reference)
        q, s = _nearest([t - r for t, r in zip(theta, ref)], b, per_channel=per_channel_steps)
        thetas.append(theta)
        refs.append(ref)
        ints.append(q)
        steps.append(s)
    stack = lambda per_model: [torch.stack(parts) for parts in zip(*per_model)]  # noqa: E731
    thetas, refs, ints = stack(thetas), stack(refs), stack(ints)
    residuals = [t - r for t, r in zip(thetas, refs)]

    grid = GridInputs.of(x, grid_shape) if layers else None
    forward = (_ChainForward(layers, x, grid, qat_chunk_rows(device, n_models)) if layers
               else _ApplyForward(rep, x))
    if rd_steps or step_scale != 1.0:
        if rd_steps:
            counts = [t[0].numel() for t in thetas]
            g = tensor_sensitivities(forward, thetas, y, steps, seeds)
            steps = [rd_step_sizes(s, counts, g[n]) for n, s in enumerate(steps)]
        steps = [scaled_steps(s, step_scale) for s in steps]
        qmin, qmax = integer_range(b)
        ints = [quantize_stacked(r, _steps_tensor([s[k] for s in steps], r, torch.float64), qmin, qmax)
                for k, r in enumerate(residuals)]
    soft: dict[int, torch.Tensor] | None = {} if qat_from_soft else None
    if use_adaround:
        by_seed: dict[int, torch.Generator] = {}
        generators = [by_seed.setdefault(int(s), torch.Generator().manual_seed(int(s))) for s in seeds]
        _adaround_layers(layers, thetas, refs, residuals, ints, steps, b, x, grid, generators,
                         int(adaround_iterations), float(adaround_reg), progress, soft)

    if retrain and int(retrain_epochs) > 0:
        ints, _ = _retrain_stacked(forward, ints, steps, refs, b, y, int(retrain_epochs), float(retrain_lr),
                                   progress, soft)
    return [_pack([q[n].cpu() for q in ints], steps[n], b) for n in range(n_models)]
