"""The .inr file: one compressed image or shape (header, coded quantized tensors, checksum).

Format version 2 (written since issue 11; all integers little-endian):

    4 bytes   magic b"INRC"
    u8        format version (2)
    12 bytes  common fields, in the order and struct formats of COMMON_FIELDS: modality, size,
              orientation, the signal's in_features and channels, the representation's file id,
              bitwidth, coder, and the number of sections that follow
    sections  each: u8 tag, u16 length, `length` bytes. Tag 1 (required): the architecture, the
              fields the representation declares (Representation.fields); tag 2 (only for a
              residual): the 32-byte sha256 of the initialization the tensors are coded against.
              Tags 1..127 are critical: a decoder refuses one it does not know; tags 128..255 are
              ancillary: a decoder skips one it does not know. A known section must have exactly
              the length of its fields. Tag 4 (exactly for a representation with a latent stream,
              has_latent_stream: the latent grid): u32, the bytes of the latent stream. Tag 5 (only
              with per-output-channel steps, --per_channel_steps): one u8 code per output row of
              every declared tensor of two or more dimensions, in file order; row r's step is
              float32(the tensor's step) * float32((code + 1) / 256) (codec/steps.py), and the
              section's length is the architecture's number of such rows.
    T x f32   quantization step sizes, one per tensor the representation declares (with tag 5: for
              a tensor of two or more dimensions, its coarsest row's step)
    ...       coded symbols (coding.encode_symbols with the header's coder; self-delimiting)
    ...       with section 4: the latent stream (codec/latent_coding.py), of the length it states
    u32       CRC-32 (zlib.crc32) of every byte before it, as PNG chunks carry

Format version 1 (written before issue 11; read forever, by the parser at the end of this file):
magic, version 1, the 30 bytes of V1_FIELDS (the SIREN MLP's architecture mixed with the common
fields), the optional 32-byte init hash, the step sizes, the coded symbols and the CRC.

The decoder rebuilds the tensors' shapes from the architecture alone, so shapes and symbol counts
are never stored. Every field is checked against fixed bounds, and the parameter count against
MAX_PARAMETERS, before anything sized by them is allocated; every problem with the bytes is a
CorruptFileError with a one-line message. The format's limits still let a 4 KB file ask for 2^28
pixels of a 50-million-parameter network; DecodeLimits, checked right after the header is parsed
(before the symbols are decoded), bounds what a decoder does for one file to what its user allows.
"""

from __future__ import annotations

import math
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inrcompress.codec import entropy as coding
from inrcompress.codec.representations import representation_by_file_id, representation_of
from inrcompress.codec.representations.base import Field, Representation, fields_struct, pack_fields, unpack_fields
from inrcompress.codec.representations.siren import SirenMLP
from inrcompress.codec.steps import ChannelSteps, Step
from inrcompress.config import ACTIVATIONS, ENCODINGS
from inrcompress.errors import CorruptFileError, InrError

MAGIC = b"INRC"
FORMAT_VERSION = 2
MODALITIES = ("image", "shape")
CODERS = coding.METHODS  # in file-format order: the coder field stores the index

# Format limits: they bound what a decoder may be asked to allocate (each representation bounds its
# own architecture fields further).
MAX_SIDE = 65535
MAX_PIXELS = 2 ** 28
MAX_PARAMETERS = 50_000_000
MAX_TENSORS = 4096
HASH_BYTES = 32
# No valid file is bigger: 50M 16-bit symbols stored raw, plus the header and step sizes.
MAX_FILE_BYTES = 2 * MAX_PARAMETERS + (1 << 20)

# A decoder's default limits (decode.py --max_pixels / --max_parameters raise them). 16 megapixels
# holds every image of the paper's datasets (Kodak 0.4 MP, DIV2K up to 2.8 MP), a 12 MP phone photo
# and 4K UHD (8.3 MP); a million parameters is 13x the paper's largest network (128 wide, 74k). The
# work of one decode is about pixels x parameters multiply-adds, the memory the picture (3 bytes a
# pixel) plus one render chunk.
DEFAULT_MAX_PIXELS = 16_000_000
DEFAULT_MAX_PARAMETERS = 1_000_000

