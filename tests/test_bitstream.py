"""The .inr container: header round trips, size accounting, validation, the v1 reader, and fuzzing."""

from __future__ import annotations

import dataclasses
import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from inrcompress.codec import entropy as coding
from inrcompress.codec import container as bs
from inrcompress.codec.representations.base import fields_struct
from inrcompress.codec.representations.siren import SirenMLP
from inrcompress.codec.steps import ChannelSteps
from inrcompress.config import ModelConfig
from inrcompress.errors import CorruptFileError, InrError

GOLDEN_V1 = Path(__file__).parent / "golden" / "v1"
COMMON = ("modality", "height", "width", "bitwidth", "coder", "rotated", "init_hash", "step_sizes")


def make_header(**changes) -> bs.InrHeader:
    """A v2 header of a SIREN MLP; keyword arguments name common or architecture fields."""
    values = {"modality": "image", "height": 24, "width": 32, "channels": 3, "in_features": 2, "encoding": "nerf",
              "activation": "sine", "hidden_dims": 16, "hidden_layers": 2, "ff_dims": 4, "encoding_scale": 1.4,
              "gauss_seed": 0, "bitwidth": 8, "coder": "arithmetic", "rotated": False, "init_hash": b"",
              "step_sizes": None}
    values.update(changes)
    if values["modality"] == "shape" and "height" not in changes:
        values.update(height=0, width=0, channels=1, in_features=3)
    if values["step_sizes"] is None:
        values["step_sizes"] = [0.001 * (i + 1) for i in range(2 * (values["hidden_layers"] + 2))]
    cfg = ModelConfig(out_features=values.pop("channels"),
                      **{k: values.pop(k) for k in list(values) if k not in COMMON})
    return bs.InrHeader(representation=SirenMLP(cfg), **values)


def with_channel_steps(header: bs.InrHeader, seed: int = 0) -> bs.InrHeader:
    """`header` with per-output-channel steps (random codes) on every tensor of two or more dimensions."""
    rng = np.random.default_rng(seed)
    steps = [ChannelSteps(s, rng.integers(0, 256, n).astype(np.uint8)) if n else s
             for s, n in zip(header.step_sizes, bs.channel_step_rows(header.representation))]
    return dataclasses.replace(header, step_sizes=tuple(steps))


def random_symbols(header: bs.InrHeader, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    top = (1 << header.bitwidth) - 1
    return [np.clip(np.round(rng.laplace(top / 2, 1 + top / 40, n)), 0, top).astype(np.int64)
            for n in bs.tensor_lengths(header)]


# Where a field lies: the common fields follow magic and version; the architecture section (the
# first section) follows them after its 3-byte tag and length.
ARCH_START = bs._PREFIX + bs._COMMON.size + bs._SECTION_HEAD.size
V1_LAYOUT = (bs.V1_FIELDS, bs._PREFIX)
V2_LAYOUTS = ((bs.COMMON_FIELDS, bs._PREFIX), (SirenMLP.fields, ARCH_START))


def field_place(name: str, layouts) -> tuple[int, str]:
    """Byte offset and struct format of a header field."""
    for fields, start in layouts:
        names = [f.name for f in fields]
        if name in names:
            k = names.index(name)
            return start + fields_struct(fields[:k]).size, "<" + fields[k].fmt
    raise KeyError(name)


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def patch_field(data: bytes, name: str, value) -> bytes:
    """Overwrite one header field and fix the checksum, so that the header checks see it."""
    at, fmt = field_place(name, [V1_LAYOUT] if data[4] == 1 else V2_LAYOUTS)
    raw = struct.pack(fmt, value)
    return with_crc(data[:at] + raw + data[at + len(raw):-4])


def golden_v1(name: str) -> bytes:
    return (GOLDEN_V1 / f"{name}.inr").read_bytes()


def assert_same_symbols(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x).ravel(), y)


