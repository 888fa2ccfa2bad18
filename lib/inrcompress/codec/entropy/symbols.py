"""The input every coder and entropy model is given: validated symbol tensors.

A `Symbols` is a tuple of 1-D int64 arrays, one per quantized tensor in network order
(W0, b0, W1, b1, ...), every value in [0, 2**bitwidth - 1], bitwidth in 1..MAX_BITWIDTH.
Statistics that several models derive from the same tensors (histograms, fitted Laplace and
Gaussian parameters, the adaptive model's parameter choice) are memoized on it, so trying every
model, or estimating a cost and then encoding, computes each of them once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

MAX_BITWIDTH = 16


def check_bitwidth(bitwidth: int) -> None:
    """ValueError unless bitwidth is an integer in 1..MAX_BITWIDTH."""
    if isinstance(bitwidth, bool) or not isinstance(bitwidth, (int, np.integer)) or not 1 <= bitwidth <= MAX_BITWIDTH:
        raise ValueError(f"bitwidth must be an integer in 1..{MAX_BITWIDTH}, got {bitwidth!r}")


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
