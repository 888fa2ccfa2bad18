"""The static entropy models: every tensor is coded with a table or a parametric model that the
stream states up front (ids 0..4, in the order of the first version of the format).

  - "global"     (0): one frequency table over all tensors (what the paper did);
  - "per_tensor" (1): one frequency table per tensor;
  - "laplace"    (2): a quantized Laplace per tensor (mean, scale as float32);
  - "gaussian"   (3): a quantized Gaussian per tensor (mean, std as float32);
  - "mixed"      (4): each tensor picks one of the four above (a shared table that the tensors
                      choosing it pool, its own table, Laplace, Gaussian); the choice is stored
                      as 2 bits per tensor.

Body layout (after the model id byte; varint = unsigned LEB128, tables and parameters as in
tables.py):

    [mixed only] ceil(T/4) bytes: 2-bit kind per tensor, tensor i in bits 2(i%4).., zero padded
    [shared table, if tensors that use it hold > 0 symbols]
    [per tensor with > 0 symbols not using the shared table: its table or parameters]
    varint   W, the number of 32-bit words of range-coder output
    W x u32  little-endian range-coder words (all coded tensors, in order, one stream)

A tensor whose symbols are all equal (span 0) costs no payload bits at all.

cost_bits of these models is computed from histograms alone, without running the range coder:
tables and parameters are counted exactly, the payload as its ideal code length rounded up to
whole words. The error bound is stated and tested in tests/test_coding.py.
"""

from __future__ import annotations

import constriction
import numpy as np

from inrcompress.codec.entropy.bytestream import (Reader, call_constriction, payload_bytes, payload_cost_bits,
                                                  payload_decoder)
from inrcompress.codec.entropy.registry import EntropyModel, register_entropy_model
from inrcompress.codec.entropy.symbols import ContentCache, Symbols
from inrcompress.codec.entropy.tables import (GAUSSIAN, LAPLACE, OWN, PARAM_KIND_NAMES, SHARED, Param, Table,
                                              TensorStats, check_histogram, pool, self_information_bits,
                                              table_cost_bits)
from inrcompress.errors import CorruptFileError


# Small tensors' statistics by content: the latent codec's step search fitted 4x fewer
# parametric models with it.
_STATS = ContentCache(entries=512, max_symbols=4096)


def tensor_stats(tensors: Symbols) -> list[TensorStats]:
    """Per-tensor statistics, computed once per Symbols and shared by every static model (and,
    for small tensors, by every Symbols holding a tensor of the same content)."""
    return tensors.memo("tensor_stats", lambda: [_STATS.get(lambda: TensorStats(a), [a]) for a in tensors])


def _plan_models(kinds: list[int], stats: list[TensorStats]) -> tuple[Table | None, list]:
    """The shared table (or None) and, per tensor, the table or Param it is coded with (None for
    an empty tensor)."""
    shared = pool(stats, [i for i, k in enumerate(kinds) if k == SHARED])
    models: list = [None] * len(stats)
    for i, (s, k) in enumerate(zip(stats, kinds)):
        if s.symbols.size:
            models[i] = shared if k == SHARED else s.own if k == OWN else s.fit(k)[0]
    return shared, models


def encode_plan(kinds: list[int], stats: list[TensorStats]) -> bytes:
    """The body after the model id and selector: tables or parameters, then the payload."""
    shared, models = _plan_models(kinds, stats)
    out = bytearray(shared.to_bytes() if shared is not None else b"")
    for model in models:
        if model is not None and model is not shared:
            out += model.to_bytes()
    encoder = constriction.stream.queue.RangeEncoder()
    cache: dict[int, object] = {}
    for s, model in zip(stats, models):
        if model is None:
            continue
        if isinstance(model, Table):
            if model.span == 0:
                continue
            entropy_model = cache.setdefault(id(model), model.entropy_model())
            encoder.encode((s.symbols - model.lo).astype(np.int32), entropy_model)
        elif model.hi > model.lo:
            encoder.encode(s.symbols.astype(np.int32), model.entropy_model())
    return bytes(out + payload_bytes(encoder))


