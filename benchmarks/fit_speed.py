"""Training-step speed of the image fit: steps/s and pixel-steps/s, and the fraction of the
machine's float32 matmul throughput that a step reaches.

Paths measured (each a full forward + backward + Adam step over the whole image):
  eager      the paper's step: encode the coordinates and run the MLP on all pixels every step
  cached     the encoding computed once, forward/backward in row chunks (8192 rows on CPU)
  compiled   cached + torch.compile of the MLP (the default for images of >= 65536 pixels)
  amp        compiled + float16 autocast (CUDA only; changes results slightly)

With --batched K1 K2 ...: images per hour at a fixed step count for the first K Kodak images (landscape
first), fitted in groups of one size at once (batched.fit_many) against one by one (train.fit).

With --compare_old DIR (a checkout of an older main, e.g. `git worktree add /tmp/old_main b577759`):
the fit step of that code against this one in one run, each measurement a fresh subprocess
(PYTHONPATH=DIR/lib or this checkout's lib), old and new alternating, the best of --repeats kept:
one by one eager and compiled (train.fit on the first Kodak image at 1/--factors) and batched
(batched.fit_many on the first --compare_images Kodak images, compiled, in groups of one size).

    python benchmarks/fit_speed.py --image ../shared/data/KODAK/kodim01.png --widths 32 64 128 --factors 1 4
    python benchmarks/fit_speed.py --batched 1 4 24 --factors 4 --widths 32 --steps 30 --compile
    OMP_NUM_THREADS=1 python benchmarks/fit_speed.py --compare_old /tmp/old_main --factors 4 --widths 32
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from inrcompress.config import ModelConfig, TrainConfig
from inrcompress.nn import INR

try:  # this layout, or (in a --compare_old child) that of main <= b577759
    from inrcompress.fit.train import fit
    from inrcompress.signals.grid import coordinate_grid
    from inrcompress.signals.image import image_to_values, load_image
except ImportError:
    from inrcompress.data import coordinate_grid, image_to_values, load_image
    from inrcompress.train import fit


def matmul_gflops(device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    """float32 GEMM throughput of this device (GFLOP/s), the roofline the step is compared to."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e9


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_flops(model: INR, points: int) -> float:
    """Matmul FLOPs of one training step: forward 2*N*in*out per layer, backward twice that."""
    return 3 * sum(2 * points * layer.in_features * layer.out_features for layer in model.layers)


def time_eager(model: INR, coords, values, steps: int) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = ((model(coords) - values) ** 2).mean()
        loss.backward()
        optimizer.step()
        return loss

    step()
    float(step())
    start = time.perf_counter()
    for _ in range(steps):
        step()
    float(step())
    return (time.perf_counter() - start) / (steps + 1)


def time_fit(model: INR, coords, values, steps: int, compiled: bool, amp: bool, device) -> float:
    cfg = TrainConfig(epochs=2, lr=1e-4, compile=compiled, amp=amp)
    fit(model, coords, values, cfg, show_progress=False)  # warm-up (and compilation)
    cfg = TrainConfig(epochs=steps, lr=1e-4, compile=compiled, amp=amp)
    sync(device)
    start = time.perf_counter()
    fit(model, coords, values, cfg, show_progress=False)
    sync(device)
    return (time.perf_counter() - start) / steps


