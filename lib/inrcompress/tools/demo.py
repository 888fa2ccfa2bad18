"""The README's main command: the whole pipeline on a photograph that ships with scikit-image.

astronaut (512x512, NASA, public domain) is downscaled to --size, fitted with the paper's
settings at a small width (overfitINR), quantized to 8 bits with AdaRound and retraining and
written as a .inr file (quantize_and_test), decoded from that file to a PNG (decode), and the
bpp and PSNR of the file are printed beside a JPEG of about the same size. Everything is written
under --out; run it again and finished steps are skipped.
"""

from __future__ import annotations

from pathlib import Path

from absl import flags
from PIL import Image

from inrcompress.tools import flags as inr_flags
from inrcompress.signals.image import load_image, save_png
from inrcompress.errors import InrError
from inrcompress.experiments.image_codec import jpeg_at_size, measure_decoded, run_quantize_and_test
from inrcompress.experiments.images import run_overfit
from inrcompress.tools.decode import main as decode_main
from inrcompress.tools.overfit_inr import build_flags as overfit_flags
from inrcompress.tools.quantize_and_test import build_flags as quantize_flags


def build_flags() -> flags.FlagValues:
    fv = flags.FlagValues()
    inr_flags.define_output_dir(fv, "out", "demo_output", "Folder for everything the demo writes.")
    flags.DEFINE_integer("size", 256, "Side of the square test image in pixels.", lower_bound=16, upper_bound=512,
                         flag_values=fv)
    flags.DEFINE_integer("epochs", 3000, "Fitting steps.", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("hidden_dims", 32, "Width of the MLP.", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("bitwidth", 8, "Bits per weight.", lower_bound=2, upper_bound=16, flag_values=fv)
    inr_flags.define_device(fv)
    return fv


def prepare_image(out: Path, size: int) -> Path:
    """Write the downscaled astronaut as <out>/data/astronaut/astronaut.png; returns data_root."""
    import numpy as np
    from skimage import data as skdata

    picture = Image.fromarray(skdata.astronaut()).resize((size, size), Image.LANCZOS)
    save_png(out / "data" / "astronaut" / "astronaut.png", np.asarray(picture)[:, :, :3])
    return out / "data"


def main(argv: list[str] | None = None) -> int:
    def body(args):
        fv = build_flags()
        inr_flags.parse(fv, args, "quickstart.py", positional=())
        out = Path(fv.out)
        data_root = prepare_image(out, fv.size)
        fit_values = inr_flags.parse_values(overfit_flags(), [
            f"--data_root={data_root}", "--dataset=astronaut", f"--exp_root={out / 'exp'}",
            f"--epochs={fv.epochs}", "--lr=0.0005", "--l1_reg=0.00001", f"--hidden_dims={fv.hidden_dims}",
            "--steps_til_summary=500", "--epochs_til_ckpt=500", f"--device={fv.device}"], "overfitINR.py")
        exp_dir = run_overfit(fit_values)
        print(f"float reconstruction: {exp_dir / 'astronaut' / 'reconstruction.png'}")

        quant_values = inr_flags.parse_values(quantize_flags(), [
            f"--data_root={data_root}", "--dataset=astronaut", f"--exp_root={out / 'exp'}",
            f"--exp_glob={exp_dir.name}", f"--bitwidth={fv.bitwidth}", f"--device={fv.device}"],
            "quantize_and_test.py")
        run_quantize_and_test(quant_values)
        inr_file = next((exp_dir / "astronaut").glob(f"compressed_arithmetic_bw{fv.bitwidth}_*.inr"))
        decoded_png = out / "astronaut_decoded.png"
        if decode_main([str(inr_file), str(decoded_png)]) != 0:
            raise InrError(f"decoding {inr_file} failed")
        original = load_image(data_root / "astronaut" / "astronaut.png")
        measured = measure_decoded(inr_file.read_bytes(), original)
        jpeg = jpeg_at_size(original, measured["bytes"])
        print()
        print(f"{'codec':<22}{'bytes':>8}{'bpp':>9}{'PSNR dB':>9}")
        print(f"{'INR (.inr file)':<22}{measured['bytes']:>8}{measured['bpp']:>9.3f}{measured['psnr']:>9.2f}")
        label = f"JPEG q{jpeg['quality']}" + ("" if jpeg["fits"] else " (none fits)")
        print(f"{label:<22}{jpeg['bytes']:>8}{jpeg['bpp']:>9.3f}{jpeg['psnr']:>9.2f}")
        print(f"file: {inr_file}\ndecoded: {decoded_png}")
    return inr_flags.run_tool(body, argv)