# ----------------------------------------------------------------------------------------------
# Round trips and architecture
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["mlp", "nerf", "positional", "gauss"])
@pytest.mark.parametrize("modality", ["image", "shape"])
def test_header_roundtrip_for_every_encoding_and_modality(encoding, modality):
    header = make_header(modality=modality, encoding=encoding, ff_dims=0 if encoding == "mlp" else 5,
                         encoding_scale=0.0 if encoding == "mlp" else 10.0, gauss_seed=4_000_000_000,
                         activation="relu" if encoding == "positional" else "sine")
    symbols = random_symbols(header)
    data = bs.write_inr(header, symbols)
    assert data[:5] == b"INRC\x02"
    got_header, got_symbols = bs.read_inr(data)
    assert got_header == header
    assert_same_symbols(symbols, got_symbols)


@pytest.mark.parametrize(
    "changes",
    [
        {"coder": "brotli"},
        {"bitwidth": 16},
        {"bitwidth": 1, "coder": "brotli"},
        {"rotated": True, "height": 32, "width": 24},
        {"init_hash": hashlib.sha256(b"maml init").digest()},
        {"channels": 1},
        {"height": 65535, "width": 1},
        {"encoding_scale": 1 / 3},  # not a float32: stored as float64, exact
        {"step_sizes": [1e-30, 3.4e38] + [0.1] * 6},
    ],
)
def test_header_roundtrip_of_other_settings(changes):
    header = make_header(**changes)
    symbols = random_symbols(header, seed=1)
    got_header, got_symbols = bs.read_inr(bs.write_inr(header, symbols))
    assert got_header == header
    assert_same_symbols(symbols, got_symbols)


def test_step_sizes_are_kept_as_float32():
    header = make_header(step_sizes=[0.1] * 8)
    assert header.step_sizes == (float(np.float32(0.1)),) * 8
    got, _ = bs.read_inr(bs.write_inr(header, random_symbols(header)))
    assert got.step_sizes == header.step_sizes


def test_header_reads_the_architecture_fields_of_its_representation():
    header = make_header(hidden_dims=9, hidden_layers=3, activation="relu", channels=1)
    assert (header.hidden_dims, header.hidden_layers, header.activation, header.encoding) == (9, 3, "relu", "nerf")
    assert (header.channels, header.in_features) == (1, 2)
    with pytest.raises(AttributeError):
        header.no_such_field


def test_for_model_builds_the_header_of_a_config_or_a_network():
    cfg = ModelConfig(in_features=3, out_features=1, encoding="gauss", hidden_dims=8, hidden_layers=1, ff_dims=2,
                      encoding_scale=3.0, gauss_seed=5)
    header = bs.InrHeader.for_model(cfg, modality="shape", bitwidth=7, coder="brotli", step_sizes=[0.5] * 6)
    assert header.representation == SirenMLP(cfg)
    assert header.representation.build().cfg == cfg
    assert header.height == header.width == 0 and not header.rotated and header.init_hash == b""
    assert bs.InrHeader.for_model(SirenMLP(cfg).build(), modality="shape", bitwidth=7, coder="brotli",
                                  step_sizes=[0.5] * 6) == header
    with pytest.raises(InrError, match="no registered representation describes a str"):
        bs.InrHeader.for_model("mlp", modality="shape", bitwidth=7, coder="brotli", step_sizes=[])


