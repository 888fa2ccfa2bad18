"""normalize_shapes.py: center each mesh's bounding box at the origin and scale it so that its farthest
vertex lies at radius 1; writes <file name up to its first '.'>_normalized.obj next to it.

    python shape_compression/normalize_shapes.py --shape_glob 'data/stanford/*.ply'
"""

from __future__ import annotations

from absl import flags

from inrcompress.tools import flags as inr_flags
from inrcompress.signals.shape import normalize_shape, shapes_to_normalize


def build_flags() -> flags.FlagValues:
    fv = flags.FlagValues()
    flags.DEFINE_string("shape_glob", "*", "Glob of the meshes (.obj, .ply, .off) to normalize; files named "
                        "*_normalized.* are left out. Quote it so that the shell does not expand it.",
                        flag_values=fv)
    return fv


def main(argv: list[str] | None = None) -> int:
    def body(args):
        shape_glob = inr_flags.parse_values(build_flags(), args, "normalize_shapes.py")["shape_glob"]
        work = shapes_to_normalize(shape_glob)
        for _, target in work:  # every output checked before the first mesh is read
            inr_flags.check_output_file(target, (".obj",))
        for source, target in work:
            normalize_shape(source, target)
            print(f"{source} -> {target}")
    return inr_flags.run_tool(body, argv)
