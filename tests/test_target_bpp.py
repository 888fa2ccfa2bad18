"""encode.py --target_bpp / --target_psnr (beyond the paper): the file lands within 3 % of the target
rate, decoding the file reproduces the PSNR encode.py reports, and impossible targets are refused
with one line before any fitting."""

import re

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from inrcompress.codec.compress import QuantConfig, decode_image
from inrcompress.config import ModelConfig, TrainConfig
from inrcompress.errors import InrError
from inrcompress.evaluate.metrics import psnr
from inrcompress.experiments.image_codec import TARGET_TOLERANCE, check_rate_target, encode_to_target, smallest_file_bytes
from inrcompress.fit.train import fit
from inrcompress.nn import INR
from inrcompress.signals.grid import coordinate_grid
from inrcompress.signals.image import image_to_values
from inrcompress.tools.decode import main as decode_main
from inrcompress.tools.encode import main as encode_main
from inrcompress.tools.quantize_and_test import main as quantize_main

from .conftest import photo_crop
from .test_compression_tools import fitted  # noqa: F401 (the fitted experiment fixture)

QUICK_FLAGS = ["--epochs=150", "--device=cpu", "--adaround_iterations=20", "--retrain_epochs=5"]
HEIGHT, WIDTH = 40, 56


@pytest.fixture
def photo(tmp_path):
    source = tmp_path / "photo.png"
    Image.fromarray(photo_crop("coffee", HEIGHT, WIDTH)).save(source)
    return source


def _reported(out: str) -> tuple[float, float]:
    line = next(line for line in out.splitlines() if "(decoded from the file)" in line)
    bpp = float(re.search(r"([0-9.]+) bpp", line).group(1))
    return bpp, float(re.search(r"PSNR ([0-9.]+) dB", line).group(1))


@pytest.mark.parametrize("target_bpp", [2.0, 4.0])
def test_target_bpp_file_within_3_percent_and_decode_reproduces_the_psnr(photo, tmp_path, capsys, target_bpp):
    target = tmp_path / "out.inr"
    assert encode_main([str(photo), str(target), f"--target_bpp={target_bpp}", *QUICK_FLAGS]) == 0
    out = capsys.readouterr().out
    assert "chose width" in out and "step scale" in out
    pixels = HEIGHT * WIDTH
    real_bpp = 8 * target.stat().st_size / pixels
    assert abs(real_bpp / target_bpp - 1) <= TARGET_TOLERANCE
    reported_bpp, reported_psnr = _reported(out)
    assert reported_bpp == pytest.approx(real_bpp, abs=5e-5)
    back = tmp_path / "back.png"
    assert decode_main([str(target), str(back)]) == 0
    decoded = np.asarray(Image.open(back))
    original = np.asarray(Image.open(photo))
    assert f"{psnr(decoded / 255.0, original / 255.0):.2f}" == f"{reported_psnr:.2f}"


@pytest.fixture(scope="module")
def fitted_network():
    image = photo_crop("astronaut", 32, 48)
    torch.manual_seed(0)
    model = INR(ModelConfig(hidden_dims=16, hidden_layers=2))
    fit(model, coordinate_grid((32, 48)), image_to_values(image), TrainConfig(epochs=150, lr=5e-4),
        show_progress=False)
    return model, image


QUICK = dict(adaround_iterations=20, retrain_epochs=5)


def test_encode_to_target_reports_the_psnr_and_bpp_of_its_file_exactly(fitted_network):
    model, image = fitted_network
    data, _, chosen = encode_to_target(model, image, QuantConfig(target_bpp=5.0, **QUICK))
    _, decoded = decode_image(data)
    assert chosen["psnr"] == psnr(decoded / 255.0, image / 255.0)
    assert chosen["bpp"] == 8 * len(data) / (32 * 48)
    assert abs(chosen["bpp"] / 5.0 - 1) <= TARGET_TOLERANCE


def test_encode_to_target_keeps_the_orientation_and_the_init_of_the_experiment(fitted_network):
    """quantize_and_test.py's target mode codes a portrait image (fitted turned to landscape) and a
    meta-learned experiment's residual as every other encode does: the file decodes upright, only
    with its init, to the PSNR the search reports."""
    model, image = fitted_network
    reference = {name: 0.5 * p.detach().clone() for name, p in model.named_parameters()}
    data, _, chosen = encode_to_target(model, image, QuantConfig(target_bpp=5.0, **QUICK), rotated=True,
                                       reference=reference)
    with pytest.raises(InrError):
        decode_image(data)  # a residual file needs its init
    header, decoded = decode_image(data, reference)
    upright = np.ascontiguousarray(np.rot90(image, k=-1))
    assert header.rotated and header.init_hash and decoded.shape == upright.shape
    assert chosen["psnr"] == psnr(decoded / 255.0, upright / 255.0)


