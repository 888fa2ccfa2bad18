"""The .inr file: one compressed image or shape (header, coded quantized weights, checksum).

Layout (all integers little-endian):

    4 bytes   magic b"INRC"
    u8        format version (FORMAT_VERSION = 1)
    30 bytes  fixed header fields, in the order and struct formats of HEADER_FIELDS
    32 bytes  sha256 of the meta-learned initialization, only when init_hash_len is 32
    T x f32   quantization step sizes, one per tensor W0, b0, W1, b1, ... (T from the architecture)
    ...       coded symbols (coding.encode_symbols with the header's coder; self-delimiting)
    u32       CRC-32 (zlib.crc32) of every byte before it, as PNG chunks carry

The decoder rebuilds the network from the header alone (the Gaussian encoding matrix from
gauss_seed), so the tensor shapes and symbol counts are never stored. read_inr checks every
field against fixed bounds before anything sized by it is allocated, and reports every problem
as a CorruptFileError with a one-line message.
"""

from __future__ import annotations

import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inrcompress.codec import coding
from inrcompress.config import ACTIVATIONS, ENCODINGS, ModelConfig, atomic_write_bytes
from inrcompress.errors import CorruptFileError, InrError

MAGIC = b"INRC"
FORMAT_VERSION = 1
MODALITIES = ("image", "shape")
CODERS = ("arithmetic", "brotli")

# Format limits. They bound what a decoder may be asked to allocate and are far above the
# paper's settings (hidden_dims <= 128, hidden_layers <= 3, ff_dims <= 16, bitwidth 7-8).
MAX_HIDDEN_DIMS = 4096
MAX_HIDDEN_LAYERS = 64
MAX_FF_DIMS = 1024
MAX_SIDE = 65535
MAX_PIXELS = 2 ** 28
MAX_PARAMETERS = 50_000_000
MAX_ENCODING_SCALE = 1e6
# The largest encoding frequency must stay a finite float32 (nerf's is pi * scale**(F-1)).
_MAX_LOG_FREQUENCY = math.log(1e30)
HASH_BYTES = 32
# No valid file is bigger: 50M 16-bit symbols stored raw, plus the header and step sizes.
MAX_FILE_BYTES = 2 * MAX_PARAMETERS + (1 << 20)

# The fixed header: (name, struct format). Writing and reading both go through this list.
# Enumerations are stored as their index in the tuple named in _ENUMS; init_hash_len is the
# length of the hash that follows (0 or 32).
HEADER_FIELDS: tuple[tuple[str, str], ...] = (
    ("modality", "B"),
    ("height", "H"),          # pixels after the rotation policy; 0 for shapes
    ("width", "H"),           # pixels after the rotation policy; 0 for shapes
    ("channels", "B"),        # out_features: 1 or 3 for images, 1 for shapes
    ("in_features", "B"),     # 2 for images, 3 for shapes
    ("encoding", "B"),
    ("activation", "B"),
    ("hidden_dims", "H"),
    ("hidden_layers", "B"),
    ("ff_dims", "H"),
    ("encoding_scale", "d"),  # float64, so the frequencies rebuild exactly
    ("gauss_seed", "I"),
    ("bitwidth", "B"),
    ("coder", "B"),
    ("rotated", "B"),         # 1: the image was turned 90 degrees to landscape before fitting
    ("init_hash_len", "B"),
)
_STRUCT = struct.Struct("<" + "".join(fmt for _, fmt in HEADER_FIELDS))
_ENUMS = {"modality": MODALITIES, "encoding": ENCODINGS, "activation": ACTIVATIONS, "coder": CODERS}
_PREFIX = len(MAGIC) + 1
_CRC_BYTES = 4
MIN_FILE_BYTES = _PREFIX + _STRUCT.size + _CRC_BYTES


