"""Issue 13, case by case through the real tools: inputs users really have (16-bit, EXIF-rotated,
palette, alpha, CMYK, tiny images), outputs that cannot be written, crafted decompression bombs,
and the messages a run prints. Each test fails on b577759 (the main the issue was filed against).

Images are real photographs (scikit-image's camera, astronaut, chelsea), written by the tests in
the formats a user's files come in."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inrcompress.codec import container
from inrcompress.codec.compress import decode_image
from inrcompress.evaluate.metrics import image_metrics
from inrcompress.experiments.image_codec import jpeg_at_size
from inrcompress.signals.image import load_image, sixteen_to_eight
from inrcompress.tools.decode import main as decode_main
from inrcompress.tools.decode_shape import main as decode_shape_main
from inrcompress.tools.encode import main as encode_main
from inrcompress.tools.normalize_shapes import main as normalize_main
from inrcompress.tools.overfit_inr import main as overfit_main
from inrcompress.tools.quantize_and_test import main as quantize_main

from tests.conftest import photo_crop

REPO = Path(__file__).resolve().parent.parent
# A quick encode: the pipeline end to end on a tiny image in about a second.
QUICK = ["--epochs=30", "--hidden_dims=8", "--hidden_layers=1", "--ff_dims=4", "--adaround_iterations=5",
         "--retrain_epochs=5", "--device=cpu"]


def camera_crop(height: int = 24, width: int = 32) -> np.ndarray:
    from skimage import data as skdata

    return np.asarray(Image.fromarray(skdata.camera()).resize((width, height), Image.LANCZOS))


def write_png16(path: Path, samples: np.ndarray) -> Path:
    """A 16-bit PNG (gray, gray+alpha, RGB or RGBA by the channel count), written by hand: Pillow
    cannot write 16-bit colour. Rows use filter 0; the decoder's row filters are Pillow's own."""
    samples = np.asarray(samples, dtype=">u2")
    channels = 1 if samples.ndim == 2 else samples.shape[2]
    height, width = samples.shape[:2]
    raw = b"".join(b"\x00" + samples[r].tobytes() for r in range(height))

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, colour_type,
                                                                        0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def with_image_size(data: bytes, height: int, width: int) -> bytes:
    """A valid format-v2 image file asking for another size: the size fields (after magic, version and
    modality) rewritten and the CRC recomputed, as the issue's crafted files were made."""
    at = len(container.MAGIC) + 2
    body = data[:at] + struct.pack("<HH", height, width) + data[at + 4:-4]
    return body + struct.pack("<I", zlib.crc32(body))


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.fixture(scope="module")
def small_inr(tmp_path_factory) -> Path:
    """A real .inr file of a 32x24 photograph (encode.py, a quick fit): the seed of the crafted files."""
    folder = tmp_path_factory.mktemp("small")
    Image.fromarray(photo_crop("astronaut", 24, 32)).save(folder / "photo.png")
    assert encode_main([str(folder / "photo.png"), str(folder / "photo.inr"), *QUICK]) == 0
    return folder / "photo.inr"


@pytest.fixture(scope="module")
def shape_inr(tmp_path_factory) -> Path:
    """A real shape .inr file: a small SDF network (unfitted) quantized and coded."""
    from inrcompress.codec.compress import QuantConfig, compress_network
    from inrcompress.config import ModelConfig
    from inrcompress.nn import INR

    torch.manual_seed(0)
    model = INR(ModelConfig(in_features=3, out_features=1, hidden_dims=8, hidden_layers=1, ff_dims=2))
    coords = torch.rand(256, 3) * 2 - 1
    data, _ = compress_network(model, coords, coords.norm(dim=1, keepdim=True) - 0.5,
                               QuantConfig(adaround=False, retrain=False), modality="shape")
    path = tmp_path_factory.mktemp("shape") / "shape.inr"
    path.write_bytes(data)
    return path


@pytest.fixture
def no_fit(monkeypatch):
    """encode.py with its fit replaced by a failure: a refusal must come before any compute."""
    def refuse(*args, **kwargs):
        raise AssertionError("the fit started: the refusal came too late")
    monkeypatch.setattr("inrcompress.tools.encode.fit_image", refuse)


