import json

import pytest
import torch
from inrcompress.fit.batched import fit_many
from inrcompress.config import ModelConfig, TrainConfig
from inrcompress.signals.grid import coordinate_grid
from inrcompress.signals.image import image_to_values
from inrcompress.nn import INR, mlp_forward, separable_grid_features, stacked_mlp_sse_grads
from inrcompress.tools.overfit_inr import main as overfit_main
from inrcompress.fit.train import fit

from .conftest import photo_crop

CFG = ModelConfig(hidden_dims=16, hidden_layers=2, ff_dims=8)


def _signals(h=16, w=24):
    return coordinate_grid((h, w)), [image_to_values(photo_crop(n, h, w)) for n in ("astronaut", "chelsea", "coffee")]


def _models(n, seed=0):
    models = []
    for _ in range(n):
        torch.manual_seed(seed)
        models.append(INR(CFG))
    return models


@pytest.mark.parametrize("cfg", [
    TrainConfig(epochs=60, lr=1e-3),
    TrainConfig(epochs=60, lr=1e-3, l1_reg=1e-4, patience=3, warmup=5),
])
@pytest.mark.parametrize("grid_shape", [None, (16, 24)])
def test_batched_equals_one_by_one(cfg, grid_shape):
    coords, values = _signals()
    singles = _models(3)
    single_results = [fit(m, coords, v, cfg, show_progress=False) for m, v in zip(singles, values)]
    batched = _models(3)
    batched_results = fit_many(batched, coords, values, cfg, [None] * 3, show_progress=False, grid_shape=grid_shape)
    for a, b, ra, rb in zip(singles, batched, single_results, batched_results):
        for pa, pb in zip(a.parameters(), b.parameters()):
            assert torch.allclose(pa, pb, atol=2e-5), (pa - pb).abs().max()
        assert ra.best_epoch == rb.best_epoch and ra.epochs_run == rb.epochs_run
        assert rb.losses == pytest.approx(ra.losses, rel=1e-4)


@pytest.mark.parametrize("activation", ["sine", "relu"])
@pytest.mark.parametrize("shared_input", [True, False])
@pytest.mark.parametrize("split_rows", [0, 32])
def test_explicit_backprop_equals_autograd(activation, shared_input, split_rows):
    torch.manual_seed(1)
    n_models, rows, dims = 3, 96, [10, 16, 16, 3]
    weights = [(torch.randn(n_models, b, a) / a).requires_grad_() for a, b in zip(dims[:-1], dims[1:])]
    biases = [(torch.randn(n_models, b) * 0.1).requires_grad_() for b in dims[1:]]
    features = torch.rand(rows, dims[0]) * 2 - 1 if shared_input else torch.rand(n_models, rows, dims[0]) * 2 - 1
    targets = torch.rand(n_models, rows, dims[-1]) * 2 - 1
    scale = 1.0 / (rows * dims[-1])
    # the reference: each network alone through the model's own forward, differentiated by autograd
    prediction = torch.stack([
        mlp_forward(features if shared_input else features[n], [w[n] for w in weights], [b[n] for b in biases],
                    activation) for n in range(n_models)])
    losses = ((prediction - targets) ** 2).sum(dim=(1, 2)) * scale
    losses.sum().backward()
    got_losses, weight_grads, bias_grads, _ = stacked_mlp_sse_grads(
        features, [w.detach() for w in weights], [b.detach() for b in biases], activation, targets, scale,
        split_rows=split_rows)
    assert torch.allclose(got_losses, losses.detach(), rtol=1e-6)
    for param, grad in zip(weights + biases, weight_grads + bias_grads):
        assert grad.shape == param.shape
        assert torch.allclose(grad, param.grad, rtol=1e-5, atol=1e-7), (grad - param.grad).abs().max()


@pytest.mark.parametrize("grid_shape", [None, (16, 24)])
def test_batched_equals_one_by_one_across_row_chunks(grid_shape):
    # 384 pixels: chunks of 100 points (or of 4 grid rows, 96 points) leave a partial last chunk
    coords, values = _signals()
    cfg = TrainConfig(epochs=30, lr=1e-3, l1_reg=1e-4)
    singles = _models(3)
    for m, v in zip(singles, values):
        fit(m, coords, v, cfg, show_progress=False)
    batched = _models(3)
    fit_many(batched, coords, values, cfg, [None] * 3, show_progress=False, chunk_rows=100, grid_shape=grid_shape)
    for a, b in zip(singles, batched):
        for pa, pb in zip(a.parameters(), b.parameters()):
            assert torch.allclose(pa, pb, atol=2e-5), (pa - pb).abs().max()