@dataclass(frozen=True)
class InrHeader:
    """Everything a decoder needs besides the coded symbols.

    height, width: image size in pixels as fitted (after any rotation to landscape), 0 for shapes.
    channels: network outputs (1 or 3 for images, 1 for shapes); in_features: 2 or 3.
    encoding_scale: the encoding's scale s (float64). gauss_seed: uint32 seed of the Gaussian
    encoding matrix. bitwidth: bits per quantized symbol, 1..16. coder: "arithmetic" | "brotli".
    rotated: the decoder turns the image back by 90 degrees. init_hash: b"" or the 32-byte sha256
    of the meta-learned initialization that the coded weights are a residual of.
    step_sizes: quantization step per tensor (W0, b0, W1, b1, ...), kept as float32 values.
    """

    modality: str
    height: int
    width: int
    channels: int
    in_features: int
    encoding: str
    activation: str
    hidden_dims: int
    hidden_layers: int
    ff_dims: int
    encoding_scale: float
    gauss_seed: int
    bitwidth: int
    coder: str
    rotated: bool
    init_hash: bytes
    step_sizes: tuple[float, ...]

    def __post_init__(self):
        # Normalize to the stored types so that read_inr(write_inr(h)) == h: the step sizes are
        # stored as float32, so they are rounded to float32 here, once.
        for name in ("height", "width", "channels", "in_features", "hidden_dims", "hidden_layers", "ff_dims",
                     "gauss_seed", "bitwidth"):
            object.__setattr__(self, name, int(getattr(self, name)))
        object.__setattr__(self, "encoding_scale", float(self.encoding_scale))
        object.__setattr__(self, "rotated", bool(self.rotated))
        object.__setattr__(self, "init_hash", bytes(self.init_hash))
        with np.errstate(over="ignore"):
            steps = np.asarray(self.step_sizes, dtype=np.float64).astype(np.float32).ravel()
        object.__setattr__(self, "step_sizes", tuple(float(v) for v in steps))

    @classmethod
    def for_model(cls, cfg: ModelConfig, *, modality: str, height: int = 0, width: int = 0, bitwidth: int,
                  coder: str, step_sizes, rotated: bool = False, init_hash: bytes = b"") -> InrHeader:
        """The header of a network with architecture `cfg`."""
        return cls(modality=modality, height=height, width=width, channels=cfg.out_features,
                   in_features=cfg.in_features, encoding=cfg.encoding, activation=cfg.activation,
                   hidden_dims=cfg.hidden_dims, hidden_layers=cfg.hidden_layers, ff_dims=cfg.ff_dims,
                   encoding_scale=cfg.encoding_scale, gauss_seed=cfg.gauss_seed, bitwidth=bitwidth,
                   coder=coder, rotated=rotated, init_hash=init_hash, step_sizes=tuple(step_sizes))


@dataclass(frozen=True)
class InrSizes:
    """Byte counts of one .inr file. paper_bytes is what the paper counted (coded symbols and
    step sizes); container_bytes is the rest (magic, version, header fields, init hash, CRC).
    coding_model: "brotli", or the arithmetic model (an entry of coding.MODELS) the payload uses."""

    total: int
    container_bytes: int
    step_size_bytes: int
    payload_bytes: int
    coding_model: str

    @property
    def paper_bytes(self) -> int:
        return self.payload_bytes + self.step_size_bytes


# ----------------------------------------------------------------------------------------------
# Architecture
# ----------------------------------------------------------------------------------------------


def model_config(header: InrHeader) -> ModelConfig:
    """The network architecture a header describes."""
    return ModelConfig(in_features=header.in_features, out_features=header.channels, encoding=header.encoding,
                       activation=header.activation, hidden_dims=header.hidden_dims,
                       hidden_layers=header.hidden_layers, ff_dims=header.ff_dims,
                       encoding_scale=header.encoding_scale, gauss_seed=header.gauss_seed)


def _encoding_out_dim(encoding: str, d: int, f: int) -> int:
    """Width of the encoded coordinates (nn.py): mlp d, nerf d + 2dF, positional 2dF, gauss 2F."""
    return {"mlp": d, "nerf": d + 2 * d * f, "positional": 2 * d * f, "gauss": 2 * f}[encoding]


