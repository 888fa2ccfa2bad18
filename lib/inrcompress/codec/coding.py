"""Lossless coding of quantized weight symbols (the entropy-coding stage of the paper).

The input is a list of 1-D integer arrays, one per quantized tensor in network order
(W0, b0, W1, b1, ...), every value a symbol in [0, 2**bitwidth - 1] with bitwidth in 1..16.
The decoder is given the tensor lengths (it knows them from the architecture) and the bitwidth,
so neither is stored here; everything else it needs is in the bytes, and the bytes end exactly
where the stream ends (the streams are self-delimiting given lengths and bitwidth).

Two methods:

* "brotli": brotli at quality 11 over the symbols as uint8 (bitwidth <= 8) or little-endian
  uint16. The brotli stream marks its own end.
* "arithmetic": a range coder from `constriction` with a static model. Several probability
  models are tried and the smallest total (model parameters + payload) is kept; the stream
  opens with one byte naming the model (`MODELS[i]`):

  - "global":     one frequency table over all tensors (what the paper did);
  - "per_tensor": one frequency table per tensor;
  - "laplace":    a quantized Laplace per tensor (mean, scale as float32);
  - "gaussian":   a quantized Gaussian per tensor (mean, std as float32);
  - "mixed":      each tensor picks one of the four above (a shared table that the tensors
                  choosing it pool, its own table, Laplace, Gaussian); the choice is stored
                  as 2 bits per tensor.
  - "adaptive":   no table at all: per tensor, counts that start from a prior and grow after
                  every coded symbol, each symbol spreading a triangular kernel over its
                  neighbours (a smooth histogram learnt on the fly). The prior is a flat floor
                  plus the histogram of all earlier tensors. Only offered when the used symbol
                  range spans at most ADAPTIVE_MAX_ALPHABET symbols.

Arithmetic stream layout (varint = unsigned LEB128; float32 little-endian):

    u8       model id (index into MODELS)
    [mixed only] ceil(T/4) bytes: 2-bit kind per tensor, tensor i in bits 2(i%4).., zero padded
    [shared table, if tensors that use it hold > 0 symbols]
    [per tensor with > 0 symbols not using the shared table: its table or parameters]
    varint   W, the number of 32-bit words of range-coder output
    W x u32  little-endian range-coder words (all coded tensors, in order, one stream)

    table      = varint lo, varint span (hi - lo), then span + 1 varint counts of lo..hi;
                 the counts sum to the number of symbols the table covers and the first and
                 last are > 0 (lo and hi are the true minimum and maximum).
    parameters = varint lo, varint span, and when span > 0: float32 mean, float32 scale.

Adaptive stream layout (model id 5):

    u8       model id
    [if any symbols] varint lo, varint span: the range of all symbols, span < ADAPTIVE_MAX_ALPHABET
    [if span > 0] one byte per tensor with > 0 symbols: bits 0-2 kernel radius index,
             bits 3-4 flat-floor index, bits 5-7 earlier-tensors weight index
    varint   W, then W x u32 range-coder words, as above: all symbols, then (if span > 0) the
             end mark 0x5A3C coded uniformly over 16 bits; the decoder must end exactly there

    Tensor with parameters (r, f, w) = (_ADAPT_RADII[.], _ADAPT_FLAT[.], _ADAPT_PREV[.]), over
    the alphabet lo..hi (index v = symbol - lo), with K[j] = r + 1 - |j| for |j| <= r:
        counts[v] = f * (r + 1)**2 + w * (number of symbols equal to v in earlier tensors)
        after each symbol v: counts[v + j] += 16 * K[j] for every v + j inside the alphabet
    and each symbol is coded with probabilities proportional to counts (integers, exact in the
    float64 array constriction is given).

A tensor whose symbols are all equal (span 0) costs no payload bits at all.
The decoder builds every probability from stored integers or float32 values only (counts go to
constriction as float64, which holds them exactly), so it reproduces the encoder's model
bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import brotli
import constriction
import numpy as np
from scipy.special import erfc

from inrcompress.errors import CorruptFileError

METHODS = ("arithmetic", "brotli")
MODELS = ("global", "per_tensor", "laplace", "gaussian", "mixed", "adaptive")
MAX_BITWIDTH = 16

# Per-tensor model kinds (the 2-bit codes of the "mixed" selector).
_SHARED, _OWN, _LAPLACE, _GAUSSIAN = 0, 1, 2, 3
# The kind every tensor gets under each pure model (MODELS index -> kind).
_PURE_KIND = {0: _SHARED, 1: _OWN, 2: _LAPLACE, 3: _GAUSSIAN}
_PURE_KIND_INV = {kind: mid for mid, kind in _PURE_KIND.items()}
_MIXED = 4
_ADAPTIVE = 5

# The adaptive model (see the module docstring). Its per-symbol cost grows with the alphabet, so
# it is only offered for (and the decoder only accepts) ranges up to this many symbols.
ADAPTIVE_MAX_ALPHABET = 4096
_ADAPT_RADII = (0, 1, 2, 4, 8, 16, 24, 32)
_ADAPT_FLAT = (1, 4, 16, 128)  # floor per symbol, in 1/16 of one symbol's kernel mass
_ADAPT_PREV = (0, 8, 16, 32, 64, 128, 256, 512)  # weight of an earlier symbol, 16 = one own symbol
_ADAPT_STEP = 16  # the increment scale: one coded symbol adds 16 * K
# Coded (uniform over 16 bits) after the last symbol: no stored histogram checks an adaptive
# stream, so this end mark and an exhausted decoder catch wrong tensor lengths and most damage.
_ADAPT_END = 0x5A3C

# constriction's default range coder quantizes probabilities to 24 bits and gives every symbol
# of a model's alphabet at least one quantum, so no symbol is ever cheaper to estimate than this.
_LEAK = 2.0 ** -24
# Bounds on the stored float32 parameters. constriction panics (a BaseException, with a Rust
# backtrace on stderr) on a non-positive scale, so the decoder refuses anything outside these
# before constriction sees it, and the encoder clamps into them.
# Both are exact float32 values, so clamping and then rounding to float32 stays inside them.
_SCALE_MIN, _SCALE_MAX = 2.0 ** -7, 2.0 ** 20
_MEAN_ABS_MAX = 2.0 ** 20
_MAX_VARINT_BYTES = 10  # a uint64


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------


def encode_symbols(tensors: Sequence[np.ndarray], bitwidth: int, method: str, model: str | None = None) -> bytes:
    """Code `tensors` (1-D integer arrays of symbols in [0, 2**bitwidth - 1]) losslessly.

    method "arithmetic" tries every model in MODELS and returns the smallest stream, or only
    `model` if given (e.g. "global" to reproduce the paper); "brotli" returns a brotli stream of
    the packed symbols (`model` must be None). Raises ValueError on invalid input.
    """
    arrays = _check_tensors(tensors, bitwidth)
    if method == "brotli":
        if model is not None:
            raise ValueError("brotli has no probability model to choose")
        return _brotli_encode(arrays, bitwidth)
    if method == "arithmetic":
        if model is not None:
            if model not in MODELS:
                raise ValueError(f"model must be one of {MODELS}, got {model!r}")
            stream = _arithmetic_streams(arrays, bitwidth, only=MODELS.index(model))[0]
            if stream is None:
                raise ValueError(f"model {model!r} does not apply here (symbol range wider than "
                                 f"{ADAPTIVE_MAX_ALPHABET})")
            return stream
        # Smallest wins; on a tie the lower model id (the paper's global table first).
        return min((s for s in _arithmetic_streams(arrays, bitwidth) if s is not None), key=len)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def decode_symbols(data: bytes, lengths: Sequence[int], bitwidth: int, method: str) -> list[np.ndarray]:
    """Invert encode_symbols: int64 arrays of the given `lengths`.

    `lengths`, `bitwidth` and `method` are trusted (they come from a validated header);
    anything wrong with `data` raises CorruptFileError with a one-line message. No memory is
    allocated from a size read out of `data` before it has been checked against the known
    symbol count and alphabet.
    """
    lengths = [int(n) for n in lengths]
    if any(n < 0 for n in lengths):
        raise ValueError("tensor lengths must be >= 0")
    _check_bitwidth(bitwidth)
    data = bytes(data)
    if method == "brotli":
        return _brotli_decode(data, lengths, bitwidth)
    if method == "arithmetic":
        return _arithmetic_decode(data, lengths, bitwidth)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def model_sizes(tensors: Sequence[np.ndarray], bitwidth: int) -> dict[str, int]:
    """Bytes of the arithmetic stream under each model of MODELS (model byte, parameters and
    payload included); a model that does not apply to these symbols ("adaptive" over a range
    wider than ADAPTIVE_MAX_ALPHABET) is left out. min() of the values is what
    encode_symbols(..., "arithmetic") returns; the "global" entry is the paper's scheme."""
    arrays = _check_tensors(tensors, bitwidth)
    return {name: len(stream) for name, stream in zip(MODELS, _arithmetic_streams(arrays, bitwidth))
            if stream is not None}


