"""evaluate.py report: the HTML page with RD plots, BD-rates, the per-image table and decoded crops,
built from real .inr files (encode.py on two tiny photographs, a quick fit) and real codec curves;
opened in headless Chromium where it is installed (Debian package `chromium`), which must load every
picture."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inrcompress.evaluate.metrics import image_metrics
from inrcompress.tools.evaluate import _decode_inr_file, main

from .conftest import photo_crop

TAG = "arithmetic_bw8_quick"
IMAGES = {"astronaut": (24, 32), "chelsea": (32, 20)}  # a landscape and a portrait (height, width)
# encode.py's quick fit: the whole pipeline on a tiny image in about a second
QUICK = ["--epochs=30", "--hidden_dims=8", "--hidden_layers=1", "--ff_dims=4", "--adaround_iterations=5",
         "--retrain_epochs=5", "--device=cpu"]


def make_experiment(root: Path) -> tuple[Path, Path]:
    """data_root/TINY with the two originals, and one experiment holding their .inr files (encode.py)
    and the results file measured by decoding them; returns (data_root, results file)."""
    from inrcompress.tools.encode import main as encode_main

    data, exp = root / "data" / "TINY", root / "exp" / "TINY_quick"
    data.mkdir(parents=True)
    per_image = {}
    for name, (height, width) in IMAGES.items():
        original = photo_crop(name, height, width)
        Image.fromarray(original).save(data / f"{name}.png")
        (exp / name).mkdir(parents=True)
        inr = exp / name / f"compressed_{TAG}.inr"
        assert encode_main([str(data / f"{name}.png"), str(inr), *QUICK]) == 0
        decoded = _decode_inr_file(inr)
        metrics = image_metrics(decoded / 255.0, original / 255.0)
        per_image[name] = {**metrics, "bpp": 8 * inr.stat().st_size / (height * width)}
    mean = {key: float(np.mean([row[key] for row in per_image.values()])) for key in ("bpp", "psnr", "ms_ssim")}
    results = exp / f"results_{TAG}.json"
    results.write_text(json.dumps({"name": "quick", "results": {"bpp": mean["bpp"], "psnr-rgb": mean["psnr"],
                                                                "ms-ssim-rgb": mean["ms_ssim"]},
                                   "per_image": per_image}))
    return root / "data", results


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def browser_dom(page: Path) -> str:
    """The page's DOM after its load event, as headless Chromium rendered it."""
    result = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                             "--virtual-time-budget=10000", "--dump-dom", page.resolve().as_uri()],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    data_root, results = make_experiment(root)
    codecs_dir = root / "codecs"
    assert main(["codecs", f"--data_root={data_root}", "--dataset=TINY", f"--out_dir={codecs_dir}", "--quiet",
                 "--codecs=jpeg,webp", "--jpeg_qualities=5,30,70,95", "--webp_qualities=5,30,70,95"]) == 0
    out = root / "report"
    assert main(["report", str(results), f"--codecs={codecs_dir}", f"--data_root={data_root}", "--dataset=TINY",
                 f"--out={out}", "--crop_images=2", "--crop_size=16", "--title=quick fits"]) == 0
    return out


def test_report_page_holds_the_plot_the_tables_and_the_crops(report):
    page = (report / "index.html").read_text()
    assert (report / "rd.png").is_file()
    pictures = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert pictures[0] == "rd.png"
    # per image: the original, our decoded file and the two codecs
    crops = [p for p in pictures if p.startswith("crop_")]
    assert len(crops) == 2 * 4 and all((report / p).is_file() for p in crops)
    for name, (height, width) in IMAGES.items():
        with Image.open(report / f"crop_{name}_0.png") as original:
            assert original.size == (min(16, width), min(16, height))
            assert original.size == Image.open(report / f"crop_{name}_1.png").size
    # our crop is cut from what the .inr file decodes to
    decoded = _decode_inr_file(report.parent / "exp" / "TINY_quick" / "astronaut" / f"compressed_{TAG}.inr")
    ours = np.asarray(Image.open(report / "crop_astronaut_1.png"))
    assert any(np.array_equal(decoded[y:y + 16, x:x + 16], ours) for y in range(0, 9) for x in range(0, 17))
    assert page.count("<tr>") >= 1 + 2  # the per-image table: a header and both images
    assert "No BD-rate" in page and "JPEG" in page and "WebP" in page
    assert "Notes" not in page  # every method could be shown


def test_report_has_the_stated_numbers(report):
    page = (report / "index.html").read_text()
    per_image = page[page.index('id="per-image"'):]
    assert per_image.count(" bpp<br>") == 2 * 3  # two images x (ours, JPEG, WebP)


@pytest.mark.skipif(chromium() is None, reason="no Chromium (Debian package chromium)")
def test_report_opens_in_a_real_browser_with_every_picture_loaded(report):
    dom = browser_dom(report / "index.html")
    status = re.search(r'id="load-status"[^>]*', dom).group(0)
    loaded = int(re.search(r'data-loaded="(\d+)"', status).group(1))
    assert 'data-broken="0"' in status and loaded == 1 + 2 * 4
    assert 'id="per-image"' in dom
    # one point of ours: no BD-rate, and the page says why for each pair
    assert dom.count("<table") == 1 and dom.count("a BD metric needs at least 2 distinct points") == 2


def test_report_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "a.json").write_text(json.dumps({"name": "a", "bpp": [0.1, 0.2], "psnr": [20, 21]}))
    assert main(["report", str(tmp_path / "a.json"), f"--out={tmp_path / 'r'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "results_*.json" in err and "\n" not in err