COMMON_FIELDS: tuple[Field, ...] = (
    Field("modality", "B", MODALITIES),
    Field("height", "H"),          # pixels after the rotation policy; 0 for shapes
    Field("width", "H"),           # pixels after the rotation policy; 0 for shapes
    Field("rotated", "B"),         # 1: the image was turned 90 degrees to landscape before fitting
    Field("in_features", "B"),     # coordinate dimension: 2 for images, 3 for shapes
    Field("channels", "B"),        # values per coordinate: 1 or 3 for images, 1 for shapes
    Field("representation", "B"),  # Representation.file_id
    Field("bitwidth", "B"),
    Field("coder", "B", CODERS),
    Field("sections", "B"),        # number of sections that follow
)
SECTION_ARCHITECTURE = 1
SECTION_INIT = 2
INIT_FIELDS: tuple[Field, ...] = (Field("init_sha256", f"{HASH_BYTES}s"),)
SECTION_LATENTS = 4  # (3 is unassigned: tests use it as the example of an unknown critical section)
LATENT_FIELDS: tuple[Field, ...] = (Field("latent_stream_bytes", "I"),)
SECTION_CHANNEL_STEPS = 5  # variable length: the architecture fixes it (channel_step_rows)
FIRST_ANCILLARY_TAG = 128
_SECTION_HEAD = struct.Struct("<BH")  # tag, length

_COMMON = fields_struct(COMMON_FIELDS)
_PREFIX = len(MAGIC) + 1
_CRC_BYTES = 4
MIN_FILE_BYTES = _PREFIX + _COMMON.size + _CRC_BYTES


class DecodeLimitError(InrError):
    """A well-formed .inr file that asks for more than the decoder's DecodeLimits allow."""