def batched_throughput(kodak: Path, factor: int, width: int, counts: list[int], steps: int, device,
                       compiled: bool, repeats: int = 3, one_by_one_compiled: bool | None = None,
                       measure_one_by_one: bool = True) -> list[dict]:
    """Images per hour at `steps` steps: the first K Kodak images (landscape first, then portrait),
    fitted in groups of one size at once (as overfitINR.py --batch_images K does) vs one by one.

    Each figure is the best of `repeats` timed runs (some processes on the 2-core development machine
    run eager steps 1.7x slower at random; RESULTS.md section 2); compilation is in an untimed warm-up.
    one_by_one_compiled: the one-by-one path (default: the same setting as the batched one).
    """
    try:
        from inrcompress.fit.batched import fit_many
    except ImportError:
        from inrcompress.batched import fit_many

    images = [load_image(p, factor) for p in sorted(kodak.glob("kodim*.png"))]
    images.sort(key=lambda im: im.shape[1] <= im.shape[0])  # landscape first, stable within each kind
    single_compiled = compiled if one_by_one_compiled is None else one_by_one_compiled
    cfg = TrainConfig(epochs=steps, lr=1e-4, compile=compiled)
    single_cfg = TrainConfig(epochs=steps, lr=1e-4, compile=single_compiled)
    rows = []
    for count in counts:
        chosen = images[:count]
        groups: dict = {}
        for im in chosen:
            groups.setdefault(tuple(im.shape[:2]), []).append(im)
        work = [(shape, coordinate_grid(shape).to(device), [image_to_values(im).to(device) for im in members])
                for shape, members in groups.items()]

        def models(n: int) -> list[INR]:
            torch.manual_seed(0)
            return [INR(ModelConfig(hidden_dims=width, ff_dims=16)).to(device) for _ in range(n)]

        def run_batched(config: TrainConfig, work=work) -> None:
            for shape, coords, values in work:  # as overfitINR.py --batch_images calls it
                fit_many(models(len(values)), coords, values, config, [None] * len(values), show_progress=False,
                         grid_shape=shape)

        def run_single(config: TrainConfig, work=work) -> None:
            for _, coords, values in work:
                for model, v in zip(models(len(values)), values):
                    fit(model, coords, v, config, show_progress=False)

        run_batched(TrainConfig(epochs=2, lr=1e-4, compile=compiled))
        if not measure_one_by_one:
            rows.append({"images": len(chosen), "groups": [len(v) for _, _, v in work],
                         "batched_seconds": [timed(run_batched, cfg, device)]})
            continue
        for _, coords, values in work:
            fit(models(1)[0], coords, values[0], TrainConfig(epochs=2, lr=1e-4, compile=single_compiled),
                show_progress=False)
        batched_times, single_times = [], []
        for repeat in range(repeats):  # alternating which goes first, so drifts hit both alike
            if repeat % 2:
                single_times.append(timed(run_single, single_cfg, device))
            batched_times.append(timed(run_batched, cfg, device))
            if not repeat % 2:
                single_times.append(timed(run_single, single_cfg, device))
        batched, single = min(batched_times), min(single_times)
        n_images = len(chosen)
        rows.append({"images": n_images, "groups": [len(v) for _, _, v in work], "factor": factor, "width": width,
                     "steps": steps, "batched_compiled": compiled, "one_by_one_compiled": single_compiled,
                     "batched_images_per_hour": n_images * 3600 / batched,
                     "one_by_one_images_per_hour": n_images * 3600 / single, "speedup": single / batched,
                     "batched_seconds": batched_times, "one_by_one_seconds": single_times})
        r = rows[-1]
        print(f"{n_images:>3} images (groups {r['groups']}) w{width}: batched {r['batched_images_per_hour']:>9.0f} "
              f"img/h, one by one {r['one_by_one_images_per_hour']:>9.0f} img/h at {steps} steps -> "
              f"{r['speedup']:.2f}x", flush=True)
    return rows


COMPARE_PATHS = ("one_by_one_eager", "one_by_one_compiled", "batched_compiled")


def measure_path(path: str, kodak: Path, factor: int, width: int, steps: int, images: int, device) -> float:
    """Seconds per step of one fit path (compilation in an untimed warm-up fit)."""
    if path == "batched_compiled":
        row = batched_throughput(kodak, factor, width, [images], steps, device, compiled=True, repeats=1,
                                 measure_one_by_one=False)[0]
        return row["batched_seconds"][0] / steps
    image = load_image(sorted(kodak.glob("kodim*.png"))[0], factor)
    coords = coordinate_grid(image.shape[:2]).to(device)
    values = image_to_values(image).to(device)
    torch.manual_seed(0)
    model = INR(ModelConfig(hidden_dims=width, ff_dims=16)).to(device)
    return time_fit(model, coords, values, steps, compiled=path.endswith("compiled"), amp=False, device=device)


