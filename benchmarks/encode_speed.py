"""Encode time per image of quantize_and_test.py, one by one against batched (issue 12, item 5).

The first --images Kodak images at 1/--factor size are fitted once per width (overfitINR.py, a short
fit: --fit_epochs at lr 5e-4; the speed of quantization does not depend on how well a network fits)
into --work, then quantize_and_test.py runs on them with the paper's settings (AdaRound 1000
iterations per layer, QAT 300 steps, arithmetic coding) at every --bitwidths, with --batch_images 1
(one image after another) and --batch_images 0 (auto: the images of one size together), each a
fresh process, the orders alternating over --repeats. Reported per setting: the encode time per
image (the metrics files' encode_seconds, mean over the images; a batched group's time is divided
among its images), the whole process's wall and CPU time, mean PSNR and bpp of both paths and the
largest per-image PSNR and bpp differences between them. With --compare_old DIR (a checkout of an
older main, e.g. `git worktree add /tmp/old_main 491c790`) that code's quantize_and_test.py runs
too (PYTHONPATH=DIR/lib), one by one.

    OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/encode_speed.py --data ../shared/data/KODAK \\
        --widths 16 32 --bitwidths 7 8 --work /tmp/encode_speed --out benchmarks/output/encode_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from inrcompress.config import write_json

REPO = Path(__file__).resolve().parents[1]
PATHS = {"one_by_one": ["--batch_images=1"], "batched": ["--batch_images=0"]}


def run(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    """Run a command (its output to our stderr); returns its wall and CPU seconds (user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=sys.stderr)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def prepare(args) -> Path:
    """work/data/KODAK: the first --images images (links), the originals quantize_and_test reads."""
    images = sorted(p for p in Path(args.data).iterdir() if p.suffix.lower() == ".png")[:args.images]
    folder = Path(args.work) / "data" / "KODAK"
    folder.mkdir(parents=True, exist_ok=True)
    for path in images:
        link = folder / path.name
        if not link.exists():
            link.symlink_to(path.resolve())
    return folder.parent


def fitted_experiment(args, data_root: Path, width: int) -> Path:
    """The experiment root of the width's fits (fitted once, reused by later runs)."""
    root = Path(args.work) / f"fits_w{width}"
    if not any(root.glob("*/*/checkpoints/model_best_.pth")):
        run([sys.executable, str(REPO / "image_compression" / "overfitINR.py"), f"--data_root={data_root}",
             "--dataset=KODAK", f"--exp_root={root}", f"--hidden_dims={width}", f"--downscaling_factor={args.factor}",
             f"--epochs={args.fit_epochs}", "--lr=5e-4", "--device=cpu"])
    return root


def quantize(args, data_root: Path, fits: Path, bitwidth: int, path: str, old: str | None) -> dict:
    """One quantize_and_test run on a fresh copy of the fits; its times and per-image results."""
    exp_root = Path(args.work) / "runs" / f"{fits.name}_bw{bitwidth}_{path}"
    if exp_root.exists():
        shutil.rmtree(exp_root)
    shutil.copytree(fits, exp_root, ignore=shutil.ignore_patterns("summaries", "*.inr", "metrics_*", "results_*"))
    env = dict(os.environ)
    if old:
        env["PYTHONPATH"] = str(Path(old) / "lib")
        script, extra = Path(old) / "image_compression" / "quantize_and_test.py", []
    else:
        script, extra = REPO / "image_compression" / "quantize_and_test.py", PATHS[path]
    wall, cpu = run([sys.executable, str(script), f"--data_root={data_root}", "--dataset=KODAK",
                     f"--exp_root={exp_root}", f"--bitwidth={bitwidth}", "--noskip_existing", "--device=cpu", *extra],
                    env)
    [results] = list(exp_root.glob("*/results_*.json"))
    per_image = json.loads(results.read_text())["per_image"]
    return {"wall_seconds": wall, "cpu_seconds": cpu, "per_image": per_image,
            "encode_seconds_per_image": sum(r["encode_seconds"] for r in per_image.values()) / len(per_image),
            "psnr": sum(r["psnr"] for r in per_image.values()) / len(per_image),
            "bpp": sum(r["bpp"] for r in per_image.values()) / len(per_image)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "KODAK"))
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--bitwidths", type=int, nargs="+", default=[7, 8])
    parser.add_argument("--fit_epochs", type=int, default=800)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--work", default="/tmp/encode_speed")
    parser.add_argument("--compare_old", default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    data_root = prepare(args)
    paths = list(PATHS) + (["old_main"] if args.compare_old else [])
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.processor() or platform.machine(),
              "load_before": os.getloadavg(), "threads": os.environ.get("OMP_NUM_THREADS"),
              "command": " ".join(sys.argv), "settings": []}
    for width in args.widths:
        fits = fitted_experiment(args, data_root, width)
        for bitwidth in args.bitwidths:
            runs: dict[str, list[dict]] = {p: [] for p in paths}
            for repeat in range(args.repeats):
                for path in (paths if repeat % 2 == 0 else paths[::-1]):
                    runs[path].append(quantize(args, data_root, fits, bitwidth, path,
                                               args.compare_old if path == "old_main" else None))
            best = {p: min(r, key=lambda x: x["encode_seconds_per_image"]) for p, r in runs.items()}
            one, many = best["one_by_one"]["per_image"], best["batched"]["per_image"]
            setting = {"width": width, "bitwidth": bitwidth,
                       "paths": {p: {k: v for k, v in b.items() if k != "per_image"} for p, b in best.items()},
                       "all_repeats": {p: [x["encode_seconds_per_image"] for x in r] for p, r in runs.items()},
                       "speedup": best["one_by_one"]["encode_seconds_per_image"]
                       / best["batched"]["encode_seconds_per_image"],
                       "max_psnr_difference": max(abs(one[n]["psnr"] - many[n]["psnr"]) for n in one),
                       "max_bpp_difference": max(abs(one[n]["bpp"] - many[n]["bpp"]) for n in one),
                       "per_image": {p: b["per_image"] for p, b in best.items()}}
            report["settings"].append(setting)
            print(f"width {width}, {bitwidth} bits: " + ", ".join(
                f"{p} {b['encode_seconds_per_image']:.2f} s/image (process {b['wall_seconds']:.0f} s wall, "
                f"{b['cpu_seconds']:.0f} s CPU), PSNR {b['psnr']:.3f} dB, {b['bpp']:.4f} bpp"
                for p, b in setting["paths"].items())
                + f"; batched {setting['speedup']:.2f}x, max |dPSNR| {setting['max_psnr_difference']:.4f} dB, "
                f"max |dbpp| {setting['max_bpp_difference']:.5f}", flush=True)
    report["load_after"] = os.getloadavg()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        print(f"written: {write_json(args.out, report)}")


if __name__ == "__main__":
    main()