def test_v2_layout_and_size_breakdown_account_for_every_byte():
    header = make_header(init_hash=bytes(range(32)))
    data, sizes = bs.encode_inr(header, random_symbols(header))
    assert sizes.total == len(data)
    assert sizes.step_size_bytes == 4 * 8
    arch = fields_struct(SirenMLP.fields).size
    assert arch == 19
    assert sizes.container_bytes == 4 + 1 + 12 + (3 + arch) + (3 + 32) + 4
    assert sizes.total == sizes.container_bytes + sizes.step_size_bytes + sizes.payload_bytes
    assert sizes.paper_bytes == sizes.payload_bytes + sizes.step_size_bytes
    # The layout the module docstring and the README describe, read by hand.
    modality, height, width, rotated, in_f, channels, rep_id, bitwidth, coder, sections = \
        struct.unpack_from("<BHHBBBBBBB", data, 5)
    assert (modality, height, width, rotated, in_f, channels, rep_id, bitwidth, coder, sections) == \
        (0, 24, 32, 0, 2, 3, SirenMLP.file_id, 8, 0, 2)
    assert struct.unpack_from("<BH", data, 17) == (bs.SECTION_ARCHITECTURE, arch)
    assert struct.unpack_from("<BBHBHdI", data, 20) == (1, 0, 16, 2, 4, 1.4, 0)
    assert struct.unpack_from("<BH", data, 20 + arch) == (bs.SECTION_INIT, 32)
    assert data[23 + arch:55 + arch] == bytes(range(32))
    steps = struct.unpack_from("<8f", data, 55 + arch)
    assert steps == header.step_sizes


def test_forcing_the_papers_global_model():
    header = make_header()
    symbols = random_symbols(header)
    best, best_sizes = bs.encode_inr(header, symbols)
    paper, paper_sizes = bs.encode_inr(header, symbols, model="global")
    assert len(best) <= len(paper)
    assert paper_sizes.coding_model == "global"
    assert best_sizes.coding_model in coding.MODELS
    assert bs.encode_inr(make_header(coder="brotli"), symbols)[1].coding_model == "brotli"
    assert_same_symbols(symbols, bs.read_inr(paper)[1])


def test_file_errors(tmp_path):
    with pytest.raises(InrError, match="cannot read") as missing:
        bs.read_inr_file_bytes(tmp_path / "missing.inr")
    assert not isinstance(missing.value, CorruptFileError)
    path = tmp_path / "x.inr"
    header = make_header()
    path.write_bytes(bs.write_inr(header, random_symbols(header)))
    assert bs.read_inr(bs.read_inr_file_bytes(path))[0] == header


# ----------------------------------------------------------------------------------------------
# Version 1 files (written before the v2 format) are read forever
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["image_landscape_arith", "image_gray_brotli", "image_meta_residual",
                                  "shape_sphere"])
def test_v1_files_read_into_the_same_header_and_symbols_as_their_v2_rewrite(name):
    data = golden_v1(name)
    assert data[4] == 1
    header, symbols = bs.read_inr(data)
    assert isinstance(header.representation, SirenMLP)
    assert bool(header.init_hash) == ("meta" in name)
    rewritten = bs.write_inr(header, symbols)
    assert rewritten[4] == 2
    again, again_symbols = bs.read_inr(rewritten)
    assert again == header
    assert_same_symbols(symbols, again_symbols)


def test_v1_header_fields_are_where_v1_put_them():
    header, _ = bs.read_inr(golden_v1("image_portrait_arith"))
    assert (header.height, header.width, header.channels, header.encoding, header.hidden_dims,
            header.hidden_layers, header.ff_dims, header.gauss_seed, header.bitwidth) == \
        (32, 20, 3, "gauss", 10, 2, 6, 7, 7)
    assert struct.unpack_from("<BHHBBBBHBHdIBBBB", golden_v1("image_portrait_arith"), 5) == \
        (0, 32, 20, 3, 2, 3, 0, 10, 2, 6, 1.4, 7, 7, 0, 0, 0)


