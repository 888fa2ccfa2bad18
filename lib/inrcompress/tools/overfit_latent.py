"""overfitLatent.py: fit, code and measure a latent-grid codec (issue 18) on every image of a dataset,
into <exp_root>/latent/<dataset>_<f>x_latent_<preset>_<schedule>/ (see experiments/latent_codec.py).

    python image_compression/overfitLatent.py --data_root data --dataset KODAK --downscaling_factor 4 \
        --rate_lambda 0.002 --latent_preset mac1000 --latent_schedule fast [--batch_images 8 --device cuda]
"""

from __future__ import annotations

from absl import flags

from inrcompress.codec.representations.latent import PRESETS
from inrcompress.tools import flags as inr_flags


def build_flags() -> flags.FlagValues:
    from inrcompress.fit.latent import SCHEDULES

    fv = flags.FlagValues()
    inr_flags.define_general(fv)
    flags.DEFINE_string("dataset", "KODAK", "Dataset folder under data_root (KODAK, CelebA100, any folder).",
                        flag_values=fv)
    inr_flags.define_downscaling(fv)
    inr_flags.define_latent_codec(fv, list(PRESETS), list(SCHEDULES), rate_lambda=True, batch_images=True)
    flags.DEFINE_bool("tensorboard", True, "Write TensorBoard scalars (loss, MSE, latent bpp) per image.",
                      flag_values=fv)
    return fv


def main(argv: list[str] | None = None) -> int:
    def body(args):
        from inrcompress.experiments.latent_codec import run_overfit_latent

        run_overfit_latent(inr_flags.parse_values(build_flags(), args, "overfitLatent.py"))
    return inr_flags.run_tool(body, argv)
