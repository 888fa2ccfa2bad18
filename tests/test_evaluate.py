"""evaluate.py: curves from our results, classical codecs, Bjontegaard metrics, plots."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from inrcompress.evaluate import rd as ev
from inrcompress.errors import InrError
from inrcompress.tools.evaluate import main
from PIL import Image

ANCHORS = Path(__file__).resolve().parents[2] / "shared" / "anchors"


def one_error_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    return lines[0]


# ------------------------------------------------------------------------------------------------
# (c) Bjontegaard, against cases computed by hand

BPP = [0.1, 0.2, 0.4, 0.8, 1.6]
PSNR = [26.0, 28.5, 31.0, 33.0, 34.6]


@pytest.mark.parametrize("factor", [0.8, 0.5, 1.25, 2.0])
def test_bd_rate_of_a_curve_scaled_in_rate_is_the_factor(factor):
    # log10(rate) of the test curve is the anchor's + log10(factor) at every PSNR: the fitted
    # polynomials differ by that constant, so BD-rate = factor - 1 exactly.
    rate = ev.bd_rate(BPP, PSNR, [b * factor for b in BPP], PSNR)
    assert rate == pytest.approx((factor - 1) * 100, abs=1e-9)
    assert ev.bd_rate([b * factor for b in BPP], PSNR, BPP, PSNR) == pytest.approx((1 / factor - 1) * 100, abs=1e-9)


def test_bd_psnr_of_a_curve_shifted_in_psnr_is_the_shift():
    assert ev.bd_psnr(BPP, PSNR, BPP, [p + 0.5 for p in PSNR]) == pytest.approx(0.5, abs=1e-9)
    assert ev.bd_psnr(BPP, PSNR, BPP, [p - 1.25 for p in PSNR]) == pytest.approx(-1.25, abs=1e-9)


def test_bd_rate_integrates_over_the_common_range_only():
    # anchor: log10 R = (P - 30) / 10 for P in 25..40; test: log10 R = (P - 30) / 20 for P in 30..45.
    # Common range 30..40: mean difference of log10 R = mean of -(P - 30) / 20 = -0.25.
    pa = np.linspace(25, 40, 7)
    pt = np.linspace(30, 45, 7)
    rate = ev.bd_rate(10 ** ((pa - 30) / 10), pa, 10 ** ((pt - 30) / 20), pt)
    assert rate == pytest.approx((10 ** -0.25 - 1) * 100, abs=1e-9)
    # symmetric range 25..35: the two lines cross in the middle, BD-rate 0
    pt = np.linspace(25, 35, 5)
    assert ev.bd_rate(10 ** ((pa - 30) / 10), pa, 10 ** ((pt - 30) / 20), pt) == pytest.approx(0, abs=1e-9)


def test_bd_with_few_points_and_without_overlap():
    # 3 points: a quadratic fit; still exact for a rate factor
    assert ev.bd_rate(BPP[:3], PSNR[:3], [b * 0.9 for b in BPP[:3]], PSNR[:3]) == pytest.approx(-10, abs=1e-9)
    with pytest.raises(InrError, match="do not overlap"):
        ev.bd_rate(BPP, PSNR, BPP, [p + 20 for p in PSNR])
    with pytest.raises(InrError, match="at least 2"):
        ev.bd_rate(BPP, PSNR, [0.5], [30.0])


def test_bd_of_published_anchors_is_plausible():
    jpeg, j2k = ANCHORS / "compressai_jpeg_kodak.json", ANCHORS / "compressai_jpeg2000_kodak.json"
    if not jpeg.is_file():
        pytest.skip("../shared/anchors not available")
    row = ev.bd_compare(ev.load_curve(jpeg), ev.load_curve(j2k))
    assert -50 < row["bd_rate"] < -20 and row["bd_quality"] > 1  # JPEG2000 beats JPEG clearly


# ------------------------------------------------------------------------------------------------
# Curves and (a) aggregation


def write_results(folder: Path, tag: str, bpp: float, psnr: float, images=("a", "b")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    per_image = {name: {"bpp": bpp, "psnr": psnr, "ms_ssim": 0.95} for name in images}
    data = {"name": folder.name, "description": "test",
            "results": {"bpp": bpp, "bpp_payload": bpp * 0.9, "psnr-rgb": psnr, "ms-ssim-rgb": 0.95, "ssim": 0.9,
                        "encoding_time": 1.0, "decoding_time": 0.01},
            "per_image": per_image}
    path = folder / f"results_{tag}.json"
    path.write_text(json.dumps(data))
    return path


def test_load_curve_reads_every_layout(tmp_path):
    (tmp_path / "anchor.json").write_text(json.dumps({"name": "A", "bpp": [0.5, 0.1], "psnr": [30, 25],
                                                      "ms_ssim": [0.97, 0.9]}))
    (tmp_path / "cai.json").write_text(json.dumps({"name": "B", "results": {"bpp": [0.2, 0.4], "psnr-rgb": [27, 29],
                                                                          "ms-ssim-rgb": [0.9, 0.95]}}))
    (tmp_path / "paper.json").write_text(json.dumps({"name": "C", "results": {"bpp": [0.1, 0.3], "psnr": [25, 28]}}))
    a = ev.load_curve(tmp_path / "anchor.json")
    assert a.bpp == [0.1, 0.5] and a.psnr == [25, 30] and a.ms_ssim == [0.9, 0.97]  # sorted by bpp
    assert ev.load_curve(tmp_path / "cai.json").psnr == [27, 29]
    assert ev.load_curve(tmp_path / "paper.json").ms_ssim is None
    single = ev.load_curve(write_results(tmp_path / "exp1", "arithmetic_bw8", 0.3, 28.0))
    assert single.bpp == [0.3] and single.psnr == [28.0]
    (tmp_path / "bad.json").write_text(json.dumps({"name": "x", "bpp": [0.1], "psnr": [1, 2]}))
    with pytest.raises(InrError, match="different lengths"):
        ev.load_curve(tmp_path / "bad.json")


def test_every_shared_anchor_loads():
    if not ANCHORS.is_dir():
        pytest.skip("../shared/anchors not available")
    files = ev.expand_paths([str(ANCHORS)])
    assert len(files) > 50
    for path in files:
        curve = ev.load_curve(path)
        assert len(curve) >= 2 and curve.bpp == sorted(curve.bpp)


def test_aggregate_sorts_by_bpp_and_checks_images(tmp_path, capsys):
    exp = tmp_path / "exp"
    write_results(exp / "KODAK_h64", "arithmetic_bw8_x", 0.9, 32.0)
    write_results(exp / "KODAK_h32", "arithmetic_bw8_x", 0.2, 27.0)
    write_results(exp / "KODAK_h48", "arithmetic_bw8_x", 0.4, 29.5)
    write_results(exp / "KODAK_h48", "arithmetic_bw7_x", 0.35, 29.0)  # another setting: not matched
    out = tmp_path / "curve.json"
    assert main(["aggregate", "--out", str(out), str(exp / "*" / "results_arithmetic_bw8_*.json")]) == 0
    curve = json.loads(out.read_text())
    assert curve["results"]["bpp"] == [0.2, 0.4, 0.9]
    assert curve["results"]["psnr-rgb"] == [27.0, 29.5, 32.0]
    assert curve["experiments"] == ["KODAK_h32", "KODAK_h48", "KODAK_h64"]
    assert curve["images"] == ["a", "b"]
    assert ev.load_curve(out).bpp == [0.2, 0.4, 0.9]
    write_results(exp / "KODAK_h96", "arithmetic_bw8_x", 1.5, 34.0, images=("a",))
    capsys.readouterr()
    assert main(["aggregate", "--out", str(out), str(exp / "*" / "results_arithmetic_bw8_*.json")]) == 2
    assert "different images" in one_error_line(capsys.readouterr().err)
    assert main(["aggregate", "--out", str(out), "--allow_different_images",
                 "--results", str(exp / "*" / "results_arithmetic_bw8_*.json")]) == 0
    assert len(json.loads(out.read_text())["results"]["bpp"]) == 4
    assert main(["aggregate", "--out", str(out), str(exp / "*" / "results_arithmetic_*.json")]) == 2  # bw7 + bw8
    assert "different settings" in one_error_line(capsys.readouterr().err)


def test_results_files_group_into_one_curve_per_setting(tmp_path):
    files = [write_results(tmp_path / f"E_h{h}", tag, bpp, p) for h, tag, bpp, p in
             [(32, "arithmetic_bw8", 0.2, 27), (64, "arithmetic_bw8", 0.6, 30), (32, "arithmetic_bw7", 0.18, 26.5),
              (64, "arithmetic_bw7", 0.5, 29.5)]]
    curves = ev.curves_from_files(files)
    assert sorted(c.name.split(" (")[0] for c in curves) == ["ours 7 bit, nearest, arithmetic", "ours 8 bit, nearest, arithmetic"]
    assert all(len(c) == 2 for c in curves)


# ------------------------------------------------------------------------------------------------
# (b) classical codecs


@pytest.fixture
def images():
    from .conftest import photo_crop

    return [("astronaut", photo_crop("astronaut", 40, 56)), ("coffee", photo_crop("coffee", 40, 56))]


def test_jpeg_is_420_and_bpp_comes_from_the_bytes(images):
    _, image = images[0]
    data = ev.encode_image("jpeg", image, 75)
    from PIL import JpegImagePlugin

    with Image.open(io.BytesIO(data)) as img:
        assert JpegImagePlugin.get_sampling(img) == 2  # 4:2:0
    curve = ev.codec_sweep("jpeg", images, [10, 50, 90])
    r = curve["results"]
    assert r["quality"] == [10, 50, 90]
    for i, q in enumerate([10, 50, 90]):
        sizes = [len(ev.encode_image("jpeg", im, q)) for _, im in images]
        assert r["bpp"][i] == pytest.approx(np.mean([8 * s / (40 * 56) for s in sizes]))
    assert r["psnr-rgb"] == sorted(r["psnr-rgb"]) and r["bpp"] == sorted(r["bpp"])
    # per-image average, and the PSNR of the mean MSE beside it (never above it: Jensen)
    assert r["psnr-rgb"][1] == pytest.approx(np.mean([curve["per_image"][n]["psnr"][1] for n, _ in images]))
    assert all(a <= b + 1e-9 for a, b in zip(r["psnr-of-mean-mse"], r["psnr-rgb"]))


def test_jpeg2000_is_irreversible_with_colour_transform(images):
    _, image = images[0]
    data = ev.encode_image("jpeg2000", image, 1.0)
    assert data[:4] == b"\xff\x4f\xff\x51"  # a raw J2K codestream (SOC, SIZ): no JP2 boxes counted
    cod = data.index(b"\xff\x52")  # COD marker: Lcod, Scod, progression, layers(2), MCT, levels, cbw, cbh, style, transform
    assert data[cod + 8] == 1  # multiple component transform on
    assert data[cod + 13] == 0  # 9/7 irreversible wavelet
    assert 8 * len(data) / (40 * 56) <= 1.0 * 1.05  # the rate target is met


@pytest.mark.parametrize("codec", ["jpeg", "jpeg2000", "webp", "avif"])
def test_every_codec_sweeps_and_decodes(codec, images):
    if not ev.codec_available(codec):
        pytest.skip(f"Pillow without {codec}")
    settings = [0.25, 1.0, 3.0] if codec == "jpeg2000" else [10, 50, 90]
    curve = ev.codec_sweep(codec, images, settings, dataset="TINY")
    r = curve["results"]
    assert len(r["bpp"]) == 3 and r["bpp"] == sorted(r["bpp"])
    assert r["psnr-rgb"][-1] > r["psnr-rgb"][0] > 10  # tiny images: headers dominate at low rates
    assert all(0 < m <= 1 for m in r["ms-ssim-rgb"])
    assert "small images" in curve["description"]  # 40 px: MS-SSIM with fewer scales, stated
    assert set(curve["per_image"]) == {"astronaut", "coffee"}


def test_codecs_tool_writes_one_curve_per_codec(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "codecs"
    code = main(["codecs", "--data_root", str(tiny_dataset), "--dataset", "TINY", "--out_dir", str(out),
                 "--codecs", "jpeg", "webp", "--jpeg_qualities", "10", "40", "80", "--webp_qualities", "10", "40",
                 "80", "--quiet"])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["jpeg_TINY.json", "webp_TINY.json"]
    jpeg = ev.load_curve(out / "jpeg_TINY.json")
    assert len(jpeg) == 3 and jpeg.ms_ssim is not None
    # (c) through the tool
    capsys.readouterr()
    assert main(["bd", "--anchor", str(out / "jpeg_TINY.json"), "--test", str(out / "webp_TINY.json"),
                 "--out", str(tmp_path / "bd.json")]) == 0
    assert "BD-rate" in capsys.readouterr().out
    row = json.loads((tmp_path / "bd.json").read_text())["rows"][0]
    assert row["anchor"] == "JPEG" and row["test"] == "WebP" and row["bd_rate"] is not None
    # (d) the plot, with a results file of ours and a folder of codec curves
    ours = write_results(tmp_path / "exp" / "TINY_h16", "arithmetic_bw8", 1.0, 30.0, images=("astronaut", "chelsea"))
    write_results(tmp_path / "exp" / "TINY_h32", "arithmetic_bw8", 2.0, 33.0, images=("astronaut", "chelsea"))
    anchor = tmp_path / "anchor.json"
    anchor.write_text(json.dumps({"name": "published", "bpp": [0.5, 1, 2], "psnr": [28, 31, 34]}))
    png = tmp_path / "rd.png"
    assert main(["plot", str(ours.parent.parent / "*" / "results_*.json"), "--codecs", str(out),
                 "--anchors", str(anchor), "--out", str(png), "--metric", "both", "--title", "t"]) == 0
    with Image.open(png) as img:
        assert img.format == "PNG" and img.width > 1000


def test_tool_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "a.json").write_text(json.dumps({"name": "a", "bpp": [0.1, 0.2, 0.3], "psnr": [20, 21, 22]}))
    (tmp_path / "b.json").write_text(json.dumps({"name": "b", "bpp": [0.1, 0.2, 0.3], "psnr": [40, 41, 42]}))
    assert main(["bd", "--anchor", str(tmp_path / "a.json"), "--test", str(tmp_path / "b.json")]) == 2
    assert "no BD-rate" in one_error_line(capsys.readouterr().err)
    assert main(["plot", "--out", str(tmp_path / "x.png")]) == 2
    one_error_line(capsys.readouterr().err)
    assert main(["codecs", "--data_root", str(tmp_path), "--dataset", "NOPE", "--out_dir", str(tmp_path)]) == 2
    assert "not found" in one_error_line(capsys.readouterr().err)
    assert main(["aggregate", "--out", str(tmp_path / "c.json"), str(tmp_path / "none*.json")]) == 2
    one_error_line(capsys.readouterr().err)
    assert main(["nonsense"]) == 2


def test_ms_ssim_db_metric():
    curve = ev.Curve("x", [0.1, 0.2], [25, 27], [0.9, 0.99])
    assert curve.metric("ms-ssim-db") == pytest.approx([10.0, 20.0])
    assert math.isclose(ev.bd_compare(curve, curve, "ms-ssim-db")["bd_rate"], 0, abs_tol=1e-9)