def compare_old(old_root: Path, args) -> list[dict]:
    """Old vs new code, alternating fresh subprocesses (see the module docstring)."""
    new_lib = Path(__file__).resolve().parents[1] / "lib"
    steps = {"one_by_one_eager": args.steps, "one_by_one_compiled": args.steps,
             "batched_compiled": max(1, args.steps // 10)}
    rows = []
    for path in COMPARE_PATHS:
        times = {"old": [], "new": []}
        for repeat in range(args.repeats):
            for version in (("old", "new") if repeat % 2 == 0 else ("new", "old")):
                lib = old_root / "lib" if version == "old" else new_lib
                env = {**os.environ, "PYTHONPATH": str(lib)}
                command = [sys.executable, __file__, "--child", path, "--kodak", args.kodak,
                           "--factors", str(args.factors[0]), "--widths", str(args.widths[0]),
                           "--steps", str(steps[path]), "--compare_images", str(args.compare_images),
                           "--device", args.device]
                out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
                times[version].append(json.loads(out.strip().splitlines()[-1])["seconds_per_step"])
        old, new = min(times["old"]), min(times["new"])
        rows.append({"path": path, "steps": steps[path], "old_seconds_per_step": old, "new_seconds_per_step": new,
                     "new_vs_old": old / new, "old_all": times["old"], "new_all": times["new"]})
        print(f"{path:>20}: old {old * 1e3:9.2f} ms/step, new {new * 1e3:9.2f} ms/step -> new is "
              f"{old / new:.3f}x the old speed (best of {args.repeats}; all old {[round(t * 1e3, 2) for t in times['old']]}"
              f", new {[round(t * 1e3, 2) for t in times['new']]})", flush=True)
    return rows


def timed(run, config: TrainConfig, device) -> float:
    sync(device)
    start = time.perf_counter()
    run(config)
    sync(device)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="../shared/data/KODAK/kodim01.png")
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--paths", nargs="+", default=["eager", "cached", "compiled", "amp"])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--batched", type=int, nargs="+", help="measure batched fitting of this many images")
    parser.add_argument("--kodak", default="../shared/data/KODAK")
    parser.add_argument("--compile", action="store_true", help="compile the batched and one-by-one steps")
    parser.add_argument("--one_by_one", choices=["same", "compiled", "eager"], default="same",
                        help="the one-by-one path to compare with (default: as --compile)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure (the best is kept)")
    parser.add_argument("--compare_old", help="a checkout of older code to compare the fit step with")
    parser.add_argument("--compare_images", type=int, default=24, help="Kodak images of the batched comparison")
    parser.add_argument("--child", choices=COMPARE_PATHS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if args.child:
        seconds = measure_path(args.child, Path(args.kodak), args.factors[0], args.widths[0], args.steps,
                               args.compare_images, device)
        print(json.dumps({"seconds_per_step": seconds}))
        return 0
    if args.compare_old:
        print(f"old {args.compare_old} vs new, {os.environ.get('OMP_NUM_THREADS', 'default')} OMP threads, "
              f"torch {torch.__version__}, load average {os.getloadavg()}")
        rows = compare_old(Path(args.compare_old), args)
        if args.json:
            Path(args.json).write_text(json.dumps({"compare_old": args.compare_old, "rows": rows}, indent=2))
        return 0
    gflops = matmul_gflops(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device {device} ({name}), {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"float32 matmul {gflops:.0f} GFLOP/s")
    if args.batched:
        rows = []
        for factor in args.factors:
            for width in args.widths:
                single = None if args.one_by_one == "same" else args.one_by_one == "compiled"
                rows += batched_throughput(Path(args.kodak), factor, width, args.batched, args.steps, device,
                                           args.compile, args.repeats, single)
        if args.json:
            Path(args.json).write_text(json.dumps({"device": name, "batched": rows}, indent=2))
        return 0
    rows = []
    header = f"{'factor':>6} {'pixels':>8} {'width':>5} {'path':>9} {'s/step':>8} {'steps/s':>8} " \
             f"{'Mpix-steps/s':>12} {'GFLOP/s':>8} {'roofline':>8} {'vs eager':>8}"
    print(header)
    for factor in args.factors:
        image = load_image(args.image, factor)
        coords = coordinate_grid(image.shape[:2]).to(device)
        values = image_to_values(image).to(device)
        points = coords.shape[0]
        for width in args.widths:
            eager_time = None
            for path in args.paths:
                if path == "amp" and device.type != "cuda":
                    continue
                torch.manual_seed(0)
                model = INR(ModelConfig(hidden_dims=width, ff_dims=16)).to(device)
                if path == "eager":
                    seconds = time_eager(model, coords, values, args.steps)
                    eager_time = seconds
                else:
                    seconds = time_fit(model, coords, values, args.steps, compiled=path in ("compiled", "amp"),
                                       amp=path == "amp", device=device)
                achieved = step_flops(model, points) / seconds / 1e9
                row = {"factor": factor, "pixels": points, "width": width, "path": path, "seconds_per_step": seconds,
                       "steps_per_second": 1 / seconds, "mpixel_steps_per_second": points / seconds / 1e6,
                       "matmul_gflops": achieved, "roofline_fraction": achieved / gflops,
                       "speedup_vs_eager": eager_time / seconds if eager_time else None}
                rows.append(row)
                speedup = f"{row['speedup_vs_eager']:.2f}x" if row["speedup_vs_eager"] else "-"
                print(f"{factor:>6} {points:>8} {width:>5} {path:>9} {seconds:>8.4f} {1 / seconds:>8.2f} "
                      f"{points / seconds / 1e6:>12.2f} {achieved:>8.1f} {achieved / gflops:>8.1%} {speedup:>8}",
                      flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": name, "matmul_gflops": gflops, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
