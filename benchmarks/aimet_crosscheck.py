"""Cross-check of the native quantizer (codec/quant.py) against AIMET (codec/aimet_quant.py).

The same fitted networks go through both quantizers, at each bitwidth, in three modes: nearest
rounding (steps only), AdaRound, AdaRound + QAT (the paper's pipeline); every result is written as a
.inr file (the project's coder, arithmetic coding), decoded, and measured on the decoder's 8-bit
image: PSNR (dB) and bpp (8 x file bytes / pixels). Encode time is the quantizer's wall time.

Three steps, resumable (each skips what its output already holds):
  python benchmarks/aimet_crosscheck.py fit        # fit the networks once (any environment), save them
  .venv-aimet/bin/python benchmarks/aimet_crosscheck.py quantize   # both quantizers on the saved networks
  python benchmarks/aimet_crosscheck.py report     # markdown table from results.jsonl
Outputs go to benchmarks/output/aimet_crosscheck/ (git-ignored): nets/*.pth, nets.json, results.jsonl.
Run with OMP_NUM_THREADS=1 on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from inrcompress.codec.compress import decode_image
from inrcompress.codec.container import InrHeader, encode_inr
from inrcompress.codec.quant import quantize_model
from inrcompress.codec.representations import representation_of
from inrcompress.config import ModelConfig, TrainConfig
from inrcompress.evaluate.metrics import psnr
from inrcompress.fit.train import fit
from inrcompress.nn import INR
from inrcompress.signals.grid import coordinate_grid
from inrcompress.signals.image import image_to_values, load_image

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "output" / "aimet_crosscheck"
DEFAULT_KODAK = ROOT.parent / "shared" / "data" / "KODAK"
# The paper's quantize_and_test.py defaults (spec 2.4).
PAPER_FLAGS = dict(adaround_iterations=1000, adaround_reg=1e-4, retrain_epochs=300, retrain_lr=1e-6)
MODES = {  # name -> (adaround, retrain)
    "nearest": (False, False),
    "adaround": (True, False),
    "adaround+qat": (True, True),
}


def net_path(out: Path, image: str, width: int) -> Path:
    return out / "nets" / f"{image}_w{width}.pth"


def cmd_fit(args) -> int:
    out = Path(args.out)
    (out / "nets").mkdir(parents=True, exist_ok=True)
    index_path = out / "nets.json"
    index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    for image_name in args.images:
        image = load_image(Path(args.kodak) / f"{image_name}.png", args.downscaling)
        coords, values = coordinate_grid(image.shape[:2]), image_to_values(image)
        for width in args.widths:
            key = f"{image_name}_w{width}"
            if key in index and net_path(out, image_name, width).is_file():
                continue
            torch.manual_seed(args.seed)
            cfg = ModelConfig(in_features=2, out_features=3, hidden_dims=width, hidden_layers=3)
            model = INR(cfg)
            started = time.perf_counter()
            result = fit(model, coords, values, TrainConfig(epochs=args.steps, lr=args.lr, seed=args.seed),
                         show_progress=False)
            with torch.no_grad():
                pred = model(coords).clamp(-1, 1)
            float_psnr = psnr((pred.numpy() / 2 + 0.5).reshape(image.shape), image.astype(np.float64) / 255.0)
            torch.save(model.state_dict(), net_path(out, image_name, width))
            index[key] = {"image": image_name, "width": width, "height_px": image.shape[0], "width_px": image.shape[1],
                          "steps": args.steps, "lr": args.lr, "downscaling": args.downscaling,
                          "float_psnr": float_psnr, "fit_seconds": time.perf_counter() - started,
                          "cfg": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}}
            index_path.write_text(json.dumps(index, indent=1))
            print(f"{key}: float PSNR {float_psnr:.2f} dB after {args.steps} steps "
                  f"({index[key]['fit_seconds']:.0f} s, best step {result.best_epoch})", flush=True)
    return 0


def measure(model: INR, image: np.ndarray, qt) -> dict:
    """Write QuantizedTensors `qt` as a .inr file, decode it; PSNR of the 8-bit decoded image, bpp."""
    header = InrHeader.for_model(model, modality="image", height=image.shape[0], width=image.shape[1],
                                 bitwidth=qt.bitwidth, coder="arithmetic", step_sizes=qt.step_sizes)
    data, _ = encode_inr(header, qt.symbols)
    _, decoded = decode_image(data)
    return {"psnr": psnr(decoded.astype(np.float64) / 255.0, image.astype(np.float64) / 255.0),
            "bpp": 8 * len(data) / (image.shape[0] * image.shape[1]), "bytes": len(data)}


def native_rows(model: INR, features, values, bits: int, modes: list[str], seed: int):
    """(mode, QuantizedTensors, seconds) of quantize_model, one call per mode."""
    for mode in modes:
        adaround, retrain = MODES[mode]
        started = time.perf_counter()
        qt = quantize_model(model, features, values, bits, adaround=adaround, retrain=retrain, seed=seed,
                            **PAPER_FLAGS)
        yield mode, qt, time.perf_counter() - started


def aimet_rows(model: INR, features, values, bits: int, modes: list[str], seed: int):
    """(mode, QuantizedTensors, seconds) of ONE AIMET run (AdaRound + QAT), read after each stage;
    a stage's seconds are the time from the start of the run to its end (what a run stopping there
    would take, up to the read-out's one forward pass)."""
    from inrcompress.codec.aimet_quant import aimet_readout

    stage_modes = {"nearest": "nearest", "adaround": "adaround", "retrain": "adaround+qat"}
    seen = []
    started = time.perf_counter()
    aimet_readout(model, features, values, bits, adaround="adaround" in modes or "adaround+qat" in modes,
                  retrain="adaround+qat" in modes, reference=None, seed=seed, progress=False,
                  on_stage=lambda name, r: seen.append((stage_modes[name], r.quantized(bits),
                                                        time.perf_counter() - started)), **PAPER_FLAGS)
    yield from ((mode, qt, seconds) for mode, qt, seconds in seen if mode in modes)


