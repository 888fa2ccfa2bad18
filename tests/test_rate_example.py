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
