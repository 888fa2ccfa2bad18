"""Range coding of quantized latent grids with an auto-regressive probability model (ARM), exactly
reproducible by the decoder: the latent-grid representation's coder (codec/representations/latent.py).

Every latent z (an integer in [-ZMAX, ZMAX]) is coded with a discretized Laplace distribution whose
mean and scale a small MLP (the ARM, shared by all grids) predicts from the CONTEXT already-decoded
neighbours of z in its own grid (causal offsets, CONTEXT_OFFSETS; outside the grid they are 0).

Determinism by construction (no float transcendental and no float rounding decides a probability):

- The ARM runs in fixed point. Its weights and biases must be multiples of 2^-WEIGHT_FRAC_BITS
  (their quantization steps are powers of two, so the dequantized float32 values are exact) and
  are used as integers w * 2^WEIGHT_FRAC_BITS. Inputs are the integer latents; hidden activations
  are ReLU'd, rounded to ACT_FRAC_BITS fractional bits (half up: floor((v + 2^(k-1)) / 2^k)) and
  clamped to ACT_LIMIT. Every value is an integer held in float64, and every partial sum stays
  below EXACT_SUM_LIMIT (checked when the ARM is built), so each product, sum, power-of-two scaling
  and floor is exact: any summation order (BLAS, FMA) gives the same integers, on any machine.
- Its two outputs become table indices by integer shifts: the mean in steps of 1/2^MU_FRAC_BITS
  (integer part m, fraction index f), the log2 of the scale in steps of 1/SCALE_BINS_PER_OCTAVE
  from LOG2_SCALE_MIN (index s, clamped to SCALE_BINS bins).
- The probability of every symbol comes from LAPLACE_TABLE[f, s], integer masses computed once per
  process from exp() in Python's decimal module (software arithmetic to DECIMAL_DIGITS digits, the
  same on every machine) and truncated to 32-bit fixed point, each mass + 1 so every symbol is
  codable. constriction's categorical model gets these integers as float64 (exact) and normalizes
  them with IEEE basic arithmetic only.

Coding order (what makes decoding vectorized): latent (y, x) of a grid is in wavefront
t = x + SLOPE * y; every context offset lies in an earlier wavefront, so all latents of one
wavefront, in every grid at once, are decoded by one batched ARM evaluation and one constriction
call. Order: wavefront, then grid, then row.

Stream: varint W, then W little-endian u32 words of constriction's queue range coder
(bytestream.payload_bytes); it must be consumed exactly.
"""

from __future__ import annotations

import decimal
from collections.abc import Sequence
from functools import lru_cache

import constriction
import numpy as np

from inrcompress.codec.entropy.bytestream import Reader, call_constriction, payload_bytes, payload_decoder
from inrcompress.errors import CorruptFileError, InrError

ZMAX = 31  # latents are integers in [-ZMAX, ZMAX]
ALPHABET = 2 * ZMAX + 1
MU_FRAC_BITS = 4
MU_FRACTIONS = 1 << MU_FRAC_BITS
LOG2_SCALE_MIN = -4.0
SCALE_FRAC_BITS = 3
SCALE_BINS_PER_OCTAVE = 1 << SCALE_FRAC_BITS
SCALE_BINS = 72  # scales 2^-4 .. 2^(-4 + 71/8) = 29.3
LOG2_SCALE_MAX = LOG2_SCALE_MIN + (SCALE_BINS - 1) / SCALE_BINS_PER_OCTAVE
WEIGHT_FRAC_BITS = 12
ACT_FRAC_BITS = 8
ACT_LIMIT = 1 << 20
PROB_BITS = 32
DECIMAL_DIGITS = 40
EXACT_SUM_LIMIT = float(1 << 52)  # below 2^53 with room for the rounding offset

# Causal neighbours (dy, dx) by distance, then raster order; a context of n uses the first n.
CONTEXT_OFFSETS: tuple[tuple[int, int], ...] = (
    (0, -1), (-1, 0), (-1, -1), (-1, 1), (0, -2), (-2, 0), (-1, -2), (-1, 2),
    (-2, -1), (-2, 1), (-2, -2), (-2, 2), (0, -3), (-3, 0), (-3, -1), (-3, 1),
    (-1, -3), (-1, 3), (-2, -3), (-2, 3), (-3, -2), (-3, 2), (-3, -3), (-3, 3),
)
CONTEXT_SIZES = (4, 8, 12, 16, 20, 24)
PAD = 3  # the farthest offset on any side