def _shapes(encoding: str, in_features: int, ff_dims: int, hidden_dims: int, hidden_layers: int,
            channels: int) -> list[tuple[int, ...]]:
    dims = [_encoding_out_dim(encoding, in_features, ff_dims)] + [hidden_dims] * (hidden_layers + 1) + [channels]
    shapes: list[tuple[int, ...]] = []
    for fan_in, fan_out in zip(dims[:-1], dims[1:]):
        shapes += [(fan_out, fan_in), (fan_out,)]  # nn.Linear weight, bias
    return shapes


def tensor_shapes(header: InrHeader) -> list[tuple[int, ...]]:
    """Shapes of the coded tensors in order W0, b0, W1, b1, ... (as INR(model_config(h)).layers),
    computed from the size formulas so that nothing is allocated."""
    return _shapes(header.encoding, header.in_features, header.ff_dims, header.hidden_dims, header.hidden_layers,
                   header.channels)


def _num_tensors(hidden_layers: int) -> int:
    return 2 * (hidden_layers + 2)


# ----------------------------------------------------------------------------------------------
# Validation (shared by writer and reader; the error type says whose fault it is)
# ----------------------------------------------------------------------------------------------


def _check_fields(v: dict, error: type[InrError]) -> None:
    """Check the fixed header fields (enums already decoded to strings). Bounds come first, then
    the parameter count, so no later step sees an absurd size."""
    for name, choices in _ENUMS.items():
        if v[name] not in choices:
            raise error(f"{name} must be one of {choices}, got {v[name]!r}")
    for name, lo, hi in (("hidden_dims", 1, MAX_HIDDEN_DIMS), ("hidden_layers", 1, MAX_HIDDEN_LAYERS),
                         ("ff_dims", 0, MAX_FF_DIMS), ("bitwidth", 1, coding.MAX_BITWIDTH),
                         ("gauss_seed", 0, 2 ** 32 - 1), ("height", 0, MAX_SIDE), ("width", 0, MAX_SIDE)):
        if not lo <= v[name] <= hi:
            raise error(f"{name} {v[name]} is outside the format's range {lo}..{hi}")
    if v["modality"] == "image":
        if v["in_features"] != 2 or v["channels"] not in (1, 3):
            raise error(f"an image needs in_features 2 and 1 or 3 channels, got {v['in_features']} and "
                        f"{v['channels']}")
        if v["height"] < 1 or v["width"] < 1 or v["height"] * v["width"] > MAX_PIXELS:
            raise error(f"image size {v['height']}x{v['width']} is outside 1..{MAX_SIDE} per side and "
                        f"{MAX_PIXELS} pixels")
    else:
        if v["in_features"] != 3 or v["channels"] != 1:
            raise error(f"a shape needs in_features 3 and 1 channel, got {v['in_features']} and {v['channels']}")
        if v["height"] or v["width"] or v["rotated"]:
            raise error("a shape has no height, width or rotation")
    scale = v["encoding_scale"]
    if v["encoding"] == "mlp":
        if not (math.isfinite(scale) and scale >= 0):
            raise error(f"encoding_scale must be finite and >= 0, got {scale!r}")
    else:
        if v["ff_dims"] < 1:
            raise error(f"ff_dims must be >= 1 for the {v['encoding']} encoding")
        if not (math.isfinite(scale) and 0 < scale <= MAX_ENCODING_SCALE):
            raise error(f"encoding_scale must be in (0, {MAX_ENCODING_SCALE:g}], got {scale!r}")
        if v["encoding"] == "nerf" and (v["ff_dims"] - 1) * math.log(scale) + math.log(math.pi) > _MAX_LOG_FREQUENCY:
            raise error(f"nerf frequencies overflow with encoding_scale {scale!r} and ff_dims {v['ff_dims']}")
    if v["init_hash_len"] not in (0, HASH_BYTES):
        raise error(f"init_hash must be empty or {HASH_BYTES} bytes, got {v['init_hash_len']}")
    shapes = _shapes(v["encoding"], v["in_features"], v["ff_dims"], v["hidden_dims"], v["hidden_layers"],
                     v["channels"])
    total = sum(math.prod(s) for s in shapes)
    if total > MAX_PARAMETERS:
        raise error(f"the network has {total} parameters, more than the format's {MAX_PARAMETERS}")


