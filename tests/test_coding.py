"""Lossless coding of quantized symbols: round trips, sizes, and every way a stream can be bad."""

from __future__ import annotations

import time
import tracemalloc

import brotli
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from inrcompress.codec import coding
from inrcompress.errors import CorruptFileError

# Tensor sizes of a small INR (nerf, 2 -> 66 features, 3 hidden layers of 32, RGB): W0, b0, ...
SMALL_NET = [32 * 66, 32, 32 * 32, 32, 32 * 32, 32, 32 * 32, 32, 3 * 32, 3]


def laplace_tensors(seed: int, lengths: list[int], bitwidth: int, scale: float) -> list[np.ndarray]:
    """Symbols as quantized weights look: Laplace around the middle of the alphabet, with a
    different spread per tensor (biases are often wider than weights)."""
    rng = np.random.default_rng(seed)
    top = (1 << bitwidth) - 1
    out = []
    for n in lengths:
        s = scale * rng.uniform(0.5, 2.0)
        out.append(np.clip(np.round(rng.laplace(top / 2, s, n)), 0, top).astype(np.int64))
    return out


def assert_same(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert y.dtype == np.int64 and y.ndim == 1
        np.testing.assert_array_equal(np.asarray(x, dtype=np.int64), y)


def roundtrip(tensors, bitwidth, method, model=None):
    data = coding.encode_symbols(tensors, bitwidth, method, model)
    out = coding.decode_symbols(data, [len(t) for t in tensors], bitwidth, method)
    assert_same(tensors, out)
    return data


# ----------------------------------------------------------------------------------------------
# Round trips
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bitwidth,scale", [(7, 5.0), (8, 10.0), (16, 2000.0)])
@pytest.mark.parametrize("method", coding.METHODS)
def test_roundtrip_laplace_symbols(bitwidth, scale, method):
    roundtrip(laplace_tensors(bitwidth, SMALL_NET, bitwidth, scale), bitwidth, method)


@pytest.mark.parametrize("bitwidth,scale", [(7, 5.0), (8, 10.0), (16, 2000.0)])
@pytest.mark.parametrize("model", coding.MODELS)
def test_roundtrip_every_arithmetic_model(bitwidth, scale, model):
    tensors = laplace_tensors(100 + bitwidth, SMALL_NET, bitwidth, scale)
    if model == "adaptive" and bitwidth == 16:
        with pytest.raises(ValueError, match="does not apply"):  # the symbols span > 4096 values
            coding.encode_symbols(tensors, bitwidth, "arithmetic", model)
        tensors = laplace_tensors(100 + bitwidth, SMALL_NET, bitwidth, 50.0)
    data = roundtrip(tensors, bitwidth, "arithmetic", model)
    assert coding.arithmetic_model_name(data) == model


@pytest.mark.parametrize("method,model", [("brotli", None), ("arithmetic", None)]
                         + [("arithmetic", m) for m in coding.MODELS])
@pytest.mark.parametrize(
    "tensors",
    [
        [],
        [np.zeros(0, dtype=np.int64)],
        [np.zeros(0, dtype=np.int64), np.array([3, 3, 4]), np.zeros(0, dtype=np.int64)],
        [np.full(1000, 77)],  # one distinct symbol: zero entropy
        [np.full(10, 5), np.full(3, 9), np.array([0])],  # every tensor constant, all different
        [np.array([255])],
        [np.arange(256), np.arange(256)[::-1].copy()],  # every symbol of the alphabet
    ],
    ids=["empty-list", "zero-length", "zero-length-between", "single-symbol", "constant-tensors", "one-value",
         "all-symbols"],
)
def test_roundtrip_edge_cases(tensors, method, model):
    roundtrip(tensors, 8, method, model)


def test_single_symbol_stream_has_no_payload():
    data = roundtrip([np.full(100_000, 42)], 8, "arithmetic")
    assert len(data) <= 8  # model byte, a tiny table or range, an empty payload


@pytest.mark.parametrize("model", [None, *coding.MODELS])
def test_bitwidth_16_with_the_whole_alphabet(model):
    rng = np.random.default_rng(16)
    everything = rng.permutation(1 << 16)
    if model == "adaptive":
        with pytest.raises(ValueError, match="does not apply"):
            coding.encode_symbols([everything], 16, "arithmetic", model)
        assert "adaptive" not in coding.model_sizes([everything], 16)
        # The widest range it takes, at the top of the 16-bit alphabet.
        top = np.arange((1 << 16) - coding.ADAPTIVE_MAX_ALPHABET, 1 << 16)
        roundtrip([rng.permutation(top), top[::7].copy(), np.array([65535])], 16, "arithmetic", model)
        return
    roundtrip([everything[:40000], everything[40000:]], 16, "arithmetic", model)


@pytest.mark.parametrize("bitwidth", [1, 2, 9, 15])
@pytest.mark.parametrize("method", coding.METHODS)
def test_roundtrip_other_bitwidths(bitwidth, method):
    rng = np.random.default_rng(bitwidth)
    tensors = [rng.integers(0, 1 << bitwidth, n) for n in (50, 7, 1)]
    roundtrip(tensors, bitwidth, method)


@settings(max_examples=150, deadline=None)
@given(
    bitwidth=st.integers(1, 16),
    method=st.sampled_from(coding.METHODS),
    seed=st.integers(0, 2 ** 32 - 1),
    lengths=st.lists(st.integers(0, 300), max_size=8),
    spread=st.floats(0.0, 3.0),
)
def test_roundtrip_random_streams(bitwidth, method, seed, lengths, spread):
    rng = np.random.default_rng(seed)
    top = (1 << bitwidth) - 1
    tensors = [np.clip(np.round(rng.laplace(rng.uniform(0, top), 10 ** spread, n)), 0, top).astype(np.int64)
               for n in lengths]
    data = roundtrip(tensors, bitwidth, method)
    if method == "arithmetic":
        # The chosen model is never worse than the paper's single global table.
        assert len(data) <= len(coding.encode_symbols(tensors, bitwidth, "arithmetic", "global"))


# ----------------------------------------------------------------------------------------------
# Sizes
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bitwidth,scale", [(7, 5.0), (8, 10.0), (16, 2000.0)])
def test_best_model_is_the_smallest_and_never_worse_than_global(bitwidth, scale):
    tensors = laplace_tensors(7, SMALL_NET, bitwidth, scale)
    sizes = coding.model_sizes(tensors, bitwidth)
    # At 16 bits these symbols span more than the adaptive model takes.
    assert list(sizes) == [m for m in coding.MODELS if bitwidth < 16 or m != "adaptive"]
    best = coding.encode_symbols(tensors, bitwidth, "arithmetic")
    assert len(best) == min(sizes.values()) <= sizes["global"]


def test_per_tensor_laplace_beats_the_global_table_on_laplace_weights():
    tensors = laplace_tensors(3, SMALL_NET, 8, 10.0)
    sizes = coding.model_sizes(tensors, 8)
    assert sizes["laplace"] < sizes["global"]


def test_mixed_model_uses_a_shared_table_when_tensors_share_an_odd_distribution():
    # Two big tensors from one bimodal distribution (no Laplace fits it) and a small Laplace
    # bias: sharing one table between the big two and a Laplace for the bias is best.
    rng = np.random.default_rng(5)
    bimodal = lambda n: np.where(rng.random(n) < 0.5, rng.integers(20, 40, n), rng.integers(200, 230, n))
    tensors = [bimodal(5000), bimodal(5000), np.clip(np.round(rng.laplace(128, 3, 64)), 0, 255).astype(np.int64)]
    sizes = coding.model_sizes(tensors, 8)
    assert sizes["mixed"] < min(sizes["global"], sizes["per_tensor"], sizes["laplace"], sizes["gaussian"])
    roundtrip(tensors, 8, "arithmetic", "mixed")


def inr_like_tensors(seed: int, width: int, bitwidth: int) -> list[np.ndarray]:
    """Symbols shaped like a quantized SIREN: a peaked first layer with a few outliers, bell-shaped
    hidden layers of different spreads, and near-uniform biases, all around one zero point."""
    rng = np.random.default_rng(seed)
    top = (1 << bitwidth) - 1
    mid = (top + 1) / 2
    unit = (top + 1) / 128

    def bell(n, s):
        return np.clip(np.round(mid + unit * s * rng.standard_t(5, n)), 0, top).astype(np.int64)

    def flat(n):
        return rng.integers(int(0.1 * top), top + 1, n)

    tensors = [np.where(rng.random(width * 66) < 0.02, flat(width * 66), bell(width * 66, 6.0)), flat(width)]
    for s in (14.0, 18.0, 16.0):
        tensors += [bell(width * width, s), flat(width)]
    return tensors + [flat(3 * width), flat(3)]


@pytest.mark.parametrize("width,bitwidth", [(16, 7), (32, 8)])
def test_adaptive_model_beats_the_static_models_and_brotli_on_inr_like_weights(width, bitwidth):
    tensors = inr_like_tensors(width + bitwidth, width, bitwidth)
    sizes = coding.model_sizes(tensors, bitwidth)
    old_best = min(v for m, v in sizes.items() if m != "adaptive")
    assert sizes["adaptive"] < old_best
    assert sizes["adaptive"] < len(coding.encode_symbols(tensors, bitwidth, "brotli"))
    data = roundtrip(tensors, bitwidth, "arithmetic")
    assert coding.arithmetic_model_name(data) == "adaptive" and len(data) == sizes["adaptive"]


@pytest.mark.parametrize("bitwidth", [1, 2, 7, 8, 12, 16])
def test_adaptive_model_never_makes_the_choice_worse(bitwidth):
    # Whatever the adaptive model costs, adding it can only shrink the chosen stream.
    rng = np.random.default_rng(bitwidth)
    top = (1 << bitwidth) - 1
    tensors = [np.clip(np.round(rng.laplace(top / 2, 1 + top / 50, n)), 0, top).astype(np.int64) for n in (900, 17, 1)]
    sizes = coding.model_sizes(tensors, bitwidth)
    chosen = roundtrip(tensors, bitwidth, "arithmetic")
    assert len(chosen) == min(sizes.values()) <= min(v for m, v in sizes.items() if m != "adaptive")


def test_adaptive_model_parameter_estimate_matches_the_coded_size():
    # The encoder picks per-tensor parameters from an estimate of the payload bits; it should
    # track what the range coder really produces (32-bit words, 24-bit probabilities).
    tensors = inr_like_tensors(3, 24, 8)
    data = coding.encode_symbols(tensors, 8, "arithmetic", "adaptive")
    lo = min(int(t.min()) for t in tensors)
    alphabet = max(int(t.max()) for t in tensors) - lo + 1
    prev = np.zeros(alphabet, dtype=np.int64)
    bits = 0.0
    for t in tensors:
        bits += coding._adaptive_costs(t - lo, alphabet, prev)[0]
        prev += np.bincount(t - lo, minlength=alphabet)
    payload = len(data) - 1 - 2 - len(tensors) - 2 - 2  # model, range, parameters, length, end mark
    assert bits / 8 <= payload + 4 and payload <= 1.01 * bits / 8 + 8


def test_adaptive_model_is_fast_on_a_60k_symbol_network():
    tensors = inr_like_tensors(60, 128, 8)  # 128 * 66 + 3 * 128**2 + ...: about 58k weights
    assert sum(len(t) for t in tensors) > 57_000
    start = time.perf_counter()
    data = roundtrip(tensors, 8, "arithmetic", "adaptive")
    assert time.perf_counter() - start < 2.0
    assert coding.arithmetic_model_name(data) == "adaptive"


def test_arithmetic_size_is_within_one_percent_of_the_empirical_entropy():
    tensors = laplace_tensors(11, [400_000], 8, 6.0)
    entropy_bytes = coding.empirical_entropy_bits(tensors) / 8
    size = len(coding.encode_symbols(tensors, 8, "arithmetic"))
    table = 2 * 256 + 8  # at most 2 varint bytes per count here, plus range and payload length
    assert size <= 1.01 * entropy_bytes + table
    # The global model's payload alone is much closer than that.
    global_size = len(coding.encode_symbols(tensors, 8, "arithmetic", "global"))
    assert global_size <= 1.001 * entropy_bytes + table


def test_empirical_entropy_bits():
    assert coding.empirical_entropy_bits([]) == 0.0
    assert coding.empirical_entropy_bits([np.zeros(0, dtype=np.int64)]) == 0.0
    assert coding.empirical_entropy_bits([np.full(10, 3)]) == 0.0
    # Four equally likely symbols: 2 bits each.
    assert coding.empirical_entropy_bits([np.arange(4).repeat(25), np.arange(4).repeat(75)]) == pytest.approx(800.0)


# ----------------------------------------------------------------------------------------------
# Encoder argument errors (programming errors: ValueError)
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tensors,bitwidth,method,model",
    [
        ([np.array([0, 256])], 8, "arithmetic", None),
        ([np.array([-1])], 8, "brotli", None),
        ([np.array([[1, 2]])], 8, "arithmetic", None),
        ([np.array([0.5])], 8, "arithmetic", None),
        ([np.array([1])], 0, "arithmetic", None),
        ([np.array([1])], 17, "arithmetic", None),
        ([np.array([1])], 8, "zip", None),
        ([np.array([1])], 8, "arithmetic", "huffman"),
        ([np.array([1])], 8, "brotli", "global"),
    ],
)
def test_encoder_rejects_bad_arguments(tensors, bitwidth, method, model):
    with pytest.raises(ValueError):
        coding.encode_symbols(tensors, bitwidth, method, model)


