"""trainMetaSiren.py: meta-learn an INR initialization and inner-loop learning rates (MAML)."""

from __future__ import annotations

from absl import flags

from inrcompress.tools import flags as inr_flags
from inrcompress.fit.meta import train_meta


def build_flags() -> flags.FlagValues:
    fv = flags.FlagValues()
    inr_flags.define_general(fv)
    inr_flags.define_maml(fv, training=True)
    inr_flags.define_architecture(fv, hidden_dims=32, ff_dims=16)
    inr_flags.define_downscaling(fv)
    flags.DEFINE_integer("maml_early_stop", 0, "Stop meta-training once the best validation is more than this many "
                         "outer steps old (0: off, the paper's fixed number of passes). Not part of the init's "
                         "folder name.", lower_bound=0, flag_values=fv)
    return fv


def main(argv: list[str] | None = None, **hooks) -> int:
    def body(args):
        train_meta(inr_flags.parse_values(build_flags(), args, "trainMetaSiren.py"), **hooks)
    return inr_flags.run_tool(body, argv)
