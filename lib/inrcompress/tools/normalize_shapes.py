"""normalize_shapes.py: center each mesh's bounding box at the origin and scale it so that its farthest
vertex lies at radius 1; writes <file name up to its first '.'>_normalized.obj next to it.

    python shape_compression/normalize_shapes.py --shape_glob 'data/stanford/*.ply'
"""

from __future__ import annotations

from absl import flags

from inrcompress.tools import flags as inr_flags
from inrcompress.signals.shape import normalize_shapes


def main(argv: list[str] | None = None) -> int:
    return inr_flags.run_tool(_normalize, argv)


def _normalize(args) -> None:
    fv = flags.FlagValues()
    flags.DEFINE_string("shape_glob", "*", "Glob of the meshes (.obj, .ply, .off) to normalize; files named "
                        "*_normalized.* are left out. Quote it so that the shell does not expand it.",
                        flag_values=fv)
    for source, target in normalize_shapes(inr_flags.parse_values(fv, args, "normalize_shapes.py")["shape_glob"]):
        print(f"{source} -> {target}")
