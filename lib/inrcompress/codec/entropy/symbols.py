"""The input every coder and entropy model is given: validated symbol tensors.

A `Symbols` is a tuple of 1-D int64 arrays, one per quantized tensor in network order
(W0, b0, W1, b1, ...), every value in [0, 2**bitwidth - 1], bitwidth in 1..MAX_BITWIDTH.
Statistics that several models derive from the same tensors (histograms, fitted Laplace and
Gaussian parameters, the adaptive model's parameter choice) are memoized on it, so trying every
model, or estimating a cost and then encoding, computes each of them once. Per-tensor statistics
of small tensors are also kept across Symbols by content (ContentCache): a rate-distortion search
re-costs lists of tensors of which it changed one or two.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

MAX_BITWIDTH = 16


def check_bitwidth(bitwidth: int) -> None:
    """ValueError unless bitwidth is an integer in 1..MAX_BITWIDTH."""
    if isinstance(bitwidth, bool) or not isinstance(bitwidth, (int, np.integer)) or not 1 <= bitwidth <= MAX_BITWIDTH:
        raise ValueError(f"bitwidth must be an integer in 1..{MAX_BITWIDTH}, got {bitwidth!r}")


class ContentCache:
    """A bounded least-recently-used store of values computed from small int64 arrays, keyed by the
    arrays' contents (and any extra hashable parts); arrays of more than max_symbols elements are
    computed every time. At most entries x (arrays per key) x max_symbols x 8 bytes of keys."""

    def __init__(self, entries: int, max_symbols: int):
        self.entries, self.max_symbols = entries, max_symbols
        self._store: OrderedDict[tuple, Any] = OrderedDict()

    def get(self, compute: Callable[[], Any], arrays: Sequence[np.ndarray], extra: tuple = ()) -> Any:
        """compute(), or what it returned for arrays of the same contents and the same extra."""
        if any(a.size > self.max_symbols for a in arrays):
            return compute()
        key = (*(np.asarray(a, dtype=np.int64).tobytes() for a in arrays), *extra)
        if key in self._store:
            self._store.move_to_end(key)
            return self._store[key]
        value = self._store[key] = compute()
        if len(self._store) > self.entries:
            self._store.popitem(last=False)
        return value


class Symbols(tuple):
    """Validated symbol tensors (int64, 1-D) of one bitwidth; build with Symbols.check."""

    bitwidth: int

    @classmethod
    def check(cls, tensors: Sequence[np.ndarray], bitwidth: int) -> Symbols:
        """The tensors as a Symbols; ValueError (a programming error) on a bad bitwidth, a tensor
        that is not 1-D or not integer, or a symbol outside [0, 2**bitwidth - 1]."""
        check_bitwidth(bitwidth)
        if isinstance(tensors, Symbols) and tensors.bitwidth == bitwidth:
            return tensors
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
        out = cls(arrays)
        out.bitwidth = int(bitwidth)
        out._memo = {}
        return out

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """compute(), evaluated once per Symbols and key."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]