def arithmetic_model_name(data: bytes) -> str:
    """The model (an entry of MODELS) an arithmetic stream was coded with."""
    if not data or data[0] >= len(MODELS):
        raise CorruptFileError("unknown arithmetic-coding model id" if data else "empty arithmetic stream")
    return MODELS[data[0]]


def empirical_entropy_bits(tensors: Sequence[np.ndarray]) -> float:
    """n * H in bits, H the zeroth-order entropy of all symbols pooled: the ideal payload of the
    global-table model without the table itself. 0.0 for no symbols."""
    arrays = [np.asarray(t).ravel() for t in tensors]
    arrays = [a for a in arrays if a.size]
    if not arrays:
        return 0.0
    pooled = np.concatenate(arrays).astype(np.int64)
    counts = np.bincount(pooled - pooled.min())
    return float(_self_information_bits(counts[counts > 0]))


# ----------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------


def _check_bitwidth(bitwidth: int) -> None:
    if isinstance(bitwidth, bool) or not isinstance(bitwidth, (int, np.integer)) or not 1 <= bitwidth <= MAX_BITWIDTH:
        raise ValueError(f"bitwidth must be an integer in 1..{MAX_BITWIDTH}, got {bitwidth!r}")


def _check_tensors(tensors: Sequence[np.ndarray], bitwidth: int) -> list[np.ndarray]:
    _check_bitwidth(bitwidth)
    max_symbol = (1 << int(bitwidth)) - 1
    arrays = []
    for i, t in enumerate(tensors):
        a = np.asarray(t)
        if a.ndim != 1:
            raise ValueError(f"tensor {i} must be 1-D, got shape {a.shape}")
        if a.size and not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"tensor {i} must hold integers, got dtype {a.dtype}")
        a = a.astype(np.int64)
        if a.size and (a.min() < 0 or a.max() > max_symbol):
            raise ValueError(f"tensor {i} has symbols outside [0, {max_symbol}] (bitwidth {bitwidth})")
        arrays.append(a)
    return arrays