def context_offsets(size: int) -> tuple[tuple[int, int], ...]:
    if size not in CONTEXT_SIZES:
        raise InrError(f"the ARM context must be one of {CONTEXT_SIZES} neighbours, got {size}")
    return CONTEXT_OFFSETS[:size]


def wavefront_slope(offsets: Sequence[tuple[int, int]]) -> int:
    """The smallest k with dx + k * dy < 0 for every causal offset: latents with equal
    x + k * y never depend on each other."""
    ratios = [dx / -dy for dy, dx in offsets if dy < 0]
    return int(np.floor(max(ratios, default=0.0))) + 1


# ----------------------------------------------------------------------------------------------
# The probability table


@lru_cache(maxsize=1)
def laplace_table() -> np.ndarray:
    """Integer masses (MU_FRACTIONS, SCALE_BINS, 4 ZMAX + 1) as float64 (exact integers): entry
    [f, s, d + 2 ZMAX] is 2^32 x P(Laplace(f / 16, 2^(LOG2_SCALE_MIN + s / 8)) in [d - 1/2, d + 1/2)),
    truncated, plus 1."""
    ctx = decimal.Context(prec=DECIMAL_DIGITS)
    one = decimal.Decimal(1)
    half_unit = 1 << (PROB_BITS - 1)
    # |edge| in units of 1/MU_FRACTIONS: edges d +- 1/2 - f for |d| <= 2 ZMAX.
    max_units = MU_FRACTIONS * (2 * ZMAX) + MU_FRACTIONS // 2 + MU_FRACTIONS
    tails = np.empty((SCALE_BINS, max_units + 1), dtype=np.int64)  # 2^31 exp(-u / (16 b)), truncated
    for s in range(SCALE_BINS):
        exponent = ctx.add(decimal.Decimal(LOG2_SCALE_MIN), ctx.divide(decimal.Decimal(s), SCALE_BINS_PER_OCTAVE))
        scale = ctx.power(decimal.Decimal(2), exponent)
        step = ctx.exp(ctx.minus(ctx.divide(one, ctx.multiply(scale, MU_FRACTIONS))))
        value = one
        for u in range(max_units + 1):
            tails[s, u] = int(ctx.multiply(value, half_unit).to_integral_value(rounding=decimal.ROUND_FLOOR))
            value = ctx.multiply(value, step)
    d = np.arange(-2 * ZMAX, 2 * ZMAX + 1)
    f = np.arange(MU_FRACTIONS)

    def cdf(units: np.ndarray) -> np.ndarray:  # 2^32 P(X < units / 16), units (F, D) integers
        below = tails[:, np.abs(units)]  # (S, F, D)
        return np.where(units[None] < 0, below, (1 << PROB_BITS) - below)

    upper = MU_FRACTIONS * d[None, :] + MU_FRACTIONS // 2 - f[:, None]
    lower = upper - MU_FRACTIONS
    masses = cdf(upper) - cdf(lower) + 1  # (S, F, D)
    return np.ascontiguousarray(masses.transpose(1, 0, 2)).astype(np.float64)


@lru_cache(maxsize=1)
def _symbol_windows() -> np.ndarray:
    """laplace_table()[f, s, k : k + ALPHABET] for k = 0..2 ZMAX: the masses of z = -ZMAX..ZMAX
    when the mean's integer part is m = ZMAX - k."""
    return np.lib.stride_tricks.sliding_window_view(laplace_table(), ALPHABET, axis=-1)


# ----------------------------------------------------------------------------------------------
# The fixed-point ARM


def _round_shift(values: np.ndarray, shift: int) -> np.ndarray:
    """Integers (float64) divided by 2^shift (shift >= 1), rounded half up: exact in float64."""
    return np.floor((values + float(1 << (shift - 1))) * (1.0 / (1 << shift)))