@pytest.mark.slow
def test_psnr_target_is_reached_with_a_smaller_file_than_the_best(fitted_network):
    model, image = fitted_network
    best, _, top = encode_to_target(model, image, QuantConfig(target_bpp=5.0, **QUICK))
    goal = top["psnr"] - 1.0
    small, _, reached = encode_to_target(model, image, QuantConfig(target_psnr=goal, **QUICK))
    _, decoded = decode_image(small)
    assert psnr(decoded / 255.0, image / 255.0) >= goal == reached["target_psnr"]
    assert reached["bpp"] == 8 * len(small) / (32 * 48)
    assert len(small) < len(best)


@pytest.mark.parametrize("flags, message", [
    (["--target_bpp=0.05"], "below the smallest file"),
    (["--target_bpp=-1"], "positive"),
    (["--target_bpp=1", "--target_psnr=30"], "one of --target_bpp and --target_psnr"),
    (["--target_psnr=300"], "--target_psnr must be in"),
])
def test_impossible_targets_are_refused_with_one_line(photo, tmp_path, capsys, flags, message):
    assert encode_main([str(photo), str(tmp_path / "out.inr"), *flags, *QUICK_FLAGS]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err
    assert "fitted:" not in captured.out  # refused before the fit
    assert not (tmp_path / "out.inr").exists()


def test_a_latent_target_with_a_rate_lambda_too_is_refused(photo, tmp_path, capsys):
    assert encode_main([str(photo), str(tmp_path / "out.inr"), "--representation=latent", "--rate_lambda=0.001",
                        "--target_bpp=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "chooses --rate_lambda itself" in err and "\n" not in err


def test_the_floor_is_the_smallest_file_of_the_architecture():
    cfg = ModelConfig(hidden_dims=8, hidden_layers=1)
    floor = smallest_file_bytes(cfg, 32, 32, QuantConfig())
    check_rate_target(QuantConfig(target_bpp=8 * floor / 1024), cfg, 32, 32)
    with pytest.raises(InrError, match="below the smallest file"):
        check_rate_target(QuantConfig(target_bpp=0.9 * 8 * floor / 1024), cfg, 32, 32)
    # A file coded against a meta-learned initialization also carries the init's 32-byte hash.
    meta_floor = smallest_file_bytes(cfg, 32, 32, QuantConfig(), meta=True)
    assert meta_floor >= floor + 32
    with pytest.raises(InrError, match="below the smallest file"):
        check_rate_target(QuantConfig(target_bpp=8 * floor / 1024), cfg, 32, 32, meta=True)
    with pytest.raises(InrError, match="per image"):  # a target is no fixed quantization
        from inrcompress.codec.compress import compress_network

        compress_network(INR(cfg), coordinate_grid((4, 4)), torch.zeros(16, 3), QuantConfig(target_bpp=1.0),
                         modality="image", height=4, width=4)


@pytest.mark.slow
def test_quantize_and_test_codes_every_image_to_the_target(fitted, capsys):
    data_root, exp_root = fitted
    assert quantize_main([f"--data_root={data_root}", "--dataset=TINY", f"--exp_root={exp_root}", "--exp_glob=*",
                          "--device=cpu", "--adaround_iterations=20", "--retrain_epochs=5", "--target_bpp=6"]) == 0
    exp = next(exp_root.iterdir())
    files = sorted(exp.glob("*/compressed_*_target_bpp6.0.inr"))
    assert len(files) == 2
    for inr in files:
        _, decoded = decode_image(inr.read_bytes())
        bpp = 8 * inr.stat().st_size / (decoded.shape[0] * decoded.shape[1])
        assert abs(bpp / 6.0 - 1) <= TARGET_TOLERANCE
        metrics = yaml.safe_load(inr.with_name(inr.name.replace("compressed_", "metrics_").replace(".inr", ".yml"))
                                 .read_text())
        assert metrics["chose_bpp"] == pytest.approx(bpp) and metrics["chose_bitwidth"] in (6, 7, 8)
