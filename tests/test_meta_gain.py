"""benchmarks/meta_gain.py --quick: every phase (data, meta-training with early stop, both fits,
quantization, analysis, plots, trend) runs end to end on tiny stand-ins for the Kodak images, and its
numbers are consistent with the files the tools wrote."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from PIL import Image

from .conftest import photo_crop

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "meta_gain.py"
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "astronaut")


def load_benchmark():
    spec = importlib.util.spec_from_file_location("meta_gain", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fake_kodak(tmp_path_factory) -> Path:
    """kodim01..06 at 768x512 / 512x768 (kodim04 is portrait, as in Kodak), made from photographs."""
    folder = tmp_path_factory.mktemp("KODAK")
    for i, name in enumerate(PHOTOS, start=1):
        picture = photo_crop(name, 512, 768) if name != "camera" else photo_crop("coffee", 512, 768)[::-1]
        if i == 4:
            picture = picture.transpose(1, 0, 2)
        Image.fromarray(picture.copy()).save(folder / f"kodim{i:02d}.png")
    return folder


@pytest.mark.slow
def test_quick_mode_runs_every_phase(fake_kodak, tmp_path):
    meta_gain = load_benchmark()
    out = tmp_path / "gain.json"
    assert meta_gain.main(["--quick", "--kodak", str(fake_kodak), "--work", str(tmp_path / "work"), "--plots",
                           "--json", str(out), "--phases", "data", "meta", "fit", "quantize", "analyze", "trend"]) == 0
    results = json.loads(out.read_text())
    analysis = results["analysis"]
    # the meta-dataset holds the Kodak images that are neither tested nor validated, plus the photo
    train = sorted(p.name for p in (tmp_path / "work" / "data" / "KODAKMETA3P1" / "train").iterdir())
    assert train == ["kodim03.png", "kodim05.png", "kodim06.png", "zz_chelsea.png"]
    for key, meta in results["meta"].items():
        assert meta["steps_run"] <= meta["total_steps"] and meta["train_images"] == 4, key
    # the curves are the means of the tools' own results files
    exp = next((tmp_path / "work" / "exp" / "basic" / "w8").glob("KODAKTEST_*"))
    basic8 = json.loads(next(exp.glob("results_arithmetic_bw8_*.json")).read_text())["results"]
    assert analysis["curves"]["basic 8-bit"]["bpp"][0] == pytest.approx(basic8["bpp"])
    assert analysis["bd_vs_anchor"]["meta per_parameter_per_step 7-bit"]["bd_rate_percent"] is not None
    # a meta fit starts where MAML's inner steps left it, above the random init
    conv = analysis["convergence"]
    assert conv["meta per_parameter_per_step w8"]["psnr"][0] > conv["basic w8"]["psnr"][0]
    diag = analysis["diagnostics"]["meta per_parameter_per_step w8 7-bit"]
    assert diag["rms"] < diag["rms_theta"] and 0 < diag["entropy_bits_per_param"] <= 7
    assert set(results["trend"]) >= {"main run (4 images)"} and all(Path(p).is_file() for p in results["plots"])


def test_photo_as_kodak_is_a_landscape_kodak_frame():
    picture = load_benchmark().photo_as_kodak("astronaut")  # square -> centre crop to 3:2
    assert picture.shape == (512, 768, 3) and picture.dtype.name == "uint8"
