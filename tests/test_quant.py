"""Tests of inrcompress.quant: the quantizer, AdaRound, QAT, residual mode and the public entry points."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from inrcompress.codec import quant
from inrcompress.codec.representations import representation_of
from inrcompress.config import ModelConfig
from inrcompress.errors import InrError
from inrcompress.nn import INR

H, W = 16, 24


def _grid(h: int, w: int) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    return torch.stack((yy, xx), dim=-1).reshape(-1, 2)


def _smooth_image(h: int, w: int) -> torch.Tensor:
    c = _grid(h, w)
    y, x = c[:, 0], c[:, 1]
    return torch.stack((torch.sin(3 * x + 1) * torch.cos(2 * y), torch.cos(4 * x * y),
                        0.5 * torch.sin(5 * (x + y)) + 0.3 * torch.cos(7 * x)), dim=-1)


def _fit(model: INR, features: torch.Tensor, targets: torch.Tensor, steps: int, lr: float = 1e-3) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        torch.mean((model.head(features) - targets) ** 2).backward()
        opt.step()


@pytest.fixture(scope="module")
def fitted():
    """A tiny sine INR fitted to a 16x24 smooth image: (model, features, targets)."""
    torch.manual_seed(0)
    model = INR(ModelConfig(hidden_dims=16, hidden_layers=2, ff_dims=4))
    features = model.encode(_grid(H, W)).detach()
    targets = _smooth_image(H, W)
    _fit(model, features, targets, 300)
    return model, features, targets


def _float_mse(model, features, targets) -> float:
    with torch.no_grad():
        return float(torch.mean((model.head(features) - targets) ** 2))


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@torch.no_grad()
def quantized_mse(model, qt: quant.QuantizedTensors, features, targets, reference=None) -> float:
    """MSE over all target values of the model's output with the quantized tensors (the model is untouched)."""
    pred = representation_of(model).apply(quant.dequantized_tensors(model, qt, reference), features)
    return float(torch.mean((pred - targets.reshape(pred.shape)) ** 2))


def _ints(qt: quant.QuantizedTensors) -> list[np.ndarray]:
    return [s.astype(np.int64) - (1 << (qt.bitwidth - 1)) for s in qt.symbols]


# --------------------------------------------------------------------------------------------------
# The quantizer


@pytest.mark.parametrize("bitwidth", range(2, 17))
def test_quantizer_properties(bitwidth):
    gen = torch.Generator().manual_seed(bitwidth)
    x = torch.randn(4000, generator=gen) * 0.05
    step = quant.choose_step_size(x, bitwidth)
    assert isinstance(step, float) and step > 0
    assert float(np.float32(step)) == step
    q = quant.quantize(x, step, bitwidth)
    qmin, qmax = -(1 << (bitwidth - 1)), (1 << (bitwidth - 1)) - 1
    assert q.dtype == torch.int32
    assert int(q.min()) >= qmin and int(q.max()) <= qmax
    assert len(torch.unique(q)) <= 2 ** bitwidth
    deq = quant.dequantize(q, step)
    assert deq.dtype == torch.float32
    assert torch.equal(deq, q.float() * torch.tensor(np.float32(step)))
    inside = (x / step >= qmin - 0.5) & (x / step <= qmax + 0.5)
    err = (x.double() - deq.double()).abs()[inside]
    assert float(err.max()) <= step / 2 * (1 + 1e-6) + 1e-12
    symbols = quant.symbols_from_integers(q, bitwidth)
    assert symbols.dtype == (np.uint8 if bitwidth <= 8 else np.uint16)
    assert symbols.min() >= 0 and symbols.max() <= 2 ** bitwidth - 1
    assert torch.equal(quant.integers_from_symbols(symbols, bitwidth), q)


def test_all_zero_tensor():
    x = torch.zeros(7, 5)
    for b in (2, 8, 16):
        step = quant.choose_step_size(x, b)
        assert step > 0 and float(np.float32(step)) == step
        q = quant.quantize(x, step, b)
        assert torch.all(q == 0)
        assert torch.equal(quant.dequantize(q, step), x)
        assert np.all(quant.symbols_from_integers(q, b) == 2 ** (b - 1))


def test_tiny_and_constant_tensors():
    for x in (torch.full((10,), 1e-42), torch.full((3, 3), -2.5), torch.tensor([3e-8, -1e-9])):
        for b in (2, 4, 8):
            step = quant.choose_step_size(x, b)
            assert step > 0 and math.isfinite(step) and float(np.float32(step)) == step
            quant.dequantize(quant.quantize(x, step, b), step)


