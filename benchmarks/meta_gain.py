"""Does the paper's meta-learning gain reproduce at CPU scale? Meta-learned vs random init, held-out Kodak.

The paper (Strumpler et al. 2022, Fig. 4, full Kodak): fitted from a meta-learned init, 7-bit models
reach 30.09 dB at 0.5 bpp where 8-bit models fitted from random weights reach 29.61 dB. This script runs
the comparison on the data this machine has, through the package's tools (what a user would run):

  data      Kodak at 1/--factor (4: 192x128 landscape) split by name: --test images (held out from
            meta-training, the only ones compressed), --val images (meta-validation: schedule, best state,
            early stop), the other Kodak images (the first --train_images of them) plus --photos
            (scikit-image photographs, centre-cropped to 3:2 and resized to Kodak's 768x512) meta-train.
            Linked / written under WORK/data/KODAKMETA<N>/{train,val} and WORK/data/KODAKTEST.
  meta      trainMetaSiren per (--lr_types, --widths): up to --max_outer_steps second-order outer steps
            (batch 1, 3 inner steps, --outer_lr), validated every --val_every, stopped once the best
            validation is --early_stop steps old (--maml_early_stop).
  fit       overfitINR (random init) and overfitMetaSiren (meta init, warm-up 100) on the test images, the
            same --epochs, --lr and --l1_reg (L1 on theta resp. theta - theta_0: the paper's losses).
  quantize  quantize_and_test at --bits with AdaRound + QAT (paper settings unless told) and our coder;
            the meta files code theta - theta_0.
  analyze   RD points (means over the test images), BD-rates with pchip (inrcompress.evaluate.bd) of each
            curve against basic 8-bit, the convergence curve (PSNR of the fits' data term vs step, read
            from their TensorBoard files), and what the coded tensors look like (their spread, the
            step sizes the quantizer picked, the zeroth-order entropy of their symbols against the coded
            size, the coder's model, the L1 term's share of the loss, the warm-up). Plots with --plots.
  trend     (only when asked) the gain at width --trend_width against the number of meta-training
            images (--trend_images) and of outer steps (the step snapshots of the main run, --trend_steps).
  l1        (only when asked) both inits refitted at --trend_width with each of --l1_values (the paper's
            weight is 1e-5 for both: L1 on theta, resp. on theta - theta_0), quantized at --bits.

    OMP_NUM_THREADS=1 python benchmarks/meta_gain.py --bits 6 7 8 --other_lr_widths 16 32 --plots
    OMP_NUM_THREADS=1 python benchmarks/meta_gain.py --quick        # a tiny run of every phase (seconds)

Every phase reuses what an earlier run left in WORK (the tools skip finished work), so a run can be
continued phase by phase; --phases analyze re-reads the results only.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

KODAK_SIZE = (512, 768)  # (H, W) of a landscape Kodak image
BASIC = "basic"
QUICK = {"factor": 16, "widths": [8, 12], "lr_types": ["per_parameter_per_step", "per_parameter"],
         "other_lr_widths": [8], "max_outer_steps": 24, "val_every": 4, "early_stop": 8, "epochs": 40,
         "adaround_iterations": 20, "retrain_epochs": 5, "photos": ["chelsea"], "trend_images": [2],
         "trend_steps": [8], "trend_width": 8, "steps_til_summary": 8}


def parse(argv: list[str] | None) -> argparse.Namespace:
    here = Path(__file__).resolve()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kodak", default=str(here.parents[2] / "shared" / "data" / "KODAK"))
    parser.add_argument("--work", default="benchmarks/output/meta_gain", help="data links, experiments, plots")
    parser.add_argument("--phases", nargs="+", default=["data", "meta", "fit", "quantize", "analyze"],
                        choices=["data", "meta", "fit", "quantize", "analyze", "trend", "l1"])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and step counts: checks every phase runs")
    parser.add_argument("--factor", type=int, default=4, help="Kodak downscaling factor")
    parser.add_argument("--test", nargs="+", default=["kodim01", "kodim04", "kodim08", "kodim14", "kodim19", "kodim23"])
    parser.add_argument("--val", nargs="+", default=["kodim02", "kodim12", "kodim20"])
    parser.add_argument("--train_images", type=int, default=0, help="Kodak meta-training images (0: all the others)")
    parser.add_argument("--photos", nargs="*", default=["astronaut", "chelsea", "coffee", "rocket"],
                        help="scikit-image photographs added to meta-training")
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 24, 32])
    parser.add_argument("--lr_types", nargs="+", default=["per_parameter_per_step", "per_parameter"],
                        help="the first is the paper's; the others run at --other_lr_widths")
    parser.add_argument("--other_lr_widths", type=int, nargs="*", default=None,
                        help="widths of the lr types after the first (default: all --widths)")
    parser.add_argument("--max_outer_steps", type=int, default=2000)
    parser.add_argument("--val_every", type=int, default=50)
    parser.add_argument("--early_stop", type=int, default=500, help="outer steps without a better validation")
    parser.add_argument("--steps_til_summary", type=int, default=250, help="outer steps between init snapshots")
    parser.add_argument("--outer_lr", type=float, default=5e-4)
    parser.add_argument("--inner_lr", type=float, default=1e-5)
    parser.add_argument("--epochs", type=int, default=2000, help="fitting steps of both inits")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--l1_reg", type=float, default=1e-5)
    parser.add_argument("--bits", type=int, nargs="+", default=[7, 8])
    parser.add_argument("--adaround_iterations", type=int, default=1000)
    parser.add_argument("--retrain_epochs", type=int, default=300)
    parser.add_argument("--trend_width", type=int, default=16)
    parser.add_argument("--trend_images", type=int, nargs="*", default=[5, 10])
    parser.add_argument("--trend_steps", type=int, nargs="*", default=[250, 750])
    parser.add_argument("--l1_values", type=float, nargs="*", default=[0.0, 1e-4],
                        help="phase l1: the L1 weights (besides --l1_reg) both inits are refitted with at --trend_width")
    parser.add_argument("--curve_updates", type=int, nargs="+", default=[0, 10, 50, 100, 200, 500, 1000, 1999],
                        help="Adam updates at which the convergence table gives the fit's PSNR")
    parser.add_argument("--plots", action="store_true", help="write WORK/rd.png and WORK/convergence.png")
    parser.add_argument("--json", help="write the results here (default WORK/meta_gain.json)")
    args = parser.parse_args(argv)
    if args.quick:
        defaults = {a.dest: a.default for a in parser._actions}
        for key, value in QUICK.items():
            if getattr(args, key) == defaults[key]:
                setattr(args, key, value)
        if args.test == defaults["test"]:
            args.test, args.val = ["kodim01", "kodim04"], ["kodim02"]
        args.curve_updates = [s for s in args.curve_updates if s < args.epochs] or [0]
    if args.other_lr_widths is None:
        args.other_lr_widths = list(args.widths)
    return args


# ------------------------------------------------------------------------------------------------
# data

def photo_as_kodak(name: str) -> np.ndarray:
    """A scikit-image photograph centre-cropped to Kodak's 3:2 and resized to 768x512 (landscape)."""
    from PIL import Image
    from skimage import data as skdata

    picture = getattr(skdata, name)()
    if picture.ndim == 2:
        picture = np.repeat(picture[:, :, None], 3, axis=2)
    picture = picture[:, :, :3]
    h, w = picture.shape[:2]
    if h > w:
        picture, (h, w) = np.rot90(picture), (w, h)
    target = KODAK_SIZE[1] / KODAK_SIZE[0]
    if w / h > target:
        keep = round(h * target)
        picture = picture[:, (w - keep) // 2:(w - keep) // 2 + keep]
    else:
        keep = round(w / target)
        picture = picture[(h - keep) // 2:(h - keep) // 2 + keep]
    return np.asarray(Image.fromarray(np.ascontiguousarray(picture)).resize(KODAK_SIZE[::-1], Image.LANCZOS))


def link(path: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if not target.exists():
        target.symlink_to(path.resolve())


def prepare_data(args, work: Path, train_images: int) -> str:
    """The meta-dataset folder (train/ and val/) with `train_images` Kodak training images (0: all but
    test and val) and the photos; KODAKTEST. Returns the dataset's name."""
    from PIL import Image

    kodak = sorted(Path(args.kodak).glob("kodim*.png"))
    names = {p.stem: p for p in kodak}
    missing = [n for n in args.test + args.val if n not in names]
    if missing:
        raise SystemExit(f"error: {missing} not found in {args.kodak}")
    if set(args.test) & set(args.val):
        raise SystemExit("error: --test and --val overlap")
    train = [p for p in kodak if p.stem not in args.test + args.val]
    if train_images:
        train = train[:train_images]
    dataset = f"KODAKMETA{len(train)}" + (f"P{len(args.photos)}" if args.photos else "")
    root = work / "data"
    for p in train:
        link(p, root / dataset / "train")
    for n in args.val:
        link(names[n], root / dataset / "val")
    for n in args.test:
        link(names[n], root / "KODAKTEST")
    photos = root / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    for name in args.photos:
        path = photos / f"zz_{name}.png"  # after the Kodak names: the first training image sets the size
        if not path.exists():
            Image.fromarray(photo_as_kodak(name)).save(path)
        link(path, root / dataset / "train")
    return dataset


# ------------------------------------------------------------------------------------------------
# running the tools

def run_tool(main, argv: list[str]) -> None:
    code = main(argv, show_progress=False)
    if code:
        raise SystemExit(f"error: {main.__module__} {' '.join(argv)} exited with {code}")


def common_flags(args, width: int, data_root: Path, exp_root: Path) -> list[str]:
    return [f"--hidden_dims={width}", "--hidden_layers=3", "--ff_dims=16", f"--downscaling_factor={args.factor}",
            "--device=cpu", f"--data_root={data_root}", f"--exp_root={exp_root}"]


def maml_flags(args, dataset: str, lr_type: str, train_count: int) -> list[str]:
    epochs = max(1, math.ceil(args.max_outer_steps / train_count))
    return [f"--maml_dataset={dataset}", f"--maml_epochs={epochs}", "--maml_batch_size=1", f"--outer_lr={args.outer_lr}",
            f"--inner_lr={args.inner_lr}", f"--lr_type={lr_type}"]


def fit_flags(args) -> list[str]:
    return [f"--epochs={args.epochs}", f"--lr={args.lr}", f"--l1_reg={args.l1_reg}", "--dataset=KODAKTEST",
            f"--steps_til_summary={args.epochs}", f"--epochs_til_ckpt={args.epochs}"]


def quant_flags(args, bits: int, exp_name: str, data_root: Path, exp_root: Path) -> list[str]:
    return [f"--bitwidth={bits}", f"--adaround_iterations={args.adaround_iterations}",
            f"--retrain_epochs={args.retrain_epochs}", "--dataset=KODAKTEST", f"--data_root={data_root}",
            f"--exp_root={exp_root}", "--device=cpu", f"--exp_glob={exp_name}"]


def only_experiment(exp_root: Path, marker: str) -> Path:
    found = [p for p in exp_root.iterdir() if p.is_dir() and (p / "FLAGS.yml").is_file() and (marker in p.name)]
    if len(found) != 1:
        raise SystemExit(f"error: expected one experiment matching {marker} in {exp_root}, found {found}")
    return found[0]


class Run:
    """One compared configuration: basic (random init) or meta (an lr type and its meta-dataset) at a width."""

    def __init__(self, args, work: Path, kind: str, width: int, dataset: str = "", train_count: int = 0,
                 label: str | None = None, snapshot: Path | None = None):
        self.args, self.kind, self.width, self.dataset, self.train_count = args, kind, width, dataset, train_count
        self.label = label or kind
        self.data_root = work / "data"
        self.exp_root = work / "exp" / self.label / f"w{width}"
        self.snapshot = snapshot  # (maml_obj, model_maml) step files of another run, used as this run's init

    @property
    def is_meta(self) -> bool:
        return self.kind != BASIC

    def flags(self) -> list[str]:
        meta = maml_flags(self.args, self.dataset, self.kind, self.train_count) if self.is_meta else []
        return [*meta, *common_flags(self.args, self.width, self.data_root, self.exp_root)]

    def init_folder(self) -> Path:
        maml = self.exp_root / "maml"
        found = [p for p in maml.iterdir() if p.is_dir()] if maml.is_dir() else []
        if len(found) != 1:
            raise SystemExit(f"error: expected one meta-learned init in {maml}, found {found}")
        return found[0]

    def meta_train(self) -> dict:
        from inrcompress.tools.train_meta_siren import main as train_meta_main

        if self.snapshot is not None:
            return self.install_snapshot()
        started = time.perf_counter()
        run_tool(train_meta_main, [*self.flags(), f"--maml_val_every={self.args.val_every}",
                                   f"--maml_early_stop={self.args.early_stop}",
                                   f"--steps_til_summary={self.args.steps_til_summary}"])
        result = json.loads((self.init_folder() / "maml_result.json").read_text())
        result.setdefault("wall_seconds_this_call", time.perf_counter() - started)
        return result

    def install_snapshot(self) -> dict:
        """An init folder (named as trainMetaSiren would) holding another run's step snapshot."""
        from inrcompress.config import maml_init_folder
        from inrcompress.fit.meta import MAML_INIT_FILE, MAML_OBJ_FILE
        from inrcompress.tools.train_meta_siren import build_flags
        from inrcompress.tools import flags as inr_flags

        values = inr_flags.parse_values(build_flags(), self.flags(), "trainMetaSiren.py")
        folder = maml_init_folder(values)
        folder.mkdir(parents=True, exist_ok=True)
        obj, init = self.snapshot
        shutil.copyfile(obj, folder / MAML_OBJ_FILE)
        shutil.copyfile(init, folder / MAML_INIT_FILE)
        return {"snapshot": str(obj)}

    def fit(self) -> Path:
        from inrcompress.tools.overfit_inr import main as overfit_main
        from inrcompress.tools.overfit_meta_siren import main as overfit_meta_main

        run_tool(overfit_meta_main if self.is_meta else overfit_main, [*self.flags(), *fit_flags(self.args)])
        return self.experiment()

    def experiment(self) -> Path:
        return only_experiment(self.exp_root, f"_epochs{self.args.epochs}_")

    def quantize(self) -> None:
        from inrcompress.tools.quantize_and_test import main as quantize_main

        for bits in self.args.bits:
            code = quantize_main(quant_flags(self.args, bits, self.experiment().name, self.data_root, self.exp_root))
            if code:
                raise SystemExit(f"error: quantize_and_test exited with {code}")

    def tag(self, bits: int) -> str:
        from inrcompress.codec.compress import QuantConfig

        return QuantConfig(bitwidth=bits, adaround_iterations=self.args.adaround_iterations,
                           retrain_epochs=self.args.retrain_epochs).tag

    def results(self, bits: int) -> dict:
        path = self.experiment() / f"results_arithmetic_{self.tag(bits)}.json"
        return json.loads(path.read_text())


# ------------------------------------------------------------------------------------------------
# analysis

def event_scalars(run_dir: Path) -> dict[str, np.ndarray]:
    """{tag: values by step} of a fit's TensorBoard files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "summaries"), size_guidance={"scalars": 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags()["scalars"]:
        events = sorted(acc.Scalars(tag), key=lambda e: e.step)
        out[tag] = (np.array([e.step for e in events]), np.array([e.value for e in events]))
    return out


def convergence(run: Run, updates: list[int]) -> dict:
    """PSNR (dB) of the fit after k Adam updates, from the data term it logged (the MSE of the
    parameters before each step's update: k = 0 is the start, after MAML's inner steps for a meta
    run), mean over the test images; the L1 term's share of the loss at the end; the lowest PSNR of
    the first 100 updates (a dip below the start: the warm-up and Adam's first steps undoing the init)."""
    from inrcompress.evaluate.metrics import psnr_from_mse

    curves, l1_share = [], []
    for run_dir in sorted(p for p in run.experiment().iterdir() if (p / "summaries").is_dir()):
        scalars = event_scalars(run_dir)
        mse = scalars["img_loss"][1]
        curves.append(np.array([psnr_from_mse(float(v) * 0.25) for v in mse]))
        if "l1_loss" in scalars:
            l1 = float(scalars["l1_loss"][1][-1])
            l1_share.append(l1 / (l1 + float(mse[-1])))
    mean = np.mean([c[:min(map(len, curves))] for c in curves], axis=0)
    dense = sorted({0, *np.unique(np.geomspace(1, len(mean), 40).astype(int) - 1).tolist()})
    return {"updates": updates, "psnr": [float(mean[min(k, len(mean) - 1)]) for k in updates],
            "dense_updates": dense, "dense_psnr": [float(mean[k]) for k in dense],
            "min_psnr_first_100_updates": float(mean[:101].min()),
            "l1_share_of_loss_at_end": float(np.mean(l1_share)) if l1_share else None}


def entropy_bits(symbols: np.ndarray) -> float:
    """Zeroth-order empirical entropy of the symbols, in bits for all of them."""
    _, counts = np.unique(symbols, return_counts=True)
    p = counts / counts.sum()
    return float(-(counts * np.log2(p)).sum())


def tensor_diagnostics(run: Run, bits: int) -> dict:
    """What was coded, per tensor, averaged over the test images: RMS of the coded values (theta, or
    theta - theta_0), the picked step / RMS, the share of symbols at 0, kurtosis; bits per parameter:
    zeroth-order entropy of the symbols (sum over tensors), the file's payload, and for a meta run the
    entropy had theta itself been coded (nearest rounding at the same bits)."""
    from inrcompress.codec.container import read_inr
    from inrcompress.codec.quant import nearest_quantization
    from inrcompress.fit.engine import load_checkpoint

    tag = f"arithmetic_{run.tag(bits)}"
    exp = run.experiment()
    theta_0 = load_checkpoint(exp / "model_maml.pth") if run.is_meta else None
    rows = []
    for run_dir in sorted(p for p in exp.iterdir() if (p / f"compressed_{tag}.inr").is_file()):
        header, symbols = read_inr((run_dir / f"compressed_{tag}.inr").read_bytes())
        metrics = yaml.safe_load((run_dir / f"metrics_{tag}.yml").read_text())
        state = load_checkpoint(run_dir / "checkpoints" / "model_best_.pth")
        specs = header.representation.tensor_specs()
        n = sum(len(s) for s in symbols)
        coded = [(state[spec.name] - (theta_0[spec.name] if theta_0 is not None else 0)).reshape(-1).double()
                 for spec in specs]
        rms = [float(c.pow(2).mean().sqrt()) for c in coded]
        zero = 1 << (bits - 1)
        row = {"rms": float(np.sqrt(sum(float(c.pow(2).sum()) for c in coded) / n)),
               "step_over_rms_median": float(np.median([s / r for s, r in zip(header.step_sizes, rms) if r > 0])),
               "zero_symbol_share": float(sum(int((s == zero).sum()) for s in symbols) / n),
               "kurtosis_median": float(np.median([float(((c - c.mean()) ** 4).mean() / max(c.var(), 1e-30) ** 2)
                                                   for c in coded if len(c) > 8])),
               "entropy_bits_per_param": sum(entropy_bits(s) for s in symbols) / n,
               "payload_bits_per_param": 8 * metrics["payload_bytes"] / n,
               "coding_model": metrics["coding_model"], "parameters": n}
        if run.is_meta:
            model = header.representation.build()
            model.load_state_dict(state)
            plain = nearest_quantization(model, bits)
            row["entropy_bits_per_param_if_theta_coded"] = sum(entropy_bits(s) for s in plain.symbols) / n
            row["rms_theta"] = float(np.sqrt(sum(float(state[s.name].double().pow(2).sum()) for s in specs) / n))
        rows.append(row)
    out = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[key] = float(np.mean(values))
        elif all(v is None for v in values):
            continue
        else:
            out[key] = sorted(set(map(str, values)))
    return out


def bd(anchor: dict, test: dict) -> dict:
    """BD-rate (%) and BD-PSNR (dB) of test against anchor, pchip, None where they do not overlap."""
    from inrcompress.errors import InrError
    from inrcompress.evaluate.bd import bd_psnr, bd_rate

    out = {}
    for name, fn in (("bd_rate_percent", bd_rate), ("bd_psnr_db", bd_psnr)):
        try:
            out[name] = fn(anchor["bpp"], anchor["psnr"], test["bpp"], test["psnr"], interpolation="pchip")
        except InrError as e:
            out[name], out[f"{name}_why_none"] = None, str(e)
    return out


def rate_saving_at(point: tuple[float, float], curve: dict) -> float | None:
    """How much less rate (%) `point` (bpp, PSNR) needs than `curve` at the same PSNR (pchip of log bpp
    over PSNR through the curve's points; None outside the curve's PSNR range)."""
    from scipy.interpolate import PchipInterpolator

    q, r = np.asarray(curve["psnr"]), np.log10(np.asarray(curve["bpp"]))
    order = np.argsort(q)
    q, r = q[order], r[order]
    if len(q) < 2 or np.any(np.diff(q) <= 0) or not q[0] <= point[1] <= q[-1]:
        return None
    return float((1 - point[0] / 10 ** float(PchipInterpolator(q, r)(point[1]))) * 100)


def curve_of(runs: list[Run], bits: int) -> dict:
    points = [(r.width, r.results(bits)["results"]) for r in runs]
    return {"widths": [w for w, _ in points], "bits": [bits] * len(points), "bpp": [p["bpp"] for _, p in points],
            "psnr": [p["psnr-rgb"] for _, p in points], "ms_ssim": [p["ms-ssim-rgb"] for _, p in points]}


def pareto_front(curves: list[dict]) -> dict:
    """The points of `curves` that no other point beats in both rate and PSNR (the best bit depth at
    each rate), sorted by rate."""
    points = sorted((b, q, w, bits) for c in curves for b, q, w, bits in zip(c["bpp"], c["psnr"], c["widths"], c["bits"]))
    front = [p for p in points if not any(o[0] <= p[0] and o[1] > p[1] or o[0] < p[0] and o[1] >= p[1] for o in points)]
    return {"bpp": [p[0] for p in front], "psnr": [p[1] for p in front], "widths": [p[2] for p in front],
            "bits": [p[3] for p in front], "ms_ssim": [None] * len(front)}


def analyze(args, groups: dict[str, list[Run]]) -> dict:
    curves = {f"{label} {bits}-bit": curve_of(runs, bits) for label, runs in groups.items() for bits in args.bits}
    anchor_name = f"{BASIC} {max(args.bits)}-bit"
    anchor = curves[anchor_name]
    out = {"curves": curves, "anchor": anchor_name, "bd_vs_anchor": {}, "best_bit_depth": {}, "points": {},
           "convergence": {}, "diagnostics": {}}
    for name, curve in curves.items():
        if name != anchor_name:
            out["bd_vs_anchor"][name] = bd(anchor, curve)
    if len(args.bits) > 1:  # each method at its best bit depth for each rate, against basic's
        fronts = {label: pareto_front([curves[f"{label} {bits}-bit"] for bits in args.bits]) for label in groups}
        for label, front in fronts.items():
            out["best_bit_depth"][label] = {"curve": front, **(bd(fronts[BASIC], front) if label != BASIC else {})}
    basic_best = pareto_front([curves[f"{BASIC} {bits}-bit"] for bits in args.bits])
    for label, runs in groups.items():
        for run in runs:
            key = f"{label} w{run.width}"
            fitted = json.loads((run.experiment() / "result.json").read_text())
            out["points"][key] = {"float_psnr": fitted["avg_psnr"]}
            for bits in args.bits:
                r = run.results(bits)["results"]
                out["points"][key][f"{bits}-bit"] = {
                    "bpp": r["bpp"], "psnr": r["psnr-rgb"], "ms_ssim": r["ms-ssim-rgb"],
                    "rate_saving_vs_anchor_percent": rate_saving_at((r["bpp"], r["psnr-rgb"]), anchor),
                    "rate_saving_vs_basic_best_percent": rate_saving_at((r["bpp"], r["psnr-rgb"]), basic_best)}
                out["diagnostics"][f"{key} {bits}-bit"] = {**tensor_diagnostics(run, bits),
                                                         "psnr_loss_db": fitted["avg_psnr"] - r["psnr-rgb"]}
            out["convergence"][key] = convergence(run, args.curve_updates)
    return out


def plot(args, work: Path, analysis: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from inrcompress.evaluate.curves import Curve
    from inrcompress.evaluate.plots import plot_curves, save_figure

    curves = [Curve(name, c["bpp"], c["psnr"], c["ms_ssim"]) for name, c in analysis["curves"].items()]
    rd = plot_curves([("ours", curves)], work / "rd.png",
                     title=f"{len(args.test)} held-out Kodak images at 1/{args.factor}, widths {args.widths}")
    widths = sorted({int(k.rsplit(" w", 1)[1]) for k in analysis["convergence"]})
    figure, axes = plt.subplots(1, len(widths), figsize=(5 * len(widths), 4), squeeze=False)
    for axis, width in zip(axes[0], widths):
        for key, c in analysis["convergence"].items():
            if key.endswith(f" w{width}"):
                axis.plot(np.asarray(c["dense_updates"]) + 1, c["dense_psnr"], label=key.rsplit(" w", 1)[0])
        axis.set_xscale("log")
        axis.set_xlabel("Adam updates + 1")
        axis.set_ylabel("PSNR of the fit [dB]")
        axis.set_title(f"width {width}")
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    return [str(rd), str(save_figure(figure, work / "convergence.png"))]


# ------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(1)
    work = Path(args.work)
    started = time.perf_counter()
    import os

    results = {"command": sys.argv if argv is None else ["benchmarks/meta_gain.py", *argv], "args": vars(args),
               "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "torch": torch.__version__,
               "load_average_at_start": os.getloadavg(), "phases": {}}
    dataset = prepare_data(args, work, args.train_images)
    train_count = len(list((work / "data" / dataset / "train").iterdir()))
    groups: dict[str, list[Run]] = {BASIC: [Run(args, work, BASIC, w) for w in args.widths]}
    for i, lr_type in enumerate(args.lr_types):
        widths = args.widths if i == 0 else [w for w in args.widths if w in args.other_lr_widths]
        if widths:
            groups[f"meta {lr_type}"] = [Run(args, work, lr_type, w, dataset, train_count, label=f"meta_{lr_type}")
                                         for w in widths]
    def timed(phase: str, fn):
        t = time.perf_counter()
        value = fn()
        results["phases"][phase] = {"seconds": time.perf_counter() - t, "load_average_after": os.getloadavg()}
        print(f"[meta_gain] phase {phase}: {results['phases'][phase]['seconds']:.0f} s, load {os.getloadavg()}",
              flush=True)
        return value

    if "meta" in args.phases:
        results["meta"] = timed("meta", lambda: {f"{label} w{r.width}": {k: v for k, v in r.meta_train().items()
                                                                          if k != "history"}
                                                  for label, runs in groups.items() if label != BASIC for r in runs})
    if "fit" in args.phases:
        timed("fit", lambda: [r.fit() for runs in groups.values() for r in runs])
    if "quantize" in args.phases:
        timed("quantize", lambda: [r.quantize() for runs in groups.values() for r in runs])
    if "analyze" in args.phases:
        results["analysis"] = timed("analyze", lambda: analyze(args, groups))
        if args.plots:
            results["plots"] = plot(args, work, results["analysis"])
        print_summary(results["analysis"])
    if "trend" in args.phases:
        results["trend"] = timed("trend", lambda: trend(args, work, groups))
    if "l1" in args.phases:
        results["l1"] = timed("l1", lambda: l1_ablation(args, work, groups))
    results["total_seconds"] = time.perf_counter() - started
    from inrcompress.config import write_json

    write_json(Path(args.json) if args.json else work / "meta_gain.json", results)
    print(f"[meta_gain] total {results['total_seconds']:.0f} s -> {args.json or work / 'meta_gain.json'}")
    return 0


def trend(args, work: Path, groups: dict[str, list[Run]]) -> dict:
    """The gain at --trend_width against the meta-training images and outer steps (paper's lr type):
    per bit depth the rate and PSNR, and the rate saved against basic at its best bit depth (the
    Pareto front of basic's points over --bits and --widths) at the same PSNR."""
    lr_type = args.lr_types[0]
    main_run = next(r for r in groups[f"meta {lr_type}"] if r.width == args.trend_width)
    anchor = pareto_front([curve_of(groups[BASIC], bits) for bits in args.bits])  # basic at its best bit depth
    variants = []
    for count in args.trend_images:
        dataset = prepare_data(args, work, count)
        n = len(list((work / "data" / dataset / "train").iterdir()))
        variants.append((f"{n} training images", Run(args, work, lr_type, args.trend_width, dataset, n,
                                                     label=f"trend_images{n}")))
    folder = main_run.init_folder()
    for step in args.trend_steps:
        obj, init = folder / f"maml_obj_step{step}.pth", folder / f"model_maml_step{step}.pth"
        if obj.is_file():
            variants.append((f"{step} outer steps", Run(args, work, lr_type, args.trend_width, main_run.dataset,
                                                        main_run.train_count, label=f"trend_steps{step}",
                                                        snapshot=(obj, init))))
    out = {}
    for name, run in [*variants, (f"main run ({main_run.train_count} images)", main_run)]:
        meta = run.meta_train()
        run.fit()
        run.quantize()
        fitted = json.loads((run.experiment() / "result.json").read_text())
        entry = {"float_psnr": fitted["avg_psnr"], "best_step": meta.get("best_step"),
                 "val_psnr_adapted": meta.get("val_psnr_adapted")}
        for bits in args.bits:
            r = run.results(bits)["results"]
            entry[f"{bits}-bit"] = {"bpp": r["bpp"], "psnr": r["psnr-rgb"],
                                    "rate_saving_vs_basic_best_percent": rate_saving_at((r["bpp"], r["psnr-rgb"]),
                                                                                        anchor)}
        out[name] = entry
        print(f"[meta_gain] trend {name}: {json.dumps(entry)}", flush=True)
    return out


def l1_ablation(args, work: Path, groups: dict[str, list[Run]]) -> dict:
    """Both inits at --trend_width refitted with each L1 weight of --l1_values (the meta run from the
    main run's init), quantized at --bits: the rate and PSNR the weight buys."""
    lr_type = args.lr_types[0]
    main_run = next(r for r in groups[f"meta {lr_type}"] if r.width == args.trend_width)
    folder = main_run.init_folder()
    out = {}
    for weight in [args.l1_reg, *args.l1_values]:
        run_args = argparse.Namespace(**{**vars(args), "l1_reg": weight})
        runs = {BASIC: Run(run_args, work, BASIC, args.trend_width, label=f"l1_{weight:g}_basic"),
                f"meta {lr_type}": Run(run_args, work, lr_type, args.trend_width, main_run.dataset,
                                       main_run.train_count, label=f"l1_{weight:g}_meta",
                                       snapshot=(folder / "maml_obj.pth", folder / "model_maml.pth"))}
        if weight == args.l1_reg:
            runs = {BASIC: next(r for r in groups[BASIC] if r.width == args.trend_width), f"meta {lr_type}": main_run}
        for label, run in runs.items():
            if run.is_meta:
                run.meta_train()
            run.fit()
            run.quantize()
            fitted = json.loads((run.experiment() / "result.json").read_text())
            entry = {"float_psnr": fitted["avg_psnr"]}
            for bits in args.bits:
                r = run.results(bits)["results"]
                entry[f"{bits}-bit"] = {"bpp": r["bpp"], "psnr": r["psnr-rgb"],
                                        **{k: v for k, v in tensor_diagnostics(run, bits).items()
                                           if k in ("rms", "entropy_bits_per_param", "payload_bits_per_param",
                                                    "zero_symbol_share", "kurtosis_median")}}
            out[f"{label} l1 {weight:g}"] = entry
            print(f"[meta_gain] l1 {label} {weight:g}: {json.dumps(entry)}", flush=True)
    return out


def print_summary(analysis: dict) -> None:
    print(f"[meta_gain] BD vs {analysis['anchor']} (pchip):")
    for name, v in analysis["bd_vs_anchor"].items():
        print(f"  {name:<40} BD-rate {v['bd_rate_percent']} %  BD-PSNR {v['bd_psnr_db']} dB")
    for name, v in analysis["best_bit_depth"].items():
        front = v["curve"]
        print(f"  best bit depth {name:<26} points (w, bits) {list(zip(front['widths'], front['bits']))} "
              f"BD-rate vs basic's {v.get('bd_rate_percent')} %  BD-PSNR {v.get('bd_psnr_db')} dB")
    for key, p in analysis["points"].items():
        print(f"  {key:<40} {json.dumps(p)}")
    for key, c in analysis["convergence"].items():
        print(f"  convergence {key:<28} {[round(v, 2) for v in c['psnr']]} L1 share {c['l1_share_of_loss_at_end']}")
    for key, d in analysis["diagnostics"].items():
        print(f"  diag {key:<40} {json.dumps(d)}")


if __name__ == "__main__":
    raise SystemExit(main())
