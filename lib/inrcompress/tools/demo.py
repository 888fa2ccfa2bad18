"""The README's main command: the whole pipeline on a photograph that ships with scikit-image.

astronaut (512x512, NASA, public domain) is downscaled to --size and fitted with the paper's
settings at a small width; the result (PSNR, reconstruction PNG) is printed and written under
--out. Run it again and finished steps are skipped.
"""

from __future__ import annotations

from pathlib import Path

from absl import flags
from PIL import Image

from .. import flags as inr_flags
from ..data import save_png
from ..images import run_overfit
from .overfit_inr import build_flags as overfit_flags


def build_flags() -> flags.FlagValues:
    fv = flags.FlagValues()
    flags.DEFINE_string("out", "demo_output", "Folder for everything the demo writes.", flag_values=fv)
    flags.DEFINE_integer("size", 256, "Side of the square test image in pixels.", lower_bound=16, upper_bound=512,
                         flag_values=fv)
    flags.DEFINE_integer("epochs", 3000, "Fitting steps.", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("hidden_dims", 32, "Width of the MLP.", lower_bound=1, flag_values=fv)
    flags.DEFINE_string("device", "auto", "Torch device.", flag_values=fv)
    return fv


def prepare_image(out: Path, size: int) -> Path:
    """Write the downscaled astronaut as <out>/data/astronaut/astronaut.png; returns data_root."""
    from skimage import data as skdata

    picture = Image.fromarray(skdata.astronaut()).resize((size, size), Image.LANCZOS)
    import numpy as np

    save_png(out / "data" / "astronaut" / "astronaut.png", np.asarray(picture)[:, :, :3])
    return out / "data"


def main(argv: list[str] | None = None) -> int:
    def body(args):
        fv = build_flags()
        inr_flags.parse(fv, args, "quickstart.py")
        out = Path(fv.out)
        data_root = prepare_image(out, fv.size)
        fit_flags = overfit_flags()
        inr_flags.parse(fit_flags, [
            f"--data_root={data_root}", "--dataset=astronaut", f"--exp_root={out / 'exp'}",
            f"--epochs={fv.epochs}", "--lr=0.0005", "--l1_reg=0.00001", f"--hidden_dims={fv.hidden_dims}",
            "--steps_til_summary=500", "--epochs_til_ckpt=500", f"--device={fv.device}"], "overfitINR.py")
        exp_dir = run_overfit(inr_flags.values(fit_flags))
        print(f"reconstruction: {exp_dir / 'astronaut' / 'reconstruction.png'}")
    return inr_flags.run_tool(body, argv)