def cmd_quantize(args) -> int:
    out = Path(args.out)
    index = json.loads((out / "nets.json").read_text())
    results_path = out / "results.jsonl"
    done = set()
    if results_path.is_file():
        for line in results_path.read_text().splitlines():
            r = json.loads(line)
            done.add((r["net"], r["quantizer"], r["bits"], r["mode"]))
    runners = {"native": native_rows, "aimet": aimet_rows}
    from inrcompress.codec.aimet_quant import AIMET_SETUP_HINT, aimet_available

    # aimet_available imports AIMET: its one-time import (~20 s on a busy machine) is not encoding time
    if "aimet" in args.quantizers and not aimet_available():
        print(f"error: aimet-torch does not import here: {AIMET_SETUP_HINT}", file=sys.stderr)
        return 2
    for net, info in sorted(index.items()):
        model = INR(ModelConfig(**info["cfg"]))
        model.load_state_dict(torch.load(net_path(out, info["image"], info["width"])))
        image = load_image(Path(args.kodak) / f"{info['image']}.png", info["downscaling"])
        coords, values = coordinate_grid(image.shape[:2]), image_to_values(image)
        with torch.no_grad():
            features = representation_of(model).inputs(model, coords)
        for bits in args.bits:
            for name in args.quantizers:
                modes = [m for m in args.modes if (net, name, bits, m) not in done]
                if not modes:
                    continue
                for mode, qt, seconds in runners[name](model, features, values, bits, modes, args.seed):
                    row = {"net": net, "image": info["image"], "width": info["width"], "quantizer": name,
                           "bits": bits, "mode": mode, **measure(model, image, qt), "encode_seconds": seconds,
                           "torch": torch.__version__, "machine": platform.node(),
                           "date": time.strftime("%Y-%m-%d %H:%M")}
                    with open(results_path, "a") as f:
                        f.write(json.dumps(row) + "\n")
                    print(f"{net} {bits} bits {mode:13s} {name:6s}: {row['psnr']:.2f} dB, {row['bpp']:.3f} bpp, "
                          f"{seconds:.1f} s", flush=True)
    return 0


def cmd_report(args) -> int:
    out = Path(args.out)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    by = {(r["net"], r["quantizer"], r["bits"], r["mode"]): r for r in rows}
    nets = sorted({r["net"] for r in rows})
    lines = ["| width | bits | mode | PSNR native | PSNR AIMET | native - AIMET (mean; min over images) | "
             "bpp native | bpp AIMET | encode s native | encode s AIMET |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for width in sorted({r["width"] for r in rows}):
        for bits in sorted({r["bits"] for r in rows}):
            for mode in MODES:
                pairs = [(by.get((n, "native", bits, mode)), by.get((n, "aimet", bits, mode)))
                         for n in nets if n.endswith(f"_w{width}")]
                pairs = [(a, b) for a, b in pairs if a and b]
                if not pairs:
                    continue
                mean = lambda key, k: float(np.mean([p[k][key] for p in pairs]))  # noqa: E731
                gaps = [a["psnr"] - b["psnr"] for a, b in pairs]
                lines.append(f"| {width} | {bits} | {mode} | {mean('psnr', 0):.2f} | {mean('psnr', 1):.2f} | "
                             f"{np.mean(gaps):+.2f}; {min(gaps):+.2f} | {mean('bpp', 0):.3f} | {mean('bpp', 1):.3f} | "
                             f"{mean('encode_seconds', 0):.1f} | {mean('encode_seconds', 1):.1f} |")
    print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["fit", "quantize", "report"])
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--kodak", default=str(DEFAULT_KODAK))
    parser.add_argument("--images", nargs="+", default=["kodim01", "kodim02", "kodim03"])
    parser.add_argument("--widths", nargs="+", type=int, default=[16, 32])
    parser.add_argument("--downscaling", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2000, help="fit steps (one full-image Adam step each)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--bits", nargs="+", type=int, default=[4, 6, 7, 8])
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--quantizers", nargs="+", choices=["native", "aimet"], default=["native", "aimet"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    return {"fit": cmd_fit, "quantize": cmd_quantize, "report": cmd_report}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
