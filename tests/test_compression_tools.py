import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from inrcompress.evaluate.metrics import psnr
from inrcompress.tools.decode import main as decode_main
from inrcompress.tools.encode import main as encode_main
from inrcompress.tools.overfit_inr import main as overfit_main
from inrcompress.tools.quantize_and_test import main as quantize_main
from PIL import Image

QUICK_QUANT = ["--adaround_iterations=20", "--retrain_epochs=5"]


@pytest.fixture
def fitted(tiny_dataset, tmp_path):
    exp_root = tmp_path / "exp"
    assert overfit_main([f"--data_root={tiny_dataset}", "--dataset=TINY", f"--exp_root={exp_root}", "--epochs=150",
                         "--lr=0.0005", "--hidden_dims=16", "--hidden_layers=2", "--device=cpu"]) == 0
    return tiny_dataset, exp_root


def _quantize(data_root, exp_root, *extra):
    return quantize_main([f"--data_root={data_root}", "--dataset=TINY", f"--exp_root={exp_root}", "--exp_glob=*",
                          "--device=cpu", *QUICK_QUANT, *extra])


def test_quantize_writes_files_whose_decoding_reproduces_the_reported_psnr(fitted, tmp_path, capsys):
    data_root, exp_root = fitted
    assert _quantize(data_root, exp_root, "--bitwidth=8") == 0
    exp = next(exp_root.iterdir())
    tag = "arithmetic_bw8_adaround_iter_20_adaround_reg_0.0001_retrain_epochs5_retrain_lr1e-06"
    summary = json.loads((exp / f"results_{tag}.json").read_text())
    assert set(summary["per_image"]) == {"astronaut", "chelsea"}
    for name, suffix in (("astronaut", ".png"), ("chelsea", ".jpg")):
        inr = exp / name / f"compressed_{tag}.inr"
        metrics = yaml.safe_load((exp / name / f"metrics_{tag}.yml").read_text())
        assert metrics["bytes"] == inr.stat().st_size
        original = np.asarray(Image.open(data_root / "TINY" / f"{name}{suffix}").convert("RGB"))
        assert metrics["bpp"] == 8 * inr.stat().st_size / (original.shape[0] * original.shape[1])
        assert metrics["bpp_payload"] < metrics["bpp"]
        assert metrics["train_hidden_dims"] == 16 and metrics["bitwidth"] == 8
        out = tmp_path / f"{name}.png"
        assert decode_main([str(inr), str(out)]) == 0
        decoded = np.asarray(Image.open(out))
        assert decoded.shape == original.shape
        assert psnr(decoded / 255.0, original / 255.0) == metrics["psnr"]
        assert metrics["psnr"] > 20
    r = summary["results"]
    assert r["bpp"] == pytest.approx(np.mean([v["bpp"] for v in summary["per_image"].values()]))
    assert "psnr-rgb" in r and "ms-ssim-rgb" in r and r["decoding_time"] > 0


def test_decoding_is_deterministic_across_processes(fitted, tmp_path, capsys):
    data_root, exp_root = fitted
    assert _quantize(data_root, exp_root, "--bitwidth=7", "--code=brotli") == 0
    inr = next(exp_root.glob("*/astronaut/compressed_brotli_bw7_*.inr"))
    assert decode_main([str(inr), str(tmp_path / "a.png")]) == 0
    script = Path(__file__).resolve().parents[1] / "image_compression" / "decode.py"
    subprocess.run([sys.executable, str(script), str(inr), str(tmp_path / "b.png")], check=True,
                   capture_output=True)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_per_channel_steps_files_decode_in_another_process_to_the_reported_psnr(fitted, tmp_path, capsys):
    data_root, exp_root = fitted
    assert _quantize(data_root, exp_root, "--bitwidth=7", "--per_channel_steps") == 0
    inr = next(exp_root.glob("*/astronaut/compressed_arithmetic_bw7_*_per_channel.inr"))
    metrics = yaml.safe_load(inr.with_name(inr.name.replace("compressed_", "metrics_")[:-4] + ".yml").read_text())
    script = Path(__file__).resolve().parents[1] / "image_compression" / "decode.py"
    subprocess.run([sys.executable, str(script), str(inr), str(tmp_path / "pc.png")], check=True, capture_output=True)
    original = np.asarray(Image.open(data_root / "TINY" / "astronaut.png").convert("RGB"))
    assert psnr(np.asarray(Image.open(tmp_path / "pc.png")) / 255.0, original / 255.0) == metrics["psnr"]
    from inrcompress.codec.container import read_inr_header

    assert read_inr_header(inr.read_bytes()).channel_codes  # section 5 is there


