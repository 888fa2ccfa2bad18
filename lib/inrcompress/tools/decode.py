"""decode.py: turn an image .inr file into a PNG, needing nothing but the file
(and, for a file coded against a meta-learned initialization, that init: --init).

    python image_compression/decode.py image.inr out.png     # or: inr-decode image.inr out.png
"""

from __future__ import annotations

import time
from pathlib import Path

from absl import flags

from inrcompress.codec.container import read_inr_file_bytes, read_inr_header
from inrcompress.errors import InrError
from inrcompress.tools import flags as inr_flags

POSITIONAL = ("INPUT.inr", "OUTPUT.png")


def build_flags() -> flags.FlagValues:
    fv = flags.FlagValues()
    flags.DEFINE_string("init", None, "model_maml.pth of the meta-learned init the file was coded against "
                        "(needed only for such a file).", flag_values=fv)
    inr_flags.define_decode_limits(fv)
    return fv


def main(argv: list[str] | None = None) -> int:
    def body(args):
        fv = build_flags()
        source, target = inr_flags.parse(fv, args, "decode.py", POSITIONAL)
        # PNG only: the decoded pixels are the codec's result, and a JPEG of them would add a second,
        # lossy compression that every measurement on the file would then include.
        inr_flags.check_output_file(target, (".png",))
        if fv.init and not Path(fv.init).is_file():
            raise InrError(f"init not found: {fv.init}")
        started = time.perf_counter()
        data = read_inr_file_bytes(source)
        limits = inr_flags.decode_limits(fv)
        try:
            # Torch takes a second to import: a crafted or oversized file is refused before it loads.
            read_inr_header(data, limits)
        except InrError as e:
            raise type(e)(f"{source}: {e}") from None
        from inrcompress.codec.compress import decode_image
        from inrcompress.signals.image import save_png

        reference = None
        if fv.init:
            from inrcompress.fit.engine import load_checkpoint  # only residual files need it

            reference = load_checkpoint(Path(fv.init))
        try:
            header, picture = decode_image(data, reference, limits)
        except InrError as e:
            raise type(e)(f"{source}: {e}") from None
        save_png(target, picture)
        macs = header.representation.macs_per_point()
        print(f"{target}: {picture.shape[1]}x{picture.shape[0]}, {len(data)} bytes, "
              f"{8 * len(data) / (header.width * header.height):.4f} bpp, "
              f"decoded in {time.perf_counter() - started:.2f} s"
              + (f", {macs} MAC/pixel" if macs is not None else ""))
    return inr_flags.run_tool(body, argv)
