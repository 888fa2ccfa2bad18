"""overfitINR3D.py: fit an INR (x, y, z) -> signed distance to every mesh of a dataset folder.

    python shape_compression/overfitINR3D.py --data_root data --dataset armadillo --hidden_dims 32

--dataset: armadillo (data_root/armadillo/armadillo_normalized.obj), stanford
(data_root/stanford/*_normalized.obj), ShapeNet50, or any folder of .obj/.ply/.off meshes (normalized
into the unit sphere: shape_compression/normalize_shapes.py).
"""

from __future__ import annotations

from absl import flags

from inrcompress.tools import flags as inr_flags
from inrcompress.experiments.shape_fit import run_overfit3d


def build_flags() -> flags.FlagValues:
    fv = flags.FlagValues()
    inr_flags.define_general(fv)
    inr_flags.define_architecture(fv, hidden_dims=32, ff_dims=16)
    inr_flags.define_overfitting(fv, dataset="armadillo", epochs=250, lr=1e-4, l1_reg=0.0, downscaling=False,
                                 batched=False)
    inr_flags.define_shapes(fv)
    fv.set_default("epochs_til_ckpt", 10)  # the paper's 3D default (images: 1000)
    fv["dataset"].help = ("Dataset folder under data_root: armadillo, stanford (*_normalized.obj), ShapeNet50, "
                          "or any folder of .obj/.ply/.off meshes normalized into the unit sphere.")
    fv["epochs"].help = "Passes over the SDF samples (5 x samples_per_shape / batch_size steps each)."
    return fv


def main(argv: list[str] | None = None, **hooks) -> int:
    def body(args):
        run_overfit3d(inr_flags.parse_values(build_flags(), args, "overfitINR3D.py"), **hooks)
    return inr_flags.run_tool(body, argv)
