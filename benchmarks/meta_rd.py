"""Meta-learned initialization on real photographs, small enough for a 2-core CPU.

Data: the 24 Kodak images (sorted by name) at --downscaling_factor 8 (96x64 landscape; the portrait
ones are turned, as everything a meta-learned model sees): kodim01-16 meta-train, kodim17-20 meta-
validation, kodim21-24 test. They are linked into a work folder as KODAKMETA/{train,val}/ and
KODAKTEST/ and every step runs through the package's tools (trainMetaSiren, overfitMetaSiren,
overfitINR, quantize_and_test), so this is what a user would run.

Phases (each can be left out):
  speed   one second-order outer step (3 inner steps) on B images: vmap'ed batch vs Python loop,
          interleaved, min wall time and median process CPU time
  meta    trainMetaSiren on KODAKMETA
  curve   PSNR of the 4 test images after N Adam steps (lr 5e-4, no warm-up, no L1) from the MAML init
          (after its inner steps) and from a random init (seed 0): N = 0, 10, 100, ...
  rd      overfitMetaSiren vs overfitINR on the test images (same epochs, lr, l1_reg), then
          quantize_and_test at --bitwidth with reduced AdaRound / QAT: one RD point each

    python benchmarks/meta_rd.py --json benchmarks/output/meta_rd.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from inrcompress.config import ModelConfig, TrainConfig, basic_experiment_name, maml_experiment_name
from inrcompress.signals.grid import coordinate_grid
from inrcompress.signals.image import image_to_values, list_images, load_image, to_landscape
from inrcompress.evaluate.metrics import psnr_from_mse
from inrcompress.fit.meta import MetaSGD, load_maml_obj
from inrcompress.nn import INR
from inrcompress.fit.train import fit


def link_split(kodak: Path, work: Path) -> Path:
    images = sorted(kodak.glob("kodim*.png"))
    if len(images) != 24:
        raise SystemExit(f"expected the 24 Kodak images in {kodak}, found {len(images)}")
    root = work / "data"
    for folder, chosen in (("KODAKMETA/train", images[:16]), ("KODAKMETA/val", images[16:20]),
                           ("KODAKTEST", images[20:])):
        target = root / folder
        target.mkdir(parents=True, exist_ok=True)
        for path in chosen:
            link = target / path.name
            if not link.exists():
                link.symlink_to(path.resolve())
    return root


def speed(factor: int, width: int, batches: list[int], repeats: int, kodak: Path) -> list[dict]:
    rows = []
    images = [to_landscape(load_image(p, factor))[0] for p in sorted(kodak.glob("kodim*.png"))[:max(batches)]]
    height, wid = images[0].shape[:2]
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for batch in batches:
            torch.manual_seed(0)
            meta = MetaSGD(INR(ModelConfig(hidden_dims=width)), 3, "per_parameter_per_step", 1e-5)
            features = meta.model.encode(coordinate_grid((height, wid))).detach()
            targets = torch.stack([image_to_values(im) for im in images[:batch]])
            wall = {True: [], False: []}
            cpu = {True: [], False: []}
            for vectorize in (True, False):  # warm-up
                meta.zero_grad()
                meta.meta_backward(features, targets, vectorize=vectorize)
            for _ in range(repeats):
                for vectorize in (True, False):
                    meta.zero_grad()
                    w, c = time.perf_counter(), time.process_time()
                    meta.meta_backward(features, targets, vectorize=vectorize)
                    wall[vectorize].append(time.perf_counter() - w)
                    cpu[vectorize].append(time.process_time() - c)
            row = {"threads": threads, "batch": batch, "pixels": height * wid, "width": width,
                   "vmap_wall_min_s": min(wall[True]), "loop_wall_min_s": min(wall[False]),
                   "vmap_cpu_median_s": statistics.median(cpu[True]),
                   "loop_cpu_median_s": statistics.median(cpu[False])}
            rows.append(row)
            print(f"speed: {threads} thread(s), B={batch}, {height}x{wid} px, h{width}: vmap {row['vmap_wall_min_s']:.3f} s "
                  f"wall / {row['vmap_cpu_median_s']:.3f} s CPU, loop {row['loop_wall_min_s']:.3f} s wall / "
                  f"{row['loop_cpu_median_s']:.3f} s CPU", flush=True)
    return rows


def psnr_curves(meta_obj: Path, data_root: Path, factor: int, steps: list[int], lr: float) -> dict:
    meta = load_maml_obj(meta_obj)
    # losses[k] of a fit is the loss of the parameters after k updates: max(steps) + 1 epochs.
    cfg = TrainConfig(epochs=max(steps) + 1, lr=lr, patience=10 ** 6, early_stop_epochs=10 ** 6)
    out = {"maml": {}, "random": {}, "maml_init_without_inner_steps": {}}
    for path in list_images(data_root / "KODAKTEST"):
        image = to_landscape(load_image(path, factor))[0]
        coords = coordinate_grid(image.shape[:2])
        values = image_to_values(image)
        features = meta.model.encode(coords).detach()
        adapted, _ = meta.adapt(features, values)
        torch.manual_seed(0)
        random_init = INR(meta.model.cfg)
        for name, model in (("maml", adapted), ("random", random_init)):
            curve = [psnr_from_mse(v / 4) for v in fit(model, coords, values, cfg, None, show_progress=False).losses]
            out[name][path.stem] = {n: curve[n] for n in (0, *steps)}
        with torch.no_grad():
            init_mse = float(((meta.model(coords) - values) ** 2).mean())
        out["maml_init_without_inner_steps"][path.stem] = psnr_from_mse(init_mse / 4)
    summary = {}
    for name in ("maml", "random"):
        summary[name] = {n: statistics.mean(v[n] for v in out[name].values()) for n in next(iter(out[name].values()))}
    summary["maml_init_without_inner_steps"] = statistics.mean(out["maml_init_without_inner_steps"].values())
    return {"per_image": out, "mean": summary}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kodak", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "KODAK"))
    parser.add_argument("--work", default="benchmarks/output/meta_rd", help="data links and experiments")
    parser.add_argument("--phases", nargs="+", default=["speed", "meta", "curve", "rd"])
    parser.add_argument("--downscaling_factor", type=int, default=8)
    parser.add_argument("--hidden_dims", type=int, default=32)
    parser.add_argument("--maml_epochs", type=int, default=30)
    parser.add_argument("--maml_batch_size", type=int, default=1)
    parser.add_argument("--outer_lr", type=float, default=5e-4)
    parser.add_argument("--inner_lr", type=float, default=1e-5)
    parser.add_argument("--lr_type", default="per_parameter_per_step")
    parser.add_argument("--maml_val_every", type=int, default=80)
    parser.add_argument("--curve_steps", type=int, nargs="+", default=[10, 100, 300])
    parser.add_argument("--epochs", type=int, default=500, help="fitting epochs of the RD point (both inits)")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--l1_reg", type=float, default=1e-5)
    parser.add_argument("--bitwidth", type=int, default=7)
    parser.add_argument("--adaround_iterations", type=int, default=100)
    parser.add_argument("--retrain_epochs", type=int, default=50)
    parser.add_argument("--speed_batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--speed_repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: on a busy 2-core machine two threads wait on each other)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from inrcompress.tools.overfit_inr import main as overfit_main
    from inrcompress.tools.overfit_meta_siren import main as overfit_meta_main
    from inrcompress.tools.quantize_and_test import main as quantize_main
    from inrcompress.tools.train_meta_siren import main as train_meta_main

    started = time.perf_counter()
    work = Path(args.work)
    data_root = link_split(Path(args.kodak), work)
    exp_root = work / "exp"
    f = args.downscaling_factor
    maml = ["--maml_dataset=KODAKMETA", f"--maml_epochs={args.maml_epochs}", f"--maml_batch_size={args.maml_batch_size}",
            f"--outer_lr={args.outer_lr}", f"--inner_lr={args.inner_lr}", f"--lr_type={args.lr_type}"]
    arch = [f"--hidden_dims={args.hidden_dims}", "--hidden_layers=3", "--ff_dims=16", f"--downscaling_factor={f}",
            "--device=cpu", f"--data_root={data_root}", f"--exp_root={exp_root}"]
    results = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "threads":
               torch.get_num_threads(), "torch": torch.__version__, "args": vars(args), "command": sys.argv}

    if "speed" in args.phases:
        results["speed"] = speed(f, args.hidden_dims, args.speed_batches, args.speed_repeats, Path(args.kodak))
        torch.set_num_threads(args.threads)
    if "meta" in args.phases or "curve" in args.phases or "rd" in args.phases:
        t = time.perf_counter()
        code = train_meta_main([*maml, *arch, f"--maml_val_every={args.maml_val_every}", "--steps_til_summary=100"],
                               show_progress=False)
        if code:
            return code
        init_dir = next(p for p in (exp_root / "maml").iterdir() if p.name.startswith("MAML_KODAKMETA_"))
        results["meta"] = {"folder": init_dir.name, "seconds": time.perf_counter() - t,
                           **{k: v for k, v in json.loads((init_dir / "maml_result.json").read_text()).items()
                              if k != "history"}}
        print(f"meta-training: {results['meta']}", flush=True)
    if "curve" in args.phases:
        results["curve"] = psnr_curves(init_dir / "maml_obj.pth", data_root, f, args.curve_steps, args.lr)
        print(f"PSNR after N steps (mean of the 4 test images): {json.dumps(results['curve']['mean'])}", flush=True)
    if "rd" in args.phases:
        fit_flags = [f"--epochs={args.epochs}", f"--lr={args.lr}", f"--l1_reg={args.l1_reg}", "--dataset=KODAKTEST"]
        t = time.perf_counter()
        assert overfit_meta_main([*maml, *arch, *fit_flags, "--warmup=100"], show_progress=False) == 0
        t_meta = time.perf_counter() - t
        t = time.perf_counter()
        assert overfit_main([*arch, *fit_flags], show_progress=False) == 0
        t_basic = time.perf_counter() - t
        flag_dict = {"dataset": "KODAKTEST", "downscaling_factor": f, "epochs": args.epochs, "lr": args.lr,
                     "l1_reg": args.l1_reg, "ff_dims": 16, "hidden_dims": args.hidden_dims, "hidden_layers": 3,
                     "encoding": "nerf", "activation": "sine", "encoding_scale": 1.4,
                     "maml_batch_size": args.maml_batch_size, "outer_lr": args.outer_lr, "inner_lr": args.inner_lr,
                     "lr_type": args.lr_type, "maml_epochs": args.maml_epochs, "maml_adaptation_steps": 3}
        names = {"meta": maml_experiment_name(flag_dict), "basic": basic_experiment_name(flag_dict)}
        quant = [f"--bitwidth={args.bitwidth}", f"--adaround_iterations={args.adaround_iterations}",
                 f"--retrain_epochs={args.retrain_epochs}", "--dataset=KODAKTEST", f"--data_root={data_root}",
                 f"--exp_root={exp_root}", "--device=cpu"]
        results["rd"] = {}
        for kind, name in names.items():
            t = time.perf_counter()
            assert quantize_main([*quant, f"--exp_glob={name}"]) == 0
            tag = (f"arithmetic_bw{args.bitwidth}_adaround_iter_{args.adaround_iterations}_adaround_reg_0.0001"
                   f"_retrain_epochs{args.retrain_epochs}_retrain_lr1e-06")
            summary = json.loads((exp_root / name / f"results_{tag}.json").read_text())
            fitted = json.loads((exp_root / name / "result.json").read_text())
            results["rd"][kind] = {"experiment": name, "fit_seconds": t_meta if kind == "meta" else t_basic,
                                   "quantize_seconds": time.perf_counter() - t, "psnr_before_quantization":
                                   fitted["avg_psnr"], **summary["results"]}
            print(f"RD {kind}: {json.dumps(results['rd'][kind])}", flush=True)
    results["total_seconds"] = time.perf_counter() - started
    print(f"total {results['total_seconds']:.0f} s")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