def test_skip_existing_and_noadaround_noretrain(fitted, capsys):
    data_root, exp_root = fitted
    assert _quantize(data_root, exp_root, "--noadaround", "--noretrain", "--bitwidth=6") == 0
    files = sorted(exp_root.glob("*/*/metrics_arithmetic_bw6.yml"))
    assert len(files) == 2
    stamp = [f.stat().st_mtime_ns for f in files]
    assert _quantize(data_root, exp_root, "--noadaround", "--noretrain", "--bitwidth=6") == 0
    assert [f.stat().st_mtime_ns for f in files] == stamp
    assert _quantize(data_root, exp_root, "--noadaround", "--noretrain", "--bitwidth=6", "--noskip_existing") == 0
    assert [f.stat().st_mtime_ns for f in files] != stamp


def test_quantize_error_paths(fitted, tmp_path, capsys):
    data_root, exp_root = fitted
    assert quantize_main([f"--exp_root={tmp_path / 'none'}"]) == 2
    assert "experiment root not found" in capsys.readouterr().err
    assert _quantize(data_root, exp_root, "--exp_glob=nomatch*") == 2
    assert "no image experiment folder" in capsys.readouterr().err
    assert _quantize(data_root, exp_root, "--bitwidth=0") == 2
    assert "bitwidth" in capsys.readouterr().err
    (data_root / "TINY" / "chelsea.jpg").unlink()
    assert _quantize(data_root, exp_root) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bars
    assert last.startswith("error: no original image chelsea")


def _inr_file(tmp_path, capsys) -> Path:
    from .conftest import photo_crop

    source = tmp_path / "photo.png"
    Image.fromarray(photo_crop("coffee", 24, 32)).save(source)
    target = tmp_path / "photo.inr"
    assert encode_main([str(source), str(target), "--epochs=100", "--hidden_dims=12", "--hidden_layers=1",
                        "--device=cpu", *QUICK_QUANT]) == 0
    return target


def test_encode_then_decode(tmp_path, capsys):
    target = _inr_file(tmp_path, capsys)
    out = capsys.readouterr().out
    assert "bpp" in out and "JPEG" in out
    assert decode_main([str(target), str(tmp_path / "back.png")]) == 0
    assert np.asarray(Image.open(tmp_path / "back.png")).shape == (24, 32, 3)


@pytest.mark.parametrize("damage", ["flip", "truncate", "foreign", "empty", "missing"])
def test_decode_refuses_bad_files_with_exit_2(tmp_path, capsys, damage):
    target = _inr_file(tmp_path, capsys)
    data = bytearray(target.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    elif damage == "truncate":
        data = data[: len(data) - 7]
    elif damage == "foreign":
        data = bytearray(b"\x89PNG\r\n\x1a\n" + bytes(100))
    elif damage == "empty":
        data = bytearray()
    bad = tmp_path / "bad.inr"
    if damage != "missing":
        bad.write_bytes(bytes(data))
    capsys.readouterr()
    assert decode_main([str(bad), str(tmp_path / "out.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "out.png").exists()


def test_decode_usage_errors(tmp_path, capsys):
    assert decode_main([]) == 2
    assert encode_main(["only_one_arg.png"]) == 2
