"""The four example scripts (the paper's Fig. 4 runs) in their quick mode (QUICK=1), end to end, on a
tiny generated dataset: Kodak-sized photographs written as KODAK/kodimNN.png, a DIV2K layout, and a
CelebA layout (img_align_celeba_png + list_eval_partition.csv, holding the 100 images of
data/CelebA100.csv, so that the scripts extract CelebA100 themselves).

The scripts run as a user runs them (bash, separate processes, DATA_ROOT/EXP_ROOT/PYTHON from the
environment), all four at the same time, one thread each; the tests then check what each one wrote.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .conftest import photo_crop

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ("run_basic_kodak", "run_maml_kodak", "run_basic_celeba", "run_maml_celeba")
MAML_TOOLS = [REPO / "image_compression" / "trainMetaSiren.py", REPO / "image_compression" / "overfitMetaSiren.py"]
TIMEOUT = 600


def maml_missing() -> str | None:
    missing = [p.name for p in MAML_TOOLS if not p.is_file()]
    return f"the MAML tools are not written yet ({', '.join(missing)} missing)" if missing else None


def make_data(root: Path) -> None:
    rng = np.random.default_rng(0)
    photos = ["astronaut", "coffee", "chelsea", "rocket"]
    kodak = root / "KODAK"
    kodak.mkdir(parents=True)
    for i, name in enumerate(photos[:3]):
        picture = photo_crop(name, 512, 768)
        Image.fromarray(np.rot90(picture) if i == 1 else picture).save(kodak / f"kodim{i + 1:02d}.png")  # a portrait
    for split, names in (("DIV2K_train_HR", ["0001", "0002"]), ("DIV2K_valid_HR", ["0801"])):
        (root / "DIV2K" / split).mkdir(parents=True)
        for name in names:
            Image.fromarray(photo_crop(photos[int(name) % 4], 256, 384)).save(root / "DIV2K" / split / f"{name}.png")
    celeba = root / "CelebA" / "img_align_celeba_png"
    celeba.mkdir(parents=True)
    big = [photo_crop(name, 436, 356) for name in photos]

    def face(i):
        y, x = rng.integers(0, 218), rng.integers(0, 178)
        return big[i % 4][y:y + 218, x:x + 178]

    listed = (REPO / "data" / "CelebA100.csv").read_text().split()
    for i, name in enumerate(listed + ["000001.png", "000002.png", "162771.png"]):
        Image.fromarray(face(i)).save(celeba / name)
    rows = ["image_id,partition", "000001.jpg,0", "000002.jpg,0", "162771.jpg,1"]
    rows += [f"{Path(n).stem}.jpg,2" for n in listed]
    (root / "CelebA" / "list_eval_partition.csv").write_text("\r\n".join(rows) + "\r\n")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run every quick example at once; {script: (returncode, log text, seconds, exp_root)}."""
    base = tmp_path_factory.mktemp("examples")
    data = base / "data"
    make_data(data)
    env = {**os.environ, "QUICK": "1", "DATA_ROOT": str(data), "EXP_ROOT": str(base / "exp"),
           "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("ANCHORS", None)
    started, procs, results = time.perf_counter(), {}, {}
    skip = maml_missing()
    with contextlib.ExitStack() as logs:
        for script in SCRIPTS:
            if skip and "maml" in script:
                continue
            log = logs.enter_context(open(base / f"{script}.log", "w"))
            procs[script] = subprocess.Popen(["bash", str(REPO / "examples" / f"{script}.sh")], cwd=base, env=env,
                                             stdout=log, stderr=subprocess.STDOUT)
        for script, proc in procs.items():
            try:
                code = proc.wait(timeout=max(1, TIMEOUT - (time.perf_counter() - started)))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                code = "timeout"
            results[script] = [code, time.perf_counter() - started]
    return {script: (code, (base / f"{script}.log").read_text(), seconds, base / "exp")
            for script, (code, seconds) in results.items()}


def check_run(runs, script: str) -> Path:
    if script not in runs:
        pytest.skip(maml_missing())
    code, log, seconds, exp_root = runs[script]
    assert code == 0, f"{script} failed ({code}) after {seconds:.0f} s:\n{log[-4000:]}"
    return exp_root


def check_curves(out: Path, prefix: str, images: int) -> None:
    for bw in (7, 8):
        curve = json.loads((out / f"rd_{prefix}_bw{bw}.json").read_text())
        r = curve["results"]
        assert len(r["bpp"]) == 1 and r["bpp"][0] > 0 and r["psnr-rgb"][0] > 12
        assert len(curve["images"]) == images
        assert f"bw{bw}_adaround_iter_10_adaround_reg_0.0001_retrain_epochs5_retrain_lr1e-06" in curve["files"][0]
    from inrcompress.evaluate.codecs import CODECS

    codecs = sorted(p.name.split("_")[0] for p in (out / "codecs").glob("*.json"))
    assert codecs == sorted(name for name, codec in CODECS.items() if codec.missing() is None)  # the rest: skipped
    with Image.open(next(out.glob("rd_*.png"))) as img:
        assert img.format == "PNG"
    page = (out / "report" / "index.html").read_text()
    assert 'id="per-image"' in page and page.count('class="crops"') == images


def test_basic_kodak_quick(runs):
    out = check_run(runs, "run_basic_kodak") / "basic_kodak_quick"
    exps = [p.name for p in out.glob("KODAK_*")]
    assert exps == ["KODAK_8x_epochs200_lr0.0005_ffdims_16_hdims16_hlayer3_nerf_sine_l1_reg1e-05_enc_scale1.4"]
    check_curves(out, "basic", images=2)
    assert len(list(out.glob("KODAK_*/*/compressed_arithmetic_bw8_*.inr"))) == 2
    from .test_report import browser_dom, chromium

    if chromium() is None:
        pytest.skip("no Chromium (Debian package chromium) to open the report in")
    status = re.search(r'id="load-status"[^>]*', browser_dom(out / "report" / "index.html")).group(0)
    assert 'data-broken="0"' in status and int(re.search(r'data-loaded="(\d+)"', status).group(1)) > 2


def test_maml_kodak_quick(runs):
    out = check_run(runs, "run_maml_kodak") / "maml_kodak_quick"
    assert len(list((out / "maml").glob("MAML_DIV2K_8x_*hdims16*/model_maml.pth"))) == 1
    exps = [p.name for p in out.glob("KODAK_*")]
    assert len(exps) == 1 and "_maml_" in exps[0] and "ffdims_16" in exps[0]
    check_curves(out, "maml", images=2)


def test_basic_celeba_quick(runs):
    out = check_run(runs, "run_basic_celeba") / "basic_celeba_quick"
    exps = [p.name for p in out.glob("CelebA100_*")]
    assert len(exps) == 1 and exps[0].startswith("CelebA100_4x_") and "ffdims_12" in exps[0]
    check_curves(out, "basic", images=2)


def test_maml_celeba_quick_writes_its_own_folder(runs):
    exp_root = check_run(runs, "run_maml_celeba")
    out = exp_root / "maml_celeba_quick"
    assert len(list((out / "maml").glob("MAML_CelebA_4x_*ffdims_12_hdims16*/model_maml.pth"))) == 1
    exps = [p.name for p in out.glob("CelebA100_*")]
    # the init was found: --ff_dims 12 reached overfitMetaSiren.py (the paper's script left it at None)
    assert len(exps) == 1 and "_maml_" in exps[0] and "ffdims_12" in exps[0]
    assert not list((exp_root / "maml_kodak_quick").glob("CelebA*"))  # not into maml_kodak (paper's bug)
    check_curves(out, "maml", images=2)


TOOLS = {"overfitINR.py": "overfit_inr", "quantize_and_test.py": "quantize_and_test",
         "trainMetaSiren.py": "train_meta_siren", "overfitMetaSiren.py": "overfit_meta_siren"}


def full_commands(script: str, data_root: Path, exp_root: Path) -> list[tuple[str, dict | object]]:
    """The commands of a script's full (paper) mode, printed by DRY_RUN=1 and parsed by each tool's
    own flag parser: (tool, its flag values)."""
    import importlib
    import shlex

    from inrcompress.tools import flags as inr_flags
    from inrcompress.tools.evaluate import command_line

    env = {**os.environ, "DRY_RUN": "1", "QUICK": "0", "DATA_ROOT": str(data_root), "EXP_ROOT": str(exp_root),
           "PYTHON": sys.executable}
    printed = subprocess.run(["bash", str(REPO / "examples" / f"{script}.sh")], env=env, capture_output=True,
                             text=True, timeout=60, check=True).stdout
    commands = []
    for line in printed.splitlines():
        if line.startswith("done:"):
            continue
        argv = shlex.split(line)
        tool = Path(argv[0]).name
        if tool in TOOLS:
            module = importlib.import_module(f"inrcompress.tools.{TOOLS[tool]}")
            # an unknown flag, a bad value or a stray positional argument raises
            commands.append((tool, inr_flags.parse_values(module.build_flags(), argv[1:], tool)))
        elif tool == "evaluate.py":
            commands.append((f"evaluate {argv[1]}", inr_flags.values(command_line(argv[1:])[1])))
        else:
            assert tool == "celeba100dataset.py", line
            commands.append((tool, argv[1:]))
    return commands


@pytest.mark.parametrize("script", SCRIPTS)
def test_full_mode_runs_the_papers_settings(script, tmp_path):
    """Spec section 7, with the paper's script bugs fixed; every flag checked by the tools' parsers."""
    from inrcompress.config import maml_init_name

    data = tmp_path / "data"
    for folder in ("KODAK", "DIV2K/DIV2K_train_HR", "DIV2K/DIV2K_valid_HR", "CelebA/img_align_celeba_png", "CelebA100"):
        (data / folder).mkdir(parents=True)
    (data / "CelebA" / "list_eval_partition.csv").write_text("")
    commands = full_commands(script, data, tmp_path / "exp")
    celeba, maml = "celeba" in script, "maml" in script
    widths = [24, 32, 48, 64] if celeba else [32, 48, 64, 96, 128]
    exp_root = str(tmp_path / "exp" / f"{'maml' if maml else 'basic'}_{'celeba' if celeba else 'kodak'}")
    fits = [v for tool, v in commands if tool == ("overfitMetaSiren.py" if maml else "overfitINR.py")]
    assert [v["hidden_dims"] for v in fits] == widths
    for v in fits:
        assert (v["epochs"], v["lr"], v["l1_reg"], v["patience"], v["epochs_til_ckpt"], v["steps_til_summary"]) == \
            (25000, 5e-4, 1e-5, 500, 5000, 1000)
        assert (v["activation"], v["encoding"], v["encoding_scale"], v["hidden_layers"], v["downscaling_factor"]) == \
            ("sine", "nerf", 1.4, 3, 1)
        assert v["ff_dims"] == (12 if celeba else 16)  # passed to overfitMetaSiren too
        assert v["dataset"] == ("CelebA100" if celeba else "KODAK") and v["exp_root"] == exp_root
    quants = [v for tool, v in commands if tool == "quantize_and_test.py"]
    assert [v["bitwidth"] for v in quants] == [7, 8]
    for v in quants:
        assert (v["adaround"], v["retrain"], v["adaround_iterations"], v["adaround_reg"], v["retrain_epochs"],
                v["retrain_lr"], v["code"]) == (True, True, 1000, 1e-4, 300, 1e-6, "arithmetic")
        assert v["exp_root"] == exp_root
    if maml:
        inits = [v for tool, v in commands if tool == "trainMetaSiren.py"]
        assert [v["hidden_dims"] for v in inits] == widths  # an init for every width (96 included)
        for v in inits:
            assert (v["maml_dataset"], v["maml_epochs"], v["maml_batch_size"], v["maml_adaptation_steps"]) == \
                ("CelebA" if celeba else "DIV2K", 1 if celeba else 30, 1, 3)
            assert (v["inner_lr"], v["outer_lr"], v["lr_type"]) == (1e-5, 5e-5, "per_parameter_per_step")
            assert v["exp_root"] == exp_root  # maml_celeba, not the paper's maml_kodak
        # every fit finds the init its width was trained into
        assert [maml_init_name(v) for v in fits] == [maml_init_name(v) for v in inits]
        assert all(v["warmup"] == 100 for v in fits)
    steps = [tool for tool, _ in commands if tool.startswith("evaluate")]
    assert steps == ["evaluate aggregate", "evaluate aggregate", "evaluate codecs", "evaluate bd", "evaluate plot",
                     "evaluate report"]
