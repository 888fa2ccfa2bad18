"""overfitINR.py: fit an INR from a random initialisation to every image of a dataset folder."""

from __future__ import annotations

from absl import flags

from inrcompress.tools import flags as inr_flags
from inrcompress.experiments.images import run_overfit


def build_flags() -> flags.FlagValues:
    fv = flags.FlagValues()
    inr_flags.define_general(fv)
    inr_flags.define_architecture(fv, hidden_dims=64, ff_dims=16)
    inr_flags.define_overfitting(fv, dataset="KODAK", epochs=10000, lr=1e-4, l1_reg=0.0)
    inr_flags.define_rate_fitting(fv)
    return fv


def main(argv: list[str] | None = None, **hooks) -> int:
    def body(args):
        run_overfit(inr_flags.parse_values(build_flags(), args, "overfitINR.py"), **hooks)
    return inr_flags.run_tool(body, argv)
