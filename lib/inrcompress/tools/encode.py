"""encode.py: one image in, one .inr file out: fit an INR, quantize it, code it, write the file,
then decode the file and report its bpp and PSNR.

    python image_compression/encode.py photo.png photo.inr --hidden_dims 32 --epochs 5000

Defaults are the paper's Fig. 4 settings (example scripts): lr 5e-4, l1_reg 1e-5, 25000 steps,
8 bits with AdaRound and quantization-aware retraining, arithmetic coding.

Beyond the paper: --target_bpp B writes a file within 3% of B bpp (the width from a rate table
unless --hidden_dims is given; bit width and step scale searched on real files, see
experiments/image_codec.encode_to_target), --target_psnr P the smallest file found that decodes to
P dB; --rate_lambda adds the estimated rate of the quantized weights to the fitting loss.
--representation latent fits the latent-grid codec instead (experiments/latent_codec.py), at
--rate_lambda or at --target_bpp / --target_psnr (a search over lambda: experiments/latent_target.py).
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

from inrcompress.tools import flags as inr_flags
from inrcompress.codec.compress import QuantConfig
from inrcompress.codec.representations.latent import PRESETS
from inrcompress.fit.latent import SCHEDULES as LATENT_SCHEDULES
from inrcompress.experiments.latent_codec import encode_latent_file
from inrcompress.config import atomic_write_bytes
from inrcompress.signals.grid import coordinate_grid
from inrcompress.signals.image import image_to_values, load_image
from inrcompress.experiments.image_codec import (check_rate_target, compress_image_model, encode_to_target, jpeg_at_size,
                                                 measure_decoded, width_for_rate)
from inrcompress.experiments.images import ImageSignal, fit_image, model_config_for, train_config_for
from inrcompress.experiments.quantize import fill
from inrcompress.experiments.runs import usable_device


# Representations other than the paper's SIREN (the default, fitted below): --representation NAME
# -> function(source, target, flag values, names of the flags given) -> (image, measurements).
OTHER_REPRESENTATIONS = {"latent": encode_latent_file}


def build_flags() -> flags.FlagValues:
    fv = flags.FlagValues()
    inr_flags.define_general(fv, folders=False)
    inr_flags.define_architecture(fv, hidden_dims=32, ff_dims=16)
    inr_flags.define_overfitting(fv, dataset=None, epochs=25000, lr=5e-4, l1_reg=1e-5, run_folder=False,
                                 batched=False)
    inr_flags.define_quantization(fv, experiments=False)
    inr_flags.define_latent_codec(fv, list(PRESETS), list(LATENT_SCHEDULES), representation=True, rate_lambda=False)
    inr_flags.define_rate_target(fv)
    inr_flags.define_rate_fitting(fv)
    return fv


def main(argv: list[str] | None = None) -> int:
    def body(args):
        fv = build_flags()
        positional = inr_flags.parse(fv, args, "encode.py", ("INPUT_IMAGE", "OUTPUT.inr"))
        source, target = Path(positional[0]), inr_flags.check_output_file(positional[1], (".inr",))
        values = inr_flags.values(fv)
        other = OTHER_REPRESENTATIONS.get(values["representation"])
        if other is not None:
            image, measured = other(source, target, values, {name for name in fv if fv[name].present})
            report(target, image, measured)
            return
        qcfg = QuantConfig.from_flags(values)  # refuses a bad setting before the fit, not after it
        device = usable_device(values["device"])
        image = load_image(source, values["downscaling_factor"])
        height, width = image.shape[:2]
        if qcfg.target_bpp is not None and not fv["hidden_dims"].present:
            values["hidden_dims"] = width_for_rate(qcfg.target_bpp, height, width,
                                                   model_config_for(values, image.shape[2]), qcfg)
            print(f"--target_bpp {qcfg.target_bpp}: width {values['hidden_dims']} (rate table)")
        model_cfg = model_config_for(values, image.shape[2])
        check_rate_target(qcfg, model_cfg, height, width)  # before the fit
        coords = coordinate_grid(image.shape[:2]).to(device)
        signal = ImageSignal(source.stem, image, coords, image_to_values(image).to(device))
        import torch

        from inrcompress.nn import INR

        torch.manual_seed(values["seed"])
        model = INR(model_cfg).to(device)
        terms = []
        if values["rate_lambda"] > 0:
            from inrcompress.codec.rate import RateTerm

            terms = [RateTerm.for_model(values["rate_lambda"], model, height * width, qcfg.bitwidth, qcfg.step_scale)]
        fitted = fit_image(signal, model_cfg, train_config_for(values, coords.shape[0]), None, device, model=model,
                           terms=terms)
        print(f"fitted: PSNR {fitted['psnr']:.2f} dB (float), {fitted['epochs_run']} steps")
        if not qcfg.has_target:
            data, info = compress_image_model(model, image, qcfg, seed=values["seed"], progress=True)
        else:
            data, info, chosen = encode_to_target(model, image, qcfg, seed=values["seed"], progress=True)
            aim = (f"--target_bpp {chosen['target_bpp']}" if "target_bpp" in chosen
                   else f"--target_psnr {chosen['target_psnr']}")
            print(f"{aim}: chose width {values['hidden_dims']}, {chosen['bitwidth']} bits, step scale "
                  f"{chosen['step_scale']:.4g}{', rd steps' if qcfg.rd_steps else ''}"
                  f"{', per-channel steps' if qcfg.per_channel_steps else ''} "
                  f"({chosen['tries']} full encode(s)): {chosen['bpp']:.4f} bpp, PSNR {chosen['psnr']:.2f} dB")
        atomic_write_bytes(target, data)
        measured = measure_decoded(target.read_bytes(), image)
        report(target, image, measured, info["bpp_payload"])
    return inr_flags.run_tool(body, argv)


def report(target: Path, image, measured: dict, payload_bpp: float | None = None) -> None:
    """Print the file's size and quality decoded from it, beside the largest JPEG of at most its size."""
    payload = f" ({payload_bpp:.4f} payload only)" if payload_bpp is not None else ""
    print(fill("{target}: {bytes} bytes, {bpp:.4f} bpp{payload}, PSNR {psnr:.2f} dB, MS-SSIM {ms_ssim:.4f} "
               "(decoded from the file)", {**measured, "target": target, "payload": payload}))
    if measured.get("note"):
        print(f"note: {measured['note']}")
    size = measured["bytes"]
    jpeg = jpeg_at_size(image, size)
    if jpeg["fits"]:
        print(f"JPEG (Pillow) at <= that size: quality {jpeg['quality']}, {jpeg['bytes']} bytes, "
              f"{jpeg['bpp']:.4f} bpp, PSNR {jpeg['psnr']:.2f} dB")
    else:
        print(f"JPEG (Pillow): none fits in {size} bytes (the smallest, quality {jpeg['quality']}, "
              f"is {jpeg['bytes']} bytes: {jpeg['bpp']:.4f} bpp, PSNR {jpeg['psnr']:.2f} dB)")