def test_bad_inputs_raise():
    with pytest.raises(InrError):
        quant.choose_step_size(torch.tensor([1.0, float("nan")]), 8)
    with pytest.raises(InrError):
        quant.choose_step_size(torch.tensor([1.0, float("inf")]), 8)
    for b in (0, 1, 17, 2.0, True):
        with pytest.raises(InrError):
            quant.choose_step_size(torch.ones(3), b)
    with pytest.raises(InrError):
        quant.quantize(torch.ones(3), 0.0, 8)
    with pytest.raises(InrError):
        quant.integers_from_symbols(np.array([0, 16]), 4)


def _mse_at(x: torch.Tensor, step: float, b: int) -> float:
    deq = quant.dequantize(quant.quantize(x, step, b), step)
    return float(torch.mean((x.double() - deq.double()) ** 2))


@pytest.mark.parametrize("bitwidth", [2, 3, 4, 6, 8, 12])
def test_step_search_beats_max_abs_step(bitwidth):
    gen = torch.Generator().manual_seed(1)
    laplace = torch.distributions.Laplace(0.0, 1.0).sample((3000,))
    tensors = {
        "uniform": torch.rand(3000, generator=gen) * 2 - 1,
        "gauss": torch.randn(3000, generator=gen),
        "laplace": laplace,
        "outlier": torch.cat((torch.randn(2999, generator=gen) * 0.1, torch.tensor([1.0]))),
        "negative": -torch.rand(500, generator=gen),
    }
    qmax = 2 ** (bitwidth - 1) - 1
    for name, x in tensors.items():
        step = quant.choose_step_size(x, bitwidth)
        s_max = float(np.float32(float(x.abs().max()) / qmax))
        assert _mse_at(x, step, bitwidth) <= _mse_at(x, s_max, bitwidth), name
    # A heavy-tailed tensor at low bits: clipping must pay off clearly.
    x = tensors["outlier"]
    step = quant.choose_step_size(x, 4)
    assert _mse_at(x, step, 4) < 0.5 * _mse_at(x, float(np.float32(1.0 / 7)), 4)


def test_step_search_is_near_optimal():
    """The search is at least as good as a fine brute-force grid (to 0.1 %)."""
    x = torch.randn(2000, generator=torch.Generator().manual_seed(3))
    for b in (3, 5):
        step = quant.choose_step_size(x, b)
        s_max = float(x.abs().max()) / (2 ** (b - 1) - 1)
        brute = min(_mse_at(x, float(np.float32(a * s_max)), b) for a in np.linspace(0.02, 1, 4000))
        assert _mse_at(x, step, b) <= brute * 1.001


# --------------------------------------------------------------------------------------------------
# Model-level


def test_nearest_quantization_layout_and_roundtrip(fitted):
    model, _, _ = fitted
    qt = quant.nearest_quantization(model, 8)
    params = [p for layer in model.layers for p in (layer.weight, layer.bias)]
    assert qt.bitwidth == 8
    assert len(qt.symbols) == len(qt.step_sizes) == len(qt.shapes) == 2 * len(model.layers)
    assert qt.shapes == [tuple(p.shape) for p in params]
    for p, sym, step, shape in zip(params, qt.symbols, qt.step_sizes, qt.shapes):
        assert sym.ndim == 1 and sym.size == math.prod(shape) and sym.dtype == np.uint8
        assert step == quant.choose_step_size(p, 8)
        q = torch.from_numpy(sym.astype(np.int64) - 128).reshape(shape)
        assert torch.equal(q, quant.quantize(p, step, 8).long())

    clone = copy.deepcopy(model)
    quant.load_quantized(clone, qt)
    for p, sym, step, shape in zip([p for layer in clone.layers for p in (layer.weight, layer.bias)],
                                   qt.symbols, qt.step_sizes, qt.shapes):
        q = torch.from_numpy(sym.astype(np.int64) - 128).reshape(shape)
        assert torch.equal(p.detach(), q.float() * torch.tensor(np.float32(step)))