@dataclass(frozen=True)
class DecodeLimits:
    """The most a decoder does for one file: pixels of an image (the picture it allocates and
    renders) and parameters of the network (the symbols it decodes, the work per pixel)."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_parameters: int = DEFAULT_MAX_PARAMETERS

    def check(self, header: InrHeader) -> None:
        """Raise DecodeLimitError (one line, naming the flag that raises the limit) if `header` asks
        for more; uses only what the header declares, so nothing has been allocated yet."""
        pixels = header.height * header.width
        if header.modality == "image" and pixels > self.max_pixels:
            raise DecodeLimitError(f"the image is {header.width}x{header.height} = {pixels:,} pixels, more than this "
                                   f"decoder's limit of {self.max_pixels:,} (--max_pixels raises it)")
        parameters = sum(tensor_lengths(header))
        if parameters > self.max_parameters:
            raise DecodeLimitError(f"the network has {parameters:,} parameters, more than this decoder's limit of "
                                   f"{self.max_parameters:,} (--max_parameters raises it)")


@dataclass(frozen=True)
class InrHeader:
    """Everything a decoder needs besides the coded symbols.

    height, width: image size in pixels as fitted (after any rotation to landscape), 0 for shapes.
    rotated: the decoder turns the image back by 90 degrees. representation: the architecture
    (codec/representations); channels and in_features are its out_features and in_features, and its
    architecture fields read as attributes of the header too (header.hidden_dims of a SIREN).
    bitwidth: bits per quantized symbol, 1..16. coder: "arithmetic" | "brotli".
    step_sizes: quantization step per declared tensor, kept as float32 values; or, with
    per-output-channel steps, a ChannelSteps for every tensor of two or more dimensions.
    init_hash: b"" or the 32-byte sha256 of the initialization the tensors are a residual of.
    latent_stream: the coded latents of a representation that has them (has_latent_stream), else b"".
    """

    modality: str
    height: int
    width: int
    rotated: bool
    representation: Representation
    bitwidth: int
    coder: str
    step_sizes: tuple[Step, ...]
    init_hash: bytes = b""
    latent_stream: bytes = b""

    def __post_init__(self):
        object.__setattr__(self, "rotated", bool(self.rotated))
        object.__setattr__(self, "init_hash", bytes(self.init_hash))
        object.__setattr__(self, "latent_stream", bytes(self.latent_stream))
        steps = []
        for step in self.step_sizes:
            if isinstance(step, ChannelSteps):
                steps.append(step)
            else:
                with np.errstate(over="ignore"):
                    steps.append(float(np.float32(np.float64(step))))
        object.__setattr__(self, "step_sizes", tuple(steps))

    @property
    def channel_codes(self) -> bytes:
        """The body of section 5: every ChannelSteps' codes in file order (b"" without them)."""
        return b"".join(s.codes.tobytes() for s in self.step_sizes if isinstance(s, ChannelSteps))

    def __getattr__(self, name: str) -> Any:
        representation = self.__dict__.get("representation")
        if representation is not None and not name.startswith("_"):
            values = representation.field_values()
            if name in values:
                return values[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    @property
    def channels(self) -> int:
        return self.representation.out_features

    @property
    def in_features(self) -> int:
        return self.representation.in_features

    @classmethod
    def for_model(cls, model: Any, *, modality: str, height: int = 0, width: int = 0, bitwidth: int,
                  coder: str, step_sizes, rotated: bool = False, init_hash: bytes = b"") -> InrHeader:
        """The header of a fitted model (or of anything representation_of describes, e.g. a ModelConfig)."""
        return cls(modality=modality, height=height, width=width, rotated=rotated,
                   representation=representation_of(model), bitwidth=bitwidth, coder=coder,
                   step_sizes=tuple(step_sizes), init_hash=init_hash)


@dataclass(frozen=True)
class InrSizes:
    """Byte counts of one .inr file. paper_bytes is what the paper counted (coded symbols and
    step sizes); container_bytes is the rest (magic, version, header fields, sections, CRC).
    coding_model: "brotli", or the arithmetic model (an entry of coding.MODELS) the payload uses."""

    total: int
    container_bytes: int
    step_size_bytes: int
    payload_bytes: int
    coding_model: str

    @property
    def paper_bytes(self) -> int:
        return self.payload_bytes + self.step_size_bytes


def tensor_lengths(header: InrHeader) -> list[int]:
    """Number of symbols of every declared tensor, in file order."""
    return [spec.numel for spec in header.representation.tensor_specs()]


def channel_step_rows(representation: Representation) -> list[int | None]:
    """Per declared tensor: its output rows if it can have per-channel steps (two or more
    dimensions), else None."""
    return [spec.shape[0] if len(spec.shape) >= 2 else None for spec in representation.tensor_specs()]


# ----------------------------------------------------------------------------------------------
# Validation (shared by writer and readers; the error type says whose fault it is)
# ----------------------------------------------------------------------------------------------


def _check_common(v: dict, error: type[InrError]) -> None:
    """Bounds of the common fields (enumerations already decoded to strings)."""
    for name, choices in (("modality", MODALITIES), ("coder", CODERS)):
        if v[name] not in choices:
            raise error(f"{name} must be one of {choices}, got {v[name]!r}")
    for name, lo, hi in (("bitwidth", 1, coding.MAX_BITWIDTH), ("height", 0, MAX_SIDE), ("width", 0, MAX_SIDE)):
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


def _check_size(representation: Representation, error: type[InrError]) -> None:
    """Bound the declared tensors (their count and parameters) before anything is allocated."""
    specs = representation.tensor_specs()
    total = sum(spec.numel for spec in specs)
    if len(specs) > MAX_TENSORS:
        raise error(f"the network has {len(specs)} tensors, more than the format's {MAX_TENSORS}")
    if total > MAX_PARAMETERS:
        raise error(f"the network has {total} parameters, more than the format's {MAX_PARAMETERS}")


def _check_init_hash_length(length: int, error: type[InrError]) -> None:
    if length not in (0, HASH_BYTES):
        raise error(f"init_hash must be empty or {HASH_BYTES} bytes, got {length}")


def _check_latent_stream(representation: Representation, length: int, error: type[InrError]) -> None:
    """A representation with a latent stream needs one (> 0 bytes); any other has none."""
    if representation.has_latent_stream:
        if length == 0:
            raise error(f"a {representation.name} needs its latent stream (section {SECTION_LATENTS})")
    elif length:
        raise error(f"a {representation.name} has no latent stream (section {SECTION_LATENTS})")


def _check_step_sizes(steps: tuple[Step, ...], representation: Representation, error: type[InrError]) -> None:
    rows = channel_step_rows(representation)
    if len(steps) != len(rows):
        raise error(f"expected {len(rows)} step sizes (one per tensor), got {len(steps)}")
    for i, s in enumerate(steps):
        value = s.step if isinstance(s, ChannelSteps) else s
        if not (math.isfinite(value) and value > 0):
            raise error(f"step size {i} must be finite and > 0, got {value!r}")
    if any(isinstance(s, ChannelSteps) for s in steps):
        for i, (s, n) in enumerate(zip(steps, rows)):
            if (n is None) == isinstance(s, ChannelSteps) or (n is not None and s.codes.size != n):
                raise error(f"per-channel steps cover every tensor of two or more dimensions, one per row: "
                            f"tensor {i} ({n or 'a vector'} rows) does not fit")
        if sum(n for n in rows if n) > 0xFFFF:
            raise error(f"{sum(n for n in rows if n)} per-channel steps do not fit in a section (at most 65535)")


def _common_values(header: InrHeader) -> dict:
    return {"modality": header.modality, "height": header.height, "width": header.width,
            "rotated": int(header.rotated), "in_features": header.in_features, "channels": header.channels,
            "representation": header.representation.file_id, "bitwidth": header.bitwidth, "coder": header.coder,
            "sections": 1 + bool(header.init_hash) + bool(header.latent_stream) + bool(header.channel_codes)}


def validate_header(header: InrHeader) -> None:
    """Raise InrError if `header` cannot be written (the bounds read_inr enforces)."""
    _check_common(_common_values(header), InrError)
    header.representation.check(InrError)
    _check_size(header.representation, InrError)
    _check_init_hash_length(len(header.init_hash), InrError)
    _check_latent_stream(header.representation, len(header.latent_stream), InrError)
    _check_step_sizes(header.step_sizes, header.representation, InrError)


# ----------------------------------------------------------------------------------------------
# Writing (version 2)
# ----------------------------------------------------------------------------------------------


def _section(tag: int, body: bytes) -> bytes:
    return _SECTION_HEAD.pack(tag, len(body)) + body


def _header_bytes(header: InrHeader) -> bytes:
    rep = header.representation
    parts = [MAGIC, bytes([FORMAT_VERSION]), pack_fields(COMMON_FIELDS, _common_values(header)),
             _section(SECTION_ARCHITECTURE, pack_fields(rep.fields, rep.field_values()))]
    if header.init_hash:
        parts.append(_section(SECTION_INIT, pack_fields(INIT_FIELDS, {"init_sha256": header.init_hash})))
    if header.latent_stream:
        parts.append(_section(SECTION_LATENTS, pack_fields(LATENT_FIELDS,
                                                           {"latent_stream_bytes": len(header.latent_stream)})))
    if header.channel_codes:
        parts.append(_section(SECTION_CHANNEL_STEPS, header.channel_codes))
    tensor_steps = [s.step if isinstance(s, ChannelSteps) else s for s in header.step_sizes]
    parts.append(np.asarray(tensor_steps, dtype="<f4").tobytes())
    return b"".join(parts)


def encode_inr(header: InrHeader, symbols: Sequence[np.ndarray], model: str | None = None) -> tuple[bytes, InrSizes]:
    """The .inr bytes (format version 2) of a network and their size breakdown.

    symbols: one integer array per declared tensor of header.representation (any shape with the
    right number of elements, read in C order), values in [0, 2**bitwidth - 1].
    model: for the arithmetic coder, force one of coding.MODELS instead of the smallest.
    Raises InrError if the header or the symbols do not fit the format.
    """
    validate_header(header)
    lengths = tensor_lengths(header)
    if len(symbols) != len(lengths):
        raise InrError(f"expected {len(lengths)} symbol tensors for this architecture, got {len(symbols)}")
    flat = []
    for i, (s, n) in enumerate(zip(symbols, lengths)):
        a = np.asarray(s).ravel()
        if a.size != n:
            raise InrError(f"symbol tensor {i} has {a.size} values, the architecture needs {n}")
        flat.append(a)
    try:
        payload = coding.encode_symbols(flat, header.bitwidth, header.coder, model)
    except ValueError as exc:
        raise InrError(str(exc)) from None
    body = _header_bytes(header) + payload + header.latent_stream
    data = body + struct.pack("<I", zlib.crc32(body))
    return data, _sizes(header, len(data), payload)


def write_inr(header: InrHeader, symbols: Sequence[np.ndarray], model: str | None = None) -> bytes:
    """The .inr bytes of a network (see encode_inr)."""
    return encode_inr(header, symbols, model)[0]


def _sizes(header: InrHeader, total: int, payload: bytes) -> InrSizes:
    step_bytes = 4 * len(header.step_sizes) + len(header.channel_codes)
    model = coding.model_name(payload, header.coder)
    payload_bytes = len(payload) + len(header.latent_stream)
    return InrSizes(total=total, container_bytes=total - payload_bytes - step_bytes, step_size_bytes=step_bytes,
                    payload_bytes=payload_bytes, coding_model=model)


# ----------------------------------------------------------------------------------------------
# Reading (every version)
# ----------------------------------------------------------------------------------------------


def _invalid(check, *args) -> None:
    """Run a check that raises CorruptFileError and prefix its message with "invalid header"."""
    try:
        check(*args, CorruptFileError)
    except CorruptFileError as exc:
        raise CorruptFileError(f"invalid header: {exc}") from None


def _read_steps(data: bytes, pos: int, representation: Representation, channel_codes: bytes = b""
                ) -> tuple[tuple[Step, ...], int]:
    count = len(representation.tensor_specs())  # <= MAX_TENSORS, bounded by _check_size
    if pos + 4 * count > len(data) - _CRC_BYTES:
        raise CorruptFileError("the file is truncated in the header")
    steps: tuple[Step, ...] = tuple(float(s) for s in np.frombuffer(data, dtype="<f4", count=count, offset=pos))
    _invalid(_check_step_sizes, steps, representation)
    if channel_codes:  # every row of every tensor of two or more dimensions, in file order
        rows = channel_step_rows(representation)
        need = sum(n for n in rows if n)
        if len(channel_codes) != need:
            raise CorruptFileError(f"section {SECTION_CHANNEL_STEPS} (channel steps) has {len(channel_codes)} bytes, "
                                   f"the architecture's {need} rows need {need}")
        codes = np.frombuffer(channel_codes, dtype=np.uint8)
        offsets = np.cumsum([0] + [n or 0 for n in rows])
        steps = tuple(ChannelSteps(s, codes[start:start + n].copy()) if n else s
                      for s, n, start in zip(steps, rows, offsets))
    return steps, pos + 4 * count


def _decoded_common(raw: dict) -> dict:
    if raw["rotated"] > 1:
        raise CorruptFileError(f"rotated flag must be 0 or 1, got {raw['rotated']}")
    values = dict(raw, rotated=bool(raw["rotated"]))
    _invalid(_check_common, values)
    return values


def _parse_v2(data: bytes) -> tuple[InrHeader, int]:
    end = len(data) - _CRC_BYTES
    common = _decoded_common(unpack_fields(COMMON_FIELDS, data[_PREFIX:_PREFIX + _COMMON.size], CorruptFileError))
    cls = representation_by_file_id(common["representation"])
    pos = _PREFIX + _COMMON.size
    bodies: dict[int, bytes] = {}
    for _ in range(common["sections"]):
        if pos + _SECTION_HEAD.size > end:
            raise CorruptFileError("the file is truncated in its sections")
        tag, length = _SECTION_HEAD.unpack_from(data, pos)
        pos += _SECTION_HEAD.size
        if pos + length > end:
            raise CorruptFileError(f"section {tag} ({length} bytes) runs past the end of the file")
        if tag in bodies:
            raise CorruptFileError(f"section {tag} appears twice")
        if tag in (SECTION_ARCHITECTURE, SECTION_INIT, SECTION_LATENTS, SECTION_CHANNEL_STEPS):
            bodies[tag] = data[pos:pos + length]
        elif tag < FIRST_ANCILLARY_TAG:
            raise CorruptFileError(f"unknown section {tag}: the file needs a newer decoder")
        pos += length  # an unknown ancillary section is skipped
    if SECTION_ARCHITECTURE not in bodies:
        raise CorruptFileError("the file has no architecture section")
    known = {SECTION_ARCHITECTURE: (f"the {cls.name} architecture", cls.fields), SECTION_INIT: ("init", INIT_FIELDS),
             SECTION_LATENTS: ("latents", LATENT_FIELDS)}
    values = {}
    for tag, body in bodies.items():
        if tag == SECTION_CHANNEL_STEPS:
            if not body:
                raise CorruptFileError(f"section {tag} (channel steps) is empty")
            continue  # its length depends on the architecture: checked by _read_steps
        what, fields = known[tag]
        need = fields_struct(fields).size
        if len(body) != need:
            raise CorruptFileError(f"section {tag} ({what}) has {len(body)} bytes, its fields need {need}")
        values[tag] = unpack_fields(fields, body, CorruptFileError)
    try:
        rep = cls.from_fields(values[SECTION_ARCHITECTURE], common["in_features"], common["channels"],
                              CorruptFileError)
    except CorruptFileError as exc:
        raise CorruptFileError(f"invalid header: {exc}") from None
    _invalid(_check_size, rep)
    init_hash = values.get(SECTION_INIT, {}).get("init_sha256", b"")
    latent_length = values.get(SECTION_LATENTS, {}).get("latent_stream_bytes", 0)
    _invalid(_check_latent_stream, rep, latent_length)
    steps, pos = _read_steps(data, pos, rep, bodies.get(SECTION_CHANNEL_STEPS, b""))
    if pos + latent_length > end:
        raise CorruptFileError(f"the latent stream ({latent_length} bytes) runs past the end of the file")
    return InrHeader(modality=common["modality"], height=common["height"], width=common["width"],
                     rotated=common["rotated"], representation=rep, bitwidth=common["bitwidth"],
                     coder=common["coder"], step_sizes=steps, init_hash=init_hash,
                     latent_stream=data[end - latent_length:end]), pos


# Version 1: one fixed struct, a SIREN MLP's architecture among the common fields; init_hash_len
# is the length of the hash that follows (0 or 32).
V1_FIELDS: tuple[Field, ...] = (
    Field("modality", "B", MODALITIES),
    Field("height", "H"),
    Field("width", "H"),
    Field("channels", "B"),
    Field("in_features", "B"),
    Field("encoding", "B", ENCODINGS),
    Field("activation", "B", ACTIVATIONS),
    Field("hidden_dims", "H"),
    Field("hidden_layers", "B"),
    Field("ff_dims", "H"),
    Field("encoding_scale", "d"),
    Field("gauss_seed", "I"),
    Field("bitwidth", "B"),
    Field("coder", "B", CODERS),
    Field("rotated", "B"),
    Field("init_hash_len", "B"),
)
_V1 = fields_struct(V1_FIELDS)


def _parse_v1(data: bytes) -> tuple[InrHeader, int]:
    if len(data) < _PREFIX + _V1.size + _CRC_BYTES:
        raise CorruptFileError(f"the file is truncated ({len(data)} bytes, the header alone needs "
                               f"{_PREFIX + _V1.size + _CRC_BYTES})")
    values = _decoded_common(unpack_fields(V1_FIELDS, data[_PREFIX:_PREFIX + _V1.size], CorruptFileError))
    try:
        rep = SirenMLP.from_fields(values, values["in_features"], values["channels"], CorruptFileError)
        _check_init_hash_length(values["init_hash_len"], CorruptFileError)
    except CorruptFileError as exc:
        raise CorruptFileError(f"invalid header: {exc}") from None
    _invalid(_check_size, rep)
    pos = _PREFIX + _V1.size
    hash_len = values["init_hash_len"]
    if pos + hash_len > len(data) - _CRC_BYTES:
        raise CorruptFileError("the file is truncated in the header")
    init_hash = data[pos:pos + hash_len]
    steps, pos = _read_steps(data, pos + hash_len, rep)
    return InrHeader(modality=values["modality"], height=values["height"], width=values["width"],
                     rotated=values["rotated"], representation=rep, bitwidth=values["bitwidth"],
                     coder=values["coder"], step_sizes=steps, init_hash=init_hash), pos


_PARSERS = {1: _parse_v1, 2: _parse_v2}


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
    if version not in _PARSERS:
        raise CorruptFileError(f"unknown format version {version}")
    if len(data) < MIN_FILE_BYTES:
        raise CorruptFileError(f"the file is truncated ({len(data)} bytes, the header alone needs {MIN_FILE_BYTES})")
    return _PARSERS[version](data)


def read_inr_header(data: bytes, limits: DecodeLimits | None = DecodeLimits()) -> InrHeader:
    """The checked header of a .inr file of any version (CorruptFileError for bad bytes,
    DecodeLimitError beyond `limits`), decoding nothing else. It needs neither torch nor the
    payload's coder, so a tool refuses a crafted file in milliseconds, before loading either."""
    header, _ = _parse_container(bytes(data))
    if limits is not None:
        limits.check(header)
    return header


def read_inr(data: bytes, limits: DecodeLimits | None = DecodeLimits()) -> tuple[InrHeader, list[np.ndarray]]:
    """Parse and decode a .inr file of any version: the header and one flat int64 symbol array per
    declared tensor. Anything wrong with the bytes raises CorruptFileError; a file beyond `limits`
    raises DecodeLimitError before its symbols are decoded (None: only the format's own bounds, for
    a file this process wrote)."""
    data = bytes(data)
    header, pos = _parse_container(data)
    if limits is not None:
        limits.check(header)
    payload_end = len(data) - _CRC_BYTES - len(header.latent_stream)
    symbols = coding.decode_symbols(data[pos:payload_end], tensor_lengths(header), header.bitwidth, header.coder)
    return header, symbols


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
