"""Post-training quantization of a fitted model's tensors (spec: the paper's AIMET pipeline).

What is quantized is what the model's representation declares (codec/representations: for the
paper's SIREN MLP, every weight and bias of INR.layers). Every declared tensor is quantized per
tensor, symmetrically and uniformly at `bitwidth` bits: an integer q in [-2^(b-1), 2^(b-1) - 1] stands for the value q * step, and the
symbol written to the bit stream is s = q + 2^(b-1) in [0, 2^b - 1]. Beyond the paper
(per_channel_steps), a weight can instead have one step per output row (codec/steps.ChannelSteps).

The pipeline of `quantize_model` (the paper ran it with AIMET; this is plain PyTorch). Its AdaRound
and QAT loops live in quant_batched.py, written once for N signals quantized together
(quantize_models); quantize_model is that with one signal. This module holds the quantizer itself,
the step search, the symbols and the declared-tensor helpers:

1. Step sizes. `choose_step_size` picks, for every tensor, the step that minimises the squared
   quantization error of that tensor (AIMET's TF-Enhanced SQNR search plays this role in the paper).
   The step is fixed from then on, through AdaRound and retraining.
2. AdaRound (Nagel et al. 2020) on the weights of the representation's linear layers, layer by
   layer; biases (and any tensor outside those layers) use nearest rounding.
3. Quantization-aware retraining with a straight-through estimator and frozen step sizes, keeping the
   state with the lowest quantized MSE.

Design choices (where the spec leaves room):
- Step search: dense log-spaced grid of 256 clipping ratios over [0.02, 1] x the max-abs step, then a
  golden-section refinement between the best grid point's neighbours; never worse than the max-abs
  step (see choose_step_size).
- AdaRound: the reconstruction target is the float model's layer output on the float model's input,
  the input is the already-quantized prefix's output; the loss includes the following activation
  (sin(30 z) or relu) for every layer but the last (AIMET's default; the paper's code most likely
  dropped it by accident). Mean squared error + reg * sum(1 - |2h - 1|^beta); regulariser off for the
  first 20 % of the iterations, then beta decays LINEARLY from 20 to 2 (AIMET's schedule). Adam lr
  1e-3 on V. Each iteration uses 4096 rows (all rows when fewer), taken as successive slices of a
  random permutation of the cached rows from a torch.Generator seeded with `seed`; at most 2^20 rows
  are cached per layer (a seeded random subset of larger signals). Biases: nearest rounding, and the
  layer uses its quantized bias while its weight is AdaRounded.
- QAT: straight-through estimator whose forward value is exactly dequant(quant(w)) (so every loss
  seen during retraining is the true quantized MSE) and whose gradient is the identity; the step sizes
  stay frozen at the values chosen before AdaRound (AIMET freezes the AdaRound encodings likewise);
  Adam over the float residuals, initialised at the AdaRounded/nearest dequantized values; one step
  per epoch over the whole signal (row chunks accumulate gradients); the best of the retrain_epochs + 1
  states (the starting state included) is returned.

Residual ("reference") mode, for models fitted from a meta-learned initialization theta_0: what is
quantized is r = theta - theta_0 and a layer uses theta_0 + dequant(r); without a reference
theta_0 = 0. A reference is a mapping from the declared tensors' names (a SIREN's "layers.0.weight",
"layers.0.bias", ...) to tensors (a full state_dict works), or an nn.Module whose state_dict is used.

Bit-exactness: `dequantize` multiplies in float32 (q.float() * float32(step)) and the reference is
added in float32, elementwise; encoder and decoder therefore compute identical parameters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from inrcompress.codec.representations import representation_of
from inrcompress.codec.representations.base import Representation
from inrcompress.codec.steps import ChannelSteps, Step, representative_step, step_values
from inrcompress.codec.steps import float32_step as _float32_step
from inrcompress.errors import InrError

MIN_BITWIDTH = 2
MAX_BITWIDTH = 16

# Rectified sigmoid of AdaRound: h(V) = clamp(sigmoid(V) * (ZETA - GAMMA) + GAMMA, 0, 1).
ZETA = 1.1
GAMMA = -0.1
# AdaRound schedule: regulariser off for the first WARM_START of the iterations, then beta decays
# linearly from BETA_START to BETA_END (reached on the last iteration).
WARM_START = 0.2
BETA_START = 20.0
BETA_END = 2.0
ADAROUND_LR = 1e-3
# Rows of the cached layer input that one AdaRound iteration uses (all rows when fewer).
ADAROUND_BATCH_ROWS = 4096
# AdaRound caches every layer's input and target for at most this many rows of the signal (a seeded
# random subset when the signal is larger), which bounds its memory on large signals.
ADAROUND_MAX_CACHED_ROWS = 1 << 20
# Rows per forward/backward chunk when a pass over the whole signal is needed.
CHUNK_ROWS = 65536
# Step-size search: dense log-spaced grid of clipping ratios, then golden-section refinement.
_STEP_GRID_POINTS = 256
_STEP_GRID_LOW = 0.02
_STEP_GOLDEN_ITERS = 30
_STEP_SEARCH_BLOCK = 1 << 22  # candidate x element pairs evaluated at once


def step_tensor(step: Step, like: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """One tensor's steps shaped to broadcast against it (a scalar, or (rows, 1, ...))."""
    values = torch.from_numpy(np.array(step_values(step), dtype=np.float32)).to(like.device)
    if values.dim():
        values = values.view((-1,) + (1,) * (like.dim() - 1))
    return values.to(dtype)