# ----------------------------------------------------------------------------------------------
# Brotli
# ----------------------------------------------------------------------------------------------


def _symbol_dtype(bitwidth: int) -> np.dtype:
    return np.dtype(np.uint8) if bitwidth <= 8 else np.dtype("<u2")


def _brotli_encode(arrays: list[np.ndarray], bitwidth: int) -> bytes:
    dtype = _symbol_dtype(bitwidth)
    raw = b"".join(a.astype(dtype).tobytes() for a in arrays)
    return brotli.compress(raw, quality=11)


def _brotli_decode(data: bytes, lengths: list[int], bitwidth: int) -> list[np.ndarray]:
    dtype = _symbol_dtype(bitwidth)
    expected = sum(lengths) * dtype.itemsize
    decompressor = brotli.Decompressor()
    try:
        # The limit stops a "brotli bomb" (a few kB that expand to gigabytes): the output buffer
        # stops growing once it reaches expected + 1 bytes (plus at most one internal block).
        out = decompressor.process(data, output_buffer_limit=expected + 1)
        finished = decompressor.is_finished()
    except brotli.error as exc:
        raise CorruptFileError(f"brotli payload is damaged ({exc})") from None
    if len(out) > expected:
        raise CorruptFileError(f"brotli payload expands to more than the {expected} bytes the architecture needs")
    if not finished:
        raise CorruptFileError("brotli payload is truncated")
    if len(out) != expected:
        raise CorruptFileError(f"brotli payload expands to {len(out)} bytes, the architecture needs {expected}")
    symbols = np.frombuffer(out, dtype=dtype).astype(np.int64)
    max_symbol = (1 << bitwidth) - 1
    if symbols.size and symbols.max() > max_symbol:
        raise CorruptFileError(f"brotli payload holds a symbol above {max_symbol} (bitwidth {bitwidth})")
    return _split(symbols, lengths)


def _split(symbols: np.ndarray, lengths: list[int]) -> list[np.ndarray]:
    bounds = np.cumsum([0] + lengths)
    return [symbols[bounds[i]:bounds[i + 1]].copy() for i in range(len(lengths))]


# ----------------------------------------------------------------------------------------------
# Varints and a bounds-checked reader
# ----------------------------------------------------------------------------------------------


def _varint_sizes(values: np.ndarray) -> np.ndarray:
    """Bytes of the LEB128 encoding of each value (>= 0)."""
    v = np.asarray(values, dtype=np.uint64)
    sizes = np.ones(v.shape, dtype=np.int64)
    for j in range(1, _MAX_VARINT_BYTES):
        sizes += v >= np.uint64(1) << np.uint64(7 * j)
    return sizes


def _encode_varints(values) -> bytes:
    """Unsigned LEB128 of every value, concatenated (vectorized: tables have up to 65536)."""
    v = np.atleast_1d(np.asarray(values, dtype=np.uint64))
    if v.size == 0:
        return b""
    sizes = _varint_sizes(v)
    starts = np.cumsum(sizes) - sizes
    out = np.zeros(int(sizes.sum()), dtype=np.uint8)
    for j in range(int(sizes.max())):
        sel = sizes > j
        group = (v[sel] >> np.uint64(7 * j)) & np.uint64(0x7F)
        more = (sizes[sel] > j + 1).astype(np.uint64) << np.uint64(7)
        out[starts[sel] + j] = (group | more).astype(np.uint8)
    return out.tobytes()