@pytest.mark.parametrize(
    "name,value,message",
    [
        ("modality", 2, "unknown modality code 2"),
        ("encoding", 4, "unknown encoding code 4"),
        ("activation", 200, "unknown activation code 200"),
        ("coder", 2, "unknown coder code 2"),
        ("rotated", 2, "rotated flag must be 0 or 1"),
        ("hidden_dims", 0, "hidden_dims 0"),
        ("hidden_layers", 65, "hidden_layers 65"),
        ("ff_dims", 0, "ff_dims must be >= 1"),
        ("bitwidth", 17, "bitwidth 17"),
        ("height", 0, "image size"),
        ("in_features", 3, "in_features 2"),
        ("channels", 4, "1 or 3 channels"),
        ("encoding_scale", float("inf"), "encoding_scale"),
        ("init_hash_len", 31, "init_hash must be empty or 32 bytes"),
    ],
)
def test_invalid_v1_header_fields(name, value, message):
    with pytest.raises(CorruptFileError, match=message):
        bs.read_inr(patch_field(golden_v1("image_landscape_arith"), name, value))


def test_v1_file_truncated_in_its_header():
    data = golden_v1("image_meta_residual")
    with pytest.raises(CorruptFileError, match="truncated"):
        bs.read_inr(with_crc(data[:bs._PREFIX + bs._V1.size - 2]))
    with pytest.raises(CorruptFileError, match="truncated in the header"):
        bs.read_inr(with_crc(data[:bs._PREFIX + bs._V1.size + 20]))
    with pytest.raises(CorruptFileError, match="parameters, more than the format's"):
        bs.read_inr(patch_field(patch_field(data, "hidden_dims", 4096), "hidden_layers", 64))


# ----------------------------------------------------------------------------------------------
# Writer errors
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"hidden_dims": 4097}, "hidden_dims 4097"),
        ({"hidden_layers": 65, "step_sizes": [1.0] * 134}, "hidden_layers 65"),
        ({"ff_dims": 1025}, "ff_dims 1025"),
        ({"bitwidth": 17}, "bitwidth 17"),
        ({"gauss_seed": -1}, "gauss_seed -1"),
        ({"modality": "video"}, "modality must be one of"),
        ({"coder": "zip"}, "coder must be one of"),
        ({"channels": 2}, "1 or 3 channels"),
        ({"height": 0}, "image size"),
        ({"height": 20000, "width": 20000}, "image size"),
        ({"init_hash": b"abc"}, "init_hash must be empty or 32 bytes"),
        ({"step_sizes": [0.1] * 7}, "expected 8 step sizes"),
        ({"step_sizes": [0.1] * 7 + [0.0]}, "step size 7 must be finite and > 0"),
        ({"step_sizes": [0.1] * 7 + [1e39]}, "step size 7"),  # inf as float32
        ({"encoding": "nerf", "ff_dims": 0}, "ff_dims must be >= 1"),
        ({"encoding_scale": float("nan")}, "encoding_scale"),
        ({"encoding_scale": 1e7}, "encoding_scale"),
        ({"encoding_scale": 1e5, "ff_dims": 16}, "nerf frequencies overflow"),
        ({"hidden_dims": 4096, "hidden_layers": 3}, "parameters, more than"),
    ],
)
def test_writer_rejects_headers_outside_the_format(changes, message):
    with pytest.raises(InrError, match=message):
        bs.write_inr(make_header(**changes), [])


def test_writer_rejects_shape_headers_with_an_image_size():
    header = make_header(modality="shape", height=4, width=4, channels=1, in_features=3)
    with pytest.raises(InrError, match="no height, width or rotation"):
        bs.write_inr(header, [])


def test_writer_rejects_symbols_that_do_not_fit():
    header = make_header()
    symbols = random_symbols(header)
    with pytest.raises(InrError, match="expected 8 symbol tensors"):
        bs.write_inr(header, symbols[:-1])
    with pytest.raises(InrError, match="symbol tensor 1 has 15 values"):
        bs.write_inr(header, [symbols[0], symbols[1][:-1], *symbols[2:]])
    symbols[3] = symbols[3].copy()
    symbols[3][0] = 256
    with pytest.raises(InrError, match="outside"):
        bs.write_inr(header, symbols)


# ----------------------------------------------------------------------------------------------
# Reader errors
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def valid() -> bytes:
    header = make_header()
    return bs.write_inr(header, random_symbols(header))


