"""encode.py: one image in, one .inr file out: fit an INR, quantize it, code it, write the file,
then decode the file and report its bpp and PSNR.

    python image_compression/encode.py photo.png photo.inr --hidden_dims 32 --epochs 5000

Defaults are the paper's Fig. 4 settings (example scripts): lr 5e-4, l1_reg 1e-5, 25000 steps,
8 bits with AdaRound and quantization-aware retraining, arithmetic coding.
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

from inrcompress.tools import flags as inr_flags
from inrcompress.codec.compress import QuantConfig
from inrcompress.config import atomic_write_bytes
from inrcompress.signals.grid import coordinate_grid
from inrcompress.signals.image import image_to_values, load_image
from inrcompress.experiments.image_codec import compress_image_model, jpeg_at_size, measure_decoded
from inrcompress.experiments.images import ImageSignal, fit_image, model_config_for, train_config_for
from inrcompress.experiments.quantize import fill
from inrcompress.experiments.runs import usable_device


def build_flags() -> flags.FlagValues:
    fv = flags.FlagValues()
    inr_flags.define_general(fv, folders=False)
    inr_flags.define_architecture(fv, hidden_dims=32, ff_dims=16)
    inr_flags.define_overfitting(fv, dataset=None, epochs=25000, lr=5e-4, l1_reg=1e-5, run_folder=False,
                                 batched=False)
    inr_flags.define_quantization(fv, experiments=False)
    return fv


def main(argv: list[str] | None = None) -> int:
    def body(args):
        fv = build_flags()
        positional = inr_flags.parse(fv, args, "encode.py", ("INPUT_IMAGE", "OUTPUT.inr"))
        source, target = Path(positional[0]), inr_flags.check_output_file(positional[1], (".inr",))
        values = inr_flags.values(fv)
        qcfg = QuantConfig.from_flags(values)  # refuses a bad setting before the fit, not after it
        device = usable_device(values["device"])
        image = load_image(source, values["downscaling_factor"])
        coords = coordinate_grid(image.shape[:2]).to(device)
        signal = ImageSignal(source.stem, image, coords, image_to_values(image).to(device))
        import torch

        from inrcompress.nn import INR

        model_cfg = model_config_for(values, signal.channels)
        torch.manual_seed(values["seed"])
        model = INR(model_cfg).to(device)
        fitted = fit_image(signal, model_cfg, train_config_for(values, coords.shape[0]), None, device, model=model)
        print(f"fitted: PSNR {fitted['psnr']:.2f} dB (float), {fitted['epochs_run']} steps")
        data, info = compress_image_model(model, image, qcfg, seed=values["seed"], progress=True)
        atomic_write_bytes(target, data)
        measured = measure_decoded(target.read_bytes(), image)
        jpeg = jpeg_at_size(image, len(data))
        print(fill("{target}: {bytes} bytes, {bpp:.4f} bpp ({payload:.4f} payload only), PSNR {psnr:.2f} dB, "
                   "MS-SSIM {ms_ssim:.4f} (decoded from the file)",
                   {**measured, "target": target, "payload": info["bpp_payload"]}))
        if measured.get("note"):
            print(f"note: {measured['note']}")
        if jpeg["fits"]:
            print(f"JPEG (Pillow) at <= that size: quality {jpeg['quality']}, {jpeg['bytes']} bytes, "
                  f"{jpeg['bpp']:.4f} bpp, PSNR {jpeg['psnr']:.2f} dB")
        else:
            print(f"JPEG (Pillow): none fits in {len(data)} bytes (the smallest, quality {jpeg['quality']}, "
                  f"is {jpeg['bytes']} bytes: {jpeg['bpp']:.4f} bpp, PSNR {jpeg['psnr']:.2f} dB)")
    return inr_flags.run_tool(body, argv)