# -- 1. image input in the one loading function ---------------------------------------------------


def test_16bit_gray_png_is_scaled_not_clipped_through_encode(tmp_path, capsys):
    """The issue's first case: camera() as uint16 x 257 was coded as an all-white image."""
    gray = camera_crop()
    source = tmp_path / "g16.png"
    Image.fromarray(gray.astype(np.uint16) * 257).save(source)
    assert np.array_equal(load_image(source)[:, :, 0], gray)
    target = tmp_path / "g.inr"
    assert encode_main([str(source), str(target), *QUICK]) == 0
    out = capsys.readouterr().out
    assert "PSNR inf" not in out
    _, decoded = decode_image(target.read_bytes())
    assert decoded.shape == (24, 32, 1)
    # After 30 steps the fit is rough, but it follows the photograph, not a white sheet.
    assert abs(float(decoded.mean()) - float(gray.mean())) < 40 and decoded.mean() < 200


def test_16bit_samples_round_x_over_257(tmp_path):
    """Gray, RGB and RGBA 16-bit PNGs: every sample x becomes round(x / 257), not its high byte."""
    rng = np.random.default_rng(0)
    for channels in (1, 3, 4):
        samples = rng.integers(0, 65536, (9, 11, channels)).astype(np.uint16)
        if channels == 4:
            samples[:, :, 3] = 65535  # opaque: alpha carries nothing and is dropped
        path = write_png16(tmp_path / f"s{channels}.png", samples[:, :, 0] if channels == 1 else samples)
        expected = np.rint(samples[:, :, :min(channels, 3)] / 257.0).astype(np.uint8)
        assert np.array_equal(load_image(path), expected), channels
    assert (sixteen_to_eight(np.arange(65536)) == np.rint(np.arange(65536) / 257.0)).all()


def test_exif_orientation_is_applied(tmp_path):
    """A phone photo stored sideways with Orientation 6 (rotate 90 clockwise to view) is read upright."""
    stored = photo_crop("astronaut", 24, 32)
    picture = Image.fromarray(stored)
    exif = picture.getexif()
    exif[0x0112] = 6
    path = tmp_path / "phone.png"
    picture.save(path, exif=exif)
    loaded = load_image(path)
    assert loaded.shape == (32, 24, 3)
    assert np.array_equal(loaded, np.rot90(stored, k=-1))


def test_alpha_is_composited_onto_white_with_a_warning(tmp_path):
    rgb = photo_crop("chelsea", 20, 30)
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    alpha[:, :10] = 0
    alpha[:, 10:20] = 128
    path = tmp_path / "cut_out.png"
    Image.fromarray(np.dstack([rgb, alpha])).save(path)
    with pytest.warns(UserWarning, match="transparent.*composited onto white"):
        loaded = load_image(path)
    assert (loaded[:, :10] == 255).all()
    half = rgb[:, 10:20].astype(np.float64) * 128 / 255 + 255 * 127 / 255
    assert np.abs(loaded[:, 10:20].astype(np.float64) - half).max() <= 0.5
    assert np.array_equal(loaded[:, 20:], rgb[:, 20:])
    # Gray with alpha the same way; an opaque alpha channel is dropped without a word.
    Image.fromarray(np.dstack([rgb[:, :, 0], alpha])).save(tmp_path / "la.png")
    with pytest.warns(UserWarning):
        assert load_image(tmp_path / "la.png").shape == (20, 30, 1)
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])).save(tmp_path / "opaque.png")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(load_image(tmp_path / "opaque.png"), rgb)


