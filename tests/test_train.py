import math

import pytest
import torch
from inrcompress.config import ModelConfig, TrainConfig
from inrcompress.signals.grid import coordinate_grid
from inrcompress.signals.image import image_to_values
from inrcompress.nn import INR
from inrcompress.fit.train import fit

from .conftest import photo_crop


def _signal(h=32, w=48):
    image = photo_crop("astronaut", h, w)
    return coordinate_grid((h, w)), image_to_values(image)


def _model(seed=0, width=32):
    torch.manual_seed(seed)
    return INR(ModelConfig(hidden_dims=width, ff_dims=16))


def _psnr(model, coords, values):
    with torch.no_grad():
        mse01 = ((model(coords).clamp(-1, 1) - values) ** 2).mean().item() / 4
    return 10 * math.log10(1 / mse01)


def test_fit_reaches_30db_on_a_photo_crop_in_300_steps():
    coords, values = _signal()
    model = _model()
    before = _psnr(model, coords, values)
    result = fit(model, coords, values, TrainConfig(epochs=300, lr=5e-4), show_progress=False)
    after = _psnr(model, coords, values)
    assert before < 15
    assert after > 30, after
    assert result.losses[-1] < result.losses[0] / 50
    assert result.best_loss == min(result.losses)


def test_chunked_step_equals_single_batch_up_to_rounding():
    coords, values = _signal()
    a, b = _model(), _model()
    cfg = TrainConfig(epochs=20, lr=5e-4)
    fit(a, coords, values, cfg, chunk_rows=None, show_progress=False)
    fit(b, coords, values, cfg, chunk_rows=100, show_progress=False)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-5)


def test_l1_term_and_reference_shrink_weights_toward_the_reference():
    coords, values = _signal(16, 16)
    reference = {k: v.detach().clone() for k, v in _model(seed=1).named_parameters()}
    model = _model(seed=1)
    fit(model, coords, values, TrainConfig(epochs=50, lr=1e-3, l1_reg=1e-2), reference_params=reference,
        show_progress=False)
    plain = _model(seed=1)
    fit(plain, coords, values, TrainConfig(epochs=50, lr=1e-3), show_progress=False)
    dist = lambda m: sum((p - reference[n]).abs().sum().item() for n, p in m.named_parameters())
    assert dist(model) < dist(plain)


def test_resume_after_interruption_gives_the_uninterrupted_result(tmp_path):
    coords, values = _signal(16, 24)
    cfg = TrainConfig(epochs=120, lr=5e-4, epochs_til_ckpt=50, steps_til_summary=1000)
    reference = _model()
    fit(reference, coords, values, cfg, tmp_path / "straight", show_progress=False)

    def interrupt(step):
        if step == 80:
            raise KeyboardInterrupt

    run = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        fit(_model(), coords, values, cfg, run, step_hook=interrupt, show_progress=False)
    assert (run / "checkpoints" / "model_current_.pth").is_file()
    assert not (run / "checkpoints" / "model_final.pth").exists()
    resumed = _model(seed=123)  # a different init: everything must come from the checkpoint
    result = fit(resumed, coords, values, cfg, run, show_progress=False)
    assert result.resumed_from == 50
    assert result.epochs_run == 120
    for pa, pb in zip(reference.parameters(), resumed.parameters()):
        assert torch.equal(pa, pb)
    assert (run / "checkpoints" / "model_final.pth").is_file()
    assert (run / "checkpoints" / "model_epoch_0100.pth").is_file()
    assert not (run / "checkpoints" / "model_current_.pth").exists()


def test_nan_loss_restores_the_best_state_and_is_reported():
    coords, values = _signal(16, 16)
    model = _model()

    def poison(step):
        if step == 30:
            with torch.no_grad():
                model.layers[2].weight[0, 0] = float("nan")

    with pytest.warns(UserWarning, match="non-finite loss"):
        result = fit(model, coords, values, TrainConfig(epochs=100, lr=5e-4), step_hook=poison, show_progress=False)
    assert result.diverged
    assert result.epochs_run == 30
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert result.best_epoch == 29


def test_early_stop_when_the_loss_stops_improving():
    coords, values = _signal(8, 8)
    model = _model()
    result = fit(model, coords, values, TrainConfig(epochs=500, lr=0.0, early_stop_epochs=10), show_progress=False)
    assert result.stopped_early
    assert result.epochs_run < 30


def test_minibatch_epochs_cover_the_signal():
    coords, values = _signal(16, 16)
    model = _model()
    result = fit(model, coords, values, TrainConfig(epochs=5, lr=5e-4, batch_size=100), show_progress=False)
    assert result.epochs_run == 5 and len(result.losses) == 5
