"""Byte-level pieces shared by the entropy models: LEB128 varints, a bounds-checked reader,
the range-coder payload (word count + words) and constriction calls that cannot crash a decoder."""

from __future__ import annotations

import constriction
import numpy as np

from inrcompress.errors import CorruptFileError

MAX_VARINT_BYTES = 10  # a uint64
# A value takes one byte more at each of these (2^7, 2^14, ..., 2^63).
_VARINT_LIMITS = np.array([1 << (7 * j) for j in range(1, MAX_VARINT_BYTES)], dtype=np.uint64)


def varint_sizes(values: np.ndarray) -> np.ndarray:
    """Bytes of the LEB128 encoding of each value (>= 0)."""
    v = np.asarray(values, dtype=np.uint64)
    return 1 + np.searchsorted(_VARINT_LIMITS, v, side="right").astype(np.int64)


def encode_varints(values) -> bytes:
    """Unsigned LEB128 of every value, concatenated (vectorized: tables have up to 65536)."""
    v = np.atleast_1d(np.asarray(values, dtype=np.uint64))
    if v.size == 0:
        return b""
    sizes = varint_sizes(v)
    starts = np.cumsum(sizes) - sizes
    out = np.zeros(int(sizes.sum()), dtype=np.uint8)
    for j in range(int(sizes.max())):
        sel = sizes > j
        group = (v[sel] >> np.uint64(7 * j)) & np.uint64(0x7F)
        more = (sizes[sel] > j + 1).astype(np.uint64) << np.uint64(7)
        out[starts[sel] + j] = (group | more).astype(np.uint8)
    return out.tobytes()


class Reader:
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
        for j in range(MAX_VARINT_BYTES):
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
        window = np.frombuffer(self.data, dtype=np.uint8, count=min(self.remaining, count * MAX_VARINT_BYTES),
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


def call_constriction(fn, *args):
    """Run a constriction call; any failure on decoding is a corrupt stream. Rust panics arrive
    as pyo3's PanicException, a BaseException, so that one is caught by name."""
    try:
        return fn(*args)
    except BaseException as exc:
        if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
            raise  # KeyboardInterrupt, SystemExit
        raise CorruptFileError(f"arithmetic payload is damaged ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else 'no detail'})") from None


def payload_bytes(encoder) -> bytes:
    """The range coder's output as stored: varint W, then W little-endian u32 words."""
    words = encoder.get_compressed()
    return encode_varints([len(words)]) + np.asarray(words, dtype="<u4").tobytes()


def payload_cost_bits(information_bits: float) -> float:
    """Estimated stored bits of a range-coder payload carrying `information_bits` of ideal code
    length: whole 32-bit words plus the word count (see the stated bound in the tests)."""
    words = int(np.ceil(information_bits / 32.0)) if information_bits > 0 else 0
    return 8.0 * int(varint_sizes(np.array([words]))[0]) + 32.0 * words


def payload_decoder(reader: Reader):
    """A range decoder over the payload, which must end the stream exactly."""
    num_words = reader.varint(1 << 62, "payload length")
    if 4 * num_words > reader.remaining:
        raise CorruptFileError(f"arithmetic payload is truncated ({reader.remaining} of {4 * num_words} bytes)")
    if 4 * num_words < reader.remaining:
        raise CorruptFileError(f"arithmetic stream has {reader.remaining - 4 * num_words} bytes after its payload")
    words = np.frombuffer(reader.take(4 * num_words, "payload"), dtype="<u4").astype(np.uint32)
    return call_constriction(constriction.stream.queue.RangeDecoder, words)