def _check_step_sizes(steps: tuple[float, ...], hidden_layers: int, error: type[InrError]) -> None:
    expected = _num_tensors(hidden_layers)
    if len(steps) != expected:
        raise error(f"expected {expected} step sizes (one per tensor), got {len(steps)}")
    for i, s in enumerate(steps):
        if not (math.isfinite(s) and s > 0):
            raise error(f"step size {i} must be finite and > 0, got {s!r}")


def _field_values(header: InrHeader) -> dict:
    values = {name: getattr(header, name) for name, _ in HEADER_FIELDS if name != "init_hash_len"}
    values["init_hash_len"] = len(header.init_hash)
    return values


def validate_header(header: InrHeader) -> None:
    """Raise InrError if `header` cannot be written (the same bounds read_inr enforces)."""
    _check_fields(_field_values(header), InrError)
    _check_step_sizes(header.step_sizes, header.hidden_layers, InrError)


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


def _header_bytes(header: InrHeader) -> bytes:
    values = _field_values(header)
    for name, choices in _ENUMS.items():
        values[name] = choices.index(values[name])
    values["rotated"] = int(values["rotated"])
    fixed = _STRUCT.pack(*(values[name] for name, _ in HEADER_FIELDS))
    steps = np.asarray(header.step_sizes, dtype="<f4").tobytes()
    return MAGIC + bytes([FORMAT_VERSION]) + fixed + header.init_hash + steps


def encode_inr(header: InrHeader, symbols: list[np.ndarray], model: str | None = None) -> tuple[bytes, InrSizes]:
    """The .inr bytes of a network and their size breakdown.

    symbols: one integer array per tensor of tensor_shapes(header) (any shape with the right
    number of elements, read in C order), values in [0, 2**bitwidth - 1].
    model: for the arithmetic coder, force one of coding.MODELS instead of the smallest.
    Raises InrError if the header or the symbols do not fit the format.
    """
    validate_header(header)
    shapes = tensor_shapes(header)
    if len(symbols) != len(shapes):
        raise InrError(f"expected {len(shapes)} symbol tensors for this architecture, got {len(symbols)}")
    flat = []
    for i, (s, shape) in enumerate(zip(symbols, shapes)):
        a = np.asarray(s).ravel()
        if a.size != math.prod(shape):
            raise InrError(f"symbol tensor {i} has {a.size} values, the architecture needs {math.prod(shape)}")
        flat.append(a)
    try:
        payload = coding.encode_symbols(flat, header.bitwidth, header.coder, model)
    except ValueError as exc:
        raise InrError(str(exc)) from None
    head = _header_bytes(header)
    body = head + payload
    data = body + struct.pack("<I", zlib.crc32(body))
    return data, _sizes(header, len(data), payload)


def write_inr(header: InrHeader, symbols: list[np.ndarray], model: str | None = None) -> bytes:
    """The .inr bytes of a network (see encode_inr)."""
    return encode_inr(header, symbols, model)[0]


def write_inr_file(path: str | os.PathLike, header: InrHeader, symbols: list[np.ndarray],
                   model: str | None = None) -> InrSizes:
    """Write a .inr file atomically (readers see the old file or the whole new one) and return
    its size breakdown (see encode_inr)."""
    data, sizes = encode_inr(header, symbols, model)
    atomic_write_bytes(path, data)
    return sizes


# ----------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------


