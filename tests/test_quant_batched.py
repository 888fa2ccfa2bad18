"""Quantizing several networks at once (codec/quant_batched.py): per network the result of quantizing it
alone (quant.quantize_model), the written-out AdaRound gradient against autograd, the pixel-grid
first layer against the plain one, and the quantize loop's batched path against one by one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from inrcompress.codec import quant, quant_batched
from inrcompress.codec.representations import representation_of
from inrcompress.config import ModelConfig, save_flags
from inrcompress.errors import InrError
from inrcompress.experiments.image_codec import run_quantize_and_test
from inrcompress.fit.engine import BEST_FILE, CHECKPOINT_DIR
from inrcompress.nn import INR
from inrcompress.signals.grid import coordinate_grid
from tests.conftest import photo_crop

H, W = 12, 20
CFG = ModelConfig(hidden_dims=12, hidden_layers=1, ff_dims=4)
FAST = dict(adaround_iterations=60, retrain_epochs=15, retrain_lr=1e-4)


def _targets(k: int) -> torch.Tensor:
    c = coordinate_grid((H, W))
    y, x = c[:, 0], c[:, 1]
    return torch.stack((torch.sin((3 + k) * x + k) * torch.cos(2 * y), torch.cos((4 - k) * x * y),
                        0.5 * torch.sin(5 * (x + k * y))), dim=-1)


def _fitted(k: int, cfg: ModelConfig = CFG, steps: int = 150) -> INR:
    torch.manual_seed(k)
    model = INR(cfg)
    features = model.encode(coordinate_grid((H, W))).detach()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        opt.zero_grad()
        torch.mean((model.head(features) - _targets(k)) ** 2).backward()
        opt.step()
    return model


@pytest.fixture(scope="module")
def three():
    models = [_fitted(k) for k in range(3)]
    return models, models[0].encode(coordinate_grid((H, W))).detach(), [_targets(k) for k in range(3)]


def _quantized_mse(model, qt, features, targets) -> float:
    with torch.no_grad():
        pred = representation_of(model).apply(quant.dequantized_tensors(model, qt), features)
    return float(torch.mean((pred - targets) ** 2))


def _assert_same(one: quant.QuantizedTensors, many: quant.QuantizedTensors, model, features, targets) -> None:
    """Equal up to float rounding: the same steps, integers that differ in at most 1 % of the entries
    (a batched sum rounds differently; an AdaRound decision near V = 0 may flip), the same MSE."""
    assert one.step_sizes == many.step_sizes and one.shapes == many.shapes
    differing = sum(int((a != b).sum()) for a, b in zip(one.symbols, many.symbols))
    assert differing <= 0.01 * sum(a.size for a in one.symbols)
    assert _quantized_mse(model, many, features, targets) == pytest.approx(
        _quantized_mse(model, one, features, targets), rel=1e-3)


@pytest.mark.parametrize("bitwidth", [5, 8])
def test_each_network_quantized_together_equals_it_quantized_alone(three, bitwidth):
    models, features, targets = three
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in models]
    seeds = [0, 3, 0]  # per signal: equal seeds share their row draws, another seed draws its own
    many = quant_batched.quantize_models(models, features, targets, bitwidth, seeds=seeds, **FAST)
    for model, seed, target, qt, state in zip(models, seeds, targets, many, before):
        one = quant.quantize_model(model, features, target, bitwidth, seed=seed, **FAST)
        _assert_same(one, qt, model, features, target)
        assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    # the networks do not mix: reordering the group reorders the results
    again = quant_batched.quantize_models(models[::-1], features, targets[::-1], bitwidth, seeds=seeds[::-1],
                                          **FAST)
    for a, b in zip(many, again[::-1]):
        assert all(np.array_equal(x, y) for x, y in zip(a.symbols, b.symbols))


def test_a_group_beyond_the_row_budget_is_coded_in_parts(three, monkeypatch):
    models, features, targets = three
    whole = quant_batched.quantize_models(models, features, targets, 6, seeds=[0, 1, 2], **FAST)
    monkeypatch.setattr(quant_batched, "MAX_STACKED_ROWS", 2 * H * W)  # two signals a group: 2 + 1
    parts = quant_batched.quantize_models(models, features, targets, 6, seeds=[0, 1, 2], **FAST)
    for model, target, a, b in zip(models, targets, whole, parts):
        _assert_same(a, b, model, features, target)


def test_references_and_per_signal_features_are_per_network(three):
    models, features, targets = three
    reference = {k: v * 0.9 for k, v in models[2].state_dict().items()}
    references = [reference, None, reference]
    many = quant_batched.quantize_models(models, [features] * 3, targets, 6, references=references, **FAST)
    for model, target, ref, qt in zip(models, targets, references, many):
        one = quant.quantize_model(model, features, target, 6, reference=ref, **FAST)
        assert one.step_sizes == qt.step_sizes
        differing = sum(int((a != b).sum()) for a, b in zip(one.symbols, qt.symbols))
        assert differing <= 0.01 * sum(a.size for a in one.symbols)
        deq_one = quant.dequantized_tensors(model, one, ref)
        deq_many = quant.dequantized_tensors(model, qt, ref)
        assert max(float((a - b).abs().max()) for a, b in zip(deq_one, deq_many)) <= max(one.step_sizes)


def test_more_rows_than_adaround_caches(three, monkeypatch):
    """A signal above ADAROUND_MAX_CACHED_ROWS: each signal's seeded subset, as when quantized alone."""
    monkeypatch.setattr(quant_batched, "ADAROUND_MAX_CACHED_ROWS", 150)
    models, features, targets = three
    many = quant_batched.quantize_models(models, features, targets, 6, seeds=[1, 2, 1], retrain=False,
                                         adaround_iterations=40)
    for model, seed, target, qt in zip(models, [1, 2, 1], targets, many):
        one = quant.quantize_model(model, features, target, 6, seed=seed, retrain=False, adaround_iterations=40)
        _assert_same(one, qt, model, features, target)
    monkeypatch.undo()  # every row cached: another reconstruction target, other integers
    full = quant.quantize_model(models[1], features, targets[1], 6, seed=2, retrain=False, adaround_iterations=40)
    assert any(not np.array_equal(a, b) for a, b in zip(full.symbols, many[1].symbols))