def test_palette_cmyk_and_one_bit_images(tmp_path):
    rgb = photo_crop("astronaut", 20, 30)
    palette = Image.fromarray(rgb).quantize(64)
    palette.save(tmp_path / "p.png")
    assert np.array_equal(load_image(tmp_path / "p.png"), np.asarray(palette.convert("RGB")))
    transparent = palette.copy()
    transparent.info["transparency"] = 0
    transparent.save(tmp_path / "pt.png", transparency=0)
    with pytest.warns(UserWarning, match="composited"):
        assert load_image(tmp_path / "pt.png").shape == (20, 30, 3)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    cmyk = load_image(tmp_path / "c.jpg")
    assert cmyk.shape == (20, 30, 3) and np.abs(cmyk.astype(int) - rgb).mean() < 8
    Image.fromarray(rgb).convert("1").save(tmp_path / "bw.png")
    assert set(np.unique(load_image(tmp_path / "bw.png"))) <= {0, 255}


def test_unsupported_samples_are_one_line_errors(tmp_path, capsys):
    Image.fromarray(np.zeros((8, 8), np.float32)).save(tmp_path / "f.tiff")
    assert encode_main([str(tmp_path / "f.tiff"), str(tmp_path / "f.inr"), *QUICK]) == 2
    assert "floating-point samples" in error_line(capsys)


def test_odd_images_fit_through_overfit_inr(tmp_path, capsys):
    """overfitINR.py reads a folder of them by the same rules (one loading function)."""
    folder = tmp_path / "data" / "ODD"
    folder.mkdir(parents=True)
    Image.fromarray(camera_crop().astype(np.uint16) * 257).save(folder / "gray16.png")
    picture = Image.fromarray(photo_crop("astronaut", 16, 24))
    exif = picture.getexif()
    exif[0x0112] = 6
    picture.save(folder / "rotated.jpg", exif=exif, quality=95)
    argv = ["--data_root", str(tmp_path / "data"), "--dataset=ODD", f"--exp_root={tmp_path / 'exp'}",
            "--epochs=5", "--hidden_dims=8", "--hidden_layers=1", "--device=cpu", "--batch_images=1"]
    assert overfit_main(argv) == 0
    exp = next((tmp_path / "exp").iterdir())
    assert np.asarray(Image.open(exp / "rotated" / "reconstruction.png")).shape == (24, 16, 3)
    assert json.loads((exp / "gray16" / "result.json").read_text())["psnr"] < 60  # fitted a real picture


# -- 2. bounded decoding ------------------------------------------------------------------------------


@pytest.mark.parametrize("height, width", [(4096, 65535), (256, 65535)])
def test_crafted_oversized_files_are_refused_before_any_work(small_inr, tmp_path, capsys, height, width):
    """The issue's 4.6 KB bombs (made here from a real small file): refused from the header, with a
    line naming the flag; nothing rendered (b577759 rendered for 45 s and more)."""
    bomb = tmp_path / "bomb.inr"
    bomb.write_bytes(with_image_size(small_inr.read_bytes(), height, width))
    assert container.read_inr(bomb.read_bytes(), limits=None)[0].height == height  # a valid file
    assert decode_main([str(bomb), str(tmp_path / "out.png")]) == 2
    line = error_line(capsys)
    assert f"{width}x{height}" in line and "--max_pixels" in line
    assert not (tmp_path / "out.png").exists()
    with pytest.raises(container.DecodeLimitError):
        decode_image(bomb.read_bytes())


def test_max_pixels_and_max_parameters_are_the_users_to_set(small_inr, shape_inr, tmp_path, capsys):
    out = tmp_path / "out.png"
    assert decode_main([str(small_inr), str(out), "--max_pixels=767"]) == 2  # 32 x 24 = 768
    assert "768 pixels" in error_line(capsys)
    assert decode_main([str(small_inr), str(out), "--max_pixels=768"]) == 0 and out.is_file()
    assert decode_main([str(small_inr), str(out), "--max_parameters=10"]) == 2
    assert "--max_parameters" in error_line(capsys)
    assert decode_shape_main([str(shape_inr), str(tmp_path / "s.obj"), "--max_parameters=10"]) == 2
    assert "--max_parameters" in error_line(capsys)


