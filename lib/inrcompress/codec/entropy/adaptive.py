"""The adaptive entropy model (id 5): no table at all.

Per tensor, counts start from a prior and grow after every coded symbol, each symbol spreading
a triangular kernel over its neighbours (a smooth histogram learnt on the fly). The prior is a
flat floor plus the histogram of all earlier tensors. Only offered when the used symbol range
spans at most ADAPTIVE_MAX_ALPHABET symbols.

Body layout (after the model id byte):

    [if any symbols] varint lo, varint span: the range of all symbols, span < ADAPTIVE_MAX_ALPHABET
    [if span > 0] one byte per tensor with > 0 symbols: bits 0-2 kernel radius index,
             bits 3-4 flat-floor index, bits 5-7 earlier-tensors weight index
    varint   W, then W x u32 range-coder words: all symbols, then (if span > 0) the
             end mark 0x5A3C coded uniformly over 16 bits; the decoder must end exactly there

    Tensor with parameters (r, f, w) = (_ADAPT_RADII[.], _ADAPT_FLAT[.], _ADAPT_PREV[.]), over
    the alphabet lo..hi (index v = symbol - lo), with K[j] = r + 1 - |j| for |j| <= r:
        counts[v] = f * (r + 1)**2 + w * (number of symbols equal to v in earlier tensors)
        after each symbol v: counts[v + j] += 16 * K[j] for every v + j inside the alphabet
    and each symbol is coded with probabilities proportional to counts (integers, exact in the
    float64 array constriction is given).

cost_bits does not run the (per-symbol, Python-loop) coder: it sums the code lengths the
parameter search computes anyway, plus the end mark, rounded up to whole words.
"""

from __future__ import annotations

import math

import constriction
import numpy as np

from inrcompress.codec.entropy.bytestream import (Reader, call_constriction, encode_varints, payload_bytes,
                                                  payload_cost_bits, payload_decoder)
from inrcompress.codec.entropy.registry import EntropyModel, register_entropy_model
from inrcompress.codec.entropy.symbols import ContentCache, Symbols
from inrcompress.errors import CorruptFileError

# Its per-symbol cost grows with the alphabet, so the model is only offered for (and the decoder
# only accepts) ranges up to this many symbols.
ADAPTIVE_MAX_ALPHABET = 4096
_ADAPT_RADII = (0, 1, 2, 4, 8, 16, 24, 32)
_ADAPT_FLAT = (1, 4, 16, 128)  # floor per symbol, in 1/16 of one symbol's kernel mass
_ADAPT_PREV = (0, 8, 16, 32, 64, 128, 256, 512)  # weight of an earlier symbol, 16 = one own symbol
_ADAPT_STEP = 16  # the increment scale: one coded symbol adds 16 * K
# Coded (uniform over 16 bits) after the last symbol: no stored histogram checks an adaptive
# stream, so this end mark and an exhausted decoder catch wrong tensor lengths and most damage.
_ADAPT_END = 0x5A3C
_ADAPT_END_BITS = 16


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


def adaptive_costs(x: np.ndarray, alphabet: int, prev: np.ndarray) -> tuple[float, int]:
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
    # The (floor, weight) index pairs in the order the scalar search tried them (floor outer), so
    # that of equal costs the same one wins; earlier-tensor weights only where there are earlier tensors.
    pairs = [(fi, wi) for fi in range(len(_ADAPT_FLAT)) for wi, weight in enumerate(_ADAPT_PREV)
             if not (weight and not prev_total)]
    weights = np.array([float(_ADAPT_PREV[wi]) for _, wi in pairs])[:, None]
    best = (math.inf, 0)
    for ri, radius in enumerate(_ADAPT_RADII):
        k = np.zeros(offsets.size, dtype=np.int64)
        k[rmax - radius:rmax + radius + 1] = _kernel(radius)
        own = _ADAPT_STEP * (gathered @ k).astype(np.float64)
        # Kernel mass that lands inside the alphabet for each symbol, cumulated before step t.
        in_range = np.convolve(np.ones(alphabet), _kernel(radius).astype(np.float64))[radius:radius + alphabet]
        grown = _ADAPT_STEP * np.concatenate(([0.0], np.cumsum(in_range[x])[:-1]))
        floors = np.array([float(_ADAPT_FLAT[fi] * (radius + 1) ** 2) for fi, _ in pairs])[:, None]
        # Every pair at once, one row each (the same element operations and per-row sums as one
        # pair at a time, so the same bits to the last digit).
        num = floors + weights * prev_at + own
        den = floors * alphabet + weights * prev_total + grown
        bits = np.log2(den).sum(axis=1) - np.log2(num).sum(axis=1)
        for (fi, wi), pair_bits in zip(pairs, bits.tolist()):
            if pair_bits < best[0]:
                best = (pair_bits, ri | fi << 3 | wi << 5)
    return best


