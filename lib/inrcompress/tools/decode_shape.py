"""decode_shape.py: turn a shape .inr file into a mesh (marching cubes of the decoded network) and a
preview picture, needing nothing but the file.

    python shape_compression/decode_shape.py armadillo.inr armadillo.obj   # also writes armadillo.png

The mesh format follows the output's suffix (.obj, .ply or .off); --png names the picture (default:
the output with .png), --mc_resolution the marching-cubes grid (default 128).
"""

from __future__ import annotations

import time
from pathlib import Path

from absl import flags

from inrcompress.tools import flags as inr_flags
from inrcompress.codec.container import DecodeLimits, read_inr_file_bytes, read_inr_header
from inrcompress.errors import InrError
from inrcompress.signals.shape import MESH_SUFFIXES, save_mesh

POSITIONAL = ("INPUT.inr", "OUTPUT.obj|.ply|.off")


def build_flags() -> flags.FlagValues:
    fv = flags.FlagValues()
    flags.DEFINE_string("png", None, "Preview picture to write (default: the output mesh's path with .png).",
                        flag_values=fv)
    inr_flags.define_shapes(fv, sampling=False)
    inr_flags.define_decode_limits(fv, images=False)
    return fv


def decode_to_mesh(source: Path, target: Path, picture: Path, resolution: int,
                   limits: DecodeLimits | None = DecodeLimits()) -> str:
    """Decode `source`, write the mesh and its preview; returns a one-line report."""
    inr_flags.check_output_file(target, MESH_SUFFIXES)
    inr_flags.check_output_file(picture, (".png",))
    started = time.perf_counter()
    data = read_inr_file_bytes(source)
    try:
        read_inr_header(data, limits)  # a crafted file is refused before torch loads (decode.py)
        from inrcompress.experiments.shape_codec import decode_shape

        header, model = decode_shape(data, limits)
    except InrError as e:
        raise type(e)(f"{source}: {e}") from None
    from inrcompress.signals.image import save_png
    from inrcompress.signals.shape_eval import extract_surface, render_preview, sdf_grid

    surface = extract_surface(sdf_grid(model, resolution))
    if surface is None:
        raise InrError(f"{source}: the decoded network has no surface (no sign change) in [-1, 1]^3")
    save_mesh(target, *surface)
    save_png(picture, render_preview(*surface))
    return (f"{target}: {len(surface[0])} vertices, {len(surface[1])} triangles from {len(data)} bytes "
            f"({header.hidden_dims}x{header.hidden_layers} {header.activation} network, {header.bitwidth} bits); "
            f"preview {picture}; decoded in {time.perf_counter() - started:.2f} s")


def main(argv: list[str] | None = None) -> int:
    def body(args):
        fv = build_flags()
        paths = [Path(p) for p in inr_flags.parse(fv, args, "decode_shape.py", POSITIONAL)]
        picture = Path(fv.png) if fv.png else paths[1].with_suffix(".png")
        print(decode_to_mesh(paths[0], paths[1], picture, fv.mc_resolution, inr_flags.decode_limits(fv)))
    return inr_flags.run_tool(body, argv)