def test_chunked_rendering_equals_one_pass_and_threads_do_not_matter(small_inr, tmp_path):
    """The same network rendered on 300x300 pixels (more than one render chunk) gives the pixels of
    the whole grid at once, with 1 and with 2 threads, and in another process."""
    from inrcompress.codec.compress import decode_network, render
    from inrcompress.signals.image import values_to_uint8

    data = with_image_size(small_inr.read_bytes(), 300, 300)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        _, one = decode_image(data)
        torch.set_num_threads(2)
        _, two = decode_image(data)
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(one, two)
    header, model = decode_network(data)
    whole = values_to_uint8(render(model, (300, 300)), 300, 300)
    assert np.array_equal(one, whole)
    (tmp_path / "big.inr").write_bytes(data)
    done = subprocess.run([sys.executable, str(REPO / "image_compression" / "decode.py"), str(tmp_path / "big.inr"),
                           str(tmp_path / "big.png")], capture_output=True, text=True, timeout=300,
                          env={"OMP_NUM_THREADS": "2", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "big.png")), one)


# -- 3. fail early ------------------------------------------------------------------------------------


@pytest.fixture
def good_png(tmp_path) -> Path:
    path = tmp_path / "good.png"
    Image.fromarray(photo_crop("astronaut", 16, 24)).save(path)
    return path


@pytest.mark.parametrize("target, message", [
    ("/sys/out.inr", "cannot write /sys/out.inr: /sys is not writable"),
    ("{tmp}", "is a directory"),
    ("{tmp}/out.png", "writes .inr files"),
    ("/etc/hostname/out.inr", "is not a directory"),
])
def test_encode_refuses_an_output_it_cannot_write_before_the_fit(good_png, tmp_path, capsys, no_fit, target,
                                                                message):
    assert encode_main([str(good_png), target.format(tmp=tmp_path), *QUICK]) == 2
    assert message in error_line(capsys)


def test_bitwidth_1_is_refused_when_parsed(good_png, tmp_path, capsys, no_fit):
    assert encode_main([str(good_png), str(tmp_path / "o.inr"), *QUICK, "--bitwidth=1"]) == 2
    assert "--bitwidth" in error_line(capsys)
    assert quantize_main([f"--exp_root={tmp_path}", "--bitwidth=1"]) == 2
    assert "--bitwidth" in error_line(capsys)


@pytest.mark.parametrize("target, message", [
    ("/sys/o.png", "/sys is not writable"),
    ("{tmp}", "is a directory"),
    ("{tmp}/out.jpg", "writes .png files"),
])
def test_decode_refuses_an_output_it_cannot_write(small_inr, tmp_path, capsys, target, message):
    assert decode_main([str(small_inr), target.format(tmp=tmp_path)]) == 2
    assert message in error_line(capsys)
    assert not (tmp_path / "out.jpg").exists()


def test_experiment_root_that_cannot_be_written_is_refused_when_parsed(tiny_dataset, capsys, monkeypatch):
    monkeypatch.setattr("inrcompress.experiments.images.fit_image", None)  # any fit would crash loudly
    assert overfit_main([f"--data_root={tiny_dataset}", "--dataset=TINY", "--exp_root=/sys/exp", "--epochs=5",
                         "--device=cpu"]) == 2
    assert "cannot write under /sys/exp: /sys is not writable" in error_line(capsys)


def test_decode_shape_refuses_a_bad_mesh_or_picture_path(shape_inr, tmp_path, capsys):
    shape = shape_inr
    assert decode_shape_main([str(shape), str(tmp_path / "m.stl")]) == 2
    assert ".obj or .ply or .off" in error_line(capsys)
    assert decode_shape_main([str(shape), str(tmp_path / "m.obj"), "--png=/sys/m.png"]) == 2
    assert "/sys is not writable" in error_line(capsys)


