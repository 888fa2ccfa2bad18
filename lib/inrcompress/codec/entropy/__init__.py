"""Lossless coding of quantized weight symbols (the entropy-coding stage of the paper).

The input is a list of 1-D integer arrays, one per quantized tensor in network order
(W0, b0, W1, b1, ...), every value a symbol in [0, 2**bitwidth - 1] with bitwidth in 1..16.
The decoder is given the tensor lengths (it knows them from the architecture) and the bitwidth,
so neither is stored here; everything else it needs is in the bytes, and the bytes end exactly
where the stream ends (the streams are self-delimiting given lengths and bitwidth).

Coders (METHODS, coders.py): "arithmetic" (a range coder with a registered entropy model, its
id the stream's first byte) and "brotli". Entropy models (registry.py): "global", "per_tensor",
"laplace", "gaussian", "mixed" (static.py, ids 0-4) and "adaptive" (adaptive.py, id 5). A new
model is one EntropyModel subclass with a new model_id, decorated with
@register_entropy_model("name"), in a new module of this package (every module here is imported
below) or anywhere else that is imported before coding.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Sequence

import numpy as np

from inrcompress.codec.entropy.coders import CODERS
from inrcompress.codec.entropy.registry import (EntropyModel, ModelNames, entropy_model_registered,
                                                register_entropy_model, registered_models, unregister_entropy_model)
from inrcompress.codec.entropy.symbols import MAX_BITWIDTH, Symbols, check_bitwidth
from inrcompress.codec.entropy.tables import self_information_bits
from inrcompress.errors import CorruptFileError

# Import every module of the package, so that a model in a new file registers itself.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

METHODS = tuple(CODERS)
MODELS: Sequence[str] = ModelNames()  # registered entropy model names, in id order (live)

__all__ = ["METHODS", "MODELS", "MAX_BITWIDTH", "CorruptFileError", "EntropyModel", "Symbols", "register_entropy_model",
           "unregister_entropy_model", "entropy_model_registered", "registered_models", "encode_symbols",
           "decode_symbols", "model_sizes", "model_costs", "model_name", "arithmetic_model_name",
           "empirical_entropy_bits"]


def _coder(method: str):
    if method not in CODERS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return CODERS[method]


def encode_symbols(tensors: Sequence[np.ndarray], bitwidth: int, method: str, model: str | None = None) -> bytes:
    """Code `tensors` (1-D integer arrays of symbols in [0, 2**bitwidth - 1]) losslessly.

    method "arithmetic" tries every registered model and returns the smallest stream, or only
    `model` if given (e.g. "global" to reproduce the paper); "brotli" returns a brotli stream of
    the packed symbols (`model` must be None). Raises ValueError on invalid input.
    """
    symbols = Symbols.check(tensors, bitwidth)
    return _coder(method).encode(symbols, int(bitwidth), model)


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
    check_bitwidth(bitwidth)
    return _coder(method).decode(bytes(data), lengths, int(bitwidth))


def model_sizes(tensors: Sequence[np.ndarray], bitwidth: int) -> dict[str, int]:
    """Bytes of the arithmetic stream under each registered model (model byte, parameters and
    payload included), in id order; a model that does not apply to these symbols ("adaptive"
    over a range wider than its alphabet limit) is left out. min() of the values is what
    encode_symbols(..., "arithmetic") returns; the "global" entry is the paper's scheme."""
    return {name: len(s) for name, s in CODERS["arithmetic"].streams(Symbols.check(tensors, bitwidth),
                                                                     int(bitwidth)).items()}


def model_costs(tensors: Sequence[np.ndarray], bitwidth: int) -> dict[str, float]:
    """Estimated bits of the arithmetic stream under each registered model that applies (model
    byte included; compare with 8 * model_sizes), from each model's cost_bits: for the built-in
    models computed without running the range coder."""
    symbols = Symbols.check(tensors, bitwidth)
    return {m.name: 8.0 + m.cost_bits(symbols, int(bitwidth)) for m in registered_models()
            if m.refuses(symbols, int(bitwidth)) is None}


def model_name(payload: bytes, method: str) -> str:
    """What coded a payload of `method`: the arithmetic stream's model, or "brotli"."""
    return _coder(method).model_name(payload)


def arithmetic_model_name(data: bytes) -> str:
    """The model (an entry of MODELS) an arithmetic stream was coded with."""
    return model_name(data, "arithmetic")


def empirical_entropy_bits(tensors: Sequence[np.ndarray]) -> float:
    """n * H in bits, H the zeroth-order entropy of all symbols pooled: the ideal payload of the
    global-table model without the table itself. 0.0 for no symbols."""
    arrays = [np.asarray(t).ravel() for t in tensors]
    arrays = [a for a in arrays if a.size]
    if not arrays:
        return 0.0
    pooled = np.concatenate(arrays).astype(np.int64)
    return self_information_bits(np.bincount(pooled - pooled.min()))
