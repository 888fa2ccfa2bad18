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