class _Reader:
    """Reads a byte string front to back; every overrun is a CorruptFileError."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int, what: str) -> bytes:
        if n > self.remaining:
            raise CorruptFileError(f"arithmetic stream is truncated in the {what}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def float32(self, what: str) -> float:
        return float(np.frombuffer(self.take(4, what), dtype="<f4")[0])

    def varint(self, limit: int, what: str) -> int:
        """One varint, which must be <= limit."""
        value = 0
        for j in range(_MAX_VARINT_BYTES):
            byte = self.u8(what)
            value |= (byte & 0x7F) << (7 * j)
            if byte < 0x80:
                break
        else:
            raise CorruptFileError(f"overlong number in the {what}")
        if value > limit:
            raise CorruptFileError(f"{what} value {value} exceeds the limit {limit}")
        return value

    def varints(self, count: int, limit: int, what: str) -> np.ndarray:
        """`count` varints, each <= limit, as int64 (vectorized). `count` must already be bounded
        by the caller; the slice read is at most count * 10 bytes of the existing data."""
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        if self.remaining == 0:
            raise CorruptFileError(f"arithmetic stream is truncated in the {what}")
        window = np.frombuffer(self.data, dtype=np.uint8, count=min(self.remaining, count * _MAX_VARINT_BYTES),
                               offset=self.pos)
        ends = np.flatnonzero(window < 0x80)[:count]
        if ends.size < count:
            raise CorruptFileError(f"arithmetic stream is truncated in the {what}")
        starts = np.concatenate(([0], ends[:-1] + 1))
        sizes = ends - starts + 1
        if sizes.max() > 9:  # 9 x 7 = 63 bits: more can only be garbage here
            raise CorruptFileError(f"overlong number in the {what}")
        used = window[:ends[-1] + 1].astype(np.uint64)
        shifts = (np.arange(used.size) - np.repeat(starts, sizes)).astype(np.uint64) * np.uint64(7)
        values = np.bitwise_or.reduceat((used & np.uint64(0x7F)) << shifts, starts)
        if values.max() > np.uint64(limit):
            raise CorruptFileError(f"{what} value {int(values.max())} exceeds the limit {limit}")
        self.pos += int(ends[-1]) + 1
        return values.astype(np.int64)


# ----------------------------------------------------------------------------------------------
# Probability models
# ----------------------------------------------------------------------------------------------


def _self_information_bits(counts: np.ndarray) -> float:
    """-sum c log2(c / n) over positive counts: the ideal cost of coding them with their own
    empirical distribution."""
    c = counts[counts > 0].astype(np.float64)
    if c.size == 0:
        return 0.0
    return float(-(c * np.log2(c / c.sum())).sum())


def _call_constriction(fn, *args):
    """Run a constriction call; any failure on decoding is a corrupt stream. Rust panics arrive
    as pyo3's PanicException, a BaseException, so that one is caught by name."""
    try:
        return fn(*args)
    except BaseException as exc:
        if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
            raise  # KeyboardInterrupt, SystemExit
        raise CorruptFileError(f"arithmetic payload is damaged ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})") from None


@dataclass(frozen=True)
class _Table:
    """Frequency table over symbols lo..lo+len(counts)-1 (counts are int64, first and last > 0)."""

    lo: int
    counts: np.ndarray

    @property
    def span(self) -> int:
        return len(self.counts) - 1

    @classmethod
    def fit(cls, symbols: np.ndarray) -> _Table:
        lo = int(symbols.min())
        return cls(lo, np.bincount(symbols - lo).astype(np.int64))

    def to_bytes(self) -> bytes:
        return _encode_varints([self.lo, self.span]) + _encode_varints(self.counts)

    @classmethod
    def parse(cls, reader: _Reader, n: int, max_symbol: int, what: str) -> _Table:
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
        return 8.0 * len(self.to_bytes()) + _self_information_bits(self.counts)

    def entropy_model(self):
        # Integer counts as float64 are exact, so encoder and decoder hand constriction the very
        # same numbers and it quantizes them identically.
        return constriction.stream.model.Categorical(self.counts.astype(np.float64), perfect=False)


@dataclass(frozen=True)
class _Param:
    """Quantized Laplace or Gaussian over lo..hi; mean and scale are float32-exact floats
    (scale = Laplace b, or Gaussian standard deviation, in symbol units)."""

    kind: int
    lo: int
    hi: int
    mean: float = 0.0
    scale: float = 1.0

    def to_bytes(self) -> bytes:
        head = _encode_varints([self.lo, self.hi - self.lo])
        if self.hi == self.lo:
            return head
        return head + np.array([self.mean, self.scale], dtype="<f4").tobytes()

    @classmethod
    def parse(cls, reader: _Reader, kind: int, max_symbol: int, what: str) -> _Param:
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

    def entropy_model(self):
        m = constriction.stream.model
        family = m.QuantizedLaplace if self.kind == _LAPLACE else m.QuantizedGaussian
        return family(self.lo, self.hi, self.mean, self.scale)


def _tail_laplace(d: np.ndarray, scale: float) -> np.ndarray:
    """P(X - mean > d) for d >= 0 under Laplace(mean, scale)."""
    return 0.5 * np.exp(-d / scale)


def _tail_gaussian(d: np.ndarray, scale: float) -> np.ndarray:
    """P(X - mean > d) for d >= 0 under Normal(mean, scale**2)."""
    return 0.5 * erfc(d / (scale * math.sqrt(2.0)))


def _interval_mass(a: np.ndarray, b: np.ndarray, mean: float, scale: float, tail) -> np.ndarray:
    """P(a < X < b) for a symmetric distribution given by its one-sided tail; written per side of
    the mean so that far-tail masses do not cancel to zero in 1 - F."""
    ta = tail(np.abs(a - mean), scale)
    tb = tail(np.abs(b - mean), scale)
    return np.where(a >= mean, ta - tb, np.where(b <= mean, tb - ta, 1.0 - ta - tb))


