"""quantize_and_test3D.py: quantize, code, write and decode every fitted shape of the experiments
matching --exp_glob; report bytes, bits per vertex, IoU and Chamfer distance of the decoded files.

    python shape_compression/quantize_and_test3D.py --exp_glob 'armadillo*' --bitwidth 8
"""

from __future__ import annotations

from absl import flags

from inrcompress.tools import flags as inr_flags
from inrcompress.experiments.shape_codec import run_quantize_and_test3d


def build_flags() -> flags.FlagValues:
    fv = flags.FlagValues()
    inr_flags.define_general(fv)
    inr_flags.define_quantization(fv, retrain_epochs=1000, adaround_iterations=2000, code="brotli",
                                  dataset="armadillo")
    inr_flags.define_shapes(fv, sampling=False)
    fv["dataset"].help = ("Dataset folder under data_root with the original meshes; read only for a shape whose "
                          "cached samples (sdf_samples.npz) are missing.")
    fv["skip_existing"].help = "Skip a shape whose metrics file for this setting exists."
    for name in ("l1_reg", "entropy_reg"):
        inr_flags.define_paper_only(fv, name, 0.0, "the paper's script defined it and never read it.")
    return fv


def main(argv: list[str] | None = None) -> int:
    def body(args):
        run_quantize_and_test3d(inr_flags.parse_values(build_flags(), args, "quantize_and_test3D.py"))
    return inr_flags.run_tool(body, argv)