def test_pixel_grid_first_layer_gives_the_plain_result(three):
    models, features, targets = three
    plain = quant_batched.quantize_models(models, features, targets, 6, **FAST)
    grid = quant_batched.quantize_models(models, features, targets, 6, grid_shape=(H, W), **FAST)
    for model, target, a, b in zip(models, targets, plain, grid):
        _assert_same(a, b, model, features, target)
    split = quant_batched.GridInputs.of(features, (H, W))
    assert split is not None and quant_batched.GridInputs.of(features, (W, H + 1)) is None
    gauss = INR(ModelConfig(hidden_dims=8, hidden_layers=1, ff_dims=4, encoding="gauss"))
    assert quant_batched.GridInputs.of(gauss.encode(coordinate_grid((H, W))), (H, W)) is None


@pytest.mark.parametrize("activation", ["sine", "relu", None])
@pytest.mark.parametrize("beta", [None, 7.0])
@pytest.mark.parametrize("grid", [False, True])
def test_adaround_gradient_is_autograds(activation, beta, grid):
    gen = torch.Generator().manual_seed(2)
    n, out = 3, 5
    features = INR(ModelConfig(hidden_dims=8, hidden_layers=1, ff_dims=3)).encode(coordinate_grid((6, 7)))
    residual = torch.randn(n, out, features.shape[1], generator=gen) * 0.3
    steps = [0.05, 0.08, 0.11]
    qmin, qmax = quant.integer_range(3)  # a coarse grid: some weights sit on its clamp
    steps32 = torch.tensor(steps).view(-1, 1, 1)
    floor = torch.floor(residual.double() / steps32.double()).float()
    v = torch.randn(n, out, features.shape[1], generator=gen) * 3  # some h clamped at 0 or 1
    base, bias = torch.randn(n, out, features.shape[1], generator=gen) * 0.01, torch.randn(n, out, generator=gen)
    target = torch.randn(n, 42, out, generator=gen)
    idx = torch.randperm(42, generator=gen)[:30]
    act = {"sine": lambda z: torch.sin(30 * z), "relu": torch.relu, None: None}[activation]
    inputs = quant_batched.GridInputs.of(features, (6, 7)) if grid else quant_batched.RowInputs(features)
    explicit = quant_batched.adaround_gradient(v, floor, base, bias, steps32, qmin, qmax, inputs, idx, target,
                                               act, beta, 1e-2)
    leaf = v.clone().requires_grad_(True)
    h = quant.rectified_sigmoid(leaf)
    w = base + torch.clamp(floor + h, qmin, qmax) * steps32
    z = torch.matmul(features[idx], w.transpose(1, 2)) + bias[:, None]
    pred = z if act is None else act(z)
    loss = torch.mean((pred - target[:, idx]) ** 2, dim=(1, 2))
    if beta is not None:
        loss = loss + 1e-2 * torch.sum(1.0 - torch.abs(2.0 * h - 1.0).pow(beta), dim=(1, 2))
    loss.sum().backward()
    assert torch.allclose(explicit, leaf.grad, rtol=1e-4, atol=1e-7)
    assert float(explicit.abs().max()) > 0