def _param_bits(kind: int, lo: int, hi: int, xs: np.ndarray, counts: np.ndarray, mean: float, scale: float) -> float:
    """Estimated payload bits of symbols xs (with counts) under the clipped, renormalized model."""
    tail = _tail_laplace if kind == _LAPLACE else _tail_gaussian
    total = float(_interval_mass(np.array([lo - 0.5]), np.array([hi + 0.5]), mean, scale, tail)[0])
    if not total > 0:
        return math.inf
    mass = _interval_mass(xs - 0.5, xs + 0.5, mean, scale, tail) / total
    return float(-(counts * np.log2(np.maximum(mass, _LEAK))).sum())


def _fit_param(kind: int, lo: int, hist: np.ndarray) -> tuple[_Param, float]:
    """Laplace or Gaussian parameters for a histogram of symbols lo.., chosen on a grid around the
    moment / maximum-likelihood estimate to minimize the estimated cost. Returns the model and its
    estimated total bits (parameters included)."""
    hi = lo + len(hist) - 1
    if hi == lo:
        return _Param(kind, lo, hi), 8.0 * len(_Param(kind, lo, hi).to_bytes())
    idx = np.flatnonzero(hist)
    xs = (lo + idx).astype(np.float64)
    c = hist[idx].astype(np.float64)
    n = c.sum()
    average = float((xs * c).sum() / n)
    if kind == _LAPLACE:
        cum = np.cumsum(c)
        median = float(xs[np.searchsorted(cum, 0.5 * n)])
        # Symbols are integers, so the median is too, while the best continuous center of a
        # skewed histogram can sit between two symbols.
        centers = [median, average, median - 0.25, median + 0.25]
        base = float((np.abs(xs - median) * c).sum() / n)
    else:
        centers = [average]
        base = float(math.sqrt((((xs - average) ** 2) * c).sum() / n))
    best = None
    for center in centers:
        for step in range(-12, 13):  # scale factors 2**(-1.5) .. 2**1.5 in ~9% steps
            scale = float(np.clip(max(base, _SCALE_MIN) * 2.0 ** (step / 8), _SCALE_MIN, _SCALE_MAX))
            mean32, scale32 = (float(v) for v in np.array([center, scale], dtype=np.float32))
            bits = _param_bits(kind, lo, hi, xs, c, mean32, scale32)
            if best is None or bits < best[0]:
                best = (bits, mean32, scale32)
    model = _Param(kind, lo, hi, best[1], best[2])
    return model, best[0] + 8.0 * len(model.to_bytes())


# ----------------------------------------------------------------------------------------------
# Arithmetic coding
# ----------------------------------------------------------------------------------------------


@dataclass
class _TensorStats:
    """What model choice needs of one tensor: its range and histogram, and fitted models."""

    symbols: np.ndarray
    lo: int = 0
    hist: np.ndarray | None = None
    own: _Table | None = None
    own_bits: float = 0.0
    fits: dict | None = None  # kind -> (_Param, estimated bits)

    @classmethod
    def of(cls, symbols: np.ndarray) -> _TensorStats:
        stats = cls(symbols)
        if symbols.size:
            stats.own = _Table.fit(symbols)
            stats.lo, stats.hist = stats.own.lo, stats.own.counts
            stats.own_bits = stats.own.bits()
            stats.fits = {k: _fit_param(k, stats.lo, stats.hist) for k in (_LAPLACE, _GAUSSIAN)}
        return stats


def _pool(stats: list[_TensorStats], members: list[int]) -> _Table | None:
    """The shared table of the member tensors, or None when they hold no symbols."""
    parts = [stats[i].symbols for i in members if stats[i].symbols.size]
    return _Table.fit(np.concatenate(parts)) if parts else None


def _table_cost_bits(pooled: np.ndarray) -> float:
    """Estimated bits of a table holding `pooled` (counts over some offset; zeros at either end
    are trimmed) plus the ideal payload of the symbols it counts; 0 for an empty pool."""
    used = np.flatnonzero(pooled)
    if used.size == 0:
        return 0.0
    lo, hi = int(used[0]), int(used[-1])
    # The stored lo is an absolute symbol, but its varint size barely varies; hi - lo is exact.
    header = _varint_sizes(np.array([lo, hi - lo])).sum()
    return 8.0 * float(header + _varint_sizes(pooled[lo:hi + 1]).sum()) + _self_information_bits(pooled[lo:hi + 1])


