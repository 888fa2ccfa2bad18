"""evaluate.py: curves from our results, classical codecs (the registry), Bjontegaard metrics, plots."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from inrcompress.errors import InrError
from inrcompress.evaluate import bd, codecs, curves
from inrcompress.tools.evaluate import main
from PIL import Image

from .conftest import photo_crop

ANCHORS = Path(__file__).resolve().parents[2] / "shared" / "anchors"


def encode(name: str, image: np.ndarray, setting: float, **options) -> bytes:
    codec = codecs.CODECS[name]
    return codec.encode(image, setting, codec.resolve_options(options))


def one_error_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), text
    return lines[0]


# ------------------------------------------------------------------------------------------------
# (c) Bjontegaard, against cases computed by hand

BPP = [0.1, 0.2, 0.4, 0.8, 1.6]
PSNR = [26.0, 28.5, 31.0, 33.0, 34.6]


@pytest.mark.parametrize("interpolation", bd.INTERPOLATIONS)
@pytest.mark.parametrize("factor", [0.8, 0.5, 1.25, 2.0])
def test_bd_rate_of_a_curve_scaled_in_rate_is_the_factor(factor, interpolation):
    # log10(rate) of the test curve is the anchor's + log10(factor) at every PSNR: the interpolants
    # differ by that constant, so BD-rate = factor - 1 exactly.
    rate = bd.bd_rate(BPP, PSNR, [b * factor for b in BPP], PSNR, interpolation)
    assert rate == pytest.approx((factor - 1) * 100, abs=1e-9)
    assert bd.bd_rate([b * factor for b in BPP], PSNR, BPP, PSNR, interpolation) == \
        pytest.approx((1 / factor - 1) * 100, abs=1e-9)


@pytest.mark.parametrize("interpolation", bd.INTERPOLATIONS)
def test_bd_psnr_of_a_curve_shifted_in_psnr_is_the_shift(interpolation):
    assert bd.bd_psnr(BPP, PSNR, BPP, [p + 0.5 for p in PSNR], interpolation) == pytest.approx(0.5, abs=1e-9)
    assert bd.bd_psnr(BPP, PSNR, BPP, [p - 1.25 for p in PSNR], interpolation) == pytest.approx(-1.25, abs=1e-9)


def test_bd_equals_the_bjontegaard_package_on_the_stored_curves():
    """Ours (cubic: every table of this project; pchip) against the `bjontegaard` package on real
    published curves: BD-rate and BD-PSNR of the codecs and INR methods against BPG 4:4:4 and VTM."""
    package = pytest.importorskip("bjontegaard")
    if not ANCHORS.is_dir():
        pytest.skip("../shared/anchors not available")
    names = ["compressai_jpeg_kodak", "compressai_jpeg2000_kodak", "compressai_webp_kodak", "compressai_av1_kodak",
             "strumpler2022_basic_8bit_kodak", "coin_dupont2021_kodak", "coolchic_v5_0_1_kodak"]
    compared = 0
    for anchor_name in ("compressai_bpg_444_x265_ycbcr_kodak", "compressai_vtm_kodak"):
        anchor = curves.load_curve(ANCHORS / f"{anchor_name}.json")
        for name in names:
            test = curves.load_curve(ANCHORS / f"{name}.json")
            for method in bd.INTERPOLATIONS:
                theirs_rate = package.bd_rate(anchor.bpp, anchor.psnr, test.bpp, test.psnr, method=method,
                                              require_matching_points=False, min_overlap=0)
                theirs_psnr = package.bd_psnr(anchor.bpp, anchor.psnr, test.bpp, test.psnr, method=method,
                                              require_matching_points=False, min_overlap=0)
                assert bd.bd_rate(anchor.bpp, anchor.psnr, test.bpp, test.psnr, method) == \
                    pytest.approx(theirs_rate, rel=1e-9, abs=1e-9)
                assert bd.bd_psnr(anchor.bpp, anchor.psnr, test.bpp, test.psnr, method) == \
                    pytest.approx(theirs_psnr, rel=1e-9, abs=1e-9)
                compared += 1
    assert compared == 2 * len(names) * 2


def test_pchip_refuses_two_points_at_the_same_quality_where_cubic_fits_through_them():
    # a codec whose two settings give the same PSNR: no interpolant through both, a fit is fine
    with pytest.raises(InrError, match="pchip needs a strictly monotonic"):
        bd.bd_rate(BPP, PSNR, [0.1, 0.2, 0.3, 0.4], [26.0, 28.0, 28.0, 30.0], "pchip")
    assert math.isfinite(bd.bd_rate(BPP, PSNR, [0.1, 0.2, 0.3, 0.4], [26.0, 28.0, 28.0, 30.0], "cubic"))


def test_bd_rate_integrates_over_the_common_range_only():
    # anchor: log10 R = (P - 30) / 10 for P in 25..40; test: log10 R = (P - 30) / 20 for P in 30..45.
    # Common range 30..40: mean difference of log10 R = mean of -(P - 30) / 20 = -0.25.
    pa = np.linspace(25, 40, 7)
    pt = np.linspace(30, 45, 7)
    rate = bd.bd_rate(10 ** ((pa - 30) / 10), pa, 10 ** ((pt - 30) / 20), pt)
    assert rate == pytest.approx((10 ** -0.25 - 1) * 100, abs=1e-9)
    # symmetric range 25..35: the two lines cross in the middle, BD-rate 0
    pt = np.linspace(25, 35, 5)
    assert bd.bd_rate(10 ** ((pa - 30) / 10), pa, 10 ** ((pt - 30) / 20), pt) == pytest.approx(0, abs=1e-9)


def test_bd_with_few_points_and_without_overlap():
    # 3 points: a quadratic fit; still exact for a rate factor
    assert bd.bd_rate(BPP[:3], PSNR[:3], [b * 0.9 for b in BPP[:3]], PSNR[:3]) == pytest.approx(-10, abs=1e-9)
    with pytest.raises(InrError, match="do not overlap"):
        bd.bd_rate(BPP, PSNR, BPP, [p + 20 for p in PSNR])
    with pytest.raises(InrError, match="at least 2"):
        bd.bd_rate(BPP, PSNR, [0.5], [30.0])


def test_bd_of_published_anchors_is_plausible():
    jpeg, j2k = ANCHORS / "compressai_jpeg_kodak.json", ANCHORS / "compressai_jpeg2000_kodak.json"
    if not jpeg.is_file():
        pytest.skip("../shared/anchors not available")
    row = bd.bd_compare(curves.load_curve(jpeg), curves.load_curve(j2k))
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
    a = curves.load_curve(tmp_path / "anchor.json")
    assert a.bpp == [0.1, 0.5] and a.psnr == [25, 30] and a.ms_ssim == [0.9, 0.97]  # sorted by bpp
    assert curves.load_curve(tmp_path / "cai.json").psnr == [27, 29]
    assert curves.load_curve(tmp_path / "paper.json").ms_ssim is None
    single = curves.load_curve(write_results(tmp_path / "exp1", "arithmetic_bw8", 0.3, 28.0))
    assert single.bpp == [0.3] and single.psnr == [28.0]
    (tmp_path / "bad.json").write_text(json.dumps({"name": "x", "bpp": [0.1], "psnr": [1, 2]}))
    with pytest.raises(InrError, match="different lengths"):
        curves.load_curve(tmp_path / "bad.json")


def test_every_shared_anchor_loads():
    if not ANCHORS.is_dir():
        pytest.skip("../shared/anchors not available")
    files = curves.expand_paths([str(ANCHORS)])
    assert len(files) > 50
    for path in files:
        curve = curves.load_curve(path)
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
    assert curves.load_curve(out).bpp == [0.2, 0.4, 0.9]
    write_results(exp / "KODAK_h96", "arithmetic_bw8_x", 1.5, 34.0, images=("a",))
    capsys.readouterr()
    assert main(["aggregate", "--out", str(out), str(exp / "*" / "results_arithmetic_bw8_*.json")]) == 2
    assert "different images" in one_error_line(capsys.readouterr().err)
    assert main(["aggregate", "--out", str(out), "--allow_different_images",
                 str(exp / "*" / "results_arithmetic_bw8_*.json")]) == 0
    assert len(json.loads(out.read_text())["results"]["bpp"]) == 4
    assert main(["aggregate", "--out", str(out), str(exp / "*" / "results_arithmetic_*.json")]) == 2  # bw7 + bw8
    assert "different settings" in one_error_line(capsys.readouterr().err)


def test_results_files_group_into_one_curve_per_setting(tmp_path):
    files = [write_results(tmp_path / f"E_h{h}", tag, bpp, p) for h, tag, bpp, p in
             [(32, "arithmetic_bw8", 0.2, 27), (64, "arithmetic_bw8", 0.6, 30), (32, "arithmetic_bw7", 0.18, 26.5),
              (64, "arithmetic_bw7", 0.5, 29.5)]]
    grouped = curves.curves_from_files(files)
    assert sorted(c.name.split(" (")[0] for c in grouped) == ["ours 7 bit, nearest, arithmetic", "ours 8 bit, nearest, arithmetic"]
    assert all(len(c) == 2 for c in grouped)


# ------------------------------------------------------------------------------------------------
# (b) classical codecs


@pytest.fixture
def images():
    from .conftest import photo_crop

    return [("astronaut", photo_crop("astronaut", 40, 56)), ("coffee", photo_crop("coffee", 40, 56))]


def test_jpeg_is_420_and_bpp_comes_from_the_bytes(images):
    _, image = images[0]
    data = encode("jpeg", image, 75)
    from PIL import JpegImagePlugin

    with Image.open(io.BytesIO(data)) as img:
        assert JpegImagePlugin.get_sampling(img) == 2  # 4:2:0
    curve = codecs.codec_sweep("jpeg", images, [10, 50, 90])
    r = curve["results"]
    assert r["quality"] == [10, 50, 90]
    for i, q in enumerate([10, 50, 90]):
        sizes = [len(encode("jpeg", im, q)) for _, im in images]
        assert r["bpp"][i] == pytest.approx(np.mean([8 * s / (40 * 56) for s in sizes]))
    assert r["psnr-rgb"] == sorted(r["psnr-rgb"]) and r["bpp"] == sorted(r["bpp"])
    # per-image average, and the PSNR of the mean MSE beside it (never above it: Jensen)
    assert r["psnr-rgb"][1] == pytest.approx(np.mean([curve["per_image"][n]["psnr"][1] for n, _ in images]))
    assert all(a <= b + 1e-9 for a, b in zip(r["psnr-of-mean-mse"], r["psnr-rgb"]))


def test_jpeg2000_is_irreversible_with_colour_transform(images):
    _, image = images[0]
    data = encode("jpeg2000", image, 1.0)
    assert data[:4] == b"\xff\x4f\xff\x51"  # a raw J2K codestream (SOC, SIZ): no JP2 boxes counted
    cod = data.index(b"\xff\x52")  # COD marker: Lcod, Scod, progression, layers(2), MCT, levels, cbw, cbh, style, transform
    assert data[cod + 8] == 1  # multiple component transform on
    assert data[cod + 13] == 0  # 9/7 irreversible wavelet
    assert 8 * len(data) / (40 * 56) <= 1.0 * 1.05  # the rate target is met


SWEEPS = {"jpeg2000": [0.25, 1.0, 3.0], "hevc444": [42, 32, 22], "hevc420": [42, 32, 22]}


@pytest.mark.parametrize("codec", list(codecs.CODECS))
def test_every_codec_sweeps_and_decodes(codec, images):
    reason = codecs.CODECS[codec].missing()
    if reason:
        pytest.skip(reason)
    settings = SWEEPS.get(codec, [10, 50, 90])
    curve = codecs.codec_sweep(codec, images, settings, dataset="TINY")
    r = curve["results"]
    assert len(r["bpp"]) == 3 and r["bpp"] == sorted(r["bpp"])
    assert r["psnr-rgb"][-1] > r["psnr-rgb"][0] > 10  # tiny images: headers dominate at low rates
    assert all(0 < m <= 1 for m in r["ms-ssim-rgb"])
    assert "small images" in curve["description"]  # 40 px: MS-SSIM with fewer scales, stated
    assert set(curve["per_image"]) == {"astronaut", "coffee"}


def test_codecs_tool_writes_one_curve_per_codec(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "codecs"
    code = main(["codecs", "--data_root", str(tiny_dataset), "--dataset", "TINY", "--out_dir", str(out),
                 "--codecs=jpeg,webp", "--jpeg_qualities=10,40,80", "--webp_qualities", "10,40,80", "--quiet"])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["jpeg_TINY.json", "webp_TINY.json"]
    jpeg = curves.load_curve(out / "jpeg_TINY.json")
    assert len(jpeg) == 3 and jpeg.ms_ssim is not None
    # (c) through the tool
    capsys.readouterr()
    assert main(["bd", "--anchor", str(out / "jpeg_TINY.json"), str(out / "webp_TINY.json"),
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
    assert main(["bd", "--anchor", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 2
    assert "no BD-rate" in one_error_line(capsys.readouterr().err)
    assert main(["plot", "--out", str(tmp_path / "x.png")]) == 2
    one_error_line(capsys.readouterr().err)
    assert main(["codecs", "--data_root", str(tmp_path), "--dataset", "NOPE", "--out_dir", str(tmp_path)]) == 2
    assert "not found" in one_error_line(capsys.readouterr().err)
    assert main(["aggregate", "--out", str(tmp_path / "c.json"), str(tmp_path / "none*.json")]) == 2
    one_error_line(capsys.readouterr().err)
    assert main(["nonsense"]) == 2
    assert "unknown command" in one_error_line(capsys.readouterr().err)
    assert main(["codecs", "--out_dir", str(tmp_path), "--codecs=jpeg,nope"]) == 2  # before loading any image
    assert "unknown nope" in one_error_line(capsys.readouterr().err)
    assert main(["codecs", "--out_dir", str(tmp_path), "--jpeg_qualities=10,x"]) == 2
    assert "not a list of numbers" in one_error_line(capsys.readouterr().err)
    assert main(["bd", str(tmp_path / "b.json")]) == 2  # --anchor is required
    assert "anchor" in one_error_line(capsys.readouterr().err)


def test_ms_ssim_db_metric():
    curve = curves.Curve("x", [0.1, 0.2], [25, 27], [0.9, 0.99])
    assert curve.metric("ms-ssim-db") == pytest.approx([10.0, 20.0])
    assert math.isclose(bd.bd_compare(curve, curve, "ms-ssim-db")["bd_rate"], 0, abs_tol=1e-9)


# ------------------------------------------------------------------------------------------------
# HEVC intra (x265 via pillow-heif) and JPEG XL (pillow-jxl-plugin); skipped where not installed


def needs(name: str):
    reason = codecs.CODECS[name].missing()
    if reason:
        pytest.skip(reason)
    return codecs.CODECS[name]


def test_hevc_444_keeps_the_colours_that_420_loses(images):
    needs("hevc444"), needs("hevc420")
    _, image = images[0]
    high = {name: codecs.measure_setting(name, image, 12, with_ms_ssim=False) for name in ("hevc444", "hevc420")}
    # at a fine QP the 4:2:0 file is limited by its half-resolution chroma, 4:4:4 is not
    assert high["hevc444"]["psnr"] > high["hevc420"]["psnr"] + 3
    data = encode("hevc444", image, 32)
    assert data[4:8] == b"ftyp" and b"hvcC" in data  # a HEIF file with an HEVC configuration box
    # bpp counts the whole file; bpp_picture the coded picture alone (the mdat payload)
    row = codecs.measure_setting("hevc444", image, 32, with_ms_ssim=False)
    assert row["bpp"] == pytest.approx(8 * len(data) / (40 * 56))
    assert 0 < row["bpp_picture"] < row["bpp"]
    # a coarser QP: fewer bytes, lower PSNR
    coarse = codecs.measure_setting("hevc444", image, 45, with_ms_ssim=False)
    assert coarse["bytes"] < row["bytes"] and coarse["psnr"] < row["psnr"]
    with pytest.raises(InrError, match="QP must be in 0..51"):
        encode("hevc444", image, 60)


def test_heif_picture_bytes_reads_the_top_level_boxes():
    def box(kind: bytes, payload: bytes) -> bytes:
        return (8 + len(payload)).to_bytes(4, "big") + kind + payload

    data = box(b"ftyp", b"heic" * 3) + box(b"meta", b"x" * 40) + box(b"mdat", b"y" * 123)
    assert codecs.heif_picture_bytes(data) == 123
    large = (1).to_bytes(4, "big") + b"mdat" + (16 + 7).to_bytes(8, "big") + b"z" * 7  # 64-bit size
    assert codecs.heif_picture_bytes(box(b"ftyp", b"") + large) == 7
    with pytest.raises(InrError, match="bad box size"):
        codecs.heif_picture_bytes((4).to_bytes(4, "big") + b"mdat")


def test_jpeg_xl_is_a_bare_codestream_and_sweeps(images):
    needs("jxl")
    data = encode("jxl", images[0][1], 50)
    assert data[:2] == b"\xff\x0a"  # the JPEG XL codestream signature, no ISOBMFF container
    curve = codecs.codec_sweep("jxl", images, [10, 50, 90], with_ms_ssim=False)
    r = curve["results"]
    assert r["bpp"] == sorted(r["bpp"]) and r["psnr-rgb"] == sorted(r["psnr-rgb"])
    assert "pillow-jxl-plugin" in curve["version"] and curve["options"] == {"effort": 7}


@pytest.mark.parametrize("name", ["hevc444", "jxl"])
def test_new_codecs_decode_grayscale(name):
    needs(name)
    gray = photo_crop("camera", 40, 56)[:, :, :1] if photo_crop("camera", 40, 56).ndim == 3 else None
    gray = gray if gray is not None else photo_crop("astronaut", 40, 56)[:, :, :1].copy()
    row = codecs.measure_setting(name, np.ascontiguousarray(gray), 22 if name == "hevc444" else 80,
                                 with_ms_ssim=False)
    assert row["psnr"] > 25


# ------------------------------------------------------------------------------------------------
# The registry: a codec defined here, nowhere in the library, runs through the tool


class HalfSizePng(codecs.ImageCodec):
    """A real (if poor) lossy codec: PNG of the image downscaled by the setting, upscaled on decode."""

    name, label, setting, sweep_flag = "halfpng", "half-size PNG", "factor", "factors"
    defaults = (2, 4)
    options = (codecs.CodecOption("resample", "bilinear", "upscaling filter", ("bilinear", "nearest")),)

    def version(self):
        return "test codec"

    def encode(self, image, setting, options):
        h, w = image.shape[:2]
        small = Image.fromarray(image).resize((max(1, w // int(setting)), max(1, h // int(setting))), Image.BOX)
        buffer = io.BytesIO()
        small.save(buffer, format="PNG", pnginfo=None)
        return f"{w}x{h}:{options['resample']}:".encode() + buffer.getvalue()

    def decode(self, data, channels):
        head, png = data.split(b":", 2)[:2], data.split(b":", 2)[2]
        w, h = map(int, head[0].decode().split("x"))
        with Image.open(io.BytesIO(png)) as small:
            big = small.resize((w, h), Image.BILINEAR if head[1] == b"bilinear" else Image.NEAREST)
            return np.asarray(big.convert("RGB"))


class NotInstalled(HalfSizePng):
    name, label = "notinstalled", "Not installed"

    def missing(self):
        return "needs libnothing (pip install nothing)"


def test_a_registered_codec_runs_through_the_tool_and_a_missing_one_is_skipped(tiny_dataset, tmp_path, monkeypatch,
                                                                              capsys):
    monkeypatch.setitem(codecs.CODECS, "halfpng", HalfSizePng())
    monkeypatch.setitem(codecs.CODECS, "notinstalled", NotInstalled())
    out = tmp_path / "codecs"
    assert main(["codecs", "--data_root", str(tiny_dataset), "--dataset", "TINY", "--out_dir", str(out), "--quiet",
                 "--codecs=halfpng,notinstalled", "--halfpng_factors=2,4", "--halfpng_resample=nearest"]) == 0
    captured = capsys.readouterr()
    assert captured.err.strip() == "skipped notinstalled: needs libnothing (pip install nothing)"
    curve = json.loads((out / "halfpng_TINY.json").read_text())
    assert curve["results"]["factor"] == [4, 2]  # sorted by bpp: factor 4 is the smaller file
    assert curve["options"] == {"resample": "nearest"}
    assert curve["results"]["psnr-rgb"][1] > curve["results"]["psnr-rgb"][0]
    assert main(["codecs", "--data_root", str(tiny_dataset), "--dataset", "TINY", "--out_dir", str(out),
                 "--codecs=notinstalled"]) == 2
    assert "none of the codecs could run" in capsys.readouterr().err.splitlines()[-1]


def test_help_shows_the_subcommands_and_each_commands_usage(capsys):
    assert main(["--help"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == "usage: evaluate.py {aggregate,codecs,bd,plot,report} [--flag=value ...] [ARGS ...]"
    assert main(["bd", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "usage: evaluate.py bd TEST_CURVE... [--flag=value ...]"
    assert "--interpolation" in out and "--anchor" in out
    assert main(["codecs", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--data_root", "--dataset", "--downscaling_factor", "--hevc444_qps", "--jxl_effort",
                 "--jpeg_subsampling"):
        assert flag in out
    assert main(["plot", "--out", "x.png"]) == 2  # no curve: a usage error
    assert one_error_line(capsys.readouterr().err).startswith("error: usage: evaluate.py plot CURVE...")
