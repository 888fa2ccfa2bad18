"""quantize_and_test.py: quantize, code, write and decode every fitted image of the experiments
matching --exp_glob; report bpp and quality measured on the decoded files.

Beyond the paper: --target_bpp B codes every image within 3% of B bpp (--target_psnr P: the smallest
file found that decodes to P dB) at its fitted width, the bit width and step scale searched per image
(experiments/image_codec.encode_to_target); the files and results carry _target_bpp{B} in their names."""

from __future__ import annotations

from absl import flags

from inrcompress.tools import flags as inr_flags
from inrcompress.experiments.image_codec import run_quantize_and_test


def build_flags() -> flags.FlagValues:
    fv = flags.FlagValues()
    inr_flags.define_general(fv)
    inr_flags.define_quantization(fv, retrain_epochs=300, adaround_iterations=1000, code="arithmetic")
    inr_flags.define_rate_target(fv)
    return fv


def main(argv: list[str] | None = None) -> int:
    def body(args):
        run_quantize_and_test(inr_flags.parse_values(build_flags(), args, "quantize_and_test.py"))
    return inr_flags.run_tool(body, argv)