@dataclass
class QuantizedTensors:
    """The quantized parameters of an INR.

    symbols: one flattened array per tensor, order W0, b0, W1, b1, ..., values s = q + 2^(b-1) in
    [0, 2^b - 1] (uint8 for b <= 8, else uint16). step_sizes: per tensor one float32-exact step, or
    (per-output-channel steps, beyond the paper) a ChannelSteps for a tensor of two or more
    dimensions. shapes: the tensors' shapes (weights (out, in), biases (out,)).
    """

    bitwidth: int
    symbols: list[np.ndarray]
    step_sizes: list[Step]
    shapes: list[tuple[int, ...]]


# --------------------------------------------------------------------------------------------------
# The quantizer


def _check_bitwidth(bitwidth) -> int:
    if isinstance(bitwidth, bool) or not isinstance(bitwidth, (int, np.integer)):
        raise InrError(f"bitwidth must be an integer, got {bitwidth!r}")
    b = int(bitwidth)
    if not MIN_BITWIDTH <= b <= MAX_BITWIDTH:
        raise InrError(f"bitwidth must be in [{MIN_BITWIDTH}, {MAX_BITWIDTH}], got {b}")
    return b


def integer_range(bitwidth: int) -> tuple[int, int]:
    """(qmin, qmax) = (-2^(b-1), 2^(b-1) - 1)."""
    b = _check_bitwidth(bitwidth)
    return -(1 << (b - 1)), (1 << (b - 1)) - 1


def quantize(x: torch.Tensor, step: Step, bitwidth: int) -> torch.Tensor:
    """Nearest integer of x / step (ties to even), clamped to [-2^(b-1), 2^(b-1) - 1]; int32.
    step: one step, or ChannelSteps (row r of x at its row's step).

    The division is done in float64 so that |x - q * step| <= step / 2 holds inside the range
    (up to the float32 rounding of the dequantized value).
    """
    qmin, qmax = integer_range(bitwidth)
    s = step_tensor(step, x, torch.float64)
    q = torch.round(x.detach().to(torch.float64) / s).clamp_(qmin, qmax)
    return q.to(torch.int32)


def dequantize(q: torch.Tensor, step: Step) -> torch.Tensor:
    """q * step in float32: q.float() * float32(step) (per row for ChannelSteps), identical on
    encoder and decoder."""
    return q.to(torch.float32) * step_tensor(step, q, torch.float32)


