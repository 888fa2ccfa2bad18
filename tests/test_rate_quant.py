"""Quantization beyond the paper (each off by default): --step_scale, the rate-distortion step
allocation (--rd_steps) and QAT from AdaRound's soft levels (--qat_from_soft), on networks fitted to
a real photograph crop; the defaults stay the paper's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inrcompress.codec import entropy, quant, quant_batched
from inrcompress.codec.compress import QuantConfig
from inrcompress.codec.representations import representation_of
from inrcompress.config import ModelConfig, TrainConfig
from inrcompress.errors import InrError
from inrcompress.fit.train import fit
from inrcompress.nn import INR
from inrcompress.signals.grid import coordinate_grid
from inrcompress.signals.image import image_to_values
from tests.conftest import photo_crop

H, W = 24, 32


@pytest.fixture(scope="module")
def fitted():
    image = photo_crop("astronaut", H, W)
    torch.manual_seed(0)
    model = INR(ModelConfig(hidden_dims=16, hidden_layers=2, ff_dims=8))
    coords, values = coordinate_grid((H, W)), image_to_values(image)
    fit(model, coords, values, TrainConfig(epochs=300, lr=5e-4), show_progress=False)
    return model, model.encode(coords).detach(), values


def _mse(model, qt, features, values) -> float:
    with torch.no_grad():
        pred = representation_of(model).apply(quant.dequantized_tensors(model, qt), features)
    return float(torch.mean((pred - values) ** 2))


def _payload_bytes(qt) -> int:
    return len(entropy.encode_symbols(qt.symbols, qt.bitwidth, "arithmetic"))


def test_defaults_are_the_papers():
    assert QuantConfig().tag == "bw8_adaround_iter_1000_adaround_reg_0.0001_retrain_epochs300_retrain_lr1e-06"
    assert QuantConfig(step_scale=2.0, rd_steps=True, qat_from_soft=True).tag.endswith(
        "_step_scale2.0_rd_steps_qat_from_soft")
    with pytest.raises(InrError, match="step_scale"):
        QuantConfig(step_scale=0.0)


def test_coarser_step_scale_gives_fewer_bits_and_more_error(fitted):
    model, features, values = fitted
    runs = [quant.quantize_model(model, features, values, 8, adaround=False, retrain=False)]
    runs += [quant_batched.quantize_models([model], features, [values], 8, adaround=False, retrain=False,
                                           step_scale=scale)[0] for scale in (1.0, 2.0, 4.0)]
    assert runs[0].step_sizes == runs[1].step_sizes  # scale 1 is the paper's quantization
    assert all(np.array_equal(a, b) for a, b in zip(runs[0].symbols, runs[1].symbols))
    sizes = [_payload_bytes(qt) for qt in runs[1:]]
    errors = [_mse(model, qt, features, values) for qt in runs[1:]]
    assert sizes[0] > sizes[1] > sizes[2]
    assert errors[0] < errors[1] < errors[2]
    assert runs[2].step_sizes == [float(np.float32(2 * s)) for s in runs[1].step_sizes]


def test_rd_step_sizes_equalize_sensitivity_times_step_squared():
    # Base steps that already have g step^2 equal for all tensors are the allocation's fixed point.
    counts, g = [100, 10, 50], [4.0, 1.0, 0.25]
    balanced = [5e-4, 1e-3, 2e-3]
    assert quant.rd_step_sizes(balanced, counts, g) == pytest.approx(balanced, rel=1e-6)
    # Equal base steps: the sensitive tensor keeps its base step (never finer), the others get
    # coarser ones with g step^2 equal among them.
    steps = quant.rd_step_sizes([1e-3] * 3, counts, g)
    assert steps[0] == pytest.approx(1e-3) and all(s >= 1e-3 * (1 - 1e-7) for s in steps)
    assert g[1] * steps[1] ** 2 == pytest.approx(g[2] * steps[2] ** 2, rel=1e-6)
    assert steps[2] > steps[1] > steps[0]


def test_sensitivities_predict_the_mse_growth_of_rounding_noise(fitted):
    model, features, values = fitted
    rep = representation_of(model)
    thetas = [t.detach().clone()[None] for t in rep.tensors(model)]
    steps = [quant.choose_step_size(t[0], 6) for t in thetas]
    forward = quant_batched._ChainForward(rep.linear_layers(), features, None, 4096)
    g = quant_batched.tensor_sensitivities(forward, thetas, values[None], [steps], [0])
    assert g.shape == (1, len(thetas)) and (g >= 0).all() and (g > 0).sum() >= len(thetas) - 1
    # Predicted MSE growth of nearest rounding (noise ~ step^2 / 12 per value) against the real one.
    qt = quant.nearest_quantization(model, 6)
    with torch.no_grad():
        float_mse = float(torch.mean((model.head(features) - values) ** 2))
    predicted = sum(g[0, k] * t.numel() * s ** 2 / 12 for k, (t, s) in enumerate(zip(thetas, steps)))
    real = _mse(model, qt, features, values) - float_mse
    assert 0.3 < predicted / real < 3.0


def test_rd_steps_give_a_better_rate_distortion_trade_than_one_step_rule(fitted):
    """At about the same payload the RD allocation's quantized MSE is lower than the MSE steps'."""
    model, features, values = fitted
    plain = {scale: quant_batched.quantize_models([model], features, [values], 6, adaround=False, retrain=False,
                                                  step_scale=scale)[0] for scale in (1.0, 1.25, 1.5, 2.0, 2.5)}
    rd = quant_batched.quantize_models([model], features, [values], 6, adaround=False, retrain=False,
                                       rd_steps=True, step_scale=1.5)[0]
    size, error = _payload_bytes(rd), _mse(model, rd, features, values)
    # the plain steps' MSE at the rd file's size, interpolated over their curve
    sizes = np.array([_payload_bytes(qt) for qt in plain.values()])[::-1]
    errors = np.array([_mse(model, qt, features, values) for qt in plain.values()])[::-1]
    assert sizes[0] <= size <= sizes[-1]
    assert error < np.interp(size, sizes, errors)


def test_qat_from_soft_levels_moves_integers_and_does_not_lose(fitted):
    model, features, values = fitted
    common = dict(adaround=True, adaround_iterations=100, retrain=True, retrain_epochs=30, retrain_lr=1e-5)
    adaround_only = quant.quantize_model(model, features, values, 4, adaround=True, adaround_iterations=100,
                                         retrain=False)
    hard = quant_batched.quantize_models([model], features, [values], 4, **common)[0]
    soft = quant_batched.quantize_models([model], features, [values], 4, qat_from_soft=True, **common)[0]
    changed = sum(int((a != b).sum()) for a, b in zip(soft.symbols, adaround_only.symbols))
    assert changed > 0
    assert _mse(model, soft, features, values) <= _mse(model, adaround_only, features, values) * 1.001
    assert soft.step_sizes == hard.step_sizes


# --------------------------------------------------------------------------------------------------
# Per-output-channel steps (--per_channel_steps)


def test_channel_steps_are_float32_products_never_finer_than_wanted():
    wanted = np.array([0.3, 0.0011, 0.12, 0.3 * 37.4 / 256, 1e-6])
    cs = quant.ChannelSteps.from_row_steps(wanted)
    assert cs.step == float(np.float32(0.3)) and cs.codes.dtype == np.uint8
    expected = np.float32(0.3) * ((cs.codes.astype(np.float32) + 1) / np.float32(256))
    assert cs.values.dtype == np.float32 and np.array_equal(cs.values, expected)
    # every row at least its wanted step (up to float32), within one 1/256 of the coarsest step
    # above it, except the row that wants less than 1/256 of it
    assert np.all(cs.values >= wanted.astype(np.float32) * (1 - 1e-6))
    assert np.all(cs.values[:4] - wanted[:4] <= 0.3 / 256 * (1 + 1e-6))
    assert cs.codes[-1] == 0 and cs.codes[0] == 255
    assert cs.scaled(2.0).codes is cs.codes and cs.scaled(2.0).step == float(np.float32(0.6))
    assert cs == quant.ChannelSteps(cs.step, cs.codes.copy()) and hash(cs) == hash(quant.ChannelSteps(cs.step, cs.codes))
    with pytest.raises(InrError, match="uint8"):
        quant.ChannelSteps(0.1, np.array([1, 2], dtype=np.int32))
    # quantize / dequantize per row: the error of an unclipped row is at most half its step
    x = torch.tensor([[0.5, -0.25, 0.125], [0.01, -0.02, 0.005]])
    steps = quant.ChannelSteps.from_row_steps(np.array([0.5 / 63, 0.02 / 63]))
    q = quant.quantize(x, steps, 7)
    err = (x - quant.dequantize(q, steps)).abs()
    assert torch.all(err <= torch.from_numpy(steps.values)[:, None] / 2 * (1 + 1e-5))
    assert int(q[1].abs().max()) >= 55  # the small row uses its own range, not the large row's step


def test_per_channel_steps_cut_the_rounding_error_and_survive_the_file(fitted):
    from inrcompress.codec.compress import compress_network, decode_network

    model, features, values = fitted
    coords = coordinate_grid((H, W))
    plain = quant_batched.quantize_models([model], features, [values], 6, adaround=False, retrain=False)[0]
    per_row = quant_batched.quantize_models([model], features, [values], 6, adaround=False, retrain=False,
                                            per_channel_steps=True)[0]
    kinds = [isinstance(s, quant.ChannelSteps) for s in per_row.step_sizes]
    assert kinds == [len(shape) == 2 for shape in per_row.shapes] and any(kinds)
    for s, shape in zip(per_row.step_sizes, per_row.shapes):
        if isinstance(s, quant.ChannelSteps):
            assert s.codes.size == shape[0]
    assert _mse(model, per_row, features, values) < _mse(model, plain, features, values)
    # AdaRound, QAT, rd steps and a step scale all run on per-row steps; the file carries them
    qcfg = QuantConfig(bitwidth=6, adaround_iterations=20, retrain_epochs=3, per_channel_steps=True, rd_steps=True,
                       step_scale=1.5)
    assert qcfg.tag.endswith("_step_scale1.5_rd_steps_per_channel")
    data, sizes = compress_network(model, coords, values, qcfg, modality="image", height=H, width=W)
    header, decoded = decode_network(data)
    rows = sum(shape[0] for shape in per_row.shapes if len(shape) == 2)
    assert sizes.step_size_bytes == 4 * len(per_row.shapes) + rows  # the codes are counted with the steps
    assert header.channel_codes and len(header.channel_codes) == rows
    quantized = quant_batched.quantize_models([model], features, [values], 6, adaround_iterations=20, retrain_epochs=3,
                                              per_channel_steps=True, rd_steps=True, step_scale=1.5, grid_shape=(H, W))[0]
    assert quantized.step_sizes == list(header.step_sizes)
    for got, want in zip(representation_of(decoded).tensors(decoded), quant.dequantized_tensors(model, quantized)):
        assert torch.equal(got.detach(), want)
    with pytest.raises(InrError, match="per_channel_steps need --quantizer native|aimet-torch"):
        QuantConfig(per_channel_steps=True, quantizer="aimet")  # (where aimet is missing it is refused first)
