"""Static per-tensor probability models shared by the table and parametric entropy models:
frequency tables, quantized Laplace / Gaussian parameters, their fitting and cost estimates.

    table      = varint lo, varint span (hi - lo), then span + 1 varint counts of lo..hi;
                 the counts sum to the number of symbols the table covers and the first and
                 last are > 0 (lo and hi are the true minimum and maximum).
    parameters = varint lo, varint span, and when span > 0: float32 mean, float32 scale.

The decoder builds every probability from stored integers or float32 values only (counts go to
constriction as float64, which holds them exactly), so it reproduces the encoder's model
bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import constriction
import numpy as np

from inrcompress.codec.entropy.bytestream import Reader, encode_varints, varint_sizes
from inrcompress.errors import CorruptFileError

# Per-tensor model kinds; also the 2-bit codes of the "mixed" model's selector (stored in files).
SHARED, OWN, LAPLACE, GAUSSIAN = 0, 1, 2, 3
PARAM_KIND_NAMES = {LAPLACE: "laplace", GAUSSIAN: "gaussian"}

# constriction's default range coder quantizes probabilities to 24 bits and gives every symbol
# of a model's alphabet at least one quantum, so no symbol is ever cheaper to estimate than this.
_LEAK = 2.0 ** -24
# Bounds on the stored float32 parameters. constriction panics (a BaseException, with a Rust
# backtrace on stderr) on a non-positive scale, so the decoder refuses anything outside these
# before constriction sees it, and the encoder clamps into them.
# Both are exact float32 values, so clamping and then rounding to float32 stays inside them.
_SCALE_MIN, _SCALE_MAX = 2.0 ** -7, 2.0 ** 20
_MEAN_ABS_MAX = 2.0 ** 20


def self_information_bits(counts: np.ndarray) -> float:
    """-sum c log2(c / n) over positive counts: the ideal cost of coding them with their own
    empirical distribution."""
    c = counts[counts > 0].astype(np.float64)
    if c.size == 0:
        return 0.0
    return float(-(c * np.log2(c / c.sum())).sum())


@dataclass(frozen=True)
class Table:
    """Frequency table over symbols lo..lo+len(counts)-1 (counts are int64, first and last > 0)."""

    lo: int
    counts: np.ndarray

    @property
    def span(self) -> int:
        return len(self.counts) - 1

    @classmethod
    def fit(cls, symbols: np.ndarray) -> Table:
        lo = int(symbols.min())
        return cls(lo, np.bincount(symbols - lo).astype(np.int64))

    def to_bytes(self) -> bytes:
        return encode_varints([self.lo, self.span]) + encode_varints(self.counts)

    @classmethod
    def parse(cls, reader: Reader, n: int, max_symbol: int, what: str) -> Table:
        lo = reader.varint(max_symbol, f"{what} (lowest symbol)")
        span = reader.varint(max_symbol - lo, f"{what} (symbol range)")
        # span + 1 <= 2**bitwidth, so this read and the array it yields are bounded by the alphabet.
        counts = reader.varints(span + 1, n, f"{what} (counts)")
        total = int(counts.sum())
        if total != n:
            raise CorruptFileError(f"{what} counts sum to {total}, expected {n} symbols")
        if counts[0] == 0 or counts[-1] == 0:
            raise CorruptFileError(f"{what} has a zero count at an end of its range")
        return cls(lo, counts)

    def bits(self) -> float:
        """Estimated bytes*8 of this table plus its ideal payload (for choosing models)."""
        return 8.0 * len(self.to_bytes()) + self_information_bits(self.counts)

    def entropy_model(self):
        # Integer counts as float64 are exact, so encoder and decoder hand constriction the very
        # same numbers and it quantizes them identically.
        return constriction.stream.model.Categorical(self.counts.astype(np.float64), perfect=False)


@dataclass(frozen=True)
class Param:
    """Quantized Laplace or Gaussian over lo..hi; mean and scale are float32-exact floats
    (scale = Laplace b, or Gaussian standard deviation, in symbol units)."""

    kind: int
    lo: int
    hi: int
    mean: float = 0.0
    scale: float = 1.0

    def to_bytes(self) -> bytes:
        head = encode_varints([self.lo, self.hi - self.lo])
        if self.hi == self.lo:
            return head
        return head + np.array([self.mean, self.scale], dtype="<f4").tobytes()

    @classmethod
    def parse(cls, reader: Reader, kind: int, max_symbol: int, what: str) -> Param:
        lo = reader.varint(max_symbol, f"{what} (lowest symbol)")
        span = reader.varint(max_symbol - lo, f"{what} (symbol range)")
        if span == 0:
            return cls(kind, lo, lo)
        mean = reader.float32(f"{what} (mean)")
        scale = reader.float32(f"{what} (scale)")
        if not (math.isfinite(mean) and abs(mean) <= _MEAN_ABS_MAX):
            raise CorruptFileError(f"{what} has an invalid mean {mean!r}")
        if not (math.isfinite(scale) and _SCALE_MIN <= scale <= _SCALE_MAX):
            raise CorruptFileError(f"{what} has an invalid scale {scale!r}")
        return cls(kind, lo, lo + span, mean, scale)

    def payload_bits(self, hist: np.ndarray) -> float:
        """Estimated range-coder bits of symbols lo.. with histogram `hist` under this model as
        constriction quantizes it: each symbol gets F(x + 1/2) - F(x - 1/2), the two end symbols
        also the tails beyond them (not the renormalized mass the parameter search uses), at
        least one 2**-24 quantum."""
        if self.hi == self.lo:
            return 0.0
        idx = np.flatnonzero(hist)
        xs = (self.lo + idx).astype(np.float64)
        tail = _tail_laplace if self.kind == LAPLACE else _tail_gaussian
        below = np.where(xs == self.lo, -np.inf, xs - 0.5)
        above = np.where(xs == self.hi, np.inf, xs + 0.5)
        mass = _interval_mass(below, above, self.mean, self.scale, tail)
        return float(-(hist[idx] * np.log2(np.maximum(mass, _LEAK))).sum())

    def entropy_model(self):
        m = constriction.stream.model
        family = m.QuantizedLaplace if self.kind == LAPLACE else m.QuantizedGaussian
        return family(self.lo, self.hi, self.mean, self.scale)


def _tail_laplace(d: np.ndarray, scale: float) -> np.ndarray:
    """P(X - mean > d) for d >= 0 under Laplace(mean, scale)."""
    return 0.5 * np.exp(-d / scale)


def _tail_gaussian(d: np.ndarray, scale: float) -> np.ndarray:
    """P(X - mean > d) for d >= 0 under Normal(mean, scale**2)."""
    from scipy.special import erfc  # 0.3-0.6 s to import: only where a Gaussian model is used, not at start-up

    return 0.5 * erfc(d / (scale * math.sqrt(2.0)))


def _interval_mass(a: np.ndarray, b: np.ndarray, mean: float, scale: float, tail) -> np.ndarray:
    """P(a < X < b) for a symmetric distribution given by its one-sided tail; written per side of
    the mean so that far-tail masses do not cancel to zero in 1 - F."""
    ta = tail(np.abs(a - mean), scale)
    tb = tail(np.abs(b - mean), scale)
    return np.where(a >= mean, ta - tb, np.where(b <= mean, tb - ta, 1.0 - ta - tb))


def _param_bits(kind: int, lo: int, hi: int, xs: np.ndarray, counts: np.ndarray, means: np.ndarray,
                scales: np.ndarray) -> np.ndarray:
    """Estimated payload bits of symbols xs (with counts) under the clipped, renormalized model,
    for every (mean, scale) pair of the arrays means and scales at once (one row each: the same
    element operations and the same per-row sums as one pair at a time)."""
    tail = _tail_laplace if kind == LAPLACE else _tail_gaussian
    means, scales = means[:, None], scales[:, None]
    total = _interval_mass(np.array([lo - 0.5]), np.array([hi + 0.5]), means, scales, tail)[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        mass = _interval_mass(xs - 0.5, xs + 0.5, means, scales, tail) / total[:, None]
        bits = -(counts * np.log2(np.maximum(mass, _LEAK))).sum(axis=1)
    return np.where(total > 0, bits, math.inf)


def fit_param(kind: int, lo: int, hist: np.ndarray) -> tuple[Param, float]:
    """Laplace or Gaussian parameters for a histogram of symbols lo.., chosen on a grid around the
    moment / maximum-likelihood estimate to minimize the estimated cost. Returns the model and its
    estimated total bits (parameters included)."""
    hi = lo + len(hist) - 1
    if hi == lo:
        return Param(kind, lo, hi), 8.0 * len(Param(kind, lo, hi).to_bytes())
    idx = np.flatnonzero(hist)
    xs = (lo + idx).astype(np.float64)
    c = hist[idx].astype(np.float64)
    n = c.sum()
    average = float((xs * c).sum() / n)
    if kind == LAPLACE:
        cum = np.cumsum(c)
        median = float(xs[np.searchsorted(cum, 0.5 * n)])
        # Symbols are integers, so the median is too, while the best continuous center of a
        # skewed histogram can sit between two symbols.
        centers = [median, average, median - 0.25, median + 0.25]
        base = float((np.abs(xs - median) * c).sum() / n)
    else:
        centers = [average]
        base = float(math.sqrt((((xs - average) ** 2) * c).sum() / n))
    # Scale factors 2**(-1.5) .. 2**1.5 in ~9% steps around each center; the parameters as the
    # file stores them (float32).
    candidates = [(center, float(np.clip(max(base, _SCALE_MIN) * 2.0 ** (step / 8), _SCALE_MIN, _SCALE_MAX)))
                  for center in centers for step in range(-12, 13)]
    pairs = np.array(candidates, dtype=np.float32).astype(np.float64)
    bits = _param_bits(kind, lo, hi, xs, c, pairs[:, 0], pairs[:, 1])
    best = 0
    for k in range(1, len(bits)):  # the first of equal costs, as a scan in candidate order keeps
        if bits[k] < bits[best]:
            best = k
    model = Param(kind, lo, hi, float(pairs[best, 0]), float(pairs[best, 1]))
    return model, float(bits[best]) + 8.0 * len(model.to_bytes())


class TensorStats:
    """What model choice needs of one tensor: its range, histogram and own table, and (computed
    on first use, then kept) its fitted Laplace and Gaussian models."""

    def __init__(self, symbols: np.ndarray):
        self.symbols = symbols
        self.own = Table.fit(symbols) if symbols.size else None
        self.lo = self.own.lo if symbols.size else 0
        self.hist = self.own.counts if symbols.size else None
        self._fits: dict[int, tuple[Param, float]] = {}

    @cached_property
    def own_bits(self) -> float:
        return self.own.bits()

    def fit(self, kind: int) -> tuple[Param, float]:
        """The fitted model of `kind` (LAPLACE or GAUSSIAN) and its estimated total bits."""
        if kind not in self._fits:
            self._fits[kind] = fit_param(kind, self.lo, self.hist)
        return self._fits[kind]


def pool(stats: list[TensorStats], members: list[int]) -> Table | None:
    """The shared table of the member tensors, or None when they hold no symbols."""
    parts = [stats[i].symbols for i in members if stats[i].symbols.size]
    return Table.fit(np.concatenate(parts)) if parts else None


def table_cost_bits(pooled: np.ndarray) -> float:
    """Estimated bits of a table holding `pooled` (counts over some offset; zeros at either end
    are trimmed) plus the ideal payload of the symbols it counts; 0 for an empty pool."""
    used = np.flatnonzero(pooled)
    if used.size == 0:
        return 0.0
    lo, hi = int(used[0]), int(used[-1])
    # The stored lo is an absolute symbol, but its varint size barely varies; hi - lo is exact.
    header = varint_sizes(np.array([lo, hi - lo])).sum()
    return 8.0 * float(header + varint_sizes(pooled[lo:hi + 1]).sum()) + self_information_bits(pooled[lo:hi + 1])


def check_histogram(symbols: np.ndarray, table: Table, what: str) -> None:
    """CorruptFileError unless `symbols` have exactly the histogram `table` states."""
    offset = symbols - table.lo
    if offset.size and (offset.min() < 0 or offset.max() > table.span):
        raise CorruptFileError(f"{what} decode to symbols outside their table")
    if not np.array_equal(np.bincount(offset, minlength=len(table.counts)), table.counts):
        raise CorruptFileError(f"{what} decode to symbols that do not match their frequency table")
