"""Rate-distortion of the latent-grid codec (issue 18) on Kodak against the classical codecs and the
SIREN curve, and its decode time at full resolution.

    # RD: fit + code every image at every lambda, then the codecs on the same images (rd_codecs.py)
    OMP_NUM_THREADS=1 python benchmarks/rd_latent.py --images kodim01 kodim04 kodim23 --factor 4 \
        --lambdas 0.0005 0.001 0.002 0.004 --preset mac1000 --schedule fast \
        --siren benchmarks/output/curves/basic_bw7.json
    # the same with two points at a time (one process and one thread each; the encode seconds of
    # each point are then measured beside the other)
    python benchmarks/rd_latent.py --factor 2 --images kodim01 kodim02 --jobs 2 --preset mac500
    # decode time: a full-size image coded after a short fit, decoded by decode.py in a fresh
    # one-thread process (the fit's quality does not change the decoder's work per pixel)
    OMP_NUM_THREADS=1 python benchmarks/rd_latent.py --decode_full kodim01 --preset mac2000

Per image and lambda the .inr file goes to <out>/files/, its measurements (bpp from the file, PSNR /
MS-SSIM on the decoded 8-bit image, encode and decode seconds) to <out>/points.json; the curve (mean
over the images per lambda) to <out>/latent_<preset>_<schedule>_<factor>x.json in CompressAI's layout
(evaluate.py and rd_codecs.py --ours read it). Then rd_codecs.run draws the codecs on the same images
and prints BD-rates of the latent curve against each; BD-rate against the SIREN curve(s) given with
--siren (curve files, or inline "name:bpp,psnr;bpp,psnr;..." points) is printed and stored too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import rd_codecs  # noqa: E402  (the codec sweeps, BD tables and plot of benchmarks/rd_codecs.py)
from inrcompress.config import atomic_write_bytes, write_json  # noqa: E402
from inrcompress.errors import InrError  # noqa: E402
from inrcompress.evaluate import bd, codecs, curves  # noqa: E402


def siren_curves(specs: list[str]) -> list[curves.Curve]:
    out = []
    for spec in specs:
        if ":" in spec and not Path(spec).is_file():
            name, points = spec.split(":", 1)
            pairs = [tuple(float(v) for v in p.split(",")) for p in points.split(";") if p]
            out.append(curves.Curve(name, [b for b, _ in pairs], [p for _, p in pairs], source="command line"))
        else:
            out += curves.curves_from_files(curves.expand_paths([spec], what="curve file"))
    return out


def fit_one(task: tuple) -> tuple[bytes, dict, float]:
    """One point, in this process or a worker: (image name, uint8 image, preset, schedule name,
    lambda, seed) -> (file, measurements, load average at the end)."""
    import torch

    from inrcompress.codec.representations.latent import LatentGrid
    from inrcompress.experiments.latent_codec import compress_image_latent
    from inrcompress.fit.latent import schedule_by_name

    torch.set_num_threads(1)
    name, image, preset, schedule_name, rate_lambda, seed = task
    rep = LatentGrid.preset(preset, image.shape[0], image.shape[1], image.shape[2])
    data, info = compress_image_latent(image, rep, rate_lambda, schedule_by_name(schedule_name), seed=seed,
                                       progress=False)
    return data, info, os.getloadavg()[0]


def die_with_parent() -> None:
    """A worker's initializer: on Linux the worker gets SIGTERM when the benchmark process ends (a
    killed run must not leave its workers fitting)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except OSError:  # not glibc Linux: the workers end when their current point does
        pass