def test_adaround_picks_floor_or_ceil_and_beats_nearest(fitted):
    model, features, targets = fitted
    before = _state(model)
    b = 4
    nearest = quant.nearest_quantization(model, b)
    ada = quant.quantize_model(model, features, targets, b, adaround_iterations=400, retrain=False)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} was modified"
    assert ada.step_sizes == nearest.step_sizes
    qmin, qmax = -(1 << (b - 1)), (1 << (b - 1)) - 1
    params = [p.detach() for layer in model.layers for p in (layer.weight, layer.bias)]
    q_ada, q_near = _ints(ada), _ints(nearest)
    for k, (p, step) in enumerate(zip(params, ada.step_sizes)):
        scaled = p.double().reshape(-1).numpy() / step
        lo = np.clip(np.floor(scaled), qmin, qmax)
        hi = np.clip(np.ceil(scaled), qmin, qmax)
        assert np.all((q_ada[k] == lo) | (q_ada[k] == hi))
        if k % 2 == 1:  # biases: nearest rounding
            assert np.array_equal(q_ada[k], q_near[k])
    assert any(not np.array_equal(q_ada[k], q_near[k]) for k in range(0, len(params), 2))

    # Layer-wise: with the same (AdaRounded-prefix) input and the same quantized bias, AdaRound's
    # weight reconstructs the float layer's output better than nearest rounding.
    deq_ada = quant.dequantized_tensors(model, ada)
    deq_near = quant.dequantized_tensors(model, nearest)
    x_quant = features
    x_float = features
    n = len(model.layers)
    with torch.no_grad():
        for i in range(n):
            act = (lambda z: z) if i == n - 1 else model.activation
            target = act(F.linear(x_float, params[2 * i], params[2 * i + 1]))
            bias_q = deq_ada[2 * i + 1]
            err_ada = float(torch.mean((act(F.linear(x_quant, deq_ada[2 * i], bias_q)) - target) ** 2))
            err_near = float(torch.mean((act(F.linear(x_quant, deq_near[2 * i], bias_q)) - target) ** 2))
            assert err_ada < err_near, f"layer {i}: {err_ada} vs {err_near}"
            x_quant = act(F.linear(x_quant, deq_ada[2 * i], bias_q))
            x_float = target
    # At 6 bits the whole network is better too (at 4 bits this tiny network is wrecked either way and
    # the per-layer gains need not add up).
    ada6 = quant.quantize_model(model, features, targets, 6, adaround_iterations=400, retrain=False)
    nearest6 = quant.nearest_quantization(model, 6)
    assert quantized_mse(model, ada6, features, targets) < quantized_mse(model, nearest6, features, targets)


def test_adaround_weight_reproducible_with_sampling():
    gen = torch.Generator().manual_seed(5)
    w = torch.randn(8, 6, generator=gen) * 0.1
    bias = torch.zeros(8)
    x = torch.randn(500, 6, generator=gen)
    target = torch.sin(30 * F.linear(x, w, bias))
    step = quant.choose_step_size(w, 3)
    act = lambda z: torch.sin(30 * z)
    runs = [quant.adaround_weight(w, torch.zeros_like(w), bias, step, 3, x, target, act, iterations=60,
                                  generator=torch.Generator().manual_seed(11), batch_rows=64) for _ in range(2)]
    assert torch.equal(runs[0], runs[1])
    assert runs[0].shape == w.shape and runs[0].dtype == torch.int32


