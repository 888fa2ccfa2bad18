"""Rate-distortion points of the basic pipeline on downscaled Kodak, through the real tools.

For each width: overfitINR.py on the chosen images, then quantize_and_test.py at 7 and 8 bits with
nearest rounding, AdaRound, and AdaRound + QAT, coded with the arithmetic coder and with brotli.
Every number comes from the .inr files and their decoded images (results_*.json).

    python benchmarks/rd_kodak.py --images kodim01 kodim04 kodim23 --factor 4 --widths 16 24 32 \
        --epochs 2000 --out benchmarks/output/rd_kodak

With --meta, each width first gets a meta-learned init (trainMetaSiren on the other Kodak images at the
same factor, --maml_epochs passes, outer_lr --outer_lr), the images are fitted with overfitMetaSiren
(warm-up 100, L1 on theta - theta_0), and only AdaRound + QAT is quantized (the files code the residual).

--variants also takes the quantization beyond the paper on the same fits (per_channel: AdaRound + QAT
with --per_channel_steps; rd+soft_qat: --rd_steps --qat_from_soft --retrain_lr 1e-5). Fits and files
that exist are reused (overfitINR.py and quantize_and_test.py skip them), so a rerun with more variants
only quantizes. Runs over disjoint image sets (e.g. two halves of Kodak, one process each) combine
into one curve per (variant, bits, code), averaged per image, for evaluate.py bd:

    python benchmarks/rd_kodak.py --from_json half_a.json half_b.json --curves benchmarks/output/curves
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from inrcompress.codec.compress import QuantConfig
from inrcompress.config import write_json
from inrcompress.codec.entropy import METHODS
from inrcompress.tools.overfit_inr import main as overfit_main
from inrcompress.tools.overfit_meta_siren import main as overfit_meta_main
from inrcompress.tools.quantize_and_test import main as quantize_main
from inrcompress.tools.train_meta_siren import main as train_meta_main

# name -> (quantize_and_test.py switches, the QuantConfig they make besides bits, code and retrain_lr)
VARIANTS = {
    "nearest": (["--noadaround", "--noretrain"], {"adaround": False, "retrain": False}),
    "adaround": (["--adaround", "--noretrain"], {"adaround": True, "retrain": False}),
    "adaround+qat": (["--adaround", "--retrain"], {}),
    "per_channel": (["--adaround", "--retrain", "--per_channel_steps"], {"per_channel_steps": True}),
    "rd+soft_qat": (["--adaround", "--retrain", "--rd_steps", "--qat_from_soft", "--retrain_lr=1e-05"],
                    {"rd_steps": True, "qat_from_soft": True, "retrain_lr": 1e-5}),
}
PAPER_VARIANTS = ["nearest", "adaround", "adaround+qat"]


def write_curves(rows: list[dict], folder: Path) -> list[Path]:
    """One curve file per (variant, bits, code) of `rows` (from one or more runs over disjoint image
    sets): per width the mean over every image (each run's means weighted by its image count)."""
    folder.mkdir(parents=True, exist_ok=True)
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["variant"], row["bits"], row["code"]), []).append(row)
    paths = []
    for (variant, bits, code), group in sorted(groups.items()):
        widths = sorted({r["width"] for r in group})
        points = []
        for width in widths:
            runs = [r for r in group if r["width"] == width]
            weights = np.array([r.get("images", 1) for r in runs], dtype=float)
            points.append({key: float(np.average([r[key] for r in runs], weights=weights))
                           for key in ("bpp", "psnr", "ms_ssim", "encode_s", "decode_s", "fit_s_per_image")}
                          | {"images": int(weights.sum())})
        counts = {p["images"] for p in points}
        name = f"siren {variant} {bits} bit"
        path = folder / f"siren_{variant}_{bits}bit_{code}.json"
        write_json(path, {"name": name, "description": f"inrcompress SIREN, widths {widths}, {variant}, {bits} bits, {code}; "
                          f"{'/'.join(map(str, sorted(counts)))} images; bpp from the .inr files, metrics on the decoded "
                          "8-bit images, averaged per image",
                          "results": {"bpp": [p["bpp"] for p in points], "psnr-rgb": [p["psnr"] for p in points],
                                      "ms-ssim-rgb": [p["ms_ssim"] for p in points], "hidden_dims": widths,
                                      "encoding_time": [p["encode_s"] for p in points],
                                      "decoding_time": [p["decode_s"] for p in points],
                                      "images": [p["images"] for p in points]}})
        print(f"{path}: " + "; ".join(f"w{w} {p['bpp']:.4f} bpp {p['psnr']:.2f} dB ({p['images']} img)"
                                      for w, p in zip(widths, points)))
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kodak", default="../shared/data/KODAK")
    parser.add_argument("--images", nargs="+", default=["kodim01", "kodim04", "kodim23"])
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 24, 32])
    parser.add_argument("--bits", type=int, nargs="+", default=[7, 8])
    parser.add_argument("--epochs", type=int, default=2000)
    parser.add_argument("--retrain_lr", type=float, default=1e-6)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=PAPER_VARIANTS,
                        help="roundings to quantize with (default: the paper's three)")
    parser.add_argument("--codes", nargs="+", choices=sorted(METHODS), default=list(METHODS),
                        help="entropy coders to code with (default: all)")
    parser.add_argument("--out", default="benchmarks/output/rd_kodak")
    parser.add_argument("--json", help="write all rows here")
    parser.add_argument("--meta", action="store_true", help="fit from meta-learned inits (see above)")
    parser.add_argument("--maml_epochs", type=int, default=10)
    parser.add_argument("--outer_lr", type=float, default=5e-4)
    parser.add_argument("--from_json", nargs="+", metavar="FILE", help="run nothing: combine these --json files")
    parser.add_argument("--curves", metavar="DIR", help="write one curve file per variant, bits and code here")
    args = parser.parse_args(argv)
    if args.from_json:
        rows = [row for path in args.from_json for row in json.loads(Path(path).read_text())]
        write_curves(rows, Path(args.curves or "benchmarks/output/rd_kodak_curves"))
        return 0

    out = Path(args.out)
    data = out / "data" / "SUBSET"
    data.mkdir(parents=True, exist_ok=True)
    for name in args.images:
        shutil.copy(Path(args.kodak) / f"{name}.png", data / f"{name}.png")
    common = [f"--data_root={out / 'data'}", "--dataset=SUBSET", f"--exp_root={out / 'exp'}"]
    maml = [f"--maml_epochs={args.maml_epochs}", f"--outer_lr={args.outer_lr}", "--maml_dataset=METATRAIN"]
    if args.meta:  # meta-train on the Kodak images that are not evaluated
        meta_data = out / "data" / "METATRAIN"
        meta_data.mkdir(parents=True, exist_ok=True)
        for path in sorted(Path(args.kodak).glob("kodim*.png")):
            if path.stem not in args.images:
                shutil.copy(path, meta_data / path.name)
    rows = []
    for width in args.widths:
        fit_flags = [f"--epochs={args.epochs}", "--lr=0.0005", "--l1_reg=0.00001", f"--downscaling_factor={args.factor}",
                     f"--hidden_dims={width}", "--steps_til_summary=1000", "--epochs_til_ckpt=1000"]
        started = time.perf_counter()
        if args.meta:
            assert train_meta_main([f"--data_root={out / 'data'}", f"--exp_root={out / 'exp'}", *maml,
                                    f"--downscaling_factor={args.factor}", f"--hidden_dims={width}"]) == 0
            assert overfit_meta_main(common + maml + fit_flags) == 0
        else:
            assert overfit_main(common + fit_flags) == 0
        fit_seconds = time.perf_counter() - started
        exp = next(p for p in (out / "exp").iterdir() if f"_hdims{width}_" in p.name and
                   f"epochs{args.epochs}_" in p.name and p.name.startswith(f"SUBSET_{args.factor}x") and
                   ("_maml_" in p.name) == args.meta)
        fitted = json.loads((exp / "result.json").read_text())
        for bits in args.bits:
            for variant in args.variants:
                switches, settings = VARIANTS[variant]
                if args.meta and variant != "adaround+qat":
                    continue
                for code in args.codes:
                    assert quantize_main(common + [f"--exp_glob={exp.name}", f"--bitwidth={bits}", f"--code={code}",
                                                   f"--retrain_lr={args.retrain_lr}", *switches]) == 0
                    tag = QuantConfig(**{"bitwidth": bits, "retrain_lr": args.retrain_lr, "code": code, **settings}).tag
                    result_file = exp / f"results_{code}_{tag}.json"
                    r = json.loads(result_file.read_text())["results"]
                    rows.append({"width": width, "bits": bits, "variant": variant, "code": code,
                                 "bpp": r["bpp"], "bpp_payload": r["bpp_payload"], "psnr": r["psnr-rgb"],
                                 "ms_ssim": r["ms-ssim-rgb"], "float_psnr": fitted["avg_psnr"],
                                 "encode_s": r["encoding_time"], "decode_s": r["decoding_time"],
                                 "fit_s_per_image": fit_seconds / len(args.images), "images": len(args.images)})
                    row = rows[-1]
                    print(f"w{width:<4} {bits}b {variant:<13} {code:<10} bpp {row['bpp']:.4f} "
                          f"(payload {row['bpp_payload']:.4f}) PSNR {row['psnr']:.2f} (float {row['float_psnr']:.2f}) "
                          f"enc {row['encode_s']:.1f}s dec {row['decode_s']:.3f}s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    if args.curves:
        write_curves(rows, Path(args.curves))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
