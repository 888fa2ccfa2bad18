"""The lossless coders a .inr file can name (its `coder` field): CODERS, in file-format order.

* "arithmetic": a range coder from `constriction`; the stream opens with one byte, the id of
  the registered entropy model (registry.py) that coded the rest. Without a forced model every
  registered model is tried and the smallest stream is kept (a tie goes to the lower id).
* "brotli": brotli at quality 11 over the symbols as uint8 (bitwidth <= 8) or little-endian
  uint16. The brotli stream marks its own end.
"""

from __future__ import annotations

import brotli
import numpy as np

from inrcompress.codec.entropy.bytestream import Reader
from inrcompress.codec.entropy.registry import model_by_id, model_by_name, registered_models
from inrcompress.codec.entropy.symbols import Symbols
from inrcompress.errors import CorruptFileError


class ArithmeticCoder:
    def streams(self, tensors: Symbols, bitwidth: int) -> dict[str, bytes]:
        """The complete stream (model byte first) of every registered model that takes these
        symbols, in id order."""
        return {m.name: bytes([m.model_id]) + m.encode(tensors, bitwidth) for m in registered_models()
                if m.refuses(tensors, bitwidth) is None}

    def encode(self, tensors: Symbols, bitwidth: int, model: str | None) -> bytes:
        if model is None:
            # Smallest wins; min keeps the first of equals, i.e. the lower model id.
            return min(self.streams(tensors, bitwidth).values(), key=len)
        chosen = model_by_name(model)
        reason = chosen.refuses(tensors, bitwidth)
        if reason is not None:
            raise ValueError(f"model {model!r} does not apply here ({reason})")
        return bytes([chosen.model_id]) + chosen.encode(tensors, bitwidth)

    def decode(self, data: bytes, lengths: list[int], bitwidth: int) -> list[np.ndarray]:
        model = model_by_id(Reader(data).u8("model id"))
        return model.decode(data[1:], lengths, bitwidth)

    def model_name(self, payload: bytes) -> str:
        if not payload:
            raise CorruptFileError("empty arithmetic stream")
        return model_by_id(payload[0]).name


class BrotliCoder:
    @staticmethod
    def _dtype(bitwidth: int) -> np.dtype:
        return np.dtype(np.uint8) if bitwidth <= 8 else np.dtype("<u2")

    def encode(self, tensors: Symbols, bitwidth: int, model: str | None) -> bytes:
        if model is not None:
            raise ValueError("brotli has no probability model to choose")
        dtype = self._dtype(bitwidth)
        return brotli.compress(b"".join(a.astype(dtype).tobytes() for a in tensors), quality=11)

    def decode(self, data: bytes, lengths: list[int], bitwidth: int) -> list[np.ndarray]:
        dtype = self._dtype(bitwidth)
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
        bounds = np.cumsum([0] + lengths)
        return [symbols[bounds[i]:bounds[i + 1]].copy() for i in range(len(lengths))]

    def model_name(self, payload: bytes) -> str:
        return "brotli"


# The one list of coders; a .inr header stores the index into it, so entries are only appended.
CODERS = {"arithmetic": ArithmeticCoder(), "brotli": BrotliCoder()}
