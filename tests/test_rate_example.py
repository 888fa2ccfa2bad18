"""examples/run_rate_aware_kodak.sh in its quick mode (QUICK=1), end to end as a user runs it, on a
generated Kodak folder: it writes the beyond-the-paper curves beside the faithful one, their
BD-rates and the plot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from .conftest import photo_crop

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_rate_aware_example_writes_the_curves_and_the_plot(tmp_path):
    kodak = tmp_path / "data" / "KODAK"
    kodak.mkdir(parents=True)
    Image.fromarray(photo_crop("coffee", 192, 256)).save(kodak / "kodim01.png")
    env = {**os.environ, "QUICK": "1", "DATA_ROOT": str(tmp_path / "data"), "EXP_ROOT": str(tmp_path / "exp"),
           "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(REPO / "examples" / "run_rate_aware_kodak.sh")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "exp" / "rate_aware_kodak_quick"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == ["kodim01"]
    assert set(summary["curves"]) == {"faithful", "rd_steps", "qat", "bits6", "rate_lambda", "all"}
    for name, curve in summary["curves"].items():
        assert curve["front"] and all(p["bpp"] > 0 and p["psnr"] > 10 for p in curve["front"])
    assert {row["curve"] for row in summary["bd_rate"]} == set(summary["curves"])
    assert (out / "rd_beyond.png").stat().st_size > 1000
    assert "BD-rate" in done.stdout


def test_dry_run_prints_the_benchmark_command(tmp_path):
    (tmp_path / "data" / "KODAK").mkdir(parents=True)
    env = {**os.environ, "DRY_RUN": "1", "QUICK": "0", "DATA_ROOT": str(tmp_path / "data"),
           "EXP_ROOT": str(tmp_path / "exp"), "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(REPO / "examples" / "run_rate_aware_kodak.sh")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "rd_beyond.py" in done.stdout and "--epochs 1000" in done.stdout and "kodim23" in done.stdout


def _rd_beyond():
    import importlib.util

    spec = importlib.util.spec_from_file_location("rd_beyond", REPO / "benchmarks" / "rd_beyond.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_runs_over_disjoint_images_merge_into_the_mean_over_all(tmp_path, capsys):
    """Two runs of the benchmark on one image each, merged: every point is the mean of the two
    runs' points, and a merge over images the runs did not code is refused."""
    kodak = tmp_path / "KODAK"
    kodak.mkdir()
    Image.fromarray(photo_crop("coffee", 32, 48)).save(kodak / "kodim01.png")
    Image.fromarray(photo_crop("astronaut", 32, 48)).save(kodak / "kodim02.png")
    rd_beyond = _rd_beyond()
    tiny = ["--kodak", str(kodak), "--factor", "1", "--widths", "8", "--epochs", "20", "--adaround_iterations", "5",
            "--retrain_epochs", "2", "--variants", "faithful", "--codecs"]
    for name in ("kodim01", "kodim02"):
        assert rd_beyond.main(tiny + ["--images", name, "--out", str(tmp_path / name)]) == 0
    merged_dirs = [str(tmp_path / "kodim01"), str(tmp_path / "kodim02")]
    assert rd_beyond.main(tiny + ["--images", "kodim01", "kodim02", "--merge", *merged_dirs,
                                  "--out", str(tmp_path / "both")]) == 0
    runs = [json.loads((tmp_path / name / "summary.json").read_text())["curves"]["faithful"]["points"]
            for name in ("kodim01", "kodim02")]
    both = json.loads((tmp_path / "both" / "summary.json").read_text())
    assert both["images"] == ["kodim01", "kodim02"]
    for point, one, two in zip(both["curves"]["faithful"]["points"], *runs, strict=True):
        assert point["bitwidth"] == one["bitwidth"] == two["bitwidth"]
        assert point["bpp"] == pytest.approx((one["bpp"] + two["bpp"]) / 2, rel=1e-12)
        assert point["psnr"] == pytest.approx((one["psnr"] + two["psnr"]) / 2, rel=1e-12)
        assert point["fit_seconds"] == pytest.approx((one["fit_seconds"] + two["fit_seconds"]) / 2, rel=1e-9)
    capsys.readouterr()
    assert rd_beyond.main(tiny + ["--images", "kodim01", "kodim02", "--merge", merged_dirs[0],
                                  "--out", str(tmp_path / "half")]) == 2
    assert "not --images" in capsys.readouterr().err
    assert rd_beyond.main(tiny + ["--images", "kodim01", "--merge", str(tmp_path / "nothing"),
                                  "--out", str(tmp_path / "none")]) == 2
    assert "nothing to merge" in capsys.readouterr().err