def test_refusals(three):
    models, features, targets = three
    other = INR(ModelConfig(hidden_dims=10, hidden_layers=1, ff_dims=4))
    with pytest.raises(InrError, match="one architecture"):
        quant_batched.quantize_models([models[0], other], features, targets[:2], 8, **FAST)
    with pytest.raises(InrError, match="same number of rows"):
        quant_batched.quantize_models(models[:2], [features, features[:-1]], [targets[0], targets[1][:-1]], 8, **FAST)
    with pytest.raises(InrError, match="targets"):
        quant_batched.quantize_models(models, features, targets[:2], 8, **FAST)
    with pytest.raises(InrError, match="seeds"):
        quant_batched.quantize_models(models, features, targets, 8, seeds=[0, 1], **FAST)
    assert quant_batched.quantize_models([], features, [], 8) == []


def _experiment(tmp_path):
    """An image experiment of four 24 x 40 crops (one architecture and size), networks fitted briefly."""
    data = tmp_path / "data" / "TINY"
    data.mkdir(parents=True)
    exp = tmp_path / "exp" / "TINY_exp"
    cfg = ModelConfig(in_features=2, out_features=3, encoding="nerf", hidden_dims=12, hidden_layers=1, ff_dims=4,
                      encoding_scale=1.4)
    save_flags(exp / "FLAGS.yml", {"activation": "sine", "encoding": "nerf", "hidden_dims": 12, "hidden_layers": 1,
                                   "ff_dims": 4, "encoding_scale": 1.4, "dataset": "TINY", "downscaling_factor": 1})
    for k, name in enumerate(("astronaut", "coffee", "chelsea", "rocket")):
        picture = photo_crop(name, 24, 40)
        Image.fromarray(picture).save(data / f"{name}.png")
        torch.manual_seed(k)
        model = INR(cfg)
        features = model.encode(coordinate_grid((24, 40))).detach()
        values = torch.from_numpy(picture.reshape(-1, 3).astype(np.float32) / 127.5 - 1.0)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        for _ in range(150):
            opt.zero_grad()
            torch.mean((model.head(features) - values) ** 2).backward()
            opt.step()
        (exp / name / CHECKPOINT_DIR).mkdir(parents=True)
        torch.save(model.state_dict(), exp / name / CHECKPOINT_DIR / BEST_FILE)
    return tmp_path / "data", tmp_path / "exp"


def test_quantize_loop_batched_matches_one_by_one(tmp_path):
    data, exp_root = _experiment(tmp_path)
    flags = {"data_root": str(data), "dataset": "TINY", "exp_root": str(exp_root), "exp_glob": "*", "device": "cpu",
             "seed": 0, "skip_existing": False, "bitwidth": 7, "adaround": True, "adaround_iterations": 60,
             "adaround_reg": 1e-4, "retrain": True, "retrain_epochs": 10, "retrain_lr": 1e-5, "code": "arithmetic"}
    summaries = {}
    for batch in (1, 0):  # one by one, then auto (all four together on a CPU)
        [summaries[batch]] = run_quantize_and_test({**flags, "batch_images": batch}, progress=False)
        metrics = yaml.safe_load(next(exp_root.glob("*/astronaut/metrics_*.yml")).read_text())
        assert metrics["coded_together"] == (1 if batch == 1 else 4)
    # the decoder's multiply-accumulates per pixel: 18 encoded inputs -> 12 -> 12 -> 3
    assert summaries[0]["results"]["decoder_mac_per_pixel"] == 18 * 12 + 12 * 12 + 12 * 3
    for name, one in summaries[1]["per_image"].items():
        together = summaries[0]["per_image"][name]
        assert together["psnr"] == pytest.approx(one["psnr"], abs=0.02)
        assert together["bytes"] == pytest.approx(one["bytes"], abs=2)


@pytest.mark.parametrize("activation", ["sine", "relu"])
def test_blocked_render_is_the_module_on_every_row(monkeypatch, activation):
    from inrcompress.codec.representations import siren

    model = INR(ModelConfig(hidden_dims=9, hidden_layers=2, ff_dims=3, activation=activation))
    coords = coordinate_grid((13, 11))
    with torch.no_grad():
        whole = model(coords)
    for block, smallest in ((32, 16), (40, 64)):  # 143 rows: the last 15 (23) join the block before
        monkeypatch.setattr(siren, "RENDER_BLOCK_ROWS", block)
        monkeypatch.setattr(siren, "RENDER_MIN_BLOCK_ROWS", smallest)
        assert torch.equal(representation_of(model).render(model, coords), whole)