# Per tensor by content (with the alphabet and the earlier tensors' histogram): a search that
# changes later tensors re-costs the earlier ones for free.
_COSTS = ContentCache(entries=512, max_symbols=4096)


def _symbol_range(tensors: Symbols) -> tuple[int, int] | None:
    """(lo, hi) over every symbol, or None when there are none."""
    nonempty = [a for a in tensors if a.size]
    if not nonempty:
        return None
    return min(int(a.min()) for a in nonempty), max(int(a.max()) for a in nonempty)


def _plan(tensors: Symbols) -> tuple[list[int], float]:
    """The parameter byte of every non-empty tensor and the estimated payload bits (end mark
    included), for symbols spanning more than one value; computed once per Symbols."""

    def compute():
        lo, hi = _symbol_range(tensors)
        alphabet = hi - lo + 1
        prev = np.zeros(alphabet, dtype=np.int64)
        params, bits = [], float(_ADAPT_END_BITS)
        for a in tensors:
            if a.size:
                x = a - lo
                tensor_bits, param = _COSTS.get(lambda: adaptive_costs(x, alphabet, prev), [x, prev], (alphabet,))
                params.append(param)
                bits += tensor_bits
                prev += np.bincount(x, minlength=alphabet)
        return params, bits

    return tensors.memo("adaptive_plan", compute)


@register_entropy_model("adaptive")
class AdaptiveCounts(EntropyModel):
    """Counts learnt while coding, smoothed by a triangular kernel, primed by earlier tensors."""

    model_id = 5

    def refuses(self, tensors: Symbols, bitwidth: int) -> str | None:
        extent = _symbol_range(tensors)
        if extent is not None and extent[1] - extent[0] + 1 > ADAPTIVE_MAX_ALPHABET:
            return f"symbol range wider than {ADAPTIVE_MAX_ALPHABET}"
        return None

    def encode(self, tensors: Symbols, bitwidth: int) -> bytes:
        out = bytearray()
        encoder = constriction.stream.queue.RangeEncoder()
        extent = _symbol_range(tensors)
        if extent is not None:
            lo, hi = extent
            out += encode_varints([lo, hi - lo])
            if hi > lo:
                alphabet = hi - lo + 1
                params = _plan(tensors)[0]
                out += bytes(params)
                prev = np.zeros(alphabet, dtype=np.int64)
                for a, param in zip((a for a in tensors if a.size), params):
                    x = a - lo
                    _adaptive_run(encoder, x, len(x), alphabet, prev, param)
                    prev += np.bincount(x, minlength=alphabet)
                encoder.encode(_ADAPT_END, constriction.stream.model.Uniform(1 << _ADAPT_END_BITS))
        return bytes(out + payload_bytes(encoder))

    def cost_bits(self, tensors: Symbols, bitwidth: int) -> float:
        extent = _symbol_range(tensors)
        if extent is None:
            return payload_cost_bits(0.0)
        lo, hi = extent
        head = 8.0 * len(encode_varints([lo, hi - lo]))
        if hi == lo:
            return head + payload_cost_bits(0.0)
        params, bits = _plan(tensors)
        return head + 8.0 * len(params) + payload_cost_bits(bits)

    def decode(self, data: bytes, lengths: list[int], bitwidth: int) -> list[np.ndarray]:
        reader = Reader(data)
        max_symbol = (1 << bitwidth) - 1
        nonempty = [i for i, n in enumerate(lengths) if n]
        out = [np.zeros(0, dtype=np.int64) for _ in lengths]
        if not nonempty:
            payload_decoder(reader)  # an empty payload, and nothing after it
            return out
        lo = reader.varint(max_symbol, "adaptive model (lowest symbol)")
        span = reader.varint(min(max_symbol - lo, ADAPTIVE_MAX_ALPHABET - 1), "adaptive model (symbol range)")
        if span == 0:
            payload_decoder(reader)
            for i in nonempty:
                out[i] = np.full(lengths[i], lo, dtype=np.int64)
            return out
        params = reader.take(len(nonempty), "adaptive model parameters")
        decoder = payload_decoder(reader)
        alphabet = span + 1
        prev = np.zeros(alphabet, dtype=np.int64)
        for i, param in zip(nonempty, params):
            x = call_constriction(_adaptive_run, decoder, None, lengths[i], alphabet, prev, param)
            prev += np.bincount(x, minlength=alphabet)
            out[i] = x + lo
        end = call_constriction(decoder.decode, constriction.stream.model.Uniform(1 << _ADAPT_END_BITS))
        if end != _ADAPT_END or not decoder.maybe_exhausted():
            raise CorruptFileError("adaptive payload does not end where the tensor lengths say (damaged, or "
                                   "another architecture)")
        return out