def _quant_mse64(v: torch.Tensor, step: float, qmin: int, qmax: int) -> float:
    """Squared error of the real pipeline (float64 quantize, float32 dequantize), float64 mean."""
    q = torch.round(v / step).clamp_(qmin, qmax)
    deq = q.to(torch.float32) * torch.tensor(np.float32(step))
    return float(torch.mean((v - deq.to(torch.float64)) ** 2))


def choose_step_size(x: torch.Tensor, bitwidth: int) -> float:
    """The step minimising the mean squared quantization error of x at `bitwidth` bits.

    Method: with m = max|x| and the max-abs step s_max = m / (2^(b-1) - 1) (the step whose grid
    reaches +-m), candidate steps are alpha * s_max for 256 clipping ratios alpha log-spaced over
    [0.02, 1]; the MSE of each is evaluated exactly (round to nearest, clamp). A golden-section
    search then refines alpha between the best grid point's neighbours (the MSE is piecewise smooth,
    so the search stays inside that bracket and the best value seen anywhere wins). The winner is
    rounded to float32 and compared, through the float32 dequantization, with s_max itself, so the
    result is never worse than the max-abs step. An all-zero tensor gets step 1.0 (any step
    represents it exactly). The result is a Python float that is exactly a float32, and > 0.
    """
    qmin, qmax = integer_range(bitwidth)
    v = x.detach().reshape(-1).to("cpu", torch.float64)
    if v.numel() == 0:
        return 1.0
    if not bool(torch.isfinite(v).all()):
        raise InrError("cannot quantize a tensor that holds NaN or infinite values")
    m = float(v.abs().max())
    if m == 0.0:
        return 1.0
    tiny = float(np.finfo(np.float32).tiny)
    s_max = m / qmax

    def mse_many(alphas: np.ndarray) -> np.ndarray:
        out = np.empty(len(alphas))
        per_block = max(1, _STEP_SEARCH_BLOCK // v.numel())
        for start in range(0, len(alphas), per_block):
            steps = torch.as_tensor(alphas[start:start + per_block] * s_max, dtype=torch.float64)
            q = torch.round(v[None, :] / steps[:, None]).clamp_(qmin, qmax)
            err = v[None, :] - q * steps[:, None]
            out[start:start + len(steps)] = torch.mean(err * err, dim=1).numpy()
        return out

    grid = np.geomspace(_STEP_GRID_LOW, 1.0, _STEP_GRID_POINTS)
    errors = mse_many(grid)
    k = int(np.argmin(errors))
    best_alpha, best_err = float(grid[k]), float(errors[k])
    lo = float(grid[max(k - 1, 0)])
    hi = float(grid[min(k + 1, len(grid) - 1)])
    inv_phi = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = lo, hi
    c, d = b - inv_phi * (b - a), a + inv_phi * (b - a)
    fc, fd = mse_many(np.array([c, d]))
    for _ in range(_STEP_GOLDEN_ITERS):
        for alpha, err in ((c, fc), (d, fd)):
            if err < best_err:
                best_alpha, best_err = alpha, err
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - inv_phi * (b - a)
            fc = float(mse_many(np.array([c]))[0])
        else:
            a, c, fc = c, d, fd
            d = a + inv_phi * (b - a)
            fd = float(mse_many(np.array([d]))[0])
    for alpha, err in ((c, fc), (d, fd)):
        if err < best_err:
            best_alpha, best_err = alpha, err

    chosen = float(max(np.float32(best_alpha * s_max), np.float32(tiny)))
    fallback = float(max(np.float32(s_max), np.float32(tiny)))
    if _quant_mse64(v, fallback, qmin, qmax) < _quant_mse64(v, chosen, qmin, qmax):
        chosen = fallback
    return _float32_step(chosen)


def symbols_from_integers(q: torch.Tensor | np.ndarray, bitwidth: int) -> np.ndarray:
    """Flattened symbols s = q + 2^(b-1) (uint8 for b <= 8, else uint16)."""
    b = _check_bitwidth(bitwidth)
    arr = np.asarray(q.cpu().numpy() if isinstance(q, torch.Tensor) else q).astype(np.int64).reshape(-1)
    s = arr + (1 << (b - 1))
    if s.size and (s.min() < 0 or s.max() > (1 << b) - 1):
        raise InrError(f"integers out of range for {b} bits")
    return s.astype(np.uint8 if b <= 8 else np.uint16)


def integers_from_symbols(symbols: np.ndarray, bitwidth: int) -> torch.Tensor:
    """q = s - 2^(b-1) as an int32 tensor (flattened); rejects symbols outside [0, 2^b - 1]."""
    b = _check_bitwidth(bitwidth)
    arr = np.asarray(symbols)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise InrError("symbols must be integers")
    arr = arr.astype(np.int64).reshape(-1)
    if arr.size and (arr.min() < 0 or arr.max() > (1 << b) - 1):
        raise InrError(f"symbols out of range for {b} bits")
    return torch.from_numpy(arr - (1 << (b - 1))).to(torch.int32)


# --------------------------------------------------------------------------------------------------
# The representation's declared tensors


def _declared(model: nn.Module) -> tuple[Representation, list[torch.Tensor]]:
    """The model's representation and its live quantized tensors (in file order)."""
    rep = representation_of(model)
    tensors = rep.tensors(model)
    if not tensors:
        raise InrError(f"the {rep.name} representation declares no tensors to quantize")
    return rep, tensors


def _parameter_tensors(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Detached float32 copies of the declared tensors."""
    return [t.detach().to(torch.float32).clone() for t in tensors]


def _reference_tensors(rep: Representation, tensors: Sequence[torch.Tensor], reference) -> list[torch.Tensor]:
    """theta_0 per declared tensor (float32, on the model's device); zeros without a reference."""
    if reference is None:
        return [torch.zeros_like(p, dtype=torch.float32).detach() for p in tensors]
    if isinstance(reference, nn.Module):
        reference = reference.state_dict()
    if not isinstance(reference, Mapping):
        raise InrError("reference must be a mapping of parameter names to tensors, or an nn.Module")
    out = []
    for spec, p in zip(rep.tensor_specs(), tensors):
        if spec.name not in reference:
            raise InrError(f"reference lacks {spec.name}")
        ref = torch.as_tensor(reference[spec.name]).detach().to(device=p.device, dtype=torch.float32).clone()
        if tuple(ref.shape) != tuple(p.shape):
            raise InrError(f"reference {spec.name} has shape {tuple(ref.shape)}, the model {tuple(p.shape)}")
        out.append(ref)
    return out


def _flatten_rows(features: torch.Tensor, targets: torch.Tensor, in_dim: int, out_dim: int,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    features = torch.as_tensor(features)
    targets = torch.as_tensor(targets)
    if features.shape[-1] != in_dim:
        raise InrError(f"features have {features.shape[-1]} columns, the model takes {in_dim}")
    if targets.shape[-1] != out_dim:
        raise InrError(f"targets have {targets.shape[-1]} columns, the model outputs {out_dim}")
    x = features.detach().reshape(-1, in_dim).to(device=device, dtype=torch.float32)
    y = targets.detach().reshape(-1, out_dim).to(device=device, dtype=torch.float32)
    if x.shape[0] != y.shape[0]:
        raise InrError(f"{x.shape[0]} feature rows but {y.shape[0]} target rows")
    if x.shape[0] == 0:
        raise InrError("no data rows to quantize against")
    return x, y


def _progress(iterable, enabled: bool, **kwargs):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)


# --------------------------------------------------------------------------------------------------
# AdaRound


def rectified_sigmoid(v: torch.Tensor) -> torch.Tensor:
    """h(V) = clamp(sigmoid(V) * (zeta - gamma) + gamma, 0, 1) with zeta = 1.1, gamma = -0.1."""
    return torch.clamp(torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def _inverse_rectified_sigmoid(h: torch.Tensor) -> torch.Tensor:
    """V with h(V) = h for h in [0, 1) (the sigmoid argument stays inside (0.09, 0.91))."""
    p = ((h - GAMMA) / (ZETA - GAMMA)).clamp(1e-6, 1.0 - 1e-6)
    return torch.log(p) - torch.log1p(-p)


def beta_schedule(t: int, iterations: int) -> float | None:
    """AdaRound's beta at iteration t: None (regulariser off) during the warm start, the first 20 %
    of the iterations; then linear decay from 20 to 2, reaching 2 on the last iteration."""
    warm = int(WARM_START * iterations)
    if t < warm:
        return None
    span = max(iterations - 1 - warm, 1)
    rel = min(max((t - warm) / span, 0.0), 1.0)
    return BETA_END + (BETA_START - BETA_END) * (1.0 - rel)


class _RowSampler:
    """Batches of row indices: successive slices of a seeded random permutation, reshuffled when used
    up (every row is seen once per pass). None (= all rows) when the input has <= batch rows."""

    def __init__(self, rows: int, batch: int, generator: torch.Generator, device: torch.device):
        self.rows, self.batch, self.generator, self.device = rows, batch, generator, device
        self.order = None
        self.pos = rows

    def next(self) -> torch.Tensor | None:
        if self.rows <= self.batch:
            return None
        if self.pos + self.batch > self.rows:
            self.order = torch.randperm(self.rows, generator=self.generator).to(self.device)
            self.pos = 0
        idx = self.order[self.pos:self.pos + self.batch]
        self.pos += self.batch
        return idx


def adaround_weight(residual: torch.Tensor, base: torch.Tensor, bias: torch.Tensor, step: float,
                    bitwidth: int, inputs: torch.Tensor, target: torch.Tensor,
                    activation: Callable[[torch.Tensor], torch.Tensor] | None, *, iterations: int = 1000,
                    reg: float = 1e-4, generator: torch.Generator | None = None,
                    batch_rows: int = ADAROUND_BATCH_ROWS) -> torch.Tensor:
    """AdaRound for one linear layer's weight residual; returns its integers (int32, weight shape).

    The layer computes activation(inputs @ (base + (floor(r/step) + h(V)) * step)^T + bias) (the grid
    clamp applied to floor + h); the loss is the mean squared error against `target` plus
    reg * sum(1 - |2h(V) - 1|^beta) after the warm start (see `beta_schedule`); Adam at lr 1e-3 on V,
    V initialised so that h(V) equals the fractional part of r / step. activation None: the last,
    linear layer. Each iteration uses `batch_rows` rows of `inputs` (see `_RowSampler`). At the end
    q = floor + [V >= 0] (h >= 0.5), clamped to the integer range. (quant_batched.adaround_stacked
    with one signal.)
    """
    from inrcompress.codec.quant_batched import RowInputs, _Rows, adaround_stacked

    _float32_step(step)
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    rows = _Rows([generator], inputs.shape[0], batch_rows, inputs.device)
    return adaround_stacked(residual[None], base[None], bias[None], [step], bitwidth, RowInputs(inputs),
                            target[None],
                            activation, rows, iterations=iterations, reg=reg)[0]


# --------------------------------------------------------------------------------------------------
# Public entry points


def _pack(ints: list[torch.Tensor], steps: list[float], bitwidth: int) -> QuantizedTensors:
    return QuantizedTensors(
        bitwidth=int(bitwidth),
        symbols=[symbols_from_integers(q, bitwidth) for q in ints],
        step_sizes=[s if isinstance(s, ChannelSteps) else float(s) for s in steps],
        shapes=[tuple(int(d) for d in q.shape) for q in ints],
    )


def choose_channel_steps(x: torch.Tensor, bitwidth: int) -> ChannelSteps:
    """Per-output-channel steps of x (rows = its first dimension): each row's MSE-optimal step at
    `bitwidth` bits (choose_step_size on the row alone), as representable by ChannelSteps."""
    rows = x.detach().reshape(x.shape[0], -1)
    return ChannelSteps.from_row_steps(np.array([choose_step_size(row, bitwidth) for row in rows]))


def _nearest(residuals: Sequence[torch.Tensor], bitwidth: int, step_scale: float = 1.0, per_channel: bool = False
             ) -> tuple[list[torch.Tensor], list[Step]]:
    """Each residual's step (choose_step_size times step_scale; with per_channel, a tensor of two
    or more dimensions gets choose_channel_steps instead) and its integers rounded to nearest at
    that step."""
    chosen = [choose_channel_steps(r, bitwidth) if per_channel and r.dim() >= 2 else choose_step_size(r, bitwidth)
              for r in residuals]
    steps = scaled_steps(chosen, step_scale)
    return [quantize(r, s, bitwidth) for r, s in zip(residuals, steps)], steps


def rd_step_sizes(base_steps: Sequence[Step], counts: Sequence[int], sensitivities: Sequence[float]) -> list[Step]:
    """Per-tensor steps by a rate-distortion allocation instead of one bit width for all.

    With uniform rounding noise of variance step^2 / 12 in tensor k (n_k values), the signal's MSE
    grows by about g_k n_k step_k^2 / 12 (g_k: its sensitivity, MSE per unit of noise variance per
    value) while its rate falls by n_k log2 step_k; the Lagrangian optimum has g_k step_k^2 equal for
    all k, i.e. step_k = c / sqrt(g_k). c is chosen so that sum n_k log step_k equals that of
    base_steps (the same estimated rate as the per-tensor MSE steps), and no step is finer than its
    base step (finer than the bit width's MSE-optimal step only clips more). Float32-exact steps;
    a tensor with ChannelSteps keeps the ratios between its rows and moves their geometric mean."""
    g = np.maximum(np.asarray(sensitivities, dtype=np.float64), 1e-30)
    n = np.asarray(counts, dtype=np.float64)
    base = np.asarray([representative_step(s) for s in base_steps], dtype=np.float64)
    log_c = float(np.sum(n * (np.log(base) + 0.5 * np.log(g))) / np.sum(n))
    steps = np.maximum(np.exp(log_c - 0.5 * np.log(g)), base)
    return [old.scaled(new / b) if isinstance(old, ChannelSteps) else _float32_step(new)
            for old, new, b in zip(base_steps, steps, base)]


def scaled_steps(steps: Sequence[Step], scale: float) -> list[Step]:
    """Every step times `scale` (> 0), float32-exact; scale 1 returns the steps unchanged."""
    if not (math.isfinite(scale) and scale > 0):
        raise InrError(f"step_scale must be a positive finite number, got {scale!r}")
    if scale == 1.0:
        return [s if isinstance(s, ChannelSteps) else float(s) for s in steps]
    return [s.scaled(scale) if isinstance(s, ChannelSteps) else _float32_step(float(s) * scale) for s in steps]


def nearest_quantization(model: nn.Module, bitwidth: int, reference=None, step_scale: float = 1.0,
                         per_channel: bool = False) -> QuantizedTensors:
    """Every declared tensor's residual (theta - theta_0) rounded to nearest at the step of
    choose_step_size times step_scale (per output channel for weights with per_channel;
    quantize_model without AdaRound and retraining, and without data)."""
    b = _check_bitwidth(bitwidth)
    rep, tensors = _declared(model)
    refs = _reference_tensors(rep, tensors, reference)
    ints, steps = _nearest([t - r for t, r in zip(_parameter_tensors(tensors), refs)], b, step_scale, per_channel)
    return _pack(ints, steps, b)


def quantize_model(model: nn.Module, features: torch.Tensor, targets: torch.Tensor, bitwidth: int, *,
                   adaround: bool = True, adaround_iterations: int = 1000, adaround_reg: float = 1e-4,
                   retrain: bool = True, retrain_epochs: int = 300, retrain_lr: float = 1e-6,
                   reference=None, seed: int = 0, grid_shape: tuple[int, int] | None = None,
                   progress: bool = False) -> QuantizedTensors:
    """Quantize every tensor the model's representation declares at `bitwidth` bits; the model is
    not modified.

    features: the representation's inputs for the signal's coordinates (representation.inputs: the
    encoded coordinates of a SIREN), any leading shape; targets: the signal values (images (N, 3)
    in [-1, 1], SDF (N, 1)). Steps from choose_step_size on each residual theta - theta_0 (fixed
    afterwards); the weights of the representation's linear layers AdaRounded layer by layer when
    `adaround` (a representation without linear layers refuses it), every other tensor nearest;
    then, when `retrain`, `retrain_epochs` steps of quantization-aware retraining at `retrain_lr`
    (straight-through estimator, frozen steps), keeping the best quantized state. `seed` seeds
    AdaRound's row sampling. grid_shape: (h, w) when the rows are a row-major pixel grid (the
    first layer of retraining then runs per grid row and column where the encoding allows).
    quant_batched.quantize_models with one model: the pipeline is written once, for N signals.
    """
    from inrcompress.codec.quant_batched import quantize_models

    return quantize_models([model], features, [targets], bitwidth, adaround=adaround,
                           adaround_iterations=adaround_iterations, adaround_reg=adaround_reg, retrain=retrain,
                           retrain_epochs=retrain_epochs, retrain_lr=retrain_lr, references=[reference],
                           seeds=[seed], grid_shape=grid_shape, progress=progress)[0]


def _checked_integers(rep: Representation, qt: QuantizedTensors) -> list[torch.Tensor]:
    b = _check_bitwidth(qt.bitwidth)
    expected = [spec.shape for spec in rep.tensor_specs()]
    if not (len(qt.symbols) == len(qt.step_sizes) == len(qt.shapes) == len(expected)):
        raise InrError(f"quantized data holds {len(qt.symbols)} tensors, the model has {len(expected)}")
    ints = []
    for k, (sym, shape, want, step) in enumerate(zip(qt.symbols, qt.shapes, expected, qt.step_sizes)):
        shape = tuple(int(d) for d in shape)
        if shape != want:
            raise InrError(f"quantized tensor {k} has shape {shape}, the model {want}")
        if isinstance(step, ChannelSteps) and (len(shape) < 2 or step.codes.size != shape[0]):
            raise InrError(f"quantized tensor {k} of shape {shape} has {step.codes.size} channel steps")
        q = integers_from_symbols(sym, b)
        if q.numel() != math.prod(shape):
            raise InrError(f"quantized tensor {k} has {q.numel()} symbols, its shape {shape} needs {math.prod(shape)}")
        ints.append(q.reshape(shape))
    return ints


def dequantized_tensors(model: nn.Module, qt: QuantizedTensors, reference=None) -> list[torch.Tensor]:
    """theta_0 + dequant(q) for every declared tensor, float32 on the CPU, checked against the
    model's shapes. This is exactly what load_quantized writes."""
    rep, tensors = _declared(model)
    ints = _checked_integers(rep, qt)
    refs = [r.cpu() for r in _reference_tensors(rep, tensors, reference)]
    return [r + dequantize(q, s) for r, q, s in zip(refs, ints, qt.step_sizes)]


@torch.no_grad()
def load_quantized(model: nn.Module, qt: QuantizedTensors, reference=None) -> None:
    """Write theta_0 + dequant(q) into the model's declared tensors in place (theta_0 = 0 without
    a reference)."""
    values = dequantized_tensors(model, qt, reference)
    for tensor, value in zip(representation_of(model).tensors(model), values):
        tensor.copy_(value)