def _mixed_kinds(stats: list[_TensorStats]) -> list[int]:
    """Per-tensor kinds for the "mixed" model, by coordinate descent on the estimated total.

    A tensor either joins the shared table or takes its cheapest own option (own table, Laplace,
    Gaussian). Pooled tensors coded with the pool's table cost exactly the pool's self-information,
    so the cost of joining is table_cost(pool + h) - table_cost(pool), computed in O(alphabet)
    from histograms. Each move lowers the estimate, so sweeps terminate; the descent starts once
    from "all shared" (the paper's model) and once from "none shared", and the cheaper end wins.
    """
    nonempty = [i for i, s in enumerate(stats) if s.symbols.size]
    if not nonempty:
        return [_SHARED] * len(stats)
    base = min(stats[i].lo for i in nonempty)
    width = max(stats[i].lo + len(stats[i].hist) for i in nonempty) - base
    alone: dict[int, tuple[float, int]] = {}
    for i in nonempty:
        s = stats[i]
        options = {_OWN: s.own_bits, _LAPLACE: s.fits[_LAPLACE][1], _GAUSSIAN: s.fits[_GAUSSIAN][1]}
        kind = min(options, key=lambda k: (options[k], k))
        alone[i] = (options[kind], kind)

    def place(pooled: np.ndarray, i: int, sign: int) -> None:
        s = stats[i]
        pooled[s.lo - base:s.lo - base + len(s.hist)] += sign * s.hist

    def descend(members: set[int]) -> tuple[float, set[int]]:
        pooled = np.zeros(width, dtype=np.int64)
        for i in members:
            place(pooled, i, +1)
        for _ in range(20):
            changed = False
            for i in nonempty:
                inside = i in members
                with_i = pooled.copy()
                place(with_i, i, 0 if inside else +1)
                without_i = pooled.copy()
                place(without_i, i, -1 if inside else 0)
                join = _table_cost_bits(with_i) - _table_cost_bits(without_i) < alone[i][0]
                if join != inside:
                    changed = True
                    members = members | {i} if join else members - {i}
                    pooled = with_i if join else without_i
            if not changed:
                break
        total = _table_cost_bits(pooled) + sum(alone[i][0] for i in nonempty if i not in members)
        return total, members

    _, members = min(descend(set(nonempty)), descend(set()), key=lambda r: r[0])
    return [_SHARED if (i in members or i not in alone) else alone[i][1] for i in range(len(stats))]


