"""decode.py: turn an image .inr file into a PNG, needing nothing but the file
(and, for a file coded against a meta-learned initialization, that init: --init).

    python image_compression/decode.py image.inr out.png
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from inrcompress.codec.container import read_inr_file_bytes
from inrcompress.codec.compress import decode_image
from inrcompress.signals.image import save_png
from inrcompress.errors import CorruptFileError, InrError
from inrcompress.tools.flags import run_tool
from inrcompress.fit.train import load_checkpoint


def main(argv: list[str] | None = None) -> int:
    def body(args):
        parser = argparse.ArgumentParser(prog="decode.py", description="Decode an image .inr file to PNG.")
        parser.add_argument("input", help=".inr file")
        parser.add_argument("output", help="PNG to write")
        parser.add_argument("--init", help="model_maml.pth of the meta-learned init the file was coded against")
        try:
            opts = parser.parse_args(args)
        except SystemExit as e:  # argparse already printed its one-line usage error
            return 2 if e.code else 0
        reference = None
        if opts.init:
            if not Path(opts.init).is_file():
                raise InrError(f"init not found: {opts.init}")
            reference = load_checkpoint(Path(opts.init))
        started = time.perf_counter()
        data = read_inr_file_bytes(opts.input)
        try:
            header, picture = decode_image(data, reference)
        except CorruptFileError as e:
            raise CorruptFileError(f"{opts.input}: {e}") from None
        save_png(opts.output, picture)
        print(f"{opts.output}: {picture.shape[1]}x{picture.shape[0]}, {len(data)} bytes, "
              f"{8 * len(data) / (header.width * header.height):.4f} bpp, "
              f"decoded in {time.perf_counter() - started:.2f} s")
    return run_tool(body, argv)