def plan_cost_bits(kinds: list[int], stats: list[TensorStats]) -> float:
    """Estimated bits of encode_plan(kinds, stats): model bytes exactly, the payload as its ideal
    code length (the self-information under each table, the fitted estimate under each Param)."""
    shared, models = _plan_models(kinds, stats)
    model_bits = 8.0 * len(shared.to_bytes()) if shared is not None else 0.0
    information = self_information_bits(shared.counts) if shared is not None else 0.0
    for s, k, model in zip(stats, kinds, models):
        if model is None or model is shared:
            continue
        own_bits = 8.0 * len(model.to_bytes())
        model_bits += own_bits
        information += self_information_bits(model.counts) if k == OWN else model.payload_bits(s.hist)
    return model_bits + payload_cost_bits(information)


def decode_plan(reader: Reader, kinds: list[int], lengths: list[int], max_symbol: int) -> list[np.ndarray]:
    """Invert encode_plan; the reader must end exactly with the payload."""
    members = [i for i, k in enumerate(kinds) if k == SHARED and lengths[i]]
    shared_n = sum(lengths[i] for i in members)
    shared = Table.parse(reader, shared_n, max_symbol, "shared table") if shared_n else None
    models: list = [None] * len(lengths)
    for i, (n, k) in enumerate(zip(lengths, kinds)):
        if not n:
            continue
        if k == SHARED:
            models[i] = shared
        elif k == OWN:
            models[i] = Table.parse(reader, n, max_symbol, f"table of tensor {i}")
        else:
            models[i] = Param.parse(reader, k, max_symbol, f"{PARAM_KIND_NAMES[k]} model of tensor {i}")

    decoder = payload_decoder(reader)

    out = []
    cache: dict[int, object] = {}
    for i, (n, model) in enumerate(zip(lengths, models)):
        if model is None:
            out.append(np.zeros(0, dtype=np.int64))
        elif isinstance(model, Table):
            if model.span == 0:
                out.append(np.full(n, model.lo, dtype=np.int64))
                continue
            entropy_model = cache.get(id(model))
            if entropy_model is None:
                entropy_model = cache[id(model)] = call_constriction(model.entropy_model)
            decoded = call_constriction(decoder.decode, entropy_model, n)
            out.append(np.asarray(decoded, dtype=np.int64) + model.lo)
        elif model.hi == model.lo:
            out.append(np.full(n, model.lo, dtype=np.int64))
        else:
            decoded = np.asarray(call_constriction(decoder.decode, model.entropy_model(), n), dtype=np.int64)
            if decoded.min() != model.lo or decoded.max() != model.hi:
                raise CorruptFileError(f"tensor {i} decodes outside the symbol range its model declares")
            out.append(decoded)

    # Tables state the exact histogram of what they code: any payload damage that survives the
    # range decoder almost surely breaks it.
    for i, model in enumerate(models):
        if isinstance(model, Table) and model is not shared:
            check_histogram(out[i], model, f"tensor {i}")
    if shared is not None:
        check_histogram(np.concatenate([out[i] for i in members]), shared, "the shared-table tensors")
    return out


class _OneKindForAll(EntropyModel):
    """A static model that codes every tensor with the same kind of per-tensor model."""

    kind: int

    def encode(self, tensors: Symbols, bitwidth: int) -> bytes:
        return encode_plan([self.kind] * len(tensors), tensor_stats(tensors))

    def decode(self, data: bytes, lengths: list[int], bitwidth: int) -> list[np.ndarray]:
        return decode_plan(Reader(data), [self.kind] * len(lengths), lengths, (1 << bitwidth) - 1)

    def cost_bits(self, tensors: Symbols, bitwidth: int) -> float:
        return plan_cost_bits([self.kind] * len(tensors), tensor_stats(tensors))


@register_entropy_model("global")
class GlobalTable(_OneKindForAll):
    """One frequency table over all tensors (the paper's model)."""

    model_id = 0
    kind = SHARED


@register_entropy_model("per_tensor")
class PerTensorTables(_OneKindForAll):
    """One frequency table per tensor."""

    model_id = 1
    kind = OWN


@register_entropy_model("laplace")
class PerTensorLaplace(_OneKindForAll):
    """A quantized Laplace per tensor, its mean and scale stored as float32."""

    model_id = 2
    kind = LAPLACE