def test_short_or_foreign_files(valid):
    with pytest.raises(CorruptFileError, match="empty"):
        bs.read_inr(b"")
    with pytest.raises(CorruptFileError, match="not an .inr file"):
        bs.read_inr(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(CorruptFileError, match="not an .inr file"):
        bs.read_inr(b"IX")  # too short, but not even the start of an .inr file
    for n in (2, 4, 5, bs.MIN_FILE_BYTES - 1):
        with pytest.raises(CorruptFileError, match="truncated"):
            bs.read_inr(valid[:n])


def test_unknown_versions(valid):
    newer = with_crc(valid[:4] + bytes([3]) + valid[5:-4])
    with pytest.raises(CorruptFileError, match="format version 3 is newer than this decoder supports"):
        bs.read_inr(newer)
    with pytest.raises(CorruptFileError, match="unknown format version 0"):
        bs.read_inr(with_crc(valid[:4] + bytes([0]) + valid[5:-4]))
    # A version byte damaged in transit is damage, not a newer format.
    with pytest.raises(CorruptFileError, match="checksum mismatch"):
        bs.read_inr(valid[:4] + bytes([3]) + valid[5:])
    # v2 bytes labelled v1 are refused by the v1 parser, not misread
    with pytest.raises(CorruptFileError):
        bs.read_inr(with_crc(valid[:4] + bytes([1]) + valid[5:-4]))


def test_checksum_mismatch(valid):
    damaged = bytearray(valid)
    damaged[len(valid) // 2] ^= 0x10
    with pytest.raises(CorruptFileError, match="checksum mismatch: the file is corrupt"):
        bs.read_inr(bytes(damaged))
    with pytest.raises(CorruptFileError, match="checksum mismatch"):
        bs.read_inr(valid + b"\0")  # appended bytes move the checksum
    with pytest.raises(CorruptFileError, match="checksum mismatch"):
        bs.read_inr(valid[:-1])


@pytest.mark.parametrize(
    "name,value,message",
    [
        ("modality", 2, "unknown modality code 2"),
        ("encoding", 4, "unknown encoding code 4"),
        ("activation", 200, "unknown activation code 200"),
        ("coder", 2, "unknown coder code 2"),
        ("rotated", 2, "rotated flag must be 0 or 1"),
        ("representation", 0, "unknown representation id 0"),
        ("representation", 200, "unknown representation id 200"),
        ("hidden_dims", 0, "hidden_dims 0"),
        ("hidden_dims", 4097, "hidden_dims 4097"),
        ("hidden_layers", 0, "hidden_layers 0"),
        ("hidden_layers", 65, "hidden_layers 65"),
        ("ff_dims", 1025, "ff_dims 1025"),
        ("ff_dims", 0, "ff_dims must be >= 1"),
        ("bitwidth", 0, "bitwidth 0"),
        ("bitwidth", 17, "bitwidth 17"),
        ("height", 0, "image size"),
        ("in_features", 3, "in_features 2"),
        ("channels", 4, "1 or 3 channels"),
        ("encoding_scale", float("inf"), "encoding_scale"),
        ("encoding_scale", -1.0, "encoding_scale"),
        ("sections", 0, "no architecture section"),
    ],
)
def test_invalid_header_fields(valid, name, value, message):
    with pytest.raises(CorruptFileError, match=message):
        bs.read_inr(patch_field(valid, name, value))


def test_image_with_too_many_pixels(valid):
    data = patch_field(patch_field(valid, "height", 65535), "width", 65535)
    with pytest.raises(CorruptFileError, match="image size 65535x65535"):
        bs.read_inr(data)


def test_too_many_parameters_is_refused_before_decoding(valid):
    data = patch_field(patch_field(valid, "hidden_dims", 4096), "hidden_layers", 64)
    with pytest.raises(CorruptFileError, match="parameters, more than the format's 50000000"):
        bs.read_inr(data)


@pytest.mark.parametrize("value", [0.0, -0.5, float("nan"), float("inf")])
def test_invalid_step_sizes(valid, value):
    at = ARCH_START + fields_struct(SirenMLP.fields).size + 4 * 3  # step size of tensor 3
    data = with_crc(valid[:at] + struct.pack("<f", value) + valid[at + 4:-4])
    with pytest.raises(CorruptFileError, match="step size 3 must be finite and > 0"):
        bs.read_inr(data)


def test_header_that_runs_into_the_checksum(valid):
    with pytest.raises(CorruptFileError, match="truncated in the header"):
        bs.read_inr(with_crc(valid[:ARCH_START + fields_struct(SirenMLP.fields).size + 10]))
    with pytest.raises(CorruptFileError, match="runs past the end"):
        bs.read_inr(with_crc(valid[:ARCH_START + 5]))
    with pytest.raises(CorruptFileError, match="truncated in its sections"):
        bs.read_inr(with_crc(valid[:ARCH_START - 2]))


def _with_sections(data: bytes, extra: bytes, count: int, replace_arch: bytes | None = None) -> bytes:
    """`data` with its section count set to `count`, `extra` sections inserted after the first, and
    optionally the architecture section replaced."""
    arch_end = ARCH_START + fields_struct(SirenMLP.fields).size
    arch = data[ARCH_START - 3:arch_end] if replace_arch is None else replace_arch
    at, _ = field_place("sections", V2_LAYOUTS)
    body = data[:at] + bytes([count]) + data[at + 1:ARCH_START - 3] + arch + extra + data[arch_end:-4]
    return with_crc(body)


def test_sections_unknown_ancillary_skipped_unknown_critical_refused(valid):
    header, symbols = bs.read_inr(valid)
    skipped = _with_sections(valid, bs._section(200, b"a note a newer encoder added"), 2)
    assert len(skipped) > len(valid)
    got_header, got_symbols = bs.read_inr(skipped)
    assert got_header == header
    assert_same_symbols(symbols, got_symbols)
    assert bs.read_inr(_with_sections(valid, bs._section(128, b""), 2))[0] == header
    with pytest.raises(CorruptFileError, match="unknown section 3: the file needs a newer decoder"):
        bs.read_inr(_with_sections(valid, bs._section(3, b"xyz"), 2))
    with pytest.raises(CorruptFileError, match="unknown section 127"):
        bs.read_inr(_with_sections(valid, bs._section(127, b""), 2))


def test_sections_with_a_wrong_length_or_twice(valid):
    arch = valid[ARCH_START:ARCH_START + fields_struct(SirenMLP.fields).size]
    with pytest.raises(CorruptFileError, match=r"section 1 \(the siren_mlp architecture\) has 20 bytes, its fields "
                                               r"need 19"):
        bs.read_inr(_with_sections(valid, b"", 1, bs._section(1, arch + b"\0")))
    with pytest.raises(CorruptFileError, match=r"section 2 \(init\) has 31 bytes"):
        bs.read_inr(_with_sections(valid, bs._section(2, bytes(31)), 2))
    with pytest.raises(CorruptFileError, match="section 1 appears twice"):
        bs.read_inr(_with_sections(valid, bs._section(1, arch), 2))
    with pytest.raises(CorruptFileError, match="no architecture section"):
        bs.read_inr(_with_sections(valid, b"", 1, bs._section(200, arch)))
    # an init section makes the file a residual one
    residual = _with_sections(valid, bs._section(2, bytes(range(32))), 2)
    assert bs.read_inr(residual)[0].init_hash == bytes(range(32))


def test_per_channel_steps_round_trip_and_are_counted_with_the_steps():
    plain = make_header()
    header = with_channel_steps(plain)
    rows = sum(n for n in bs.channel_step_rows(header.representation) if n)
    assert rows == 16 + 16 + 16 + 3 and len(header.channel_codes) == rows
    symbols = random_symbols(header)
    data, sizes = bs.encode_inr(header, symbols)
    plain_data, plain_sizes = bs.encode_inr(plain, symbols)
    assert len(data) == len(plain_data) + 3 + rows  # section 5: tag, length, one byte a row
    assert sizes.step_size_bytes == plain_sizes.step_size_bytes + rows
    assert sizes.container_bytes == plain_sizes.container_bytes + 3
    got, got_symbols = bs.read_inr(data)
    assert got == header and got.channel_codes == header.channel_codes
    assert_same_symbols(symbols, got_symbols)
    assert bs.write_inr(got, got_symbols) == data


def test_per_channel_steps_the_writer_refuses():
    header = with_channel_steps(make_header())
    steps = list(header.step_sizes)
    with pytest.raises(InrError, match="per-channel steps cover every tensor of two or more dimensions"):
        bs.validate_header(dataclasses.replace(header, step_sizes=tuple([steps[0].step] + steps[1:])))
    with pytest.raises(InrError, match="tensor 1 \\(a vector rows\\) does not fit"):
        bs.validate_header(dataclasses.replace(header, step_sizes=tuple(
            [steps[0], ChannelSteps(0.1, np.zeros(16, np.uint8))] + steps[2:])))
    with pytest.raises(InrError, match="tensor 0 \\(16 rows\\) does not fit"):
        bs.validate_header(dataclasses.replace(header, step_sizes=tuple(
            [ChannelSteps(0.1, np.zeros(15, np.uint8))] + steps[1:])))


def test_per_channel_section_of_the_wrong_length_is_refused():
    header = with_channel_steps(make_header())
    data = bs.write_inr(header, random_symbols(header))
    plain = bs.write_inr(make_header(), random_symbols(header))
    codes = header.channel_codes
    with pytest.raises(CorruptFileError, match=r"section 5 \(channel steps\) has 50 bytes, the architecture's 51 rows"):
        bs.read_inr(_with_sections(plain, bs._section(5, codes[:-1]), 2))
    with pytest.raises(CorruptFileError, match=r"section 5 \(channel steps\) is empty"):
        bs.read_inr(_with_sections(plain, bs._section(5, b""), 2))
    assert bs.read_inr(_with_sections(plain, bs._section(5, codes), 2))[0] == bs.read_inr(data)[0]


def test_trailing_garbage_and_short_payload_under_a_valid_checksum(valid):
    with pytest.raises(CorruptFileError, match="bytes after its payload"):
        bs.read_inr(with_crc(valid[:-4] + b"junk"))
    with pytest.raises(CorruptFileError, match="truncated"):
        bs.read_inr(with_crc(valid[:-8]))


def test_header_that_does_not_match_the_payload(valid):
    # Another architecture with a valid checksum: the coded stream does not fit it.
    with pytest.raises(CorruptFileError):
        bs.read_inr(patch_field(valid, "hidden_dims", 17))


def test_brotli_file_with_the_wrong_size():
    header = make_header(coder="brotli")
    data = bs.write_inr(header, random_symbols(header))
    with pytest.raises(CorruptFileError, match="brotli payload expands to"):
        bs.read_inr(patch_field(data, "hidden_dims", 15))


# ----------------------------------------------------------------------------------------------
# Fuzzing
# ----------------------------------------------------------------------------------------------

# Small v2 files, so that hypothesis spends its time on mutations rather than on decoding, and the
# smallest golden v1 files (a brotli image, a residual image with its init hash).
FUZZ_HEADERS = [
    make_header(hidden_dims=6, hidden_layers=1, ff_dims=2),
    with_channel_steps(make_header(hidden_dims=6, hidden_layers=1, ff_dims=2, bitwidth=7)),
    make_header(hidden_dims=6, hidden_layers=1, encoding="gauss", ff_dims=2, coder="brotli"),
    make_header(modality="shape", hidden_dims=5, hidden_layers=1, encoding="mlp", ff_dims=0, bitwidth=12,
                init_hash=bytes(range(32))),
]
FUZZ_FILES = ([bs.write_inr(h, random_symbols(h, seed=i)) for i, h in enumerate(FUZZ_HEADERS)]
              + [golden_v1("image_gray_brotli"), golden_v1("image_portrait_arith")])
FUZZ_DECODED = [bs.read_inr(data) for data in FUZZ_FILES]
# Mutants per fuzz test: a few seconds each here; benchmarks/fuzz_decoder.py runs 100k+ per mode.
FUZZ_EXAMPLES = 600
@st.composite
def mutations(draw, length: int):
    """A list of 1..4 edits of a byte string: bit flip, byte replacement, truncation, insertion,
    appended bytes. Positions are drawn as fractions so they stay valid after earlier edits."""
    edits = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "truncate", "insert", "append"]))
        where = draw(st.floats(0, 1, exclude_max=True))
        if kind == "flip":
            edits.append((kind, where, draw(st.integers(0, 7))))
        elif kind == "set":
            edits.append((kind, where, draw(st.integers(0, 255))))
        elif kind == "truncate":
            edits.append((kind, where, None))
        else:
            edits.append((kind, where, draw(st.binary(min_size=1, max_size=8))))
    return edits


