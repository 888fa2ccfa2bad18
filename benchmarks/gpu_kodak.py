"""Full-resolution Kodak on one GPU: fit all 24 images at one width, quantize and code them into .inr
files, and print the RD point next to the paper's.

    python benchmarks/gpu_kodak.py --kodak ../shared/data/KODAK --width 32 --epochs 25000 --bitwidth 8

--batch_images auto (the default) first times a few steps of the 18 landscape images fitted at once
(batched.fit_many) against one image alone and fits the way that does more image-steps per second
on this device: in groups of one size (18 landscape, 6 portrait) or one by one. It prints that
measurement, so a rerun can pass the choice (--batch_images 24 or 1) and skip the probe.

The fit checkpoints every 5000 steps: if a time limit stops the run, the same command resumes it
(images already fitted are skipped, a batched group continues from its last common checkpoint).

The paper's settings are the default (lr 5e-4, l1 1e-5, 25000 steps, AdaRound 1000 iterations per
layer, 300 QAT steps); --epochs, --adaround_iterations and --retrain_epochs trade quality for time.
The stdout ends in a short table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from fit_speed import batched_throughput  # the sibling benchmark script
from inrcompress.tools.overfit_inr import main as overfit_main
from inrcompress.tools.quantize_and_test import main as quantize_main

# The paper's Kodak curves (results/KODAK/*.json of its repository): width -> (bpp, PSNR).
PAPER_BASIC_8BIT = {32: (0.09960, 25.637), 48: (0.18792, 27.147), 64: (0.29943, 28.414), 128: (0.94629, 32.267)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kodak", default="../shared/data/KODAK")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=25000)
    parser.add_argument("--bitwidth", type=int, default=8)
    parser.add_argument("--adaround_iterations", type=int, default=1000)
    parser.add_argument("--retrain_epochs", type=int, default=300)
    parser.add_argument("--batch_images", default="auto", help="auto (time both ways first), or a number")
    parser.add_argument("--exp_root", default="benchmarks/output/gpu_kodak")
    args = parser.parse_args(argv)

    data_root = Path(args.kodak).resolve().parent
    dataset = Path(args.kodak).name
    common = [f"--data_root={data_root}", f"--dataset={dataset}", f"--exp_root={args.exp_root}"]
    batch_images = args.batch_images
    if batch_images == "auto":
        # 10 compiled steps of the 18 landscape images at once against one by one (fit_speed.py)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        probe = batched_throughput(Path(args.kodak), 1, args.width, [18], 10, device, compiled=True, repeats=1)[0]
        faster = max(probe["batched_images_per_hour"], probe["one_by_one_images_per_hour"])
        batch_images = "24" if probe["speedup"] > 1 else "1"
        n_images = len(list(Path(args.kodak).glob("kodim*.png")))
        print(f"-> --batch_images {batch_images}; projected fit of {n_images} images x {args.epochs} steps: "
              f"{n_images * 60 / faster * args.epochs / 10:.1f} min", flush=True)
    started = time.perf_counter()
    assert overfit_main(common + [f"--epochs={args.epochs}", "--lr=0.0005", "--l1_reg=0.00001",
                                  f"--hidden_dims={args.width}", f"--batch_images={batch_images}",
                                  "--steps_til_summary=5000", "--epochs_til_ckpt=5000"]) == 0
    fit_seconds = time.perf_counter() - started
    exp = next(p for p in Path(args.exp_root).iterdir()
               if f"_epochs{args.epochs}_" in p.name and f"_hdims{args.width}_" in p.name)
    started = time.perf_counter()
    assert quantize_main(common + [f"--exp_glob={exp.name}", f"--bitwidth={args.bitwidth}",
                                   f"--adaround_iterations={args.adaround_iterations}",
                                   f"--retrain_epochs={args.retrain_epochs}"]) == 0
    quant_seconds = time.perf_counter() - started
    fitted = json.loads((exp / "result.json").read_text())
    result = next(exp.glob(f"results_arithmetic_bw{args.bitwidth}*.json"))
    r = json.loads(result.read_text())["results"]
    print()
    print("| what | images | bpp | PSNR (dB) | MS-SSIM | fit (s) | quantize+code (s) |")
    print("|---|---|---|---|---|---|---|")
    print(f"| float fit, w{args.width}, {args.epochs} steps | {fitted['num_images']} | - | {fitted['avg_psnr']:.3f} | "
          f"{fitted['avg_ms_ssim']:.4f} | {fit_seconds:.0f} | - |")
    print(f"| ours .inr, {args.bitwidth} bit | {len(json.loads(result.read_text())['per_image'])} | {r['bpp']:.4f} "
          f"(payload {r['bpp_payload']:.4f}) | {r['psnr-rgb']:.3f} | {r['ms-ssim-rgb']:.4f} | - | {quant_seconds:.0f} |")
    if args.width in PAPER_BASIC_8BIT:
        bpp, psnr = PAPER_BASIC_8BIT[args.width]
        print(f"| paper basic 8 bit, w{args.width} | 24 | {bpp:.4f} | {psnr:.3f} | - | - | - |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