def test_architecture_benchmark_finds_the_front_over_every_shape(tmp_path, capsys):
    """benchmarks/arch_rd.py on one tiny image: every (width, depth, ff_dims, bits) is coded, each
    shape gets a curve and a BD-rate against the paper's shape, and the overall front is drawn from
    the points and beats every other point."""
    import importlib.util

    kodak = tmp_path / "KODAK"
    kodak.mkdir()
    Image.fromarray(photo_crop("coffee", 32, 48)).save(kodak / "kodim01.png")
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location("arch_rd", REPO / "benchmarks" / "arch_rd.py")
        arch_rd = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = arch_rd
        spec.loader.exec_module(arch_rd)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    out = tmp_path / "arch"
    assert arch_rd.main(["--kodak", str(kodak), "--images", "kodim01", "--factor", "1", "--widths", "8", "12",
                         "--hidden_layers", "2", "3", "--ff_dims", "16", "--bits", "7", "8", "--epochs", "20",
                         "--adaround_iterations", "5", "--retrain_epochs", "2", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["points"]) == 2 * 2 * 2
    assert {(p["width"], p["hidden_layers"], p["bitwidth"]) for p in summary["points"]} == {
        (w, h, b) for w in (8, 12) for h in (2, 3) for b in (7, 8)}
    assert {row["curve"]: "vs_paper" in row for row in summary["bd_rate_vs_paper_shape"]} == {
        "2 layers, ff_dims 16": True, "3 layers, ff_dims 16 (paper)": False}
    front = summary["front"]
    assert front and all(p in summary["points"] for p in front)
    for p in summary["points"]:  # nothing off the front is both smaller and better than a front point
        assert p in front or any(f["bpp"] <= p["bpp"] and f["psnr"] >= p["psnr"] for f in front)
    assert (out / "arch_rd.png").stat().st_size > 1000
    assert arch_rd.main(["--kodak", str(kodak), "--widths", "0", "--out", str(out)]) == 2
    assert "must be >= 1" in capsys.readouterr().err


def test_the_hull_front_drops_points_below_the_chord_of_their_neighbours():
    rd_beyond = _rd_beyond()
    points = [{"bpp": 0.40, "psnr": 26.7}, {"bpp": 0.48, "psnr": 28.3}, {"bpp": 0.56, "psnr": 28.9},
              {"bpp": 0.72, "psnr": 29.3}, {"bpp": 0.86, "psnr": 30.9}, {"bpp": 0.90, "psnr": 30.0}]
    assert [p["bpp"] for p in rd_beyond.pareto(points)] == [0.40, 0.48, 0.56, 0.72, 0.86]
    hull = rd_beyond.convex_front(points)
    assert [p["bpp"] for p in hull] == [0.40, 0.48, 0.86]
    # a superset of points never lowers the hull: every subset point lies on or below it
    import numpy as np
    x, y = np.log([p["bpp"] for p in hull]), [p["psnr"] for p in hull]
    for p in points:
        if x[0] <= np.log(p["bpp"]) <= x[-1]:
            assert p["psnr"] <= np.interp(np.log(p["bpp"]), x, y) + 1e-12
