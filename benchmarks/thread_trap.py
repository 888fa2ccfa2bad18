"""The thread trap: one tool alone vs the same tool while a second copy runs, default settings.

    python benchmarks/thread_trap.py --data_root ../shared/data --images 3 --factor 4 --epochs 300

Each case runs the real paper script (`image_compression/overfitINR.py`, then
`quantize_and_test.py` on what it fitted) in fresh processes, with the environment as a user has it
(no OMP_NUM_THREADS: the toolkit's default of one thread per process), and with PyTorch's own
default of a thread per core (OMP_NUM_THREADS = the CPUs, what the tools ran with before), and
optionally that with OMP_WAIT_POLICY=PASSIVE; after one untimed warm-up fit (compilation). Reported per
case: wall seconds of the tool alone, and of each of two copies started together; the ratio
alone / together is the share of its alone speed a copy keeps (a fair share on 2 cores is 1/2).
Kodak images are cropped from --data_root/KODAK at 1/--factor size; without Kodak, scikit-image's
bundled photographs are used. Results print as a table and, with --out, as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from absl import app, flags
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
FLAGS = flags.FLAGS
flags.DEFINE_string("data_root", "../shared/data", "Folder holding KODAK/ (optional).")
flags.DEFINE_integer("images", 3, "Images to fit per tool run.")
flags.DEFINE_integer("factor", 4, "Downscaling factor of the Kodak images.")
flags.DEFINE_integer("epochs", 300, "Fitting steps per image.")
flags.DEFINE_integer("hidden_dims", 16, "Network width.")
flags.DEFINE_integer("adaround_iterations", 200, "AdaRound iterations per layer in the quantize runs.")
flags.DEFINE_integer("retrain_epochs", 100, "QAT steps in the quantize runs.")
flags.DEFINE_list("policies", ["default", "torch"], "Thread settings to run: default (the toolkit's: one thread "
                  "per process), torch (PyTorch's default: a thread per core), PASSIVE (a thread per core, "
                  "sleeping waits).")
flags.DEFINE_string("out", None, "Write the results as JSON here.")


def prepare_images(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    kodak = sorted((Path(FLAGS.data_root) / "KODAK").glob("*.png"))[:FLAGS.images]
    if kodak:
        for path in kodak:
            image = Image.open(path).convert("RGB")
            image.resize((image.width // FLAGS.factor, image.height // FLAGS.factor), Image.LANCZOS).save(
                folder / path.name)
        return
    from skimage import data as skdata
    for name in ("astronaut", "chelsea", "coffee", "rocket", "camera")[:FLAGS.images]:
        picture = np.asarray(getattr(skdata, name)())
        if picture.ndim == 2:
            picture = np.stack([picture] * 3, axis=-1)
        Image.fromarray(picture).resize((192, 128), Image.LANCZOS).save(folder / f"{name}.png")


def environment(policy: str) -> dict:
    """default: the environment as a user has it (the toolkit picks the threads); torch: PyTorch's own
    default, a thread per core with its default waiting; PASSIVE: that with sleeping waits."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")}
    if policy in ("torch", "PASSIVE"):
        env["OMP_NUM_THREADS"] = str(len(os.sched_getaffinity(0)))
    if policy == "PASSIVE":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


def commands(data_root: Path, exp_root: Path) -> dict[str, list[str]]:
    fit = [sys.executable, str(ROOT / "image_compression/overfitINR.py"), f"--data_root={data_root}",
           "--dataset=BENCH", f"--exp_root={exp_root}", f"--epochs={FLAGS.epochs}",
           f"--hidden_dims={FLAGS.hidden_dims}", "--steps_til_summary=1000000", "--epochs_til_ckpt=1000000"]
    quantize = [sys.executable, str(ROOT / "image_compression/quantize_and_test.py"), f"--data_root={data_root}",
                "--dataset=BENCH", f"--exp_root={exp_root}", "--exp_glob=*", "--bitwidth=8",
                f"--adaround_iterations={FLAGS.adaround_iterations}", f"--retrain_epochs={FLAGS.retrain_epochs}"]
    return {"fit": fit, "quantize": quantize}


def run_copies(tool: str, policy: str, data_root: Path, exp_roots: list[Path]) -> list[float]:
    """Start one copy per exp_root at once; wall seconds of each."""
    processes, started = [], []
    for exp_root in exp_roots:
        started.append(time.perf_counter())
        processes.append(subprocess.Popen(commands(data_root, exp_root)[tool], env=environment(policy),
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    seconds = [0.0] * len(processes)
    for i, process in enumerate(processes):
        _, err = process.communicate()
        seconds[i] = time.perf_counter() - started[i]
        if process.returncode != 0:
            raise SystemExit(f"error: {tool} failed ({policy}):\n{err[-2000:]}")
    return seconds


def main(argv):
    del argv
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        prepare_images(tmp / "data" / "BENCH")
        # Untimed: the first fit compiles the step and fills torch's on-disk kernel cache, which every
        # later run reuses; without it the first timed run would carry the compilation.
        run_copies("fit", "default", tmp / "data", [tmp / "warmup"])
        for policy in FLAGS.policies:
            for tool in ("fit", "quantize"):  # quantize runs code what the fit runs left in the same folders
                alone_root = tmp / f"{policy}_alone"
                pair_roots = [tmp / f"{policy}_pair{i}" for i in range(2)]
                alone = run_copies(tool, policy, tmp / "data", [alone_root])[0]
                together = run_copies(tool, policy, tmp / "data", pair_roots)
                row = {"tool": tool, "policy": policy, "alone_s": alone, "together_s": together,
                       "share_kept": [alone / t for t in together]}
                rows.append(row)
                print(f"{tool:9s} {policy:8s} alone {alone:7.1f} s | two at once "
                      f"{together[0]:7.1f} s, {together[1]:7.1f} s | share of alone speed kept "
                      f"{row['share_kept'][0]:.2f}, {row['share_kept'][1]:.2f}", flush=True)
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {os.cpu_count()} CPUs")
    if FLAGS.out:
        Path(FLAGS.out).write_text(json.dumps({"rows": rows, "loadavg": load, "images": FLAGS.images,
                                               "factor": FLAGS.factor, "epochs": FLAGS.epochs,
                                               "hidden_dims": FLAGS.hidden_dims}, indent=2))


if __name__ == "__main__":
    app.run(main)
