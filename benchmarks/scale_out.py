"""Images per hour of overfitINR.py in 1 process against N processes under torchrun (one thread
each), on the same images and settings, and the throughput projected from the measured times.

Each run is the real tool on a fresh --exp_root, timed end to end (process start, image loading, the
fits, result files): 1 process is `python image_compression/overfitINR.py ...`, N processes
`python -m torch.distributed.run --standalone --nproc_per_node N image_compression/overfitINR.py ...`,
every process with OMP_NUM_THREADS=1. The default --batch_images (auto: same-size images batched on
a CPU) applies, so each rank batches the images of its share. Prints a markdown table and writes
--out (JSON) with the load average before and after every run (other work on the machine shares the
cores: a loaded machine gives each process a time share, which this cannot separate out), and the
CPU time of every process of the run (user + system: the tool, or the launcher and every rank):
work that does not depend on the load, so equal CPU time per image in 1 and N processes means that
N idle cores would give N times the rate, less the start-up.

    OMP_NUM_THREADS=1 python benchmarks/scale_out.py --data_root ../shared/data --dataset KODAK --factor 4 \\
        --steps 2000 --width 32 --processes 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def run_tool(processes: int, tool_args: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of every process of it) of one run of overfitINR.py with
    `processes` ranks (1: no torchrun)."""
    script = str(REPO / "image_compression" / "overfitINR.py")
    launcher = [] if processes == 1 else ["-m", "torch.distributed.run", "--standalone",
                                          f"--nproc_per_node={processes}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    out = subprocess.run([sys.executable, *launcher, script, *tool_args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the ranks too: torchrun waits for them
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    if out.returncode != 0:
        raise SystemExit(f"the run with {processes} process(es) failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return seconds, cpu


def mean_psnr(exp_root: Path) -> float:
    [exp] = [p for p in exp_root.iterdir() if p.is_dir()]
    return json.loads((exp / "result.json").read_text())["avg_psnr"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_root", default="../shared/data")
    parser.add_argument("--dataset", default="KODAK")
    parser.add_argument("--factor", type=int, default=4, help="downscaling factor of the images")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--project", type=int, nargs="+", default=[8],
                        help="rank counts to project the throughput to (from the 1-process time per image)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file of the measurements")
    args = parser.parse_args()

    images = len([p for p in (Path(args.data_root) / args.dataset).iterdir()
                  if p.suffix.lower() in (".png", ".jpg", ".jpeg")])
    rows = []
    for processes in args.processes:
        with tempfile.TemporaryDirectory(prefix="scale_out_") as tmp:
            exp_root = Path(tmp) / "exp"
            tool_args = [f"--data_root={args.data_root}", f"--dataset={args.dataset}", f"--exp_root={exp_root}",
                         f"--downscaling_factor={args.factor}", f"--epochs={args.steps}",
                         f"--hidden_dims={args.width}", "--device=cpu", f"--epochs_til_ckpt={args.steps}",
                         f"--steps_til_summary={args.steps}"]
            load_before = os.getloadavg()[0]
            seconds, cpu = run_tool(processes, tool_args)
            rows.append({"processes": processes, "seconds": seconds, "cpu_seconds": cpu,
                         "images_per_hour": images * 3600 / seconds,
                         "mean_psnr": mean_psnr(exp_root), "load_before": load_before,
                         "load_after": os.getloadavg()[0]})
        print(f"{processes} process(es): {seconds:.1f} s, {rows[-1]['images_per_hour']:.0f} images/h", flush=True)

    base = next((r for r in rows if r["processes"] == 1), rows[0])  # speed-ups and projection against it
    print(f"\n{images} images of {args.dataset} at 1/{args.factor}, {args.steps} steps, width {args.width}, "
          f"CPU ({os.cpu_count()} cores, torch {torch.__version__}, {platform.processor() or platform.machine()}), "
          "OMP_NUM_THREADS=1 per process\n")
    print("| processes | wall time | images/h | speed-up | CPU time (all processes) | CPU s per image | mean PSNR | "
          "load average before -> after |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['processes']} | {r['seconds']:.1f} s | {r['images_per_hour']:.0f} | "
              f"{base['seconds'] / r['seconds']:.2f}x | {r['cpu_seconds']:.1f} s | {r['cpu_seconds'] / images:.2f} | "
              f"{r['mean_psnr']:.3f} dB | "
              f"{r['load_before']:.1f} -> {r['load_after']:.1f} |")
    per_image = base["seconds"] / images
    print(f"\nProjection (not measured): {per_image:.1f} s per image in one process; with N ranks, each as fast "
          "as this one and the images shared evenly (ceil(images / N) each):")
    for n in args.project:
        waves = -(-images // n)
        print(f"- {n} ranks: {images} images in about {waves * per_image:.0f} s, "
              f"{n * 3600 / per_image:.0f} images/h at full load")
    if args.out is not None:
        args.out.write_text(json.dumps({"settings": vars(args) | {"out": str(args.out), "images": images},
                                        "runs": rows, "seconds_per_image_one_process": per_image}, indent=2))


if __name__ == "__main__":
    main()