def test_beta_schedule():
    assert quant.beta_schedule(0, 100) is None
    assert quant.beta_schedule(19, 100) is None
    assert quant.beta_schedule(20, 100) == pytest.approx(20.0)
    assert quant.beta_schedule(99, 100) == pytest.approx(2.0)
    values = [quant.beta_schedule(t, 100) for t in range(20, 100)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_qat_does_not_increase_and_lowers_mse(fitted):
    model, features, targets = fitted
    b = 5
    start = quant.nearest_quantization(model, b)
    start_mse = quantized_mse(model, start, features, targets)
    for lr in (1e-6, 1e-3):
        qt = quant.quantize_model(model, features, targets, b, adaround=False, retrain_epochs=40, retrain_lr=lr)
        assert qt.step_sizes == start.step_sizes  # steps frozen
        assert quantized_mse(model, qt, features, targets) <= start_mse
    assert quantized_mse(model, qt, features, targets) < 0.9 * start_mse

    ada = quant.quantize_model(model, features, targets, b, adaround_iterations=200, retrain=False)
    both = quant.quantize_model(model, features, targets, b, adaround_iterations=200, retrain_epochs=40,
                                retrain_lr=1e-3)
    assert quantized_mse(model, both, features, targets) <= quantized_mse(model, ada, features, targets)


def test_quantize_model_deterministic_and_untouched(fitted):
    model, features, targets = fitted
    before = _state(model)
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    runs = [quant.quantize_model(model, features, targets, 6, adaround_iterations=50, retrain_epochs=5,
                                 retrain_lr=1e-4, seed=3) for _ in range(2)]
    for a, b in zip(runs[0].symbols, runs[1].symbols):
        assert np.array_equal(a, b)
    assert runs[0].step_sizes == runs[1].step_sizes
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    for g, p in zip(grads, model.parameters()):
        assert (g is None and p.grad is None) or torch.equal(g, p.grad)


def test_load_quantized_matches_quantized_mse(fitted):
    model, features, targets = fitted
    qt = quant.quantize_model(model, features, targets, 8, adaround_iterations=50, retrain_epochs=5, retrain_lr=1e-4)
    clone = copy.deepcopy(model)
    quant.load_quantized(clone, qt)
    ints = _ints(qt)
    for k, p in enumerate(p for layer in clone.layers for p in (layer.weight, layer.bias)):
        q = torch.from_numpy(ints[k]).reshape(qt.shapes[k])
        assert torch.equal(p.detach(), q.float() * torch.tensor(np.float32(qt.step_sizes[k])))
    assert quantized_mse(model, qt, features, targets) == pytest.approx(_float_mse(clone, features, targets),
                                                                              rel=1e-6)
    assert quantized_mse(model, qt, features, targets) < 2 * _float_mse(model, features, targets)


@pytest.mark.parametrize("bitwidth", range(2, 17))
def test_all_bitwidths(fitted, bitwidth):
    model, features, targets = fitted
    qt = quant.quantize_model(model, features, targets, bitwidth, adaround_iterations=20, retrain_epochs=3,
                              retrain_lr=1e-4)
    assert qt.bitwidth == bitwidth
    for sym in qt.symbols:
        assert sym.dtype == (np.uint8 if bitwidth <= 8 else np.uint16)
        assert sym.min() >= 0 and sym.max() <= 2 ** bitwidth - 1
    for s in qt.step_sizes:
        assert s > 0 and float(np.float32(s)) == s
    mse = quantized_mse(model, qt, features, targets)
    assert math.isfinite(mse)
    if bitwidth >= 12:
        assert mse <= 1.05 * _float_mse(model, features, targets) + 1e-6


def test_mse_improves_with_bits(fitted):
    model, features, targets = fitted
    mses = [quantized_mse(model, quant.nearest_quantization(model, b), features, targets) for b in (3, 6, 10)]
    assert mses[0] > mses[1] > mses[2]


# --------------------------------------------------------------------------------------------------
# Residual (reference) mode


def _reference_for(model: INR, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    init = INR(model.cfg)
    return {k: v.detach().clone() for k, v in init.state_dict().items()}


def test_residual_nearest_roundtrip(fitted):
    model, _, _ = fitted
    reference = _reference_for(model, 42)
    for b in (3, 8, 12):
        qt = quant.nearest_quantization(model, b, reference=reference)
        clone = copy.deepcopy(model)
        quant.load_quantized(clone, qt, reference=reference)
        qmin, qmax = -(1 << (b - 1)), (1 << (b - 1)) - 1
        for i, (orig, new) in enumerate(zip(model.layers, clone.layers)):
            for kind, k in (("weight", 2 * i), ("bias", 2 * i + 1)):
                theta = getattr(orig, kind).detach()
                theta0 = reference[f"layers.{i}.{kind}"]
                step = qt.step_sizes[k]
                assert step == quant.choose_step_size(theta - theta0, b)
                loaded = getattr(new, kind).detach()
                q = torch.from_numpy(_ints(qt)[k]).reshape(theta.shape)
                assert torch.equal(loaded, theta0 + q.float() * torch.tensor(np.float32(step)))
                scaled = (theta - theta0).double() / step
                inside = (scaled >= qmin - 0.5) & (scaled <= qmax + 0.5)
                err = (loaded.double() - theta.double()).abs()[inside]
                assert float(err.max()) <= step / 2 + 1e-6 * float(theta.abs().max())


def test_residual_quantize_model(fitted):
    """Meta-learning-like setting: theta_0 is the fitted model, theta a short fine-tune of it to a
    changed image; the residual is quantized, AdaRound and QAT act on it with theta_0 frozen."""
    init, features, _ = fitted
    reference = _state(init)
    model = copy.deepcopy(init)
    targets = 0.8 * _smooth_image(H, W).flip(0) + 0.1
    _fit(model, features, targets, 150)
    b = 4
    qt = quant.quantize_model(model, features, targets, b, adaround_iterations=300, retrain=False,
                              reference=reference)
    near = quant.nearest_quantization(model, b, reference=reference)
    assert qt.step_sizes == near.step_sizes
    qmin, qmax = -(1 << (b - 1)), (1 << (b - 1)) - 1
    for i, layer in enumerate(model.layers):
        r = (layer.weight.detach() - reference[f"layers.{i}.weight"]).double().reshape(-1).numpy() / qt.step_sizes[2 * i]
        q = _ints(qt)[2 * i]
        assert np.all((q == np.clip(np.floor(r), qmin, qmax)) | (q == np.clip(np.ceil(r), qmin, qmax)))
    ref_mse = quantized_mse(model, qt, features, targets, reference=reference)
    near_mse = quantized_mse(model, near, features, targets, reference=reference)
    assert ref_mse < near_mse
    # quantizing the small residual at 4 bits beats quantizing the weights themselves
    plain = quant.nearest_quantization(model, b)
    assert near_mse < quantized_mse(model, plain, features, targets)
    # without the reference the integers mean something else entirely
    assert quantized_mse(model, qt, features, targets) > 10 * ref_mse

    qat = quant.quantize_model(model, features, targets, b, adaround=False, retrain_epochs=30, retrain_lr=1e-4,
                               reference=reference)
    assert quantized_mse(model, qat, features, targets, reference=reference) < near_mse
    for k, v in init.state_dict().items():
        assert torch.equal(v, reference[k])


def test_reference_equal_to_model_is_lossless(fitted):
    model, features, targets = fitted
    reference = _state(model)
    qt = quant.quantize_model(model, features, targets, 2, adaround_iterations=10, retrain_epochs=3,
                              retrain_lr=1e-4, reference=reference)
    assert all(np.all(s == 2) for s in qt.symbols)
    clone = copy.deepcopy(model)
    quant.load_quantized(clone, qt, reference=model)  # an nn.Module works as a reference too
    for k, v in clone.state_dict().items():
        assert torch.equal(v, reference[k])


def test_reference_errors(fitted):
    model, _, _ = fitted
    reference = _reference_for(model, 1)
    del reference["layers.1.bias"]
    with pytest.raises(InrError):
        quant.nearest_quantization(model, 8, reference=reference)
    reference = _reference_for(model, 1)
    reference["layers.0.weight"] = reference["layers.0.weight"][:, :3]
    with pytest.raises(InrError):
        quant.nearest_quantization(model, 8, reference=reference)


def test_load_quantized_rejects_mismatch(fitted):
    model, _, _ = fitted
    qt = quant.nearest_quantization(model, 8)
    other = INR(ModelConfig(hidden_dims=8, hidden_layers=2, ff_dims=4))
    with pytest.raises(InrError):
        quant.load_quantized(other, qt)
    bad = quant.QuantizedTensors(4, [s.copy() for s in qt.symbols], list(qt.step_sizes), list(qt.shapes))
    with pytest.raises(InrError):  # symbols of 8 bits read as 4 bits
        quant.load_quantized(copy.deepcopy(model), bad)
    short = quant.QuantizedTensors(8, qt.symbols[:-1], qt.step_sizes[:-1], qt.shapes[:-1])
    with pytest.raises(InrError):
        quant.load_quantized(copy.deepcopy(model), short)


def test_shape_model_sdf():
    """3-D SDF INRs (targets (N, 1); sine and relu) go through the pipeline."""
    for activation in ("sine", "relu"):
        torch.manual_seed(0)
        model = INR(ModelConfig(in_features=3, out_features=1, activation=activation, hidden_dims=16,
                                hidden_layers=1, ff_dims=3))
        points = torch.rand(600, 3) * 2 - 1
        sdf = points.norm(dim=-1, keepdim=True) - 0.5
        features = model.encode(points).detach()
        _fit(model, features, sdf, 300)
        nearest = quant.nearest_quantization(model, 5)
        qt = quant.quantize_model(model, features, sdf, 5, adaround_iterations=200, retrain_epochs=20,
                                  retrain_lr=1e-4)
        assert qt.shapes[-1] == (1,)
        assert quantized_mse(model, qt, features, sdf) <= quantized_mse(model, nearest, features, sdf)


def test_features_shape_checks(fitted):
    model, features, targets = fitted
    with pytest.raises(InrError):
        quant.quantize_model(model, features[:, :-1], targets, 8, retrain=False, adaround_iterations=1)
    with pytest.raises(InrError):
        quant.quantize_model(model, features[:-1], targets, 8, retrain=False, adaround_iterations=1)
    # leading dimensions are flattened: (H, W, C) inputs work
    qt = quant.quantize_model(model, features.reshape(H, W, -1), targets.reshape(H, W, 3), 8,
                              adaround_iterations=5, retrain_epochs=2)
    assert len(qt.symbols) == 2 * len(model.layers)


def test_progress_bar_runs(fitted, capsys):
    model, features, targets = fitted
    quant.quantize_model(model, features, targets, 8, adaround_iterations=5, retrain_epochs=2, progress=True)