@register_entropy_model("gaussian")
class PerTensorGaussian(_OneKindForAll):
    """A quantized Gaussian per tensor, its mean and standard deviation stored as float32."""

    model_id = 3
    kind = GAUSSIAN


def mixed_kinds(stats: list[TensorStats]) -> list[int]:
    """Per-tensor kinds for the "mixed" model, by coordinate descent on the estimated total.

    A tensor either joins the shared table or takes its cheapest own option (own table, Laplace,
    Gaussian). Pooled tensors coded with the pool's table cost exactly the pool's self-information,
    so the cost of joining is table_cost(pool + h) - table_cost(pool), computed in O(alphabet)
    from histograms. Each move lowers the estimate, so sweeps terminate; the descent starts once
    from "all shared" (the paper's model) and once from "none shared", and the cheaper end wins.
    """
    nonempty = [i for i, s in enumerate(stats) if s.symbols.size]
    if not nonempty:
        return [SHARED] * len(stats)
    base = min(stats[i].lo for i in nonempty)
    width = max(stats[i].lo + len(stats[i].hist) for i in nonempty) - base
    alone: dict[int, tuple[float, int]] = {}
    for i in nonempty:
        s = stats[i]
        options = {OWN: s.own_bits, LAPLACE: s.fit(LAPLACE)[1], GAUSSIAN: s.fit(GAUSSIAN)[1]}
        kind = min(options, key=lambda k: (options[k], k))
        alone[i] = (options[kind], kind)

    def place(pooled: np.ndarray, i: int, sign: int) -> None:
        s = stats[i]
        pooled[s.lo - base:s.lo - base + len(s.hist)] += sign * s.hist

    def descend(members: set[int]) -> tuple[float, set[int]]:
        pooled = np.zeros(width, dtype=np.int64)
        for i in members:
            place(pooled, i, +1)
        for _ in range(20):
            changed = False
            for i in nonempty:
                inside = i in members
                with_i = pooled.copy()
                place(with_i, i, 0 if inside else +1)
                without_i = pooled.copy()
                place(without_i, i, -1 if inside else 0)
                join = table_cost_bits(with_i) - table_cost_bits(without_i) < alone[i][0]
                if join != inside:
                    changed = True
                    members = members | {i} if join else members - {i}
                    pooled = with_i if join else without_i
            if not changed:
                break
        total = table_cost_bits(pooled) + sum(alone[i][0] for i in nonempty if i not in members)
        return total, members

    _, members = min(descend(set(nonempty)), descend(set()), key=lambda r: r[0])
    return [SHARED if (i in members or i not in alone) else alone[i][1] for i in range(len(stats))]


def pack_kinds(kinds: list[int]) -> bytes:
    out = bytearray((len(kinds) + 3) // 4)
    for i, k in enumerate(kinds):
        out[i // 4] |= k << (2 * (i % 4))
    return bytes(out)


def unpack_kinds(raw: bytes, count: int) -> list[int]:
    kinds = [(raw[i // 4] >> (2 * (i % 4))) & 3 for i in range(count)]
    if pack_kinds(kinds) != raw:
        raise CorruptFileError("model selector has nonzero padding bits")
    return kinds


@register_entropy_model("mixed")
class MixedPerTensor(EntropyModel):
    """Each tensor picks the shared table, its own table, a Laplace or a Gaussian (2 bits each)."""

    model_id = 4

    @staticmethod
    def _kinds(tensors: Symbols) -> list[int]:
        return tensors.memo("mixed_kinds", lambda: mixed_kinds(tensor_stats(tensors)))

    def encode(self, tensors: Symbols, bitwidth: int) -> bytes:
        kinds = self._kinds(tensors)
        return pack_kinds(kinds) + encode_plan(kinds, tensor_stats(tensors))

    def decode(self, data: bytes, lengths: list[int], bitwidth: int) -> list[np.ndarray]:
        reader = Reader(data)
        kinds = unpack_kinds(reader.take((len(lengths) + 3) // 4, "model selector"), len(lengths))
        return decode_plan(reader, kinds, lengths, (1 << bitwidth) - 1)

    def cost_bits(self, tensors: Symbols, bitwidth: int) -> float:
        kinds = self._kinds(tensors)
        return 8.0 * len(pack_kinds(kinds)) + plan_cost_bits(kinds, tensor_stats(tensors))
