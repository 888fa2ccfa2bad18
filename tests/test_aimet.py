"""The AIMET quantizer (codec/aimet_quant.py): runs only where aimet-torch imports (.venv-aimet,
`make test-aimet`); elsewhere those tests are skipped with the reason, and the one-line error
without AIMET is tested instead."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inrcompress.codec.aimet_quant import AIMET_SETUP_HINT, aimet_available, aimet_readout, quantize_model_aimet
from inrcompress.codec.compress import decode_image, decode_network, init_hash, render
from inrcompress.codec.container import InrHeader, encode_inr
from inrcompress.codec.quant import dequantize, integer_range, integers_from_symbols
from inrcompress.codec.representations import representation_of
from inrcompress.config import ModelConfig, TrainConfig
from inrcompress.errors import InrError
from inrcompress.fit.train import fit
from inrcompress.nn import INR
from inrcompress.signals.grid import coordinate_grid
from inrcompress.signals.image import image_to_values, values_to_uint8

requires_aimet = pytest.mark.skipif(not aimet_available(),
                                    reason=f"aimet-torch does not import here: {AIMET_SETUP_HINT}")

HEIGHT, WIDTH = 20, 28
FAST = dict(adaround_iterations=60, adaround_reg=1e-4, retrain_epochs=8, retrain_lr=1e-4, seed=0, progress=False)


def _image() -> np.ndarray:
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    rgb = np.stack([np.sin(xx / 3.0), np.cos(yy / 4.0), np.sin((xx + yy) / 5.0) * (xx > WIDTH // 2)], axis=-1)
    return np.round((rgb * 0.5 + 0.5) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def fitted():
    """A small SIREN fitted to a small synthetic image: (model, image, features, values)."""
    torch.manual_seed(0)
    image = _image()
    coords, values = coordinate_grid(image.shape[:2]), image_to_values(image)
    model = INR(ModelConfig(hidden_dims=12, hidden_layers=1, ff_dims=4))
    fit(model, coords, values, TrainConfig(epochs=300, lr=1e-3), show_progress=False)
    with torch.no_grad():
        features = model.encode(coords)
    return model, image, features, values


def _write(model, image, qt, reference=None) -> bytes:
    rep = representation_of(model)
    header = InrHeader.for_model(model, modality="image", height=image.shape[0], width=image.shape[1],
                                 bitwidth=qt.bitwidth, coder="arithmetic", step_sizes=qt.step_sizes,
                                 init_hash=init_hash(reference, rep))
    return encode_inr(header, qt.symbols)[0]


def _mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.mean((a.to(torch.float64) - b.to(torch.float64)) ** 2))


@pytest.mark.skipif(aimet_available(), reason="aimet-torch imports here: the missing-AIMET error cannot occur")
def test_without_aimet_one_line_error_names_the_setup(fitted):
    model, _, features, values = fitted
    with pytest.raises(InrError) as info:
        quantize_model_aimet(model, features, values, 8, **FAST)
    message = str(info.value)
    assert "make setup-aimet" in message and ".venv-aimet/bin/python" in message and "\n" not in message


@pytest.mark.aimet
@requires_aimet
@pytest.mark.parametrize("adaround, retrain", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("bitwidth", [4, 8])
def test_integers_and_steps_are_what_the_sim_computes(fitted, bitwidth, adaround, retrain):
    model, _, features, values = fitted
    out = aimet_readout(model, features, values, bitwidth, adaround=adaround, retrain=retrain, reference=None,
                        **FAST)
    qmin, qmax = integer_range(bitwidth)
    specs = representation_of(model).tensor_specs()
    assert len(out.ints) == len(out.steps) == len(specs)
    for q, step, sim_value, spec in zip(out.ints, out.steps, out.sim_values, specs):
        assert tuple(q.shape) == spec.shape and q.dtype == torch.int32
        assert qmin <= int(q.min()) and int(q.max()) <= qmax
        assert step > 0 and float(np.float32(step)) == step
        assert torch.equal(dequantize(q, step), sim_value)
    qt = quantize_model_aimet(model, features, values, bitwidth, adaround=adaround, retrain=retrain, **FAST)
    for sym, q in zip(qt.symbols, out.ints):
        assert torch.equal(integers_from_symbols(sym, bitwidth).reshape(q.shape), q)
    assert qt.step_sizes == out.steps


@pytest.mark.aimet
@requires_aimet
@pytest.mark.parametrize("bitwidth", [6])
def test_file_decodes_to_the_reported_quality(fitted, bitwidth):
    model, image, features, values = fitted
    out = aimet_readout(model, features, values, bitwidth, adaround=True, retrain=True, reference=None, **FAST)
    qt = quantize_model_aimet(model, features, values, bitwidth, **FAST)
    data = _write(model, image, qt)
    _, decoded_model = decode_network(data)
    rendered = render(decoded_model, image.shape[:2])
    assert _mse(rendered, values) == pytest.approx(out.mse, rel=1e-5)
    _, decoded = decode_image(data)
    assert np.array_equal(decoded, values_to_uint8(rendered, *image.shape[:2]))


@pytest.mark.aimet
@requires_aimet
def test_residual_mode_file_decodes_with_its_init(fitted):
    model, image, features, values = fitted
    torch.manual_seed(1)
    reference = {k: v + 0.01 * torch.randn_like(v) for k, v in model.state_dict().items()}
    out = aimet_readout(model, features, values, 6, adaround=True, retrain=True, reference=reference, **FAST)
    qt = quantize_model_aimet(model, features, values, 6, reference=reference, **FAST)
    data = _write(model, image, qt, reference)
    _, decoded_model = decode_network(data, reference)
    assert _mse(render(decoded_model, image.shape[:2]), values) == pytest.approx(out.mse, rel=1e-5)
    assert _mse(render(decoded_model, image.shape[:2]), values) < 10 * _mse(render(model, image.shape[:2]), values) + 1e-3


@pytest.mark.aimet
@requires_aimet
@pytest.mark.slow
@pytest.mark.parametrize("bitwidth", [4, 5, 6])
def test_adaround_improves_on_nearest(fitted, bitwidth):
    model, _, features, values = fitted
    common = dict(reference=None, retrain=False, retrain_epochs=0, retrain_lr=0.0, seed=0, progress=False,
                  adaround_reg=1e-4)
    stages = {}
    rounded = aimet_readout(model, features, values, bitwidth, adaround=True, adaround_iterations=300,
                            on_stage=stages.__setitem__, **common)
    assert list(stages) == ["nearest", "adaround"] and stages["adaround"] is rounded
    nearest = aimet_readout(model, features, values, bitwidth, adaround=False, adaround_iterations=0, **common)
    assert all(torch.equal(a, b) for a, b in zip(stages["nearest"].ints, nearest.ints))
    assert rounded.mse < nearest.mse
    # AdaRound keeps the weight steps (up to the round trip of AIMET's encodings file) and changes integers
    assert rounded.steps[0::2] == pytest.approx(nearest.steps[0::2], rel=1e-6)
    assert any(not torch.equal(a, b) for a, b in zip(rounded.ints[0::2], nearest.ints[0::2]))


# ---- quantize_and_test.py --quantizer aimet: the tool path -------------------------------------------------


def _fit_tiny_experiment(data_root, exp_root):
    from inrcompress.tools.overfit_inr import main as overfit_main

    assert overfit_main([f"--data_root={data_root}", "--dataset=TINY", f"--exp_root={exp_root}", "--epochs=60",
                         "--hidden_dims=12", "--hidden_layers=1", "--device=cpu"]) == 0


def _quantize_tool(data_root, exp_root, *extra):
    from inrcompress.tools.quantize_and_test import main as quantize_main

    return quantize_main([f"--data_root={data_root}", "--dataset=TINY", f"--exp_root={exp_root}", "--exp_glob=*",
                          "--device=cpu", "--adaround_iterations=20", "--retrain_epochs=3", "--bitwidth=8", *extra])


@pytest.mark.skipif(aimet_available(), reason="aimet-torch imports here: the missing-AIMET error cannot occur")
def test_quantize_tool_without_aimet_stops_before_any_work_with_the_setup_command(tiny_dataset, tmp_path, capsys):
    exp_root = tmp_path / "exp"
    _fit_tiny_experiment(tiny_dataset, exp_root)
    capsys.readouterr()
    assert _quantize_tool(tiny_dataset, exp_root, "--quantizer=aimet") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "make setup-aimet" in err[0]
    assert not list(exp_root.glob("*/*/compressed_*.inr"))


@pytest.mark.aimet
@requires_aimet
def test_quantize_tool_with_aimet_writes_files_that_decode_to_the_reported_psnr(tiny_dataset, tmp_path):
    import yaml
    from PIL import Image

    from inrcompress.evaluate.metrics import psnr
    from inrcompress.tools.decode import main as decode_main

    exp_root = tmp_path / "exp"
    _fit_tiny_experiment(tiny_dataset, exp_root)
    assert _quantize_tool(tiny_dataset, exp_root, "--quantizer=aimet") == 0
    files = sorted(exp_root.glob("*/*/compressed_*_aimet.inr"))
    assert len(files) == 2
    for inr in files:
        metrics = yaml.safe_load(inr.with_name(inr.name.replace("compressed_", "metrics_")[:-4] + ".yml").read_text())
        out = tmp_path / f"{inr.parent.name}.png"
        assert decode_main([str(inr), str(out)]) == 0
        stem = inr.parent.name
        source = next((tiny_dataset / "TINY").glob(f"{stem}.*"))
        original = np.asarray(Image.open(source).convert("RGB"))
        assert psnr(np.asarray(Image.open(out)) / 255.0, original / 255.0) == metrics["psnr"]