def apply(data: bytes, edits) -> bytes:
    out = bytearray(data)
    for kind, where, arg in edits:
        pos = int(where * len(out))
        if kind == "flip" and out:
            out[pos] ^= 1 << arg
        elif kind == "set" and out:
            out[pos] = arg
        elif kind == "truncate":
            del out[pos:]
        elif kind == "insert":
            out[pos:pos] = arg
        elif kind == "append":
            out += arg
    return bytes(out)


def check_result(data: bytes, result) -> None:
    """A decoded mutant must be well formed: one array per tensor, right sizes, in the alphabet."""
    header, symbols = result
    lengths = bs.tensor_lengths(header)
    assert len(symbols) == len(lengths)
    for s, n in zip(symbols, lengths):
        assert s.dtype == np.int64 and s.shape == (n,)
        assert s.size == 0 or (s.min() >= 0 and s.max() < 1 << header.bitwidth)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.integers(0, len(FUZZ_FILES) - 1), edits=st.data())
def test_fuzz_mutated_files(which, edits):
    original = FUZZ_FILES[which]
    mutant = apply(original, edits.draw(mutations(len(original))))
    try:
        result = bs.read_inr(mutant)
    except CorruptFileError as exc:
        assert mutant != original
        assert "\n" not in str(exc)
        return
    # A change that slips past CRC-32 would need a 1-in-4-billion collision.
    assert mutant == original
    header, symbols = result
    assert header == FUZZ_DECODED[which][0]
    assert_same_symbols(FUZZ_DECODED[which][1], symbols)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.integers(0, len(FUZZ_FILES) - 1), edits=st.data())
def test_fuzz_mutated_files_with_fixed_checksum(which, edits):
    """Mutate everything but the checksum, then recompute it, so that the mutation reaches the
    header and payload checks behind it."""
    original = FUZZ_FILES[which]
    mutant = with_crc(apply(original[:-4], edits.draw(mutations(len(original) - 4))))
    try:
        result = bs.read_inr(mutant)
    except (CorruptFileError, bs.DecodeLimitError) as exc:  # a flipped size field may ask for too much
        assert "\n" not in str(exc)
        return
    check_result(mutant, result)


def test_fuzz_fixtures_are_valid():
    for header, (decoded, _) in zip(FUZZ_HEADERS, FUZZ_DECODED):
        assert decoded == header
    assert [data[4] for data in FUZZ_FILES] == [2, 2, 2, 2, 1, 1]
    for data, result in zip(FUZZ_FILES, FUZZ_DECODED):
        check_result(data, result)
    assert dataclasses.replace(FUZZ_HEADERS[0]) == FUZZ_HEADERS[0]