def _parse_container(data: bytes) -> tuple[InrHeader, int]:
    """Check magic, version, CRC and header; return the header and the payload's start offset
    (the payload runs to len(data) - 4)."""
    if not data:
        raise CorruptFileError("the file is empty")
    head = data[:len(MAGIC)]
    if head != MAGIC[:len(head)]:
        raise CorruptFileError("not an .inr file")
    if len(data) < _PREFIX:
        raise CorruptFileError(f"the file is truncated ({len(data)} bytes)")
    # The CRC trails every version of the format, so it is checked first: a damaged version byte
    # is reported as damage, not as a newer format.
    if len(data) >= _PREFIX + _CRC_BYTES:
        (stored_crc,) = struct.unpack("<I", data[-_CRC_BYTES:])
        if zlib.crc32(data[:-_CRC_BYTES]) != stored_crc:
            raise CorruptFileError("checksum mismatch: the file is corrupt or truncated")
    version = data[len(MAGIC)]
    if version > FORMAT_VERSION:
        raise CorruptFileError(f"format version {version} is newer than this decoder supports ({FORMAT_VERSION})")
    if version != FORMAT_VERSION:
        raise CorruptFileError(f"unknown format version {version}")
    if len(data) < MIN_FILE_BYTES:
        raise CorruptFileError(f"the file is truncated ({len(data)} bytes, the header alone needs {MIN_FILE_BYTES})")

    raw = dict(zip((name for name, _ in HEADER_FIELDS), _STRUCT.unpack_from(data, _PREFIX)))
    values = dict(raw)
    for name, choices in _ENUMS.items():
        if raw[name] >= len(choices):
            raise CorruptFileError(f"unknown {name} code {raw[name]}")
        values[name] = choices[raw[name]]
    if raw["rotated"] > 1:
        raise CorruptFileError(f"rotated flag must be 0 or 1, got {raw['rotated']}")
    values["rotated"] = bool(raw["rotated"])
    try:
        _check_fields(values, CorruptFileError)
    except CorruptFileError as exc:
        raise CorruptFileError(f"invalid header: {exc}") from None

    pos = _PREFIX + _STRUCT.size
    end = len(data) - _CRC_BYTES
    hash_len = values.pop("init_hash_len")
    num_steps = _num_tensors(values["hidden_layers"])  # <= 132, bounded above
    if pos + hash_len + 4 * num_steps > end:
        raise CorruptFileError("the file is truncated in the header")
    init_hash = data[pos:pos + hash_len]
    pos += hash_len
    steps = np.frombuffer(data, dtype="<f4", count=num_steps, offset=pos)
    pos += 4 * num_steps
    header = InrHeader(**values, init_hash=init_hash, step_sizes=tuple(float(s) for s in steps))
    try:
        _check_step_sizes(header.step_sizes, header.hidden_layers, CorruptFileError)
    except CorruptFileError as exc:
        raise CorruptFileError(f"invalid header: {exc}") from None
    return header, pos


def read_inr(data: bytes) -> tuple[InrHeader, list[np.ndarray]]:
    """Parse and decode a .inr file: the header and one flat int64 symbol array per tensor of
    tensor_shapes(header). Anything wrong with the bytes raises CorruptFileError."""
    data = bytes(data)
    header, pos = _parse_container(data)
    lengths = [math.prod(s) for s in tensor_shapes(header)]
    symbols = coding.decode_symbols(data[pos:-_CRC_BYTES], lengths, header.bitwidth, header.coder)
    return header, symbols


def size_breakdown(data: bytes) -> InrSizes:
    """Byte counts of a .inr file (validates the container, does not decode the payload)."""
    data = bytes(data)
    header, pos = _parse_container(data)
    return _sizes(header, len(data), data[pos:-_CRC_BYTES])


def _sizes(header: InrHeader, total: int, payload: bytes) -> InrSizes:
    step_bytes = 4 * len(header.step_sizes)
    model = "brotli" if header.coder == "brotli" else coding.arithmetic_model_name(payload)
    return InrSizes(total=total, container_bytes=total - len(payload) - step_bytes, step_size_bytes=step_bytes,
                    payload_bytes=len(payload), coding_model=model)


def read_inr_file_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of a .inr file; a missing or unreadable file is an InrError, one larger than any
    .inr file can be a CorruptFileError (checked before reading it)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise CorruptFileError(f"{path}: {size} bytes is more than any .inr file holds")
        return path.read_bytes()
    except OSError as exc:
        raise InrError(f"cannot read {path}: {exc.strerror or exc}") from None


def read_inr_file(path: str | os.PathLike) -> tuple[InrHeader, list[np.ndarray]]:
    """read_inr of a file; a missing or unreadable file is an InrError, a damaged one a
    CorruptFileError naming the file."""
    data = read_inr_file_bytes(path)
    try:
        return read_inr(data)
    except CorruptFileError as exc:
        raise CorruptFileError(f"{path}: {exc}") from None