class FixedPointArm:
    """The ARM as integers: layers of (weight (out, in), bias (out,)) given as floats that must be
    exact multiples of 2^-WEIGHT_FRAC_BITS; ReLU between layers; two outputs (mean, log2 scale).
    `error` is raised for weights it cannot evaluate exactly (a decoder passes CorruptFileError)."""

    def __init__(self, layers: Sequence[tuple[np.ndarray, np.ndarray]], context: int,
                 error: type[InrError] = InrError):
        self.offsets = context_offsets(context)
        self.weights: list[np.ndarray] = []  # (in, out) integers as float64
        self.biases: list[np.ndarray] = []   # scaled to the layer's products: b * 2^(input's fractional bits)
        fan_in, bound = context, ZMAX
        for i, (weight, bias) in enumerate(layers):
            w = np.asarray(weight, dtype=np.float64) * (1 << WEIGHT_FRAC_BITS)
            b = np.asarray(bias, dtype=np.float64) * (1 << WEIGHT_FRAC_BITS)
            if w.ndim != 2 or w.shape[1] != fan_in or b.shape != (w.shape[0],):
                raise error(f"ARM layer {i} has shapes {w.shape}, {b.shape}; expected (*, {fan_in}) and (*,)")
            if not (np.isfinite(w).all() and np.isfinite(b).all()) or (w != np.round(w)).any() or (b != np.round(b)).any():
                raise error(f"ARM layer {i} holds values that are not multiples of 2^-{WEIGHT_FRAC_BITS}")
            input_frac = ACT_FRAC_BITS if i else 0
            # Every partial sum of the layer must be an exact float64 integer.
            worst = float(np.abs(w).sum(axis=1).max(initial=0.0)) * bound + float(np.abs(b).max(initial=0.0)) * (
                1 << input_frac)
            if worst >= EXACT_SUM_LIMIT:
                raise error(f"ARM layer {i} has weights too large to evaluate exactly")
            self.weights.append(np.ascontiguousarray(w.T))
            self.biases.append(b * float(1 << input_frac))
            fan_in, bound = w.shape[0], ACT_LIMIT
        if fan_in != 2:
            raise error(f"the ARM must end in 2 outputs (mean, log2 scale), got {fan_in}")

    def indices(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For int64 contexts (N, context): the mean's integer part m in [-ZMAX, ZMAX], its fraction
        index f in [0, MU_FRACTIONS) and the scale index s in [0, SCALE_BINS)."""
        x = contexts.astype(np.float64)
        frac = 0
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            acc = x @ w  # value * 2^(frac + WEIGHT_FRAC_BITS)
            acc += b
            if i == last:
                break
            np.maximum(acc, 0.0, out=acc)
            x = _round_shift(acc, frac + WEIGHT_FRAC_BITS - ACT_FRAC_BITS)
            np.minimum(x, float(ACT_LIMIT), out=x)
            frac = ACT_FRAC_BITS
        total = frac + WEIGHT_FRAC_BITS
        mu = np.minimum(np.maximum(_round_shift(acc[:, 0], total - MU_FRAC_BITS), -ZMAX * MU_FRACTIONS),
                        ZMAX * MU_FRACTIONS + MU_FRACTIONS - 1).astype(np.int64)
        log_scale = _round_shift(acc[:, 1], total - SCALE_FRAC_BITS)
        s = np.minimum(np.maximum(log_scale - LOG2_SCALE_MIN * SCALE_BINS_PER_OCTAVE, 0), SCALE_BINS - 1)
        return mu >> MU_FRAC_BITS, mu & (MU_FRACTIONS - 1), s.astype(np.int64)

    def probabilities(self, contexts: np.ndarray) -> np.ndarray:
        """float64 (N, ALPHABET) integer masses of z = -ZMAX..ZMAX for each context row."""
        m, f, s = self.indices(contexts)
        return _symbol_windows()[f, s, ZMAX - m]


# ----------------------------------------------------------------------------------------------
# Layout of the grids in one padded buffer, and the coding order


class GridLayout:
    """The grids (shapes (h_l, w_l)) stored in one flat int64 buffer, each padded by PAD zeros on
    every side, and the coding order of their latents (see the module docstring)."""

    def __init__(self, shapes: Sequence[tuple[int, int]], offsets: Sequence[tuple[int, int]]):
        self.shapes = [(int(h), int(w)) for h, w in shapes]
        strides = [w + 2 * PAD for _, w in self.shapes]
        sizes = [(h + 2 * PAD) * s for (h, _), s in zip(self.shapes, strides)]
        bases = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
        self.buffer_size = int(sum(sizes))
        slope = wavefront_slope(offsets)
        waves, grids, rows, positions, flats = [], [], [], [], []
        flat_base = 0
        for level, ((h, w), stride, base) in enumerate(zip(self.shapes, strides, bases)):
            y, x = np.divmod(np.arange(h * w, dtype=np.int64), w)
            waves.append(x + slope * y)
            grids.append(np.full(h * w, level, dtype=np.int64))
            rows.append(y)
            positions.append(base + (y + PAD) * stride + x + PAD)
            flats.append(flat_base + y * w + x)
            flat_base += h * w
        self.count = flat_base
        if not self.count:
            self.grid_of = self.position = self.flat = np.zeros(0, dtype=np.int64)
            self.wave_bounds = np.zeros(1, dtype=np.int64)
        else:
            wave, grid, row = np.concatenate(waves), np.concatenate(grids), np.concatenate(rows)
            order = np.lexsort((row, grid, wave))
            self.grid_of = grid[order]
            self.position = np.concatenate(positions)[order]  # buffer index of the k-th coded latent
            self.flat = np.concatenate(flats)[order]  # its index in the grids, concatenated and flattened
            self.wave_bounds = np.flatnonzero(np.diff(wave[order], prepend=-1, append=wave.max() + 1))
        # The buffer index offset of each context neighbour, per grid.
        self.context_delta = np.array([[dy * s + dx for dy, dx in offsets] for s in strides],
                                      dtype=np.int64).reshape(len(strides), len(offsets))

    def contexts(self, buffer: np.ndarray, start: int = 0, stop: int | None = None) -> np.ndarray:
        """int64 (n, context) neighbours of the coded latents start..stop from `buffer`."""
        sl = slice(start, stop)
        return buffer[self.position[sl, None] + self.context_delta[self.grid_of[sl]]]

    def buffer_of(self, grids: Sequence[np.ndarray]) -> np.ndarray:
        buffer = np.zeros(self.buffer_size, dtype=np.int64)
        buffer[self.position] = self.coded_values(grids)
        return buffer

    def coded_values(self, grids: Sequence[np.ndarray]) -> np.ndarray:
        """The latents in coding order."""
        return np.concatenate([np.asarray(g, dtype=np.int64).reshape(-1) for g in grids])[self.flat]

    def grids_of(self, buffer: np.ndarray) -> list[np.ndarray]:
        flat = np.empty(self.count, dtype=np.int64)
        flat[self.flat] = buffer[self.position]
        out, start = [], 0
        for h, w in self.shapes:
            out.append(flat[start:start + h * w].reshape(h, w))
            start += h * w
        return out


def check_latents(grids: Sequence[np.ndarray]) -> None:
    for i, g in enumerate(grids):
        a = np.asarray(g)
        if a.size and (a.min() < -ZMAX or a.max() > ZMAX):
            raise InrError(f"latent grid {i} holds values outside [-{ZMAX}, {ZMAX}]")


def encode_latents(grids: Sequence[np.ndarray], arm: FixedPointArm) -> bytes:
    """The stream of integer latent grids (each in [-ZMAX, ZMAX]) under `arm`."""
    check_latents(grids)
    layout = GridLayout([np.shape(g) for g in grids], arm.offsets)
    buffer = layout.buffer_of(grids)
    encoder = constriction.stream.queue.RangeEncoder()
    if layout.count:
        probabilities = arm.probabilities(layout.contexts(buffer))
        symbols = (buffer[layout.position] + ZMAX).astype(np.int32)
        encoder.encode(symbols, constriction.stream.model.Categorical(perfect=False), probabilities)
    return payload_bytes(encoder)


def decode_latents(data: bytes, shapes: Sequence[tuple[int, int]], arm: FixedPointArm) -> list[np.ndarray]:
    """Invert encode_latents, one wavefront (every grid at once) per step; the stream must be
    consumed exactly, anything wrong with it is a CorruptFileError."""
    layout = GridLayout(shapes, arm.offsets)
    decoder = payload_decoder(Reader(bytes(data)))
    family = constriction.stream.model.Categorical(perfect=False)
    buffer = np.zeros(layout.buffer_size, dtype=np.int64)
    bounds = layout.wave_bounds
    for start, stop in zip(bounds[:-1], bounds[1:]):
        probabilities = arm.probabilities(layout.contexts(buffer, start, stop))
        symbols = call_constriction(decoder.decode, family, probabilities)
        buffer[layout.position[start:stop]] = np.asarray(symbols, dtype=np.int64) - ZMAX
    if layout.count and call_constriction(decoder.maybe_exhausted) is False:
        raise CorruptFileError("the latent stream holds more data than its latents")
    return layout.grids_of(buffer)


def latent_bits(grids: Sequence[np.ndarray], arm: FixedPointArm) -> float:
    """Ideal code length (bits) of the grids under `arm`'s integer probabilities (the stream is
    within a few words of it), for rate-distortion searches."""
    check_latents(grids)
    layout = GridLayout([np.shape(g) for g in grids], arm.offsets)
    if not layout.count:
        return 0.0
    buffer = layout.buffer_of(grids)
    masses = arm.probabilities(layout.contexts(buffer))
    chosen = masses[np.arange(layout.count), buffer[layout.position] + ZMAX]
    return float(-np.log2(chosen / masses.sum(axis=1)).sum())