def test_normalize_shapes_checks_every_output_before_writing_any(tmp_path, capsys):
    """b's output is a folder: refused with one line before a.ply (first in order) is normalized."""
    import trimesh

    for name in ("a", "b"):
        trimesh.creation.icosphere(subdivisions=1).export(tmp_path / f"{name}.ply")
    (tmp_path / "b_normalized.obj").mkdir()
    assert normalize_main([f"--shape_glob={tmp_path / '*.ply'}"]) == 2
    assert "b_normalized.obj is a directory" in error_line(capsys)
    assert not (tmp_path / "a_normalized.obj").exists()
    (tmp_path / "b_normalized.obj").rmdir()
    assert normalize_main([f"--shape_glob={tmp_path / '*.ply'}"]) == 0
    assert (tmp_path / "a_normalized.obj").is_file() and (tmp_path / "b_normalized.obj").is_file()


def test_shape_decode_memory_stays_flat_in_chunks():
    """sdf_grid evaluates the grid in chunks (memory flat at any --mc_resolution) with the values of
    one pass over the whole grid (chunks align with predict's rows)."""
    from inrcompress.config import ModelConfig
    from inrcompress.nn import INR, predict
    from inrcompress.signals.grid import coordinate_grid
    from inrcompress.signals.shape_eval import SDF_CHUNK_POINTS, sdf_grid

    torch.manual_seed(0)
    model = INR(ModelConfig(in_features=3, out_features=1, hidden_dims=8, hidden_layers=1))
    resolution = 70  # 343,000 points: more than one chunk, a short last one
    assert resolution ** 3 > SDF_CHUNK_POINTS
    with torch.no_grad():
        whole = predict(model, coordinate_grid((resolution,) * 3))[:, 0].numpy()
    assert np.array_equal(sdf_grid(model, resolution).ravel(), whole)


def _tool(script: str, *args: str) -> list[str]:
    return [sys.executable, str(REPO / script), *args]