def _pack_kinds(kinds: list[int]) -> bytes:
    out = bytearray((len(kinds) + 3) // 4)
    for i, k in enumerate(kinds):
        out[i // 4] |= k << (2 * (i % 4))
    return bytes(out)


def _unpack_kinds(raw: bytes, count: int) -> list[int]:
    kinds = [(raw[i // 4] >> (2 * (i % 4))) & 3 for i in range(count)]
    if _pack_kinds(kinds) != raw:
        raise CorruptFileError("model selector has nonzero padding bits")
    return kinds


def _encode_plan(model_id: int, kinds: list[int], stats: list[_TensorStats]) -> bytes:
    """The arithmetic stream for one model (see the module docstring for the layout)."""
    out = bytearray([model_id])
    if model_id == _MIXED:
        out += _pack_kinds(kinds)
    models: list = [None] * len(stats)
    shared = _pool(stats, [i for i, k in enumerate(kinds) if k == _SHARED])
    if shared is not None:
        out += shared.to_bytes()
    for i, (s, k) in enumerate(zip(stats, kinds)):
        if not s.symbols.size:
            continue
        if k == _SHARED:
            models[i] = shared
        else:
            models[i] = s.own if k == _OWN else s.fits[k][0]
            out += models[i].to_bytes()
    encoder = constriction.stream.queue.RangeEncoder()
    cache: dict[int, object] = {}
    for s, model in zip(stats, models):
        if model is None:
            continue
        if isinstance(model, _Table):
            if model.span == 0:
                continue
            entropy_model = cache.setdefault(id(model), model.entropy_model())
            encoder.encode((s.symbols - model.lo).astype(np.int32), entropy_model)
        elif model.hi > model.lo:
            encoder.encode(s.symbols.astype(np.int32), model.entropy_model())
    words = encoder.get_compressed()
    out += _encode_varints([len(words)])
    out += np.asarray(words, dtype="<u4").tobytes()
    return bytes(out)


def _arithmetic_streams(arrays: list[np.ndarray], bitwidth: int, only: int | None = None) -> list[bytes | None]:
    """One stream per entry of MODELS, in that order (or just the one with id `only`); None for
    a model that does not apply."""
    if only == _ADAPTIVE:
        return [_adaptive_encode(arrays)]
    stats = [_TensorStats.of(a) for a in arrays]
    streams = []
    for model_id in range(len(MODELS)) if only is None else [only]:
        if model_id == _ADAPTIVE:
            streams.append(_adaptive_encode(arrays))
            continue
        kinds = _mixed_kinds(stats) if model_id == _MIXED else [_PURE_KIND[model_id]] * len(stats)
        streams.append(_encode_plan(model_id, kinds, stats))
    return streams


def _arithmetic_decode(data: bytes, lengths: list[int], bitwidth: int) -> list[np.ndarray]:
    max_symbol = (1 << bitwidth) - 1
    reader = _Reader(data)
    model_id = reader.u8("model id")
    if model_id >= len(MODELS):
        raise CorruptFileError(f"unknown arithmetic-coding model id {model_id}")
    if model_id == _ADAPTIVE:
        return _adaptive_decode(reader, lengths, max_symbol)
    if model_id == _MIXED:
        kinds = _unpack_kinds(reader.take((len(lengths) + 3) // 4, "model selector"), len(lengths))
    else:
        kinds = [_PURE_KIND[model_id]] * len(lengths)

    members = [i for i, k in enumerate(kinds) if k == _SHARED and lengths[i]]
    shared_n = sum(lengths[i] for i in members)
    shared = _Table.parse(reader, shared_n, max_symbol, "shared table") if shared_n else None
    models: list = [None] * len(lengths)
    for i, (n, k) in enumerate(zip(lengths, kinds)):
        if not n:
            continue
        if k == _SHARED:
            models[i] = shared
        elif k == _OWN:
            models[i] = _Table.parse(reader, n, max_symbol, f"table of tensor {i}")
        else:
            models[i] = _Param.parse(reader, k, max_symbol, f"{MODELS[_PURE_KIND_INV[k]]} model of tensor {i}")

    decoder = _payload_decoder(reader)

    out = []
    cache: dict[int, object] = {}
    for i, (n, model) in enumerate(zip(lengths, models)):
        if model is None:
            out.append(np.zeros(0, dtype=np.int64))
        elif isinstance(model, _Table):
            if model.span == 0:
                out.append(np.full(n, model.lo, dtype=np.int64))
                continue
            entropy_model = cache.get(id(model))
            if entropy_model is None:
                entropy_model = cache[id(model)] = _call_constriction(model.entropy_model)
            decoded = _call_constriction(decoder.decode, entropy_model, n)
            out.append(np.asarray(decoded, dtype=np.int64) + model.lo)
        elif model.hi == model.lo:
            out.append(np.full(n, model.lo, dtype=np.int64))
        else:
            decoded = np.asarray(_call_constriction(decoder.decode, model.entropy_model(), n), dtype=np.int64)
            if decoded.min() != model.lo or decoded.max() != model.hi:
                raise CorruptFileError(f"tensor {i} decodes outside the symbol range its model declares")
            out.append(decoded)

    # Tables state the exact histogram of what they code: any payload damage that survives the
    # range decoder almost surely breaks it.
    for i, model in enumerate(models):
        if isinstance(model, _Table) and model is not shared:
            _check_histogram(out[i], model, f"tensor {i}")
    if shared is not None:
        _check_histogram(np.concatenate([out[i] for i in members]), shared, "the shared-table tensors")
    return out


def _payload_decoder(reader: _Reader):
    """A range decoder over the payload, which must end the stream exactly."""
    num_words = reader.varint(1 << 62, "payload length")
    if 4 * num_words > reader.remaining:
        raise CorruptFileError(f"arithmetic payload is truncated ({reader.remaining} of {4 * num_words} bytes)")
    if 4 * num_words < reader.remaining:
        raise CorruptFileError(f"arithmetic stream has {reader.remaining - 4 * num_words} bytes after its payload")
    words = np.frombuffer(reader.take(4 * num_words, "payload"), dtype="<u4").astype(np.uint32)
    return _call_constriction(constriction.stream.queue.RangeDecoder, words)


def _check_histogram(symbols: np.ndarray, table: _Table, what: str) -> None:
    offset = symbols - table.lo
    if offset.size and (offset.min() < 0 or offset.max() > table.span):
        raise CorruptFileError(f"{what} decode to symbols outside their table")
    if not np.array_equal(np.bincount(offset, minlength=len(table.counts)), table.counts):
        raise CorruptFileError(f"{what} decode to symbols that do not match their frequency table")


# ----------------------------------------------------------------------------------------------
# The adaptive model
# ----------------------------------------------------------------------------------------------


def _kernel(radius: int) -> np.ndarray:
    """The triangular increment K[j] = radius + 1 - |j| for j = -radius..radius (int64)."""
    return radius + 1 - np.abs(np.arange(-radius, radius + 1, dtype=np.int64))


def _unpack_adaptive(param: int) -> tuple[int, int, int]:
    """(radius, flat floor, earlier-tensors weight) of a parameter byte (every byte is valid)."""
    return _ADAPT_RADII[param & 7], _ADAPT_FLAT[(param >> 3) & 3], _ADAPT_PREV[param >> 5]


def _adaptive_run(coder, symbols: np.ndarray | None, n: int, alphabet: int, prev: np.ndarray, param: int) -> np.ndarray:
    """Code one tensor with the adaptive model: encode `symbols` (offsets into the alphabet), or
    decode `n` of them when `symbols` is None. The encoder and decoder run exactly this loop,
    so both hand constriction the very same integer counts before every symbol."""
    radius, flat, weight = _unpack_adaptive(param)
    kernel = (_ADAPT_STEP * _kernel(radius)).astype(np.float64)
    # Integers below 2**53 throughout: float64 holds them exactly, and additions stay exact.
    counts = float(flat * (radius + 1) ** 2) + float(weight) * prev.astype(np.float64)
    categorical = constriction.stream.model.Categorical
    out = np.empty(n, dtype=np.int64)
    for t in range(n):
        model = categorical(counts, lazy=True)
        if symbols is None:
            v = int(coder.decode(model))
        else:
            v = int(symbols[t])
            coder.encode(v, model)
        out[t] = v
        a, b = max(0, v - radius), min(alphabet, v + radius + 1)
        counts[a:b] += kernel[a - (v - radius):b - (v - radius)]
    return out


def _adaptive_costs(x: np.ndarray, alphabet: int, prev: np.ndarray) -> tuple[float, int]:
    """Estimated payload bits of offsets `x` under the best parameter byte, and that byte.

    For each radius, T[t] = sum_j K[j] * #{u < t: x_u = x_t - j} comes from the per-step
    histogram gathered around x_t (in chunks: rows x alphabet at a time); the floor and weight
    then enter linearly, so the 32 (floor, weight) pairs cost one pass of n each."""
    n = len(x)
    rmax = max(_ADAPT_RADII)
    offsets = np.arange(-rmax, rmax + 1)
    gathered = np.zeros((n, offsets.size), dtype=np.int32)  # gathered[t, k] = #{u < t: x_u = x_t + offsets[k]}
    chunk = max(1, (1 << 20) // alphabet)
    running = np.zeros(alphabet, dtype=np.int64)
    for s in range(0, n, chunk):
        xs = x[s:s + chunk]
        onehot = np.zeros((len(xs), alphabet), dtype=np.int64)
        onehot[np.arange(len(xs)), xs] = 1
        before = running + np.cumsum(onehot, axis=0) - onehot
        cols = xs[:, None] - offsets[None, :]  # x_t - j for j = offsets (symmetric kernels)
        inside = (cols >= 0) & (cols < alphabet)
        rows = np.broadcast_to(np.arange(len(xs))[:, None], cols.shape)
        gathered[s:s + len(xs)] = np.where(inside, before[rows, np.clip(cols, 0, alphabet - 1)], 0)
        running = before[-1] + onehot[-1]
    prev_at = prev[x].astype(np.float64)
    prev_total = float(prev.sum())
    best = (math.inf, 0)
    for ri, radius in enumerate(_ADAPT_RADII):
        k = np.zeros(offsets.size, dtype=np.int64)
        k[rmax - radius:rmax + radius + 1] = _kernel(radius)
        own = _ADAPT_STEP * (gathered @ k).astype(np.float64)
        # Kernel mass that lands inside the alphabet for each symbol, cumulated before step t.
        in_range = np.convolve(np.ones(alphabet), _kernel(radius).astype(np.float64))[radius:radius + alphabet]
        grown = _ADAPT_STEP * np.concatenate(([0.0], np.cumsum(in_range[x])[:-1]))
        for fi, flat in enumerate(_ADAPT_FLAT):
            floor = float(flat * (radius + 1) ** 2)
            for wi, weight in enumerate(_ADAPT_PREV):
                if weight and not prev_total:
                    continue
                num = floor + weight * prev_at + own
                den = floor * alphabet + weight * prev_total + grown
                bits = float(np.log2(den).sum() - np.log2(num).sum())
                if bits < best[0]:
                    best = (bits, ri | fi << 3 | wi << 5)
    return best


def _adaptive_encode(arrays: list[np.ndarray]) -> bytes | None:
    """The adaptive stream, or None when the symbols span more than ADAPTIVE_MAX_ALPHABET."""
    out = bytearray([_ADAPTIVE])
    nonempty = [a for a in arrays if a.size]
    encoder = constriction.stream.queue.RangeEncoder()
    if nonempty:
        lo = min(int(a.min()) for a in nonempty)
        hi = max(int(a.max()) for a in nonempty)
        if hi - lo + 1 > ADAPTIVE_MAX_ALPHABET:
            return None
        out += _encode_varints([lo, hi - lo])
        if hi > lo:
            alphabet = hi - lo + 1
            prev = np.zeros(alphabet, dtype=np.int64)
            params = []
            for a in nonempty:
                x = a - lo
                params.append(_adaptive_costs(x, alphabet, prev)[1])
                prev += np.bincount(x, minlength=alphabet)
            out += bytes(params)
            prev[:] = 0
            for a, param in zip(nonempty, params):
                x = a - lo
                _adaptive_run(encoder, x, len(x), alphabet, prev, param)
                prev += np.bincount(x, minlength=alphabet)
            encoder.encode(_ADAPT_END, constriction.stream.model.Uniform(1 << 16))
    words = encoder.get_compressed()
    out += _encode_varints([len(words)])
    out += np.asarray(words, dtype="<u4").tobytes()
    return bytes(out)


def _adaptive_decode(reader: _Reader, lengths: list[int], max_symbol: int) -> list[np.ndarray]:
    nonempty = [i for i, n in enumerate(lengths) if n]
    out = [np.zeros(0, dtype=np.int64) for _ in lengths]
    if not nonempty:
        _payload_decoder(reader)  # an empty payload, and nothing after it
        return out
    lo = reader.varint(max_symbol, "adaptive model (lowest symbol)")
    span = reader.varint(min(max_symbol - lo, ADAPTIVE_MAX_ALPHABET - 1), "adaptive model (symbol range)")
    if span == 0:
        _payload_decoder(reader)
        for i in nonempty:
            out[i] = np.full(lengths[i], lo, dtype=np.int64)
        return out
    params = reader.take(len(nonempty), "adaptive model parameters")
    decoder = _payload_decoder(reader)
    alphabet = span + 1
    prev = np.zeros(alphabet, dtype=np.int64)
    for i, param in zip(nonempty, params):
        x = _call_constriction(_adaptive_run, decoder, None, lengths[i], alphabet, prev, param)
        prev += np.bincount(x, minlength=alphabet)
        out[i] = x + lo
    end = _call_constriction(decoder.decode, constriction.stream.model.Uniform(1 << 16))
    if end != _ADAPT_END or not decoder.maybe_exhausted():
        raise CorruptFileError("adaptive payload does not end where the tensor lengths say (damaged, or "
                               "another architecture)")
    return out