def fit_points(args, images) -> list[dict]:
    """Fit and code every missing (image, lambda) point, --jobs at a time (one thread each), writing
    each file and the points file as it finishes."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    out = Path(args.out)
    points_path = out / "points.json"
    points = json.loads(points_path.read_text()) if points_path.is_file() else []
    done = {(p["image"], p["rate_lambda"], p["preset"], p["schedule"]) for p in points}
    tasks = [(name, image, args.preset, args.schedule, rate_lambda, args.seed)
             for rate_lambda in args.lambdas for name, image in images
             if (name, rate_lambda, args.preset, args.schedule) not in done]  # resumable: finished points are kept

    def record(task: tuple, data: bytes, info: dict, load: float) -> None:
        name, _, preset, schedule_name, rate_lambda, _ = task
        atomic_write_bytes(out / "files" / f"{name}_{preset}_{schedule_name}_l{rate_lambda:g}.inr", data)
        point = {"image": name, "rate_lambda": rate_lambda, "preset": preset, "schedule": schedule_name,
                 "load_average": load, "jobs": args.jobs, **{k: v for k, v in info.items() if k not in ("mse",)}}
        points.append(point)
        write_json(points_path, points)
        print(f"{name} lambda {rate_lambda:g}: {info['bpp']:.4f} bpp, PSNR {info['psnr']:.2f} dB "
              f"(fit {info['fit_psnr']:.2f} dB), encode {info['encode_seconds']:.0f} s, load {load:.1f}", flush=True)

    if args.jobs <= 1:
        for task in tasks:
            record(task, *fit_one(task))
    else:
        os.environ["OMP_NUM_THREADS"] = "1"  # the workers inherit it: one thread each (the thread trap)
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=die_with_parent) as pool:
            futures = {pool.submit(fit_one, task): task for task in tasks}
            for future in as_completed(futures):
                record(futures[future], *future.result())
    return [p for p in points if p["preset"] == args.preset and p["schedule"] == args.schedule
            and p["rate_lambda"] in args.lambdas and p["image"] in {n for n, _ in images}]


def curve_file(args, points: list[dict], names: list[str]) -> Path:
    by_lambda: dict[float, list[dict]] = {}
    for p in points:
        by_lambda.setdefault(p["rate_lambda"], []).append(p)
    complete = sorted(lam for lam, ps in by_lambda.items() if len(ps) == len(names))
    mean = lambda lam, key: float(np.mean([p[key] for p in by_lambda[lam]]))  # noqa: E731
    name = f"latent {args.preset} {args.schedule}"
    data = {"name": name,
            "description": f"inrcompress latent grid, preset {args.preset}, schedule {args.schedule}, lambdas "
                           f"{complete}; {len(names)} images at 1/{args.factor}; bpp from the .inr files, metrics on "
                           "the decoded 8-bit images, averaged per image",
            "images": names,
            "results": {"bpp": [mean(lam, "bpp") for lam in complete], "psnr-rgb": [mean(lam, "psnr") for lam in complete],
                        "ms-ssim-rgb": [mean(lam, "ms_ssim") for lam in complete], "rate_lambda": complete,
                        "encoding_time": [mean(lam, "encode_seconds") for lam in complete],
                        "decoding_time": [mean(lam, "decode_seconds") for lam in complete]}}
    path = Path(args.out) / f"latent_{args.preset}_{args.schedule}_{args.factor}x.json"
    write_json(path, data)
    return path


def decode_full(args) -> dict:
    """Code a full-size image after a short fit and time decode.py on it in a fresh process."""
    import torch

    from inrcompress.codec.representations.latent import LatentGrid
    from inrcompress.experiments.latent_codec import compress_image_latent
    from inrcompress.fit.latent import LatentSchedule
    from inrcompress.signals.image import load_image

    image = load_image(Path(args.kodak) / f"{args.decode_full}.png")
    rep = LatentGrid.preset(args.preset, image.shape[0], image.shape[1], image.shape[2])
    path = Path(args.out) / "files" / f"{args.decode_full}_full_{args.preset}.inr"
    if args.reuse_file and path.is_file():  # time the decoder again on the file of an earlier run
        from inrcompress.experiments.image_codec import measure_decoded

        data = path.read_bytes()
        info = measure_decoded(data, image)
    else:
        schedule = LatentSchedule("decode-timing", iterations=args.decode_iterations, noise_fraction=0.5,
                                  eval_every=max(1, args.decode_iterations // 4))
        data, info = compress_image_latent(image, rep, args.lambdas[0], schedule, progress=True)
        atomic_write_bytes(path, data)
    runs = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        usage = os.times()
        done = subprocess.run([sys.executable, str(REPO / "image_compression" / "decode.py"), str(path),
                               str(path.with_suffix(".png"))], capture_output=True, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        after = os.times()
        if done.returncode:
            raise InrError(done.stderr.strip())
        runs.append({"wall_seconds": time.perf_counter() - started,
                     "cpu_seconds": after.children_user + after.children_system - usage.children_user
                     - usage.children_system, "decode_py_line": done.stdout.strip(),
                     "load_average": os.getloadavg()[0]})
        print(runs[-1], flush=True)
    # In process: the stages of decoding (header + parameters, latents, synthesis).
    from inrcompress.codec import latent_coding
    from inrcompress.codec.compress import decode_image, decode_network

    torch.set_num_threads(1)
    started = time.perf_counter()
    header, model = decode_network(data)
    network_seconds = time.perf_counter() - started
    started = time.perf_counter()
    latent_coding.decode_latents(header.latent_stream, rep.grid_shapes(), model.fixed_point_arm())
    latent_seconds = time.perf_counter() - started
    started = time.perf_counter()
    decode_image(data)
    whole_seconds = time.perf_counter() - started
    return {"image": args.decode_full, "size": f"{image.shape[1]}x{image.shape[0]}", "preset": args.preset,
            "macs_per_pixel": rep.macs_per_point(), "bytes": len(data), "bpp": info["bpp"], "psnr": info["psnr"],
            "fit_iterations": None if args.reuse_file else args.decode_iterations, "decode_py_runs": runs,
            "in_process_seconds": {"decode_image": whole_seconds, "decode_network_with_latents": network_seconds,
                                   "latents_alone": latent_seconds},
            "wavefronts": int(len(latent_coding.GridLayout(rep.grid_shapes(), latent_coding.context_offsets(
                rep.arm_context)).wave_bounds) - 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kodak", default=str(rd_codecs.DEFAULT_KODAK))
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--images", nargs="+", metavar="NAME", help="default: all 24")
    parser.add_argument("--lambdas", nargs="+", type=float, default=[0.0005, 0.001, 0.002, 0.004])
    parser.add_argument("--preset", default="mac1000")
    parser.add_argument("--schedule", default="fast")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="points fitted at once, each in its own one-thread process")
    parser.add_argument("--siren", nargs="+", default=[], help="SIREN curve files, or name:bpp,psnr;bpp,psnr;...")
    parser.add_argument("--codecs", nargs="+", default=["jpeg2000", "webp", "avif"], choices=list(codecs.CODECS))
    parser.add_argument("--no_ms_ssim", action="store_true")
    parser.add_argument("--decode_full", metavar="NAME", help="time decoding this full-size Kodak image instead")
    parser.add_argument("--decode_iterations", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reuse_file", action="store_true", help="--decode_full: time the file an earlier run wrote")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "output" / "rd_latent"))
    args = parser.parse_args(argv)
    try:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        if args.decode_full:
            result = decode_full(args)
            write_json(Path(args.out) / f"decode_full_{args.decode_full}_{args.preset}.json", result)
            print(json.dumps(result, indent=1))
            return 0
        return run(args)
    except InrError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def run(args) -> int:
    images = codecs.load_dataset_images(Path(args.kodak), args.factor, args.images)
    names = [name for name, _ in images]
    started = time.perf_counter()
    points = fit_points(args, images)
    fit_seconds = time.perf_counter() - started
    ours = curve_file(args, points, names)
    latent = curves.load_curve(ours)
    sirens = siren_curves(args.siren)
    rows = []
    for siren in sirens:
        for metric in ("psnr",):
            try:
                row = bd.bd_compare(siren, latent, metric)
            except InrError as e:
                print(f"BD vs {siren.name}: {e}")
                continue
            rows.append(row)
            print("  " + bd.format_bd(row))
    codec_args = ["--kodak", args.kodak, "--factor", str(args.factor), "--codecs", *args.codecs, "--ours", str(ours),
                  "--out", str(Path(args.out) / "codecs"), "--max_bpp", "2.5", "--images", *names]
    if args.no_ms_ssim:
        codec_args.append("--no_ms_ssim")
    parser_args = rd_codecs_args(codec_args)
    code = rd_codecs.run(parser_args)
    write_json(Path(args.out) / f"summary_{args.preset}_{args.schedule}_{args.factor}x.json",
               {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "images": names,
                "curve": str(ours), "bd_vs_siren": rows, "fit_seconds_this_run": fit_seconds,
                "codec_summary": str(Path(args.out) / "codecs" / "summary.json")})
    return code


def rd_codecs_args(argv: list[str]):
    """rd_codecs.py's parsed arguments for argv (its parser, so its defaults apply)."""
    captured = {}
    original = rd_codecs.run
    rd_codecs.run = lambda parsed: captured.setdefault("args", parsed) and 0
    try:
        rd_codecs.main(argv)
    finally:
        rd_codecs.run = original
    return captured["args"]


if __name__ == "__main__":
    sys.exit(main())