def test_errors_and_broken_pipes_end_without_a_traceback(small_inr, tmp_path):
    """Run as a user does (a new process): the bomb is one line and exit 2; --help into a pipe whose
    reader is gone (`inr-overfit --help | head -1`) ends quietly."""
    bomb = tmp_path / "bomb.inr"
    bomb.write_bytes(with_image_size(small_inr.read_bytes(), 4096, 65535))
    done = subprocess.run(_tool("image_compression/decode.py", str(bomb), str(tmp_path / "o.png")),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    child = subprocess.Popen(_tool("image_compression/overfitINR.py", "--help"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    child.stdout.close()  # the reader leaves before the tool writes a byte
    _, err = child.communicate(timeout=300)
    assert err.decode() == "" and child.returncode == 141


def test_a_crafted_file_is_refused_before_torch_loads(small_inr, shape_inr, tmp_path):
    """Importing torch takes about a second: the decoders check the header without it, so a bomb is
    refused in milliseconds (a new process, as a user runs it; the check itself is asserted, not timed)."""
    bomb = tmp_path / "bomb.inr"
    bomb.write_bytes(with_image_size(small_inr.read_bytes(), 4096, 65535))
    probe = (
        "import sys\n"
        "from inrcompress.tools.decode import main as decode\n"
        "from inrcompress.tools.decode_shape import main as decode_shape\n"
        f"codes = decode([{str(bomb)!r}, {str(tmp_path / 'o.png')!r}]),"
        f" decode_shape([{str(shape_inr)!r}, {str(tmp_path / 's.obj')!r}, '--max_parameters=10'])\n"
        "print(codes, 'torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert done.stdout.split("\n")[-2] == "(2, 2) False", done.stdout + done.stderr
    assert done.stderr.count("error: ") == 2


# -- 4. honest messages -------------------------------------------------------------------------------


def test_tiny_images_get_null_ssim_with_a_note_never_nan(tmp_path, capsys):
    picture = photo_crop("astronaut", 2, 2)
    metrics = image_metrics(picture / 255.0, picture / 255.0)
    assert metrics["ssim"] is None and metrics["ms_ssim"] is None and "2x2" in metrics["note"]
    assert "note" not in image_metrics(photo_crop() / 255.0, photo_crop() / 255.0)
    folder = tmp_path / "data" / "TWO"
    folder.mkdir(parents=True)
    Image.fromarray(picture).save(folder / "two.png")
    assert overfit_main([f"--data_root={tmp_path / 'data'}", "--dataset=TWO", f"--exp_root={tmp_path / 'exp'}",
                         "--epochs=5", "--hidden_dims=8", "--hidden_layers=1", "--device=cpu"]) == 0
    out = capsys.readouterr().out
    assert "nan" not in out.lower() and "SSIM n/a" in out
    result = json.loads(next((tmp_path / "exp").glob("*/two/result.json")).read_text())
    assert result["ssim"] is None and result["ms_ssim"] is None and result["note"]


def test_encode_reports_a_jpeg_no_larger_than_the_file_or_that_none_fits(good_png, tmp_path, capsys):
    image = load_image(good_png)
    assert jpeg_at_size(image, 10)["fits"] is False
    sizes = {q: jpeg_at_size(image, 10**6)["bytes"] for q in (95,)}
    fitting = jpeg_at_size(image, sizes[95] - 1)
    assert fitting["fits"] and fitting["bytes"] <= sizes[95] - 1
    target = tmp_path / "o.inr"
    assert encode_main([str(good_png), str(target), *QUICK]) == 0
    out = capsys.readouterr()
    ours = target.stat().st_size
    line = next(line for line in out.out.splitlines() if line.startswith("JPEG"))
    if "none fits" in line:
        assert f"none fits in {ours} bytes" in line
    else:
        assert int(re.search(r"(\d+) bytes", line).group(1)) <= ours


def test_the_qat_bar_counts_its_steps(good_png, tmp_path, capsys):
    """--retrain_epochs 5 is 5 steps (b577759's bar ran to 6: it counted the last evaluation too)."""
    assert encode_main([str(good_png), str(tmp_path / "o.inr"), *QUICK]) == 0
    counts = re.findall(r"QAT:[^|]*\|[^|]*\| *(\d+)/(\d+)", capsys.readouterr().err)
    assert counts and {total for _, total in counts} == {"5"} and ("5", "5") in counts


def test_resume_says_from_which_epoch(tiny_dataset, tmp_path, capsys):
    args = [f"--data_root={tiny_dataset}", "--dataset=TINY", f"--exp_root={tmp_path / 'exp'}", "--epochs=30",
            "--hidden_dims=8", "--hidden_layers=1", "--epochs_til_ckpt=10", "--device=cpu", "--batch_images=1"]

    def interrupt(step):
        if step == 15:
            raise KeyboardInterrupt

    assert overfit_main(args, step_hook=interrupt) == 130
    capsys.readouterr()
    assert overfit_main(args) == 0
    assert "astronaut: resuming at epoch 10 of 30" in capsys.readouterr().out


def test_batched_fits_report_the_step_rate_not_times_the_images(tmp_path, capsys):
    import time

    folder = tmp_path / "data" / "PAIR"
    folder.mkdir(parents=True)
    Image.fromarray(photo_crop("astronaut", 16, 24)).save(folder / "a.png")
    Image.fromarray(photo_crop("chelsea", 16, 24)).save(folder / "b.png")
    started = time.perf_counter()
    assert overfit_main([f"--data_root={tmp_path / 'data'}", "--dataset=PAIR", f"--exp_root={tmp_path / 'exp'}",
                         "--epochs=40", "--hidden_dims=8", "--hidden_layers=1", "--device=cpu",
                         "--batch_images=2"]) == 0
    wall = time.perf_counter() - started
    out = capsys.readouterr().out
    rates = re.findall(r"([\d.]+) steps/s, 2 images at once \(([\d.]+) image-steps/s\)", out)
    assert len(rates) == 2
    for steps, image_steps in rates:
        assert float(image_steps) == pytest.approx(2 * float(steps), abs=0.11)
    results = [json.loads(p.read_text()) for p in sorted((tmp_path / "exp").glob("*/?/result.json"))]
    assert results[0]["fit_seconds"] == results[1]["fit_seconds"]
    # Each image's fit took the pair's whole fit time (b577759 gave each half of it, doubling the rate).
    assert results[0]["fit_seconds"] > wall / 2
    assert results[0]["steps_per_second"] * results[0]["fit_seconds"] == pytest.approx(40)
