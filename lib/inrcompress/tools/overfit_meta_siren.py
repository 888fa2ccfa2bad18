"""overfitMetaSiren.py: fit every image of a dataset folder starting from a meta-learned init.

--ff_dims defaults to 16, the default of trainMetaSiren.py. (The paper's script defaulted to None,
which names another init folder than the one trainMetaSiren.py wrote with its default 16, and would
build a network of another input size: a run with the documented defaults could not find its init.)
"""

from __future__ import annotations

from absl import flags

from inrcompress.tools import flags as inr_flags
from inrcompress.experiments.meta_images import run_overfit_meta


def build_flags() -> flags.FlagValues:
    fv = flags.FlagValues()
    inr_flags.define_general(fv)
    inr_flags.define_maml(fv)
    inr_flags.define_architecture(fv, hidden_dims=32, ff_dims=16)
    inr_flags.define_overfitting(fv, dataset="KODAK", epochs=1000, lr=5e-4, l1_reg=1e-5)
    inr_flags.define_paper_only(fv, "batch_size", 1, "one image is one batch (the paper's script defined it too).")
    flags.DEFINE_integer("warmup", 100, "Linear learning-rate warm-up steps (lets Adam's moments settle).",
                         lower_bound=0, flag_values=fv)
    return fv


def main(argv: list[str] | None = None, **hooks) -> int:
    def body(args):
        run_overfit_meta(inr_flags.parse_values(build_flags(), args, "overfitMetaSiren.py"), **hooks)
    return inr_flags.run_tool(body, argv)