@pytest.mark.parametrize("encoding", ["nerf", "positional", "mlp"])
def test_grid_features_give_the_same_loss_and_gradients(encoding):
    torch.manual_seed(2)
    shape = (6, 10)
    model = INR(ModelConfig(hidden_dims=16, hidden_layers=1, ff_dims=4, encoding=encoding))
    features = model.encode(coordinate_grid(shape))
    grid = separable_grid_features(features, shape)
    assert grid is not None and grid[0].shape[0] == 6 and grid[1].shape[0] == 10
    weights = [torch.stack([layer.weight.detach()] * 2) + 0.01 * torch.randn(2, *layer.weight.shape)
               for layer in model.layers]
    biases = [torch.stack([layer.bias.detach()] * 2) for layer in model.layers]
    targets = torch.rand(2, 60, 3)
    flat = stacked_mlp_sse_grads(features, weights, biases, "sine", targets, 0.01)
    rows, cols = grid
    factored = list(stacked_mlp_sse_grads((rows, torch.matmul(cols, weights[0].transpose(1, 2))), weights, biases,
                                          "sine", targets, 0.01))
    assert flat[3] is None and factored[3].shape == (2, 10, 16)
    factored[1][0] = factored[1][0] + torch.matmul(factored[3].transpose(1, 2), cols)
    assert torch.allclose(flat[0], factored[0], rtol=1e-5)
    for a, b in zip(flat[1] + flat[2], factored[1] + factored[2]):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), (a - b).abs().max()


def test_gaussian_features_are_not_separable():
    model = INR(ModelConfig(hidden_dims=16, ff_dims=4, encoding="gauss"))
    assert separable_grid_features(model.encode(coordinate_grid((5, 7))), (5, 7)) is None


def test_one_image_diverging_leaves_the_others_alone():
    coords, values = _signals()
    cfg = TrainConfig(epochs=40, lr=1e-3)
    batched = _models(3)
    reference = _models(3)
    ref_results = [fit(m, coords, v, cfg, show_progress=False) for m, v in zip(reference, values)]

    # Poison image 1 through its target: an infinite value makes only its loss non-finite.
    values = [v.clone() for v in values]
    values[1][0, 0] = float("inf")
    with pytest.warns(UserWarning, match="image 1: non-finite"):
        results = fit_many(batched, coords, values, cfg, [None] * 3, show_progress=False)
    assert [r.diverged for r in results] == [False, True, False]
    for k in (0, 2):
        for pa, pb in zip(reference[k].parameters(), batched[k].parameters()):
            assert torch.allclose(pa, pb, atol=2e-5)
        assert results[k].epochs_run == ref_results[k].epochs_run
    assert all(torch.isfinite(p).all() for p in batched[1].parameters())


def test_batched_resume_gives_the_uninterrupted_result(tmp_path):
    coords, values = _signals()
    cfg = TrainConfig(epochs=50, lr=1e-3, epochs_til_ckpt=20)
    straight = _models(3)
    fit_many(straight, coords, values, cfg, [tmp_path / f"s{n}" for n in range(3)], show_progress=False)

    def interrupt(step):
        if step == 30:
            raise KeyboardInterrupt

    dirs = [tmp_path / f"r{n}" for n in range(3)]
    with pytest.raises(KeyboardInterrupt):
        fit_many(_models(3), coords, values, cfg, dirs, step_hook=interrupt, show_progress=False)
    resumed = _models(3, seed=99)
    results = fit_many(resumed, coords, values, cfg, dirs, show_progress=False)
    assert results[0].resumed_from == 20 and results[0].epochs_run == 50
    for a, b in zip(straight, resumed):
        for pa, pb in zip(a.parameters(), b.parameters()):
            assert torch.equal(pa, pb)
    for d in dirs:
        assert (d / "checkpoints" / "model_final.pth").is_file()
        assert not (d / "checkpoints" / "model_current_batched.pth").exists()


def test_overfit_tool_batches_images_of_one_size(tiny_dataset, tmp_path, capsys):
    from PIL import Image

    Image.fromarray(photo_crop("coffee", 32, 48)).save(tiny_dataset / "TINY" / "coffee.png")
    args = [f"--data_root={tiny_dataset}", "--dataset=TINY", f"--exp_root={tmp_path / 'exp'}", "--epochs=40",
            "--hidden_dims=16", "--hidden_layers=2", "--device=cpu", "--batch_images=8"]
    assert overfit_main(args) == 0
    out = capsys.readouterr().out
    assert out.count(", 2 images at once (") == 2  # astronaut and coffee (32x48) together, chelsea (30x40) alone
    exp = next((tmp_path / "exp").iterdir())
    summary = json.loads((exp / "result.json").read_text())
    assert summary["num_images"] == 3
    one_by_one = tmp_path / "exp1"
    assert overfit_main(args[:2] + [f"--exp_root={one_by_one}"] + args[3:-1] + ["--batch_images=1"]) == 0
    assert "at once" not in capsys.readouterr().out
    single = json.loads((next(one_by_one.iterdir()) / "result.json").read_text())
    for name in ("astronaut", "coffee", "chelsea"):
        assert summary["psnr"][name] == pytest.approx(single["psnr"][name], abs=1e-3)


def test_batch_images_auto_is_24_on_cpu_and_one_on_gpu():
    from inrcompress.experiments.images import batch_images_for

    assert batch_images_for({"batch_images": 0}, torch.device("cpu")) == 24
    assert batch_images_for({"batch_images": 0}, torch.device("cuda")) == 1
    assert batch_images_for({"batch_images": 3}, torch.device("cuda")) == 3
    assert batch_images_for({"batch_images": 1}, torch.device("cpu")) == 1