# ----------------------------------------------------------------------------------------------
# Corrupt arithmetic streams
# ----------------------------------------------------------------------------------------------


def varints(*values: int) -> bytes:
    return coding._encode_varints(list(values))


def test_varint_roundtrip():
    values = [0, 1, 127, 128, 300, 16383, 16384, 2 ** 32, 2 ** 62]
    reader = coding._Reader(varints(*values))
    assert reader.varints(len(values), 2 ** 63, "test").tolist() == values
    reader = coding._Reader(varints(*values))
    assert [reader.varint(2 ** 63, "test") for _ in values] == values
    assert reader.remaining == 0


def decode(data: bytes, lengths, bitwidth=8):
    return coding.decode_symbols(data, lengths, bitwidth, "arithmetic")


@pytest.mark.parametrize(
    "data,lengths,bitwidth,message",
    [
        (b"", [3], 8, "truncated in the model id"),
        (bytes([9]) + varints(0), [], 8, "unknown arithmetic-coding model id 9"),
        # global table: lo 5, span 1, counts 2 + 2 = 4, but 3 symbols are expected
        (bytes([0]) + varints(5, 1, 2, 2, 0), [3], 8, "counts sum to 4, expected 3"),
        (bytes([0]) + varints(5, 1, 3, 0, 0), [3], 8, "zero count at an end"),
        # a table that reaches past the alphabet
        (bytes([0]) + varints(300, 0, 3, 0), [3], 8, "exceeds the limit 255"),
        (bytes([0]) + varints(200, 100, 3, 0), [3], 8, "exceeds the limit 55"),
        # a huge span is refused before anything of that size exists
        (bytes([0]) + varints(0, 2 ** 60), [3], 16, "exceeds the limit 65535"),
        (bytes([0]) + varints(0, 1, 2), [3], 8, "truncated in the shared table"),
        (bytes([0]) + varints(0, 0, 3) + b"\xff" * 11, [3], 8, "overlong number"),
        # payload length
        (bytes([0]) + varints(0, 1, 1, 2, 5) + b"\0" * 8, [3], 8, "truncated (8 of 20 bytes)"),
        (bytes([0]) + varints(0, 0, 3, 0) + b"xy", [3], 8, "2 bytes after its payload"),
        # laplace parameters
        (bytes([2]) + varints(10, 5) + np.array([12, 0], "<f4").tobytes() + varints(0), [3], 8, "invalid scale"),
        (bytes([2]) + varints(10, 5) + np.array([12, -1], "<f4").tobytes() + varints(0), [3], 8, "invalid scale"),
        (bytes([3]) + varints(10, 5) + np.array([np.nan, 2], "<f4").tobytes() + varints(0), [3], 8, "invalid mean"),
        (bytes([3]) + varints(10, 5) + np.array([3, np.inf], "<f4").tobytes() + varints(0), [3], 8, "invalid scale"),
        (bytes([2]) + varints(10, 5) + b"\0\0", [3], 8, "truncated in the laplace model of tensor 0 (mean)"),
        # adaptive model: range, parameter bytes
        (bytes([5]) + varints(0, 4096), [3], 16, "exceeds the limit 4095"),
        (bytes([5]) + varints(250, 6), [3], 8, "exceeds the limit 5"),
        (bytes([5]) + varints(256, 0), [3], 8, "exceeds the limit 255"),
        (bytes([5]) + varints(3, 5, 0x1F), [3, 0, 4], 8, "truncated in the adaptive model parameters"),
        (bytes([5]), [3], 8, "truncated in the adaptive model (lowest symbol)"),
        (bytes([5]) + varints(3, 5) + b"\0\0" + varints(1), [3, 4], 8, "truncated (0 of 4 bytes)"),
        (bytes([5]) + varints(7, 0, 0) + b"x", [3], 8, "1 bytes after its payload"),
        (bytes([5]) + varints(0) + b"x", [], 8, "1 bytes after its payload"),
        # mixed selector
        (bytes([4]), [3], 8, "truncated in the model selector"),
        (bytes([4, 0b1100]) + varints(0, 0, 3, 0), [3], 8, "nonzero padding bits"),
    ],
)
def test_corrupt_arithmetic_streams(data, lengths, bitwidth, message):
    with pytest.raises(CorruptFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        decode(data, lengths, bitwidth)


def test_stream_decoded_with_a_smaller_bitwidth_is_rejected():
    data = coding.encode_symbols([np.array([0, 200, 255, 7])], 8, "arithmetic", "global")
    with pytest.raises(CorruptFileError, match="exceeds the limit 127"):
        decode(data, [4], bitwidth=7)


def test_stream_decoded_with_other_lengths_is_rejected():
    tensors = laplace_tensors(1, [500, 20], 8, 10.0)
    data = coding.encode_symbols(tensors, 8, "arithmetic", "global")
    with pytest.raises(CorruptFileError, match="sum to 520, expected 521"):
        decode(data, [500, 21])


@pytest.mark.parametrize("lengths", [[500, 32, 999], [500, 32, 1001], [500, 33, 1000], [501, 32, 999]])
def test_adaptive_stream_decoded_with_other_lengths_is_rejected(lengths):
    tensors = laplace_tensors(9, [500, 32, 1000], 8, 6.0)
    data = coding.encode_symbols(tensors, 8, "arithmetic", "adaptive")
    with pytest.raises(CorruptFileError, match="does not end where the tensor lengths say"):
        decode(data, lengths)


@pytest.mark.parametrize("model", coding.MODELS)
def test_damaged_payload_words_are_caught(model):
    tensors = laplace_tensors(2, [3000, 40], 8, 10.0)
    data = bytearray(coding.encode_symbols(tensors, 8, "arithmetic", model))
    failures = 0
    rng = np.random.default_rng(0)
    for _ in range(40):
        damaged = bytearray(data)
        pos = int(rng.integers(len(data) - 40, len(data)))  # inside the range-coder words
        damaged[pos] ^= 1 << int(rng.integers(8))
        try:
            out = decode(bytes(damaged), [3000, 40])
        except CorruptFileError:
            failures += 1
            continue
        # Without a checksum a parametric model cannot notice every flip; the result must
        # still be well-formed.
        assert [len(t) for t in out] == [3000, 40]
        assert all(t.min() >= 0 and t.max() <= 255 for t in out)
    if model in ("global", "per_tensor"):
        assert failures == 40
    if model == "adaptive":
        assert failures >= 36  # the end mark catches nearly all  # the stored histogram catches every one


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=st.sampled_from(coding.MODELS), data=st.data())
def test_mutated_arithmetic_streams_only_raise_corrupt_file_error(model, data):
    tensors = FUZZ_TENSORS
    stream = bytearray(FUZZ_STREAMS[model])
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(stream) - 1))
        action = data.draw(st.sampled_from(["flip", "set", "cut", "insert"]))
        if action == "flip":
            stream[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "set":
            stream[pos] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del stream[pos:]
            if not stream:
                break
        else:
            stream[pos:pos] = data.draw(st.binary(min_size=1, max_size=4))
    lengths = [len(t) for t in tensors]
    try:
        out = decode(bytes(stream), lengths)
    except CorruptFileError:
        return
    assert [len(t) for t in out] == lengths
    assert all(t.size == 0 or (t.min() >= 0 and t.max() <= 255) for t in out)


FUZZ_TENSORS = laplace_tensors(4, [64, 8, 64, 8, 24, 3, 0], 8, 4.0)
FUZZ_STREAMS = {m: coding.encode_symbols(FUZZ_TENSORS, 8, "arithmetic", m) for m in coding.MODELS}


def test_constriction_panics_become_corrupt_file_errors():
    def panic():
        raise type("PanicException", (BaseException,), {})("assertion failed")

    with pytest.raises(CorruptFileError, match="PanicException: assertion failed"):
        coding._call_constriction(panic)
    with pytest.raises(KeyboardInterrupt):
        coding._call_constriction(lambda: (_ for _ in ()).throw(KeyboardInterrupt()))


# ----------------------------------------------------------------------------------------------
# Corrupt brotli streams
# ----------------------------------------------------------------------------------------------


def decode_brotli(data: bytes, lengths, bitwidth=8):
    return coding.decode_symbols(data, lengths, bitwidth, "brotli")


def test_brotli_stream_of_the_wrong_size_is_rejected():
    data = coding.encode_symbols([np.arange(10)], 8, "brotli")
    with pytest.raises(CorruptFileError, match="expands to 10 bytes, the architecture needs 11"):
        decode_brotli(data, [11])
    with pytest.raises(CorruptFileError, match="more than the 9 bytes"):
        decode_brotli(data, [9])
    with pytest.raises(CorruptFileError, match="more than the 8 bytes"):
        decode_brotli(data, [4], bitwidth=16)  # 10 bytes would be 5 uint16


def test_brotli_truncation_and_trailing_bytes_are_rejected():
    data = coding.encode_symbols([np.arange(200) % 7], 8, "brotli")
    with pytest.raises(CorruptFileError, match="truncated"):
        decode_brotli(data[:-1], [200])
    with pytest.raises(CorruptFileError, match="damaged"):
        decode_brotli(data + b"\0", [200])
    with pytest.raises(CorruptFileError):
        decode_brotli(b"", [200])
    with pytest.raises(CorruptFileError, match="damaged"):
        decode_brotli(b"\xff" * 20, [200])


def test_brotli_symbol_above_the_alphabet_is_rejected():
    data = brotli.compress(bytes([1, 2, 200]))
    with pytest.raises(CorruptFileError, match="symbol above 127"):
        decode_brotli(data, [3], bitwidth=7)
    data = brotli.compress(np.array([1, 40000], "<u2").tobytes())
    with pytest.raises(CorruptFileError, match="symbol above 16383"):
        decode_brotli(data, [2], bitwidth=14)


def test_brotli_bomb_is_refused_without_allocating_its_output():
    bomb = brotli.compress(b"\0" * (256 << 20), quality=1)  # 256 MiB of zeros in a few kB
    assert len(bomb) < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(CorruptFileError, match="more than"):
            decode_brotli(bomb, [1000])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20
